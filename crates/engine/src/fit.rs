//! The training loop: seeded shuffling and dropout, the schedule's rate at every step,
//! gradient measurement and clipping, evaluation, early stopping, and a checkpoint of
//! everything a resumed run needs after every epoch.

use std::time::Instant;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;

use super::checkpoint::{self, CheckpointData, CheckpointParts};
use super::grads::GradStats;
use super::metrics::coefficient_of_variation;
use super::monitor::EarlyStopping;
use super::schedule::Schedule;
use super::seed::{Purpose, rng};
use super::training_path::{TrainingPath, fused_applies};
use super::{EpochMetrics, InterruptReason, Interrupter, LayerStats, Network, PreparedData};
use crate::error::EngineError;
use crate::spec::{JobSpec, TransferMode};

/// An epoch's measurements, the loss of each of its steps, per-parameter norms, and the
/// checkpoint taken after it.
pub struct EpochReport {
    /// The measurements.
    pub metrics: EpochMetrics,
    /// Global number (1-based) of the epoch's first step.
    pub first_step: u64,
    /// The loss of every step of the epoch, in order.
    pub step_losses: Vec<f32>,
    /// Gradient and weight norms of every parameter tensor, in model order.
    pub layers: Vec<LayerStats>,
    /// Why training stops after this epoch, when early stopping ends it.
    pub stopped_early: Option<String>,
    /// safetensors bytes of the model, optimizer and loop state.
    pub checkpoint: Vec<u8>,
}

/// Where training is, after every step.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Current epoch (1-based).
    pub epoch: u32,
    /// Steps done in this epoch.
    pub step_in_epoch: u64,
    /// Steps in a full epoch.
    pub steps_per_epoch: u64,
    /// Steps done since the job started (1-based).
    pub global_step: u64,
    /// Loss of the last step.
    pub loss: f32,
}

/// How a complete run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitOutcome {
    /// The last epoch trained.
    pub epochs: u32,
    /// Why early stopping ended the run, if it did.
    pub stopped_early: Option<String>,
}

/// Why training stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The loss stopped being a finite number.
    #[error(
        "diverged at epoch {epoch}, step {step}: loss is {loss}; the learning rate may be too high"
    )]
    Diverged {
        /// Epoch of the bad step.
        epoch: u32,
        /// Global step number.
        step: u64,
        /// The loss value (NaN or infinite).
        loss: f32,
    },
    /// The interrupter was raised.
    #[error("interrupted: {0:?}")]
    Interrupted(InterruptReason),
    /// Anything else.
    #[error(transparent)]
    Failed(#[from] EngineError),
}

impl From<candle_core::Error> for TrainError {
    fn from(err: candle_core::Error) -> Self {
        TrainError::Failed(err.into())
    }
}

/// What one pass over the training split produced.
struct EpochPass {
    losses: Vec<f32>,
    /// Σ loss·batch length, for the sample-weighted mean.
    loss_sum: f64,
    grads: GradStats,
    correct: f64,
    seen: usize,
    last_lr: f64,
}

/// Where a run starts.
pub enum Start<'a> {
    /// From the seed.
    Fresh,
    /// After the given epoch, from its checkpoint.
    Resume(u32, CheckpointData),
    /// From the seed, then a convolutional network's backbone set from another job's or
    /// uploaded tensors (transfer learning); the second part is the spec field they came from.
    Backbone(&'a HashMap<String, Tensor>, &'static str),
}

/// The model and the state around it that a checkpoint restores.
pub(crate) struct Trainer<'a> {
    spec: &'a JobSpec,
    pub(crate) path: TrainingPath,
    device: Device,
    schedule: Schedule,
    early_stopping: Option<EarlyStopping>,
    pub(crate) batch_size: usize,
    steps_per_epoch: u64,
}

/// Trains `spec` on `data`, starting after `resume`'s epoch when given. Calls `on_step` after
/// every step and `on_epoch` after every epoch; checks `interrupter` before every batch.
pub fn fit(
    spec: &JobSpec,
    data: &PreparedData,
    start: Start,
    device: &Device,
    interrupter: &Interrupter,
    on_step: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(EpochReport) -> crate::error::Result<()>,
) -> Result<FitOutcome, TrainError> {
    let (mut trainer, start_epoch, features) = Trainer::start(spec, data, start, device)?;
    // A pretrained backbone's probe trains on features cached once for the run.
    let data = features.as_ref().unwrap_or(data);
    let mut global_step = trainer.steps_per_epoch * u64::from(start_epoch - 1);
    for epoch in start_epoch..=spec.training.epochs {
        let started = Instant::now();
        let first_step = global_step + 1;
        let pass = trainer.train_epoch(data, epoch, interrupter, &mut global_step, on_step)?;
        let train_seconds = started.elapsed().as_secs_f64();
        let path = &trainer.path;
        let (val_loss, val_acc) = path.evaluate(&data.val)?;
        if !val_loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch,
                step: global_step,
                loss: val_loss as f32,
            });
        }
        let test = data
            .test
            .as_ref()
            .map(|test| path.evaluate(test))
            .transpose()?;
        let (train_eval_loss, train_eval_acc) = path.evaluate(&data.train)?;
        let seen = pass.seen.max(1) as f64;
        let metrics = EpochMetrics {
            epoch,
            train_loss: pass.loss_sum / seen,
            train_acc: pass.correct / seen,
            train_eval_loss,
            train_eval_acc,
            val_loss,
            val_acc,
            test_loss: test.map(|(loss, _)| loss),
            test_acc: test.map(|(_, acc)| acc),
            lr: pass.last_lr,
            steps: pass.losses.len() as u64,
            step_loss_cv: coefficient_of_variation(&pass.losses),
            epoch_seconds: started.elapsed().as_secs_f64(),
            samples_per_sec: pass.seen as f64 / train_seconds.max(1e-9),
        };
        let layers = trainer.layer_stats(&pass.grads)?;
        trainer.schedule.end_epoch(epoch, &metrics);
        let stopped_early = trainer
            .early_stopping
            .as_mut()
            .and_then(|early| early.observe(epoch, &metrics));
        let checkpoint = checkpoint::encode(trainer.checkpoint_parts()?, epoch)?;
        on_epoch(EpochReport {
            metrics,
            first_step,
            step_losses: pass.losses,
            layers,
            stopped_early: stopped_early.clone(),
            checkpoint,
        })?;
        if stopped_early.is_some() {
            return Ok(FitOutcome {
                epochs: epoch,
                stopped_early,
            });
        }
    }
    Ok(FitOutcome {
        epochs: spec.training.epochs,
        stopped_early: None,
    })
}

impl<'a> Trainer<'a> {
    /// A fresh trainer, or one restored from a checkpoint; also returns the first epoch to run
    /// and, for a pretrained backbone, the splits as its features (what the loop then uses).
    pub(crate) fn start(
        spec: &'a JobSpec,
        data: &PreparedData,
        start: Start,
        device: &Device,
    ) -> Result<(Self, u32, Option<PreparedData>), TrainError> {
        let seed = spec.training.seed.unwrap_or(0);
        let (mut model, start_epoch, saved) = match start {
            Start::Resume(epoch, saved) => {
                let model =
                    Network::from_tensors(&spec.model, &data.preprocessing, &saved.model, device)?;
                (model, epoch + 1, Some(saved))
            }
            Start::Fresh | Start::Backbone(..) => {
                let mut init = rng(seed, Purpose::Init, 0);
                let model = match start {
                    Start::Backbone(backbone, field) if spec.model.is_pretrained_backbone() => {
                        let p = &data.preprocessing;
                        Network::probe(&spec.model, p, backbone, &mut init, device, field)?
                    }
                    _ => {
                        let model =
                            Network::seeded(&spec.model, &data.preprocessing, &mut init, device)?;
                        if let Start::Backbone(backbone, field) = start {
                            model.load_backbone(backbone, device, field)?;
                        }
                        model
                    }
                };
                (model, 1, None)
            }
        };
        if spec
            .init
            .as_ref()
            .is_some_and(|init| init.mode == TransferMode::LinearProbe)
        {
            model.freeze_backbone();
        }
        let features = model.cache_features(data)?;
        let data = features.as_ref().unwrap_or(data);
        let batch_size = spec.training.batch_size.min(data.train.len).max(1);
        let steps_per_epoch = data.train.len.div_ceil(batch_size) as u64;
        let threads = kernels::thread_budget();
        let mut trainer = Trainer {
            spec,
            path: TrainingPath::build(spec, data, model, fused_applies(spec, device), threads)?,
            device: device.clone(),
            schedule: Schedule::new(&spec.training, steps_per_epoch),
            early_stopping: spec
                .training
                .early_stopping
                .as_ref()
                .map(EarlyStopping::new),
            batch_size,
            steps_per_epoch,
        };
        if let Some(saved) = saved {
            trainer.path.load_optimizer(&saved.optimizer)?;
            trainer.schedule.load_state(&saved.trainer)?;
            if let Some(early) = &mut trainer.early_stopping {
                early.load_state(&saved.trainer)?;
            }
        }
        Ok((trainer, start_epoch, features))
    }

    /// One pass over the training split in a seeded order.
    fn train_epoch(
        &mut self,
        data: &PreparedData,
        epoch: u32,
        interrupter: &Interrupter,
        global_step: &mut u64,
        on_step: &mut dyn FnMut(Progress),
    ) -> Result<EpochPass, TrainError> {
        let seed = self.spec.training.seed.unwrap_or(0);
        let mut order: Vec<u32> = (0..data.train.len as u32).collect();
        order.shuffle(&mut rng(seed, Purpose::Shuffle, u64::from(epoch)));
        let mut dropout_rng = rng(seed, Purpose::Dropout, u64::from(epoch));
        let mut augment_rng = rng(seed, Purpose::Augment, u64::from(epoch));
        let mut pass = EpochPass {
            losses: Vec::with_capacity(self.steps_per_epoch as usize),
            grads: GradStats::new(self.path.param_names().len()),
            loss_sum: 0.0,
            correct: 0.0,
            seen: 0,
            last_lr: self.schedule.lr(epoch, 0),
        };
        let clip = self.spec.training.grad_clip.as_ref();
        for (i, chunk) in order.chunks(self.batch_size).enumerate() {
            if let Some(reason) = interrupter.reason() {
                return Err(TrainError::Interrupted(reason));
            }
            let lr = self.schedule.lr(epoch, i as u64);
            let step =
                self.path
                    .step(data, chunk, lr, (&mut dropout_rng, &mut augment_rng), clip)?;
            *global_step += 1;
            if !step.loss.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step: *global_step,
                    loss: step.loss,
                });
            }
            pass.grads.record(&step.squared_grad_norms);
            pass.correct += step.correct;
            pass.losses.push(step.loss);
            pass.loss_sum += f64::from(step.loss) * chunk.len() as f64;
            pass.seen += chunk.len();
            pass.last_lr = lr;
            on_step(Progress {
                epoch,
                step_in_epoch: i as u64 + 1,
                steps_per_epoch: self.steps_per_epoch,
                global_step: *global_step,
                loss: step.loss,
            });
        }
        Ok(pass)
    }

    /// Gradient norms of the epoch and weight norms now, per parameter tensor.
    fn layer_stats(&self, grads: &GradStats) -> Result<Vec<LayerStats>, TrainError> {
        let weight_norms = self.path.weight_squared_norms()?;
        Ok(self
            .path
            .param_names()
            .into_iter()
            .zip(weight_norms)
            .enumerate()
            .map(|(i, (name, squared))| {
                let info = self.path.describe(&name);
                LayerStats {
                    layer: info.layer,
                    index: info.index,
                    role: info.role,
                    name,
                    grad_norm_mean: grads.mean(i),
                    grad_norm_max: grads.max(i),
                    weight_norm: squared.sqrt(),
                }
            })
            .collect())
    }

    /// Everything a resumed run needs.
    fn checkpoint_parts(&self) -> Result<CheckpointParts, TrainError> {
        let mut trainer = self.schedule.state()?;
        if let Some(early) = &self.early_stopping {
            trainer.extend(early.state()?);
        }
        Ok(CheckpointParts {
            model: self.path.model_state(&self.device)?,
            optimizer: self.path.optimizer_state(&self.device)?,
            trainer,
        })
    }
}

#[cfg(test)]
mod tests;
