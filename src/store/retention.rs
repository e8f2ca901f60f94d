//! What the retention pass looks for: ended jobs with more checkpoints than it keeps, and jobs
//! and sweeps that ended longer ago than it keeps them; and, for start-up, every file the
//! database records, so that files without a row can be told apart.

use std::collections::HashSet;

use super::deletion::{FINISHED, UNFINISHED, parse_job_ids};
use super::{Store, db_error};
use crate::domain::{JobId, SweepId};
use crate::error::{Error, Result};

/// The SQLite time modifier for `seconds` ago (`-86400 seconds`).
fn ago(seconds: f64) -> String {
    format!("-{} seconds", seconds.max(0.0))
}

impl Store {
    /// Ended jobs holding more than `limit` checkpoints, oldest first, at most `batch`.
    pub async fn ended_jobs_with_more_checkpoints_than(
        &self,
        limit: i64,
        batch: i64,
    ) -> Result<Vec<JobId>> {
        let sql = format!(
            "SELECT j.id FROM jobs j JOIN checkpoints c ON c.job_id = j.id \
             WHERE j.status IN {FINISHED} GROUP BY j.id HAVING COUNT(*) > ? \
             ORDER BY MIN(j.seq) LIMIT ?"
        );
        let ids: Vec<String> = sqlx::query_scalar(&sql)
            .bind(limit)
            .bind(batch)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("finding jobs with checkpoints to trim"))?;
        parse_job_ids(ids)
    }

    /// Jobs that are no sweep's trial, ended more than `max_age_seconds` ago, are not pinned
    /// and are no queued or running job's `init.from_job`; oldest first, at most `batch`.
    pub async fn expired_jobs(&self, max_age_seconds: f64, batch: i64) -> Result<Vec<JobId>> {
        let sql = format!(
            "SELECT j.id FROM jobs j WHERE j.status IN {FINISHED} AND j.sweep_id IS NULL \
             AND j.pinned = 0 AND j.finished_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) \
             AND NOT EXISTS (SELECT 1 FROM jobs u WHERE u.status IN {UNFINISHED} \
                 AND json_extract(u.spec, '$.init.from_job') = j.id) \
             ORDER BY j.finished_at LIMIT ?"
        );
        let ids: Vec<String> = sqlx::query_scalar(&sql)
            .bind(ago(max_age_seconds))
            .bind(batch)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("finding expired jobs"))?;
        parse_job_ids(ids)
    }

    /// Sweeps whose every job ended more than `max_age_seconds` ago and none is pinned;
    /// oldest first, at most `batch`. A sweep goes whole or not at all.
    pub async fn expired_sweeps(&self, max_age_seconds: f64, batch: i64) -> Result<Vec<SweepId>> {
        let sql = format!(
            "SELECT s.id FROM sweeps s \
             WHERE s.created_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1) \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.sweep_id = s.id AND (j.status IN {UNFINISHED} \
                 OR j.pinned = 1 OR j.finished_at IS NULL \
                 OR j.finished_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1))) \
             ORDER BY s.created_at LIMIT ?2"
        );
        let ids: Vec<String> = sqlx::query_scalar(&sql)
            .bind(ago(max_age_seconds))
            .bind(batch)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("finding expired sweeps"))?;
        ids.into_iter()
            .map(|id| {
                id.parse()
                    .map_err(|err| Error::internal("reading a sweep id", err))
            })
            .collect()
    }

    /// The ids of every job.
    pub async fn job_ids(&self) -> Result<HashSet<JobId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing job ids"))?;
        Ok(parse_job_ids(ids)?.into_iter().collect())
    }

    /// Every checkpoint and weights file a row records, relative to the data folder.
    pub async fn recorded_files(&self) -> Result<HashSet<String>> {
        let paths: Vec<String> = sqlx::query_scalar(
            "SELECT path FROM checkpoints UNION ALL SELECT path FROM weights \
                 UNION ALL SELECT path FROM model_versions",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing recorded files"))?;
        Ok(paths.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_is_a_negative_sqlite_modifier() {
        assert_eq!(ago(86400.0), "-86400 seconds");
        assert_eq!(ago(0.864), "-0.864 seconds");
        assert_eq!(ago(-3.0), "-0 seconds");
    }
}
