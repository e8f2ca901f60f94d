//! Integration tests: each starts a real server (fresh database, random port) and talks HTTP.

mod helpers;

mod bad_input;
mod cnn;
mod connections;
mod corrupt_checkpoints;
mod datasets;
mod diagnostic_plots;
mod images;
mod jobs;
mod knobs;
mod lifecycle;
mod measurements;
mod openapi;
mod plots;
mod predict;
mod predict_decoders;
mod preprocessing;
mod resnet;
mod sweeps;
mod transfer;
mod walkthrough;
