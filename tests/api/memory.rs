//! Every job's memory is estimated at submission and refused over `--max-job-memory`; a job
//! queued before the limit was lowered fails with the reason instead of crashing the server.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use trainserve::config::Config;
use trainserve::startup::Application;

use crate::helpers::{Api, TestApp, digits_spec};

/// The spec of issue 13 that aborted the server on a ~19 GB allocation, again after every restart.
fn resize_to_1024() -> Value {
    json!({"dataset": "shapes", "data": {"preprocessing": {"resize": [1024, 1024]}},
           "model": {"kind": "mlp", "depth": 1, "width": 1}, "training": {"epochs": 1}})
}

async fn app_with_limit(bytes: u64) -> TestApp {
    TestApp::spawn_with(|config| config.max_job_memory = Some(bytes)).await
}

#[tokio::test]
async fn the_resize_to_1024_spec_is_refused_with_its_estimate_and_the_limit_and_nothing_is_queued()
{
    let app = app_with_limit(4 << 30).await;
    let (status, body) = app.post("/v1/jobs", resize_to_1024()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "data.preprocessing.resize", "{body}");
    let error = body["error"].as_str().unwrap();
    // 1500 images of 3x1024x1024 f32 values are 17.6 GiB resized, before anything else.
    let gib: f64 = error
        .split("this job needs about ")
        .nth(1)
        .and_then(|rest| rest.split(" GiB of memory").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("an estimate in GiB: {error}"));
    assert!(gib >= 17.6, "{error}");
    assert!(
        error.contains("over the limit of 4.0 GiB per job"),
        "{error}"
    );
    assert!(error.contains("a smaller resize"), "{error}");
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(jobs["total"], 0, "{jobs}");

    let mut base = resize_to_1024();
    base["training"]["optimizer"] = json!({"kind": "adam"});
    let sweep = json!({"name": "big", "base": base,
                       "axes": {"training.optimizer.lr": [0.001, 0.01]}});
    let (status, body) = app.post("/v1/sweeps", sweep).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("over the limit"),
        "{body}"
    );
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(jobs["total"], 0, "{jobs}");
}

#[tokio::test]
async fn an_mlp_of_twelve_billion_parameters_is_refused_counting_its_input_layer() {
    let app = app_with_limit(1 << 50).await;
    let spec = json!({"dataset": "shapes", "data": {"preprocessing": {"resize": [1024, 1024]}},
                      "model": {"kind": "mlp", "depth": 1, "width": 4096}});
    let (status, body) = app.post("/v1/jobs", spec).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "model.width", "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("3145728 inputs"), "{error}");
    assert!(error.contains("128849"), "12.9 billion parameters: {error}");
    assert!(error.contains("at most 50000000"), "{error}");
}

#[tokio::test]
async fn a_job_under_a_small_limit_still_trains() {
    let app = app_with_limit(16 << 20).await;
    let id = app.submit(digits_spec(1, 64)).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

/// A server on a given data folder, stopped gracefully, so a second can start on the same one.
struct Server {
    base: String,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<trainserve::error::Result<()>>,
}

impl Server {
    async fn start(dir: &Path, max_job_memory: u64) -> Server {
        let mut config = Config::with_data_dir(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
        config.heartbeat_seconds = 1;
        config.max_job_memory = Some(max_job_memory);
        let app = Application::build(config).await.expect("the app builds");
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Server {
            base,
            client: reqwest::Client::new(),
            stop,
            handle,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.handle
            .await
            .expect("the server task")
            .expect("a clean stop");
    }
}

impl Api for Server {
    fn base(&self) -> &str {
        &self.base
    }
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
}

#[tokio::test]
async fn a_job_queued_before_the_limit_was_lowered_fails_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), 1 << 30).await;
    // The only worker slot is busy with a long job, so the next one stays queued.
    let busy = first.submit(digits_spec(10_000, 64)).await;
    first
        .wait_until(&busy, Duration::from_secs(60), |job| {
            job["status"] == "running"
        })
        .await;
    let queued = first.submit(digits_spec(1, 64)).await;
    let (_, job) = first.get(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(job["status"], "queued", "{job}");
    first.stop().await;

    // Digits with a 2x64 MLP needs a few MiB; 1 MiB is too little for either job.
    let second = Server::start(dir.path(), 1 << 20).await;
    for id in [&busy, &queued] {
        let job = second.wait_for_end(id).await;
        assert_eq!(job["status"], "failed", "{job}");
        let failure = job["failure"].as_str().unwrap();
        assert!(
            failure.contains("over the limit of 1.0 MiB per job"),
            "{failure}"
        );
    }
    let (_, job) = second.get(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(job["attempt"], 1, "failed on its first claim: {job}");
    second.stop().await;
}
