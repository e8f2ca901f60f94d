//! CNNs over HTTP: training on generated shapes, measurements, checkpoints, prediction from
//! rows and images, and specs refused with the field at fault.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

/// Small generated shapes: 3 classes, 16×16 RGB.
pub fn small_shapes() -> Value {
    json!({"classes": 3, "samples": 300, "image_size": 16, "seed": 3})
}

pub async fn create_small_shapes(app: &impl Api, name: &str) {
    let (status, body) = app
        .post(
            "/v1/datasets",
            json!({"name": name, "synthetic": {"kind": "shapes", "classes": 3, "samples": 300, "image_size": 16, "seed": 3}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

pub fn cnn_spec(dataset: &str, epochs: u32) -> Value {
    json!({
        "dataset": dataset,
        "model": {"kind": "cnn", "blocks": [{"channels": 8, "batch_norm": true}, {"channels": 16, "dropout": 0.1}],
                  "head": {"depth": 1, "width": 32, "dropout": 0.1}},
        "training": {"optimizer": {"kind": "adam", "lr": 0.003}, "epochs": epochs, "batch_size": 16, "seed": 5}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cnn_trains_on_shapes_with_metrics_norms_checkpoints_and_predictions() {
    let app = TestApp::spawn().await;
    create_small_shapes(&app, "tiny-shapes").await;
    let id = app.submit(cnn_spec("tiny-shapes", 4)).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["name"], "tiny-shapes-cnn-8-16");

    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    let epochs = metrics["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 4);
    let last = epochs.last().unwrap();
    let loss = |e: &Value| e["train_eval_loss"].as_f64().unwrap();
    assert!(loss(last) < loss(&epochs[0]), "it learns: {metrics}");

    let (_, gradients) = app.get(&format!("/v1/jobs/{id}/gradients")).await;
    let names: Vec<&str> = gradients["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    for name in [
        "blocks.0.conv.weight",
        "blocks.0.bn.weight",
        "blocks.1.conv.bias",
        "head.0.weight",
        "output.weight",
    ] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }

    let (_, checkpoints) = app.get(&format!("/v1/jobs/{id}/checkpoints")).await;
    assert!(!checkpoints["checkpoints"].as_array().unwrap().is_empty());

    let table =
        trainserve::train::dataset::shapes(&serde_json::from_value(small_shapes()).unwrap());
    let inputs: Vec<&[f32]> = (0..3).map(|i| table.row(i)).collect();
    let (status, answer) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": inputs}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["predictions"].as_array().unwrap().len(), 3);
    assert_eq!(
        answer["predictions"][0]["probabilities"]
            .as_object()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_cnn_specs_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"dataset": "regions", "model": {"kind": "cnn"}}),
            "dataset",
            "a CNN needs image_shape",
        ),
        (
            json!({"dataset": "digits", "model": {"kind": "cnn", "blocks": [{}, {}, {}, {}]}}),
            "model.blocks[3]",
            "leaves no pixels",
        ),
        (
            json!({"dataset": "digits", "model": {"kind": "cnn", "blocks": [{"kernel": 0}]}}),
            "model.blocks[0].kernel",
            "out of range",
        ),
        (
            json!({"dataset": "digits", "model": {"kind": "cnn", "head": {"width": 0}}}),
            "model.head.width",
            "out of range",
        ),
    ];
    for (spec, field, says) in cases {
        let (status, body) = app.post("/v1/jobs", spec.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spec}: {body}");
        assert_eq!(body["field"], field, "{body}");
        assert!(body.to_string().contains(says), "{body}");
    }
}
