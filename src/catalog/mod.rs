//! The data-set catalog: built-ins, CSV and image-archive uploads and synthetic data sets,
//! stored as files under the data folder and summarized in the database.

mod cache;
mod debris;
mod delete;
mod images;
mod names;
mod summary;
mod upload;

use std::path::PathBuf;
use std::sync::Arc;

use moka::sync::Cache;
use serde::{Deserialize, Serialize};

pub use debris::{Removed, remove, remove_temp_files, size_of};
pub use images::ImageUpload;
pub use names::MAX_NAME_CHARS;
pub use summary::{ClassCount, DatasetSummary, SplitCounts};
pub use upload::UploadFile;

use cache::{Slot, table_cache};
use names::validate_name;

use crate::domain::DatasetId;
use crate::error::{Error, Result};
use crate::store::{DatasetRow, Store};
use data::{
    self as dataset, CsvLimits, ImageLimits, RegionsParams, ShapesParams, Table, table_bytes,
};

/// Name of the built-in handwritten digits data set.
pub const DIGITS: &str = "digits";
/// Name of the built-in synthetic 2-D regions data set.
pub const REGIONS: &str = "regions";
/// Name of the built-in synthetic shapes image data set.
pub const SHAPES: &str = "shapes";
/// Images in the built-in `shapes` data set (kept small so the first start stays fast).
pub const BUILTIN_SHAPES_SAMPLES: usize = 1500;
/// The default for the largest data set, in bytes (`--max-dataset-bytes`).
pub const DEFAULT_MAX_DATASET_BYTES: u64 = 1 << 30;
/// The default memory for loaded data sets, in bytes (`--dataset-cache-bytes`).
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// Handle to the catalog; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    store: Store,
    dir: PathBuf,
    // Loaded tables, so that a sweep of jobs on one data set reads its files once; weighed in
    // KiB against a byte budget, the least recently used dropped first.
    cache: Cache<DatasetId, Slot>,
    image_limits: ImageLimits,
    max_dataset_bytes: u64,
    // One import (parse or generate, then save) at a time: each may build a table up to the
    // size limit, and several at once would multiply the peak.
    imports: Arc<tokio::sync::Semaphore>,
}

/// A CSV upload: one file, or one per split.
pub struct CsvUpload {
    /// Unique name for the new data set.
    pub name: String,
    /// Column holding the labels.
    pub label_column: String,
    /// A single file, split by each job's ratios.
    pub file: Option<UploadFile>,
    /// The user's own training split.
    pub train: Option<UploadFile>,
    /// The user's own validation split.
    pub val: Option<UploadFile>,
    /// The user's own test split.
    pub test: Option<UploadFile>,
}

/// A request for a synthetic data set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticRequest {
    /// Unique name for the new data set.
    pub name: String,
    /// What to generate.
    pub synthetic: SyntheticKind,
}

/// The synthetic generators, with their parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SyntheticKind {
    /// Points in the plane labelled by region.
    Regions(RegionsParams),
    /// RGB images of shapes labelled by shape.
    Shapes(ShapesParams),
}

impl SyntheticKind {
    /// Checks the parameters; errors name the field as `synthetic.<name>`.
    pub fn validate(&self) -> Result<()> {
        match self {
            SyntheticKind::Regions(params) => Ok(params.validate()?),
            SyntheticKind::Shapes(params) => Ok(params.validate()?),
        }
    }

    /// The rows and features the generated table will have.
    pub fn size(&self) -> (usize, usize) {
        match self {
            SyntheticKind::Regions(params) => (params.samples, 2),
            SyntheticKind::Shapes(params) => {
                (params.samples, 3 * params.image_size * params.image_size)
            }
        }
    }

    /// Generates the table (CPU work: call it off the async executor).
    pub fn generate(&self) -> Table {
        match self {
            SyntheticKind::Regions(params) => dataset::regions(params),
            SyntheticKind::Shapes(params) => dataset::shapes(params),
        }
    }
}

impl Catalog {
    /// A catalog storing files under `dir`, with the default size limit and cache budget.
    pub fn new(store: Store, dir: PathBuf) -> Self {
        Catalog {
            store,
            dir,
            cache: table_cache(DEFAULT_CACHE_BYTES),
            image_limits: ImageLimits {
                max_table_values: DEFAULT_MAX_DATASET_BYTES / 4,
                ..ImageLimits::default()
            },
            max_dataset_bytes: DEFAULT_MAX_DATASET_BYTES,
            imports: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }

    /// The same catalog with other limits for image archives.
    pub fn with_image_limits(mut self, limits: ImageLimits) -> Self {
        self.image_limits = limits;
        self
    }

    /// The same catalog refusing data sets over `bytes` (see [`dataset::table_bytes`]) and
    /// keeping at most `cache_bytes` of loaded tables in memory.
    pub fn with_sizes(mut self, bytes: u64, cache_bytes: u64) -> Self {
        self.max_dataset_bytes = bytes;
        // An image's numbers take 4 bytes each, and its label 4 more.
        self.image_limits.max_table_values = bytes / 4;
        self.cache = table_cache(cache_bytes);
        self
    }

    /// The largest data set allowed, in bytes.
    pub fn max_dataset_bytes(&self) -> u64 {
        self.max_dataset_bytes
    }

    /// A 422 on `field` when `rows` rows of `features` features pass the size limit.
    fn check_size(&self, field: &str, rows: u64, features: u64, advice: &str) -> Result<()> {
        let bytes = table_bytes(rows, features);
        if bytes <= self.max_dataset_bytes {
            return Ok(());
        }
        let per_row = table_bytes(1, features);
        Err(Error::invalid(
            field,
            format!(
                "{rows} rows of {features} features would take {bytes} bytes ({per_row} per row: \
                 4 per value and 4 for the label); a data set may hold at most {} bytes \
                 (--max-dataset-bytes), that is {} rows of this size; {advice}",
                self.max_dataset_bytes,
                self.max_dataset_bytes / per_row
            ),
        ))
    }

    /// Makes sure the built-in data sets exist (first start, or a data folder that lost them).
    pub async fn ensure_builtins(&self) -> Result<()> {
        if self.store.find_dataset(DIGITS).await?.is_none() {
            let table = tokio::task::spawn_blocking(dataset::digits)
                .await
                .map_err(|err| Error::internal("building digits", err))?;
            self.add(DIGITS, "builtin", table, None, Some("label"), None)
                .await?;
        }
        if self.store.find_dataset(REGIONS).await?.is_none() {
            let params = SyntheticKind::Regions(RegionsParams::default());
            let table = params.generate();
            self.add(REGIONS, "builtin", table, Some(params), None, None)
                .await?;
        }
        if self.store.find_dataset(SHAPES).await?.is_none() {
            let params = SyntheticKind::Shapes(ShapesParams {
                samples: BUILTIN_SHAPES_SAMPLES,
                ..ShapesParams::default()
            });
            let generated = params.clone();
            let table = tokio::task::spawn_blocking(move || generated.generate())
                .await
                .map_err(|err| Error::internal("building shapes", err))?;
            self.add(SHAPES, "builtin", table, Some(params), None, None)
                .await?;
        }
        Ok(())
    }

    /// Parses and stores a CSV upload; nothing is left behind when it is rejected.
    pub async fn add_csv(&self, upload: CsvUpload, owner: Option<&str>) -> Result<DatasetRow> {
        validate_name(&upload.name)?;
        if upload.label_column.trim().is_empty() {
            return Err(Error::invalid(
                "label_column",
                "name the column that holds the labels",
            ));
        }
        self.check_name_free(&upload.name).await?;
        let _import = self.import_slot().await?;
        let upload_name = upload.name.clone();
        let label = upload.label_column.clone();
        let limits = CsvLimits {
            max_table_bytes: self.max_dataset_bytes,
            ..CsvLimits::default()
        };
        let table = tokio::task::spawn_blocking(move || -> Result<Table> {
            match (&upload.file, &upload.train) {
                (Some(_), Some(_)) => Err(Error::invalid(
                    "file",
                    "send either one 'file' (split by ratios) or 'train' with 'val'/'test', not both",
                )),
                (Some(file), None) => {
                    if upload.val.is_some() || upload.test.is_some() {
                        return Err(Error::invalid("val", "'val' and 'test' files need a 'train' file, not 'file'"));
                    }
                    Ok(dataset::read_csv("file", file.open()?, &upload.label_column, &limits)?)
                }
                (None, Some(train)) => {
                    let Some(val) = &upload.val else {
                        return Err(Error::invalid("val", "a data set with its own split needs a 'val' file"));
                    };
                    let test = upload.test.as_ref().map(UploadFile::open).transpose()?;
                    Ok(dataset::read_split_csvs(train.open()?, Some(val.open()?), test, &upload.label_column, &limits)?)
                }
                (None, None) => Err(Error::invalid("file", "attach the CSV as a 'file' part (or 'train' and 'val' parts)")),
            }
            // The uploaded files are removed here, as `upload` goes out of scope.
        })
        .await
        .map_err(|err| Error::internal("parsing an upload", err))??;
        self.add(&upload_name, "upload", table, None, Some(&label), owner)
            .await
    }

    /// Generates and stores a synthetic data set.
    /// The data set belongs to `owner` (none when the service has no tokens).
    pub async fn add_synthetic(
        &self,
        request: SyntheticRequest,
        owner: Option<&str>,
    ) -> Result<DatasetRow> {
        validate_name(&request.name)?;
        let params = request.synthetic;
        params.validate()?;
        let (rows, features) = params.size();
        self.check_size(
            "synthetic.samples",
            rows as u64,
            features as u64,
            "ask for fewer samples (or a smaller image_size)",
        )?;
        self.check_name_free(&request.name).await?;
        let _import = self.import_slot().await?;
        let generated = params.clone();
        let table = tokio::task::spawn_blocking(move || generated.generate())
            .await
            .map_err(|err| Error::internal("generating a data set", err))?;
        self.add(&request.name, "synthetic", table, Some(params), None, owner)
            .await
    }

    /// Waits for the one import allowed at a time.
    async fn import_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.imports)
            .acquire_owned()
            .await
            .map_err(|err| Error::internal("waiting to import a data set", err))
    }

    /// A 409 when `name` is taken; checked before expensive parsing (and again on insert).
    async fn check_name_free(&self, name: &str) -> Result<()> {
        if self.store.find_dataset(name).await?.is_some() {
            return Err(Error::conflict(format!(
                "a data set named '{name}' already exists"
            )));
        }
        Ok(())
    }

    async fn add(
        &self,
        name: &str,
        source: &str,
        table: Table,
        synthetic: Option<SyntheticKind>,
        label_column: Option<&str>,
        owner: Option<&str>,
    ) -> Result<DatasetRow> {
        self.check_name_free(name).await?;
        let id = DatasetId::new();
        let summary = DatasetSummary::of(&table, synthetic, label_column.map(str::to_string));
        let summary =
            serde_json::to_string(&summary).map_err(|err| Error::internal("summarizing", err))?;
        // Saving and recording run as their own task: a client that hangs up mid-way cancels
        // this future, but never leaves files without a row (or a row without files).
        let catalog = self.clone();
        let (name, source) = (name.to_owned(), source.to_owned());
        let owner = owner.map(str::to_owned);
        tokio::spawn(async move {
            catalog
                .save_and_record(id, &name, &source, &summary, owner.as_deref(), table)
                .await
        })
        .await
        .map_err(|err| Error::internal("storing a data set", err))?
    }

    async fn save_and_record(
        &self,
        id: DatasetId,
        name: &str,
        source: &str,
        summary: &str,
        owner: Option<&str>,
        table: Table,
    ) -> Result<DatasetRow> {
        let folder = self.dir.join(id.to_string());
        let table = Arc::new(table);
        let to_save = Arc::clone(&table);
        let target = folder.clone();
        let saved = tokio::task::spawn_blocking(move || dataset::save(&to_save, &target))
            .await
            .map_err(|err| Error::internal("saving a data set", err))
            .and_then(|saved| saved.map_err(Error::from));
        if let Err(err) = saved {
            // `save` removes its own temporary folder; this catches anything past the rename.
            let _ = std::fs::remove_dir_all(&folder);
            return Err(err);
        }
        match self
            .store
            .insert_dataset(id, name, source, summary, owner)
            .await
        {
            Ok(row) => {
                self.cache.insert(id, Slot::new(table));
                // Evict now, not at the next use: the budget holds between requests too.
                self.cache.run_pending_tasks();
                Ok(row)
            }
            Err(err) => {
                // The row is what makes a data set exist; without it the files are garbage.
                let _ = std::fs::remove_dir_all(&folder);
                Err(err)
            }
        }
    }

    /// A data set's row by name or id.
    pub async fn find(&self, name_or_id: &str) -> Result<Option<DatasetRow>> {
        self.store.find_dataset(name_or_id).await
    }

    /// Every data set, or `owner`'s and the public ones.
    pub async fn list(&self, owner: Option<&str>) -> Result<Vec<DatasetRow>> {
        self.store.list_datasets(owner).await
    }
}
