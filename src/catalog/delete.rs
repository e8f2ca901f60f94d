//! Deleting a data set, and measuring one on disk.

use super::Catalog;
use super::debris::size_of;
use crate::domain::DatasetId;
use crate::error::{Error, Result};
use crate::store::DatasetRow;

impl Catalog {
    /// Deletes a data set (by id or name): its row, then its folder, and the cache forgets it.
    /// A 409 for a built-in one or while any job trains or trained on it (the message names
    /// up to five); a folder that cannot be removed is logged and collected at the next start.
    pub async fn delete(&self, name_or_id: &str) -> Result<DatasetRow> {
        let row = self
            .find(name_or_id)
            .await?
            .ok_or_else(|| Error::not_found("data set", name_or_id))?;
        let row = self.store.delete_dataset(row.id).await?;
        self.cache.invalidate(&row.id);
        self.cache.run_pending_tasks();
        let folder = self.dir.join(row.id.to_string());
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&folder) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(format!("{}: {err}", folder.display())),
        })
        .await
        .map_err(|err| Error::internal("removing a data set's folder", err))?;
        if let Err(err) = removed {
            tracing::warn!(error = %err, "removing a deleted data set's folder failed; the next start removes it");
        }
        tracing::info!(dataset_id = %row.id, name = %row.name, "data set deleted");
        Ok(row)
    }

    /// The bytes of a data set's files on disk.
    pub async fn folder_bytes(&self, id: DatasetId) -> Result<u64> {
        let folder = self.dir.join(id.to_string());
        tokio::task::spawn_blocking(move || size_of(&folder))
            .await
            .map_err(|err| Error::internal("measuring a data set", err))
    }
}
