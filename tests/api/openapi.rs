//! `openapi.yaml` is the contract: the router must answer exactly the operations it lists.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};

use crate::helpers::{Api, TestApp};

/// (METHOD, path) pairs under `paths:` — paths at two spaces of indentation, methods at four.
fn spec_operations(yaml: &str) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    let mut in_paths = false;
    let mut path = None;
    for line in yaml.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(rest) = line.strip_prefix("  ").filter(|r| !r.starts_with(' ')) {
            path = rest
                .strip_suffix(':')
                .map(|p| p.trim_matches(|c| c == '"' || c == '\'').to_string());
        } else if let Some(rest) = line.strip_prefix("    ").filter(|r| !r.starts_with(' ')) {
            let key = rest.trim_end().trim_end_matches(':');
            if ["get", "post", "put", "patch", "delete", "head", "options"].contains(&key) {
                operations.insert((
                    key.to_uppercase(),
                    path.clone().expect("a method under a path"),
                ));
            }
        }
    }
    operations
}

#[test]
fn the_spec_lists_exactly_the_routes_the_router_serves() {
    let yaml = trainserve::api::OPENAPI_YAML;
    assert!(yaml.starts_with("openapi: 3.1"), "OpenAPI 3.1");
    let in_spec = spec_operations(yaml);
    let routed: BTreeSet<(String, String)> = trainserve::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&in_spec).collect();
    let extra: Vec<_> = in_spec.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routed but not in the spec: {missing:?}; in the spec but not routed: {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_in_the_spec_is_wired_to_a_handler() {
    let app = TestApp::spawn().await;
    for (method, path) in spec_operations(trainserve::api::OPENAPI_YAML) {
        let concrete = path
            .replace("{id}", "0190aaaa-0000-7000-8000-000000000000")
            .replace("{model}", "0190aaaa-0000-7000-8000-000000000000")
            .replace("{index}", "0");
        let method: Method = method.parse().unwrap();
        let response = app
            .client
            .request(method.clone(), app.url(&concrete))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: serde_json::Value = if path.ends_with("/events") || path.ends_with(".yaml") {
            serde_json::Value::Null
        } else {
            response.json().await.unwrap_or_default()
        };
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(body["code"], "route_not_found", "{method} {path}");
    }
    let (status, _) = app.get("/openapi.yaml").await;
    assert_eq!(status, StatusCode::OK);
}
