//! Text in charts: the bundled font's styles, short number labels, and measuring and
//! shortening text to fit.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{FONT, register_font};

pub(crate) fn text_style(size: f64, color: &'static RGBColor) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(color)
}

pub(crate) fn anchored(style: TextStyle<'static>, h: HPos, v: VPos) -> TextStyle<'static> {
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
