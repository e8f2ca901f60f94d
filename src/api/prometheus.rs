//! `GET /metrics`: the Prometheus text exposition, and the middleware that counts and times
//! every routed request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiResult;
use crate::domain::JobStatus;
use crate::error::Error;
use crate::prometheus::{HTTP_REQUESTS, HTTP_SECONDS, JOBS, MODELS_CACHED, TRAINING_THREADS_BUSY};

/// Counts and times a routed request by its route's pattern (never its concrete path, which
/// would make a series per id).
pub(super) async fn record(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`
pub async fn metrics(State(state): State<AppState>) -> ApiResult<Response> {
    let counts = state.store.job_status_counts().await?;
    let mut running = 0;
    for status in JobStatus::ALL {
        let count = counts
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, n)| *n);
        if status == JobStatus::Running {
            running = count;
        }
        metrics::gauge!(JOBS, "state" => status.as_str()).set(count as f64);
    }
    metrics::gauge!(TRAINING_THREADS_BUSY)
        .set((running.max(0) as usize * state.jobs.threads_per_job()) as f64);
    metrics::gauge!(MODELS_CACHED).set(state.predictor.cached_models() as f64);
    let text = crate::prometheus::render().ok_or_else(|| Error::Unavailable {
        message: "metrics are recorded elsewhere in this process".into(),
    })?;
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}
