//! `/v1/jobs/{id}/steps` and `/v1/jobs/{id}/gradients`: the loss of every step (downsampled on
//! request) and the per-tensor gradient and weight norms of every epoch.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiResult;
use super::extract::QueryParams;
use super::jobs::job_id;
use crate::analysis::{StepPoint, downsample};
use crate::domain::{JobId, JobStatus};
use crate::error::Error;

/// Default and largest `max_points`.
const DEFAULT_MAX_POINTS: usize = 1000;
const MAX_MAX_POINTS: usize = 100_000;

/// Query of `GET /v1/jobs/{id}/steps`; numbers are parsed here so that a malformed one is a
/// 422 naming its parameter.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepsQuery {
    /// First step (global, 1-based), default 1.
    from_step: Option<String>,
    /// Last step, default the last recorded.
    to_step: Option<String>,
    /// Most points to return, 1 to 100000 (default 1000).
    max_points: Option<String>,
}

/// An optional integer query parameter, or a 422 naming it.
fn integer(field: &str, value: Option<&str>) -> Result<Option<i64>, Error> {
    value
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| Error::invalid(field, format!("'{v}' is not an integer")))
        })
        .transpose()
}

/// The step losses of a job.
#[derive(Serialize)]
pub struct StepsView {
    job_id: JobId,
    status: JobStatus,
    total_steps: i64,
    from_step: i64,
    to_step: i64,
    max_points: usize,
    bucket_size: usize,
    downsampled: bool,
    points: Vec<StepPoint>,
}

/// `GET /v1/jobs/{id}/steps`
pub async fn steps(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<StepsQuery>,
) -> ApiResult<Json<StepsView>> {
    let from_step = integer("from_step", query.from_step.as_deref())?.unwrap_or(1);
    if from_step < 1 {
        return Err(Error::invalid("from_step", format!("{from_step}; valid: 1 or more")).into());
    }
    // A range that ends before it starts is empty, like one past the last step: 200 with no
    // points. Each bound is valid on its own, and the contract cannot relate the two.
    let to_step = integer("to_step", query.to_step.as_deref())?.unwrap_or(i64::MAX);
    if to_step < 1 {
        return Err(Error::invalid("to_step", format!("{to_step}; valid: 1 or more")).into());
    }
    let max_points =
        integer("max_points", query.max_points.as_deref())?.unwrap_or(DEFAULT_MAX_POINTS as i64);
    if !(1..=MAX_MAX_POINTS as i64).contains(&max_points) {
        return Err(Error::invalid(
            "max_points",
            format!("{max_points}; valid: 1 to {MAX_MAX_POINTS}"),
        )
        .into());
    }
    let max_points = max_points as usize;
    let row = state.jobs.get(job_id(&id)?).await?;
    let total_steps = state.store.count_steps(row.id).await?;
    let to_step = to_step.min(total_steps.max(from_step));
    let batches = state.store.list_steps(row.id, from_step, to_step).await?;
    let series: Vec<(i64, f32)> = batches
        .iter()
        .flat_map(|batch| {
            batch
                .losses
                .iter()
                .enumerate()
                .map(move |(i, &loss)| (batch.first_step + i as i64, loss))
        })
        .filter(|(step, _)| (from_step..=to_step).contains(step))
        .collect();
    let (points, bucket_size) = downsample(&series, max_points);
    Ok(Json(StepsView {
        job_id: row.id,
        status: row.status,
        total_steps,
        from_step,
        to_step,
        max_points,
        bucket_size,
        downsampled: bucket_size > 1,
        points,
    }))
}

/// Query of `GET /v1/jobs/{id}/gradients`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GradientsQuery {
    /// Only tensors named this or starting with it and a dot (`hidden.3`, `output`, `hidden`).
    layer: Option<String>,
}

/// One epoch of one tensor's norms.
#[derive(Serialize)]
pub struct NormPoint {
    epoch: i64,
    grad_norm_mean: Option<f64>,
    grad_norm_max: Option<f64>,
    weight_norm: Option<f64>,
}

/// One parameter tensor and its norms by epoch.
#[derive(Serialize)]
pub struct TensorSeries {
    name: String,
    layer: String,
    index: i64,
    role: String,
    epochs: Vec<NormPoint>,
}

/// The per-tensor norms of a job.
#[derive(Serialize)]
pub struct GradientsView {
    job_id: JobId,
    status: JobStatus,
    layer: Option<String>,
    layers: Vec<TensorSeries>,
}

/// `GET /v1/jobs/{id}/gradients`
pub async fn gradients(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<GradientsQuery>,
) -> ApiResult<Json<GradientsView>> {
    if let Some(layer) = &query.layer
        && (layer.is_empty() || layer.len() > 200)
    {
        return Err(Error::invalid(
            "layer",
            "a tensor name or its prefix up to a dot, 1 to 200 characters, e.g. hidden.3",
        )
        .into());
    }
    let row = state.jobs.get(job_id(&id)?).await?;
    let rows = state
        .store
        .list_layer_grads(row.id, query.layer.as_deref())
        .await?;
    let mut layers: Vec<TensorSeries> = Vec::new();
    for r in rows {
        let point = NormPoint {
            epoch: r.epoch,
            grad_norm_mean: r.grad_norm_mean,
            grad_norm_max: r.grad_norm_max,
            weight_norm: r.weight_norm,
        };
        match layers.last_mut() {
            Some(last) if last.name == r.tensor => last.epochs.push(point),
            _ => layers.push(TensorSeries {
                name: r.tensor,
                layer: r.layer,
                index: r.layer_index,
                role: r.role,
                epochs: vec![point],
            }),
        }
    }
    Ok(Json(GradientsView {
        job_id: row.id,
        status: row.status,
        layer: query.layer,
        layers,
    }))
}
