//! `/v1/studies`: run a whole study, follow it, cancel, resume or delete it, and read its
//! report as HTML, Markdown or a zip of Markdown and PNG plots.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiResult;
use super::extract::JsonBody;
use crate::domain::{Caller, StudyId, StudyRequest};
use crate::error::{Error, Result};
use crate::studies::{ReportFormat, StudyView};

fn study_id(raw: &str) -> Result<StudyId> {
    raw.parse().map_err(|_| Error::not_found("study", raw))
}

/// `POST /v1/studies`: 201 with the study; its runs are queued.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<StudyRequest>,
) -> ApiResult<Response> {
    state.gate.check_storage(&caller).await?;
    let row = state.studies.create(request, &caller).await?;
    let view = state.studies.view(&row, true).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/studies/{}", row.id))],
        Json(view),
    )
        .into_response())
}

/// `GET /v1/studies`: the caller's studies with their progress, newest first.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    let mut studies = Vec::new();
    for row in state.studies.list(caller.owner_filter()).await? {
        let view = state.studies.view(&row, false).await?;
        studies.push(json!({
            "id": view.id,
            "name": view.name,
            "kind": view.kind,
            "dataset": view.dataset,
            "budget": view.budget,
            "status": view.status,
            "progress": view.progress,
            "created_at": view.created_at,
        }));
    }
    Ok(Json(json!({"studies": studies})))
}

/// `GET /v1/studies/{id}`: progress, parts and, per finished question, the findings.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<StudyView>> {
    let row = state.studies.get(study_id(&id)?).await?;
    Ok(Json(state.studies.view(&row, true).await?))
}

/// `POST /v1/studies/{id}/cancel`
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let cancelled = state.studies.cancel(study_id(&id)?).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"cancelled_trials": cancelled})),
    ))
}

/// `POST /v1/studies/{id}/resume`
pub async fn resume(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let requeued = state.studies.resume(study_id(&id)?).await?;
    let parts: serde_json::Map<String, Value> = requeued
        .into_iter()
        .map(|(part, trials)| (part, json!(trials)))
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"requeued_trials": parts})),
    ))
}

/// `DELETE /v1/studies/{id}`: its runs are cancelled, then its sweeps, jobs and it go. 204.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.studies.delete(study_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn report(state: AppState, id: String, format: ReportFormat) -> ApiResult<Response> {
    let row = state.studies.get(study_id(&id)?).await?;
    let (content_type, bytes) = state.studies.report(&row, format).await?;
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response();
    if format == ReportFormat::Zip
        && let Ok(value) = format!("attachment; filename=\"study-{}.zip\"", row.id).parse()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// `GET /v1/studies/{id}/report.html`
pub async fn report_html(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    report(state, id, ReportFormat::Html).await
}

/// `GET /v1/studies/{id}/report.md`
pub async fn report_md(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    report(state, id, ReportFormat::Markdown).await
}

/// `GET /v1/studies/{id}/report.zip`
pub async fn report_zip(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    report(state, id, ReportFormat::Zip).await
}
