//! The optimizer of the fused MLP path, over flat buffers: the update rules of
//! [`super::rules`] and the checkpoint form of [`super::state`], as [`super::Optimizer`] has
//! them, so a checkpoint written by one path resumes on the other.

use std::collections::HashMap;

use candle_core::{Device, Shape, Tensor};

use super::rules::Rule;
use super::state::{Buffers, OptimizerState, Placement};
use crate::error::Result;
use crate::spec::OptimizerSpec;

/// The most buffers a rule keeps per parameter (centered RMSprop with momentum).
const MAX_BUFFERS: usize = 3;

/// Optimizer state per parameter tensor, in the order of `FusedMlp::params_and_grads`.
pub(crate) struct FlatOptimizer {
    state: OptimizerState,
    sizes: Vec<usize>,
}

impl FlatOptimizer {
    /// Fresh state for parameters with these names and sizes.
    pub(crate) fn new(spec: &OptimizerSpec, params: &[(String, usize)]) -> Result<Self> {
        let placements = params
            .iter()
            .map(|(name, size)| (name.clone(), Placement::Host(*size)))
            .collect();
        Ok(FlatOptimizer {
            state: OptimizerState::new(Rule::new(spec), placements)?,
            sizes: params.iter().map(|(_, size)| *size).collect(),
        })
    }

    /// Applies one update with learning rate `lr`; `params` yields (parameter, gradient) in
    /// construction order.
    pub(crate) fn step<'a>(
        &mut self,
        params: impl Iterator<Item = (&'a mut [f32], &'a [f32])>,
        lr: f64,
    ) {
        self.state.step += 1;
        let constants = self.state.rule.at(self.state.step, lr);
        for ((p, g), buffers) in params.zip(&mut self.state.buffers) {
            let Buffers::Host(host) = buffers else {
                continue;
            };
            // A fixed array of handles: no allocation on a step of a small MLP.
            let count = host.len();
            let mut handles: [&mut [f32]; MAX_BUFFERS] = Default::default();
            for (handle, buffer) in handles.iter_mut().zip(host.iter_mut()) {
                *handle = buffer.as_mut_slice();
            }
            constants.apply(p, g, &mut handles[..count]);
        }
    }

    /// The parameters' names, in construction order.
    pub(crate) fn param_names(&self) -> &[String] {
        &self.state.names
    }

    /// State as named tensors, as [`super::Optimizer::state`] names them.
    pub(crate) fn state(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        let shapes: Vec<Shape> = self.sizes.iter().map(|&n| Shape::from(n)).collect();
        self.state.tensors(&shapes, device)
    }

    /// Restores state written by [`FlatOptimizer::state`] or [`super::Optimizer::state`].
    pub(crate) fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.state.load(state)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;

    fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
        serde_json::from_slice(bytes)
    }
    use crate::Optimizer;
    use candle_core::Device;

    fn spec(json: &str) -> OptimizerSpec {
        parse_json(json.as_bytes()).unwrap()
    }

    fn run_both(spec: OptimizerSpec) {
        // loss = Σ w² on a 3-vector, stepped by both implementations.
        let start = [1.0f32, -0.5, 2.0];
        let var = Var::from_slice(&start, 3, &Device::Cpu).unwrap();
        let mut reference = Optimizer::new(&spec, vec![("w".into(), var.clone())]).unwrap();
        let mut flat = FlatOptimizer::new(&spec, &[("w".into(), 3)]).unwrap();
        let mut w = start.to_vec();
        for _ in 0..5 {
            let grads = var
                .as_tensor()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            reference
                .step(&[grads.get(var.as_tensor()).cloned()], 0.05)
                .unwrap();
            let g: Vec<f32> = w.iter().map(|x| 2.0 * x).collect();
            flat.step(std::iter::once((w.as_mut_slice(), g.as_slice())), 0.05);
        }
        let expected = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            w.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5),
            "{spec:?}: {w:?} vs {expected:?}"
        );
        // A checkpoint of either implementation loads into the flat one.
        let theirs: HashMap<String, Tensor> = reference.state().unwrap().into_iter().collect();
        FlatOptimizer::new(&spec, &[("w".into(), 3)])
            .unwrap()
            .load_state(&theirs)
            .unwrap();
        let saved: HashMap<String, Tensor> =
            flat.state(&Device::Cpu).unwrap().into_iter().collect();
        let mut restored = FlatOptimizer::new(&spec, &[("w".into(), 3)]).unwrap();
        restored.load_state(&saved).unwrap();
        let mut again = w.clone();
        let g: Vec<f32> = w.iter().map(|x| 2.0 * x).collect();
        flat.step(std::iter::once((w.as_mut_slice(), g.as_slice())), 0.05);
        restored.step(std::iter::once((again.as_mut_slice(), g.as_slice())), 0.05);
        assert_eq!(w, again);
    }

    #[test]
    fn flat_updates_match_the_tensor_optimizers() {
        for json in [
            r#"{"kind": "sgd", "lr": 0.1}"#,
            r#"{"kind": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}"#,
            r#"{"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true}"#,
            r#"{"kind": "adam", "lr": 0.05, "weight_decay": 0.1}"#,
            r#"{"kind": "adamw", "lr": 0.05}"#,
            r#"{"kind": "rmsprop", "lr": 0.01}"#,
            r#"{"kind": "rmsprop", "lr": 0.01, "momentum": 0.9, "centered": true, "weight_decay": 0.01}"#,
        ] {
            run_both(spec(json));
        }
    }
}
