//! One metric's curves of several jobs overlaid, one colour per job, each job's best epoch
//! marked, and a legend of job names.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    AxisText, Chart, DrawResult, ImageFormat, LegendEntry, Message, Scale, Swatch, draw_legend,
    fmt_value, legend_width, panel, render, segments, series_color, titled, truncate,
};
use crate::analysis::{Comparison, CurvePoint, JobSummary};
use crate::domain::{Goal, RankMetric};
use crate::error::Result;

const SIZE: (u32, u32) = (1100, 640);
const MARKERS_UP_TO: usize = 40;
const NO_DATA: RGBColor = RGBColor(0xAA, 0xAA, 0xAA);

/// The value of a metric at a curve point.
pub(crate) fn curve_value(p: &CurvePoint, metric: RankMetric) -> Option<f64> {
    match metric {
        RankMetric::ValAcc => Some(p.val_acc),
        RankMetric::ValLoss => Some(p.val_loss),
        RankMetric::TestAcc => p.test_acc,
        RankMetric::TestLoss => p.test_loss,
        RankMetric::TrainAcc => Some(p.train_acc),
        RankMetric::TrainLoss => Some(p.train_loss),
    }
}

/// The compared jobs' curves of the comparison's metric as an image; job `i` of the
/// comparison (best first) gets palette colour `i`. Colours repeat after ten jobs, dashed.
pub fn overlay_curves(comparison: &Comparison, format: ImageFormat) -> Result<Vec<u8>> {
    let metric = comparison.metric;
    let n = comparison.jobs.len();
    let title = format!(
        "{} by epoch, {n} job{}",
        metric.as_str(),
        if n == 1 { "" } else { "s" }
    );
    let drawable = comparison.jobs.iter().any(|j| {
        j.curve
            .iter()
            .any(|p| curve_value(p, metric).is_some_and(f64::is_finite))
    });
    if !drawable {
        return render(
            &Message {
                size: SIZE,
                title,
                message: format!("No epochs with {} yet", metric.as_str()),
            },
            format,
        );
    }
    render(&Overlay { title, comparison }, format)
}

struct Overlay<'a> {
    title: String,
    comparison: &'a Comparison,
}

fn legend_label(job: &JobSummary) -> String {
    let name = truncate(&job.name, 60);
    match (job.best_value, job.best_epoch) {
        (Some(v), Some(e)) => format!("{name}: {} at epoch {e}", fmt_value(v)),
        _ if job.epochs == 0 => format!("{name}: no epochs yet"),
        _ => format!("{name}: no value"),
    }
}

impl Chart for Overlay<'_> {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let Comparison { metric, goal, jobs } = self.comparison;
        let better = match goal {
            Goal::Max => "higher",
            Goal::Min => "lower",
        };
        let subtitle =
            format!("{better} is better; legend ranks jobs by their best epoch (circled)");
        let body = titled(root, &self.title, &subtitle)?;
        let legend: Vec<LegendEntry> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| LegendEntry {
                swatch: if job.curve.is_empty() {
                    Swatch::Dot(NO_DATA)
                } else {
                    Swatch::Line {
                        color: series_color(i),
                        dashed: i / 10 % 2 == 1,
                        marker: false,
                    }
                },
                label: legend_label(job),
            })
            .collect();
        let (w, _) = body.dim_in_pixel();
        let (plot, legend_area) =
            body.split_horizontally(w - legend_width("jobs", &legend, w * 2 / 5));
        draw_legend(&legend_area.margin(8, 0, 0, 0), "jobs", &legend)?;

        let values: Vec<f64> = jobs
            .iter()
            .flat_map(|j| j.curve.iter().filter_map(|p| curve_value(p, *metric)))
            .collect();
        let is_loss = matches!(metric.natural_goal(), Goal::Min);
        let y = if is_loss {
            Scale::fit(&values, true, 0.06, None)
        } else {
            Scale::fit(&values, false, 0.06, Some((0.0, 1.0)))
        };
        let epochs: Vec<f64> = jobs
            .iter()
            .flat_map(|j| j.curve.iter().map(|p| p.epoch as f64))
            .collect();
        let (first, last) = super::min_max(&epochs);
        let x = Scale::epochs(first, last);
        let y_desc = if y.log {
            format!("{} (log scale)", metric.as_str())
        } else {
            metric.as_str().to_string()
        };
        let mut chart = panel(
            &plot,
            &x,
            &y,
            &AxisText {
                caption: None,
                x_desc: "epoch",
                y_desc: &y_desc,
            },
        )?;
        // Draw the best job last, so it sits on top.
        for (i, job) in jobs.iter().enumerate().rev() {
            let color = series_color(i);
            let style = color.stroke_width(2);
            let runs = segments(
                job.curve
                    .iter()
                    .map(|p| (p.epoch as f64, curve_value(p, *metric))),
                &x,
                &y,
            );
            let markers = job.curve.len() <= MARKERS_UP_TO;
            for run in runs {
                if i / 10 % 2 == 1 {
                    chart.draw_series(DashedLineSeries::new(run.iter().copied(), 8, 5, style))?;
                } else {
                    chart.draw_series(LineSeries::new(run.iter().copied(), style))?;
                }
                if markers || run.len() == 1 {
                    chart.draw_series(run.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
                }
            }
            let best = job
                .best_epoch
                .zip(job.best_value)
                .and_then(|(e, v)| Some((x.to_plot(e as f64)?, y.to_plot(v)?)));
            if let Some(at) = best {
                chart.draw_series([Circle::new(at, 7, color.stroke_width(2))])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::svg_check::{lines_of, no_bad_numbers, texts};
    use super::*;
    use crate::analysis::compare_job;
    use crate::analysis::epoch;
    use crate::domain::JobId;
    use crate::store::EpochRow;

    fn comparison(jobs: &[(&str, Vec<EpochRow>)], metric: RankMetric) -> Comparison {
        let goal = metric.natural_goal();
        let jobs = jobs
            .iter()
            .map(|(name, epochs)| {
                compare_job(JobId::new(), name, "succeeded", epochs, metric, goal, 200)
            })
            .collect();
        Comparison { metric, goal, jobs }
    }

    fn run(n: i64, scale: f64) -> Vec<EpochRow> {
        (1..=n)
            .map(|i| {
                epoch(
                    i,
                    scale / i as f64,
                    scale * 1.1 / i as f64,
                    0.5 + 0.4 * i as f64 / n as f64,
                )
            })
            .collect()
    }

    fn svg(c: &Comparison) -> String {
        String::from_utf8(overlay_curves(c, ImageFormat::Svg).unwrap()).unwrap()
    }

    #[test]
    fn each_job_is_one_coloured_line_named_in_the_legend() {
        let c = comparison(
            &[
                ("lr=0.001", run(5, 1.0)),
                ("lr=0.1", run(8, 2.0)),
                ("lr=<1e-5> & co", run(3, 3.0)),
            ],
            RankMetric::ValAcc,
        );
        let svg = svg(&c);
        let texts = texts(&svg);
        assert!(
            texts.iter().any(|t| t == "val_acc by epoch, 3 jobs"),
            "{texts:?}"
        );
        assert!(texts.iter().any(|t| t == "epoch") && texts.iter().any(|t| t == "val_acc"));
        for name in ["lr=0.001", "lr=0.1", "lr=<1e-5> & co"] {
            assert!(
                texts.iter().any(|t| t.starts_with(&format!("{name}: "))),
                "{name} in {texts:?}"
            );
        }
        for i in 0..3 {
            assert_eq!(
                lines_of(&svg, &series_color(i)),
                2,
                "job {i}: a curve and a legend swatch"
            );
        }
        assert_eq!(lines_of(&svg, &series_color(3)), 0);
        no_bad_numbers(&svg);
    }

    #[test]
    fn losses_spanning_decades_get_a_log_axis() {
        let c = comparison(
            &[("a", run(50, 1.0)), ("b", run(50, 5.0))],
            RankMetric::ValLoss,
        );
        let texts = texts(&svg(&c));
        assert!(
            texts.iter().any(|t| t == "val_loss (log scale)"),
            "{texts:?}"
        );
    }

    #[test]
    fn jobs_without_epochs_are_listed_and_all_empty_says_so() {
        let c = comparison(
            &[("done", run(4, 1.0)), ("waiting", vec![])],
            RankMetric::ValAcc,
        );
        let shown = texts(&svg(&c));
        assert!(
            shown.iter().any(|t| t == "waiting: no epochs yet"),
            "{shown:?}"
        );
        let c = comparison(&[("waiting", vec![])], RankMetric::ValAcc);
        let shown = texts(&svg(&c));
        assert!(
            shown.iter().any(|t| t == "No epochs with val_acc yet"),
            "{shown:?}"
        );
        let c = comparison(&[("no test split", run(3, 1.0))], RankMetric::TestAcc);
        let mut c2 = c.clone();
        for p in &mut c2.jobs[0].curve {
            p.test_acc = None;
        }
        let shown = texts(&svg(&c2));
        assert!(
            shown.iter().any(|t| t == "No epochs with test_acc yet"),
            "{shown:?}"
        );
    }

    #[test]
    fn many_jobs_cycle_colours_dashed_and_the_legend_stays_inside() {
        let jobs: Vec<(String, Vec<EpochRow>)> = (0..30)
            .map(|i| (format!("job-{i}"), run(5, 1.0 + i as f64 / 10.0)))
            .collect();
        let refs: Vec<(&str, Vec<EpochRow>)> =
            jobs.iter().map(|(n, e)| (n.as_str(), e.clone())).collect();
        let svg = svg(&comparison(&refs, RankMetric::ValAcc));
        let texts = texts(&svg);
        assert!(texts.iter().any(|t| t.starts_with("… and ")), "{texts:?}");
    }
}
