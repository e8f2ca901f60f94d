//! The update rules of [`super::rules`] over tensors: the reference form, for parameters that
//! are not f32 on the CPU (another device, or f64 in tests, where the tests check the fast
//! element-wise rules against it). Same formulas, one candle operation at a time.

use candle_core::{Tensor, Var};

use super::rules::Rule;
use crate::error::Result;

/// One step of `rule` (step number `step`, from 1) on `var` with gradient `g`, moving its
/// buffers (in [`Rule::buffers`] order).
pub(crate) fn step(
    rule: &Rule,
    step: u64,
    var: &Var,
    g: &Tensor,
    buffers: &mut [Tensor],
    lr: f64,
) -> Result<()> {
    let with_l2 = |weight_decay: f64| -> Result<Tensor> {
        Ok(if weight_decay > 0.0 {
            (g + (var.as_tensor() * weight_decay)?)?
        } else {
            g.clone()
        })
    };
    let update = match *rule {
        Rule::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } => {
            let d = with_l2(weight_decay)?;
            match buffers {
                [velocity] => {
                    *velocity = ((&*velocity * momentum)? + &d)?;
                    if nesterov {
                        (&d + (&*velocity * momentum)?)?
                    } else {
                        velocity.clone()
                    }
                }
                _ => d,
            }
        }
        Rule::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        } => {
            let [m, v] = buffers else {
                unreachable!("Adam keeps two buffers per parameter");
            };
            let d = if decoupled {
                if weight_decay > 0.0 {
                    var.set(&(var.as_tensor() * (1.0 - lr * weight_decay))?)?;
                }
                g.clone()
            } else {
                with_l2(weight_decay)?
            };
            let exponent = i32::try_from(step).unwrap_or(i32::MAX);
            *m = ((&*m * beta1)? + (&d * (1.0 - beta1))?)?;
            *v = ((&*v * beta2)? + (d.sqr()? * (1.0 - beta2))?)?;
            let denom = ((&*v / (1.0 - beta2.powi(exponent)))?.sqrt()? + eps)?;
            ((&*m / (1.0 - beta1.powi(exponent)))? / denom)?
        }
        Rule::Rmsprop {
            alpha,
            eps,
            momentum,
            weight_decay,
            centered,
        } => {
            let d = with_l2(weight_decay)?;
            let (square_avg, rest) = buffers
                .split_first_mut()
                .expect("RMSprop keeps a running square average");
            *square_avg = ((&*square_avg * alpha)? + (d.sqr()? * (1.0 - alpha))?)?;
            let (variance, rest) = match rest {
                [grad_avg, rest @ ..] if centered => {
                    *grad_avg = ((&*grad_avg * alpha)? + (&d * (1.0 - alpha))?)?;
                    // s − ḡ² ≥ 0 in exact arithmetic; rounding must not make the root NaN.
                    ((&*square_avg - grad_avg.sqr()?)?.relu()?, rest)
                }
                rest => (square_avg.clone(), rest),
            };
            let scaled = (&d / (variance.sqrt()? + eps)?)?;
            match rest {
                [buffer] if momentum > 0.0 => {
                    *buffer = ((&*buffer * momentum)? + scaled)?;
                    buffer.clone()
                }
                _ => scaled,
            }
        }
    };
    var.set(&(var.as_tensor() - (update * lr)?)?)?;
    Ok(())
}
