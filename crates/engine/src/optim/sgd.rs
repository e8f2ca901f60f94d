//! SGD with optional momentum, Nesterov momentum and L2 weight decay (PyTorch's `SGD` with
//! dampening 0): d = g + λθ; b ← μb + d (b = d at the first step); d ← d + μb (Nesterov) or
//! d ← b; θ ← θ − lr·d.

use std::collections::HashMap;

use candle_core::{Tensor, Var};

use super::in_place::InPlace;
use super::{Rule, fused, with_l2};
use crate::error::{EngineError, Result};

pub(super) struct Sgd {
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    /// Momentum buffers; `None` until a parameter's first step.
    velocity: Vec<Option<Buffer>>,
}

/// A momentum buffer: a host buffer that the fused CPU update moves in place for f32
/// parameters on the CPU, a tensor otherwise.
enum Buffer {
    Host(Vec<f32>),
    Tensor(Tensor),
}

impl Sgd {
    pub(super) fn new(momentum: f64, nesterov: bool, weight_decay: f64, params: usize) -> Self {
        Sgd {
            momentum,
            nesterov,
            weight_decay,
            velocity: (0..params).map(|_| None).collect(),
        }
    }

    /// One fused in-place step of an f32 CPU parameter. A fresh buffer starts at zero, which
    /// makes the first step's buffer `d`, as the tensor form sets it.
    fn fused_step(&self, var: &Var, g: &Tensor, slot: &mut Option<Buffer>, lr: f64) -> Result<()> {
        let (mu, wd, lr, nesterov) = (
            self.momentum as f32,
            self.weight_decay as f32,
            lr as f32,
            self.nesterov,
        );
        let g = g.contiguous()?;
        if self.momentum <= 0.0 {
            let update = InPlace::new([], |p, g, _: &mut [&mut [f32]; 0]| {
                for (p, &g) in p.iter_mut().zip(g) {
                    *p -= lr * (g + wd * *p);
                }
            });
            var.inplace_op2(&g, &update)?;
            return Ok(());
        }
        if !matches!(slot, Some(Buffer::Host(_))) {
            *slot = Some(Buffer::Host(vec![0.0; var.elem_count()]));
        }
        let Some(Buffer::Host(buffer)) = slot else {
            unreachable!("set just above");
        };
        let update = InPlace::new([buffer], |p, g, [b]: &mut [&mut [f32]; 1]| {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
                let d = g + wd * *p;
                *b = mu * *b + d;
                let direction = if nesterov { d + mu * *b } else { *b };
                *p -= lr * direction;
            }
        });
        var.inplace_op2(&g, &update)?;
        Ok(())
    }
}

impl Rule for Sgd {
    fn step(&mut self, params: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        let mu = self.momentum;
        for (i, ((_, var), g)) in params.iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            if fused(var) {
                let mut slot = self.velocity[i].take();
                let stepped = self.fused_step(var, g, &mut slot, lr);
                self.velocity[i] = slot;
                stepped?;
                continue;
            }
            let d = with_l2(g, var, self.weight_decay)?;
            let direction = if mu > 0.0 {
                let buffer = match self.velocity[i].take() {
                    Some(Buffer::Tensor(b)) => ((b * mu)? + &d)?,
                    Some(Buffer::Host(_)) | None => d.clone(),
                };
                let direction = if self.nesterov {
                    (&d + (&buffer * mu)?)?
                } else {
                    buffer.clone()
                };
                self.velocity[i] = Some(Buffer::Tensor(buffer));
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
        for ((name, var), v) in params.iter().zip(&self.velocity) {
            let tensor = match v {
                Some(Buffer::Host(b)) => Tensor::from_slice(b, var.shape(), var.device())?,
                Some(Buffer::Tensor(t)) => t.copy()?,
                None => continue,
            };
            out.push((format!("velocity.{name}"), tensor));
        }
        Ok(out)
    }

    fn load_state(
        &mut self,
        params: &[(String, Var)],
        state: &HashMap<String, Tensor>,
    ) -> Result<()> {
        for ((name, var), slot) in params.iter().zip(self.velocity.iter_mut()) {
            *slot = match state.get(&format!("velocity.{name}")) {
                None => None,
                Some(t) if t.shape() != var.shape() => {
                    return Err(EngineError::Internal(format!(
                        "sgd velocity of shape {:?} for a parameter of shape {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                Some(t) if fused(var) => Some(Buffer::Host(
                    t.flatten_all()?
                        .to_dtype(candle_core::DType::F32)?
                        .to_vec1()?,
                )),
                Some(t) => Some(Buffer::Tensor(t.clone())),
            };
        }
        Ok(())
    }
}
