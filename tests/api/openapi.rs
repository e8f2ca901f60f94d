//! `openapi.yaml` is the contract: the router must answer exactly the operations it lists.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};

use crate::helpers::{Api, TestApp};

/// The spec as a strict YAML parser reads it: a scalar with an unquoted `: `, a duplicate key
/// or a tab where YAML forbids one fails the test here, as it fails schemathesis and PyYAML.
fn parsed_spec() -> serde_json::Value {
    serde_yaml_ng::from_str(trainserve::api::OPENAPI_YAML)
        .unwrap_or_else(|err| panic!("openapi.yaml is not valid YAML: {err}"))
}

/// (METHOD, path) pairs of the spec's `paths`.
fn spec_operations() -> BTreeSet<(String, String)> {
    let spec = parsed_spec();
    let paths = spec["paths"].as_object().expect("a `paths` mapping");
    let mut operations = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item mapping");
        for method in item.keys() {
            if [
                "get", "post", "put", "patch", "delete", "head", "options", "trace",
            ]
            .contains(&method.as_str())
            {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[test]
fn the_spec_is_strict_yaml_of_openapi_3_1() {
    let spec = parsed_spec();
    assert!(
        spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1, got {}",
        spec["openapi"]
    );
    assert!(spec["info"]["title"].is_string() && spec["info"]["version"].is_string());
    // Every local reference points at something.
    let mut refs = Vec::new();
    collect_refs(&spec, &mut refs);
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references: {reference}"));
        assert!(spec.pointer(pointer).is_some(), "dangling $ref {reference}");
    }
}

fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_spec_lists_exactly_the_routes_the_router_serves() {
    let in_spec = spec_operations();
    let routed: BTreeSet<(String, String)> = trainserve::api::ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
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
    for (method, path) in spec_operations() {
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
    let (status, served) = app.get("/openapi.yaml").await;
    assert_eq!(status, StatusCode::OK);
    let served: serde_json::Value = serde_yaml_ng::from_str(served.as_str().expect("YAML text"))
        .expect("the served spec is valid YAML");
    assert_eq!(served, parsed_spec());
}
