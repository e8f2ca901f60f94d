//! The loss of every step, stored per epoch as one compact blob of little-endian f32 values.

use sqlx::{FromRow, SqliteConnection};

use super::{Store, db_error};
use crate::domain::JobId;
use crate::error::{Error, Result};

/// The step losses of one epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct StepBatch {
    /// The epoch.
    pub epoch: i64,
    /// Global number (1-based) of its first step.
    pub first_step: i64,
    /// The loss of each step, in order.
    pub losses: Vec<f32>,
}

#[derive(FromRow)]
struct StepBlob {
    epoch: i64,
    first_step: i64,
    steps: i64,
    losses: Vec<u8>,
}

impl StepBlob {
    fn decode(self) -> Result<StepBatch> {
        let losses: Vec<f32> = self
            .losses
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if losses.len() as i64 != self.steps || !self.losses.len().is_multiple_of(4) {
            return Err(Error::Internal(format!(
                "step losses of epoch {} are corrupt: {} bytes for {} steps",
                self.epoch,
                self.losses.len(),
                self.steps
            )));
        }
        Ok(StepBatch {
            epoch: self.epoch,
            first_step: self.first_step,
            losses,
        })
    }
}

/// Inserts an epoch's step losses inside the caller's transaction.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    id: JobId,
    batch: &StepBatch,
) -> Result<()> {
    let bytes: Vec<u8> = batch.losses.iter().flat_map(|l| l.to_le_bytes()).collect();
    sqlx::query(
        "INSERT INTO steps (job_id, epoch, first_step, steps, losses) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.to_string())
    .bind(batch.epoch)
    .bind(batch.first_step)
    .bind(batch.losses.len() as i64)
    .bind(bytes)
    .execute(conn)
    .await
    .map_err(db_error("recording step losses"))?;
    Ok(())
}

impl Store {
    /// The step losses of every epoch that has a step in `from_step..=to_step`, in order.
    pub async fn list_steps(
        &self,
        id: JobId,
        from_step: i64,
        to_step: i64,
    ) -> Result<Vec<StepBatch>> {
        sqlx::query_as::<_, StepBlob>(
            "SELECT epoch, first_step, steps, losses FROM steps \
             WHERE job_id = ? AND first_step <= ? AND first_step + steps > ? ORDER BY epoch",
        )
        .bind(id.to_string())
        .bind(to_step)
        .bind(from_step)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("reading step losses"))?
        .into_iter()
        .map(StepBlob::decode)
        .collect()
    }

    /// The number of recorded steps of a job.
    pub async fn count_steps(&self, id: JobId) -> Result<i64> {
        sqlx::query_scalar::<_, i64>("SELECT COALESCE(SUM(steps), 0) FROM steps WHERE job_id = ?")
            .bind(id.to_string())
            .fetch_one(&self.reader)
            .await
            .map_err(db_error("counting steps"))
    }
}
