//! A sweep's summary as a chart: for two axes a heatmap of the mean metric (cells annotated,
//! missing cells visibly empty, the best cell outlined); for one axis the metric against the
//! parameter (mean with ±std error bars over seeds, every trial as a dot, a log x axis when
//! the values span more than a decade); for more axes one such panel per axis.

use serde_json::Value;

use super::effects::Effects;
use super::heatmap::{Heatmap, sorted};
use super::{ImageFormat, Message, fmt_tick, render, truncate};
use crate::analysis::SweepSummary;
use crate::error::Result;

/// Text for an axis value: numbers as short ticks (1e-5), strings bare, anything else as JSON.
pub(crate) fn fmt_param(value: &Value) -> String {
    let text = match value {
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), fmt_tick),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    truncate(&text, 16)
}

/// The sweep as an image: a heatmap for two axes, one panel per axis otherwise.
pub fn sweep_chart(name: &str, summary: &SweepSummary, format: ImageFormat) -> Result<Vec<u8>> {
    let metric = summary.metric.as_str();
    let scored = summary
        .trials
        .iter()
        .filter(|t| t.best_value.is_some_and(f64::is_finite))
        .count();
    let title = format!("Sweep {}: {metric}", truncate(name, 60));
    if summary.axes.is_empty() || scored == 0 {
        let message = if summary.axes.is_empty() {
            "This sweep has no axes to plot".to_string()
        } else {
            format!(
                "No trial has a {metric} yet ({} trials)",
                summary.trials.len()
            )
        };
        return render(
            &Message {
                size: (1000, 560),
                title,
                message,
            },
            format,
        );
    }
    let subtitle_counts = format!("{scored} of {} trials with a result", summary.trials.len());
    match &summary.heatmap {
        Some(grid) => render(
            &Heatmap {
                title: format!("{title} by {} and {}", grid.x_axis, grid.y_axis),
                subtitle: format!(
                    "mean over seeds of each trial's best epoch; {subtitle_counts}; outlined: best"
                ),
                grid: sorted(grid),
                goal: summary.goal,
                metric,
            },
            format,
        ),
        None => render(
            &Effects {
                title: if summary.axes.len() == 1 {
                    format!("{title} by {}", summary.axes[0].path)
                } else {
                    format!("{title} by each axis")
                },
                subtitle: format!(
                    "best epoch of each trial; mean ± std over seeds{}; {subtitle_counts}",
                    if summary.axes.len() > 1 {
                        " and the other axes"
                    } else {
                        ""
                    }
                ),
                summary,
            },
            format,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::svg_check::{no_bad_numbers, texts};
    use super::*;
    use crate::analysis::{HeatmapGrid, TrialResult, summarize_sweep};
    use crate::domain::{Goal, JobId, RankMetric};

    fn trial(index: i64, params: &[(&str, Value)], repeat: i64, value: Option<f64>) -> TrialResult {
        TrialResult {
            index,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            repeat,
            job_id: JobId::new(),
            status: if value.is_some() {
                "succeeded"
            } else {
                "failed"
            }
            .into(),
            best_epoch: value.map(|_| 3),
            best_value: value,
            epochs_done: 3,
            failure: None,
            pruned: false,
            stop_reason: None,
        }
    }

    fn svg(summary: &SweepSummary) -> String {
        String::from_utf8(sweep_chart("grid", summary, ImageFormat::Svg).unwrap()).unwrap()
    }

    #[test]
    fn two_axes_make_a_heatmap_with_every_value_annotated_and_missing_cells_marked() {
        let mut trials = Vec::new();
        let depths = [1, 2, 4];
        let widths = [64, 8, 16, 32];
        for (i, d) in depths.iter().enumerate() {
            for (j, w) in widths.iter().enumerate() {
                let missing = *d == 4 && *w == 32;
                let value = (!missing).then_some(0.5 + 0.01 * (i * 4 + j) as f64);
                trials.push(trial(
                    (i * 4 + j) as i64,
                    &[("model.depth", json!(d)), ("model.width", json!(w))],
                    0,
                    value,
                ));
            }
        }
        let s = summarize_sweep(
            RankMetric::ValAcc,
            Goal::Max,
            &["model.depth".into(), "model.width".into()],
            trials,
        );
        let svg = svg(&s);
        let texts = texts(&svg);
        assert!(
            texts
                .iter()
                .any(|t| t == "Sweep grid: val_acc by model.depth and model.width"),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t == "model.depth") && texts.iter().any(|t| t == "model.width")
        );
        for tick in ["1", "2", "4", "8", "16", "32", "64"] {
            assert!(texts.iter().any(|t| t == tick), "{tick} in {texts:?}");
        }
        let three_decimals = |t: &&String| t.len() == 5 && t.starts_with("0.");
        let annotated = texts.iter().filter(three_decimals).count();
        assert_eq!(
            annotated, 11,
            "one annotation per cell with a value: {texts:?}"
        );
        assert_eq!(
            texts
                .iter()
                .filter(|t| *t == "no result" || *t == "–")
                .count(),
            1
        );
        assert!(
            texts.iter().any(|t| t == "0.600"),
            "the best cell (0.610 is missing): {texts:?}"
        );
        no_bad_numbers(&svg);
    }

    #[test]
    fn the_heatmap_sorts_numeric_axes_and_keeps_the_cells_with_their_values() {
        let grid = HeatmapGrid {
            x_axis: "x".into(),
            y_axis: "y".into(),
            x_values: vec![json!(10), json!(1)],
            y_values: vec![json!("b"), json!("a")],
            mean: vec![vec![Some(0.1), Some(0.2)], vec![None, Some(0.4)]],
        };
        let s = sorted(&grid);
        assert_eq!(s.x_values, vec![json!(1), json!(10)]);
        assert_eq!(s.y_values, grid.y_values, "strings keep the order tried");
        assert_eq!(
            s.mean,
            vec![vec![Some(0.2), Some(0.1)], vec![Some(0.4), None]]
        );
    }

    #[test]
    fn one_axis_spanning_decades_gets_a_log_x_axis_with_error_bars_over_seeds() {
        let lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
        let mut trials = Vec::new();
        for (i, lr) in lrs.iter().enumerate() {
            for seed in 0..3 {
                let value = (*lr < 1.0).then_some(0.3 + 0.1 * i as f64 + 0.01 * seed as f64);
                trials.push(trial(
                    i as i64 * 3 + seed,
                    &[("training.optimizer.lr", json!(lr))],
                    seed,
                    value,
                ));
            }
        }
        let s = summarize_sweep(
            RankMetric::ValAcc,
            Goal::Max,
            &["training.optimizer.lr".into()],
            trials,
        );
        let svg = svg(&s);
        let texts = texts(&svg);
        assert!(
            texts
                .iter()
                .any(|t| t == "training.optimizer.lr (log scale)"),
            "{texts:?}"
        );
        assert!(texts.iter().any(|t| t == "best val_acc"));
        for tick in ["1e-5", "1e-4", "0.001", "0.01", "0.1", "1"] {
            assert!(texts.iter().any(|t| t == tick), "{tick} in {texts:?}");
        }
        for label in ["mean ± std", "one trial", "no result"] {
            assert!(texts.iter().any(|t| t == label), "{label}");
        }
        // 5 values with a mean, 15 trials, and the legend's 2 dots and 1 marker.
        assert_eq!(svg.matches("<circle").count(), 5 + 15 + 3);
        no_bad_numbers(&svg);
    }

    #[test]
    fn more_axes_get_a_panel_each_and_categorical_values_are_named() {
        let mut trials = Vec::new();
        let mut i = 0;
        for bn in [true, false] {
            for act in ["relu", "tanh"] {
                for depth in [1, 2] {
                    let v = 0.8 + if bn { 0.05 } else { 0.0 } + 0.01 * depth as f64;
                    trials.push(trial(
                        i,
                        &[
                            ("model.batch_norm", json!(bn)),
                            ("model.activation", json!(act)),
                            ("model.depth", json!(depth)),
                        ],
                        0,
                        Some(v),
                    ));
                    i += 1;
                }
            }
        }
        let axes = [
            "model.activation".into(),
            "model.batch_norm".into(),
            "model.depth".into(),
        ];
        let s = summarize_sweep(RankMetric::ValAcc, Goal::Max, &axes, trials);
        assert!(s.heatmap.is_none());
        let texts = texts(&svg(&s));
        assert!(
            texts
                .iter()
                .any(|t| t == "Sweep grid: val_acc by each axis"),
            "{texts:?}"
        );
        for want in [
            "model.activation",
            "model.batch_norm",
            "model.depth",
            "relu",
            "tanh",
            "true",
            "false",
        ] {
            assert!(texts.iter().any(|t| t == want), "{want} in {texts:?}");
        }
        assert!(
            !texts.iter().any(|t| t == "no result"),
            "the legend lists missing results only when there are some"
        );
    }

    #[test]
    fn a_sweep_without_results_says_so() {
        let s = summarize_sweep(
            RankMetric::ValLoss,
            Goal::Min,
            &["lr".into()],
            vec![trial(0, &[("lr", json!(0.1))], 0, None)],
        );
        let texts = texts(&svg(&s));
        assert!(
            texts
                .iter()
                .any(|t| t == "No trial has a val_loss yet (1 trials)"),
            "{texts:?}"
        );
    }

    #[test]
    fn losses_shade_brighter_where_lower() {
        let grid = HeatmapGrid {
            x_axis: "x".into(),
            y_axis: "y".into(),
            x_values: vec![json!(1), json!(2)],
            y_values: vec![json!(1)],
            mean: vec![vec![Some(0.1), Some(0.9)]],
        };
        let h = Heatmap {
            title: String::new(),
            subtitle: String::new(),
            grid,
            goal: Goal::Min,
            metric: "val_loss",
        };
        assert_eq!(h.shade(0.1), 1.0);
        assert_eq!(h.best(), Some((0, 0)));
        let png = render(&h, ImageFormat::Png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
