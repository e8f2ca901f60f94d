//! The command line's client half: `trainserve submit | jobs | watch | cancel | compare |
//! predict | sweep`, run against a service that is already running, over its public HTTP API
//! only. Nothing here uses the rest of this crate (no store, no axum): it is what a user on
//! another machine runs, and it sees exactly what any other client of the API sees.
//!
//! - `client.rs`: the HTTP client, the connection flags, and [`CliError`] with its exit code.
//! - `events.rs`: the server-sent-events reader; `follow.rs`: a job followed to its end with
//!   a progress bar.
//! - `jobs.rs` (submit, watch, cancel), `list.rs` (jobs), `compare.rs`, `predict.rs`,
//!   `sweep.rs`: one command group each; `table.rs`: the text tables they print.
//!
//! Exit codes that scripts can rely on: 0 succeeded, 1 failed (a job or trial failed or was
//! cancelled, or the server failed the request with a 5xx), 2 bad input (the server answered
//! 4xx, or a local file or flag cannot be used), 3 the server cannot be reached.

/// `print!` for the commands: see [`write_out`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!($($arg)*)) };
}

/// `println!` for the commands: see [`write_out`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

mod client;
mod compare;
mod events;
mod follow;
mod jobs;
mod list;
mod predict;
mod sweep;
mod table;

use std::process::ExitCode;

pub use client::Connection;
pub use compare::CompareArgs;
pub use jobs::{CancelArgs, SubmitArgs, WatchArgs};
pub use list::JobsArgs;
pub use predict::PredictArgs;
pub use sweep::SweepArgs;

use client::{CliError, Client};

/// The commands that speak to a running service.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Submit a training job from a JSON spec file; `--watch` follows it to its end.
    Submit(SubmitArgs),
    /// List jobs as a table, filtered and sorted as `GET /v1/jobs` allows.
    Jobs(JobsArgs),
    /// Follow a job to its end: a progress bar per epoch and each epoch's metrics.
    Watch(WatchArgs),
    /// Cancel a queued or running job.
    Cancel(CancelArgs),
    /// Rank jobs by their best epoch, with generalization gaps, speed and findings.
    Compare(CompareArgs),
    /// Predict with a job's checkpoint or a registry model, from CSV rows or images.
    Predict(PredictArgs),
    /// Create a sweep from a JSON spec file; `--watch` follows its trials to their end.
    Sweep(SweepArgs),
}

/// How a command that ran to completion turned out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// What was asked for was done (a watched job or sweep succeeded).
    Succeeded,
    /// A watched job, or a trial of a watched sweep, failed or was cancelled.
    Failed,
}

impl ClientCommand {
    fn name(&self) -> &'static str {
        match self {
            ClientCommand::Submit(_) => "submit",
            ClientCommand::Jobs(_) => "jobs",
            ClientCommand::Watch(_) => "watch",
            ClientCommand::Cancel(_) => "cancel",
            ClientCommand::Compare(_) => "compare",
            ClientCommand::Predict(_) => "predict",
            ClientCommand::Sweep(_) => "sweep",
        }
    }

    fn connection(&self) -> &Connection {
        match self {
            ClientCommand::Submit(args) => &args.connection,
            ClientCommand::Jobs(args) => &args.connection,
            ClientCommand::Watch(args) => &args.connection,
            ClientCommand::Cancel(args) => &args.connection,
            ClientCommand::Compare(args) => &args.connection,
            ClientCommand::Predict(args) => &args.connection,
            ClientCommand::Sweep(args) => &args.connection,
        }
    }
}

/// Writes on standard output. When the reader has gone (`trainserve jobs | head -1`), the
/// command ends there with exit code 0, since the reader took what it wanted; `print!` would
/// panic instead.
pub(crate) fn write_out(text: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_fmt(text)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}

/// Runs a client command to its end and returns the exit code; errors are printed on
/// standard error (the server's own JSON error with `--json`).
pub fn run(command: ClientCommand) -> ExitCode {
    let name = command.name();
    let json = command.connection().json;
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trainserve {name}: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(command)) {
        Ok(Outcome::Succeeded) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(err) => {
            err.report(name, json);
            ExitCode::from(err.exit_code())
        }
    }
}

async fn dispatch(command: ClientCommand) -> Result<Outcome, CliError> {
    let client = Client::new(command.connection())?;
    match command {
        ClientCommand::Submit(args) => jobs::submit(&client, &args).await,
        ClientCommand::Jobs(args) => list::jobs(&client, &args).await,
        ClientCommand::Watch(args) => jobs::watch(&client, &args).await,
        ClientCommand::Cancel(args) => jobs::cancel(&client, &args).await,
        ClientCommand::Compare(args) => compare::compare(&client, &args).await,
        ClientCommand::Predict(args) => predict::predict(&client, &args).await,
        ClientCommand::Sweep(args) => sweep::sweep(&client, &args).await,
    }
}
