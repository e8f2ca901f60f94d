//! Sweeps: a base job spec plus axes over any of its fields by dotted path, expanded into
//! trials (grid or random search, repeated over seeds). Every trial is validated as a job spec.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JobSpec, PruningSpec};
use crate::error::{Error, Result};
use engine::spec::check_label;

/// Most trials one sweep may create.
pub const MAX_TRIALS: usize = 1000;

/// Longest sweep name, in characters (trial names add the point's values to it).
pub const MAX_NAME_CHARS: usize = 150;

/// A sweep as a user writes it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// A label; defaults to the swept paths.
    #[serde(default)]
    pub name: Option<String>,
    /// The job spec every trial starts from.
    pub base: Value,
    /// Dotted spec paths and what to try for each: a list of values, or (random search) a distribution.
    pub axes: BTreeMap<String, Axis>,
    /// Grid (every combination, the default) or random search.
    #[serde(default)]
    pub search: Search,
    /// Runs per point, with seeds base seed + 0, 1, ...
    #[serde(default = "one")]
    pub repeats: u32,
    /// Trials of this sweep that may train at the same time.
    #[serde(default = "default_concurrency")]
    pub max_concurrent: u32,
    /// The metric trials are ranked by, at their best epoch.
    #[serde(default = "default_metric")]
    pub metric: RankMetric,
    /// Whether a higher or lower metric is better; follows the metric by default.
    #[serde(default)]
    pub goal: Option<Goal>,
    /// Stop hopeless trials early (see [`PruningSpec`]); none by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruning: Option<PruningSpec>,
    /// List the trials without creating them.
    #[serde(default)]
    pub dry_run: bool,
}

fn one() -> u32 {
    1
}
fn default_concurrency() -> u32 {
    2
}
fn default_metric() -> RankMetric {
    RankMetric::ValAcc
}

/// What to try along one axis.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Axis {
    /// These values (grid), or a uniform choice among them (random).
    Values(Vec<Value>),
    /// A distribution to sample (random search only).
    Distribution(Distribution),
}

/// A distribution of values for random search.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Distribution {
    /// Uniform between two bounds.
    Uniform([f64; 2]),
    /// Uniform in the logarithm between two positive bounds (learning rates).
    LogUniform([f64; 2]),
    /// A uniform integer between two bounds, inclusive.
    IntUniform([i64; 2]),
    /// One of these values.
    Choice(Vec<Value>),
}

/// How points are chosen.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Search {
    /// Every combination of the axes' values.
    #[default]
    Grid,
    /// `trials` points sampled with `seed`.
    Random {
        /// Number of points.
        trials: u32,
        /// Seed of the sampling.
        #[serde(default)]
        seed: u64,
    },
}

/// A per-epoch metric a sweep or comparison ranks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankMetric {
    /// Validation accuracy.
    ValAcc,
    /// Validation loss.
    ValLoss,
    /// Test accuracy.
    TestAcc,
    /// Test loss.
    TestLoss,
    /// Training accuracy.
    TrainAcc,
    /// Training loss.
    TrainLoss,
}

impl RankMetric {
    /// The better direction of this metric.
    pub fn natural_goal(self) -> Goal {
        match self {
            RankMetric::ValAcc | RankMetric::TestAcc | RankMetric::TrainAcc => Goal::Max,
            _ => Goal::Min,
        }
    }

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RankMetric::ValAcc => "val_acc",
            RankMetric::ValLoss => "val_loss",
            RankMetric::TestAcc => "test_acc",
            RankMetric::TestLoss => "test_loss",
            RankMetric::TrainAcc => "train_acc",
            RankMetric::TrainLoss => "train_loss",
        }
    }
}

impl std::str::FromStr for RankMetric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        serde_json::from_value(Value::String(s.to_string())).map_err(|_| {
            format!("'{s}' is not a metric; valid: val_acc, val_loss, test_acc, test_loss, train_acc, train_loss")
        })
    }
}

/// Whether higher or lower is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// Higher is better.
    Max,
    /// Lower is better.
    Min,
}

/// One trial: a point of the search space, a repeat, and the job spec they make.
#[derive(Clone, Debug)]
pub struct Trial {
    /// 0-based position in the sweep.
    pub index: u32,
    /// The axis values of this point (dotted path → value).
    pub params: BTreeMap<String, Value>,
    /// Which repeat (seed offset).
    pub repeat: u32,
    /// The complete, validated job spec.
    pub spec: JobSpec,
}

impl SweepSpec {
    /// The goal in effect.
    pub fn goal(&self) -> Goal {
        self.goal.unwrap_or_else(|| self.metric.natural_goal())
    }

    /// The name in effect.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!(
                "sweep over {}",
                self.axes.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// Checks the sweep and expands it into validated trials; errors name `axes.<path>`,
    /// `base.<field>` or the sweep's own field.
    pub fn expand(&self) -> Result<Vec<Trial>> {
        if !self.base.is_object() {
            return Err(Error::invalid("base", "must be a job spec object"));
        }
        if self.axes.is_empty() {
            return Err(Error::invalid(
                "axes",
                "give at least one axis, e.g. {\"training.optimizer.lr\": [0.0001, 0.001, 0.01]}",
            ));
        }
        if !(1..=100).contains(&self.repeats) {
            return Err(Error::invalid(
                "repeats",
                format!("{}; valid: 1 to 100", self.repeats),
            ));
        }
        if !(1..=64).contains(&self.max_concurrent) {
            return Err(Error::invalid(
                "max_concurrent",
                format!("{}; valid: 1 to 64", self.max_concurrent),
            ));
        }
        if let Some(pruning) = &self.pruning {
            pruning.validate()?;
        }
        if let Some(name) = &self.name {
            check_label(name, MAX_NAME_CHARS, "name")?;
        }
        let base_seed = self.base_seed()?;
        self.validate_base()?;
        let points = match &self.search {
            Search::Grid => self.grid()?,
            Search::Random { trials, seed } => self.random(*trials, *seed)?,
        };
        let total = points.len() * self.repeats as usize;
        if total > MAX_TRIALS {
            return Err(Error::invalid(
                "axes",
                format!("{total} trials; valid: at most {MAX_TRIALS} per sweep"),
            ));
        }
        let mut trials = Vec::with_capacity(total);
        for params in points {
            for repeat in 0..self.repeats {
                let mut spec = self.base.clone();
                for (path, value) in &params {
                    set_path(&mut spec, path, value.clone())
                        .map_err(|message| Error::invalid(format!("axes.{path}"), message))?;
                }
                let seed = match params.get("training.seed") {
                    Some(value) => self.first_seed(value, "axes.training.seed")?,
                    None => base_seed,
                };
                set_path(
                    &mut spec,
                    "training.seed",
                    Value::from(seed + u64::from(repeat)),
                )
                .map_err(|message| Error::invalid("base.training", message))?;
                let index = trials.len() as u32;
                let label: Vec<String> = params
                    .iter()
                    .map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k)))
                    .collect();
                let name = format!("{} #{index} {}", self.display_name(), label.join(" "));
                spec["name"] = Value::String(name.chars().take(200).collect());
                let spec = parse_trial(&spec, &params)?;
                trials.push(Trial {
                    index,
                    params: params.clone(),
                    repeat,
                    spec,
                });
            }
        }
        Ok(trials)
    }

    /// A base that is a whole job spec (it names a data set and a model) must be a valid one:
    /// a wrong value there is a 422 on `base.<field>` even where an axis replaces it in every
    /// trial, so a stored sweep never echoes an impossible spec. A base that leaves a required
    /// field to an axis is judged by its trials alone.
    fn validate_base(&self) -> Result<()> {
        if self.base.get("dataset").is_none() || self.base.get("model").is_none() {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&self.base)
            .map_err(|err| Error::internal("encoding a base", err))?;
        crate::domain::parse_job_spec(&bytes)
            .and_then(|spec| Ok(spec.validate()?))
            .map_err(|err| match err {
                Error::Invalid { field, message } => {
                    Error::invalid(format!("base.{field}"), message)
                }
                other => other,
            })
    }

    /// The seed of the first repeat, from `base.training.seed` (0 when absent or null).
    fn base_seed(&self) -> Result<u64> {
        match self.base.pointer("/training/seed") {
            None | Some(Value::Null) => Ok(0),
            Some(value) => self.first_seed(value, "base.training.seed"),
        }
    }

    /// A trial's first seed: an integer whose repeats (`seed`, `seed + 1`, …) all fit in
    /// 0 to 2^64 − 1; a 422 on `field` otherwise, never a silent substitute or a wrap to 0.
    fn first_seed(&self, value: &Value, field: &str) -> Result<u64> {
        let last_offset = u64::from(self.repeats.saturating_sub(1));
        let max = u64::MAX - last_offset;
        match value.as_u64() {
            Some(seed) if seed <= max => Ok(seed),
            _ => Err(Error::invalid(
                field,
                format!(
                    "{value} is not a seed for {} repeats (seeds {value} + 0 to {last_offset}); valid: an integer from 0 to {max}",
                    self.repeats
                ),
            )),
        }
    }

    fn grid(&self) -> Result<Vec<BTreeMap<String, Value>>> {
        let mut points = vec![BTreeMap::new()];
        for (path, axis) in &self.axes {
            let Axis::Values(values) = axis else {
                return Err(Error::invalid(
                    format!("axes.{path}"),
                    "a grid needs a list of values; use {\"search\": {\"kind\": \"random\", ...}} for distributions",
                ));
            };
            if values.is_empty() {
                return Err(Error::invalid(
                    format!("axes.{path}"),
                    "give at least one value",
                ));
            }
            if points.len().saturating_mul(values.len()) > MAX_TRIALS {
                return Err(Error::invalid(
                    "axes",
                    format!("the grid has more than {MAX_TRIALS} points"),
                ));
            }
            points = points
                .into_iter()
                .flat_map(|point| {
                    values.iter().map(move |value| {
                        let mut point = point.clone();
                        point.insert(path.clone(), value.clone());
                        point
                    })
                })
                .collect();
        }
        Ok(points)
    }

    fn random(&self, trials: u32, seed: u64) -> Result<Vec<BTreeMap<String, Value>>> {
        if trials == 0 || trials as usize > MAX_TRIALS {
            return Err(Error::invalid(
                "search.trials",
                format!("{trials}; valid: 1 to {MAX_TRIALS}"),
            ));
        }
        for (path, axis) in &self.axes {
            let field = format!("axes.{path}");
            match axis {
                Axis::Values(v) | Axis::Distribution(Distribution::Choice(v)) if v.is_empty() => {
                    return Err(Error::invalid(field, "give at least one value"));
                }
                Axis::Distribution(Distribution::Uniform([a, b]))
                    if !(a.is_finite() && b.is_finite() && a < b) =>
                {
                    return Err(Error::invalid(
                        field,
                        "uniform needs finite bounds [low, high] with low < high",
                    ));
                }
                Axis::Distribution(Distribution::LogUniform([a, b]))
                    if !(a.is_finite() && b.is_finite() && *a > 0.0 && a < b) =>
                {
                    return Err(Error::invalid(
                        field,
                        "log_uniform needs bounds [low, high] with 0 < low < high",
                    ));
                }
                Axis::Distribution(Distribution::IntUniform([a, b])) if a > b => {
                    return Err(Error::invalid(
                        field,
                        "int_uniform needs bounds [low, high] with low <= high",
                    ));
                }
                _ => {}
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Ok((0..trials)
            .map(|_| {
                self.axes
                    .iter()
                    .map(|(path, axis)| {
                        let value = match axis {
                            Axis::Values(values)
                            | Axis::Distribution(Distribution::Choice(values)) => {
                                values[rng.random_range(0..values.len())].clone()
                            }
                            Axis::Distribution(Distribution::Uniform([a, b])) => {
                                Value::from(rng.random_range(*a..*b))
                            }
                            Axis::Distribution(Distribution::LogUniform([a, b])) => {
                                Value::from(rng.random_range(a.ln()..b.ln()).exp())
                            }
                            Axis::Distribution(Distribution::IntUniform([a, b])) => {
                                Value::from(rng.random_range(*a..=*b))
                            }
                        };
                        (path.clone(), value)
                    })
                    .collect()
            })
            .collect())
    }
}

/// Parses one trial's spec; an error in a swept field is reported on its axis.
fn parse_trial(spec: &Value, params: &BTreeMap<String, Value>) -> Result<JobSpec> {
    let bytes = serde_json::to_vec(spec).map_err(|err| Error::internal("encoding a trial", err))?;
    let parsed =
        crate::domain::parse_job_spec(&bytes).and_then(|job| Ok(job.validate().map(|_| job)?));
    parsed.map_err(|err| match err {
        Error::Invalid { field, message } => {
            // Errors inside tagged objects (model, optimizer) are reported on the object, with the
            // offending key named in the message.
            let on_axis = |path: &str| {
                let last = path.rsplit('.').next().unwrap_or(path);
                field == path
                    || field.starts_with(&format!("{path}."))
                    || (path.starts_with(&format!("{field}."))
                        && message.contains(&format!("`{last}`")))
            };
            match params.iter().find(|(path, _)| on_axis(path)) {
                Some((path, value)) => {
                    Error::invalid(format!("axes.{path}"), format!("value {value}: {message}"))
                }
                None => Error::invalid(format!("base.{field}"), message),
            }
        }
        other => other,
    })
}

/// Sets `value` at a dotted path inside a JSON object, creating objects on the way.
fn set_path(root: &mut Value, path: &str, value: Value) -> std::result::Result<(), String> {
    let mut node = root;
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "'{path}' is not a dotted path like training.optimizer.lr"
        ));
    }
    for (i, part) in parts.iter().enumerate() {
        let object = node.as_object_mut().ok_or_else(|| {
            format!(
                "'{}' is not an object in the base spec",
                parts[..i].join(".")
            )
        })?;
        if i + 1 == parts.len() {
            object.insert(part.to_string(), value);
            return Ok(());
        }
        node = object
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
