//! Transfer learning: the backbone of another job's best checkpoint (`init.from_job`) or of
//! uploaded weights (`init.from_weights`), checked by name and shape against a new spec at
//! submission and loaded when the job starts.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use super::Jobs;
use crate::domain::{JobId, JobSpec, TransferSpec};
use crate::error::{Error, Result};
use engine::backbone_shapes;
use engine::checkpoint::{self, sha256_hex};
use engine::weights::{TensorInfo, check_shapes};

/// The spec field a transfer's weights come from.
const FROM_JOB: &str = "init.from_job";
const FROM_WEIGHTS: &str = "init.from_weights";

fn from_weights(init: &TransferSpec) -> Option<&str> {
    init.from_weights
        .as_deref()
        .filter(|w| !w.trim().is_empty())
}

impl Jobs {
    /// The tensors the spec's transfer loads and the field they came from, when it asks for one.
    pub(super) async fn backbone_for(
        &self,
        spec: &JobSpec,
    ) -> Result<Option<(HashMap<String, Tensor>, &'static str)>> {
        let Some(init) = spec.init.as_ref().filter(|init| init.loads_backbone()) else {
            return Ok(None);
        };
        if let Some(name) = from_weights(init) {
            let row = self.weights_row(name).await?;
            let path = self.inner.config.data_dir.join(&row.path);
            let tensors = tokio::task::spawn_blocking(move || -> Result<_> {
                let bytes = std::fs::read(&path)
                    .map_err(|err| Error::internal("reading uploaded weights", err))?;
                if sha256_hex(&bytes) != row.sha256 {
                    return Err(Error::Internal(format!(
                        "weights file {} is corrupt: its sha256 differs from the recorded one",
                        path.display()
                    )));
                }
                Ok(candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?)
            })
            .await
            .map_err(|err| Error::internal("reading uploaded weights", err))??;
            return Ok(Some((tensors, FROM_WEIGHTS)));
        }
        let from = init.from_job.as_deref().unwrap_or("");
        let unknown = || {
            Error::invalid(
                FROM_JOB,
                format!("no job '{from}'; GET /v1/jobs lists them"),
            )
        };
        let id: JobId = from.parse().map_err(|_| unknown())?;
        let job = self.inner.store.get_job(id).await?.ok_or_else(unknown)?;
        let mut row = None;
        if let Some(epoch) = job.best_epoch {
            row = self.inner.store.get_checkpoint(id, epoch).await?;
        }
        if row.is_none() {
            row = self.inner.store.latest_checkpoint(id).await?;
        }
        let row = row.ok_or_else(|| {
            Error::invalid(
                FROM_JOB,
                format!("job {id} has no checkpoint yet; wait for its first epoch"),
            )
        })?;
        let path = self.inner.config.data_dir.join(&row.path);
        let saved = tokio::task::spawn_blocking(move || {
            checkpoint::read_verified(&path, &row.sha256, &Device::Cpu)
        })
        .await
        .map_err(|err| Error::internal("reading a checkpoint", err))??;
        Ok(Some((saved.model, FROM_JOB)))
    }

    /// A 422 on `init.from_job` or `init.from_weights` listing the backbone tensors that are
    /// missing or misshapen for the spec's network on images of `image_shape`. Uploaded
    /// weights are checked from the tensor list recorded at upload, without reading the file.
    pub(super) async fn check_transfer(
        &self,
        spec: &JobSpec,
        image_shape: Option<[usize; 3]>,
    ) -> Result<()> {
        let (Some(init), Some(shape)) = (
            spec.init.as_ref().filter(|init| init.loads_backbone()),
            image_shape,
        ) else {
            return Ok(());
        };
        let expected = backbone_shapes(&spec.model, shape)?;
        let (found, field): (HashMap<String, Vec<usize>>, _) = match from_weights(init) {
            Some(name) => {
                let row = self.weights_row(name).await?;
                let tensors: Vec<TensorInfo> = serde_json::from_str(&row.tensors)
                    .map_err(|err| Error::internal("reading a tensor list", err))?;
                let found = tensors.into_iter().map(|t| (t.name, t.shape)).collect();
                (found, FROM_WEIGHTS)
            }
            None => {
                let Some((tensors, field)) = self.backbone_for(spec).await? else {
                    return Ok(());
                };
                let found = tensors
                    .into_iter()
                    .map(|(name, t)| (name, t.dims().to_vec()))
                    .collect();
                (found, field)
            }
        };
        Ok(check_shapes(&expected, &found, field)?)
    }

    async fn weights_row(&self, name: &str) -> Result<crate::store::WeightsRow> {
        self.inner.store.find_weights(name).await?.ok_or_else(|| {
            Error::invalid(
                FROM_WEIGHTS,
                format!("no uploaded weights '{name}'; GET /v1/weights lists them"),
            )
        })
    }
}
