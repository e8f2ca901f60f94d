//! Faithful downsampling of a step-loss series: consecutive steps are grouped into equal
//! buckets and each bucket keeps its step range, count, mean, minimum and maximum, so the
//! noise of a long run stays visible in a few hundred points.

use serde::Serialize;

/// One point of a step series: a single step, or a bucket of consecutive steps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepPoint {
    /// The bucket's first step (global, 1-based).
    pub first_step: i64,
    /// The bucket's last step.
    pub last_step: i64,
    /// Steps in the bucket.
    pub count: usize,
    /// Mean loss of the bucket's steps.
    pub mean: f64,
    /// Lowest loss in the bucket (the stored f32, widened exactly).
    pub min: f64,
    /// Highest loss in the bucket.
    pub max: f64,
}

/// Groups `(step, loss)` pairs (in step order) into at most `max_points` buckets of
/// `ceil(n / max_points)` consecutive steps (the last may be shorter). Returns the points and
/// the bucket size (1 when nothing was merged).
pub fn downsample(steps: &[(i64, f32)], max_points: usize) -> (Vec<StepPoint>, usize) {
    let bucket = steps.len().div_ceil(max_points.max(1)).max(1);
    let points = steps
        .chunks(bucket)
        .map(|chunk| {
            let (mut min, mut max, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f64);
            for &(_, loss) in chunk {
                min = min.min(loss);
                max = max.max(loss);
                sum += f64::from(loss);
            }
            StepPoint {
                first_step: chunk[0].0,
                last_step: chunk[chunk.len() - 1].0,
                count: chunk.len(),
                mean: sum / chunk.len() as f64,
                min: f64::from(min),
                max: f64::from(max),
            }
        })
        .collect();
    (points, bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(losses: &[f32]) -> Vec<(i64, f32)> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as i64 + 1, l))
            .collect()
    }

    #[test]
    fn a_short_series_comes_back_step_by_step() {
        let (points, bucket) = downsample(&series(&[3.0, 2.0, 1.0]), 10);
        assert_eq!(bucket, 1);
        assert_eq!(points.len(), 3);
        assert_eq!(
            points[1],
            StepPoint {
                first_step: 2,
                last_step: 2,
                count: 1,
                mean: 2.0,
                min: 2.0,
                max: 2.0
            }
        );
    }

    #[test]
    fn buckets_keep_their_min_max_mean_and_step_range() {
        // A spike at step 5 and a dip at step 8 must survive the downsampling.
        let losses = [1.0, 1.0, 1.0, 1.0, 9.0, 1.0, 1.0, 0.1, 1.0, 1.0];
        let (points, bucket) = downsample(&series(&losses), 3);
        assert_eq!(bucket, 4);
        assert_eq!(points.len(), 3);
        assert_eq!((points[1].first_step, points[1].last_step), (5, 8));
        assert_eq!((points[1].min, points[1].max), (f64::from(0.1f32), 9.0));
        assert!((points[1].mean - 11.1 / 4.0).abs() < 1e-6);
        assert_eq!(
            (points[2].first_step, points[2].last_step, points[2].count),
            (9, 10, 2)
        );
        let total: usize = points.iter().map(|p| p.count).sum();
        assert_eq!(total, losses.len());
    }

    #[test]
    fn nothing_in_gives_nothing_out_and_zero_points_is_treated_as_one() {
        assert_eq!(downsample(&[], 5).0, vec![]);
        let (points, bucket) = downsample(&series(&[1.0, 2.0]), 0);
        assert_eq!((points.len(), bucket), (1, 2));
    }

    proptest::proptest! {
        #[test]
        fn every_bucket_brackets_its_steps(losses in proptest::collection::vec(0f32..100.0, 0..500), max in 1usize..50) {
            let steps = series(&losses);
            let (points, _) = downsample(&steps, max);
            proptest::prop_assert!(points.len() <= max);
            for p in &points {
                let inside: Vec<f32> = steps.iter().filter(|(s, _)| *s >= p.first_step && *s <= p.last_step).map(|(_, l)| *l).collect();
                proptest::prop_assert_eq!(inside.len(), p.count);
                proptest::prop_assert_eq!(f64::from(inside.iter().cloned().fold(f32::INFINITY, f32::min)), p.min);
                proptest::prop_assert_eq!(f64::from(inside.iter().cloned().fold(f32::NEG_INFINITY, f32::max)), p.max);
            }
        }
    }
}
