//! Optimizers, written out because candle 0.11 has neither momentum SGD nor RMSprop nor
//! coupled-L2 Adam, and hides its AdamW moments. Each update rule is written once, in
//! [`rules`], and stepped by the two optimizers here: [`Optimizer`] over candle variables (the
//! models built from candle ops) and [`FlatOptimizer`] over the fused MLP's flat buffers. Their
//! state is checkpointed the same way ([`state`]), so a job resumed from a checkpoint continues
//! bit for bit, on either path.

mod flat;
mod in_place;
mod reference;
mod rules;
mod state;

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};

pub(crate) use flat::FlatOptimizer;
use in_place::InPlace;
use rules::Rule;
use state::{Buffers, OptimizerState, Placement};

use crate::error::{EngineError, Result};
use crate::spec::OptimizerSpec;

/// An optimizer over named candle variables whose state can be checkpointed and restored. The
/// learning rate is passed to every step, so schedules live outside it.
pub struct Optimizer {
    params: Vec<(String, Var)>,
    /// Per parameter, the factor its learning rate is scaled by (PyTorch's parameter groups).
    lr_scales: Vec<f64>,
    state: OptimizerState,
}

impl Optimizer {
    /// An optimizer with fresh state for `params`.
    pub fn new(spec: &OptimizerSpec, params: Vec<(String, Var)>) -> Result<Self> {
        Self::grouped(spec, vec![(params, 1.0)])
    }

    /// An optimizer whose groups of parameters learn at the step's rate times their scale
    /// (e.g. a pretrained backbone at a tenth of the head's rate).
    pub fn grouped(spec: &OptimizerSpec, groups: Vec<(Vec<(String, Var)>, f64)>) -> Result<Self> {
        let mut params = Vec::new();
        let mut lr_scales = Vec::new();
        for (group, lr_scale) in groups {
            lr_scales.extend(std::iter::repeat_n(lr_scale, group.len()));
            params.extend(group);
        }
        let placements = params
            .iter()
            .map(|(name, var)| {
                let placement = if on_host(var) {
                    Placement::Host(var.elem_count())
                } else {
                    Placement::Tensor(var.as_tensor().clone())
                };
                (name.clone(), placement)
            })
            .collect();
        Ok(Optimizer {
            state: OptimizerState::new(Rule::new(spec), placements)?,
            params,
            lr_scales,
        })
    }

    /// The parameters, in the order gradients are passed to [`Optimizer::step`].
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Applies one update with learning rate `lr`; `grads[i]` belongs to `params()[i]`, and a
    /// parameter without a gradient is left alone.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(EngineError::Internal(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        self.state.step += 1;
        let (rule, step) = (self.state.rule, self.state.step);
        let parts = self.params.iter().zip(grads).zip(&self.lr_scales);
        for ((((_, var), g), scale), buffers) in parts.zip(&mut self.state.buffers) {
            let Some(g) = g else { continue };
            let lr = lr * scale;
            match buffers {
                Buffers::Host(host) => {
                    let constants = rule.at(step, lr);
                    let state = host.iter_mut().map(Vec::as_mut_slice).collect();
                    let update =
                        InPlace::new(state, move |p, g, buffers| constants.apply(p, g, buffers));
                    var.inplace_op2(&g.contiguous()?, &update)?;
                }
                Buffers::Tensors(tensors) => reference::step(&rule, step, var, g, tensors, lr)?,
            }
        }
        Ok(())
    }

    /// The optimizer's state as named tensors, for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let shapes: Vec<_> = self
            .params
            .iter()
            .map(|(_, var)| var.shape().clone())
            .collect();
        self.state.tensors(&shapes, &Device::Cpu)
    }

    /// Restores state written by [`Optimizer::state`] or [`FlatOptimizer::state`].
    pub(crate) fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.state.load(state)
    }
}

/// Whether `var` is stepped in place by the element-wise rules: f32 on the CPU, the training
/// case. Other parameters take the tensor form of [`reference`].
fn on_host(var: &Var) -> bool {
    var.device().is_cpu() && var.dtype() == candle_core::DType::F32
}

#[cfg(test)]
mod tests;
