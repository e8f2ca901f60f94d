//! trainserve: an HTTP service that trains MLPs, CNNs and ResNets on a user's data and serves
//! their predictions. The training itself is the `engine` crate (on `data` and `kernels`); this
//! crate is the service around it.
//!
//! # Map
//! - [`api`]: the HTTP routes (the only module that knows axum's handlers), and `api/error.rs`,
//!   the one place errors become HTTP responses.
//! - [`jobs`]: the queue, workers, sweeps and transfer sources; [`predict`]: serving
//!   checkpoints; [`catalog`]: data sets on disk; [`analysis`]: comparisons, diagnoses, plots.
//! - [`store`]: every SQL statement (sqlx, SQLite); [`domain`]: ids, statuses, sweeps, the
//!   query language, and job specs parsed from request bodies.
//! - [`startup`], [`config`], [`telemetry`]: the process; [`error`]: the service's error, with
//!   the `From` impls that give the engine's and data crate's errors their request field.
//! - [`cli`]: `trainserve submit`, `jobs`, `watch`, ...: a client of a running service over
//!   HTTP, using no other module of this crate.
//!
//! Rule: dependencies point one way, `api → {jobs, predict, catalog, analysis} → store →
//! domain`, and everything may use the engine crates; none of them uses this one. See
//! ARCHITECTURE.md.

pub mod access;
pub mod analysis;
pub mod api;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod config;
pub mod domain;
pub mod error;
pub mod evidence;
pub mod jobs;
pub mod predict;
pub mod prometheus;
pub mod startup;
pub mod store;
pub mod studies;
pub mod telemetry;
