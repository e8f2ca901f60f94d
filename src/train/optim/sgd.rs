//! SGD with optional momentum, Nesterov momentum and L2 weight decay (PyTorch's `SGD` with
//! dampening 0): d = g + λθ; b ← μb + d (b = d at the first step); d ← d + μb (Nesterov) or
//! d ← b; θ ← θ − lr·d.

use std::collections::HashMap;

use candle_core::{Tensor, Var};

use super::{Rule, with_l2};
use crate::error::Result;

pub(super) struct Sgd {
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    /// Momentum buffers; `None` until a parameter's first step.
    velocity: Vec<Option<Tensor>>,
}

impl Sgd {
    pub(super) fn new(momentum: f64, nesterov: bool, weight_decay: f64, params: usize) -> Self {
        Sgd {
            momentum,
            nesterov,
            weight_decay,
            velocity: vec![None; params],
        }
    }
}

impl Rule for Sgd {
    fn step(&mut self, params: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        let mu = self.momentum;
        for (((_, var), g), slot) in params.iter().zip(grads).zip(self.velocity.iter_mut()) {
            let Some(g) = g else { continue };
            let d = with_l2(g, var, self.weight_decay)?;
            let direction = if mu > 0.0 {
                let buffer = match slot.take() {
                    Some(b) => ((b * mu)? + &d)?,
                    None => d.clone(),
                };
                let direction = if self.nesterov {
                    (&d + (&buffer * mu)?)?
                } else {
                    buffer.clone()
                };
                *slot = Some(buffer);
                direction
            } else {
                d
            };
            var.set(&(var.as_tensor() - (direction * lr)?)?)?;
        }
        Ok(())
    }

    fn state(&self, params: &[(String, Var)]) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for ((name, _), v) in params.iter().zip(&self.velocity) {
            if let Some(v) = v {
                out.push((format!("velocity.{name}"), v.copy()?));
            }
        }
        Ok(out)
    }

    fn load_state(
        &mut self,
        params: &[(String, Var)],
        state: &HashMap<String, Tensor>,
    ) -> Result<()> {
        for ((name, _), slot) in params.iter().zip(self.velocity.iter_mut()) {
            *slot = state.get(&format!("velocity.{name}")).cloned();
        }
        Ok(())
    }
}
