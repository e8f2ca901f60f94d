//! The optimizers of [`crate::Optimizer`] over flat buffers, with the same update rules
//! (PyTorch's) and the same checkpoint names, so a checkpoint written by one path resumes on
//! the other.

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::error::{EngineError, Result};
use crate::spec::OptimizerSpec;

/// Optimizer state per parameter tensor, in the order of `FusedMlp::params_and_grads`.
pub struct FlatOptimizer {
    names: Vec<String>,
    sizes: Vec<usize>,
    weight_decay: f32,
    rule: Rule,
}

enum Rule {
    Sgd {
        momentum: f32,
        nesterov: bool,
        velocity: Vec<Option<Vec<f32>>>,
    },
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f32,
        decoupled: bool,
        step: u64,
        m: Vec<Vec<f32>>,
        v: Vec<Vec<f32>>,
    },
    Rmsprop {
        alpha: f32,
        eps: f32,
        momentum: f32,
        square_avg: Vec<Vec<f32>>,
        grad_avg: Option<Vec<Vec<f32>>>,
        buffer: Option<Vec<Vec<f32>>>,
    },
}

fn zeros(sizes: &[usize]) -> Vec<Vec<f32>> {
    sizes.iter().map(|n| vec![0.0; *n]).collect()
}

impl FlatOptimizer {
    /// Fresh state for parameters with these names and sizes.
    pub fn new(spec: &OptimizerSpec, params: &[(String, usize)]) -> Self {
        let names = params.iter().map(|(n, _)| n.clone()).collect();
        let sizes: Vec<usize> = params.iter().map(|(_, n)| *n).collect();
        let (rule, weight_decay) = match *spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => (
                Rule::Sgd {
                    momentum: momentum as f32,
                    nesterov,
                    velocity: vec![None; sizes.len()],
                },
                weight_decay,
            ),
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => (
                Rule::Adam {
                    beta1,
                    beta2,
                    eps: eps as f32,
                    decoupled: false,
                    step: 0,
                    m: zeros(&sizes),
                    v: zeros(&sizes),
                },
                weight_decay,
            ),
            OptimizerSpec::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => (
                Rule::Adam {
                    beta1,
                    beta2,
                    eps: eps as f32,
                    decoupled: true,
                    step: 0,
                    m: zeros(&sizes),
                    v: zeros(&sizes),
                },
                weight_decay,
            ),
            OptimizerSpec::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                centered,
                ..
            } => (
                Rule::Rmsprop {
                    alpha: alpha as f32,
                    eps: eps as f32,
                    momentum: momentum as f32,
                    square_avg: zeros(&sizes),
                    grad_avg: centered.then(|| zeros(&sizes)),
                    buffer: (momentum > 0.0).then(|| zeros(&sizes)),
                },
                weight_decay,
            ),
        };
        FlatOptimizer {
            names,
            sizes,
            weight_decay: weight_decay as f32,
            rule,
        }
    }

    /// Applies one update with learning rate `lr`; `params` yields (parameter, gradient) in
    /// construction order. `scratch` avoids allocating the decayed gradient every step.
    pub fn step<'a>(&mut self, params: impl Iterator<Item = (&'a mut [f32], &'a [f32])>, lr: f64) {
        let lr32 = lr as f32;
        let wd = self.weight_decay;
        match &mut self.rule {
            Rule::Sgd {
                momentum,
                nesterov,
                velocity,
            } => {
                for ((p, g), slot) in params.zip(velocity.iter_mut()) {
                    let mu = *momentum;
                    if mu > 0.0 {
                        let buffer = slot.get_or_insert_with(|| Vec::with_capacity(g.len()));
                        let first = buffer.is_empty();
                        if first {
                            buffer.extend(p.iter().zip(g).map(|(p, g)| g + wd * p));
                        }
                        for j in 0..p.len() {
                            let d = g[j] + wd * p[j];
                            if !first {
                                buffer[j] = buffer[j] * mu + d;
                            }
                            let direction = if *nesterov {
                                d + buffer[j] * mu
                            } else {
                                buffer[j]
                            };
                            p[j] -= lr32 * direction;
                        }
                    } else {
                        p.iter_mut()
                            .zip(g)
                            .for_each(|(p, g)| *p -= lr32 * (g + wd * *p));
                    }
                }
            }
            Rule::Adam {
                beta1,
                beta2,
                eps,
                decoupled,
                step,
                m,
                v,
            } => {
                *step += 1;
                let exponent = i32::try_from(*step).unwrap_or(i32::MAX);
                let c1 = (1.0 - beta1.powi(exponent)) as f32;
                let c2 = (1.0 - beta2.powi(exponent)) as f32;
                let (b1, b2) = (*beta1 as f32, *beta2 as f32);
                let shrink = 1.0 - (lr * f64::from(wd)) as f32;
                for (i, (p, g)) in params.enumerate() {
                    let (m, v) = (&mut m[i], &mut v[i]);
                    for j in 0..p.len() {
                        let d = if *decoupled {
                            if wd > 0.0 {
                                p[j] *= shrink;
                            }
                            g[j]
                        } else {
                            g[j] + wd * p[j]
                        };
                        m[j] = m[j] * b1 + d * (1.0 - b1);
                        v[j] = v[j] * b2 + d * d * (1.0 - b2);
                        p[j] -= lr32 * ((m[j] / c1) / ((v[j] / c2).sqrt() + *eps));
                    }
                }
            }
            Rule::Rmsprop {
                alpha,
                eps,
                momentum,
                square_avg,
                grad_avg,
                buffer,
            } => {
                let a = *alpha;
                for (i, (p, g)) in params.enumerate() {
                    for j in 0..p.len() {
                        let d = g[j] + wd * p[j];
                        let s = &mut square_avg[i][j];
                        *s = *s * a + d * d * (1.0 - a);
                        let variance = match grad_avg {
                            Some(avg) => {
                                let ga = &mut avg[i][j];
                                *ga = *ga * a + d * (1.0 - a);
                                (*s - *ga * *ga).max(0.0)
                            }
                            None => *s,
                        };
                        let update = d / (variance.sqrt() + *eps);
                        let update = match buffer {
                            Some(b) => {
                                b[i][j] = b[i][j] * *momentum + update;
                                b[i][j]
                            }
                            None => update,
                        };
                        p[j] -= lr32 * update;
                    }
                }
            }
        }
    }

    /// State as named tensors, as `Optimizer::state` names them.
    pub fn state(&self, device: &Device) -> Result<Vec<(String, Tensor)>> {
        let t = |v: &Vec<f32>| Tensor::from_slice(v, v.len(), device);
        let mut out = Vec::new();
        match &self.rule {
            Rule::Sgd { velocity, .. } => {
                for (name, v) in self.names.iter().zip(velocity) {
                    if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                        out.push((format!("velocity.{name}"), t(v)?));
                    }
                }
            }
            Rule::Adam { step, m, v, .. } => {
                out.push((
                    "step".into(),
                    Tensor::new(&[u32::try_from(*step).unwrap_or(u32::MAX)], device)?,
                ));
                for (name, (m, v)) in self.names.iter().zip(m.iter().zip(v)) {
                    out.push((format!("m.{name}"), t(m)?));
                    out.push((format!("v.{name}"), t(v)?));
                }
            }
            Rule::Rmsprop {
                square_avg,
                grad_avg,
                buffer,
                ..
            } => {
                for (i, name) in self.names.iter().enumerate() {
                    out.push((format!("square_avg.{name}"), t(&square_avg[i])?));
                    if let Some(avg) = grad_avg {
                        out.push((format!("grad_avg.{name}"), t(&avg[i])?));
                    }
                    if let Some(b) = buffer {
                        out.push((format!("momentum_buffer.{name}"), t(&b[i])?));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Restores state written by [`FlatOptimizer::state`] or `Optimizer::state`.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let flat = |key: String, size: usize| -> Result<Vec<f32>> {
            let t = state.get(&key).ok_or_else(|| {
                EngineError::Internal(format!(
                    "optimizer state '{key}' is missing from the checkpoint"
                ))
            })?;
            let v = t.flatten_all()?.to_vec1::<f32>()?;
            if v.len() != size {
                return Err(EngineError::Internal(format!(
                    "optimizer state '{key}' has {} values, expected {size}",
                    v.len()
                )));
            }
            Ok(v)
        };
        let (names, sizes) = (&self.names, &self.sizes);
        match &mut self.rule {
            Rule::Sgd { velocity, .. } => {
                for (i, slot) in velocity.iter_mut().enumerate() {
                    let key = format!("velocity.{}", names[i]);
                    *slot = if state.contains_key(&key) {
                        Some(flat(key, sizes[i])?)
                    } else {
                        None
                    };
                }
            }
            Rule::Adam { step, m, v, .. } => {
                let saved = state.get("step").ok_or_else(|| {
                    EngineError::Internal("optimizer state 'step' is missing".into())
                })?;
                *step = u64::from(
                    saved
                        .flatten_all()?
                        .to_vec1::<u32>()?
                        .first()
                        .copied()
                        .unwrap_or(0),
                );
                for i in 0..names.len() {
                    m[i] = flat(format!("m.{}", names[i]), sizes[i])?;
                    v[i] = flat(format!("v.{}", names[i]), sizes[i])?;
                }
            }
            Rule::Rmsprop {
                square_avg,
                grad_avg,
                buffer,
                ..
            } => {
                for i in 0..names.len() {
                    square_avg[i] = flat(format!("square_avg.{}", names[i]), sizes[i])?;
                    if let Some(avg) = grad_avg {
                        avg[i] = flat(format!("grad_avg.{}", names[i]), sizes[i])?;
                    }
                    if let Some(b) = buffer {
                        b[i] = flat(format!("momentum_buffer.{}", names[i]), sizes[i])?;
                    }
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

    fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
        serde_json::from_slice(bytes)
    }
    use crate::Optimizer;

    fn spec(json: &str) -> OptimizerSpec {
        parse_json(json.as_bytes()).unwrap()
    }

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
            .load_state(&theirs)
            .unwrap();
        let saved: HashMap<String, Tensor> =
            flat.state(&Device::Cpu).unwrap().into_iter().collect();
        let mut restored = FlatOptimizer::new(&spec, &[("w".into(), 3)]);
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
