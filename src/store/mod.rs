//! Every SQL statement of the service, as named functions over one SQLite database in WAL
//! mode: a single writer connection (SQLite allows one writer anyway) and a pool of readers.
//!
//! Two rules keep an acknowledged write durable when the disk fills up:
//! - A write that returns rows (`... RETURNING`) outside a transaction is read with
//!   `fetch_all`, never `fetch_one`/`fetch_optional`: those stop after the first row and reset
//!   the statement, and SQLite commits an autocommit statement at that reset, so a failed
//!   commit (SQLITE_FULL) would never be reported and the caller would hold a row that was
//!   rolled back.
//! - A writer connection that comes back to the pool still inside a transaction is closed and
//!   replaced. When a COMMIT fails with SQLITE_FULL, SQLite rolls the transaction back itself;
//!   sqlx's own ROLLBACK then fails too and it believes the transaction is still open, so every
//!   later `BEGIN` on that connection would fail.

mod checkpoints;
mod datasets;
mod deletion;
mod epochs;
mod job_lifecycle;
mod jobs;
mod layers;
mod lr_finds;
mod models;
mod owners;
mod retention;
mod steps;
mod studies;
mod sweeps;
mod tokens;
mod usage;
mod weights;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqlitePool};

pub use checkpoints::CheckpointRow;
pub use datasets::DatasetRow;
pub use epochs::{EpochCommit, EpochRow};
pub use jobs::{
    CancelOutcome, Claim, JobFilter, JobRow, JobSort, NewJob, OptionalSweepId, RecoveryReport,
};
pub use layers::LayerGradRow;
pub use lr_finds::{LrFindRow, NewLrFind};
pub use models::{ModelAliasRow, ModelNameRow, ModelVersionRow, NewModelVersion};
pub use owners::{OwnedKind, Ownership};
pub use steps::StepBatch;
pub use studies::{NewStudy, StudyRow};
pub use sweeps::{NewTrial, SweepRow, TrialReplacement, TrialRow};
pub use tokens::TokenRow;
pub use usage::{JobUsageRow, UsageFilter, UsageTotals, WeightsUsageRow};
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
    move |err| classify_db_error(context, err)
}

/// SQLite's primary result codes that say the storage, not the statement, is at fault.
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;

/// A full disk is the client's 507, an I/O fault a 503; everything else is internal.
fn classify_db_error(context: &'static str, err: sqlx::Error) -> Error {
    if let sqlx::Error::Io(io) = &err
        && crate::error::is_storage_full(io)
    {
        return Error::storage_full(context, err);
    }
    let code = match &err {
        sqlx::Error::Database(db) => db.code().and_then(|code| code.parse::<i64>().ok()),
        _ => None,
    };
    // Extended result codes keep the primary code in their low byte.
    match code.map(|code| code & 0xff) {
        Some(SQLITE_FULL) => Error::storage_full(context, err),
        Some(SQLITE_IOERR) => Error::Unavailable {
            message: format!("{context}: the database cannot be written right now ({err})"),
        },
        _ => Error::internal(context, err),
    }
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
            .after_release(|conn, _| {
                Box::pin(async move {
                    // The ping runs after any ROLLBACK the dropped transaction queued.
                    let usable = conn.ping().await.is_ok() && !conn.is_in_transaction();
                    if !usable {
                        tracing::warn!(
                            "the database writer was left inside a failed transaction; reopening it"
                        );
                    }
                    Ok(usable)
                })
            })
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

    /// Commits a real write on the writer connection; an error says why the database cannot
    /// take writes now (a full disk, a stuck connection, an I/O fault).
    pub async fn probe_write(&self) -> Result<()> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting a write probe"))?;
        let sql = format!(
            "INSERT INTO readiness (id, checked_at) VALUES (1, {NOW}) \
             ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at"
        );
        sqlx::query(&sql)
            .execute(&mut *tx)
            .await
            .map_err(db_error("writing a probe row"))?;
        tx.commit()
            .await
            .map_err(db_error("committing a write probe"))
    }

    /// Closes both pools, waiting for queries in flight.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
