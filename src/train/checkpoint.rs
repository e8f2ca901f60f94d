//! Checkpoint files: safetensors, written to a temporary name, fsynced, renamed, and verified
//! against their recorded SHA-256 before they are loaded.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Prefix of optimizer-state tensors inside a checkpoint; everything else is the model.
pub const OPTIMIZER_PREFIX: &str = "optimizer/";

/// A checkpoint in memory: model tensors plus optimizer state.
pub struct CheckpointData {
    /// Model tensors by torch-style name.
    pub model: HashMap<String, Tensor>,
    /// Optimizer state by name.
    pub optimizer: HashMap<String, Tensor>,
}

/// Serializes model and optimizer tensors into safetensors bytes.
pub fn encode(
    model: Vec<(String, Tensor)>,
    optimizer: Vec<(String, Tensor)>,
    epoch: u32,
) -> Result<Vec<u8>> {
    let tensors: Vec<(String, Tensor)> = model
        .into_iter()
        .chain(
            optimizer
                .into_iter()
                .map(|(name, t)| (format!("{OPTIMIZER_PREFIX}{name}"), t)),
        )
        .collect();
    let metadata = HashMap::from([
        ("format".to_string(), "trainserve".to_string()),
        ("epoch".to_string(), epoch.to_string()),
    ]);
    safetensors::serialize(tensors, Some(metadata))
        .map_err(|err| Error::internal("encoding a checkpoint", err))
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `path` so that `path` either does not exist or holds all of them:
/// temporary file, fsync, rename, fsync of the folder. Returns the SHA-256.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<String> {
    let dir = path.parent().ok_or_else(|| {
        Error::Internal(format!("checkpoint path {} has no folder", path.display()))
    })?;
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    Ok(sha256_hex(bytes))
}

/// Reads a checkpoint, refusing it unless its SHA-256 matches the recorded one.
pub fn read_verified(path: &Path, sha256: &str, device: &Device) -> Result<CheckpointData> {
    let bytes = fs::read(path)
        .map_err(|err| Error::internal(&format!("reading checkpoint {}", path.display()), err))?;
    let actual = sha256_hex(&bytes);
    if actual != sha256 {
        return Err(Error::Internal(format!(
            "checkpoint {} is corrupt: sha256 {actual}, recorded {sha256}",
            path.display()
        )));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)?;
    let mut data = CheckpointData {
        model: HashMap::new(),
        optimizer: HashMap::new(),
    };
    for (name, tensor) in tensors {
        match name.strip_prefix(OPTIMIZER_PREFIX) {
            Some(rest) => data.optimizer.insert(rest.to_string(), tensor),
            None => data.model.insert(name, tensor),
        };
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_a_flipped_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs").join("3.safetensors");
        let w = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let m = Tensor::new(&[0.5f32], &Device::Cpu).unwrap();
        let bytes = encode(
            vec![("output.weight".into(), w)],
            vec![("m.output.weight".into(), m)],
            3,
        )
        .unwrap();
        let sha = write_atomically(&path, &bytes).unwrap();
        assert!(!path.with_extension("tmp").exists());

        let data = read_verified(&path, &sha, &Device::Cpu).unwrap();
        assert_eq!(
            data.model["output.weight"].to_vec1::<f32>().unwrap(),
            vec![1.0, 2.0, 3.0]
        );
        assert_eq!(
            data.optimizer["m.output.weight"].to_vec1::<f32>().unwrap(),
            vec![0.5]
        );

        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        fs::write(&path, corrupt).unwrap();
        let err = read_verified(&path, &sha, &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
