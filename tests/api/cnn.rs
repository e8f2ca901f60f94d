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

    let table = data::shapes(&serde_json::from_value(small_shapes()).unwrap());
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

/// A row of a generated table (values in [0, 1], `C x H x W`) as a PNG of its own size.
pub fn png_of(row: &[f32], [c, h, w]: [usize; 3]) -> Vec<u8> {
    assert_eq!(c, 3);
    let mut rgb = image::RgbImage::new(w as u32, h as u32);
    for y in 0..h {
        for x in 0..w {
            let at = |ch: usize| (row[ch * h * w + y * w + x] * 255.0).round() as u8;
            rgb.put_pixel(x as u32, y as u32, image::Rgb([at(0), at(1), at(2)]));
        }
    }
    let mut bytes = Vec::new();
    rgb.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}

pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn probabilities(answer: &Value) -> Vec<f64> {
    answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let mut values: Vec<(String, f64)> = p["probabilities"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
                .collect();
            values.sort_by(|a, b| a.0.cmp(&b.0));
            values.into_iter().map(|(_, v)| v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cnn_predicts_from_base64_and_multipart_images_like_from_rows() {
    let app = TestApp::spawn().await;
    create_small_shapes(&app, "image-shapes").await;
    let id = app.submit(cnn_spec("image-shapes", 1)).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let path = format!("/v1/models/{id}/predict");

    let table = data::shapes(&serde_json::from_value(small_shapes()).unwrap());
    let pngs: Vec<Vec<u8>> = (0..2).map(|i| png_of(table.row(i), [3, 16, 16])).collect();
    let inputs: Vec<&[f32]> = (0..2).map(|i| table.row(i)).collect();
    let (_, from_rows) = app.post(&path, json!({"inputs": inputs})).await;
    let encoded: Vec<String> = pngs.iter().map(|p| base64(p)).collect();
    let (status, from_base64) = app.post(&path, json!({"images": encoded})).await;
    assert_eq!(status, StatusCode::OK, "{from_base64}");
    let form = pngs
        .iter()
        .fold(reqwest::multipart::Form::new(), |form, png| {
            form.part(
                "image",
                reqwest::multipart::Part::bytes(png.clone())
                    .file_name("x.png")
                    .mime_str("image/png")
                    .unwrap(),
            )
        });
    let response = app
        .client
        .post(app.url(&path))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, from_form) = crate::helpers::decode(response).await;
    assert_eq!(status, StatusCode::OK, "{from_form}");
    assert_eq!(probabilities(&from_base64), probabilities(&from_form));
    // 8-bit PNGs of the same pixels: equal up to the rounding of each value to 1/255.
    for (a, b) in probabilities(&from_rows)
        .iter()
        .zip(probabilities(&from_base64))
    {
        assert!((a - b).abs() < 0.02, "{from_rows} vs {from_base64}");
    }

    // Without a declared resize, an image of another size is refused with the size expected.
    let big = image::RgbImage::from_pixel(40, 30, image::Rgb([200, 10, 10]));
    let mut bytes = Vec::new();
    big.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    let (status, body) = app.post(&path, json!({"images": [base64(&bytes)]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "images[0]");
    assert!(body["error"].as_str().unwrap().contains("16x16"), "{body}");

    let (status, body) = app
        .post(
            &path,
            json!({"images": [base64(&pngs[0]), base64(b"not an image")]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "images[1]");
    let (status, body) = app.post(&path, json!({"images": ["%%%"]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "images[0]");
    let (status, body) = app
        .post(
            &path,
            json!({"images": [base64(&pngs[0])], "inputs": [table.row(0)]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cnn_killed_mid_training_resumes_bit_identically() {
    use crate::helpers::{ServerProcess, data_dir};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let mut spec = cnn_spec("resume-shapes", 12);
    spec["training"]["schedule"] = json!({"kind": "reduce_on_plateau", "metric": "train_eval_loss", "patience": 0, "factor": 0.7, "min_delta": 0.01});
    let mut server = ServerProcess::start(&data_dir(&dir)).await;
    create_small_shapes(&server, "resume-shapes").await;
    let id = server.submit(spec.clone()).await;
    server
        .wait_until(&id, Duration::from_secs(60), |job| {
            job["progress"]["epochs_done"].as_i64() >= Some(2)
        })
        .await;
    server.kill_hard();
    let server = ServerProcess::start(&data_dir(&dir)).await;
    let job = server.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 2, "{job}");

    let reference = TestApp::spawn().await;
    create_small_shapes(&reference, "resume-shapes").await;
    let reference_id = reference.submit(spec).await;
    reference.wait_for_end(&reference_id).await;
    let (_, resumed) = server.get(&format!("/v1/jobs/{id}/metrics")).await;
    let (_, straight) = reference
        .get(&format!("/v1/jobs/{reference_id}/metrics"))
        .await;
    let epochs = |m: &Value| m["epochs"].as_array().unwrap().clone();
    assert_eq!(epochs(&resumed).len(), 12);
    for (a, b) in epochs(&resumed).iter().zip(&epochs(&straight)) {
        for key in ["train_loss", "val_loss", "lr", "train_eval_acc"] {
            assert_eq!(a[key], b[key], "epoch {} {key}", a["epoch"]);
        }
    }
    let (_, resumed_steps) = server.get(&format!("/v1/jobs/{id}/steps")).await;
    let (_, straight_steps) = reference
        .get(&format!("/v1/jobs/{reference_id}/steps"))
        .await;
    assert_eq!(resumed_steps["points"], straight_steps["points"]);
}
