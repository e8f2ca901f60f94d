//! What can go wrong in training, in the engine's own terms. The service decides what each
//! means to a caller (`trainserve::error`): which HTTP status, which request field.

use std::fmt::Display;

use data::DataError;

/// An engine error.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The job spec asks for something impossible, or something its data or weights cannot
    /// give; `path` is where in the spec (`training.optimizer.lr`, `data.preprocessing`).
    #[error("{path}: {message}")]
    Spec {
        /// The dotted path of the spec field at fault.
        path: String,
        /// What is wrong and what would be valid.
        message: String,
    },
    /// A weights file that is not safetensors, holds nothing, or holds tensors of a type that
    /// cannot be loaded.
    #[error("{0}")]
    UnreadableWeights(String),
    /// The data: a split that leaves a part empty, stored data that does not read back.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Reading or writing a file failed (a full disk among other causes).
    #[error("i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// A broken invariant or an unreadable stored file: not the caller's fault.
    #[error("{0}")]
    Internal(String),
}

/// A result with an [`EngineError`].
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// A spec field at `path` that cannot be used.
    pub fn spec(path: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::Spec {
            path: path.into(),
            message: message.into(),
        }
    }

    /// A failure that is not the caller's fault, with what was being done.
    pub fn internal(context: &str, err: impl Display) -> Self {
        EngineError::Internal(format!("{context}: {err}"))
    }
}
