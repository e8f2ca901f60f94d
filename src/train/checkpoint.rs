//! Checkpoint files: safetensors, written to a temporary name, fsynced, renamed, and verified
//! against their recorded SHA-256 before they are loaded.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Prefix of optimizer-state tensors inside a checkpoint.
pub const OPTIMIZER_PREFIX: &str = "optimizer/";
/// Prefix of the training loop's own state (schedule, early stopping) inside a checkpoint;
/// everything without a prefix is the model.
pub const TRAINER_PREFIX: &str = "trainer/";

/// A checkpoint in memory: model tensors, optimizer state and the loop's state.
#[derive(Default)]
pub struct CheckpointData {
    /// Model tensors by torch-style name.
    pub model: HashMap<String, Tensor>,
    /// Optimizer state by name.
    pub optimizer: HashMap<String, Tensor>,
    /// Schedule and early-stopping state by name (empty in checkpoints from older versions).
    pub trainer: HashMap<String, Tensor>,
}

/// The three sections of a checkpoint, as named tensors.
pub struct CheckpointParts {
    /// Model tensors.
    pub model: Vec<(String, Tensor)>,
    /// Optimizer state.
    pub optimizer: Vec<(String, Tensor)>,
    /// Schedule and early-stopping state.
    pub trainer: Vec<(String, Tensor)>,
}

/// Serializes a checkpoint's tensors into safetensors bytes.
pub fn encode(parts: CheckpointParts, epoch: u32) -> Result<Vec<u8>> {
    let prefixed = |prefix: &'static str, tensors: Vec<(String, Tensor)>| {
        tensors
            .into_iter()
            .map(move |(name, t)| (format!("{prefix}{name}"), t))
    };
    let tensors: Vec<(String, Tensor)> = parts
        .model
        .into_iter()
        .chain(prefixed(OPTIMIZER_PREFIX, parts.optimizer))
        .chain(prefixed(TRAINER_PREFIX, parts.trainer))
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
/// temporary file, fsync, rename, fsync of the folder. Returns the SHA-256. A failed write (a
/// full disk) removes its temporary file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<String> {
    let dir = path.parent().ok_or_else(|| {
        Error::Internal(format!("checkpoint path {} has no folder", path.display()))
    })?;
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(err) = written.and_then(|()| fs::rename(&tmp, path)) {
        // Best effort: the temp file may never have been created.
        let _ = fs::remove_file(&tmp);
        return Err(err.into());
    }
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
    let mut data = CheckpointData::default();
    for (name, tensor) in tensors {
        if let Some(rest) = name.strip_prefix(OPTIMIZER_PREFIX) {
            data.optimizer.insert(rest.to_string(), tensor);
        } else if let Some(rest) = name.strip_prefix(TRAINER_PREFIX) {
            data.trainer.insert(rest.to_string(), tensor);
        } else {
            data.model.insert(name, tensor);
        }
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
        let plateau = Tensor::new(&[0.25f64, f64::NAN, 2.0, 1.0], &Device::Cpu).unwrap();
        let bytes = encode(
            CheckpointParts {
                model: vec![("output.weight".into(), w)],
                optimizer: vec![("m.output.weight".into(), m)],
                trainer: vec![("schedule".into(), plateau)],
            },
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
        assert_eq!(
            data.trainer["schedule"].to_vec1::<f64>().unwrap()[0],
            0.25,
            "f64 state keeps its precision"
        );

        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        fs::write(&path, corrupt).unwrap();
        let err = read_verified(&path, &sha, &Device::Cpu).err().unwrap();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }
}
