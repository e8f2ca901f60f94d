//! Plots as SVG or PNG: a job's learning curves, a comparison's curves overlaid, a sweep's
//! heatmap or metric-versus-parameter panels. The data is loaded exactly as the JSON routes
//! load it; drawing (in `analysis::plot`) runs on the blocking pool.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::compare::CompareQuery;
use super::error::ApiResult;
use super::extract::QueryParams;
use super::jobs::job_id;
use super::sweeps::parse_metric;
use crate::analysis::plot::ImageFormat;
use crate::analysis::{self, plot};
use crate::error::{Error, Result};

/// Most epochs drawn per curve; longer runs are downsampled evenly, keeping the first, the
/// best and the last epoch.
pub const MAX_PLOTTED_EPOCHS: usize = 2000;

/// Draws on the blocking pool and answers with the image's content type. Plots change while
/// jobs run, so they are never cached.
pub(super) async fn image(
    format: ImageFormat,
    draw: impl FnOnce(ImageFormat) -> Result<Vec<u8>> + Send + 'static,
) -> ApiResult<Response> {
    let bytes = tokio::task::spawn_blocking(move || draw(format))
        .await
        .map_err(|err| Error::internal("drawing a plot", err))??;
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}

/// Query of the learning-curve plots.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurvesQuery {
    /// The metric whose best epoch is marked (default val_acc).
    metric: Option<String>,
}

async fn curves(
    state: AppState,
    id: String,
    query: CurvesQuery,
    format: ImageFormat,
) -> ApiResult<Response> {
    let metric =
        parse_metric(query.metric.as_deref())?.unwrap_or(crate::domain::RankMetric::ValAcc);
    let row = state.jobs.get(job_id(&id)?).await?;
    let epochs = state.store.list_epochs(row.id).await?;
    let summary = analysis::compare_job(
        row.id,
        &row.name,
        row.status.as_str(),
        &epochs,
        metric,
        metric.natural_goal(),
        MAX_PLOTTED_EPOCHS,
    );
    let best = summary
        .best_epoch
        .zip(summary.best_value)
        .map(|(epoch, value)| (epoch, metric, value));
    let status = row.status.to_string();
    image(format, move |format| {
        plot::learning_curves(&summary.name, &status, &summary.curve, best, format)
    })
    .await
}

/// `GET /v1/jobs/{id}/plots/curves.svg`
pub async fn curves_svg(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<CurvesQuery>,
) -> ApiResult<Response> {
    curves(state, id, query, ImageFormat::Svg).await
}

/// `GET /v1/jobs/{id}/plots/curves.png`
pub async fn curves_png(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<CurvesQuery>,
) -> ApiResult<Response> {
    curves(state, id, query, ImageFormat::Png).await
}

async fn compare(state: AppState, query: CompareQuery, format: ImageFormat) -> ApiResult<Response> {
    let comparison = super::compare::load(&state, &query).await?;
    image(format, move |format| {
        plot::overlay_curves(&comparison, format)
    })
    .await
}

/// `GET /v1/compare/plot.svg?jobs=a,b,c&metric=val_acc`
pub async fn compare_svg(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<CompareQuery>,
) -> ApiResult<Response> {
    compare(state, query, ImageFormat::Svg).await
}

/// `GET /v1/compare/plot.png?jobs=a,b,c&metric=val_acc`
pub async fn compare_png(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<CompareQuery>,
) -> ApiResult<Response> {
    compare(state, query, ImageFormat::Png).await
}

/// Query of the sweep plots.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepPlotQuery {
    /// Judge the trials by this metric instead of the sweep's own.
    metric: Option<String>,
}

async fn sweep(
    state: AppState,
    id: String,
    query: SweepPlotQuery,
    format: ImageFormat,
) -> ApiResult<Response> {
    let metric = parse_metric(query.metric.as_deref())?;
    let (row, spec) = super::sweeps::load(&state, &id).await?;
    let summary = super::sweeps::summarize(&state, &row, &spec, metric).await?;
    let name = row.name;
    image(format, move |format| {
        plot::sweep_chart(&name, &summary, format)
    })
    .await
}

/// `GET /v1/sweeps/{id}/plot.svg`
pub async fn sweep_svg(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<SweepPlotQuery>,
) -> ApiResult<Response> {
    sweep(state, id, query, ImageFormat::Svg).await
}

/// `GET /v1/sweeps/{id}/plot.png`
pub async fn sweep_png(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<SweepPlotQuery>,
) -> ApiResult<Response> {
    sweep(state, id, query, ImageFormat::Png).await
}

async fn gradients(state: AppState, id: String, format: ImageFormat) -> ApiResult<Response> {
    let row = state.jobs.get(job_id(&id)?).await?;
    let layers = state.store.list_layer_grads(row.id, None).await?;
    let (name, status) = (row.name, row.status.to_string());
    image(format, move |format| {
        plot::gradient_norms(&name, &status, &layers, format)
    })
    .await
}

/// `GET /v1/jobs/{id}/plots/gradients.svg`
pub async fn gradients_svg(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    gradients(state, id, ImageFormat::Svg).await
}

/// `GET /v1/jobs/{id}/plots/gradients.png`
pub async fn gradients_png(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    gradients(state, id, ImageFormat::Png).await
}

/// Query of the step-noise plot.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseQuery {
    /// Comma-separated job ids.
    jobs: String,
    /// Most step points drawn per job, 10 to 5000 (default 600).
    max_points: Option<usize>,
}

async fn noise(state: AppState, query: NoiseQuery, format: ImageFormat) -> ApiResult<Response> {
    let max_points = query.max_points.unwrap_or(600);
    if !(10..=5000).contains(&max_points) {
        return Err(
            Error::invalid("max_points", format!("{max_points}; valid: 10 to 5000")).into(),
        );
    }
    let mut series = Vec::new();
    for id in super::compare::parse_ids(&query.jobs)? {
        let row = state.jobs.get(id).await?;
        let epochs = state.store.list_epochs(id).await?;
        let batches = state.store.list_steps(id, 1, i64::MAX).await?;
        series.push(plot::NoiseSeries::from_steps(
            &row.name, &batches, &epochs, max_points,
        ));
    }
    image(format, move |format| plot::step_noise(&series, format)).await
}

/// `GET /v1/compare/noise.svg?jobs=a,b,c`
pub async fn noise_svg(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<NoiseQuery>,
) -> ApiResult<Response> {
    noise(state, query, ImageFormat::Svg).await
}

/// `GET /v1/compare/noise.png?jobs=a,b,c`
pub async fn noise_png(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<NoiseQuery>,
) -> ApiResult<Response> {
    noise(state, query, ImageFormat::Png).await
}
