//! `/v1/sweeps`: create (or dry-run), list, summarize, cancel and resume sweeps.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use super::error::ApiResult;
use super::extract::{JsonBody, QueryParams};
use crate::analysis::SweepSummary;
use crate::domain::{Caller, RankMetric, SweepId, SweepSpec};
use crate::error::{Error, Result};
use crate::store::SweepRow;

fn sweep_id(raw: &str) -> Result<SweepId> {
    raw.parse().map_err(|_| Error::not_found("sweep", raw))
}

/// A trial as a dry run lists it.
#[derive(Serialize)]
struct PlannedTrial {
    index: u32,
    params: BTreeMap<String, Value>,
    repeat: u32,
    spec: crate::domain::JobSpec,
}

/// `POST /v1/sweeps`: 201 with the sweep, or 200 with the planned trials for a dry run.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(spec): JsonBody<SweepSpec>,
) -> ApiResult<Response> {
    let dry_run = spec.dry_run;
    state.gate.check_storage(&caller).await?;
    let plan = state.jobs.create_sweep(spec, &caller).await?;
    match plan.sweep {
        None if dry_run => {
            let trials: Vec<PlannedTrial> = plan
                .trials
                .into_iter()
                .map(|t| PlannedTrial {
                    index: t.index,
                    params: t.params,
                    repeat: t.repeat,
                    spec: t.spec,
                })
                .collect();
            Ok((
                StatusCode::OK,
                Json(serde_json::json!({"dry_run": true, "trials": trials})),
            )
                .into_response())
        }
        None => Err(Error::Internal("a sweep that is not a dry run was not stored".into()).into()),
        Some(row) => {
            let location = format!("/v1/sweeps/{}", row.id);
            let view = view(&state, row, None).await?;
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(view),
            )
                .into_response())
        }
    }
}

/// A sweep with its summary.
#[derive(Serialize)]
pub struct SweepView {
    id: SweepId,
    name: String,
    created_at: String,
    max_concurrent: i64,
    spec: Value,
    summary: SweepSummary,
}

async fn view(state: &AppState, row: SweepRow, metric: Option<RankMetric>) -> Result<SweepView> {
    let spec: SweepSpec =
        serde_json::from_str(&row.spec).map_err(|err| Error::internal("reading a sweep", err))?;
    let summary = summarize(state, &row, &spec, metric).await?;
    Ok(SweepView {
        id: row.id,
        name: row.name,
        created_at: row.created_at,
        max_concurrent: row.max_concurrent,
        spec: serde_json::to_value(&spec)
            .map_err(|err| Error::internal("encoding a sweep", err))?,
        summary,
    })
}

/// Loads a sweep by the id in a path; anything that is not a sweep's id is a 404.
pub(super) async fn load(state: &AppState, raw_id: &str) -> Result<(SweepRow, SweepSpec)> {
    let row = state.jobs.get_sweep(sweep_id(raw_id)?).await?;
    let spec: SweepSpec =
        serde_json::from_str(&row.spec).map_err(|err| Error::internal("reading a sweep", err))?;
    Ok((row, spec))
}

/// Judges a sweep's trials on `metric` (the sweep's own by default); shared by the JSON
/// summary and the sweep's plot.
pub(super) async fn summarize(
    state: &AppState,
    row: &SweepRow,
    spec: &SweepSpec,
    metric: Option<RankMetric>,
) -> Result<SweepSummary> {
    crate::evidence::sweep_summary(&state.jobs, &state.store, row, spec, metric).await
}

/// The optional `metric` query parameter: a 422 naming it when unknown.
pub(super) fn parse_metric(raw: Option<&str>) -> Result<Option<RankMetric>> {
    raw.map(|m| {
        m.parse::<RankMetric>()
            .map_err(|msg| Error::invalid("metric", msg))
    })
    .transpose()
}

/// Query of `GET /v1/sweeps/{id}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepQuery {
    /// Rank by this metric instead of the sweep's own.
    metric: Option<String>,
}

/// `GET /v1/sweeps/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<SweepQuery>,
) -> ApiResult<Json<SweepView>> {
    let metric = parse_metric(query.metric.as_deref())?;
    let row = state.jobs.get_sweep(sweep_id(&id)?).await?;
    Ok(Json(view(&state, row, metric).await?))
}

/// A line of the sweep list.
#[derive(Serialize)]
pub struct SweepListItem {
    id: SweepId,
    name: String,
    created_at: String,
    max_concurrent: i64,
    status_counts: BTreeMap<String, i64>,
}

/// `GET /v1/sweeps`
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let mut sweeps = Vec::new();
    for row in state.store.list_sweeps(caller.owner_filter()).await? {
        let status_counts = state
            .store
            .sweep_status_counts(row.id)
            .await?
            .into_iter()
            .collect();
        sweeps.push(SweepListItem {
            id: row.id,
            name: row.name,
            created_at: row.created_at,
            max_concurrent: row.max_concurrent,
            status_counts,
        });
    }
    Ok(Json(serde_json::json!({"sweeps": sweeps})))
}

/// `POST /v1/sweeps/{id}/cancel`
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let cancelled = state.jobs.cancel_sweep(sweep_id(&id)?).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"cancelled_trials": cancelled})),
    ))
}

/// `POST /v1/sweeps/{id}/resume`
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let requeued = state.jobs.resume_sweep(sweep_id(&id)?).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"requeued_trials": requeued})),
    ))
}

/// `DELETE /v1/sweeps/{id}`: its queued and running trials are cancelled, then every one of
/// its jobs and the sweep go. 204.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.jobs.delete_sweep(sweep_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
