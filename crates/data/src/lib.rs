//! Labelled tables of numeric features: parsing uploads (CSV files and image archives),
//! built-in and synthetic data sets, splitting, standardisation and on-disk storage.
//!
//! # Map
//! - [`Table`] (here): features, labels, classes, an optional user split and image shape.
//! - Reading uploads: `csv` (one file or train/val/test files, streamed, with limits) and
//!   `images` (zip and tar archives of PNG/JPEG files: layout, decoding, sample images).
//! - Making data: `builtin` (`digits`, compiled in), `synthetic` (`regions`) and
//!   `shapes` (rendered circles, squares and triangles).
//! - `split`: the seeded stratified split and the standardizer fitted on the train rows.
//! - `storage`: a table on disk (safetensors plus `meta.json`), written atomically.
//! - `error`: [`DataError`], which names the part of the input at fault ([`Input`]).
//!
//! Rule: this crate knows nothing of training, HTTP or the database: it depends on no other
//! crate of the workspace, and its errors name inputs in its own terms. Tests live in each
//! module's `tests` (inline, or `<module>/tests.rs` when long).

#![warn(missing_docs, unreachable_pub)]

mod builtin;
mod csv;
mod error;
mod images;
mod shapes;
mod split;
mod storage;
mod synthetic;

pub use self::builtin::digits;
pub use self::csv::{CsvLimits, read_csv, read_split_csvs};
pub use self::error::{DataError, Input, Result};
pub use self::images::{
    ImageLimits, ImageOptions, decode_image_row, parse_image_archive, read_image_archive,
    sample_png, sample_rgb,
};
pub use self::shapes::{ShapesParams, shapes};
pub use self::split::{SplitIndices, SplitPlan, Standardizer, class_split, split};
pub use self::storage::{load, save};
pub use self::synthetic::{RegionsParams, regions};

/// The bytes a table of `rows` rows and `features` features holds, in memory and on disk: 4
/// per feature value and 4 per label (names and the split column are small beside them). What
/// the data-set size limit is checked against, before anything that large is built.
pub fn table_bytes(rows: u64, features: u64) -> u64 {
    rows.saturating_mul(features.saturating_add(1).saturating_mul(4))
}

/// How the label values of a table are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelKind {
    /// Every label parses as an `i64`; classes are written canonically and sorted numerically.
    Integer,
    /// Any other labels; classes are sorted lexicographically.
    String,
}

/// Which part of a data set a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Rows the model is fitted on.
    Train,
    /// Rows used to pick the model while training.
    Val,
    /// Rows held out for the final evaluation.
    Test,
}

/// A labelled table of numeric features, in memory.
#[derive(Clone, Debug)]
pub struct Table {
    /// The names of the feature columns, in order.
    pub feature_names: Vec<String>,
    /// Row-major, `n_rows x n_features`, all finite.
    pub features: Vec<f32>,
    /// Per row, an index into `classes`.
    pub labels: Vec<u32>,
    /// Label values as written; integers sorted numerically, strings lexicographically.
    pub classes: Vec<String>,
    /// Whether the classes are integers or strings.
    pub label_kind: LabelKind,
    /// `Some(..)` when the user supplied the split (one entry per row).
    pub splits: Option<Vec<Split>>,
    /// Channels, height, width when each row is also an image (digits: `[1, 8, 8]`).
    pub image_shape: Option<[usize; 3]>,
    /// The value of a full-intensity pixel when rows are images: 1 (values in [0, 1]) for
    /// uploads and `shapes`, 16 for `digits`. Image preprocessing divides by it first.
    pub pixel_max: f32,
}

impl Table {
    /// The number of rows (examples).
    pub fn n_rows(&self) -> usize {
        self.labels.len()
    }

    /// The number of feature columns.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// The features of row `i`.
    ///
    /// # Panics
    /// If `i >= self.n_rows()`, like slice indexing.
    pub fn row(&self, i: usize) -> &[f32] {
        let f = self.n_features();
        &self.features[i * f..(i + 1) * f]
    }

    /// The bytes this table occupies in memory: its numbers (at the capacity allocated for
    /// them), its names and itself. What a cache of tables weighs them by.
    pub fn memory_bytes(&self) -> u64 {
        fn strings(names: &[String]) -> usize {
            names
                .iter()
                .map(|s| std::mem::size_of::<String>() + s.capacity())
                .sum()
        }
        let numbers = self.features.capacity() * std::mem::size_of::<f32>()
            + self.labels.capacity() * std::mem::size_of::<u32>()
            + self
                .splits
                .as_ref()
                .map_or(0, |s| s.capacity() * std::mem::size_of::<Split>());
        let names = strings(&self.feature_names) + strings(&self.classes);
        (std::mem::size_of::<Self>() + numbers + names) as u64
    }

    /// How many rows each class has, indexed like `classes`.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &label in &self.labels {
            if let Some(c) = counts.get_mut(label as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// The label value of class index `class` as JSON: a number for integer labels, else a
    /// string; `null` for an index out of range.
    pub fn label_json(&self, class: u32) -> serde_json::Value {
        let Some(name) = self.classes.get(class as usize) else {
            return serde_json::Value::Null;
        };
        match self.label_kind {
            LabelKind::Integer => match name.parse::<i64>() {
                Ok(n) => serde_json::Value::from(n),
                Err(_) => serde_json::Value::String(name.clone()),
            },
            LabelKind::String => serde_json::Value::String(name.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(kind: LabelKind, classes: &[&str]) -> Table {
        Table {
            feature_names: vec!["a".into(), "b".into()],
            features: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            labels: vec![0, 1, 1],
            classes: classes.iter().map(|s| s.to_string()).collect(),
            label_kind: kind,
            splits: None,
            image_shape: None,
            pixel_max: 1.0,
        }
    }

    #[test]
    fn rows_and_counts_follow_the_row_major_layout() {
        let t = table(LabelKind::Integer, &["3", "7"]);
        assert_eq!(t.n_rows(), 3);
        assert_eq!(t.n_features(), 2);
        assert_eq!(t.row(1), &[3.0, 4.0]);
        assert_eq!(t.class_counts(), vec![1, 2]);
    }

    #[test]
    fn integer_labels_become_json_numbers_and_strings_stay_strings() {
        let t = table(LabelKind::Integer, &["-3", "7"]);
        assert_eq!(t.label_json(0), serde_json::json!(-3));
        assert_eq!(t.label_json(9), serde_json::Value::Null);
        let t = table(LabelKind::String, &["cat", "dog"]);
        assert_eq!(t.label_json(1), serde_json::json!("dog"));
    }

    #[test]
    fn enums_serialize_in_snake_case() {
        assert_eq!(serde_json::to_string(&Split::Val).unwrap(), "\"val\"");
        assert_eq!(
            serde_json::to_string(&LabelKind::Integer).unwrap(),
            "\"integer\""
        );
    }
}
