//! The ResNet part of a job spec (`"kind": "resnet18"` or `"resnet34"`): torchvision's
//! architecture and tensor names, with the class count taken from the data set, an optional
//! narrower width and a stem for small images.

use serde::{Deserialize, Serialize};

use super::check::{check, int_range};
use crate::error::{EngineError, Result};

/// Options of a ResNet-18 or ResNet-34.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResNetSpec {
    /// Channels of the first stage (torchvision: 64); the stages have 1, 2, 4 and 8 times this.
    /// Pretrained torchvision weights need 64.
    pub width: usize,
    /// `imagenet`: torchvision's 7×7 stride-2 convolution and 3×3 stride-2 max-pool;
    /// `small`: one 3×3 stride-1 convolution and no pooling, for images of 32 pixels or less.
    pub stem: Stem,
}

/// The layers before the first stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// conv 7×7/2 (padding 3) → batch norm → ReLU → max-pool 3×3/2 (padding 1).
    Imagenet,
    /// conv 3×3/1 (padding 1) → batch norm → ReLU.
    Small,
}

impl Default for ResNetSpec {
    fn default() -> Self {
        ResNetSpec {
            width: 64,
            stem: Stem::Imagenet,
        }
    }
}

/// Which ResNet: the number of basic blocks in each of the four stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResNetDepth {
    /// Two blocks per stage.
    R18,
    /// 3, 4, 6 and 3 blocks.
    R34,
}

impl ResNetDepth {
    /// Basic blocks per stage.
    pub fn blocks(self) -> [usize; 4] {
        match self {
            ResNetDepth::R18 => [2, 2, 2, 2],
            ResNetDepth::R34 => [3, 4, 6, 3],
        }
    }

    /// `resnet18` or `resnet34`.
    pub fn name(self) -> &'static str {
        match self {
            ResNetDepth::R18 => "resnet18",
            ResNetDepth::R34 => "resnet34",
        }
    }
}

/// Largest `width`; the parameter budget ([`super::MAX_PARAMETERS`]) may allow less.
pub(crate) const MAX_WIDTH: usize = 128;

impl ResNetSpec {
    /// Rejects impossible values, naming the field.
    pub(super) fn validate(&self) -> Result<()> {
        int_range(self.width, 1, MAX_WIDTH, "model.width")
    }

    /// Number of parameters (weights, biases, batch-norm scales and shifts) for `channels`
    /// input channels and `classes` outputs.
    pub fn parameters(&self, depth: ResNetDepth, channels: usize, classes: usize) -> usize {
        let w = self.width;
        let stem_k = match self.stem {
            Stem::Imagenet => 7,
            Stem::Small => 3,
        };
        let mut params = w * channels * stem_k * stem_k + 2 * w;
        let mut c_in = w;
        for (stage, &blocks) in depth.blocks().iter().enumerate() {
            let c = w << stage;
            for b in 0..blocks {
                let input = if b == 0 { c_in } else { c };
                params += c * input * 9 + c * c * 9 + 4 * c;
                if b == 0 && (stage > 0 || input != c) {
                    params += c * input + 2 * c;
                }
            }
            c_in = c;
        }
        params + c_in * classes + classes
    }

    /// Checks the spec against the data set's image shape (`None`: not an image data set) and
    /// the parameter budget.
    pub(crate) fn validate_for(
        &self,
        depth: ResNetDepth,
        image_shape: Option<[usize; 3]>,
        max_parameters: usize,
    ) -> Result<()> {
        let [channels, _, _] = image_shape.ok_or_else(|| {
            EngineError::spec(
                "dataset",
                format!(
                    "this data set has no images: a {} needs image_shape (use an image data set such as 'shapes', or an MLP)",
                    depth.name()
                ),
            )
        })?;
        // The classifier is small beside the stages; its size is not known before the data set loads.
        let params = self.parameters(depth, channels, 0);
        check(params <= max_parameters, "model.width", || {
            format!(
                "width {} is about {params} parameters; valid: at most {max_parameters}",
                self.width
            )
        })
    }
}
