//! The learning-rate range test: on its own over HTTP, and before a job that says
//! `"lr": "auto"`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

fn adam_mlp(lr: Value, epochs: u32) -> Value {
    json!({
        "dataset": "digits",
        "model": {"kind": "mlp", "depth": 2, "width": 64},
        "training": {"optimizer": {"kind": "adam", "lr": lr}, "epochs": epochs, "batch_size": 32, "seed": 7}
    })
}

#[tokio::test]
async fn the_finders_suggestion_on_digits_trains_adam_to_95_percent_test_accuracy() {
    let app = TestApp::spawn().await;
    let (status, test) = app
        .post("/v1/lr-finder", json!({"spec": adam_mlp(json!(0.001), 1)}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{test}");
    assert_eq!(test["status"], "succeeded", "{test}");

    // The curve runs from 1e-7 up until the smoothed loss passes 4x its minimum.
    let points = test["points"].as_array().unwrap();
    assert!(
        points.len() >= 20 && points.len() <= 100,
        "{} points",
        points.len()
    );
    assert!((points[0]["lr"].as_f64().unwrap() / 1e-7 - 1.0).abs() < 1e-9);
    let smoothed: Vec<f64> = points
        .iter()
        .map(|p| p["smoothed"].as_f64().unwrap())
        .collect();
    let lowest = smoothed.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(test["min_loss"].as_f64().unwrap(), lowest);
    if test["stopped"] == "loss_exploded" {
        assert!(*smoothed.last().unwrap() > 4.0 * lowest);
    }
    let suggested = test["suggested_lr"].as_f64().unwrap();
    let min_lr = test["min_loss_lr"].as_f64().unwrap();
    let steepest = test["steepest_lr"].as_f64().unwrap_or(f64::INFINITY);
    assert_eq!(
        suggested,
        steepest.min(min_lr / 10.0),
        "the lower of the two marks: {test}"
    );
    assert!(
        test["rule"].as_str().unwrap().contains("/ 10"),
        "{}",
        test["rule"]
    );

    // Read back, listed, drawn.
    let id = test["id"].as_str().unwrap();
    let (status, again) = app.get(&format!("/v1/lr-finder/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["suggested_lr"], test["suggested_lr"]);
    let (_, list) = app.get("/v1/lr-finder").await;
    assert_eq!(list["lr_finds"][0]["id"], json!(id));
    assert!(list["lr_finds"][0].get("points").is_none());
    let svg = app
        .client
        .get(app.url(&format!("/v1/lr-finder/{id}/plot.svg")))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    let svg = svg.text().await.unwrap();
    assert!(
        svg.contains("smoothed loss") && svg.contains("suggested:"),
        "{svg:.300}"
    );
    let png = app
        .client
        .get(app.url(&format!("/v1/lr-finder/{id}/plot.png")))
        .send()
        .await
        .unwrap();
    assert_eq!(&png.bytes().await.unwrap()[1..4], b"PNG");

    // The suggestion trains.
    let job = app.submit(adam_mlp(json!(suggested), 15)).await;
    let job = app.wait_for_end(&job).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let test_acc = job["best"]["test_acc"].as_f64().unwrap();
    assert!(
        test_acc >= 0.95,
        "lr {suggested} reached {test_acc} test accuracy; the test: min_loss_lr {} steepest {} rule {} stopped {} points {}",
        test["min_loss_lr"],
        test["steepest_lr"],
        test["rule"],
        test["stopped"],
        points.len()
    );
}

#[tokio::test]
async fn a_job_with_lr_auto_records_the_rate_its_range_test_chose_and_trains_with_it() {
    let app = TestApp::spawn().await;
    let (status, submitted) = app.post("/v1/jobs", adam_mlp(json!("auto"), 2)).await;
    assert_eq!(status, StatusCode::CREATED, "{submitted}");
    assert_eq!(submitted["spec"]["training"]["optimizer"]["lr"], "auto");
    assert_eq!(submitted["lr_choice"]["chosen"], false);
    let id = submitted["id"].as_str().unwrap();
    let job = app.wait_for_end(id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let choice = &job["lr_choice"];
    assert_eq!(choice["chosen"], true, "{job}");
    let lr = choice["lr"].as_f64().unwrap();
    assert_eq!(
        job["spec"]["training"]["optimizer"]["lr"].as_f64(),
        Some(lr)
    );
    assert_eq!(
        job["latest"]["lr"].as_f64(),
        Some(lr),
        "the epochs trained at the chosen rate"
    );
    let (status, test) = app
        .get(&format!(
            "/v1/lr-finder/{}",
            choice["lr_find_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(test["job_id"], json!(id));
    assert_eq!(test["suggested_lr"].as_f64(), Some(lr));
    assert_eq!(choice["rule"], test["rule"]);

    // The finder trained a copy: the same spec with that rate written out measures the same.
    let explicit = app.submit(adam_mlp(json!(lr), 2)).await;
    let explicit = app.wait_for_end(&explicit).await;
    assert_eq!(explicit["latest"]["val_loss"], job["latest"]["val_loss"]);

    // Its test goes with the job, not alone.
    let gone = app
        .client
        .delete(app.url(&format!(
            "/v1/lr-finder/{}",
            choice["lr_find_id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn bad_finder_requests_are_422s_naming_the_field() {
    let app = TestApp::spawn().await;
    let spec = adam_mlp(json!(0.001), 1);
    for (body, field) in [
        (json!({}), "spec"),
        (json!({"spec": spec, "max_lr": 1e-9}), "max_lr"),
        (json!({"spec": spec, "steps": 2}), "steps"),
        (json!({"spec": spec, "stop_factor": 0.5}), "stop_factor"),
        (json!({"spec": spec, "smoothing": 1.0}), "smoothing"),
        (json!({"spec": spec, "lr_max": 1}), "lr_max"),
        (
            json!({"spec": {"dataset": "nope", "model": {"kind": "mlp"}}}),
            "spec.dataset",
        ),
        (
            json!({"spec": {"dataset": "digits", "model": {"kind": "mlp", "depth": 0}}}),
            "spec.model.depth",
        ),
    ] {
        let (status, error) = app.post("/v1/lr-finder", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {error}");
        assert_eq!(error["field"], field, "{body}: {error}");
    }
    let (status, error) = app.post("/v1/jobs", adam_mlp(json!("fast"), 1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error["field"], "training.optimizer.lr");
    assert!(
        error["error"].as_str().unwrap().contains("\"auto\""),
        "{error}"
    );
    let (status, _) = app
        .get("/v1/lr-finder/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
