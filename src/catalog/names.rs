//! Data-set names: the rule every name is checked against.

use engine::spec::is_bidi_control;

use crate::domain::DatasetId;
use crate::error::{Error, Result};

/// The longest data-set name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A data-set name: 1 to 100 characters from ASCII letters, digits, `-`, `_` and `.`, not `.`
/// or `..` (a URL path segment would climb with them) and not shaped like an id (lookups take a
/// name or an id). Names are ASCII so they read the same in every URL, log and terminal: no
/// control, bidi-override or look-alike characters.
pub(super) fn validate_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    let problem = if chars == 0 {
        Some("give the data set a name".to_owned())
    } else if chars > MAX_NAME_CHARS {
        Some(format!(
            "the name has {chars} characters; at most {MAX_NAME_CHARS} are allowed"
        ))
    } else if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let what = if c.is_control() {
            "a control character".to_owned()
        } else if is_bidi_control(c) {
            "a bidirectional-text control character".to_owned()
        } else {
            format!("'{}'", c.escape_debug())
        };
        Some(format!(
            "the name contains {what} (U+{:04X}); use only letters, digits, '-', '_' and '.'",
            u32::from(c)
        ))
    } else if name == "." || name == ".." {
        Some(format!(
            "'{name}' is reserved (it means a folder in a URL path); pick another name"
        ))
    } else if name.parse::<DatasetId>().is_ok() {
        Some("the name looks like a data-set id, which would make lookups ambiguous".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(Error::invalid(
            "name",
            format!(
                "{problem} (a name is 1 to {MAX_NAME_CHARS} characters from letters, digits, \
                 '-', '_' and '.', and not '.' or '..')"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_by_characters_and_refuse_dot_folders_and_invisible_controls() {
        for good in ["fruit", "a.b-c_d", "...", &"x".repeat(100)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "evil\u{202E}gnp.exe",
            "tab\there",
            "é",
            &"x".repeat(101),
            "0190d6f2-6b1a-7c3e-8a5b-1234567890ab",
        ] {
            assert!(
                matches!(validate_name(bad), Err(Error::Invalid { ref field, .. }) if field == "name"),
                "{bad:?}"
            );
        }
        let message = validate_name("a\u{202E}b").unwrap_err().to_string();
        assert!(
            message.contains("U+202E") && message.contains("bidirectional"),
            "{message}"
        );
    }
}
