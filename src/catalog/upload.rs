//! Uploaded files on their way to becoming a data set: streamed to a hidden temporary file in
//! the data-set folder (never held in memory), read from there, and removed when dropped,
//! whether the upload succeeded, was refused or its client hung up.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use super::Catalog;
use crate::error::{Error, Result};

/// The prefix of every temporary upload file: hidden, and recognised as debris at start-up.
pub(super) const UPLOAD_PREFIX: &str = ".upload-";
/// The suffix of every temporary file or folder in the data-set folder.
pub(super) const TEMP_SUFFIX: &str = ".tmp";

/// One uploaded part, written to a temporary file that is removed when this is dropped.
pub struct UploadFile {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    len: u64,
}

impl UploadFile {
    /// Appends a chunk of the part.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let file = self.file.as_mut().ok_or_else(|| {
            Error::Internal("an upload file written after it was finished".into())
        })?;
        file.write_all(chunk)
            .await
            .map_err(|err| Error::io("writing an upload to disk", err))?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Flushes and closes the file once the part has been read.
    pub async fn finish(&mut self) -> Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()
                .await
                .map_err(|err| Error::io("writing an upload to disk", err))?;
        }
        Ok(())
    }

    /// Where the part's bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes the part had.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the part was empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Opens the written file for reading (blocking: call it off the async executor).
    pub(super) fn open(&self) -> Result<std::io::BufReader<std::fs::File>> {
        let file = std::fs::File::open(&self.path)
            .map_err(|err| Error::internal("reading an upload back", err))?;
        Ok(std::io::BufReader::with_capacity(256 * 1024, file))
    }
}

impl Drop for UploadFile {
    fn drop(&mut self) {
        // Best effort: what a crash leaves behind is removed at the next start-up.
        if let Err(err) = std::fs::remove_file(&self.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %err, "could not remove an upload's temporary file");
        }
    }
}

impl Catalog {
    /// A new, empty temporary file for one part of an upload.
    pub async fn upload_file(&self) -> Result<UploadFile> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|err| Error::io("creating the data-set folder", err))?;
        let path = self.dir.join(format!(
            "{UPLOAD_PREFIX}{}{TEMP_SUFFIX}",
            uuid::Uuid::new_v4()
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|err| Error::io("creating an upload's temporary file", err))?;
        Ok(UploadFile {
            path,
            file: Some(file),
            len: 0,
        })
    }
}
