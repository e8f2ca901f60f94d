//! Axis scales: linear or log10 coordinates with round ticks and short labels, and the
//! splitting of series around values that cannot be drawn.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

use super::text::fmt_tick;

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
        Scale::fit_as(values, allow_log && spans_decades(values), pad, clamp)
    }

    /// A log10 scale for positive values whatever their span (gradient norms), linear when
    /// some finite value is not positive.
    pub fn log_fit(values: &[f64], pad: f64) -> Scale {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let positive = !finite.is_empty() && finite.iter().all(|v| *v > 0.0);
        Scale::fit_as(&finite, positive, pad, None)
    }

    fn fit_as(values: &[f64], log: bool, pad: f64, clamp: Option<(f64, f64)>) -> Scale {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::plot::text::fmt_tick;

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
}
