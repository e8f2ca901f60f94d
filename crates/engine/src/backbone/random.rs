//! Small random weights for a pretrained backbone, under the names its public checkpoints use:
//! what tests and `examples/write_backbone_weights.rs` upload in place of real checkpoints (the
//! service never downloads weights).

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};
use crate::spec::ModelSpec;

/// Every tensor a ViT or ConvNeXt spec expects for `classes` outputs, seeded by `seed`: layer
/// norms and layer scales at 1, biases and ConvNeXt-V2's response normalization at 0, and
/// other weights uniform with unit variance over their fan-in, so the logits stay finite.
pub fn random_weights(
    spec: &ModelSpec,
    classes: usize,
    seed: u64,
) -> Result<Vec<(String, Tensor)>> {
    let shapes = spec.backbone_state_shapes(classes);
    if shapes.is_empty() {
        return Err(EngineError::spec(
            "model.kind",
            "random weights are written for the pretrained backbones: 'vit' or 'convnext'",
        ));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let constant = |v: f32| Some(vec![v; n]);
            let values = if name.contains(".grn.") || name.ends_with(".bias") {
                constant(0.0)
            } else if name.ends_with("gamma") || (shape.len() == 1 && name.ends_with(".weight")) {
                constant(1.0)
            } else {
                None
            };
            let values = values.unwrap_or_else(|| {
                let fan_in = shape.iter().skip(1).product::<usize>().max(1) as f32;
                let bound = (3.0 / fan_in).sqrt();
                (0..n).map(|_| rng.random_range(-bound..bound)).collect()
            });
            Ok((name, Tensor::from_vec(values, shape, &Device::Cpu)?))
        })
        .collect()
}
