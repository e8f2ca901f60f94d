use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::domain::OptimizerSpec;
use crate::error::{Error, Result};

/// An optimizer over named parameters whose state can be checkpointed and restored, so a
/// resumed job continues exactly where it stopped. (candle's own AdamW hides its moments, and
/// candle has no momentum SGD.)
pub struct Optimizer {
    params: Vec<(String, Var)>,
    lr: f64,
    kind: Kind,
}

enum Kind {
    /// v ← μ·v + g; θ ← θ − lr·v (PyTorch's formulation).
    Sgd {
        momentum: f64,
        velocity: Vec<Option<Tensor>>,
    },
    /// Adam with bias correction (Kingma & Ba), as in PyTorch with no weight decay.
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        step: u64,
        m: Vec<Tensor>,
        v: Vec<Tensor>,
    },
}

impl Optimizer {
    /// An optimizer with fresh state for `params`.
    pub fn new(spec: &OptimizerSpec, params: Vec<(String, Var)>) -> Result<Self> {
        let kind = match *spec {
            OptimizerSpec::Sgd { momentum, .. } => Kind::Sgd {
                momentum,
                velocity: vec![None; params.len()],
            },
            OptimizerSpec::Adam {
                beta1, beta2, eps, ..
            } => {
                let zeros = |(_, var): &(String, Var)| var.as_tensor().zeros_like();
                Kind::Adam {
                    beta1,
                    beta2,
                    eps,
                    step: 0,
                    m: params
                        .iter()
                        .map(zeros)
                        .collect::<candle_core::Result<_>>()?,
                    v: params
                        .iter()
                        .map(zeros)
                        .collect::<candle_core::Result<_>>()?,
                }
            }
        };
        Ok(Optimizer {
            params,
            lr: spec.lr(),
            kind,
        })
    }

    /// The learning rate in effect.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Applies one update from the gradients of a backward pass.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let lr = self.lr;
        match &mut self.kind {
            Kind::Sgd { momentum, velocity } => {
                for ((_, var), slot) in self.params.iter().zip(velocity.iter_mut()) {
                    let Some(g) = grads.get(var.as_tensor()) else {
                        continue;
                    };
                    let direction = match slot.take() {
                        Some(v) if *momentum > 0.0 => ((v * *momentum)? + g)?,
                        _ => g.clone(),
                    };
                    var.set(&(var.as_tensor() - (&direction * lr)?)?)?;
                    if *momentum > 0.0 {
                        *slot = Some(direction);
                    }
                }
            }
            Kind::Adam {
                beta1,
                beta2,
                eps,
                step,
                m,
                v,
            } => {
                *step += 1;
                let correction1 = 1.0 - beta1.powi(*step as i32);
                let correction2 = 1.0 - beta2.powi(*step as i32);
                for (i, (_, var)) in self.params.iter().enumerate() {
                    let Some(g) = grads.get(var.as_tensor()) else {
                        continue;
                    };
                    m[i] = ((&m[i] * *beta1)? + (g * (1.0 - *beta1))?)?;
                    v[i] = ((&v[i] * *beta2)? + (g.sqr()? * (1.0 - *beta2))?)?;
                    let denom = ((&v[i] / correction2)?.sqrt()? + *eps)?;
                    let update = ((&m[i] / correction1)? / denom)?;
                    var.set(&(var.as_tensor() - (update * lr)?)?)?;
                }
            }
        }
        Ok(())
    }

    /// The optimizer's state as named tensors, for a checkpoint.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Sgd { velocity, .. } => {
                for ((name, _), v) in self.params.iter().zip(velocity) {
                    if let Some(v) = v {
                        out.push((format!("velocity.{name}"), v.copy()?));
                    }
                }
            }
            Kind::Adam { step, m, v, .. } => {
                out.push((
                    "step".into(),
                    Tensor::new(
                        &[*step as u32],
                        m.first().map_or(&candle_core::Device::Cpu, |t| t.device()),
                    )?,
                ));
                for ((name, _), (m, v)) in self.params.iter().zip(m.iter().zip(v)) {
                    out.push((format!("m.{name}"), m.copy()?));
                    out.push((format!("v.{name}"), v.copy()?));
                }
            }
        }
        Ok(out)
    }

    /// Restores state written by [`Optimizer::state`].
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let missing = |key: &str| {
            Error::Internal(format!(
                "optimizer state '{key}' is missing from the checkpoint"
            ))
        };
        match &mut self.kind {
            Kind::Sgd { velocity, .. } => {
                for ((name, _), slot) in self.params.iter().zip(velocity.iter_mut()) {
                    *slot = state.get(&format!("velocity.{name}")).cloned();
                }
            }
            Kind::Adam { step, m, v, .. } => {
                let saved = state.get("step").ok_or_else(|| missing("step"))?;
                *step = saved.to_vec1::<u32>()?.first().copied().unwrap_or(0) as u64;
                for (i, (name, _)) in self.params.iter().enumerate() {
                    let key_m = format!("m.{name}");
                    let key_v = format!("v.{name}");
                    m[i] = state.get(&key_m).ok_or_else(|| missing(&key_m))?.clone();
                    v[i] = state.get(&key_v).ok_or_else(|| missing(&key_v))?.clone();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn one_param(value: f32) -> (Var, Vec<(String, Var)>) {
        let var = Var::new(&[value], &Device::Cpu).unwrap();
        (var.clone(), vec![("w".to_string(), var)])
    }

    fn step_on_square(opt: &mut Optimizer, var: &Var) {
        // loss = w², so the gradient is 2w.
        let grads = var
            .as_tensor()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        opt.step(&grads).unwrap();
    }

    fn value(var: &Var) -> f32 {
        var.as_tensor().to_vec1::<f32>().unwrap()[0]
    }

    #[test]
    fn sgd_with_momentum_matches_hand_computed_steps() {
        let (var, params) = one_param(1.0);
        let mut opt = Optimizer::new(
            &OptimizerSpec::Sgd {
                lr: 0.1,
                momentum: 0.9,
            },
            params,
        )
        .unwrap();
        step_on_square(&mut opt, &var); // v = 2, w = 1 - 0.2 = 0.8
        assert!((value(&var) - 0.8).abs() < 1e-6);
        step_on_square(&mut opt, &var); // v = 0.9*2 + 1.6 = 3.4, w = 0.8 - 0.34 = 0.46
        assert!((value(&var) - 0.46).abs() < 1e-6);
    }

    #[test]
    fn adam_matches_hand_computed_steps() {
        let (var, params) = one_param(1.0);
        let spec = OptimizerSpec::Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let mut opt = Optimizer::new(&spec, params).unwrap();
        // First Adam step moves by lr·sign(g) regardless of the gradient's size.
        step_on_square(&mut opt, &var);
        assert!((value(&var) - 0.9).abs() < 1e-6, "{}", value(&var));
        // Second: g = 1.8; m = 0.9·0.2 + 0.1·1.8 = 0.36, v = 0.999·0.004 + 0.001·3.24 = 0.007236
        let m_hat = 0.36 / (1.0 - 0.81);
        let v_hat = 0.007236f64 / (1.0 - 0.998001);
        let expected = 0.9 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8);
        step_on_square(&mut opt, &var);
        assert!(
            (value(&var) as f64 - expected).abs() < 1e-5,
            "{} vs {expected}",
            value(&var)
        );
    }

    #[test]
    fn restored_state_continues_identically() {
        let spec = OptimizerSpec::Adam {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        };
        let (a, params) = one_param(1.0);
        let mut straight = Optimizer::new(&spec, params).unwrap();
        for _ in 0..3 {
            step_on_square(&mut straight, &a);
        }
        let saved: HashMap<String, Tensor> = straight.state().unwrap().into_iter().collect();
        let (b, params) = one_param(value(&a));
        let mut resumed = Optimizer::new(&spec, params).unwrap();
        resumed.load_state(&saved).unwrap();
        step_on_square(&mut straight, &a);
        step_on_square(&mut resumed, &b);
        assert_eq!(value(&a), value(&b));
    }
}
