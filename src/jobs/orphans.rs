//! Start-up collection of checkpoint and weights files that no row records: a delete or a
//! retention pass removes rows before files, and a crash in between leaves the files; so does
//! a crash between writing a checkpoint and committing its epoch.

use std::collections::HashSet;
use std::path::Path;

use super::Jobs;
use crate::catalog::{Removed, remove};
use crate::domain::JobId;
use crate::error::{Error, Result};

/// How a removal is logged.
const ORPHAN: &str = "a file no row records";

impl Jobs {
    /// Removes, and logs, checkpoint folders of jobs that no longer exist, checkpoint files
    /// of existing jobs that no row records, and weights and model-version files without a row. Names the
    /// service never writes are left alone. Call it before the scheduler starts: a job in
    /// training writes its file before its row.
    pub async fn collect_orphans(&self) -> Result<Vec<Removed>> {
        let jobs = self.inner.store.job_ids().await?;
        let recorded = self.inner.store.recorded_files().await?;
        let data_dir = self.inner.config.data_dir.clone();
        tokio::task::spawn_blocking(move || orphans(&data_dir, &jobs, &recorded))
            .await
            .map_err(|err| Error::internal("collecting orphaned files", err))?
    }
}

fn orphans(
    data_dir: &Path,
    jobs: &HashSet<JobId>,
    recorded: &HashSet<String>,
) -> Result<Vec<Removed>> {
    let mut removed = Vec::new();
    for (folder, is_dir) in entries(&data_dir.join("checkpoints"))? {
        let name = folder.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Ok(job) = name.parse::<JobId>() else {
            continue;
        };
        if !is_dir {
            continue;
        }
        if !jobs.contains(&job) {
            removed.extend(remove(&folder, true, ORPHAN));
            continue;
        }
        for (file, is_dir) in entries(&folder)? {
            let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let relative = format!("checkpoints/{name}/{file_name}");
            if !is_dir && file_name.ends_with(".safetensors") && !recorded.contains(&relative) {
                removed.extend(remove(&file, false, ORPHAN));
            }
        }
    }
    // Uploaded weights, and the registry's copies (a crash between writing one and
    // recording its version leaves the file).
    for folder in ["weights", "models"] {
        for (file, is_dir) in entries(&data_dir.join(folder))? {
            let file_name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let relative = format!("{folder}/{file_name}");
            if !is_dir && file_name.ends_with(".safetensors") && !recorded.contains(&relative) {
                removed.extend(remove(&file, false, ORPHAN));
            }
        }
    }
    Ok(removed)
}

/// The entries of a folder with whether each is a folder (links are not); none when it does
/// not exist.
fn entries(folder: &Path) -> Result<Vec<(std::path::PathBuf, bool)>> {
    let listing = match std::fs::read_dir(folder) {
        Ok(listing) => listing,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => {
            return Err(Error::internal(
                &format!("listing {}", folder.display()),
                err,
            ));
        }
    };
    listing
        .map(|entry| {
            let entry = entry
                .map_err(|err| Error::internal(&format!("listing {}", folder.display()), err))?;
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            Ok((entry.path(), is_dir))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_and_folders_no_row_records_are_orphans() {
        let root = tempfile::tempdir().unwrap();
        let (kept, gone) = (JobId::new(), JobId::new());
        let write = |relative: &str| {
            let path = root.path().join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"1234").unwrap();
        };
        let recorded_checkpoint = format!("checkpoints/{kept}/000002.safetensors");
        let unrecorded_checkpoint = format!("checkpoints/{kept}/000001.safetensors");
        let deleted_job = format!("checkpoints/{gone}/000001.safetensors");
        let recorded_weights = format!("weights/{}.safetensors", JobId::new());
        let unrecorded_weights = format!("weights/{}.safetensors", JobId::new());
        for relative in [
            &recorded_checkpoint,
            &unrecorded_checkpoint,
            &deleted_job,
            &recorded_weights,
            &unrecorded_weights,
            &"checkpoints/notes/readme.txt".to_string(),
            &format!("checkpoints/{kept}/notes.txt"),
        ] {
            write(relative);
        }
        let jobs = HashSet::from([kept]);
        let recorded = HashSet::from([recorded_checkpoint.clone(), recorded_weights.clone()]);

        let mut removed: Vec<_> = orphans(root.path(), &jobs, &recorded)
            .unwrap()
            .into_iter()
            .map(|r| (r.path, r.bytes))
            .collect();
        removed.sort();
        let mut expected = vec![
            (root.path().join(&unrecorded_checkpoint), 4),
            (root.path().join(format!("checkpoints/{gone}")), 4),
            (root.path().join(&unrecorded_weights), 4),
        ];
        expected.sort();
        assert_eq!(removed, expected);
        for kept in [
            recorded_checkpoint,
            recorded_weights,
            "checkpoints/notes/readme.txt".into(),
            format!("checkpoints/{kept}/notes.txt"),
        ] {
            assert!(root.path().join(&kept).exists(), "{kept}");
        }
        assert!(
            orphans(&root.path().join("absent"), &jobs, &recorded)
                .unwrap()
                .is_empty()
        );
    }
}
