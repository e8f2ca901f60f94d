use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Api, TestApp, digits_spec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digits_mlp_trains_to_the_quality_bar_and_reports_every_epoch() {
    // Arrange: the reference spec.
    let app = TestApp::spawn().await;

    // Act
    let (status, created) = app.post("/v1/jobs", digits_spec(30, 32)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "queued");
    let id = created["id"].as_str().unwrap().to_string();
    let job = app.wait_for_end(&id).await;

    // Assert
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["epochs_done"], 30);
    assert_eq!(job["progress"]["fraction"], 1.0);
    let best = &job["best"];
    assert!(
        best["test_acc"].as_f64().unwrap() >= 0.95,
        "best epoch: {best}"
    );
    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    let epochs = metrics["epochs"].as_array().unwrap();
    assert_eq!(
        epochs
            .iter()
            .map(|e| e["epoch"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    for epoch in epochs {
        for key in [
            "train_loss",
            "train_acc",
            "val_loss",
            "val_acc",
            "test_loss",
            "test_acc",
            "lr",
            "epoch_seconds",
            "samples_per_sec",
        ] {
            assert!(epoch[key].is_number(), "{key} missing in {epoch}");
        }
    }
    let first = epochs[0]["train_loss"].as_f64().unwrap();
    let last = epochs[29]["train_loss"].as_f64().unwrap();
    assert!(
        last < first / 10.0,
        "training loss fell from {first} to only {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_answers_with_a_location_and_the_complete_spec() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/v1/jobs"))
        .json(&json!({"dataset": "digits", "model": {"kind": "mlp"}, "training": {"epochs": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/jobs/{}", body["id"].as_str().unwrap())
    );
    let spec = &body["spec"];
    assert_eq!(spec["model"]["depth"], 2);
    assert_eq!(spec["model"]["activation"], "relu");
    assert_eq!(spec["training"]["optimizer"]["kind"], "adam");
    assert!(
        spec["training"]["seed"].is_u64(),
        "a seed is chosen and recorded: {spec}"
    );
    assert_eq!(spec["name"], "digits-mlp-2x64");
    app.wait_for_end(body["id"].as_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_it_within_one_batch_and_keeps_its_epochs() {
    let app = TestApp::spawn().await;
    let id = app.submit(digits_spec(2000, 8)).await;
    app.wait_until(&id, Duration::from_secs(60), |job| {
        job["progress"]["epochs_done"].as_i64() >= Some(1)
    })
    .await;

    let (status, body) = app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = app
        .wait_until(&id, Duration::from_secs(5), |job| {
            job["status"] == "cancelled"
        })
        .await;

    let done = job["progress"]["epochs_done"].as_i64().unwrap();
    assert!((1..2000).contains(&done));
    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    assert_eq!(metrics["epochs"].as_array().unwrap().len() as i64, done);
    let (_, checkpoints) = app.get(&format!("/v1/jobs/{id}/checkpoints")).await;
    assert!(!checkpoints["checkpoints"].as_array().unwrap().is_empty());
    let (status, body) = app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "cancelling twice: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_queued_job_never_starts() {
    let app = TestApp::spawn().await; // one worker slot
    let blocker = app.submit(digits_spec(2000, 8)).await;
    app.wait_until(&blocker, Duration::from_secs(30), |job| {
        job["status"] == "running"
    })
    .await;
    let queued = app.submit(digits_spec(1, 32)).await;
    let (_, job) = app.get(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(job["status"], "queued");
    assert_eq!(job["queue_position"], 0);

    let (status, job) = app
        .post(&format!("/v1/jobs/{queued}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["status"], "cancelled");
    app.post(&format!("/v1/jobs/{blocker}/cancel"), json!({}))
        .await;
    app.wait_for_end(&blocker).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, job) = app.get(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(job["status"], "cancelled");
    assert!(job["started_at"].is_null(), "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diverging_job_fails_with_a_reason_that_says_so() {
    let app = TestApp::spawn().await;
    let spec = json!({
        "dataset": "digits",
        "model": {"kind": "mlp", "depth": 3, "width": 64},
        "training": {"optimizer": {"kind": "sgd", "lr": 10.0}, "epochs": 20, "batch_size": 32, "seed": 1}
    });
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let failure = job["failure"].as_str().unwrap();
    assert!(
        failure.contains("diverged at epoch") && failure.contains("learning rate may be too high"),
        "{failure}"
    );
    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    assert_eq!(
        metrics["epochs"].as_array().unwrap().len() as i64,
        job["progress"]["epochs_done"].as_i64().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_can_be_filtered_sorted_and_paged() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let mut ids = Vec::new();
    for (name, lr) in [("slow", 0.00001), ("good", 0.003), ("fine", 0.001)] {
        let mut spec = digits_spec(3, 64);
        spec["name"] = json!(name);
        spec["training"]["optimizer"]["lr"] = json!(lr);
        ids.push(app.submit(spec).await);
    }
    let regions = app.submit(json!({"name": "plane", "dataset": "regions", "model": {"kind": "mlp"}, "training": {"epochs": 1}})).await;
    for id in ids.iter().chain([&regions]) {
        app.wait_for_end(id).await;
    }

    let (_, page) = app
        .get("/v1/jobs?dataset=digits&sort=best_val_acc&order=desc")
        .await;
    let names: Vec<_> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(page["total"], 3);
    assert_eq!(
        names.last().unwrap(),
        "slow",
        "the tiny learning rate ranks last: {names:?}"
    );
    let accs: Vec<f64> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["best"]["val_acc"].as_f64().unwrap())
        .collect();
    assert!(accs.windows(2).all(|w| w[0] >= w[1]), "{accs:?}");

    let (_, page) = app.get("/v1/jobs?limit=2&offset=0&order=asc").await;
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(page["total"], 4);
    assert_eq!(page["next_offset"], 2);
    assert_eq!(page["jobs"][0]["name"], "slow");
    let (_, page) = app.get("/v1/jobs?limit=2&offset=2&order=asc").await;
    assert_eq!(page["next_offset"], serde_json::Value::Null);
    assert_eq!(page["jobs"][1]["name"], "plane");

    let (_, page) = app.get("/v1/jobs?name=GOO").await;
    assert_eq!(page["jobs"][0]["name"], "good");
    let (_, page) = app.get("/v1/jobs?status=failed,cancelled").await;
    assert_eq!(page["total"], 0);
    let (status, body) = app.get("/v1/jobs?status=done").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "status");
    let (status, body) = app.get("/v1/jobs?sort=colour").await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("sort"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_reports_epochs_and_ends_with_the_job() {
    let app = TestApp::spawn().await;
    // Long enough (a few hundred steps) that the stream opens while the job still runs.
    let id = app.submit(digits_spec(6, 4)).await;
    let text = tokio::time::timeout(
        Duration::from_secs(60),
        app.client
            .get(app.url(&format!("/v1/jobs/{id}/events")))
            .send()
            .await
            .unwrap()
            .text(),
    )
    .await
    .expect("the stream ends when the job ends")
    .unwrap();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"job"), "{text}");
    assert!(
        names.iter().filter(|n| **n == "epoch").count() >= 1,
        "{text}"
    );
    assert!(text.contains("\"status\":\"succeeded\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_can_be_searched_by_best_metrics_and_spec_fields() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let mut ids = Vec::new();
    for (lr, width) in [(0.00001, 16), (0.003, 32), (0.001, 64)] {
        let mut spec = digits_spec(3, 64);
        spec["training"]["optimizer"]["lr"] = json!(lr);
        spec["model"]["width"] = json!(width);
        ids.push(app.submit(spec).await);
    }
    for id in &ids {
        app.wait_for_end(id).await;
    }
    let search = |q: &str| format!("/v1/jobs?{}", serde_urlencoded_pair("where", q));
    let (status, page) = app
        .get(&search(
            "best.val_acc > 0.5 and params.training.optimizer.lr = 0.003",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1);
    assert_eq!(page["jobs"][0]["id"], json!(ids[1]));
    let (_, page) = app
        .get(&format!(
            "{}&order_by=best.val_acc%20asc",
            search("params.model.width >= 32")
        ))
        .await;
    let found: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(found.len(), 2);
    let accs: Vec<f64> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["best"]["val_acc"].as_f64().unwrap())
        .collect();
    assert!(accs[0] <= accs[1], "{accs:?}");
    let (status, body) = app.get(&search("best.colour > 1")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("where"))
    );
}

fn serde_urlencoded_pair(key: &str, value: &str) -> String {
    let encoded: String = value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{key}={encoded}")
}
