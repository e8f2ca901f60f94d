use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

fn lr_sweep(lrs: &[f64], epochs: u32) -> Value {
    json!({
        "name": "lr",
        "base": {"dataset": "digits", "model": {"kind": "mlp", "depth": 1, "width": 32},
                 "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": epochs, "batch_size": 64, "seed": 3}},
        "axes": {"training.optimizer.lr": lrs},
        "max_concurrent": 2
    })
}

pub async fn wait_for_sweep(app: &TestApp, id: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let (status, sweep) = app.get(&format!("/v1/sweeps/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{sweep}");
        let counts = &sweep["summary"]["status_counts"];
        let open = counts["queued"].as_u64().unwrap_or(0) + counts["running"].as_u64().unwrap_or(0);
        if open == 0 {
            return sweep;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "sweep did not finish: {counts}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learning_rate_sweep_ranks_its_trials_and_shows_each_values_effect() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let mut dry = lr_sweep(&[0.00001, 0.003], 3);
    dry["dry_run"] = json!(true);
    let (status, plan) = app.post("/v1/sweeps", dry).await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["trials"].as_array().unwrap().len(), 2);
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(jobs["total"], 0, "a dry run creates nothing");

    let (status, created) = app.post("/v1/sweeps", lr_sweep(&[0.00001, 0.003], 3)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let sweep = wait_for_sweep(&app, &id).await;

    let summary = &sweep["summary"];
    assert_eq!(summary["status_counts"]["succeeded"], 2, "{summary}");
    let trials = summary["trials"].as_array().unwrap();
    let best = summary["best_trial"].as_i64().unwrap() as usize;
    assert_eq!(
        trials[best]["params"]["training.optimizer.lr"],
        json!(0.003),
        "{summary}"
    );
    let effect = &summary["axes"][0];
    assert_eq!(effect["path"], "training.optimizer.lr");
    let means: Vec<f64> = effect["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["mean"].as_f64().unwrap())
        .collect();
    assert!(
        means[1] > means[0] + 0.2,
        "lr 0.003 beats 1e-5 clearly: {means:?}"
    );

    let ids: Vec<String> = trials
        .iter()
        .map(|t| t["job_id"].as_str().unwrap().to_string())
        .collect();
    let (_, page) = app.get(&format!("/v1/jobs?sweep={id}")).await;
    assert_eq!(page["total"], 2, "trials are ordinary jobs");
    let (status, comparison) = app
        .get(&format!(
            "/v1/compare?jobs={}&metric=val_acc",
            ids.join(",")
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{comparison}");
    assert_eq!(comparison["jobs"][0]["job_id"], trials[best]["job_id"]);
    assert_eq!(comparison["jobs"][0]["rank"], 1);
    assert_eq!(comparison["jobs"][0]["curve"].as_array().unwrap().len(), 3);
    assert!(comparison["jobs"][0]["generalization"]["train_val_acc_gap_at_best"].is_number());

    let (_, list) = app.get("/v1/sweeps").await;
    assert_eq!(list["sweeps"][0]["status_counts"]["succeeded"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_runs_more_trials_at_once_than_it_allows_and_resumes_only_what_did_not_finish()
 {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let mut spec = lr_sweep(&[0.001, 0.002, 0.003], 400);
    spec["max_concurrent"] = json!(1);
    let (_, created) = app.post("/v1/sweeps", spec).await;
    let id = created["id"].as_str().unwrap().to_string();

    for _ in 0..10 {
        let (_, sweep) = app.get(&format!("/v1/sweeps/{id}")).await;
        assert!(
            sweep["summary"]["status_counts"]["running"]
                .as_u64()
                .unwrap_or(0)
                <= 1,
            "{}",
            sweep["summary"]["status_counts"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = app
        .post(&format!("/v1/sweeps/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let sweep = wait_for_sweep(&app, &id).await;
    assert_eq!(sweep["summary"]["status_counts"]["cancelled"], 3);

    let (status, body) = app
        .post(&format!("/v1/sweeps/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["requeued_trials"], json!([0, 1, 2]));
    let (_, sweep) = app.get(&format!("/v1/sweeps/{id}")).await;
    let open = sweep["summary"]["status_counts"]["queued"]
        .as_u64()
        .unwrap_or(0)
        + sweep["summary"]["status_counts"]["running"]
            .as_u64()
            .unwrap_or(0);
    assert_eq!(open, 3);
    app.post(&format!("/v1/sweeps/{id}/cancel"), json!({}))
        .await;
    wait_for_sweep(&app, &id).await;
    let (_, page) = app.get(&format!("/v1/jobs?sweep={id}")).await;
    assert_eq!(page["total"], 6, "the first attempts stay as history");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_axis_is_a_422_naming_its_path() {
    let app = TestApp::spawn().await;
    let (status, body) = app.post("/v1/sweeps", lr_sweep(&[0.01, -1.0], 1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "axes.training.optimizer.lr");
    let mut spec = lr_sweep(&[0.01], 1);
    spec["axes"] = json!({"model.depth": {"int_uniform": [1, 3]}});
    let (status, body) = app.post("/v1/sweeps", spec).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("axes.model.depth"))
    );
    let (status, _) = app.get("/v1/compare?jobs=").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = app
        .get("/v1/compare?jobs=0190aaaa-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, jobs) = app.get("/v1/jobs").await;
    assert_eq!(jobs["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diagnosis_says_what_a_too_high_and_a_too_low_learning_rate_did() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let spec = |lr: f64, kind: &str| {
        json!({"dataset": "digits", "model": {"kind": "mlp", "depth": 2, "width": 32},
        "training": {"optimizer": {"kind": kind, "lr": lr}, "epochs": 6, "batch_size": 32, "seed": 5}})
    };
    let high = app.submit(spec(5.0, "sgd")).await;
    let low = app.submit(spec(0.00001, "adam")).await;
    let good = app.submit(spec(0.003, "adam")).await;
    for id in [&high, &low, &good] {
        app.wait_for_end(id).await;
    }
    let kinds = |body: &Value| -> Vec<String> {
        body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, body) = app.get(&format!("/v1/jobs/{high}/diagnosis")).await;
    assert!(
        kinds(&body)
            .iter()
            .any(|k| k == "diverged" || k == "learning_rate_too_high"),
        "{body}"
    );
    let (_, body) = app.get(&format!("/v1/jobs/{low}/diagnosis")).await;
    assert!(
        kinds(&body).contains(&"learning_rate_too_low".to_string()),
        "{body}"
    );
    let (_, body) = app.get(&format!("/v1/jobs/{good}/diagnosis")).await;
    assert!(
        !kinds(&body)
            .iter()
            .any(|k| k.starts_with("learning_rate") || k == "diverged"),
        "{body}"
    );
    assert!(body["findings"][0]["suggestion"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_diagnosis_names_vanishing_gradients_in_a_deep_sigmoid_net_and_noise_at_batch_size_one()
{
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let deep = app
        .submit(json!({"dataset": "digits", "model": {"kind": "mlp", "depth": 100, "width": 16, "activation": "sigmoid"},
                       "training": {"epochs": 1, "batch_size": 128, "seed": 2}}))
        .await;
    let noisy = app
        .submit(
            json!({"dataset": "regions", "model": {"kind": "mlp", "depth": 1, "width": 8},
                       "training": {"epochs": 1, "batch_size": 1, "seed": 2}}),
        )
        .await;
    app.wait_for_end(&deep).await;
    app.wait_for_end(&noisy).await;
    let (_, body) = app.get(&format!("/v1/jobs/{deep}/diagnosis")).await;
    let vanishing = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "vanishing_gradients");
    let vanishing = vanishing.unwrap_or_else(|| panic!("{body}"));
    assert!(
        vanishing["evidence"]["tensors"]
            .as_array()
            .unwrap()
            .contains(&json!("hidden.0.weight")),
        "{vanishing}"
    );
    let (_, body) = app.get(&format!("/v1/jobs/{noisy}/diagnosis")).await;
    assert!(
        body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "noisy_training"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disagreements_list_the_samples_the_best_model_gets_right_and_the_worst_gets_wrong() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    let spec = |lr: f64| {
        json!({"dataset": "shapes", "model": {"kind": "mlp", "depth": 1, "width": 32},
        "training": {"optimizer": {"kind": "adam", "lr": lr}, "epochs": 3, "batch_size": 32, "seed": 1}})
    };
    let good = app.submit(spec(0.003)).await;
    let poor = app.submit(spec(0.000001)).await;
    app.wait_for_end(&good).await;
    app.wait_for_end(&poor).await;

    let (status, body) = app
        .get(&format!(
            "/v1/compare/disagreements?a={good}&b={poor}&split=test&limit=5"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["a_accuracy"].as_f64().unwrap() > body["b_accuracy"].as_f64().unwrap(),
        "{body}"
    );
    let listed = body["a_right_b_wrong"].as_array().unwrap();
    assert!(!listed.is_empty() && listed.len() <= 5, "{body}");
    let first = &listed[0];
    assert_eq!(first["a"]["label"], first["true_label"]);
    assert_ne!(first["b"]["label"], first["true_label"]);
    let url = body["sample_url"]
        .as_str()
        .unwrap()
        .replace("{index}", &first["index"].to_string());
    let image = app.client.get(app.url(&url)).send().await.unwrap();
    assert_eq!(image.status(), StatusCode::OK);
    assert_eq!(image.headers()["content-type"], "image/png");

    let (status, body) = app
        .get(&format!(
            "/v1/compare/disagreements?a={good}&b={poor}&split=holdout"
        ))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("split"))
    );
    let other = app
        .submit(json!({"dataset": "digits", "model": {"kind": "mlp"}, "training": {"epochs": 1}}))
        .await;
    let (status, body) = app
        .get(&format!("/v1/compare/disagreements?a={good}&b={other}"))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("b"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_median_rule_prunes_a_hopeless_learning_rate_and_resuming_does_not_run_it_again() {
    let app = TestApp::spawn_with(|c| c.worker_slots = 2).await;
    // One trial at a time, in order: the hopeless rate (last) is judged against two finished runs.
    let mut spec = lr_sweep(&[0.003, 0.005, 0.0000001], 4);
    spec["max_concurrent"] = json!(1);
    spec["pruning"] = json!({"rule": "median", "after_epochs": 1, "min_trials": 2});
    let (status, created) = app.post("/v1/sweeps", spec).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["pruning"]["rule"], "median");
    let id = created["id"].as_str().unwrap().to_string();
    let sweep = wait_for_sweep(&app, &id).await;

    let summary = &sweep["summary"];
    assert_eq!(summary["pruned_trials"], 1, "{summary}");
    let trials = summary["trials"].as_array().unwrap();
    for good in &trials[..2] {
        assert_eq!(good["pruned"], false, "{good}");
        assert_eq!(good["epochs_done"], 4, "{good}");
    }
    let bad = &trials[2];
    assert_eq!(bad["status"], "succeeded", "{bad}");
    assert_eq!(bad["pruned"], true, "{bad}");
    assert_eq!(
        bad["epochs_done"], 1,
        "stopped after the epoch it was judged on: {bad}"
    );
    let reason = bad["stop_reason"].as_str().unwrap();
    eprintln!("PRUNING {reason}");
    assert!(
        reason.starts_with("pruned at epoch 1: best val_acc so far")
            && reason.contains("below the median")
            && reason.contains("of 2 other trials"),
        "{reason}"
    );
    assert_eq!(summary["worst_trial"], 2, "{summary}");

    let (_, job) = app
        .get(&format!("/v1/jobs/{}", bad["job_id"].as_str().unwrap()))
        .await;
    assert_eq!(job["pruned"], true, "{job}");
    assert_eq!(job["stopped_early"]["epoch"], 1, "{job}");

    let (status, resumed) = app
        .post(&format!("/v1/sweeps/{id}/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{resumed}");
    assert_eq!(
        resumed["requeued_trials"],
        json!([]),
        "a pruned trial has finished"
    );
}

#[tokio::test]
async fn a_pruning_rule_with_bad_bounds_is_refused_naming_the_field() {
    let app = TestApp::spawn().await;
    let mut spec = lr_sweep(&[0.001], 2);
    spec["pruning"] = json!({"rule": "median", "after_epochs": 0});
    let (status, body) = app.post("/v1/sweeps", spec.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "pruning.after_epochs", "{body}");
    spec["pruning"] = json!({"rule": "mean"});
    let (status, body) = app.post("/v1/sweeps", spec).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn concurrent_resumes_of_a_sweep_requeue_each_trial_once() {
    // Arrange: a sweep whose trials are all cancelled.
    let app = TestApp::spawn().await;
    let (status, created) = app
        .post("/v1/sweeps", lr_sweep(&[0.001, 0.002, 0.003], 500))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, cancelled) = app
        .post(&format!("/v1/sweeps/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{cancelled}");
    wait_for_sweep(&app, &id).await;
    let (_, before) = app.get(&format!("/v1/jobs?sweep={id}&limit=100")).await;
    let statuses: Vec<&str> = before["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled"; 3], "{before}");

    // Act: several resumes at once.
    let path = format!("/v1/sweeps/{id}/resume");
    let resumes = futures_util::future::join_all((0..4).map(|_| app.post(&path, json!({})))).await;

    // Assert: between them they requeued each trial exactly once, and no job is out of reach.
    let mut requeued: Vec<i64> = Vec::new();
    for (status, body) in &resumes {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
        requeued.extend(
            body["requeued_trials"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap()),
        );
    }
    requeued.sort();
    assert_eq!(requeued, vec![0, 1, 2], "{resumes:?}");
    let (_, jobs) = app.get(&format!("/v1/jobs?sweep={id}&limit=100")).await;
    assert_eq!(
        jobs["total"], 6,
        "three cancelled jobs and three replacements: {jobs}"
    );
    app.post(&format!("/v1/sweeps/{id}/cancel"), json!({}))
        .await;
}
