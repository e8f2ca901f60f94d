//! Start-up collection of what a crash leaves behind: temporary upload files and half-written
//! data-set folders, data-set folders whose row was never inserted, and temporary files of
//! interrupted checkpoint and weights writes. Everything removed is logged with its size.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::Catalog;
use super::upload::TEMP_SUFFIX;
use crate::domain::DatasetId;
use crate::error::{Error, Result};

/// Something start-up removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// Where it was.
    pub path: PathBuf,
    /// How many bytes it held.
    pub bytes: u64,
}

impl Catalog {
    /// Removes crash debris from the data-set folder: hidden temporary files and folders
    /// (`.upload-*.tmp`, `.<id>.tmp-*`), and folders named by a data-set id that no row has
    /// (a crash between the rename and the insert). A folder a row names is never touched, and
    /// names the catalog never writes are left alone. Call it before the service accepts
    /// requests: an upload in flight looks like debris.
    pub async fn collect_debris(&self) -> Result<Vec<Removed>> {
        let ids: HashSet<DatasetId> = self.store.dataset_ids().await?.into_iter().collect();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || sweep_datasets(&dir, &ids))
            .await
            .map_err(|err| Error::internal("collecting crash debris", err))?
    }
}

fn sweep_datasets(dir: &Path, ids: &HashSet<DatasetId>) -> Result<Vec<Removed>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::internal("listing the data-set folder", err)),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| Error::internal("listing the data-set folder", err))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let kind = entry
            .file_type()
            .map_err(|err| Error::internal("listing the data-set folder", err))?;
        let debris = if name.starts_with('.') && name.contains(TEMP_SUFFIX) {
            true
        } else if kind.is_dir() {
            name.parse::<DatasetId>().is_ok_and(|id| !ids.contains(&id))
        } else {
            false
        };
        if debris {
            removed.extend(remove(&entry.path(), kind.is_dir(), "crash debris"));
        }
    }
    Ok(removed)
}

/// Removes files ending in `.tmp` under `dir` and its subfolders (a checkpoint or weights
/// folder: an interrupted atomic write leaves one), logging each; symbolic links are not
/// followed. A folder that does not exist has nothing to remove.
pub fn remove_temp_files(dir: &Path) -> Result<Vec<Removed>> {
    let mut removed = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                return Err(Error::internal(
                    &format!("listing {}", folder.display()),
                    err,
                ));
            }
        };
        for entry in entries {
            let entry = entry
                .map_err(|err| Error::internal(&format!("listing {}", folder.display()), err))?;
            let kind = entry
                .file_type()
                .map_err(|err| Error::internal(&format!("listing {}", folder.display()), err))?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() && entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
                removed.extend(remove(&entry.path(), false, "crash debris"));
            }
        }
    }
    Ok(removed)
}

/// Removes a file or folder and logs it as `what`; a failure is logged and skipped (start-up
/// goes on).
pub fn remove(path: &Path, folder: bool, what: &str) -> Option<Removed> {
    let bytes = size_of(path);
    let result = if folder {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Ok(()) => {
            tracing::warn!(path = %path.display(), bytes, "removed {what}");
            Some(Removed {
                path: path.to_path_buf(),
                bytes,
            })
        }
        Err(err) => {
            tracing::error!(path = %path.display(), error = %err, "could not remove {what}");
            None
        }
    }
}

/// The bytes of a file, or of every file under a folder (links not followed); 0 for what
/// does not exist.
pub fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| size_of(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_are_removed_from_every_job_folder_and_finished_files_stay() {
        let root = tempfile::tempdir().unwrap();
        let job = root.path().join("job-a");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::write(job.join("000001.safetensors"), b"done").unwrap();
        std::fs::write(job.join("000002.tmp"), b"half").unwrap();
        std::fs::write(root.path().join("w.tmp"), b"weights").unwrap();

        let mut removed = remove_temp_files(root.path()).unwrap();
        removed.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            removed,
            vec![
                Removed {
                    path: job.join("000002.tmp"),
                    bytes: 4
                },
                Removed {
                    path: root.path().join("w.tmp"),
                    bytes: 7
                },
            ]
        );
        assert!(job.join("000001.safetensors").exists());
        assert_eq!(
            remove_temp_files(&root.path().join("absent")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn only_hidden_temporaries_and_folders_of_unknown_ids_are_data_set_debris() {
        let root = tempfile::tempdir().unwrap();
        let (kept, orphan) = (DatasetId::new(), DatasetId::new());
        for folder in [
            kept.to_string(),
            orphan.to_string(),
            format!(".{orphan}.tmp-1-2"),
            "notes".to_owned(),
        ] {
            std::fs::create_dir(root.path().join(&folder)).unwrap();
            std::fs::write(root.path().join(&folder).join("data"), b"12345").unwrap();
        }
        std::fs::write(root.path().join(".upload-x.tmp"), b"abc").unwrap();
        std::fs::write(root.path().join(DatasetId::new().to_string()), b"a file").unwrap();

        let ids = HashSet::from([kept]);
        let mut removed: Vec<_> = sweep_datasets(root.path(), &ids)
            .unwrap()
            .into_iter()
            .map(|r| {
                (
                    r.path.file_name().unwrap().to_string_lossy().into_owned(),
                    r.bytes,
                )
            })
            .collect();
        removed.sort();
        let mut expected = vec![
            (format!(".{orphan}.tmp-1-2"), 5),
            (".upload-x.tmp".to_owned(), 3),
            (orphan.to_string(), 5),
        ];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(root.path().join(kept.to_string()).join("data").exists());
        assert!(root.path().join("notes").exists());
    }
}
