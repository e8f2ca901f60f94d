//! `/v1/weights`: upload safetensors weights (a torchvision `state_dict`, say) for
//! `init.from_weights`; list, inspect and delete them.

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiResult;
use super::extract::read_body;
use crate::domain::{Caller, WeightsId};
use crate::error::{Error, Result};
use crate::store::WeightsRow;
use engine::weights::TensorInfo;

/// Uploaded weights as the API shows them.
#[derive(Serialize)]
pub struct WeightsView {
    id: WeightsId,
    name: String,
    bytes: i64,
    sha256: String,
    /// Number of tensors.
    tensor_count: usize,
    /// Number of values over all tensors.
    values: usize,
    /// Every tensor's name, dtype and shape, by name.
    tensors: Vec<TensorInfo>,
    created_at: String,
}

impl WeightsView {
    fn new(row: WeightsRow) -> Result<Self> {
        let tensors: Vec<TensorInfo> = serde_json::from_str(&row.tensors)
            .map_err(|err| Error::internal("reading a tensor list", err))?;
        Ok(WeightsView {
            id: row.id,
            name: row.name,
            bytes: row.bytes,
            sha256: row.sha256,
            tensor_count: tensors.len(),
            values: tensors
                .iter()
                .map(|t| t.shape.iter().product::<usize>())
                .sum(),
            tensors,
            created_at: row.created_at,
        })
    }
}

/// The upload's query string.
#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
}

/// `POST /v1/weights?name=...`: the body is the safetensors file itself
/// (`application/octet-stream`).
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> ApiResult<impl IntoResponse> {
    state.gate.check_upload(&caller).await?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if content_type.as_deref() != Some("application/octet-stream") {
        return Err(Error::UnsupportedMediaType {
            message: "send the safetensors file as the raw body with Content-Type: application/octet-stream".into(),
        }
        .into());
    }
    // The body is read before the name is checked: answering while the client is still
    // sending resets the connection, and the client would never see the 422.
    let bytes = read_body(request, &state).await?;
    let name = query.name.ok_or_else(|| {
        Error::invalid("name", "give the weights a name: POST /v1/weights?name=...")
    })?;
    let row = state
        .jobs
        .add_weights(name, bytes.to_vec(), caller.owner.as_deref())
        .await?;
    let location = format!("/v1/weights/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(WeightsView::new(row)?),
    ))
}

/// `GET /v1/weights`: every upload, oldest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<serde_json::Value>> {
    let weights = state
        .jobs
        .list_weights(caller.owner_filter())
        .await?
        .into_iter()
        .map(WeightsView::new)
        .collect::<Result<Vec<_>>>()?;
    Ok(Json(serde_json::json!({ "weights": weights })))
}

/// `GET /v1/weights/{id}`: one upload, by id or name.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<WeightsView>> {
    Ok(Json(WeightsView::new(state.jobs.weights(&id).await?)?))
}

/// `DELETE /v1/weights/{id}`: removes an upload and its file.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id: WeightsId = id
        .parse()
        .map_err(|_| Error::not_found("weights", id.clone()))?;
    state.jobs.delete_weights(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
