//! `POST /v1/echo`: the JSON body back, through the same router, middleware and access guard
//! as predictions and nothing more, so that a load test can measure the HTTP stack's ceiling
//! beside the predict route (`trainserve-bench --workload serve`).

use axum::Json;
use serde_json::Value;

use super::extract::JsonBody;

/// `POST /v1/echo`: answers the JSON value it was sent, parsed and serialized again (so its
/// whitespace, key order and number formatting may differ), bounded by the JSON body limit.
pub async fn echo(JsonBody(body): JsonBody<Value>) -> Json<Value> {
    Json(body)
}
