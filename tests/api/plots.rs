//! Plots over HTTP: learning curves, overlaid comparisons and sweep charts, as SVG and PNG,
//! from real (tiny) training runs; and their errors.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, digits_spec};
use crate::sweeps::wait_for_sweep;

/// Status, content type and body of a GET.
async fn fetch(app: &TestApp, path: &str) -> (StatusCode, String, Vec<u8>) {
    let response = app.client.get(app.url(path)).send().await.expect("GET");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        status,
        content_type,
        response.bytes().await.expect("a body").to_vec(),
    )
}

/// Fetches an SVG plot, checks it is one, and returns its text.
async fn svg(app: &TestApp, path: &str) -> String {
    let (status, content_type, body) = fetch(app, path).await;
    let text = String::from_utf8(body).expect("SVG is text");
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
    assert_eq!(content_type, "image/svg+xml", "{path}");
    assert!(
        text.trim_start().starts_with("<svg"),
        "{path}: {}",
        &text[..text.len().min(100)]
    );
    assert!(text.trim_end().ends_with("</svg>"), "{path}");
    text
}

/// Fetches a PNG plot and checks its signature and size.
async fn png(app: &TestApp, path: &str) -> Vec<u8> {
    let (status, content_type, body) = fetch(app, path).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(content_type, "image/png", "{path}");
    assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n", "{path}");
    assert!(
        body.len() > 5_000,
        "{path}: a real picture, {} bytes",
        body.len()
    );
    body
}

/// The texts of an SVG's `<text>` elements (plotters writes each on its own line).
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = t.split_once('>')?.1;
            Some(body.split("</text>").next()?.trim().replace("&amp;", "&"))
        })
        .collect()
}

async fn error(app: &TestApp, path: &str) -> (StatusCode, Value) {
    app.get(path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_curves_and_a_comparison_plot_as_svg_and_png() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let mut a = digits_spec(3, 64);
    a["name"] = json!("tiny-adam & co");
    let mut b = digits_spec(2, 64);
    b["name"] = json!("tiny-sgd");
    b["training"]["optimizer"] = json!({"kind": "sgd", "lr": 0.05});
    let (a, b) = (app.submit(a).await, app.submit(b).await);
    for id in [&a, &b] {
        let job = app.wait_for_end(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }

    let curves = svg(&app, &format!("/v1/jobs/{a}/plots/curves.svg")).await;
    let shown = texts(&curves);
    for want in [
        "Learning curves: tiny-adam & co",
        "Loss",
        "Accuracy",
        "epoch",
        "accuracy",
        "train",
        "validation",
        "test",
    ] {
        assert!(shown.iter().any(|t| t == want), "{want} in {shown:?}");
    }
    assert!(
        shown.iter().any(|t| t.starts_with("best epoch (")),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|t| t == "3"),
        "the last epoch is a tick: {shown:?}"
    );
    png(&app, &format!("/v1/jobs/{a}/plots/curves.png")).await;
    let by_loss = svg(
        &app,
        &format!("/v1/jobs/{b}/plots/curves.svg?metric=val_loss"),
    )
    .await;
    assert!(
        texts(&by_loss).iter().any(|t| t.contains("best val_loss")),
        "{by_loss}"
    );

    let overlay = svg(
        &app,
        &format!("/v1/compare/plot.svg?jobs={a},{b}&metric=val_acc"),
    )
    .await;
    let shown = texts(&overlay);
    assert!(
        shown.iter().any(|t| t == "val_acc by epoch, 2 jobs"),
        "{shown:?}"
    );
    for name in ["tiny-adam & co", "tiny-sgd"] {
        assert!(
            shown.iter().any(|t| t.starts_with(&format!("{name}: "))),
            "{name} in {shown:?}"
        );
    }
    png(
        &app,
        &format!("/v1/compare/plot.png?jobs={a},{b}&metric=train_loss"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_epochs_gets_a_plot_that_says_so() {
    let app = TestApp::spawn().await;
    // The only worker slot is busy with a long job, so the second one stays queued.
    let busy = app.submit(digits_spec(10_000, 32)).await;
    let queued = app.submit(digits_spec(2, 32)).await;
    let curves = svg(&app, &format!("/v1/jobs/{queued}/plots/curves.svg")).await;
    assert!(
        texts(&curves)
            .iter()
            .any(|t| t == "No epochs yet (job queued)"),
        "{curves}"
    );
    let overlay = svg(&app, &format!("/v1/compare/plot.svg?jobs={queued}")).await;
    assert!(
        texts(&overlay)
            .iter()
            .any(|t| t == "No epochs with val_acc yet"),
        "{overlay}"
    );
    for id in [&queued, &busy] {
        app.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plot_requests_are_json_errors_naming_the_parameter() {
    let app = TestApp::spawn().await;
    let unknown = "0190aaaa-0000-7000-8000-000000000000";
    for path in [
        format!("/v1/jobs/{unknown}/plots/curves.svg"),
        "/v1/jobs/not-an-id/plots/curves.png".to_string(),
        format!("/v1/sweeps/{unknown}/plot.svg"),
        format!("/v1/compare/plot.svg?jobs={unknown}"),
    ] {
        let (status, body) = error(&app, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["code"], "not_found", "{path}");
    }
    for (path, field) in [
        (
            format!("/v1/jobs/{unknown}/plots/curves.svg?metric=speed"),
            "metric",
        ),
        (
            format!("/v1/jobs/{unknown}/plots/curves.svg?colour=red"),
            "colour",
        ),
        ("/v1/compare/plot.svg?jobs=".to_string(), "jobs"),
        ("/v1/compare/plot.png".to_string(), "jobs"),
        (
            format!("/v1/compare/plot.svg?jobs={unknown}&goal=up"),
            "goal",
        ),
        (
            format!("/v1/sweeps/{unknown}/plot.png?metric=nope"),
            "metric",
        ),
    ] {
        let (status, body) = error(&app, &path).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_axis_sweep_plots_as_a_heatmap_and_a_one_axis_sweep_as_metric_against_parameter() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let base = json!({"dataset": "digits", "model": {"kind": "mlp", "depth": 1, "width": 16},
                      "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": 2, "batch_size": 64, "seed": 3}});
    let (status, grid) = app
        .post(
            "/v1/sweeps",
            json!({"name": "depth-lr", "base": base.clone(), "max_concurrent": 2,
                   "axes": {"model.depth": [1, 2], "training.optimizer.lr": [0.0001, 0.01]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{grid}");
    let (status, line) = app
        .post(
            "/v1/sweeps",
            json!({"name": "lr", "base": base, "max_concurrent": 2,
                   "axes": {"training.optimizer.lr": [0.00001, 0.001, 0.1]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{line}");
    let grid = grid["id"].as_str().unwrap().to_string();
    let line = line["id"].as_str().unwrap().to_string();
    wait_for_sweep(&app, &grid).await;
    wait_for_sweep(&app, &line).await;

    let heatmap = svg(&app, &format!("/v1/sweeps/{grid}/plot.svg")).await;
    let shown = texts(&heatmap);
    assert!(
        shown
            .iter()
            .any(|t| t == "Sweep depth-lr: val_acc by model.depth and training.optimizer.lr"),
        "{shown:?}"
    );
    for tick in ["1", "2", "1e-4", "0.01"] {
        assert!(shown.iter().any(|t| t == tick), "{tick} in {shown:?}");
    }
    let (_, summary) = app.get(&format!("/v1/sweeps/{grid}")).await;
    let means: Vec<f64> = summary["summary"]["heatmap"]["mean"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(means.len(), 4, "{summary}");
    for mean in means {
        let label = format!("{mean:.3}");
        assert!(shown.contains(&label), "cell {label} annotated: {shown:?}");
    }
    png(&app, &format!("/v1/sweeps/{grid}/plot.png")).await;
    let by_loss = svg(&app, &format!("/v1/sweeps/{grid}/plot.svg?metric=val_loss")).await;
    assert!(
        texts(&by_loss)
            .iter()
            .any(|t| t.starts_with("Sweep depth-lr: val_loss"))
    );

    let effect = svg(&app, &format!("/v1/sweeps/{line}/plot.svg")).await;
    let shown = texts(&effect);
    assert!(
        shown
            .iter()
            .any(|t| t == "training.optimizer.lr (log scale)"),
        "{shown:?}"
    );
    assert!(shown.iter().any(|t| t == "best val_acc"), "{shown:?}");
    png(&app, &format!("/v1/sweeps/{line}/plot.png")).await;
}
