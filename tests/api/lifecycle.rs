//! The durability guarantees, tested against the real binary.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Api, ServerProcess, TestApp, data_dir, digits_spec};

fn epochs_of(metrics: &Value) -> Vec<i64> {
    metrics["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["epoch"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_training_resumes_from_its_checkpoint_with_one_row_per_epoch() {
    // Arrange: a job long enough to be killed in the middle, with every kind of state a resume
    // must restore: optimizer moments, a plateau schedule that acts, early-stopping counters.
    let dir = tempfile::tempdir().unwrap();
    let mut spec = digits_spec(20, 8);
    spec["training"]["schedule"] = serde_json::json!({"kind": "reduce_on_plateau", "metric": "train_eval_loss", "patience": 0, "factor": 0.7, "min_delta": 0.01});
    spec["training"]["early_stopping"] = serde_json::json!({"patience": 50});
    spec["model"]["dropout"] = serde_json::json!(0.1);
    let mut server = ServerProcess::start(&data_dir(&dir)).await;
    let id = server.submit(spec.clone()).await;
    server
        .wait_until(&id, Duration::from_secs(60), |job| {
            job["progress"]["epochs_done"].as_i64() >= Some(3)
        })
        .await;

    // Act: kill -9, then start again on the same data folder.
    server.kill_hard();
    let server = ServerProcess::start(&data_dir(&dir)).await;
    let (_, job) = server.get(&format!("/v1/jobs/{id}")).await;
    assert!(
        matches!(
            job["status"].as_str(),
            Some("queued" | "running" | "succeeded")
        ),
        "{job}"
    );
    let job = server.wait_for_end(&id).await;

    // Assert
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["attempt"], 2,
        "claimed once before the kill and once after"
    );
    let (_, metrics) = server.get(&format!("/v1/jobs/{id}/metrics")).await;
    assert_eq!(epochs_of(&metrics), (1..=20).collect::<Vec<_>>());

    // The resumed run continued the same trajectory as an uninterrupted one: weights, optimizer
    // state, shuffling and dropout all came back from the checkpoint and the seed.
    let reference = TestApp::spawn().await;
    let reference_id = reference.submit(spec).await;
    reference.wait_for_end(&reference_id).await;
    let (_, expected) = reference
        .get(&format!("/v1/jobs/{reference_id}/metrics"))
        .await;
    for (resumed, straight) in metrics["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(expected["epochs"].as_array().unwrap())
    {
        assert_eq!(
            resumed["val_loss"], straight["val_loss"],
            "epoch {}",
            resumed["epoch"]
        );
        assert_eq!(
            resumed["train_loss"], straight["train_loss"],
            "epoch {}",
            resumed["epoch"]
        );
        assert_eq!(resumed["lr"], straight["lr"], "epoch {}", resumed["epoch"]);
    }
    let (_, resumed_steps) = server.get(&format!("/v1/jobs/{id}/steps")).await;
    let (_, straight_steps) = reference
        .get(&format!("/v1/jobs/{reference_id}/steps"))
        .await;
    assert_eq!(resumed_steps["points"], straight_steps["points"]);
    let lrs: Vec<f64> = expected["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["lr"].as_f64().unwrap())
        .collect();
    assert!(
        lrs.windows(2).any(|w| w[1] < w[0]),
        "the schedule acted: {lrs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_a_running_job_back_to_the_queue_without_using_an_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&data_dir(&dir)).await;
    let id = server.submit(digits_spec(2000, 8)).await;
    let queued_behind = server.submit(digits_spec(2, 32)).await;
    server
        .wait_until(&id, Duration::from_secs(60), |job| {
            job["progress"]["epochs_done"].as_i64() >= Some(1)
        })
        .await;

    let status = server.terminate(Duration::from_secs(30));
    assert!(status.success(), "clean exit: {status}");

    let server = ServerProcess::start(&data_dir(&dir)).await;
    let (_, behind) = server.get(&format!("/v1/jobs/{queued_behind}")).await;
    assert!(
        behind["status"] == "queued"
            || behind["status"] == "running"
            || behind["status"] == "succeeded"
    );
    let job = server
        .wait_until(&id, Duration::from_secs(60), |job| {
            job["status"] == "running" && job["attempt"] == 1
        })
        .await;
    assert!(
        job["progress"]["epochs_done"].as_i64() >= Some(1),
        "kept its epochs: {job}"
    );
    server
        .post(&format!("/v1/jobs/{id}/cancel"), serde_json::json!({}))
        .await;
    let job = server.wait_for_end(&id).await;
    assert_eq!(job["status"], "cancelled");
    let (_, metrics) = server.get(&format!("/v1/jobs/{id}/metrics")).await;
    let epochs = epochs_of(&metrics);
    assert_eq!(
        epochs,
        (1..=epochs.len() as i64).collect::<Vec<_>>(),
        "no gap or duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_jobs_survive_a_kill_before_they_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&data_dir(&dir)).await;
    let blocker = server.submit(digits_spec(2000, 8)).await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(server.submit(digits_spec(1, 64)).await);
        }
        ids
    };
    server.kill_hard();

    let server = ServerProcess::start(&data_dir(&dir)).await;
    server
        .post(&format!("/v1/jobs/{blocker}/cancel"), serde_json::json!({}))
        .await;
    for id in ids {
        let job = server.wait_for_end(&id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
}
