//! The data-set catalog: built-ins, CSV and image-archive uploads and synthetic data sets,
//! stored as files under the data folder and summarized in the database.

mod images;
mod summary;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use images::ImageUpload;
pub use summary::{ClassCount, DatasetSummary, SplitCounts};

use crate::domain::DatasetId;
use crate::error::{Error, Result};
use crate::store::{DatasetRow, Store};
use crate::train::dataset::{self, CsvLimits, ImageLimits, RegionsParams, ShapesParams, Table};

/// Name of the built-in handwritten digits data set.
pub const DIGITS: &str = "digits";
/// Name of the built-in synthetic 2-D regions data set.
pub const REGIONS: &str = "regions";
/// Name of the built-in synthetic shapes image data set.
pub const SHAPES: &str = "shapes";
/// Images in the built-in `shapes` data set (kept small so the first start stays fast).
pub const BUILTIN_SHAPES_SAMPLES: usize = 1500;

/// Handle to the catalog; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    store: Store,
    dir: PathBuf,
    // Loaded tables, so that a sweep of jobs on one data set reads its files once.
    cache: Arc<Mutex<HashMap<DatasetId, Arc<Table>>>>,
    image_limits: ImageLimits,
}

/// A CSV upload: one file, or one per split.
pub struct CsvUpload {
    /// Unique name for the new data set.
    pub name: String,
    /// Column holding the labels.
    pub label_column: String,
    /// A single file, split by each job's ratios.
    pub file: Option<Vec<u8>>,
    /// The user's own training split.
    pub train: Option<Vec<u8>>,
    /// The user's own validation split.
    pub val: Option<Vec<u8>>,
    /// The user's own test split.
    pub test: Option<Vec<u8>>,
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
            SyntheticKind::Regions(params) => params.validate(),
            SyntheticKind::Shapes(params) => params.validate(),
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
    /// A catalog storing files under `dir`.
    pub fn new(store: Store, dir: PathBuf) -> Self {
        Catalog {
            store,
            dir,
            cache: Arc::default(),
            image_limits: ImageLimits::default(),
        }
    }

    /// The same catalog with other limits for image archives.
    pub fn with_image_limits(mut self, limits: ImageLimits) -> Self {
        self.image_limits = limits;
        self
    }

    /// Makes sure the built-in data sets exist (first start, or a data folder that lost them).
    pub async fn ensure_builtins(&self) -> Result<()> {
        if self.store.find_dataset(DIGITS).await?.is_none() {
            let table = tokio::task::spawn_blocking(dataset::digits)
                .await
                .map_err(|err| Error::internal("building digits", err))?;
            self.add(DIGITS, "builtin", table, None, Some("label"))
                .await?;
        }
        if self.store.find_dataset(REGIONS).await?.is_none() {
            let params = SyntheticKind::Regions(RegionsParams::default());
            let table = params.generate();
            self.add(REGIONS, "builtin", table, Some(params), None)
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
            self.add(SHAPES, "builtin", table, Some(params), None)
                .await?;
        }
        Ok(())
    }

    /// Parses and stores a CSV upload; nothing is left behind when it is rejected.
    pub async fn add_csv(&self, upload: CsvUpload) -> Result<DatasetRow> {
        validate_name(&upload.name)?;
        if upload.label_column.trim().is_empty() {
            return Err(Error::invalid(
                "label_column",
                "name the column that holds the labels",
            ));
        }
        self.check_name_free(&upload.name).await?;
        let label = upload.label_column.clone();
        let table = tokio::task::spawn_blocking(move || -> Result<Table> {
            let limits = CsvLimits::default();
            match (upload.file, upload.train) {
                (Some(_), Some(_)) => Err(Error::invalid(
                    "file",
                    "send either one 'file' (split by ratios) or 'train' with 'val'/'test', not both",
                )),
                (Some(file), None) => {
                    if upload.val.is_some() || upload.test.is_some() {
                        return Err(Error::invalid("val", "'val' and 'test' files need a 'train' file, not 'file'"));
                    }
                    dataset::parse_csv("file", &file, &upload.label_column, &limits)
                }
                (None, Some(train)) => {
                    if upload.val.is_none() {
                        return Err(Error::invalid("val", "a data set with its own split needs a 'val' file"));
                    }
                    dataset::parse_split_csvs(&train, upload.val.as_deref(), upload.test.as_deref(), &upload.label_column, &limits)
                }
                (None, None) => Err(Error::invalid("file", "attach the CSV as a 'file' part (or 'train' and 'val' parts)")),
            }
        })
        .await
        .map_err(|err| Error::internal("parsing an upload", err))??;
        self.add(&upload.name, "upload", table, None, Some(&label))
            .await
    }

    /// Generates and stores a synthetic data set.
    pub async fn add_synthetic(&self, request: SyntheticRequest) -> Result<DatasetRow> {
        validate_name(&request.name)?;
        let params = request.synthetic;
        params.validate()?;
        self.check_name_free(&request.name).await?;
        let generated = params.clone();
        let table = tokio::task::spawn_blocking(move || generated.generate())
            .await
            .map_err(|err| Error::internal("generating a data set", err))?;
        self.add(&request.name, "synthetic", table, Some(params), None)
            .await
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
        tokio::spawn(async move {
            catalog
                .save_and_record(id, &name, &source, &summary, table)
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
        table: Table,
    ) -> Result<DatasetRow> {
        let folder = self.dir.join(id.to_string());
        let table = Arc::new(table);
        let to_save = Arc::clone(&table);
        let target = folder.clone();
        let saved = tokio::task::spawn_blocking(move || dataset::save(&to_save, &target))
            .await
            .map_err(|err| Error::internal("saving a data set", err))
            .and_then(|saved| saved);
        if let Err(err) = saved {
            // `save` removes its own temporary folder; this catches anything past the rename.
            let _ = std::fs::remove_dir_all(&folder);
            return Err(err);
        }
        match self.store.insert_dataset(id, name, source, summary).await {
            Ok(row) => {
                self.cache
                    .lock()
                    .expect("catalog cache poisoned; this is a bug")
                    .insert(id, table);
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

    /// Every data set.
    pub async fn list(&self) -> Result<Vec<DatasetRow>> {
        self.store.list_datasets().await
    }

    /// The rows of a data set, from memory or its files.
    pub async fn load(&self, id: DatasetId) -> Result<Arc<Table>> {
        if let Some(table) = self
            .cache
            .lock()
            .expect("catalog cache poisoned; this is a bug")
            .get(&id)
        {
            return Ok(Arc::clone(table));
        }
        let folder = self.dir.join(id.to_string());
        let table = tokio::task::spawn_blocking(move || dataset::load(&folder))
            .await
            .map_err(|err| Error::internal("loading a data set", err))??;
        let table = Arc::new(table);
        self.cache
            .lock()
            .expect("catalog cache poisoned; this is a bug")
            .insert(id, Arc::clone(&table));
        Ok(table)
    }
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "name",
            "use 1 to 100 characters from letters, digits, '-', '_' and '.'",
        ))
    }
}
