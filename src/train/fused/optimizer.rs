//! The optimizers of [`crate::train::Optimizer`] over flat buffers, with the same update rules
//! and the same checkpoint names, so a checkpoint written by one path resumes on the other.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::domain::OptimizerSpec;
use crate::error::{Error, Result};

/// Optimizer state per parameter tensor, in the order of `FusedMlp::params_and_grads`.
pub struct FlatOptimizer {
    names: Vec<String>,
    lr: f64,
    kind: Kind,
}

enum Kind {
    Sgd {
        momentum: f32,
        velocity: Vec<Option<Vec<f32>>>,
    },
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        step: u64,
        m: Vec<Vec<f32>>,
        v: Vec<Vec<f32>>,
    },
}

impl FlatOptimizer {
    /// Fresh state for parameters with these names and sizes.
    pub fn new(spec: &OptimizerSpec, params: &[(String, usize)]) -> Self {
        let names = params.iter().map(|(n, _)| n.clone()).collect();
        let kind = match *spec {
            OptimizerSpec::Sgd { momentum, .. } => Kind::Sgd {
                momentum: momentum as f32,
                velocity: vec![None; params.len()],
            },
            OptimizerSpec::Adam {
                beta1, beta2, eps, ..
            } => Kind::Adam {
                beta1,
                beta2,
                eps,
                step: 0,
                m: params.iter().map(|(_, n)| vec![0.0; *n]).collect(),
                v: params.iter().map(|(_, n)| vec![0.0; *n]).collect(),
            },
        };
        FlatOptimizer {
            names,
            lr: spec.lr(),
            kind,
        }
    }

    /// The learning rate in effect.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Applies one update; `params` yields (parameter, gradient) in construction order.
    pub fn step<'a>(&mut self, params: impl Iterator<Item = (&'a mut [f32], &'a [f32])>) {
        let lr = self.lr as f32;
        match &mut self.kind {
            Kind::Sgd { momentum, velocity } => {
                for ((p, g), slot) in params.zip(velocity.iter_mut()) {
                    if *momentum > 0.0 {
                        let v = match slot {
                            Some(v) => {
                                v.iter_mut()
                                    .zip(g)
                                    .for_each(|(v, g)| *v = *v * *momentum + g);
                                v
                            }
                            None => slot.insert(g.to_vec()),
                        };
                        p.iter_mut().zip(v.iter()).for_each(|(p, v)| *p -= lr * v);
                    } else {
                        p.iter_mut().zip(g).for_each(|(p, g)| *p -= lr * g);
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
                let c1 = (1.0 - beta1.powi(*step as i32)) as f32;
                let c2 = (1.0 - beta2.powi(*step as i32)) as f32;
                let (b1, b2, eps) = (*beta1 as f32, *beta2 as f32, *eps as f32);
                for (i, (p, g)) in params.enumerate() {
                    let (m, v) = (&mut m[i], &mut v[i]);
                    for j in 0..p.len() {
                        m[j] = m[j] * b1 + g[j] * (1.0 - b1);
                        v[j] = v[j] * b2 + g[j] * g[j] * (1.0 - b2);
                        p[j] -= lr * ((m[j] / c1) / ((v[j] / c2).sqrt() + eps));
                    }
                }
            }
        }
    }

    /// State as named tensors, as `Optimizer::state` names them.
    pub fn state(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        match &self.kind {
            Kind::Sgd { velocity, .. } => {
                for (name, v) in self.names.iter().zip(velocity) {
                    if let Some(v) = v {
                        out.push((
                            format!("velocity.{name}"),
                            Tensor::from_slice(v, v.len(), device)?,
                        ));
                    }
                }
            }
            Kind::Adam { step, m, v, .. } => {
                out.push(("step".into(), Tensor::new(&[*step as u32], device)?));
                for (name, (m, v)) in self.names.iter().zip(m.iter().zip(v)) {
                    out.push((format!("m.{name}"), Tensor::from_slice(m, m.len(), device)?));
                    out.push((format!("v.{name}"), Tensor::from_slice(v, v.len(), device)?));
                }
            }
        }
        Ok(out)
    }

    /// Restores state written by [`FlatOptimizer::state`] or `Optimizer::state`.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let flat = |key: &str| -> Result<Vec<f32>> {
            let t = state.get(key).ok_or_else(|| {
                Error::Internal(format!(
                    "optimizer state '{key}' is missing from the checkpoint"
                ))
            })?;
            Ok(t.flatten_all()?.to_vec1::<f32>()?)
        };
        match &mut self.kind {
            Kind::Sgd { velocity, .. } => {
                for (name, slot) in self.names.iter().zip(velocity.iter_mut()) {
                    let key = format!("velocity.{name}");
                    *slot = if state.contains_key(&key) {
                        Some(flat(&key)?)
                    } else {
                        None
                    };
                }
            }
            Kind::Adam { step, m, v, .. } => {
                let saved = state
                    .get("step")
                    .ok_or_else(|| Error::Internal("optimizer state 'step' is missing".into()))?;
                *step = u64::from(
                    saved
                        .flatten_all()?
                        .to_vec1::<u32>()?
                        .first()
                        .copied()
                        .unwrap_or(0),
                );
                for (i, name) in self.names.iter().enumerate() {
                    m[i] = flat(&format!("m.{name}"))?;
                    v[i] = flat(&format!("v.{name}"))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;
    use crate::train::Optimizer;

    fn run_both(spec: OptimizerSpec) {
        // loss = Σ w² on a 3-vector, stepped by both implementations.
        let start = [1.0f32, -0.5, 2.0];
        let var = Var::from_slice(&start, 3, &Device::Cpu).unwrap();
        let mut reference = Optimizer::new(&spec, vec![("w".into(), var.clone())]).unwrap();
        let mut flat = FlatOptimizer::new(&spec, &[("w".into(), 3)]);
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
            reference.step(&grads).unwrap();
            let g: Vec<f32> = w.iter().map(|x| 2.0 * x).collect();
            flat.step(std::iter::once((w.as_mut_slice(), g.as_slice())));
        }
        let expected = var.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            w.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5),
            "{w:?} vs {expected:?}"
        );
        // A checkpoint of either implementation loads into the flat one.
        let theirs: HashMap<String, Tensor> = reference.state().unwrap().into_iter().collect();
        FlatOptimizer::new(&spec, &[("w".into(), 3)])
            .load_state(&theirs)
            .unwrap();
        let saved: HashMap<String, Tensor> =
            flat.state(&Device::Cpu).unwrap().into_iter().collect();
        let mut restored = FlatOptimizer::new(&spec, &[("w".into(), 3)]);
        restored.load_state(&saved).unwrap();
        let mut again = w.clone();
        let g: Vec<f32> = w.iter().map(|x| 2.0 * x).collect();
        flat.step(std::iter::once((w.as_mut_slice(), g.as_slice())));
        restored.step(std::iter::once((again.as_mut_slice(), g.as_slice())));
        assert_eq!(w, again);
    }

    #[test]
    fn flat_updates_match_the_tensor_optimizers() {
        run_both(OptimizerSpec::Sgd {
            lr: 0.1,
            momentum: 0.0,
        });
        run_both(OptimizerSpec::Sgd {
            lr: 0.1,
            momentum: 0.9,
        });
        run_both(OptimizerSpec::Adam {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        });
    }
}
