//! Whether this node can take work now: the database takes a write, the data folder takes a
//! file, and shutdown has not begun.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::Jobs;

/// Bytes the disk probe writes and syncs: enough to need a fresh block on a full disk.
const PROBE_BYTES: usize = 64 * 1024;

/// The answer of `/readyz`.
#[derive(Clone, Debug, Serialize)]
pub struct Readiness {
    /// True when every check below passed.
    pub ready: bool,
    /// The database answers reads.
    pub database: bool,
    /// The database commits a write.
    pub database_writable: bool,
    /// The data folder takes (and syncs) a new file.
    pub disk_writable: bool,
    /// The space held back for recording failures on a full disk is in place.
    pub disk_reserve: bool,
    /// Shutdown has begun.
    pub stopping: bool,
    /// Why the node is not ready, for people (empty when it is).
    pub problems: Vec<String>,
}

impl Jobs {
    /// Runs the readiness checks (a few milliseconds: one committed row and one synced file).
    pub async fn readiness(&self) -> Readiness {
        let mut problems = Vec::new();
        let database = self.inner.store.ping().await;
        if !database {
            problems.push("the database does not answer".to_string());
        }
        let database_writable = match self.inner.store.probe_write().await {
            Ok(()) => true,
            Err(err) => {
                problems.push(format!("the database cannot be written: {err}"));
                false
            }
        };
        let dir = self.inner.config.data_dir.clone();
        let disk = tokio::task::spawn_blocking(move || probe_disk(&dir))
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err)));
        let disk_writable = match disk {
            Ok(()) => true,
            Err(err) => {
                problems.push(format!("the data folder cannot be written: {err}"));
                false
            }
        };
        // Written again here once space is back after a full disk used it up.
        let disk_reserve = match self.ensure_disk_reserve().await {
            Ok(()) => true,
            Err(err) => {
                problems.push(format!(
                    "no room for the data folder's reserve of {} MiB: {err}",
                    super::disk_reserve::RESERVE_BYTES >> 20
                ));
                false
            }
        };
        let stopping = self.is_stopping();
        if stopping {
            problems.push("the service is shutting down".to_string());
        }
        Readiness {
            ready: problems.is_empty(),
            database,
            database_writable,
            disk_writable,
            disk_reserve,
            stopping,
            problems,
        }
    }
}

/// Writes, syncs and removes a small file in `dir`.
fn probe_disk(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".readiness-probe");
    let written = File::create(&path).and_then(|mut file| {
        file.write_all(&[0u8; PROBE_BYTES])?;
        file.sync_all()
    });
    let removed = fs::remove_file(&path);
    written?;
    removed
}
