//! Transfer learning: the backbone (`blocks.*`) of another job's best checkpoint, checked
//! against a new spec at submission and loaded when the job starts.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::SeedableRng;

use super::Jobs;
use crate::domain::{JobId, JobSpec, ModelSpec};
use crate::error::{Error, Result};
use crate::train::{Cnn, checkpoint};

impl Jobs {
    /// The backbone tensors of the spec's `init.from_job`, when it asks for a transfer.
    pub(super) async fn backbone_for(
        &self,
        spec: &JobSpec,
    ) -> Result<Option<HashMap<String, Tensor>>> {
        let Some(init) = spec.init.as_ref().filter(|init| init.loads_backbone()) else {
            return Ok(None);
        };
        let from = init.from_job.as_deref().unwrap_or("");
        let unknown = || {
            Error::invalid(
                "init.from_job",
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
                "init.from_job",
                format!("job {id} has no checkpoint yet; wait for its first epoch"),
            )
        })?;
        let path = self.inner.config.data_dir.join(&row.path);
        let saved = tokio::task::spawn_blocking(move || {
            checkpoint::read_verified(&path, &row.sha256, &Device::Cpu)
        })
        .await
        .map_err(|err| Error::internal("reading a checkpoint", err))??;
        Ok(Some(
            saved
                .model
                .into_iter()
                .filter(|(name, _)| name.starts_with("blocks."))
                .collect(),
        ))
    }
}

/// A 422 on `init.from_job` listing the backbone tensors that are missing or misshapen for
/// the spec's CNN on images of `image_shape`.
pub(super) fn check_backbone(
    spec: &JobSpec,
    image_shape: Option<[usize; 3]>,
    backbone: &HashMap<String, Tensor>,
) -> Result<()> {
    let (ModelSpec::Cnn(cnn), Some(shape)) = (&spec.model, image_shape) else {
        return Ok(());
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let model = Cnn::seeded(cnn, shape, 2, &mut rng, &Device::Cpu)?;
    model
        .load_backbone(backbone, &Device::Cpu)
        .map_err(|err| match err {
            Error::Invalid { message, .. } => Error::invalid(
                "init.from_job",
                format!("that job's backbone does not fit this network: {message}"),
            ),
            other => other,
        })
}
