//! The only place where errors become HTTP responses: `{"error", "code", "field"}`.

use axum::Json;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// A crate error on its way to the client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

/// The JSON body of every error response.
#[derive(Serialize)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs.
    pub code: &'static str,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The job a corrupt checkpoint belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The epoch of a corrupt checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// Status and machine-readable code of an error.
pub fn classify(err: &Error) -> (StatusCode, &'static str) {
    match err {
        Error::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
        Error::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        Error::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        Error::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        Error::CorruptCheckpoint { .. } => (StatusCode::CONFLICT, "checkpoint_corrupt"),
        Error::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        Error::UnsupportedMediaType { .. } => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        Error::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Error::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        Error::QuotaExceeded {
            retry_after_seconds: Some(_),
            ..
        } => (StatusCode::TOO_MANY_REQUESTS, "quota_exceeded"),
        Error::QuotaExceeded { .. } => (StatusCode::FORBIDDEN, "quota_exceeded"),
        Error::Overloaded { .. } => (StatusCode::TOO_MANY_REQUESTS, "overloaded"),
        Error::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Error::InsufficientStorage { .. } => {
            (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
        }
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = classify(&self.0);
        let retry_after = match &self.0 {
            Error::QuotaExceeded {
                retry_after_seconds: Some(seconds),
                ..
            } => Some(*seconds),
            Error::Overloaded { .. } | Error::Unavailable { .. } => Some(1),
            _ => None,
        };
        let challenge = matches!(self.0, Error::Unauthorized { .. });
        let body = match self.0 {
            Error::Internal(detail) => {
                // Internals are logged, never shown.
                tracing::error!(%detail, "internal error");
                ErrorBody {
                    error: "internal error; see the server log".into(),
                    code,
                    field: None,
                    job_id: None,
                    epoch: None,
                }
            }
            Error::Invalid { field, message } => ErrorBody {
                error: format!("{field}: {message}"),
                code,
                field: Some(field),
                job_id: None,
                epoch: None,
            },
            Error::CorruptCheckpoint { ref job, epoch, .. } => ErrorBody {
                error: self.0.to_string(),
                code,
                field: None,
                job_id: Some(job.clone()),
                epoch: Some(epoch),
            },
            other => ErrorBody {
                error: other.to_string(),
                code,
                field: None,
                job_id: None,
                epoch: None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if challenge {
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"trainserve\""),
            );
        }
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
