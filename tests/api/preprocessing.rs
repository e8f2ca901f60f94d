//! Image preprocessing declared in the spec: training with it, prediction through exactly the
//! same steps (from images of any size and from raw rows), seeded augmentation, refusals naming
//! the field, and one pixel scale for `digits` across training, samples and prediction.

use image::imageops::FilterType;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cnn::{base64, create_small_shapes, probabilities, small_shapes};
use crate::helpers::{Api, TestApp};
use crate::images::sample;

/// A small CNN on the 16×16 shapes, resized to 20×20 and randomly cropped back to 16×16.
fn augmented_spec(dataset: &str, flip: f64, seed: u64) -> Value {
    json!({
        "dataset": dataset,
        "data": {"preprocessing": {
            "resize": 20,
            "crop": {"kind": "random", "size": 16, "padding": 2},
            "horizontal_flip": flip,
            "normalize": "dataset"
        }},
        "model": {"kind": "cnn", "blocks": [{"channels": 8}, {"channels": 8}], "head": {"depth": 0}},
        "training": {"optimizer": {"kind": "adam", "lr": 0.003}, "epochs": 2, "batch_size": 32, "seed": seed}
    })
}

fn png(image: &image::DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

async fn metrics(app: &TestApp, id: &str) -> Vec<Value> {
    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    metrics["epochs"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cnn_with_declared_preprocessing_predicts_an_image_of_any_size_like_its_resized_pixels() {
    // Arrange
    let app = TestApp::spawn().await;
    create_small_shapes(&app, "prep-shapes").await;
    let id = app.submit(augmented_spec("prep-shapes", 0.5, 5)).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let fitted = &job["image_preprocessing"];
    assert_eq!(fitted["input_shape"], json!([3, 16, 16]), "{job}");
    assert_eq!(fitted["output_shape"], json!([3, 16, 16]));
    assert_eq!(fitted["resize"], json!([20, 20]));
    let (mean, std) = (
        fitted["mean"].as_array().unwrap(),
        fitted["std"].as_array().unwrap(),
    );
    assert_eq!((mean.len(), std.len()), (3, 3));
    assert!(
        mean.iter()
            .all(|m| (0.0..1.0).contains(&m.as_f64().unwrap())),
        "{fitted}"
    );
    assert!(std.iter().all(|s| s.as_f64().unwrap() > 0.0), "{fitted}");

    // Act: a 40×30 picture, and the same picture resized to the data set's 16×16 as a raw row.
    let picture = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([
            (x * 6) as u8,
            (y * 8) as u8,
            if (x / 8 + y / 8) % 2 == 0 { 230 } else { 20 },
        ])
    }));
    let small = picture.resize_exact(16, 16, FilterType::Triangle).to_rgb8();
    let row: Vec<f32> = (0..3)
        .flat_map(|c| small.pixels().map(move |p| f32::from(p.0[c]) / 255.0))
        .collect();
    let path = format!("/v1/models/{id}/predict");
    let (status, from_image) = app
        .post(&path, json!({"images": [base64(&png(&picture))]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{from_image}");
    let (status, from_row) = app.post(&path, json!({"inputs": [row]})).await;
    assert_eq!(status, StatusCode::OK, "{from_row}");

    // Assert
    assert_eq!(probabilities(&from_image), probabilities(&from_row));
    let table = data::shapes(&serde_json::from_value(small_shapes()).unwrap());
    let (status, body) = app
        .post(&path, json!({"inputs": [&table.row(0)[..10]]}))
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "raw rows keep the data set's size: {body}"
    );
    assert!(body["error"].as_str().unwrap().contains("768"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn augmentation_is_reproducible_for_a_seed_and_changes_what_is_trained() {
    let app = TestApp::spawn().await;
    create_small_shapes(&app, "aug-shapes").await;
    let first = app.submit(augmented_spec("aug-shapes", 0.5, 11)).await;
    let again = app.submit(augmented_spec("aug-shapes", 0.5, 11)).await;
    let no_flip = app.submit(augmented_spec("aug-shapes", 0.0, 11)).await;
    for id in [&first, &again, &no_flip] {
        let job = app.wait_for_end(id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
    let (first, again, no_flip) = (
        metrics(&app, &first).await,
        metrics(&app, &again).await,
        metrics(&app, &no_flip).await,
    );
    for (a, b) in first.iter().zip(&again) {
        for key in ["train_loss", "train_eval_loss", "val_loss", "val_acc"] {
            assert_eq!(a[key], b[key], "epoch {} {key}", a["epoch"]);
        }
    }
    assert_ne!(
        first[0]["train_loss"], no_flip[0]["train_loss"],
        "flipping changes the training batches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_preprocessing_specs_are_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let cnn = json!({"kind": "cnn", "blocks": [{"channels": 4}, {"channels": 4}]});
    let cases = [
        (
            "regions",
            json!({}),
            json!({"kind": "mlp"}),
            "data.preprocessing",
            "no images",
        ),
        (
            "digits",
            json!({"resize": 0}),
            cnn.clone(),
            "data.preprocessing.resize",
            "1 to 1024",
        ),
        (
            "digits",
            json!({"resize": [8, 8, 8]}),
            cnn.clone(),
            "data.preprocessing.resize",
            "",
        ),
        (
            "digits",
            json!({"crop": {"kind": "center", "size": 9}}),
            cnn.clone(),
            "data.preprocessing.crop.size",
            "larger than the 8x8",
        ),
        (
            "digits",
            json!({"resize": 6, "crop": {"kind": "random", "size": 7, "padding": 4}}),
            cnn.clone(),
            "data.preprocessing.crop.size",
            "after resize",
        ),
        (
            "digits",
            json!({"crop": {"kind": "center", "size": 4, "padding": 2}}),
            cnn.clone(),
            "data.preprocessing.crop.padding",
            "random crops only",
        ),
        (
            "digits",
            json!({"crop": {"kind": "diagonal", "size": 4}}),
            cnn.clone(),
            "data.preprocessing.crop.kind",
            "center",
        ),
        (
            "digits",
            json!({"normalize": "zca"}),
            cnn.clone(),
            "data.preprocessing.normalize",
            "imagenet",
        ),
        (
            "digits",
            json!({"normalize": "imagenet"}),
            cnn.clone(),
            "data.preprocessing.normalize",
            "grayscale_to_rgb",
        ),
        (
            "digits",
            json!({"horizontal_flip": 2}),
            cnn.clone(),
            "data.preprocessing.horizontal_flip",
            "probability",
        ),
        (
            "shapes",
            json!({"grayscale_to_rgb": true}),
            cnn.clone(),
            "data.preprocessing.grayscale_to_rgb",
            "already have 3 channels",
        ),
        (
            "digits",
            json!({"crop": {"kind": "center", "size": 2}}),
            cnn.clone(),
            "model.blocks[1]",
            "leaves no pixels",
        ),
    ];
    for (dataset, preprocessing, model, field, says) in cases {
        let spec =
            json!({"dataset": dataset, "data": {"preprocessing": preprocessing}, "model": model});
        let (status, body) = app.post("/v1/jobs", spec.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{spec}: {body}");
        assert_eq!(body["field"], field, "{spec}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{spec}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digits_cnn_predicts_the_png_sample_of_a_digit_like_its_raw_row() {
    // Arrange: a CNN on digits (pixels 0 to 16) without declared preprocessing.
    let app = TestApp::spawn().await;
    let id = app
        .submit(json!({
            "dataset": "digits",
            "model": {"kind": "cnn", "blocks": [{"channels": 8}], "head": {"depth": 0}},
            "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 2, "batch_size": 64, "seed": 3}
        }))
        .await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let table = data::digits();
    let rows: Vec<usize> = (1700..1710).collect();
    let (_, summary) = app.get("/v1/datasets/digits").await;
    assert_eq!(summary["pixel_max"], 16.0, "{summary}");

    // Act: each digit's sample PNG (drawn 8× larger) shrunk back to 8×8 by taking every 8th pixel.
    let mut pngs = Vec::new();
    for &i in &rows {
        let (status, drawn) = sample(&app, &format!("/v1/datasets/digits/samples/{i}.png")).await;
        assert_eq!(status, StatusCode::OK);
        let drawn = drawn.unwrap().to_luma8();
        let digit = image::GrayImage::from_fn(8, 8, |x, y| *drawn.get_pixel(8 * x, 8 * y));
        for (p, &v) in digit.pixels().zip(table.row(i)) {
            assert_eq!(
                p.0[0],
                (v / 16.0 * 255.0).round() as u8,
                "16 is white, 0 black"
            );
        }
        pngs.push(base64(&png(&image::DynamicImage::ImageLuma8(digit))));
    }
    let path = format!("/v1/models/{id}/predict");
    let (status, from_pngs) = app.post(&path, json!({"images": pngs})).await;
    assert_eq!(status, StatusCode::OK, "{from_pngs}");
    let inputs: Vec<&[f32]> = rows.iter().map(|&i| table.row(i)).collect();
    let (_, from_rows) = app.post(&path, json!({"inputs": inputs})).await;

    // Assert: the same labels, and probabilities equal up to the PNG's 8-bit rounding.
    let labels = |answer: &Value| -> Vec<Value> {
        answer["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["label"].clone())
            .collect()
    };
    assert_eq!(labels(&from_pngs), labels(&from_rows));
    for (a, b) in probabilities(&from_pngs)
        .iter()
        .zip(probabilities(&from_rows))
    {
        assert!((a - b).abs() < 0.05, "{from_pngs} vs {from_rows}");
    }
}
