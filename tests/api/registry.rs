//! The model registry over HTTP: versions from jobs and imports, aliases that move at once,
//! predictions by name, alias, version and job id, and the refusals of bad registrations.

use reqwest::StatusCode;
use serde_json::{Value, json};
use trainserve::domain::{ResNetDepth, ResNetSpec};

use crate::helpers::{Api, TestApp, decode, digit_rows, digits_spec};
use crate::resnet::resnet_formula;

async fn put(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    decode(
        app.http()
            .put(app.url(path))
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn delete(app: &TestApp, path: &str) -> (StatusCode, Value) {
    decode(app.http().delete(app.url(path)).send().await.unwrap()).await
}

fn labels(answer: &Value) -> Vec<Value> {
    answer["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions: {answer}"))
        .iter()
        .map(|p| p["label"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_registered_as_a_model_serves_by_name_alias_and_version_as_its_job_does() {
    let app = TestApp::spawn().await;
    let job = app.submit(digits_spec(3, 32)).await;
    assert_eq!(app.wait_for_end(&job).await["status"], "succeeded");
    let rows = digit_rows(20);

    let (status, v1) = app
        .post(
            "/v1/models",
            json!({"name": "digits", "from_job": job, "checkpoint": 1, "aliases": ["staging"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["source"], "job");
    assert_eq!(v1["checkpoint_epoch"], 1);
    assert_eq!(v1["ready"], true, "registered versions are warm: {v1}");
    assert_eq!(v1["aliases"], json!(["staging"]));
    let (status, v2) = app
        .post(
            "/v1/models",
            json!({"name": "digits", "from_job": job, "checkpoint": "latest"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");
    assert_eq!(v2["version"], 2);

    let by_job = app
        .post(
            &format!("/v1/models/{job}/predict"),
            json!({"inputs": rows, "checkpoint": "latest"}),
        )
        .await
        .1;
    // The name alone is the newest version while no alias is called production.
    let (status, by_name) = app
        .post("/v1/models/digits/predict", json!({"inputs": rows}))
        .await;
    assert_eq!(status, StatusCode::OK, "{by_name}");
    assert_eq!(by_name["model"], "digits");
    assert_eq!(by_name["version"], 2);
    assert_eq!(by_name["job"], job.as_str());
    assert_eq!(labels(&by_name), labels(&by_job));
    assert_eq!(
        by_name["predictions"][0]["probabilities"],
        by_job["predictions"][0]["probabilities"]
    );
    let (_, by_alias) = app
        .post("/v1/models/digits@staging/predict", json!({"inputs": rows}))
        .await;
    assert_eq!(by_alias["version"], 1, "{by_alias}");
    let (_, by_version) = app
        .post(
            "/v1/models/digits/versions/1/predict",
            json!({"inputs": rows, "logits": true, "top_k": 3}),
        )
        .await;
    assert_eq!(labels(&by_version), labels(&by_alias));
    let first = &by_version["predictions"][0];
    assert_eq!(first["logits"].as_array().unwrap().len(), 10, "{first}");
    let top = first["top_k"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    assert_eq!(top[0]["label"], first["label"]);
    assert!(top[0]["probability"].as_f64() >= top[1]["probability"].as_f64());

    // production moves in one call, and the name alone follows it.
    let (status, moved) = put(
        &app,
        "/v1/models/digits/aliases/production",
        json!({"version": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let (_, by_name) = app
        .post("/v1/models/digits/predict", json!({"inputs": rows}))
        .await;
    assert_eq!(by_name["version"], 1, "{by_name}");
    put(
        &app,
        "/v1/models/digits/aliases/production",
        json!({"version": 2}),
    )
    .await;
    let (_, by_name) = app
        .post("/v1/models/digits/predict", json!({"inputs": rows}))
        .await;
    assert_eq!(by_name["version"], 2, "{by_name}");

    // A version an alias points at cannot go; once the alias is gone it can.
    let (status, refused) = delete(&app, "/v1/models/digits/versions/1").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("digits@staging"),
        "{refused}"
    );
    assert_eq!(
        delete(&app, "/v1/models/digits/aliases/staging").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        delete(&app, "/v1/models/digits/versions/1").await.0,
        StatusCode::NO_CONTENT
    );
    let (status, gone) = app
        .post(
            "/v1/models/digits/versions/1/predict",
            json!({"inputs": rows}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    let (status, gone) = app
        .post("/v1/models/digits@staging/predict", json!({"inputs": rows}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{gone}");
    assert!(
        gone["error"].as_str().unwrap().contains("digits@staging"),
        "{gone}"
    );

    // A version owns its weights: deleting the job leaves it serving.
    assert_eq!(
        delete(&app, &format!("/v1/jobs/{job}")).await.0,
        StatusCode::NO_CONTENT
    );
    let (status, still) = app
        .post("/v1/models/digits/predict", json!({"inputs": rows}))
        .await;
    assert_eq!(status, StatusCode::OK, "{still}");
    assert_eq!(labels(&still), labels(&by_job));

    let (status, model) = app.get("/v1/models/digits").await;
    assert_eq!(status, StatusCode::OK, "{model}");
    assert_eq!(model["aliases"], json!({"production": 2}));
    assert_eq!(model["versions"].as_array().unwrap().len(), 1);
    let (_, list) = app.get("/v1/models").await;
    assert_eq!(list["models"][0]["name"], "digits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_torchvision_resnet18_state_dict_gives_pytorchs_logits() {
    let app = TestApp::spawn().await;
    let fixture: Value =
        serde_json::from_str(include_str!("../fixtures/resnet18_torch.json")).unwrap();
    let classes = fixture["num_classes"].as_u64().unwrap() as usize;
    let state = resnet_formula::state_dict(ResNetDepth::R18, &ResNetSpec::default(), 3, classes);
    let (status, weights) = app
        .post_raw(
            "/v1/weights?name=resnet18-formula",
            "application/octet-stream",
            resnet_formula::safetensors_bytes(&state),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{weights}");
    let labels: Vec<String> = (0..classes).map(|i| format!("class-{i}")).collect();
    let (status, version) = app
        .post(
            "/v1/models",
            json!({"name": "resnet18-torch", "model": {"kind": "resnet18"},
                   "weights": "resnet18-formula",
                   "input": {"image": {"shape": [3, 64, 64]}}, "labels": labels}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{version}");
    assert_eq!(version["source"], "import");
    assert_eq!(version["parameters"].as_i64().unwrap(), 11_181_642);

    // The script's input, row by row, with pixels as the model takes them (no normalization).
    let row_len = 3 * 64 * 64;
    let rows: Vec<Vec<f64>> = (0..2)
        .map(|r| {
            (0..row_len)
                .map(|i| f64::from(resnet_formula::hashed(r * row_len + i, 1000) as f32))
                .collect()
        })
        .collect();
    let (status, answer) = app
        .post(
            "/v1/models/resnet18-torch/predict",
            json!({"inputs": rows, "logits": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let torch: Vec<f64> = fixture["logits_eval"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    let ours: Vec<f64> = answer["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
        })
        .collect();
    assert_eq!(ours.len(), torch.len());
    let worst = ours
        .iter()
        .zip(&torch)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-4,
        "largest difference from PyTorch's logits: {worst}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_and_unknown_models_are_refused_naming_what_is_wrong() {
    let app = TestApp::spawn().await;
    let rows = digit_rows(1);
    let (status, body) = app
        .post("/v1/models/nothing/predict", json!({"inputs": rows}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("nothing"),
        "{body}"
    );

    let state = resnet_formula::state_dict(
        ResNetDepth::R18,
        &ResNetSpec {
            width: 8,
            ..ResNetSpec::default()
        },
        3,
        2,
    );
    let (status, _) = app
        .post_raw(
            "/v1/weights?name=narrow",
            "application/octet-stream",
            resnet_formula::safetensors_bytes(&state),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let import = |model: Value, input: Value, labels: Value| json!({"name": "shapes", "model": model, "weights": "narrow", "input": input, "labels": labels});
    let image = json!({"image": {"shape": [3, 16, 16]}});
    let cases = [
        (
            json!({"name": "0190f5a4-6c1e-7a3b-9d2e-1f0a2b3c4d5e", "from_job": "x"}),
            "name",
        ),
        (json!({"name": "bad name!", "from_job": "x"}), "name"),
        (json!({"name": "empty"}), "from_job"),
        (
            import(
                json!({"kind": "resnet18"}),
                image.clone(),
                json!(["a", "b"]),
            ),
            "weights",
        ),
        (
            import(
                json!({"kind": "resnet18", "width": 8}),
                json!({"features": ["a"], "image": {"shape": [3, 16, 16]}}),
                json!(["a", "b"]),
            ),
            "input",
        ),
        (
            import(
                json!({"kind": "resnet18", "width": 8}),
                image.clone(),
                json!(["only"]),
            ),
            "labels",
        ),
        (
            import(
                json!({"kind": "resnet18", "width": 8}),
                json!({"image": {"shape": [3, 16, 16], "normalize": {"mean": [0.5], "std": [0.2]}}}),
                json!(["a", "b"]),
            ),
            "input.image.normalize",
        ),
        (
            import(
                json!({"kind": "resnet18", "width": 8, "depth": 3}),
                image.clone(),
                json!(["a", "b"]),
            ),
            "model.depth",
        ),
        (
            json!({"name": "digits", "from_job": "x", "batching": {"max_batch_size": 0}}),
            "batching.max_batch_size",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = app.post("/v1/models", body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {answer}"
        );
        assert_eq!(answer["field"], field, "{body} -> {answer}");
    }
    // Weights that do not fit list what is missing.
    let (_, answer) = app
        .post(
            "/v1/models",
            import(
                json!({"kind": "resnet18"}),
                image.clone(),
                json!(["a", "b"]),
            ),
        )
        .await;
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("layer1.0.conv1.weight"),
        "{answer}"
    );

    let (status, version) = app
        .post(
            "/v1/models",
            import(
                json!({"kind": "resnet18", "width": 8}),
                image,
                json!(["a", "b"]),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{version}");
    let bad_rows = [
        (json!({"inputs": [[1.0, 2.0]]}), "inputs[0]"),
        (json!({"inputs": [vec![0.5; 768]], "top_k": 3}), "top_k"),
        (
            json!({"inputs": [vec![0.5; 768]], "checkpoint": "best"}),
            "checkpoint",
        ),
    ];
    for (body, field) in bad_rows {
        let (status, answer) = app.post("/v1/models/shapes/predict", body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["field"], field, "{answer}");
    }
    for path in [
        "/v1/models/shapes/versions/7/predict",
        "/v1/models/shapes@prod/predict",
    ] {
        let (status, answer) = app.post(path, json!({"inputs": [vec![0.5; 768]]})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {answer}");
    }
    let (status, answer) = put(
        &app,
        "/v1/models/shapes/aliases/prod",
        json!({"version": 9}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_a_forward_pass_and_a_full_queue_answers_429_at_once() {
    let app = TestApp::spawn().await;
    let job = app.submit(digits_spec(1, 64)).await;
    assert_eq!(app.wait_for_end(&job).await["status"], "succeeded");
    // Requests wait up to 300 ms for company, so eight sent together run as one batch.
    let (status, body) = app
        .post(
            "/v1/models",
            json!({"name": "batched", "from_job": job,
                   "batching": {"max_batch_size": 8, "max_queue_delay_us": 300000, "max_queue_rows": 8}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let before = batch_rows(&app).await;
    let rows = digit_rows(1);
    let requests = (0..8).map(|_| app.post("/v1/models/batched/predict", json!({"inputs": rows})));
    let answers = futures_util::future::join_all(requests).await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    let after = batch_rows(&app).await;
    assert_eq!(
        after.0 - before.0,
        1.0,
        "eight requests, one forward pass: {before:?} -> {after:?}"
    );
    assert_eq!(after.1 - before.1, 8.0);

    // Seven rows wait for company; two more would overfill the queue of eight.
    let waiting = app.post(
        "/v1/models/batched/predict",
        json!({"inputs": digit_rows(7)}),
    );
    let late = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        app.http()
            .post(app.url("/v1/models/batched/predict"))
            .json(&json!({"inputs": digit_rows(2)}))
            .send()
            .await
            .unwrap()
    };
    let ((status, _), refused) = tokio::join!(waiting, late);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
}

/// The count and sum of model `batched`'s batch-size histogram in `/metrics`.
async fn batch_rows(app: &TestApp) -> (f64, f64) {
    let text = app
        .http()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    (
        value("trainserve_prediction_batch_rows_count{model=\"batched\"}"),
        value("trainserve_prediction_batch_rows_sum{model=\"batched\"}"),
    )
}
