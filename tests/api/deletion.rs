//! Deleting jobs, sweeps, data sets and weights: nothing of them is left, in the database (seen
//! through the API) or in the data folder; and what another job still needs is refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, decode};

/// A digits MLP small enough to train an epoch in a blink.
pub fn tiny(epochs: u32) -> Value {
    json!({
        "dataset": "digits",
        "model": {"kind": "mlp", "depth": 1, "width": 16},
        "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": epochs, "batch_size": 128, "seed": 5}
    })
}

pub async fn delete(app: &TestApp, path: &str) -> (StatusCode, Value) {
    decode(
        app.client
            .delete(app.url(path))
            .send()
            .await
            .expect("DELETE"),
    )
    .await
}

pub async fn put(app: &TestApp, path: &str) -> (StatusCode, Value) {
    decode(app.client.put(app.url(path)).send().await.expect("PUT")).await
}

/// Every file under a folder.
pub fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Files and folders of the data folder whose path names `id`.
pub fn traces_of(app: &TestApp, id: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = files_under(app.dir.path())
        .into_iter()
        .filter(|path| path.to_string_lossy().contains(id))
        .collect();
    for folder in ["checkpoints", "datasets", "weights"] {
        let path = app.dir.path().join(folder).join(id);
        if path.exists() {
            found.push(path);
        }
    }
    found
}

/// Asserts that nothing of job `id` answers any more, and nothing of it is on disk.
pub async fn assert_job_gone(app: &TestApp, id: &str) {
    for path in ["", "/metrics", "/checkpoints", "/steps", "/gradients"] {
        let (status, body) = app.get(&format!("/v1/jobs/{id}{path}")).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "GET /v1/jobs/{id}{path}: {body}"
        );
    }
    let (_, page) = app.get("/v1/jobs?limit=500").await;
    assert!(
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|job| job["id"] != id),
        "still listed: {page}"
    );
    assert_eq!(
        traces_of(app, id),
        Vec::<PathBuf>::new(),
        "files of job {id}"
    );
}

/// Polls `GET path` until it answers `status` (30 s at most).
pub async fn wait_for_status(app: &TestApp, path: &str, status: StatusCode) -> Value {
    let started = Instant::now();
    loop {
        let (got, body) = app.get(path).await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "GET {path} still answers {got}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_running(app: &TestApp, id: &str) {
    app.wait_until(id, Duration::from_secs(60), |job| {
        job["status"] == "running" && job["progress"]["epochs_done"].as_i64() >= Some(1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_finished_job_leaves_no_row_and_no_file_behind() {
    let app = TestApp::spawn().await;
    let id = app.submit(tiny(3)).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(!traces_of(&app, &id).is_empty(), "it wrote checkpoints");

    let (status, body) = delete(&app, &format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    assert_job_gone(&app, &id).await;
    let (status, body) = delete(&app, &format!("/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a second delete: {body}");
    let (status, _) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": [vec![0.0; 64]]}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_or_queued_job_cancels_it_first_and_leaves_nothing() {
    // One worker slot: the first job runs, the second waits in the queue.
    let app = TestApp::spawn().await;
    let running = app.submit(tiny(5000)).await;
    wait_running(&app, &running).await;
    let queued = app.submit(tiny(5000)).await;

    let (status, body) = delete(&app, &format!("/v1/jobs/{queued}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let started = Instant::now();
    let (status, body) = delete(&app, &format!("/v1/jobs/{running}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    assert_job_gone(&app, &queued).await;
    assert_job_gone(&app, &running).await;
    // The worker slot is free again.
    let next = app.submit(tiny(1)).await;
    assert_eq!(app.wait_for_end(&next).await["status"], "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_is_deleted_with_its_sweep_which_cancels_its_running_trials() {
    let app = TestApp::spawn().await;
    let (status, sweep) = app
        .post(
            "/v1/sweeps",
            json!({"name": "doomed", "base": tiny(5000), "max_concurrent": 1,
                   "axes": {"training.optimizer.lr": [0.01, 0.02]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sweep}");
    let sweep_id = sweep["id"].as_str().unwrap().to_string();
    let (_, page) = app.get(&format!("/v1/jobs?sweep={sweep_id}")).await;
    let trials: Vec<String> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(trials.len(), 2, "{page}");
    let started = Instant::now();
    let running = loop {
        let (_, page) = app
            .get(&format!("/v1/jobs?sweep={sweep_id}&status=running"))
            .await;
        let trained = page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|job| job["progress"]["epochs_done"].as_i64() >= Some(1));
        if let Some(job) = trained {
            break job["id"].as_str().unwrap().to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no trial ran: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // A trial alone is refused, naming its sweep; the trial keeps running.
    let (status, body) = delete(&app, &format!("/v1/jobs/{running}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(&sweep_id),
        "{body}"
    );
    let (_, job) = app.get(&format!("/v1/jobs/{running}")).await;
    assert_eq!(job["status"], "running", "{job}");

    let (status, body) = delete(&app, &format!("/v1/sweeps/{sweep_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, _) = app.get(&format!("/v1/sweeps/{sweep_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for trial in &trials {
        assert_job_gone(&app, trial).await;
    }
    let (status, _) = delete(&app, &format!("/v1/sweeps/{sweep_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_set_is_deleted_only_once_no_job_uses_it_and_built_ins_never_are() {
    let app = TestApp::spawn().await;
    let (status, dataset) = app
        .post(
            "/v1/datasets",
            json!({"name": "little-regions", "synthetic": {"kind": "regions", "samples": 200, "seed": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{dataset}");
    let dataset_id = dataset["id"].as_str().unwrap().to_string();
    let folder = app.dir.path().join("datasets").join(&dataset_id);
    assert!(folder.exists());
    let mut spec = tiny(1);
    spec["dataset"] = json!("little-regions");
    let mut jobs = Vec::new();
    for _ in 0..6 {
        jobs.push(app.submit(spec.clone()).await);
    }
    for job in &jobs {
        app.wait_for_end(job).await;
    }

    // Refused while any job, even one that ended, uses it: five named, the rest counted.
    let (status, body) = delete(&app, &format!("/v1/datasets/{dataset_id}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("6 jobs") && message.contains("and 1 more"),
        "{message}"
    );
    assert!(
        jobs[..5].iter().all(|job| message.contains(job.as_str())),
        "{message}"
    );
    assert!(!message.contains(jobs[5].as_str()), "{message}");

    for job in &jobs {
        let (status, body) = delete(&app, &format!("/v1/jobs/{job}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    // By name, as GET takes it.
    let (status, body) = delete(&app, "/v1/datasets/little-regions").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = app.get(&format!("/v1/datasets/{dataset_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!folder.exists(), "its folder is gone");
    assert_eq!(traces_of(&app, &dataset_id), Vec::<PathBuf>::new());
    // A job naming it now is refused at submission.
    let (status, body) = app.post("/v1/jobs", spec).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = delete(&app, "/v1/datasets/digits").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("built-in"),
        "{body}"
    );
    let (status, _) = delete(&app, "/v1/datasets/no-such-set").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A small shapes data set and a tiny CNN on it.
async fn tiny_cnn(app: &TestApp, init: Option<Value>) -> Value {
    let (status, body) = app
        .post(
            "/v1/datasets",
            json!({"name": "few-shapes", "synthetic": {"kind": "shapes", "classes": 2, "samples": 60, "image_size": 16, "seed": 1}}),
        )
        .await;
    assert!(
        matches!(status, StatusCode::CREATED | StatusCode::CONFLICT),
        "{body}"
    );
    let mut spec = json!({"dataset": "few-shapes",
        "model": {"kind": "cnn", "blocks": [{"channels": 4}], "head": {"depth": 1, "width": 8}},
        "training": {"epochs": 1, "batch_size": 16, "seed": 1}});
    if let Some(init) = init {
        spec["init"] = init;
    }
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backbone_source_job_or_weights_cannot_be_deleted_while_a_queued_job_loads_them() {
    let app = TestApp::spawn().await;
    // A source job, and its checkpoint uploaded as weights (its model tensors have the names
    // a backbone needs).
    let source = app.submit(tiny_cnn(&app, None).await).await;
    assert_eq!(app.wait_for_end(&source).await["status"], "succeeded");
    let checkpoint = files_under(&app.dir.path().join("checkpoints").join(&source))
        .pop()
        .expect("a checkpoint");
    let (status, weights) = app
        .post_raw(
            "/v1/weights?name=backbone",
            "application/octet-stream",
            std::fs::read(checkpoint).unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{weights}");
    let weights_id = weights["id"].as_str().unwrap().to_string();

    // The only worker slot is busy, so the two jobs that load them wait in the queue.
    let blocker = app.submit(tiny(5000)).await;
    wait_running(&app, &blocker).await;
    let probe = json!({"mode": "linear_probe", "from_job": source});
    let from_job = app.submit(tiny_cnn(&app, Some(probe)).await).await;
    let probe = json!({"mode": "linear_probe", "from_weights": "backbone"});
    let from_weights = app.submit(tiny_cnn(&app, Some(probe)).await).await;

    let (status, body) = delete(&app, &format!("/v1/jobs/{source}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(&from_job),
        "{body}"
    );
    let (status, body) = delete(&app, &format!("/v1/weights/{weights_id}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(&from_weights),
        "{body}"
    );
    let (_, job) = app.get(&format!("/v1/jobs/{from_job}")).await;
    assert_eq!(
        job["status"], "queued",
        "a refused delete cancels nothing: {job}"
    );

    // Once the jobs that need them are gone, so can they be.
    for job in [&from_job, &from_weights, &blocker] {
        let (status, body) = delete(&app, &format!("/v1/jobs/{job}")).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
    let (status, body) = delete(&app, &format!("/v1/weights/{weights_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = delete(&app, &format!("/v1/jobs/{source}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_job_gone(&app, &source).await;
    assert_eq!(traces_of(&app, &weights_id), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_is_set_and_cleared_and_shown_on_the_job() {
    let app = TestApp::spawn().await;
    let id = app.submit(tiny(1)).await;
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["pinned"], false, "{job}");

    let (status, job) = put(&app, &format!("/v1/jobs/{id}/pin")).await;
    assert_eq!(
        (status, &job["pinned"]),
        (StatusCode::OK, &json!(true)),
        "{job}"
    );
    let (_, job) = app.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["pinned"], true, "{job}");
    let (status, job) = delete(&app, &format!("/v1/jobs/{id}/pin")).await;
    assert_eq!(
        (status, &job["pinned"]),
        (StatusCode::OK, &json!(false)),
        "{job}"
    );

    let unknown = "0190aaaa-0000-7000-8000-000000000000";
    let (status, _) = put(&app, &format!("/v1/jobs/{unknown}/pin")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_a_crash_left_between_a_delete_and_its_files_are_removed_at_the_next_start() {
    // Arrange: a finished job, then what a crash between rows and files would leave: the
    // folder of a job whose rows are gone, a checkpoint no row records, an unrecorded upload.
    let mut app = TestApp::spawn().await;
    let id = app.submit(tiny(2)).await;
    assert_eq!(app.wait_for_end(&id).await["status"], "succeeded");
    let folder = app.dir.path().join("checkpoints").join(&id);
    let kept = files_under(&folder);
    let gone_job = app
        .dir
        .path()
        .join("checkpoints/0190aaaa-0000-7000-8000-000000000000");
    let debris = [
        gone_job.join("000001.safetensors"),
        folder.join("000099.safetensors"),
        app.dir
            .path()
            .join("weights/0190aaaa-0000-7000-8000-000000000001.safetensors"),
    ];
    for path in &debris {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"left by a crash").unwrap();
    }

    app.restart_with(|_| {}).await;

    for path in &debris {
        assert!(!path.exists(), "{} was left", path.display());
    }
    assert!(!gone_job.exists());
    assert_eq!(files_under(&folder), kept, "what rows record stays");
    let (status, body) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": [vec![0.0; 64]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
