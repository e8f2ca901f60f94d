//! Tokens themselves: their shape and revocation, the `tokens` command, their management over
//! HTTP, and the bind policy that depends on them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::access::call;
use crate::helpers::{Api, TestApp, client_with_token, decode};

#[tokio::test]
async fn malformed_unknown_and_revoked_tokens_are_401s_that_say_why() {
    let app = TestApp::spawn().await;
    let good = app.token(&["read"], None).await;
    let www = |headers: &reqwest::header::HeaderMap| {
        headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string())
    };
    for header in [
        "Basic abc",
        "Bearer",
        "Bearer tsk_nothex_zz",
        "Bearer tsk_0011223344556677_00",
    ] {
        let response = app
            .client
            .get(app.url("/v1/jobs"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header}");
        assert!(www(response.headers()).unwrap().starts_with("Bearer"));
        let (_, body) = decode(response).await;
        assert_eq!(body["code"], "unauthorized", "{body}");
    }
    // The right id with a wrong secret.
    let (id, _) = good
        .token
        .trim_start_matches("tsk_")
        .split_once('_')
        .unwrap();
    let forged = format!("tsk_{id}_{}", "0".repeat(64));
    let (status, _) = call(&client_with_token(&forged), &app.base, "GET", "/v1/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let store = trainserve::store::Store::open(&app.dir.path().join("trainserve.db"))
        .await
        .unwrap();
    assert!(store.revoke_token(id).await.unwrap());
    store.close().await;
    // A revocation by another process (the tokens command) takes effect within a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = good.get("/v1/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked token: {body}");
}

/// Runs the server binary with `args`; its exit status if it stops within `wait`, else
/// `None` (it was killed) and what it wrote on standard error.
fn run_binary(args: &[&str], wait: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainserve"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > wait {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    (status, text)
}

#[test]
fn binding_beyond_loopback_without_tokens_is_refused_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (status, text) = run_binary(
        &["--bind", "0.0.0.0:0", "--data-dir", data],
        Duration::from_secs(20),
    );
    let status = status.expect("the server exits instead of serving");
    assert!(!status.success());
    assert!(
        text.contains("--insecure-no-auth") && text.contains("tokens create"),
        "{text}"
    );

    let (status, text) = run_binary(
        &[
            "--bind",
            "0.0.0.0:0",
            "--data-dir",
            data,
            "--insecure-no-auth",
        ],
        Duration::from_secs(3),
    );
    assert!(
        status.is_none(),
        "it serves with --insecure-no-auth: {text}"
    );
    assert!(text.contains("--insecure-no-auth"), "and warns: {text}");

    let (status, token) = run_binary(
        &[
            "tokens",
            "create",
            "--scope",
            "admin",
            "--name",
            "first",
            "--data-dir",
            data,
        ],
        Duration::from_secs(20),
    );
    assert!(status.unwrap().success(), "{token}");
    assert!(token.contains("tsk_"), "{token}");
    let (status, text) = run_binary(
        &["--bind", "0.0.0.0:0", "--data-dir", data],
        Duration::from_secs(3),
    );
    assert!(status.is_none(), "with a token in force it serves: {text}");
}

#[test]
fn the_tokens_command_creates_lists_and_revokes_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let tokens = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_trainserve"))
            .arg("tokens")
            .args(args)
            .args(["--data-dir", data, "--json"])
            .output()
            .expect("the binary runs");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        (
            output.status.success(),
            text,
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let (ok, text, err) = tokens(&[
        "create",
        "--scope",
        "train,predict",
        "--name",
        "ci",
        "--quota",
        "active_jobs=2",
    ]);
    assert!(ok, "{err}");
    let made: Value = serde_json::from_str(&text).unwrap();
    assert!(made["token"].as_str().unwrap().starts_with("tsk_"));
    assert_eq!(made["scopes"], json!(["train", "predict"]));
    assert_eq!(made["quotas"]["active_jobs"], 2);
    let id = made["id"].as_str().unwrap();

    let (ok, text, _) = tokens(&["list"]);
    assert!(ok);
    assert!(
        !text.contains(made["token"].as_str().unwrap()),
        "lists never show secrets"
    );
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed["tokens"][0]["id"], id);
    assert!(listed["tokens"][0]["revoked_at"].is_null());

    let (ok, _, err) = tokens(&["revoke", id]);
    assert!(ok, "{err}");
    let (ok, _, err) = tokens(&["revoke", id]);
    assert!(!ok && err.contains("already revoked"), "{err}");
    let (ok, _, err) = tokens(&["create", "--scope", "root"]);
    assert!(
        !ok && err.contains("valid: admin, train, predict, read"),
        "{err}"
    );
    let (_, text, _) = tokens(&["list"]);
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert!(listed["tokens"][0]["revoked_at"].is_string());
}

#[tokio::test]
async fn an_admin_token_makes_lists_and_revokes_tokens_over_http() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["admin"], None).await;
    let (status, made) = admin
        .post("/v1/tokens", json!({"scopes": ["read"], "name": "dashboard", "owner": "alice", "quotas": {"requests_per_second": 5}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["owner"], "alice");
    assert_eq!(made["quotas"]["requests_per_second"], 5);
    let token = made["token"].as_str().unwrap();
    let id = made["id"].as_str().unwrap();
    let reader = client_with_token(token);
    let (status, _) = call(&reader, &app.base, "GET", "/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);

    let (status, listed) = admin.get("/v1/tokens").await;
    assert_eq!(status, StatusCode::OK);
    let text = listed.to_string();
    assert!(
        text.contains("dashboard") && !text.contains(token),
        "no secrets in lists: {text}"
    );

    let (status, body) = admin.post("/v1/tokens", json!({"scopes": ["root"]})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = admin.post("/v1/tokens", json!({"scopes": []})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "scopes");

    let response = admin
        .client
        .delete(app.url(&format!("/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _) = call(&reader, &app.base, "GET", "/v1/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once");
    let response = admin
        .client
        .delete(app.url(&format!("/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
}
