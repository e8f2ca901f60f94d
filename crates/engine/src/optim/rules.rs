//! The update rules, each written once, element by element over f32 runs, as PyTorch writes
//! them. Every CPU path that steps parameters calls [`Step::apply`]: [`super::Optimizer`] in
//! place on candle's storage, [`super::FlatOptimizer`] on the fused MLP's flat buffers.
//! (`reference` holds the same formulas over tensors, for parameters that are not f32 on the
//! CPU, and is what the tests check these against.)
//!
//! - SGD (dampening 0): d = g + λθ; b ← μb + d (b starts at 0, so b = d at the first step);
//!   d ← d + μb (Nesterov) or d ← b; θ ← θ − lr·d.
//! - Adam: d = g + λθ (coupled L2) or θ ← θ·(1 − lr·λ) first (AdamW, decoupled);
//!   m ← β₁m + (1−β₁)d; v ← β₂v + (1−β₂)d²; θ ← θ − lr·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε).
//! - RMSprop: d = g + λθ; s ← αs + (1−α)d²; centered: ḡ ← αḡ + (1−α)d and the denominator
//!   √(s − ḡ²) + ε, else √s + ε; with momentum b ← μb + d/denominator and θ ← θ − lr·b, else
//!   θ ← θ − lr·d/denominator.

use crate::spec::OptimizerSpec;

/// An update rule with its hyper-parameters; the learning rate comes with each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Rule {
    Sgd {
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        /// AdamW's decoupled decay instead of an L2 term.
        decoupled: bool,
    },
    Rmsprop {
        alpha: f64,
        eps: f64,
        momentum: f64,
        weight_decay: f64,
        centered: bool,
    },
}

impl Rule {
    /// The rule a spec names.
    pub(crate) fn new(spec: &OptimizerSpec) -> Rule {
        match *spec {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => Rule::Sgd {
                momentum,
                nesterov,
                weight_decay,
            },
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: false,
            },
            OptimizerSpec::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: true,
            },
            OptimizerSpec::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                centered,
                ..
            } => Rule::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                centered,
            },
        }
    }

    /// The buffers each parameter keeps, in the order [`Step::apply`] takes them, by the
    /// names checkpoints store them under (`<buffer>.<parameter>`).
    pub(crate) fn buffers(&self) -> Vec<&'static str> {
        match *self {
            Rule::Sgd { momentum, .. } if momentum > 0.0 => vec!["velocity"],
            Rule::Sgd { .. } => vec![],
            Rule::Adam { .. } => vec!["m", "v"],
            Rule::Rmsprop {
                momentum, centered, ..
            } => {
                let mut names = vec!["square_avg"];
                if centered {
                    names.push("grad_avg");
                }
                if momentum > 0.0 {
                    names.push("momentum_buffer");
                }
                names
            }
        }
    }

    /// Whether the rule depends on the step count (Adam's bias correction); the count is then
    /// checkpointed as `step`.
    pub(crate) fn counts_steps(&self) -> bool {
        matches!(self, Rule::Adam { .. })
    }

    /// The constants of step number `step` (counted from 1) at learning rate `lr`.
    pub(crate) fn at(&self, step: u64, lr: f64) -> Step {
        match *self {
            Rule::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => Step::Sgd {
                lr: lr as f32,
                momentum: momentum as f32,
                nesterov,
                weight_decay: weight_decay as f32,
            },
            Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
            } => {
                let exponent = i32::try_from(step).unwrap_or(i32::MAX);
                Step::Adam {
                    lr: lr as f32,
                    beta1: beta1 as f32,
                    beta2: beta2 as f32,
                    eps: eps as f32,
                    correction1: (1.0 - beta1.powi(exponent)) as f32,
                    correction2: (1.0 - beta2.powi(exponent)) as f32,
                    weight_decay: weight_decay as f32,
                    decoupled,
                }
            }
            Rule::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                centered,
            } => Step::Rmsprop {
                lr: lr as f32,
                alpha: alpha as f32,
                eps: eps as f32,
                momentum: momentum as f32,
                weight_decay: weight_decay as f32,
                centered,
            },
        }
    }
}

/// One step of a rule, its constants in f32 as the update runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    Sgd {
        lr: f32,
        momentum: f32,
        nesterov: bool,
        weight_decay: f32,
    },
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        /// `1 − β₁ᵗ` and `1 − β₂ᵗ`.
        correction1: f32,
        correction2: f32,
        weight_decay: f32,
        decoupled: bool,
    },
    Rmsprop {
        lr: f32,
        alpha: f32,
        eps: f32,
        momentum: f32,
        weight_decay: f32,
        centered: bool,
    },
}

impl Step {
    /// θ (`p`) and the parameter's buffers (in [`Rule::buffers`] order) after one step with
    /// gradient `g`, over matching runs of elements.
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], buffers: &mut [&mut [f32]]) {
        match *self {
            Step::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            } => match buffers {
                [velocity] => {
                    for ((p, &g), b) in p.iter_mut().zip(g).zip(velocity.iter_mut()) {
                        let d = g + weight_decay * *p;
                        *b = momentum * *b + d;
                        let direction = if nesterov { d + momentum * *b } else { *b };
                        *p -= lr * direction;
                    }
                }
                _ => {
                    for (p, &g) in p.iter_mut().zip(g) {
                        *p -= lr * (g + weight_decay * *p);
                    }
                }
            },
            Step::Adam {
                lr,
                beta1,
                beta2,
                eps,
                correction1,
                correction2,
                weight_decay,
                decoupled,
            } => {
                let [m, v] = buffers else {
                    unreachable!("Adam keeps two buffers per parameter");
                };
                let (keep, l2) = if decoupled {
                    (1.0 - lr * weight_decay, 0.0)
                } else {
                    (1.0, weight_decay)
                };
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let theta = *p * keep;
                    let d = g + l2 * theta;
                    *m = beta1 * *m + (1.0 - beta1) * d;
                    *v = beta2 * *v + (1.0 - beta2) * d * d;
                    *p = theta - lr * (*m / correction1) / ((*v / correction2).sqrt() + eps);
                }
            }
            Step::Rmsprop {
                lr,
                alpha,
                eps,
                momentum,
                weight_decay,
                centered,
            } => {
                let (square_avg, rest) = buffers
                    .split_first_mut()
                    .expect("RMSprop keeps a running square average");
                let (grad_avg, rest) = match rest {
                    [first, rest @ ..] if centered => (Some(first), rest),
                    rest => (None, rest),
                };
                let mut grad_avg: Option<&mut [f32]> = grad_avg.map(|b| &mut **b);
                let mut buffer: Option<&mut [f32]> = rest
                    .first_mut()
                    .filter(|_| momentum > 0.0)
                    .map(|b| &mut **b);
                for j in 0..p.len() {
                    let d = g[j] + weight_decay * p[j];
                    let s = &mut square_avg[j];
                    *s = alpha * *s + (1.0 - alpha) * d * d;
                    let variance = match grad_avg.as_deref_mut() {
                        Some(avg) => {
                            avg[j] = alpha * avg[j] + (1.0 - alpha) * d;
                            // s − ḡ² ≥ 0 in exact arithmetic; rounding must not make the root NaN.
                            (*s - avg[j] * avg[j]).max(0.0)
                        }
                        None => *s,
                    };
                    let update = d / (variance.sqrt() + eps);
                    let update = match buffer.as_deref_mut() {
                        Some(b) => {
                            b[j] = momentum * b[j] + update;
                            b[j]
                        }
                        None => update,
                    };
                    p[j] -= lr * update;
                }
            }
        }
    }
}
