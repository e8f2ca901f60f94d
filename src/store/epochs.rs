use sqlx::FromRow;

use super::{CheckpointRow, LayerGradRow, NOW, StepBatch, Store, db_error, layers, steps};
use crate::domain::JobId;
use crate::error::Result;

/// The metrics of one epoch of one job.
#[derive(Clone, Debug, PartialEq, FromRow, serde::Serialize)]
pub struct EpochRow {
    /// 1-based epoch number.
    pub epoch: i64,
    /// Running mean of the training loss over the epoch's steps (train mode, as it trained).
    pub train_loss: f64,
    /// Running training accuracy over the epoch's steps (train mode).
    pub train_acc: f64,
    /// Training loss over the whole training split in eval mode at the epoch's end (None for
    /// epochs recorded before this measurement existed).
    pub train_eval_loss: Option<f64>,
    /// Training accuracy over the whole training split in eval mode at the epoch's end.
    pub train_eval_acc: Option<f64>,
    /// Validation loss at the epoch's end.
    pub val_loss: f64,
    /// Validation accuracy at the epoch's end.
    pub val_acc: f64,
    /// Test loss at the epoch's end, when there is a test split.
    pub test_loss: Option<f64>,
    /// Test accuracy at the epoch's end, when there is a test split.
    pub test_acc: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Optimizer steps taken in the epoch.
    pub steps: i64,
    /// Coefficient of variation (std / mean) of the epoch's step losses.
    pub step_loss_cv: Option<f64>,
    /// Wall time of the epoch (training and evaluation).
    pub epoch_seconds: f64,
    /// Training samples per second of training time.
    pub samples_per_sec: f64,
}

/// Everything one epoch records, committed together.
pub struct EpochCommit<'a> {
    /// The epoch's metrics.
    pub epoch: &'a EpochRow,
    /// Its checkpoint file, when one was written (a coalesced backlog writes only some).
    pub checkpoint: Option<&'a CheckpointRow>,
    /// The loss of each of its steps.
    pub steps: &'a StepBatch,
    /// Its per-tensor gradient and weight norms.
    pub layers: &'a [LayerGradRow],
    /// Why early stopping ends the job after this epoch, if it does.
    pub stopped_early: Option<&'a str>,
    /// Whether that stop is the sweep's pruning rule.
    pub pruned: bool,
}

pub(super) const EPOCH_COLUMNS: &str = "epoch, train_loss, train_acc, train_eval_loss, train_eval_acc, \
    val_loss, val_acc, test_loss, test_acc, lr, steps, step_loss_cv, epoch_seconds, samples_per_sec";

impl Store {
    /// In one transaction, fenced on the claim: records the epochs' metrics, step losses,
    /// layer norms and checkpoints, advances the job's progress and best epoch, and records an
    /// early stop. False (and nothing written) if the claim was lost.
    pub async fn commit_epochs(
        &self,
        id: JobId,
        lease_epoch: i64,
        commits: &[EpochCommit<'_>],
    ) -> Result<bool> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting an epoch commit"))?;
        for commit in commits {
            if !record_epoch(&mut tx, id, lease_epoch, commit).await? {
                tx.rollback()
                    .await
                    .map_err(db_error("rolling back a fenced commit"))?;
                return Ok(false);
            }
        }
        tx.commit().await.map_err(db_error("committing an epoch"))?;
        Ok(true)
    }

    /// Every recorded epoch of a job, in order.
    pub async fn list_epochs(&self, id: JobId) -> Result<Vec<EpochRow>> {
        let sql = format!("SELECT {EPOCH_COLUMNS} FROM epochs WHERE job_id = ? ORDER BY epoch");
        sqlx::query_as::<_, EpochRow>(&sql)
            .bind(id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("reading epochs"))
    }

    /// One recorded epoch.
    pub async fn get_epoch(&self, id: JobId, epoch: i64) -> Result<Option<EpochRow>> {
        let sql = format!("SELECT {EPOCH_COLUMNS} FROM epochs WHERE job_id = ? AND epoch = ?");
        sqlx::query_as::<_, EpochRow>(&sql)
            .bind(id.to_string())
            .bind(epoch)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading an epoch"))
    }
}

/// One epoch of [`Store::commit_epochs`]; false when the claim was lost.
async fn record_epoch(
    conn: &mut sqlx::SqliteConnection,
    id: JobId,
    lease_epoch: i64,
    commit: &EpochCommit<'_>,
) -> Result<bool> {
    let epoch = commit.epoch;
    let better =
        "(best_val_acc IS NULL OR ?1 > best_val_acc OR (?1 = best_val_acc AND ?2 < best_val_loss))";
    let sql = format!(
        "UPDATE jobs SET epochs_done = ?3, \
                 best_epoch = CASE WHEN {better} THEN ?3 ELSE best_epoch END, \
                 best_val_loss = CASE WHEN {better} THEN ?2 ELSE best_val_loss END, \
                 best_val_acc = CASE WHEN {better} THEN ?1 ELSE best_val_acc END, \
                 stopped_early_epoch = CASE WHEN ?6 IS NULL THEN stopped_early_epoch ELSE ?3 END, \
                 stop_reason = COALESCE(?6, stop_reason), \
                 pruned = CASE WHEN ?7 THEN 1 ELSE pruned END, \
                 updated_at = {NOW} \
             WHERE id = ?4 AND lease_epoch = ?5 AND status = 'running'"
    );
    let updated = sqlx::query(&sql)
        .bind(epoch.val_acc)
        .bind(epoch.val_loss)
        .bind(epoch.epoch)
        .bind(id.to_string())
        .bind(lease_epoch)
        .bind(commit.stopped_early)
        .bind(commit.pruned)
        .execute(&mut *conn)
        .await
        .map_err(db_error("advancing a job"))?;
    if updated.rows_affected() != 1 {
        return Ok(false);
    }
    let sql = format!(
        "INSERT INTO epochs (job_id, {EPOCH_COLUMNS}, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW})"
    );
    sqlx::query(&sql)
        .bind(id.to_string())
        .bind(epoch.epoch)
        .bind(epoch.train_loss)
        .bind(epoch.train_acc)
        .bind(epoch.train_eval_loss.filter(|v| v.is_finite()))
        .bind(epoch.train_eval_acc)
        .bind(epoch.val_loss)
        .bind(epoch.val_acc)
        .bind(epoch.test_loss)
        .bind(epoch.test_acc)
        .bind(epoch.lr)
        .bind(epoch.steps)
        .bind(epoch.step_loss_cv.filter(|v| v.is_finite()))
        .bind(epoch.epoch_seconds)
        .bind(epoch.samples_per_sec)
        .execute(&mut *conn)
        .await
        .map_err(db_error("recording an epoch"))?;
    if let Some(checkpoint) = commit.checkpoint {
        let sql = format!(
            "INSERT INTO checkpoints (job_id, epoch, path, sha256, bytes, val_acc, val_loss, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, {NOW})"
        );
        sqlx::query(&sql)
            .bind(id.to_string())
            .bind(checkpoint.epoch)
            .bind(&checkpoint.path)
            .bind(&checkpoint.sha256)
            .bind(checkpoint.bytes)
            .bind(checkpoint.val_acc)
            .bind(checkpoint.val_loss)
            .execute(&mut *conn)
            .await
            .map_err(db_error("recording a checkpoint"))?;
    }
    steps::insert(conn, id, commit.steps).await?;
    layers::insert(conn, id, commit.layers).await?;
    Ok(true)
}
