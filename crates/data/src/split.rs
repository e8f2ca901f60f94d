//! Splitting a table into train/val/test rows, and standardising features.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Split, Table};
use crate::error::{DataError, Input, Result};

/// How to split a table without a user-supplied split.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitPlan {
    /// The share of each class that goes to validation, in [0, 1).
    pub val_fraction: f64,
    /// The share of each class that goes to test, in [0, 1).
    pub test_fraction: f64,
    /// Seeds the shuffle; the same seed gives the same split.
    pub seed: u64,
}

/// Row indices per split.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitIndices {
    /// Rows to fit on, ascending.
    pub train: Vec<usize>,
    /// Rows to validate on, ascending.
    pub val: Vec<usize>,
    /// Rows to test on, ascending; may be empty.
    pub test: Vec<usize>,
}

/// Uses the table's own split when it has one (the plan is then ignored), else a stratified,
/// seeded shuffle split: per class, round(n*val_fraction) rows to val, round(n*test_fraction) to
/// test, the rest train; deterministic for a seed; indices within each split sorted ascending.
/// Errors (field "val_fraction" etc.) if train or val would be empty, or test is empty while
/// test_fraction > 0; a user split without validation rows is an error on field "val".
pub fn split(table: &Table, plan: &SplitPlan) -> Result<SplitIndices> {
    if let Some(splits) = &table.splits {
        return user_split(table, splits);
    }
    check_fraction("val_fraction", plan.val_fraction)?;
    check_fraction("test_fraction", plan.test_fraction)?;
    if plan.val_fraction + plan.test_fraction >= 1.0 {
        return Err(DataError::invalid(
            Input::SplitFraction("val_fraction"),
            format!(
                "val_fraction {} plus test_fraction {} leaves no rows to train on; keep their sum below 1",
                plan.val_fraction, plan.test_fraction
            ),
        ));
    }

    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); table.classes.len()];
    for (row, &label) in table.labels.iter().enumerate() {
        if let Some(rows) = per_class.get_mut(label as usize) {
            rows.push(row);
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let mut out = SplitIndices {
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for mut rows in per_class {
        rows.shuffle(&mut rng);
        let (n_val, n_test) = class_split(rows.len(), plan.val_fraction, plan.test_fraction);
        out.val.extend_from_slice(&rows[..n_val]);
        out.test.extend_from_slice(&rows[n_val..n_val + n_test]);
        out.train.extend_from_slice(&rows[n_val + n_test..]);
    }
    out.train.sort_unstable();
    out.val.sort_unstable();
    out.test.sort_unstable();

    let rows = table.n_rows();
    if out.train.is_empty() {
        return Err(DataError::invalid(
            Input::SplitFraction("val_fraction"),
            format!(
                "with {rows} rows, these fractions leave no rows to train on; use smaller fractions"
            ),
        ));
    }
    if out.val.is_empty() {
        return Err(DataError::invalid(
            Input::SplitFraction("val_fraction"),
            format!(
                "val_fraction {} of {rows} rows gives no validation rows in any class; use a larger fraction",
                plan.val_fraction
            ),
        ));
    }
    if out.test.is_empty() && plan.test_fraction > 0.0 {
        return Err(DataError::invalid(
            Input::SplitFraction("test_fraction"),
            format!(
                "test_fraction {} of {rows} rows gives no test rows in any class; use a larger fraction or 0",
                plan.test_fraction
            ),
        ));
    }
    Ok(out)
}

/// How many of a class's `n` rows [`split`] puts in validation and in test:
/// `round(n × val_fraction)`, then `round(n × test_fraction)` of what is left; the rest train.
/// The one definition of the rounding, also used to check a spec before a job runs.
pub fn class_split(n: usize, val_fraction: f64, test_fraction: f64) -> (usize, usize) {
    let n_val = ((n as f64 * val_fraction).round() as usize).min(n);
    let n_test = ((n as f64 * test_fraction).round() as usize).min(n - n_val);
    (n_val, n_test)
}

fn check_fraction(field: &'static str, value: f64) -> Result<()> {
    if !(0.0..1.0).contains(&value) {
        return Err(DataError::invalid(
            Input::SplitFraction(field),
            format!("{value} is out of range; use a fraction from 0 up to (not including) 1"),
        ));
    }
    Ok(())
}

fn user_split(table: &Table, splits: &[Split]) -> Result<SplitIndices> {
    if splits.len() != table.n_rows() {
        return Err(DataError::Internal(format!(
            "the table has {} rows but {} split entries",
            table.n_rows(),
            splits.len()
        )));
    }
    let mut out = SplitIndices {
        train: Vec::new(),
        val: Vec::new(),
        test: Vec::new(),
    };
    for (row, split) in splits.iter().enumerate() {
        match split {
            Split::Train => out.train.push(row),
            Split::Val => out.val.push(row),
            Split::Test => out.test.push(row),
        }
    }
    if out.train.is_empty() {
        return Err(DataError::in_part(
            "train",
            "the train file has no rows; it needs at least one",
        ));
    }
    if out.val.is_empty() {
        return Err(DataError::in_part(
            "val",
            "the uploaded split has no validation rows; upload a 'val' file with at least one row",
        ));
    }
    Ok(out)
}

/// Per-feature mean and standard deviation fitted on some rows (std 0 becomes 1 so constant
/// features stay finite).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Standardizer {
    /// Per feature, the mean over the fit rows.
    pub mean: Vec<f32>,
    /// Per feature, the (population) standard deviation over the fit rows, or 1 where that is 0
    /// (or too small to divide by).
    pub std: Vec<f32>,
}

impl Standardizer {
    /// Fits on `rows` of `table` (indices out of range are ignored; no rows gives the identity).
    pub fn fit(table: &Table, rows: &[usize]) -> Self {
        let f = table.n_features();
        let rows: Vec<&[f32]> = rows
            .iter()
            .filter(|&&i| i < table.n_rows())
            .map(|&i| table.row(i))
            .collect();
        if rows.is_empty() {
            return Self::identity(f);
        }
        // Sums in f64: millions of f32 additions would lose the mean's low digits.
        let n = rows.len() as f64;
        let mut mean = vec![0f64; f];
        for row in &rows {
            for (m, &x) in mean.iter_mut().zip(*row) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0f64; f];
        for row in &rows {
            for ((v, &x), m) in var.iter_mut().zip(*row).zip(&mean) {
                *v += (f64::from(x) - m).powi(2);
            }
        }
        let std = var
            .iter()
            .map(|v| {
                let s = (v / n).sqrt() as f32;
                if s > f32::EPSILON && s.is_finite() {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        Standardizer {
            mean: mean.into_iter().map(|m| m as f32).collect(),
            std,
        }
    }

    /// Leaves `n_features` features unchanged: mean 0, std 1.
    pub fn identity(n_features: usize) -> Self {
        Standardizer {
            mean: vec![0.0; n_features],
            std: vec![1.0; n_features],
        }
    }

    /// Replaces each feature `x` of `row` by `(x - mean) / std`, in place.
    pub fn apply(&self, row: &mut [f32]) {
        for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
            *x = (*x - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LabelKind, digits, regions};

    fn plan(val: f64, test: f64, seed: u64) -> SplitPlan {
        SplitPlan {
            val_fraction: val,
            test_fraction: test,
            seed,
        }
    }

    fn field_of(result: Result<SplitIndices>) -> String {
        match result {
            Err(DataError::Invalid { input, .. }) => input.to_string(),
            other => panic!("expected DataError::Invalid, got {other:?}"),
        }
    }

    fn tiny(labels: Vec<u32>, splits: Option<Vec<Split>>) -> Table {
        Table {
            feature_names: vec!["x".into()],
            features: (0..labels.len()).map(|i| i as f32).collect(),
            labels,
            classes: vec!["a".into(), "b".into()],
            label_kind: LabelKind::String,
            splits,
            image_shape: None,
            pixel_max: 1.0,
        }
    }

    #[test]
    fn a_split_is_disjoint_covers_every_row_and_is_sorted() {
        let t = digits();
        let s = split(&t, &plan(0.15, 0.15, 1)).unwrap();
        let mut all: Vec<usize> = s
            .train
            .iter()
            .chain(&s.val)
            .chain(&s.test)
            .copied()
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..t.n_rows()).collect::<Vec<_>>());
        for part in [&s.train, &s.val, &s.test] {
            assert!(part.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn a_split_is_stratified_by_class() {
        let t = digits();
        let s = split(&t, &plan(0.2, 0.1, 5)).unwrap();
        let counts = t.class_counts();
        for (class, &n) in counts.iter().enumerate() {
            let in_val = s
                .val
                .iter()
                .filter(|&&i| t.labels[i] as usize == class)
                .count();
            let in_test = s
                .test
                .iter()
                .filter(|&&i| t.labels[i] as usize == class)
                .count();
            assert_eq!(in_val, (n as f64 * 0.2).round() as usize);
            assert_eq!(in_test, (n as f64 * 0.1).round() as usize);
        }
    }

    #[test]
    fn a_split_is_deterministic_for_a_seed() {
        let t = regions(&Default::default());
        assert_eq!(
            split(&t, &plan(0.2, 0.2, 9)).unwrap(),
            split(&t, &plan(0.2, 0.2, 9)).unwrap()
        );
        assert_ne!(
            split(&t, &plan(0.2, 0.2, 9)).unwrap(),
            split(&t, &plan(0.2, 0.2, 10)).unwrap()
        );
    }

    #[test]
    fn a_user_split_is_honoured_and_the_plan_ignored() {
        let splits = vec![
            Split::Train,
            Split::Val,
            Split::Train,
            Split::Test,
            Split::Val,
        ];
        let t = tiny(vec![0, 1, 1, 0, 0], Some(splits));
        let s = split(&t, &plan(0.9, 0.9, 0)).unwrap();
        assert_eq!(
            s,
            SplitIndices {
                train: vec![0, 2],
                val: vec![1, 4],
                test: vec![3]
            }
        );
    }

    #[test]
    fn a_user_split_without_validation_rows_is_rejected() {
        let t = tiny(vec![0, 1], Some(vec![Split::Train, Split::Test]));
        assert_eq!(field_of(split(&t, &plan(0.2, 0.0, 0))), "val");
    }

    #[test]
    fn fractions_that_leave_a_split_empty_are_rejected() {
        let t = tiny(vec![0, 1, 0, 1, 0, 1], None);
        assert_eq!(field_of(split(&t, &plan(0.0, 0.0, 0))), "val_fraction");
        assert_eq!(field_of(split(&t, &plan(0.1, 0.0, 0))), "val_fraction");
        assert_eq!(field_of(split(&t, &plan(0.5, 0.5, 0))), "val_fraction");
        assert_eq!(field_of(split(&t, &plan(0.5, 0.1, 0))), "test_fraction");
        assert_eq!(field_of(split(&t, &plan(0.5, -0.1, 0))), "test_fraction");
        assert_eq!(field_of(split(&t, &plan(f64::NAN, 0.0, 0))), "val_fraction");
        let s = split(&t, &plan(0.34, 0.0, 0)).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (4, 2, 0));
    }

    #[test]
    fn the_standardizer_centres_and_scales_the_fit_rows() {
        let t = digits();
        let rows: Vec<usize> = (0..t.n_rows()).step_by(2).collect();
        let s = Standardizer::fit(&t, &rows);
        let f = t.n_features();
        let mut sum = vec![0f64; f];
        let mut sq = vec![0f64; f];
        for &i in &rows {
            let mut row = t.row(i).to_vec();
            s.apply(&mut row);
            for j in 0..f {
                assert!(row[j].is_finite());
                sum[j] += f64::from(row[j]);
                sq[j] += f64::from(row[j]).powi(2);
            }
        }
        let n = rows.len() as f64;
        for j in 0..f {
            let mean = sum[j] / n;
            let std = (sq[j] / n - mean * mean).sqrt();
            assert!(mean.abs() < 1e-4, "feature {j}: mean {mean}");
            // Digits has constant (all-zero) pixels; those keep std 0 after scaling by 1.
            assert!(
                (std - 1.0).abs() < 1e-3 || (s.std[j] == 1.0 && std < 1e-6),
                "feature {j}: std {std}"
            );
        }
    }

    #[test]
    fn the_identity_standardizer_changes_nothing() {
        let mut row = [1.5, -2.0];
        Standardizer::identity(2).apply(&mut row);
        assert_eq!(row, [1.5, -2.0]);
        assert_eq!(
            Standardizer::fit(&tiny(vec![0, 1], None), &[]),
            Standardizer::identity(1)
        );
    }
}
