//! The Open Inference Protocol (KServe v2) over REST: metadata, readiness and inference with
//! JSON and binary tensors give `/v1`'s answers, errors name the input, and the protocol's
//! own Python client (tritonclient[http]) works unchanged.
//!
//! `.ci/run` installs tritonclient into `.venv-ci` and exports `TRITONCLIENT_PYTHON` with the
//! path of that environment's Python. Under `CI=true` a missing one fails the tritonclient
//! test; elsewhere it is skipped with a line saying how to install it.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, decode, digit_rows, digits_spec};

/// A service with a digits MLP registered as `digits`.
async fn digits_model() -> TestApp {
    let app = TestApp::spawn().await;
    let job = app.submit(digits_spec(2, 64)).await;
    assert_eq!(app.wait_for_end(&job).await["status"], "succeeded");
    let (status, body) = app
        .post("/v1/models", json!({"name": "digits", "from_job": job}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app
}

fn flat(rows: &[Vec<f64>]) -> Vec<f64> {
    rows.iter().flatten().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_metadata_readiness_and_inference_answer_as_v1_does() {
    let app = digits_model().await;
    let (status, server) = app.get("/v2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server["name"], "trainserve");
    assert_eq!(app.get("/v2/health/live").await.0, StatusCode::OK);
    assert_eq!(app.get("/v2/health/ready").await.0, StatusCode::OK);
    let (status, metadata) = app.get("/v2/models/digits").await;
    assert_eq!(status, StatusCode::OK, "{metadata}");
    assert_eq!(metadata["versions"], json!(["1"]));
    // digits is a data set of 1x8x8 images; rows of 64 values are taken as well.
    assert_eq!(
        metadata["inputs"][0],
        json!({"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]})
    );
    assert_eq!(metadata["outputs"][0]["shape"], json!([-1, 10]));
    let (status, ready) = app.get("/v2/models/digits/versions/1/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["ready"], true);

    let rows = digit_rows(3);
    let (_, v1) = app
        .post(
            "/v1/models/digits/predict",
            json!({"inputs": rows, "logits": true}),
        )
        .await;
    let (status, v2) = app
        .post(
            "/v2/models/digits/infer",
            json!({"id": "r1", "inputs": [{"name": "input", "shape": [3, 64], "datatype": "FP32", "data": flat(&rows)}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(v2["id"], "r1");
    assert_eq!(v2["model_name"], "digits");
    assert_eq!(v2["model_version"], "1");
    let outputs = v2["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["probabilities", "logits", "label"]);
    assert_eq!(outputs[0]["shape"], json!([3, 10]));
    let labels: Vec<String> = v1["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["label"].to_string())
        .collect();
    assert_eq!(outputs[2]["data"], json!(labels));
    let first_logits: Vec<f64> = outputs[1]["data"].as_array().unwrap()[..10]
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let v1_logits: Vec<f64> = v1["predictions"][0]["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(first_logits, v1_logits);

    // The binary tensor extension: a JSON header, then the raw little-endian floats.
    let header = json!({"inputs": [{"name": "input", "shape": [3, 64], "datatype": "FP32", "parameters": {"binary_data_size": 3 * 64 * 4}}],
                        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]});
    let mut body = serde_json::to_vec(&header).unwrap();
    let header_length = body.len();
    for v in flat(&rows) {
        body.extend((v as f32).to_le_bytes());
    }
    let response = app
        .http()
        .post(app.url("/v2/models/digits/versions/1/infer"))
        .header("inference-header-content-length", header_length)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let json_length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let answer: Value = serde_json::from_slice(&bytes[..json_length]).unwrap();
    assert_eq!(
        answer["outputs"][0]["parameters"]["binary_data_size"],
        3 * 10 * 4
    );
    let probabilities: Vec<f32> = bytes[json_length..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let v1_first: Vec<f64> = (0..10)
        .map(|i| {
            v1["predictions"][0]["probabilities"][i.to_string()]
                .as_f64()
                .unwrap()
        })
        .collect();
    for (a, b) in probabilities[..10].iter().zip(&v1_first) {
        assert!((f64::from(*a) - b).abs() < 1e-6, "{a} vs {b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_refuses_unknown_models_and_wrong_inputs_naming_them() {
    let app = digits_model().await;
    let infer = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]});
    let cases = [
        (
            "/v2/models/digits/infer",
            infer(json!([1, 3]), "FP32", json!([1, 2, 3])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "inputs[0].shape",
        ),
        (
            "/v2/models/digits/infer",
            infer(json!([1, 64]), "INT8", json!(vec![0; 64])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "inputs[0].datatype",
        ),
        (
            "/v2/models/digits/infer",
            infer(json!([2, 64]), "FP32", json!(vec![0; 64])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "inputs[0].data",
        ),
        (
            "/v2/models/digits/infer",
            json!({"inputs": [{"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": vec![0; 64]}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "inputs[0].name",
        ),
        (
            "/v2/models/nothing/infer",
            infer(json!([1, 64]), "FP32", json!(vec![0; 64])),
            StatusCode::NOT_FOUND,
            "",
        ),
        (
            "/v2/models/digits/versions/4/infer",
            infer(json!([1, 64]), "FP32", json!(vec![0; 64])),
            StatusCode::NOT_FOUND,
            "",
        ),
    ];
    for (path, body, status, field) in cases {
        let (got, answer) = app.post(path, body.clone()).await;
        assert_eq!(got, status, "{path} {body} -> {answer}");
        assert!(answer["error"].is_string(), "{answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{answer}");
        }
    }
    let (status, answer) = app.get("/v2/models/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("nothing"));
}

fn tritonclient_python() -> Option<PathBuf> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let found = std::env::var_os("TRITONCLIENT_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-ci/bin/python");
            local.exists().then_some(local)
        })
        .filter(|python| {
            std::process::Command::new(python)
                .args(["-c", "import tritonclient.http"])
                .output()
                .is_ok_and(|out| out.status.success())
        });
    match found {
        Some(python) => Some(python),
        None if ci => panic!(
            "CI=true but no Python with tritonclient[http]: .ci/run installs it into .venv-ci and \
             exports TRITONCLIENT_PYTHON (TRITONCLIENT_PYTHON={:?})",
            std::env::var_os("TRITONCLIENT_PYTHON")
        ),
        None => {
            println!(
                "skipped: tritonclient is not installed; run `.venv-ci/bin/pip install \
                 'tritonclient[http]==2.59.0'` (or .ci/run), or set TRITONCLIENT_PYTHON"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocols_own_python_client_works_unchanged() {
    let Some(python) = tritonclient_python() else {
        return;
    };
    // A team trains and registers with one token; another service predicts with another.
    let app = TestApp::spawn().await;
    let trainer = app.token(&["train"], Some("team")).await;
    let token = app.token(&["predict"], Some("team")).await;
    let job = trainer.submit(digits_spec(2, 64)).await;
    assert_eq!(trainer.wait_for_end(&job).await["status"], "succeeded");
    let (status, body) = trainer
        .post("/v1/models", json!({"name": "digits", "from_job": job}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rows = digit_rows(4);
    let (status, v1) = decode(
        token
            .client
            .post(app.url("/v1/models/digits/predict"))
            .json(&json!({"inputs": rows}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    let predictions = v1["predictions"].as_array().unwrap();
    let expected = json!({
        "rows": rows,
        "probabilities": predictions.iter().map(|p| (0..10).map(|i| p["probabilities"][i.to_string()].clone()).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "labels": predictions.iter().map(|p| p["label"].clone()).collect::<Vec<_>>(),
    });
    let file = app.dir.path().join("expected.json");
    std::fs::write(&file, expected.to_string()).unwrap();
    let output = tokio::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/oip/tritonclient_check.py"
        ))
        .arg(&app.base)
        .arg("digits")
        .arg(&file)
        .arg(&token.token)
        .output()
        .await
        .expect("the tritonclient check runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tritonclient failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["checked"], json!(["binary", "json"]));
}
