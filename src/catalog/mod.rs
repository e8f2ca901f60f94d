//! The data-set catalog: built-ins, CSV and image-archive uploads and synthetic data sets,
//! stored as files under the data folder and summarized in the database.

mod debris;
mod images;
mod summary;
mod upload;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use serde::{Deserialize, Serialize};

pub use debris::{Removed, remove_temp_files};
pub use images::ImageUpload;
pub use summary::{ClassCount, DatasetSummary, SplitCounts};
pub use upload::UploadFile;

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
        self.add(&upload_name, "upload", table, None, Some(&label))
            .await
    }

    /// Generates and stores a synthetic data set.
    pub async fn add_synthetic(&self, request: SyntheticRequest) -> Result<DatasetRow> {
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
        self.add(&request.name, "synthetic", table, Some(params), None)
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
            .and_then(|saved| saved.map_err(Error::from));
        if let Err(err) = saved {
            // `save` removes its own temporary folder; this catches anything past the rename.
            let _ = std::fs::remove_dir_all(&folder);
            return Err(err);
        }
        match self.store.insert_dataset(id, name, source, summary).await {
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

    /// Every data set.
    pub async fn list(&self) -> Result<Vec<DatasetRow>> {
        self.store.list_datasets().await
    }

    /// The rows of a data set, from memory or its files. Concurrent loads of one data set
    /// read its files once.
    pub async fn load(&self, id: DatasetId) -> Result<Arc<Table>> {
        if let Some(table) = self.cache.get(&id).and_then(|slot| slot.table()) {
            return Ok(table);
        }
        let folder = self.dir.join(id.to_string());
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || {
            let mut loaded = None;
            let slot = cache
                .try_get_with(id, || {
                    let table = Arc::new(dataset::load(&folder).map_err(Error::from)?);
                    loaded = Some(Arc::clone(&table));
                    Ok::<_, Error>(Slot::new(table))
                })
                .map_err(|err| match &*err {
                    Error::Internal(message) => Error::Internal(message.clone()),
                    other => Error::Internal(other.to_string()),
                })?;
            let table = loaded.or_else(|| slot.table());
            cache.run_pending_tasks();
            match table {
                Some(table) => Ok(table),
                // Evicted between another thread's load and this look: read it again.
                None => Ok(dataset::load(&folder).map(Arc::new)?),
            }
        })
        .await
        .map_err(|err| Error::internal("loading a data set", err))?
    }

    /// The bytes of loaded data sets held in memory now (after pending evictions).
    pub fn cached_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size() * 1024
    }
}

/// A cached table. The cache points at the table through this slot, and evicting an entry
/// empties its slot: moka frees its own entries later (epoch-based reclamation, on later cache
/// traffic), which for a table of a gigabyte would keep that memory long past its eviction.
#[derive(Clone)]
struct Slot {
    table: Arc<Mutex<Option<Arc<Table>>>>,
    bytes: u64,
}

impl Slot {
    fn new(table: Arc<Table>) -> Self {
        Slot {
            bytes: table.memory_bytes(),
            table: Arc::new(Mutex::new(Some(table))),
        }
    }

    /// The table, unless it has been evicted.
    fn table(&self) -> Option<Arc<Table>> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn clear(&self) {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
    }
}

/// A cache of tables weighing each by its [`Table::memory_bytes`], in KiB (a weight is a
/// `u32`), holding at most `bytes`, dropping the least recently used first. A table larger
/// than the whole budget is used but not kept.
fn table_cache(bytes: u64) -> Cache<DatasetId, Slot> {
    Cache::builder()
        .max_capacity(bytes / 1024)
        .weigher(|_, slot: &Slot| u32::try_from(slot.bytes.div_ceil(1024)).unwrap_or(u32::MAX))
        .eviction_policy(EvictionPolicy::lru())
        .eviction_listener(|_, slot: Slot, _| slot.clear())
        .build()
}

/// The longest data-set name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A data-set name: 1 to 100 characters from ASCII letters, digits, `-`, `_` and `.`, not `.`
/// or `..` (a URL path segment would climb with them) and not shaped like an id (lookups take a
/// name or an id). Names are ASCII so they read the same in every URL, log and terminal: no
/// control, bidi-override or look-alike characters.
fn validate_name(name: &str) -> Result<()> {
    let chars = name.chars().count();
    let problem = if chars == 0 {
        Some("give the data set a name".to_owned())
    } else if chars > MAX_NAME_CHARS {
        Some(format!(
            "the name has {chars} characters; at most {MAX_NAME_CHARS} are allowed"
        ))
    } else if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let what = if c.is_control() {
            "a control character".to_owned()
        } else if is_bidi_control(c) {
            "a bidirectional-text control character".to_owned()
        } else {
            format!("'{}'", c.escape_debug())
        };
        Some(format!(
            "the name contains {what} (U+{:04X}); use only letters, digits, '-', '_' and '.'",
            u32::from(c)
        ))
    } else if name == "." || name == ".." {
        Some(format!(
            "'{name}' is reserved (it means a folder in a URL path); pick another name"
        ))
    } else if name.parse::<DatasetId>().is_ok() {
        Some("the name looks like a data-set id, which would make lookups ambiguous".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(Error::invalid(
            "name",
            format!(
                "{problem} (a name is 1 to {MAX_NAME_CHARS} characters from letters, digits, \
                 '-', '_' and '.', and not '.' or '..')"
            ),
        )),
    }
}

/// Characters that reorder how text is displayed (U+202A-U+202E, U+2066-U+2069, marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use data::LabelKind;

    /// A table of `rows` rows of 100 features: 404 bytes a row.
    fn table(rows: usize) -> Arc<Table> {
        Arc::new(Table {
            feature_names: (0..100).map(|i| format!("f{i}")).collect(),
            features: vec![0.5; rows * 100],
            labels: vec![0; rows],
            classes: vec!["a".into(), "b".into()],
            label_kind: LabelKind::String,
            splits: None,
            image_shape: None,
            pixel_max: 1.0,
        })
    }

    #[test]
    fn a_table_weighs_what_its_numbers_and_names_take() {
        let t = table(1000);
        let numbers = 1000 * 100 * 4 + 1000 * 4;
        assert!(t.memory_bytes() >= numbers as u64);
        assert!(
            t.memory_bytes() < numbers as u64 + 10_000,
            "{}",
            t.memory_bytes()
        );
    }

    #[test]
    fn the_table_cache_stays_within_its_budget_dropping_the_least_recently_used() {
        // Each table is about 400 KB; the budget holds two of them, not three.
        let cache = table_cache(1_000_000);
        let (a, b, c) = (DatasetId::new(), DatasetId::new(), DatasetId::new());
        cache.insert(a, Slot::new(table(1000)));
        let b_slot = Slot::new(table(1000));
        cache.insert(b, b_slot.clone());
        cache.run_pending_tasks();
        assert!(
            cache.get(&a).is_some(),
            "a is used again, so b is now the oldest"
        );
        cache.run_pending_tasks();
        cache.insert(c, Slot::new(table(1000)));
        cache.run_pending_tasks();
        assert!(cache.contains_key(&a));
        assert!(!cache.contains_key(&b));
        assert!(
            b_slot.table().is_none(),
            "an evicted table is let go at once"
        );
        assert!(cache.contains_key(&c));
        assert!(cache.weighted_size() * 1024 <= 1_000_000 + 2048);

        // A table larger than the whole budget is not kept at all.
        let big = DatasetId::new();
        let held = table(3000);
        cache.insert(big, Slot::new(Arc::clone(&held)));
        cache.run_pending_tasks();
        assert!(!cache.contains_key(&big));
        assert_eq!(Arc::strong_count(&held), 1, "only its user holds it");
        assert!(cache.weighted_size() * 1024 <= 1_000_000 + 2048);

        let none = table_cache(0);
        none.insert(a, Slot::new(table(1)));
        none.run_pending_tasks();
        assert_eq!(none.entry_count(), 0);
    }

    #[test]
    fn names_are_checked_by_characters_and_refuse_dot_folders_and_invisible_controls() {
        for good in ["fruit", "a.b-c_d", "...", &"x".repeat(100)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "evil\u{202E}gnp.exe",
            "tab\there",
            "é",
            &"x".repeat(101),
            "0190d6f2-6b1a-7c3e-8a5b-1234567890ab",
        ] {
            assert!(
                matches!(validate_name(bad), Err(Error::Invalid { ref field, .. }) if field == "name"),
                "{bad:?}"
            );
        }
        let message = validate_name("a\u{202E}b").unwrap_err().to_string();
        assert!(
            message.contains("U+202E") && message.contains("bidirectional"),
            "{message}"
        );
    }
}
