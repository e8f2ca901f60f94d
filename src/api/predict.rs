//! `/v1/models/{model}/predict`

use axum::Json;
use axum::extract::{Path, State};

use super::AppState;
use super::error::ApiResult;
use super::extract::JsonBody;
use crate::predict::{PredictRequest, PredictResponse};

/// `POST /v1/models/{model}/predict`, where `{model}` is a job id.
pub async fn predict(
    State(state): State<AppState>,
    Path(model): Path<String>,
    JsonBody(request): JsonBody<PredictRequest>,
) -> ApiResult<Json<PredictResponse>> {
    Ok(Json(state.predictor.predict(&model, request).await?))
}
