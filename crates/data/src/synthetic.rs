//! The built-in synthetic "regions" data set.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{LabelKind, Table};
use crate::error::{DataError, Input, Result};

/// Parameters of the built-in "regions" data set: points in the plane labelled by which of
/// `classes` seeded regions ("countries") they fall in.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegionsParams {
    /// The number of regions (classes), 2 to 50.
    pub classes: usize,
    /// The number of points, 20 to 1,000,000 and at least 4 per class.
    pub samples: usize,
    /// Seeds the capitals, the points and the noise; the same seed gives the same table.
    pub seed: u64,
    /// The probability, 0 to 0.5, that a point's label is replaced by a random class.
    pub label_noise: f64,
}

impl Default for RegionsParams {
    fn default() -> Self {
        RegionsParams {
            classes: 5,
            samples: 2000,
            seed: 0,
            label_noise: 0.0,
        }
    }
}

const MIN_CLASSES: usize = 2;
const MAX_CLASSES: usize = 50;
const MIN_SAMPLES: usize = 20;
const MAX_SAMPLES: usize = 1_000_000;
const MAX_NOISE: f64 = 0.5;

impl RegionsParams {
    /// Checks every parameter is in range; errors name the field as `synthetic.<name>`.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_CLASSES..=MAX_CLASSES).contains(&self.classes) {
            return Err(DataError::invalid(
                Input::Generator("classes"),
                format!(
                    "{} classes is out of range; use {MIN_CLASSES} to {MAX_CLASSES}",
                    self.classes
                ),
            ));
        }
        if !(MIN_SAMPLES..=MAX_SAMPLES).contains(&self.samples) {
            return Err(DataError::invalid(
                Input::Generator("samples"),
                format!(
                    "{} samples is out of range; use {MIN_SAMPLES} to {MAX_SAMPLES}",
                    self.samples
                ),
            ));
        }
        if self.samples < 4 * self.classes {
            return Err(DataError::invalid(
                Input::Generator("samples"),
                format!(
                    "{} samples is too few for {} classes; use at least 4 per class ({})",
                    self.samples,
                    self.classes,
                    4 * self.classes
                ),
            ));
        }
        if !(0.0..=MAX_NOISE).contains(&self.label_noise) {
            return Err(DataError::invalid(
                Input::Generator("label_noise"),
                format!(
                    "{} is out of range; use a probability from 0 to {MAX_NOISE}",
                    self.label_noise
                ),
            ));
        }
        Ok(())
    }
}

/// Generates the "regions" table: features "x" and "y" uniform in [-1, 1]^2, integer labels
/// `0..classes`, every class present, the same table for the same parameters.
///
/// Each class has a capital drawn in [-1, 1]^2; a point belongs to the class whose capital is
/// nearest once both are pushed through a smooth warp, so borders are curved. Parameters out of
/// range (see [`RegionsParams::validate`]) are clamped rather than rejected.
pub fn regions(params: &RegionsParams) -> Table {
    let classes = params.classes.clamp(MIN_CLASSES, MAX_CLASSES);
    let samples = params
        .samples
        .clamp(MIN_SAMPLES.max(4 * classes), MAX_SAMPLES);
    let noise = if params.label_noise.is_nan() {
        0.0
    } else {
        params.label_noise.clamp(0.0, MAX_NOISE)
    };
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    // Noise has its own stream so that the noise level changes labels, never the points.
    let mut noise_rng = ChaCha8Rng::seed_from_u64(params.seed);
    noise_rng.set_stream(1);

    let capitals = draw_capitals(&mut rng, classes);
    let warped: Vec<[f64; 2]> = capitals.iter().map(|&c| warp(c)).collect();

    let mut features = Vec::with_capacity(samples * 2);
    let mut labels = Vec::with_capacity(samples);
    for _ in 0..samples {
        let p = [rng.random_range(-1.0..=1.0), rng.random_range(-1.0..=1.0)];
        let mut label = nearest(&warped, warp(p));
        if noise_rng.random_bool(noise) {
            label = noise_rng.random_range(0..classes);
        }
        features.extend([p[0] as f32, p[1] as f32]);
        labels.push(label as u32);
    }

    // A small region can catch no point: give each empty class one point at its capital, taken
    // from a class that has points to spare, so every class can be learnt and evaluated.
    let mut counts = vec![0usize; classes];
    for &l in &labels {
        counts[l as usize] += 1;
    }
    let mut donor = 0;
    for class in 0..classes {
        if counts[class] > 0 {
            continue;
        }
        // A donor always exists: samples >= 4 * classes, and a class with two or more points
        // still has all of them at or after `donor`.
        while donor < labels.len() && counts[labels[donor] as usize] < 2 {
            donor += 1;
        }
        if donor >= labels.len() {
            break;
        }
        counts[labels[donor] as usize] -= 1;
        counts[class] += 1;
        labels[donor] = class as u32;
        features[2 * donor] = capitals[class][0] as f32;
        features[2 * donor + 1] = capitals[class][1] as f32;
        donor += 1;
    }

    Table {
        feature_names: vec!["x".to_owned(), "y".to_owned()],
        features,
        labels,
        classes: (0..classes).map(|c| c.to_string()).collect(),
        label_kind: LabelKind::Integer,
        splits: None,
        image_shape: None,
        pixel_max: 1.0,
    }
}

/// Capitals uniform in [-1, 1]^2, kept apart where possible so no region is vanishingly small.
fn draw_capitals(rng: &mut ChaCha8Rng, classes: usize) -> Vec<[f64; 2]> {
    let min_dist = 0.6 / (classes as f64).sqrt();
    let mut capitals: Vec<[f64; 2]> = Vec::with_capacity(classes);
    while capitals.len() < classes {
        let mut candidate = [0.0; 2];
        for _ in 0..1000 {
            candidate = [rng.random_range(-1.0..=1.0), rng.random_range(-1.0..=1.0)];
            if capitals
                .iter()
                .all(|&c| dist2(c, candidate) >= min_dist * min_dist)
            {
                break;
            }
        }
        capitals.push(candidate);
    }
    capitals
}

fn warp([x, y]: [f64; 2]) -> [f64; 2] {
    [x + 0.3 * (3.0 * y).sin(), y + 0.3 * (3.0 * x).sin()]
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

fn nearest(capitals: &[[f64; 2]], p: [f64; 2]) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, &c) in capitals.iter().enumerate() {
        let d = dist2(c, p);
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(classes: usize, samples: usize, seed: u64, label_noise: f64) -> RegionsParams {
        RegionsParams {
            classes,
            samples,
            seed,
            label_noise,
        }
    }

    fn field_of(result: Result<()>) -> Input {
        match result {
            Err(DataError::Invalid { input, .. }) => input,
            other => panic!("expected DataError::Invalid, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_deserialize_from_an_empty_object() {
        let p: RegionsParams = serde_json::from_str("{}").unwrap();
        assert_eq!(
            p,
            RegionsParams {
                classes: 5,
                samples: 2000,
                seed: 0,
                label_noise: 0.0
            }
        );
        p.validate().unwrap();
        assert!(serde_json::from_str::<RegionsParams>(r#"{"clases": 3}"#).is_err());
    }

    #[test]
    fn out_of_range_parameters_are_rejected_by_field() {
        assert_eq!(
            field_of(params(1, 2000, 0, 0.0).validate()),
            Input::Generator("classes")
        );
        assert_eq!(
            field_of(params(51, 2000, 0, 0.0).validate()),
            Input::Generator("classes")
        );
        assert_eq!(
            field_of(params(5, 19, 0, 0.0).validate()),
            Input::Generator("samples")
        );
        assert_eq!(
            field_of(params(50, 199, 0, 0.0).validate()),
            Input::Generator("samples")
        );
        assert_eq!(
            field_of(params(5, 1_000_001, 0, 0.0).validate()),
            Input::Generator("samples")
        );
        assert_eq!(
            field_of(params(5, 2000, 0, 0.51).validate()),
            Input::Generator("label_noise")
        );
        assert_eq!(
            field_of(params(5, 2000, 0, f64::NAN).validate()),
            Input::Generator("label_noise")
        );
        params(50, 200, 7, 0.5).validate().unwrap();
    }

    #[test]
    fn the_same_seed_gives_the_same_table_and_another_seed_another() {
        let a = regions(&params(7, 500, 42, 0.1));
        let b = regions(&params(7, 500, 42, 0.1));
        let c = regions(&params(7, 500, 43, 0.1));
        assert_eq!(a.features, b.features);
        assert_eq!(a.labels, b.labels);
        assert_ne!(a.features, c.features);
    }

    #[test]
    fn every_class_is_present_even_with_many_classes_and_few_samples() {
        for seed in 0..20 {
            let t = regions(&params(50, 200, seed, 0.0));
            assert_eq!(t.n_rows(), 200);
            assert!(
                t.class_counts().iter().all(|&n| n > 0),
                "seed {seed}: {:?}",
                t.class_counts()
            );
        }
    }

    #[test]
    fn the_table_has_two_bounded_features_and_integer_labels() {
        let t = regions(&RegionsParams::default());
        assert_eq!(t.feature_names, vec!["x", "y"]);
        assert_eq!(t.n_rows(), 2000);
        assert_eq!(t.classes, vec!["0", "1", "2", "3", "4"]);
        assert_eq!(t.label_kind, LabelKind::Integer);
        assert!(t.features.iter().all(|x| (-1.0..=1.0).contains(x)));
    }

    #[test]
    fn without_noise_labels_follow_the_nearest_warped_capital() {
        // Points close together almost always share a label: the regions are contiguous.
        let t = regions(&params(4, 4000, 3, 0.0));
        let mut agree = 0;
        let mut close = 0;
        for i in 0..t.n_rows() {
            for j in (i + 1)..t.n_rows().min(i + 200) {
                let (a, b) = (t.row(i), t.row(j));
                if (a[0] - b[0]).abs() + (a[1] - b[1]).abs() < 0.02 {
                    close += 1;
                    agree += usize::from(t.labels[i] == t.labels[j]);
                }
            }
        }
        assert!(close > 0 && agree * 10 >= close * 9, "{agree} of {close}");
    }

    #[test]
    fn label_noise_changes_some_labels() {
        let clean = regions(&params(5, 2000, 1, 0.0));
        let noisy = regions(&params(5, 2000, 1, 0.5));
        assert_eq!(clean.features, noisy.features);
        let changed = clean
            .labels
            .iter()
            .zip(&noisy.labels)
            .filter(|(a, b)| a != b)
            .count();
        // Half the labels are redrawn, four in five of those to another class.
        assert!((600..1000).contains(&changed), "{changed}");
    }

    #[test]
    fn invalid_parameters_are_clamped_instead_of_panicking() {
        let t = regions(&params(0, 0, 0, f64::NAN));
        assert_eq!(t.classes.len(), 2);
        assert_eq!(t.n_rows(), 20);
    }
}
