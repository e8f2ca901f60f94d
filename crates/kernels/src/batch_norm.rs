//! Batch normalization of NCHW tensors over (N, H, W) per channel: training mode with batch
//! statistics and a fused closed-form backward, and evaluation mode with running statistics.
//!
//! Training forward is two passes (per-channel sums, then `y = scale·x + shift`); backward is
//! two passes (per-channel `Σdy` and `Σdy·x̂`, then `dx = a·dy + b·x + k`), where candle's
//! composition of broadcast ops takes a dozen. The training op can end with a ReLU, or with a
//! residual sum and a ReLU (the end of a ResNet block), in the same pass: each fused step
//! saves a pass over the activation forward, and in backward the zero-filled buffer and sum
//! candle's `Tensor::backward` spends on every edge of the graph.

use std::sync::{Arc, OnceLock};

use candle_core::{
    CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, Var, WithDType, bail,
};

use super::activation::relu_grad;
use super::channels::{Planes, channel_sums_of};
use super::cpu::{Real, by_dtype, storage, view};

/// What a training-mode batch normalization applies to its output in the same pass.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// The normalized values as they are.
    None,
    /// `relu(y)`.
    Relu,
    /// `relu(y + residual)`, with `residual` of the input's shape.
    AddRelu(&'a Tensor),
}

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

/// Training-mode batch normalization, then a ReLU if `relu`, from `(x, γ, β)`; leaves its
/// statistics for the caller and the backward.
struct BatchNormTrain {
    eps: f64,
    relu: bool,
    stats: Arc<OnceLock<Stats>>,
}

/// `relu(batch_norm(x) + residual)` from `(x, [γ; β] as [2, c], residual)`: candle's custom
/// ops take at most three tensors, so the affine parameters travel stacked.
struct BatchNormAddRelu {
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

/// The batch's statistics and `post(γ·x̂ + β (+ residual))`, for [`BatchNormTrain`] and
/// [`BatchNormAddRelu`].
fn normalize<T: Real>(
    p: Planes,
    eps: f64,
    x: &[T],
    (gamma, beta): (&[T], &[T]),
    residual: Option<&[T]>,
    relu: bool,
) -> (Vec<T>, Stats) {
    let (sum, sum_sq) = p.channel_sums(x, None);
    let m = p.count() as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / m).collect();
    let var: Vec<f64> = sum_sq
        .iter()
        .zip(&mean)
        .map(|(s, mu)| (s / m - mu * mu).max(0.0))
        .collect();
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let scale: Vec<f64> = gamma
        .iter()
        .zip(&inv_std)
        .map(|(g, i)| g.to_f64() * i)
        .collect();
    let shift: Vec<f64> = (0..p.c)
        .map(|c| beta[c].to_f64() - mean[c] * scale[c])
        .collect();
    let ones = vec![1.0; if residual.is_some() { p.c } else { 0 }];
    let y = p.channel_affine(x, residual, &scale, &ones, &shift, relu);
    (y, Stats { mean, inv_std, var })
}

/// Checks a training-mode input: per-channel parameters of `c` values and a non-empty batch.
fn check_train(p: Planes, gamma_len: usize, beta_len: usize) -> Result<()> {
    if gamma_len != p.c || beta_len != p.c {
        bail!(
            "batch_norm: gamma of {gamma_len} and beta of {beta_len} values for {} channels",
            p.c
        );
    }
    if p.count() == 0 {
        bail!("batch_norm: an empty batch has no statistics");
    }
    Ok(())
}

/// `(dx, dγ, dβ)` of training-mode batch normalization for the gradient `g` of its
/// (pre-epilogue) output: `dx` only when `x` needs one.
fn train_bwd(
    x: &Tensor,
    gamma: &Tensor,
    stats: &Stats,
    g: &Tensor,
) -> Result<(Option<Tensor>, Tensor, Tensor)> {
    let (_, c, _, _) = x.dims4()?;
    let p = Planes::of(x.layout(), "batch_norm input")?;
    // Σdy and Σdy·x per channel; Σdy·x̂ = inv_std·(Σdy·x − mean·Σdy).
    let (sum_dy, sum_dy_x) = channel_sums_of(g, Some(x))?;
    let sum_dy_xhat: Vec<f64> = (0..c)
        .map(|c| stats.inv_std[c] * (sum_dy_x[c] - stats.mean[c] * sum_dy[c]))
        .collect();
    let leaf = |v: Vec<f64>| Tensor::from_vec(v, c, x.device())?.to_dtype(x.dtype());
    let d_gamma = leaf(sum_dy_xhat.clone())?;
    let d_beta = leaf(sum_dy.clone())?;
    if !x.track_op() {
        return Ok((None, d_gamma, d_beta));
    }
    // dx = γ·σ⁻¹/M · (M·dy − Σdy − x̂·Σdy·x̂), x̂ = (x − μ)·σ⁻¹, as a·dy + b·x + k.
    let m = p.count() as f64;
    let gamma = host_vec(gamma)?;
    let mut op = BatchNormInputGrad {
        a: Vec::with_capacity(c),
        b: Vec::with_capacity(c),
        k: Vec::with_capacity(c),
    };
    for c in 0..c {
        let (mu, inv) = (stats.mean[c], stats.inv_std[c]);
        let a = gamma[c] * inv;
        let b = -a * inv * sum_dy_xhat[c] / m;
        op.a.push(a);
        op.b.push(b);
        op.k.push(-a * sum_dy[c] / m - b * mu);
    }
    Ok((Some(g.apply_op2(x, op)?), d_gamma, d_beta))
}

fn recorded(stats: &OnceLock<Stats>) -> Result<&Stats> {
    match stats.get() {
        Some(stats) => Ok(stats),
        None => bail!("batch_norm backward: the forward pass recorded no statistics"),
    }
}

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
        check_train(p, l2.shape().elem_count(), l3.shape().elem_count())?;
        by_dtype!(s1, "batch_norm", T => {
            let x = view::<T>(s1, l1, "batch_norm input")?;
            let gamma = view::<T>(s2, l2, "batch_norm gamma")?;
            let beta = view::<T>(s3, l3, "batch_norm beta")?;
            let (y, stats) = normalize(p, self.eps, x, (gamma, beta), None, self.relu);
            let _ = self.stats.set(stats);
            Ok((storage(y), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = match self.relu {
            true => relu_grad(grad, res)?,
            false => grad.contiguous()?,
        };
        let (dx, d_gamma, d_beta) = train_bwd(x, gamma, recorded(&self.stats)?, &g)?;
        Ok((dx, Some(d_gamma), Some(d_beta)))
    }
}

impl CustomOp3 for BatchNormAddRelu {
    fn name(&self) -> &'static str {
        "trainserve-batch-norm-add-relu"
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
        if l2.dims() != [2, p.c] || l3.shape() != l1.shape() {
            bail!(
                "batch_norm add relu: parameters {:?} and residual {:?} for input {:?}",
                l2.dims(),
                l3.dims(),
                l1.dims()
            );
        }
        check_train(p, p.c, p.c)?;
        by_dtype!(s1, "batch_norm", T => {
            let x = view::<T>(s1, l1, "batch_norm input")?;
            let affine = view::<T>(s2, l2, "batch_norm gamma and beta")?;
            let residual = view::<T>(s3, l3, "residual")?;
            let params = affine.split_at(p.c);
            let (y, stats) = normalize(p, self.eps, x, params, Some(residual), true);
            let _ = self.stats.set(stats);
            Ok((storage(y), l1.shape().clone()))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        affine: &Tensor,
        residual: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = relu_grad(grad, res)?;
        let gamma = affine.get(0)?;
        let (dx, d_gamma, d_beta) = train_bwd(x, &gamma, recorded(&self.stats)?, &g)?;
        let d_affine = Tensor::stack(&[d_gamma, d_beta], 0)?;
        let d_residual = residual.track_op().then_some(g);
        Ok((dx, Some(d_affine), d_residual))
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
            let dx = p.channel_affine(dy, Some(x), &self.a, &self.b, &self.k, false);
            Ok((storage(dx), l1.shape().clone()))
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
            let y = p.channel_affine(x, None, &scale, &[], &shift, false);
            Ok((storage(y), l1.shape().clone()))
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
/// `y = γ·(x − μ)/sqrt(σ² + eps) + β` with the batch's mean μ and biased variance σ²,
/// followed by `then` in the same pass. Returns `(then(y), μ, σ²)`; the statistics are `[c]`
/// tensors outside the graph, for [`update_running_stats`]. The backward pass gives dx, dγ,
/// dβ (and the residual's gradient) in closed form; it is not itself differentiable. Off the
/// CPU this composes candle's ops.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    then: Epilogue,
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
        let y = match then {
            Epilogue::None => y,
            Epilogue::Relu => y.relu()?,
            Epilogue::AddRelu(residual) => (y + residual)?.relu()?,
        };
        return Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()));
    }
    let stats = Arc::new(OnceLock::new());
    let (x, gamma, beta) = (x.contiguous()?, gamma.contiguous()?, beta.contiguous()?);
    let y = match then {
        Epilogue::None | Epilogue::Relu => {
            let relu = matches!(then, Epilogue::Relu);
            let op = BatchNormTrain {
                eps,
                relu,
                stats: stats.clone(),
            };
            x.apply_op3(&gamma, &beta, op)?
        }
        Epilogue::AddRelu(residual) => {
            let affine = Tensor::stack(&[gamma.flatten_all()?, beta.flatten_all()?], 0)?;
            let op = BatchNormAddRelu {
                eps,
                stats: stats.clone(),
            };
            x.apply_op3(&affine, &residual.contiguous()?, op)?
        }
    };
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
mod tests;
