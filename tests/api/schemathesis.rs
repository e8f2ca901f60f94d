//! Schemathesis over the served contract: the real binary on a random port, its own
//! `/openapi.yaml` loaded from the URL, every check on. No server error, no response outside
//! the contract, no valid request refused and no invalid one accepted.
//!
//! `.ci/run` installs a pinned schemathesis into `.venv-ci` and exports `SCHEMATHESIS` with the
//! path of its binary. Under `CI=true` a missing schemathesis fails this test; elsewhere it is
//! skipped with a line saying how to install it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Test cases per operation and phase: enough to walk every constraint's edges, small enough
/// for the whole run (about 5,000 requests) to take two to three minutes on two busy cores.
const MAX_EXAMPLES: &str = "20";
/// A fixed seed: a failure found in CI reproduces locally with the same command.
const SEED: &str = "20261203";

fn schemathesis() -> Option<PathBuf> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let found = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .or_else(|| {
            let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-ci/bin/schemathesis");
            local.exists().then_some(local)
        })
        .filter(|path| path.exists());
    match found {
        Some(path) => Some(path),
        None if ci => panic!(
            "CI=true but schemathesis is missing: .ci/run installs it into .venv-ci and exports \
             SCHEMATHESIS (SCHEMATHESIS={:?})",
            std::env::var_os("SCHEMATHESIS")
        ),
        None => {
            println!(
                "skipped: schemathesis is not installed; run `python3 -m venv .venv-ci && \
                 .venv-ci/bin/pip install schemathesis==4.32.5` (or .ci/run), or set SCHEMATHESIS"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_contract_failure() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let data = tempfile::tempdir().expect("a temp dir");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // With a token in force, as a service others call runs: schemathesis sends it with every
    // request, and its `ignored_auth` check proves a request without it is refused.
    let made = Command::new(env!("CARGO_BIN_EXE_trainserve"))
        .args([
            "tokens",
            "create",
            "--scope",
            "admin",
            "--name",
            "schemathesis",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("the tokens command runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let token = String::from_utf8(made.stdout).unwrap().trim().to_string();
    // One worker slot on one core: jobs that the fuzzer submits queue behind each other and
    // leave the other core to the server and schemathesis.
    let mut server = Command::new(env!("CARGO_BIN_EXE_trainserve"))
        .arg("--data-dir")
        .arg(data.path())
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--worker-slots", "1", "--threads-per-job", "1"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    crate::helpers::wait_until_ready(&client, &base).await;

    let report = data.path().join("schemathesis-report");
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/schemathesis.toml");
    let args: Vec<String> = vec![
        // Which operations may answer a schema-valid request with a 422, and why.
        "--config-file".into(),
        config.into(),
        "run".into(),
        format!("{base}/openapi.yaml"),
        "--checks".into(),
        "all".into(),
        "--max-examples".into(),
        MAX_EXAMPLES.into(),
        "--seed".into(),
        SEED.into(),
        // The stateful phase follows the links a POST's answer implies; it would open a job's
        // event stream, which by design stays open until the job ends (minutes here). The other
        // three phases exercise every operation.
        "--phases".into(),
        "examples,coverage,fuzzing".into(),
        "--request-timeout".into(),
        "20".into(),
        "--generation-database".into(),
        "none".into(),
        "--report-dir".into(),
        report.display().to_string(),
        "--no-color".into(),
        "--header".into(),
        format!("Authorization: Bearer {token}"),
    ];
    let work = data.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&schemathesis)
            .args(&args)
            // Its own files (.schemathesis/) go to the temporary folder, not the repository.
            .current_dir(&work)
            .output()
    })
    .await
    .unwrap()
    .expect("schemathesis runs");
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .rev()
        .find(|line| line.contains(" in ") && line.starts_with('='))
        .unwrap_or("(no summary line)");
    println!("schemathesis: {summary}");
    assert!(
        output.status.success(),
        "schemathesis found contract failures ({summary}):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
