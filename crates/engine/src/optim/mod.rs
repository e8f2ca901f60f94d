//! Optimizers over named parameters, written out because candle 0.11 has neither momentum SGD
//! nor RMSprop nor coupled-L2 Adam, and hides its AdamW moments. Each follows PyTorch's update
//! rule, and its whole state is exported as named tensors so that a job resumed from a
//! checkpoint continues bit for bit.

mod adam;
mod in_place;
mod rmsprop;
mod sgd;

use std::collections::HashMap;

use candle_core::{Tensor, Var};

use crate::error::{EngineError, Result};
use crate::spec::OptimizerSpec;

/// One update rule with its per-parameter state.
trait Rule: Send {
    /// Updates every parameter that has a gradient (`grads` is aligned with `params`).
    fn step(&mut self, params: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()>;
    /// The state as named tensors.
    fn state(&self, params: &[(String, Var)]) -> Result<Vec<(String, Tensor)>>;
    /// Restores what [`Rule::state`] wrote.
    fn load_state(
        &mut self,
        params: &[(String, Var)],
        state: &HashMap<String, Tensor>,
    ) -> Result<()>;
}

/// An optimizer over named parameters whose state can be checkpointed and restored. The
/// learning rate is passed to every step, so schedules live outside it.
pub struct Optimizer {
    params: Vec<(String, Var)>,
    groups: Vec<Group>,
}

/// Consecutive parameters updated with the same rule at `lr · lr_scale` (PyTorch's
/// parameter groups).
struct Group {
    range: std::ops::Range<usize>,
    rule: Box<dyn Rule>,
    lr_scale: f64,
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
        let mut built = Vec::with_capacity(groups.len());
        for (group, lr_scale) in groups {
            if group.is_empty() {
                continue;
            }
            let start = params.len();
            built.push(Group {
                rule: rule(spec, &group)?,
                range: start..start + group.len(),
                lr_scale,
            });
            params.extend(group);
        }
        Ok(Optimizer {
            params,
            groups: built,
        })
    }

    /// The parameters, in the order gradients are passed to [`Optimizer::step`].
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Applies one update with learning rate `lr`; `grads[i]` belongs to `params()[i]`.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(EngineError::Internal(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        for group in &mut self.groups {
            let range = group.range.clone();
            group.rule.step(
                &self.params[range.clone()],
                &grads[range],
                lr * group.lr_scale,
            )?;
        }
        Ok(())
    }

    /// The optimizer's state as named tensors, for a checkpoint. Groups step together, so
    /// state they share by name (Adam's step count) is written once.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for group in &self.groups {
            for (name, tensor) in group.rule.state(&self.params[group.range.clone()])? {
                if !out.iter().any(|(n, _)| *n == name) {
                    out.push((name, tensor));
                }
            }
        }
        Ok(out)
    }

    /// Restores state written by [`Optimizer::state`].
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for group in &mut self.groups {
            group
                .rule
                .load_state(&self.params[group.range.clone()], state)?;
        }
        Ok(())
    }
}

/// The update rule of `spec` with fresh state for `params`.
fn rule(spec: &OptimizerSpec, params: &[(String, Var)]) -> Result<Box<dyn Rule>> {
    let params = params.to_vec();
    let rule: Box<dyn Rule> = {
        match *spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => Box::new(sgd::Sgd::new(
                momentum,
                nesterov,
                weight_decay,
                params.len(),
            )),
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => Box::new(adam::Adam::new(
                adam::AdamConfig {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    decoupled: false,
                },
                &params,
            )?),
            OptimizerSpec::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => Box::new(adam::Adam::new(
                adam::AdamConfig {
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    decoupled: true,
                },
                &params,
            )?),
            OptimizerSpec::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                centered,
                ..
            } => Box::new(rmsprop::Rmsprop::new(
                rmsprop::RmspropConfig {
                    alpha,
                    eps,
                    momentum,
                    weight_decay,
                    centered,
                },
                &params,
            )?),
        }
    };
    Ok(rule)
}

/// Whether `var` takes a fused in-place update ([`in_place::InPlace`]): f32 on the CPU, the
/// training case. Other parameters take the tensor form.
fn fused(var: &Var) -> bool {
    var.device().is_cpu() && var.dtype() == candle_core::DType::F32
}

/// `g + weight_decay·θ`: weight decay as an L2 term in the gradient (PyTorch's coupled form).
fn with_l2(g: &Tensor, var: &Var, weight_decay: f64) -> Result<Tensor> {
    Ok(if weight_decay > 0.0 {
        (g + (var.as_tensor() * weight_decay)?)?
    } else {
        g.clone()
    })
}

/// A saved tensor by key, or an error saying the checkpoint lacks it.
fn saved(state: &HashMap<String, Tensor>, key: &str) -> Result<Tensor> {
    state.get(key).cloned().ok_or_else(|| {
        EngineError::Internal(format!(
            "optimizer state '{key}' is missing from the checkpoint"
        ))
    })
}

/// Zeros shaped like each parameter.
fn zeros_like(params: &[(String, Var)]) -> Result<Vec<Tensor>> {
    Ok(params
        .iter()
        .map(|(_, var)| var.as_tensor().zeros_like())
        .collect::<candle_core::Result<_>>()?)
}

#[cfg(test)]
mod tests;
