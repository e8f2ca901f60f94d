//! ResNet-18 and ResNet-34 with torchvision's tensor names (`conv1.weight`,
//! `bn1.{weight,bias,running_mean,running_var}`, `layer1.0.conv1.weight`,
//! `layer2.0.downsample.{0,1}.*`, `fc.{weight,bias}`), so a torchvision `state_dict` saved as
//! safetensors loads unchanged. Trainable end to end through the CPU kernels: batch norm in
//! training mode updates its running statistics, and the stem's 3×3/2 max-pool has a backward.
//!
//! [`state_shapes`] is the one description of the architecture: the model is built from it,
//! and submissions check uploaded weights against it without building a model.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use super::init;
use super::mlp::load_vars;
use super::{Mode, ParamInfo};
use crate::error::{EngineError, Result};
use crate::spec::{InitSpec, ResNetDepth, ResNetSpec, Stem};
use kernels::{self, Conv2dConfig, Epilogue};

/// PyTorch's `BatchNorm2d` defaults.
const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// A ResNet-18 or -34 for images of a fixed shape.
pub struct ResNet {
    input: [usize; 3],
    stem: Stem,
    conv1: ConvBn,
    stages: Vec<Vec<Basic>>,
    fc_weight: Var,
    fc_bias: Var,
    /// A frozen backbone runs in evaluation mode, its features detached, its parameters untrained.
    frozen: bool,
    widest: usize,
    /// Every tensor in torchvision's `state_dict` order (without `num_batches_tracked`).
    state: Vec<(String, Var)>,
}

/// A convolution without bias, then batch normalization.
struct ConvBn {
    weight: Var,
    config: Conv2dConfig,
    gamma: Var,
    beta: Var,
    running_mean: Var,
    running_var: Var,
}

/// torchvision's `BasicBlock`: two 3×3 conv-BNs and a shortcut (a 1×1 conv-BN when the
/// shape changes).
struct Basic {
    conv1: ConvBn,
    conv2: ConvBn,
    downsample: Option<ConvBn>,
}

/// Every tensor's name and shape, in torchvision's order, for `channels` input channels and
/// `classes` outputs.
pub fn state_shapes(
    depth: ResNetDepth,
    spec: &ResNetSpec,
    channels: usize,
    classes: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut conv_bn = |conv: String, bn: String, shape: [usize; 4]| {
        out.push((conv, shape.to_vec()));
        for role in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{bn}.{role}"), vec![shape[0]]));
        }
    };
    let w = spec.width;
    let k = stem_kernel(spec.stem);
    conv_bn("conv1.weight".into(), "bn1".into(), [w, channels, k, k]);
    let mut c_in = w;
    for (stage, &blocks) in depth.blocks().iter().enumerate() {
        let c = w << stage;
        for b in 0..blocks {
            let p = format!("layer{}.{b}", stage + 1);
            let input = if b == 0 { c_in } else { c };
            conv_bn(
                format!("{p}.conv1.weight"),
                format!("{p}.bn1"),
                [c, input, 3, 3],
            );
            conv_bn(
                format!("{p}.conv2.weight"),
                format!("{p}.bn2"),
                [c, c, 3, 3],
            );
            if b == 0 && (stage > 0 || input != c) {
                let (conv, bn) = (
                    format!("{p}.downsample.0.weight"),
                    format!("{p}.downsample.1"),
                );
                conv_bn(conv, bn, [c, input, 1, 1]);
            }
        }
        c_in = c;
    }
    out.push(("fc.weight".into(), vec![classes, c_in]));
    out.push(("fc.bias".into(), vec![classes]));
    out
}

fn stem_kernel(stem: Stem) -> usize {
    match stem {
        Stem::Imagenet => 7,
        Stem::Small => 3,
    }
}

/// True for the classifier's tensors (`fc.*`), which transfer learning replaces.
pub(crate) fn is_head(name: &str) -> bool {
    name.starts_with("fc.")
}

impl ResNet {
    /// A freshly initialized network as torchvision initializes one: convolutions
    /// Kaiming-normal (fan-out, ReLU), batch norm scale 1 and shift 0, and the classifier
    /// uniform in ±1/√fan_in. The same seed gives the same weights.
    pub fn seeded(
        depth: ResNetDepth,
        spec: &ResNetSpec,
        input: [usize; 3],
        classes: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let shapes = state_shapes(depth, spec, input[0], classes);
        let mut vars = HashMap::new();
        let mut state = Vec::with_capacity(shapes.len());
        let (mut fc_weight, mut fc_bias) = (None, None);
        for (name, shape) in shapes {
            let var = if name == "fc.weight" {
                let (w, b) = init::dense(&InitSpec::TorchDefault, shape[1], shape[0], 1.0, rng);
                fc_bias = Some(b);
                Var::from_vec(w, shape, device)?
            } else if name == "fc.bias" {
                Var::from_vec(fc_bias.take().unwrap_or_default(), shape, device)?
            } else if shape.len() == 4 {
                let fan_out = shape[0] * shape[2] * shape[3];
                let std = (2.0 / fan_out as f64).sqrt();
                let fan_in = shape[1] * shape[2] * shape[3];
                let (w, _) = init::dense(&InitSpec::Normal { std }, fan_in, shape[0], 1.0, rng);
                Var::from_vec(w, shape, device)?
            } else if name.ends_with(".weight") || name.ends_with(".running_var") {
                Var::ones(shape, candle_core::DType::F32, device)?
            } else {
                Var::zeros(shape, candle_core::DType::F32, device)?
            };
            if name == "fc.weight" {
                fc_weight = Some(var.clone());
            }
            vars.insert(name.clone(), var.clone());
            state.push((name, var));
        }
        let take = |name: &str| {
            vars.get(name).cloned().ok_or_else(|| {
                EngineError::Internal(format!("the ResNet layout has no {name}; this is a bug"))
            })
        };
        let conv_bn = |conv: &str, bn: &str, stride: usize, padding: usize| -> Result<ConvBn> {
            Ok(ConvBn {
                weight: take(&format!("{conv}.weight"))?,
                config: Conv2dConfig {
                    stride,
                    padding,
                    dilation: 1,
                },
                gamma: take(&format!("{bn}.weight"))?,
                beta: take(&format!("{bn}.bias"))?,
                running_mean: take(&format!("{bn}.running_mean"))?,
                running_var: take(&format!("{bn}.running_var"))?,
            })
        };
        let (stem_stride, stem_padding) = match spec.stem {
            Stem::Imagenet => (2, 3),
            Stem::Small => (1, 1),
        };
        let conv1 = conv_bn("conv1", "bn1", stem_stride, stem_padding)?;
        let mut stages = Vec::new();
        for (stage, &blocks) in depth.blocks().iter().enumerate() {
            let mut layer = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let p = format!("layer{}.{b}", stage + 1);
                let stride = if b == 0 && stage > 0 { 2 } else { 1 };
                let down = format!("{p}.downsample.0.weight");
                layer.push(Basic {
                    conv1: conv_bn(&format!("{p}.conv1"), &format!("{p}.bn1"), stride, 1)?,
                    conv2: conv_bn(&format!("{p}.conv2"), &format!("{p}.bn2"), 1, 1)?,
                    downsample: if vars.contains_key(&down) {
                        let bn = format!("{p}.downsample.1");
                        Some(conv_bn(&format!("{p}.downsample.0"), &bn, stride, 0)?)
                    } else {
                        None
                    },
                });
            }
            stages.push(layer);
        }
        let [_, h, w] = input;
        let side = |x: usize| (x + 2 * stem_padding - stem_kernel(spec.stem)) / stem_stride + 1;
        let widest = (spec.width * side(h) * side(w)).max(input.iter().product());
        let missing = || EngineError::Internal("the ResNet layout has no fc; this is a bug".into());
        Ok(ResNet {
            input,
            stem: spec.stem,
            conv1,
            stages,
            fc_weight: fc_weight.ok_or_else(missing)?,
            fc_bias: take("fc.bias")?,
            frozen: false,
            widest,
            state,
        })
    }

    /// A network with the given weights; missing tensors or wrong shapes are listed in the error.
    /// Extra tensors (such as torchvision's `num_batches_tracked`) are ignored.
    pub fn from_tensors(
        depth: ResNetDepth,
        spec: &ResNetSpec,
        input: [usize; 3],
        classes: usize,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = rand::SeedableRng::seed_from_u64(0);
        let model = ResNet::seeded(depth, spec, input, classes, &mut rng, device)?;
        load_vars(&model.state, tensors, device)?;
        Ok(model)
    }

    /// Logits for a batch of flattened images `[batch, c·h·w]` (or `[batch, c, h, w]`).
    pub fn forward(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let batch = x.dim(0)?;
        let [c, h, w] = self.input;
        let x = x.reshape((batch, c, h, w))?;
        let train = matches!(mode, Mode::Train(_)) && !self.frozen;
        let mut h = self.conv1.forward(&x, train, Epilogue::Relu)?;
        if self.stem == Stem::Imagenet {
            h = kernels::max_pool2d(&h, 3, 2, 1)?;
        }
        for block in self.stages.iter().flatten() {
            h = block.forward(&h, train)?;
        }
        let mut features = kernels::global_avg_pool2d(&h)?;
        if self.frozen {
            features = features.detach();
        }
        Ok(features
            .matmul(&self.fc_weight.as_tensor().t()?)?
            .broadcast_add(self.fc_bias.as_tensor())?)
    }

    /// The parameters an optimizer updates, named and in a stable order: everything but the
    /// running statistics, or only `fc.*` when the backbone is frozen.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.state
            .iter()
            .filter(|(name, _)| !name.ends_with(".running_mean") && !name.ends_with(".running_var"))
            .filter(|(name, _)| !self.frozen || is_head(name))
            .cloned()
            .collect()
    }

    /// Freezes everything but `fc` (linear probing): evaluation mode, no gradient, not trainable.
    pub(crate) fn freeze_backbone(&mut self) {
        self.frozen = true;
    }

    /// Sets every tensor but `fc.*` from `tensors` (missing tensors and wrong shapes listed in
    /// one 422 on `weights`); `fc.weight` and `fc.bias` too when both are there with the
    /// shapes of this network's classifier, which otherwise stays freshly initialized.
    pub(crate) fn load_backbone(
        &self,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<()> {
        let (head, backbone): (Vec<_>, Vec<_>) = self
            .state
            .iter()
            .cloned()
            .partition(|(name, _)| is_head(name));
        load_vars(&backbone, tensors, device)?;
        let fits = head
            .iter()
            .all(|(name, var)| tensors.get(name).is_some_and(|t| t.dims() == var.dims()));
        if fits {
            load_vars(&head, tensors, device)?;
        }
        Ok(())
    }

    /// Every tensor that defines the network (parameters and running statistics).
    pub(super) fn state_vars(&self) -> Vec<(String, Var)> {
        self.state.clone()
    }

    /// Layer and role of a parameter: the stem (`conv1`, `bn1`) is layer 0, each basic block
    /// (`layer2.1`) the next, and `fc` the last; roles are the rest of the name
    /// (`conv1.weight`, `downsample.1.bias`).
    pub(crate) fn describe(&self, name: &str) -> ParamInfo {
        let blocks: usize = self.stages.iter().map(Vec::len).sum();
        if let Some(rest) = name.strip_prefix("layer") {
            let mut parts = rest.splitn(3, '.');
            let stage: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(1);
            let block: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let before: usize = self
                .stages
                .iter()
                .take(stage.saturating_sub(1))
                .map(Vec::len)
                .sum();
            return ParamInfo {
                layer: format!("layer{stage}.{block}"),
                index: 1 + before + block,
                role: parts.next().unwrap_or("").to_string(),
            };
        }
        let (layer, index) = if is_head(name) {
            ("fc", blocks + 1)
        } else {
            ("stem", 0)
        };
        ParamInfo {
            layer: layer.to_string(),
            index,
            role: name.to_string(),
        }
    }

    /// The most values per row any activation holds.
    pub fn widest(&self) -> usize {
        self.widest
    }
}

impl ConvBn {
    /// `then(bn(conv(x)))`; in training mode the epilogue runs inside the batch-norm op.
    fn forward(&self, x: &Tensor, train: bool, then: Epilogue) -> Result<Tensor> {
        let h = kernels::conv2d(x, self.weight.as_tensor(), None, self.config)?;
        let (n, _, oh, ow) = h.dims4()?;
        let count = n * oh * ow;
        // One value per channel has no batch statistics (PyTorch refuses it); such a batch is
        // normalized with the running statistics, which it leaves alone.
        if train && count > 1 {
            let (y, mean, var) = kernels::batch_norm_train(
                &h,
                self.gamma.as_tensor(),
                self.beta.as_tensor(),
                BN_EPS,
                then,
            )?;
            kernels::update_running_stats(
                &self.running_mean,
                &self.running_var,
                &mean,
                &var,
                BN_MOMENTUM,
                count,
            )?;
            return Ok(y);
        }
        let y = kernels::batch_norm_eval(
            &h,
            self.gamma.as_tensor(),
            self.beta.as_tensor(),
            self.running_mean.as_tensor(),
            self.running_var.as_tensor(),
            BN_EPS,
        )?;
        Ok(match then {
            Epilogue::None => y,
            Epilogue::Relu => kernels::relu(&y)?,
            Epilogue::AddRelu(residual) => kernels::relu(&(y + residual)?)?,
        })
    }
}

impl Basic {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.conv1.forward(x, train, Epilogue::Relu)?;
        let shortcut = match &self.downsample {
            Some(down) => down.forward(x, train, Epilogue::None)?,
            None => x.clone(),
        };
        self.conv2.forward(&h, train, Epilogue::AddRelu(&shortcut))
    }
}

#[cfg(test)]
mod tests;
