//! `trainserve sweep spec.json [--watch]`: `POST /v1/sweeps`, then (with `--watch`) `GET
//! /v1/sweeps/{id}` once a second until every trial has ended, and the trials ranked.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;
use serde_json::Value;

use super::Outcome;
use super::client::{CliError, Client, Connection, read_input, segment};
use super::follow::is_terminal;
use super::table::{Table, cell, metric};

/// How often a watched sweep is read.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Reads in a row that may fail to reach the server before the watch gives up.
const MAX_FAILED_POLLS: u32 = 5;

/// `trainserve sweep spec.json [--watch]`
#[derive(Clone, Debug, clap::Args)]
pub struct SweepArgs {
    /// The sweep spec, a JSON file as `POST /v1/sweeps` takes it (`-` reads standard input);
    /// with `"dry_run": true` the trials are listed and nothing is queued.
    pub(crate) spec: PathBuf,
    /// Follow the trials to their end; the exit code is then 1 when any failed or was
    /// cancelled.
    #[arg(long)]
    pub(crate) watch: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Creates the sweep; with `--watch`, follows it and prints its trials ranked.
pub(crate) async fn sweep(client: &Client, args: &SweepArgs) -> Result<Outcome, CliError> {
    let spec = read_input(&args.spec)?;
    let answer = client.post_json("/v1/sweeps", spec).await?;
    let json = args.connection.json;
    let created = answer.body;
    // A dry run answers 200 with the trials it would create; a sweep created answers 201.
    if answer.status == StatusCode::OK {
        if json {
            outln!("{created}");
        } else {
            out!("{}", dry_run_table(&created));
        }
        return Ok(Outcome::Succeeded);
    }
    let Some(id) = created["id"].as_str() else {
        return Err(CliError::Unexpected(format!(
            "the server created a sweep but named no id: {created}"
        )));
    };
    let trials = created["summary"]["trials"].as_array().map_or(0, Vec::len);
    if !json {
        outln!(
            "sweep {id} ({}): {trials} trials queued, {} at a time",
            cell(&created["name"]),
            cell(&created["max_concurrent"])
        );
    }
    if !args.watch {
        if json {
            outln!("{created}");
        } else {
            eprintln!("its jobs: trainserve jobs --sweep {id}");
        }
        return Ok(Outcome::Succeeded);
    }
    let ended = follow_sweep(client, &segment(id), trials as u64, !json).await?;
    if json {
        outln!("{ended}");
    } else {
        out!("{}", ranking(&ended));
    }
    let failed = ended["summary"]["trials"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|trial| matches!(trial["status"].as_str(), Some("failed" | "cancelled")));
    Ok(if failed {
        Outcome::Failed
    } else {
        Outcome::Succeeded
    })
}

/// Reads the sweep until every trial has ended, showing how many have; with `print_trials`,
/// a line per trial as it ends. Answers the sweep as last read.
async fn follow_sweep(
    client: &Client,
    id: &str,
    trials: u64,
    print_trials: bool,
) -> Result<Value, CliError> {
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {pos}/{len} trials  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let bar = ProgressBar::new(trials)
        .with_style(style)
        .with_prefix("sweep");
    let mut reported = vec![false; trials as usize];
    let mut failed_polls = 0;
    loop {
        let sweep = match client.get(&format!("/v1/sweeps/{id}"), &[]).await {
            Ok(sweep) => sweep,
            Err(err) if err.is_unreachable() && failed_polls < MAX_FAILED_POLLS => {
                failed_polls += 1;
                tokio::time::sleep(POLL_INTERVAL).await;
                continue;
            }
            Err(err) => {
                bar.finish_and_clear();
                return Err(err);
            }
        };
        failed_polls = 0;
        let summary = &sweep["summary"];
        let list = summary["trials"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let metric_name = summary["metric"].as_str().unwrap_or("metric");
        let mut ended = 0;
        for trial in list {
            let status = trial["status"].as_str().unwrap_or("?");
            if !is_terminal(status) {
                continue;
            }
            ended += 1;
            let index = trial["index"].as_u64().unwrap_or(0) as usize;
            if print_trials && index < reported.len() && !reported[index] {
                reported[index] = true;
                bar.suspend(|| outln!("{}", trial_line(trial, metric_name)));
            }
        }
        bar.set_position(ended);
        bar.set_message(progress_message(summary));
        if ended as usize == list.len() {
            bar.finish_and_clear();
            return Ok(sweep);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The trials' statuses and the best so far, for the bar.
fn progress_message(summary: &Value) -> String {
    let counts = summary["status_counts"]
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .map(|(status, count)| format!("{count} {status}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let best = summary["best_trial"]
        .as_u64()
        .and_then(|index| summary["trials"].get(index as usize))
        .map(|trial| {
            format!(
                "  best {} {} (trial {})",
                summary["metric"].as_str().unwrap_or("metric"),
                metric(&trial["best_value"]),
                cell(&trial["index"])
            )
        })
        .unwrap_or_default();
    format!("{counts}{best}")
}

/// An ended trial on one line.
fn trial_line(trial: &Value, metric_name: &str) -> String {
    let mut line = format!(
        "trial {} {}: {}",
        cell(&trial["index"]),
        params(&trial["params"]),
        cell(&trial["status"])
    );
    if let Some(epoch) = trial["best_epoch"].as_i64() {
        line.push_str(&format!(
            ", best {metric_name} {} at epoch {epoch}",
            metric(&trial["best_value"])
        ));
    }
    if let Some(reason) = trial["failure"].as_str().or(trial["stop_reason"].as_str()) {
        line.push_str(&format!(" ({reason})"));
    }
    line
}

/// A trial's axis values, `path=value` each.
fn params(params: &Value) -> String {
    params
        .as_object()
        .map(|values| {
            values
                .iter()
                .map(|(path, value)| format!("{path}={}", cell(value)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The ended sweep: its trials best first (those without a value last), then each axis's
/// effect.
fn ranking(sweep: &Value) -> String {
    let summary = &sweep["summary"];
    let metric_name = summary["metric"].as_str().unwrap_or("metric");
    let minimize = summary["goal"] == "min";
    let mut trials: Vec<&Value> = summary["trials"].as_array().into_iter().flatten().collect();
    trials.sort_by(|a, b| {
        let (a, b) = (a["best_value"].as_f64(), b["best_value"].as_f64());
        match (a, b) {
            (Some(a), Some(b)) if minimize => a.total_cmp(&b),
            (Some(a), Some(b)) => b.total_cmp(&a),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
    let mut text = format!(
        "sweep {} ({}) ranked by {metric_name} ({})\n",
        cell(&sweep["id"]),
        cell(&sweep["name"]),
        cell(&summary["goal"])
    );
    let value_title = metric_name.to_ascii_uppercase();
    let mut table = Table::new(&[
        "TRIAL",
        "PARAMS",
        "STATUS",
        "BEST EPOCH",
        value_title.as_str(),
        "JOB",
    ]);
    for trial in trials {
        let status = if trial["pruned"] == true {
            "succeeded (pruned)".to_string()
        } else {
            cell(&trial["status"])
        };
        table.row(vec![
            cell(&trial["index"]),
            params(&trial["params"]),
            status,
            cell(&trial["best_epoch"]),
            metric(&trial["best_value"]),
            cell(&trial["job_id"]),
        ]);
    }
    text.push_str(&table.render());
    let mut effects = Table::new(&["AXIS", "VALUE", "TRIALS", "MEAN", "STD", "BEST"]);
    for axis in summary["axes"].as_array().into_iter().flatten() {
        for value in axis["values"].as_array().into_iter().flatten() {
            effects.row(vec![
                cell(&axis["path"]),
                cell(&value["value"]),
                cell(&value["trials"]),
                metric(&value["mean"]),
                metric(&value["std"]),
                metric(&value["best"]),
            ]);
        }
    }
    text.push_str(&format!("\neach axis's effect on {metric_name}\n"));
    text.push_str(&effects.render());
    text
}

/// A dry run's trials, each with its parameters and job name.
fn dry_run_table(dry_run: &Value) -> String {
    let mut table = Table::new(&["TRIAL", "REPEAT", "PARAMS", "JOB NAME"]);
    let trials = dry_run["trials"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for trial in trials {
        table.row(vec![
            cell(&trial["index"]),
            cell(&trial["repeat"]),
            params(&trial["params"]),
            cell(&trial["spec"]["name"]),
        ]);
    }
    format!(
        "dry run: {} trials, nothing queued\n{}",
        trials.len(),
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::ranking;

    #[test]
    fn trials_rank_best_first_under_the_goal_and_those_without_a_value_last() {
        let sweep = |goal: &str| {
            json!({"id": "s", "name": "lr", "summary": {"metric": "val_loss", "goal": goal, "axes": [],
            "trials": [
                {"index": 0, "params": {"lr": 0.1}, "status": "succeeded", "best_epoch": 2, "best_value": 0.5, "job_id": "a"},
                {"index": 1, "params": {"lr": 1.0}, "status": "failed", "best_epoch": null, "best_value": null, "job_id": "b"},
                {"index": 2, "params": {"lr": 0.01}, "status": "succeeded", "best_epoch": 3, "best_value": 0.2, "job_id": "c"}
            ]}})
        };
        let order = |text: &str| {
            ["lr=0.1", "lr=1.0", "lr=0.01"].map(|params| {
                text.find(params)
                    .unwrap_or_else(|| panic!("{params} in {text}"))
            })
        };
        let [lr_01, lr_1, lr_001] = order(&ranking(&sweep("min")));
        assert!(lr_001 < lr_01 && lr_01 < lr_1);
        let [lr_01, lr_1, lr_001] = order(&ranking(&sweep("max")));
        assert!(lr_01 < lr_001 && lr_001 < lr_1);
    }
}
