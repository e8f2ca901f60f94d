//! Watching a per-epoch metric for improvement: the shared logic of reduce-on-plateau and
//! early stopping, with state that goes into checkpoints so a resumed job decides the same.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::EpochMetrics;
use crate::error::Result;
use crate::spec::{EarlyStoppingSpec, Metric, MetricMode};

/// The value of `metric` in an epoch's measurements.
pub(crate) fn metric_value(metrics: &EpochMetrics, metric: Metric) -> f64 {
    match metric {
        Metric::ValLoss => metrics.val_loss,
        Metric::ValAcc => metrics.val_acc,
        Metric::TrainLoss => metrics.train_loss,
        Metric::TrainAcc => metrics.train_acc,
        Metric::TrainEvalLoss => metrics.train_eval_loss,
        Metric::TrainEvalAcc => metrics.train_eval_acc,
    }
}

/// The best value of a metric so far and how many epochs it has not improved.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Watch {
    metric: Metric,
    mode: MetricMode,
    min_delta: f64,
    best: Option<f64>,
    best_epoch: u32,
    bad_epochs: u32,
}

impl Watch {
    /// A watch that has seen nothing yet.
    pub(crate) fn new(metric: Metric, mode: Option<MetricMode>, min_delta: f64) -> Self {
        Watch {
            metric,
            mode: mode.unwrap_or(metric.default_mode()),
            min_delta,
            best: None,
            best_epoch: 0,
            bad_epochs: 0,
        }
    }

    /// Records an epoch; true when it improved on the best by more than `min_delta`.
    pub(crate) fn observe(&mut self, epoch: u32, metrics: &EpochMetrics) -> bool {
        let value = metric_value(metrics, self.metric);
        let improved = match self.best {
            None => value.is_finite(),
            Some(best) => match self.mode {
                MetricMode::Min => value < best - self.min_delta,
                MetricMode::Max => value > best + self.min_delta,
            },
        };
        if improved {
            self.best = Some(value);
            self.best_epoch = epoch;
            self.bad_epochs = 0;
        } else {
            self.bad_epochs += 1;
        }
        improved
    }

    /// Epochs in a row without improvement.
    pub(crate) fn bad_epochs(&self) -> u32 {
        self.bad_epochs
    }

    /// Starts counting again (after a learning-rate reduction).
    pub(crate) fn reset_bad_epochs(&mut self) {
        self.bad_epochs = 0;
    }

    /// The watched metric.
    pub(crate) fn metric(&self) -> Metric {
        self.metric
    }

    /// The best value so far and its epoch.
    pub(crate) fn best(&self) -> Option<(f64, u32)> {
        self.best.map(|b| (b, self.best_epoch))
    }

    /// `[best (NaN if none), best_epoch, bad_epochs]` as an f64 tensor.
    pub(crate) fn state(&self) -> Result<Tensor> {
        Ok(Tensor::new(
            &[
                self.best.unwrap_or(f64::NAN),
                f64::from(self.best_epoch),
                f64::from(self.bad_epochs),
            ],
            &Device::Cpu,
        )?)
    }

    /// Restores what [`Watch::state`] wrote (values from the tail of `saved` after `skip`).
    pub(crate) fn load_state(&mut self, saved: &[f64], skip: usize) {
        if let [best, best_epoch, bad_epochs] = saved.get(skip..skip + 3).unwrap_or(&[]) {
            self.best = (!best.is_nan()).then_some(*best);
            self.best_epoch = *best_epoch as u32;
            self.bad_epochs = *bad_epochs as u32;
        }
    }
}

/// Name of the early-stopping state inside a checkpoint's trainer section.
const EARLY_STOPPING_KEY: &str = "early_stopping";

/// Stops training after `patience` epochs in a row without improvement.
pub(crate) struct EarlyStopping {
    watch: Watch,
    patience: u32,
}

impl EarlyStopping {
    /// Fresh early stopping for a spec.
    pub(crate) fn new(spec: &EarlyStoppingSpec) -> Self {
        EarlyStopping {
            watch: Watch::new(spec.metric, spec.mode, spec.min_delta),
            patience: spec.patience,
        }
    }

    /// Records an epoch; `Some(reason)` when training should stop after it.
    pub(crate) fn observe(&mut self, epoch: u32, metrics: &EpochMetrics) -> Option<String> {
        self.watch.observe(epoch, metrics);
        if self.watch.bad_epochs() < self.patience {
            return None;
        }
        let metric = self.watch.metric().as_str();
        let best = match self.watch.best() {
            Some((value, at)) => format!("best {value:.6} at epoch {at}"),
            None => "no finite value yet".into(),
        };
        Some(format!(
            "{metric} did not improve by more than {} for {} epochs ({best})",
            self.watch.min_delta, self.patience
        ))
    }

    /// The state, for a checkpoint.
    pub(crate) fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(vec![(EARLY_STOPPING_KEY.to_string(), self.watch.state()?)])
    }

    /// Restores the state from a checkpoint's trainer section; absent state means a fresh one.
    pub(crate) fn load_state(&mut self, trainer: &HashMap<String, Tensor>) -> Result<()> {
        if let Some(saved) = trainer.get(EARLY_STOPPING_KEY) {
            self.watch.load_state(&saved.to_vec1::<f64>()?, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(val_loss: f64, val_acc: f64) -> EpochMetrics {
        EpochMetrics {
            val_loss,
            val_acc,
            ..EpochMetrics::default()
        }
    }

    fn early(metric: Metric, patience: u32, min_delta: f64) -> EarlyStopping {
        EarlyStopping::new(&EarlyStoppingSpec {
            metric,
            mode: None,
            patience,
            min_delta,
        })
    }

    #[test]
    fn early_stopping_waits_patience_epochs_without_improvement() {
        let mut stop = early(Metric::ValLoss, 2, 0.0);
        let losses = [1.0, 0.8, 0.85, 0.7, 0.75, 0.71];
        let decisions: Vec<bool> = losses
            .iter()
            .enumerate()
            .map(|(i, &l)| stop.observe(i as u32 + 1, &epoch(l, 0.0)).is_some())
            .collect();
        // 0.85 is one bad epoch, 0.7 resets, 0.75 and 0.71 are two: stop after epoch 6.
        assert_eq!(decisions, vec![false, false, false, false, false, true]);
        let reason = stop.observe(7, &epoch(0.9, 0.0)).unwrap();
        assert!(
            reason.contains("val_loss") && reason.contains("epoch 4"),
            "{reason}"
        );
    }

    #[test]
    fn accuracy_is_maximized_and_min_delta_demands_a_real_gain() {
        let mut stop = early(Metric::ValAcc, 2, 0.05);
        assert!(stop.observe(1, &epoch(0.0, 0.50)).is_none());
        assert!(stop.observe(2, &epoch(0.0, 0.54)).is_none()); // +0.04 is not enough
        assert!(stop.observe(3, &epoch(0.0, 0.53)).is_some());
        let mut up = early(Metric::ValAcc, 1, 0.0);
        up.observe(1, &epoch(0.0, 0.5));
        assert!(
            up.observe(2, &epoch(0.0, 0.6)).is_none(),
            "higher is better"
        );
    }

    #[test]
    fn early_stopping_state_survives_a_checkpoint() {
        let mut stop = early(Metric::ValLoss, 3, 0.0);
        stop.observe(1, &epoch(1.0, 0.0));
        stop.observe(2, &epoch(1.1, 0.0));
        let saved: HashMap<String, Tensor> = stop.state().unwrap().into_iter().collect();
        let mut resumed = early(Metric::ValLoss, 3, 0.0);
        resumed.load_state(&saved).unwrap();
        assert_eq!(resumed.watch, stop.watch);
        assert!(resumed.observe(3, &epoch(1.2, 0.0)).is_none());
        assert!(resumed.observe(4, &epoch(1.3, 0.0)).is_some());
    }

    #[test]
    fn a_nan_metric_never_counts_as_an_improvement() {
        let mut watch = Watch::new(Metric::ValLoss, None, 0.0);
        assert!(!watch.observe(1, &epoch(f64::NAN, 0.0)));
        assert!(watch.observe(2, &epoch(1.0, 0.0)));
        assert!(!watch.observe(3, &epoch(f64::NAN, 0.0)));
    }
}
