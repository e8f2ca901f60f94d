//! Learning-rate schedules: constant, step, cosine and reduce-on-plateau, each optionally with a
//! linear warm-up. The rate is a pure function of the step and (for reduce-on-plateau) of state
//! saved in checkpoints, so a resumed job uses exactly the rates an uninterrupted one would.

use std::collections::HashMap;
use std::f64::consts::PI;

use candle_core::{Device, Tensor};

use super::EpochMetrics;
use super::monitor::Watch;
use crate::error::Result;
use crate::spec::{ScheduleSpec, TrainingSpec, Warmup};

/// Name of the schedule's state inside a checkpoint's trainer section.
const STATE_KEY: &str = "schedule";

/// The learning rate of every step of a run.
pub(crate) struct Schedule {
    spec: ScheduleSpec,
    base_lr: f64,
    steps_per_epoch: u64,
    total_steps: u64,
    warmup_steps: u64,
    plateau: Option<Plateau>,
}

/// Reduce-on-plateau's current rate and its watch on the metric.
struct Plateau {
    lr: f64,
    watch: Watch,
}

impl Schedule {
    /// The schedule of `training` for epochs of `steps_per_epoch` steps.
    pub(crate) fn new(training: &TrainingSpec, steps_per_epoch: u64) -> Self {
        let base_lr = training.optimizer.lr();
        let spec = training.schedule.clone();
        let warmup_steps = match spec.warmup() {
            Warmup::None => 0,
            Warmup::Epochs(epochs) => u64::from(epochs).saturating_mul(steps_per_epoch),
            Warmup::Steps(steps) => steps,
        };
        let plateau = match &spec {
            ScheduleSpec::ReduceOnPlateau {
                metric,
                mode,
                min_delta,
                ..
            } => Some(Plateau {
                lr: base_lr,
                watch: Watch::new(*metric, *mode, *min_delta),
            }),
            _ => None,
        };
        Schedule {
            spec,
            base_lr,
            steps_per_epoch,
            total_steps: steps_per_epoch.saturating_mul(u64::from(training.epochs)),
            warmup_steps,
            plateau,
        }
    }

    /// The rate of step `step_in_epoch` (0-based) of `epoch` (1-based).
    pub(crate) fn lr(&self, epoch: u32, step_in_epoch: u64) -> f64 {
        let step = u64::from(epoch.saturating_sub(1)) * self.steps_per_epoch + step_in_epoch + 1;
        let scheduled = match &self.spec {
            ScheduleSpec::Constant { .. } => self.base_lr,
            ScheduleSpec::Step {
                step_size, gamma, ..
            } => {
                let decays = epoch.saturating_sub(1) / (*step_size).max(1);
                self.base_lr * gamma.powi(i32::try_from(decays).unwrap_or(i32::MAX))
            }
            ScheduleSpec::Cosine { min_lr, .. } => {
                let span = self
                    .total_steps
                    .saturating_sub(self.warmup_steps)
                    .saturating_sub(1)
                    .max(1);
                let done = step.saturating_sub(self.warmup_steps + 1);
                let progress = (done as f64 / span as f64).clamp(0.0, 1.0);
                min_lr + (self.base_lr - min_lr) * (1.0 + (PI * progress).cos()) / 2.0
            }
            ScheduleSpec::ReduceOnPlateau { .. } => {
                self.plateau.as_ref().map_or(self.base_lr, |p| p.lr)
            }
        };
        if step <= self.warmup_steps {
            scheduled * step as f64 / self.warmup_steps as f64
        } else {
            scheduled
        }
    }

    /// Takes an epoch's measurements into account (reduce-on-plateau lowers the rate here).
    pub(crate) fn end_epoch(&mut self, epoch: u32, metrics: &EpochMetrics) {
        let ScheduleSpec::ReduceOnPlateau {
            factor,
            patience,
            min_lr,
            ..
        } = &self.spec
        else {
            return;
        };
        let Some(plateau) = &mut self.plateau else {
            return;
        };
        plateau.watch.observe(epoch, metrics);
        if plateau.watch.bad_epochs() > *patience {
            plateau.lr = (plateau.lr * factor).max(*min_lr);
            plateau.watch.reset_bad_epochs();
        }
    }

    /// The state, for a checkpoint (nothing for stateless schedules).
    pub(crate) fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let Some(plateau) = &self.plateau else {
            return Ok(Vec::new());
        };
        let watch = plateau.watch.state()?.to_vec1::<f64>()?;
        let values: Vec<f64> = std::iter::once(plateau.lr).chain(watch).collect();
        Ok(vec![(
            STATE_KEY.to_string(),
            Tensor::new(values.as_slice(), &Device::Cpu)?,
        )])
    }

    /// Restores the state from a checkpoint's trainer section; absent state means a fresh one.
    pub(crate) fn load_state(&mut self, trainer: &HashMap<String, Tensor>) -> Result<()> {
        if let (Some(plateau), Some(saved)) = (&mut self.plateau, trainer.get(STATE_KEY)) {
            let values = saved.to_vec1::<f64>()?;
            if let Some(lr) = values.first() {
                plateau.lr = *lr;
            }
            plateau.watch.load_state(&values, 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Metric, OptimizerSpec};

    fn training(schedule: ScheduleSpec, epochs: u32) -> TrainingSpec {
        TrainingSpec {
            optimizer: OptimizerSpec::Sgd {
                lr: 1.0,
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            epochs,
            schedule,
            ..TrainingSpec::default()
        }
    }

    fn epoch_rates(schedule: &Schedule, epochs: u32) -> Vec<f64> {
        (1..=epochs).map(|e| schedule.lr(e, 0)).collect()
    }

    fn assert_close(actual: &[f64], expected: &[f64]) {
        assert_eq!(actual.len(), expected.len());
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-12, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn constant_is_the_optimizers_rate_throughout() {
        let s = Schedule::new(&training(ScheduleSpec::default(), 3), 10);
        assert_eq!(epoch_rates(&s, 3), vec![1.0, 1.0, 1.0]);
        assert_eq!(s.lr(3, 9), 1.0);
    }

    #[test]
    fn step_multiplies_by_gamma_every_step_size_epochs() {
        let spec = ScheduleSpec::Step {
            step_size: 2,
            gamma: 0.5,
            warmup_epochs: 0,
            warmup_steps: 0,
        };
        let s = Schedule::new(&training(spec, 6), 4);
        assert_close(&epoch_rates(&s, 6), &[1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
        assert_eq!(s.lr(2, 3), 1.0, "constant within an epoch");
    }

    #[test]
    fn cosine_goes_from_the_rate_to_min_lr_over_the_run() {
        let spec = ScheduleSpec::Cosine {
            min_lr: 0.1,
            warmup_epochs: 0,
            warmup_steps: 0,
        };
        // 5 steps: progress 0, 1/4, 1/2, 3/4, 1.
        let s = Schedule::new(&training(spec, 5), 1);
        let half = 0.1 + 0.9 * (1.0 + (PI / 4.0).cos()) / 2.0;
        let quarter = 0.1 + 0.9 * (1.0 + (3.0 * PI / 4.0).cos()) / 2.0;
        assert_close(&epoch_rates(&s, 5), &[1.0, half, 0.55, quarter, 0.1]);
    }

    #[test]
    fn warmup_rises_linearly_then_hands_over() {
        let spec = ScheduleSpec::Step {
            step_size: 1,
            gamma: 0.5,
            warmup_epochs: 0,
            warmup_steps: 4,
        };
        let s = Schedule::new(&training(spec, 3), 2);
        let rates: Vec<f64> = (1..=3).flat_map(|e| [s.lr(e, 0), s.lr(e, 1)]).collect();
        // Steps 1-4 are warm-up on top of the step schedule (1, 1, 0.5, 0.5), then 0.25.
        assert_close(&rates, &[0.25, 0.5, 0.375, 0.5, 0.25, 0.25]);
        let spec = ScheduleSpec::Cosine {
            min_lr: 0.0,
            warmup_epochs: 1,
            warmup_steps: 0,
        };
        let s = Schedule::new(&training(spec, 3), 2);
        // Warm-up over epoch 1 (steps 1, 2), then cosine over steps 3..6 from 1 to 0.
        assert_close(
            &[s.lr(1, 0), s.lr(1, 1), s.lr(2, 0), s.lr(3, 1)],
            &[0.5, 1.0, 1.0, 0.0],
        );
    }

    fn plateau(patience: u32) -> ScheduleSpec {
        ScheduleSpec::ReduceOnPlateau {
            metric: Metric::ValLoss,
            mode: None,
            factor: 0.5,
            patience,
            min_delta: 0.0,
            min_lr: 0.2,
            warmup_epochs: 0,
            warmup_steps: 0,
        }
    }

    fn val_loss(value: f64) -> EpochMetrics {
        EpochMetrics {
            val_loss: value,
            ..EpochMetrics::default()
        }
    }

    #[test]
    fn reduce_on_plateau_cuts_the_rate_after_patience_bad_epochs_down_to_min_lr() {
        let mut s = Schedule::new(&training(plateau(1), 10), 5);
        let mut rates = Vec::new();
        for (epoch, loss) in [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0]
            .iter()
            .enumerate()
        {
            let epoch = epoch as u32 + 1;
            rates.push(s.lr(epoch, 0));
            s.end_epoch(epoch, &val_loss(*loss));
        }
        // Two bad epochs (> patience 1) halve the rate: after epochs 4 and 6; 0.25 → 0.2 floor at 8.
        assert_close(&rates, &[1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
        assert_eq!(s.lr(9, 0), 0.2);
    }

    #[test]
    fn reduce_on_plateau_state_survives_a_checkpoint() {
        let mut straight = Schedule::new(&training(plateau(1), 10), 5);
        for (epoch, loss) in [1.0, 1.1, 1.2, 0.5, 0.6].iter().enumerate() {
            straight.end_epoch(epoch as u32 + 1, &val_loss(*loss));
        }
        let saved: HashMap<String, Tensor> = straight.state().unwrap().into_iter().collect();
        let mut resumed = Schedule::new(&training(plateau(1), 10), 5);
        resumed.load_state(&saved).unwrap();
        for (epoch, loss) in [(6, 0.7), (7, 0.8), (8, 0.9)] {
            assert_eq!(resumed.lr(epoch, 0), straight.lr(epoch, 0));
            straight.end_epoch(epoch, &val_loss(loss));
            resumed.end_epoch(epoch, &val_loss(loss));
        }
        assert_eq!(resumed.lr(9, 0), straight.lr(9, 0));
        assert_eq!(straight.lr(9, 0), 0.2, "0.5, then 0.25, then the 0.2 floor");
    }
}
