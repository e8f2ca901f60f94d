//! `GET /metrics`: Prometheus text that counts requests, jobs, epochs and predictions.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Api, TestApp, digits_spec};

/// The value of the first sample of `series` (a metric name with its labels, as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_jobs_epochs_and_predictions_in_prometheus_text() {
    let app = TestApp::spawn().await;
    let id = app.submit(digits_spec(2, 64)).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (status, body) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": [vec![0.0; 64], vec![1.0; 64]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    // Metrics are process-wide and other tests run beside this one: at least ours.
    let at_least = |series: &str, value: f64| {
        let found = sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
        assert!(
            found >= value,
            "{series} is {found}, expected at least {value}"
        );
    };
    at_least(
        r#"trainserve_http_requests_total{method="POST",route="/v1/jobs",status="201"}"#,
        1.0,
    );
    at_least(
        r#"trainserve_http_requests_total{method="GET",route="/v1/jobs/{id}",status="200"}"#,
        1.0,
    );
    at_least(
        r#"trainserve_http_request_duration_seconds_count{method="POST",route="/v1/models/{model}/predict"}"#,
        1.0,
    );
    assert_eq!(
        sample(&text, r#"trainserve_jobs{state="succeeded"}"#),
        Some(1.0),
        "from this server's database"
    );
    assert_eq!(
        sample(&text, r#"trainserve_jobs{state="queued"}"#),
        Some(0.0)
    );
    at_least("trainserve_epoch_duration_seconds_count", 2.0);
    at_least("trainserve_training_samples_total", 1.0);
    at_least("trainserve_prediction_rows_total", 2.0);
    at_least("trainserve_model_loads_total", 1.0);
    assert!(
        text.contains("# TYPE trainserve_http_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(!text.contains(&id), "no series per job id");
}
