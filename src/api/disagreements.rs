//! `GET /v1/compare/disagreements`: the samples one model gets right and another gets wrong.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;

use super::AppState;
use super::error::ApiResult;
use super::extract::QueryParams;
use super::jobs::job_id;
use crate::analysis::plot::{self, ImageFormat};
use crate::error::{Error, Result};
use crate::evidence::{self, DisagreementView};
use data::Table;

/// Query of `GET /v1/compare/disagreements`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisagreementQuery {
    /// Model A (a job id).
    a: String,
    /// Model B (a job id) on the same data set and split.
    b: String,
    /// test (default), val or train.
    split: Option<String>,
    /// Most samples listed per side (default 20, at most 1000).
    limit: Option<usize>,
}

/// `GET /v1/compare/disagreements?a=…&b=…&split=test`
pub async fn disagreements(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<DisagreementQuery>,
) -> ApiResult<Json<DisagreementView>> {
    let (view, _) = load(&state, query).await?;
    Ok(Json(view))
}

/// The disagreements a query names; shared by the JSON answer and its image grid.
async fn load(
    state: &AppState,
    query: DisagreementQuery,
) -> Result<(DisagreementView, Arc<Table>)> {
    evidence::disagreements(
        &state.jobs,
        &state.catalog,
        &state.predictor,
        job_id(&query.a)?,
        job_id(&query.b)?,
        query.split,
        query.limit,
    )
    .await
}

/// Most samples per side an image grid shows.
const MAX_GRID_SAMPLES: usize = 48;

async fn grid(
    state: AppState,
    mut query: DisagreementQuery,
    format: ImageFormat,
) -> ApiResult<Response> {
    let limit = *query.limit.get_or_insert(12);
    if limit > MAX_GRID_SAMPLES {
        return Err(Error::invalid(
            "limit",
            format!("{limit}; valid: 0 to {MAX_GRID_SAMPLES} samples per side in an image"),
        )
        .into());
    }
    let (view, table) = load(&state, query).await?;
    if table.image_shape.is_none() {
        return Err(Error::invalid(
            "a",
            "the data set has no images; GET /v1/compare/disagreements lists the samples as JSON",
        )
        .into());
    }
    let drawing = evidence::grid_drawing(&view, &table);
    super::plots::image(format, move |format| {
        plot::disagreement_grid(&drawing.title, &drawing.subtitle, &drawing.sections, format)
    })
    .await
}

/// `GET /v1/compare/disagreements.svg?a=…&b=…`
pub async fn grid_svg(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<DisagreementQuery>,
) -> ApiResult<Response> {
    grid(state, query, ImageFormat::Svg).await
}

/// `GET /v1/compare/disagreements.png?a=…&b=…`
pub async fn grid_png(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<DisagreementQuery>,
) -> ApiResult<Response> {
    grid(state, query, ImageFormat::Png).await
}
