//! A checkpoint file that no longer matches its recorded SHA-256: reported by epoch, marked in
//! the job's checkpoint list, passed over for the newest intact one, never served from memory.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, digits_spec};

/// A finished three-epoch job, every checkpoint kept.
async fn finished_job(app: &TestApp) -> (String, Value) {
    let mut spec = digits_spec(3, 64);
    spec["training"]["seed"] = json!(11);
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    (id, job)
}

fn checkpoint_file(app: &TestApp, id: &str, epoch: i64) -> PathBuf {
    app.dir
        .path()
        .join("checkpoints")
        .join(id)
        .join(format!("{epoch:06}.safetensors"))
}

/// Flips one bit in the middle of the file (its length stays the same).
fn flip_a_byte(path: &PathBuf) {
    let mut bytes = std::fs::read(path).expect("the checkpoint file exists");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

async fn listed_epochs(app: &TestApp, id: &str) -> Vec<(i64, bool)> {
    let (status, list) = app.get(&format!("/v1/jobs/{id}/checkpoints")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["epoch"].as_i64().unwrap(),
                c["corrupt"]
                    .as_bool()
                    .expect("every checkpoint says corrupt or not"),
            )
        })
        .collect()
}

async fn predict(app: &TestApp, id: &str, checkpoint: Option<i64>) -> (StatusCode, Value) {
    let row = vec![8.0; 64];
    let mut body = json!({"inputs": [row]});
    if let Some(epoch) = checkpoint {
        body["checkpoint"] = json!(epoch);
    }
    app.post(&format!("/v1/models/{id}/predict"), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_best_checkpoint_is_passed_over_named_when_pinned_and_marked_in_the_list() {
    let app = TestApp::spawn().await;
    let (id, job) = finished_job(&app).await;
    let best = job["best"]["epoch"].as_i64().expect("a best epoch");
    let epochs: Vec<i64> = listed_epochs(&app, &id).await.iter().map(|e| e.0).collect();
    assert!(epochs.len() >= 2, "{epochs:?}");
    flip_a_byte(&checkpoint_file(&app, &id, best));

    let (status, answer) = predict(&app, &id, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let newest_intact = *epochs.iter().filter(|&&e| e != best).max().unwrap();
    assert_eq!(answer["checkpoint_epoch"], json!(newest_intact), "{answer}");

    let (status, error) = predict(&app, &id, Some(best)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["code"], "checkpoint_corrupt", "{error}");
    assert_eq!(error["job_id"], json!(id));
    assert_eq!(error["epoch"], json!(best));
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains(&format!("epoch {best}")),
        "{error}"
    );

    for (epoch, corrupt) in listed_epochs(&app, &id).await {
        assert_eq!(corrupt, epoch == best, "epoch {epoch}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_model_whose_file_was_corrupted_is_not_served_from_memory() {
    let app = TestApp::spawn().await;
    let (id, job) = finished_job(&app).await;
    let best = job["best"]["epoch"].as_i64().expect("a best epoch");
    let (status, answer) = predict(&app, &id, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["checkpoint_epoch"], json!(best), "now cached");

    flip_a_byte(&checkpoint_file(&app, &id, best));

    let (status, answer) = predict(&app, &id, Some(best)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["epoch"], json!(best));
    let (status, answer) = predict(&app, &id, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_ne!(answer["checkpoint_epoch"], json!(best), "{answer}");

    // A missing file is as unusable as a corrupt one, and listed so without being read.
    let (_, answer) = predict(&app, &id, None).await;
    let fallback = answer["checkpoint_epoch"].as_i64().unwrap();
    std::fs::remove_file(checkpoint_file(&app, &id, fallback)).unwrap();
    let (status, answer) = predict(&app, &id, Some(fallback)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let listed = listed_epochs(&app, &id).await;
    assert!(listed.contains(&(fallback, true)), "{listed:?}");
}
