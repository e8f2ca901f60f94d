//! Per-token quotas: what is refused, with which status, and what the answer says.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, digits_spec};

fn sweep_of(lrs: &[f64], epochs: u32) -> Value {
    json!({
        "base": {"dataset": "digits", "model": {"kind": "mlp", "depth": 1, "width": 16},
                 "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": epochs, "batch_size": 64, "seed": 3}},
        "axes": {"training.optimizer.lr": lrs}
    })
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn jobs_beyond_the_active_quota_are_429s_with_retry_after() {
    let app = TestApp::spawn().await;
    let trainer = app.token_with(&["train"], None, &["active_jobs=2"]).await;
    let first = trainer.submit(digits_spec(500, 8)).await;
    let second = trainer.submit(digits_spec(500, 8)).await;
    let response = trainer
        .client
        .post(app.url("/v1/jobs"))
        .json(&digits_spec(1, 64))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&response) >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "quota_exceeded");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("2 jobs queued or running"),
        "{body}"
    );
    // A sweep that would pass the quota is refused the same way.
    let (status, body) = trainer.post("/v1/sweeps", sweep_of(&[0.1], 1)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    for id in [&first, &second] {
        trainer
            .post(&format!("/v1/jobs/{id}/cancel"), json!({}))
            .await;
        trainer.wait_for_end(id).await;
    }
    let (status, body) = trainer.post("/v1/jobs", digits_spec(1, 64)).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "room again once they ended: {body}"
    );
}

#[tokio::test]
async fn sweeps_over_the_trial_or_work_quota_are_refused_before_anything_is_queued() {
    let app = TestApp::spawn().await;
    let trainer = app
        .token_with(
            &["train"],
            None,
            &["sweep_trials=3", "sweep_sample_epochs=20000"],
        )
        .await;
    let (status, body) = trainer
        .post("/v1/sweeps", sweep_of(&[0.1, 0.01, 0.001, 0.0001], 1))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "quota_exceeded");
    assert!(
        body["error"].as_str().unwrap().contains("4 trials"),
        "{body}"
    );
    // digits has 1,797 rows: 3 trials of 5 epochs are about 27,000 sample-epochs.
    let (status, body) = trainer
        .post("/v1/sweeps", sweep_of(&[0.1, 0.01, 0.001], 5))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("sample-epochs"),
        "{body}"
    );
    let (_, listed) = trainer.get("/v1/jobs").await;
    assert_eq!(listed["total"], 0, "nothing was queued: {listed}");
    let (status, body) = trainer.post("/v1/sweeps", sweep_of(&[0.1, 0.01], 1)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn kept_checkpoints_over_the_quota_are_a_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let trainer = app.token(&["train"], None).await;
    let mut spec = digits_spec(1, 64);
    spec["checkpoints"] = json!({"every": 1, "keep_last": 4_294_967_295u64});
    let (status, body) = trainer.post("/v1/jobs", spec).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "checkpoints.keep_last");
    assert!(
        body["error"].as_str().unwrap().contains("quota of 20"),
        "{body}"
    );
}

fn regions(name: &str) -> Value {
    json!({"name": name, "synthetic": {"kind": "regions", "samples": 200, "classes": 2, "seed": 1}})
}

#[tokio::test]
async fn uploads_beyond_the_hourly_quota_wait_and_storage_beyond_its_quota_is_refused() {
    let app = TestApp::spawn().await;
    let hourly = app
        .token_with(&["train"], None, &["uploads_per_hour=1"])
        .await;
    let (status, body) = hourly.post("/v1/datasets", regions("first")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let response = hourly
        .client
        .post(app.url("/v1/datasets"))
        .json(&regions("second"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&response);
    assert!((3000..=3600).contains(&wait), "about an hour: {wait}");

    let small = app
        .token_with(&["train"], None, &["storage_bytes=1000"])
        .await;
    let (status, body) = small.post("/v1/datasets", regions("third")).await;
    assert_eq!(status, StatusCode::CREATED, "the first fits: {body}");
    let (status, body) = small.post("/v1/datasets", regions("fourth")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "quota_exceeded");
    assert!(
        body["error"].as_str().unwrap().contains("storage quota"),
        "{body}"
    );
    let (status, _) = small.post("/v1/jobs", digits_spec(1, 64)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn requests_beyond_the_rate_limit_are_429s() {
    let app = TestApp::spawn().await;
    let reader = app
        .token_with(&["read"], None, &["requests_per_second=1"])
        .await;
    let mut limited = None;
    for _ in 0..5 {
        let response = reader.client.get(app.url("/v1/jobs")).send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(retry_after(&response));
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert!(
        limited.is_some(),
        "a burst of 2 at 1 request/s runs out within 5 requests"
    );
    let admin = app.token(&["admin"], None).await;
    for _ in 0..20 {
        let (status, _) = admin.get("/v1/jobs").await;
        assert_eq!(status, StatusCode::OK, "admin tokens have no quotas");
    }
}
