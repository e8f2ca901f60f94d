//! Adam (Kingma & Ba, with bias correction) in PyTorch's two flavours of weight decay:
//! `Adam` adds λθ to the gradient before the moments (coupled L2), `AdamW` shrinks the
//! weights by (1 − lr·λ) before the step (decoupled).

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};

use super::{Rule, saved, with_l2, zeros_like};
use crate::error::Result;

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
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    pub(super) fn new(config: AdamConfig, params: &[(String, Var)]) -> Result<Self> {
        Ok(Adam {
            config,
            step: 0,
            m: zeros_like(params)?,
            v: zeros_like(params)?,
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
        for (i, ((_, var), g)) in params.iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let d = if decoupled {
                if weight_decay > 0.0 {
                    var.set(&(var.as_tensor() * (1.0 - lr * weight_decay))?)?;
                }
                g.clone()
            } else {
                with_l2(g, var, weight_decay)?
            };
            self.m[i] = ((&self.m[i] * beta1)? + (&d * (1.0 - beta1))?)?;
            self.v[i] = ((&self.v[i] * beta2)? + (d.sqr()? * (1.0 - beta2))?)?;
            let denom = ((&self.v[i] / correction2)?.sqrt()? + eps)?;
            let update = ((&self.m[i] / correction1)? / denom)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
        }
        Ok(())
    }

    fn state(&self, params: &[(String, Var)]) -> Result<Vec<(String, Tensor)>> {
        let device = self.m.first().map_or(&Device::Cpu, |t| t.device());
        let step = u32::try_from(self.step).unwrap_or(u32::MAX);
        let mut out = vec![("step".to_string(), Tensor::new(&[step], device)?)];
        for ((name, _), (m, v)) in params.iter().zip(self.m.iter().zip(&self.v)) {
            out.push((format!("m.{name}"), m.copy()?));
            out.push((format!("v.{name}"), v.copy()?));
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
        for (i, (name, _)) in params.iter().enumerate() {
            self.m[i] = saved(state, &format!("m.{name}"))?;
            self.v[i] = saved(state, &format!("v.{name}"))?;
        }
        Ok(())
    }
}
