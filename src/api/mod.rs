//! The HTTP API (axum): routes, extractors, limits, and the mapping of errors to responses.

mod access;
mod compare;
mod datasets;
mod diagnosis;
mod disagreements;
mod echo;
pub mod error;
mod extract;
mod health;
mod jobs;
mod lr_finder;
mod measurements;
mod models;
mod plots;
mod predict;
mod prometheus;
mod studies;
mod sweeps;
mod tokens;
mod usage;
mod v2;
mod views;
mod weights;

use crate::studies::Studies;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use access::Access;
pub use health::OPENAPI_YAML;

use crate::access::Gate;
use crate::catalog::Catalog;
use crate::jobs::Jobs;
use crate::predict::Predictor;
use crate::store::Store;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The job queue.
    pub jobs: Jobs,
    /// The data-set catalog.
    pub catalog: Catalog,
    /// The prediction service.
    pub predictor: Predictor,
    /// Tokens, scopes, ownership and quotas.
    pub gate: Gate,
    /// Studies and their reports.
    pub studies: Studies,
}

/// Request body limits.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// JSON bodies.
    pub json_bytes: usize,
    /// Data-set uploads.
    pub upload_bytes: usize,
}

/// Every route the server answers, as (method, path, who may call it). `openapi.yaml` must
/// list exactly these, and a test checks every route's access decision against the table in
/// `tests/api/access.rs`.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Open),
    ("GET", "/readyz", Access::Open),
    ("GET", "/openapi.yaml", Access::Open),
    ("GET", "/metrics", Access::Read),
    ("POST", "/v1/jobs", Access::Train),
    ("GET", "/v1/jobs", Access::Read),
    ("GET", "/v1/jobs/{id}", Access::Read),
    ("DELETE", "/v1/jobs/{id}", Access::Train),
    ("POST", "/v1/jobs/{id}/cancel", Access::Train),
    ("PUT", "/v1/jobs/{id}/pin", Access::Train),
    ("DELETE", "/v1/jobs/{id}/pin", Access::Train),
    ("GET", "/v1/jobs/{id}/metrics", Access::Read),
    ("GET", "/v1/jobs/{id}/steps", Access::Read),
    ("GET", "/v1/jobs/{id}/gradients", Access::Read),
    ("GET", "/v1/jobs/{id}/checkpoints", Access::Read),
    ("GET", "/v1/jobs/{id}/events", Access::Read),
    ("GET", "/v1/jobs/{id}/diagnosis", Access::Read),
    ("GET", "/v1/jobs/{id}/plots/curves.svg", Access::Read),
    ("GET", "/v1/jobs/{id}/plots/curves.png", Access::Read),
    ("GET", "/v1/jobs/{id}/plots/gradients.svg", Access::Read),
    ("GET", "/v1/jobs/{id}/plots/gradients.png", Access::Read),
    ("POST", "/v1/datasets", Access::Train),
    ("GET", "/v1/datasets", Access::Read),
    ("GET", "/v1/datasets/{id}", Access::Read),
    ("PATCH", "/v1/datasets/{id}", Access::Train),
    ("DELETE", "/v1/datasets/{id}", Access::Train),
    ("GET", "/v1/datasets/{id}/samples/{index}.png", Access::Read),
    ("POST", "/v1/weights", Access::Train),
    ("GET", "/v1/weights", Access::Read),
    ("GET", "/v1/weights/{id}", Access::Read),
    ("DELETE", "/v1/weights/{id}", Access::Train),
    ("POST", "/v1/models", Access::Train),
    ("GET", "/v1/models", Access::Read),
    ("GET", "/v1/models/{model}", Access::Read),
    ("GET", "/v1/models/{model}/versions/{version}", Access::Read),
    (
        "DELETE",
        "/v1/models/{model}/versions/{version}",
        Access::Train,
    ),
    ("PUT", "/v1/models/{model}/aliases/{alias}", Access::Train),
    (
        "DELETE",
        "/v1/models/{model}/aliases/{alias}",
        Access::Train,
    ),
    ("POST", "/v1/models/{model}/predict", Access::Predict),
    (
        "POST",
        "/v1/models/{model}/versions/{version}/predict",
        Access::Predict,
    ),
    ("POST", "/v1/echo", Access::Predict),
    ("POST", "/v1/sweeps", Access::Train),
    ("GET", "/v1/sweeps", Access::Read),
    ("GET", "/v1/sweeps/{id}", Access::Read),
    ("DELETE", "/v1/sweeps/{id}", Access::Train),
    ("POST", "/v1/sweeps/{id}/cancel", Access::Train),
    ("POST", "/v1/sweeps/{id}/resume", Access::Train),
    ("GET", "/v1/sweeps/{id}/plot.svg", Access::Read),
    ("GET", "/v1/sweeps/{id}/plot.png", Access::Read),
    ("POST", "/v1/studies", Access::Train),
    ("GET", "/v1/studies", Access::Read),
    ("GET", "/v1/studies/{id}", Access::Read),
    ("DELETE", "/v1/studies/{id}", Access::Train),
    ("POST", "/v1/studies/{id}/cancel", Access::Train),
    ("POST", "/v1/studies/{id}/resume", Access::Train),
    ("GET", "/v1/studies/{id}/report.html", Access::Read),
    ("GET", "/v1/studies/{id}/report.md", Access::Read),
    ("GET", "/v1/studies/{id}/report.zip", Access::Read),
    ("POST", "/v1/lr-finder", Access::Train),
    ("GET", "/v1/lr-finder", Access::Read),
    ("GET", "/v1/lr-finder/{id}", Access::Read),
    ("DELETE", "/v1/lr-finder/{id}", Access::Train),
    ("GET", "/v1/lr-finder/{id}/plot.svg", Access::Read),
    ("GET", "/v1/lr-finder/{id}/plot.png", Access::Read),
    ("GET", "/v1/usage", Access::Read),
    ("GET", "/v1/compare", Access::Read),
    ("GET", "/v1/compare/disagreements", Access::Read),
    ("GET", "/v1/compare/plot.svg", Access::Read),
    ("GET", "/v1/compare/plot.png", Access::Read),
    ("GET", "/v1/compare/noise.svg", Access::Read),
    ("GET", "/v1/compare/noise.png", Access::Read),
    ("GET", "/v1/compare/disagreements.svg", Access::Read),
    ("GET", "/v1/compare/disagreements.png", Access::Read),
    ("POST", "/v1/tokens", Access::Admin),
    ("GET", "/v1/tokens", Access::Admin),
    ("DELETE", "/v1/tokens/{id}", Access::Admin),
    ("GET", "/v2", Access::Open),
    ("GET", "/v2/health/live", Access::Open),
    ("GET", "/v2/health/ready", Access::Open),
    ("GET", "/v2/models/{model}", Access::Predict),
    ("GET", "/v2/models/{model}/ready", Access::Predict),
    ("POST", "/v2/models/{model}/infer", Access::Predict),
    (
        "GET",
        "/v2/models/{model}/versions/{version}",
        Access::Predict,
    ),
    (
        "GET",
        "/v2/models/{model}/versions/{version}/ready",
        Access::Predict,
    ),
    (
        "POST",
        "/v2/models/{model}/versions/{version}/infer",
        Access::Predict,
    ),
];

fn handler(method: &str, path: &str, limits: BodyLimits) -> MethodRouter<AppState> {
    match (method, path) {
        ("GET", "/healthz") => get(health::healthz),
        ("GET", "/readyz") => get(health::readyz),
        ("GET", "/openapi.yaml") => get(health::openapi),
        ("GET", "/metrics") => get(prometheus::metrics),
        ("POST", "/v1/jobs") => post(jobs::submit),
        ("GET", "/v1/jobs") => get(jobs::list),
        ("GET", "/v1/jobs/{id}") => get(jobs::get),
        ("DELETE", "/v1/jobs/{id}") => delete(jobs::delete),
        ("POST", "/v1/jobs/{id}/cancel") => post(jobs::cancel),
        ("PUT", "/v1/jobs/{id}/pin") => put(jobs::pin),
        ("DELETE", "/v1/jobs/{id}/pin") => delete(jobs::unpin),
        ("GET", "/v1/jobs/{id}/metrics") => get(jobs::metrics),
        ("GET", "/v1/jobs/{id}/steps") => get(measurements::steps),
        ("GET", "/v1/jobs/{id}/gradients") => get(measurements::gradients),
        ("GET", "/v1/jobs/{id}/checkpoints") => get(jobs::checkpoints),
        ("GET", "/v1/jobs/{id}/events") => get(jobs::events),
        ("GET", "/v1/jobs/{id}/diagnosis") => get(diagnosis::diagnosis),
        ("GET", "/v1/jobs/{id}/plots/curves.svg") => get(plots::curves_svg),
        ("GET", "/v1/jobs/{id}/plots/curves.png") => get(plots::curves_png),
        ("GET", "/v1/jobs/{id}/plots/gradients.svg") => get(plots::gradients_svg),
        ("GET", "/v1/jobs/{id}/plots/gradients.png") => get(plots::gradients_png),
        ("POST", "/v1/datasets") => {
            post(datasets::create).layer(DefaultBodyLimit::max(limits.upload_bytes))
        }
        ("GET", "/v1/datasets") => get(datasets::list),
        ("GET", "/v1/datasets/{id}") => get(datasets::get),
        ("PATCH", "/v1/datasets/{id}") => patch(datasets::update),
        ("DELETE", "/v1/datasets/{id}") => delete(datasets::delete),
        ("GET", "/v1/datasets/{id}/samples/{index}.png") => get(datasets::sample),
        ("POST", "/v1/weights") => {
            post(weights::create).layer(DefaultBodyLimit::max(limits.upload_bytes))
        }
        ("GET", "/v1/weights") => get(weights::list),
        ("GET", "/v1/weights/{id}") => get(weights::get),
        ("DELETE", "/v1/weights/{id}") => delete(weights::delete),
        ("POST", "/v1/models") => post(models::register),
        ("GET", "/v1/models") => get(models::list),
        ("GET", "/v1/models/{model}") => get(models::get),
        ("GET", "/v1/models/{model}/versions/{version}") => get(models::get_version),
        ("DELETE", "/v1/models/{model}/versions/{version}") => delete(models::delete_version),
        ("PUT", "/v1/models/{model}/aliases/{alias}") => put(models::set_alias),
        ("DELETE", "/v1/models/{model}/aliases/{alias}") => delete(models::delete_alias),
        ("POST", "/v1/models/{model}/predict") => post(predict::predict),
        ("POST", "/v1/models/{model}/versions/{version}/predict") => post(models::predict_version),
        ("POST", "/v1/echo") => post(echo::echo),
        ("POST", "/v1/studies") => post(studies::create),
        ("GET", "/v1/studies") => get(studies::list),
        ("GET", "/v1/studies/{id}") => get(studies::get),
        ("DELETE", "/v1/studies/{id}") => delete(studies::delete),
        ("POST", "/v1/studies/{id}/cancel") => post(studies::cancel),
        ("POST", "/v1/studies/{id}/resume") => post(studies::resume),
        ("GET", "/v1/studies/{id}/report.html") => get(studies::report_html),
        ("GET", "/v1/studies/{id}/report.md") => get(studies::report_md),
        ("GET", "/v1/studies/{id}/report.zip") => get(studies::report_zip),
        ("POST", "/v1/lr-finder") => post(lr_finder::create),
        ("GET", "/v1/lr-finder") => get(lr_finder::list),
        ("GET", "/v1/lr-finder/{id}") => get(lr_finder::get),
        ("DELETE", "/v1/lr-finder/{id}") => delete(lr_finder::delete),
        ("GET", "/v1/lr-finder/{id}/plot.svg") => get(lr_finder::plot_svg),
        ("GET", "/v1/lr-finder/{id}/plot.png") => get(lr_finder::plot_png),
        ("POST", "/v1/sweeps") => post(sweeps::create),
        ("GET", "/v1/sweeps") => get(sweeps::list),
        ("GET", "/v1/sweeps/{id}") => get(sweeps::get),
        ("DELETE", "/v1/sweeps/{id}") => delete(sweeps::delete),
        ("POST", "/v1/sweeps/{id}/cancel") => post(sweeps::cancel),
        ("POST", "/v1/sweeps/{id}/resume") => post(sweeps::resume),
        ("GET", "/v1/sweeps/{id}/plot.svg") => get(plots::sweep_svg),
        ("GET", "/v1/sweeps/{id}/plot.png") => get(plots::sweep_png),
        ("GET", "/v1/usage") => get(usage::usage),
        ("GET", "/v1/compare") => get(compare::compare),
        ("GET", "/v1/compare/disagreements") => get(disagreements::disagreements),
        ("GET", "/v1/compare/plot.svg") => get(plots::compare_svg),
        ("GET", "/v1/compare/plot.png") => get(plots::compare_png),
        ("GET", "/v1/compare/noise.svg") => get(plots::noise_svg),
        ("GET", "/v1/compare/noise.png") => get(plots::noise_png),
        ("GET", "/v1/compare/disagreements.svg") => get(disagreements::grid_svg),
        ("GET", "/v1/compare/disagreements.png") => get(disagreements::grid_png),
        ("POST", "/v1/tokens") => post(tokens::create),
        ("GET", "/v1/tokens") => get(tokens::list),
        ("DELETE", "/v1/tokens/{id}") => delete(tokens::revoke),
        ("GET", "/v2") => get(v2::server),
        ("GET", "/v2/health/live") => get(v2::live),
        ("GET", "/v2/health/ready") => get(v2::ready),
        ("GET", "/v2/models/{model}") => get(v2::metadata),
        ("GET", "/v2/models/{model}/ready") => get(v2::model_ready),
        ("POST", "/v2/models/{model}/infer") => post(v2::infer),
        ("GET", "/v2/models/{model}/versions/{version}") => get(v2::version_metadata),
        ("GET", "/v2/models/{model}/versions/{version}/ready") => get(v2::version_ready),
        ("POST", "/v2/models/{model}/versions/{version}/infer") => post(v2::version_infer),
        _ => unreachable!("ROUTES lists {method} {path} without a handler; this is a bug"),
    }
}

/// The application's router with its middleware.
pub fn router(state: AppState, limits: BodyLimits) -> Router {
    let mut router = Router::new();
    for &(method, path, access) in ROUTES {
        let guard = access::Guard {
            state: state.clone(),
            access,
            resource: access::resource_of(path),
            jobs_in_query: access::names_jobs_in_query(path),
        };
        let route = handler(method, path, limits)
            .layer(axum::middleware::from_fn_with_state(guard, access::guard));
        router = router.route(&axum_pattern(path), route);
    }
    router
        .route_layer(axum::middleware::from_fn(prometheus::record))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(limits.json_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                // `token` is filled in by the access guard: the token's id, never its secret.
                tracing::info_span!("request", method = %request.method(), uri = %request.uri(), %request_id, token = tracing::field::Empty)
            })
            // An access log: every answered request at INFO, with its status and latency.
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The router pattern of a `ROUTES` path. axum cannot match a parameter followed by a suffix
/// in one segment (`{index}.png`), so such a segment is routed as the bare parameter and its
/// handler checks the suffix.
fn axum_pattern(path: &str) -> String {
    path.replace("}.png", "}")
}

fn json_error(status: StatusCode, code: &'static str, message: String) -> Response {
    (
        status,
        axum::Json(error::ErrorBody {
            error: message,
            code,
            field: None,
            job_id: None,
            epoch: None,
        }),
    )
        .into_response()
}

async fn route_not_found(uri: axum::http::Uri) -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "route_not_found",
        format!("no route for {}; see /openapi.yaml", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {}; see /openapi.yaml",
            uri.path()
        ),
    )
}

fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the server log".into(),
    )
}

/// How long graceful shutdown waits for open connections (event streams stay open otherwise).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
