//! The network part of a job spec: an MLP's shape, non-linearity, initialization, batch
//! normalization and dropout.

use serde::{Deserialize, Serialize};

use super::check::{check, int_range, positive_at_most, unit_interval};
use crate::error::Result;

/// The network to train, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSpec {
    /// A multi-layer perceptron.
    Mlp(MlpSpec),
    /// A small convolutional network (image data sets only).
    Cnn(super::cnn::CnnSpec),
    /// torchvision's ResNet-18 (image data sets only).
    Resnet18(super::resnet::ResNetSpec),
    /// torchvision's ResNet-34 (image data sets only).
    Resnet34(super::resnet::ResNetSpec),
    /// candle-transformers' Vision Transformer, pretrained weights only (imported, or frozen
    /// under a linear probe).
    Vit(super::backbone::VitSpec),
    /// candle-transformers' ConvNeXt or ConvNeXt-V2, pretrained weights only.
    Convnext(super::backbone::ConvNextSpec),
}

impl ModelSpec {
    /// The depth and options of a ResNet spec.
    pub fn resnet(&self) -> Option<(super::resnet::ResNetDepth, &super::resnet::ResNetSpec)> {
        use super::resnet::ResNetDepth;
        match self {
            ModelSpec::Resnet18(spec) => Some((ResNetDepth::R18, spec)),
            ModelSpec::Resnet34(spec) => Some((ResNetDepth::R34, spec)),
            _ => None,
        }
    }

    /// True for the pretrained backbones of candle-transformers, which are never trained from
    /// scratch: they load uploaded weights and train only a new head.
    pub fn is_pretrained_backbone(&self) -> bool {
        matches!(self, ModelSpec::Vit(_) | ModelSpec::Convnext(_))
    }

    /// Every tensor's name and shape for a pretrained backbone with `classes` outputs (the
    /// names its public checkpoints use); empty for the other kinds.
    pub fn backbone_state_shapes(&self, classes: usize) -> Vec<(String, Vec<usize>)> {
        match self {
            ModelSpec::Vit(vit) => vit.state_shapes(classes),
            ModelSpec::Convnext(convnext) => convnext.state_shapes(classes),
            _ => Vec::new(),
        }
    }

    /// True for the convolutional kinds, which train on images and can transfer a backbone.
    pub(crate) fn is_convolutional(&self) -> bool {
        !matches!(self, ModelSpec::Mlp(_))
    }
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
    /// Slope of `leaky_relu` for negative inputs (ignored by the other activations).
    pub leaky_relu_slope: f64,
    /// How the weights are initialized; when omitted, Kaiming for the ReLU family (relu,
    /// leaky_relu, gelu) and Xavier for the others. Filled in at submission.
    pub init: Option<InitSpec>,
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
            leaky_relu_slope: 0.01,
            init: None,
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
    /// x for x > 0, slope·x otherwise.
    LeakyRelu,
    /// x·Φ(x), with the exact normal CDF (PyTorch's `nn.GELU()`).
    Gelu,
    /// tanh(x)
    Tanh,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// x (a deep linear network).
    Identity,
}

impl Activation {
    /// True for relu, leaky_relu and gelu, whose default initialization is Kaiming.
    pub(crate) fn is_relu_family(self) -> bool {
        matches!(
            self,
            Activation::Relu | Activation::LeakyRelu | Activation::Gelu
        )
    }
}

/// How weights are initialized. Biases start at zero, except with `torch_default`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum InitSpec {
    /// He et al.: N(0, gain²/fan_in) with the activation's gain (√2 for relu).
    Kaiming,
    /// Glorot & Bengio: U(-a, a) with a = √(6 / (fan_in + fan_out)).
    Xavier,
    /// N(0, std²).
    Normal {
        /// Standard deviation.
        #[serde(default = "default_normal_std")]
        std: f64,
    },
    /// torch.nn.Linear's default: U(-1/√fan_in, 1/√fan_in) for weights and biases.
    TorchDefault,
}

fn default_normal_std() -> f64 {
    0.01
}

impl MlpSpec {
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
    pub(super) fn validate(&self, max_parameters: usize) -> Result<()> {
        check((1..=1000).contains(&self.depth), "model.depth", || {
            format!(
                "{} is out of range; valid: 1 to 1000 hidden layers",
                self.depth
            )
        })?;
        int_range(self.width, 1, 65_536, "model.width")?;
        unit_interval(self.dropout, "model.dropout", true)?;
        unit_interval(self.leaky_relu_slope, "model.leaky_relu_slope", true)?;
        if let Some(InitSpec::Normal { std }) = &self.init {
            positive_at_most(*std, 10.0, "model.init.std")?;
        }
        let per_layer = self.width * self.width + self.width;
        check(
            per_layer.saturating_mul(self.depth) <= max_parameters,
            "model.width",
            || {
                format!(
                    "depth {} x width {} is about {} parameters; valid: at most {max_parameters}",
                    self.depth,
                    self.width,
                    per_layer.saturating_mul(self.depth)
                )
            },
        )
    }
}
