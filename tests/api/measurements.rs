//! The measurements behind the metrics: every step's loss and per-tensor norms, over HTTP.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, digits_spec};

fn losses(points: &Value) -> Vec<f64> {
    points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["mean"].as_f64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_is_stored_and_a_downsample_keeps_each_buckets_extremes() {
    let app = TestApp::spawn().await;
    let id = app.submit(digits_spec(3, 64)).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    let per_epoch = metrics["epochs"][0]["steps"].as_i64().unwrap();

    let (status, all) = app.get(&format!("/v1/jobs/{id}/steps")).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["total_steps"], 3 * per_epoch);
    assert_eq!(all["downsampled"], false);
    let points = all["points"].as_array().unwrap();
    assert_eq!(points.len() as i64, 3 * per_epoch);
    assert!(
        points
            .iter()
            .enumerate()
            .all(|(i, p)| p["first_step"] == i as i64 + 1 && p["count"] == 1)
    );
    let every = losses(&all["points"]);

    let (_, few) = app.get(&format!("/v1/jobs/{id}/steps?max_points=7")).await;
    assert_eq!(few["downsampled"], true);
    let buckets = few["points"].as_array().unwrap();
    assert!(buckets.len() <= 7);
    let size = few["bucket_size"].as_u64().unwrap() as usize;
    for (b, bucket) in buckets.iter().enumerate() {
        let inside = &every[b * size..((b + 1) * size).min(every.len())];
        let min = inside.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = inside.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(bucket["min"].as_f64().unwrap(), min, "bucket {b}");
        assert_eq!(bucket["max"].as_f64().unwrap(), max, "bucket {b}");
        assert_eq!(bucket["count"].as_u64().unwrap() as usize, inside.len());
    }

    // The second epoch alone, by step range.
    let (_, second) = app
        .get(&format!(
            "/v1/jobs/{id}/steps?from_step={}&to_step={}",
            per_epoch + 1,
            2 * per_epoch
        ))
        .await;
    assert_eq!(
        losses(&second["points"]),
        every[per_epoch as usize..2 * per_epoch as usize].to_vec()
    );
    // A range that ends before it starts is empty, not an error: the contract states each
    // bound alone and cannot relate the two.
    let (status, empty) = app
        .get(&format!("/v1/jobs/{id}/steps?from_step=5&to_step=4"))
        .await;
    assert_eq!(status, StatusCode::OK, "{empty}");
    assert_eq!(empty["points"], json!([]), "{empty}");

    let cv = metrics["epochs"][1]["step_loss_cv"].as_f64().unwrap();
    assert!(cv > 0.0, "the epoch's step losses vary: {cv}");

    for (query, field) in [
        ("from_step=0", "from_step"),
        ("to_step=0", "to_step"),
        ("max_points=0", "max_points"),
        ("max_points=many", "max_points"),
        ("colour=blue", "colour"),
    ] {
        let (status, body) = app.get(&format!("/v1/jobs/{id}/steps?{query}")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (status, _) = app
        .get("/v1/jobs/0190aaaa-0000-7000-8000-000000000000/steps")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gradient_and_weight_norms_are_named_per_tensor_and_filtered_by_layer() {
    let app = TestApp::spawn().await;
    let spec = json!({
        "dataset": "digits",
        "model": {"kind": "mlp", "depth": 12, "width": 8, "batch_norm": true},
        "training": {"epochs": 2, "batch_size": 64, "seed": 3, "grad_clip": {"max_norm": 0.5}}
    });
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let (_, all) = app.get(&format!("/v1/jobs/{id}/gradients")).await;
    let layers = all["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 12 * 4 + 2);
    assert_eq!(layers[0]["name"], "hidden.0.weight");
    assert_eq!(layers[2]["role"], "bn.weight");
    let output = layers.last().unwrap();
    assert_eq!(
        (
            &output["name"],
            &output["layer"],
            &output["index"],
            &output["role"]
        ),
        (
            &json!("output.bias"),
            &json!("output"),
            &json!(12),
            &json!("bias")
        )
    );
    for layer in layers {
        let epochs = layer["epochs"].as_array().unwrap();
        assert_eq!(epochs.len(), 2, "{layer}");
        for epoch in epochs {
            let mean = epoch["grad_norm_mean"].as_f64().unwrap();
            let max = epoch["grad_norm_max"].as_f64().unwrap();
            assert!(max >= mean && mean >= 0.0, "{layer}");
            assert!(epoch["weight_norm"].as_f64().unwrap() >= 0.0);
        }
    }
    let weight_norm = |layer: &Value| layer["epochs"][0]["weight_norm"].as_f64().unwrap();
    assert!(weight_norm(&layers[0]) > 0.0);

    let (_, one) = app
        .get(&format!("/v1/jobs/{id}/gradients?layer=hidden.1"))
        .await;
    let names: Vec<&str> = one["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "hidden.1.weight",
            "hidden.1.bias",
            "hidden.1.bn.weight",
            "hidden.1.bn.bias"
        ],
        "hidden.1 does not match hidden.10 or hidden.11"
    );
    assert_eq!(one["layer"], "hidden.1");
    let (_, tensor) = app
        .get(&format!("/v1/jobs/{id}/gradients?layer=output.weight"))
        .await;
    assert_eq!(tensor["layers"].as_array().unwrap().len(), 1);
    let (_, none) = app
        .get(&format!("/v1/jobs/{id}/gradients?layer=conv1"))
        .await;
    assert_eq!(none["layers"], json!([]));
    let (status, body) = app.get(&format!("/v1/jobs/{id}/gradients?layer=")).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("layer"))
    );
}
