//! Storing tables on disk: a safetensors file of the numbers and a JSON file of the rest.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use safetensors::{Dtype, View};

use super::{LabelKind, Split, Table};
use crate::error::{DataError, Result};

const DATA_FILE: &str = "data.safetensors";
const META_FILE: &str = "meta.json";
const FORMAT_VERSION: u32 = 1;

/// What `meta.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    version: u32,
    n_rows: usize,
    feature_names: Vec<String>,
    classes: Vec<String>,
    label_kind: LabelKind,
    has_splits: bool,
    image_shape: Option<[usize; 3]>,
    #[serde(default = "unit")]
    pixel_max: f32,
}

fn unit() -> f32 {
    1.0
}

/// Writes the table to `dir` (created; data in `dir/data.safetensors` — tensors "features" f32
/// [N,F], "labels" u32 [N], and "splits" u8 [N] when present — plus `dir/meta.json` with feature
/// names, classes, label kind, image shape). Writes into a sibling temporary directory, fsyncs the
/// files, then renames it to `dir`, so a crash never leaves a half-written data set at `dir`.
/// Fails if `dir` already exists.
pub fn save(table: &Table, dir: &Path) -> Result<()> {
    let (parent, name) = match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => (parent, name.to_string_lossy()),
        _ => {
            return Err(DataError::Internal(format!(
                "cannot store a data set at {}",
                dir.display()
            )));
        }
    };
    if dir.exists() {
        return Err(DataError::Internal(format!(
            "data set directory {} already exists",
            dir.display()
        )));
    }
    std::fs::create_dir_all(parent)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = parent.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let result = write_into(table, &tmp).and_then(|()| {
        std::fs::rename(&tmp, dir)?;
        // The rename itself is durable only once the parent directory is synced.
        File::open(parent)?.sync_all()?;
        Ok(())
    });
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn write_into(table: &Table, tmp: &Path) -> Result<()> {
    let (n, f) = (table.n_rows(), table.n_features());
    if table.features.len() != n * f {
        return Err(DataError::Internal(format!(
            "table has {} feature values, not {n} x {f}",
            table.features.len()
        )));
    }
    std::fs::create_dir(tmp)?;
    // The numbers are written straight from the table, never copied: a table near the size
    // limit must not need twice its size to be saved.
    let codes: Option<Vec<u8>> = table
        .splits
        .as_ref()
        .map(|splits| splits.iter().map(|s| split_code(*s)).collect());
    let mut tensors = vec![
        (
            "features",
            Column::new(Dtype::F32, vec![n, f], floats_le(&table.features)),
        ),
        (
            "labels",
            Column::new(Dtype::U32, vec![n], words_le(&table.labels)),
        ),
    ];
    if let Some(codes) = &codes {
        tensors.push((
            "splits",
            Column::new(Dtype::U8, vec![n], Cow::Borrowed(codes)),
        ));
    }
    let data_path = tmp.join(DATA_FILE);
    safetensors::serialize_to_file(tensors, None, &data_path).map_err(|err| match err {
        // Kept as I/O, so a full disk is reported as one.
        safetensors::SafeTensorError::IoError(err) => DataError::Io(err),
        other => DataError::internal("writing a data set", other),
    })?;
    File::open(&data_path)?.sync_all()?;

    let meta = Meta {
        version: FORMAT_VERSION,
        n_rows: n,
        feature_names: table.feature_names.clone(),
        classes: table.classes.clone(),
        label_kind: table.label_kind,
        has_splits: table.splits.is_some(),
        image_shape: table.image_shape,
        pixel_max: table.pixel_max,
    };
    let json = serde_json::to_vec_pretty(&meta)
        .map_err(|e| DataError::internal("encoding meta.json", e))?;
    let mut file = File::create(tmp.join(META_FILE))?;
    file.write_all(&json)?;
    file.sync_all()?;
    File::open(tmp)?.sync_all()?;
    Ok(())
}

/// Reads what `save` wrote, checking shapes and that labels are in range (a corrupt file is
/// DataError::Internal, not a panic).
pub fn load(dir: &Path) -> Result<Table> {
    let corrupt = |what: String| {
        DataError::Internal(format!("data set at {} is corrupt: {what}", dir.display()))
    };
    let json = std::fs::read(dir.join(META_FILE))?;
    let meta: Meta =
        serde_json::from_slice(&json).map_err(|e| corrupt(format!("{META_FILE}: {e}")))?;
    if meta.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is not {FORMAT_VERSION}",
            meta.version
        )));
    }
    let (n, f) = (meta.n_rows, meta.feature_names.len());
    let mut data =
        DataFile::open(&dir.join(DATA_FILE)).map_err(|e| corrupt(format!("{DATA_FILE}: {e}")))?;
    let mut read = |name: &str, dtype: &str, shape: &[usize], width: usize| {
        data.read(name, dtype, shape, width)
            .map_err(|e| corrupt(format!("{DATA_FILE}: {e}")))
    };
    let features: Vec<f32> = read("features", "F32", &[n, f], 4)?
        .into_iter()
        .map(|bits| f32::from_bits(u32::from_le(bits)))
        .collect();
    if features.iter().any(|x| !x.is_finite()) {
        return Err(corrupt("a feature is not finite".to_owned()));
    }
    let labels: Vec<u32> = read("labels", "U32", &[n], 4)?
        .into_iter()
        .map(u32::from_le)
        .collect();
    if labels.iter().any(|&l| l as usize >= meta.classes.len()) {
        return Err(corrupt(format!(
            "a label is not below the {} classes",
            meta.classes.len()
        )));
    }
    let splits = if meta.has_splits {
        let codes: Vec<u8> = read("splits", "U8", &[n], 1)?
            .into_iter()
            .map(|word| word as u8)
            .collect();
        let splits: Option<Vec<Split>> = codes.into_iter().map(split_of_code).collect();
        Some(splits.ok_or_else(|| corrupt("a split code is not 0, 1 or 2".to_owned()))?)
    } else {
        None
    };
    if let Some(shape) = meta.image_shape
        && shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) != Some(f)
    {
        return Err(corrupt(format!(
            "image shape {shape:?} does not hold {f} features"
        )));
    }
    Ok(Table {
        feature_names: meta.feature_names,
        features,
        labels,
        classes: meta.classes,
        label_kind: meta.label_kind,
        splits,
        image_shape: meta.image_shape,
        pixel_max: meta.pixel_max,
    })
}

/// One tensor of the data file, borrowing its bytes where it can.
struct Column<'a> {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Cow<'a, [u8]>,
}

impl<'a> Column<'a> {
    fn new(dtype: Dtype, shape: Vec<usize>, bytes: Cow<'a, [u8]>) -> Self {
        Column {
            dtype,
            shape,
            bytes,
        }
    }
}

impl View for Column<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The values' bytes in little-endian order (safetensors' order): borrowed on little-endian
/// machines.
fn floats_le(values: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

fn words_le(values: &[u32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        Cow::Borrowed(bytemuck::cast_slice(values))
    } else {
        Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// The safetensors data file, read tensor by tensor straight into the table's own buffers:
/// loading a data set needs its size in memory once, not two or three times.
struct DataFile {
    file: File,
    /// Where the tensor data starts.
    data_start: u64,
    header: HashMap<String, serde_json::Value>,
}

/// A tensor's entry in the safetensors header.
#[derive(serde::Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

impl DataFile {
    fn open(path: &Path) -> io::Result<DataFile> {
        /// safetensors' own limit on the header.
        const MAX_HEADER: u64 = 100_000_000;
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut size = [0u8; 8];
        file.read_exact(&mut size)?;
        let n = u64::from_le_bytes(size);
        if n > MAX_HEADER || n > len - 8 {
            return Err(io::Error::other(format!(
                "a header of {n} bytes does not fit"
            )));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)?;
        let header: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(io::Error::other)?;
        // Every byte after the header belongs to a tensor: a file cut short or padded is
        // corrupt.
        let end = header
            .iter()
            .filter(|(name, _)| name.as_str() != "__metadata__")
            .filter_map(|(_, entry)| entry.get("data_offsets")?.get(1)?.as_u64())
            .max()
            .unwrap_or(0);
        if 8 + n + end != len {
            return Err(io::Error::other(format!(
                "the file has {len} bytes; its header describes {}",
                8 + n + end
            )));
        }
        Ok(DataFile {
            file,
            data_start: 8 + n,
            header,
        })
    }

    /// Reads tensor `name`, which must have `dtype` and `shape`, as words of `width` bytes (4
    /// or 1), little-endian as stored. Its size is checked against the file before anything is
    /// allocated for it.
    fn read(
        &mut self,
        name: &str,
        dtype: &str,
        shape: &[usize],
        width: usize,
    ) -> io::Result<Vec<u32>> {
        let entry = self
            .header
            .get(name)
            .ok_or_else(|| io::Error::other(format!("tensor '{name}' is missing")))?;
        let entry: TensorEntry = serde_json::from_value(entry.clone()).map_err(io::Error::other)?;
        let [start, end] = entry.data_offsets;
        let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let bytes = count.and_then(|c| c.checked_mul(width));
        if entry.dtype != dtype
            || entry.shape != shape
            || bytes.map(|b| b as u64) != end.checked_sub(start)
        {
            return Err(io::Error::other(format!(
                "tensor '{name}' is {} {:?} over bytes {start}..{end}, expected {dtype} {shape:?}",
                entry.dtype, entry.shape
            )));
        }
        // `open` checked that every tensor's bytes lie within the file.
        let count = count.unwrap_or(0);
        self.file.seek(SeekFrom::Start(self.data_start + start))?;
        if width == 4 {
            let mut words = vec![0u32; count];
            self.file.read_exact(bytemuck::cast_slice_mut(&mut words))?;
            Ok(words)
        } else {
            let mut bytes = vec![0u8; count];
            self.file.read_exact(&mut bytes)?;
            Ok(bytes.into_iter().map(u32::from).collect())
        }
    }
}

fn split_code(split: Split) -> u8 {
    match split {
        Split::Train => 0,
        Split::Val => 1,
        Split::Test => 2,
    }
}

fn split_of_code(code: u8) -> Option<Split> {
    match code {
        0 => Some(Split::Train),
        1 => Some(Split::Val),
        2 => Some(Split::Test),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use crate::{digits, read_split_csvs, regions};

    /// Entries of `parent` other than `keep`, for checking nothing is left behind.
    fn leftovers(parent: &Path, keep: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(parent)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p != keep)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn assert_identical(a: &Table, b: &Table) {
        assert_eq!(a.feature_names, b.feature_names);
        let bits = |t: &Table| t.features.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b));
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.classes, b.classes);
        assert_eq!(a.label_kind, b.label_kind);
        assert_eq!(a.splits, b.splits);
        assert_eq!(a.image_shape, b.image_shape);
    }

    #[test]
    fn a_saved_table_loads_bit_identically_and_leaves_no_temporary_directory() {
        let root = tempfile::tempdir().unwrap();
        for (name, table) in [
            ("digits", digits()),
            ("regions", regions(&Default::default())),
        ] {
            let parent = root.path().join(name);
            let dir = parent.join("set");
            save(&table, &dir).unwrap();
            assert_identical(&table, &load(&dir).unwrap());
            assert_eq!(leftovers(&parent, &dir), Vec::<PathBuf>::new());
        }
    }

    #[test]
    fn a_table_with_user_splits_and_string_labels_round_trips() {
        let train = "a,label\n".to_owned()
            + &(0..10)
                .map(|i| format!("{i}.25,c{}\n", i % 3))
                .collect::<String>();
        let table = read_split_csvs(
            train.as_bytes(),
            Some(b"a,label\n-1e-7,c1\n"),
            Some(b"a,label\n3,c0\n"),
            "label",
            &Default::default(),
        )
        .unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("set");
        save(&table, &dir).unwrap();
        assert_identical(&table, &load(&dir).unwrap());
    }

    #[test]
    fn saving_over_an_existing_data_set_fails_and_keeps_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("set");
        save(&digits(), &dir).unwrap();
        assert!(matches!(
            save(&regions(&Default::default()), &dir),
            Err(DataError::Internal(_))
        ));
        assert_eq!(load(&dir).unwrap().n_rows(), 1797);
        assert_eq!(leftovers(root.path(), &dir), Vec::<PathBuf>::new());
    }

    #[test]
    fn corrupt_or_inconsistent_files_are_internal_errors() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("set");
        let table = regions(&Default::default());
        save(&table, &dir).unwrap();
        let meta_path = dir.join(META_FILE);
        let meta = std::fs::read_to_string(&meta_path).unwrap();

        std::fs::write(
            &meta_path,
            meta.replace("\"n_rows\": 2000", "\"n_rows\": 1999"),
        )
        .unwrap();
        assert!(matches!(load(&dir), Err(DataError::Internal(m)) if m.contains("features")));
        std::fs::write(&meta_path, meta.replace(",\n    \"4\"\n", "\n")).unwrap();
        assert!(matches!(load(&dir), Err(DataError::Internal(m)) if m.contains("label")));
        std::fs::write(&meta_path, "{").unwrap();
        assert!(matches!(load(&dir), Err(DataError::Internal(_))));
        std::fs::write(&meta_path, &meta).unwrap();
        let data = dir.join(DATA_FILE);
        let bytes = std::fs::read(&data).unwrap();
        for cut in [0, 7, 100, bytes.len() - 1] {
            std::fs::write(&data, &bytes[..cut]).unwrap();
            assert!(
                matches!(load(&dir), Err(DataError::Internal(_))),
                "cut at {cut}"
            );
        }
        std::fs::write(&data, &bytes).unwrap();
        assert_identical(&table, &load(&dir).unwrap());
    }
}
