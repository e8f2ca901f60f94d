//! The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural
//! Networks", as fastai's `lr_find` runs it): one short pass with the rate growing
//! exponentially from `min_lr` to `max_lr`, stopped once the smoothed loss exceeds
//! `stop_factor` times its minimum. The model it trains is a throwaway built from the job's
//! seed, so the job itself later starts from exactly the weights it would have had without
//! the test.

use candle_core::Device;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::fit::{Start, TrainError, Trainer};
use super::seed::{Purpose, rng};
use super::{Interrupter, PreparedData};
use crate::error::EngineError;
use crate::spec::JobSpec;

/// How the range test runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LrFindSettings {
    /// The first rate.
    #[serde(default = "default_min_lr")]
    pub min_lr: f64,
    /// The last rate (reached only if the loss never blows up).
    #[serde(default = "default_max_lr")]
    pub max_lr: f64,
    /// Steps from `min_lr` to `max_lr`.
    #[serde(default = "default_steps")]
    pub steps: u32,
    /// The test stops once the smoothed loss exceeds this multiple of its minimum.
    #[serde(default = "default_stop_factor")]
    pub stop_factor: f64,
    /// Weight of the past in the loss's exponential moving average (0 = no smoothing).
    #[serde(default = "default_smoothing")]
    pub smoothing: f64,
}

fn default_min_lr() -> f64 {
    1e-7
}
fn default_max_lr() -> f64 {
    10.0
}
fn default_steps() -> u32 {
    100
}
fn default_stop_factor() -> f64 {
    4.0
}
fn default_smoothing() -> f64 {
    0.98
}

impl Default for LrFindSettings {
    fn default() -> Self {
        LrFindSettings {
            min_lr: default_min_lr(),
            max_lr: default_max_lr(),
            steps: default_steps(),
            stop_factor: default_stop_factor(),
            smoothing: default_smoothing(),
        }
    }
}

/// The lowest first rate: far below any useful one, and far enough from the smallest
/// floating-point numbers that every rate of the range is an ordinary number.
pub const MIN_LR_FIND_RATE: f64 = 1e-12;

/// Most steps a range test may take.
pub const MAX_LR_FIND_STEPS: u32 = 1000;

impl LrFindSettings {
    /// Rejects impossible settings, naming the field.
    pub fn validate(&self) -> crate::error::Result<()> {
        let invalid = |field: &str, message: String| Err(EngineError::spec(field, message));
        if !(self.min_lr.is_finite() && self.min_lr >= MIN_LR_FIND_RATE) {
            return invalid(
                "min_lr",
                format!(
                    "{} is out of range; valid: a number >= {MIN_LR_FIND_RATE:e}",
                    self.min_lr
                ),
            );
        }
        if !(self.max_lr.is_finite() && self.max_lr > self.min_lr && self.max_lr <= 100.0) {
            return invalid(
                "max_lr",
                format!(
                    "{} is out of range; valid: min_lr ({}) < max_lr <= 100",
                    self.max_lr, self.min_lr
                ),
            );
        }
        if !(5..=MAX_LR_FIND_STEPS).contains(&self.steps) {
            return invalid(
                "steps",
                format!(
                    "{} is out of range; valid: 5 to {MAX_LR_FIND_STEPS}",
                    self.steps
                ),
            );
        }
        if !(self.stop_factor.is_finite() && self.stop_factor > 1.0) {
            return invalid(
                "stop_factor",
                format!("{} is out of range; valid: a number > 1", self.stop_factor),
            );
        }
        if !(self.smoothing.is_finite() && (0.0..1.0).contains(&self.smoothing)) {
            return invalid(
                "smoothing",
                format!(
                    "{} is out of range; valid: 0 <= smoothing < 1",
                    self.smoothing
                ),
            );
        }
        Ok(())
    }

    /// The rate of step `i` (0-based): geometric from `min_lr` to `max_lr`.
    pub fn rate(&self, i: u32) -> f64 {
        let t = f64::from(i) / f64::from(self.steps.saturating_sub(1).max(1));
        self.min_lr * (self.max_lr / self.min_lr).powf(t)
    }
}

/// One step of the test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrPoint {
    /// The rate of the step.
    pub lr: f64,
    /// Its loss on its batch.
    pub loss: f64,
    /// The bias-corrected moving average of the losses so far.
    pub smoothed: f64,
}

/// Why the test ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrFindStop {
    /// The smoothed loss exceeded `stop_factor` times its minimum.
    LossExploded,
    /// A step's loss was not a finite number.
    Diverged,
    /// Every step ran up to `max_lr`.
    ReachedMaxLr,
}

/// The loss against the rate, and the rates it suggests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrCurve {
    /// Every step, in order.
    pub points: Vec<LrPoint>,
    /// Why it ended.
    pub stopped: LrFindStop,
    /// The rate of the lowest smoothed loss.
    pub min_loss_lr: f64,
    /// The lowest smoothed loss.
    pub min_loss: f64,
    /// `min_loss_lr / 10`: a rate well before the loss turns up.
    pub min_loss_lr_over_10: f64,
    /// The rate where the smoothed loss falls fastest against log(rate), before its minimum;
    /// `None` when fewer than three points lie before the minimum.
    pub steepest_lr: Option<f64>,
    /// The rate the test recommends: the lower of `steepest_lr` and `min_loss_lr_over_10`
    /// (see [`LrCurve::rule`]).
    pub suggested_lr: f64,
    /// How `suggested_lr` was chosen, in words.
    pub rule: String,
}

/// Runs the range test on a throwaway copy of `spec`'s model, seeded as the job's own.
pub fn find_lr(
    spec: &JobSpec,
    data: &PreparedData,
    start: Start,
    device: &Device,
    interrupter: &Interrupter,
    settings: &LrFindSettings,
) -> Result<LrCurve, TrainError> {
    settings.validate().map_err(TrainError::Failed)?;
    let (mut trainer, _, features) = Trainer::start(spec, data, start, device)?;
    let data = features.as_ref().unwrap_or(data);
    let seed = spec.training.seed.unwrap_or(0);
    let clip = spec.training.grad_clip.as_ref();
    let mut points = Vec::with_capacity(settings.steps as usize);
    let mut average = 0.0;
    let mut best = f64::INFINITY;
    let mut stopped = LrFindStop::ReachedMaxLr;
    let mut pass = 0u64;
    let mut order: Vec<u32> = Vec::new();
    let mut next = 0usize;
    // Streams apart from any epoch's, so the test draws nothing the training run will draw.
    let stream = |pass: u64| u64::MAX - pass;
    let mut dropout = rng(seed, Purpose::Dropout, stream(0));
    let mut augment = rng(seed, Purpose::Augment, stream(0));
    for i in 0..settings.steps {
        if let Some(reason) = interrupter.reason() {
            return Err(TrainError::Interrupted(reason));
        }
        if next >= order.len() {
            order = (0..data.train.len as u32).collect();
            order.shuffle(&mut rng(seed, Purpose::Shuffle, stream(pass)));
            pass += 1;
            next = 0;
        }
        let end = (next + trainer.batch_size).min(order.len());
        let lr = settings.rate(i);
        let step = trainer.path.step(
            data,
            &order[next..end],
            lr,
            (&mut dropout, &mut augment),
            clip,
        )?;
        next = end;
        let loss = f64::from(step.loss);
        if !loss.is_finite() {
            stopped = LrFindStop::Diverged;
            break;
        }
        average = settings.smoothing * average + (1.0 - settings.smoothing) * loss;
        let smoothed = average / (1.0 - settings.smoothing.powi(i as i32 + 1));
        points.push(LrPoint { lr, loss, smoothed });
        best = best.min(smoothed);
        if i > 0 && smoothed > settings.stop_factor * best {
            stopped = LrFindStop::LossExploded;
            break;
        }
    }
    suggest(points, stopped).ok_or_else(|| {
        TrainError::Failed(EngineError::spec(
            "min_lr",
            format!(
                "the loss was not a finite number at the first rate ({}); valid: a smaller min_lr",
                settings.min_lr
            ),
        ))
    })
}

/// The suggestions of a finished test; `None` without a single finite loss.
pub fn suggest(points: Vec<LrPoint>, stopped: LrFindStop) -> Option<LrCurve> {
    let (min_index, min_point) = points
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.smoothed.total_cmp(&b.1.smoothed))?;
    let (min_loss_lr, min_loss) = (min_point.lr, min_point.smoothed);
    let steepest_lr = steepest(&points[..=min_index]);
    let over_10 = min_loss_lr / 10.0;
    // The moving average lags the loss it smooths, so both marks sit at higher rates than the
    // raw curve's: the suggestion is the lower, more cautious of the two.
    let (suggested_lr, rule) = match steepest_lr {
        Some(steep) if steep <= over_10 => (
            steep,
            format!(
                "the steepest descent of the smoothed loss ({}), below the lowest loss's rate ({}) / 10",
                short(steep),
                short(min_loss_lr)
            ),
        ),
        Some(steep) => (
            over_10,
            format!(
                "the lowest loss's rate ({}) / 10, below the steepest descent of the smoothed loss ({}); the lower of the two, as the moving average lags the loss",
                short(min_loss_lr),
                short(steep)
            ),
        ),
        None => (
            over_10,
            format!(
                "the lowest loss's rate ({}) / 10; too few points before the minimum to measure a slope",
                short(min_loss_lr)
            ),
        ),
    };
    Some(LrCurve {
        points,
        stopped,
        min_loss_lr,
        min_loss,
        min_loss_lr_over_10: over_10,
        steepest_lr,
        suggested_lr,
        rule,
    })
}

/// The rate where the smoothed loss falls fastest against log10(rate): central differences,
/// skipping the first tenth of the points (up to 10), whose moving average has not settled.
fn steepest(points: &[LrPoint]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let skip = (points.len() / 10).min(10);
    (skip.max(1)..points.len() - 1)
        .map(|i| {
            let (before, after) = (&points[i - 1], &points[i + 1]);
            let slope = (after.smoothed - before.smoothed) / (after.lr.log10() - before.lr.log10());
            (i, slope)
        })
        .filter(|(_, slope)| slope.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| points[i].lr)
}

/// A rate in three significant digits.
fn short(lr: f64) -> String {
    format!("{lr:.3e}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepare;
    use crate::spec::DataSpec;
    use data::{RegionsParams, regions};

    fn spec(json: &str) -> JobSpec {
        let mut spec: JobSpec = serde_json::from_str(json).unwrap();
        spec.validate().unwrap();
        spec.fill_defaults();
        spec
    }

    fn regions_data() -> PreparedData {
        let table = regions(&RegionsParams {
            classes: 4,
            samples: 400,
            seed: 3,
            label_noise: 0.0,
        });
        prepare(&table, &DataSpec::default(), &Device::Cpu).unwrap()
    }

    #[test]
    fn rates_grow_geometrically_from_min_to_max() {
        let settings = LrFindSettings {
            min_lr: 1e-4,
            max_lr: 1.0,
            steps: 5,
            ..LrFindSettings::default()
        };
        let rates: Vec<f64> = (0..5).map(|i| settings.rate(i)).collect();
        for (got, want) in rates.iter().zip([1e-4, 1e-3, 1e-2, 1e-1, 1.0]) {
            assert!((got / want - 1.0).abs() < 1e-9, "{rates:?}");
        }
    }

    #[test]
    fn impossible_settings_name_their_field() {
        let cases = [
            (
                LrFindSettings {
                    min_lr: 0.0,
                    ..Default::default()
                },
                "min_lr",
            ),
            (
                LrFindSettings {
                    min_lr: 5e-324,
                    ..Default::default()
                },
                "min_lr",
            ),
            (
                LrFindSettings {
                    max_lr: 1e-8,
                    ..Default::default()
                },
                "max_lr",
            ),
            (
                LrFindSettings {
                    steps: 2,
                    ..Default::default()
                },
                "steps",
            ),
            (
                LrFindSettings {
                    stop_factor: 1.0,
                    ..Default::default()
                },
                "stop_factor",
            ),
            (
                LrFindSettings {
                    smoothing: 1.0,
                    ..Default::default()
                },
                "smoothing",
            ),
        ];
        for (settings, field) in cases {
            match settings.validate() {
                Err(EngineError::Spec { path, .. }) => assert_eq!(path, field),
                other => panic!("{settings:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_synthetic_valley_is_found_where_it_is() {
        // Loss falls from 2 to 0.1 between 1e-4 and 1e-2, then rises steeply.
        let settings = LrFindSettings {
            min_lr: 1e-6,
            max_lr: 10.0,
            steps: 71,
            ..Default::default()
        };
        let points: Vec<LrPoint> = (0..71)
            .map(|i| {
                let lr = settings.rate(i);
                let x = lr.log10();
                let loss = if x < -4.0 {
                    2.0
                } else if x < -2.0 {
                    2.0 - 0.95 * (x + 4.0)
                } else {
                    0.1 + 10.0 * (x + 2.0).powi(2)
                };
                LrPoint {
                    lr,
                    loss,
                    smoothed: loss,
                }
            })
            .collect();
        let curve = suggest(points, LrFindStop::ReachedMaxLr).unwrap();
        assert!(
            (curve.min_loss_lr.log10() + 2.0).abs() < 0.11,
            "{}",
            curve.min_loss_lr
        );
        let steep = curve.steepest_lr.unwrap().log10();
        assert!((-4.0..=-2.0).contains(&steep), "{steep}");
        assert_eq!(
            curve.suggested_lr,
            curve.steepest_lr.unwrap().min(curve.min_loss_lr_over_10)
        );
    }

    #[test]
    fn the_test_stops_when_the_loss_blows_up_and_suggests_a_rate_that_trains() {
        let data = regions_data();
        let spec = spec(
            r#"{"dataset": "regions", "model": {"kind": "mlp", "depth": 2, "width": 32},
                "training": {"optimizer": {"kind": "sgd", "lr": 0.01, "momentum": 0.9}, "epochs": 1, "batch_size": 16, "seed": 4}}"#,
        );
        let curve = find_lr(
            &spec,
            &data,
            Start::Fresh,
            &Device::Cpu,
            &Interrupter::new(),
            &LrFindSettings::default(),
        )
        .unwrap();
        assert_ne!(
            curve.stopped,
            LrFindStop::ReachedMaxLr,
            "SGD with momentum at lr 10 must blow up: {curve:?}"
        );
        assert!(curve.points.len() < 100);
        let last = curve.points.last().unwrap();
        assert!(curve.stopped == LrFindStop::Diverged || last.smoothed > 4.0 * curve.min_loss);
        assert!(
            curve.suggested_lr > 1e-5 && curve.suggested_lr < 10.0,
            "{curve:?}"
        );
    }

    #[test]
    fn the_test_leaves_the_jobs_own_run_untouched() {
        // The finder trains a copy; a fit after it starts from the seed's weights, so its first
        // epoch equals that of a fit that never saw a finder.
        let data = regions_data();
        let spec = spec(
            r#"{"dataset": "regions", "model": {"kind": "mlp", "depth": 1, "width": 16},
                "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 1, "batch_size": 32, "seed": 9}}"#,
        );
        let first_epoch = || {
            let mut loss = None;
            crate::fit(
                &spec,
                &data,
                Start::Fresh,
                &Device::Cpu,
                &Interrupter::new(),
                &mut |_| {},
                &mut |r| {
                    loss = Some(r.metrics.val_loss);
                    Ok(())
                },
            )
            .unwrap();
            loss.unwrap()
        };
        let before = first_epoch();
        find_lr(
            &spec,
            &data,
            Start::Fresh,
            &Device::Cpu,
            &Interrupter::new(),
            &LrFindSettings::default(),
        )
        .unwrap();
        assert_eq!(first_epoch().to_bits(), before.to_bits());
    }
}
