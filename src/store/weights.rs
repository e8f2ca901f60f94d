//! Uploaded weights: one row per safetensors file under the data folder.

use sqlx::FromRow;

use super::deletion::weights_users;
use super::{NOW, Store, classify_db_error, db_error};
use crate::domain::WeightsId;
use crate::error::{Error, Result};

/// Uploaded weights as stored.
#[derive(Clone, Debug, FromRow)]
pub struct WeightsRow {
    /// Its id.
    #[sqlx(try_from = "String")]
    pub id: WeightsId,
    /// Its unique name.
    pub name: String,
    /// The file, relative to the data folder.
    pub path: String,
    /// Size of the file.
    pub bytes: i64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// JSON list of `{name, dtype, shape}`, in the file's order.
    pub tensors: String,
    /// When it was uploaded.
    pub created_at: String,
}

/// What to record for a file already in place.
pub struct NewWeights<'a> {
    /// Its id.
    pub id: WeightsId,
    /// Its unique name.
    pub name: &'a str,
    /// The file, relative to the data folder.
    pub path: &'a str,
    /// Size of the file.
    pub bytes: i64,
    /// Hex SHA-256 of the file.
    pub sha256: &'a str,
    /// JSON list of its tensors.
    pub tensors: &'a str,
    /// Who it belongs to; none when the service has no tokens.
    pub owner: Option<&'a str>,
}

const COLUMNS: &str = "id, name, path, bytes, sha256, tensors, created_at";

impl Store {
    /// Records weights whose file is already in place; a taken name is a conflict.
    pub async fn insert_weights(&self, new: NewWeights<'_>) -> Result<WeightsRow> {
        let sql = format!(
            "INSERT INTO weights (id, name, path, bytes, sha256, tensors, owner, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, {NOW}) RETURNING {COLUMNS}"
        );
        sqlx::query_as::<_, WeightsRow>(&sql)
            .bind(new.id.to_string())
            .bind(new.name)
            .bind(new.path)
            .bind(new.bytes)
            .bind(new.sha256)
            .bind(new.tensors)
            .bind(new.owner)
            // Read to the end, so a failed autocommit is reported (see the module's documentation).
            .fetch_all(&self.writer)
            .await
            .map_err(|err| match &err {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    Error::conflict(format!("weights named '{}' already exist", new.name))
                }
                _ => classify_db_error("inserting weights", err),
            })?
            .pop()
            .ok_or_else(|| Error::Internal("inserting weights returned no row".into()))
    }

    /// Weights by name or id.
    pub async fn find_weights(&self, name_or_id: &str) -> Result<Option<WeightsRow>> {
        let sql = format!("SELECT {COLUMNS} FROM weights WHERE name = ?1 OR id = ?1");
        sqlx::query_as::<_, WeightsRow>(&sql)
            .bind(name_or_id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading weights"))
    }

    /// Every upload, oldest first.
    /// Only `owner`'s when an owner is given.
    pub async fn list_weights(&self, owner: Option<&str>) -> Result<Vec<WeightsRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM weights WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at, name"
        );
        sqlx::query_as::<_, WeightsRow>(&sql)
            .bind(owner)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing weights"))
    }

    /// Deletes a row, returning it (its file is the caller's to remove); a 409 while a queued
    /// or running job names the weights in `init.from_weights` (it loads them when it starts).
    pub async fn delete_weights(&self, id: WeightsId) -> Result<Option<WeightsRow>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting a delete"))?;
        let sql = format!("SELECT {COLUMNS} FROM weights WHERE id = ?");
        let Some(row) = sqlx::query_as::<_, WeightsRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error("reading weights to delete"))?
        else {
            return Ok(None);
        };
        let users = weights_users(&mut tx, &row.name, &row.id.to_string()).await?;
        if users.total > 0 {
            return Err(Error::conflict(format!(
                "weights '{}' are the init.from_weights of queued or running jobs ({}), \
                 which load them when they start; wait for them to end or cancel them",
                row.name,
                users.describe()
            )));
        }
        sqlx::query("DELETE FROM weights WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error("deleting weights"))?;
        tx.commit().await.map_err(db_error("committing a delete"))?;
        Ok(Some(row))
    }
}
