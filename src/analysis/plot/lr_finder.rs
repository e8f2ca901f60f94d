//! The learning-rate range test: loss against the rate on a log axis, each step's loss and
//! its moving average, with the suggested rate, the steepest descent and the minimum marked.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{
    AxisText, Chart, DrawResult, ImageFormat, LegendEntry, Swatch, draw_legend, fmt_value,
    legend_width, panel, render, segments, series_color, titled,
};
use crate::error::Result;
use engine::LrCurve;

const SIZE: (u32, u32) = (1000, 640);

/// The range test's curve as an image; `title` names what was tested.
pub fn lr_finder_chart(title: &str, curve: &LrCurve, format: ImageFormat) -> Result<Vec<u8>> {
    render(
        &LrChart {
            title: title.to_string(),
            curve,
        },
        format,
    )
}

struct LrChart<'a> {
    title: String,
    curve: &'a LrCurve,
}

/// The colours of the three marks.
const SUGGESTED: RGBColor = RGBColor(0x2E, 0x8B, 0x57);
const STEEPEST: RGBColor = RGBColor(0x8E, 0x44, 0xAD);
const MINIMUM: RGBColor = RGBColor(0x7F, 0x7F, 0x7F);
/// Each step's loss: the smoothed line's colour, lighter.
const RAW: RGBColor = RGBColor(0xA6, 0xBD, 0xD7);

impl Chart for LrChart<'_> {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let curve = self.curve;
        let body = titled(
            root,
            &self.title,
            &format!(
                "{} steps, rate growing exponentially; suggested rate {}",
                curve.points.len(),
                fmt_value(curve.suggested_lr)
            ),
        )?;
        let mut legend = vec![
            LegendEntry {
                swatch: Swatch::Line {
                    color: RAW,
                    dashed: false,
                    marker: false,
                },
                label: "loss of each step".into(),
            },
            LegendEntry {
                swatch: Swatch::Line {
                    color: series_color(0),
                    dashed: false,
                    marker: false,
                },
                label: "smoothed loss".into(),
            },
            LegendEntry {
                swatch: Swatch::Line {
                    color: SUGGESTED,
                    dashed: false,
                    marker: false,
                },
                label: format!("suggested: {}", fmt_value(curve.suggested_lr)),
            },
        ];
        if let Some(steep) = curve.steepest_lr {
            legend.push(LegendEntry {
                swatch: Swatch::Line {
                    color: STEEPEST,
                    dashed: true,
                    marker: false,
                },
                label: format!("steepest descent: {}", fmt_value(steep)),
            });
        }
        legend.push(LegendEntry {
            swatch: Swatch::Line {
                color: MINIMUM,
                dashed: true,
                marker: false,
            },
            label: format!("lowest loss: {}", fmt_value(curve.min_loss_lr)),
        });
        let (w, _) = body.dim_in_pixel();
        let (plot, legend_area) =
            body.split_horizontally(w - legend_width("rates", &legend, w * 2 / 5));
        draw_legend(&legend_area.margin(8, 0, 0, 0), "rates", &legend)?;

        let rates: Vec<f64> = curve.points.iter().map(|p| p.lr).collect();
        let x = super::Scale::log_fit(&rates, 0.02);
        // Every loss up to the smoothed minimum is shown; the blow-up after it is cut off a
        // little above them, or it would flatten the valley.
        let min_index = curve
            .points
            .iter()
            .position(|p| p.smoothed == curve.min_loss)
            .unwrap_or(curve.points.len().saturating_sub(1));
        let shown: Vec<f64> = curve
            .points
            .iter()
            .take(min_index + 1)
            .flat_map(|p| [p.loss, p.smoothed])
            .collect();
        let (lo, hi) = super::min_max(&shown);
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let y = super::Scale::fit(
            &[lo, hi + (hi - lo).max(1e-6) * 0.3],
            false,
            0.04,
            Some((0.0, f64::INFINITY)),
        );
        let mut chart = panel(
            &plot,
            &x,
            &y,
            &AxisText {
                caption: None,
                x_desc: "learning rate (log scale)",
                y_desc: "training loss",
            },
        )?;
        let (y_lo, y_hi) = (y.range.start, y.range.end);
        let raw = curve
            .points
            .iter()
            .map(|p| (p.lr, Some(p.loss.clamp(y_lo, y_hi))));
        for run in segments(raw, &x, &y) {
            chart.draw_series(LineSeries::new(run, RAW.stroke_width(1)))?;
        }
        let smooth = curve.points.iter().map(|p| (p.lr, Some(p.smoothed)));
        for run in segments(smooth, &x, &y) {
            chart.draw_series(LineSeries::new(run, series_color(0).stroke_width(3)))?;
        }
        let mut mark = |rate: f64, color: RGBColor, dashed: bool| -> DrawResult<DB> {
            let Some(at) = x.to_plot(rate) else {
                return Ok(());
            };
            let style = color.stroke_width(2);
            if dashed {
                let n = 24;
                let step = (y_hi - y_lo) / f64::from(n);
                chart.draw_series((0..n).step_by(2).map(|i| {
                    let from = y_lo + step * f64::from(i);
                    PathElement::new(vec![(at, from), (at, from + step)], style)
                }))?;
            } else {
                chart.draw_series(LineSeries::new([(at, y_lo), (at, y_hi)], style))?;
            }
            Ok(())
        };
        mark(curve.min_loss_lr, MINIMUM, true)?;
        if let Some(steep) = curve.steepest_lr {
            mark(steep, STEEPEST, true)?;
        }
        mark(curve.suggested_lr, SUGGESTED, false)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::svg_check::{assert_texts, lines_of, no_bad_numbers, texts};
    use super::*;
    use engine::{LrFindStop, LrPoint};

    fn curve() -> LrCurve {
        let points: Vec<LrPoint> = (0..60)
            .map(|i| {
                let lr = 1e-6 * 10f64.powf(i as f64 / 10.0);
                let x = lr.log10();
                let smoothed = if x < -3.0 {
                    2.3
                } else {
                    2.3 - (x + 3.0) * 1.5 + (x + 2.0).max(0.0).powi(2) * 8.0
                };
                LrPoint {
                    lr,
                    loss: smoothed * if i % 2 == 0 { 1.1 } else { 0.9 },
                    smoothed,
                }
            })
            .collect();
        engine::suggest(points, LrFindStop::LossExploded).unwrap()
    }

    #[test]
    fn the_curve_shows_both_losses_and_marks_the_suggested_rate() {
        let curve = curve();
        let svg = String::from_utf8(
            lr_finder_chart("digits: mlp, adam", &curve, ImageFormat::Svg).unwrap(),
        )
        .unwrap();
        no_bad_numbers(&svg);
        let texts = texts(&svg);
        assert_texts(
            &texts,
            &[
                "digits: mlp, adam",
                "loss of each step",
                "smoothed loss",
                "learning rate (log scale)",
                "training loss",
            ],
        );
        let suggested = format!("suggested: {}", fmt_value(curve.suggested_lr));
        assert!(texts.contains(&suggested), "{texts:?}");
        assert!(lines_of(&svg, &SUGGESTED) >= 1);
        let png = lr_finder_chart("t", &curve, ImageFormat::Png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
