//! A job followed to its end over its event stream: a progress bar of the epoch in progress
//! (on standard error, drawn only on a terminal), a line of metrics per committed epoch (on
//! standard output), and the job's final state.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::Outcome;
use super::client::{CliError, Client};
use super::events::EventStream;
use super::table::{metric, seconds};

/// The most epochs printed of those committed before the watch began.
const MAX_MISSED_EPOCHS: usize = 20;

/// Times in a row a stream may close or break before the job ended before giving up.
const MAX_RECONNECTS: u32 = 5;

/// Follows job `id` until it ends, then answers the job as `GET /v1/jobs/{id}` shows it.
/// With `print_epochs`, every committed epoch is printed, those committed before the watch
/// began included.
pub(crate) async fn follow_job(
    client: &Client,
    id: &str,
    print_epochs: bool,
) -> Result<Value, CliError> {
    let mut watch = Watch::new(print_epochs);
    let mut reconnects = 0;
    loop {
        let events_before = watch.events_seen;
        match read_stream(client, id, &mut watch).await {
            Ok(()) if watch.ended => break,
            Ok(()) => {}
            Err(err) if err.is_unreachable() && watch.events_seen > 0 => {}
            Err(err) => {
                watch.bar.finish_and_clear();
                return Err(err);
            }
        }
        // The stream stopped before the job ended (the server restarting, a proxy's timeout):
        // reconnect; its first event tells where the job stands.
        reconnects = if watch.events_seen > events_before {
            1
        } else {
            reconnects + 1
        };
        if reconnects > MAX_RECONNECTS {
            watch.bar.finish_and_clear();
            return Err(CliError::Unreachable {
                server: client.server().to_string(),
                reason: format!("the event stream of job {id} kept closing before the job ended"),
            });
        }
        tokio::time::sleep(Duration::from_secs(u64::from(reconnects))).await;
    }
    watch.bar.finish_and_clear();
    client.get(&format!("/v1/jobs/{id}"), &[]).await
}

/// Whether a status is one a job never leaves.
pub(crate) fn is_terminal(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// Succeeded for a succeeded job, Failed for a failed or cancelled one.
pub(crate) fn outcome_of(job: &Value) -> Outcome {
    if job["status"] == "succeeded" {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    }
}

/// How an ended job turned out, in two lines: its end, then its best epoch's metrics.
pub(crate) fn summary(job: &Value) -> String {
    let progress = &job["progress"];
    let done = progress["epochs_done"].as_i64().unwrap_or(0);
    let total = progress["epochs_total"].as_i64().unwrap_or(0);
    let status = job["status"].as_str().unwrap_or("unknown");
    let mut text = format!(
        "job {} ({}) {status} after {done} of {total} epochs",
        job["id"].as_str().unwrap_or("?"),
        job["name"].as_str().unwrap_or("")
    );
    if let Some(failure) = job["failure"].as_str() {
        text.push_str(&format!(": {failure}"));
    }
    if let Some(reason) = job["stopped_early"]["reason"].as_str() {
        text.push_str(&format!(" (stopped early: {reason})"));
    }
    let best = &job["best"];
    if let Some(epoch) = best["epoch"].as_i64() {
        text.push_str(&format!(
            "\nbest epoch {epoch}: val_acc {}  val_loss {}  test_acc {}  test_loss {}  train_acc {}",
            metric(&best["val_acc"]),
            metric(&best["val_loss"]),
            metric(&best["test_acc"]),
            metric(&best["test_loss"]),
            metric(&best["train_acc"]),
        ));
    }
    text
}

/// A queued job's place, from `queue_position` (the jobs ahead of it).
pub(crate) fn jobs_ahead(ahead: i64) -> String {
    match ahead {
        0 => "next to run".to_string(),
        1 => "1 job ahead".to_string(),
        n => format!("{n} jobs ahead"),
    }
}

/// One committed epoch's metrics on one line.
pub(crate) fn epoch_line(metrics: &Value, epochs_total: i64) -> String {
    let mut line = format!(
        "epoch {}/{epochs_total}  train_loss {}  train_acc {}  val_loss {}  val_acc {}",
        metrics["epoch"],
        metric(&metrics["train_loss"]),
        metric(&metrics["train_acc"]),
        metric(&metrics["val_loss"]),
        metric(&metrics["val_acc"]),
    );
    if !metrics["test_acc"].is_null() {
        line.push_str(&format!("  test_acc {}", metric(&metrics["test_acc"])));
    }
    line.push_str(&format!("  {} s", seconds(&metrics["epoch_seconds"])));
    line
}

/// What the watch has seen so far, and the bar that shows it.
struct Watch {
    bar: ProgressBar,
    print_epochs: bool,
    /// The last epoch printed (0 before any).
    printed_epoch: i64,
    epochs_total: i64,
    /// The latest epoch's validation accuracy, for the bar's message.
    latest: String,
    events_seen: u64,
    ended: bool,
}

impl Watch {
    fn new(print_epochs: bool) -> Watch {
        let style =
            ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} steps  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        Watch {
            bar: ProgressBar::new(0).with_style(style),
            print_epochs,
            printed_epoch: 0,
            epochs_total: 0,
            latest: String::new(),
            events_seen: 0,
            ended: false,
        }
    }

    /// Prints a line on standard output without tearing the bar.
    fn print(&self, line: &str) {
        self.bar.suspend(|| outln!("{line}"));
    }

    fn print_epoch(&mut self, metrics: &Value) {
        let Some(epoch) = metrics["epoch"].as_i64() else {
            return;
        };
        self.latest = format!("val_acc {}", metric(&metrics["val_acc"]));
        if self.print_epochs && epoch > self.printed_epoch {
            self.print(&epoch_line(metrics, self.epochs_total));
        }
        self.printed_epoch = self.printed_epoch.max(epoch);
    }

    /// Prints the epochs committed while no stream was open (before the watch began, or
    /// while it reconnected), the latest [`MAX_MISSED_EPOCHS`] of them at most.
    fn print_missed_epochs(&mut self, id: &str, epochs: &Value) {
        let missed: Vec<&Value> = epochs
            .as_array()
            .into_iter()
            .flatten()
            .filter(|epoch| epoch["epoch"].as_i64().unwrap_or(0) > self.printed_epoch)
            .collect();
        let skipped = missed.len().saturating_sub(MAX_MISSED_EPOCHS);
        if skipped > 0 && self.print_epochs {
            self.print(&format!(
                "... {skipped} earlier epochs (all of them: GET /v1/jobs/{id}/metrics)"
            ));
        }
        for epoch in &missed[skipped..] {
            self.print_epoch(epoch);
        }
    }

    fn show_status(&self, status: &str, queue_position: &Value) {
        let message = match (status, queue_position.as_i64()) {
            ("queued", Some(ahead)) => format!("queued, {}", jobs_ahead(ahead)),
            (status, _) => status.to_string(),
        };
        self.bar.set_message(message);
    }
}

/// Reads one connection of the job's event stream until it closes.
async fn read_stream(client: &Client, id: &str, watch: &mut Watch) -> Result<(), CliError> {
    let mut stream = EventStream::open(client, &format!("/v1/jobs/{id}/events")).await?;
    while let Some(event) = stream.next().await? {
        watch.events_seen += 1;
        let data = &event.data;
        match event.name.as_str() {
            "job" => {
                watch.epochs_total = data["progress"]["epochs_total"].as_i64().unwrap_or(0);
                let status = data["status"].as_str().unwrap_or("unknown");
                if watch.events_seen == 1 && watch.print_epochs {
                    watch.print(&format!(
                        "job {id} ({}): {status}",
                        data["name"].as_str().unwrap_or("")
                    ));
                }
                let done = data["progress"]["epochs_done"].as_i64().unwrap_or(0);
                if done > watch.printed_epoch {
                    let metrics = client.get(&format!("/v1/jobs/{id}/metrics"), &[]).await?;
                    watch.print_missed_epochs(id, &metrics["epochs"]);
                }
                watch
                    .bar
                    .set_prefix(format!("epoch {done}/{}", watch.epochs_total));
                watch.show_status(status, &data["queue_position"]);
                watch.ended = is_terminal(status);
            }
            "progress" => {
                let epoch = data["epoch"].as_i64().unwrap_or(0);
                watch
                    .bar
                    .set_prefix(format!("epoch {epoch}/{}", watch.epochs_total));
                watch
                    .bar
                    .set_length(data["steps_per_epoch"].as_u64().unwrap_or(0));
                watch
                    .bar
                    .set_position(data["step_in_epoch"].as_u64().unwrap_or(0));
                watch.bar.set_message(format!(
                    "loss {}  {}",
                    metric(&data["last_loss"]),
                    watch.latest
                ));
            }
            "epoch" => watch.print_epoch(&data["metrics"]),
            "status" => {
                let status = data["status"].as_str().unwrap_or("unknown");
                watch.show_status(status, &Value::Null);
                watch.ended = is_terminal(status);
            }
            "deleted" => {
                watch.bar.finish_and_clear();
                return Err(CliError::Unexpected(format!(
                    "job {id} was deleted while it was watched"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}
