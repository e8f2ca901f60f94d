//! The README's walkthrough of the classic studies, run at small sizes: every sweep spec in
//! `docs/studies/` is posted as a sweep (the CNN transfer study after pretraining its source,
//! `cnn-source.json`) and answered with a summary, plots, a comparison and a diagnosis.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

fn study(name: &str) -> Value {
    study_with(name, "")
}

/// A study spec with `$SOURCE` (a source job for transfer learning) replaced by `source`.
fn study_with(name: &str, source: &str) -> Value {
    let path = format!("{}/docs/studies/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("$SOURCE", source);
    let mut spec: Value = serde_json::from_str(&text).unwrap();
    // Small sizes: the same questions, answered in seconds.
    let epochs = spec["base"]["training"]["epochs"].as_u64().unwrap();
    spec["base"]["training"]["epochs"] = json!(epochs.min(if name == "epochs" { 12 } else { 2 }));
    if spec["base"]["model"]["depth"] == 100 {
        spec["base"]["model"]["width"] = json!(8);
        spec["base"]["training"]["epochs"] = json!(1);
    }
    spec
}

async fn answer(app: &TestApp, name: &str) -> (Value, Value) {
    answer_spec(app, name, study(name)).await
}

async fn answer_spec(app: &TestApp, name: &str, spec: Value) -> (Value, Value) {
    let (status, created) = app.post("/v1/sweeps", spec).await;
    assert_eq!(status, StatusCode::CREATED, "{name}: {created}");
    let id = created["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let sweep = loop {
        let (_, sweep) = app.get(&format!("/v1/sweeps/{id}")).await;
        let counts = &sweep["summary"]["status_counts"];
        if counts["queued"].as_u64().unwrap_or(0) + counts["running"].as_u64().unwrap_or(0) == 0 {
            break sweep;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "{name} did not finish: {counts}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        sweep["summary"]["best_trial"].is_number(),
        "{name}: {sweep}"
    );
    let plot = app
        .client
        .get(app.url(&format!("/v1/sweeps/{id}/plot.svg")))
        .send()
        .await
        .unwrap();
    assert_eq!(plot.status(), StatusCode::OK, "{name}");
    assert!(plot.text().await.unwrap().starts_with("<svg"));
    let jobs: Vec<String> = sweep["summary"]["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["job_id"].as_str().unwrap().to_string())
        .collect();
    let (status, comparison) = app
        .get(&format!("/v1/compare?jobs={}", jobs.join(",")))
        .await;
    assert_eq!(status, StatusCode::OK, "{name}: {comparison}");
    assert_eq!(comparison["jobs"][0]["rank"], 1);
    let curves = app
        .client
        .get(app.url(&format!(
            "/v1/compare/plot.svg?jobs={}&metric=val_loss",
            jobs.join(",")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(curves.status(), StatusCode::OK, "{name}");
    for job in comparison["jobs"].as_array().unwrap() {
        assert!(
            !job["findings"].as_array().unwrap().is_empty(),
            "{name}: every job gets a diagnosis: {job}"
        );
    }
    (sweep, comparison)
}

fn findings_of(comparison: &Value, matches: impl Fn(&Value) -> bool) -> Vec<String> {
    comparison["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| matches(j))
        .flat_map(|j| {
            j["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["kind"].as_str().unwrap().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_answers_each_classic_question() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;

    let (sweep, comparison) = answer(&app, "learning-rate").await;
    let trials = sweep["summary"]["trials"].as_array().unwrap();
    let lr_of = |job: &Value| {
        trials
            .iter()
            .find(|t| t["job_id"] == job["job_id"])
            .map(|t| t["params"]["training.optimizer.lr"].as_f64().unwrap())
    };
    let too_high = findings_of(&comparison, |j| lr_of(j) == Some(1.0));
    assert!(
        too_high
            .iter()
            .any(|k| k == "diverged" || k == "learning_rate_too_high"),
        "lr 1: {too_high:?}"
    );
    let too_low = findings_of(&comparison, |j| lr_of(j) == Some(0.00001));
    assert!(
        too_low
            .iter()
            .any(|k| k == "learning_rate_too_low" || k == "learning_rate_too_high"),
        "lr 1e-5: {too_low:?}"
    );

    answer(&app, "epochs").await;
    let (sweep, _) = answer(&app, "batch-norm").await;
    assert_eq!(
        sweep["summary"]["axes"][0]["values"][0]["trials"], 3,
        "three seeds per value"
    );
    let (sweep, comparison) = answer(&app, "batch-size").await;
    let bs1 = sweep["summary"]["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["params"]["training.batch_size"] == 1)
        .unwrap()
        .clone();
    let batch_jobs: Vec<&str> = sweep["summary"]["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["job_id"].as_str().unwrap())
        .collect();
    image_ok(
        &app,
        &format!("/v1/compare/noise.svg?jobs={}", batch_jobs.join(",")),
    )
    .await;
    let noisy = findings_of(&comparison, |j| j["job_id"] == bs1["job_id"]);
    assert!(
        noisy.iter().any(|k| k == "noisy_training"),
        "batch size 1: {noisy:?}"
    );
    let (sweep, _) = answer(&app, "depth-width").await;
    assert_eq!(
        sweep["summary"]["heatmap"]["mean"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    let (sweep, comparison) = answer(&app, "gradients").await;
    let plain_sigmoid = sweep["summary"]["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["params"]["model.activation"] == "sigmoid" && t["params"]["model.batch_norm"] == false
        })
        .unwrap();
    let kinds = findings_of(&comparison, |j| j["job_id"] == plain_sigmoid["job_id"]);
    assert!(
        kinds.iter().any(|k| k == "vanishing_gradients"),
        "{kinds:?}"
    );
    image_ok(
        &app,
        &format!(
            "/v1/jobs/{}/plots/gradients.svg",
            plain_sigmoid["job_id"].as_str().unwrap()
        ),
    )
    .await;
    let (status, grads) = app
        .get(&format!(
            "/v1/jobs/{}/gradients?layer=hidden.0",
            plain_sigmoid["job_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{grads}");
}

/// An image for the README's CNN study, at small size: 16×16 pixels instead of 32×32.
async fn small_shapes(app: &TestApp, name: &str, samples: u32, seed: u32) {
    let (status, body) = app
        .post(
            "/v1/datasets",
            json!({"name": name, "synthetic": {"kind": "shapes", "classes": 3, "samples": samples, "image_size": 16, "seed": seed}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn image_ok(app: &TestApp, path: &str) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert!(response.text().await.unwrap().starts_with("<svg"), "{path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_answers_scratch_probe_or_fine_tune_for_a_cnn() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    small_shapes(&app, "source-shapes", 300, 3).await;
    small_shapes(&app, "few-shapes", 90, 11).await;
    let path = format!(
        "{}/docs/studies/cnn-source.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut source: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    source["dataset"] = json!("source-shapes");
    source["training"]["epochs"] = json!(2);
    let source = app.submit(source).await;
    let job = app.wait_for_end(&source).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let (sweep, comparison) =
        answer_spec(&app, "cnn-transfer", study_with("cnn-transfer", &source)).await;
    let summary = &sweep["summary"];
    assert_eq!(summary["status_counts"]["succeeded"], 9, "{summary}");
    let heatmap = &summary["heatmap"];
    assert_eq!(heatmap["x_axis"], "init.mode", "{heatmap}");
    assert_eq!(heatmap["mean"].as_array().unwrap().len(), 3, "{heatmap}");
    let trials = summary["trials"].as_array().unwrap();
    let trial_of = |mode: &str| {
        trials
            .iter()
            .find(|t| t["params"]["init.mode"] == mode)
            .unwrap()["job_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // A linear probe trains only the head; fine-tuning trains the backbone too.
    for (mode, trains_backbone) in [("linear_probe", false), ("fine_tune", true)] {
        let (_, gradients) = app
            .get(&format!("/v1/jobs/{}/gradients", trial_of(mode)))
            .await;
        let backbone = gradients["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["name"].as_str().unwrap().starts_with("blocks."));
        assert_eq!(backbone, trains_backbone, "{mode}: {gradients}");
        image_ok(
            &app,
            &format!("/v1/jobs/{}/plots/gradients.svg", trial_of(mode)),
        )
        .await;
    }
    let ranked = comparison["jobs"].as_array().unwrap();
    let (best, worst) = (&ranked[0]["job_id"], &ranked[ranked.len() - 1]["job_id"]);
    let (status, diagnosis) = app
        .get(&format!("/v1/jobs/{}/diagnosis", best.as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::OK, "{diagnosis}");
    image_ok(
        &app,
        &format!(
            "/v1/compare/disagreements.svg?a={}&b={}&split=test",
            best.as_str().unwrap(),
            worst.as_str().unwrap()
        ),
    )
    .await;
}
