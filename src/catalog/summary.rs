use serde::{Deserialize, Serialize};

use crate::domain::DataSpec;
use crate::train::dataset::{LabelKind, RegionsParams, Split, SplitPlan, Table, split};

/// What a user needs to know about a data set before training on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Number of rows.
    pub rows: usize,
    /// Number of input features.
    pub features: usize,
    /// The feature columns, in order (what a prediction row must contain).
    pub feature_names: Vec<String>,
    /// The label column of an upload.
    pub label_column: Option<String>,
    /// Whether labels are integers or strings.
    pub label_kind: LabelKind,
    /// Every class with its number of rows.
    pub classes: Vec<ClassCount>,
    /// When rows are also images: channels, height, width.
    pub image_shape: Option<[usize; 3]>,
    /// The split the user uploaded, if any; jobs then use it instead of ratios.
    pub fixed_split: Option<SplitCounts>,
    /// Rows per split under a job's default data settings.
    pub default_split: Option<SplitCounts>,
    /// Generator parameters of a synthetic data set.
    pub synthetic: Option<RegionsParams>,
}

/// A class label and its number of rows.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClassCount {
    /// The label as it appears in the data (number or string).
    pub label: serde_json::Value,
    /// Rows with this label.
    pub count: usize,
}

/// Rows per split.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SplitCounts {
    /// Training rows.
    pub train: usize,
    /// Validation rows.
    pub val: usize,
    /// Test rows.
    pub test: usize,
}

impl DatasetSummary {
    /// Summarizes a table.
    pub fn of(
        table: &Table,
        synthetic: Option<RegionsParams>,
        label_column: Option<String>,
    ) -> Self {
        let counts = table.class_counts();
        let fixed_split = table.splits.as_ref().map(|splits| SplitCounts {
            train: splits.iter().filter(|s| **s == Split::Train).count(),
            val: splits.iter().filter(|s| **s == Split::Val).count(),
            test: splits.iter().filter(|s| **s == Split::Test).count(),
        });
        let defaults = DataSpec::default();
        let plan = SplitPlan {
            val_fraction: defaults.val_fraction,
            test_fraction: defaults.test_fraction,
            seed: defaults.split_seed,
        };
        let default_split = split(table, &plan).ok().map(|s| SplitCounts {
            train: s.train.len(),
            val: s.val.len(),
            test: s.test.len(),
        });
        DatasetSummary {
            rows: table.n_rows(),
            features: table.n_features(),
            feature_names: table.feature_names.clone(),
            label_column,
            label_kind: table.label_kind,
            classes: counts
                .iter()
                .enumerate()
                .map(|(i, &count)| ClassCount {
                    label: table.label_json(i as u32),
                    count,
                })
                .collect(),
            image_shape: table.image_shape,
            fixed_split,
            default_split,
            synthetic,
        }
    }
}
