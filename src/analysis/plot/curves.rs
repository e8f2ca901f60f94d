//! Learning curves of one job: loss and accuracy (train, validation, test) by epoch in two
//! panels, the best epoch marked.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    AxisText, Chart, DrawResult, ImageFormat, LegendEntry, Message, Scale, Swatch, draw_legend,
    fmt_value, legend_width, panel, render, segments, series_color, titled,
};
use crate::analysis::CurvePoint;
use crate::domain::RankMetric;
use crate::error::Result;

/// Markers on every point up to this many epochs; lines only beyond.
const MARKERS_UP_TO: usize = 40;

/// A job's learning curves as an image. Without epochs, the image says "No epochs yet".
/// `best` is the epoch to mark and the metric (and its value) that made it the best.
pub fn learning_curves(
    job_name: &str,
    status: &str,
    points: &[CurvePoint],
    best: Option<(i64, RankMetric, f64)>,
    format: ImageFormat,
) -> Result<Vec<u8>> {
    let title = format!("Learning curves: {job_name}");
    if points.is_empty() {
        return render(
            &Message {
                size: SIZE,
                title,
                message: format!("No epochs yet (job {status})"),
            },
            format,
        );
    }
    render(
        &Curves {
            title,
            subtitle: subtitle(status, points, best),
            points,
            best: best.map(|b| b.0),
        },
        format,
    )
}

const SIZE: (u32, u32) = (960, 780);

fn subtitle(status: &str, points: &[CurvePoint], best: Option<(i64, RankMetric, f64)>) -> String {
    let n = points.last().map_or(0, |p| p.epoch);
    let mut s = format!("{status}, {n} epoch{}", if n == 1 { "" } else { "s" });
    if let Some((epoch, metric, value)) = best {
        s.push_str(&format!(
            "; best {} {} at epoch {epoch}",
            metric.as_str(),
            fmt_value(value)
        ));
    }
    s
}

struct Curves<'a> {
    title: String,
    subtitle: String,
    points: &'a [CurvePoint],
    best: Option<i64>,
}

/// The three splits: legend label, colour, and how to read each metric.
struct Split {
    label: &'static str,
    color: RGBColor,
    loss: fn(&CurvePoint) -> Option<f64>,
    acc: fn(&CurvePoint) -> Option<f64>,
}

fn splits() -> [Split; 3] {
    [
        Split {
            label: "train",
            color: series_color(0),
            loss: |p| Some(p.train_loss),
            acc: |p| Some(p.train_acc),
        },
        Split {
            label: "validation",
            color: series_color(1),
            loss: |p| Some(p.val_loss),
            acc: |p| Some(p.val_acc),
        },
        Split {
            label: "test",
            color: series_color(2),
            loss: |p| p.test_loss,
            acc: |p| p.test_acc,
        },
    ]
}

const BEST: RGBColor = RGBColor(0x55, 0x55, 0x55);

impl Curves<'_> {
    fn draw_panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        x: &Scale,
        read: impl Fn(&Split) -> fn(&CurvePoint) -> Option<f64>,
        is_loss: bool,
    ) -> DrawResult<DB> {
        // Validation last, on top: it is the curve that decides.
        let mut splits: Vec<Split> = splits()
            .into_iter()
            .filter(|s| self.points.iter().any(|p| read(s)(p).is_some()))
            .collect();
        splits.sort_by_key(|s| s.label == "validation");
        let values: Vec<f64> = splits
            .iter()
            .flat_map(|s| self.points.iter().filter_map(read(s)))
            .collect();
        let y = if is_loss {
            Scale::fit(&values, true, 0.06, None)
        } else {
            Scale::fit(&values, false, 0.06, Some((0.0, 1.0)))
        };
        let y_desc = match (is_loss, y.log) {
            (true, true) => "loss (log scale)",
            (true, false) => "loss",
            _ => "accuracy",
        };
        let caption = if is_loss { "Loss" } else { "Accuracy" };
        let mut chart = panel(
            area,
            x,
            &y,
            &AxisText {
                caption: Some(caption),
                x_desc: "epoch",
                y_desc,
            },
        )?;
        if let Some(best) = self.best {
            let bx = best as f64;
            chart.draw_series(DashedLineSeries::new(
                [(bx, y.range.start), (bx, y.range.end)],
                6,
                4,
                BEST.stroke_width(1),
            ))?;
        }
        let markers = self.points.len() <= MARKERS_UP_TO;
        for split in &splits {
            let runs = segments(
                self.points.iter().map(|p| (p.epoch as f64, read(split)(p))),
                x,
                &y,
            );
            for run in runs {
                chart.draw_series(LineSeries::new(
                    run.iter().copied(),
                    split.color.stroke_width(2),
                ))?;
                if markers || run.len() == 1 {
                    chart.draw_series(
                        run.iter().map(|p| Circle::new(*p, 3, split.color.filled())),
                    )?;
                }
            }
            if let Some(best) = self.best {
                let at = self.points.iter().find(|p| p.epoch == best);
                if let Some(v) = at.and_then(|p| read(split)(p)).and_then(|v| y.to_plot(v)) {
                    chart.draw_series([Circle::new(
                        (best as f64, v),
                        6,
                        split.color.stroke_width(2),
                    )])?;
                }
            }
        }
        Ok(())
    }
}

impl Chart for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = titled(root, &self.title, &self.subtitle)?;
        let has_test = self
            .points
            .iter()
            .any(|p| p.test_loss.is_some() || p.test_acc.is_some());
        let mut legend: Vec<LegendEntry> = splits()
            .into_iter()
            .filter(|s| has_test || s.label != "test")
            .map(|s| LegendEntry {
                swatch: Swatch::Line {
                    color: s.color,
                    dashed: false,
                    marker: true,
                },
                label: s.label.to_string(),
            })
            .collect();
        if let Some(best) = self.best {
            legend.push(LegendEntry {
                swatch: Swatch::Line {
                    color: BEST,
                    dashed: true,
                    marker: false,
                },
                label: format!("best epoch ({best})"),
            });
        }
        let (w, _) = body.dim_in_pixel();
        let (plots, legend_area) = body.split_horizontally(w - legend_width("", &legend, w / 4));
        draw_legend(&legend_area.margin(36, 0, 0, 0), "", &legend)?;
        let (_, h) = plots.dim_in_pixel();
        let (top, bottom) = plots.split_vertically(h / 2);
        let first = self.points.first().map_or(1, |p| p.epoch) as f64;
        let last = self.points.last().map_or(1, |p| p.epoch) as f64;
        let x = Scale::epochs(first, last);
        self.draw_panel(&top, &x, |s| s.loss, true)?;
        self.draw_panel(&bottom, &x, |s| s.acc, false)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::svg_check::{lines_of, no_bad_numbers, texts};
    use super::*;

    fn point(epoch: i64, loss: f64, acc: f64, test: bool) -> CurvePoint {
        CurvePoint {
            epoch,
            train_loss: loss,
            train_acc: acc,
            val_loss: loss * 1.2,
            val_acc: acc - 0.02,
            test_loss: test.then_some(loss * 1.3),
            test_acc: test.then_some(acc - 0.03),
        }
    }

    fn svg(points: &[CurvePoint], best: Option<(i64, RankMetric, f64)>) -> String {
        let bytes =
            learning_curves("digits-mlp", "succeeded", points, best, ImageFormat::Svg).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn both_panels_have_labelled_axes_three_splits_and_the_best_epoch() {
        let points: Vec<CurvePoint> = (1..=10)
            .map(|e| point(e, 2.0 / e as f64, 0.5 + e as f64 / 25.0, true))
            .collect();
        let svg = svg(&points, Some((7, RankMetric::ValAcc, 0.76)));
        let texts = texts(&svg);
        for want in [
            "Learning curves: digits-mlp",
            "Loss",
            "Accuracy",
            "epoch",
            "accuracy",
            "train",
            "validation",
            "test",
            "best epoch (7)",
        ] {
            assert!(texts.iter().any(|t| t == want), "{want} in {texts:?}");
        }
        assert!(
            texts
                .iter()
                .any(|t| t.contains("best val_acc 0.760 at epoch 7")),
            "{texts:?}"
        );
        // Loss falls from 2.6 to 0.2: more than a decade, so a log scale.
        assert!(texts.iter().any(|t| t == "loss (log scale)"), "{texts:?}");
        for i in 0..3 {
            // One curve per panel, plus the legend swatch.
            assert_eq!(lines_of(&svg, &series_color(i)), 3, "series {i}");
        }
        no_bad_numbers(&svg);
    }

    #[test]
    fn without_a_test_split_there_are_two_series_and_no_test_legend() {
        let points: Vec<CurvePoint> = (1..=3)
            .map(|e| point(e, 1.0 / e as f64, 0.8, false))
            .collect();
        let svg = svg(&points, None);
        let texts = texts(&svg);
        assert!(!texts.iter().any(|t| t == "test"));
        assert!(
            texts.iter().any(|t| t == "loss"),
            "a third of a decade stays linear: {texts:?}"
        );
        assert_eq!(lines_of(&svg, &series_color(2)), 0);
    }

    #[test]
    fn a_job_without_epochs_says_so() {
        let texts = texts(&svg(&[], None));
        assert!(
            texts.iter().any(|t| t == "No epochs yet (job succeeded)"),
            "{texts:?}"
        );
    }

    #[test]
    fn a_single_epoch_is_drawn_as_points() {
        let svg = svg(
            &[point(1, 0.5, 0.9, true)],
            Some((1, RankMetric::ValAcc, 0.88)),
        );
        let texts = texts(&svg);
        assert!(texts.iter().any(|t| t == "1"), "an epoch tick: {texts:?}");
        assert!(svg.contains("<circle"));
        no_bad_numbers(&svg);
    }

    #[test]
    fn non_finite_values_are_skipped_not_drawn() {
        let mut points: Vec<CurvePoint> = (1..=6)
            .map(|e| point(e, 1.0 / e as f64, 0.8, true))
            .collect();
        points[2].train_loss = f64::NAN;
        points[3].val_loss = f64::INFINITY;
        points[5].train_loss = f64::NEG_INFINITY;
        let svg = svg(&points, None);
        no_bad_numbers(&svg);
        // The NaN at epoch 3 splits the training loss into two lines (plus the legend's).
        assert_eq!(lines_of(&svg, &series_color(0)), 4);
    }

    #[test]
    fn a_thousand_epochs_render_with_few_ticks_and_no_markers() {
        let points: Vec<CurvePoint> = (1..=1000)
            .map(|e| {
                point(
                    e,
                    1.0 / (e as f64).sqrt(),
                    1.0 - 0.5 / (e as f64).sqrt(),
                    true,
                )
            })
            .collect();
        let svg = svg(&points, Some((900, RankMetric::ValAcc, 0.96)));
        let texts = texts(&svg);
        let ticks: Vec<&String> = texts
            .iter()
            .filter(|t| t.parse::<i64>().is_ok_and(|v| v >= 100))
            .collect();
        assert!(ticks.len() <= 2 * 12, "{ticks:?}");
        assert!(texts.iter().any(|t| t == "1000"));
        // Markers: 3 legend dots and 3 best-epoch rings per panel, not one per epoch.
        assert!(svg.matches("<circle").count() < 20);
    }

    #[test]
    fn png_is_a_png() {
        let points: Vec<CurvePoint> = (1..=5)
            .map(|e| point(e, 1.0 / e as f64, 0.8, true))
            .collect();
        let png = learning_curves("j", "running", &points, None, ImageFormat::Png).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
