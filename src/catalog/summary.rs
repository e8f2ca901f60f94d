use serde::{Deserialize, Deserializer, Serialize};

use super::SyntheticKind;
use crate::domain::DataSpec;
use data::{LabelKind, RegionsParams, Split, SplitPlan, Table, split};

/// What a user needs to know about a data set before training on it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// Number of rows.
    pub rows: usize,
    /// Number of input features.
    pub features: usize,
    /// The feature columns, in order (what a prediction row must contain); empty for image
    /// data sets, whose rows are their images flattened channel by channel, row by row.
    pub feature_names: Vec<String>,
    /// The label column of an upload.
    pub label_column: Option<String>,
    /// Whether labels are integers or strings.
    pub label_kind: LabelKind,
    /// Every class with its number of rows.
    pub classes: Vec<ClassCount>,
    /// When rows are also images: channels, height, width.
    pub image_shape: Option<[usize; 3]>,
    /// When rows are images: their channels (1 grayscale, 3 RGB).
    #[serde(default)]
    pub channels: Option<usize>,
    /// When rows are images: the value of a full-intensity pixel in them (1, or 16 for
    /// `digits`); images sent for prediction are read as [0, 1] and scaled by it.
    #[serde(default)]
    pub pixel_max: Option<f32>,
    /// The split the user uploaded, if any; jobs then use it instead of ratios.
    pub fixed_split: Option<SplitCounts>,
    /// Rows per split under a job's default data settings.
    pub default_split: Option<SplitCounts>,
    /// Generator and parameters of a synthetic data set.
    #[serde(default, deserialize_with = "synthetic_of_any_version")]
    pub synthetic: Option<SyntheticKind>,
}

/// Summaries stored before the `shapes` generator existed hold bare regions parameters,
/// without a `kind`.
fn synthetic_of_any_version<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SyntheticKind>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Tagged(SyntheticKind),
        Untagged(RegionsParams),
    }
    Ok(
        Option::<Stored>::deserialize(deserializer)?.map(|stored| match stored {
            Stored::Tagged(kind) => kind,
            Stored::Untagged(params) => SyntheticKind::Regions(params),
        }),
    )
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
        synthetic: Option<SyntheticKind>,
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
            feature_names: if table.image_shape.is_some() {
                Vec::new()
            } else {
                table.feature_names.clone()
            },
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
            channels: table.image_shape.map(|[c, _, _]| c),
            pixel_max: table.image_shape.map(|_| table.pixel_max),
            fixed_split,
            default_split,
            synthetic,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use data::{ShapesParams, digits, shapes};

    #[test]
    fn an_image_table_shows_its_shape_and_channels_but_no_feature_names() {
        let table = shapes(&ShapesParams {
            samples: 60,
            ..ShapesParams::default()
        });
        let params = SyntheticKind::Shapes(ShapesParams::default());
        let summary = DatasetSummary::of(&table, Some(params.clone()), None);
        assert_eq!(summary.image_shape, Some([3, 32, 32]));
        assert_eq!(summary.channels, Some(3));
        assert_eq!(summary.features, 3072);
        assert!(summary.feature_names.is_empty());
        assert_eq!(summary.classes.len(), 3);
        assert_eq!(summary.classes[0].label, serde_json::json!("circle"));
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["synthetic"]["kind"], "shapes");
        let back: DatasetSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back.synthetic, Some(params));
        assert_eq!(summary.pixel_max, Some(1.0));
        let digits = DatasetSummary::of(&digits(), None, None);
        assert_eq!((digits.channels, digits.pixel_max), (Some(1), Some(16.0)));
    }

    #[test]
    fn summaries_stored_before_shapes_existed_still_read() {
        let old = r#"{"rows": 2000, "features": 2, "feature_names": ["x", "y"], "label_column": null,
            "label_kind": "integer", "classes": [], "image_shape": null, "fixed_split": null,
            "default_split": null, "synthetic": {"classes": 5, "samples": 2000, "seed": 0, "label_noise": 0.0}}"#;
        let summary: DatasetSummary = serde_json::from_str(old).unwrap();
        assert_eq!(
            summary.synthetic,
            Some(SyntheticKind::Regions(RegionsParams::default()))
        );
        assert_eq!(summary.channels, None);
        let none = old.replace(
            r#"{"classes": 5, "samples": 2000, "seed": 0, "label_noise": 0.0}"#,
            "null",
        );
        let summary: DatasetSummary = serde_json::from_str(&none).unwrap();
        assert_eq!(summary.synthetic, None);
    }
}
