//! The command line (`trainserve submit`, `jobs`, `watch`, ...): the built binary run against a
//! real server, its output and exit code read as a script would.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, digit_rows, digits_spec};

/// Runs `trainserve ARGS --server SERVER` (with no token or server from the environment) and
/// waits for it, at most a minute.
async fn trainserve(server: &str, args: &[&str]) -> Output {
    trainserve_with(server, args, &[]).await
}

async fn trainserve_with(server: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_trainserve"));
    command
        .args(args)
        .args(["--server", server])
        .env_remove("TRAINSERVE_TOKEN")
        .env_remove("TRAINSERVE_SERVER")
        .envs(env.iter().copied())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command ends within a minute")
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The exit code, with both streams in the message when an assertion on it fails.
fn code(output: &Output) -> (Option<i32>, String) {
    (
        output.status.code(),
        format!("stdout:\n{}\nstderr:\n{}", stdout(output), stderr(output)),
    )
}

fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

/// Submits a small digits job over HTTP and waits for it to end.
async fn finished_job(app: &TestApp, lr: f64) -> String {
    let mut spec = digits_spec(2, 64);
    spec["training"]["optimizer"]["lr"] = json!(lr);
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_with_watch_follows_the_job_to_success_and_prints_its_final_metrics() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_json(dir.path(), "job.json", &digits_spec(3, 64));

    let output = trainserve(&app.base, &["submit", spec.to_str().unwrap(), "--watch"]).await;

    let (exit, streams) = code(&output);
    assert_eq!(exit, Some(0), "{streams}");
    let text = stdout(&output);
    for epoch in ["epoch 1/3", "epoch 2/3", "epoch 3/3"] {
        assert_eq!(text.matches(epoch).count(), 1, "{epoch} once: {streams}");
    }
    assert!(text.contains("succeeded after 3 of 3 epochs"), "{streams}");
    let best = text
        .lines()
        .find(|line| line.starts_with("best epoch "))
        .unwrap_or_else(|| panic!("a best-epoch line: {streams}"));
    assert!(
        best.contains("val_acc 0.") && best.contains("test_acc 0."),
        "{best}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_spec_exits_2_and_names_the_field_the_server_faults() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let mut spec = digits_spec(3, 64);
    spec["training"]["optimizer"]["lr"] = json!(-1);
    let spec = write_json(dir.path(), "bad.json", &spec);

    let text = trainserve(&app.base, &["submit", spec.to_str().unwrap()]).await;
    let piped = trainserve(&app.base, &["submit", spec.to_str().unwrap(), "--json"]).await;
    let missing = trainserve(&app.base, &["submit", "/no/such/job.json"]).await;

    let (exit, streams) = code(&text);
    assert_eq!(exit, Some(2), "{streams}");
    assert!(
        stderr(&text).contains("422 invalid (field training.optimizer.lr)"),
        "{streams}"
    );
    let (exit, streams) = code(&piped);
    assert_eq!(exit, Some(2), "{streams}");
    let error: Value = serde_json::from_str(stderr(&piped).trim()).expect("the server's JSON");
    assert_eq!(error["field"], "training.optimizer.lr", "{error}");
    assert_eq!(error["code"], "invalid");
    let (exit, streams) = code(&missing);
    assert_eq!(exit, Some(2), "{streams}");
    assert!(
        stderr(&missing).contains("cannot read /no/such/job.json"),
        "{streams}"
    );
    let (_, page) = app.get("/v1/jobs").await;
    assert_eq!(page["total"], 0, "nothing was queued: {page}");
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_exits_3() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);

    let output = trainserve(&server, &["jobs"]).await;
    let piped = trainserve(
        &server,
        &["watch", "0190f5a4-6c1e-7a3b-9d2e-1f0a2b3c4d5e", "--json"],
    )
    .await;

    let (exit, streams) = code(&output);
    assert_eq!(exit, Some(3), "{streams}");
    assert!(
        stderr(&output).contains(&format!("cannot reach the server at {server}")),
        "{streams}"
    );
    let (exit, streams) = code(&piped);
    assert_eq!(exit, Some(3), "{streams}");
    let error: Value = serde_json::from_str(stderr(&piped).trim()).expect("JSON");
    assert_eq!(error["code"], "unreachable", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_prints_the_servers_page_as_json_or_as_a_filtered_table() {
    let app = TestApp::spawn().await;
    let trained = finished_job(&app, 0.001).await;
    let mut spec = digits_spec(2, 64);
    spec["name"] = json!("second");
    let second = app.submit(spec).await;
    app.wait_for_end(&second).await;

    let piped = trainserve(&app.base, &["jobs", "--json"]).await;
    let named = trainserve(
        &app.base,
        &["jobs", "--name", "second", "--status", "succeeded"],
    )
    .await;
    let bad = trainserve(&app.base, &["jobs", "--status", "sleeping"]).await;

    let (exit, streams) = code(&piped);
    assert_eq!(exit, Some(0), "{streams}");
    let page: Value = serde_json::from_str(&stdout(&piped)).expect("a JSON page");
    assert_eq!(page["total"], 2, "{page}");
    let ids: Vec<&str> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&trained.as_str()) && ids.contains(&second.as_str()),
        "{page}"
    );
    let (exit, streams) = code(&named);
    assert_eq!(exit, Some(0), "{streams}");
    let table = stdout(&named);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("VAL_ACC"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(&second) && lines[1].contains("succeeded"),
        "{table}"
    );
    assert_eq!(lines[2], "jobs 1 to 1 of 1", "{table}");
    let (exit, streams) = code(&bad);
    assert_eq!(exit, Some(2), "{streams}");
    assert!(stderr(&bad).contains("(field status)"), "{streams}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_queued_job_and_a_watched_cancelled_job_exits_1() {
    let app = TestApp::spawn().await;
    let running = app.submit(digits_spec(500, 16)).await;
    let queued = app.submit(digits_spec(2, 64)).await;
    app.wait_until(&running, Duration::from_secs(30), |job| {
        job["status"] == "running"
    })
    .await;

    let cancel_queued = trainserve(&app.base, &["cancel", &queued]).await;
    let watcher = tokio::spawn({
        let base = app.base.clone();
        let running = running.clone();
        async move { trainserve(&base, &["watch", &running]).await }
    });
    let cancel_running = trainserve(&app.base, &["cancel", &running, "--json"]).await;
    let watched = watcher.await.unwrap();
    let again = trainserve(&app.base, &["cancel", &queued]).await;

    let (exit, streams) = code(&cancel_queued);
    assert_eq!(exit, Some(0), "{streams}");
    assert_eq!(
        stdout(&cancel_queued).trim(),
        format!("job {queued} cancelled")
    );
    let (_, job) = app.get(&format!("/v1/jobs/{queued}")).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    let (exit, streams) = code(&cancel_running);
    assert_eq!(exit, Some(0), "{streams}");
    let view: Value = serde_json::from_str(&stdout(&cancel_running)).expect("the job as JSON");
    assert_eq!(view["cancel_requested"], true, "{view}");
    let (exit, streams) = code(&watched);
    assert_eq!(exit, Some(1), "a cancelled job is not a success: {streams}");
    assert!(
        stdout(&watched).contains(&format!("job {running} (")),
        "{streams}"
    );
    assert!(stdout(&watched).contains(") cancelled after"), "{streams}");
    let (exit, streams) = code(&again);
    assert_eq!(exit, Some(2), "an ended job cannot be cancelled: {streams}");
    assert!(stderr(&again).contains("409 conflict"), "{streams}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_sends_csv_rows_and_prints_a_label_per_row() {
    let app = TestApp::spawn().await;
    let id = finished_job(&app, 0.001).await;
    let dir = tempfile::tempdir().unwrap();
    let rows = digit_rows(3);
    let header = (0..64)
        .map(|i| format!("pixel{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let body = rows
        .iter()
        .map(|row| row.iter().map(f64::to_string).collect::<Vec<_>>().join(","))
        .collect::<Vec<_>>()
        .join("\n");
    let csv = dir.path().join("rows.csv");
    std::fs::write(&csv, format!("{header}\n{body}\n")).unwrap();
    let short = dir.path().join("short.csv");
    std::fs::write(&short, "1,2,3\n").unwrap();
    let csv = csv.to_str().unwrap();

    let text = trainserve(&app.base, &["predict", &id, "--input", csv, "--top-k", "2"]).await;
    let piped = trainserve(&app.base, &["predict", &id, "--input", csv, "--json"]).await;
    let wrong = trainserve(
        &app.base,
        &["predict", &id, "--input", short.to_str().unwrap()],
    )
    .await;

    let (exit, streams) = code(&text);
    assert_eq!(exit, Some(0), "{streams}");
    let printed = stdout(&text);
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines[0].starts_with(&format!("model {id}, checkpoint of epoch")),
        "{printed}"
    );
    assert!(
        lines[1].starts_with("ROW") && lines[1].contains("TOP K"),
        "{printed}"
    );
    assert_eq!(
        lines.len(),
        5,
        "a header line, a title and 3 rows: {printed}"
    );
    let (exit, streams) = code(&piped);
    assert_eq!(exit, Some(0), "{streams}");
    let answer: Value = serde_json::from_str(&stdout(&piped)).expect("JSON");
    let (status, direct) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({ "inputs": rows }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer["predictions"], direct["predictions"],
        "the same answer as over HTTP"
    );
    let (exit, streams) = code(&wrong);
    assert_eq!(exit, Some(2), "{streams}");
    assert!(stderr(&wrong).contains("422 invalid"), "{streams}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_sends_images_as_a_form_and_names_each_row_by_its_file() {
    let app = TestApp::spawn().await;
    let id = finished_job(&app, 0.001).await;
    let dir = tempfile::tempdir().unwrap();
    // digits are 8x8 grayscale images in units of 0 to 16; a PNG holds them as 0 to 255.
    let rows = digit_rows(2);
    let mut files = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        let image = image::GrayImage::from_fn(8, 8, |x, y| {
            image::Luma([(row[(y * 8 + x) as usize] / 16.0 * 255.0).round() as u8])
        });
        let path = dir.path().join(format!("digit{index}.png"));
        image.save(&path).unwrap();
        files.push(path.to_str().unwrap().to_string());
    }
    let (_, direct) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({ "inputs": rows }),
        )
        .await;

    let output = trainserve(
        &app.base,
        &[
            "predict", &id, "--image", &files[0], "--image", &files[1], "--json",
        ],
    )
    .await;
    let text = trainserve(&app.base, &["predict", &id, "--image", &files[1]]).await;
    let not_an_image = trainserve(&app.base, &["predict", &id, "--image", file!()]).await;

    let (exit, streams) = code(&output);
    assert_eq!(exit, Some(0), "{streams}");
    let answer: Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    for row in 0..2 {
        assert_eq!(
            answer["predictions"][row]["label"], direct["predictions"][row]["label"],
            "the image of row {row} reads as its row: {answer}"
        );
    }
    let (exit, streams) = code(&text);
    assert_eq!(exit, Some(0), "{streams}");
    let label = direct["predictions"][1]["label"].to_string();
    assert!(
        stdout(&text).contains(&format!("{}  {label}  ", files[1])),
        "{streams}"
    );
    let (exit, streams) = code(&not_an_image);
    assert_eq!(exit, Some(2), "{streams}");
    assert!(
        stderr(&not_an_image).contains("(field image[0])"),
        "{streams}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_ranks_two_jobs_and_prints_their_findings() {
    let app = TestApp::spawn().await;
    let good = finished_job(&app, 0.001).await;
    let slow = finished_job(&app, 0.00001).await;

    let text = trainserve(&app.base, &["compare", &slow, &good]).await;
    let piped = trainserve(&app.base, &["compare", &slow, &good, "--json"]).await;
    let unknown = trainserve(&app.base, &["compare", &good, "not-a-job"]).await;

    let (exit, streams) = code(&text);
    assert_eq!(exit, Some(0), "{streams}");
    let printed = stdout(&text);
    assert!(printed.starts_with("ranked by val_acc (max)"), "{printed}");
    let first = printed.find(&format!("1     {good}")).expect(&printed);
    let second = printed.find(&format!("2     {slow}")).expect(&printed);
    assert!(first < second, "{printed}");
    let findings = printed.split("\nfindings\n").nth(1).expect(&printed);
    assert!(findings.contains(&format!("({slow}):\n  ")), "{printed}");
    let (exit, streams) = code(&piped);
    assert_eq!(exit, Some(0), "{streams}");
    let comparison: Value = serde_json::from_str(&stdout(&piped)).expect("JSON");
    assert_eq!(
        comparison["jobs"][0]["job_id"],
        good.as_str(),
        "{comparison}"
    );
    let (exit, streams) = code(&unknown);
    assert_eq!(exit, Some(2), "{streams}");
    assert!(stderr(&unknown).contains("404 not_found"), "{streams}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_with_watch_follows_every_trial_and_ranks_them() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = write_json(
        dir.path(),
        "sweep.json",
        &json!({"name": "lr", "base": digits_spec(2, 64), "axes": {"training.optimizer.lr": [0.0001, 0.001]}}),
    );

    let output = trainserve(&app.base, &["sweep", spec.to_str().unwrap(), "--watch"]).await;

    let (exit, streams) = code(&output);
    assert_eq!(exit, Some(0), "{streams}");
    let printed = stdout(&output);
    assert!(
        printed.starts_with("sweep ") && printed.contains("2 trials queued"),
        "{printed}"
    );
    for trial in [
        "trial 0 training.optimizer.lr=0.0001: succeeded",
        "trial 1 training.optimizer.lr=0.001: succeeded",
    ] {
        assert!(printed.contains(trial), "{trial}: {printed}");
    }
    let ranking = printed
        .split("ranked by val_acc (max)\n")
        .nth(1)
        .expect(&printed);
    let lines: Vec<&str> = ranking.lines().collect();
    assert!(
        lines[1].starts_with("1 ") && lines[2].starts_with("0 "),
        "the higher rate first: {printed}"
    );
    assert!(
        printed.contains("each axis's effect on val_acc"),
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_the_environment_is_sent_and_a_missing_one_exits_2() {
    let app = TestApp::spawn().await;
    let reader = app.token(&["read"], None).await;

    let without = trainserve(&app.base, &["jobs"]).await;
    let with = trainserve_with(
        &app.base,
        &["jobs", "--json"],
        &[("TRAINSERVE_TOKEN", &reader.token)],
    )
    .await;

    let (exit, streams) = code(&without);
    assert_eq!(exit, Some(2), "{streams}");
    assert!(stderr(&without).contains("401 unauthorized"), "{streams}");
    assert!(
        stderr(&without).contains("--token or TRAINSERVE_TOKEN"),
        "{streams}"
    );
    let (exit, streams) = code(&with);
    assert_eq!(exit, Some(0), "{streams}");
    let page: Value = serde_json::from_str(&stdout(&with)).expect("JSON");
    assert_eq!(page["total"], 0, "{page}");
}

#[test]
fn the_command_line_uses_no_other_module_of_the_service_only_http() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut files = 0;
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let source = std::fs::read_to_string(&path).unwrap();
        files += 1;
        for line in source.lines() {
            let code = line.split("//").next().unwrap_or_default();
            let outside = (code.contains("crate::") && !code.contains("crate::cli"))
                || ["sqlx", "axum", "trainserve::", "super::super"]
                    .iter()
                    .any(|name| code.contains(name));
            assert!(
                !outside,
                "{} reaches past the HTTP API: {line}",
                path.display()
            );
        }
    }
    assert!(
        files >= 5,
        "the cli module's files were read from {}",
        folder.display()
    );
}
