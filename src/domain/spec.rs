use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A training job as a user writes it. Every omitted field gets the documented default, so the
/// stored spec is always complete; `JobSpec::validate` rejects impossible values by field path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// A label for people; defaults to `<dataset>-<model summary>`.
    #[serde(default)]
    pub name: Option<String>,
    /// A data set's name or id (`digits`, `regions`, or an upload).
    pub dataset: String,
    /// How the data set is split and preprocessed.
    #[serde(default)]
    pub data: DataSpec,
    /// The network.
    pub model: ModelSpec,
    /// Optimizer, epochs, batch size, seed.
    #[serde(default)]
    pub training: TrainingSpec,
    /// Which checkpoints are kept.
    #[serde(default)]
    pub checkpoints: CheckpointSpec,
    /// Higher runs first among queued jobs.
    #[serde(default)]
    pub priority: i32,
}

/// Splitting and preprocessing of the data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSpec {
    /// Fraction of each class held out for validation (ignored when the data set has its own split).
    pub val_fraction: f64,
    /// Fraction of each class held out for the final test.
    pub test_fraction: f64,
    /// Seed of the split; the default 0 gives every job on a data set the same split.
    pub split_seed: u64,
    /// Standardize each feature with the training split's mean and standard deviation.
    pub standardize: bool,
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            val_fraction: 0.15,
            test_fraction: 0.15,
            split_seed: 0,
            standardize: true,
        }
    }
}

/// The network to train, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    /// A multi-layer perceptron.
    Mlp(MlpSpec),
}

/// A multi-layer perceptron: `depth` hidden layers of `width` units, then a linear classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpSpec {
    /// Number of hidden layers.
    pub depth: usize,
    /// Units per hidden layer.
    pub width: usize,
    /// Non-linearity after each hidden layer.
    pub activation: Activation,
    /// Batch normalization after each hidden layer's linear map.
    pub batch_norm: bool,
    /// Dropout probability after each hidden layer.
    pub dropout: f64,
}

impl Default for MlpSpec {
    fn default() -> Self {
        MlpSpec {
            depth: 2,
            width: 64,
            activation: Activation::Relu,
            batch_norm: false,
            dropout: 0.0,
        }
    }
}

/// A non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// tanh(x)
    Tanh,
    /// 1 / (1 + e^-x)
    Sigmoid,
}

/// Optimizer, epochs, batch size and seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSpec {
    /// The optimizer and its learning rate.
    pub optimizer: OptimizerSpec,
    /// Passes over the training split.
    pub epochs: u32,
    /// Samples per step.
    pub batch_size: usize,
    /// Seed of initialization, shuffling and dropout; chosen at submission when omitted.
    pub seed: Option<u64>,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            optimizer: OptimizerSpec::default(),
            epochs: 10,
            batch_size: 32,
            seed: None,
        }
    }
}

/// An optimizer, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// Stochastic gradient descent, optionally with momentum.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0 = plain SGD).
        #[serde(default)]
        momentum: f64,
    },
    /// Adam.
    Adam {
        /// Learning rate.
        #[serde(default = "default_adam_lr")]
        lr: f64,
        /// Decay of the first-moment estimate.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Decay of the second-moment estimate.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Added to the denominator for stability.
        #[serde(default = "default_eps")]
        eps: f64,
    },
}

fn default_adam_lr() -> f64 {
    1e-3
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl OptimizerSpec {
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { lr, .. } | OptimizerSpec::Adam { lr, .. } => *lr,
        }
    }
}

/// Which checkpoints are kept. The best (by validation accuracy) and the last always are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointSpec {
    /// Keep a checkpoint of every n-th epoch.
    pub every: u32,
    /// Of those, keep the most recent n.
    pub keep_last: u32,
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec {
            every: 1,
            keep_last: 5,
        }
    }
}

/// Largest number of trainable parameters a job may ask for.
pub const MAX_PARAMETERS: usize = 50_000_000;

fn check(ok: bool, field: &str, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, message()))
    }
}

fn check_unit_interval(value: f64, field: &str, low_inclusive: bool) -> Result<()> {
    let ok = value.is_finite()
        && value < 1.0
        && if low_inclusive {
            value >= 0.0
        } else {
            value > 0.0
        };
    let bound = if low_inclusive {
        "0 <= x < 1"
    } else {
        "0 < x < 1"
    };
    check(ok, field, || {
        format!("{value} is out of range; valid: {bound}")
    })
}

impl JobSpec {
    /// Rejects impossible values, naming the field and what would be valid.
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.name {
            check(!name.trim().is_empty() && name.len() <= 200, "name", || {
                "must be 1 to 200 characters".into()
            })?;
            check(!name.chars().any(char::is_control), "name", || {
                "must not contain control characters".into()
            })?;
        }
        check(!self.dataset.trim().is_empty(), "dataset", || {
            "must name a data set, e.g. 'digits' or 'regions'".into()
        })?;
        self.data.validate()?;
        match &self.model {
            ModelSpec::Mlp(mlp) => mlp.validate()?,
        }
        self.training.validate()?;
        check(self.checkpoints.every >= 1, "checkpoints.every", || {
            "must be at least 1".into()
        })?;
        Ok(())
    }

    /// The name to show: the user's, or one derived from the data set and model.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let ModelSpec::Mlp(mlp) = &self.model;
            format!("{}-mlp-{}x{}", self.dataset, mlp.depth, mlp.width)
        })
    }
}

impl DataSpec {
    fn validate(&self) -> Result<()> {
        check_unit_interval(self.val_fraction, "data.val_fraction", false)?;
        check_unit_interval(self.test_fraction, "data.test_fraction", true)?;
        check(
            self.val_fraction + self.test_fraction < 0.9,
            "data.test_fraction",
            || {
                format!(
                    "val_fraction + test_fraction = {} leaves too little to train on; valid: a sum below 0.9",
                    self.val_fraction + self.test_fraction
                )
            },
        )
    }
}

impl MlpSpec {
    fn validate(&self) -> Result<()> {
        check((1..=1000).contains(&self.depth), "model.depth", || {
            format!(
                "{} is out of range; valid: 1 to 1000 hidden layers",
                self.depth
            )
        })?;
        check((1..=65_536).contains(&self.width), "model.width", || {
            format!("{} is out of range; valid: 1 to 65536 units", self.width)
        })?;
        check_unit_interval(self.dropout, "model.dropout", true)?;
        let per_layer = self.width * self.width + self.width;
        check(
            per_layer.saturating_mul(self.depth) <= MAX_PARAMETERS,
            "model.width",
            || {
                format!(
                    "depth {} x width {} is about {} parameters; valid: at most {MAX_PARAMETERS}",
                    self.depth,
                    self.width,
                    per_layer.saturating_mul(self.depth)
                )
            },
        )
    }
}

impl TrainingSpec {
    fn validate(&self) -> Result<()> {
        check(
            (1..=10_000).contains(&self.epochs),
            "training.epochs",
            || format!("{} is out of range; valid: 1 to 10000", self.epochs),
        )?;
        check(
            (1..=65_536).contains(&self.batch_size),
            "training.batch_size",
            || format!("{} is out of range; valid: 1 to 65536", self.batch_size),
        )?;
        let lr = self.optimizer.lr();
        check(
            lr.is_finite() && lr > 0.0 && lr <= 10.0,
            "training.optimizer.lr",
            || format!("{lr} is out of range; valid: 0 < lr <= 10"),
        )?;
        match &self.optimizer {
            OptimizerSpec::Sgd { momentum, .. } => {
                check_unit_interval(*momentum, "training.optimizer.momentum", true)
            }
            OptimizerSpec::Adam {
                beta1, beta2, eps, ..
            } => {
                check_unit_interval(*beta1, "training.optimizer.beta1", true)?;
                check_unit_interval(*beta2, "training.optimizer.beta2", true)?;
                check(
                    eps.is_finite() && *eps > 0.0 && *eps < 1.0,
                    "training.optimizer.eps",
                    || format!("{eps} is out of range; valid: 0 < eps < 1"),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_json;

    fn parse(json: &str) -> Result<JobSpec> {
        let spec: JobSpec = parse_json(json.as_bytes())?;
        spec.validate()?;
        Ok(spec)
    }

    fn field_of(result: Result<JobSpec>) -> String {
        match result {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_spec_gets_every_default() {
        let spec = parse(r#"{"dataset": "digits", "model": {"kind": "mlp"}}"#).unwrap();
        assert_eq!(spec.model, ModelSpec::Mlp(MlpSpec::default()));
        assert_eq!(spec.training, TrainingSpec::default());
        assert_eq!(spec.data, DataSpec::default());
        assert_eq!(spec.display_name(), "digits-mlp-2x64");
    }

    #[test]
    fn the_design_documents_example_parses() {
        let spec = parse(
            r#"{"name": "digits-mlp-6x32", "dataset": "digits",
                "model": {"kind": "mlp", "depth": 6, "width": 32, "activation": "relu", "batch_norm": false},
                "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": 30, "batch_size": 32, "seed": 7}}"#,
        )
        .unwrap();
        assert_eq!(spec.training.seed, Some(7));
        assert_eq!(spec.training.optimizer.lr(), 0.001);
    }

    #[test]
    fn impossible_values_name_their_field() {
        let cases = [
            (
                r#""training": {"optimizer": {"kind": "adam", "lr": 0}}"#,
                "training.optimizer.lr",
            ),
            (
                r#""training": {"optimizer": {"kind": "sgd", "lr": -1}}"#,
                "training.optimizer.lr",
            ),
            (r#""training": {"batch_size": 0}"#, "training.batch_size"),
            (r#""training": {"epochs": 0}"#, "training.epochs"),
            (r#""training": {"epochs": 1000000}"#, "training.epochs"),
            (r#""data": {"val_fraction": 0}"#, "data.val_fraction"),
            (
                r#""data": {"val_fraction": 0.5, "test_fraction": 0.45}"#,
                "data.test_fraction",
            ),
        ];
        for (fragment, field) in cases {
            let json =
                format!(r#"{{"dataset": "digits", "model": {{"kind": "mlp"}}, {fragment}}}"#);
            assert_eq!(field_of(parse(&json)), field, "{json}");
        }
        let depth0 = r#"{"dataset": "digits", "model": {"kind": "mlp", "depth": 0}}"#;
        assert_eq!(field_of(parse(depth0)), "model.depth");
    }

    #[test]
    fn unknown_fields_and_activations_are_rejected() {
        let unknown = r#"{"dataset": "digits", "model": {"kind": "mlp"}, "trainig": {}}"#;
        assert_eq!(field_of(parse(unknown)), "trainig");
        let activation =
            r#"{"dataset": "digits", "model": {"kind": "mlp", "activation": "swish"}}"#;
        assert!(field_of(parse(activation)).starts_with("model"));
        let kind = r#"{"dataset": "digits", "model": {"kind": "transformer"}}"#;
        assert!(field_of(parse(kind)).starts_with("model"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_json::<JobSpec>(&bytes).and_then(|spec| spec.validate());
        }

        #[test]
        fn parsing_arbitrary_numbers_in_a_spec_never_panics(
            depth in proptest::prelude::any::<i64>(), width in proptest::prelude::any::<i64>(),
            lr in proptest::prelude::any::<f64>(), epochs in proptest::prelude::any::<i64>(),
            batch in proptest::prelude::any::<i64>(), dropout in proptest::prelude::any::<f64>(),
        ) {
            let json = format!(
                r#"{{"dataset": "d", "model": {{"kind": "mlp", "depth": {depth}, "width": {width}, "dropout": {dropout:?}}},
                     "training": {{"optimizer": {{"kind": "sgd", "lr": {lr:?}}}, "epochs": {epochs}, "batch_size": {batch}}}}}"#
            );
            let _ = parse(&json);
        }
    }
}
