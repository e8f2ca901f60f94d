//! `serve`: predictions under load. The release `trainserve` binary is started as production
//! runs it (fresh data folder, random port, default settings), a digits MLP 2x64 is trained
//! through the API, and the built-in load generator (`load`) drives it at 1, 16 and 64
//! connections: one row per request, 64 rows per request, and the same router's
//! `POST /v1/echo` as the ceiling of the HTTP stack; then single rows at 16 connections while
//! another job trains, and a longer soak at 16 connections for the service's resident memory.
//! Prints a JSON line per scenario and one with the issue's targets, then a table on stderr.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::load::{self, Target};
use super::serve_report::{self, Measured, Soak};
use super::service_process::{self, ServiceProcess};
use trainserve::error::{Error, Result};

/// Connection counts of the scenarios, as the issue asks.
const CONNECTIONS: [usize; 3] = [1, 16, 64];
/// Rows of a batched request.
const BATCH_ROWS: usize = 64;
/// The model served: a digits MLP 2x64, trained for a few epochs.
const SERVED_SPEC: &str = r#"{"name": "bench-serve-digits-mlp-2x64", "dataset": "digits",
    "model": {"kind": "mlp", "depth": 2, "width": 64},
    "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": 3, "batch_size": 64, "seed": 7}}"#;
/// The job that trains during the `training` scenario: wide enough that every step keeps the
/// job's cores busy, long enough to outlast the scenario (it is cancelled after it).
const BACKGROUND_SPEC: &str = r#"{"name": "bench-serve-background-mlp-3x512", "dataset": "digits",
    "model": {"kind": "mlp", "depth": 3, "width": 512},
    "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": 10000, "batch_size": 64, "seed": 8}}"#;

/// Settings of the `serve` workload.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Measured seconds per scenario (after a warm-up of a quarter of it, at most a second).
    pub seconds: f64,
    /// Seconds of the soak whose resident memory is compared before and after.
    pub soak_seconds: f64,
    /// The service binary; `None` finds the one beside the benchmark.
    pub service_bin: Option<PathBuf>,
}

/// Runs the workload on a fresh service and prints its figures.
pub async fn run(options: &ServeOptions) -> Result<()> {
    if cfg!(debug_assertions) {
        println!(
            "{}",
            json!({"bench": "serve", "note": "a debug build: build with --release for figures worth comparing"})
        );
    }
    let binary = service_process::locate(options.service_bin.as_deref())?;
    let service = ServiceProcess::start(&binary).await?;
    let measured = measure(&service, options).await;
    service.stop().await;
    let (scenarios, soak) = measured?;
    let targets = serve_report::targets(&scenarios, &soak);
    println!("{}", serve_report::targets_json(&targets, options));
    eprintln!("{}", serve_report::table(&scenarios, &soak, &targets));
    Ok(())
}

/// Every scenario, in order, then the soak.
async fn measure(
    service: &ServiceProcess,
    options: &ServeOptions,
) -> Result<(Vec<Measured>, Soak)> {
    let addr = service.addr;
    let (status, body) =
        load::call(addr, Method::POST, "/v1/echo", Some(&json!({"probe": 1}))).await?;
    if status != StatusCode::OK {
        return Err(Error::Internal(format!(
            "POST /v1/echo answered {status} {body}: is the service binary older than this benchmark? Rebuild it"
        )));
    }
    let model = train(addr, SERVED_SPEC).await?;
    let predict = format!("/v1/models/{model}/predict");
    let (one_row, batch) = (request_body(1), request_body(BATCH_ROWS));
    let seconds = Duration::from_secs_f64(options.seconds.max(0.1));
    let mut scenarios = Vec::new();
    for connections in CONNECTIONS {
        for (name, path, body, rows) in [
            ("echo", "/v1/echo", &one_row, 1),
            ("predict", predict.as_str(), &one_row, 1),
            ("predict", predict.as_str(), &batch, BATCH_ROWS),
        ] {
            let target = Target {
                addr,
                path: path.to_string(),
                body: body.clone(),
            };
            let measured = scenario(service, name, &target, rows, connections, seconds).await?;
            println!("{}", measured.json());
            scenarios.push(measured);
        }
    }
    let single = Target {
        addr,
        path: predict.clone(),
        body: one_row.clone(),
    };
    let background = submit(addr, BACKGROUND_SPEC).await?;
    wait_for(addr, &background, |status| status != "queued").await?;
    let mut measured = scenario(service, "predict_while_training", &single, 1, 16, seconds).await;
    if let Ok(measured) = &mut measured {
        // The figures mean what they say only if the job was still training at the end.
        let job = job(addr, &background).await?;
        measured.trained_throughout = Some(job["status"] == "running");
    }
    let _ = load::call(
        addr,
        Method::POST,
        &format!("/v1/jobs/{background}/cancel"),
        None,
    )
    .await;
    wait_for(addr, &background, is_terminal).await?;
    let measured = measured?;
    println!("{}", measured.json());
    scenarios.push(measured);
    let soak = soak(
        service,
        &single,
        Duration::from_secs_f64(options.soak_seconds.max(1.0)),
    )
    .await?;
    println!("{}", soak.json());
    Ok((scenarios, soak))
}

/// One scenario: a warm-up, then `seconds` measured, with the service's memory either side.
async fn scenario(
    service: &ServiceProcess,
    name: &'static str,
    target: &Target,
    rows: usize,
    connections: usize,
    seconds: Duration,
) -> Result<Measured> {
    load::run(
        target,
        connections,
        (seconds / 4).min(Duration::from_secs(1)),
    )
    .await?;
    let rss_before_mib = service.rss_mib()?;
    let cpu_before = service.cpu_seconds()?;
    let (tally, elapsed) = load::run(target, connections, seconds).await?;
    Ok(Measured {
        name,
        connections,
        rows,
        summary: tally.summary(elapsed, rows),
        service_cores: (service.cpu_seconds()? - cpu_before) / elapsed.as_secs_f64(),
        rss_before_mib,
        rss_after_mib: service.rss_mib()?,
        trained_throughout: None,
    })
}

/// Single rows at 16 connections for `duration`, memory read before and after.
async fn soak(service: &ServiceProcess, target: &Target, duration: Duration) -> Result<Soak> {
    let rss_before_mib = service.rss_mib()?;
    let cpu_before = service.cpu_seconds()?;
    let (tally, elapsed) = load::run(target, 16, duration).await?;
    Ok(Soak {
        summary: tally.summary(elapsed, 1),
        service_cores: (service.cpu_seconds()? - cpu_before) / elapsed.as_secs_f64(),
        rss_before_mib,
        rss_after_mib: service.rss_mib()?,
    })
}

/// A prediction request of the first `rows` rows of the built-in digits (64 pixels each).
fn request_body(rows: usize) -> Bytes {
    let table = data::digits();
    let width = table.feature_names.len();
    let inputs: Vec<&[f32]> = table.features.chunks(width).take(rows).collect();
    Bytes::from(json!({ "inputs": inputs }).to_string())
}

/// Submits `spec` and waits until it has succeeded; its id.
async fn train(addr: std::net::SocketAddr, spec: &str) -> Result<String> {
    let id = submit(addr, spec).await?;
    let job = wait_for(addr, &id, is_terminal).await?;
    if job["status"] != "succeeded" {
        return Err(Error::Internal(format!(
            "the served model's job did not succeed: {job}"
        )));
    }
    Ok(id)
}

async fn submit(addr: std::net::SocketAddr, spec: &str) -> Result<String> {
    let spec: Value =
        serde_json::from_str(spec).map_err(|err| Error::internal("a benchmark spec", err))?;
    let (status, body) = load::call(addr, Method::POST, "/v1/jobs", Some(&spec)).await?;
    match body["id"].as_str() {
        Some(id) if status == StatusCode::CREATED => Ok(id.to_string()),
        _ => Err(Error::Internal(format!(
            "submitting a job: {status} {body}"
        ))),
    }
}

async fn job(addr: std::net::SocketAddr, id: &str) -> Result<Value> {
    let (status, body) = load::call(addr, Method::GET, &format!("/v1/jobs/{id}"), None).await?;
    if status != StatusCode::OK {
        return Err(Error::Internal(format!(
            "reading job {id}: {status} {body}"
        )));
    }
    Ok(body)
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// Polls a job until `done` holds for its status (two minutes at most).
async fn wait_for(
    addr: std::net::SocketAddr,
    id: &str,
    done: impl Fn(&str) -> bool,
) -> Result<Value> {
    let started = Instant::now();
    loop {
        let job = job(addr, id).await?;
        if done(job["status"].as_str().unwrap_or_default()) {
            return Ok(job);
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(Error::Internal(format!(
                "gave up waiting on job {id}: {job}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
