//! `/v1/lr-finder`: the learning-rate range test: run one, read it back with its curve and
//! suggested rate, draw it, delete it.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::ApiResult;
use super::extract::{JsonBytes, QueryParams};
use super::plots::image;
use crate::analysis::plot::{self, ImageFormat};
use crate::domain::{Caller, LrFindId, parse_lr_find_request};
use crate::error::{Error, Result};
use crate::store::LrFindRow;
use engine::{LrCurve, LrFindSettings};

fn lr_find_id(raw: &str) -> Result<LrFindId> {
    raw.parse()
        .map_err(|_| Error::not_found("learning-rate test", raw))
}

/// A range test as the API shows it.
#[derive(Serialize)]
pub struct LrFindView {
    id: String,
    name: String,
    dataset: String,
    /// The job whose `"lr": "auto"` it chose, if any.
    job_id: Option<String>,
    created_at: String,
    /// `running`, `succeeded` or `failed`.
    status: String,
    /// Why it failed.
    failure: Option<String>,
    /// How long it took, once it ended.
    seconds: Option<f64>,
    settings: LrFindSettings,
    #[serde(flatten)]
    curve: Option<LrCurve>,
    spec: Value,
    plots: Value,
}

fn view(row: LrFindRow) -> Result<LrFindView> {
    let curve = row.curve.as_deref().map(read_curve).transpose()?;
    let settings: LrFindSettings = serde_json::from_str(&row.settings)
        .map_err(|err| Error::internal("reading a range test's settings", err))?;
    let spec: Value = serde_json::from_str(&row.spec)
        .map_err(|err| Error::internal("reading a range test's spec", err))?;
    let base = format!("/v1/lr-finder/{}", row.id);
    Ok(LrFindView {
        plots: serde_json::json!({"svg": format!("{base}/plot.svg"), "png": format!("{base}/plot.png")}),
        id: row.id.to_string(),
        name: row.name,
        dataset: row.dataset,
        job_id: row.job_id,
        created_at: row.created_at,
        status: row.status,
        failure: row.failure,
        seconds: row.seconds,
        settings,
        curve,
        spec,
    })
}

fn read_curve(json: &str) -> Result<LrCurve> {
    serde_json::from_str(json).map_err(|err| Error::internal("reading a range test's curve", err))
}

/// How long `POST /v1/lr-finder` waits for its test before answering that it still runs.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// `POST /v1/lr-finder`: starts the test; 201 with its curve and suggestion when it ends
/// within [`ANSWER_WITHIN`] (an MLP's takes well under a second), else 202 while it runs on.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<Response> {
    let request = parse_lr_find_request(&body)?;
    let (id, done) = state.jobs.start_lr_find(request, &caller).await?;
    // The test goes on if the wait ends first; its row says when it has ended.
    let _ = tokio::time::timeout(ANSWER_WITHIN, done).await;
    let row = state.jobs.lr_find(id).await?;
    let status = if row.status == "running" {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    let location = format!("/v1/lr-finder/{id}");
    Ok((status, [(header::LOCATION, location)], Json(view(row)?)).into_response())
}

/// Query of the listing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Most tests answered (default 100, at most 1000).
    limit: Option<i64>,
}

/// `GET /v1/lr-finder`: the caller's tests, newest first, without their points.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid(
            "limit",
            format!("{limit} is out of range; valid: 1 to 1000"),
        )
        .into());
    }
    let rows = state
        .store
        .list_lr_finds(caller.owner_filter(), limit)
        .await?;
    let mut tests = Vec::with_capacity(rows.len());
    for row in rows {
        let mut shown = serde_json::to_value(view(row)?)
            .map_err(|err| Error::internal("encoding a range test", err))?;
        if let Some(fields) = shown.as_object_mut() {
            fields.remove("points");
            fields.remove("spec");
        }
        tests.push(shown);
    }
    Ok(Json(serde_json::json!({"lr_finds": tests})))
}

/// `GET /v1/lr-finder/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<LrFindView>> {
    let row = state.jobs.lr_find(lr_find_id(&id)?).await?;
    Ok(Json(view(row)?))
}

/// `DELETE /v1/lr-finder/{id}`: 204; a 409 for the test of an `"lr": "auto"` job.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.store.delete_lr_find(lr_find_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn plot(state: AppState, id: String, format: ImageFormat) -> ApiResult<Response> {
    let row = state.jobs.lr_find(lr_find_id(&id)?).await?;
    let title = format!("Learning-rate range test: {} on {}", row.name, row.dataset);
    let Some(curve) = row.curve.as_deref().map(read_curve).transpose()? else {
        return Err(Error::conflict(format!(
            "the test has no curve to draw: it {}{}",
            if row.status == "running" {
                "is still running"
            } else {
                "failed"
            },
            row.failure.map(|f| format!(": {f}")).unwrap_or_default()
        ))
        .into());
    };
    image(format, move |format| {
        plot::lr_finder_chart(&title, &curve, format)
    })
    .await
}

/// `GET /v1/lr-finder/{id}/plot.svg`
pub async fn plot_svg(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    plot(state, id, ImageFormat::Svg).await
}

/// `GET /v1/lr-finder/{id}/plot.png`
pub async fn plot_png(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    plot(state, id, ImageFormat::Png).await
}
