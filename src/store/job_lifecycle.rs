//! A job's life on a worker: claiming it under a lease, renewing the lease, recording how it
//! ended, cancelling, and recovering what a crash interrupted. Every write is fenced on the
//! claim's lease epoch.

use sqlx::Row;

use super::jobs::{CancelOutcome, Claim, JOB_COLUMNS, JobRow, RecoveryReport};
use super::{NOW, Store, db_error};
use crate::domain::{JobId, JobStatus};
use crate::error::{Error, Result};

impl Store {
    /// Claims the next queued job for `owner`, leasing it until `lease_until_ms`.
    pub async fn claim_next_job(&self, owner: &str, lease_until_ms: i64) -> Result<Option<Claim>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting a claim"))?;
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = ?, \
                 lease_until_ms = ?, lease_epoch = lease_epoch + 1, \
                 started_at = COALESCE(started_at, {NOW}), updated_at = {NOW} \
             WHERE id = (SELECT id FROM jobs q WHERE status = 'queued' AND (sweep_id IS NULL OR \
                 (SELECT COUNT(*) FROM jobs r WHERE r.sweep_id = q.sweep_id AND r.status = 'running') < \
                 (SELECT max_concurrent FROM sweeps s WHERE s.id = q.sweep_id)) \
                 ORDER BY priority DESC, seq LIMIT 1) \
             RETURNING {JOB_COLUMNS}"
        );
        let job = sqlx::query_as::<_, JobRow>(&sql)
            .bind(owner)
            .bind(lease_until_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error("claiming a job"))?;
        tx.commit().await.map_err(db_error("committing a claim"))?;
        Ok(job.map(|job| Claim {
            lease_epoch: job.lease_epoch,
            job,
        }))
    }

    /// Extends a claim; `None` means the claim was lost (fenced out), else whether a cancel is pending.
    pub async fn renew_lease(
        &self,
        id: JobId,
        lease_epoch: i64,
        until_ms: i64,
    ) -> Result<Option<bool>> {
        sqlx::query_scalar::<_, bool>(
            "UPDATE jobs SET lease_until_ms = ? WHERE id = ? AND lease_epoch = ? AND status = 'running' \
             RETURNING cancel_requested",
        )
        .bind(until_ms)
        .bind(id.to_string())
        .bind(lease_epoch)
        // Read to the end, so a failed autocommit is reported (see the module's documentation).
        .fetch_all(&self.writer)
        .await
        .map(|rows| rows.into_iter().next())
        .map_err(db_error("renewing a lease"))
    }

    /// Records the preprocessing fitted when the job first started; false if fenced out.
    pub async fn set_preprocessing(&self, id: JobId, lease_epoch: i64, json: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET preprocessing = ? WHERE id = ? AND lease_epoch = ? AND status = 'running'",
        )
        .bind(json)
        .bind(id.to_string())
        .bind(lease_epoch)
        .execute(&self.writer)
        .await
        .map_err(db_error("recording preprocessing"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a running job with a terminal status; false if the claim was lost.
    pub async fn finish_job(
        &self,
        id: JobId,
        lease_epoch: i64,
        status: JobStatus,
        failure: Option<&str>,
    ) -> Result<bool> {
        let sql = format!(
            "UPDATE jobs SET status = ?, failure = ?, lease_owner = NULL, lease_until_ms = NULL, \
                 finished_at = {NOW}, updated_at = {NOW} \
             WHERE id = ? AND lease_epoch = ? AND status = 'running'"
        );
        let done = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(failure)
            .bind(id.to_string())
            .bind(lease_epoch)
            .execute(&self.writer)
            .await
            .map_err(db_error("finishing a job"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a running job back in the queue without using up an attempt (graceful shutdown).
    pub async fn requeue_job(&self, id: JobId, lease_epoch: i64) -> Result<bool> {
        let sql = format!(
            "UPDATE jobs SET status = 'queued', attempt = MAX(attempt - 1, 0), lease_owner = NULL, \
                 lease_until_ms = NULL, updated_at = {NOW} \
             WHERE id = ? AND lease_epoch = ? AND status = 'running'"
        );
        let done = sqlx::query(&sql)
            .bind(id.to_string())
            .bind(lease_epoch)
            .execute(&self.writer)
            .await
            .map_err(db_error("requeueing a job"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Cancels a queued job at once, or flags a running one for its worker.
    pub async fn request_cancel(&self, id: JobId) -> Result<CancelOutcome> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting a cancel"))?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error("reading a job to cancel"))?;
        let status: JobStatus = status
            .ok_or_else(|| Error::not_found("job", id.to_string()))?
            .parse()
            .map_err(|err| Error::internal("reading a job status", err))?;
        let outcome = match status {
            JobStatus::Queued => {
                let sql = format!(
                    "UPDATE jobs SET status = 'cancelled', finished_at = {NOW}, updated_at = {NOW} WHERE id = ?"
                );
                sqlx::query(&sql)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map(|_| ())
                    .map_err(db_error("cancelling a queued job"))?;
                CancelOutcome::CancelledWhileQueued
            }
            JobStatus::Running => {
                let sql = format!(
                    "UPDATE jobs SET cancel_requested = 1, updated_at = {NOW} WHERE id = ?"
                );
                sqlx::query(&sql)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map(|_| ())
                    .map_err(db_error("flagging a cancel"))?;
                CancelOutcome::Requested
            }
            ended => CancelOutcome::AlreadyEnded(ended),
        };
        tx.commit().await.map_err(db_error("committing a cancel"))?;
        Ok(outcome)
    }

    /// After a crash: requeues `running` jobs whose lease expired before `now_ms` (all of them
    /// when `now_ms` is `i64::MAX`, i.e. at start-up of the only node), failing those that have
    /// used `max_attempts` and cancelling those with a pending cancel.
    pub async fn recover_interrupted_jobs(
        &self,
        now_ms: i64,
        max_attempts: i64,
    ) -> Result<RecoveryReport> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting recovery"))?;
        let rows = sqlx::query(
            "SELECT id, attempt, cancel_requested FROM jobs \
             WHERE status = 'running' AND (lease_until_ms IS NULL OR lease_until_ms < ?)",
        )
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error("finding interrupted jobs"))?;
        let mut report = RecoveryReport::default();
        for row in rows {
            let id: String = row.get("id");
            let attempt: i64 = row.get("attempt");
            let cancel: bool = row.get("cancel_requested");
            let job_id: JobId = id
                .parse()
                .map_err(|err| Error::internal("reading a job id", err))?;
            let (status, failure) = if cancel {
                report.cancelled.push(job_id);
                ("cancelled", None)
            } else if attempt >= max_attempts {
                report.failed.push(job_id);
                (
                    "failed",
                    Some(format!(
                        "interrupted {attempt} times (the server stopped while it trained); giving up after {max_attempts} attempts"
                    )),
                )
            } else {
                report.requeued.push(job_id);
                ("queued", None)
            };
            let finished = if status == "queued" {
                "NULL".to_string()
            } else {
                NOW.to_string()
            };
            let sql = format!(
                "UPDATE jobs SET status = ?, failure = ?, lease_owner = NULL, lease_until_ms = NULL, \
                     finished_at = {finished}, updated_at = {NOW} WHERE id = ?"
            );
            sqlx::query(&sql)
                .bind(status)
                .bind(failure)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(db_error("recovering a job"))?;
        }
        tx.commit().await.map_err(db_error("committing recovery"))?;
        Ok(report)
    }
}
