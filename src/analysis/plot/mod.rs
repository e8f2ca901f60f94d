//! Charts: pure functions from stored metrics to SVG or PNG bytes, one file per chart kind.
//!
//! Every chart shares the helpers here: one palette, one font (Liberation Sans, committed under
//! `assets/fonts` and compiled in, so PNG text needs no system font library), axis scales that
//! switch to log10 when positive values span more than a decade, and tick labels that stay short.
//! Non-finite values are never drawn: a series is broken into segments around them.

mod curves;
mod overlay;
mod sweep;

pub use curves::learning_curves;
pub use overlay::overlay_curves;
pub use sweep::sweep_chart;

use std::ops::Range;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};

/// What a chart is encoded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    /// Scalable vector graphics, text as text.
    Svg,
    /// A PNG bitmap of the same size in pixels.
    Png,
}

impl ImageFormat {
    /// The HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Svg => "image/svg+xml",
            ImageFormat::Png => "image/png",
        }
    }
}

/// The one font family every chart uses; SVG viewers substitute their own sans-serif.
const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/LiberationSans-Regular.ttf");

fn register_font() {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    debug_assert!(ok, "the bundled font parses");
}

/// Colours of series, in order: Tableau 10, distinguishable and colour-blind friendly enough.
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0xBA, 0xB0, 0xAC),
];
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x66, 0x66, 0x66);
const GRID: RGBColor = RGBColor(0xE4, 0xE4, 0xE4);

/// The colour of the `i`th series (cycling after ten).
pub(crate) fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type DrawResult<DB> =
    std::result::Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A chart that can draw itself on any plotters backend.
pub(crate) trait Chart {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws everything on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Renders a chart in the format asked for.
pub(crate) fn render(chart: &impl Chart, format: ImageFormat) -> Result<Vec<u8>> {
    register_font();
    let (width, height) = chart.size();
    let failed = |err: &dyn std::fmt::Display| Error::Internal(format!("drawing a chart: {err}"));
    match format {
        ImageFormat::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
                chart.draw(&root).map_err(|e| failed(&e))?;
                root.present().map_err(|e| failed(&e))?;
            }
            Ok(svg.into_bytes())
        }
        ImageFormat::Png => {
            let mut rgb = vec![0u8; width as usize * height as usize * 3];
            {
                let root =
                    BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
                chart.draw(&root).map_err(|e| failed(&e))?;
                root.present().map_err(|e| failed(&e))?;
            }
            encode_png(&rgb, width, height)
        }
    }
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|err| Error::internal("encoding a chart PNG", err))?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Text

pub(crate) fn text_style(size: f64, color: &'static RGBColor) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(color)
}

fn anchored(style: TextStyle<'static>, h: HPos, v: VPos) -> TextStyle<'static> {
    style.pos(Pos::new(h, v))
}

/// Shortens `text` to at most `max` characters, ending in an ellipsis when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// A number for a tick label: short, without float noise (0.30000000000000004 → "0.3").
pub(crate) fn fmt_tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_finite() {
            "0".into()
        } else {
            format!("{v}")
        };
    }
    let v: f64 = format!("{v:.6e}").parse().unwrap_or(v);
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:e}");
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// A metric value for annotations and legends: three decimals, or three significant digits.
pub(crate) fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        format!("{v}")
    } else if a == 0.0 || (0.01..1000.0).contains(&a) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

// ---------------------------------------------------------------------------------------------
// Scales

/// A coordinate along one axis: linear, or log10 of the value. Ticks are computed here so that
/// both scales use the same plotters coordinate type, and labels show the original values.
#[derive(Clone, Debug)]
pub(crate) struct Scale {
    /// True when the axis shows log10 of the values.
    pub log: bool,
    /// The visible range, in plot coordinates (log10 of the values on a log scale).
    pub range: Range<f64>,
    /// Tick positions, in plot coordinates.
    pub ticks: Vec<f64>,
    /// Integer ticks only (epochs).
    pub integer: bool,
    /// For categories: the label of each integer position.
    pub names: Vec<String>,
}

/// True when the finite values are all positive and the largest is more than ten times the
/// smallest: they span more than a decade, and a log scale shows them better.
pub(crate) fn spans_decades(values: &[f64]) -> bool {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = min_max(&finite);
    !finite.is_empty() && lo > 0.0 && hi / lo > 10.0
}

pub(crate) fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(*v), hi.max(*v))
        })
}

impl Scale {
    /// A scale for `values` (non-finite ones ignored), log when `allow_log` and they span more
    /// than a decade, padded by `pad` of the span on each side, optionally clamped.
    pub fn fit(values: &[f64], allow_log: bool, pad: f64, clamp: Option<(f64, f64)>) -> Scale {
        let log = allow_log && spans_decades(values);
        let mapped: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite() && (!log || **v > 0.0))
            .map(|v| if log { v.log10() } else { *v })
            .collect();
        let (mut lo, mut hi) = min_max(&mapped);
        if mapped.is_empty() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-12 {
            let half = if lo.abs() > 1e-12 {
                lo.abs() * 0.05
            } else {
                0.5
            };
            lo -= half;
            hi += half;
        } else {
            let span = hi - lo;
            lo -= span * pad;
            hi += span * pad;
        }
        if let (Some((cl, ch)), false) = (clamp, log) {
            lo = lo.max(cl);
            hi = hi.min(ch);
        }
        let ticks = if log {
            log_ticks(lo, hi)
        } else {
            nice_ticks(lo, hi, 6, false)
        };
        Scale {
            log,
            range: lo..hi,
            ticks,
            integer: false,
            names: Vec::new(),
        }
    }

    /// An epoch axis from `first` to `last` with integer ticks.
    pub fn epochs(first: f64, last: f64) -> Scale {
        let (lo, hi) = if last > first {
            let pad = ((last - first) * 0.02).max(0.3);
            (first - pad, last + pad)
        } else {
            (first - 0.5, first + 0.5)
        };
        Scale {
            log: false,
            ticks: nice_ticks(lo, hi, 8, true),
            range: lo..hi,
            integer: true,
            names: Vec::new(),
        }
    }

    /// Named categories at 0, 1, …, n−1, each a unit wide.
    pub fn categories(names: Vec<String>) -> Scale {
        let n = names.len();
        Scale {
            log: false,
            range: -0.5..(n.max(1) as f64 - 0.5),
            ticks: (0..n).map(|i| i as f64).collect(),
            integer: true,
            names,
        }
    }

    /// The plot coordinate of a value, None when it cannot be shown (non-finite, or not
    /// positive on a log scale).
    pub fn to_plot(&self, v: f64) -> Option<f64> {
        if !v.is_finite() || (self.log && v <= 0.0) {
            return None;
        }
        Some(if self.log { v.log10() } else { v })
    }

    /// The label of a tick at plot coordinate `t`.
    pub fn label(&self, t: f64) -> String {
        if !self.names.is_empty() {
            let i = t.round();
            return if i >= 0.0 {
                self.names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            };
        }
        if self.log {
            fmt_tick(10f64.powf(t))
        } else if self.integer {
            format!("{}", t.round() as i64)
        } else {
            fmt_tick(t)
        }
    }

    /// The plotters coordinate for this scale.
    pub fn coord(&self) -> Ticked {
        Ticked {
            range: self.range.clone(),
            ticks: self.ticks.clone(),
        }
    }
}

/// A linear plotters coordinate with the ticks given (no light grid lines).
#[derive(Clone, Debug)]
pub(crate) struct Ticked {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        // Clamped far outside the canvas, so that odd values never overflow pixel coordinates.
        let fraction = ((value - self.range.start) / span).clamp(-10.0, 10.0);
        limit.0 + (fraction * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// About `target` evenly spaced ticks at round numbers (1, 2 or 5 × 10^k apart).
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize, integer: bool) -> Vec<f64> {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 || !span.is_finite() {
        return vec![lo];
    }
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let normalized = raw / magnitude;
    let mut step = magnitude
        * if normalized < 1.5 {
            1.0
        } else if normalized < 3.0 {
            2.0
        } else if normalized < 7.0 {
            5.0
        } else {
            10.0
        };
    if integer {
        step = step.max(1.0).round();
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Ticks on a log10 axis: every decade, plus 2× and 5× when fewer than three decades show.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades: Vec<f64> = (lo.ceil() as i64..=hi.floor() as i64)
        .map(|k| k as f64)
        .collect();
    let mut ticks = decades.clone();
    if decades.len() < 3 {
        for k in (lo.floor() as i64)..=(hi.ceil() as i64) {
            for m in [2.0f64, 5.0] {
                let t = k as f64 + m.log10();
                if t >= lo && t <= hi {
                    ticks.push(t);
                }
            }
        }
        ticks.sort_by(f64::total_cmp);
    }
    if ticks.len() > 12 {
        // Very wide ranges: every other decade.
        let every = ticks.len().div_ceil(10);
        ticks = ticks.into_iter().step_by(every).collect();
    }
    ticks
}

/// Splits `(x, y)` points into runs of drawable points: a non-finite or unplottable value
/// ends a run, so lines never bridge a gap.
pub(crate) fn segments(
    points: impl IntoIterator<Item = (f64, Option<f64>)>,
    x: &Scale,
    y: &Scale,
) -> Vec<Vec<(f64, f64)>> {
    let mut runs = vec![Vec::new()];
    for (px, py) in points {
        match (x.to_plot(px), py.and_then(|v| y.to_plot(v))) {
            (Some(a), Some(b)) => runs.last_mut().expect("a run").push((a, b)),
            _ => {
                if !runs.last().expect("a run").is_empty() {
                    runs.push(Vec::new());
                }
            }
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

// ---------------------------------------------------------------------------------------------
// Shared layout pieces

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

/// Width in pixels of `text` in the chart font at `size` (as a PNG draws it; SVG viewers draw
/// the same text about a fifth narrower, so this errs on the roomy side).
pub(crate) fn text_width(text: &str, size: f64) -> u32 {
    register_font();
    (FONT, size)
        .into_font()
        .box_size(text)
        .map_or(text.chars().count() as u32 * size as u32 / 2, |b| b.0)
}

/// `text`, shortened with an ellipsis until it fits in `max_px` at `size`.
pub(crate) fn fit_text(text: &str, size: f64, max_px: u32) -> String {
    if text_width(text, size) <= max_px {
        return text.to_string();
    }
    let mut keep = text.chars().count();
    while keep > 1 {
        keep -= 1;
        let candidate = truncate(text, keep);
        if text_width(&candidate, size) <= max_px {
            return candidate;
        }
    }
    "…".into()
}

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

#[cfg(test)]
pub(crate) mod svg_check {
    //! A small structural check of the SVG the charts produce.

    /// Asserts the document is one balanced `<svg>` element and returns its text contents.
    pub fn texts(svg: &str) -> Vec<String> {
        let svg = svg.trim_start();
        let body = svg
            .strip_prefix("<?xml")
            .and_then(|rest| rest.find("?>").map(|i| rest[i + 2..].trim_start()))
            .unwrap_or(svg);
        assert!(
            body.starts_with("<svg"),
            "starts with <svg: {}",
            &body[..body.len().min(80)]
        );
        let mut stack: Vec<String> = Vec::new();
        let mut texts = Vec::new();
        let mut rest = body;
        while let Some(open) = rest.find('<') {
            let content = &rest[..open];
            if stack.last().is_some_and(|t| t == "text") && !content.trim().is_empty() {
                texts.push(unescape(content.trim()));
            }
            let close = rest[open..].find('>').expect("every tag closes") + open;
            let tag = &rest[open + 1..close];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name.trim()), "balanced tags");
            } else if !tag.ends_with('/') && !tag.starts_with('!') && !tag.starts_with('?') {
                let name = tag.split_whitespace().next().expect("a tag name");
                stack.push(name.to_string());
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed tags: {stack:?}");
        assert!(rest.trim().is_empty(), "nothing after </svg>");
        texts
    }

    fn unescape(s: &str) -> String {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    }

    /// Number of `<polyline>` elements stroked with `color`.
    pub fn lines_of(svg: &str, color: &plotters::style::RGBColor) -> usize {
        let hex = format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2);
        svg.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(&format!("stroke=\"{hex}\"")))
            .count()
    }

    /// Asserts no NaN or infinity leaked into coordinates.
    pub fn no_bad_numbers(svg: &str) {
        for bad in ["NaN", "inf"] {
            assert!(
                !svg.lines()
                    .any(|l| !l.starts_with("<text") && l.contains(bad)),
                "{bad} in the SVG"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_labels_short() {
        assert_eq!(
            nice_ticks(0.0, 1.0, 5, false),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(fmt_tick(0.6000000000000001), "0.6");
        assert_eq!(fmt_tick(1e-5), "1e-5");
        assert_eq!(fmt_tick(10f64.powf(-3.0)), "0.001");
        assert_eq!(fmt_tick(250000.0), "2.5e5");
        assert_eq!(nice_ticks(0.5, 3.5, 8, true), vec![1.0, 2.0, 3.0]);
        let s = Scale::fit(&[1e-5, 1e-3, 1.0], true, 0.05, None);
        assert!(s.log);
        assert_eq!(
            s.ticks.iter().map(|t| s.label(*t)).collect::<Vec<_>>(),
            ["1e-5", "1e-4", "0.001", "0.01", "0.1", "1"]
        );
        assert!(
            !Scale::fit(&[1.0, 2.0, 6.0, 10.0], true, 0.05, None).log,
            "exactly a decade is not more"
        );
        assert!(
            !Scale::fit(&[-1.0, 100.0], true, 0.05, None).log,
            "not all positive"
        );
    }

    #[test]
    fn segments_break_at_values_that_cannot_be_drawn() {
        let x = Scale::epochs(1.0, 5.0);
        let y = Scale::fit(&[0.1, 5.0], true, 0.0, None);
        let runs = segments(
            [
                (1.0, Some(1.0)),
                (2.0, Some(f64::NAN)),
                (3.0, Some(2.0)),
                (4.0, Some(-1.0)),
                (5.0, Some(f64::INFINITY)),
            ],
            &x,
            &y,
        );
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0], vec![(1.0, 0.0)]);
    }

    /// Writes one chart of each kind to `$PLOT_DIR` (default /tmp/trainserve-plots) for a look:
    /// `cargo test --lib render_samples -- --ignored`.
    #[test]
    #[ignore = "writes files for a person to look at"]
    fn render_samples() {
        use serde_json::json;

        use crate::analysis::{Comparison, TrialResult, compare_job, summarize_sweep};
        use crate::domain::{Goal, JobId, RankMetric};
        use crate::store::EpochRow;

        let dir = std::env::var("PLOT_DIR").unwrap_or_else(|_| "/tmp/trainserve-plots".into());
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, svg: Vec<u8>, png: Vec<u8>| {
            std::fs::write(format!("{dir}/{name}.svg"), svg).unwrap();
            std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
        };
        let run = |n: i64, speed: f64, overfit: bool| -> Vec<EpochRow> {
            (1..=n)
                .map(|i| {
                    let t = i as f64;
                    let train_loss = 2.3 * (-speed * t).exp() + 0.01;
                    let val_loss = train_loss * 1.1
                        + if overfit {
                            0.004 * t * t / n as f64
                        } else {
                            0.02
                        };
                    EpochRow {
                        epoch: i,
                        train_loss,
                        train_acc: 1.0 - train_loss / 2.5,
                        val_loss,
                        val_acc: 1.0 - val_loss / 2.4 - 0.02,
                        test_loss: Some(val_loss * 1.05),
                        test_acc: Some(1.0 - val_loss / 2.3 - 0.03),
                        lr: 0.001,
                        steps: 10,
                        train_eval_loss: Some(train_loss),
                        train_eval_acc: Some(1.0 - train_loss / 2.5),
                        step_loss_cv: Some(0.1),
                        epoch_seconds: 0.5,
                        samples_per_sec: 1000.0,
                    }
                })
                .collect()
        };
        let summary = |name: &str, epochs: &[EpochRow]| {
            compare_job(
                JobId::new(),
                name,
                "succeeded",
                epochs,
                RankMetric::ValAcc,
                Goal::Max,
                2000,
            )
        };
        let best = |s: &crate::analysis::JobSummary| {
            s.best_epoch
                .zip(s.best_value)
                .map(|(e, v)| (e, RankMetric::ValAcc, v))
        };
        let job = summary("digits-mlp-2x64", &run(30, 0.25, true));
        let draw = |f| learning_curves(&job.name, "succeeded", &job.curve, best(&job), f).unwrap();
        write("curves", draw(ImageFormat::Svg), draw(ImageFormat::Png));

        let jobs: Vec<_> = [
            ("lr=0.0001 a rather long job name", 0.05),
            ("lr=0.001", 0.2),
            ("lr=0.01", 0.5),
            ("lr=0.1", 0.9),
        ]
        .iter()
        .map(|(n, s)| summary(n, &run(40, *s, false)))
        .collect();
        let mut comparison = Comparison {
            metric: RankMetric::ValAcc,
            goal: Goal::Max,
            jobs,
        };
        comparison
            .jobs
            .sort_by(|a, b| b.best_value.unwrap().total_cmp(&a.best_value.unwrap()));
        write(
            "compare",
            overlay_curves(&comparison, ImageFormat::Svg).unwrap(),
            overlay_curves(&comparison, ImageFormat::Png).unwrap(),
        );

        let trial = |index: i64,
                     params: &[(&str, serde_json::Value)],
                     repeat: i64,
                     value: Option<f64>| TrialResult {
            index,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            repeat,
            job_id: JobId::new(),
            status: "succeeded".into(),
            best_epoch: Some(3),
            best_value: value,
            epochs_done: 3,
            failure: None,
        };
        let mut trials = Vec::new();
        for (i, d) in [1, 2, 6, 10].iter().enumerate() {
            for (j, w) in [8, 16, 32, 64].iter().enumerate() {
                let v = (*d != 10 || *w != 8).then_some(0.7 + 0.05 * j as f64 - 0.03 * i as f64);
                trials.push(trial(
                    (i * 4 + j) as i64,
                    &[("model.depth", json!(d)), ("model.width", json!(w))],
                    0,
                    v,
                ));
            }
        }
        let s = summarize_sweep(
            RankMetric::ValAcc,
            Goal::Max,
            &["model.depth".into(), "model.width".into()],
            trials,
        );
        write(
            "heatmap",
            sweep_chart("depth x width", &s, ImageFormat::Svg).unwrap(),
            sweep_chart("depth x width", &s, ImageFormat::Png).unwrap(),
        );

        let mut trials = Vec::new();
        for (i, lr) in [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0].iter().enumerate() {
            for seed in 0..3 {
                let v = (*lr < 1.0)
                    .then(|| 0.95 - 0.12 * ((i as f64) - 2.6).powi(2) + 0.015 * seed as f64);
                trials.push(trial(
                    i as i64 * 3 + seed,
                    &[("training.optimizer.lr", json!(lr))],
                    seed,
                    v,
                ));
            }
        }
        let s = summarize_sweep(
            RankMetric::ValAcc,
            Goal::Max,
            &["training.optimizer.lr".into()],
            trials,
        );
        write(
            "sweep-lr",
            sweep_chart("lr", &s, ImageFormat::Svg).unwrap(),
            sweep_chart("lr", &s, ImageFormat::Png).unwrap(),
        );

        let mut trials = Vec::new();
        let mut i = 0;
        for bn in [true, false] {
            for act in ["relu", "tanh", "sigmoid"] {
                for bs in [1, 16, 128, 1024] {
                    let v = 0.8 + if bn { 0.05 } else { 0.0 } - 0.01 * (bs as f64).log2() / 3.0;
                    trials.push(trial(
                        i,
                        &[
                            ("model.batch_norm", json!(bn)),
                            ("model.activation", json!(act)),
                            ("training.batch_size", json!(bs)),
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
            "training.batch_size".into(),
        ];
        let s = summarize_sweep(RankMetric::ValLoss, Goal::Min, &axes, trials);
        write(
            "sweep-3axes",
            sweep_chart("three axes", &s, ImageFormat::Svg).unwrap(),
            sweep_chart("three axes", &s, ImageFormat::Png).unwrap(),
        );

        let empty = learning_curves("queued-job", "queued", &[], None, ImageFormat::Png).unwrap();
        std::fs::write(format!("{dir}/empty.png"), empty).unwrap();
    }
}
