//! Extractors that turn every malformed request into the service's JSON errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::domain::parse_json;
use crate::error::Error;

/// A JSON body: 415 without a JSON content type, 400 when unreadable, 422 naming the field
/// when a value is wrong, 413 over the size limit.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(Error::UnsupportedMediaType {
                message: "send the body as JSON with 'Content-Type: application/json'".into(),
            }
            .into());
        }
        let bytes = read_body(req, state).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

/// A JSON body's bytes, for bodies parsed by the domain itself: 415 without a JSON content
/// type, 413 over the size limit.
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(CONTENT_TYPE)) {
            return Err(Error::UnsupportedMediaType {
                message: "send the body as JSON with 'Content-Type: application/json'".into(),
            }
            .into());
        }
        Ok(JsonBytes(read_body(req, state).await?))
    }
}

/// True for `application/json` and `application/*+json`, with or without parameters.
pub fn is_json(value: Option<&axum::http::HeaderValue>) -> bool {
    let Some(mime) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = mime
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reads the whole body, mapping the size limit to a 413.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError(Error::PayloadTooLarge {
                message: "the request body is larger than this route accepts (JSON: TRAINSERVE_MAX_BODY_BYTES, \
                          uploads: TRAINSERVE_MAX_UPLOAD_BYTES)"
                    .into(),
            })
        } else {
            ApiError(Error::bad_request(format!("could not read the body: {}", rejection.body_text())))
        }
    })
}

/// Query parameters: unknown or malformed ones are a 422 naming the parameter.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|err| {
                let message = err.to_string();
                let field = message
                    .split('`')
                    .nth(1)
                    .filter(|_| message.contains("field"))
                    .unwrap_or("query")
                    .to_string();
                ApiError(Error::invalid(field, message))
            })
    }
}
