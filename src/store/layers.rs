//! Gradient and weight norms per parameter tensor and epoch.

use sqlx::{FromRow, SqliteConnection};

use super::{Store, db_error};
use crate::domain::JobId;
use crate::error::Result;

/// The norms of one parameter tensor in one epoch.
#[derive(Clone, Debug, PartialEq, FromRow)]
pub struct LayerGradRow {
    /// The tensor's place in the model (0-based).
    pub position: i64,
    /// The epoch.
    pub epoch: i64,
    /// The tensor's name, e.g. `hidden.3.weight`.
    pub tensor: String,
    /// Its layer, e.g. `hidden.3`.
    pub layer: String,
    /// The layer's position: 0-based for hidden layers, the depth for the output layer.
    pub layer_index: i64,
    /// The tensor's role: `weight`, `bias`, `bn.weight`, `bn.bias`.
    pub role: String,
    /// Mean gradient L2 norm over the epoch's steps (None when not finite).
    pub grad_norm_mean: Option<f64>,
    /// Largest gradient L2 norm of the epoch's steps (None when not finite).
    pub grad_norm_max: Option<f64>,
    /// Weight L2 norm at the epoch's end (None when not finite).
    pub weight_norm: Option<f64>,
}

/// Inserts an epoch's rows inside the caller's transaction.
pub(super) async fn insert(
    conn: &mut SqliteConnection,
    id: JobId,
    rows: &[LayerGradRow],
) -> Result<()> {
    let job = id.to_string();
    for row in rows {
        sqlx::query(
            "INSERT INTO layer_grads (job_id, position, epoch, tensor, layer, layer_index, role, \
                 grad_norm_mean, grad_norm_max, weight_norm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&job)
        .bind(row.position)
        .bind(row.epoch)
        .bind(&row.tensor)
        .bind(&row.layer)
        .bind(row.layer_index)
        .bind(&row.role)
        .bind(row.grad_norm_mean.filter(|v| v.is_finite()))
        .bind(row.grad_norm_max.filter(|v| v.is_finite()))
        .bind(row.weight_norm.filter(|v| v.is_finite()))
        .execute(&mut *conn)
        .await
        .map_err(db_error("recording layer norms"))?;
    }
    Ok(())
}

impl Store {
    /// A job's per-tensor norms in model order, then epoch order; with `layer`, only the
    /// tensors whose name is `layer` or starts with `layer` followed by a dot.
    pub async fn list_layer_grads(
        &self,
        id: JobId,
        layer: Option<&str>,
    ) -> Result<Vec<LayerGradRow>> {
        sqlx::query_as::<_, LayerGradRow>(
            "SELECT position, epoch, tensor, layer, layer_index, role, grad_norm_mean, \
                 grad_norm_max, weight_norm FROM layer_grads \
             WHERE job_id = ?1 AND (?2 IS NULL OR tensor = ?2 \
                 OR substr(tensor, 1, length(?2) + 1) = ?2 || '.') \
             ORDER BY position, epoch",
        )
        .bind(id.to_string())
        .bind(layer)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("reading layer norms"))
    }
}
