//! Learning-rate range tests, and the rate a `"lr": "auto"` job chose with one.

use sqlx::FromRow;

use super::{NOW, Store, db_error};
use crate::domain::{JobId, LrFindId};
use crate::error::{Error, Result};

/// A range test as stored.
#[derive(Clone, Debug, FromRow)]
pub struct LrFindRow {
    /// Its id.
    #[sqlx(try_from = "String")]
    pub id: LrFindId,
    /// The name of the spec it tested.
    pub name: String,
    /// The data set, as the spec named it.
    pub dataset: String,
    /// The tested spec, as JSON.
    pub spec: String,
    /// Its settings, as JSON.
    pub settings: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// The curve and suggestions, as JSON, once it succeeded.
    pub curve: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// How long the test took, once it ended.
    pub seconds: Option<f64>,
    /// The job it chose a rate for, if any.
    pub job_id: Option<String>,
    /// Its owner.
    pub owner: Option<String>,
    /// When it ran.
    pub created_at: String,
}

/// A range test to record: about to run (no curve), or finished.
pub struct NewLrFind<'a> {
    /// Its id.
    pub id: LrFindId,
    /// The name of the spec.
    pub name: &'a str,
    /// The data set's name.
    pub dataset: &'a str,
    /// The spec, as JSON.
    pub spec: &'a str,
    /// The settings, as JSON.
    pub settings: &'a str,
    /// The curve, as JSON, for a finished test.
    pub curve: Option<&'a str>,
    /// Seconds it took, for a finished test.
    pub seconds: Option<f64>,
    /// Its owner.
    pub owner: Option<&'a str>,
}

const LR_FIND_COLUMNS: &str =
    "id, name, dataset, spec, settings, status, curve, failure, seconds, job_id, owner, created_at";

impl Store {
    /// Records a range test asked for on its own, as `running`, before it runs.
    pub async fn insert_lr_find(&self, find: &NewLrFind<'_>) -> Result<LrFindRow> {
        let sql = format!(
            "INSERT INTO lr_finds (id, name, dataset, spec, settings, status, curve, seconds, owner, created_at) \
             VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, {NOW}) RETURNING {LR_FIND_COLUMNS}"
        );
        sqlx::query_as::<_, LrFindRow>(&sql)
            .bind(find.id.to_string())
            .bind(find.name)
            .bind(find.dataset)
            .bind(find.spec)
            .bind(find.settings)
            .bind(find.curve)
            .bind(find.seconds)
            .bind(find.owner)
            .fetch_one(&self.writer)
            .await
            .map_err(db_error("recording a learning-rate test"))
    }

    /// Records how a running test ended: its curve, or why it failed.
    pub async fn finish_lr_find(
        &self,
        id: LrFindId,
        outcome: std::result::Result<&str, &str>,
        seconds: f64,
    ) -> Result<()> {
        let (status, curve, failure) = match outcome {
            Ok(curve) => ("succeeded", Some(curve), None),
            Err(failure) => ("failed", None, Some(failure)),
        };
        sqlx::query(
            "UPDATE lr_finds SET status = ?, curve = ?, failure = ?, seconds = ? \
             WHERE id = ? AND status = 'running'",
        )
        .bind(status)
        .bind(curve)
        .bind(failure)
        .bind(seconds)
        .bind(id.to_string())
        .execute(&self.writer)
        .await
        .map_err(db_error("recording the end of a learning-rate test"))?;
        Ok(())
    }

    /// After a restart: tests that were running when the service stopped failed with it.
    pub async fn fail_interrupted_lr_finds(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE lr_finds SET status = 'failed', \
             failure = 'the service stopped before the test ended; run it again' \
             WHERE status = 'running'",
        )
        .execute(&self.writer)
        .await
        .map_err(db_error("ending interrupted learning-rate tests"))?;
        Ok(done.rows_affected())
    }

    /// One range test, if it exists.
    pub async fn get_lr_find(&self, id: LrFindId) -> Result<Option<LrFindRow>> {
        let sql = format!("SELECT {LR_FIND_COLUMNS} FROM lr_finds WHERE id = ?");
        sqlx::query_as::<_, LrFindRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading a learning-rate test"))
    }

    /// Range tests, newest first, of one owner or of all; at most `limit`.
    pub async fn list_lr_finds(&self, owner: Option<&str>, limit: i64) -> Result<Vec<LrFindRow>> {
        let sql = format!(
            "SELECT {LR_FIND_COLUMNS} FROM lr_finds WHERE ?1 IS NULL OR owner = ?1 \
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        );
        sqlx::query_as::<_, LrFindRow>(&sql)
            .bind(owner)
            .bind(limit)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing learning-rate tests"))
    }

    /// Deletes a range test run on its own; a job's test goes with its job, and a running one
    /// ends first (409).
    pub async fn delete_lr_find(&self, id: LrFindId) -> Result<()> {
        let row = self
            .get_lr_find(id)
            .await?
            .ok_or_else(|| Error::not_found("learning-rate test", id.to_string()))?;
        if let Some(job) = row.job_id {
            return Err(Error::conflict(format!(
                "this test chose the learning rate of job {job}; it is deleted with that job"
            )));
        }
        if row.status == "running" {
            return Err(Error::conflict(
                "the test is still running; delete it once it has ended",
            ));
        }
        sqlx::query("DELETE FROM lr_finds WHERE id = ? AND job_id IS NULL AND status <> 'running'")
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(db_error("deleting a learning-rate test"))?;
        Ok(())
    }

    /// In one transaction, fenced on the claim: records the range test a running
    /// `"lr": "auto"` job ran, and the spec with the rate it chose. False when the claim was
    /// lost (nothing is written).
    pub async fn record_lr_choice(
        &self,
        job: JobId,
        lease_epoch: i64,
        find: &NewLrFind<'_>,
        spec: &str,
    ) -> Result<bool> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("recording a chosen learning rate"))?;
        let updated = sqlx::query(
            "UPDATE jobs SET spec = ?, lr_find_id = ? \
             WHERE id = ? AND lease_epoch = ? AND status = 'running' AND lr_find_id IS NULL",
        )
        .bind(spec)
        .bind(find.id.to_string())
        .bind(job.to_string())
        .bind(lease_epoch)
        .execute(&mut *tx)
        .await
        .map_err(db_error("recording a chosen learning rate"))?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        let sql = format!(
            "INSERT INTO lr_finds (id, name, dataset, spec, settings, status, curve, seconds, job_id, owner, created_at) \
             VALUES (?, ?, ?, ?, ?, 'succeeded', ?, ?, ?, ?, {NOW})"
        );
        sqlx::query(&sql)
            .bind(find.id.to_string())
            .bind(find.name)
            .bind(find.dataset)
            .bind(find.spec)
            .bind(find.settings)
            .bind(find.curve)
            .bind(find.seconds)
            .bind(job.to_string())
            .bind(find.owner)
            .execute(&mut *tx)
            .await
            .map_err(db_error("recording a learning-rate test"))?;
        tx.commit()
            .await
            .map_err(db_error("recording a chosen learning rate"))?;
        Ok(true)
    }
}
