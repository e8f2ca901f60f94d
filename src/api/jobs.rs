//! `/v1/jobs`: submit, list, get, cancel, delete, pin, metrics, checkpoints, events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiResult;
use super::extract::{JsonBytes, QueryParams};
use super::views::{JobExtras, JobView};
use crate::domain::{Caller, JobId, JobStatus};
use crate::error::{Error, Result};
use crate::jobs::JobEvent;
use crate::store::{EpochRow, JobFilter, JobRow, JobSort};

/// Parses a job id from a path; anything that is not a known id is a 404.
pub fn job_id(raw: &str) -> Result<JobId> {
    raw.parse().map_err(|_| Error::not_found("job", raw))
}

async fn view(state: &AppState, row: JobRow) -> Result<JobView> {
    let store = &state.store;
    let queue_position = if row.status == JobStatus::Queued {
        store.queue_position(row.id).await?
    } else {
        None
    };
    let latest = if row.epochs_done > 0 {
        store.get_epoch(row.id, row.epochs_done).await?
    } else {
        None
    };
    let best = match row.best_epoch {
        Some(epoch) if Some(epoch) == latest.as_ref().map(|l| l.epoch) => latest.clone(),
        Some(epoch) => store.get_epoch(row.id, epoch).await?,
        None => None,
    };
    let live = state.jobs.live_progress(row.id);
    let lr_find = match row.lr_find_id.as_deref().map(str::parse) {
        Some(Ok(id)) => store.get_lr_find(id).await?,
        _ => None,
    };
    JobView::new(
        row,
        JobExtras {
            queue_position,
            live,
            latest,
            best,
            lr_find,
        },
    )
}

/// `POST /v1/jobs`
pub async fn submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBytes(body): JsonBytes,
) -> ApiResult<impl IntoResponse> {
    let submission = crate::domain::parse_job_submission(&body)?;
    state.gate.check_new_jobs(&caller, 1).await?;
    let row = state.jobs.submit(submission, &caller).await?;
    let location = format!("/v1/jobs/{}", row.id);
    let body = view(&state, row).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    ))
}

/// `GET /v1/jobs/{id}`
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let row = state.jobs.get(job_id(&id)?).await?;
    Ok(Json(view(&state, row).await?))
}

/// `POST /v1/jobs/{id}/cancel`
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let row = state.jobs.cancel(job_id(&id)?).await?;
    let status = if row.status == JobStatus::Cancelled {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(view(&state, row).await?)))
}

/// `DELETE /v1/jobs/{id}`: a queued or running job is cancelled first; then its rows and
/// files go. 204.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = job_id(&id)?;
    state.jobs.delete_job(id).await?;
    state.predictor.forget(id);
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/jobs/{id}/pin`: the age retention keeps the job.
pub async fn pin(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let row = state.jobs.set_pinned(job_id(&id)?, true).await?;
    Ok(Json(view(&state, row).await?))
}

/// `DELETE /v1/jobs/{id}/pin`: the job ages like any other again.
pub async fn unpin(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let row = state.jobs.set_pinned(job_id(&id)?, false).await?;
    Ok(Json(view(&state, row).await?))
}

/// Query of `GET /v1/jobs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Comma-separated statuses.
    status: Option<String>,
    /// Data set name or id.
    dataset: Option<String>,
    /// Text the name contains.
    name: Option<String>,
    /// Only trials of this sweep.
    sweep: Option<String>,
    /// Conditions, e.g. `best.val_acc > 0.9 and params.training.optimizer.lr = 0.01`.
    #[serde(rename = "where")]
    conditions: Option<String>,
    /// A field to order by, optionally with a direction: `best.val_acc desc`.
    order_by: Option<String>,
    /// created_at (default), best_val_acc, name, status.
    sort: Option<String>,
    /// asc or desc (default desc).
    order: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
    /// Rows to skip.
    offset: Option<i64>,
}

/// A page of jobs.
#[derive(Serialize)]
pub struct JobPage {
    jobs: Vec<JobView>,
    total: i64,
    limit: i64,
    offset: i64,
    next_offset: Option<i64>,
}

/// `GET /v1/jobs`
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<ListQuery>,
) -> ApiResult<Json<JobPage>> {
    let statuses = match &query.status {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<JobStatus>()
                    .map_err(|message| Error::invalid("status", message))
            })
            .collect::<Result<_>>()?,
    };
    let sort = match query.sort.as_deref().unwrap_or("created_at") {
        "created_at" => JobSort::CreatedAt,
        "best_val_acc" => JobSort::BestValAcc,
        "name" => JobSort::Name,
        "status" => JobSort::Status,
        other => {
            return Err(Error::invalid(
                "sort",
                format!("'{other}' is not sortable; valid: created_at, best_val_acc, name, status"),
            )
            .into());
        }
    };
    let (order_by, order_direction) = match query.order_by.as_deref().map(str::trim) {
        None | Some("") => (None, None),
        Some(text) => {
            let (field, direction) = match text.rsplit_once(char::is_whitespace) {
                Some((field, dir))
                    if dir.eq_ignore_ascii_case("asc") || dir.eq_ignore_ascii_case("desc") =>
                {
                    (field, Some(dir.to_ascii_lowercase()))
                }
                _ => (text, None),
            };
            (
                Some(crate::domain::parse_field(field, "order_by")?),
                direction,
            )
        }
    };
    let clauses = match &query.conditions {
        Some(text) => crate::domain::parse_where(text)?,
        None => Vec::new(),
    };
    let descending = match order_direction
        .as_deref()
        .or(query.order.as_deref())
        .unwrap_or("desc")
    {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(Error::invalid("order", format!("'{other}'; valid: asc, desc")).into());
        }
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Error::invalid("limit", format!("{limit}; valid: 1 to 500")).into());
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(Error::invalid("offset", format!("{offset}; valid: 0 or more")).into());
    }
    let dataset_id = match &query.dataset {
        None => None,
        Some(name) => match state.catalog.find(name).await? {
            Some(row) => Some(row.id),
            None => {
                return Ok(Json(JobPage {
                    jobs: Vec::new(),
                    total: 0,
                    limit,
                    offset,
                    next_offset: None,
                }));
            }
        },
    };
    let filter = JobFilter {
        statuses,
        dataset_id,
        name_contains: query.name.clone(),
        sweep_id: match &query.sweep {
            None => None,
            Some(raw) => Some(
                raw.parse()
                    .map_err(|_| Error::invalid("sweep", format!("'{raw}' is not a sweep id")))?,
            ),
        },
        clauses,
        order_by,
        sort,
        descending,
        limit,
        offset,
        owner: caller.owner_filter().map(str::to_owned),
    };
    let (rows, total) = state.store.list_jobs(&filter).await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        jobs.push(view(&state, row).await?);
    }
    let next_offset = (offset + (jobs.len() as i64) < total).then_some(offset + jobs.len() as i64);
    Ok(Json(JobPage {
        jobs,
        total,
        limit,
        offset,
        next_offset,
    }))
}

/// Per-epoch metrics of a job.
#[derive(Serialize)]
pub struct MetricsView {
    job_id: JobId,
    status: JobStatus,
    best_epoch: Option<i64>,
    epochs: Vec<EpochRow>,
}

/// `GET /v1/jobs/{id}/metrics`
pub async fn metrics(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<MetricsView>> {
    let row = state.jobs.get(job_id(&id)?).await?;
    let epochs = state.store.list_epochs(row.id).await?;
    Ok(Json(MetricsView {
        job_id: row.id,
        status: row.status,
        best_epoch: row.best_epoch,
        epochs,
    }))
}

/// One kept checkpoint.
#[derive(Serialize)]
pub struct CheckpointView {
    epoch: i64,
    sha256: String,
    bytes: i64,
    val_acc: f64,
    val_loss: f64,
    is_best: bool,
    is_latest: bool,
    /// The file is missing, of another length than written, or was found not to match its
    /// SHA-256 since it last changed; prediction passes over it.
    corrupt: bool,
}

/// The kept checkpoints of a job.
#[derive(Serialize)]
pub struct CheckpointsView {
    job_id: JobId,
    checkpoints: Vec<CheckpointView>,
}

/// `GET /v1/jobs/{id}/checkpoints`
pub async fn checkpoints(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CheckpointsView>> {
    let row = state.jobs.get(job_id(&id)?).await?;
    let rows = state.store.list_checkpoints(row.id).await?;
    let latest = rows.iter().map(|c| c.epoch).max();
    let corrupt = state.predictor.known_corrupt(&rows).await?;
    let checkpoints = rows
        .into_iter()
        .zip(corrupt)
        .map(|(c, corrupt)| CheckpointView {
            corrupt,
            is_best: Some(c.epoch) == row.best_epoch,
            is_latest: Some(c.epoch) == latest,
            epoch: c.epoch,
            sha256: c.sha256,
            bytes: c.bytes,
            val_acc: c.val_acc,
            val_loss: c.val_loss,
        })
        .collect();
    Ok(Json(CheckpointsView {
        job_id: row.id,
        checkpoints,
    }))
}

/// `GET /v1/jobs/{id}/events`: the job's current state, then its epochs and status changes as
/// server-sent events, plus a `progress` event every second while it runs. Ends when the job ends.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let id = job_id(&id)?;
    // Subscribe before reading the row, so nothing that happens in between is missed.
    let receiver = state.jobs.subscribe();
    let row = state.jobs.get(id).await?;
    let first = view(&state, row).await?;
    let ended = first.status.is_terminal();
    let initial = Event::default()
        .event("job")
        .json_data(&first)
        .map_err(|err| Error::internal("encoding an event", err))?;

    struct Cursor {
        state: AppState,
        receiver: tokio::sync::broadcast::Receiver<JobEvent>,
        ticker: tokio::time::Interval,
        id: JobId,
        initial: Option<Event>,
        done: bool,
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let cursor = Cursor {
        state,
        receiver,
        ticker,
        id,
        initial: Some(initial),
        done: false,
    };
    let stream = futures_util::stream::unfold((cursor, ended), |(mut c, ended)| async move {
        if let Some(event) = c.initial.take() {
            c.done = ended;
            return Some((Ok(event), (c, ended)));
        }
        if c.done {
            return None;
        }
        loop {
            tokio::select! {
                received = c.receiver.recv() => match received {
                    Ok(event) if event.job_id() == c.id => {
                        let (name, done) = match &event {
                            JobEvent::Status { status, .. } => ("status", status.is_terminal()),
                            JobEvent::Epoch { .. } => ("epoch", false),
                            JobEvent::Deleted { .. } => ("deleted", true),
                        };
                        c.done = done;
                        let event = Event::default().event(name).json_data(&event).unwrap_or_default();
                        return Some((Ok(event), (c, ended)));
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                },
                _ = c.ticker.tick() => {
                    if let Some(progress) = c.state.jobs.live_progress(c.id) {
                        let event = Event::default().event("progress").json_data(progress).unwrap_or_default();
                        return Some((Ok(event), (c, ended)));
                    }
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
