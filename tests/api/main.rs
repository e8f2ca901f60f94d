//! Integration tests: each starts a real server (fresh database, random port) and talks HTTP.

mod helpers;

mod access;
mod bad_input;
mod cnn;
mod connections;
mod corrupt_checkpoints;
mod data_limits;
mod datasets;
mod deletion;
mod diagnostic_plots;
mod echo;
mod full_disk;
mod images;
mod jobs;
mod knobs;
mod lifecycle;
mod measurements;
mod memory;
mod metrics;
mod openapi;
mod plots;
mod predict;
mod predict_decoders;
mod preprocessing;
mod quotas;
mod resnet;
mod retention;
mod schemathesis;
mod sweeps;
mod tokens;
mod transfer;
mod validation;
mod walkthrough;
