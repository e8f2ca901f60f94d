//! Liveness, readiness and the API contract.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;

/// The OpenAPI document this server implements.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers and commits a write, the data folder takes a file,
/// and the service is not shutting down.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let readiness = state.jobs.readiness().await;
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!(readiness);
    body["status"] = json!(if readiness.ready {
        "ready"
    } else {
        "not_ready"
    });
    (status, Json(body))
}

/// `GET /openapi.yaml`
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}
