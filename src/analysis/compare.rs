use serde::Serialize;

use super::{best_epoch, metric_value};
use crate::domain::{Goal, JobId, RankMetric};
use crate::store::EpochRow;

/// Epochs the validation loss must keep rising (while training loss falls) to call overfitting.
pub const OVERFIT_PATIENCE: usize = 3;

/// How one job did, judged on its stored epochs.
#[derive(Clone, Debug, Serialize)]
pub struct JobSummary {
    /// The job.
    pub job_id: JobId,
    /// Its name.
    pub name: String,
    /// Its status.
    pub status: String,
    /// 1-based rank among the compared jobs by the best value of the metric (None without epochs).
    pub rank: Option<usize>,
    /// The best epoch of the metric (not the last).
    pub best_epoch: Option<i64>,
    /// The metric at that epoch.
    pub best_value: Option<f64>,
    /// Epochs recorded.
    pub epochs: usize,
    /// Train-minus-validation and train-minus-test gaps.
    pub generalization: GapSummary,
    /// The epoch after which validation loss only rose while training loss kept falling.
    pub overfitting_onset: Option<i64>,
    /// Speed.
    pub speed: SpeedSummary,
    /// The curves, aligned by epoch (downsampled for long runs).
    pub curve: Vec<CurvePoint>,
    /// What the diagnosis finds about this run.
    pub findings: Vec<super::Finding>,
}

/// Accuracy and loss gaps between training and held-out data.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GapSummary {
    /// train_acc − val_acc at the best epoch.
    pub train_val_acc_gap_at_best: Option<f64>,
    /// train_acc − test_acc at the best epoch.
    pub train_test_acc_gap_at_best: Option<f64>,
    /// val_loss − train_loss at the best epoch.
    pub val_train_loss_gap_at_best: Option<f64>,
    /// train_acc − val_acc at the last epoch.
    pub train_val_acc_gap_at_end: Option<f64>,
    /// train_acc − test_acc at the last epoch.
    pub train_test_acc_gap_at_end: Option<f64>,
    /// val_loss − train_loss at the last epoch.
    pub val_train_loss_gap_at_end: Option<f64>,
}

/// How fast a job trained.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SpeedSummary {
    /// Mean seconds per epoch.
    pub mean_epoch_seconds: Option<f64>,
    /// Median training samples per second.
    pub median_samples_per_sec: Option<f64>,
    /// Total seconds of all epochs.
    pub total_seconds: f64,
    /// Seconds until the metric first reached 90% of its best (for losses: best / 0.9).
    pub seconds_to_90pct_of_best: Option<f64>,
    /// The same for 99%.
    pub seconds_to_99pct_of_best: Option<f64>,
}

/// One epoch of a learning curve.
#[derive(Clone, Debug, Serialize)]
pub struct CurvePoint {
    /// Epoch number.
    pub epoch: i64,
    /// Training loss (running mean).
    pub train_loss: f64,
    /// Training accuracy (running).
    pub train_acc: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy.
    pub val_acc: f64,
    /// Test loss.
    pub test_loss: Option<f64>,
    /// Test accuracy.
    pub test_acc: Option<f64>,
}

/// A comparison of several jobs on one metric.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The metric ranked by.
    pub metric: RankMetric,
    /// Whether higher or lower is better.
    pub goal: Goal,
    /// The jobs, best first (jobs without epochs last).
    pub jobs: Vec<JobSummary>,
}

/// Summarizes one job's epochs.
pub fn compare_job(
    job_id: JobId,
    name: &str,
    status: &str,
    epochs: &[EpochRow],
    metric: RankMetric,
    goal: Goal,
    max_points: usize,
) -> JobSummary {
    let best = best_epoch(epochs, metric, goal);
    let last = epochs.last();
    let gap = |e: Option<&EpochRow>, f: fn(&EpochRow) -> Option<f64>| e.and_then(f);
    let generalization = GapSummary {
        train_val_acc_gap_at_best: gap(best, |e| Some(e.train_acc - e.val_acc)),
        train_test_acc_gap_at_best: gap(best, |e| e.test_acc.map(|t| e.train_acc - t)),
        val_train_loss_gap_at_best: gap(best, |e| Some(e.val_loss - e.train_loss)),
        train_val_acc_gap_at_end: gap(last, |e| Some(e.train_acc - e.val_acc)),
        train_test_acc_gap_at_end: gap(last, |e| e.test_acc.map(|t| e.train_acc - t)),
        val_train_loss_gap_at_end: gap(last, |e| Some(e.val_loss - e.train_loss)),
    };
    let best_value = best.and_then(|e| metric_value(e, metric));
    JobSummary {
        job_id,
        name: name.to_string(),
        status: status.to_string(),
        rank: None,
        best_epoch: best.map(|e| e.epoch),
        best_value,
        epochs: epochs.len(),
        generalization,
        overfitting_onset: overfitting_onset(epochs),
        speed: speed(epochs, metric, goal, best_value),
        curve: downsample(epochs, best.map(|e| e.epoch), max_points),
        findings: Vec::new(),
    }
}

/// The epoch after which validation loss rose in every one of at least [`OVERFIT_PATIENCE`]
/// later epochs (never returning to its minimum) while training loss kept falling.
pub fn overfitting_onset(epochs: &[EpochRow]) -> Option<i64> {
    let (at, min) = epochs
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.val_loss.total_cmp(&b.1.val_loss))?;
    let later = &epochs[at + 1..];
    if later.len() < OVERFIT_PATIENCE {
        return None;
    }
    let rises = later.iter().all(|e| e.val_loss > min.val_loss);
    let last = later.last()?;
    let trend_up = last.val_loss > min.val_loss * 1.02;
    let train_falls = last.train_loss < min.train_loss;
    (rises && trend_up && train_falls).then_some(min.epoch)
}

fn speed(epochs: &[EpochRow], metric: RankMetric, goal: Goal, best: Option<f64>) -> SpeedSummary {
    if epochs.is_empty() {
        return SpeedSummary::default();
    }
    let total_seconds: f64 = epochs.iter().map(|e| e.epoch_seconds).sum();
    let mut rates: Vec<f64> = epochs.iter().map(|e| e.samples_per_sec).collect();
    rates.sort_by(f64::total_cmp);
    let reach = |fraction: f64| -> Option<f64> {
        let best = best?;
        let mut elapsed = 0.0;
        for e in epochs {
            elapsed += e.epoch_seconds;
            let value = metric_value(e, metric)?;
            let reached = match goal {
                Goal::Max => value >= best * fraction,
                Goal::Min => value <= best / fraction,
            };
            if reached {
                return Some(elapsed);
            }
        }
        None
    };
    SpeedSummary {
        mean_epoch_seconds: Some(total_seconds / epochs.len() as f64),
        median_samples_per_sec: Some(rates[rates.len() / 2]),
        total_seconds,
        seconds_to_90pct_of_best: reach(0.9),
        seconds_to_99pct_of_best: reach(0.99),
    }
}

/// At most `max_points` epochs, evenly spaced, always keeping the first, the best and the last.
fn downsample(epochs: &[EpochRow], best: Option<i64>, max_points: usize) -> Vec<CurvePoint> {
    let point = |e: &EpochRow| CurvePoint {
        epoch: e.epoch,
        train_loss: e.train_loss,
        train_acc: e.train_acc,
        val_loss: e.val_loss,
        val_acc: e.val_acc,
        test_loss: e.test_loss,
        test_acc: e.test_acc,
    };
    let max_points = max_points.max(3);
    if epochs.len() <= max_points {
        return epochs.iter().map(point).collect();
    }
    let step = (epochs.len() - 1) as f64 / (max_points - 1) as f64;
    let mut keep: Vec<usize> = (0..max_points)
        .map(|i| (i as f64 * step).round() as usize)
        .collect();
    if let Some(b) = best.and_then(|b| epochs.iter().position(|e| e.epoch == b)) {
        keep.push(b);
    }
    keep.sort_unstable();
    keep.dedup();
    keep.into_iter().map(|i| point(&epochs[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::epoch;

    #[test]
    fn overfitting_is_found_where_validation_loss_turns_up_while_training_loss_falls() {
        let val = [1.0, 0.6, 0.4, 0.35, 0.38, 0.42, 0.47, 0.55];
        let epochs: Vec<EpochRow> = val
            .iter()
            .enumerate()
            .map(|(i, v)| epoch(i as i64 + 1, 1.0 / (i as f64 + 1.0), *v, 0.9))
            .collect();
        assert_eq!(overfitting_onset(&epochs), Some(4));
        let improving: Vec<EpochRow> = (1..=8)
            .map(|i| epoch(i, 1.0 / i as f64, 1.0 / i as f64, 0.9))
            .collect();
        assert_eq!(overfitting_onset(&improving), None);
        // A bump that recovers is noise, not overfitting.
        let bumpy = [1.0, 0.5, 0.55, 0.6, 0.45, 0.44];
        let epochs: Vec<EpochRow> = bumpy
            .iter()
            .enumerate()
            .map(|(i, v)| epoch(i as i64 + 1, 1.0 / (i as f64 + 1.0), *v, 0.9))
            .collect();
        assert_eq!(overfitting_onset(&epochs), None);
    }

    #[test]
    fn the_best_epoch_not_the_last_is_what_counts() {
        let accs = [0.5, 0.8, 0.9, 0.85, 0.7];
        let epochs: Vec<EpochRow> = accs
            .iter()
            .enumerate()
            .map(|(i, a)| epoch(i as i64 + 1, 0.5, 0.5, *a))
            .collect();
        let summary = compare_job(
            JobId::new(),
            "j",
            "succeeded",
            &epochs,
            RankMetric::ValAcc,
            Goal::Max,
            100,
        );
        assert_eq!(summary.best_epoch, Some(3));
        assert_eq!(summary.best_value, Some(0.9));
        assert_eq!(
            summary.speed.seconds_to_90pct_of_best,
            Some(1.5),
            "0.8 < 0.9 × 0.9, so epoch 3"
        );
    }

    #[test]
    fn long_curves_are_downsampled_keeping_the_ends_and_the_best() {
        let epochs: Vec<EpochRow> = (1..=1000)
            .map(|i| epoch(i, 0.5, 0.5, if i == 333 { 0.99 } else { 0.5 }))
            .collect();
        let summary = compare_job(
            JobId::new(),
            "j",
            "succeeded",
            &epochs,
            RankMetric::ValAcc,
            Goal::Max,
            50,
        );
        let kept: Vec<i64> = summary.curve.iter().map(|p| p.epoch).collect();
        assert!(kept.len() <= 51);
        assert_eq!(kept.first(), Some(&1));
        assert_eq!(kept.last(), Some(&1000));
        assert!(kept.contains(&333));
    }
}
