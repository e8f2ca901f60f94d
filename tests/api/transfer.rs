//! Transfer learning between CNN jobs: a backbone pretrained on ten shape classes, probed and
//! fine-tuned on a small two-class set, against training from scratch.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

async fn dataset(app: &TestApp, name: &str, classes: u32, samples: u32, seed: u32) {
    let (status, body) = app
        .post(
            "/v1/datasets",
            json!({"name": name, "synthetic": {"kind": "shapes", "classes": classes, "samples": samples, "image_size": 16, "noise": 0.02, "seed": seed}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn model() -> Value {
    json!({"kind": "cnn", "blocks": [{"channels": 16, "batch_norm": true}, {"channels": 32, "batch_norm": true}],
           "head": {"depth": 1, "width": 32}})
}

async fn best_val_acc(app: &TestApp, spec: Value) -> (String, f64, Vec<f64>) {
    let id = app.submit(spec).await;
    // Pretraining a CNN on 2,000 images is the slowest job of the suite; leave room for a busy machine.
    let job = app
        .wait_until(&id, std::time::Duration::from_secs(600), |job| {
            matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    let accs: Vec<f64> = metrics["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["val_acc"].as_f64().unwrap())
        .collect();
    let best = accs.iter().copied().fold(0.0, f64::max);
    (id, best, accs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pretrained_backbone_beats_scratch_on_a_small_task() {
    let app = TestApp::spawn().await;
    dataset(&app, "ten-shapes", 10, 2000, 1).await;
    dataset(&app, "two-shapes", 2, 100, 2).await;
    let (source, source_acc, _) = best_val_acc(
        &app,
        json!({"dataset": "ten-shapes", "model": model(),
               "training": {"optimizer": {"kind": "adam", "lr": 0.003}, "epochs": 10, "batch_size": 32, "seed": 1}}),
    )
    .await;
    let target = |init: Value| {
        json!({"dataset": "two-shapes", "model": model(), "init": init,
               "data": {"val_fraction": 0.4, "test_fraction": 0.0},
               "training": {"optimizer": {"kind": "adam", "lr": 0.003}, "epochs": 5, "batch_size": 16, "seed": 3}})
    };
    let (_, scratch, s) = best_val_acc(&app, target(json!({"mode": "scratch"}))).await;
    let (probe_id, probe, p) = best_val_acc(
        &app,
        target(json!({"mode": "linear_probe", "from_job": source})),
    )
    .await;
    let (_, fine, f) = best_val_acc(
        &app,
        target(json!({"mode": "fine_tune", "from_job": source, "backbone_lr_scale": 0.1})),
    )
    .await;
    eprintln!("TRANSFER source {source_acc:.2}; scratch {s:?}; probe {p:?}; fine-tune {f:?}");

    // A linear probe trains only the head: no gradient norms for the backbone.
    let (_, gradients) = app.get(&format!("/v1/jobs/{probe_id}/gradients")).await;
    let names: Vec<&str> = gradients["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("blocks.")), "{names:?}");
    assert!(names.contains(&"head.0.weight"), "{names:?}");
    assert!(
        probe > scratch && fine > scratch,
        "scratch {scratch}, probe {probe}, fine-tune {fine}"
    );

    // Incompatible backbones and missing sources are refused at submission.
    let mut wider = target(json!({"mode": "linear_probe", "from_job": source}));
    wider["model"]["blocks"][0]["channels"] = json!(8);
    let (status, body) = app.post("/v1/jobs", wider).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "init.from_job");
    assert!(
        body.to_string().contains("blocks.0.conv.weight has shape"),
        "{body}"
    );
    let (status, body) = app
        .post(
            "/v1/jobs",
            target(json!({"mode": "fine_tune", "from_job": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "init.from_job");
    let (status, body) = app
        .post("/v1/jobs", target(json!({"mode": "fine_tune"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "init.from_job");
}
