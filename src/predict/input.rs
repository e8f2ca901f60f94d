//! What an imported model's input is: named features (standardized or not), or images of a
//! shape with their resize, crop and normalization.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use engine::spec::{CropSpec, ImagePreprocessingSpec, ImageSize, Normalization};
use engine::{ImagePipeline, Preprocessing};

/// An imported model's input: exactly one of `features` and `image`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The columns of a row, in order.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Per-feature `(x - mean) / std` before the network.
    #[serde(default)]
    pub standardize: Option<MeanStd>,
    /// Images.
    #[serde(default)]
    pub image: Option<ImageInput>,
}

/// Per-feature or per-channel statistics.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MeanStd {
    /// One per feature or channel.
    pub mean: Vec<f32>,
    /// One per feature or channel, each positive.
    pub std: Vec<f32>,
}

/// Images as an imported model takes them.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageInput {
    /// `[channels, height, width]` of the images a request sends (rows in `inputs` are these
    /// flattened; uploaded images are decoded to it).
    pub shape: [usize; 3],
    /// The value of a full-intensity pixel in rows (1 for [0, 1] rows, 255 for bytes).
    #[serde(default = "one")]
    pub pixel_max: f32,
    /// Resize first (bilinear).
    #[serde(default)]
    pub resize: Option<ImageSize>,
    /// Then crop (`center`).
    #[serde(default)]
    pub crop: Option<CropSpec>,
    /// Repeat one channel into three.
    #[serde(default)]
    pub grayscale_to_rgb: bool,
    /// `"imagenet"`, `"none"` (default) or `{"mean": [...], "std": [...]}` per channel.
    #[serde(default)]
    pub normalize: NormalizeInput,
}

fn one() -> f32 {
    1.0
}

/// Per-channel normalization of an imported model's images.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum NormalizeInput {
    /// `imagenet` or `none`.
    Named(NamedNormalization),
    /// The model's own statistics.
    Custom(MeanStd),
}

impl Default for NormalizeInput {
    fn default() -> Self {
        NormalizeInput::Named(NamedNormalization::None)
    }
}

/// A normalization by name.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NamedNormalization {
    /// ImageNet's mean and std.
    Imagenet,
    /// Pixels stay in [0, 1].
    None,
}

impl InputSpec {
    /// The engine's preprocessing for this input and these labels; a 422 naming the field.
    pub fn preprocessing(&self, labels: Vec<serde_json::Value>) -> Result<Preprocessing> {
        if labels.len() < 2 {
            return Err(Error::invalid("labels", "valid: at least two labels"));
        }
        match (&self.features, &self.image) {
            (Some(features), None) => self.features_preprocessing(features, labels),
            (None, Some(image)) => {
                if self.standardize.is_some() {
                    return Err(Error::invalid(
                        "input.standardize",
                        "images are normalized per channel with input.image.normalize",
                    ));
                }
                image_preprocessing(image, labels)
            }
            _ => Err(Error::invalid(
                "input",
                "give exactly one of input.features (column names) and input.image",
            )),
        }
    }

    fn features_preprocessing(
        &self,
        features: &[String],
        labels: Vec<serde_json::Value>,
    ) -> Result<Preprocessing> {
        if features.is_empty() || features.len() > 1_000_000 {
            return Err(Error::invalid(
                "input.features",
                "valid: 1 to 1000000 column names",
            ));
        }
        let standardizer = match &self.standardize {
            None => None,
            Some(stats) => {
                check_stats(stats, features.len(), "input.standardize")?;
                Some(
                    serde_json::from_value(
                        serde_json::json!({"mean": stats.mean, "std": stats.std}),
                    )
                    .map_err(|err| Error::internal("building a standardizer", err))?,
                )
            }
        };
        Ok(Preprocessing {
            feature_names: features.to_vec(),
            standardizer,
            labels,
            image_shape: None,
            pixel_max: 1.0,
            image: None,
        })
    }
}

fn image_preprocessing(
    image: &ImageInput,
    labels: Vec<serde_json::Value>,
) -> Result<Preprocessing> {
    let [c, h, w] = image.shape;
    if !matches!(c, 1 | 3) || !(1..=4096).contains(&h) || !(1..=4096).contains(&w) {
        return Err(Error::invalid(
            "input.image.shape",
            "valid: [channels, height, width] with 1 or 3 channels and sides of 1 to 4096",
        ));
    }
    if !(image.pixel_max.is_finite() && image.pixel_max > 0.0) {
        return Err(Error::invalid(
            "input.image.pixel_max",
            "valid: a positive number (1 for [0, 1] rows, 255 for bytes)",
        ));
    }
    let spec = ImagePreprocessingSpec {
        resize: image.resize,
        crop: image.crop.clone(),
        horizontal_flip: 0.0,
        normalize: match image.normalize {
            NormalizeInput::Named(NamedNormalization::Imagenet) => Normalization::Imagenet,
            _ => Normalization::None,
        },
        grayscale_to_rgb: image.grayscale_to_rgb,
    };
    let mut pipeline = ImagePipeline::new(&spec, image.shape, image.pixel_max)
        .map_err(|err| Error::invalid("input.image", err.to_string()))?;
    if let NormalizeInput::Custom(stats) = &image.normalize {
        let channels = pipeline.output_shape()[0];
        check_stats(stats, channels, "input.image.normalize")?;
        pipeline.mean = stats.mean.clone();
        pipeline.std = stats.std.clone();
    }
    Ok(Preprocessing {
        feature_names: (0..c * h * w).map(|i| format!("pixel_{i}")).collect(),
        standardizer: None,
        labels,
        image_shape: Some(pipeline.output_shape()),
        pixel_max: image.pixel_max,
        image: Some(pipeline),
    })
}

fn check_stats(stats: &MeanStd, n: usize, field: &str) -> Result<()> {
    if stats.mean.len() != n || stats.std.len() != n {
        return Err(Error::invalid(
            field,
            format!("valid: mean and std of {n} values each"),
        ));
    }
    if stats.mean.iter().any(|v| !v.is_finite())
        || stats.std.iter().any(|v| !(v.is_finite() && *v > 0.0))
    {
        return Err(Error::invalid(
            field,
            "valid: finite means and positive, finite standard deviations",
        ));
    }
    Ok(())
}
