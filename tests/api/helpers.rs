//! A real server per test: fresh data folder, random port, spoken to over HTTP.

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use trainserve::config::Config;
use trainserve::startup::Application;

/// An in-process server on a random port with its own data folder.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<trainserve::error::Result<()>>,
}

type Server = (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<trainserve::error::Result<()>>,
);

/// Starts a server on `dir` with the test defaults and `adjust`.
async fn start(dir: &Path, adjust: impl FnOnce(&mut Config)) -> Server {
    let mut config = Config::with_data_dir(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.heartbeat_seconds = 1;
    adjust(&mut config);
    let app = Application::build(config).await.expect("the app builds");
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    (base, stop, server)
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("a temp dir");
        let (base, stop, server) = start(dir.path(), adjust).await;
        TestApp {
            base,
            client: reqwest::Client::new(),
            dir,
            stop: Some(stop),
            server,
        }
    }

    /// Stops the server, waits until it has stopped, and starts another on the same data
    /// folder with the test defaults and `adjust`.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut Config)) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        let (base, stop, server) = start(self.dir.path(), adjust).await;
        self.base = base;
        self.stop = Some(stop);
        self.server = server;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client of a server at `base`.
pub trait Api {
    fn base(&self) -> &str;
    fn http(&self) -> &reqwest::Client;

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self
            .http()
            .get(format!("{}{}", self.base(), path))
            .send()
            .await
            .expect("GET");
        decode(response).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http()
            .post(format!("{}{}", self.base(), path))
            .json(&body)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .http()
            .patch(format!("{}{}", self.base(), path))
            .json(&body)
            .send()
            .await
            .expect("PATCH");
        decode(response).await
    }

    async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .http()
            .post(format!("{}{}", self.base(), path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }

    /// Submits a job and returns its id.
    async fn submit(&self, spec: Value) -> String {
        let (status, body) = self.post("/v1/jobs", spec).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("an id").to_string()
    }

    /// Polls a job until `done` holds for it.
    async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        loop {
            let (status, job) = self.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{job}");
            if done(&job) {
                return job;
            }
            assert!(
                started.elapsed() < timeout,
                "gave up waiting on job {id}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls a job until it has ended.
    async fn wait_for_end(&self, id: &str) -> Value {
        self.wait_until(id, Duration::from_secs(120), |job| {
            matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        })
        .await
    }
}

impl Api for TestApp {
    fn base(&self) -> &str {
        &self.base
    }
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
}

pub async fn decode(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// A digits MLP spec with a few overrides.
pub fn digits_spec(epochs: u32, batch_size: u32) -> Value {
    json!({
        "dataset": "digits",
        "model": {"kind": "mlp", "depth": 2, "width": 64},
        "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": epochs, "batch_size": batch_size, "seed": 7}
    })
}

/// The server binary as a separate process, for kill tests.
pub struct ServerProcess {
    pub base: String,
    pub client: reqwest::Client,
    pub child: Child,
}

impl ServerProcess {
    pub async fn start(data_dir: &Path) -> ServerProcess {
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_trainserve"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--heartbeat-seconds")
            .arg("1")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server binary starts");
        let server = ServerProcess {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            child,
        };
        wait_until_ready(&server.client, &server.base).await;
        server
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill_hard(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then wait (bounded) for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "the server did not exit within {within:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api for ServerProcess {
    fn base(&self) -> &str {
        &self.base
    }
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Polls `GET /readyz` of a server just started until it answers 200 (30 s at most).
pub async fn wait_until_ready(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status())
        .ok()
        != Some(StatusCode::OK)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn data_dir(dir: &TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// A client that sends a token with every request.
pub struct WithToken {
    pub base: String,
    pub client: reqwest::Client,
    /// The token itself.
    pub token: String,
}

impl Api for WithToken {
    fn base(&self) -> &str {
        &self.base
    }
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
}

impl TestApp {
    /// Makes a token in this server's database, as `trainserve tokens create` does, and a
    /// client that sends it. `owner` shares resources with other tokens of that owner.
    pub async fn token(&self, scopes: &[&str], owner: Option<&str>) -> WithToken {
        self.token_with(scopes, owner, &[]).await
    }

    /// As [`TestApp::token`], with quota overrides (`NAME=VALUE`).
    pub async fn token_with(
        &self,
        scopes: &[&str],
        owner: Option<&str>,
        quotas: &[&str],
    ) -> WithToken {
        use trainserve::domain::{QuotaOverrides, Scope};
        let store = trainserve::store::Store::open(&self.dir.path().join("trainserve.db"))
            .await
            .expect("the database opens");
        let mut overrides = QuotaOverrides::default();
        for quota in quotas {
            overrides.set(quota).expect("a valid quota");
        }
        let (token, _) = trainserve::access::create_token(
            &store,
            trainserve::access::TokenRequest {
                name: None,
                owner: owner.map(str::to_string),
                scopes: scopes
                    .iter()
                    .map(|s| Scope::parse(s).expect("a scope"))
                    .collect(),
                quotas: overrides,
            },
        )
        .await
        .expect("a token");
        store.close().await;
        WithToken {
            base: self.base.clone(),
            client: client_with_token(&token),
            token,
        }
    }
}

/// A client whose every request carries `Authorization: Bearer <token>`.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client")
}

/// The first `n` rows of the built-in digits data set: 64 raw pixel values (0 to 16) each.
pub fn digit_rows(n: usize) -> Vec<Vec<f64>> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv")).unwrap();
    text.lines()
        .skip(1)
        .take(n)
        .map(|line| {
            line.split(',')
                .take(64)
                .map(|v| v.parse().unwrap())
                .collect()
        })
        .collect()
}
