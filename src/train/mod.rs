//! Training with candle: data sets, models, optimizers, schedules, the loop, metrics and
//! checkpoints. Everything here is synchronous and blocking; callers run it on dedicated threads.

pub mod checkpoint;
mod cnn;

mod engine;
mod fit;
#[cfg(test)]
mod fit_tests;
pub mod fused;
mod grads;
pub mod image_prep;
mod init;
mod interrupt;

mod metrics;
mod mlp;
mod monitor;
pub mod network;
mod optim;
pub mod pixels;
mod prepare;
pub mod resnet;
mod schedule;
mod seed;
pub mod weights;

pub use cnn::Cnn;
pub use fit::{EpochReport, FitOutcome, Progress, Start, TrainError, fit};
pub use interrupt::{InterruptReason, Interrupter};
pub use metrics::{EpochMetrics, LayerStats};
pub use mlp::{Mlp, Mode, ParamInfo};
pub use network::Network;
pub use optim::Optimizer;
pub use prepare::{
    Augmentation, PreparedData, Preprocessing, SplitTensors, data_shape, prepare, prepare_within,
};
pub use resnet::ResNet;
