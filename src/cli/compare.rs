//! `trainserve compare ID ID...`: `GET /v1/compare` as a ranking table and each job's
//! findings.

use serde_json::Value;

use super::Outcome;
use super::client::{CliError, Client, Connection};
use super::table::{Table, cell, metric, seconds, shorten};

/// `trainserve compare ID ID... [--metric val_acc] [--goal max]`
#[derive(Clone, Debug, clap::Args)]
pub struct CompareArgs {
    /// The jobs' ids (1 to 100).
    #[arg(required = true)]
    pub(crate) ids: Vec<String>,
    /// Rank by this metric at each job's best epoch of it: val_acc (the server's default),
    /// val_loss, test_acc, test_loss, train_acc, train_loss, ...
    #[arg(long)]
    pub(crate) metric: Option<String>,
    /// max or min: whether higher or lower is better (default: the metric's natural goal).
    #[arg(long)]
    pub(crate) goal: Option<String>,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Prints the ranking, then what the diagnosis finds about each job.
pub(crate) async fn compare(client: &Client, args: &CompareArgs) -> Result<Outcome, CliError> {
    let mut query = vec![("jobs", args.ids.join(","))];
    if let Some(metric) = &args.metric {
        query.push(("metric", metric.clone()));
    }
    if let Some(goal) = &args.goal {
        query.push(("goal", goal.clone()));
    }
    let comparison = client.get("/v1/compare", &query).await?;
    if args.connection.json {
        outln!("{comparison}");
    } else {
        out!("{}", render(&comparison));
    }
    Ok(Outcome::Succeeded)
}

/// The comparison as text: a header line, the ranking table, the findings.
fn render(comparison: &Value) -> String {
    let metric_name = comparison["metric"].as_str().unwrap_or("metric");
    let jobs = comparison["jobs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut text = format!(
        "ranked by {metric_name} ({}), each job at its best epoch of it\n",
        comparison["goal"].as_str().unwrap_or("?")
    );
    let value_title = metric_name.to_ascii_uppercase();
    let mut table = Table::new(&[
        "RANK",
        "JOB",
        "NAME",
        "STATUS",
        "BEST EPOCH",
        value_title.as_str(),
        "TRAIN-VAL GAP",
        "OVERFITS FROM",
        "S/EPOCH",
        "TOTAL S",
    ]);
    for job in jobs {
        table.row(vec![
            cell(&job["rank"]),
            cell(&job["job_id"]),
            shorten(job["name"].as_str().unwrap_or(""), 32),
            cell(&job["status"]),
            cell(&job["best_epoch"]),
            metric(&job["best_value"]),
            metric(&job["generalization"]["train_val_acc_gap_at_best"]),
            cell(&job["overfitting_onset"]),
            seconds(&job["speed"]["mean_epoch_seconds"]),
            seconds(&job["speed"]["total_seconds"]),
        ]);
    }
    text.push_str(&table.render());
    text.push_str("\nfindings\n");
    for job in jobs {
        text.push_str(&format!(
            "{} ({}):\n",
            job["name"].as_str().unwrap_or(""),
            job["job_id"].as_str().unwrap_or("?")
        ));
        let findings = job["findings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if findings.is_empty() {
            text.push_str("  none yet (no epochs)\n");
        }
        for finding in findings {
            text.push_str(&format!(
                "  {} {}: {}\n",
                finding["severity"].as_str().unwrap_or("info"),
                finding["kind"].as_str().unwrap_or("?"),
                finding["summary"].as_str().unwrap_or("")
            ));
            if let Some(suggestion) = finding["suggestion"].as_str() {
                text.push_str(&format!("    try: {suggestion}\n"));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::render;

    #[test]
    fn the_ranking_lists_jobs_in_the_servers_order_with_their_findings() {
        let comparison = json!({
            "metric": "val_acc", "goal": "max",
            "jobs": [
                {"job_id": "a", "name": "good", "status": "succeeded", "rank": 1, "best_epoch": 3,
                 "best_value": 0.974, "generalization": {"train_val_acc_gap_at_best": 0.012},
                 "overfitting_onset": null, "speed": {"mean_epoch_seconds": 0.41, "total_seconds": 2.05},
                 "findings": [{"kind": "healthy", "severity": "info", "summary": "Nothing stands out.",
                               "suggestion": "Compare it with neighbours."}]},
                {"job_id": "b", "name": "diverged", "status": "failed", "rank": null, "best_epoch": null,
                 "best_value": null, "generalization": {}, "overfitting_onset": null,
                 "speed": {"total_seconds": 0}, "findings": []}
            ]
        });
        let text = render(&comparison);
        let good = text.find("1     a    good").expect(&text);
        let bad = text.find("-     b    diverged").expect(&text);
        assert!(good < bad, "{text}");
        assert!(text.contains("VAL_ACC"), "{text}");
        assert!(text.contains("0.9740"), "{text}");
        assert!(
            text.contains(
                "  info healthy: Nothing stands out.\n    try: Compare it with neighbours."
            ),
            "{text}"
        );
        assert!(
            text.contains("diverged (b):\n  none yet (no epochs)"),
            "{text}"
        );
    }
}
