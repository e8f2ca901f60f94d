//! `GET /v1/jobs/{id}/diagnosis`: findings about a run with evidence and suggestions.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AppState;
use super::error::ApiResult;
use super::jobs::job_id;
use crate::analysis::Finding;
use crate::domain::JobId;

/// A job's findings.
#[derive(Serialize)]
pub struct DiagnosisView {
    job_id: JobId,
    status: String,
    findings: Vec<Finding>,
}

/// `GET /v1/jobs/{id}/diagnosis`
pub async fn diagnosis(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<DiagnosisView>> {
    let row = state.jobs.get(job_id(&id)?).await?;
    let epochs = state.store.list_epochs(row.id).await?;
    let layers = state.store.list_layer_grads(row.id, None).await?;
    let findings = crate::evidence::findings_for(&row, &epochs, &layers)?;
    Ok(Json(DiagnosisView {
        job_id: row.id,
        status: row.status.to_string(),
        findings,
    }))
}
