//! Image data sets in the catalog: archive uploads and sample pictures.

use std::sync::Arc;

use super::names::validate_name;
use super::{Catalog, UploadFile};
use crate::error::{Error, Result};
use crate::store::DatasetRow;
use data::{self as dataset, ImageOptions, Table};

/// An image-archive upload: a zip, tar or tar.gz with one folder per class.
pub struct ImageUpload {
    /// Unique name for the new data set.
    pub name: String,
    /// The archive, as uploaded.
    pub archive: UploadFile,
    /// The `image_size` part as sent (`32` or `32x24`), if any.
    pub image_size: Option<String>,
    /// The `channels` part as sent (`1` or `3`), if any.
    pub channels: Option<String>,
}

impl Catalog {
    /// Reads and stores an image archive (see [`dataset::parse_image_archive`]); nothing is
    /// left behind when it is rejected.
    pub async fn add_images(&self, upload: ImageUpload, owner: Option<&str>) -> Result<DatasetRow> {
        validate_name(&upload.name)?;
        let options =
            ImageOptions::parse(upload.image_size.as_deref(), upload.channels.as_deref())?;
        self.check_name_free(&upload.name).await?;
        let _import = self.import_slot().await?;
        let limits = self.image_limits;
        let archive = upload.archive;
        let table = tokio::task::spawn_blocking(move || {
            Ok::<_, Error>(dataset::read_image_archive(
                archive.open()?,
                &options,
                &limits,
            )?)
            // The uploaded file is removed here, as `archive` goes out of scope.
        })
        .await
        .map_err(|err| Error::internal("reading an image archive", err))??;
        self.add(&upload.name, "upload", table, None, None, owner)
            .await
    }

    /// Row `index` of the data set `name_or_id` as a PNG (see [`dataset::sample_png`]); 404 for
    /// an unknown data set or an index past its rows, 422 for a data set without images.
    pub async fn sample_png(&self, name_or_id: &str, index: usize) -> Result<Vec<u8>> {
        let row = self
            .find(name_or_id)
            .await?
            .ok_or_else(|| Error::not_found("data set", name_or_id))?;
        let table: Arc<Table> = self.load(row.id).await?;
        let png =
            tokio::task::spawn_blocking(move || dataset::sample_png(&table, &row.name, index))
                .await
                .map_err(|err| Error::internal("drawing a sample", err))??;
        Ok(png)
    }
}
