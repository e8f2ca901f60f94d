//! Checkpoint files: safetensors, written to a temporary name, fsynced, renamed, and verified
//! against their recorded SHA-256 before they are loaded.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

/// Prefix of optimizer-state tensors inside a checkpoint.
pub(crate) const OPTIMIZER_PREFIX: &str = "optimizer/";
/// Prefix of the training loop's own state (schedule, early stopping) inside a checkpoint;
/// everything without a prefix is the model.
pub(crate) const TRAINER_PREFIX: &str = "trainer/";

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
        .map_err(|err| EngineError::internal("encoding a checkpoint", err))
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
        EngineError::Internal(format!("checkpoint path {} has no folder", path.display()))
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

/// Reads a checkpoint, refusing it unless its SHA-256 matches the recorded one (a corrupt or
/// missing file is an internal error here; [`Integrity::read`] tells the two apart).
pub fn read_verified(path: &Path, sha256: &str, device: &Device) -> Result<CheckpointData> {
    match integrity().read(path, sha256)? {
        Ok((bytes, _)) => decode(&bytes, device),
        Err(why) => Err(EngineError::Internal(format!(
            "checkpoint {} is corrupt: {why}",
            path.display()
        ))),
    }
}

/// Splits safetensors bytes into a checkpoint's three sections.
pub fn decode(bytes: &[u8], device: &Device) -> Result<CheckpointData> {
    let tensors = candle_core::safetensors::load_buffer(bytes, device)?;
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

/// What identifies one version of a file without reading it: any write changes it (the
/// change time and inode cannot be set back by a program, unlike the modification time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, i64, i64),
}

impl FileStamp {
    /// The stamp of the file at `path` now (one `stat`).
    pub fn of(path: &Path) -> std::io::Result<FileStamp> {
        Ok(FileStamp::from_metadata(&fs::metadata(path)?))
    }

    fn from_metadata(meta: &fs::Metadata) -> FileStamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: (meta.ino(), meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Checkpoint files found corrupt, with the version of the file that was judged, so that a
/// verdict is remembered (and corrupt files are not hashed again on every request) until the
/// file changes. Only corrupt verdicts are kept: a handful of entries.
#[derive(Default)]
pub struct Integrity {
    corrupt: Mutex<HashMap<PathBuf, (FileStamp, String)>>,
}

/// The process's record of corrupt checkpoint files (verdicts are about files, keyed by path).
pub fn integrity() -> &'static Integrity {
    static INTEGRITY: OnceLock<Integrity> = OnceLock::new();
    INTEGRITY.get_or_init(Integrity::default)
}

impl Integrity {
    fn corrupt(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (FileStamp, String)>> {
        self.corrupt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The file's bytes and stamp when it matches `sha256`; `Ok(Err(why))` when it is missing
    /// or does not match (the verdict is remembered); `Err` when it could not be read for
    /// another reason (out of descriptors, an I/O error), which says nothing about the file.
    pub fn read(
        &self,
        path: &Path,
        sha256: &str,
    ) -> Result<std::result::Result<(Vec<u8>, FileStamp), String>> {
        let unreadable =
            |err| EngineError::internal(&format!("reading checkpoint {}", path.display()), err);
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Err("its file is missing".into()));
            }
            Err(err) => return Err(unreadable(err)),
        };
        let stamp = FileStamp::from_metadata(&file.metadata().map_err(unreadable)?);
        if let Some((seen, why)) = self.corrupt().get(path)
            && *seen == stamp
        {
            return Ok(Err(why.clone()));
        }
        let mut bytes = Vec::with_capacity(stamp.len as usize);
        file.read_to_end(&mut bytes).map_err(unreadable)?;
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            let why = format!(
                "its file does not match the SHA-256 recorded when it was written (sha256 {actual}, recorded {sha256})"
            );
            tracing::error!(path = %path.display(), %actual, recorded = %sha256, "a checkpoint is corrupt");
            self.corrupt()
                .insert(path.to_path_buf(), (stamp, why.clone()));
            return Ok(Err(why));
        }
        self.corrupt().remove(path);
        Ok(Ok((bytes, stamp)))
    }

    /// Whether the file is known to be corrupt, at the cost of one `stat`: missing, not the
    /// `recorded_len` it was written with, or judged corrupt before and unchanged since. A
    /// file nobody has read since it changed is not known to be corrupt.
    pub fn known_corrupt(&self, path: &Path, recorded_len: u64) -> bool {
        let stamp = match FileStamp::of(path) {
            Ok(stamp) => stamp,
            Err(err) => return err.kind() == std::io::ErrorKind::NotFound,
        };
        if stamp.len != recorded_len {
            return true;
        }
        self.corrupt()
            .get(path)
            .is_some_and(|(seen, _)| *seen == stamp)
    }
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

    #[test]
    fn a_corrupt_verdict_is_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000001.safetensors");
        let good = b"the bytes as written".to_vec();
        let sha = write_atomically(&path, &good).unwrap();
        let len = good.len() as u64;
        let integrity = Integrity::default();
        assert!(!integrity.known_corrupt(&path, len));

        let mut bad = good.clone();
        bad[3] ^= 1;
        fs::write(&path, &bad).unwrap();
        assert!(
            !integrity.known_corrupt(&path, len),
            "same length: unknown until read"
        );
        assert!(integrity.read(&path, &sha).unwrap().is_err());
        assert!(integrity.known_corrupt(&path, len));

        fs::write(&path, &good).unwrap();
        assert!(
            !integrity.known_corrupt(&path, len),
            "restored: judged again"
        );
        assert!(integrity.read(&path, &sha).unwrap().is_ok());

        fs::write(&path, b"short").unwrap();
        assert!(integrity.known_corrupt(&path, len), "another length");
        fs::remove_file(&path).unwrap();
        assert!(integrity.known_corrupt(&path, len), "missing");
        assert!(integrity.read(&path, &sha).unwrap().is_err());
    }
}
