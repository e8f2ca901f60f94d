//! The synthetic "shapes" image data set: seeded RGB pictures of circles, squares, triangles
//! and more, with random colours, sizes, positions, backgrounds and pixel noise.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{LabelKind, Table};
use crate::error::{DataError, Input, Result};

/// The shapes in the order classes are taken: `classes: 3` means the first three.
pub(crate) const SHAPE_NAMES: [&str; 10] = [
    "circle", "square", "triangle", "cross", "ring", "stripes", "diamond", "frame", "checker", "x",
];

/// Parameters of the "shapes" data set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapesParams {
    /// The number of shape classes, 2 to 10, taken in the order of [`SHAPE_NAMES`].
    pub classes: usize,
    /// The number of images, 20 to 100,000 and at least 10 per class.
    pub samples: usize,
    /// Seeds everything; the same parameters give the same images.
    pub seed: u64,
    /// The width and height of the images, 16 to 128.
    pub image_size: usize,
    /// The largest pixel noise, 0 to 0.5: each value moves by up to this much, uniformly.
    pub noise: f64,
}

impl Default for ShapesParams {
    fn default() -> Self {
        ShapesParams {
            classes: 3,
            samples: 2000,
            seed: 0,
            image_size: 32,
            noise: 0.1,
        }
    }
}

const MIN_CLASSES: usize = 2;
const MAX_CLASSES: usize = SHAPE_NAMES.len();
const MIN_SAMPLES: usize = 20;
const MAX_SAMPLES: usize = 100_000;
const MIN_SIZE: usize = 16;
const MAX_SIZE: usize = 128;
const MAX_NOISE: f64 = 0.5;
/// The most numbers (samples x 3 x size x size) one generated table may hold.
const MAX_VALUES: usize = 1 << 29;

impl ShapesParams {
    /// Checks every parameter is in range; errors name the field as `synthetic.<name>`.
    pub fn validate(&self) -> Result<()> {
        let out_of_range =
            |field: &'static str, what: String| DataError::invalid(Input::Generator(field), what);
        if !(MIN_CLASSES..=MAX_CLASSES).contains(&self.classes) {
            return Err(out_of_range(
                "classes",
                format!(
                    "{} classes is out of range; use {MIN_CLASSES} to {MAX_CLASSES} (the shapes \
                     are, in order: {})",
                    self.classes,
                    SHAPE_NAMES.join(", ")
                ),
            ));
        }
        if !(MIN_SAMPLES..=MAX_SAMPLES).contains(&self.samples) || self.samples < 10 * self.classes
        {
            return Err(out_of_range(
                "samples",
                format!(
                    "{} samples is out of range; use {} to {MAX_SAMPLES} (at least 10 per class)",
                    self.samples,
                    MIN_SAMPLES.max(10 * self.classes)
                ),
            ));
        }
        if !(MIN_SIZE..=MAX_SIZE).contains(&self.image_size) {
            return Err(out_of_range(
                "image_size",
                format!(
                    "{} is out of range; use {MIN_SIZE} to {MAX_SIZE} pixels",
                    self.image_size
                ),
            ));
        }
        if self.samples * 3 * self.image_size * self.image_size > MAX_VALUES {
            return Err(out_of_range(
                "samples",
                format!(
                    "{} images of 3x{size}x{size} are too many numbers to hold; use fewer \
                     samples or a smaller image_size",
                    self.samples,
                    size = self.image_size
                ),
            ));
        }
        if !(0.0..=MAX_NOISE).contains(&self.noise) {
            return Err(out_of_range(
                "noise",
                format!("{} is out of range; use 0 to {MAX_NOISE}", self.noise),
            ));
        }
        Ok(())
    }
}

/// Generates the "shapes" table: `samples` RGB images of `image_size` x `image_size`, values in
/// [0, 1] (`C x H x W`, `image_shape = [3, size, size]`), string labels such as "circle", every
/// class equally often (row `i` shows shape `i % classes`), the same table for the same
/// parameters. Each image has a random background colour, one shape of a contrasting random
/// colour at a random size and position, and uniform pixel noise. Parameters out of range
/// (see [`ShapesParams::validate`]) are clamped rather than rejected.
pub fn shapes(params: &ShapesParams) -> Table {
    let classes = params.classes.clamp(MIN_CLASSES, MAX_CLASSES);
    let size = params.image_size.clamp(MIN_SIZE, MAX_SIZE);
    let max_samples = (MAX_VALUES / (3 * size * size)).min(MAX_SAMPLES);
    let samples = params
        .samples
        .clamp(MIN_SAMPLES.max(10 * classes), max_samples);
    let noise = if params.noise.is_nan() {
        0.0
    } else {
        params.noise.clamp(0.0, MAX_NOISE) as f32
    };
    let mut names: Vec<&str> = SHAPE_NAMES[..classes].to_vec();
    names.sort_unstable();
    // The class index (sorted names) of each shape in generation order.
    let label_of: Vec<u32> = SHAPE_NAMES[..classes]
        .iter()
        .map(|name| names.iter().position(|n| n == name).unwrap_or(0) as u32)
        .collect();

    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let pixels = size * size;
    let mut features = vec![0.0f32; samples * 3 * pixels];
    let mut labels = Vec::with_capacity(samples);
    for (i, image) in features.chunks_exact_mut(3 * pixels).enumerate() {
        let kind = i % classes;
        draw(&mut rng, kind, size, noise, image);
        labels.push(label_of[kind]);
    }
    Table {
        feature_names: ["red", "green", "blue"]
            .iter()
            .flat_map(|c| (0..pixels).map(move |p| format!("{c}{p}")))
            .collect(),
        features,
        labels,
        classes: names.into_iter().map(str::to_owned).collect(),
        label_kind: LabelKind::String,
        splits: None,
        image_shape: Some([3, size, size]),
        pixel_max: 1.0,
    }
}

/// Draws shape `kind` into `out` (3 planes of `size * size`).
fn draw(rng: &mut ChaCha8Rng, kind: usize, size: usize, noise: f32, out: &mut [f32]) {
    let s = size as f32;
    let radius = rng.random_range(0.2..0.42) * s;
    let cx = rng.random_range(radius..=s - radius);
    let cy = rng.random_range(radius..=s - radius);
    let vertical = rng.random_bool(0.5);
    let background: [f32; 3] = [rng.random(), rng.random(), rng.random()];
    let mut colour: [f32; 3] = [rng.random(), rng.random(), rng.random()];
    for _ in 0..16 {
        if distance(background, colour) >= 0.6 {
            break;
        }
        colour = [rng.random(), rng.random(), rng.random()];
    }
    if distance(background, colour) < 0.6 {
        colour = background.map(|v| 1.0 - v);
    }

    let pixels = size * size;
    let mut bits = 0u64;
    let mut left = 0;
    for y in 0..size {
        for x in 0..size {
            let px = (x as f32 + 0.5 - cx) / radius;
            let py = (y as f32 + 0.5 - cy) / radius;
            let (px, py) = if vertical { (py, px) } else { (px, py) };
            // One pixel of soft edge: the signed distance in pixels, centred on the border.
            let alpha = (0.5 - sdf(kind, px, py) * radius).clamp(0.0, 1.0);
            for c in 0..3 {
                if left == 0 {
                    bits = rng.next_u64();
                    left = 4;
                }
                let jitter = f32::from((bits & 0xffff) as u16) / 65535.0 * 2.0 - 1.0;
                bits >>= 16;
                left -= 1;
                let v = background[c] + (colour[c] - background[c]) * alpha + jitter * noise;
                out[c * pixels + y * size + x] = v.clamp(0.0, 1.0);
            }
        }
    }
}

fn distance(a: [f32; 3], b: [f32; 3]) -> f32 {
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum()
}

/// Signed distance (negative inside) from the shape, in units of its radius; the shape fits in
/// [-1, 1]^2. Shapes that are not symmetric under swapping x and y (stripes, triangle) may be
/// drawn transposed.
fn sdf(kind: usize, x: f32, y: f32) -> f32 {
    let rect = |x: f32, y: f32, w: f32, h: f32| (x.abs() - w).max(y.abs() - h);
    match kind {
        0 => x.hypot(y) - 1.0,
        1 => rect(x, y, 0.8, 0.8),
        2 => {
            // Apex (0, -0.9), base corners (+-0.9, 0.8).
            let (nx, ny) = (1.7f32, 0.9f32);
            let norm = nx.hypot(ny);
            let side = (nx * x.abs() - ny * (y + 0.9)) / norm;
            side.max(y - 0.8)
        }
        3 => rect(x, y, 0.95, 0.3).min(rect(x, y, 0.3, 0.95)),
        4 => (x.hypot(y) - 0.72).abs() - 0.22,
        5 => {
            let period = 0.6;
            let t = (y + 0.9) / period;
            let stripe = ((t - t.floor() - 0.5).abs() - 0.25) * period;
            rect(x, y, 0.9, 0.9).max(stripe)
        }
        6 => (x.abs() + y.abs() - 1.0) * std::f32::consts::FRAC_1_SQRT_2,
        7 => (x.abs().max(y.abs()) - 0.72).abs() - 0.18,
        8 => {
            let cell = 0.45;
            let (i, j) = (((x + 0.9) / cell).floor(), ((y + 0.9) / cell).floor());
            let inside = rect(x, y, 0.9, 0.9);
            if (i + j).rem_euclid(2.0) < 0.5 {
                inside
            } else {
                inside.max(0.5)
            }
        }
        _ => {
            let (u, v) = (
                (x + y) * std::f32::consts::FRAC_1_SQRT_2,
                (y - x) * std::f32::consts::FRAC_1_SQRT_2,
            );
            rect(u, v, 1.0, 0.28).min(rect(u, v, 0.28, 1.0))
        }
    }
}

#[cfg(test)]
mod tests;
