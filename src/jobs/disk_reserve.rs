//! A few MiB of the data folder held back, so that when the disk fills up the service can
//! still record why a job failed. The reserve is a file written at start; the first write that
//! fails for lack of space removes it, the failure is recorded in the room it leaves, and it is
//! written again once space is back (readiness stays false until then).

use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// Bytes held back: room for many small database commits.
pub const RESERVE_BYTES: usize = 4 << 20;

/// The reserve file of one data folder.
pub struct DiskReserve {
    path: PathBuf,
    // Serializes creating and releasing the file.
    lock: Mutex<()>,
}

impl DiskReserve {
    /// The reserve under `data_dir` (not yet written: call [`DiskReserve::ensure`]).
    pub fn new(data_dir: &std::path::Path) -> Self {
        DiskReserve {
            path: data_dir.join(".disk-reserve"),
            lock: Mutex::new(()),
        }
    }

    /// Writes the reserve if it is missing; an error means the disk has no room for it.
    pub fn ensure(&self) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if fs::metadata(&self.path).is_ok_and(|m| m.len() == RESERVE_BYTES as u64) {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        let written = File::create(&tmp).and_then(|mut file| {
            file.write_all(&vec![0u8; RESERVE_BYTES])?;
            file.sync_all()
        });
        match written.and_then(|()| fs::rename(&tmp, &self.path)) {
            Ok(()) => Ok(()),
            Err(err) => {
                let _ = fs::remove_file(&tmp);
                Err(err)
            }
        }
    }

    /// Gives the reserved space back to the disk; true if there was any to give.
    pub fn release(&self) -> bool {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let released = fs::remove_file(&self.path).is_ok();
        if released {
            tracing::error!(
                bytes = RESERVE_BYTES,
                "the data folder is full: released the disk reserve to record what failed"
            );
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_written_once_released_and_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let reserve = DiskReserve::new(dir.path());
        reserve.ensure().unwrap();
        reserve.ensure().unwrap();
        let path = dir.path().join(".disk-reserve");
        assert_eq!(fs::metadata(&path).unwrap().len(), RESERVE_BYTES as u64);
        assert!(reserve.release());
        assert!(!path.exists());
        assert!(!reserve.release());
        reserve.ensure().unwrap();
        assert!(path.exists());
    }
}
