//! RMSprop as PyTorch writes it: d = g + λθ; s ← αs + (1−α)d²; with `centered`,
//! ḡ ← αḡ + (1−α)d and the denominator √(s − ḡ²) + ε, else √s + ε; with momentum,
//! b ← μb + d/denominator and θ ← θ − lr·b, else θ ← θ − lr·d/denominator.

use std::collections::HashMap;

use candle_core::{Tensor, Var};

use super::{Rule, saved, with_l2, zeros_like};
use crate::error::Result;

/// Hyper-parameters of RMSprop.
pub(super) struct RmspropConfig {
    pub alpha: f64,
    pub eps: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub centered: bool,
}

pub(super) struct Rmsprop {
    config: RmspropConfig,
    square_avg: Vec<Tensor>,
    /// Running mean of the gradient, when centered.
    grad_avg: Option<Vec<Tensor>>,
    /// Momentum buffers, when momentum > 0.
    buffer: Option<Vec<Tensor>>,
}

impl Rmsprop {
    pub(super) fn new(config: RmspropConfig, params: &[(String, Var)]) -> Result<Self> {
        Ok(Rmsprop {
            square_avg: zeros_like(params)?,
            grad_avg: if config.centered {
                Some(zeros_like(params)?)
            } else {
                None
            },
            buffer: if config.momentum > 0.0 {
                Some(zeros_like(params)?)
            } else {
                None
            },
            config,
        })
    }
}

impl Rule for Rmsprop {
    fn step(&mut self, params: &[(String, Var)], grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        let RmspropConfig {
            alpha,
            eps,
            momentum,
            weight_decay,
            ..
        } = self.config;
        for (i, ((_, var), g)) in params.iter().zip(grads).enumerate() {
            let Some(g) = g else { continue };
            let d = with_l2(g, var, weight_decay)?;
            self.square_avg[i] = ((&self.square_avg[i] * alpha)? + (d.sqr()? * (1.0 - alpha))?)?;
            let variance = match &mut self.grad_avg {
                Some(grad_avg) => {
                    grad_avg[i] = ((&grad_avg[i] * alpha)? + (&d * (1.0 - alpha))?)?;
                    // s − ḡ² ≥ 0 in exact arithmetic; rounding must not make the root NaN.
                    (&self.square_avg[i] - grad_avg[i].sqr()?)?.relu()?
                }
                None => self.square_avg[i].clone(),
            };
            let denom = (variance.sqrt()? + eps)?;
            let update = match &mut self.buffer {
                Some(buffer) => {
                    buffer[i] = ((&buffer[i] * momentum)? + (&d / &denom)?)?;
                    buffer[i].clone()
                }
                None => (&d / &denom)?,
            };
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
        }
        Ok(())
    }

    fn state(&self, params: &[(String, Var)]) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (i, (name, _)) in params.iter().enumerate() {
            out.push((format!("square_avg.{name}"), self.square_avg[i].copy()?));
            if let Some(grad_avg) = &self.grad_avg {
                out.push((format!("grad_avg.{name}"), grad_avg[i].copy()?));
            }
            if let Some(buffer) = &self.buffer {
                out.push((format!("momentum_buffer.{name}"), buffer[i].copy()?));
            }
        }
        Ok(out)
    }

    fn load_state(
        &mut self,
        params: &[(String, Var)],
        state: &HashMap<String, Tensor>,
    ) -> Result<()> {
        for (i, (name, _)) in params.iter().enumerate() {
            self.square_avg[i] = saved(state, &format!("square_avg.{name}"))?;
            if let Some(grad_avg) = &mut self.grad_avg {
                grad_avg[i] = saved(state, &format!("grad_avg.{name}"))?;
            }
            if let Some(buffer) = &mut self.buffer {
                buffer[i] = saved(state, &format!("momentum_buffer.{name}"))?;
            }
        }
        Ok(())
    }
}
