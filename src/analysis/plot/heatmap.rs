//! The heatmap of a two-axis sweep: the mean metric per cell, cells annotated, missing cells
//! visibly empty, the best cell outlined, with a colour bar.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

use super::sweep::fmt_param;
use super::{
    AxisText, Chart, DrawResult, GRID, INK, MUTED, Scale, fmt_tick, fmt_value, panel, text_style,
    titled,
};
use crate::analysis::HeatmapGrid;
use crate::domain::Goal;

pub(super) struct Heatmap<'a> {
    pub(super) title: String,
    pub(super) subtitle: String,
    pub(super) grid: HeatmapGrid,
    pub(super) goal: Goal,
    pub(super) metric: &'a str,
}

/// Numeric axis values in ascending order (the grid permuted to match); others as tried.
pub(super) fn sorted(grid: &HeatmapGrid) -> HeatmapGrid {
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
pub(super) fn viridis(t: f64) -> RGBColor {
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
    pub(super) fn shade(&self, v: f64) -> f64 {
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

    pub(super) fn best(&self) -> Option<(usize, usize)> {
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
