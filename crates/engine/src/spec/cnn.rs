//! The CNN part of a job spec: convolution blocks, then an MLP head. Checked twice: alone at
//! parsing ([`CnnSpec::validate`]) and against the data set's image shape at submission
//! ([`CnnSpec::validate_for`]), where the spatial size must stay at least 1 through the blocks.

use serde::{Deserialize, Serialize};

use super::check::{check, int_range, positive_at_most, unit_interval};
use super::model::{Activation, InitSpec};
use crate::error::{EngineError, Result};

/// A small convolutional network: `blocks` (conv → batch norm → activation → max-pool →
/// dropout), flattened, then `head` (dense layers) and a linear classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnSpec {
    /// Convolution blocks; by default two: 16 and 32 channels, 3×3, padding 1, max-pool 2.
    pub blocks: Vec<ConvBlockSpec>,
    /// The dense layers after the blocks.
    pub head: HeadSpec,
    /// Non-linearity after every convolution and hidden dense layer.
    pub activation: Activation,
    /// Slope of `leaky_relu` for negative inputs.
    pub leaky_relu_slope: f64,
    /// Weight initialization; by default Kaiming for the ReLU family and Xavier otherwise.
    /// Filled in at submission.
    pub init: Option<InitSpec>,
}

/// One convolution block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvBlockSpec {
    /// Output channels.
    pub channels: usize,
    /// Side of the square kernel.
    pub kernel: usize,
    /// Stride of the convolution.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Max-pooling window and stride after the activation (1: no pooling).
    pub pool: usize,
    /// Batch normalization per channel (over batch, height and width) after the convolution.
    pub batch_norm: bool,
    /// Dropout probability at the end of the block.
    pub dropout: f64,
}

/// The dense layers between the flattened feature maps and the classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeadSpec {
    /// Hidden dense layers (0: the classifier reads the feature maps directly).
    pub depth: usize,
    /// Units per hidden layer.
    pub width: usize,
    /// Dropout probability after each hidden layer.
    pub dropout: f64,
}

impl Default for CnnSpec {
    fn default() -> Self {
        CnnSpec {
            blocks: vec![
                ConvBlockSpec::default(),
                ConvBlockSpec {
                    channels: 32,
                    ..ConvBlockSpec::default()
                },
            ],
            head: HeadSpec::default(),
            activation: Activation::Relu,
            leaky_relu_slope: 0.01,
            init: None,
        }
    }
}

impl Default for ConvBlockSpec {
    fn default() -> Self {
        ConvBlockSpec {
            channels: 16,
            kernel: 3,
            stride: 1,
            padding: 1,
            pool: 2,
            batch_norm: false,
            dropout: 0.0,
        }
    }
}

impl Default for HeadSpec {
    fn default() -> Self {
        HeadSpec {
            depth: 1,
            width: 64,
            dropout: 0.0,
        }
    }
}

/// Largest number of convolution blocks.
pub(crate) const MAX_BLOCKS: usize = 16;

impl CnnSpec {
    /// The initialization in effect: the spec's, or the default for the activation.
    pub fn resolved_init(&self) -> InitSpec {
        self.init
            .clone()
            .unwrap_or(if self.activation.is_relu_family() {
                InitSpec::Kaiming
            } else {
                InitSpec::Xavier
            })
    }

    /// Rejects impossible values, naming the field.
    pub(super) fn validate(&self) -> Result<()> {
        check(
            (1..=MAX_BLOCKS).contains(&self.blocks.len()),
            "model.blocks",
            || format!("{} blocks; valid: 1 to {MAX_BLOCKS}", self.blocks.len()),
        )?;
        for (i, block) in self.blocks.iter().enumerate() {
            let field = |name: &str| format!("model.blocks[{i}].{name}");
            int_range(block.channels, 1, 1024, &field("channels"))?;
            int_range(block.kernel, 1, 15, &field("kernel"))?;
            int_range(block.stride, 1, 8, &field("stride"))?;
            check(block.padding < block.kernel, &field("padding"), || {
                format!(
                    "{} is out of range; valid: 0 to kernel - 1 = {}",
                    block.padding,
                    block.kernel - 1
                )
            })?;
            int_range(block.pool, 1, 8, &field("pool"))?;
            unit_interval(block.dropout, &field("dropout"), true)?;
        }
        int_range(self.head.depth, 0, 16, "model.head.depth")?;
        int_range(self.head.width, 1, 65_536, "model.head.width")?;
        unit_interval(self.head.dropout, "model.head.dropout", true)?;
        unit_interval(self.leaky_relu_slope, "model.leaky_relu_slope", true)?;
        if let Some(InitSpec::Normal { std }) = &self.init {
            positive_at_most(*std, 10.0, "model.init.std")?;
        }
        Ok(())
    }

    /// The shape `[channels, height, width]` after every block, for an input of `input`; a
    /// 422 naming the block whose output would be empty.
    pub fn shapes(&self, input: [usize; 3]) -> Result<Vec<[usize; 3]>> {
        let [_, mut h, mut w] = input;
        let mut shapes = Vec::with_capacity(self.blocks.len());
        for (i, b) in self.blocks.iter().enumerate() {
            let side = |x: usize| {
                (x + 2 * b.padding)
                    .checked_sub(b.kernel)
                    .map(|span| (span / b.stride + 1) / b.pool)
                    .unwrap_or(0)
            };
            let (nh, nw) = (side(h), side(w));
            if nh == 0 || nw == 0 {
                return Err(EngineError::spec(
                    format!("model.blocks[{i}]"),
                    format!(
                        "a {h}x{w} input to block {i} (kernel {}, stride {}, padding {}, pool {}) \
                         leaves no pixels; valid: fewer blocks, smaller kernels, strides or pools",
                        b.kernel, b.stride, b.padding, b.pool
                    ),
                ));
            }
            (h, w) = (nh, nw);
            shapes.push([b.channels, h, w]);
        }
        Ok(shapes)
    }

    /// Checks the spec against the data set's image shape (`None`: not an image data set),
    /// including the spatial size and the number of parameters.
    pub(crate) fn validate_for(
        &self,
        image_shape: Option<[usize; 3]>,
        max_parameters: usize,
    ) -> Result<()> {
        let input = image_shape.ok_or_else(|| {
            EngineError::spec(
                "dataset",
                "this data set has no images: a CNN needs image_shape (use an image data set such as 'shapes' or 'digits', or an MLP)",
            )
        })?;
        let shapes = self.shapes(input)?;
        let mut params = 0usize;
        let mut c_in = input[0];
        for b in &self.blocks {
            params = params.saturating_add(
                b.channels
                    .saturating_mul(c_in.saturating_mul(b.kernel * b.kernel) + 1),
            );
            c_in = b.channels;
        }
        let [c, h, w] = shapes.last().copied().unwrap_or(input);
        let mut width_in = c * h * w;
        for _ in 0..self.head.depth {
            params =
                params.saturating_add(width_in.saturating_mul(self.head.width) + self.head.width);
            width_in = self.head.width;
        }
        check(params <= max_parameters, "model", || {
            format!("about {params} parameters; valid: at most {max_parameters}")
        })
    }
}

/// How a convolutional network's weights start: from scratch, or with the backbone of another
/// job's best checkpoint or of uploaded weights, and a head sized to the data set's classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    /// `scratch`, `linear_probe` (backbone frozen) or `fine_tune` (everything trained).
    pub mode: TransferMode,
    /// The job whose best checkpoint gives the backbone (not with `scratch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_job: Option<String>,
    /// The uploaded weights (`POST /v1/weights`, by id or name) that give the backbone; not
    /// with `from_job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_weights: Option<String>,
    /// With `fine_tune`: the backbone learns at the step's rate times this.
    #[serde(default = "one")]
    pub backbone_lr_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// Which weights train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferMode {
    /// Seeded initialization, everything trained.
    Scratch,
    /// The backbone loaded and frozen (evaluation mode, no gradient, no optimizer state); only
    /// the new head trains.
    LinearProbe,
    /// The backbone loaded; everything trains, the backbone at `backbone_lr_scale`.
    FineTune,
}

fn given(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

impl TransferSpec {
    /// Rejects a transfer without exactly one source, or of anything but a convolutional network.
    pub(super) fn validate(&self, is_convolutional: bool) -> Result<()> {
        super::check::positive_at_most(self.backbone_lr_scale, 10.0, "init.backbone_lr_scale")?;
        check(
            !(given(&self.from_job) && given(&self.from_weights)),
            "init.from_weights",
            || "give either from_job or from_weights, not both".into(),
        )?;
        // A source beside `scratch` is ignored, so a sweep can vary the mode alone.
        if self.mode == TransferMode::Scratch {
            return Ok(());
        }
        check(is_convolutional, "init.mode", || {
            "transfer learning loads a convolutional backbone; valid with model.kind 'cnn', 'resnet18' or 'resnet34'".into()
        })?;
        check(
            given(&self.from_job) || given(&self.from_weights),
            "init.from_job",
            || {
                "linear_probe and fine_tune need from_job (the id of a job to take the backbone \
                 from) or from_weights (uploaded weights, POST /v1/weights)"
                    .into()
            },
        )
    }

    /// True unless the mode is `scratch`.
    pub fn loads_backbone(&self) -> bool {
        self.mode != TransferMode::Scratch
    }
}
