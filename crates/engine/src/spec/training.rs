//! `training`: optimizer, epochs, batch size, seed, learning-rate schedule, gradient clipping
//! and early stopping.

use serde::{Deserialize, Serialize};

use super::OptimizerSpec;
use super::check::{check, int_range, non_negative_at_most, positive_at_most, unit_interval};
use crate::error::Result;

/// Optimizer, epochs, batch size, seed, schedule, clipping and early stopping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSpec {
    /// The optimizer and its learning rate.
    pub optimizer: OptimizerSpec,
    /// Passes over the training split.
    pub epochs: u32,
    /// Samples per step.
    pub batch_size: usize,
    /// Seed of initialization, shuffling and dropout; chosen at submission when omitted.
    pub seed: Option<u64>,
    /// How the learning rate changes over the run.
    pub schedule: ScheduleSpec,
    /// Gradient clipping, off when null.
    pub grad_clip: Option<GradClipSpec>,
    /// Early stopping, off when null.
    pub early_stopping: Option<EarlyStoppingSpec>,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            optimizer: OptimizerSpec::default(),
            epochs: 10,
            batch_size: 32,
            seed: None,
            schedule: ScheduleSpec::default(),
            grad_clip: None,
            early_stopping: None,
        }
    }
}

/// A learning-rate schedule, by kind. Every kind can be combined with a linear warm-up
/// (`warmup_epochs` or `warmup_steps`), which multiplies the scheduled rate by s/W over the
/// first W steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    /// The optimizer's learning rate throughout.
    Constant {
        /// Warm-up length in epochs.
        #[serde(default)]
        warmup_epochs: u32,
        /// Warm-up length in steps.
        #[serde(default)]
        warmup_steps: u64,
    },
    /// lr·gamma^⌊(epoch−1)/step_size⌋: multiplied by `gamma` every `step_size` epochs.
    Step {
        /// Epochs between decays.
        #[serde(default = "default_step_size")]
        step_size: u32,
        /// Factor applied at each decay.
        #[serde(default = "default_gamma")]
        gamma: f64,
        /// Warm-up length in epochs.
        #[serde(default)]
        warmup_epochs: u32,
        /// Warm-up length in steps.
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Cosine annealing per step from lr (after the warm-up) down to `min_lr` at the last step.
    Cosine {
        /// The rate at the last step.
        #[serde(default)]
        min_lr: f64,
        /// Warm-up length in epochs.
        #[serde(default)]
        warmup_epochs: u32,
        /// Warm-up length in steps.
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Multiplies the rate by `factor` when `metric` has not improved by more than
    /// `min_delta` for more than `patience` epochs, never going below `min_lr`.
    ReduceOnPlateau {
        /// The watched metric.
        #[serde(default)]
        metric: Metric,
        /// Whether lower or higher is better; min for losses, max for accuracies when omitted.
        #[serde(default)]
        mode: Option<MetricMode>,
        /// Factor applied at each reduction.
        #[serde(default = "default_gamma")]
        factor: f64,
        /// Epochs without improvement tolerated before a reduction.
        #[serde(default = "default_plateau_patience")]
        patience: u32,
        /// The smallest change that counts as an improvement.
        #[serde(default)]
        min_delta: f64,
        /// The rate is never reduced below this.
        #[serde(default)]
        min_lr: f64,
        /// Warm-up length in epochs.
        #[serde(default)]
        warmup_epochs: u32,
        /// Warm-up length in steps.
        #[serde(default)]
        warmup_steps: u64,
    },
}

fn default_step_size() -> u32 {
    10
}
fn default_gamma() -> f64 {
    0.1
}
fn default_plateau_patience() -> u32 {
    10
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec::Constant {
            warmup_epochs: 0,
            warmup_steps: 0,
        }
    }
}

/// How long the linear warm-up lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warmup {
    /// No warm-up.
    None,
    /// Over this many epochs' worth of steps.
    Epochs(u32),
    /// Over this many steps.
    Steps(u64),
}

impl ScheduleSpec {
    /// The warm-up this schedule asks for.
    pub fn warmup(&self) -> Warmup {
        match self.warmup_fields() {
            (0, 0) => Warmup::None,
            (0, steps) => Warmup::Steps(steps),
            (epochs, _) => Warmup::Epochs(epochs),
        }
    }

    /// `(warmup_epochs, warmup_steps)` as written.
    fn warmup_fields(&self) -> (u32, u64) {
        match self {
            ScheduleSpec::Constant {
                warmup_epochs,
                warmup_steps,
            }
            | ScheduleSpec::Step {
                warmup_epochs,
                warmup_steps,
                ..
            }
            | ScheduleSpec::Cosine {
                warmup_epochs,
                warmup_steps,
                ..
            }
            | ScheduleSpec::ReduceOnPlateau {
                warmup_epochs,
                warmup_steps,
                ..
            } => (*warmup_epochs, *warmup_steps),
        }
    }

    fn validate(&self, training: &TrainingSpec) -> Result<()> {
        const FIELD: &str = "training.schedule";
        let field = |name: &str| format!("{FIELD}.{name}");
        let lr = training.optimizer.lr();
        match self {
            ScheduleSpec::Constant { .. } => {}
            ScheduleSpec::Step {
                step_size, gamma, ..
            } => {
                int_range(*step_size, 1, 10_000, &field("step_size"))?;
                positive_at_most(*gamma, 1.0, &field("gamma"))?;
            }
            ScheduleSpec::Cosine { min_lr, .. } => {
                check(
                    min_lr.is_finite() && *min_lr >= 0.0 && *min_lr <= lr,
                    &field("min_lr"),
                    || {
                        format!(
                            "{min_lr} is out of range; valid: 0 <= min_lr <= the optimizer's lr ({lr})"
                        )
                    },
                )?;
            }
            ScheduleSpec::ReduceOnPlateau {
                factor,
                patience,
                min_delta,
                min_lr,
                ..
            } => {
                unit_interval(*factor, &field("factor"), false)?;
                int_range(*patience, 0, 10_000, &field("patience"))?;
                non_negative_at_most(*min_delta, 1e6, &field("min_delta"))?;
                check(
                    min_lr.is_finite() && *min_lr >= 0.0 && *min_lr <= lr,
                    &field("min_lr"),
                    || {
                        format!(
                            "{min_lr} is out of range; valid: 0 <= min_lr <= the optimizer's lr ({lr})"
                        )
                    },
                )?;
            }
        }
        let (warmup_epochs, warmup_steps) = self.warmup_fields();
        check(
            warmup_epochs == 0 || warmup_steps == 0,
            &field("warmup_steps"),
            || "give warmup_epochs or warmup_steps, not both".into(),
        )?;
        int_range(warmup_epochs, 0, training.epochs, &field("warmup_epochs"))?;
        int_range(warmup_steps, 0, 1_000_000_000, &field("warmup_steps"))?;
        Ok(())
    }
}

/// A per-epoch metric that schedules and early stopping can watch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Validation loss.
    #[default]
    ValLoss,
    /// Validation accuracy.
    ValAcc,
    /// Running mean of the training loss over the epoch's steps (train mode).
    TrainLoss,
    /// Running training accuracy over the epoch's steps (train mode).
    TrainAcc,
    /// Training loss measured in eval mode at the epoch's end.
    TrainEvalLoss,
    /// Training accuracy measured in eval mode at the epoch's end.
    TrainEvalAcc,
}

impl Metric {
    /// The metric's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::ValLoss => "val_loss",
            Metric::ValAcc => "val_acc",
            Metric::TrainLoss => "train_loss",
            Metric::TrainAcc => "train_acc",
            Metric::TrainEvalLoss => "train_eval_loss",
            Metric::TrainEvalAcc => "train_eval_acc",
        }
    }

    /// Lower is better for losses, higher for accuracies.
    pub(crate) fn default_mode(self) -> MetricMode {
        match self {
            Metric::ValLoss | Metric::TrainLoss | Metric::TrainEvalLoss => MetricMode::Min,
            Metric::ValAcc | Metric::TrainAcc | Metric::TrainEvalAcc => MetricMode::Max,
        }
    }
}

/// Whether lower or higher values of a metric are better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricMode {
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// Gradient clipping: first each element to [-max_value, max_value], then the global L2 norm
/// of all gradients to at most max_norm.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradClipSpec {
    /// Largest global L2 norm of all gradients together.
    #[serde(default)]
    pub max_norm: Option<f64>,
    /// Largest absolute value of any gradient element.
    #[serde(default)]
    pub max_value: Option<f64>,
}

/// Stops training when `metric` has not improved by more than `min_delta` for `patience`
/// epochs in a row; the job then succeeds, saying at which epoch and why it stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStoppingSpec {
    /// The watched metric.
    #[serde(default)]
    pub metric: Metric,
    /// Whether lower or higher is better; min for losses, max for accuracies when omitted.
    #[serde(default)]
    pub mode: Option<MetricMode>,
    /// Epochs without improvement before stopping.
    #[serde(default = "default_early_patience")]
    pub patience: u32,
    /// The smallest change that counts as an improvement.
    #[serde(default)]
    pub min_delta: f64,
}

fn default_early_patience() -> u32 {
    10
}

impl TrainingSpec {
    /// Rejects impossible values, naming the field.
    pub(super) fn validate(&self) -> Result<()> {
        int_range(self.epochs, 1, 10_000, "training.epochs")?;
        int_range(self.batch_size, 1, 65_536, "training.batch_size")?;
        self.optimizer.validate()?;
        self.schedule.validate(self)?;
        if let Some(clip) = &self.grad_clip {
            check(
                clip.max_norm.is_some() || clip.max_value.is_some(),
                "training.grad_clip",
                || "give max_norm, max_value or both (or null for no clipping)".into(),
            )?;
            if let Some(max_norm) = clip.max_norm {
                positive_at_most(max_norm, 1e6, "training.grad_clip.max_norm")?;
            }
            if let Some(max_value) = clip.max_value {
                positive_at_most(max_value, 1e6, "training.grad_clip.max_value")?;
            }
        }
        if let Some(early) = &self.early_stopping {
            int_range(
                early.patience,
                1,
                10_000,
                "training.early_stopping.patience",
            )?;
            non_negative_at_most(early.min_delta, 1e6, "training.early_stopping.min_delta")?;
        }
        Ok(())
    }

    /// Resolves what the user left to defaults that depend on other fields (metric modes).
    pub(super) fn fill_defaults(&mut self) {
        if let ScheduleSpec::ReduceOnPlateau { metric, mode, .. } = &mut self.schedule {
            mode.get_or_insert(metric.default_mode());
        }
        if let Some(early) = &mut self.early_stopping {
            early.mode.get_or_insert(early.metric.default_mode());
        }
    }
}
