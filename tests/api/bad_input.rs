use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

async fn rejected(app: &TestApp, spec: Value) -> (StatusCode, Value) {
    app.post("/v1/jobs", spec).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_job_specs_get_a_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let base = || json!({"dataset": "digits", "model": {"kind": "mlp"}});
    let cases: Vec<(Value, &str)> = vec![
        (
            {
                let mut s = base();
                s["training"] = json!({"optimizer": {"kind": "adam", "lr": 0}});
                s
            },
            "training.optimizer.lr",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"optimizer": {"kind": "sgd", "lr": -0.1}});
                s
            },
            "training.optimizer.lr",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"batch_size": 0});
                s
            },
            "training.batch_size",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"epochs": 0});
                s
            },
            "training.epochs",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"epochs": 10_000_000});
                s
            },
            "training.epochs",
        ),
        (
            {
                let mut s = base();
                s["model"]["depth"] = json!(0);
                s
            },
            "model.depth",
        ),
        (
            {
                let mut s = base();
                s["dataset"] = json!("mnist");
                s
            },
            "dataset",
        ),
        (
            {
                let mut s = base();
                s["colour"] = json!("blue");
                s
            },
            "colour",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"schedule": {"kind": "step", "gamma": 1.5}});
                s
            },
            "training.schedule.gamma",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"schedule": {"kind": "cosine", "gamma": 0.5}});
                s
            },
            "training.schedule.gamma",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"optimizer": {"kind": "sgd", "nesterov": true}});
                s
            },
            "training.optimizer.nesterov",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"grad_clip": {"max_norm": -1}});
                s
            },
            "training.grad_clip.max_norm",
        ),
        (
            {
                let mut s = base();
                s["training"] = json!({"early_stopping": {"patience": 0}});
                s
            },
            "training.early_stopping.patience",
        ),
    ];
    for (spec, field) in cases {
        let (status, body) = rejected(&app, spec.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spec} → {body}");
        assert_eq!(body["field"], field, "{spec} → {body}");
        assert_eq!(body["code"], "invalid");
        assert!(
            body["error"].as_str().unwrap().len() > field.len() + 5,
            "the message says what is valid: {body}"
        );
    }
    let (status, body) = rejected(
        &app,
        json!({"dataset": "digits", "model": {"kind": "mlp", "activation": "swish"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().contains("relu"),
        "lists the valid activations: {body}"
    );
    let (_, page) = app.get("/v1/jobs").await;
    assert_eq!(page["total"], 0, "nothing was queued by a rejected request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_400_415_and_413() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 64 * 1024).await;
    let (status, body) = app
        .post_raw("/v1/jobs", "application/json", "{\"dataset\": \"digits\",")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "bad_request");
    let (status, _) = app
        .post_raw("/v1/jobs", "application/json", "{\"dataset\": NaN}")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = app.post_raw("/v1/jobs", "text/plain", "{}").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(200 * 1024));
    let (status, body) = app.post_raw("/v1/jobs", "application/json", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_and_routes_are_404s_in_json() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/jobs/0190aaaa-0000-7000-8000-000000000000",
        "/v1/jobs/not-a-uuid",
        "/v1/jobs/not-a-uuid/metrics",
        "/v1/jobs/0190aaaa-0000-7000-8000-000000000000/checkpoints",
        "/v1/datasets/nope",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["code"], "not_found", "{path}: {body}");
    }
    let (status, body) = app
        .post(
            "/v1/models/0190aaaa-0000-7000-8000-000000000000/predict",
            json!({"inputs": [[1]]}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = app.get("/v2/everything").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("route_not_found"))
    );
    let (status, body) = app.post("/healthz", json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}
