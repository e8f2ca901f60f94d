//! Pure functions over stored metrics: best epochs, generalization gaps, overfitting onset,
//! speed, sweep summaries, and charts of them (`plot`). No I/O; the API layer fetches and these
//! functions judge and draw.

mod compare;
mod diagnosis;
mod disagreements;
mod downsample;
pub mod plot;
mod pruning;
mod sweep;

pub use compare::{
    Comparison, CurvePoint, GapSummary, JobSummary, SpeedSummary, compare_job, overfitting_onset,
};
pub use diagnosis::{CHANCE_MULTIPLE, Finding, RunFacts, diagnose};
pub use disagreements::{Answer, Disagreement, DisagreementSets, disagreements};
pub use downsample::{StepPoint, downsample};
pub use pruning::prune_verdict;
pub use sweep::{
    AxisEffect, AxisValueEffect, HeatmapGrid, SweepSummary, TrialResult, summarize_sweep,
};

use crate::domain::{Goal, RankMetric};
use crate::store::EpochRow;

/// The value of a metric in an epoch (test metrics are absent without a test split).
pub fn metric_value(epoch: &EpochRow, metric: RankMetric) -> Option<f64> {
    match metric {
        RankMetric::ValAcc => Some(epoch.val_acc),
        RankMetric::ValLoss => Some(epoch.val_loss),
        RankMetric::TestAcc => epoch.test_acc,
        RankMetric::TestLoss => epoch.test_loss,
        RankMetric::TrainAcc => Some(epoch.train_acc),
        RankMetric::TrainLoss => Some(epoch.train_loss),
    }
}

/// True when `a` is strictly better than `b` under the goal.
pub fn better(a: f64, b: f64, goal: Goal) -> bool {
    match goal {
        Goal::Max => a > b,
        Goal::Min => a < b,
    }
}

/// The epoch with the best value of the metric (the earliest among ties).
pub fn best_epoch(epochs: &[EpochRow], metric: RankMetric, goal: Goal) -> Option<&EpochRow> {
    epochs
        .iter()
        .filter(|e| metric_value(e, metric).is_some_and(f64::is_finite))
        .fold(None, |best, e| match best {
            Some(b)
                if !better(
                    metric_value(e, metric).unwrap_or(f64::NAN),
                    metric_value(b, metric).unwrap_or(f64::NAN),
                    goal,
                ) =>
            {
                Some(b)
            }
            _ => Some(e),
        })
}

/// Mean and population standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    (mean, var.sqrt())
}

#[cfg(test)]
pub(crate) fn epoch(n: i64, train_loss: f64, val_loss: f64, val_acc: f64) -> EpochRow {
    EpochRow {
        epoch: n,
        train_loss,
        train_acc: 1.0 - train_loss / 3.0,
        val_loss,
        val_acc,
        test_loss: Some(val_loss * 1.1),
        test_acc: Some(val_acc - 0.01),
        lr: 0.001,
        steps: 10,
        train_eval_loss: Some(train_loss),
        train_eval_acc: Some(1.0 - train_loss / 3.0),
        step_loss_cv: Some(0.1),
        epoch_seconds: 0.5,
        samples_per_sec: 1000.0,
    }
}
