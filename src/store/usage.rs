//! Disk usage as the database records it: checkpoint bytes per job and the bytes of uploaded
//! weights. Data-set folders are measured on disk by the catalog.

use sqlx::FromRow;

use super::{OptionalSweepId, Store, db_error};
use crate::domain::{JobId, JobStatus, WeightsId};
use crate::error::Result;

/// Which rows a usage report covers, and how many of each kind it lists (totals always count
/// every row the filter covers).
#[derive(Clone, Debug)]
pub struct UsageFilter {
    /// Most rows listed per kind, largest first.
    pub limit: i64,
    /// Only what this owner holds (everything when `None`).
    pub owner: Option<String>,
}

/// The checkpoints of one job.
#[derive(Clone, Debug, FromRow)]
pub struct JobUsageRow {
    /// The job's id.
    #[sqlx(try_from = "String")]
    pub id: JobId,
    /// Its display name.
    pub name: String,
    /// Its status.
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    /// Whether the age retention keeps it.
    pub pinned: bool,
    /// The sweep it is a trial of.
    #[sqlx(try_from = "Option<String>")]
    pub sweep_id: OptionalSweepId,
    /// Checkpoint files kept.
    pub checkpoints: i64,
    /// Their bytes.
    pub bytes: i64,
}

/// One upload of weights.
#[derive(Clone, Debug, FromRow)]
pub struct WeightsUsageRow {
    /// Its id.
    #[sqlx(try_from = "String")]
    pub id: WeightsId,
    /// Its name.
    pub name: String,
    /// Its file's bytes.
    pub bytes: i64,
}

/// Sums over every row a filter covers.
#[derive(Clone, Copy, Debug, Default, FromRow)]
pub struct UsageTotals {
    /// Rows (jobs or uploads).
    pub count: i64,
    /// Files (checkpoints, or one per upload).
    pub files: i64,
    /// Their bytes.
    pub bytes: i64,
}

impl Store {
    /// How many jobs are in each status.
    pub async fn job_status_counts(&self) -> Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("counting jobs by status"))
    }

    /// Jobs by checkpoint bytes, largest first (then oldest), at most `filter.limit`.
    pub async fn job_usage(&self, filter: &UsageFilter) -> Result<Vec<JobUsageRow>> {
        sqlx::query_as::<_, JobUsageRow>(
            "SELECT j.id, j.name, j.status, j.pinned, j.sweep_id, \
                 COUNT(c.epoch) AS checkpoints, COALESCE(SUM(c.bytes), 0) AS bytes \
             FROM jobs j LEFT JOIN checkpoints c ON c.job_id = j.id \
             WHERE ?1 IS NULL OR j.owner = ?1 \
             GROUP BY j.id ORDER BY bytes DESC, j.seq LIMIT ?2",
        )
        .bind(&filter.owner)
        .bind(filter.limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("measuring jobs"))
    }

    /// Every job's checkpoints together.
    pub async fn job_usage_totals(&self, filter: &UsageFilter) -> Result<UsageTotals> {
        sqlx::query_as::<_, UsageTotals>(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE ?1 IS NULL OR owner = ?1) AS count, \
                 COUNT(*) AS files, COALESCE(SUM(c.bytes), 0) AS bytes \
             FROM checkpoints c JOIN jobs j ON j.id = c.job_id WHERE ?1 IS NULL OR j.owner = ?1",
        )
        .bind(&filter.owner)
        .fetch_one(&self.reader)
        .await
        .map_err(db_error("measuring jobs"))
    }

    /// Uploaded weights by size, largest first, at most `filter.limit`.
    pub async fn weights_usage(&self, filter: &UsageFilter) -> Result<Vec<WeightsUsageRow>> {
        sqlx::query_as::<_, WeightsUsageRow>(
            "SELECT id, name, bytes FROM weights WHERE ?1 IS NULL OR owner = ?1 \
             ORDER BY bytes DESC, created_at LIMIT ?2",
        )
        .bind(&filter.owner)
        .bind(filter.limit)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("measuring weights"))
    }

    /// Every upload of weights together.
    pub async fn weights_usage_totals(&self, filter: &UsageFilter) -> Result<UsageTotals> {
        sqlx::query_as::<_, UsageTotals>(
            "SELECT COUNT(*) AS count, COUNT(*) AS files, COALESCE(SUM(bytes), 0) AS bytes \
             FROM weights WHERE ?1 IS NULL OR owner = ?1",
        )
        .bind(&filter.owner)
        .fetch_one(&self.reader)
        .await
        .map_err(db_error("measuring weights"))
    }
}
