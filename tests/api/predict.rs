use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, digits_spec};

fn digits_rows() -> Vec<(Vec<f64>, i64)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|line| {
            let values: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
            (values[..64].to_vec(), values[64] as i64)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_use_the_best_checkpoint_and_the_jobs_own_preprocessing() {
    let app = TestApp::spawn().await;
    let id = app.submit(digits_spec(15, 32)).await;
    let job = app.wait_for_end(&id).await;
    let rows = digits_rows();
    // Raw pixel values (0-16): the server standardizes them exactly as in training.
    let inputs: Vec<Vec<f64>> = rows.iter().take(200).map(|(x, _)| x.clone()).collect();
    let (status, answer) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": inputs}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["checkpoint_epoch"], job["best"]["epoch"]);
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 200);
    let correct = predictions
        .iter()
        .zip(&rows)
        .filter(|(p, (_, label))| p["label"] == json!(label))
        .count();
    assert!(correct >= 180, "{correct}/200 correct");
    let total: f64 = predictions[0]["probabilities"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-4);
    assert!(
        predictions[0]["probabilities"]["7"].is_number(),
        "probabilities are keyed by label"
    );

    let (status, latest) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": [inputs[0]], "checkpoint": "latest"}),
        )
        .await;
    assert_eq!(
        (status, latest["checkpoint_epoch"].clone()),
        (StatusCode::OK, json!(15))
    );
    let (status, body) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": [inputs[0]], "checkpoint": 999}),
        )
        .await;
    assert_eq!(
        (status, body["field"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("checkpoint"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_is_a_422_that_names_the_row() {
    let app = TestApp::spawn().await;
    let id = app.submit(digits_spec(1, 64)).await;
    app.wait_for_end(&id).await;
    let good = vec![0.0; 64];
    let mut huge = good.clone();
    huge[5] = 1e39;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"inputs": [good.clone(), vec![1.0; 63]]}),
            "inputs[1]",
        ),
        (
            json!({"inputs": [good.clone(), good.clone(), huge]}),
            "inputs[2][5]",
        ),
        (json!({"inputs": []}), "inputs"),
        (
            json!({"inputs": [good.clone()], "checkpoint": "newest"}),
            "checkpoint",
        ),
        (json!({"inputs": [["a"]]}), "inputs[0][0]"),
        (json!({"rows": [good.clone()]}), "rows"),
    ];
    for (body, field) in cases {
        let (status, answer) = app
            .post(&format!("/v1/models/{id}/predict"), body.clone())
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} → {answer}"
        );
        assert_eq!(answer["field"], field, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predicting_before_the_first_checkpoint_is_a_conflict() {
    let app = TestApp::spawn().await;
    let blocker = app.submit(digits_spec(2000, 8)).await;
    let waiting = app.submit(digits_spec(1, 32)).await;
    let (status, body) = app
        .post(
            &format!("/v1/models/{waiting}/predict"),
            json!({"inputs": [vec![0.0; 64]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    app.post(&format!("/v1/jobs/{blocker}/cancel"), json!({}))
        .await;
    app.post(&format!("/v1/jobs/{waiting}/cancel"), json!({}))
        .await;
}
