//! Tokens and scopes: every route's access decision, ownership, and the bind policy.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, WithToken, decode, digits_spec};

/// Who may call each route. A route added to the router without a line here fails
/// `every_route_has_the_access_decision_this_table_records`: every new route needs a decision.
const DECISIONS: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "open"),
    ("GET", "/readyz", "open"),
    ("GET", "/openapi.yaml", "open"),
    ("GET", "/metrics", "read"),
    ("POST", "/v1/jobs", "train"),
    ("GET", "/v1/jobs", "read"),
    ("GET", "/v1/jobs/{id}", "read"),
    ("DELETE", "/v1/jobs/{id}", "train"),
    ("POST", "/v1/jobs/{id}/cancel", "train"),
    ("PUT", "/v1/jobs/{id}/pin", "train"),
    ("DELETE", "/v1/jobs/{id}/pin", "train"),
    ("GET", "/v1/jobs/{id}/metrics", "read"),
    ("GET", "/v1/jobs/{id}/steps", "read"),
    ("GET", "/v1/jobs/{id}/gradients", "read"),
    ("GET", "/v1/jobs/{id}/checkpoints", "read"),
    ("GET", "/v1/jobs/{id}/events", "read"),
    ("GET", "/v1/jobs/{id}/diagnosis", "read"),
    ("GET", "/v1/jobs/{id}/plots/curves.svg", "read"),
    ("GET", "/v1/jobs/{id}/plots/curves.png", "read"),
    ("GET", "/v1/jobs/{id}/plots/gradients.svg", "read"),
    ("GET", "/v1/jobs/{id}/plots/gradients.png", "read"),
    ("POST", "/v1/datasets", "train"),
    ("GET", "/v1/datasets", "read"),
    ("GET", "/v1/datasets/{id}", "read"),
    ("PATCH", "/v1/datasets/{id}", "train"),
    ("DELETE", "/v1/datasets/{id}", "train"),
    ("GET", "/v1/datasets/{id}/samples/{index}.png", "read"),
    ("POST", "/v1/weights", "train"),
    ("GET", "/v1/weights", "read"),
    ("GET", "/v1/weights/{id}", "read"),
    ("DELETE", "/v1/weights/{id}", "train"),
    ("POST", "/v1/models", "train"),
    ("GET", "/v1/models", "read"),
    ("GET", "/v1/models/{model}", "read"),
    ("GET", "/v1/models/{model}/versions/{version}", "read"),
    ("DELETE", "/v1/models/{model}/versions/{version}", "train"),
    ("PUT", "/v1/models/{model}/aliases/{alias}", "train"),
    ("DELETE", "/v1/models/{model}/aliases/{alias}", "train"),
    ("POST", "/v1/models/{model}/predict", "predict"),
    (
        "POST",
        "/v1/models/{model}/versions/{version}/predict",
        "predict",
    ),
    ("POST", "/v1/echo", "predict"),
    ("POST", "/v1/studies", "train"),
    ("GET", "/v1/studies", "read"),
    ("GET", "/v1/studies/{id}", "read"),
    ("DELETE", "/v1/studies/{id}", "train"),
    ("POST", "/v1/studies/{id}/cancel", "train"),
    ("POST", "/v1/studies/{id}/resume", "train"),
    ("GET", "/v1/studies/{id}/report.html", "read"),
    ("GET", "/v1/studies/{id}/report.md", "read"),
    ("GET", "/v1/studies/{id}/report.zip", "read"),
    ("POST", "/v1/lr-finder", "train"),
    ("GET", "/v1/lr-finder", "read"),
    ("GET", "/v1/lr-finder/{id}", "read"),
    ("DELETE", "/v1/lr-finder/{id}", "train"),
    ("GET", "/v1/lr-finder/{id}/plot.svg", "read"),
    ("GET", "/v1/lr-finder/{id}/plot.png", "read"),
    ("POST", "/v1/sweeps", "train"),
    ("GET", "/v1/sweeps", "read"),
    ("GET", "/v1/sweeps/{id}", "read"),
    ("DELETE", "/v1/sweeps/{id}", "train"),
    ("POST", "/v1/sweeps/{id}/cancel", "train"),
    ("POST", "/v1/sweeps/{id}/resume", "train"),
    ("GET", "/v1/sweeps/{id}/plot.svg", "read"),
    ("GET", "/v1/sweeps/{id}/plot.png", "read"),
    ("GET", "/v1/compare", "read"),
    ("GET", "/v1/compare/disagreements", "read"),
    ("GET", "/v1/compare/plot.svg", "read"),
    ("GET", "/v1/compare/plot.png", "read"),
    ("GET", "/v1/compare/noise.svg", "read"),
    ("GET", "/v1/compare/noise.png", "read"),
    ("GET", "/v1/compare/disagreements.svg", "read"),
    ("GET", "/v1/compare/disagreements.png", "read"),
    ("GET", "/v1/usage", "read"),
    ("POST", "/v1/tokens", "admin"),
    ("GET", "/v1/tokens", "admin"),
    ("DELETE", "/v1/tokens/{id}", "admin"),
    ("GET", "/v2", "open"),
    ("GET", "/v2/health/live", "open"),
    ("GET", "/v2/health/ready", "open"),
    ("GET", "/v2/models/{model}", "predict"),
    ("GET", "/v2/models/{model}/ready", "predict"),
    ("POST", "/v2/models/{model}/infer", "predict"),
    ("GET", "/v2/models/{model}/versions/{version}", "predict"),
    (
        "GET",
        "/v2/models/{model}/versions/{version}/ready",
        "predict",
    ),
    (
        "POST",
        "/v2/models/{model}/versions/{version}/infer",
        "predict",
    ),
];

#[test]
fn every_route_has_the_access_decision_this_table_records() {
    let routed: BTreeSet<(String, String, String)> = trainserve::api::ROUTES
        .iter()
        .map(|(m, p, a)| {
            (
                m.to_string(),
                p.to_string(),
                format!("{a:?}").to_lowercase(),
            )
        })
        .collect();
    let decided: BTreeSet<(String, String, String)> = DECISIONS
        .iter()
        .map(|(m, p, a)| (m.to_string(), p.to_string(), a.to_string()))
        .collect();
    let undecided: Vec<_> = routed.difference(&decided).collect();
    let stale: Vec<_> = decided.difference(&routed).collect();
    assert!(
        undecided.is_empty() && stale.is_empty(),
        "routes whose access differs from (or is missing in) this table: {undecided:?}; \
         decisions for routes that are not served so: {stale:?}"
    );
}

/// Whether a token with `scope` may call a route that needs `needs`.
fn allows(scope: &str, needs: &str) -> bool {
    needs == "open" || scope == "admin" || scope == needs || (scope == "train" && needs == "read")
}

/// The route's path with its parameters filled in: ids that name nothing.
fn concrete(path: &str) -> String {
    let nothing = "0190a2d4-7e41-7c3a-9b2e-5f0e1d2c3b4a";
    path.replace("{id}", nothing)
        .replace("{model}", nothing)
        .replace("{index}", "0")
}

pub(crate) async fn call(
    client: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
) -> (StatusCode, Value) {
    let url = format!("{base}{}", concrete(path));
    let request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url).json(&json!({})),
        "PUT" => client.put(url).json(&json!({})),
        "PATCH" => client.patch(url).json(&json!({})),
        "DELETE" => client.delete(url),
        other => panic!("no test for method {other}"),
    };
    decode(request.send().await.expect("the request is answered")).await
}

#[tokio::test]
async fn every_route_answers_every_scope_as_its_decision_says() {
    let app = TestApp::spawn().await;
    let mut tokens = Vec::new();
    for scope in ["admin", "train", "predict", "read"] {
        tokens.push((scope, app.token(&[scope], None).await));
    }
    let anonymous = reqwest::Client::new();
    for &(method, path, needs) in DECISIONS {
        let (status, body) = call(&anonymous, &app.base, method, path).await;
        if needs == "open" {
            assert!(
                status.is_success(),
                "{method} {path} without a token: {status} {body}"
            );
        } else {
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a token: {body}"
            );
            assert_eq!(body["code"], "unauthorized", "{body}");
        }
        for (scope, token) in &tokens {
            let (status, body) = call(&token.client, &app.base, method, path).await;
            if allows(scope, needs) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{method} {path} with a '{scope}' token: {status} {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} with a '{scope}' token: {body}"
                );
                assert_eq!(body["code"], "forbidden", "{body}");
                assert!(body["error"].as_str().unwrap().contains(needs), "{body}");
            }
        }
    }
}

#[tokio::test]
async fn a_service_without_tokens_is_open_and_the_first_token_closes_it() {
    let app = TestApp::spawn().await;
    let (status, _) = app.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let reader = app.token(&["read"], None).await;
    // "No tokens" is trusted for a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = app.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = reader.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK, "health checks stay open");
}

/// A small job of `who`'s, run to the end.
async fn finished_job(who: &WithToken) -> String {
    let id = who.submit(digits_spec(1, 64)).await;
    let job = who.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    id
}

#[tokio::test]
async fn another_owners_job_is_a_404_to_read_cancel_compare_and_predict() {
    let app = TestApp::spawn().await;
    let alice = app.token(&["train"], Some("alice")).await;
    let alice_predicts = app.token(&["predict"], Some("alice")).await;
    let bob = app.token(&["train"], Some("bob")).await;
    let bob_predicts = app.token(&["predict"], Some("bob")).await;
    let admin = app.token(&["admin"], None).await;
    let id = finished_job(&alice).await;

    for path in [
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/metrics"),
        format!("/v1/jobs/{id}/checkpoints"),
        format!("/v1/jobs/{id}/plots/curves.svg"),
        format!("/v1/compare?jobs={id}"),
    ] {
        let (status, body) = bob.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        let (status, _) = alice.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let (status, _) = admin.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (status, body) = bob.post(&format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "not_found");

    let (_, listed) = bob.get("/v1/jobs").await;
    assert_eq!(
        listed["total"], 0,
        "bob lists none of alice's jobs: {listed}"
    );
    let (_, listed) = alice.get("/v1/jobs").await;
    assert_eq!(listed["total"], 1, "{listed}");
    let (_, listed) = admin.get("/v1/jobs").await;
    assert_eq!(listed["total"], 1, "{listed}");

    let row = json!({"inputs": [vec![0.0; 64]]});
    let (status, body) = alice_predicts
        .post(&format!("/v1/models/{id}/predict"), row.clone())
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "alice's predict token serves alice's model: {body}"
    );
    let (status, _) = bob_predicts
        .post(&format!("/v1/models/{id}/predict"), row)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Nor pin, nor delete it; usage shows each owner only what is theirs.
    let response = bob
        .client
        .put(app.url(&format!("/v1/jobs/{id}/pin")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = bob
        .client
        .delete(app.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (_, usage) = bob.get("/v1/usage").await;
    assert_eq!(usage["totals"]["jobs"]["count"], 0, "{usage}");
    assert!(usage.get("data_dir_bytes").is_none(), "{usage}");
    assert_eq!(usage["owners"].as_array().unwrap().len(), 1, "{usage}");
    assert_eq!(usage["owners"][0]["owner"], "bob");
    let (_, usage) = alice.get("/v1/usage").await;
    assert_eq!(usage["totals"]["jobs"]["count"], 1, "{usage}");
    assert!(usage["owners"][0]["bytes"].as_u64().unwrap() > 0, "{usage}");
    let (_, usage) = admin.get("/v1/usage").await;
    let owners: Vec<&str> = usage["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["owner"].as_str().unwrap())
        .collect();
    assert!(
        owners.contains(&"alice") && owners.contains(&"bob"),
        "{usage}"
    );

    // Bob cannot start from alice's job either: it is unknown to him.
    let spec = json!({"dataset": "shapes", "init": {"mode": "fine_tune", "from_job": id},
        "model": {"kind": "cnn", "blocks": [{"channels": 4}], "head": {"depth": 1, "width": 8}},
        "training": {"epochs": 1}});
    let (status, body) = bob.post("/v1/jobs", spec).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "init.from_job");

    let response = alice
        .client
        .delete(app.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "alice deletes her own job"
    );
}

#[tokio::test]
async fn data_sets_are_their_owners_and_built_ins_are_everyones() {
    let app = TestApp::spawn().await;
    let alice = app.token(&["train"], Some("alice")).await;
    let bob = app.token(&["train"], Some("bob")).await;
    let synthetic = json!({"name": "alices-blobs", "synthetic": {"kind": "regions", "samples": 200, "classes": 2, "seed": 1}});
    let (status, body) = alice.post("/v1/datasets", synthetic).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = bob.get("/v1/datasets/alices-blobs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = bob.get("/v1/datasets").await;
    let names: Vec<&str> = listed["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"digits") && !names.contains(&"alices-blobs"),
        "{names:?}"
    );
    let mut spec = digits_spec(1, 64);
    spec["dataset"] = json!("alices-blobs");
    let (status, body) = bob.post("/v1/jobs", spec.clone()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "dataset");

    // Shared with every token: bob sees it and trains on it, but only alice may change it.
    let (status, body) = bob
        .patch("/v1/datasets/alices-blobs", json!({"public": true}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = alice
        .patch("/v1/datasets/alices-blobs", json!({"public": true}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["public"], true);
    let (status, _) = bob.get("/v1/datasets/alices-blobs").await;
    assert_eq!(status, StatusCode::OK);
    spec["model"] = json!({"kind": "mlp", "depth": 1, "width": 8});
    let (status, body) = bob.post("/v1/jobs", spec).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = bob
        .patch("/v1/datasets/alices-blobs", json!({"public": false}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = alice
        .patch("/v1/datasets/digits", json!({"public": false}))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "built-ins are no one's to change: {body}"
    );
}

#[tokio::test]
async fn priorities_above_the_limit_need_admin() {
    let app = TestApp::spawn_with(|config| config.max_priority = 5).await;
    let trainer = app.token(&["train"], None).await;
    let admin = app.token(&["admin"], None).await;
    let mut spec = digits_spec(1, 64);
    spec["priority"] = json!(2_147_483_647);
    let (status, body) = trainer.post("/v1/jobs", spec.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("priority"),
        "{body}"
    );
    let (status, body) = admin.post("/v1/jobs", spec).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
