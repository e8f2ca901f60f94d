//! Layout shared by every chart: panels with labelled axes, titles, legends, and a chart that
//! only carries a message.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::scale::{Scale, Ticked};
use super::text::{anchored, fit_text, text_style, text_width};
use super::{Chart, DrawResult, GRID, INK, MUTED};

type Panel<'a, DB> = ChartContext<'a, DB, Cartesian2d<Ticked, Ticked>>;

/// Axis titles of a panel.
pub(crate) struct AxisText<'a> {
    pub caption: Option<&'a str>,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
}

/// Builds a panel with a light grid, labelled axes and short tick labels.
pub(crate) fn panel<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    x: &'a Scale,
    y: &'a Scale,
    text: &AxisText,
) -> std::result::Result<Panel<'a, DB>, DrawingAreaErrorKind<DB::ErrorType>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(8)
        .margin_right(16)
        .margin_left(8)
        .x_label_area_size(50)
        .y_label_area_size(72);
    if let Some(caption) = text.caption {
        builder.caption(caption, text_style(18.0, &INK));
    }
    let mut chart = builder.build_cartesian_2d(x.coord(), y.coord())?;
    let x_fmt = |v: &f64| x.label(*v);
    let y_fmt = |v: &f64| y.label(*v);
    chart
        .configure_mesh()
        .x_desc(text.x_desc)
        .y_desc(text.y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(text_style(15.0, &MUTED))
        .axis_desc_style(text_style(16.0, &INK))
        .bold_line_style(GRID.stroke_width(1))
        .light_line_style(TRANSPARENT)
        .axis_style(MUTED.stroke_width(1))
        .draw()?;
    Ok(chart)
}

/// The title and subtitle at the top of a chart; returns the area below them.
pub(crate) fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    subtitle: &str,
) -> std::result::Result<DrawingArea<DB, Shift>, DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let (w, _) = root.dim_in_pixel();
    let band = if subtitle.is_empty() { 46 } else { 70 };
    let (top, rest) = root.split_vertically(band);
    top.draw(&Text::new(
        fit_text(title, 24.0, w.saturating_sub(40)),
        (w as i32 / 2, 12),
        anchored(text_style(24.0, &INK), HPos::Center, VPos::Top),
    ))?;
    if !subtitle.is_empty() {
        top.draw(&Text::new(
            fit_text(subtitle, 16.0, w.saturating_sub(40)),
            (w as i32 / 2, 44),
            anchored(text_style(16.0, &MUTED), HPos::Center, VPos::Top),
        ))?;
    }
    Ok(rest)
}

/// How a legend entry is drawn.
#[derive(Clone, Debug)]
pub(crate) enum Swatch {
    /// A line of this colour (dashed when true), with a dot on it when `marker`.
    Line {
        color: RGBColor,
        dashed: bool,
        marker: bool,
    },
    /// A filled dot.
    Dot(RGBColor),
}

/// One line of a legend.
#[derive(Clone, Debug)]
pub(crate) struct LegendEntry {
    pub swatch: Swatch,
    pub label: String,
}

const LEGEND_FONT: f64 = 15.0;
/// Pixels left of a legend label: the swatch and some air.
const LEGEND_INDENT: u32 = 52;

/// Width in pixels a legend of these entries needs, at most `cap`.
pub(crate) fn legend_width(title: &str, entries: &[LegendEntry], cap: u32) -> u32 {
    let widest = entries
        .iter()
        .map(|e| text_width(&e.label, LEGEND_FONT))
        .chain([text_width(title, LEGEND_FONT)])
        .max()
        .unwrap_or(0);
    (widest + LEGEND_INDENT + 28).clamp(120, cap.max(120))
}

/// Draws a legend, one entry per line, top-aligned in `area`, under an optional title.
pub(crate) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[LegendEntry],
) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let max_px = w.saturating_sub(LEGEND_INDENT + 8);
    let mut y = 18;
    if !title.is_empty() {
        area.draw(&Text::new(
            title.to_string(),
            (10, y),
            anchored(
                text_style(LEGEND_FONT + 1.0, &INK),
                HPos::Left,
                VPos::Center,
            ),
        ))?;
        y += 26;
    }
    let row = 24;
    let fits = ((h as i32 - y) / row).max(1) as usize;
    let shown = if entries.len() > fits {
        fits - 1
    } else {
        entries.len()
    };
    for entry in &entries[..shown] {
        match &entry.swatch {
            Swatch::Line {
                color,
                dashed,
                marker,
            } => {
                let style = color.stroke_width(3);
                if *dashed {
                    for x0 in [10, 22, 34] {
                        area.draw(&PathElement::new(vec![(x0, y), (x0 + 7, y)], style))?;
                    }
                } else {
                    area.draw(&PathElement::new(vec![(10, y), (42, y)], style))?;
                }
                if *marker {
                    area.draw(&Circle::new((26, y), 4, color.filled()))?;
                }
            }
            Swatch::Dot(color) => area.draw(&Circle::new((26, y), 5, color.filled()))?,
        }
        area.draw(&Text::new(
            fit_text(&entry.label, LEGEND_FONT, max_px),
            (LEGEND_INDENT as i32, y),
            anchored(text_style(LEGEND_FONT, &INK), HPos::Left, VPos::Center),
        ))?;
        y += row;
    }
    if shown < entries.len() {
        area.draw(&Text::new(
            format!("… and {} more", entries.len() - shown),
            (LEGEND_INDENT as i32, y),
            anchored(text_style(LEGEND_FONT, &MUTED), HPos::Left, VPos::Center),
        ))?;
    }
    Ok(())
}

/// A chart that only says something (no data yet, nothing to plot).
pub(crate) struct Message {
    pub size: (u32, u32),
    pub title: String,
    pub message: String,
}

impl Chart for Message {
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let body = titled(root, &self.title, "")?;
        let (w, h) = body.dim_in_pixel();
        body.draw(&Rectangle::new(
            [(20, 10), (w as i32 - 20, h as i32 - 20)],
            GRID.stroke_width(2),
        ))?;
        body.draw(&Text::new(
            self.message.clone(),
            (w as i32 / 2, h as i32 / 2),
            anchored(text_style(24.0, &MUTED), HPos::Center, VPos::Center),
        ))?;
        Ok(())
    }
}
