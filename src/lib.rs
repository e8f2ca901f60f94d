//! trainserve: an HTTP service that trains MLPs on a user's data and serves their predictions.
//!
//! Dependencies point one way: `api → {jobs, predict, catalog, analysis} → {store, train} →
//! domain`.

pub mod analysis;
pub mod api;

pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod jobs;
pub mod predict;
pub mod startup;
pub mod store;
pub mod telemetry;
