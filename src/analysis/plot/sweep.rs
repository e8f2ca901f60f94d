//! A sweep's summary as a chart: for two axes a heatmap of the mean metric (cells annotated,
//! missing cells visibly empty, the best cell outlined); for one axis the metric against the
//! parameter (mean with ±std error bars over seeds, every trial as a dot, a log x axis when
//! the values span more than a decade); for more axes one such panel per axis.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use super::{
    AxisText, Chart, DrawResult, GRID, INK, ImageFormat, LegendEntry, MUTED, Message, Scale,
    Swatch, draw_legend, fmt_tick, fmt_value, legend_width, panel, render, series_color,
    text_style, titled, truncate,
};
use crate::analysis::{AxisEffect, HeatmapGrid, SweepSummary, TrialResult};
use crate::domain::Goal;
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

// ---------------------------------------------------------------------------------------------
// Heatmap

struct Heatmap<'a> {
    title: String,
    subtitle: String,
    grid: HeatmapGrid,
    goal: Goal,
    metric: &'a str,
}

/// Numeric axis values in ascending order (the grid permuted to match); others as tried.
fn sorted(grid: &HeatmapGrid) -> HeatmapGrid {
    let order = |values: &[Value]| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..values.len()).collect();
        if values.iter().all(Value::is_number) {
            idx.sort_by(|a, b| {
                let key = |i: &usize| values[*i].as_f64().unwrap_or(f64::NAN);
                key(a).total_cmp(&key(b))
            });
        }
        idx
    };
    let xs = order(&grid.x_values);
    let ys = order(&grid.y_values);
    HeatmapGrid {
        x_axis: grid.x_axis.clone(),
        y_axis: grid.y_axis.clone(),
        x_values: xs.iter().map(|i| grid.x_values[*i].clone()).collect(),
        y_values: ys.iter().map(|i| grid.y_values[*i].clone()).collect(),
        mean: ys
            .iter()
            .map(|r| {
                xs.iter()
                    .map(|c| {
                        grid.mean
                            .get(*r)
                            .and_then(|row| row.get(*c).copied().flatten())
                    })
                    .collect()
            })
            .collect(),
    }
}

/// Viridis, from dark (0) to bright (1).
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    } * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

const MISSING: RGBColor = RGBColor(0xF4, 0xF4, 0xF4);

impl Heatmap<'_> {
    fn range(&self) -> (f64, f64) {
        let values: Vec<f64> = self.grid.mean.iter().flatten().flatten().copied().collect();
        super::min_max(&values)
    }

    /// Position on the colour scale: brighter is better, whichever the goal.
    fn shade(&self, v: f64) -> f64 {
        let (lo, hi) = self.range();
        if hi - lo < 1e-12 {
            return 1.0;
        }
        let t = (v - lo) / (hi - lo);
        match self.goal {
            Goal::Max => t,
            Goal::Min => 1.0 - t,
        }
    }

    fn best(&self) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize, f64)> = None;
        for (r, row) in self.grid.mean.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let Some(v) = v.filter(|v| v.is_finite()) else {
                    continue;
                };
                if best.is_none_or(|(_, _, b)| crate::analysis::better(v, b, self.goal)) {
                    best = Some((r, c, v));
                }
            }
        }
        best.map(|(r, c, _)| (r, c))
    }

    fn draw_colorbar<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (lo, hi) = self.range();
        let y = Scale::fit(&[lo, hi], false, 0.0, None);
        let x = Scale {
            log: false,
            range: 0.0..1.0,
            ticks: vec![],
            integer: false,
            names: vec![],
        };
        let mut chart = ChartBuilder::on(area)
            .margin_top(8)
            .margin_bottom(54)
            .margin_right(10)
            .y_label_area_size(48)
            .build_cartesian_2d(x.coord(), y.coord())?;
        let fmt = |v: &f64| fmt_tick(*v);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .y_label_formatter(&fmt)
            .y_desc(self.metric)
            .label_style(text_style(14.0, &MUTED))
            .axis_desc_style(text_style(15.0, &INK))
            .draw()?;
        let steps = 60;
        let (a, b) = (y.range.start, y.range.end);
        chart.draw_series((0..steps).map(|i| {
            let v0 = a + (b - a) * i as f64 / steps as f64;
            let v1 = a + (b - a) * (i + 1) as f64 / steps as f64;
            Rectangle::new(
                [(0.0, v0), (1.0, v1)],
                viridis(self.shade((v0 + v1) / 2.0)).filled(),
            )
        }))?;
        Ok(())
    }
}

impl Chart for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        let nx = self.grid.x_values.len() as u32;
        let ny = self.grid.y_values.len() as u32;
        (
            (260 + nx * 96).clamp(760, 1600),
            (200 + ny * 64).clamp(520, 1200),
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = titled(root, &self.title, &self.subtitle)?;
        let (w, _) = body.dim_in_pixel();
        let (plot, bar) = body.split_horizontally(w - 120);
        self.draw_colorbar(&bar)?;

        let names = |values: &[Value]| values.iter().map(fmt_param).collect::<Vec<_>>();
        let x = Scale::categories(names(&self.grid.x_values));
        let y = Scale::categories(names(&self.grid.y_values));
        let mut chart = panel(
            &plot,
            &x,
            &y,
            &AxisText {
                caption: None,
                x_desc: &self.grid.x_axis,
                y_desc: &self.grid.y_axis,
            },
        )?;
        let nx = self.grid.x_values.len();
        let ny = self.grid.y_values.len();
        let (pw, ph) = chart.plotting_area().dim_in_pixel();
        let cell_w = pw as f64 / nx.max(1) as f64;
        let cell_h = ph as f64 / ny.max(1) as f64;
        let font = (cell_h / 3.0).min(cell_w / 4.0).clamp(10.0, 18.0);
        let centred = Pos::new(HPos::Center, VPos::Center);
        for (r, row) in self.grid.mean.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                let (cx, cy) = (c as f64, r as f64);
                let cell = [(cx - 0.5, cy - 0.5), (cx + 0.5, cy + 0.5)];
                match v.filter(|v| v.is_finite()) {
                    Some(v) => {
                        let fill = viridis(self.shade(v));
                        let light =
                            0.299 * fill.0 as f64 + 0.587 * fill.1 as f64 + 0.114 * fill.2 as f64
                                > 150.0;
                        let ink: &'static RGBColor = if light { &INK } else { &WHITE };
                        chart.draw_series([Rectangle::new(cell, fill.filled())])?;
                        chart.draw_series([Text::new(
                            fmt_value(v),
                            (cx, cy),
                            text_style(font, ink).pos(centred),
                        )])?;
                    }
                    None => {
                        chart.draw_series([Rectangle::new(cell, MISSING.filled())])?;
                        // A diagonal cross marks the cell as empty, not as a low value.
                        for (a, b) in [((-0.5, -0.5), (0.5, 0.5)), ((-0.5, 0.5), (0.5, -0.5))] {
                            chart.draw_series([PathElement::new(
                                vec![(cx + a.0, cy + a.1), (cx + b.0, cy + b.1)],
                                GRID.stroke_width(1),
                            )])?;
                        }
                        let label = if cell_w > 80.0 { "no result" } else { "–" };
                        chart.draw_series([Text::new(
                            label,
                            (cx, cy),
                            text_style(font.min(15.0), &MUTED).pos(centred),
                        )])?;
                    }
                }
                chart.draw_series([Rectangle::new(cell, WHITE.stroke_width(2))])?;
            }
        }
        if let Some((r, c)) = self.best() {
            let (cx, cy) = (c as f64, r as f64);
            let inset = 0.04;
            chart.draw_series([Rectangle::new(
                [
                    (cx - 0.5 + inset, cy - 0.5 + inset),
                    (cx + 0.5 - inset, cy + 0.5 - inset),
                ],
                INK.stroke_width(3),
            )])?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// RankMetric against each axis

struct Effects<'a> {
    title: String,
    subtitle: String,
    summary: &'a SweepSummary,
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::super::svg_check::{no_bad_numbers, texts};
    use super::*;
    use crate::analysis::summarize_sweep;
    use crate::domain::{JobId, RankMetric};

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
