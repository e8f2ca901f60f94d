//! The model and optimizer the training loop drives, on one of two paths: candle tensors with
//! autograd (any spec, any device), or the hand-written CPU path of [`super::fused`] for MLPs
//! it supports. Both use the same parameter names, initialization, dropout draws, update rules
//! and checkpoint layout.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::loss::cross_entropy;
use rand_chacha::ChaCha8Rng;

use super::fused::FusedMlp;
use super::grads;
use super::metrics::{Score, count_correct, evaluate};
use super::mlp::ParamInfo;
use super::optim::FlatOptimizer;
use super::{Mode, Network, Optimizer, PreparedData, SplitTensors};
use crate::error::Result;
use crate::spec::{GradClipSpec, JobSpec, ModelSpec, OptimizerSpec, TransferMode};

/// What one optimizer step measured.
pub(crate) struct Step {
    /// Mean loss of the batch (before the update).
    pub loss: f32,
    /// Correctly classified rows of the batch.
    pub correct: f64,
    /// Squared L2 norm of each parameter's gradient (before clipping), in parameter order.
    pub squared_grad_norms: Vec<f64>,
}

/// A model plus its optimizer, on the candle or the fused path.
// One per job, built once and never moved in a loop: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum TrainingPath {
    /// candle tensors and autograd.
    Candle {
        /// The network.
        model: Network,
        /// Its optimizer.
        optimizer: Optimizer,
    },
    /// Flat buffers and hand-written gradients (CPU, MLPs without batch norm or GELU).
    Fused(Box<Fused>),
}

/// The fused path's state, including flat copies of the splits.
pub(crate) struct Fused {
    net: FusedMlp,
    optimizer: FlatOptimizer,
    depth: usize,
    width: usize,
    train: (Vec<f32>, Vec<u32>),
    batch_x: Vec<f32>,
    batch_y: Vec<u32>,
}

/// Whether the fused path may train this spec on this device.
pub(crate) fn fused_applies(spec: &JobSpec, device: &Device) -> bool {
    let ModelSpec::Mlp(mlp) = &spec.model else {
        return false;
    };
    device.is_cpu()
        && FusedMlp::supports(mlp)
        && std::env::var_os("TRAINSERVE_DISABLE_FUSED").is_none()
}

impl TrainingPath {
    /// Wraps `model` with the spec's optimizer, on the fused path when `fused` (which must
    /// only be asked for where [`fused_applies`]).
    pub(crate) fn build(
        spec: &JobSpec,
        data: &PreparedData,
        model: Network,
        fused: bool,
        threads: usize,
    ) -> Result<TrainingPath> {
        let optimizer_spec: &OptimizerSpec = &spec.training.optimizer;
        if !fused {
            // Fine-tuning may train the backbone at a lower rate.
            let scale = spec
                .init
                .as_ref()
                .filter(|init| init.mode == TransferMode::FineTune)
                .map_or(1.0, |init| init.backbone_lr_scale);
            let (backbone, rest): (Vec<_>, Vec<_>) = model
                .trainable()
                .into_iter()
                .partition(|(name, _)| model.is_backbone(name));
            let optimizer =
                Optimizer::grouped(optimizer_spec, vec![(backbone, scale), (rest, 1.0)])?;
            return Ok(TrainingPath::Candle { model, optimizer });
        }
        let (ModelSpec::Mlp(mlp), Network::Mlp(model)) = (&spec.model, model) else {
            return Err(crate::error::EngineError::Internal(
                "the fused path trains MLPs only".into(),
            ));
        };
        let inputs = data.preprocessing.input_width();
        let net = FusedMlp::from_state(mlp, inputs, data.n_classes, &model.state()?, threads)?;
        let params: Vec<(String, usize)> = model
            .trainable()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().elem_count()))
            .collect();
        let optimizer = FlatOptimizer::new(optimizer_spec, &params)?;
        Ok(TrainingPath::Fused(Box::new(Fused {
            net,
            optimizer,
            depth: model.depth(),
            width: inputs,
            train: flat(&data.train)?,
            batch_x: Vec::new(),
            batch_y: Vec::new(),
        })))
    }

    /// Names of the trained parameters, in the order of every per-parameter list.
    pub(crate) fn param_names(&self) -> Vec<String> {
        match self {
            TrainingPath::Candle { optimizer, .. } => {
                optimizer.params().iter().map(|(n, _)| n.clone()).collect()
            }
            TrainingPath::Fused(f) => f.optimizer.param_names().to_vec(),
        }
    }

    /// Layer and role of a parameter.
    pub(crate) fn describe(&self, name: &str) -> ParamInfo {
        match self {
            TrainingPath::Candle { model, .. } => model.describe(name),
            TrainingPath::Fused(f) => ParamInfo::of(name, f.depth),
        }
    }

    /// One step on the training rows `rows` (randomly cropped and flipped with draws from
    /// `augment` when the data asks for it): forward, loss, backward, clipping, update. When
    /// the loss is not finite nothing is updated and the loss is returned for the caller to judge.
    pub(crate) fn step(
        &mut self,
        data: &PreparedData,
        rows: &[u32],
        lr: f64,
        (dropout, augment): (&mut ChaCha8Rng, &mut ChaCha8Rng),
        clip: Option<&GradClipSpec>,
    ) -> Result<Step> {
        match self {
            TrainingPath::Candle { model, optimizer } => {
                let device = data.train.x.device();
                let index = Tensor::from_slice(rows, rows.len(), device)?;
                let x = match &data.augment {
                    None => data.train.x.index_select(&index, 0)?,
                    Some(augmentation) => {
                        let batch = augmentation.batch(rows, augment);
                        let width = batch.len() / rows.len().max(1);
                        Tensor::from_vec(batch, (rows.len(), width), device)?
                    }
                };
                let y = data.train.y.index_select(&index, 0)?;
                let logits = model.forward(&x, &mut Mode::Train(dropout))?;
                let loss = cross_entropy(&logits, &y)?;
                let loss_value = loss.to_scalar::<f32>()?;
                if !loss_value.is_finite() {
                    return Ok(Step {
                        loss: loss_value,
                        correct: 0.0,
                        squared_grad_norms: Vec::new(),
                    });
                }
                let store = loss.backward()?;
                let mut grads: Vec<Option<Tensor>> = optimizer
                    .params()
                    .iter()
                    .map(|(_, var)| store.get(var.as_tensor()).cloned())
                    .collect();
                let squared = grads::squared_norms(&grads)?;
                if let Some(clip) = clip {
                    grads::clip(&mut grads, clip, &squared)?;
                }
                optimizer.step(&grads, lr)?;
                Ok(Step {
                    loss: loss_value,
                    correct: count_correct(&logits, &y)?,
                    squared_grad_norms: squared,
                })
            }
            TrainingPath::Fused(f) => {
                let width = f.width;
                f.batch_x.clear();
                f.batch_y.clear();
                for &r in rows {
                    let r = r as usize;
                    if data.augment.is_none() {
                        f.batch_x
                            .extend_from_slice(&f.train.0[r * width..(r + 1) * width]);
                    }
                    f.batch_y.push(f.train.1[r]);
                }
                if let Some(augmentation) = &data.augment {
                    f.batch_x = augmentation.batch(rows, augment);
                }
                let out = f.net.train_step(&f.batch_x, &f.batch_y, dropout);
                if !out.loss.is_finite() {
                    return Ok(Step {
                        loss: out.loss,
                        correct: 0.0,
                        squared_grad_norms: Vec::new(),
                    });
                }
                let squared: Vec<f64> = f
                    .net
                    .grads
                    .iter()
                    .flat_map(|(gw, gb)| [sum_of_squares(gw), sum_of_squares(gb)])
                    .collect();
                if let Some(clip) = clip {
                    clip_flat(&mut f.net.grads, clip);
                }
                f.optimizer.step(f.net.params_and_grads(), lr);
                Ok(Step {
                    loss: out.loss,
                    correct: out.correct as f64,
                    squared_grad_norms: squared,
                })
            }
        }
    }

    /// Mean loss and accuracy on a split, in evaluation mode.
    pub(crate) fn evaluate(&self, split: &SplitTensors) -> Result<(f64, f64)> {
        match self {
            TrainingPath::Candle { model, .. } => evaluate(model, split),
            TrainingPath::Fused(f) => {
                let (x, y) = flat(split)?;
                let mut score = Score::default();
                // Bounded chunks keep the activations of a large split small.
                let rows_per_chunk = 4096;
                for (xs, ys) in x
                    .chunks(rows_per_chunk * f.width)
                    .zip(y.chunks(rows_per_chunk))
                {
                    score.add(&f.net.logits(xs, ys.len()), ys);
                }
                Ok(score.mean())
            }
        }
    }

    /// Squared L2 norm of every parameter now, in parameter order.
    pub(crate) fn weight_squared_norms(&self) -> Result<Vec<f64>> {
        match self {
            TrainingPath::Candle { optimizer, .. } => {
                let weights: Vec<Option<Tensor>> = optimizer
                    .params()
                    .iter()
                    .map(|(_, var)| Some(var.as_tensor().clone()))
                    .collect();
                grads::squared_norms(&weights)
            }
            TrainingPath::Fused(f) => Ok(f
                .net
                .weights()
                .flat_map(|(w, b)| [sum_of_squares(w), sum_of_squares(b)])
                .collect()),
        }
    }

    /// Every tensor of the model, for a checkpoint.
    pub(crate) fn model_state(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        match self {
            TrainingPath::Candle { model, .. } => model.state(),
            TrainingPath::Fused(f) => f.net.state(device),
        }
    }

    /// The optimizer's state, for a checkpoint.
    pub(crate) fn optimizer_state(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        match self {
            TrainingPath::Candle { optimizer, .. } => optimizer.state(),
            TrainingPath::Fused(f) => f.optimizer.state(device),
        }
    }

    /// Restores the optimizer's state from a checkpoint.
    pub(crate) fn load_optimizer(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        match self {
            TrainingPath::Candle { optimizer, .. } => optimizer.load_state(state),
            TrainingPath::Fused(f) => f.optimizer.load_state(state),
        }
    }
}

fn flat(split: &SplitTensors) -> Result<(Vec<f32>, Vec<u32>)> {
    Ok((
        split.x.flatten_all()?.to_vec1::<f32>()?,
        split.y.to_vec1::<u32>()?,
    ))
}

fn sum_of_squares(values: &[f32]) -> f64 {
    values.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// [`grads::clip`] on flat gradients: each element to ±max_value, then the global norm.
fn clip_flat(grads: &mut [(Vec<f32>, Vec<f32>)], spec: &GradClipSpec) {
    let all = |grads: &mut [(Vec<f32>, Vec<f32>)], f: &mut dyn FnMut(&mut f32)| {
        for (w, b) in grads.iter_mut() {
            w.iter_mut().chain(b.iter_mut()).for_each(&mut *f);
        }
    };
    if let Some(max_value) = spec.max_value {
        let m = max_value as f32;
        all(grads, &mut |g| *g = g.clamp(-m, m));
    }
    let squared = || {
        grads
            .iter()
            .map(|(w, b)| sum_of_squares(w) + sum_of_squares(b))
            .sum::<f64>()
    };
    if spec.max_norm.is_some()
        && let Some(scale) = grads::norm_scale(spec, squared())
    {
        let scale = scale as f32;
        all(grads, &mut |g| *g *= scale);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
        serde_json::from_slice(bytes)
    }
    use crate::prepare;
    use data::{RegionsParams, regions};

    #[test]
    fn both_paths_train_the_same_network_the_same_way() {
        let spec: JobSpec = parse_json(
            br#"{"dataset": "regions", "model": {"kind": "mlp", "depth": 3, "width": 16, "activation": "tanh", "dropout": 0.1},
                 "training": {"optimizer": {"kind": "rmsprop", "lr": 0.003, "momentum": 0.5}, "grad_clip": {"max_norm": 1.0}}}"#,
        )
        .unwrap();
        let table = regions(&RegionsParams {
            samples: 400,
            ..RegionsParams::default()
        });
        let data = prepare(&table, &spec.data, &Device::Cpu).unwrap();
        let model = || {
            Network::seeded(
                &spec.model,
                &data.preprocessing,
                &mut ChaCha8Rng::seed_from_u64(1),
                &Device::Cpu,
            )
            .unwrap()
        };
        let mut candle = TrainingPath::build(&spec, &data, model(), false, 1).unwrap();
        let mut fused = TrainingPath::build(&spec, &data, model(), true, 1).unwrap();
        assert!(
            matches!(fused, TrainingPath::Fused(_))
                && matches!(candle, TrainingPath::Candle { .. })
        );
        let (mut rng_a, mut rng_b) = (ChaCha8Rng::seed_from_u64(5), ChaCha8Rng::seed_from_u64(5));
        let mut unused = ChaCha8Rng::seed_from_u64(0);
        let clip = spec.training.grad_clip.as_ref();
        for step in 0..30u32 {
            let rows: Vec<u32> = (0..16)
                .map(|i| (step * 16 + i) % data.train.len as u32)
                .collect();
            let a = candle
                .step(&data, &rows, 0.003, (&mut rng_a, &mut unused), clip)
                .unwrap();
            let b = fused
                .step(&data, &rows, 0.003, (&mut rng_b, &mut unused), clip)
                .unwrap();
            assert!(
                (a.loss - b.loss).abs() < 1e-3,
                "step {step}: {} vs {}",
                a.loss,
                b.loss
            );
            assert_eq!(a.correct, b.correct, "step {step}");
            for (x, y) in a.squared_grad_norms.iter().zip(&b.squared_grad_norms) {
                assert!(
                    (x - y).abs() <= 1e-3 * x.max(1e-6),
                    "step {step}: grad norm² {x} vs {y}"
                );
            }
        }
        let (la, aa) = candle.evaluate(&data.val).unwrap();
        let (lb, ab) = fused.evaluate(&data.val).unwrap();
        assert!(
            (la - lb).abs() < 1e-3 && (aa - ab).abs() < 0.01,
            "{la} {aa} vs {lb} {ab}"
        );
        assert_eq!(candle.param_names(), fused.param_names());
        let wa = candle.weight_squared_norms().unwrap();
        let wb = fused.weight_squared_norms().unwrap();
        assert!(
            wa.iter()
                .zip(&wb)
                .all(|(x, y)| (x - y).abs() <= 1e-3 * x.max(1e-6))
        );
    }
}
