//! Query and validation gaps found by a hostile user (issue 13, defect 8): each request here
//! was a 500 or a silent 2xx before, and is a 422 naming the field now.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn assert_invalid(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], field, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_where_past_the_clause_limit_or_with_unread_text_is_a_422_on_where() {
    let app = TestApp::spawn().await;
    // 992 clauses went past SQLite's expression depth: a 500.
    let many = vec!["epochs_done >= 0"; 992].join(" and ");
    let (status, body) = app.get(&format!("/v1/jobs?where={}", encoded(&many))).await;
    assert_invalid(status, &body, "where");
    assert!(body["error"].as_str().unwrap().contains("100"), "{body}");
    let hundred = vec!["epochs_done >= 0"; 100].join(" and ");
    let (status, body) = app
        .get(&format!("/v1/jobs?where={}", encoded(&hundred)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Text after a value was read as part of a string value: 200 with no jobs.
    let (status, body) = app
        .get(&format!(
            "/v1/jobs?where={}",
            encoded("best.val_acc > 0.5 garbage")
        ))
        .await;
    assert_invalid(status, &body, "where");
    assert!(
        body["error"].as_str().unwrap().contains("'garbage'"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_seeds_that_are_negative_or_would_wrap_are_a_422_on_the_base_seed() {
    let app = TestApp::spawn().await;
    let sweep = |seed: Value, repeats: u32| {
        json!({"base": {"dataset": "digits", "model": {"kind": "mlp", "depth": 1, "width": 8},
                        "training": {"epochs": 1, "seed": seed}},
               "axes": {"model.width": [8]}, "repeats": repeats, "dry_run": true})
    };
    // -1 was silently replaced by seed 0.
    let (status, body) = app.post("/v1/sweeps", sweep(json!(-1), 1)).await;
    assert_invalid(status, &body, "base.training.seed");
    // 2^64 - 1 with two repeats wrapped the second trial's seed to 0.
    let (status, body) = app.post("/v1/sweeps", sweep(json!(u64::MAX), 2)).await;
    assert_invalid(status, &body, "base.training.seed");
    let (status, body) = app.post("/v1/sweeps", sweep(json!(u64::MAX - 1), 2)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let seeds: Vec<u64> = body["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["spec"]["training"]["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [u64::MAX - 1, u64::MAX]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fraction_that_leaves_a_split_empty_is_a_422_at_submission() {
    let app = TestApp::spawn().await;
    // 1e-320 passed validation and failed when the job started.
    let spec = json!({"dataset": "digits", "model": {"kind": "mlp", "depth": 1, "width": 8},
                      "data": {"val_fraction": 1e-320}, "training": {"epochs": 1}});
    let (status, body) = app.post("/v1/jobs", spec).await;
    assert_invalid(status, &body, "data.val_fraction");
    let (_, page) = app.get("/v1/jobs").await;
    assert_eq!(page["total"], 0, "nothing was queued: {page}");

    let sweep = json!({"base": {"dataset": "digits", "model": {"kind": "mlp", "depth": 1, "width": 8},
                                "training": {"epochs": 1}},
                       "axes": {"data.test_fraction": [0.1, 1e-9]}, "dry_run": true});
    let (status, body) = app.post("/v1/sweeps", sweep).await;
    assert_invalid(status, &body, "axes.data.test_fraction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_count_characters_and_refuse_bidi_overrides() {
    let app = TestApp::spawn().await;
    let job = |name: &str| {
        json!({"name": name, "dataset": "digits", "model": {"kind": "mlp", "depth": 1, "width": 8},
               "training": {"epochs": 1}})
    };
    // 200 characters of two bytes each were refused as too long.
    let (status, body) = app.post("/v1/jobs", job(&"é".repeat(200))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.post("/v1/jobs", job(&"é".repeat(201))).await;
    assert_invalid(status, &body, "name");
    // A right-to-left override makes "invoice\u{202E}fdp.exe" display as "invoiceexe.pdf".
    let (status, body) = app.post("/v1/jobs", job("invoice\u{202E}fdp.exe")).await;
    assert_invalid(status, &body, "name");

    let sweep = |name: &str| {
        json!({"name": name, "base": {"dataset": "digits", "model": {"kind": "mlp"}},
               "axes": {"model.depth": [1]}, "dry_run": true})
    };
    let (status, body) = app.post("/v1/sweeps", sweep(&"é".repeat(150))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.post("/v1/sweeps", sweep("a\u{2066}b")).await;
    assert_invalid(status, &body, "name");

    // Uploaded weights: 200 two-byte characters were refused as 400 bytes.
    let app = &app;
    let weights = |name: &str| {
        let path = format!("/v1/weights?name={name}");
        async move {
            app.post_raw(&path, "application/octet-stream", one_tensor_safetensors())
                .await
        }
    };
    let (status, body) = weights(&"é".repeat(200)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = weights(&"é".repeat(201)).await;
    assert_invalid(status, &body, "name");
    let (status, body) = weights("invoice\u{202E}fdp.exe").await;
    assert_invalid(status, &body, "name");
}

/// A safetensors file holding one f32 tensor `w` of shape [1].
fn one_tensor_safetensors() -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&1.0f32.to_le_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_given_as_a_number_is_a_422_not_the_first_variant() {
    let app = TestApp::spawn().await;
    // serde read {"kind": 0} as the enum's first variant (kaiming) and ignored `std`.
    let spec = json!({"dataset": "digits",
                      "model": {"kind": "mlp", "depth": 1, "width": 8, "init": {"kind": 0, "std": 0.01}},
                      "training": {"epochs": 1}});
    let (status, body) = app.post("/v1/jobs", spec).await;
    assert_invalid(status, &body, "model.init.kind");
}
