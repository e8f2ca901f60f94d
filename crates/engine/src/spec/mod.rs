//! The job spec: what a user POSTs, parsed with serde (unknown fields rejected) and checked by
//! [`JobSpec::validate`], which names the field at fault and what would be valid.

mod backbone;
mod check;
mod cnn;
mod footprint;
mod memory;
mod model;
mod optimizer;
mod preprocess;
mod resnet;
mod training;

use serde::{Deserialize, Serialize};

pub(crate) use backbone::is_probe_head;
pub use backbone::{
    ConvNextSize, ConvNextSpec, ConvNextVariant, VitActivation, VitConfig, VitSpec, VitVariant,
};
pub use cnn::{CnnSpec, ConvBlockSpec, HeadSpec, TransferMode, TransferSpec};
pub use memory::{DataShape, MemoryEstimate, format_bytes};
pub use model::{Activation, InitSpec, MlpSpec, ModelSpec};
pub use optimizer::OptimizerSpec;
pub use preprocess::{CropKind, CropSpec, ImagePreprocessingSpec, ImageSize, Normalization};
pub use resnet::{ResNetDepth, ResNetSpec, Stem};
pub use training::{
    EarlyStoppingSpec, GradClipSpec, Metric, MetricMode, ScheduleSpec, TrainingSpec, Warmup,
};

use crate::error::Result;
use check::{check, unit_interval};
pub use check::{is_bidi_control, label as check_label};

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
    /// Optimizer, epochs, batch size, seed, schedule, clipping, early stopping.
    #[serde(default)]
    pub training: TrainingSpec,
    /// Which checkpoints are kept.
    #[serde(default)]
    pub checkpoints: CheckpointSpec,
    /// Transfer learning for CNNs: start from another job's backbone (absent: from scratch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<TransferSpec>,
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
    /// Standardize each feature with the training split's mean and standard deviation
    /// (ignored when `preprocessing` is given: its `normalize` applies instead).
    pub standardize: bool,
    /// Image preprocessing (image data sets only): resize, crop, flip, normalization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocessing: Option<ImagePreprocessingSpec>,
}

impl Default for DataSpec {
    fn default() -> Self {
        DataSpec {
            val_fraction: 0.15,
            test_fraction: 0.15,
            split_seed: 0,
            standardize: true,
            preprocessing: None,
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

/// Longest job name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Largest number of trainable parameters a job may ask for.
pub const MAX_PARAMETERS: usize = 50_000_000;

impl JobSpec {
    /// Rejects impossible values, naming the field and what would be valid.
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.name {
            check_label(name, MAX_NAME_CHARS, "name")?;
        }
        check(!self.dataset.trim().is_empty(), "dataset", || {
            "must name a data set, e.g. 'digits' or 'regions'".into()
        })?;
        self.data.validate()?;
        self.model.validate()?;
        self.training.validate()?;
        if let Some(init) = &self.init {
            init.validate(self.model.is_convolutional())?;
        }
        if self.model.is_pretrained_backbone() {
            self.validate_probe()?;
        }
        check(self.checkpoints.every >= 1, "checkpoints.every", || {
            "must be at least 1".into()
        })?;
        Ok(())
    }

    /// Writes out the defaults that depend on other fields (the initialization for the
    /// activation, the better direction of watched metrics), so the stored spec says exactly
    /// what ran.
    pub fn fill_defaults(&mut self) {
        match &mut self.model {
            ModelSpec::Mlp(mlp) => mlp.init = Some(mlp.resolved_init()),
            ModelSpec::Cnn(cnn) => cnn.init = Some(cnn.resolved_init()),
            ModelSpec::Vit(vit) => vit.fill_defaults(),
            ModelSpec::Resnet18(_) | ModelSpec::Resnet34(_) | ModelSpec::Convnext(_) => {}
        }
        self.training.fill_defaults();
    }

    /// The name to show: the user's, or one derived from the data set and model.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| match &self.model {
            ModelSpec::Mlp(mlp) => format!("{}-mlp-{}x{}", self.dataset, mlp.depth, mlp.width),
            ModelSpec::Cnn(cnn) => {
                let channels: Vec<String> =
                    cnn.blocks.iter().map(|b| b.channels.to_string()).collect();
                format!("{}-cnn-{}", self.dataset, channels.join("-"))
            }
            ModelSpec::Resnet18(resnet) | ModelSpec::Resnet34(resnet) => {
                let (depth, _) = self.model.resnet().expect("a ResNet spec; this is a bug");
                match resnet.width {
                    64 => format!("{}-{}", self.dataset, depth.name()),
                    w => format!("{}-{}-w{w}", self.dataset, depth.name()),
                }
            }
            ModelSpec::Vit(vit) => {
                let c = vit.config();
                format!(
                    "{}-vit-h{}-l{}-p{}",
                    self.dataset, c.hidden_size, c.layers, c.patch_size
                )
            }
            ModelSpec::Convnext(convnext) => {
                format!("{}-{}", self.dataset, convnext.variant.name())
            }
        })
    }

    /// The image shape the network sees for a data set of `image_shape`: the data set's, or
    /// what `data.preprocessing` makes of it (a 422 naming the preprocessing field that does
    /// not fit the data set).
    pub fn input_shape(&self, image_shape: Option<[usize; 3]>) -> Result<Option<[usize; 3]>> {
        match &self.data.preprocessing {
            None => Ok(image_shape),
            Some(preprocessing) => preprocessing.output_shape(image_shape).map(Some),
        }
    }

    /// Checks the preprocessing and the model against the data set it trains on: a CNN needs
    /// images, and its blocks must leave at least one pixel of the preprocessed image.
    pub fn validate_for_dataset(&self, image_shape: Option<[usize; 3]>) -> Result<()> {
        let input = self.input_shape(image_shape)?;
        self.model.validate_for(input)
    }

    /// A pretrained backbone trains only as a linear probe of uploaded weights (or of another
    /// probe's checkpoint), on features computed once per image: no random crops or flips.
    fn validate_probe(&self) -> Result<()> {
        let kind = match &self.model {
            ModelSpec::Vit(_) => "vit",
            _ => "convnext",
        };
        let probe = self
            .init
            .as_ref()
            .is_some_and(|init| init.mode == TransferMode::LinearProbe);
        check(probe, "init.mode", || {
            format!(
                "a {kind} is a pretrained backbone: it trains only as a linear probe of uploaded \
                 weights, init: {{\"mode\": \"linear_probe\", \"from_weights\": \"<weights id or name>\"}} \
                 (training it from scratch or fine-tuning it is not supported); to serve its \
                 weights as they are, import it as a model"
            )
        })?;
        let augments = self
            .data
            .preprocessing
            .as_ref()
            .is_some_and(ImagePreprocessingSpec::augments);
        check(!augments, "data.preprocessing", || {
            format!(
                "a {kind} linear probe computes each image's features once, so random crops and \
                 flips cannot apply; valid: a center crop and no flip"
            )
        })
    }
}

impl ModelSpec {
    /// Rejects impossible values of the network on its own, naming the field.
    pub fn validate(&self) -> Result<()> {
        match self {
            ModelSpec::Mlp(mlp) => mlp.validate(MAX_PARAMETERS),
            ModelSpec::Cnn(cnn) => cnn.validate(),
            ModelSpec::Resnet18(resnet) | ModelSpec::Resnet34(resnet) => resnet.validate(),
            ModelSpec::Vit(vit) => vit.validate(),
            ModelSpec::Convnext(_) => Ok(()),
        }
    }

    /// Checks the network against its input: images of `input` (`[c, h, w]`, as the network
    /// sees them) or feature rows (`None`).
    pub fn validate_for(&self, input: Option<[usize; 3]>) -> Result<()> {
        match self {
            ModelSpec::Mlp(_) => Ok(()),
            ModelSpec::Cnn(cnn) => cnn.validate_for(input, MAX_PARAMETERS),
            ModelSpec::Resnet18(resnet) | ModelSpec::Resnet34(resnet) => {
                let (depth, _) = self.resnet().expect("a ResNet spec; this is a bug");
                resnet.validate_for(depth, input, MAX_PARAMETERS)
            }
            ModelSpec::Vit(vit) => vit.validate_for(input),
            ModelSpec::Convnext(convnext) => convnext.validate_for(input),
        }
    }
}

impl DataSpec {
    /// Checks the fractions and the preprocessing on their own (the data set is not known yet).
    pub fn validate(&self) -> Result<()> {
        unit_interval(self.val_fraction, "data.val_fraction", false)?;
        unit_interval(self.test_fraction, "data.test_fraction", true)?;
        check(
            self.val_fraction + self.test_fraction < 0.9,
            "data.test_fraction",
            || {
                format!(
                    "val_fraction + test_fraction = {} leaves too little to train on; valid: a sum below 0.9",
                    self.val_fraction + self.test_fraction
                )
            },
        )?;
        match &self.preprocessing {
            Some(preprocessing) => preprocessing.validate(),
            None => Ok(()),
        }
    }

    /// Checks, before a job is queued, that splitting a data set with `class_rows` rows per
    /// class by these fractions leaves every split that is asked for at least one row: train
    /// and validation always, test when `test_fraction` is above 0. It counts as the split
    /// does (per class, [`data::class_split`]), so a fraction such as `1e-320` is a 422
    /// naming it instead of a job that fails when it starts. Out-of-range fractions are left
    /// to [`JobSpec::validate`].
    pub fn check_split_sizes(&self, class_rows: &[usize]) -> Result<()> {
        if self.validate().is_err() {
            return Ok(());
        }
        let (mut train, mut val, mut test) = (0usize, 0usize, 0usize);
        for &n in class_rows {
            let (n_val, n_test) = data::class_split(n, self.val_fraction, self.test_fraction);
            val += n_val;
            test += n_test;
            train += n - n_val - n_test;
        }
        let rows: usize = class_rows.iter().sum();
        let largest = class_rows.iter().copied().max().unwrap_or(0).max(1) as f64;
        // The smallest fraction that rounds to one row in the largest class.
        let least = 0.5 / largest;
        check(val > 0, "data.val_fraction", || {
            format!(
                "{} of this data set's {rows} rows leaves no validation rows; valid: at least {least:.2e}",
                self.val_fraction
            )
        })?;
        check(train > 0, "data.val_fraction", || {
            format!(
                "val_fraction {} and test_fraction {} leave none of this data set's {rows} rows to train on; use smaller fractions",
                self.val_fraction, self.test_fraction
            )
        })?;
        check(
            test > 0 || self.test_fraction == 0.0,
            "data.test_fraction",
            || {
                format!(
                    "{} of this data set's {rows} rows leaves no test rows; valid: 0, or at least {least:.2e}",
                    self.test_fraction
                )
            },
        )
    }
}
