//! The retention the scheduler runs (checkpoints trimmed to the best and the last few, old
//! jobs and sweeps deleted unless pinned) and `GET /v1/usage`, checked against the files.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::deletion::{assert_job_gone, delete, files_under, put, tiny, wait_for_status};
use crate::helpers::{Api, TestApp};

async fn checkpoint_epochs(app: &TestApp, id: &str) -> BTreeSet<i64> {
    let (status, list) = app.get(&format!("/v1/jobs/{id}/checkpoints")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["epoch"].as_i64().unwrap())
        .collect()
}

fn epochs_on_disk(app: &TestApp, id: &str) -> BTreeSet<i64> {
    files_under(&app.dir.path().join("checkpoints").join(id))
        .iter()
        .map(|path| {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            stem.parse::<i64>()
                .unwrap_or_else(|_| panic!("{}", path.display()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_leaves_an_ended_job_of_fifty_epochs_its_best_and_last_two_checkpoints() {
    // Arrange: fifty epochs, every checkpoint kept by the job's own spec, no retention yet.
    let mut app = TestApp::spawn_with(|config| config.retention_interval_seconds = 0.0).await;
    let mut spec = tiny(50);
    spec["training"]["batch_size"] = json!(8);
    spec["checkpoints"] = json!({"every": 1, "keep_last": 50});
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let best = job["best"]["epoch"].as_i64().expect("a best epoch");
    let before = checkpoint_epochs(&app, &id).await;
    assert_eq!(epochs_on_disk(&app, &id), before);
    let mut expected: BTreeSet<i64> = before.iter().rev().take(2).copied().collect();
    expected.insert(best);
    assert!(expected.contains(&50), "the latest is kept: {before:?}");
    assert!(before.len() > expected.len(), "nothing to trim: {before:?}");

    // Act: a server whose retention keeps two beside the best.
    app.restart_with(|config| {
        config.retention_interval_seconds = 0.2;
        config.retention_keep_last = 2;
    })
    .await;

    // Assert: rows and files agree on exactly the best and the last two.
    let started = Instant::now();
    while checkpoint_epochs(&app, &id).await != expected {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "kept {:?}, expected {expected:?}",
            checkpoint_epochs(&app, &id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(epochs_on_disk(&app, &id), expected);
    let (status, body) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": [vec![0.0; 64]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the best still serves: {body}");
    assert_eq!(body["checkpoint_epoch"], best, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_jobs_and_sweeps_are_deleted_by_age_but_a_pinned_job_is_kept_until_unpinned() {
    // Jobs that ended more than about four seconds ago are deleted.
    let app = TestApp::spawn_with(|config| {
        config.retention_days = 5e-5;
        config.retention_interval_seconds = 0.2;
    })
    .await;
    let kept = app.submit(tiny(1)).await;
    let (status, body) = put(&app, &format!("/v1/jobs/{kept}/pin")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let old = app.submit(tiny(1)).await;
    let (status, sweep) = app
        .post(
            "/v1/sweeps",
            json!({"name": "short", "base": tiny(1), "axes": {"training.optimizer.lr": [0.01, 0.02]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sweep}");
    let sweep_id = sweep["id"].as_str().unwrap();
    let (_, page) = app.get(&format!("/v1/jobs?sweep={sweep_id}")).await;
    let trials: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap())
        .collect();

    wait_for_status(&app, &format!("/v1/jobs/{old}"), StatusCode::NOT_FOUND).await;
    wait_for_status(
        &app,
        &format!("/v1/sweeps/{sweep_id}"),
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_job_gone(&app, &old).await;
    for trial in trials {
        assert_job_gone(&app, trial).await;
    }

    // The pinned job ended first, so it is as old as they were; it stays while pinned.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, job) = app.get(&format!("/v1/jobs/{kept}")).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(
        (&job["status"], &job["pinned"]),
        (&json!("succeeded"), &json!(true))
    );
    let (status, body) = delete(&app, &format!("/v1/jobs/{kept}/pin")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_status(&app, &format!("/v1/jobs/{kept}"), StatusCode::NOT_FOUND).await;
    assert_job_gone(&app, &kept).await;
}

fn bytes_of(root: &Path) -> u64 {
    files_under(root)
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .sum()
}

fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|row| row["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not in {list}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_the_bytes_that_are_on_disk() {
    let app = TestApp::spawn().await;
    let id = app.submit(tiny(3)).await;
    assert_eq!(app.wait_for_end(&id).await["status"], "succeeded");
    let checkpoints = app.dir.path().join("checkpoints").join(&id);
    let file = files_under(&checkpoints).pop().unwrap();
    let (status, weights) = app
        .post_raw(
            "/v1/weights?name=some-weights",
            "application/octet-stream",
            std::fs::read(file).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{weights}");
    let weights_id = weights["id"].as_str().unwrap();

    let (status, usage) = app.get("/v1/usage").await;
    assert_eq!(status, StatusCode::OK, "{usage}");

    let job = entry(&usage["jobs"], &id);
    assert_eq!(job["bytes"], bytes_of(&checkpoints), "{usage}");
    assert_eq!(
        job["checkpoints"],
        files_under(&checkpoints).len(),
        "{usage}"
    );
    let digits = usage["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "digits")
        .unwrap();
    let digits_dir = app
        .dir
        .path()
        .join("datasets")
        .join(digits["id"].as_str().unwrap());
    assert_eq!(digits["bytes"], bytes_of(&digits_dir), "{usage}");
    let weights_dir = app.dir.path().join("weights");
    assert_eq!(
        entry(&usage["weights"], weights_id)["bytes"],
        bytes_of(&weights_dir)
    );

    let totals = &usage["totals"];
    assert_eq!(
        totals["jobs"]["bytes"],
        bytes_of(&app.dir.path().join("checkpoints"))
    );
    assert_eq!(
        totals["datasets"]["bytes"],
        bytes_of(&app.dir.path().join("datasets"))
    );
    assert_eq!(totals["datasets"]["count"], 3, "the built-ins: {usage}");
    assert_eq!(totals["weights"]["bytes"], bytes_of(&weights_dir));
    let sum: u64 = ["jobs", "datasets", "weights"]
        .iter()
        .map(|kind| totals[kind]["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(usage["total_bytes"], sum);
    assert!(
        usage["data_dir_bytes"].as_u64().unwrap() > sum,
        "the database too: {usage}"
    );

    let (status, usage) = app.get("/v1/usage?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["datasets"].as_array().unwrap().len(), 1);
    assert_eq!(usage["totals"]["datasets"]["count"], 3);
    let (status, body) = app.get("/v1/usage?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "limit");
}
