//! The pretrained backbones of candle-transformers over HTTP: small random ViT and ConvNeXt
//! weights, named as their public checkpoints name them, uploaded with `POST /v1/weights`,
//! linearly probed on generated shapes and served; misfits refused at submission.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

const TINY_VIT: &str = r#"{"kind": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}"#;
const CONVNEXT: &str = r#"{"kind": "convnext", "variant": "convnext_atto"}"#;

/// Uploads random weights for `model` with a ten-class head, as the example writes them.
async fn upload(app: &TestApp, name: &str, model: &Value) {
    let spec: engine::spec::ModelSpec = serde_json::from_value(model.clone()).unwrap();
    let tensors = engine::random_weights(&spec, 10, 0).unwrap();
    let bytes = safetensors::serialize(tensors, None).unwrap();
    let (status, body) = app
        .post_raw(
            &format!("/v1/weights?name={name}"),
            "application/octet-stream",
            bytes,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn probe(model: &Value, weights: &str) -> Value {
    json!({"dataset": "shapes-32", "model": model, "init": {"mode": "linear_probe", "from_weights": weights},
           "data": {"val_fraction": 0.25, "test_fraction": 0.0, "standardize": false},
           "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 2, "batch_size": 16, "seed": 1}})
}

async fn trained_layers(app: &TestApp, id: &str) -> Vec<String> {
    let (_, gradients) = app.get(&format!("/v1/jobs/{id}/gradients")).await;
    gradients["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploaded_vit_and_convnext_weights_are_linearly_probed_and_then_predict() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .post(
            "/v1/datasets",
            json!({"name": "shapes-32", "synthetic": {"kind": "shapes", "classes": 3, "samples": 90, "image_size": 32, "seed": 6}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let table = data::shapes(
        &serde_json::from_value(json!({"classes": 3, "samples": 90, "image_size": 32, "seed": 6}))
            .unwrap(),
    );
    let inputs: Vec<&[f32]> = (0..2).map(|i| table.row(i)).collect();

    for (model, weights, head) in [
        (TINY_VIT, "tiny-vit", "classifier"),
        (CONVNEXT, "convnext-atto", "head.fc"),
    ] {
        let model: Value = serde_json::from_str(model).unwrap();
        upload(&app, weights, &model).await;
        let id = app.submit(probe(&model, weights)).await;
        let done = app.wait_for_end(&id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(
            trained_layers(&app, &id).await,
            vec![format!("{head}.weight"), format!("{head}.bias")],
            "only the new head trains"
        );

        let (status, answer) = app
            .post(
                &format!("/v1/models/{id}/predict"),
                json!({"inputs": inputs}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let predictions = answer["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), 2);
        assert_eq!(
            predictions[0]["probabilities"].as_object().unwrap().len(),
            3,
            "{answer}"
        );
    }

    // Misfits are refused at submission, naming the field.
    let vit: Value = serde_json::from_str(TINY_VIT).unwrap();
    let convnext: Value = serde_json::from_str(CONVNEXT).unwrap();
    let (status, body) = app.post("/v1/jobs", probe(&vit, "convnext-atto")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "init.from_weights");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("missing tensors: vit.embeddings.cls_token"),
        "{body}"
    );
    let mut scratch = probe(&convnext, "convnext-atto");
    scratch["init"] = json!({"mode": "scratch"});
    let (status, body) = app.post("/v1/jobs", scratch).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "init.mode");
    let mut wrong_size = probe(&vit, "tiny-vit");
    wrong_size["model"]["image_size"] = json!(64);
    let (status, body) = app.post("/v1/jobs", wrong_size).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "model.image_size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vit_and_convnext_weights_serve_as_imported_models_with_their_own_heads() {
    let app = TestApp::spawn().await;
    let labels: Vec<String> = (0..10).map(|i| format!("class-{i}")).collect();
    let image: Vec<f64> = (0..3 * 32 * 32).map(|i| f64::from(i % 7) / 7.0).collect();
    for (model, weights) in [(TINY_VIT, "tiny-vit"), (CONVNEXT, "convnext-atto")] {
        let model: Value = serde_json::from_str(model).unwrap();
        upload(&app, weights, &model).await;
        let (status, version) = app
            .post(
                "/v1/models",
                json!({"name": weights, "model": model, "weights": weights, "labels": labels,
                       "input": {"image": {"shape": [3, 32, 32], "normalize": "imagenet"}}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{version}");
        assert_eq!(version["ready"], true);
        let (status, answer) = app
            .post(
                &format!("/v1/models/{weights}/predict"),
                json!({"inputs": [image.clone()], "logits": true}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let prediction = &answer["predictions"][0];
        assert_eq!(prediction["probabilities"].as_object().unwrap().len(), 10);
        assert!(
            prediction["logits"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| v.as_f64().unwrap().is_finite()),
            "{prediction}"
        );
    }
    // Weights of one backbone do not make another: a 422 listing what is missing.
    let (status, body) = app
        .post(
            "/v1/models",
            json!({"name": "mixed", "model": serde_json::from_str::<Value>(TINY_VIT).unwrap(),
                   "weights": "convnext-atto", "labels": labels,
                   "input": {"image": {"shape": [3, 32, 32]}}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "weights");
    assert!(
        body["error"].as_str().unwrap().contains("vit.embeddings"),
        "{body}"
    );
}
