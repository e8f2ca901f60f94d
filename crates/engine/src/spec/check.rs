//! Small range checks shared by the spec's `validate` methods; each names the field at fault.

use crate::error::{EngineError, Result};

/// A 422 on `field` unless `ok`.
pub(super) fn check(ok: bool, field: &str, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(EngineError::spec(field, message()))
    }
}

/// `value` in `[0, 1)` (or `(0, 1)` when `low_inclusive` is false).
pub(super) fn unit_interval(value: f64, field: &str, low_inclusive: bool) -> Result<()> {
    let ok = value.is_finite()
        && value < 1.0
        && if low_inclusive {
            value >= 0.0
        } else {
            value > 0.0
        };
    let bound = if low_inclusive {
        "0 <= x < 1"
    } else {
        "0 < x < 1"
    };
    check(ok, field, || {
        format!("{value} is out of range; valid: {bound}")
    })
}

/// `value` in `(0, max]`.
pub(super) fn positive_at_most(value: f64, max: f64, field: &str) -> Result<()> {
    check(
        value.is_finite() && value > 0.0 && value <= max,
        field,
        || format!("{value} is out of range; valid: 0 < x <= {max}"),
    )
}

/// `value` in `[0, max]`.
pub(super) fn non_negative_at_most(value: f64, max: f64, field: &str) -> Result<()> {
    check(
        value.is_finite() && (0.0..=max).contains(&value),
        field,
        || format!("{value} is out of range; valid: 0 <= x <= {max}"),
    )
}

/// An integer in `min..=max`.
pub(super) fn int_range<T>(value: T, min: T, max: T, field: &str) -> Result<()>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    check(value >= min && value <= max, field, || {
        format!("{value} is out of range; valid: {min} to {max}")
    })
}

/// A name people read: 1 to `max_chars` characters (not bytes), not blank, with no control
/// characters and no bidirectional formatting characters (embeddings, overrides, isolates and
/// marks), which can make one name display as another.
pub fn label(name: &str, max_chars: usize, field: &str) -> Result<()> {
    let chars = name.chars().count();
    check(!name.trim().is_empty() && chars <= max_chars, field, || {
        format!("{chars} characters; valid: 1 to {max_chars}, not all spaces")
    })?;
    match name.chars().find(|c| c.is_control() || is_bidi_control(*c)) {
        Some(c) => Err(EngineError::spec(
            field,
            format!(
                "contains U+{:04X}; valid: no control or bidirectional formatting characters",
                c as u32
            ),
        )),
        None => Ok(()),
    }
}

/// Whether `c` reorders how text is displayed (U+202A-U+202E, U+2066-U+2069 and the marks):
/// characters that can make one name display as another.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}
