use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::loss::cross_entropy;
use rand::seq::SliceRandom;

use super::checkpoint::{self, CheckpointData};
use super::seed::{Purpose, rng};
use super::{InterruptReason, Interrupter, Mlp, Mode, Optimizer, PreparedData, SplitTensors};
use crate::domain::{JobSpec, ModelSpec};
use crate::error::Error;

/// The measurements of one finished epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Mean loss over the epoch's steps, in training mode.
    pub train_loss: f64,
    /// Accuracy over the epoch's steps, in training mode.
    pub train_acc: f64,
    /// Validation loss at the end of the epoch.
    pub val_loss: f64,
    /// Validation accuracy at the end of the epoch.
    pub val_acc: f64,
    /// Test loss at the end of the epoch, if there is a test split.
    pub test_loss: Option<f64>,
    /// Test accuracy at the end of the epoch, if there is a test split.
    pub test_acc: Option<f64>,
    /// Learning rate in effect.
    pub lr: f64,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Wall time of training plus evaluation.
    pub epoch_seconds: f64,
    /// Training samples per second of training time.
    pub samples_per_sec: f64,
}

/// An epoch's metrics and the checkpoint taken after it.
pub struct EpochReport {
    /// The measurements.
    pub metrics: EpochMetrics,
    /// safetensors bytes of the model and optimizer state.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FitOutcome {
    /// The last epoch trained.
    pub epochs: u32,
}

/// Why training stopped early.
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
    Failed(#[from] Error),
}

impl From<candle_core::Error> for TrainError {
    fn from(err: candle_core::Error) -> Self {
        TrainError::Failed(err.into())
    }
}

const EVAL_BATCH: usize = 4096;

/// Trains `spec` on `data`, starting after `resume`'s epoch when given. Calls `on_step` after
/// every step and `on_epoch` after every epoch; checks `interrupter` before every batch.
pub fn fit(
    spec: &JobSpec,
    data: &PreparedData,
    resume: Option<(u32, CheckpointData)>,
    device: &Device,
    interrupter: &Interrupter,
    on_step: &mut dyn FnMut(Progress),
    on_epoch: &mut dyn FnMut(EpochReport) -> crate::error::Result<()>,
) -> Result<FitOutcome, TrainError> {
    let ModelSpec::Mlp(mlp_spec) = &spec.model;
    let seed = spec.training.seed.unwrap_or(0);
    let inputs = data.preprocessing.n_features();
    let (model, start_epoch, saved_optimizer) = match resume {
        Some((epoch, saved)) => {
            let model = Mlp::from_tensors(mlp_spec, inputs, data.n_classes, &saved.model, device)?;
            (model, epoch + 1, Some(saved.optimizer))
        }
        None => {
            let mut init = rng(seed, Purpose::Init, 0);
            (
                Mlp::seeded(mlp_spec, inputs, data.n_classes, &mut init, device)?,
                1,
                None,
            )
        }
    };
    let mut optimizer = Optimizer::new(&spec.training.optimizer, model.trainable())?;
    if let Some(state) = saved_optimizer {
        optimizer.load_state(&state)?;
    }

    let batch_size = spec.training.batch_size.min(data.train.len).max(1);
    let steps_per_epoch = data.train.len.div_ceil(batch_size) as u64;
    let mut global_step = steps_per_epoch * u64::from(start_epoch - 1);
    for epoch in start_epoch..=spec.training.epochs {
        let started = Instant::now();
        let mut order: Vec<u32> = (0..data.train.len as u32).collect();
        order.shuffle(&mut rng(seed, Purpose::Shuffle, u64::from(epoch)));
        let mut dropout_rng = rng(seed, Purpose::Dropout, u64::from(epoch));
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0f64, 0usize);
        for (i, chunk) in order.chunks(batch_size).enumerate() {
            if let Some(reason) = interrupter.reason() {
                return Err(TrainError::Interrupted(reason));
            }
            let index = Tensor::from_slice(chunk, chunk.len(), device)?;
            let x = data.train.x.index_select(&index, 0)?;
            let y = data.train.y.index_select(&index, 0)?;
            let logits = model.forward(&x, &mut Mode::Train(&mut dropout_rng))?;
            let loss = cross_entropy(&logits, &y)?;
            let loss_value = loss.to_scalar::<f32>()?;
            global_step += 1;
            if !loss_value.is_finite() {
                return Err(TrainError::Diverged {
                    epoch,
                    step: global_step,
                    loss: loss_value,
                });
            }
            optimizer.step(&loss.backward()?)?;
            correct += count_correct(&logits, &y)?;
            loss_sum += f64::from(loss_value) * chunk.len() as f64;
            seen += chunk.len();
            on_step(Progress {
                epoch,
                step_in_epoch: i as u64 + 1,
                steps_per_epoch,
                global_step,
                loss: loss_value,
            });
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let (val_loss, val_acc) = evaluate(&model, &data.val)?;
        let test = data
            .test
            .as_ref()
            .map(|test| evaluate(&model, test))
            .transpose()?;
        if !val_loss.is_finite() {
            return Err(TrainError::Diverged {
                epoch,
                step: global_step,
                loss: val_loss as f32,
            });
        }
        let metrics = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_acc: correct / seen.max(1) as f64,
            val_loss,
            val_acc,
            test_loss: test.map(|(loss, _)| loss),
            test_acc: test.map(|(_, acc)| acc),
            lr: optimizer.lr(),
            steps: steps_per_epoch,
            epoch_seconds: started.elapsed().as_secs_f64(),
            samples_per_sec: seen as f64 / train_seconds.max(1e-9),
        };
        let checkpoint = checkpoint::encode(model.state()?, optimizer.state()?, epoch)?;
        on_epoch(EpochReport {
            metrics,
            checkpoint,
        })?;
    }
    Ok(FitOutcome {
        epochs: spec.training.epochs,
    })
}

fn count_correct(logits: &Tensor, y: &Tensor) -> candle_core::Result<f64> {
    let predicted = logits.argmax(1)?;
    Ok(f64::from(
        predicted
            .eq(y)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?,
    ))
}

/// Mean loss and accuracy of the model on a split, in evaluation mode.
fn evaluate(model: &Mlp, split: &SplitTensors) -> Result<(f64, f64), TrainError> {
    let (mut loss_sum, mut correct) = (0f64, 0f64);
    let mut start = 0;
    while start < split.len {
        let len = EVAL_BATCH.min(split.len - start);
        let x = split.x.narrow(0, start, len)?;
        let y = split.y.narrow(0, start, len)?;
        let logits = model.forward(&x, &mut Mode::Eval)?;
        loss_sum += f64::from(cross_entropy(&logits, &y)?.to_scalar::<f32>()?) * len as f64;
        correct += count_correct(&logits, &y)?;
        start += len;
    }
    let n = split.len.max(1) as f64;
    Ok((loss_sum / n, correct / n))
}
