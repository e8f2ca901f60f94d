//! Finding the newest checkpoint of a job that is still intact, for a resume that must not
//! fail forever on one corrupt file.

use std::path::Path;

use candle_core::Device;

use crate::domain::JobId;
use crate::error::{Error, Result};
use crate::store::{CheckpointRow, Store};
use engine::checkpoint::{self, CheckpointData};

/// The newest checkpoint of job `id` whose file matches its recorded SHA-256, read onto
/// `device`, with its row; corrupt or missing ones are passed over (each logged, and marked
/// corrupt in the job's checkpoint list). `None` when no checkpoint is intact. An I/O error
/// that says nothing about a file (out of descriptors, say) is returned as it is, since
/// passing over a good checkpoint for it would throw away training.
pub async fn newest_intact_checkpoint(
    store: &Store,
    data_dir: &Path,
    id: JobId,
    device: &Device,
) -> Result<Option<(CheckpointRow, CheckpointData)>> {
    newest_intact_of(store.list_checkpoints(id).await?, data_dir, id, device).await
}

/// [`newest_intact_checkpoint`] over rows already listed.
async fn newest_intact_of(
    rows: Vec<CheckpointRow>,
    data_dir: &Path,
    id: JobId,
    device: &Device,
) -> Result<Option<(CheckpointRow, CheckpointData)>> {
    for row in rows.into_iter().rev() {
        let path = data_dir.join(&row.path);
        let sha256 = row.sha256.clone();
        let device = device.clone();
        let epoch = row.epoch;
        let read = tokio::task::spawn_blocking(move || -> Result<Option<CheckpointData>> {
            match checkpoint::integrity().read(&path, &sha256)? {
                Ok((bytes, _)) => Ok(Some(checkpoint::decode(&bytes, &device)?)),
                Err(why) => {
                    tracing::warn!(job = %id, epoch, %why,
                        "passing over a corrupt checkpoint for an earlier one");
                    Ok(None)
                }
            }
        })
        .await
        .map_err(|err| Error::internal("reading a checkpoint", err))??;
        if let Some(data) = read {
            return Ok(Some((row, data)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;
    use engine::checkpoint::{CheckpointParts, encode, write_atomically};

    #[tokio::test]
    async fn a_corrupt_newest_checkpoint_is_passed_over_for_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let id = JobId::new();
        let mut rows = Vec::new();
        for epoch in 1..=3u32 {
            let w = Tensor::new(&[epoch as f32], &Device::Cpu).unwrap();
            let bytes = encode(
                CheckpointParts {
                    model: vec![("w".into(), w)],
                    optimizer: vec![],
                    trainer: vec![],
                },
                epoch,
            )
            .unwrap();
            let relative = format!("checkpoints/{id}/{epoch}.safetensors");
            let sha = write_atomically(&dir.path().join(&relative), &bytes).unwrap();
            rows.push(CheckpointRow {
                epoch: epoch.into(),
                path: relative,
                sha256: sha,
                bytes: bytes.len() as i64,
                val_acc: 0.5,
                val_loss: 1.0,
            });
        }
        let newest = dir.path().join(format!("checkpoints/{id}/3.safetensors"));
        let mut bytes = std::fs::read(&newest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&newest, bytes).unwrap();

        let (row, data) = newest_intact_of(rows, dir.path(), id, &Device::Cpu)
            .await
            .unwrap()
            .expect("epoch 2 is intact");
        assert_eq!(row.epoch, 2);
        assert_eq!(data.model["w"].to_vec1::<f32>().unwrap(), vec![2.0]);
    }
}
