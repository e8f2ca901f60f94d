//! Adam (Kingma & Ba, with bias correction) in PyTorch's two flavours of weight decay:
//! `Adam` adds λθ to the gradient before the moments (coupled L2), `AdamW` shrinks the
//! weights by (1 − lr·λ) before the step (decoupled).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};

use super::in_place::InPlace;
use super::{Rule, fused, saved, with_l2};
use crate::error::{EngineError, Result};

/// Hyper-parameters of Adam and AdamW.
pub(super) struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW's decoupled decay instead of an L2 term.
    pub decoupled: bool,
}

pub(super) struct Adam {
    config: AdamConfig,
    step: u64,
    moments: Vec<Moments>,
}

/// One parameter's first and second moments: host buffers that the fused CPU update moves in
/// place for f32 parameters on the CPU (the training case), tensors otherwise.
enum Moments {
    Host { m: Vec<f32>, v: Vec<f32> },
    Tensors { m: Tensor, v: Tensor },
}

impl Moments {
    fn fresh(var: &Var) -> Result<Self> {
        Ok(if fused(var) {
            let n = var.elem_count();
            Moments::Host {
                m: vec![0.0; n],
                v: vec![0.0; n],
            }
        } else {
            Moments::Tensors {
                m: var.as_tensor().zeros_like()?,
                v: var.as_tensor().zeros_like()?,
            }
        })
    }

    /// `(m, v)` as tensors of the parameter's shape, for a checkpoint.
    fn tensors(&self, var: &Var) -> Result<(Tensor, Tensor)> {
        Ok(match self {
            Moments::Host { m, v } => (
                Tensor::from_slice(m, var.shape(), var.device())?,
                Tensor::from_slice(v, var.shape(), var.device())?,
            ),
            Moments::Tensors { m, v } => (m.copy()?, v.copy()?),
        })
    }

    /// Moments restored from a checkpoint's tensors, in the form [`Moments::fresh`] chooses.
    fn restored(var: &Var, m: Tensor, v: Tensor) -> Result<Self> {
        if m.shape() != var.shape() || v.shape() != var.shape() {
            return Err(EngineError::Internal(format!(
                "adam state of shape {:?} for a parameter of shape {:?}",
                m.dims(),
                var.dims()
            )));
        }
        Ok(if fused(var) {
            let host = |t: Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
            Moments::Host {
                m: host(m)?,
                v: host(v)?,
            }
        } else {
            Moments::Tensors { m, v }
        })
    }
}

/// The constants of one fused step, in f32 as the update runs.
#[derive(Clone, Copy, Debug)]
struct FusedStep {
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    /// `1 − β₁ᵗ` and `1 − β₂ᵗ`.
    correction1: f32,
    correction2: f32,
    /// Coupled (L2, into the gradient) or decoupled (AdamW, onto the weight) decay.
    weight_decay: f32,
    decoupled: bool,
}

impl FusedStep {
    /// θ, m and v after one step with gradient g, for a run of elements.
    fn apply(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let s = *self;
        let keep = if s.decoupled {
            1.0 - s.lr * s.weight_decay
        } else {
            1.0
        };
        let l2 = if s.decoupled { 0.0 } else { s.weight_decay };
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let theta = *p * keep;
            let d = g + l2 * theta;
            *m = s.beta1 * *m + (1.0 - s.beta1) * d;
            *v = s.beta2 * *v + (1.0 - s.beta2) * d * d;
            *p = theta - s.lr * (*m / s.correction1) / ((*v / s.correction2).sqrt() + s.eps);
        }
    }
}

impl Adam {
    pub(super) fn new(config: AdamConfig, params: &[(String, Var)]) -> Result<Self> {
        Ok(Adam {
            config,
            step: 0,
            moments: params
                .iter()
                .map(|(_, var)| Moments::fresh(var))
                .collect::<Result<_>>()?,
        })
    }
}

impl Rule for Adam {
    fn step(&mut self, params: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        let AdamConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        } = self.config;
        self.step += 1;
        let exponent = i32::try_from(self.step).unwrap_or(i32::MAX);
        let correction1 = 1.0 - beta1.powi(exponent);
        let correction2 = 1.0 - beta2.powi(exponent);
        for (((_, var), g), moments) in params.iter().zip(grads).zip(&mut self.moments) {
            let Some(g) = g else { continue };
            match moments {
                Moments::Host { m, v } => {
                    let step = FusedStep {
                        lr: lr as f32,
                        beta1: beta1 as f32,
                        beta2: beta2 as f32,
                        eps: eps as f32,
                        correction1: correction1 as f32,
                        correction2: correction2 as f32,
                        weight_decay: weight_decay as f32,
                        decoupled,
                    };
                    let update = InPlace::new([m, v], |p, g, [m, v]: &mut [&mut [f32]; 2]| {
                        step.apply(p, g, m, v)
                    });
                    var.inplace_op2(&g.contiguous()?, &update)?;
                }
                Moments::Tensors { m, v } => {
                    let d = if decoupled {
                        if weight_decay > 0.0 {
                            var.set(&(var.as_tensor() * (1.0 - lr * weight_decay))?)?;
                        }
                        g.clone()
                    } else {
                        with_l2(g, var, weight_decay)?
                    };
                    *m = ((&*m * beta1)? + (&d * (1.0 - beta1))?)?;
                    *v = ((&*v * beta2)? + (d.sqr()? * (1.0 - beta2))?)?;
                    let denom = ((&*v / correction2)?.sqrt()? + eps)?;
                    let update = ((&*m / correction1)? / denom)?;
                    var.set(&(var.as_tensor() - (update * lr)?)?)?;
                }
            }
        }
        Ok(())
    }

    fn state(&self, params: &[(String, Var)]) -> Result<Vec<(String, Tensor)>> {
        let device = params.first().map_or(&Device::Cpu, |(_, var)| var.device());
        let step = u32::try_from(self.step).unwrap_or(u32::MAX);
        let mut out = vec![("step".to_string(), Tensor::new(&[step], device)?)];
        for ((name, var), moments) in params.iter().zip(&self.moments) {
            let (m, v) = moments.tensors(var)?;
            out.push((format!("m.{name}"), m));
            out.push((format!("v.{name}"), v));
        }
        Ok(out)
    }

    fn load_state(
        &mut self,
        params: &[(String, Var)],
        state: &HashMap<String, Tensor>,
    ) -> Result<()> {
        let step = saved(state, "step")?;
        self.step = step.to_vec1::<u32>()?.first().copied().unwrap_or(0).into();
        for ((name, var), moments) in params.iter().zip(&mut self.moments) {
            let m = saved(state, &format!("m.{name}"))?;
            let v = saved(state, &format!("v.{name}"))?;
            *moments = Moments::restored(var, m, v)?;
        }
        Ok(())
    }
}
