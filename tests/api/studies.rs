//! Studies: one call runs a whole study; its findings and report state only stored figures.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, decode};

async fn create(app: &TestApp, body: Value) -> (StatusCode, Value) {
    decode(
        app.client
            .post(app.url("/v1/studies"))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, body) = decode(app.client.get(app.url(path)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// Polls the study until it is no longer running.
async fn finished(app: &TestApp, id: &str, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let study = get(app, &format!("/v1/studies/{id}")).await;
        if study["status"] != "running" {
            return study;
        }
        assert!(
            start.elapsed() < within,
            "the study is still running after {within:?}: {}",
            study["progress"]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Each run's best validation accuracy as its stored metrics give it: job id -> value.
async fn stored_best_val_acc(app: &TestApp, findings: &Value) -> BTreeMap<String, f64> {
    let mut best = BTreeMap::new();
    for run in findings["runs"].as_array().unwrap() {
        let id = run["job_id"].as_str().unwrap();
        let metrics = get(app, &format!("/v1/jobs/{id}/metrics")).await;
        let value = metrics["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["val_acc"].as_f64())
            .fold(f64::NAN, f64::max);
        if value.is_finite() {
            best.insert(id.to_string(), value);
        }
    }
    best
}

fn question<'a>(study: &'a Value, kind: &str) -> &'a Value {
    study["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["question"] == kind)
        .unwrap_or_else(|| panic!("no findings for {kind}: {}", study["findings"]))
}

fn zip_entries(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("report.zip is a zip");
    let mut entries = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        entries.insert(file.name().expect("an entry name").into_owned(), content);
    }
    entries
}

/// Checks the report in its three forms against the study's findings.
async fn check_report(app: &TestApp, id: &str, study: &Value) {
    let html = app
        .client
        .get(app.url(&format!("/v1/studies/{id}/report.html")))
        .send()
        .await
        .unwrap();
    assert_eq!(html.status(), StatusCode::OK);
    assert!(
        html.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = html.text().await.unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    // Self-contained: no script, stylesheet, image or font fetched from anywhere.
    for outside in ["src=\"http", "href=\"http", "<link", "<script", "url("] {
        assert!(
            !html.contains(outside),
            "the report refers to an outside asset: {outside}"
        );
    }
    for finding in study["findings"].as_array().unwrap() {
        let kind = finding["question"].as_str().unwrap();
        assert!(
            html.contains(&format!("<section id=\"{kind}\">")),
            "no section for {kind}"
        );
        assert!(
            html.contains(&format!("<figure id=\"{kind}-curves\">\n<svg")),
            "no curves of {kind}"
        );
        let answer = finding["answer"].as_str().unwrap();
        assert!(
            html.contains(&answer.replace('\'', "&#39;")),
            "the {kind} answer is not in the report"
        );
        for run in finding["runs"].as_array().unwrap() {
            assert!(html.contains(&format!("data-job=\"{}\"", run["job_id"].as_str().unwrap())));
        }
    }
    let markdown = app
        .client
        .get(app.url(&format!("/v1/studies/{id}/report.md")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let zipped = app
        .client
        .get(app.url(&format!("/v1/studies/{id}/report.zip")))
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-type"], "application/zip");
    let entries = zip_entries(&zipped.bytes().await.unwrap());
    assert_eq!(
        std::str::from_utf8(&entries["report.md"]).unwrap(),
        markdown,
        "report.zip holds report.md as GET report.md gives it"
    );
    let linked: Vec<&str> = markdown
        .split("](plots/")
        .skip(1)
        .map(|rest| rest.split(')').next().unwrap())
        .collect();
    assert!(!linked.is_empty());
    for name in linked {
        let png = entries
            .get(&format!("plots/{name}"))
            .unwrap_or_else(|| panic!("report.md links plots/{name}, which the zip lacks"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "plots/{name} is not a PNG"
        );
    }
}

#[tokio::test]
async fn a_quick_study_of_every_question_on_digits_answers_each_from_the_stored_figures() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let (status, study) = create(
        &app,
        json!({"kind": "all", "dataset": "digits", "budget": "quick", "max_concurrent": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{study}");
    let id = study["id"].as_str().unwrap().to_string();
    let parts: Vec<&str> = study["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["part"].as_str().unwrap())
        .collect();
    assert_eq!(
        parts,
        [
            "learning_rate",
            "epochs",
            "batch_norm",
            "batch_size",
            "depth_width",
            "gradients"
        ],
        "every question but transfer fits a table"
    );
    let study = finished(&app, &id, Duration::from_secs(400)).await;
    assert_eq!(study["status"], "completed", "{study}");
    assert_eq!(
        study["progress"]["trials_done"],
        study["progress"]["trials_total"]
    );
    assert_eq!(study["findings"].as_array().unwrap().len(), 6);

    // The rate it calls best is the one with the highest best-epoch validation accuracy.
    let lr = question(&study, "learning_rate");
    let stored = stored_best_val_acc(&app, lr).await;
    let (best_job, best_value) = stored
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(id, v)| (id.clone(), *v))
        .unwrap();
    assert_eq!(lr["best"]["job_id"], best_job.as_str());
    assert!((lr["best"]["val_acc"].as_f64().unwrap() - best_value).abs() < 1e-12);
    let rate = lr["best"]["params"]["training.optimizer.lr"].clone();
    let rate = trainserve_rate(&rate);
    let answer = lr["answer"].as_str().unwrap();
    assert!(
        answer.contains(&format!(
            "the best rate was {rate} ({:.1}% validation accuracy",
            best_value * 100.0
        )),
        "{answer}"
    );
    // A learning rate of 1 does not learn: the answer says how it failed, not that it won.
    assert!(answer.contains("a learning rate of 1 "), "{answer}");

    // Every run's figures are the stored best epoch's.
    for finding in study["findings"].as_array().unwrap() {
        let stored = stored_best_val_acc(&app, finding).await;
        for run in finding["runs"].as_array().unwrap() {
            if let Some(value) = stored.get(run["job_id"].as_str().unwrap()) {
                assert!((run["val_acc"].as_f64().unwrap() - value).abs() < 1e-12);
            }
        }
    }
    // Batch size 1 takes longer per epoch than 1024, and the answer says by how much.
    let batch = question(&study, "batch_size");
    let seconds = |size: u64| {
        batch["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["params"]["training.batch_size"] == size)
            .unwrap()["seconds_per_epoch"]
            .as_f64()
            .unwrap()
    };
    assert!(seconds(1) > seconds(1024));
    assert!(
        batch["answer"]
            .as_str()
            .unwrap()
            .contains("An epoch at batch size 1 took")
    );
    check_report(&app, &id, &study).await;

    // The study's runs are ordinary jobs and sweeps, listed where jobs and sweeps are.
    let sweeps = get(&app, "/v1/sweeps").await;
    assert_eq!(sweeps["sweeps"].as_array().unwrap().len(), 6);
    let listed = get(&app, "/v1/studies").await;
    assert_eq!(listed["studies"][0]["status"], "completed");
}

/// How the answer writes a rate: 1e-5, 0.001, 1.
fn trainserve_rate(value: &Value) -> String {
    let x = value.as_f64().unwrap();
    if x < 1e-3 {
        format!("{x:e}")
    } else if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[tokio::test]
async fn a_quick_study_of_every_question_on_shapes_pretrains_its_transfer_source_first() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let (status, study) = create(
        &app,
        json!({"kind": "all", "dataset": "shapes", "budget": "quick", "max_concurrent": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{study}");
    let id = study["id"].as_str().unwrap().to_string();
    let transfer = study["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "transfer")
        .unwrap();
    assert!(
        transfer["sweep_id"].is_null(),
        "the transfer sweep waits for its source"
    );
    assert!(
        transfer["waiting_for"]
            .as_str()
            .unwrap()
            .contains("source model")
    );
    let study = finished(&app, &id, Duration::from_secs(600)).await;
    assert_eq!(study["status"], "completed", "{study}");
    assert_eq!(study["findings"].as_array().unwrap().len(), 7);
    let transfer = question(&study, "transfer");
    let answer = transfer["answer"].as_str().unwrap();
    assert!(
        answer.to_lowercase().contains("fine-tuning reached")
            && answer.contains("The source model, pretrained on shapes"),
        "{answer}"
    );
    let html = app
        .client
        .get(app.url(&format!("/v1/studies/{id}/report.html")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // On images, the samples the best and worst runs disagree on are drawn.
    assert!(html.contains("<figure id=\"transfer-samples\">"));
    check_report(&app, &id, &study).await;
}

#[tokio::test]
async fn a_study_that_does_not_fit_its_data_set_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"kind": "transfer", "dataset": "digits"}),
            "kind",
            "images",
        ),
        (
            json!({"kind": "everything", "dataset": "digits"}),
            "kind",
            "learning_rate",
        ),
        (
            json!({"kind": "epochs", "dataset": "nope"}),
            "dataset",
            "no data set",
        ),
        (
            json!({"kind": "epochs", "dataset": "digits", "budget": "huge"}),
            "budget",
            "quick",
        ),
        (
            json!({"kind": "epochs", "dataset": "digits", "max_concurrent": 0}),
            "max_concurrent",
            "1 to 64",
        ),
        (
            json!({"kind": "epochs", "dataset": "digits", "seed": 10_000_000_000u64}),
            "seed",
            "0 to",
        ),
        (
            json!({"kind": "epochs", "dataset": "digits", "source_dataset": "shapes"}),
            "source_dataset",
            "transfer",
        ),
        (
            json!({"kind": "transfer", "dataset": "shapes", "source_dataset": "digits"}),
            "source_dataset",
            "same",
        ),
        (
            json!({"kind": "epochs", "dataset": "digits", "colour": "red"}),
            "colour",
            "unknown field",
        ),
    ];
    for (body, field, hint) in cases {
        let (status, error) = create(&app, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["field"], field, "{body}: {error}");
        assert!(
            error["error"].as_str().unwrap().contains(hint),
            "{body}: {error}"
        );
    }
    // Nothing was queued.
    let jobs = get(&app, "/v1/jobs").await;
    assert_eq!(jobs["total"], 0);
    let studies = get(&app, "/v1/studies").await;
    assert_eq!(studies["studies"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn cancelling_a_study_stops_its_runs_and_resuming_it_finishes_the_rest() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 1).await;
    let (status, study) = create(
        &app,
        json!({"kind": "learning_rate", "dataset": "digits", "budget": "quick", "max_concurrent": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{study}");
    let id = study["id"].as_str().unwrap().to_string();
    let (status, cancelled) = decode(
        app.client
            .post(app.url(&format!("/v1/studies/{id}/cancel")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        cancelled["cancelled_trials"].as_u64().unwrap() >= 1,
        "{cancelled}"
    );
    let study = finished(&app, &id, Duration::from_secs(60)).await;
    assert_eq!(study["status"], "cancelled");
    let (status, resumed) = decode(
        app.client
            .post(app.url(&format!("/v1/studies/{id}/resume")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resumed}");
    let study = finished(&app, &id, Duration::from_secs(120)).await;
    assert_eq!(study["status"], "completed", "{study}");
    assert_eq!(study["findings"].as_array().unwrap().len(), 1);

    let (status, _) = decode(
        app.client
            .delete(app.url(&format!("/v1/studies/{id}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let gone = app
        .client
        .get(app.url(&format!("/v1/studies/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let jobs = get(&app, "/v1/jobs").await;
    assert_eq!(jobs["total"], 0, "the study's jobs went with it");
}

#[tokio::test]
async fn a_study_survives_a_restart_and_creates_its_waiting_part_after_it() {
    let mut app = TestApp::spawn_with(|c| c.worker_slots = 1).await;
    app.client
        .post(app.url("/v1/datasets"))
        .json(&json!({"name": "tiny-shapes", "synthetic": {"kind": "shapes", "classes": 3, "samples": 120, "seed": 3, "image_size": 16}}))
        .send()
        .await
        .unwrap();
    let (status, study) = create(
        &app,
        json!({"kind": "transfer", "dataset": "tiny-shapes", "budget": "quick"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{study}");
    let id = study["id"].as_str().unwrap().to_string();
    // Restart at once: the source is queued or training; the transfer part is not created.
    app.restart_with(|c| c.worker_slots = 1).await;
    let study = finished(&app, &id, Duration::from_secs(180)).await;
    assert_eq!(study["status"], "completed", "{study}");
    let parts = study["parts"].as_array().unwrap();
    assert!(parts.iter().all(|p| !p["sweep_id"].is_null()));
    assert_eq!(
        question(&study, "transfer")["runs"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
}
