//! The training engine: job specs, models, optimizers, schedules, the loop, metrics and
//! checkpoints, on candle. Everything here is synchronous and blocking; callers run it on
//! threads of their own.
//!
//! # Map
//! - [`spec`]: the job spec (data, model, training, initialization) with its validation and
//!   memory estimate.
//! - [`prepare`] (`prepare`, `image_prep`, `pixels`): a data set's table turned into tensors.
//! - Models: [`Mlp`], [`Cnn`], [`ResNet`], and the pretrained ViT and ConvNeXt of
//!   candle-transformers as a frozen [`Backbone`] with a linear head, behind [`Network`]; `init` and `seed` make them
//!   reproducible; [`fused`] is the fast CPU path for MLPs without batch normalization.
//! - Optimizers (`optim`): [`Optimizer`] over candle variables and `FlatOptimizer` over the
//!   fused MLP's buffers, both stepping with the update rules of `optim/rules.rs`.
//! - [`InferenceNetwork`] (`inference`): a checkpoint loaded for serving, on the fastest path.
//! - The loop: [`fit`] with `training_path` (candle or fused), `schedule`, `monitor` (early
//!   stopping), `grads` and `metrics`; [`Interrupter`] stops it between batches.
//! - [`find_lr`] (`lr_find`): the learning-rate range test on a throwaway copy of the model.
//! - [`checkpoint`]: a run's state as safetensors, written atomically and verified on read;
//!   [`weights`]: reading uploaded safetensors.
//! - [`error`]: [`EngineError`], in the engine's terms (a spec path, never an HTTP status).
//!
//! Rule: `engine` depends on `kernels` and `data`, never on the service. Tests live in each
//! module's `tests` (inline, or `<module>/tests.rs` when long).

#![warn(missing_docs, unreachable_pub)]

mod backbone;
pub mod checkpoint;
mod cnn;

pub mod error;
mod fit;
pub mod fused;
mod grads;
mod image_prep;
mod inference;
mod init;
mod interrupt;
mod lr_find;
mod training_path;

mod metrics;
mod mlp;
mod monitor;
mod network;
mod optim;
mod pixels;
mod prepare;
pub mod resnet;
mod schedule;
mod seed;
pub mod spec;
pub mod weights;

pub use backbone::{Backbone, random_weights};
pub use cnn::Cnn;
pub use error::{EngineError, Result};
pub use fit::{EpochReport, FitOutcome, Progress, Start, TrainError, fit};
pub use image_prep::{Crop, ImagePipeline};
pub use inference::InferenceNetwork;
pub use interrupt::{InterruptReason, Interrupter};
pub use lr_find::{
    LrCurve, LrFindSettings, LrFindStop, LrPoint, MAX_LR_FIND_STEPS, MIN_LR_FIND_RATE, find_lr,
    suggest,
};
pub use metrics::{EpochMetrics, LayerStats};
pub(crate) use mlp::ParamInfo;
pub use mlp::{Mlp, Mode};
pub use network::{Network, backbone_shapes};
pub use optim::Optimizer;
pub use prepare::{
    Augmentation, PreparedData, Preprocessing, SplitTensors, data_shape, prepare, prepare_within,
};
pub use resnet::ResNet;
