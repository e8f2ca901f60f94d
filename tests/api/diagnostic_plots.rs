//! The diagnostic plots over HTTP, from real (tiny) CNN runs on generated shapes: per-layer
//! gradient norms, step-loss noise of two batch sizes, and the grid of samples two models
//! disagree on; and their errors.

use reqwest::StatusCode;
use serde_json::json;

use crate::cnn::{cnn_spec, create_small_shapes};
use crate::helpers::{Api, TestApp};

/// Fetches an image; returns it with its content type after checking the status.
async fn image(app: &TestApp, path: &str) -> (String, Vec<u8>) {
    let response = app.client.get(app.url(path)).send().await.expect("GET");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = response.bytes().await.expect("a body").to_vec();
    assert_eq!(
        status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&body)
    );
    (content_type, body)
}

/// An SVG's `<text>` contents.
async fn svg_texts(app: &TestApp, path: &str) -> Vec<String> {
    let (content_type, body) = image(app, path).await;
    assert_eq!(content_type, "image/svg+xml", "{path}");
    let text = String::from_utf8(body).expect("SVG is text");
    assert!(text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    text.split("<text")
        .skip(1)
        .filter_map(|t| {
            Some(
                t.split_once('>')?
                    .1
                    .split("</text>")
                    .next()?
                    .trim()
                    .to_string(),
            )
        })
        .collect()
}

/// A label as the grid prints it: strings bare, anything else as JSON.
fn label(value: &serde_json::Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

async fn is_png(app: &TestApp, path: &str) {
    let (content_type, body) = image(app, path).await;
    assert_eq!(content_type, "image/png", "{path}");
    assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n", "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_noise_and_disagreement_plots_show_every_layer_job_and_sample() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    create_small_shapes(&app, "plot-shapes").await;
    let mut good = cnn_spec("plot-shapes", 2);
    good["name"] = json!("batch 8");
    good["training"]["batch_size"] = json!(8);
    // Barely trained: it disagrees with the good model on many samples.
    let mut poor = cnn_spec("plot-shapes", 1);
    poor["name"] = json!("batch 64");
    poor["training"]["batch_size"] = json!(64);
    poor["training"]["optimizer"]["lr"] = json!(0.00001);
    let (a, b) = (app.submit(good).await, app.submit(poor).await);
    for id in [&a, &b] {
        let job = app.wait_for_end(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }

    let (_, gradients) = app.get(&format!("/v1/jobs/{a}/gradients")).await;
    let layers: Vec<String> = gradients["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["role"] == "weight" || l["role"] == "conv.weight")
        .map(|l| l["layer"].as_str().unwrap().to_string())
        .collect();
    assert!(layers.len() >= 3, "{gradients}");
    let shown = svg_texts(&app, &format!("/v1/jobs/{a}/plots/gradients.svg")).await;
    for want in layers
        .iter()
        .map(String::as_str)
        .chain(["epoch", "gradient L2 norm (log scale)"])
    {
        assert!(shown.iter().any(|t| t == want), "{want} in {shown:?}");
    }
    is_png(&app, &format!("/v1/jobs/{a}/plots/gradients.png")).await;

    let shown = svg_texts(&app, &format!("/v1/compare/noise.svg?jobs={a},{b}")).await;
    for name in ["batch 8", "batch 64"] {
        assert!(
            shown
                .iter()
                .any(|t| t.starts_with(&format!("{name}: mean CV "))),
            "{name} in {shown:?}"
        );
    }
    assert!(shown.iter().any(|t| t == "epochs of training"), "{shown:?}");
    is_png(
        &app,
        &format!("/v1/compare/noise.png?jobs={a},{b}&max_points=50"),
    )
    .await;

    let (_, listed) = app
        .get(&format!("/v1/compare/disagreements?a={a}&b={b}&limit=4"))
        .await;
    let first = &listed["a_right_b_wrong"][0];
    assert!(
        first.is_object(),
        "the trained model wins somewhere: {listed}"
    );
    let shown = svg_texts(
        &app,
        &format!("/v1/compare/disagreements.svg?a={a}&b={b}&limit=4"),
    )
    .await;
    let caption = format!("#{} true: {}", first["index"], label(&first["true_label"]));
    assert!(shown.contains(&caption), "{caption} in {shown:?}");
    let answer = format!(
        "B: {} ({:.2})",
        label(&first["b"]["label"]),
        first["b"]["confidence"].as_f64().unwrap()
    );
    assert!(shown.contains(&answer), "{answer} in {shown:?}");
    assert!(
        shown.iter().any(|t| t.starts_with("A right, B wrong: ")),
        "{shown:?}"
    );
    is_png(&app, &format!("/v1/compare/disagreements.png?a={a}&b={b}")).await;

    let (status, body) = app
        .get(&format!(
            "/v1/compare/disagreements.svg?a={a}&b={b}&limit=49"
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "limit");
    let (status, body) = app
        .get(&format!("/v1/compare/noise.svg?jobs={a}&max_points=5"))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "max_points");
    let (status, _) = app
        .get("/v1/jobs/0190f5b0-1a2c-7000-8000-000000000009/plots/gradients.svg")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
