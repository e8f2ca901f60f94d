//! A trained network loaded for inference, on the path that serves it fastest: the fused MLP
//! where it applies (no per-operation overhead, which dominates at batch size 1), candle's
//! [`Network`] otherwise. The same choice training makes (`training_path::fused_applies`).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::{EngineError, Result};
use crate::fused::FusedMlp;
use crate::spec::ModelSpec;
use crate::{Network, Preprocessing};

/// A network for inference on the CPU, never the weights being trained.
pub enum InferenceNetwork {
    /// A network of candle operations.
    Candle(Network),
    /// A small MLP on the fused path.
    Fused(FusedMlp),
}

impl InferenceNetwork {
    /// The network `spec` describes with the checkpoint's model tensors; an error when they
    /// do not fit it.
    pub fn from_checkpoint(
        spec: &ModelSpec,
        preprocessing: &Preprocessing,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        Self::from_tensors(spec, preprocessing, tensors)
            .map_err(|err| EngineError::Internal(format!("checkpoint does not fit its job: {err}")))
    }

    /// The network `spec` describes with the given tensors (named as a checkpoint or a
    /// torchvision `state_dict` names them); the error lists missing tensors and wrong shapes.
    pub fn from_tensors(
        spec: &ModelSpec,
        preprocessing: &Preprocessing,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let model = Network::from_tensors(spec, preprocessing, tensors, &Device::Cpu)?;
        Ok(match spec {
            ModelSpec::Mlp(mlp) if FusedMlp::supports(mlp) => {
                let (inputs, classes) = (preprocessing.input_width(), preprocessing.labels.len());
                InferenceNetwork::Fused(FusedMlp::from_state(
                    mlp,
                    inputs,
                    classes,
                    &model.state()?,
                    1,
                )?)
            }
            _ => InferenceNetwork::Candle(model),
        })
    }

    /// Raw scores (logits) of `rows` rows of `width` values (row-major): `rows x classes`
    /// values, row-major. Softmax of a row gives [`InferenceNetwork::probabilities`].
    pub fn logits(&self, x: Vec<f32>, rows: usize, width: usize) -> Result<Vec<f32>> {
        match self {
            InferenceNetwork::Candle(model) => {
                let x = Tensor::from_vec(x, (rows, width), &Device::Cpu)?;
                Ok(model
                    .forward(&x, &mut crate::Mode::Eval)?
                    .flatten_all()?
                    .to_vec1::<f32>()?)
            }
            InferenceNetwork::Fused(net) => Ok(net.logits(&x, rows)),
        }
    }

    /// Number of parameters, as PyTorch counts them (batch norm's running statistics are
    /// buffers, not parameters).
    pub fn parameters(&self) -> Result<usize> {
        Ok(self
            .state()?
            .iter()
            .filter(|(name, _)| !is_buffer(name))
            .map(|(_, t)| t.elem_count())
            .sum())
    }

    /// Bytes its tensors take (parameters and buffers, f32).
    pub fn bytes(&self) -> Result<usize> {
        Ok(4 * self
            .state()?
            .iter()
            .map(|(_, t)| t.elem_count())
            .sum::<usize>())
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            InferenceNetwork::Candle(model) => model.state(),
            InferenceNetwork::Fused(net) => net.state(&Device::Cpu),
        }
    }

    /// Class probabilities of `rows` rows of `width` values (row-major), one list per row.
    pub fn probabilities(&self, x: Vec<f32>, rows: usize, width: usize) -> Result<Vec<Vec<f32>>> {
        match self {
            InferenceNetwork::Candle(model) => {
                let x = Tensor::from_vec(x, (rows, width), &Device::Cpu)?;
                Ok(model.probabilities(&x)?.to_vec2::<f32>()?)
            }
            InferenceNetwork::Fused(net) => {
                let classes = net.classes().max(1);
                Ok(net
                    .probabilities(&x, rows)
                    .chunks(classes)
                    .map(<[f32]>::to_vec)
                    .collect())
            }
        }
    }
}

/// Batch norm's running statistics and step counter: state, not parameters.
fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
}
