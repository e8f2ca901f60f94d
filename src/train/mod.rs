//! Training with candle: data sets, models, optimizers, the loop, metrics and checkpoints.
//! Everything here is synchronous and blocking; callers run it on dedicated threads.

pub mod checkpoint;
pub mod dataset;
mod fit;
pub mod fused;
mod interrupt;
pub mod kernels;
mod mlp;
mod optim;
mod prepare;
mod seed;

pub use fit::{EpochMetrics, EpochReport, FitOutcome, Progress, TrainError, fit};
pub use interrupt::{InterruptReason, Interrupter};
pub use mlp::{Mlp, Mode};
pub use optim::Optimizer;
pub use prepare::{PreparedData, Preprocessing, SplitTensors, prepare};
