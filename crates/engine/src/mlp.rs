use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::init;
use crate::error::{EngineError, Result};
use crate::spec::{Activation, InitSpec, MlpSpec};

/// Whether a forward pass trains (batch statistics, dropout) or evaluates.
pub enum Mode<'a> {
    /// Training: batch normalization uses and updates batch statistics; dropout draws from the generator.
    Train(&'a mut ChaCha8Rng),
    /// Evaluation: running statistics, no dropout.
    Eval,
}

/// A multi-layer perceptron with torch-style parameter names: `hidden.{i}.weight`,
/// `hidden.{i}.bias`, `hidden.{i}.bn.{weight,bias,running_mean,running_var}`, `output.{weight,bias}`.
pub struct Mlp {
    hidden: Vec<Hidden>,
    output: Dense,
    activation: Activation,
    leaky_slope: f64,
    dropout: f32,
}

/// Where a parameter tensor sits in the network, for people reading per-layer measurements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParamInfo {
    /// The layer's name: `hidden.3` or `output`.
    pub layer: String,
    /// The layer's position: 0-based for hidden layers, `depth` for the output layer.
    pub index: usize,
    /// The tensor's role in the layer: `weight`, `bias`, `bn.weight` or `bn.bias`.
    pub role: String,
}

impl ParamInfo {
    /// Layer, index and role of a parameter named like `hidden.3.bn.weight` in a network of
    /// `depth` hidden layers.
    pub(crate) fn of(name: &str, depth: usize) -> ParamInfo {
        let (layer, role) = match name.strip_prefix("hidden.") {
            Some(rest) => match rest.split_once('.') {
                Some((index, role)) => (format!("hidden.{index}"), role),
                None => (name.to_string(), ""),
            },
            None => match name.split_once('.') {
                Some((layer, role)) => (layer.to_string(), role),
                None => (name.to_string(), ""),
            },
        };
        let index = layer
            .strip_prefix("hidden.")
            .and_then(|i| i.parse().ok())
            .unwrap_or(depth);
        ParamInfo {
            layer,
            index,
            role: role.to_string(),
        }
    }
}

/// A dense layer `y = x Wᵀ + b`.
pub(super) struct Dense {
    pub(super) weight: Var,
    pub(super) bias: Var,
}

struct Hidden {
    dense: Dense,
    batch_norm: Option<BatchNorm>,
}

/// Batch normalization over the rows of `[batch, features]`.
pub(super) struct BatchNorm {
    pub(super) weight: Var,
    pub(super) bias: Var,
    pub(super) running_mean: Var,
    pub(super) running_var: Var,
}

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

impl Dense {
    pub(super) fn seeded(
        init: &InitSpec,
        (inputs, outputs): (usize, usize),
        gain: f64,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let (weight, bias) = init::dense(init, inputs, outputs, gain, rng);
        let weight = Var::from_vec(weight, (outputs, inputs), device)?;
        let bias = Var::from_vec(bias, outputs, device)?;
        Ok(Dense { weight, bias })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.as_tensor().t()?)?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

impl BatchNorm {
    pub(super) fn fresh(width: usize, device: &Device) -> Result<Self> {
        Ok(BatchNorm {
            weight: Var::ones(width, DType::F32, device)?,
            bias: Var::zeros(width, DType::F32, device)?,
            running_mean: Var::zeros(width, DType::F32, device)?,
            running_var: Var::ones(width, DType::F32, device)?,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let batch = x.dim(0)?;
        // One sample has no batch statistics (its variance is 0 and n/(n-1) is undefined), so a
        // batch of one is normalized with the running statistics, which it then leaves alone.
        let (mean, var) = if train && batch > 1 {
            let mean = x.mean_keepdim(0)?;
            let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
            let unbiased = (batch as f64) / (batch as f64 - 1.0);
            let new_mean = ((self.running_mean.as_tensor() * (1.0 - BN_MOMENTUM))?
                + (mean.detach().squeeze(0)? * BN_MOMENTUM)?)?;
            let new_var = ((self.running_var.as_tensor() * (1.0 - BN_MOMENTUM))?
                + (var.detach().squeeze(0)? * (BN_MOMENTUM * unbiased))?)?;
            self.running_mean.set(&new_mean)?;
            self.running_var.set(&new_var)?;
            (mean, var)
        } else {
            (
                self.running_mean.as_tensor().unsqueeze(0)?,
                self.running_var.as_tensor().unsqueeze(0)?,
            )
        };
        let normalized = x
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        Ok(normalized
            .broadcast_mul(self.weight.as_tensor())?
            .broadcast_add(self.bias.as_tensor())?)
    }
}

impl Mlp {
    /// A freshly initialized network; the same seed gives the same weights.
    pub fn seeded(
        spec: &MlpSpec,
        inputs: usize,
        classes: usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<Self> {
        let init = spec.resolved_init();
        let gain = init::gain(spec.activation, spec.leaky_relu_slope);
        let mut hidden = Vec::with_capacity(spec.depth);
        let mut width_in = inputs;
        for _ in 0..spec.depth {
            let dense = Dense::seeded(&init, (width_in, spec.width), gain, rng, device)?;
            let batch_norm = if spec.batch_norm {
                Some(BatchNorm::fresh(spec.width, device)?)
            } else {
                None
            };
            hidden.push(Hidden { dense, batch_norm });
            width_in = spec.width;
        }
        let output = Dense::seeded(&init, (width_in, classes), 1.0, rng, device)?;
        Ok(Mlp {
            hidden,
            output,
            activation: spec.activation,
            leaky_slope: spec.leaky_relu_slope,
            dropout: spec.dropout as f32,
        })
    }

    /// A network with the given weights; missing tensors or wrong shapes are listed in the error.
    pub fn from_tensors(
        spec: &MlpSpec,
        inputs: usize,
        classes: usize,
        tensors: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let mut rng = rand::SeedableRng::seed_from_u64(0);
        let model = Mlp::seeded(spec, inputs, classes, &mut rng, device)?;
        load_vars(&model.state_vars(), tensors, device)?;
        Ok(model)
    }

    /// Logits for a batch of rows `[batch, inputs]`.
    pub fn forward(&self, x: &Tensor, mode: &mut Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.hidden {
            h = layer.dense.forward(&h)?;
            if let Some(bn) = &layer.batch_norm {
                h = bn.forward(&h, matches!(mode, Mode::Train(_)))?;
            }
            h = activate(h, self.activation, self.leaky_slope)?;
            if let (Mode::Train(rng), true) = (&mut *mode, self.dropout > 0.0) {
                h = dropout(&h, self.dropout, rng)?;
            }
        }
        self.output.forward(&h)
    }

    /// Class probabilities in evaluation mode.
    pub fn probabilities(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(
            &self.forward(x, &mut Mode::Eval)?,
            D::Minus1,
        )?)
    }

    /// The parameters an optimizer updates, named and in a stable order.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        let mut vars = Vec::new();
        for (i, layer) in self.hidden.iter().enumerate() {
            vars.push((format!("hidden.{i}.weight"), layer.dense.weight.clone()));
            vars.push((format!("hidden.{i}.bias"), layer.dense.bias.clone()));
            if let Some(bn) = &layer.batch_norm {
                vars.push((format!("hidden.{i}.bn.weight"), bn.weight.clone()));
                vars.push((format!("hidden.{i}.bn.bias"), bn.bias.clone()));
            }
        }
        vars.push(("output.weight".into(), self.output.weight.clone()));
        vars.push(("output.bias".into(), self.output.bias.clone()));
        vars
    }

    /// Where the parameter called `name` (as in [`Mlp::trainable`]) sits in the network.
    pub(crate) fn describe(&self, name: &str) -> ParamInfo {
        ParamInfo::of(name, self.hidden.len())
    }

    /// Number of hidden layers.
    pub fn depth(&self) -> usize {
        self.hidden.len()
    }

    /// The most values per row any layer takes or gives (inputs, width or classes).
    pub fn widest(&self) -> usize {
        let (outputs, inputs) = self.output.weight.as_tensor().dims2().unwrap_or((0, 0));
        let first_inputs = self
            .hidden
            .first()
            .and_then(|h| h.dense.weight.as_tensor().dims2().ok())
            .map_or(0, |(_, i)| i);
        outputs.max(inputs).max(first_inputs)
    }

    /// Every tensor that defines the network (parameters and running statistics).
    fn state_vars(&self) -> Vec<(String, Var)> {
        let mut vars = self.trainable();
        for (i, layer) in self.hidden.iter().enumerate() {
            if let Some(bn) = &layer.batch_norm {
                vars.push((
                    format!("hidden.{i}.bn.running_mean"),
                    bn.running_mean.clone(),
                ));
                vars.push((format!("hidden.{i}.bn.running_var"), bn.running_var.clone()));
            }
        }
        vars
    }

    /// A copy of every tensor that defines the network, for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.state_vars()
            .into_iter()
            .map(|(name, var)| Ok((name, var.as_tensor().copy()?)))
            .collect()
    }
}

/// Sets each variable from the tensor of its name; missing tensors and wrong shapes are listed
/// in one 422 on `weights`.
pub(super) fn load_vars(
    vars: &[(String, Var)],
    tensors: &HashMap<String, Tensor>,
    device: &Device,
) -> Result<()> {
    let mut problems = Vec::new();
    for (name, var) in vars {
        match tensors.get(name) {
            None => problems.push(format!("{name} is missing")),
            Some(t) if t.dims() != var.dims() => problems.push(format!(
                "{name} has shape {:?}, expected {:?}",
                t.dims(),
                var.dims()
            )),
            Some(t) => var.set(&t.to_dtype(DType::F32)?.to_device(device)?)?,
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::spec("weights", problems.join("; ")))
    }
}

/// Applies a non-linearity.
pub(super) fn activate(h: Tensor, activation: Activation, leaky_slope: f64) -> Result<Tensor> {
    Ok(match activation {
        Activation::Relu => h.relu()?,
        Activation::LeakyRelu => candle_nn::ops::leaky_relu(&h, leaky_slope)?,
        Activation::Gelu => h.gelu_erf()?,
        Activation::Tanh => h.tanh()?,
        Activation::Sigmoid => candle_nn::ops::sigmoid(&h)?,
        Activation::Identity => h,
    })
}

/// Inverted dropout with a mask drawn from the job's seeded dropout stream.
pub(super) fn dropout(h: &Tensor, p: f32, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..h.elem_count())
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    Ok((h * Tensor::from_vec(mask, h.shape(), h.device())?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spec(batch_norm: bool) -> MlpSpec {
        MlpSpec {
            depth: 2,
            width: 8,
            batch_norm,
            ..MlpSpec::default()
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_weights() {
        let a = Mlp::seeded(
            &spec(false),
            4,
            3,
            &mut ChaCha8Rng::seed_from_u64(1),
            &Device::Cpu,
        )
        .unwrap();
        let b = Mlp::seeded(
            &spec(false),
            4,
            3,
            &mut ChaCha8Rng::seed_from_u64(1),
            &Device::Cpu,
        )
        .unwrap();
        for ((_, x), (_, y)) in a.state().unwrap().iter().zip(b.state().unwrap().iter()) {
            assert_eq!(
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap()
            );
        }
    }

    #[test]
    fn a_state_round_trips_through_from_tensors() {
        let model = Mlp::seeded(
            &spec(true),
            4,
            3,
            &mut ChaCha8Rng::seed_from_u64(2),
            &Device::Cpu,
        )
        .unwrap();
        let x = Tensor::randn(0f32, 1.0, (5, 4), &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        model.forward(&x, &mut Mode::Train(&mut rng)).unwrap(); // moves the running statistics
        let state: HashMap<String, Tensor> = model.state().unwrap().into_iter().collect();
        let copy = Mlp::from_tensors(&spec(true), 4, 3, &state, &Device::Cpu).unwrap();
        let a = model
            .probabilities(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = copy
            .probabilities(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn missing_and_misshapen_tensors_are_listed() {
        let model = Mlp::seeded(
            &spec(false),
            4,
            3,
            &mut ChaCha8Rng::seed_from_u64(2),
            &Device::Cpu,
        )
        .unwrap();
        let mut state: HashMap<String, Tensor> = model.state().unwrap().into_iter().collect();
        state.remove("output.bias");
        state.insert(
            "hidden.0.weight".into(),
            Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
        );
        let message = Mlp::from_tensors(&spec(false), 4, 3, &state, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(message.contains("output.bias is missing"), "{message}");
        assert!(
            message.contains("hidden.0.weight has shape [2, 2]"),
            "{message}"
        );
    }

    #[test]
    fn batch_norm_with_a_single_sample_stays_finite() {
        let model = Mlp::seeded(
            &spec(true),
            4,
            3,
            &mut ChaCha8Rng::seed_from_u64(3),
            &Device::Cpu,
        )
        .unwrap();
        let x = Tensor::randn(0f32, 1.0, (1, 4), &Device::Cpu).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let y = model.forward(&x, &mut Mode::Train(&mut rng)).unwrap();
        assert!(
            y.flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .all(|v| v.is_finite())
        );
    }
}
