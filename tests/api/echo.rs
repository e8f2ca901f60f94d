//! `POST /v1/echo`, the load benchmark's ceiling: the JSON body back, within the body limit.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Api, TestApp};

#[tokio::test]
async fn the_echo_route_answers_the_json_value_it_was_sent() {
    let app = TestApp::spawn().await;
    let sent = json!({"inputs": [[0.5, -0.25], [1, 2]], "nested": {"b": null, "a": "text"}});
    let (status, answered) = app.post("/v1/echo", sent.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered, sent);
    let (status, answered) = app.post("/v1/echo", json!([1, "two", 3.5])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answered,
        json!([1, "two", 3.5]),
        "any JSON value, not only objects"
    );
}

#[tokio::test]
async fn the_echo_route_refuses_what_is_not_json_or_over_the_body_limit() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 1024).await;
    let (status, body) = app
        .post_raw("/v1/echo", "application/json", "{\"inputs\": [")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app.post_raw("/v1/echo", "text/plain", "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let (status, body) = app.post("/v1/echo", json!({"pad": "x".repeat(2048)})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "payload_too_large", "{body}");
}
