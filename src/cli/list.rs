//! `trainserve jobs`: a page of `GET /v1/jobs` as a table; its flags are the query's
//! parameters, passed as they are, so the server judges them (a 422 names the one at fault).

use serde_json::Value;

use super::Outcome;
use super::client::{CliError, Client, Connection};
use super::follow::jobs_ahead;
use super::table::{Table, metric, shorten};

/// `trainserve jobs [--status running,queued] [--dataset digits] ...`
#[derive(Clone, Debug, clap::Args)]
pub struct JobsArgs {
    /// Only jobs in these statuses, comma-separated: queued, running, succeeded, failed,
    /// cancelled.
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// Only jobs on this data set, by name or id.
    #[arg(long)]
    pub(crate) dataset: Option<String>,
    /// Only jobs whose name contains this text.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Only the jobs of this sweep, by id.
    #[arg(long)]
    pub(crate) sweep: Option<String>,
    /// Run search, e.g. 'best.val_acc > 0.9 and params.training.optimizer.lr = 0.01'.
    #[arg(long = "where")]
    pub(crate) conditions: Option<String>,
    /// Order by a search field, optionally with a direction: 'best.val_acc desc'.
    #[arg(long)]
    pub(crate) order_by: Option<String>,
    /// Sort key: created_at (the server's default), best_val_acc, name or status.
    #[arg(long)]
    pub(crate) sort: Option<String>,
    /// asc or desc (the server's default).
    #[arg(long)]
    pub(crate) order: Option<String>,
    /// Jobs per page, 1 to 500 (the server's default is 50).
    #[arg(long)]
    pub(crate) limit: Option<u32>,
    /// Jobs to skip.
    #[arg(long)]
    pub(crate) offset: Option<u64>,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

impl JobsArgs {
    /// The flags given, as `GET /v1/jobs` names them.
    fn query(&self) -> Vec<(&'static str, String)> {
        let texts = [
            ("status", &self.status),
            ("dataset", &self.dataset),
            ("name", &self.name),
            ("sweep", &self.sweep),
            ("where", &self.conditions),
            ("order_by", &self.order_by),
            ("sort", &self.sort),
            ("order", &self.order),
        ];
        let mut query: Vec<(&'static str, String)> = texts
            .into_iter()
            .filter_map(|(key, value)| value.clone().map(|value| (key, value)))
            .collect();
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(offset) = self.offset {
            query.push(("offset", offset.to_string()));
        }
        query
    }
}

/// Prints one page of jobs, with where the next one starts.
pub(crate) async fn jobs(client: &Client, args: &JobsArgs) -> Result<Outcome, CliError> {
    let page = client.get("/v1/jobs", &args.query()).await?;
    if args.connection.json {
        outln!("{page}");
        return Ok(Outcome::Succeeded);
    }
    let jobs = page["jobs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut table = Table::new(&[
        "ID", "NAME", "STATUS", "EPOCHS", "VAL_ACC", "TEST_ACC", "CREATED",
    ]);
    for job in jobs {
        table.row(vec![
            job["id"].as_str().unwrap_or("?").to_string(),
            shorten(job["name"].as_str().unwrap_or(""), 40),
            status_cell(job),
            format!(
                "{}/{}",
                job["progress"]["epochs_done"], job["progress"]["epochs_total"]
            ),
            metric(&job["best"]["val_acc"]),
            metric(&job["best"]["test_acc"]),
            job["created_at"].as_str().unwrap_or("").to_string(),
        ]);
    }
    out!("{}", table.render());
    let offset = page["offset"].as_i64().unwrap_or(0);
    let total = page["total"].as_i64().unwrap_or(0);
    let mut footer = if jobs.is_empty() {
        format!("no jobs here ({total} in all)")
    } else {
        format!(
            "jobs {} to {} of {total}",
            offset + 1,
            offset + jobs.len() as i64
        )
    };
    if let Some(next) = page["next_offset"].as_i64() {
        footer.push_str(&format!("; --offset {next} for more"));
    }
    outln!("{footer}");
    Ok(Outcome::Succeeded)
}

/// The status, with how far a running job has come and a queued job's place.
fn status_cell(job: &Value) -> String {
    let status = job["status"].as_str().unwrap_or("?");
    match status {
        "running" => {
            let fraction = job["progress"]["fraction"].as_f64().unwrap_or(0.0);
            format!("running {:.0}%", fraction * 100.0)
        }
        "queued" => match job["queue_position"].as_i64() {
            Some(ahead) => format!("queued, {}", jobs_ahead(ahead)),
            None => "queued".to_string(),
        },
        "succeeded" if job["pruned"] == true => "succeeded (pruned)".to_string(),
        other => other.to_string(),
    }
}
