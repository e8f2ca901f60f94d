//! `GET /v1/jobs/{id}/diagnosis`: findings about a run with evidence and suggestions.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::AppState;
use super::error::ApiResult;
use super::jobs::job_id;
use crate::analysis::{self, Finding, RunFacts};
use crate::domain::{JobId, JobSpec};
use crate::error::{Error, Result};
use crate::store::{EpochRow, JobRow, LayerGradRow};

/// A job's findings.
#[derive(Serialize)]
pub struct DiagnosisView {
    job_id: JobId,
    status: String,
    findings: Vec<Finding>,
}

/// Diagnoses a stored job from its row, epochs and per-tensor gradient norms.
pub fn findings_for(
    row: &JobRow,
    epochs: &[EpochRow],
    layers: &[LayerGradRow],
) -> Result<Vec<Finding>> {
    let spec: JobSpec =
        serde_json::from_str(&row.spec).map_err(|err| Error::internal("reading a spec", err))?;
    let classes = row
        .preprocessing
        .as_deref()
        .and_then(|p| serde_json::from_str::<engine::Preprocessing>(p).ok())
        .map_or(2, |p| p.labels.len());
    Ok(analysis::diagnose(&RunFacts {
        status: row.status.as_str(),
        failure: row.failure.as_deref(),
        epochs,
        classes,
        lr: spec.training.optimizer.lr(),
        layers,
    }))
}

/// `GET /v1/jobs/{id}/diagnosis`
pub async fn diagnosis(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<DiagnosisView>> {
    let row = state.jobs.get(job_id(&id)?).await?;
    let epochs = state.store.list_epochs(row.id).await?;
    let layers = state.store.list_layer_grads(row.id, None).await?;
    let findings = findings_for(&row, &epochs, &layers)?;
    Ok(Json(DiagnosisView {
        job_id: row.id,
        status: row.status.to_string(),
        findings,
    }))
}
