use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::{better, mean_std};
use crate::domain::{Goal, JobId, RankMetric};

/// One trial's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct TrialResult {
    /// Position in the sweep.
    pub index: i64,
    /// Axis values.
    pub params: BTreeMap<String, Value>,
    /// Repeat (seed offset).
    pub repeat: i64,
    /// The trial's current job.
    pub job_id: JobId,
    /// That job's status.
    pub status: String,
    /// Epoch with the best value of the sweep's metric.
    pub best_epoch: Option<i64>,
    /// The metric there.
    pub best_value: Option<f64>,
    /// Epochs recorded.
    pub epochs_done: i64,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// The sweep's pruning rule stopped it early.
    pub pruned: bool,
    /// Why it stopped early (pruned or early stopping), if it did.
    pub stop_reason: Option<String>,
}

/// The metric for one value of one axis, over every trial that used it.
#[derive(Clone, Debug, Serialize)]
pub struct AxisValueEffect {
    /// The axis value.
    pub value: Value,
    /// Trials with a result.
    pub trials: usize,
    /// Mean of their best values.
    pub mean: Option<f64>,
    /// Spread (standard deviation) over seeds and other axes.
    pub std: Option<f64>,
    /// The best of them.
    pub best: Option<f64>,
}

/// How the metric moves along one axis.
#[derive(Clone, Debug, Serialize)]
pub struct AxisEffect {
    /// The dotted spec path.
    pub path: String,
    /// Per value, in the order the sweep tried them.
    pub values: Vec<AxisValueEffect>,
}

/// Mean metric for every pair of values of two axes: the data behind a heatmap.
#[derive(Clone, Debug, Serialize)]
pub struct HeatmapGrid {
    /// Axis along columns.
    pub x_axis: String,
    /// Axis along rows.
    pub y_axis: String,
    /// Column values.
    pub x_values: Vec<Value>,
    /// Row values.
    pub y_values: Vec<Value>,
    /// `mean[row][column]`, absent where no trial finished.
    pub mean: Vec<Vec<Option<f64>>>,
}

/// A sweep's trials judged on one metric.
#[derive(Clone, Debug, Serialize)]
pub struct SweepSummary {
    /// The metric.
    pub metric: RankMetric,
    /// Its goal.
    pub goal: Goal,
    /// Trials per job status.
    pub status_counts: BTreeMap<String, usize>,
    /// Trials stopped by the pruning rule (counted as succeeded in `status_counts`).
    pub pruned_trials: usize,
    /// Index of the best trial.
    pub best_trial: Option<i64>,
    /// Index of the worst trial with a result.
    pub worst_trial: Option<i64>,
    /// Effect of each axis.
    pub axes: Vec<AxisEffect>,
    /// For exactly two axes, the grid behind a heatmap.
    pub heatmap: Option<HeatmapGrid>,
    /// Every trial.
    pub trials: Vec<TrialResult>,
}

fn values_in_order(trials: &[TrialResult], path: &str) -> Vec<Value> {
    let mut seen: Vec<Value> = Vec::new();
    for trial in trials {
        if let Some(v) = trial.params.get(path)
            && !seen.contains(v)
        {
            seen.push(v.clone());
        }
    }
    seen
}

/// Summarizes a sweep: best and worst trial, per-axis effects and, for two axes, a grid.
pub fn summarize_sweep(
    metric: RankMetric,
    goal: Goal,
    axes: &[String],
    trials: Vec<TrialResult>,
) -> SweepSummary {
    let mut status_counts = BTreeMap::new();
    for trial in &trials {
        *status_counts.entry(trial.status.clone()).or_insert(0) += 1;
    }
    let pruned_trials = trials.iter().filter(|t| t.pruned).count();
    let scored: Vec<&TrialResult> = trials
        .iter()
        .filter(|t| t.best_value.is_some_and(f64::is_finite))
        .collect();
    let pick = |want_best: bool| {
        scored
            .iter()
            .fold(None::<&&TrialResult>, |acc, t| match acc {
                Some(a) => {
                    let (tv, av) = (
                        t.best_value.unwrap_or(f64::NAN),
                        a.best_value.unwrap_or(f64::NAN),
                    );
                    if better(tv, av, goal) == want_best && tv != av {
                        Some(t)
                    } else {
                        Some(a)
                    }
                }
                None => Some(t),
            })
            .map(|t| t.index)
    };
    let best_trial = pick(true);
    let worst_trial = pick(false);
    let effects: Vec<AxisEffect> = axes
        .iter()
        .map(|path| AxisEffect {
            path: path.clone(),
            values: values_in_order(&trials, path)
                .into_iter()
                .map(|value| {
                    let results: Vec<f64> = scored
                        .iter()
                        .filter(|t| t.params.get(path) == Some(&value))
                        .filter_map(|t| t.best_value)
                        .collect();
                    let (mean, std) = mean_std(&results);
                    let best = results
                        .iter()
                        .copied()
                        .reduce(|a, b| if better(b, a, goal) { b } else { a });
                    AxisValueEffect {
                        value,
                        trials: results.len(),
                        mean: (!results.is_empty()).then_some(mean),
                        std: (!results.is_empty()).then_some(std),
                        best,
                    }
                })
                .collect(),
        })
        .collect();
    let heatmap = (axes.len() == 2).then(|| {
        let (x_axis, y_axis) = (axes[0].clone(), axes[1].clone());
        let x_values = values_in_order(&trials, &x_axis);
        let y_values = values_in_order(&trials, &y_axis);
        let mean = y_values
            .iter()
            .map(|y| {
                x_values
                    .iter()
                    .map(|x| {
                        let results: Vec<f64> = scored
                            .iter()
                            .filter(|t| {
                                t.params.get(&x_axis) == Some(x) && t.params.get(&y_axis) == Some(y)
                            })
                            .filter_map(|t| t.best_value)
                            .collect();
                        (!results.is_empty()).then(|| mean_std(&results).0)
                    })
                    .collect()
            })
            .collect();
        HeatmapGrid {
            x_axis,
            y_axis,
            x_values,
            y_values,
            mean,
        }
    });
    SweepSummary {
        metric,
        goal,
        status_counts,
        pruned_trials,
        best_trial,
        worst_trial,
        axes: effects,
        heatmap,
        trials,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn trial(index: i64, lr: f64, depth: i64, value: Option<f64>) -> TrialResult {
        TrialResult {
            index,
            params: BTreeMap::from([
                ("lr".to_string(), json!(lr)),
                ("depth".to_string(), json!(depth)),
            ]),
            repeat: 0,
            job_id: JobId::new(),
            status: if value.is_some() {
                "succeeded"
            } else {
                "failed"
            }
            .into(),
            best_epoch: value.map(|_| 1),
            best_value: value,
            epochs_done: 1,
            failure: None,
            pruned: false,
            stop_reason: None,
        }
    }

    #[test]
    fn the_summary_ranks_trials_and_averages_each_axis() {
        let trials = vec![
            trial(0, 0.1, 1, Some(0.5)),
            trial(1, 0.1, 2, None),
            trial(2, 0.01, 1, Some(0.9)),
            trial(3, 0.01, 2, Some(0.7)),
        ];
        let s = summarize_sweep(
            RankMetric::ValAcc,
            Goal::Max,
            &["lr".into(), "depth".into()],
            trials,
        );
        assert_eq!(s.best_trial, Some(2));
        assert_eq!(s.worst_trial, Some(0));
        assert_eq!(s.status_counts["failed"], 1);
        let lr = &s.axes[0];
        assert_eq!(lr.values[0].value, json!(0.1));
        assert_eq!(lr.values[0].trials, 1);
        assert!((lr.values[1].mean.unwrap() - 0.8).abs() < 1e-12);
        assert!((lr.values[1].std.unwrap() - 0.1).abs() < 1e-12);
        let grid = s.heatmap.unwrap();
        assert_eq!(
            grid.mean,
            vec![vec![Some(0.5), Some(0.9)], vec![None, Some(0.7)]]
        );
    }
}
