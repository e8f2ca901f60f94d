use sqlx::FromRow;

use super::{Store, db_error};
use crate::domain::JobId;
use crate::error::Result;

/// A checkpoint file of one epoch, recorded once it was fully written.
#[derive(Clone, Debug, PartialEq, FromRow, serde::Serialize)]
pub struct CheckpointRow {
    /// The epoch it was taken after.
    pub epoch: i64,
    /// Path relative to the data folder.
    pub path: String,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// File size.
    pub bytes: i64,
    /// Validation accuracy of the weights it holds.
    pub val_acc: f64,
    /// Validation loss of the weights it holds.
    pub val_loss: f64,
}

const CHECKPOINT_COLUMNS: &str = "epoch, path, sha256, bytes, val_acc, val_loss";

impl Store {
    /// A job's checkpoints, by epoch.
    pub async fn list_checkpoints(&self, id: JobId) -> Result<Vec<CheckpointRow>> {
        let sql =
            format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE job_id = ? ORDER BY epoch");
        sqlx::query_as::<_, CheckpointRow>(&sql)
            .bind(id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing checkpoints"))
    }

    /// The checkpoint of one epoch.
    pub async fn get_checkpoint(&self, id: JobId, epoch: i64) -> Result<Option<CheckpointRow>> {
        let sql =
            format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE job_id = ? AND epoch = ?");
        sqlx::query_as::<_, CheckpointRow>(&sql)
            .bind(id.to_string())
            .bind(epoch)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading a checkpoint"))
    }

    /// The most recent checkpoint: where a resumed job continues from.
    pub async fn latest_checkpoint(&self, id: JobId) -> Result<Option<CheckpointRow>> {
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE job_id = ? ORDER BY epoch DESC LIMIT 1"
        );
        sqlx::query_as::<_, CheckpointRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.writer)
            .await
            .map_err(db_error("reading the latest checkpoint"))
    }

    /// Forgets the checkpoints of the given epochs (the caller deletes the files afterwards).
    pub async fn delete_checkpoints(&self, id: JobId, epochs: &[i64]) -> Result<()> {
        for epoch in epochs {
            sqlx::query("DELETE FROM checkpoints WHERE job_id = ? AND epoch = ?")
                .bind(id.to_string())
                .bind(epoch)
                .execute(&self.writer)
                .await
                .map_err(db_error("deleting a checkpoint"))?;
        }
        Ok(())
    }
}
