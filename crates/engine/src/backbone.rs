//! The pretrained vision backbones of `candle-transformers` (ViT, ConvNeXt) behind
//! [`crate::Network`]: built from tensors named as their public checkpoints name them
//! (Hugging Face's ViT, timm's ConvNeXt), checked by name and shape first so that a wrong file
//! is a 422 listing the tensors at fault.
//!
//! A [`Backbone`] is a frozen feature extractor (plain tensors, never variables: nothing of it
//! trains) and a linear head (`classifier.*` or `head.fc.*`) of candle variables. Served as
//! imported, both come from the file. Under a linear probe, the head is new and seeded, and
//! [`Backbone::cache_features`] turns every split into features once, so each epoch trains and
//! evaluates the head alone.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Module, Tensor, Var};
use candle_nn::{LayerNorm, VarBuilder};
use candle_transformers::models::{convnext, vit};
use rand_chacha::ChaCha8Rng;

use super::init;
use super::{ParamInfo, PreparedData, SplitTensors};
use crate::error::{EngineError, Result};
use crate::spec::{
    ConvNextSize, ConvNextSpec, InitSpec, ModelSpec, VitActivation, VitSpec, is_probe_head,
};
use crate::weights::check_shapes;

/// Images per forward pass of the frozen backbone while features are cached.
const FEATURE_BATCH: usize = 32;

/// A frozen candle-transformers backbone and a linear head.
pub struct Backbone {
    features: Features,
    /// `C x H x W` of the images rows hold.
    input: [usize; 3],
    feature_width: usize,
    /// The head's weight and bias, named as the checkpoint names them.
    head: [(String, Var); 2],
    /// Every tensor of the backbone but the head, in checkpoint order (never modified).
    frozen: Vec<(String, Tensor)>,
    /// Set once the splits were turned into features: rows are then features, not images.
    on_features: bool,
}

/// Images to features, with candle-transformers' modules.
enum Features {
    /// ViT: patch and position embeddings, the encoder, the final layer norm, the CLS token.
    Vit {
        embeddings: vit::Embeddings,
        encoder: vit::Encoder,
        norm: LayerNorm,
    },
    /// ConvNeXt: the stem and stages averaged over space, then the head's layer norm.
    ConvNext {
        body: candle_nn::Func<'static>,
        norm: LayerNorm,
    },
}

impl Backbone {
    /// The backbone `spec` describes with every tensor (head included) from `tensors`, for
    /// `classes` outputs: an imported model, or a probe's checkpoint. Missing or misshapen
    /// tensors are a 422 on `weights` listing them.
    pub(crate) fn from_tensors(
        spec: &ModelSpec,
        input: [usize; 3],
        classes: usize,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Backbone> {
        let expected = spec.backbone_state_shapes(classes);
        check_shapes(&expected, &shapes_of(tensors), "weights")?;
        let [weight, bias] = head_names(&expected);
        let head = [
            f32_on(&tensors[&weight], device)?,
            f32_on(&tensors[&bias], device)?,
        ];
        Self::build(spec, input, &expected, tensors, device, head)
    }

    /// A linear probe: the backbone from `tensors` (uploaded weights, or another probe's
    /// checkpoint; a head there is ignored) and a new head seeded from `rng`, like
    /// `torch.nn.Linear`'s. Missing or misshapen backbone tensors are a 422 on `field`.
    pub(crate) fn probe(
        spec: &ModelSpec,
        input: [usize; 3],
        classes: usize,
        tensors: &HashMap<String, Tensor>,
        rng: &mut ChaCha8Rng,
        device: &Device,
        field: &str,
    ) -> Result<Backbone> {
        let expected = spec.backbone_state_shapes(classes);
        let backbone: Vec<_> = expected
            .iter()
            .filter(|(name, _)| !is_probe_head(name))
            .cloned()
            .collect();
        check_shapes(&backbone, &shapes_of(tensors), field)?;
        let features = expected
            .iter()
            .find(|(name, _)| is_probe_head(name))
            .map_or(0, |(_, shape)| shape[1]);
        let (weight, bias) = init::dense(&InitSpec::TorchDefault, features, classes, 1.0, rng);
        let head = [
            Tensor::from_vec(weight, (classes, features), device)?,
            Tensor::from_vec(bias, classes, device)?,
        ];
        Self::build(spec, input, &expected, tensors, device, head)
    }

    fn build(
        spec: &ModelSpec,
        input: [usize; 3],
        expected: &[(String, Vec<usize>)],
        tensors: &HashMap<String, Tensor>,
        device: &Device,
        [weight, bias]: [Tensor; 2],
    ) -> Result<Backbone> {
        let frozen: Vec<(String, Tensor)> = expected
            .iter()
            .filter(|(name, _)| !is_probe_head(name))
            .map(|(name, _)| Ok((name.clone(), f32_on(&tensors[name], device)?)))
            .collect::<Result<_>>()?;
        let [weight_name, bias_name] = head_names(expected);
        let vb = VarBuilder::from_tensors(frozen.iter().cloned().collect(), DType::F32, device);
        let (features, feature_width) = match spec {
            ModelSpec::Vit(vit) => vit_features(vit, vb)?,
            ModelSpec::Convnext(convnext) => convnext_features(convnext, vb)?,
            _ => {
                return Err(EngineError::Internal(
                    "not a pretrained backbone; this is a bug".into(),
                ));
            }
        };
        Ok(Backbone {
            features,
            input,
            feature_width,
            head: [
                (weight_name, Var::from_tensor(&weight)?),
                (bias_name, Var::from_tensor(&bias)?),
            ],
            frozen,
            on_features: false,
        })
    }

    /// Features of a batch of image rows `[batch, C·H·W]`, detached from any graph.
    fn features_of(&self, x: &Tensor) -> Result<Tensor> {
        let [c, h, w] = self.input;
        let images = x.reshape((x.dim(0)?, c, h, w))?.to_dtype(DType::F32)?;
        let out = match &self.features {
            Features::Vit {
                embeddings,
                encoder,
                norm,
            } => {
                let tokens = encoder.forward(&embeddings.forward(&images, None, false)?)?;
                tokens.i((.., 0, ..))?.apply(norm)?
            }
            Features::ConvNext { body, norm } => images.apply(body)?.apply(norm)?,
        };
        Ok(out.detach())
    }

    /// Turns every split of `data` into features, once, and from then on takes features as
    /// its rows: the backbone never changes during a probe, so neither do they.
    pub(crate) fn cache_features(&mut self, data: &PreparedData) -> Result<PreparedData> {
        let started = Instant::now();
        let featurize = |split: &SplitTensors| -> Result<SplitTensors> {
            let mut parts = Vec::with_capacity(split.len.div_ceil(FEATURE_BATCH));
            let mut start = 0;
            while start < split.len {
                let len = FEATURE_BATCH.min(split.len - start);
                parts.push(self.features_of(&split.x.narrow(0, start, len)?)?);
                start += len;
            }
            let x = if parts.is_empty() {
                Tensor::zeros((0, self.feature_width), DType::F32, split.x.device())?
            } else {
                Tensor::cat(&parts, 0)?
            };
            Ok(SplitTensors {
                x,
                y: split.y.clone(),
                len: split.len,
            })
        };
        let cached = PreparedData {
            train: featurize(&data.train)?,
            val: featurize(&data.val)?,
            test: data.test.as_ref().map(featurize).transpose()?,
            n_classes: data.n_classes,
            preprocessing: data.preprocessing.clone(),
            augment: None,
        };
        self.on_features = true;
        tracing::info!(
            images = cached.train.len + cached.val.len + cached.test.as_ref().map_or(0, |t| t.len),
            features = self.feature_width,
            seconds = started.elapsed().as_secs_f64(),
            "backbone features cached for the run"
        );
        Ok(cached)
    }

    /// Logits for a batch of rows: images, or features once they are cached.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let features = if self.on_features {
            x.clone()
        } else {
            self.features_of(x)?
        };
        let [(_, weight), (_, bias)] = &self.head;
        Ok(features
            .matmul(&weight.as_tensor().t()?)?
            .broadcast_add(bias.as_tensor())?)
    }

    /// The head's parameters: all that trains.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        self.head.to_vec()
    }

    /// Layer and role of a head parameter (the backbone has none that train).
    pub(crate) fn describe(&self, name: &str) -> ParamInfo {
        let (layer, role) = name.rsplit_once('.').unwrap_or((name, ""));
        ParamInfo {
            layer: layer.to_string(),
            index: 0,
            role: role.to_string(),
        }
    }

    /// The most values per row a forward pass holds, to size evaluation batches.
    pub fn widest(&self) -> usize {
        if self.on_features {
            self.feature_width
        } else {
            // A ViT holds a few copies of its tokens; a ConvNeXt's stem quadruples channels.
            16 * self.input.iter().product::<usize>().max(self.feature_width)
        }
    }

    /// Every tensor, backbone first, named as its checkpoint names them.
    pub(crate) fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = self.frozen.clone();
        for (name, var) in &self.head {
            out.push((name.clone(), var.as_tensor().copy()?));
        }
        Ok(out)
    }
}

fn shapes_of(tensors: &HashMap<String, Tensor>) -> HashMap<String, Vec<usize>> {
    tensors
        .iter()
        .map(|(name, t)| (name.clone(), t.dims().to_vec()))
        .collect()
}

/// The head's weight and bias names among a backbone's tensors.
fn head_names(expected: &[(String, Vec<usize>)]) -> [String; 2] {
    let mut names = expected
        .iter()
        .filter(|(name, _)| is_probe_head(name))
        .map(|(name, _)| name.clone());
    [
        names.next().unwrap_or_default(),
        names.next().unwrap_or_default(),
    ]
}

fn f32_on(t: &Tensor, device: &Device) -> Result<Tensor> {
    Ok(t.to_dtype(DType::F32)?.to_device(device)?)
}

fn vit_features(spec: &VitSpec, vb: VarBuilder) -> Result<(Features, usize)> {
    let c = spec.config();
    let config = vit::Config {
        hidden_size: c.hidden_size,
        num_hidden_layers: c.layers,
        num_attention_heads: c.heads,
        intermediate_size: c.intermediate_size,
        hidden_act: match c.hidden_act {
            VitActivation::Gelu => candle_nn::Activation::Gelu,
            VitActivation::GeluNew => candle_nn::Activation::NewGelu,
            VitActivation::GeluPytorchTanh => candle_nn::Activation::GeluPytorchTanh,
            VitActivation::Relu => candle_nn::Activation::Relu,
        },
        layer_norm_eps: c.layer_norm_eps,
        image_size: c.image_size,
        patch_size: c.patch_size,
        num_channels: c.num_channels,
        qkv_bias: c.qkv_bias,
    };
    let vb = vb.pp("vit");
    let features = Features::Vit {
        embeddings: vit::Embeddings::new(&config, false, vb.pp("embeddings"))?,
        encoder: vit::Encoder::new(&config, vb.pp("encoder"))?,
        norm: candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("layernorm"))?,
    };
    Ok((features, c.hidden_size))
}

fn convnext_features(spec: &ConvNextSpec, vb: VarBuilder) -> Result<(Features, usize)> {
    let (size, _) = spec.variant.size();
    let config = match size {
        ConvNextSize::Atto => convnext::Config::atto(),
        ConvNextSize::Femto => convnext::Config::femto(),
        ConvNextSize::Pico => convnext::Config::pico(),
        ConvNextSize::Nano => convnext::Config::nano(),
        ConvNextSize::Tiny => convnext::Config::tiny(),
        ConvNextSize::Small => convnext::Config::small(),
        ConvNextSize::Base => convnext::Config::base(),
        ConvNextSize::Large => convnext::Config::large(),
        ConvNextSize::Xlarge => convnext::Config::xlarge(),
        ConvNextSize::Huge => convnext::Config::huge(),
    };
    let width = spec.feature_width();
    // timm's head norm, as candle-transformers' `convnext_head` builds it (eps 1e-6).
    let norm = candle_nn::layer_norm(width, 1e-6, vb.pp("head.norm"))?;
    let body = convnext::convnext_no_final_layer(&config, vb)?;
    Ok((Features::ConvNext { body, norm }, width))
}

mod random;
pub use random::random_weights;

#[cfg(test)]
mod tests;
