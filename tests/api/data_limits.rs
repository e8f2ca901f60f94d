//! Data sets within bounds: uploads streamed to disk and cleaned up, generators and imports
//! refused past the size limit, names that cannot mislead, and crash debris removed at start-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{Api, ServerProcess, TestApp, data_dir, decode};

async fn upload(app: &TestApp, form: Form) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/v1/datasets"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    decode(response).await
}

/// `rows` rows of two features and a label cycling through three classes.
fn csv(rows: usize) -> String {
    let mut text = String::from("x,y,label\n");
    for i in 0..rows {
        text.push_str(&format!(
            "{}.25,{},{}\n",
            i % 17,
            i % 5,
            ["a", "b", "c"][i % 3]
        ));
    }
    text
}

fn csv_form(name: &str, text: String) -> Form {
    Form::new()
        .text("name", name.to_owned())
        .text("label_column", "label")
        .part("file", Part::text(text).file_name("data.csv"))
}

/// Hidden temporary files and folders left in the data-set folder.
fn temporaries(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("datasets"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_upload_streams_to_disk_and_leaves_no_temporary_file_whether_kept_or_refused() {
    let app = TestApp::spawn_with(|config| config.max_upload_bytes = 256 * 1024).await;

    // About 150 KB: kept, and its temporary file gone.
    let (status, body) = upload(&app, csv_form("streamed", csv(10_000))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["rows"], 10_000);
    assert_eq!(temporaries(app.dir.path()), Vec::<PathBuf>::new());

    // Refused as a CSV (a bad value on line 3): nothing left either.
    let broken = csv(20).replacen("1.25", "oops", 1);
    let (status, body) = upload(&app, csv_form("broken", broken)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "file");
    assert_eq!(temporaries(app.dir.path()), Vec::<PathBuf>::new());

    // Over the upload limit: refused part way through, nothing left.
    let (status, body) = upload(&app, csv_form("too-big", csv(30_000))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(temporaries(app.dir.path()), Vec::<PathBuf>::new());
    let (status, _) = app.get("/v1/datasets/too-big").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_past_the_data_set_size_limit_is_a_422_naming_the_part_and_the_limit() {
    // 12 bytes a row (two features and a label at 4 bytes each): 1,000 rows fit, 1,001 do not.
    let app = TestApp::spawn_with(|config| config.max_dataset_bytes = 12_000).await;
    let (status, body) = upload(&app, csv_form("fits", csv(1_000))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = upload(&app, csv_form("too-many", csv(1_001))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "file");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("12000 bytes"), "{message}");
    assert_eq!(temporaries(app.dir.path()), Vec::<PathBuf>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_request_for_two_gigabytes_of_shapes_is_a_422_naming_samples_and_the_limit() {
    let app = TestApp::spawn().await;
    let before = std::fs::read_dir(app.dir.path().join("datasets"))
        .unwrap()
        .count();
    let request = json!({"name": "huge", "synthetic": {"kind": "shapes", "samples": 43690, "image_size": 64}});
    assert!(request.to_string().len() < 110);
    let (status, body) = app.post("/v1/datasets", request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "synthetic.samples");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("1073741824 bytes") && message.contains("21843 rows"),
        "{message}"
    );
    let after = std::fs::read_dir(app.dir.path().join("datasets"))
        .unwrap()
        .count();
    assert_eq!(before, after, "nothing was written");

    // Within the limit, the same generator still works.
    let request =
        json!({"name": "fine", "synthetic": {"kind": "shapes", "samples": 40, "image_size": 16}});
    let (status, body) = app.post("/v1/datasets", request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_set_names_dot_dot_dot_and_bidi_overrides_are_a_422_naming_name() {
    let app = TestApp::spawn().await;
    for name in [".", "..", "report\u{202E}fdp.exe"] {
        let request = json!({"name": name, "synthetic": {"kind": "regions"}});
        let (status, body) = app.post("/v1/datasets", request).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}: {body}");
        assert_eq!(body["field"], "name", "{body}");
        let (status, body) = upload(&app, csv_form(name, csv(30))).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}: {body}");
        assert_eq!(body["field"], "name", "{body}");
    }
}

/// The size of every file under `path`.
fn bytes_under(path: &Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).unwrap().len();
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|entry| bytes_under(&entry.unwrap().path()))
        .sum()
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_crash_debris_and_keeps_every_data_set_and_checkpoint() {
    // Arrange: a real data set and a finished job with a checkpoint, then the debris of
    // crashes: an upload's temporary file, a half-written data-set folder, a complete data-set
    // folder whose row was never inserted, and a checkpoint write cut short.
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir(&dir);
    let mut server = ServerProcess::start(&data).await;
    let form = csv_form("kept", csv(60));
    let response = server
        .client
        .post(format!("{}/v1/datasets", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, dataset) = decode(response).await;
    assert_eq!(status, StatusCode::CREATED, "{dataset}");
    let dataset_id = dataset["id"].as_str().unwrap().to_owned();
    let job = server
        .submit(json!({
            "dataset": "kept",
            "model": {"kind": "mlp", "depth": 1, "width": 8},
            "training": {"epochs": 1, "batch_size": 16, "seed": 1}
        }))
        .await;
    let finished = server.wait_for_end(&job).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    server.terminate(Duration::from_secs(30));

    let datasets = data.join("datasets");
    let kept = datasets.join(&dataset_id);
    let checkpoints = data.join("checkpoints").join(&job);
    let checkpoint_files: Vec<PathBuf> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!checkpoint_files.is_empty());
    let upload_tmp = datasets.join(".upload-0b7e.tmp");
    std::fs::write(&upload_tmp, csv(100)).unwrap();
    let half_written = datasets.join(format!(".{}.tmp-4242-17", uuid::Uuid::now_v7()));
    copy_folder(&kept, &half_written);
    let orphan = datasets.join(uuid::Uuid::now_v7().to_string());
    copy_folder(&kept, &orphan);
    let checkpoint_tmp = checkpoints.join("000002.tmp");
    std::fs::write(&checkpoint_tmp, vec![7u8; 4096]).unwrap();
    let kept_bytes = bytes_under(&kept);

    // Act
    let server = ServerProcess::start(&data).await;

    // Assert: the debris is gone; everything a row points at is intact and usable.
    for debris in [&upload_tmp, &half_written, &orphan, &checkpoint_tmp] {
        assert!(!debris.exists(), "{} was left", debris.display());
    }
    assert_eq!(bytes_under(&kept), kept_bytes);
    for file in &checkpoint_files {
        assert!(file.exists(), "{} was removed", file.display());
    }
    let (status, body) = server.get("/v1/datasets/kept").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.get(&format!("/v1/jobs/{job}/checkpoints")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let again = server
        .submit(json!({
            "dataset": "kept",
            "model": {"kind": "mlp", "depth": 1, "width": 8},
            "training": {"epochs": 1, "batch_size": 16, "seed": 2}
        }))
        .await;
    let finished = server.wait_for_end(&again).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
}
