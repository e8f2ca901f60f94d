//! A small convolutional network with torch-style parameter names: `blocks.{i}.conv.{weight,bias}`,
//! `blocks.{i}.bn.{weight,bias,running_mean,running_var}`, `head.{j}.{weight,bias}`,
//! `output.{weight,bias}`. Rows arrive flattened (`C x H x W`) and are reshaped here.
//!
//! Every convolution and pooling goes through [`conv2d`] and [`max_pool`], so faster kernels
//! can replace candle's in one place.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;

use super::init;
use super::mlp::{BatchNorm, Dense, activate, dropout, load_vars};
use super::{Mode, ParamInfo};
use crate::error::Result;
use crate::spec::{Activation, CnnSpec};

/// A convolutional network: blocks of conv → batch norm → activation → max-pool → dropout,
/// then dense layers and a linear classifier.
pub struct Cnn {
    input: [usize; 3],
    blocks: Vec<Block>,
    head: Vec<Dense>,
    output: Dense,
    activation: Activation,
    leaky_slope: f64,
    head_dropout: f32,
    /// A frozen backbone runs in evaluation mode, its output detached, its parameters untrained.
    frozen: bool,
    /// The most values per row of any activation, to size evaluation batches.
    widest: usize,
}

struct Block {
    weight: Var,
    bias: Var,
    batch_norm: Option<BatchNorm>,
    stride: usize,
    padding: usize,
    pool: usize,
    dropout: f32,
}

/// Convolution of `x` `[n, c_in, h, w]` with `weight` `[c_out, c_in, k, k]` plus `bias`,
/// through the project's CPU kernels (im2col/col2im + GEMM in both directions; candle's own
/// convolution off the CPU).
pub(crate) fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let config = kernels::Conv2dConfig {
        stride,
        padding,
        dilation: 1,
    };
    Ok(kernels::conv2d(x, weight, Some(bias), config)?)
}

/// Max-pooling with window and stride `pool`; rows and columns past the last whole window
/// are dropped (as PyTorch does). The project's kernel has a correct backward for any window
/// (candle 0.11's `max_pool2d` backward scales the gradient by 1/pool²).
pub(crate) fn max_pool(x: &Tensor, pool: usize) -> Result<Tensor> {
    if pool == 1 {
        return Ok(x.clone());
    }
    Ok(kernels::max_pool2d(x, pool, pool, 0)?)
}

impl Cnn {
    /// A freshly initialized network for images of shape `input`; the same seed gives the same
    /// weights. Convolution weights are drawn like a dense layer's with fan-in `c_in·k·k`.
    pub fn seeded(
        spec: &CnnSpec,
        input: [usize; 3],
        classes: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let shapes = spec.shapes(input)?;
        let init = spec.resolved_init();
        let gain = init::gain(spec.activation, spec.leaky_relu_slope);
        let mut blocks = Vec::with_capacity(spec.blocks.len());
        let mut c_in = input[0];
        let mut widest = input.iter().product::<usize>();
        for (b, shape) in spec.blocks.iter().zip(&shapes) {
            let fan_in = c_in * b.kernel * b.kernel;
            let (weight, bias) = init::dense(&init, fan_in, b.channels, gain, rng);
            let weight = Var::from_vec(weight, (b.channels, c_in, b.kernel, b.kernel), device)?;
            let bias = Var::from_vec(bias, b.channels, device)?;
            let batch_norm = if b.batch_norm {
                Some(BatchNorm::fresh(b.channels, device)?)
            } else {
                None
            };
            // Before pooling, a block's map is up to pool² times its output.
            widest = widest.max(shape.iter().product::<usize>() * b.pool * b.pool);
            blocks.push(Block {
                weight,
                bias,
                batch_norm,
                stride: b.stride,
                padding: b.padding,
                pool: b.pool,
                dropout: b.dropout as f32,
            });
            c_in = b.channels;
        }
        let mut width_in = shapes.last().map_or(0, |s| s.iter().product());
        let mut head = Vec::with_capacity(spec.head.depth);
        for _ in 0..spec.head.depth {
            head.push(Dense::seeded(
                &init,
                (width_in, spec.head.width),
                gain,
                rng,
                device,
            )?);
            width_in = spec.head.width;
        }
        let output = Dense::seeded(&init, (width_in, classes), 1.0, rng, device)?;
        Ok(Cnn {
            input,
            blocks,
            head,
            output,
            activation: spec.activation,
            leaky_slope: spec.leaky_relu_slope,
            head_dropout: spec.head.dropout as f32,
            frozen: false,
            widest,
        })
    }

    /// A network with the given weights; missing tensors or wrong shapes are listed in the error.
    pub fn from_tensors(
        spec: &CnnSpec,
        input: [usize; 3],
        classes: usize,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = rand::SeedableRng::seed_from_u64(0);
        let model = Cnn::seeded(spec, input, classes, &mut rng, device)?;
        load_vars(&model.state_vars(), tensors, device)?;
        Ok(model)
    }

    /// Logits for a batch of flattened images `[batch, c·h·w]` (or `[batch, c, h, w]`).
    pub fn forward(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let batch = x.dim(0)?;
        let [c, h, w] = self.input;
        let mut x = x.reshape((batch, c, h, w))?;
        let train = matches!(mode, Mode::Train(_)) && !self.frozen;
        for block in &self.blocks {
            x = conv2d(
                &x,
                block.weight.as_tensor(),
                block.bias.as_tensor(),
                block.stride,
                block.padding,
            )?;
            if let Some(bn) = &block.batch_norm {
                x = channel_norm(bn, &x, train)?;
            }
            x = activate(x, self.activation, self.leaky_slope)?;
            x = max_pool(&x, block.pool)?;
            if let (Mode::Train(rng), true) = (&mut *mode, train && block.dropout > 0.0) {
                x = dropout(&x, block.dropout, rng)?;
            }
        }
        if self.frozen {
            x = x.detach();
        }
        let mut h = x.flatten_from(1)?;
        for layer in &self.head {
            h = activate(layer.forward(&h)?, self.activation, self.leaky_slope)?;
            if let (Mode::Train(rng), true) = (&mut *mode, self.head_dropout > 0.0) {
                h = dropout(&h, self.head_dropout, rng)?;
            }
        }
        self.output.forward(&h)
    }

    /// The parameters an optimizer updates, named and in a stable order.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        let mut vars = Vec::new();
        let blocks = if self.frozen {
            &[][..]
        } else {
            &self.blocks[..]
        };
        for (i, block) in blocks.iter().enumerate() {
            vars.push((format!("blocks.{i}.conv.weight"), block.weight.clone()));
            vars.push((format!("blocks.{i}.conv.bias"), block.bias.clone()));
            if let Some(bn) = &block.batch_norm {
                vars.push((format!("blocks.{i}.bn.weight"), bn.weight.clone()));
                vars.push((format!("blocks.{i}.bn.bias"), bn.bias.clone()));
            }
        }
        for (j, layer) in self.head.iter().enumerate() {
            vars.push((format!("head.{j}.weight"), layer.weight.clone()));
            vars.push((format!("head.{j}.bias"), layer.bias.clone()));
        }
        vars.push(("output.weight".into(), self.output.weight.clone()));
        vars.push(("output.bias".into(), self.output.bias.clone()));
        vars
    }

    /// Freezes the blocks (linear probing): evaluation mode, no gradient, not trainable.
    pub(crate) fn freeze_backbone(&mut self) {
        self.frozen = true;
    }

    /// Sets the blocks' tensors (`blocks.*`) from another network's; missing tensors and wrong
    /// shapes are listed in one 422.
    pub(crate) fn load_backbone(
        &self,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<()> {
        let backbone: Vec<(String, Var)> = self
            .state_vars()
            .into_iter()
            .filter(|(name, _)| name.starts_with("blocks."))
            .collect();
        load_vars(&backbone, tensors, device)
    }

    /// Every tensor that defines the network (parameters and running statistics).
    pub(super) fn state_vars(&self) -> Vec<(String, Var)> {
        let mut vars = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            vars.push((format!("blocks.{i}.conv.weight"), block.weight.clone()));
            vars.push((format!("blocks.{i}.conv.bias"), block.bias.clone()));
            if let Some(bn) = &block.batch_norm {
                vars.push((format!("blocks.{i}.bn.weight"), bn.weight.clone()));
                vars.push((format!("blocks.{i}.bn.bias"), bn.bias.clone()));
            }
        }
        vars.extend(
            self.trainable()
                .into_iter()
                .filter(|(name, _)| !name.starts_with("blocks.")),
        );
        for (i, block) in self.blocks.iter().enumerate() {
            if let Some(bn) = &block.batch_norm {
                vars.push((
                    format!("blocks.{i}.bn.running_mean"),
                    bn.running_mean.clone(),
                ));
                vars.push((format!("blocks.{i}.bn.running_var"), bn.running_var.clone()));
            }
        }
        vars
    }

    /// Layer and role of a parameter: layers are numbered blocks first, then the head, then
    /// the output layer; roles are `conv.weight`, `bn.bias`, `weight`, ...
    pub(crate) fn describe(&self, name: &str) -> ParamInfo {
        let parts: Vec<&str> = name.splitn(3, '.').collect();
        let (layer, index, role) = match parts.as_slice() {
            ["blocks", i, role] => (
                format!("blocks.{i}"),
                i.parse().unwrap_or(0),
                role.to_string(),
            ),
            ["head", j, role] => (
                format!("head.{j}"),
                self.blocks.len() + j.parse::<usize>().unwrap_or(0),
                role.to_string(),
            ),
            _ => {
                let (layer, role) = name.split_once('.').unwrap_or((name, ""));
                (
                    layer.to_string(),
                    self.blocks.len() + self.head.len(),
                    role.to_string(),
                )
            }
        };
        ParamInfo { layer, index, role }
    }

    /// The most values per row any activation holds.
    pub fn widest(&self) -> usize {
        self.widest
    }
}

/// Batch normalization per channel of `[n, c, h, w]`, over batch, height and width: the
/// dense layer's [`BatchNorm`] applied to the `[n·h·w, c]` view.
fn channel_norm(bn: &BatchNorm, x: &Tensor, train: bool) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let rows = x.permute((0, 2, 3, 1))?.reshape((n * h * w, c))?;
    let normalized = bn.forward(&rows, train)?;
    Ok(normalized
        .reshape((n, h, w, c))?
        .permute((0, 3, 1, 2))?
        .contiguous()?)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::spec::{ConvBlockSpec, HeadSpec};

    fn spec(batch_norm: bool) -> CnnSpec {
        CnnSpec {
            blocks: vec![
                ConvBlockSpec {
                    channels: 4,
                    batch_norm,
                    dropout: 0.1,
                    ..ConvBlockSpec::default()
                },
                ConvBlockSpec {
                    channels: 6,
                    kernel: 3,
                    stride: 2,
                    padding: 1,
                    pool: 1,
                    batch_norm,
                    dropout: 0.0,
                },
            ],
            head: HeadSpec {
                depth: 1,
                width: 8,
                dropout: 0.2,
            },
            ..CnnSpec::default()
        }
    }

    #[test]
    fn it_trains_round_trips_and_names_its_tensors() {
        let device = Device::Cpu;
        let model = Cnn::seeded(
            &spec(true),
            [3, 9, 9],
            3,
            &mut ChaCha8Rng::seed_from_u64(1),
            &device,
        )
        .unwrap();
        let names: Vec<String> = model.state_vars().into_iter().map(|(n, _)| n).collect();
        assert!(names.contains(&"blocks.0.conv.weight".to_string()));
        assert!(names.contains(&"blocks.1.bn.running_var".to_string()));
        assert!(names.contains(&"head.0.weight".to_string()));
        assert_eq!(model.describe("head.0.bias").index, 2);
        assert_eq!(model.describe("blocks.1.bn.weight").role, "bn.weight");
        let x = Tensor::rand(0f32, 1.0, (5, 243), &device).unwrap();
        let y = Tensor::new(&[0u32, 1, 2, 0, 1], &device).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let logits = model.forward(&x, &mut Mode::Train(&mut rng)).unwrap();
        assert_eq!(logits.dims(), &[5, 3]);
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in model.trainable() {
            assert!(
                grads.get(var.as_tensor()).is_some(),
                "{name} has a gradient"
            );
        }
        let state: HashMap<String, Tensor> = model
            .state_vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().copy().unwrap()))
            .collect();
        let copy = Cnn::from_tensors(&spec(true), [3, 9, 9], 3, &state, &device).unwrap();
        let a = model
            .forward(&x, &mut Mode::Eval)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let b = copy
            .forward(&x, &mut Mode::Eval)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(a, b);
        let err = Cnn::from_tensors(&spec(false), [3, 9, 9], 4, &state, &device)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("output.weight has shape"), "{err}");
    }

    #[test]
    fn pooling_drops_the_ragged_edge_and_backpropagates() {
        let x = Var::from_vec(
            (0..25).map(|v| v as f32).collect(),
            (1, 1, 5, 5),
            &Device::Cpu,
        )
        .unwrap();
        let y = max_pool(x.as_tensor(), 2).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![6.0, 8.0, 16.0, 18.0]
        );
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let ones: Vec<usize> = g
            .iter()
            .enumerate()
            .filter(|(_, v)| **v == 1.0)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(ones, vec![6, 8, 16, 18]);
    }
}
