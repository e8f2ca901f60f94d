//! The image preprocessing of a job, fitted on its training split and stored with it:
//! pixels to [0, 1], grayscale to RGB, resize, normalization, then a centre crop (evaluation,
//! prediction) or a seeded random crop and flip (training batches).

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::pixels::{self, Shape};
use crate::error::{EngineError, Result};
use crate::spec::{CropKind, ImagePreprocessingSpec, ImageSize, Normalization};

/// ImageNet's per-channel mean, for pixels in [0, 1].
pub(crate) const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation, for pixels in [0, 1].
pub(crate) const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A crop after resizing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Crop {
    /// Random in training (centre at evaluation), or always the centre.
    pub random: bool,
    /// `[height, width]`.
    pub size: [usize; 2],
    /// Padding on every side for random crops (filled with a zero pixel, normalized).
    pub padding: usize,
}

/// Everything that turns a data set's image row into the network's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImagePipeline {
    /// The data set's images, `[channels, height, width]`.
    pub input_shape: Shape,
    /// The value of a full-intensity pixel in the data set's rows (16 for `digits`, else 1);
    /// rows are divided by it first, so everything after works on [0, 1].
    pub pixel_max: f32,
    /// Repeat one channel into three.
    pub grayscale_to_rgb: bool,
    /// `[height, width]` to resize to, if any.
    pub resize: Option<[usize; 2]>,
    /// The crop, if any.
    pub crop: Option<Crop>,
    /// Probability of a left-right flip of each training image.
    pub horizontal_flip: f64,
    /// Which normalization `mean` and `std` come from.
    pub normalize: Normalization,
    /// Per channel of the network's input.
    pub mean: Vec<f32>,
    /// Per channel of the network's input.
    pub std: Vec<f32>,
}

impl ImagePipeline {
    /// The pipeline the spec declares for images of `input_shape`, not yet fitted: `dataset`
    /// normalization has mean 0 and std 1 until [`ImagePipeline::fit_normalization`].
    pub fn new(spec: &ImagePreprocessingSpec, input_shape: Shape, pixel_max: f32) -> Result<Self> {
        spec.output_shape(Some(input_shape))?;
        let channels = if spec.grayscale_to_rgb {
            3
        } else {
            input_shape[0]
        };
        let (mean, std) = match spec.normalize {
            Normalization::Imagenet => (IMAGENET_MEAN.to_vec(), IMAGENET_STD.to_vec()),
            Normalization::Dataset | Normalization::None => {
                (vec![0.0; channels], vec![1.0; channels])
            }
        };
        if pixel_max <= 0.0 || !pixel_max.is_finite() {
            return Err(EngineError::Internal(format!("pixel_max {pixel_max}")));
        }
        Ok(ImagePipeline {
            input_shape,
            pixel_max,
            grayscale_to_rgb: spec.grayscale_to_rgb,
            resize: spec.resize.map(ImageSize::dims),
            crop: spec.crop.as_ref().map(|crop| Crop {
                random: crop.kind == CropKind::Random,
                size: crop.size.dims(),
                padding: crop.padding,
            }),
            horizontal_flip: spec.horizontal_flip,
            normalize: spec.normalize,
            mean,
            std,
        })
    }

    /// The shape after grayscale to RGB and resizing, before the crop.
    pub(crate) fn resized_shape(&self) -> Shape {
        let [c, h, w] = self.input_shape;
        let c = if self.grayscale_to_rgb { 3 } else { c };
        let [h, w] = self.resize.unwrap_or([h, w]);
        [c, h, w]
    }

    /// The shape the network sees.
    pub fn output_shape(&self) -> Shape {
        let [c, h, w] = self.resized_shape();
        let [h, w] = self.crop.as_ref().map_or([h, w], |crop| crop.size);
        [c, h, w]
    }

    /// Whether training batches are randomly transformed.
    pub(crate) fn augments(&self) -> bool {
        self.horizontal_flip > 0.0 || self.crop.as_ref().is_some_and(|c| c.random)
    }

    /// A data set row in [0, 1], with the declared channels and size, not yet normalized.
    pub fn resized(&self, row: &[f32]) -> Vec<f32> {
        let mut unit: Vec<f32> = row.iter().map(|v| v / self.pixel_max).collect();
        if self.grayscale_to_rgb {
            unit = pixels::gray_to_rgb(&unit);
        }
        let [c, h, w] = self.input_shape;
        let c = if self.grayscale_to_rgb { 3 } else { c };
        match self.resize {
            Some(size) => pixels::resize(&unit, [c, h, w], size),
            None => unit,
        }
    }

    /// With `dataset` normalization, sets mean and std from the training images (as given by
    /// [`ImagePipeline::resized`]).
    pub(crate) fn fit_normalization<'a>(&mut self, train: impl Iterator<Item = &'a [f32]>) {
        if self.normalize == Normalization::Dataset {
            (self.mean, self.std) = pixels::channel_stats(train, self.resized_shape());
        }
    }

    /// Normalizes a resized image in place.
    pub fn normalize(&self, resized: &mut [f32]) {
        pixels::normalize(resized, self.resized_shape(), &self.mean, &self.std);
    }

    /// The evaluation path from a normalized resized image: its centre crop.
    pub fn center(&self, normalized: Vec<f32>) -> Vec<f32> {
        match &self.crop {
            Some(crop) => pixels::center_crop(&normalized, self.resized_shape(), crop.size),
            None => normalized,
        }
    }

    /// The deterministic path from a data set row to the network's input: resize, normalize,
    /// centre crop. Evaluation and prediction use this.
    pub fn eval(&self, row: &[f32]) -> Vec<f32> {
        let mut image = self.resized(row);
        self.normalize(&mut image);
        self.center(image)
    }

    /// The shape of the images [`ImagePipeline::augment`] reads: resized but uncropped for a
    /// random crop, else the network's input.
    pub(crate) fn augment_source_shape(&self) -> Shape {
        if self.crop.as_ref().is_some_and(|c| c.random) {
            self.resized_shape()
        } else {
            self.output_shape()
        }
    }

    /// Appends one training image, randomly cropped (from the padded image) and flipped, drawn
    /// from `rng` in a fixed order (crop top, crop left, flip), so a seed gives the same batch.
    pub fn augment(&self, source: &[f32], rng: &mut ChaCha8Rng, out: &mut Vec<f32>) {
        let start = out.len();
        let shape = self.augment_source_shape();
        match &self.crop {
            Some(crop) if crop.random => {
                let [_, h, w] = shape;
                let p = crop.padding;
                let top = rng.random_range(0..=h + 2 * p - crop.size[0]);
                let left = rng.random_range(0..=w + 2 * p - crop.size[1]);
                // The padding is a zero pixel, normalized like every other.
                let fill: Vec<f32> = self
                    .mean
                    .iter()
                    .zip(&self.std)
                    .map(|(m, s)| -m / s)
                    .collect();
                pixels::crop_padded(source, shape, (top, left), crop.size, p, &fill, out);
            }
            _ => out.extend_from_slice(source),
        }
        if self.horizontal_flip > 0.0 && rng.random_bool(self.horizontal_flip) {
            pixels::flip_horizontal(&mut out[start..], self.output_shape());
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn pipeline(json: serde_json::Value, shape: Shape, pixel_max: f32) -> ImagePipeline {
        let spec: ImagePreprocessingSpec = serde_json::from_value(json).unwrap();
        ImagePipeline::new(&spec, shape, pixel_max).unwrap()
    }

    #[test]
    fn digits_pixels_are_scaled_to_unit_then_repeated_resized_and_normalized() {
        let mut p = pipeline(
            serde_json::json!({"grayscale_to_rgb": true, "resize": 4, "normalize": "imagenet"}),
            [1, 2, 2],
            16.0,
        );
        assert_eq!(p.output_shape(), [3, 4, 4]);
        let resized = p.resized(&[16.0, 16.0, 16.0, 16.0]);
        assert!(resized.iter().all(|v| (v - 1.0).abs() < 1e-6));
        p.fit_normalization(std::iter::once(resized.as_slice()));
        assert_eq!(p.mean, IMAGENET_MEAN.to_vec(), "imagenet is not refitted");
        let out = p.eval(&[16.0; 4]);
        assert!((out[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((out[47] - (1.0 - 0.406) / 0.225).abs() < 1e-5);
    }

    #[test]
    fn dataset_normalization_fits_on_the_training_images_and_eval_crops_the_centre() {
        let mut p = pipeline(
            serde_json::json!({"crop": {"kind": "random", "size": 2, "padding": 1}}),
            [1, 4, 4],
            1.0,
        );
        let train = [vec![0.0; 16], vec![1.0; 16]];
        p.fit_normalization(train.iter().map(Vec::as_slice));
        assert_eq!((p.mean.clone(), p.std.clone()), (vec![0.5], vec![0.5]));
        let row: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
        let out = p.eval(&row);
        let expected: Vec<f32> = [5, 6, 9, 10]
            .iter()
            .map(|&i| (i as f32 / 15.0 - 0.5) / 0.5)
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn augmentation_is_the_same_for_the_same_seed_and_varies_across_seeds() {
        let p = pipeline(
            serde_json::json!({"crop": {"kind": "random", "size": 3, "padding": 2}, "horizontal_flip": 0.5, "normalize": "none"}),
            [1, 4, 4],
            1.0,
        );
        let source: Vec<f32> = (0..16).map(|i| i as f32 / 15.0).collect();
        let draw = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut out = Vec::new();
            for _ in 0..8 {
                p.augment(&source, &mut rng, &mut out);
            }
            out
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
        let images = draw(3);
        assert_eq!(images.len(), 8 * 9);
        assert!(images.contains(&0.0), "padding shows as a zero pixel");
    }

    #[test]
    fn a_random_crop_of_the_full_size_without_padding_is_the_evaluation_image() {
        let mut p = pipeline(
            serde_json::json!({"resize": [3, 5], "crop": {"kind": "random", "size": [3, 5]}}),
            [2, 4, 4],
            1.0,
        );
        let row: Vec<f32> = (0..32).map(|i| (i % 7) as f32 / 6.0).collect();
        p.fit_normalization(std::iter::once(p.resized(&row).as_slice()));
        let mut source = p.resized(&row);
        p.normalize(&mut source);
        let mut out = Vec::new();
        p.augment(&source, &mut ChaCha8Rng::seed_from_u64(9), &mut out);
        assert_eq!(out, p.eval(&row));
        assert_eq!(out.len(), 2 * 3 * 5);
    }

    #[test]
    fn a_flip_with_probability_one_always_mirrors() {
        let p = pipeline(
            serde_json::json!({"horizontal_flip": 1.0, "normalize": "none"}),
            [1, 1, 3],
            1.0,
        );
        let mut out = Vec::new();
        p.augment(
            &[0.1, 0.2, 0.3],
            &mut ChaCha8Rng::seed_from_u64(0),
            &mut out,
        );
        assert_eq!(out, vec![0.3, 0.2, 0.1]);
    }
}
