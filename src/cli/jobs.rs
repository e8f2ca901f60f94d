//! `trainserve submit`, `watch` and `cancel`: one job at a time.

use std::path::PathBuf;

use reqwest::StatusCode;

use super::Outcome;
use super::client::{CliError, Client, Connection, read_input, segment};
use super::follow::{follow_job, jobs_ahead, outcome_of, summary};

/// `trainserve submit job.json [--watch]`
#[derive(Clone, Debug, clap::Args)]
pub struct SubmitArgs {
    /// The job spec, a JSON file as `POST /v1/jobs` takes it (`-` reads standard input).
    pub(crate) spec: PathBuf,
    /// Follow the job to its end; the exit code then says how it ended (0 succeeded, 1 failed
    /// or cancelled).
    #[arg(long)]
    pub(crate) watch: bool,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// `trainserve watch ID`
#[derive(Clone, Debug, clap::Args)]
pub struct WatchArgs {
    /// The job's id.
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// `trainserve cancel ID`
#[derive(Clone, Debug, clap::Args)]
pub struct CancelArgs {
    /// The job's id.
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Submits the spec; with `--watch`, follows the job to its end.
pub(crate) async fn submit(client: &Client, args: &SubmitArgs) -> Result<Outcome, CliError> {
    let spec = read_input(&args.spec)?;
    let created = client.post_json("/v1/jobs", spec).await?.body;
    let Some(id) = created["id"].as_str() else {
        return Err(CliError::Unexpected(format!(
            "the server queued a job but named no id: {created}"
        )));
    };
    let json = args.connection.json;
    if args.watch {
        return watch_to_end(client, id, json).await;
    }
    if json {
        outln!("{created}");
    } else {
        let position = match created["queue_position"].as_i64() {
            Some(ahead) => format!(", {}", jobs_ahead(ahead)),
            None => String::new(),
        };
        outln!(
            "job {id} ({}) {}{position}",
            created["name"].as_str().unwrap_or(""),
            created["status"].as_str().unwrap_or("queued")
        );
        eprintln!("follow it with: trainserve watch {id}");
    }
    Ok(Outcome::Succeeded)
}

/// Follows a job to its end.
pub(crate) async fn watch(client: &Client, args: &WatchArgs) -> Result<Outcome, CliError> {
    watch_to_end(client, &segment(&args.id), args.connection.json).await
}

/// Asks the server to cancel a job: at once when queued, within a batch when running.
pub(crate) async fn cancel(client: &Client, args: &CancelArgs) -> Result<Outcome, CliError> {
    let path = format!("/v1/jobs/{}/cancel", segment(&args.id));
    let answer = client.post_empty(&path).await?;
    if args.connection.json {
        outln!("{}", answer.body);
    } else if answer.status == StatusCode::OK {
        outln!("job {} cancelled", args.id);
    } else {
        // 202: the job is running and stops at its next batch.
        outln!(
            "job {} is stopping: it ends within one batch, keeping the checkpoints of the epochs it finished",
            args.id
        );
    }
    Ok(Outcome::Succeeded)
}

async fn watch_to_end(client: &Client, id: &str, json: bool) -> Result<Outcome, CliError> {
    let job = follow_job(client, id, !json).await?;
    if json {
        outln!("{job}");
    } else {
        outln!("{}", summary(&job));
    }
    Ok(outcome_of(&job))
}
