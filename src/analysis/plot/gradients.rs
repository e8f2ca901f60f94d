//! Per-layer gradient norms across epochs: one line per layer's weight tensor, on a log y axis,
//! so vanishing (lines far below the rest) and exploding (sudden jumps) gradients show.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::heatmap::viridis;
use super::{
    AxisText, Chart, DrawResult, ImageFormat, LegendEntry, Message, Scale, Swatch, draw_legend,
    legend_width, min_max, panel, render, segments, series_color, titled, truncate,
};
use crate::error::Result;
use crate::store::LayerGradRow;

const SIZE: (u32, u32) = (1100, 640);
/// Up to this many layers get palette colours; deeper models are coloured by depth.
const PALETTE_UP_TO: usize = 10;

/// One layer's mean gradient norm by epoch.
struct LayerSeries {
    label: String,
    points: Vec<(i64, Option<f64>)>,
}

/// A layer's main weight: a dense layer's `weight` or a convolution's `conv.weight` (not batch
/// norm's scale, not biases).
fn is_layer_weight(role: &str) -> bool {
    role == "weight" || role == "conv.weight"
}

/// The layers' weight tensors' series in model order (every tensor when there are none).
fn layer_series(rows: &[LayerGradRow]) -> Vec<LayerSeries> {
    let weights = rows.iter().any(|r| is_layer_weight(&r.role));
    let mut chosen: Vec<&LayerGradRow> = rows
        .iter()
        .filter(|r| !weights || is_layer_weight(&r.role))
        .collect();
    chosen.sort_by_key(|r| (r.position, r.epoch));
    let mut series: Vec<(i64, LayerSeries)> = Vec::new();
    for r in chosen {
        let point = (r.epoch, r.grad_norm_mean);
        match series.last_mut() {
            Some((position, s)) if *position == r.position => s.points.push(point),
            _ => series.push((
                r.position,
                LayerSeries {
                    label: if weights {
                        r.layer.clone()
                    } else {
                        r.tensor.clone()
                    },
                    points: vec![point],
                },
            )),
        }
    }
    series.into_iter().map(|(_, s)| s).collect()
}

/// A job's per-layer gradient norms as an image.
pub fn gradient_norms(
    name: &str,
    status: &str,
    rows: &[LayerGradRow],
    format: ImageFormat,
) -> Result<Vec<u8>> {
    let title = format!("Gradient norm by layer: {}", truncate(name, 60));
    let series = layer_series(rows);
    let drawable = series
        .iter()
        .any(|s| s.points.iter().any(|(_, v)| v.is_some_and(|v| v > 0.0)));
    if !drawable {
        return render(
            &Message {
                size: SIZE,
                title,
                message: format!("No gradient norms recorded yet ({status})"),
            },
            format,
        );
    }
    render(
        &Gradients {
            title,
            subtitle: format!(
                "mean L2 norm of each layer's weight gradient over an epoch's steps; {} layers; {status}",
                series.len()
            ),
            series,
        },
        format,
    )
}

struct Gradients {
    title: String,
    subtitle: String,
    series: Vec<LayerSeries>,
}

impl Gradients {
    fn color(&self, i: usize) -> RGBColor {
        let n = self.series.len();
        if n <= PALETTE_UP_TO {
            series_color(i)
        } else {
            // Input side dark, output side bright.
            viridis(i as f64 / (n - 1) as f64 * 0.9)
        }
    }
}

impl Chart for Gradients {
    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = titled(root, &self.title, &self.subtitle)?;
        let legend: Vec<LegendEntry> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| LegendEntry {
                swatch: Swatch::Line {
                    color: self.color(i),
                    dashed: false,
                    marker: false,
                },
                label: s.label.clone(),
            })
            .collect();
        let (w, _) = body.dim_in_pixel();
        let (plot, legend_area) =
            body.split_horizontally(w - legend_width("layers", &legend, w / 4));
        draw_legend(&legend_area.margin(8, 0, 0, 0), "layers", &legend)?;

        let values: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|(_, v)| *v))
            .filter(|v| *v > 0.0)
            .collect();
        let epochs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|(e, _)| *e as f64))
            .collect();
        let (first, last) = min_max(&epochs);
        let x = Scale::epochs(first, last);
        let y = Scale::log_fit(&values, 0.06);
        let y_desc = if y.log {
            "gradient L2 norm (log scale)"
        } else {
            "gradient L2 norm"
        };
        let mut chart = panel(
            &plot,
            &x,
            &y,
            &AxisText {
                caption: None,
                x_desc: "epoch",
                y_desc,
            },
        )?;
        for (i, s) in self.series.iter().enumerate() {
            let color = self.color(i);
            let runs = segments(s.points.iter().map(|(e, v)| (*e as f64, *v)), &x, &y);
            for run in runs {
                chart.draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))?;
                if run.len() == 1 || s.points.len() <= 30 {
                    chart.draw_series(run.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::svg_check::{assert_texts, lines_of, no_bad_numbers, texts};
    use super::*;

    fn row(position: i64, layer: &str, role: &str, epoch: i64, norm: f64) -> LayerGradRow {
        LayerGradRow {
            position,
            epoch,
            tensor: format!("{layer}.{role}"),
            layer: layer.into(),
            layer_index: position / 2,
            role: role.into(),
            grad_norm_mean: Some(norm),
            grad_norm_max: Some(norm * 2.0),
            weight_norm: Some(1.0),
        }
    }

    #[test]
    fn one_line_per_layer_on_a_log_axis_named_in_the_legend() {
        let mut rows = Vec::new();
        for epoch in 1..=3 {
            rows.push(row(0, "hidden.0", "weight", epoch, 1e-6 * epoch as f64));
            rows.push(row(1, "hidden.0", "bias", epoch, 1e-6));
            rows.push(row(2, "output", "weight", epoch, 0.5));
            rows.push(row(3, "output", "bias", epoch, 0.1));
            rows.push(row(4, "blocks.0", "conv.weight", epoch, 0.01));
            rows.push(row(5, "blocks.0", "bn.weight", epoch, 0.2));
        }
        let svg = String::from_utf8(
            gradient_norms("deep", "succeeded", &rows, ImageFormat::Svg).unwrap(),
        )
        .unwrap();
        no_bad_numbers(&svg);
        let texts = texts(&svg);
        assert_texts(
            &texts,
            &[
                "hidden.0",
                "output",
                "epoch",
                "gradient L2 norm (log scale)",
                "layers",
            ],
        );
        assert!(texts.iter().any(|t| t == "1e-6"), "decade ticks: {texts:?}");
        assert!(lines_of(&svg, &series_color(0)) >= 1 && lines_of(&svg, &series_color(1)) >= 1);
        assert!(lines_of(&svg, &series_color(2)) >= 1, "the convolution");
        assert_eq!(
            lines_of(&svg, &series_color(3)),
            0,
            "biases and batch norm are not drawn"
        );
        let png = gradient_norms("deep", "succeeded", &rows, ImageFormat::Png).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn a_job_without_norms_says_so() {
        let svg =
            String::from_utf8(gradient_norms("new", "queued", &[], ImageFormat::Svg).unwrap())
                .unwrap();
        assert!(texts(&svg).iter().any(|t| t.contains("No gradient norms")));
    }
}
