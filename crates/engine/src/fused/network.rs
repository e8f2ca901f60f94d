use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::error::{EngineError, Result};
use crate::spec::{Activation, MlpSpec};
use kernels::dense as matmul;

/// One dense layer: `weight` is `[outputs × inputs]` row-major, as in torch and `Mlp`.
struct Dense {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

/// An MLP whose forward and backward passes are written by hand over flat buffers.
pub struct FusedMlp {
    layers: Vec<Dense>,
    activation: Activation,
    leaky_slope: f32,
    dropout: f32,
    threads: usize,
    // Per-step buffers, kept to avoid allocating every step.
    activations: Vec<Vec<f32>>,
    masks: Vec<Vec<f32>>,
    delta: Vec<f32>,
    delta_in: Vec<f32>,
    /// Gradients of the last step, per layer: (weight, bias).
    pub grads: Vec<(Vec<f32>, Vec<f32>)>,
}

/// What one training step measured.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StepOutput {
    /// Mean cross-entropy over the batch.
    pub loss: f32,
    /// Correctly classified rows of the batch (argmax of the logits).
    pub correct: usize,
}

impl FusedMlp {
    /// True when this path implements everything the spec asks for.
    pub fn supports(spec: &MlpSpec) -> bool {
        !spec.batch_norm && spec.activation != Activation::Gelu
    }

    /// Builds the network from named tensors as `Mlp::state` produces them.
    pub fn from_state(
        spec: &MlpSpec,
        inputs: usize,
        classes: usize,
        state: &[(String, Tensor)],
        threads: usize,
    ) -> Result<Self> {
        if !Self::supports(spec) {
            return Err(EngineError::Internal(
                "the fused path has no batch normalization; this is a bug".into(),
            ));
        }
        let find = |name: &str| -> Result<Vec<f32>> {
            let (_, tensor) = state.iter().find(|(n, _)| n == name).ok_or_else(|| {
                EngineError::Internal(format!("{name} is missing from the model state"))
            })?;
            Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
        };
        let mut layers = Vec::with_capacity(spec.depth + 1);
        let mut width_in = inputs;
        for i in 0..=spec.depth {
            let (prefix, outputs) = if i < spec.depth {
                (format!("hidden.{i}"), spec.width)
            } else {
                ("output".to_string(), classes)
            };
            let weight = find(&format!("{prefix}.weight"))?;
            let bias = find(&format!("{prefix}.bias"))?;
            if weight.len() != outputs * width_in || bias.len() != outputs {
                return Err(EngineError::Internal(format!(
                    "{prefix} has the wrong shape for this spec"
                )));
            }
            layers.push(Dense {
                weight,
                bias,
                inputs: width_in,
                outputs,
            });
            width_in = outputs;
        }
        let grads = layers
            .iter()
            .map(|l| (vec![0.0; l.weight.len()], vec![0.0; l.bias.len()]))
            .collect();
        Ok(FusedMlp {
            activations: vec![Vec::new(); layers.len()],
            masks: vec![Vec::new(); layers.len()],
            layers,
            activation: spec.activation,
            leaky_slope: spec.leaky_relu_slope as f32,
            dropout: spec.dropout as f32,
            threads: threads.max(1),
            delta: Vec::new(),
            delta_in: Vec::new(),
            grads,
        })
    }

    /// Named tensors in `Mlp`'s layout, for checkpoints.
    pub fn state(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(self.layers.len() * 2);
        for (i, layer) in self.layers.iter().enumerate() {
            let prefix = self.layer_name(i);
            out.push((
                format!("{prefix}.weight"),
                Tensor::from_slice(&layer.weight, (layer.outputs, layer.inputs), device)?,
            ));
            out.push((
                format!("{prefix}.bias"),
                Tensor::from_slice(&layer.bias, layer.outputs, device)?,
            ));
        }
        Ok(out)
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.layers.last().map_or(0, |l| l.outputs)
    }

    /// Each layer's (weight, bias), in order.
    pub fn weights(&self) -> impl Iterator<Item = (&[f32], &[f32])> {
        self.layers
            .iter()
            .map(|l| (l.weight.as_slice(), l.bias.as_slice()))
    }

    /// `hidden.{i}` or `output`.
    pub(crate) fn layer_name(&self, i: usize) -> String {
        if i + 1 == self.layers.len() {
            "output".into()
        } else {
            format!("hidden.{i}")
        }
    }

    /// Parameters and their gradients, in `Mlp::trainable` order (weight, bias per layer).
    pub(crate) fn params_and_grads(&mut self) -> impl Iterator<Item = (&mut [f32], &[f32])> {
        self.layers
            .iter_mut()
            .zip(self.grads.iter())
            .flat_map(|(layer, (gw, gb))| {
                [
                    (layer.weight.as_mut_slice(), gw.as_slice()),
                    (layer.bias.as_mut_slice(), gb.as_slice()),
                ]
            })
    }

    fn activate(&self, z: &mut [f32]) {
        match self.activation {
            Activation::Relu => z.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Tanh => z.iter_mut().for_each(|v| *v = v.tanh()),
            Activation::Sigmoid => z.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp())),
            Activation::LeakyRelu => {
                let slope = self.leaky_slope;
                z.iter_mut().for_each(|v| {
                    if *v < 0.0 {
                        *v *= slope
                    }
                })
            }
            Activation::Identity => {}
            // `supports` keeps GELU (whose derivative needs the pre-activation) off this path.
            Activation::Gelu => {}
        }
    }

    // d(activation)/dz expressed through the activation's output a (relu'(0) = 0, as in PyTorch).
    fn backprop_activation(&self, delta: &mut [f32], a: &[f32]) {
        match self.activation {
            Activation::Relu => delta.iter_mut().zip(a).for_each(|(d, a)| {
                if *a <= 0.0 {
                    *d = 0.0
                }
            }),
            Activation::Tanh => delta.iter_mut().zip(a).for_each(|(d, a)| *d *= 1.0 - a * a),
            Activation::Sigmoid => delta
                .iter_mut()
                .zip(a)
                .for_each(|(d, a)| *d *= a * (1.0 - a)),
            Activation::LeakyRelu => {
                let slope = self.leaky_slope;
                delta.iter_mut().zip(a).for_each(|(d, a)| {
                    if *a < 0.0 {
                        *d *= slope
                    }
                })
            }
            Activation::Identity | Activation::Gelu => {}
        }
    }

    /// Logits `[batch × classes]` in evaluation mode (no dropout).
    pub fn logits(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let mut input = x.to_vec();
        for (i, layer) in self.layers.iter().enumerate() {
            let mut z = Vec::with_capacity(batch * layer.outputs);
            for _ in 0..batch {
                z.extend_from_slice(&layer.bias);
            }
            matmul::a_bt(
                &mut z,
                &input,
                &layer.weight,
                batch,
                layer.outputs,
                layer.inputs,
                true,
                self.threads,
            );
            if i + 1 < self.layers.len() {
                self.activate(&mut z);
            }
            input = z;
        }
        input
    }

    /// Class probabilities `[batch × classes]` in evaluation mode.
    pub fn probabilities(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let classes = self.classes();
        let mut out = self.logits(x, batch);
        for row in out.chunks_mut(classes.max(1)) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            row.iter_mut().for_each(|v| *v = (*v - max).exp());
            let sum: f32 = row.iter().sum();
            row.iter_mut().for_each(|v| *v /= sum);
        }
        out
    }

    /// One training step on a batch: forward with dropout, softmax cross-entropy, backward.
    /// Leaves the gradients in `self.grads`; the caller's optimizer applies them.
    pub(crate) fn train_step(&mut self, x: &[f32], y: &[u32], rng: &mut ChaCha8Rng) -> StepOutput {
        let batch = y.len();
        let last = self.layers.len() - 1;
        // Forward, keeping every layer's output.
        for i in 0..self.layers.len() {
            let (before, rest) = self.activations.split_at_mut(i);
            let input: &[f32] = if i == 0 { x } else { &before[i - 1] };
            let layer = &self.layers[i];
            let z = &mut rest[0];
            z.clear();
            for _ in 0..batch {
                z.extend_from_slice(&layer.bias);
            }
            matmul::a_bt(
                z,
                input,
                &layer.weight,
                batch,
                layer.outputs,
                layer.inputs,
                true,
                self.threads,
            );
            if i < last {
                let mut z = std::mem::take(&mut self.activations[i]);
                self.activate(&mut z);
                if self.dropout > 0.0 {
                    // The same draws, in the same order, as `Mlp`'s dropout.
                    let keep = 1.0 / (1.0 - self.dropout);
                    let mask = &mut self.masks[i];
                    mask.clear();
                    mask.extend((0..z.len()).map(|_| {
                        if rng.random::<f32>() < self.dropout {
                            0.0
                        } else {
                            keep
                        }
                    }));
                    z.iter_mut().zip(mask.iter()).for_each(|(v, m)| *v *= m);
                }
                self.activations[i] = z;
            }
        }
        // Softmax cross-entropy and its gradient with respect to the logits.
        let classes = self.layers[last].outputs;
        let logits = &self.activations[last];
        self.delta.clear();
        self.delta.resize(batch * classes, 0.0);
        let (mut loss, mut correct) = (0f64, 0usize);
        for r in 0..batch {
            let row = &logits[r * classes..(r + 1) * classes];
            let (argmax, max) =
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |acc, (j, &v)| if v > acc.1 { (j, v) } else { acc },
                    );
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            let target = y[r] as usize;
            loss += f64::from(max + sum.ln() - row[target]);
            correct += usize::from(argmax == target);
            let d = &mut self.delta[r * classes..(r + 1) * classes];
            for j in 0..classes {
                d[j] = ((row[j] - max).exp() / sum - if j == target { 1.0 } else { 0.0 })
                    / batch as f32;
            }
        }
        // Backward.
        for i in (0..self.layers.len()).rev() {
            let layer = &self.layers[i];
            let input: &[f32] = if i == 0 { x } else { &self.activations[i - 1] };
            let (gw, gb) = &mut self.grads[i];
            matmul::at_b(
                gw,
                &self.delta,
                input,
                layer.outputs,
                layer.inputs,
                batch,
                self.threads,
            );
            gb.iter_mut().for_each(|g| *g = 0.0);
            for r in 0..batch {
                gb.iter_mut()
                    .zip(&self.delta[r * layer.outputs..(r + 1) * layer.outputs])
                    .for_each(|(g, d)| *g += d);
            }
            if i > 0 {
                self.delta_in.clear();
                self.delta_in.resize(batch * layer.inputs, 0.0);
                matmul::a_b(
                    &mut self.delta_in,
                    &self.delta,
                    &layer.weight,
                    batch,
                    layer.inputs,
                    layer.outputs,
                    self.threads,
                );
                if self.dropout > 0.0 {
                    self.delta_in
                        .iter_mut()
                        .zip(&self.masks[i - 1])
                        .for_each(|(d, m)| *d *= m);
                }
                let mut delta = std::mem::take(&mut self.delta_in);
                // With dropout the stored activation is masked; zeros stay zeros, and for
                // tanh/sigmoid the mask already zeroed the gradient of dropped units.
                self.backprop_activation_masked(&mut delta, i - 1);
                self.delta_in = std::mem::replace(&mut self.delta, delta);
            }
        }
        StepOutput {
            loss: (loss / batch as f64) as f32,
            correct,
        }
    }

    fn backprop_activation_masked(&self, delta: &mut [f32], layer: usize) {
        let a = &self.activations[layer];
        if self.dropout > 0.0 {
            // Undo the mask's scaling to recover the activation's own output.
            let mask = &self.masks[layer];
            let unmasked: Vec<f32> = a
                .iter()
                .zip(mask)
                .map(|(v, m)| if *m == 0.0 { 0.0 } else { v / m })
                .collect();
            self.backprop_activation(delta, &unmasked);
        } else {
            self.backprop_activation(delta, a);
        }
    }
}

#[cfg(test)]
mod tests;
