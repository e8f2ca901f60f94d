//! `/v1/models/{model}/predict`

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::CONTENT_TYPE;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use crate::error::Error;
use crate::predict::{CheckpointChoice, PredictRequest, PredictResponse};

/// `POST /v1/models/{model}/predict`, where `{model}` is a job id, a registry name or
/// `name@alias`: a JSON body (`inputs` rows
/// or base64 `images`), or `multipart/form-data` with `image` parts and an optional
/// `checkpoint` part.
pub async fn predict(
    State(state): State<AppState>,
    Path(model): Path<String>,
    request: Request,
) -> ApiResult<Json<PredictResponse>> {
    let request = read_request(&state, request).await?;
    Ok(Json(state.predictor.predict(&model, request).await?))
}

/// A prediction request from a JSON body or a multipart form.
pub(super) async fn read_request(
    state: &AppState,
    request: Request,
) -> Result<PredictRequest, ApiError> {
    let multipart = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let request = if multipart {
        let form = Multipart::from_request(request, state)
            .await
            .map_err(|err| {
                ApiError(Error::bad_request(format!(
                    "could not read the form: {err}"
                )))
            })?;
        from_form(form).await?
    } else {
        JsonBody::<PredictRequest>::from_request(request, state)
            .await?
            .0
    };
    Ok(request)
}

/// A request from a form's `image` parts and optional `checkpoint` part.
async fn from_form(mut form: Multipart) -> Result<PredictRequest, ApiError> {
    let mut request = PredictRequest {
        inputs: Vec::new(),
        images: Vec::new(),
        checkpoint: None,
        logits: false,
        top_k: None,
        image_parts: Vec::new(),
    };
    let unreadable = |err: axum::extract::multipart::MultipartError| ApiError(multipart_error(err));
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        match field.name().unwrap_or("") {
            "image" => request
                .image_parts
                .push(field.bytes().await.map_err(unreadable)?.to_vec()),
            "checkpoint" => {
                let text = field.text().await.map_err(unreadable)?;
                let text = text.trim();
                request.checkpoint = Some(match text.parse::<i64>() {
                    Ok(epoch) => CheckpointChoice::Epoch(epoch),
                    Err(_) => CheckpointChoice::Named(text.to_string()),
                });
            }
            other => {
                return Err(ApiError(Error::invalid(
                    other.to_string(),
                    format!("unknown form field '{other}'; valid: image (one or more), checkpoint"),
                )));
            }
        }
    }
    if request.image_parts.is_empty() {
        return Err(ApiError(Error::invalid(
            "image",
            "send at least one 'image' part",
        )));
    }
    Ok(request)
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> Error {
    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge {
            message:
                "the request body is larger than this route accepts (TRAINSERVE_MAX_BODY_BYTES)"
                    .into(),
        }
    } else {
        Error::bad_request(format!("could not read the form: {}", err.body_text()))
    }
}
