//! What can go wrong with data, in this crate's own terms: the service names request fields
//! and picks HTTP statuses where it calls in (`trainserve::error`).

use std::fmt::Display;

/// The part of its input a [`DataError::Invalid`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// An uploaded file, by the part name the caller gave it (`train`, `val`, `archive`, …).
    Part(String),
    /// A reading option: `channels`, `image_size` or `label_column`.
    Option(&'static str),
    /// A parameter of a generator ([`crate::ShapesParams`], [`crate::RegionsParams`]).
    Generator(&'static str),
    /// A fraction of [`crate::SplitPlan`]: `val_fraction` or `test_fraction`.
    SplitFraction(&'static str),
    /// The row asked for as a sample image.
    Row,
}

impl std::fmt::Display for Input {
    /// The input's own name: a part's name, an option's, a parameter's, or `row`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Part(name) => f.write_str(name),
            Input::Option(name) | Input::Generator(name) | Input::SplitFraction(name) => {
                f.write_str(name)
            }
            Input::Row => f.write_str("row"),
        }
    }
}

/// A data error.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The input cannot be used; `message` says what would be valid.
    #[error("{message}")]
    Invalid {
        /// Which part of the input.
        input: Input,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// Something asked for is not there (a row past the end).
    #[error("{what} {id} was not found")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// Which one.
        id: String,
    },
    /// Reading or writing a file failed (a full disk among other causes).
    #[error("i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// A failure that is not the input's fault: stored data that does not read back, a broken
    /// invariant.
    #[error("{0}")]
    Internal(String),
}

/// A result with a [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    /// Input that cannot be used.
    pub fn invalid(input: Input, message: impl Into<String>) -> Self {
        DataError::Invalid {
            input,
            message: message.into(),
        }
    }

    /// A failure that is not the input's fault, with what was being done.
    pub fn internal(context: &str, err: impl Display) -> Self {
        DataError::Internal(format!("{context}: {err}"))
    }

    /// Input about an uploaded part named `part`.
    pub(crate) fn in_part(part: &str, message: impl Into<String>) -> Self {
        Self::invalid(Input::Part(part.to_string()), message)
    }
}
