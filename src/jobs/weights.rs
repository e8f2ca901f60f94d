//! Uploaded weights (`POST /v1/weights`): checked to be safetensors, written atomically under
//! `weights/<id>.safetensors` in the data folder with their SHA-256, and recorded in one row.

use super::Jobs;
use crate::domain::WeightsId;
use crate::error::{Error, Result};
use crate::store::{NewWeights, WeightsRow};
use engine::checkpoint::write_atomically;
use engine::weights::inspect;

/// Longest name of uploaded weights, in characters.
const MAX_WEIGHTS_NAME_CHARS: usize = 200;

impl Jobs {
    /// Stores a safetensors file under `name`: a 422 on `file` when it is not one, a 409 when
    /// the name is taken. A failed upload leaves no file behind.
    pub async fn add_weights(
        &self,
        name: String,
        bytes: Vec<u8>,
        owner: Option<&str>,
    ) -> Result<WeightsRow> {
        let name = name.trim().to_string();
        // Characters, not bytes; no control or bidirectional formatting characters.
        engine::spec::check_label(&name, MAX_WEIGHTS_NAME_CHARS, "name")?;
        if self.inner.store.find_weights(&name).await?.is_some() {
            return Err(Error::conflict(format!(
                "weights named '{name}' already exist"
            )));
        }
        let id = WeightsId::new();
        let relative = format!("weights/{id}.safetensors");
        let path = self.inner.config.data_dir.join(&relative);
        let size = bytes.len() as i64;
        let (tensors, sha256) = tokio::task::spawn_blocking(move || -> Result<_> {
            let tensors = inspect(&bytes)?;
            let sha256 = write_atomically(&path, &bytes)?;
            Ok((tensors, sha256))
        })
        .await
        .map_err(|err| Error::internal("storing weights", err))??;
        let tensors = serde_json::to_string(&tensors)
            .map_err(|err| Error::internal("encoding a tensor list", err))?;
        let inserted = self
            .inner
            .store
            .insert_weights(NewWeights {
                id,
                name: &name,
                path: &relative,
                bytes: size,
                sha256: &sha256,
                tensors: &tensors,
                owner,
            })
            .await;
        if inserted.is_err() {
            let _ = std::fs::remove_file(self.inner.config.data_dir.join(&relative));
        }
        inserted
    }

    /// Uploaded weights by id or name.
    pub async fn weights(&self, name_or_id: &str) -> Result<WeightsRow> {
        self.inner
            .store
            .find_weights(name_or_id)
            .await?
            .ok_or_else(|| Error::not_found("weights", name_or_id))
    }

    /// Every upload, or `owner`'s, oldest first.
    pub async fn list_weights(&self, owner: Option<&str>) -> Result<Vec<WeightsRow>> {
        self.inner.store.list_weights(owner).await
    }

    /// Deletes uploaded weights and their file. Jobs that already started keep what they
    /// loaded; a queued job naming them fails when it starts.
    pub async fn delete_weights(&self, id: WeightsId) -> Result<WeightsRow> {
        let row = self
            .inner
            .store
            .delete_weights(id)
            .await?
            .ok_or_else(|| Error::not_found("weights", id.to_string()))?;
        let path = self.inner.config.data_dir.join(&row.path);
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!(error = %err, path = %path.display(), "removing a weights file failed");
        }
        Ok(row)
    }
}
