//! The pretrained vision backbones of `candle-transformers` as job specs: `"kind": "vit"`
//! (Hugging Face `ViTForImageClassification`) and `"kind": "convnext"` (timm's ConvNeXt and
//! ConvNeXt-V2). They are never trained from scratch here: they serve as imported models and as
//! frozen backbones of linear probes (`init: {mode: linear_probe, from_weights}`).
//!
//! Each spec lists the tensors its `candle-transformers` implementation reads, by the names of
//! the public checkpoints ([`VitSpec::state_shapes`], [`ConvNextSpec::state_shapes`]), so
//! uploaded weights are checked by name and shape before anything is built.

use serde::{Deserialize, Serialize};

use super::check::{check, int_range, positive_at_most};
use crate::error::{EngineError, Result};

/// A Vision Transformer with the fields of Hugging Face's `ViTConfig` (candle-transformers'
/// `vit::Config`). Omitted fields come from `variant` (by default `vit_base_patch16_224`) and
/// are written out at submission.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VitSpec {
    /// A named configuration the other fields start from: `vit_base_patch16_224` (google's
    /// ViT-B/16) or `trocr_base_handwritten` (no query/key/value biases, 384 pixels).
    pub variant: Option<VitVariant>,
    /// Width of every token.
    pub hidden_size: Option<usize>,
    /// Number of transformer layers.
    pub num_hidden_layers: Option<usize>,
    /// Attention heads per layer; must divide `hidden_size`.
    pub num_attention_heads: Option<usize>,
    /// Width of each layer's MLP.
    pub intermediate_size: Option<usize>,
    /// The MLP's non-linearity: `gelu` (exact), `gelu_new`, `gelu_pytorch_tanh` or `relu`.
    pub hidden_act: Option<VitActivation>,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: Option<f64>,
    /// Side of the square input image, in pixels (the network takes exactly this size).
    pub image_size: Option<usize>,
    /// Side of each square patch; must divide `image_size`.
    pub patch_size: Option<usize>,
    /// Channels of the input image.
    pub num_channels: Option<usize>,
    /// Whether the query, key and value projections have biases.
    pub qkv_bias: Option<bool>,
}

/// The ViT configurations candle-transformers names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitVariant {
    /// `google/vit-base-patch16-224`: 768 wide, 12 layers of 12 heads, 224 pixels, patches of 16.
    VitBasePatch16224,
    /// `microsoft/trocr-base-handwritten`'s encoder: as ViT-B/16 without qkv biases, 384 pixels.
    TrocrBaseHandwritten,
}

/// A ViT MLP's non-linearity, spelled as in Hugging Face configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VitActivation {
    /// The exact GELU, x·Φ(x).
    Gelu,
    /// GELU's tanh approximation.
    GeluNew,
    /// GELU's tanh approximation, as PyTorch names it.
    GeluPytorchTanh,
    /// max(0, x).
    Relu,
}

/// Every field of a ViT, resolved from a [`VitSpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct VitConfig {
    /// Width of every token.
    pub hidden_size: usize,
    /// Number of transformer layers.
    pub layers: usize,
    /// Attention heads per layer.
    pub heads: usize,
    /// Width of each layer's MLP.
    pub intermediate_size: usize,
    /// The MLP's non-linearity.
    pub hidden_act: VitActivation,
    /// Epsilon of every layer norm.
    pub layer_norm_eps: f64,
    /// Side of the input image.
    pub image_size: usize,
    /// Side of each patch.
    pub patch_size: usize,
    /// Channels of the input image.
    pub num_channels: usize,
    /// Query, key and value biases.
    pub qkv_bias: bool,
}

impl VitVariant {
    fn config(self) -> VitConfig {
        let base = VitConfig {
            hidden_size: 768,
            layers: 12,
            heads: 12,
            intermediate_size: 3072,
            hidden_act: VitActivation::Gelu,
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
        };
        match self {
            VitVariant::VitBasePatch16224 => base,
            VitVariant::TrocrBaseHandwritten => VitConfig {
                image_size: 384,
                qkv_bias: false,
                ..base
            },
        }
    }
}

/// The parameter names of a ViT that its linear probe replaces.
pub(crate) const VIT_HEAD: [&str; 2] = ["classifier.weight", "classifier.bias"];

impl VitSpec {
    /// The configuration in effect: the variant's, with the fields the spec gives.
    pub fn config(&self) -> VitConfig {
        let base = self
            .variant
            .unwrap_or(VitVariant::VitBasePatch16224)
            .config();
        VitConfig {
            hidden_size: self.hidden_size.unwrap_or(base.hidden_size),
            layers: self.num_hidden_layers.unwrap_or(base.layers),
            heads: self.num_attention_heads.unwrap_or(base.heads),
            intermediate_size: self.intermediate_size.unwrap_or(base.intermediate_size),
            hidden_act: self.hidden_act.unwrap_or(base.hidden_act),
            layer_norm_eps: self.layer_norm_eps.unwrap_or(base.layer_norm_eps),
            image_size: self.image_size.unwrap_or(base.image_size),
            patch_size: self.patch_size.unwrap_or(base.patch_size),
            num_channels: self.num_channels.unwrap_or(base.num_channels),
            qkv_bias: self.qkv_bias.unwrap_or(base.qkv_bias),
        }
    }

    /// Writes out every field, so the stored spec says exactly what ran.
    pub(super) fn fill_defaults(&mut self) {
        let c = self.config();
        *self = VitSpec {
            variant: self.variant,
            hidden_size: Some(c.hidden_size),
            num_hidden_layers: Some(c.layers),
            num_attention_heads: Some(c.heads),
            intermediate_size: Some(c.intermediate_size),
            hidden_act: Some(c.hidden_act),
            layer_norm_eps: Some(c.layer_norm_eps),
            image_size: Some(c.image_size),
            patch_size: Some(c.patch_size),
            num_channels: Some(c.num_channels),
            qkv_bias: Some(c.qkv_bias),
        };
    }

    /// Rejects impossible values, naming the field.
    pub(super) fn validate(&self) -> Result<()> {
        let c = self.config();
        int_range(c.hidden_size, 1, 8192, "model.hidden_size")?;
        int_range(c.layers, 1, 128, "model.num_hidden_layers")?;
        int_range(c.heads, 1, 256, "model.num_attention_heads")?;
        check(
            c.hidden_size.is_multiple_of(c.heads),
            "model.num_attention_heads",
            || {
                format!(
                    "{} heads do not divide hidden_size {}; valid: a divisor of it",
                    c.heads, c.hidden_size
                )
            },
        )?;
        int_range(c.intermediate_size, 1, 65_536, "model.intermediate_size")?;
        positive_at_most(c.layer_norm_eps, 1.0, "model.layer_norm_eps")?;
        int_range(c.image_size, 1, 4096, "model.image_size")?;
        int_range(c.patch_size, 1, c.image_size, "model.patch_size")?;
        check(
            c.image_size.is_multiple_of(c.patch_size),
            "model.patch_size",
            || {
                format!(
                    "{} does not divide image_size {}; valid: a divisor of it",
                    c.patch_size, c.image_size
                )
            },
        )?;
        int_range(c.num_channels, 1, 16, "model.num_channels")
    }

    /// Checks the spec against the image shape the network sees (`None`: no images).
    pub(crate) fn validate_for(&self, input: Option<[usize; 3]>) -> Result<()> {
        let c = self.config();
        let want = [c.num_channels, c.image_size, c.image_size];
        let input = input.ok_or_else(|| no_images("vit"))?;
        check(input == want, "model.image_size", || {
            format!(
                "this ViT takes {}x{}x{} images but the data set gives {}x{}x{}; set image_size \
                 and num_channels to match, or resize with data.preprocessing.resize",
                want[0], want[1], want[2], input[0], input[1], input[2]
            )
        })
    }

    /// Every tensor's name and shape (Hugging Face's `ViTForImageClassification` names) for
    /// `classes` outputs.
    pub fn state_shapes(&self, classes: usize) -> Vec<(String, Vec<usize>)> {
        let c = self.config();
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let patches = (c.image_size / c.patch_size).pow(2);
        let mut out: Vec<(String, Vec<usize>)> = vec![
            ("vit.embeddings.cls_token".into(), vec![1, 1, h]),
            (
                "vit.embeddings.position_embeddings".into(),
                vec![1, patches + 1, h],
            ),
            (
                "vit.embeddings.patch_embeddings.projection.weight".into(),
                vec![h, c.num_channels, c.patch_size, c.patch_size],
            ),
            (
                "vit.embeddings.patch_embeddings.projection.bias".into(),
                vec![h],
            ),
        ];
        let dense = |out: &mut Vec<_>, name: String, rows: usize, cols: usize, bias: bool| {
            out.push((format!("{name}.weight"), vec![rows, cols]));
            if bias {
                out.push((format!("{name}.bias"), vec![rows]));
            }
        };
        for l in 0..c.layers {
            let p = format!("vit.encoder.layer.{l}");
            for qkv in ["query", "key", "value"] {
                let name = format!("{p}.attention.attention.{qkv}");
                dense(&mut out, name, h, h, c.qkv_bias);
            }
            dense(&mut out, format!("{p}.attention.output.dense"), h, h, true);
            dense(&mut out, format!("{p}.intermediate.dense"), i, h, true);
            dense(&mut out, format!("{p}.output.dense"), h, i, true);
            for norm in ["layernorm_before", "layernorm_after"] {
                out.push((format!("{p}.{norm}.weight"), vec![h]));
                out.push((format!("{p}.{norm}.bias"), vec![h]));
            }
        }
        out.push(("vit.layernorm.weight".into(), vec![h]));
        out.push(("vit.layernorm.bias".into(), vec![h]));
        out.push((VIT_HEAD[0].into(), vec![classes, h]));
        out.push((VIT_HEAD[1].into(), vec![classes]));
        out
    }
}

/// A ConvNeXt by timm's name: candle-transformers builds ConvNeXts only from its named
/// configurations, so the variant is the whole architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvNextSpec {
    /// `convnext_atto` … `convnext_huge` (ConvNeXt, with layer scale `gamma`) or
    /// `convnextv2_atto` … `convnextv2_huge` (ConvNeXt-V2, with global response normalization
    /// `grn` instead).
    pub variant: ConvNextVariant,
}

/// The ConvNeXt sizes candle-transformers configures, in both versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[expect(missing_docs, reason = "each variant is timm's model name")]
pub enum ConvNextVariant {
    ConvnextAtto,
    ConvnextFemto,
    ConvnextPico,
    ConvnextNano,
    ConvnextTiny,
    ConvnextSmall,
    ConvnextBase,
    ConvnextLarge,
    ConvnextXlarge,
    ConvnextHuge,
    Convnextv2Atto,
    Convnextv2Femto,
    Convnextv2Pico,
    Convnextv2Nano,
    Convnextv2Tiny,
    Convnextv2Small,
    Convnextv2Base,
    Convnextv2Large,
    Convnextv2Xlarge,
    Convnextv2Huge,
}

/// The size of a ConvNeXt, whichever its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvNextSize {
    /// Blocks 2-2-6-2, channels 40-320, pointwise convolutions as 1×1 convs.
    Atto,
    /// Blocks 2-2-6-2, channels 48-384, 1×1 convs.
    Femto,
    /// Blocks 2-2-6-2, channels 64-512, 1×1 convs.
    Pico,
    /// Blocks 2-2-8-2, channels 80-640, 1×1 convs.
    Nano,
    /// Blocks 3-3-9-3, channels 96-768, linear layers.
    Tiny,
    /// Blocks 3-3-27-3, channels 96-768.
    Small,
    /// Blocks 3-3-27-3, channels 128-1024.
    Base,
    /// Blocks 3-3-27-3, channels 192-1536.
    Large,
    /// Blocks 3-3-27-3, channels 256-2048.
    Xlarge,
    /// Blocks 3-3-27-3, channels 352-2816.
    Huge,
}

impl ConvNextSize {
    /// Blocks per stage, channels per stage, and whether the MLPs are 1×1 convolutions (as in
    /// candle-transformers' `convnext::Config`).
    pub fn layout(self) -> ([usize; 4], [usize; 4], bool) {
        use ConvNextSize::*;
        match self {
            Atto => ([2, 2, 6, 2], [40, 80, 160, 320], true),
            Femto => ([2, 2, 6, 2], [48, 96, 192, 384], true),
            Pico => ([2, 2, 6, 2], [64, 128, 256, 512], true),
            Nano => ([2, 2, 8, 2], [80, 160, 320, 640], true),
            Tiny => ([3, 3, 9, 3], [96, 192, 384, 768], false),
            Small => ([3, 3, 27, 3], [96, 192, 384, 768], false),
            Base => ([3, 3, 27, 3], [128, 256, 512, 1024], false),
            Large => ([3, 3, 27, 3], [192, 384, 768, 1536], false),
            Xlarge => ([3, 3, 27, 3], [256, 512, 1024, 2048], false),
            Huge => ([3, 3, 27, 3], [352, 704, 1408, 2816], false),
        }
    }
}

/// The parameter names of a ConvNeXt that its linear probe replaces.
pub(crate) const CONVNEXT_HEAD: [&str; 2] = ["head.fc.weight", "head.fc.bias"];

/// The smallest image side a ConvNeXt takes: its stem and three downsamplings divide by 32.
pub(crate) const CONVNEXT_MIN_SIDE: usize = 32;

impl ConvNextVariant {
    /// The size, and whether this is ConvNeXt-V2.
    pub fn size(self) -> (ConvNextSize, bool) {
        use ConvNextSize::*;
        use ConvNextVariant::*;
        match self {
            ConvnextAtto => (Atto, false),
            ConvnextFemto => (Femto, false),
            ConvnextPico => (Pico, false),
            ConvnextNano => (Nano, false),
            ConvnextTiny => (Tiny, false),
            ConvnextSmall => (Small, false),
            ConvnextBase => (Base, false),
            ConvnextLarge => (Large, false),
            ConvnextXlarge => (Xlarge, false),
            ConvnextHuge => (Huge, false),
            Convnextv2Atto => (Atto, true),
            Convnextv2Femto => (Femto, true),
            Convnextv2Pico => (Pico, true),
            Convnextv2Nano => (Nano, true),
            Convnextv2Tiny => (Tiny, true),
            Convnextv2Small => (Small, true),
            Convnextv2Base => (Base, true),
            Convnextv2Large => (Large, true),
            Convnextv2Xlarge => (Xlarge, true),
            Convnextv2Huge => (Huge, true),
        }
    }

    /// timm's name, such as `convnext_atto`.
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl ConvNextSpec {
    /// Channels of the features the head reads.
    pub fn feature_width(&self) -> usize {
        self.variant.size().0.layout().1[3]
    }

    /// Checks the spec against the image shape the network sees (`None`: no images).
    pub(crate) fn validate_for(&self, input: Option<[usize; 3]>) -> Result<()> {
        let [c, h, w] = input.ok_or_else(|| no_images("convnext"))?;
        check(c == 3, "dataset", || {
            format!("a ConvNeXt takes RGB images (3 channels); this data set has {c}")
        })?;
        check(
            h >= CONVNEXT_MIN_SIDE && w >= CONVNEXT_MIN_SIDE,
            "data.preprocessing",
            || {
                format!(
                    "a ConvNeXt needs images of at least {CONVNEXT_MIN_SIDE}x{CONVNEXT_MIN_SIDE} \
                     pixels; these are {h}x{w}: resize with data.preprocessing.resize"
                )
            },
        )
    }

    /// Every tensor's name and shape (timm's names) for `classes` outputs.
    pub fn state_shapes(&self, classes: usize) -> Vec<(String, Vec<usize>)> {
        let (size, v2) = self.variant.size();
        let (blocks, channels, conv_mlp) = size.layout();
        let mut out: Vec<(String, Vec<usize>)> = Vec::new();
        let mut push = |name: String, shape: Vec<usize>| out.push((name, shape));
        let c0 = channels[0];
        push("stem.0.weight".into(), vec![c0, 3, 4, 4]);
        push("stem.0.bias".into(), vec![c0]);
        push("stem.1.weight".into(), vec![c0]);
        push("stem.1.bias".into(), vec![c0]);
        for (stage, (&n, &d)) in blocks.iter().zip(&channels).enumerate() {
            let p = format!("stages.{stage}");
            if stage > 0 {
                let half = d / 2;
                push(format!("{p}.downsample.0.weight"), vec![half]);
                push(format!("{p}.downsample.0.bias"), vec![half]);
                push(format!("{p}.downsample.1.weight"), vec![d, half, 2, 2]);
                push(format!("{p}.downsample.1.bias"), vec![d]);
            }
            let pointwise = |rows: usize, cols: usize| {
                if conv_mlp {
                    vec![rows, cols, 1, 1]
                } else {
                    vec![rows, cols]
                }
            };
            for b in 0..n {
                let q = format!("{p}.blocks.{b}");
                push(format!("{q}.conv_dw.weight"), vec![d, 1, 7, 7]);
                push(format!("{q}.conv_dw.bias"), vec![d]);
                if !v2 {
                    push(format!("{q}.gamma"), vec![d]);
                }
                push(format!("{q}.norm.weight"), vec![d]);
                push(format!("{q}.norm.bias"), vec![d]);
                push(format!("{q}.mlp.fc1.weight"), pointwise(4 * d, d));
                push(format!("{q}.mlp.fc1.bias"), vec![4 * d]);
                if v2 {
                    push(format!("{q}.mlp.grn.weight"), vec![4 * d]);
                    push(format!("{q}.mlp.grn.bias"), vec![4 * d]);
                }
                push(format!("{q}.mlp.fc2.weight"), pointwise(d, 4 * d));
                push(format!("{q}.mlp.fc2.bias"), vec![d]);
            }
        }
        let last = channels[3];
        push("head.norm.weight".into(), vec![last]);
        push("head.norm.bias".into(), vec![last]);
        push(CONVNEXT_HEAD[0].into(), vec![classes, last]);
        push(CONVNEXT_HEAD[1].into(), vec![classes]);
        out
    }
}

fn no_images(kind: &str) -> EngineError {
    EngineError::spec(
        "dataset",
        format!(
            "this data set has no images: a {kind} needs image_shape (use an image data set such as 'shapes')"
        ),
    )
}

/// True for the parameters a linear probe of a pretrained backbone trains.
pub(crate) fn is_probe_head(name: &str) -> bool {
    VIT_HEAD.contains(&name) || CONVNEXT_HEAD.contains(&name)
}
