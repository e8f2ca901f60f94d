//! Every SQL statement of the service, as named functions over one SQLite database in WAL
//! mode: a single writer connection (SQLite allows one writer anyway) and a pool of readers.

mod checkpoints;
mod datasets;
mod epochs;
mod job_lifecycle;
mod jobs;
mod layers;
mod steps;
mod sweeps;
mod weights;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use checkpoints::CheckpointRow;
pub use datasets::DatasetRow;
pub use epochs::{EpochCommit, EpochRow};
pub use jobs::{
    CancelOutcome, Claim, JobFilter, JobRow, JobSort, NewJob, OptionalSweepId, RecoveryReport,
};
pub use layers::LayerGradRow;
pub use steps::StepBatch;
pub use sweeps::{NewTrial, SweepRow, TrialRow};
pub use weights::{NewWeights, WeightsRow};

use crate::error::{Error, Result};

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

fn db_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |err| Error::internal(context, err)
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies the migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(db_error("invalid database path"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode survives a killed process; only power loss can drop the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(db_error("opening the database"))?;
        sqlx::migrate!("./migrations")
            .run(&writer)
            .await
            .map_err(|err| Error::internal("applying migrations", err))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await
            .map_err(db_error("opening the database for reading"))?;
        Ok(Store { writer, reader })
    }

    /// True when the database answers a query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.reader).await.is_ok()
    }

    /// Closes both pools, waiting for queries in flight.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
