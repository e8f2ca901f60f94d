//! The classic training experiments, run through the API and judged on the stored metrics.

use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

/// Submits a spec, waits for the end, and returns the job and its per-epoch metrics.
async fn train(app: &TestApp, spec: Value) -> (Value, Vec<Value>) {
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    let epochs = metrics["epochs"].as_array().cloned().unwrap_or_default();
    (job, epochs)
}

fn series(epochs: &[Value], key: &str) -> Vec<f64> {
    epochs.iter().map(|e| e[key].as_f64().unwrap()).collect()
}

fn digits_with(optimizer: Value, epochs: u32) -> Value {
    json!({
        "dataset": "digits",
        "model": {"kind": "mlp", "depth": 2, "width": 64},
        "training": {"optimizer": optimizer, "epochs": epochs, "batch_size": 32, "seed": 1}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learning_rate_of_one_fails_one_in_100000_crawls_and_one_in_1000_converges() {
    let app = TestApp::spawn().await;

    let (high, high_epochs) = train(&app, digits_with(json!({"kind": "adam", "lr": 1.0}), 6)).await;
    let (low, low_epochs) = train(&app, digits_with(json!({"kind": "adam", "lr": 1e-5}), 6)).await;
    let (good, good_epochs) =
        train(&app, digits_with(json!({"kind": "adam", "lr": 1e-3}), 6)).await;

    // Too high: divergence is detected, or accuracy stays near chance (10 classes).
    let diverged = high["status"] == "failed"
        && high["failure"]
            .as_str()
            .is_some_and(|f| f.contains("diverged"));
    let best_high = series(&high_epochs, "val_acc")
        .into_iter()
        .fold(0.0, f64::max);
    assert!(
        diverged || (high["status"] == "succeeded" && best_high < 0.3),
        "lr 1.0 should visibly fail: {high} with val_acc up to {best_high}"
    );
    // Too low: it trains and improves, but slowly.
    assert_eq!(low["status"], "succeeded", "{low}");
    let low_loss = series(&low_epochs, "train_eval_loss");
    assert!(
        low_loss.windows(2).all(|w| w[1] < w[0]),
        "lr 1e-5 still improves every epoch: {low_loss:?}"
    );
    let low_acc = series(&low_epochs, "val_acc");
    assert!(
        low_acc[5] < 0.5 && low_loss[0] - low_loss[5] < 0.5,
        "lr 1e-5 improves only slowly: acc {low_acc:?}, loss {low_loss:?}"
    );
    // About right: converges in a few epochs.
    assert_eq!(good["status"], "succeeded", "{good}");
    let good_acc = series(&good_epochs, "val_acc");
    assert!(good_acc[5] >= 0.9, "lr 1e-3 converges: {good_acc:?}");
    assert!(good_acc[5] > low_acc[5] + 0.4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_submissions_of_one_seeded_spec_give_identical_measurements() {
    let app = TestApp::spawn().await;
    let spec = json!({
        "dataset": "digits",
        "model": {"kind": "mlp", "depth": 3, "width": 32, "batch_norm": true, "dropout": 0.3,
                  "activation": "leaky_relu"},
        "training": {"optimizer": {"kind": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": true},
                     "epochs": 3, "batch_size": 50, "seed": 42,
                     "schedule": {"kind": "cosine", "warmup_steps": 10},
                     "grad_clip": {"max_norm": 2.0}}
    });
    let mut measured = Vec::new();
    for _ in 0..2 {
        let id = app.submit(spec.clone()).await;
        let job = app.wait_for_end(&id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let (_, mut metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
        for epoch in metrics["epochs"].as_array_mut().unwrap() {
            // Wall time is the only thing allowed to differ.
            epoch["epoch_seconds"] = json!(null);
            epoch["samples_per_sec"] = json!(null);
        }
        let (_, steps) = app.get(&format!("/v1/jobs/{id}/steps")).await;
        let (_, gradients) = app.get(&format!("/v1/jobs/{id}/gradients")).await;
        measured.push((
            metrics["epochs"].clone(),
            steps["points"].clone(),
            gradients["layers"].clone(),
        ));
    }
    assert_eq!(measured[0].0, measured[1].0, "per-epoch metrics");
    assert_eq!(measured[0].1, measured[1].1, "step losses");
    assert_eq!(measured[0].2, measured[1].2, "gradient and weight norms");
    assert!(measured[0].1.as_array().unwrap().len() > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_stopping_ends_a_job_successfully_and_says_where_and_why() {
    let app = TestApp::spawn().await;
    let mut spec = digits_with(json!({"kind": "adam", "lr": 1e-3}), 40);
    // No epoch can improve accuracy by more than 1, so the job stops after 1 + patience epochs.
    spec["training"]["early_stopping"] =
        json!({"metric": "val_acc", "patience": 2, "min_delta": 1.0});
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;

    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["stopped_early"]["epoch"], 3, "{job}");
    let reason = job["stopped_early"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("val_acc") && reason.contains("2 epochs"),
        "{reason}"
    );
    assert_eq!(job["spec"]["training"]["early_stopping"]["mode"], "max");
    assert_eq!(job["progress"]["epochs_done"], 3);
    let (_, metrics) = app.get(&format!("/v1/jobs/{id}/metrics")).await;
    assert_eq!(metrics["epochs"].as_array().unwrap().len(), 3);
    let (status, prediction) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": [vec![0.0; 64]]}),
        )
        .await;
    assert!(status.is_success(), "{prediction}");
    assert_eq!(prediction["checkpoint_epoch"], job["best"]["epoch"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_learning_rate_of_every_epoch_follows_the_schedule() {
    let app = TestApp::spawn().await;
    let mut spec = digits_with(json!({"kind": "sgd", "lr": 0.1, "momentum": 0.9}), 4);
    spec["training"]["schedule"] = json!({"kind": "step", "step_size": 1, "gamma": 0.5});
    let (job, epochs) = train(&app, spec).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(series(&epochs, "lr"), vec![0.1, 0.05, 0.025, 0.0125]);

    let mut spec = digits_with(json!({"kind": "adamw"}), 3);
    spec["training"]["schedule"] = json!({"kind": "cosine", "min_lr": 1e-5, "warmup_epochs": 1});
    let (job, epochs) = train(&app, spec).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let lrs = series(&epochs, "lr");
    assert_eq!(lrs[0], 1e-3, "the warm-up ends at the full rate: {lrs:?}");
    assert!(
        (lrs[2] - 1e-5).abs() < 1e-12,
        "cosine ends at min_lr: {lrs:?}"
    );
    assert_eq!(job["spec"]["training"]["optimizer"]["weight_decay"], 0.01);
}

/// Mean gradient norm of a tensor in epoch 1.
fn grad_norm(gradients: &Value, name: &str) -> f64 {
    gradients["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .and_then(|l| l["epochs"][0]["grad_norm_mean"].as_f64())
        .unwrap_or_else(|| panic!("no gradient norm for {name}: {gradients}"))
}

/// The first hidden layer's gradient norm over the last hidden layer's, for a 100-layer net.
async fn first_over_last(app: &TestApp, model: Value) -> f64 {
    let mut model = model;
    model["kind"] = json!("mlp");
    model["depth"] = json!(100);
    model["width"] = json!(16);
    let id = app
        .submit(json!({"dataset": "digits", "model": model,
            "training": {"optimizer": {"kind": "adam", "lr": 1e-3}, "epochs": 1, "batch_size": 64, "seed": 5}}))
        .await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, gradients) = app
        .get(&format!("/v1/jobs/{id}/gradients?layer=hidden"))
        .await;
    let layers = gradients["layers"].as_array().unwrap();
    let per_layer = if model["batch_norm"] == true { 4 } else { 2 };
    assert_eq!(
        layers.len(),
        100 * per_layer,
        "the filter keeps hidden layers only"
    );
    grad_norm(&gradients, "hidden.0.weight") / grad_norm(&gradients, "hidden.99.weight")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_sigmoid_net_vanishes_and_batch_norm_or_relu_with_kaiming_keep_gradients_alive() {
    let app = TestApp::spawn().await;
    let plain = first_over_last(&app, json!({"activation": "sigmoid"})).await;
    let normalized =
        first_over_last(&app, json!({"activation": "sigmoid", "batch_norm": true})).await;
    let relu = first_over_last(
        &app,
        json!({"activation": "relu", "init": {"kind": "kaiming"}}),
    )
    .await;

    assert!(
        plain <= 1e-2,
        "without batch norm the first layer's gradient is >= 100x below the last's: {plain:e}"
    );
    assert!(
        normalized >= 0.1,
        "batch norm keeps the first layer's gradient within 10x of the last's: {normalized:e}"
    );
    assert!(
        relu >= 0.1,
        "relu with kaiming keeps the first layer's gradient within 10x: {relu:e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_one_takes_longer_per_epoch_and_is_noisier_than_256() {
    let app = TestApp::spawn().await;
    let mut measured = Vec::new();
    for batch_size in [1, 256] {
        let mut spec = digits_with(json!({"kind": "adam", "lr": 1e-3}), 1);
        spec["model"]["batch_norm"] = json!(true);
        spec["training"]["batch_size"] = json!(batch_size);
        let (job, epochs) = train(&app, spec).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        measured.push((
            epochs[0]["epoch_seconds"].as_f64().unwrap(),
            epochs[0]["step_loss_cv"].as_f64().unwrap(),
            epochs[0]["steps"].as_i64().unwrap(),
        ));
    }
    let ((seconds_1, cv_1, steps_1), (seconds_256, cv_256, steps_256)) = (measured[0], measured[1]);
    assert_eq!(
        steps_256,
        (steps_1 + 255) / 256,
        "one step per sample vs per 256"
    );
    assert!(
        seconds_1 > 3.0 * seconds_256,
        "one sample per step is slower per epoch: {seconds_1}s vs {seconds_256}s"
    );
    assert!(
        cv_1 > 3.0 * cv_256,
        "one sample per step is noisier: CV {cv_1} vs {cv_256}"
    );
}
