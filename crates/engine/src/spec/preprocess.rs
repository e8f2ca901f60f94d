//! Image preprocessing in a job spec (`data.preprocessing`): resize, centre or random crop,
//! horizontal flip, normalization and grayscale to RGB. Checked alone at parsing
//! ([`ImagePreprocessingSpec::validate`]) and against the data set's image shape at submission
//! ([`ImagePreprocessingSpec::output_shape`]), which also gives the network's input shape.

use serde::{Deserialize, Serialize};

use super::check::{check, int_range};
use crate::error::{EngineError, Result};

/// The largest side `resize` and `crop.size` may ask for.
pub(crate) const MAX_SIDE: usize = 1024;
/// The most zero padding a random crop may add on each side.
pub(crate) const MAX_PADDING: usize = 256;

/// How images are transformed before the network sees them. Training applies the random parts
/// (random crop, flip) per batch, seeded by the job's seed and the epoch; evaluation and
/// prediction apply the deterministic path: resize, centre crop, normalization.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagePreprocessingSpec {
    /// Resize every image (bilinear, triangle filter) to this size first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resize: Option<ImageSize>,
    /// Crop after resizing: `center`, or `random` in training (centre at evaluation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop: Option<CropSpec>,
    /// Probability of flipping a training image left to right (0: never).
    pub horizontal_flip: f64,
    /// Per-channel normalization of pixels in [0, 1]; `dataset` by default.
    pub normalize: Normalization,
    /// Repeat a 1-channel image into 3 channels (for RGB networks).
    pub grayscale_to_rgb: bool,
}

/// An image size: one number for a square, or `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageSize {
    /// `n`: n×n.
    Square(usize),
    /// `[height, width]`.
    HeightWidth([usize; 2]),
}

impl ImageSize {
    /// `[height, width]`.
    pub fn dims(self) -> [usize; 2] {
        match self {
            ImageSize::Square(n) => [n, n],
            ImageSize::HeightWidth(hw) => hw,
        }
    }
}

/// Which crop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropKind {
    /// The centre, always.
    Center,
    /// A random window of the (padded) image in training; the centre at evaluation.
    Random,
}

/// A crop of the resized image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropSpec {
    /// `center` or `random`.
    pub kind: CropKind,
    /// The crop's size; at most the (resized) image's.
    pub size: ImageSize,
    /// With `random`: zero padding added on every side before cropping (like torchvision's
    /// `RandomCrop(32, padding=4)`).
    #[serde(default)]
    pub padding: usize,
}

/// Per-channel normalization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// The mean and standard deviation of each channel over the training split (fitted once,
    /// stored with the job).
    #[default]
    Dataset,
    /// ImageNet's: mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225] (3 channels).
    Imagenet,
    /// Pixels stay in [0, 1].
    None,
}

const FIELD: &str = "data.preprocessing";

impl ImagePreprocessingSpec {
    /// Rejects impossible values on their own, naming the field.
    pub(super) fn validate(&self) -> Result<()> {
        if let Some(size) = self.resize {
            side(size, &format!("{FIELD}.resize"))?;
        }
        if let Some(crop) = &self.crop {
            side(crop.size, &format!("{FIELD}.crop.size"))?;
            int_range(
                crop.padding,
                0,
                MAX_PADDING,
                &format!("{FIELD}.crop.padding"),
            )?;
            check(
                crop.kind == CropKind::Random || crop.padding == 0,
                &format!("{FIELD}.crop.padding"),
                || "padding applies to random crops only; valid: 0 with kind 'center'".into(),
            )?;
        }
        check(
            (0.0..=1.0).contains(&self.horizontal_flip),
            &format!("{FIELD}.horizontal_flip"),
            || {
                format!(
                    "{} is not a probability; valid: 0 <= p <= 1",
                    self.horizontal_flip
                )
            },
        )
    }

    /// Whether training batches are randomly cropped or flipped.
    pub fn augments(&self) -> bool {
        self.horizontal_flip > 0.0
            || self
                .crop
                .as_ref()
                .is_some_and(|crop| crop.kind == CropKind::Random)
    }

    /// The shape `[channels, height, width]` the network sees for images of `input` (`None`:
    /// the data set has no images); a 422 naming the field that does not fit.
    pub fn output_shape(&self, input: Option<[usize; 3]>) -> Result<[usize; 3]> {
        let [c, h, w] = input.ok_or_else(|| {
            EngineError::spec(
                FIELD,
                "this data set has no images; image preprocessing needs an image data set such \
                 as 'digits', 'shapes' or an uploaded archive",
            )
        })?;
        let channels = if self.grayscale_to_rgb {
            check(c == 1, &format!("{FIELD}.grayscale_to_rgb"), || {
                format!("the data set's images already have {c} channels; valid: false")
            })?;
            3
        } else {
            c
        };
        check(
            self.normalize != Normalization::Imagenet || channels == 3,
            &format!("{FIELD}.normalize"),
            || {
                format!(
                    "'imagenet' normalizes 3 channels and these images have {channels}; valid: \
                     'dataset' or 'none', or add grayscale_to_rgb: true"
                )
            },
        )?;
        let [rh, rw] = self.resize.map_or([h, w], ImageSize::dims);
        let Some(crop) = &self.crop else {
            return Ok([channels, rh, rw]);
        };
        let [ch, cw] = crop.size.dims();
        check(ch <= rh && cw <= rw, &format!("{FIELD}.crop.size"), || {
            format!(
                "a {ch}x{cw} crop is larger than the {rh}x{rw} image it crops{}; valid: at most \
                 {rh}x{rw}",
                if self.resize.is_some() {
                    " (after resize)"
                } else {
                    ""
                }
            )
        })?;
        Ok([channels, ch, cw])
    }
}

fn side(size: ImageSize, field: &str) -> Result<()> {
    let [h, w] = size.dims();
    check(
        (1..=MAX_SIDE).contains(&h) && (1..=MAX_SIDE).contains(&w),
        field,
        || format!("{h}x{w} is not an image size; valid: 1 to {MAX_SIDE} pixels a side"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ImagePreprocessingSpec {
        serde_json::from_value(json).unwrap()
    }

    fn field(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(EngineError::Spec { path: field, .. }) => field,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn sizes_are_a_number_or_height_and_width() {
        let s = spec(
            serde_json::json!({"resize": 24, "crop": {"kind": "random", "size": [20, 16], "padding": 2}}),
        );
        assert_eq!(s.resize.unwrap().dims(), [24, 24]);
        assert_eq!(s.crop.as_ref().unwrap().size.dims(), [20, 16]);
        assert_eq!(s.normalize, Normalization::Dataset);
        assert_eq!(s.output_shape(Some([3, 32, 32])).unwrap(), [3, 20, 16]);
        let gray = spec(serde_json::json!({"grayscale_to_rgb": true, "normalize": "imagenet"}));
        assert_eq!(gray.output_shape(Some([1, 8, 8])).unwrap(), [3, 8, 8]);
    }

    #[test]
    fn impossible_values_name_their_field() {
        let alone = [
            (
                serde_json::json!({"resize": 0}),
                "data.preprocessing.resize",
            ),
            (
                serde_json::json!({"resize": [8, 0]}),
                "data.preprocessing.resize",
            ),
            (
                serde_json::json!({"crop": {"kind": "center", "size": 4, "padding": 1}}),
                "data.preprocessing.crop.padding",
            ),
            (
                serde_json::json!({"crop": {"kind": "random", "size": 0}}),
                "data.preprocessing.crop.size",
            ),
            (
                serde_json::json!({"horizontal_flip": 1.5}),
                "data.preprocessing.horizontal_flip",
            ),
        ];
        for (json, expected) in alone {
            assert_eq!(field(spec(json.clone()).validate()), expected, "{json}");
        }
        let against = [
            (
                serde_json::json!({"crop": {"kind": "center", "size": 9}}),
                Some([1, 8, 8]),
                "data.preprocessing.crop.size",
            ),
            (
                serde_json::json!({"resize": 6, "crop": {"kind": "random", "size": 8}}),
                Some([1, 8, 8]),
                "data.preprocessing.crop.size",
            ),
            (
                serde_json::json!({"grayscale_to_rgb": true}),
                Some([3, 8, 8]),
                "data.preprocessing.grayscale_to_rgb",
            ),
            (
                serde_json::json!({"normalize": "imagenet"}),
                Some([1, 8, 8]),
                "data.preprocessing.normalize",
            ),
            (serde_json::json!({}), None, "data.preprocessing"),
        ];
        for (json, shape, expected) in against {
            assert_eq!(
                field(spec(json.clone()).output_shape(shape)),
                expected,
                "{json}"
            );
        }
        assert!(
            serde_json::from_value::<ImagePreprocessingSpec>(
                serde_json::json!({"normalize": "zca"})
            )
            .is_err()
        );
    }
}
