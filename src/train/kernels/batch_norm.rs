//! Batch normalization of NCHW tensors over (N, H, W) per channel: training mode with batch
//! statistics and a fused closed-form backward, and evaluation mode with running statistics.
//!
//! Training forward is two passes (per-channel sums, then `y = scale·x + shift`); backward is
//! two passes (per-channel `Σdy` and `Σdy·x̂`, then `dx = a·dy + b·x + c`), where candle's
//! composition of broadcast ops takes a dozen.

use std::sync::{Arc, OnceLock};

use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, Var, WithDType, bail,
};

use super::channels::{Planes, channel_sums_of};
use super::cpu::{by_dtype, storage, view};

/// Per-channel statistics of a batch, in f64 whatever the tensors' type.
#[derive(Clone, Debug)]
struct Stats {
    mean: Vec<f64>,
    /// 1 / sqrt(biased variance + eps).
    inv_std: Vec<f64>,
    var: Vec<f64>,
}

fn host_vec(t: &Tensor) -> Result<Vec<f64>> {
    t.flatten_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_vec1()
}

/// Training-mode batch normalization; leaves its statistics for the caller and the backward.
struct BatchNormTrain {
    eps: f64,
    stats: Arc<OnceLock<Stats>>,
}

/// `dx` of training-mode batch normalization, from `(dy, x)`, with the per-channel
/// coefficients of `dx = a·dy + b·x + k`.
struct BatchNormInputGrad {
    a: Vec<f64>,
    b: Vec<f64>,
    k: Vec<f64>,
}

/// `y = scale[c]·x + shift[c]`, from `(x, scale, shift)`; evaluation-mode batch norm.
struct ChannelAffine;

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "trainserve-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = Planes::of(l1, "batch_norm input")?;
        if l2.shape().elem_count() != p.c || l3.shape().elem_count() != p.c {
            bail!(
                "batch_norm: gamma {:?} and beta {:?} for {} channels",
                l2.dims(),
                l3.dims(),
                p.c
            );
        }
        if p.count() == 0 {
            bail!("batch_norm: an empty batch has no statistics");
        }
        by_dtype!(s1, "batch_norm", T => {
            let x = view::<T>(s1, l1, "batch_norm input")?;
            let gamma = view::<T>(s2, l2, "batch_norm gamma")?;
            let beta = view::<T>(s3, l3, "batch_norm beta")?;
            let (sum, sum_sq) = p.channel_sums(x, None);
            let m = p.count() as f64;
            let mean: Vec<f64> = sum.iter().map(|s| s / m).collect();
            let var: Vec<f64> = sum_sq
                .iter()
                .zip(&mean)
                .map(|(s, mu)| (s / m - mu * mu).max(0.0))
                .collect();
            let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
            let scale: Vec<f64> = gamma.iter().zip(&inv_std).map(|(g, i)| g.to_f64() * i).collect();
            let shift: Vec<f64> = (0..p.c).map(|c| beta[c].to_f64() - mean[c] * scale[c]).collect();
            let y = p.channel_affine(x, None, &scale, &[], &shift);
            let _ = self.stats.set(Stats { mean, inv_std, var });
            Ok((storage(y), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(stats) = self.stats.get() else {
            bail!("batch_norm backward: the forward pass recorded no statistics");
        };
        let grad = grad.contiguous()?;
        let (_, c, _, _) = x.dims4()?;
        let p = Planes::of(x.layout(), "batch_norm input")?;
        // Σdy and Σdy·x per channel; Σdy·x̂ = inv_std·(Σdy·x − mean·Σdy).
        let (sum_dy, sum_dy_x) = channel_sums_of(&grad, Some(x))?;
        let sum_dy_xhat: Vec<f64> = (0..c)
            .map(|c| stats.inv_std[c] * (sum_dy_x[c] - stats.mean[c] * sum_dy[c]))
            .collect();
        let dtype = x.dtype();
        let d_gamma =
            Tensor::from_vec(sum_dy_xhat.clone(), gamma.shape(), x.device())?.to_dtype(dtype)?;
        let d_beta =
            Tensor::from_vec(sum_dy.clone(), gamma.shape(), x.device())?.to_dtype(dtype)?;
        let dx = if x.track_op() {
            // dx = γ·σ⁻¹/M · (M·dy − Σdy − x̂·Σdy·x̂), x̂ = (x − μ)·σ⁻¹, as a·dy + b·x + k.
            let m = p.count() as f64;
            let gamma = host_vec(gamma)?;
            let mut op = BatchNormInputGrad {
                a: Vec::with_capacity(p.c),
                b: Vec::with_capacity(p.c),
                k: Vec::with_capacity(p.c),
            };
            for c in 0..p.c {
                let (mu, inv) = (stats.mean[c], stats.inv_std[c]);
                let a = gamma[c] * inv;
                let b = -a * inv * sum_dy_xhat[c] / m;
                op.a.push(a);
                op.b.push(b);
                op.k.push(-a * sum_dy[c] / m - b * mu);
            }
            Some(grad.apply_op2(x, op)?)
        } else {
            None
        };
        Ok((dx, Some(d_gamma), Some(d_beta)))
    }
}

impl CustomOp2 for BatchNormInputGrad {
    fn name(&self) -> &'static str {
        "trainserve-batch-norm-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = Planes::of(l1, "batch_norm gradient")?;
        if l1.shape() != l2.shape() || self.a.len() != p.c {
            bail!(
                "batch_norm backward: gradient {:?} for input {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        by_dtype!(s1, "batch_norm backward", T => {
            let dy = view::<T>(s1, l1, "batch_norm gradient")?;
            let x = view::<T>(s2, l2, "batch_norm input")?;
            Ok((storage(p.channel_affine(dy, Some(x), &self.a, &self.b, &self.k)), l1.shape().clone()))
        })
    }
}

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "trainserve-channel-affine"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = Planes::of(l1, "batch_norm input")?;
        if l2.shape().elem_count() != p.c || l3.shape().elem_count() != p.c {
            bail!(
                "batch_norm: scale {:?} and shift {:?} for {} channels",
                l2.dims(),
                l3.dims(),
                p.c
            );
        }
        by_dtype!(s1, "batch_norm", T => {
            let x = view::<T>(s1, l1, "batch_norm input")?;
            let f = |s: &[T]| s.iter().map(|v| v.to_f64()).collect::<Vec<f64>>();
            let (scale, shift) = (f(view::<T>(s2, l2, "scale")?), f(view::<T>(s3, l3, "shift")?));
            Ok((storage(p.channel_affine(x, None, &scale, &[], &shift)), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        shift: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = match x.track_op() {
            true => Some(grad.apply_op3(scale, &shift.zeros_like()?, ChannelAffine)?),
            false => None,
        };
        let (sum_g, sum_gx) = channel_sums_of(&grad, Some(x))?;
        let leaf = |v: Vec<f64>, like: &Tensor| {
            Tensor::from_vec(v, like.shape(), x.device())?.to_dtype(x.dtype())
        };
        let (d_scale, d_shift) = (leaf(sum_gx, scale)?, leaf(sum_g, shift)?);
        Ok((dx, Some(d_scale), Some(d_shift)))
    }
}

/// Training-mode batch normalization of `x: [n, c, h, w]` over (n, h, w) per channel:
/// `y = γ·(x − μ)/sqrt(σ² + eps) + β` with the batch's mean μ and biased variance σ².
/// Returns `(y, μ, σ²)`; the statistics are `[c]` tensors outside the graph, for
/// [`update_running_stats`]. The backward pass gives dx, dγ and dβ in closed form (it is not
/// itself differentiable). Off the CPU this composes candle's ops.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (_, c, _, _) = x.dims4()?;
    if !x.device().is_cpu() {
        let mean = x.mean_keepdim((0, 2, 3))?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
        let y = centered
            .broadcast_div(&(&var + eps)?.sqrt()?)?
            .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
            .broadcast_add(&beta.reshape((1, c, 1, 1))?)?;
        return Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()));
    }
    let stats = Arc::new(OnceLock::new());
    let op = BatchNormTrain {
        eps,
        stats: stats.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let Some(stats) = stats.get() else {
        bail!("batch_norm: the forward pass recorded no statistics");
    };
    let mean = Tensor::from_vec(stats.mean.clone(), c, x.device())?.to_dtype(x.dtype())?;
    let var = Tensor::from_vec(stats.var.clone(), c, x.device())?.to_dtype(x.dtype())?;
    Ok((y, mean, var))
}

/// Evaluation-mode batch normalization with running statistics:
/// `y = γ·(x − running_mean)/sqrt(running_var + eps) + β`, one pass over `x`.
/// Differentiable in `x`, `γ` and `β` (for fine-tuning with frozen statistics).
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    let scale = gamma.broadcast_div(&(running_var.detach() + eps)?.sqrt()?)?;
    let shift = (beta - running_mean.detach().mul(&scale)?)?;
    if !x.device().is_cpu() {
        return x
            .broadcast_mul(&scale.reshape((1, c, 1, 1))?)?
            .broadcast_add(&shift.reshape((1, c, 1, 1))?);
    }
    x.contiguous()?
        .apply_op3(&scale.contiguous()?, &shift.contiguous()?, ChannelAffine)
}

/// Moves running statistics towards a batch's, as PyTorch and candle do:
/// `r ← (1 − momentum)·r + momentum·stat`, with the variance made unbiased by
/// `count / (count − 1)` where `count = n·h·w` is the number of values per channel.
pub fn update_running_stats(
    running_mean: &Var,
    running_var: &Var,
    batch_mean: &Tensor,
    batch_var: &Tensor,
    momentum: f64,
    count: usize,
) -> Result<()> {
    let unbiased = if count > 1 {
        (batch_var * (count as f64 / (count - 1) as f64))?
    } else {
        batch_var.clone()
    };
    let keep = 1.0 - momentum;
    running_mean.set(&((running_mean.as_tensor() * keep)? + (batch_mean * momentum)?)?)?;
    running_var.set(&((running_var.as_tensor() * keep)? + (unbiased * momentum)?)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::train::kernels::budget::with_thread_budget;
    use crate::train::kernels::testing::*;

    /// Batch normalization composed of candle's broadcast ops, in f64: the reference.
    fn reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Result<Tensor> {
        let c = gamma.elem_count();
        let mean = x.mean_keepdim((0, 2, 3))?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim((0, 2, 3))?;
        centered
            .broadcast_div(&(var + eps)?.sqrt()?)?
            .broadcast_mul(&gamma.reshape((1, c, 1, 1))?)?
            .broadcast_add(&beta.reshape((1, c, 1, 1))?)
    }

    const SHAPES: [[usize; 4]; 4] = [[1, 1, 3, 2], [2, 3, 5, 4], [4, 5, 3, 3], [7, 2, 1, 1]];

    #[test]
    fn training_mode_matches_the_composed_reference() {
        for (i, shape) in SHAPES.iter().enumerate() {
            let seed = i as u64 * 10;
            // An offset mean and a non-unit scale, as real activations have.
            let x = ((uniform(shape, seed, DType::F64) * 3.0).unwrap() + 0.7).unwrap();
            let gamma = uniform(&[shape[1]], seed + 1, DType::F64);
            let beta = uniform(&[shape[1]], seed + 2, DType::F64);
            let (xv, gv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&gamma).unwrap(),
                Var::from_tensor(&beta).unwrap(),
            );
            let (y, mean, var) = batch_norm_train(&xv, &gv, &bv, 1e-5).unwrap();
            let want = reference(&xv, &gv, &bv, 1e-5).unwrap();
            assert_close(&y, &want, 1e-12, &format!("y {shape:?}"));
            let want_mean = x.mean((0, 2, 3)).unwrap();
            assert_close(&mean, &want_mean, 1e-12, "mean");
            let want_var = x
                .broadcast_sub(&x.mean_keepdim((0, 2, 3)).unwrap())
                .unwrap()
                .sqr()
                .unwrap()
                .mean((0, 2, 3))
                .unwrap();
            assert_close(&var, &want_var, 1e-12, "var");

            let r = uniform(shape, seed + 3, DType::F64);
            let ours = autograd(&y, &r, &[&xv, &gv, &bv]);
            let theirs = autograd(&want, &r, &[&xv, &gv, &bv]);
            for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
                assert_close(&ours[j], &theirs[j], 1e-9, &format!("{name} {shape:?}"));
            }
        }
    }

    #[test]
    fn training_mode_matches_finite_differences_in_f32_too() {
        let shape = [3, 2, 4, 3];
        let x = uniform(&shape, 1, DType::F64);
        let gamma = uniform(&[2], 2, DType::F64);
        let beta = uniform(&[2], 3, DType::F64);
        let r = uniform(&shape, 4, DType::F64);
        let f32v = |t: &Tensor| Var::from_tensor(&t.to_dtype(DType::F32).unwrap()).unwrap();
        let (xv, gv, bv) = (f32v(&x), f32v(&gamma), f32v(&beta));
        let (y, _, _) = batch_norm_train(&xv, &gv, &bv, 1e-3).unwrap();
        let ours = autograd(&y, &r.to_dtype(DType::F32).unwrap(), &[&xv, &gv, &bv]);
        let fd = [
            finite_difference(|x| Ok(batch_norm_train(x, &gamma, &beta, 1e-3)?.0), &x, &r),
            finite_difference(|g| Ok(batch_norm_train(&x, g, &beta, 1e-3)?.0), &gamma, &r),
            finite_difference(|b| Ok(batch_norm_train(&x, &gamma, b, 1e-3)?.0), &beta, &r),
        ];
        for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
            assert_close(&ours[j], &fd[j], 1e-4, name);
        }
    }

    #[test]
    fn a_plain_input_gets_no_gradient_but_the_affine_parameters_do() {
        let x = uniform(&[2, 3, 4, 4], 1, DType::F32);
        let gamma = Var::ones(3, DType::F32, &Device::Cpu).unwrap();
        let beta = Var::zeros(3, DType::F32, &Device::Cpu).unwrap();
        let (y, _, _) = batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(gamma.as_tensor()).is_some() && grads.get(beta.as_tensor()).is_some());
    }

    #[test]
    fn evaluation_mode_uses_the_running_statistics() {
        let x = Var::from_tensor(&uniform(&[2, 3, 4, 5], 1, DType::F64)).unwrap();
        let gamma = Var::from_tensor(&uniform(&[3], 2, DType::F64)).unwrap();
        let beta = Var::from_tensor(&uniform(&[3], 3, DType::F64)).unwrap();
        let mean = uniform(&[3], 4, DType::F64);
        let var = (uniform(&[3], 5, DType::F64).abs().unwrap() + 0.5).unwrap();
        let y = batch_norm_eval(&x, &gamma, &beta, &mean, &var, 1e-5).unwrap();
        let r4 = |t: &Tensor| t.reshape((1, 3, 1, 1)).unwrap();
        let want = x
            .broadcast_sub(&r4(&mean))
            .unwrap()
            .broadcast_div(&r4(&(&var + 1e-5).unwrap().sqrt().unwrap()))
            .unwrap()
            .broadcast_mul(&r4(&gamma))
            .unwrap()
            .broadcast_add(&r4(&beta))
            .unwrap();
        assert_close(&y, &want, 1e-12, "y");
        let r = uniform(&[2, 3, 4, 5], 6, DType::F64);
        let ours = autograd(&y, &r, &[&x, &gamma, &beta]);
        let theirs = autograd(&want, &r, &[&x, &gamma, &beta]);
        for (j, name) in ["dx", "dgamma", "dbeta"].iter().enumerate() {
            assert_close(&ours[j], &theirs[j], 1e-10, name);
        }
    }

    #[test]
    fn running_statistics_move_as_in_pytorch() {
        let dev = Device::Cpu;
        let running_mean = Var::zeros(2, DType::F32, &dev).unwrap();
        let running_var = Var::ones(2, DType::F32, &dev).unwrap();
        let mean = Tensor::new(&[1.0f32, -2.0], &dev).unwrap();
        let var = Tensor::new(&[4.0f32, 0.5], &dev).unwrap();
        update_running_stats(&running_mean, &running_var, &mean, &var, 0.1, 5).unwrap();
        let m: Vec<f32> = running_mean.to_vec1().unwrap();
        let v: Vec<f32> = running_var.to_vec1().unwrap();
        assert!((m[0] - 0.1).abs() < 1e-6 && (m[1] + 0.2).abs() < 1e-6);
        assert!(
            (v[0] - (0.9 + 0.1 * 5.0)).abs() < 1e-6 && (v[1] - (0.9 + 0.1 * 0.625)).abs() < 1e-6
        );
    }

    #[test]
    fn results_do_not_depend_on_the_thread_budget() {
        let x = Var::from_tensor(&uniform(&[5, 7, 3, 4], 1, DType::F64)).unwrap();
        let gamma = Var::from_tensor(&uniform(&[7], 2, DType::F64)).unwrap();
        let beta = Var::from_tensor(&uniform(&[7], 3, DType::F64)).unwrap();
        let r = uniform(&[5, 7, 3, 4], 4, DType::F64);
        let run = |threads| {
            with_thread_budget(threads, || {
                let (y, _, _) = batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
                let mut out = autograd(&y, &r, &[&x, &gamma, &beta]);
                out.push(y);
                out
            })
        };
        let one = run(1);
        for threads in [2, 3, 16] {
            for (a, b) in run(threads).iter().zip(&one) {
                assert_close(a, b, 1e-13, &format!("{threads} threads"));
            }
        }
    }
}
