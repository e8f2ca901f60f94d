//! `training.optimizer`: SGD (momentum, Nesterov, weight decay), Adam, AdamW and RMSprop, with
//! PyTorch's defaults and update rules.

use serde::{Deserialize, Serialize};

use super::check::{check, non_negative_at_most, unit_interval};
use crate::error::Result;

/// An optimizer, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// Stochastic gradient descent, optionally with (Nesterov) momentum and L2 weight decay.
    Sgd {
        /// Learning rate.
        #[serde(default = "default_sgd_lr")]
        lr: f64,
        /// Momentum (0 = plain SGD).
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum (needs momentum > 0).
        #[serde(default)]
        nesterov: bool,
        /// L2 penalty added to the gradient: g + weight_decay·θ.
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with weight decay as an L2 term added to the gradient (PyTorch's `Adam`).
    Adam {
        /// Learning rate.
        #[serde(default = "default_adam_lr")]
        lr: f64,
        /// Decay of the first-moment estimate.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Decay of the second-moment estimate.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Added to the denominator for stability.
        #[serde(default = "default_eps")]
        eps: f64,
        /// L2 penalty added to the gradient (coupled with the adaptive scaling).
        #[serde(default)]
        weight_decay: f64,
    },
    /// Adam with decoupled weight decay: θ ← θ·(1 − lr·weight_decay) before the Adam step.
    Adamw {
        /// Learning rate.
        #[serde(default = "default_adam_lr")]
        lr: f64,
        /// Decay of the first-moment estimate.
        #[serde(default = "default_beta1")]
        beta1: f64,
        /// Decay of the second-moment estimate.
        #[serde(default = "default_beta2")]
        beta2: f64,
        /// Added to the denominator for stability.
        #[serde(default = "default_eps")]
        eps: f64,
        /// Decoupled weight decay.
        #[serde(default = "default_adamw_weight_decay")]
        weight_decay: f64,
    },
    /// RMSprop (PyTorch's formulation), optionally centered and with momentum.
    Rmsprop {
        /// Learning rate.
        #[serde(default = "default_rmsprop_lr")]
        lr: f64,
        /// Decay of the running mean of squared gradients.
        #[serde(default = "default_alpha")]
        alpha: f64,
        /// Added to the denominator for stability.
        #[serde(default = "default_eps")]
        eps: f64,
        /// Momentum (0 = none).
        #[serde(default)]
        momentum: f64,
        /// L2 penalty added to the gradient.
        #[serde(default)]
        weight_decay: f64,
        /// Normalize by the estimated variance instead of the raw second moment.
        #[serde(default)]
        centered: bool,
    },
}

fn default_sgd_lr() -> f64 {
    0.01
}
fn default_adam_lr() -> f64 {
    1e-3
}
fn default_rmsprop_lr() -> f64 {
    0.01
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_eps() -> f64 {
    1e-8
}
fn default_alpha() -> f64 {
    0.99
}
fn default_adamw_weight_decay() -> f64 {
    0.01
}

impl Default for OptimizerSpec {
    fn default() -> Self {
        OptimizerSpec::Adam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

const FIELD: &str = "training.optimizer";

impl OptimizerSpec {
    /// The base learning rate (before any schedule).
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { lr, .. }
            | OptimizerSpec::Adam { lr, .. }
            | OptimizerSpec::Adamw { lr, .. }
            | OptimizerSpec::Rmsprop { lr, .. } => *lr,
        }
    }

    /// Sets the learning rate, whatever the kind.
    pub fn set_lr(&mut self, rate: f64) {
        match self {
            OptimizerSpec::Sgd { lr, .. }
            | OptimizerSpec::Adam { lr, .. }
            | OptimizerSpec::Adamw { lr, .. }
            | OptimizerSpec::Rmsprop { lr, .. } => *lr = rate,
        }
    }

    /// Rejects impossible values, naming the field.
    pub(super) fn validate(&self) -> Result<()> {
        let lr = self.lr();
        check(
            lr.is_finite() && lr > 0.0 && lr <= 10.0,
            &format!("{FIELD}.lr"),
            || format!("{lr} is out of range; valid: 0 < lr <= 10"),
        )?;
        let field = |name: &str| format!("{FIELD}.{name}");
        match self {
            OptimizerSpec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                unit_interval(*momentum, &field("momentum"), true)?;
                check(!*nesterov || *momentum > 0.0, &field("nesterov"), || {
                    "Nesterov momentum needs momentum > 0".into()
                })?;
                non_negative_at_most(*weight_decay, 1.0, &field("weight_decay"))
            }
            OptimizerSpec::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            }
            | OptimizerSpec::Adamw {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                unit_interval(*beta1, &field("beta1"), true)?;
                unit_interval(*beta2, &field("beta2"), true)?;
                unit_interval(*eps, &field("eps"), false)?;
                non_negative_at_most(*weight_decay, 1.0, &field("weight_decay"))
            }
            OptimizerSpec::Rmsprop {
                alpha,
                eps,
                momentum,
                weight_decay,
                ..
            } => {
                unit_interval(*alpha, &field("alpha"), true)?;
                unit_interval(*eps, &field("eps"), false)?;
                unit_interval(*momentum, &field("momentum"), true)?;
                non_negative_at_most(*weight_decay, 1.0, &field("weight_decay"))
            }
        }
    }
}
