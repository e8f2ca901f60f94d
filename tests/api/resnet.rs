//! ResNets over HTTP: torchvision-named safetensors weights uploaded with `POST /v1/weights`,
//! fine-tuned and linearly probed on generated shapes, served; weights that do not fit, files
//! that are not safetensors, and bad ResNet specs refused with the field at fault.

#[path = "../common/resnet_formula.rs"]
pub(crate) mod resnet_formula;

use reqwest::StatusCode;
use serde_json::{Value, json};
use trainserve::domain::{ResNetDepth, ResNetSpec, Stem};

use crate::helpers::{Api, TestApp};

/// A torchvision ResNet-18 state dict for 10 classes, narrowed to width 8 to keep tests fast.
fn narrow_resnet18() -> Vec<(String, candle_core::Tensor)> {
    let spec = ResNetSpec {
        width: 8,
        stem: Stem::Imagenet,
    };
    resnet_formula::state_dict(ResNetDepth::R18, &spec, 3, 10)
}

async fn upload(app: &TestApp, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    app.post_raw(
        &format!("/v1/weights?name={name}"),
        "application/octet-stream",
        bytes,
    )
    .await
}

async fn two_shapes(app: &TestApp) {
    let (status, body) = app
        .post(
            "/v1/datasets",
            json!({"name": "two-shapes", "synthetic": {"kind": "shapes", "classes": 2, "samples": 24, "image_size": 16, "seed": 4}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn job(init: Value, epochs: u32) -> Value {
    json!({"dataset": "two-shapes", "model": {"kind": "resnet18", "width": 8}, "init": init,
           "data": {"val_fraction": 0.25, "test_fraction": 0.0},
           "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": epochs, "batch_size": 9, "seed": 2}})
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
async fn uploaded_torchvision_weights_fine_tune_and_probe_a_resnet18_that_then_predicts() {
    // Arrange
    let app = TestApp::spawn().await;
    two_shapes(&app).await;
    let bytes = resnet_formula::safetensors_bytes(&narrow_resnet18());

    // Act: upload, then look the upload up by name and in the list.
    let (status, weights) = upload(&app, "tiny-resnet18", bytes.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{weights}");
    assert_eq!(
        weights["tensor_count"], 122,
        "102 tensors and 20 num_batches_tracked"
    );
    assert_eq!(weights["bytes"], bytes.len());
    assert_eq!(weights["sha256"], engine::checkpoint::sha256_hex(&bytes));
    let id = weights["id"].as_str().unwrap().to_string();
    let (status, by_name) = app.get("/v1/weights/tiny-resnet18").await;
    assert_eq!(
        (status, by_name["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    let (_, list) = app.get("/v1/weights").await;
    assert_eq!(list["weights"].as_array().unwrap().len(), 1);

    // Fine-tuning: a two-class head replaces the ten-class fc; everything trains.
    let fine = app
        .submit(job(
            json!({"mode": "fine_tune", "from_weights": id, "backbone_lr_scale": 0.1}),
            2,
        ))
        .await;
    let done = app.wait_for_end(&fine).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["name"], "two-shapes-resnet18-w8");
    let (_, metrics) = app.get(&format!("/v1/jobs/{fine}/metrics")).await;
    assert_eq!(metrics["epochs"].as_array().unwrap().len(), 2);
    let layers = trained_layers(&app, &fine).await;
    for name in [
        "conv1.weight",
        "bn1.weight",
        "layer2.0.downsample.0.weight",
        "fc.weight",
    ] {
        assert!(layers.contains(&name.to_string()), "{name} in {layers:?}");
    }
    let table = data::shapes(
        &serde_json::from_value(json!({"classes": 2, "samples": 24, "image_size": 16, "seed": 4}))
            .unwrap(),
    );
    let inputs: Vec<&[f32]> = (0..2).map(|i| table.row(i)).collect();
    let (status, answer) = app
        .post(
            &format!("/v1/models/{fine}/predict"),
            json!({"inputs": inputs}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["predictions"][0]["probabilities"]
            .as_object()
            .unwrap()
            .len(),
        2
    );

    // Linear probing: only fc trains.
    let probe = app
        .submit(job(
            json!({"mode": "linear_probe", "from_weights": "tiny-resnet18"}),
            1,
        ))
        .await;
    let done = app.wait_for_end(&probe).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        trained_layers(&app, &probe).await,
        vec!["fc.weight", "fc.bias"]
    );

    // Another ResNet job's checkpoint is a source too.
    let from_job = app
        .submit(job(json!({"mode": "linear_probe", "from_job": fine}), 1))
        .await;
    let done = app.wait_for_end(&from_job).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // Deleting the upload removes its row and file.
    let response = app
        .client
        .delete(app.url(&format!("/v1/weights/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = app.get(&format!("/v1/weights/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let stored = std::fs::read_dir(app.dir.path().join("weights"))
        .unwrap()
        .count();
    assert_eq!(stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_that_do_not_fit_or_are_not_safetensors_are_refused() {
    let app = TestApp::spawn().await;
    two_shapes(&app).await;

    // A truncated state dict with one tensor of the wrong shape: every problem is listed.
    let mut state = narrow_resnet18();
    state.retain(|(name, _)| name != "layer4.1.conv2.weight" && name != "layer3.0.bn1.running_var");
    for (name, tensor) in state.iter_mut() {
        if name == "layer1.0.conv1.weight" {
            *tensor = candle_core::Tensor::zeros(
                (8, 8, 1, 1),
                candle_core::DType::F32,
                &candle_core::Device::Cpu,
            )
            .unwrap();
        }
    }
    let (status, body) = upload(&app, "truncated", resnet_formula::safetensors_bytes(&state)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            "/v1/jobs",
            job(json!({"mode": "fine_tune", "from_weights": "truncated"}), 1),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "init.from_weights");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("missing tensors: layer3.0.bn1.running_var, layer4.1.conv2.weight"),
        "{message}"
    );
    assert!(
        message.contains("layer1.0.conv1.weight has shape [8, 8, 1, 1], expected [8, 8, 3, 3]"),
        "{message}"
    );

    // The same weights for a wider network, and for a ResNet-34: the shapes and blocks differ.
    let mut wider = job(
        json!({"mode": "linear_probe", "from_weights": "truncated"}),
        1,
    );
    wider["model"] = json!({"kind": "resnet34", "width": 8});
    let (status, body) = app.post("/v1/jobs", wider).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("layer3.5.conv1.weight"),
        "{body}"
    );

    // Not safetensors: a pickle, a cut-off file; nothing is left behind.
    let (status, body) = upload(&app, "pickled", b"\x80\x04\x95\x10\x00\x00\x00".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "file");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a safetensors file"),
        "{body}"
    );
    let full = resnet_formula::safetensors_bytes(&narrow_resnet18());
    let (status, body) = upload(&app, "cut", full[..full.len() / 2].to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let stored = std::fs::read_dir(app.dir.path().join("weights"))
        .unwrap()
        .count();
    assert_eq!(stored, 1, "only the accepted upload is stored");

    // Wrong content type, no name, a taken name.
    let (status, _) = app
        .post_raw("/v1/weights?name=x", "application/json", "{}")
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = app
        .post_raw("/v1/weights", "application/octet-stream", full.clone())
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("name"))
    );
    let (status, _) = upload(&app, "truncated", full).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Specs: two sources, an unknown upload, a ResNet without images, an impossible width.
    let cases = [
        (
            job(
                json!({"mode": "fine_tune", "from_weights": "truncated", "from_job": "x"}),
                1,
            ),
            "init.from_weights",
        ),
        (
            job(json!({"mode": "fine_tune", "from_weights": "nope"}), 1),
            "init.from_weights",
        ),
        (
            json!({"dataset": "regions", "model": {"kind": "resnet18"}}),
            "dataset",
        ),
        (
            json!({"dataset": "two-shapes", "model": {"kind": "resnet34", "width": 0}}),
            "model.width",
        ),
        (
            json!({"dataset": "two-shapes", "model": {"kind": "resnet18", "stem": "huge"}}),
            "model",
        ),
    ];
    for (spec, field) in cases {
        let (status, body) = app.post("/v1/jobs", spec.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spec}: {body}");
        assert!(
            body["field"].as_str().unwrap_or("").starts_with(field),
            "{spec}: {body}"
        );
    }
}
