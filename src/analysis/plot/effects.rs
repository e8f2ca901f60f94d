//! Metric against parameter for one or more sweep axes: the mean with ±std error bars over
//! seeds, every trial as a dot, a log x axis when the values span more than a decade.

use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;

use super::sweep::fmt_param;
use super::{
    AxisText, Chart, DrawResult, LegendEntry, Scale, Swatch, draw_legend, legend_width, panel,
    series_color, titled,
};
use crate::analysis::{AxisEffect, SweepSummary, TrialResult};
use crate::domain::Goal;

pub(super) struct Effects<'a> {
    pub(super) title: String,
    pub(super) subtitle: String,
    pub(super) summary: &'a SweepSummary,
}

const MEAN: RGBColor = super::PALETTE[0];
const NONE_MARK: RGBColor = RGBColor(0xC0, 0x39, 0x2B);

impl Effects<'_> {
    fn grid(&self) -> (usize, usize) {
        let n = self.summary.axes.len();
        let cols = if n <= 2 {
            n
        } else if n <= 4 {
            2
        } else {
            3
        };
        (n.div_ceil(cols.max(1)), cols.max(1))
    }

    fn results<'t>(&'t self, path: &'t str, value: &'t Value) -> impl Iterator<Item = f64> + 't {
        self.summary
            .trials
            .iter()
            .filter(move |t: &&TrialResult| t.params.get(path) == Some(value))
            .filter_map(|t| t.best_value)
            .filter(|v| v.is_finite())
    }

    fn draw_axis<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        effect: &AxisEffect,
        caption: bool,
    ) -> DrawResult<DB> {
        let metric = self.summary.metric;
        let numeric = effect.values.iter().all(|v| v.value.is_number());
        let mut values: Vec<(f64, &crate::analysis::AxisValueEffect)> = if numeric {
            effect
                .values
                .iter()
                .map(|v| (v.value.as_f64().unwrap_or(f64::NAN), v))
                .collect()
        } else {
            effect
                .values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, v))
                .collect()
        };
        if numeric {
            values.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let x = if numeric {
            let xs: Vec<f64> = values.iter().map(|v| v.0).collect();
            Scale::fit(&xs, true, 0.08, None)
        } else {
            Scale::categories(effect.values.iter().map(|v| fmt_param(&v.value)).collect())
        };
        let mut ys: Vec<f64> = Vec::new();
        for (_, v) in &values {
            ys.extend(self.results(&effect.path, &v.value));
            if let (Some(m), Some(s)) = (v.mean, v.std) {
                ys.extend([m - s, m + s]);
            }
        }
        let is_loss = matches!(metric.natural_goal(), Goal::Min);
        let y = if is_loss {
            Scale::fit(&ys, true, 0.08, None)
        } else {
            Scale::fit(&ys, false, 0.08, Some((0.0, 1.0)))
        };
        let x_desc = if x.log {
            format!("{} (log scale)", effect.path)
        } else {
            effect.path.clone()
        };
        let y_desc = format!(
            "best {}{}",
            metric.as_str(),
            if y.log { " (log scale)" } else { "" }
        );
        let caption = caption.then_some(effect.path.as_str());
        let mut chart = panel(
            area,
            &x,
            &y,
            &AxisText {
                caption,
                x_desc: &x_desc,
                y_desc: &y_desc,
            },
        )?;

        let cap = (x.range.end - x.range.start) * 0.012;
        let mut means = Vec::new();
        for (raw_x, v) in &values {
            let Some(px) = x.to_plot(*raw_x) else {
                continue;
            };
            chart.draw_series(
                self.results(&effect.path, &v.value)
                    .filter_map(|r| y.to_plot(r))
                    .map(|py| Circle::new((px, py), 4, series_color(1).mix(0.55).filled())),
            )?;
            match v.mean.and_then(|m| y.to_plot(m)) {
                Some(pm) => {
                    let s = v.std.unwrap_or(0.0);
                    if s > 0.0 {
                        let lo = v
                            .mean
                            .and_then(|m| y.to_plot(m - s))
                            .unwrap_or(y.range.start);
                        let hi = v.mean.and_then(|m| y.to_plot(m + s)).unwrap_or(y.range.end);
                        let style = MEAN.stroke_width(2);
                        chart.draw_series([
                            PathElement::new(vec![(px, lo), (px, hi)], style),
                            PathElement::new(vec![(px - cap, lo), (px + cap, lo)], style),
                            PathElement::new(vec![(px - cap, hi), (px + cap, hi)], style),
                        ])?;
                    }
                    means.push((px, pm));
                }
                None => {
                    // No trial with a result at this value: a cross on the floor of the panel.
                    let at = y.range.start + (y.range.end - y.range.start) * 0.04;
                    chart.draw_series([Cross::new((px, at), 6, NONE_MARK.stroke_width(2))])?;
                }
            }
        }
        if numeric && means.len() > 1 {
            chart.draw_series(LineSeries::new(means.iter().copied(), MEAN.stroke_width(2)))?;
        }
        chart.draw_series(means.iter().map(|p| Circle::new(*p, 6, MEAN.filled())))?;
        Ok(())
    }
}

impl Chart for Effects<'_> {
    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        let width = if cols == 1 {
            1060
        } else {
            300 + cols as u32 * 520
        };
        (width, 90 + rows as u32 * 440)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = titled(root, &self.title, &self.subtitle)?;
        let mut legend = vec![
            LegendEntry {
                swatch: Swatch::Line {
                    color: MEAN,
                    dashed: false,
                    marker: true,
                },
                label: "mean ± std".into(),
            },
            LegendEntry {
                swatch: Swatch::Dot(series_color(1).mix(0.55).to_rgba().rgb_color()),
                label: "one trial".into(),
            },
        ];
        let missing = self
            .summary
            .axes
            .iter()
            .any(|a| a.values.iter().any(|v| v.mean.is_none()));
        if missing {
            legend.push(LegendEntry {
                swatch: Swatch::Dot(NONE_MARK),
                label: "no result".into(),
            });
        }
        let (w, _) = body.dim_in_pixel();
        let (plots, legend_area) = body.split_horizontally(w - legend_width("", &legend, w / 4));
        draw_legend(&legend_area.margin(30, 0, 0, 0), "", &legend)?;
        let (rows, cols) = self.grid();
        let panels = plots.split_evenly((rows, cols));
        let several = self.summary.axes.len() > 1;
        for (effect, area) in self.summary.axes.iter().zip(panels.iter()) {
            self.draw_axis(area, effect, several)?;
        }
        Ok(())
    }
}

trait RgbOf {
    fn rgb_color(&self) -> RGBColor;
}

impl RgbOf for RGBAColor {
    /// The colour blended onto white.
    fn rgb_color(&self) -> RGBColor {
        let RGBAColor(r, g, b, a) = *self;
        let blend = |c: u8| (c as f64 * a + 255.0 * (1.0 - a)).round() as u8;
        RGBColor(blend(r), blend(g), blend(b))
    }
}
