//! Image data sets over HTTP: archive uploads, the shapes generator, sample PNGs, and an MLP
//! trained on images.

use std::io::{Cursor, Write};

use image::{DynamicImage, ImageFormat, RgbImage};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use zip::write::SimpleFileOptions;

use crate::helpers::{Api, TestApp};

/// A `w x h` picture in `colour`, with a faint pattern so images differ.
fn picture(w: u32, h: u32, colour: [u8; 3], seed: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        let shade = ((x * 3 + y + seed) % 5) as u8 * 6;
        image::Rgb(colour.map(|c| c.saturating_add(shade)))
    }))
}

fn encoded(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

const COLOURS: [[u8; 3]; 3] = [[200, 30, 30], [30, 200, 30], [30, 30, 200]];

/// `per_class` 8x8 PNGs in each of `classes` folders under `prefix`.
fn class_pngs(prefix: &str, classes: &[&str], per_class: u32) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (c, class) in classes.iter().enumerate() {
        for i in 0..per_class {
            let image = picture(8, 8, COLOURS[c % 3], i);
            files.push((
                format!("{prefix}{class}/{i}.png"),
                encoded(&image, ImageFormat::Png),
            ));
        }
    }
    files
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in files {
        zip.start_file(name.as_str(), SimpleFileOptions::default())
            .unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn tar_gz_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn archive_form(name: &str, archive: Vec<u8>, file_name: &str) -> Form {
    Form::new().text("name", name.to_owned()).part(
        "archive",
        Part::bytes(archive)
            .file_name(file_name.to_owned())
            .mime_str("application/octet-stream")
            .unwrap(),
    )
}

async fn upload(app: &TestApp, form: Form) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/v1/datasets"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    crate::helpers::decode(response).await
}

/// GET a sample: the status, and the decoded image when it is a PNG.
pub async fn sample(app: &TestApp, path: &str) -> (StatusCode, Option<DynamicImage>) {
    let response = app.client.get(app.url(path)).send().await.unwrap();
    let status = response.status();
    let png = response
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "image/png");
    let bytes = response.bytes().await.unwrap();
    let image = png.then(|| image::load_from_memory_with_format(&bytes, ImageFormat::Png).unwrap());
    (status, image)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_of_class_folders_becomes_an_image_data_set_with_visible_samples() {
    let app = TestApp::spawn().await;
    let files = class_pngs("", &["red", "green", "blue"], 5);
    let (status, dataset) = upload(&app, archive_form("colours", zip_of(&files), "c.zip")).await;
    assert_eq!(status, StatusCode::CREATED, "{dataset}");
    assert_eq!(dataset["rows"], 15);
    assert_eq!(dataset["features"], 192);
    assert_eq!(dataset["image_shape"], json!([3, 8, 8]));
    assert_eq!(dataset["channels"], 3);
    assert_eq!(dataset["feature_names"], json!([]));
    assert_eq!(dataset["label_kind"], "string");
    assert_eq!(
        dataset["classes"],
        json!([{"label": "blue", "count": 5}, {"label": "green", "count": 5}, {"label": "red", "count": 5}])
    );
    assert_eq!(dataset["fixed_split"], Value::Null);
    let split = &dataset["default_split"];
    assert_eq!(
        split["train"].as_u64().unwrap()
            + split["val"].as_u64().unwrap()
            + split["test"].as_u64().unwrap(),
        15
    );
    let id = dataset["id"].as_str().unwrap();
    let (_, by_id) = app.get(&format!("/v1/datasets/{id}")).await;
    assert_eq!(by_id["image_shape"], json!([3, 8, 8]));

    // Row 0 is blue/0.png: scaled from 8x8 to 64x64, pixel (0, 0) unchanged.
    let (status, image) = sample(&app, "/v1/datasets/colours/samples/0.png").await;
    assert_eq!(status, StatusCode::OK);
    let image = image.unwrap().to_rgb8();
    assert_eq!(image.dimensions(), (64, 64));
    assert_eq!(image.get_pixel(0, 0).0, [30, 30, 200]);
    let (status, _) = sample(&app, &format!("/v1/datasets/{id}/samples/14.png")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = sample(&app, "/v1/datasets/colours/samples/15.png").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get("/v1/datasets/colours/samples/first.png").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "index");
    let (status, _) = app.get("/v1/datasets/colours/samples/0.jpg").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.get("/v1/datasets/nope/samples/0.png").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app.get("/v1/datasets/regions/samples/0.png").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no images"),
        "{body}"
    );
    let (status, digit) = sample(&app, "/v1/datasets/digits/samples/0.png").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(digit.unwrap().color(), image::ColorType::L8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_gz_with_its_own_split_and_mixed_sizes_is_resized_to_image_size() {
    let app = TestApp::spawn().await;
    let mut files = Vec::new();
    for (split, n) in [("train", 6u32), ("val", 2), ("test", 2)] {
        for (c, class) in ["cat", "dog"].iter().enumerate() {
            for i in 0..n {
                let size = 10 + i * 3;
                let image = picture(size, size + 2, COLOURS[c], i).grayscale();
                let format = if i % 2 == 0 {
                    ImageFormat::Png
                } else {
                    ImageFormat::Jpeg
                };
                let ext = if i % 2 == 0 { "png" } else { "jpg" };
                files.push((
                    format!("data/{split}/{class}/{i}.{ext}"),
                    encoded(&image, format),
                ));
            }
        }
    }
    let archive = tar_gz_of(&files);
    let (status, body) = upload(&app, archive_form("pets", archive.clone(), "p.tgz")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("image_size"),
        "{body}"
    );

    let form = archive_form("pets", archive, "p.tgz").text("image_size", "12");
    let (status, dataset) = upload(&app, form).await;
    assert_eq!(status, StatusCode::CREATED, "{dataset}");
    assert_eq!(dataset["image_shape"], json!([1, 12, 12]));
    assert_eq!(dataset["channels"], 1);
    assert_eq!(
        dataset["fixed_split"],
        json!({"train": 12, "val": 4, "test": 4})
    );
    assert_eq!(
        dataset["classes"],
        json!([{"label": "cat", "count": 10}, {"label": "dog", "count": 10}])
    );
    let (status, image) = sample(&app, "/v1/datasets/pets/samples/19.png").await;
    assert_eq!(status, StatusCode::OK);
    let image = image.unwrap();
    assert_eq!(
        (image.width(), image.height()),
        (72, 72),
        "12 px scaled by 6"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_archives_name_the_entry_and_leave_no_folder_and_no_row() {
    let app = TestApp::spawn().await;
    let good = class_pngs("", &["a", "b"], 5);
    let with = |name: &str, bytes: &[u8]| {
        let mut files = good.clone();
        files.push((name.to_owned(), bytes.to_vec()));
        zip_of(&files)
    };
    let cases: Vec<(Form, &str, &str)> = vec![
        (
            archive_form("bad", with("../../etc/evil.png", &good[0].1), "x.zip"),
            "archive",
            "../../etc/evil.png",
        ),
        (
            archive_form(
                "bad",
                with("b/broken.png", b"\x89PNG\r\n\x1a\nbroken"),
                "x.zip",
            ),
            "archive",
            "b/broken.png",
        ),
        (
            archive_form("bad", with("b/readme.txt", b"hi"), "x.zip"),
            "archive",
            "b/readme.txt",
        ),
        (
            archive_form("bad", zip_of(&good[..5]), "x.zip"),
            "archive",
            "one class",
        ),
        (
            archive_form("bad", b"not an archive".to_vec(), "x.zip"),
            "archive",
            "not a zip",
        ),
        (
            archive_form("bad", zip_of(&good), "x.zip").text("image_size", "0"),
            "image_size",
            "image size",
        ),
        (
            archive_form("bad", zip_of(&good), "x.zip").text("channels", "4"),
            "channels",
            "1 (grayscale)",
        ),
        (
            archive_form("bad", zip_of(&good), "x.zip").text("label_column", "y"),
            "label_column",
            "archive",
        ),
        (
            archive_form("bad/../x", zip_of(&good), "x.zip"),
            "name",
            "letters",
        ),
    ];
    for (form, field, expected) in cases {
        let (status, body) = upload(&app, form).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expected}: {body}"
        );
        assert_eq!(body["field"], field, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(expected),
            "{expected}: {body}"
        );
    }
    let (_, list) = app.get("/v1/datasets").await;
    assert_eq!(
        list["datasets"].as_array().unwrap().len(),
        3,
        "only the built-ins: {list}"
    );
    let entries: Vec<String> = std::fs::read_dir(app.dir.path().join("datasets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries.len(),
        3,
        "no folders or temporary files left: {entries:?}"
    );

    let (status, _) = upload(&app, archive_form("shapes", zip_of(&good), "x.zip")).await;
    assert_eq!(status, StatusCode::CONFLICT, "names are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mlp_trains_on_generated_shapes_and_predicts_from_flattened_images() {
    let app = TestApp::spawn().await;
    let (_, builtin) = app.get("/v1/datasets/shapes").await;
    assert_eq!(builtin["rows"], 1500);
    assert_eq!(builtin["image_shape"], json!([3, 32, 32]));
    assert_eq!(builtin["synthetic"]["kind"], "shapes");

    let params = json!({"kind": "shapes", "classes": 3, "samples": 300, "seed": 1});
    let (status, dataset) = app
        .post(
            "/v1/datasets",
            json!({"name": "few-shapes", "synthetic": params}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{dataset}");
    assert_eq!(dataset["rows"], 300);
    assert_eq!(dataset["features"], 3072);
    assert_eq!(
        dataset["classes"],
        json!([{"label": "circle", "count": 100}, {"label": "square", "count": 100}, {"label": "triangle", "count": 100}])
    );
    let (status, body) = app
        .post(
            "/v1/datasets",
            json!({"name": "x", "synthetic": {"kind": "shapes", "image_size": 8}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "synthetic.image_size");
    let (status, image) = sample(&app, "/v1/datasets/few-shapes/samples/2.png").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(image.unwrap().width(), 64);

    let spec = json!({"dataset": "few-shapes", "model": {"kind": "mlp", "depth": 1, "width": 32},
                      "training": {"epochs": 2, "batch_size": 32, "seed": 2}});
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // The same parameters give the same images: predict rows 0 to 2 (circle, square, triangle).
    let table = data::shapes(
        &serde_json::from_value(json!({"classes": 3, "samples": 300, "seed": 1})).unwrap(),
    );
    let inputs: Vec<&[f32]> = (0..3).map(|i| table.row(i)).collect();
    let (status, answer) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": inputs}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    for prediction in predictions {
        let label = prediction["label"].as_str().unwrap();
        assert!(
            ["circle", "square", "triangle"].contains(&label),
            "{prediction}"
        );
        assert_eq!(prediction["probabilities"].as_object().unwrap().len(), 3);
    }
}
