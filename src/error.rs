//! The one error type of the service. `api/error.rs` is the only place that turns it into HTTP.

use std::fmt::Display;

/// Everything that can go wrong, classified by who has to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request could not be read at all (malformed JSON, broken multipart, ...).
    #[error("{message}")]
    BadRequest { message: String },
    /// The request was readable but a value in it is wrong; `field` names where.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// An id or name that does not exist.
    #[error("{what} '{id}' not found")]
    NotFound { what: &'static str, id: String },
    /// The request conflicts with the current state (a duplicate name, a finished job, ...).
    #[error("{message}")]
    Conflict { message: String },
    /// A body over the configured limit.
    #[error("{message}")]
    PayloadTooLarge { message: String },
    /// A body of a type the route does not accept.
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// A checkpoint whose file is missing or no longer matches the SHA-256 recorded when it
    /// was written; another epoch of the job may still be served.
    #[error("the checkpoint of epoch {epoch} of job {job} is corrupt: {detail}")]
    CorruptCheckpoint {
        job: String,
        epoch: i64,
        detail: String,
    },
    /// No valid token was presented while the service requires one.
    #[error("{message}")]
    Unauthorized { message: String },
    /// The token is valid but its scopes do not allow the call.
    #[error("{message}")]
    Forbidden { message: String },
    /// A quota of the caller's token is used up: a 429 with `Retry-After` when waiting frees
    /// it (active jobs, uploads per hour), else a 403 (storage, sweep size).
    #[error("{message}")]
    QuotaExceeded {
        message: String,
        retry_after_seconds: Option<u64>,
    },
    /// Too much work in flight; the client should retry later.
    #[error("{message}")]
    Overloaded { message: String },
    /// The service is shutting down or not ready.
    #[error("{message}")]
    Unavailable { message: String },
    /// The data folder or the database has no room left; nothing of the request was kept.
    #[error("{message}")]
    InsufficientStorage { message: String },
    /// A fault of the service itself; the message is logged, never shown to clients.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The crate-wide result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A 422 naming the offending field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A 400 for a request that could not be parsed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Error::BadRequest {
            message: message.into(),
        }
    }

    /// A 404 for `what` with the given id.
    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            what,
            id: id.into(),
        }
    }

    /// A 403 for a call the caller's scopes do not allow.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Error::Forbidden {
            message: message.into(),
        }
    }

    /// A used-up quota that frees itself in `retry_after_seconds` (a 429), or never (a 403).
    pub fn quota(message: impl Into<String>, retry_after_seconds: Option<u64>) -> Self {
        Error::QuotaExceeded {
            message: message.into(),
            retry_after_seconds,
        }
    }

    /// A 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Error::Conflict {
            message: message.into(),
        }
    }

    /// An internal fault, with what was being done when it happened.
    pub fn internal(context: &str, err: impl Display) -> Self {
        Error::Internal(format!("{context}: {err}"))
    }
}

/// Where the data crate's errors meet the API: a bad input becomes a 422 on the request field
/// it came from.
impl From<data::DataError> for Error {
    fn from(err: data::DataError) -> Self {
        use data::{DataError, Input};
        match err {
            DataError::Invalid { input, message } => {
                let field = match input {
                    // Part and option names are the request's own (multipart parts, form fields).
                    Input::Part(part) => part,
                    Input::Option(option) => option.to_string(),
                    Input::Generator(param) => format!("synthetic.{param}"),
                    Input::SplitFraction(fraction) => format!("data.{fraction}"),
                    Input::Row => "id".to_string(),
                };
                Error::Invalid { field, message }
            }
            DataError::NotFound { what, id } => Error::NotFound { what, id },
            DataError::Io(err) => err.into(),
            DataError::Internal(message) => Error::Internal(message),
        }
    }
}

/// Where the engine's errors meet the API: a spec path is the request field, weights that
/// cannot be read are a 422 on the uploaded `file`, the rest is the service's fault.
impl From<engine::EngineError> for Error {
    fn from(err: engine::EngineError) -> Self {
        use engine::EngineError;
        match err {
            EngineError::Spec { path, message } => Error::Invalid {
                field: path,
                message,
            },
            EngineError::UnreadableWeights(message) => Error::Invalid {
                field: "file".to_string(),
                message,
            },
            EngineError::Data(err) => err.into(),
            EngineError::Tensor(err) => err.into(),
            EngineError::Io(err) => err.into(),
            EngineError::Internal(message) => Error::Internal(message),
        }
    }
}

impl From<candle_core::Error> for Error {
    fn from(err: candle_core::Error) -> Self {
        Error::Internal(format!("tensor operation failed: {err}"))
    }
}

impl Error {
    /// An I/O failure while doing `what`: a 507 when the disk is full, else an internal error.
    pub fn io(what: &str, err: std::io::Error) -> Self {
        if is_storage_full(&err) {
            Error::storage_full(what, err)
        } else {
            Error::internal(what, err)
        }
    }

    /// A 507: the disk (or the quota) holding the data folder is full.
    pub fn storage_full(what: &str, err: impl Display) -> Self {
        Error::InsufficientStorage {
            message: format!(
                "{what}: the data folder has no space left ({err}); nothing was kept, free some space and retry"
            ),
        }
    }
}

/// True for the errors a full disk or an exhausted quota gives.
pub fn is_storage_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        if is_storage_full(&err) {
            return Error::storage_full("writing a file", err);
        }
        Error::Internal(format!("i/o failed: {err}"))
    }
}
