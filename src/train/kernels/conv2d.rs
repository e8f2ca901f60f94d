//! 2-D convolution of NCHW tensors: forward by im2col + GEMM, the weight gradient as the GEMM
//! of the output gradient with the im2col matrix, and the input gradient as the GEMM of the
//! transposed weight with the output gradient followed by col2im (or, for stride 1, as a
//! forward convolution with the flipped kernel).
//!
//! The im2col matrix of an image has one row per (input channel, kernel row, kernel column),
//! in the order of the weight's `[c_out, c_in, kh, kw]` layout, and one column per output
//! pixel, so the forward pass of one image is `out[c_out × oh·ow] = w[c_out × k] · cols`.
//! The budget's threads claim groups of images one at a time, each running single-threaded
//! GEMMs; when an image has few output pixels, several images share one GEMM so it stays
//! large enough to run at full speed.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::activation::relu_grad;
use super::budget::thread_budget;
use super::channels::channel_sum;
use super::cpu::{
    Real, by_dtype, chunk_len, dims4, for_each_chunk, for_each_item, storage, sum_parts, view,
    written,
};
use super::gemm::{Mat, matmul, matmul_uninit};

#[path = "im2col.rs"]
mod im2col;

/// Stride, zero padding and dilation of a convolution, the same along height and width
/// (as in candle's and PyTorch's usual configurations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

impl Default for Conv2dConfig {
    fn default() -> Self {
        Conv2dConfig {
            stride: 1,
            padding: 0,
            dilation: 1,
        }
    }
}

// Output pixels per GEMM worth aiming for: below this, images are grouped into one product.
const GROUP_COLUMNS: usize = 256;

/// The shapes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    cfg: Conv2dConfig,
}

fn out_size(input: usize, kernel: usize, cfg: Conv2dConfig) -> Result<usize> {
    let span = cfg.dilation * (kernel - 1) + 1;
    if cfg.stride == 0 || cfg.dilation == 0 || kernel == 0 || input + 2 * cfg.padding < span {
        bail!(
            "conv2d: kernel {kernel} (dilated to {span}) does not fit input {input} padded by {}, or stride/dilation is 0",
            cfg.padding
        );
    }
    Ok((input + 2 * cfg.padding - span) / cfg.stride + 1)
}

impl Geometry {
    fn new(
        (n, c_in, h, w): (usize, usize, usize, usize),
        (c_out, wc_in, kh, kw): (usize, usize, usize, usize),
        cfg: Conv2dConfig,
    ) -> Result<Self> {
        if c_in != wc_in {
            bail!("conv2d: input has {c_in} channels, the weight expects {wc_in}");
        }
        Ok(Geometry {
            n,
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            oh: out_size(h, kh, cfg)?,
            ow: out_size(w, kw, cfg)?,
            cfg,
        })
    }

    /// Rows of the im2col matrix (the GEMM depth of the forward pass).
    fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    fn in_image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    fn out_image(&self) -> usize {
        self.c_out * self.out_plane()
    }

    fn out_shape(&self) -> Shape {
        (self.n, self.c_out, self.oh, self.ow).into()
    }

    fn in_shape(&self) -> Shape {
        (self.n, self.c_in, self.h, self.w).into()
    }

    fn weight_shape(&self) -> Shape {
        (self.c_out, self.c_in, self.kh, self.kw).into()
    }

    /// How the images split: (images per GEMM, threads claiming groups, threads per GEMM).
    /// Images are grouped until a GEMM has [`GROUP_COLUMNS`] columns; the budget's threads
    /// claim groups one at a time, and when there are fewer groups than threads (small
    /// planes, small batches) the GEMMs themselves run on the spare threads, so each thread
    /// packs only its share of the weight.
    fn plan(&self, budget: usize) -> (usize, usize, usize) {
        let group = GROUP_COLUMNS
            .div_ceil(self.out_plane().max(1))
            .clamp(1, self.n.max(1));
        let workers = budget.clamp(1, self.n.div_ceil(group).max(1));
        (group, workers, (budget / workers).max(1))
    }

    /// The forward pass: `out = conv(x, w) + bias`, then ReLU if `relu`.
    fn forward<T: Real>(
        &self,
        x: &[T],
        w: &[T],
        bias: Option<&[T]>,
        relu: bool,
        budget: usize,
    ) -> Vec<T> {
        let (group, workers, threads) = self.plan(budget);
        let (k, plane, c_out) = (self.k(), self.out_plane(), self.c_out);
        let (in_image, out_image) = (self.in_image(), self.out_image());
        if self.n * out_image == 0 {
            return Vec::new();
        }
        let weight = Mat::rows(w, c_out, k, k);
        let finish = |co: usize, v: T| {
            let y = v + bias.map_or(T::ZERO, |b| b[co]);
            if !relu || y > T::ZERO { y } else { T::ZERO }
        };
        let write = |part: usize, out: &mut [MaybeUninit<T>]| {
            let first = part * group;
            let images = out.len() / out_image;
            for g0 in (0..images).step_by(group) {
                let count = group.min(images - g0);
                let ld = count * plane;
                T::with_scratch(k * ld, |cols| {
                    for j in 0..count {
                        let image = &x[(first + g0 + j) * in_image..][..in_image];
                        self.im2col(image, cols, ld, j * plane);
                    }
                    let cols = Mat::rows(&*cols, k, ld, ld);
                    if count == 1 {
                        let dst = matmul_uninit(
                            &mut out[g0 * out_image..][..out_image],
                            plane,
                            weight,
                            cols,
                            threads,
                        );
                        if bias.is_some() || relu {
                            // While the image's output is still in cache.
                            for (co, row) in dst.chunks_mut(plane).enumerate() {
                                for v in row {
                                    *v = finish(co, *v);
                                }
                            }
                        }
                    } else {
                        T::with_scratch(c_out * ld, |tmp| {
                            matmul(tmp, ld, false, weight, cols, threads);
                            for j in 0..count {
                                let dst = &mut out[(g0 + j) * out_image..][..out_image];
                                for (co, row) in dst.chunks_mut(plane).enumerate() {
                                    let src = &tmp[co * ld + j * plane..][..plane];
                                    for (o, v) in row.iter_mut().zip(src) {
                                        o.write(finish(co, *v));
                                    }
                                }
                            }
                        });
                    }
                });
            }
        };
        // SAFETY: `write` writes every image of its chunk whole, by `matmul_uninit` or by the
        // copy out of a grouped GEMM. (Not zero-filled first: zeroing the step's largest
        // outputs cost a few percent of it.)
        unsafe { written(self.n * out_image, group * out_image, workers, write) }
    }

    /// Runs `f(matrix, ld)` on the output gradient of images `first..first + count` laid out
    /// as one `c_out × count·oh·ow` matrix: the image's own slice when `count` is 1, else a
    /// gathered copy.
    fn with_grad_group<T: Real, R>(
        &self,
        dy: &[T],
        first: usize,
        count: usize,
        f: impl FnOnce(&[T], usize) -> R,
    ) -> R {
        let (plane, out_image) = (self.out_plane(), self.out_image());
        if count == 1 {
            return f(&dy[first * out_image..][..out_image], plane);
        }
        let ld = count * plane;
        T::with_scratch(self.c_out * ld, |tmp| {
            for j in 0..count {
                let src = &dy[(first + j) * out_image..][..out_image];
                for (co, row) in src.chunks(plane).enumerate() {
                    tmp[co * ld + j * plane..][..plane].copy_from_slice(row);
                }
            }
            f(tmp, ld)
        })
    }

    /// The weight gradient: `dw = Σ_images dy · colsᵀ`.
    fn weight_grad<T: Real>(&self, x: &[T], dy: &[T], budget: usize) -> Vec<T> {
        let (group, workers, threads) = self.plan(budget);
        let (k, plane, c_out, in_image) = (self.k(), self.out_plane(), self.c_out, self.in_image());
        if self.n == 0 {
            return vec![T::ZERO; c_out * k];
        }
        // Fixed runs of groups per item, each summed into its own partial and the partials
        // summed in order: the result does not depend on which thread claimed what, so
        // training stays reproducible for a given budget.
        let groups = self.n.div_ceil(group);
        let run = chunk_len(groups, workers, 1);
        let mut partials = vec![Vec::new(); groups.div_ceil(run)];
        for_each_item(partials.iter_mut(), workers, |item, dw: &mut Vec<T>| {
            *dw = vec![T::ZERO; c_out * k];
            for g in item * run..((item + 1) * run).min(groups) {
                let first = g * group;
                let count = group.min(self.n - first);
                let ld = count * plane;
                T::with_scratch(k * ld, |cols| {
                    for j in 0..count {
                        let image = &x[(first + j) * in_image..][..in_image];
                        self.im2col(image, cols, ld, j * plane);
                    }
                    self.with_grad_group(dy, first, count, |g, g_ld| {
                        matmul(
                            dw,
                            k,
                            true,
                            Mat::rows(g, c_out, ld, g_ld),
                            Mat::transposed(&*cols, ld, k, ld),
                            threads,
                        );
                    });
                });
            }
        });
        sum_parts(partials)
    }

    /// For stride 1 and a square kernel, the input gradient is itself a convolution: of
    /// `dy` with the kernel flipped and its channels swapped, padded by
    /// `dilation·(k − 1) − padding`. Running it through the forward path (one GEMM of depth
    /// `c_out·k²` per image) beats `wᵀ · dy` (depth `c_out`) plus col2im. Returns that
    /// convolution's geometry and the weight transform, or `None` where it does not apply.
    #[allow(clippy::type_complexity)]
    fn transposed<T: Real>(&self) -> Option<(Geometry, impl Fn(&[T], usize) -> Vec<T> + use<T>)> {
        let (k, d, p) = (self.kh, self.cfg.dilation, self.cfg.padding);
        if self.cfg.stride != 1 || self.kw != k || d * (k - 1) < p {
            return None;
        }
        let cfg = Conv2dConfig {
            stride: 1,
            padding: d * (k - 1) - p,
            dilation: d,
        };
        let g = Geometry::new(
            (self.n, self.c_out, self.oh, self.ow),
            (self.c_in, self.c_out, k, k),
            cfg,
        )
        .ok()?;
        debug_assert_eq!((g.oh, g.ow), (self.h, self.w));
        let (c_in, c_out) = (self.c_in, self.c_out);
        let flip = move |w: &[T], threads: usize| {
            // Parallel too: for a ResNet's last stage this is millions of elements, and the
            // rest of the budget would wait on it.
            let mut out = vec![T::ZERO; w.len()];
            let per = c_out * k * k;
            let chunk = chunk_len(c_in, threads, 1) * per;
            for_each_chunk(&mut out, chunk, threads, |part, out| {
                for (j, out) in out.chunks_mut(per).enumerate() {
                    let ci = part * chunk / per + j;
                    for (co, dst) in out.chunks_mut(k * k).enumerate() {
                        let src = &w[(co * c_in + ci) * k * k..][..k * k];
                        for (i, v) in src.iter().enumerate() {
                            dst[k * k - 1 - i] = *v;
                        }
                    }
                }
            });
            out
        };
        Some((g, flip))
    }

    /// The input gradient: `dx = col2im(wᵀ · dy)`.
    fn input_grad<T: Real>(&self, dy: &[T], w: &[T], budget: usize) -> Vec<T> {
        if let Some((transposed, flipped)) = self.transposed() {
            return transposed.forward(dy, &flipped(w, budget), None, false, budget);
        }
        let (group, workers, threads) = self.plan(budget);
        let (k, plane, c_out, in_image) = (self.k(), self.out_plane(), self.c_out, self.in_image());
        let mut dx = vec![T::ZERO; self.n * in_image];
        if dx.is_empty() {
            return dx;
        }
        let weight_t = Mat::transposed(w, k, c_out, k);
        for_each_chunk(&mut dx, group * in_image, workers, |part, dx| {
            let first = part * group;
            let images = dx.len() / in_image;
            for g0 in (0..images).step_by(group) {
                let count = group.min(images - g0);
                let ld = count * plane;
                T::with_scratch(k * ld, |cols| {
                    self.with_grad_group(dy, first + g0, count, |g, g_ld| {
                        matmul(
                            cols,
                            ld,
                            false,
                            weight_t,
                            Mat::rows(g, c_out, ld, g_ld),
                            threads,
                        );
                    });
                    for j in 0..count {
                        let image = &mut dx[(g0 + j) * in_image..][..in_image];
                        self.col2im(cols, ld, j * plane, image);
                    }
                });
            }
        });
        dx
    }
}

/// `conv2d(x, w)` without bias, then ReLU if `.1`.
struct Conv2d(Conv2dConfig, bool);
/// `conv2d(x, w) + b`, then ReLU if `.1`.
struct Conv2dBias(Conv2dConfig, bool);
/// `dx` from `(dy, w)`; holds the input's height and width, which strides make ambiguous.
struct InputGrad(Conv2dConfig, (usize, usize));
/// `dw` from `(x, dy)`; holds the kernel's height and width.
struct WeightGrad(Conv2dConfig, (usize, usize));

fn conv_fwd(
    cfg: Conv2dConfig,
    relu: bool,
    (s1, l1): (&CpuStorage, &Layout),
    (s2, l2): (&CpuStorage, &Layout),
    bias: Option<(&CpuStorage, &Layout)>,
) -> Result<(CpuStorage, Shape)> {
    let g = Geometry::new(dims4(l1, "conv2d input")?, dims4(l2, "conv2d weight")?, cfg)?;
    by_dtype!(s1, "conv2d", T => {
        let x = view::<T>(s1, l1, "conv2d input")?;
        let w = view::<T>(s2, l2, "conv2d weight")?;
        let b = match bias {
            Some((s3, l3)) => {
                let b = view::<T>(s3, l3, "conv2d bias")?;
                if b.len() != g.c_out {
                    bail!("conv2d: bias of {} for {} output channels", b.len(), g.c_out);
                }
                Some(b)
            }
            None => None,
        };
        Ok((storage(g.forward(x, w, b, relu, thread_budget())), g.out_shape()))
    })
}

/// The gradients of `conv2d(x, w) (+ b)`, after ReLU if `relu` (whose output is `res`), as
/// further custom ops; `None` for an argument that does not need one (a plain input tensor,
/// such as the first layer's images).
fn conv_bwd(
    (cfg, relu): (Conv2dConfig, bool),
    x: &Tensor,
    w: &Tensor,
    with_bias: bool,
    res: &Tensor,
    grad: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let grad = match relu {
        true => relu_grad(grad, res)?,
        false => grad.contiguous()?,
    };
    let (_, _, h, wd) = x.dims4()?;
    let (_, _, kh, kw) = w.dims4()?;
    let dx = match x.track_op() {
        true => Some(conv2d_input_grad(&grad, w, (h, wd), cfg)?),
        false => None,
    };
    let dw = match w.track_op() {
        true => Some(conv2d_weight_grad(x, &grad, (kh, kw), cfg)?),
        false => None,
    };
    let db = match with_bias {
        true => Some(channel_sum(&grad)?),
        false => None,
    };
    Ok((dx, dw, db))
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "trainserve-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        conv_fwd(self.0, self.1, (s1, l1), (s2, l2), None)
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = conv_bwd((self.0, self.1), x, w, false, res, grad)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for Conv2dBias {
    fn name(&self) -> &'static str {
        "trainserve-conv2d-bias"
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
        conv_fwd(self.0, self.1, (s1, l1), (s2, l2), Some((s3, l3)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        conv_bwd((self.0, self.1), x, w, true, res, grad)
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "trainserve-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c_out, oh, ow) = dims4(l1, "conv2d output gradient")?;
        let (wc_out, c_in, kh, kw) = dims4(l2, "conv2d weight")?;
        let (h, w) = self.1;
        let g = Geometry::new((n, c_in, h, w), (wc_out, c_in, kh, kw), self.0)?;
        if (g.c_out, g.oh, g.ow) != (c_out, oh, ow) {
            bail!(
                "conv2d input gradient: output gradient {:?} for output {:?}",
                l1.dims(),
                g.out_shape()
            );
        }
        by_dtype!(s1, "conv2d input gradient", T => {
            let dy = view::<T>(s1, l1, "conv2d output gradient")?;
            let w = view::<T>(s2, l2, "conv2d weight")?;
            Ok((storage(g.input_grad(dy, w, thread_budget())), g.in_shape()))
        })
    }

    /// `dx` is linear in `dy` and in `w`: its adjoints are the forward convolution and the
    /// weight gradient.
    fn bwd(
        &self,
        dy: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, kh, kw) = w.dims4()?;
        let d_dy = conv2d(&grad, w, None, self.0)?;
        let d_w = conv2d_weight_grad(&grad, dy, (kh, kw), self.0)?;
        Ok((Some(d_dy), Some(d_w)))
    }
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "trainserve-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c_in, h, w) = dims4(l1, "conv2d input")?;
        let (dn, c_out, oh, ow) = dims4(l2, "conv2d output gradient")?;
        let (kh, kw) = self.1;
        let g = Geometry::new((n, c_in, h, w), (c_out, c_in, kh, kw), self.0)?;
        if (g.n, g.oh, g.ow) != (dn, oh, ow) {
            bail!(
                "conv2d weight gradient: output gradient {:?} for output {:?}",
                l2.dims(),
                g.out_shape()
            );
        }
        by_dtype!(s1, "conv2d weight gradient", T => {
            let x = view::<T>(s1, l1, "conv2d input")?;
            let dy = view::<T>(s2, l2, "conv2d output gradient")?;
            Ok((storage(g.weight_grad(x, dy, thread_budget())), g.weight_shape()))
        })
    }

    /// `dw` is linear in `x` and in `dy`: its adjoints are the input gradient and the forward
    /// convolution.
    fn bwd(
        &self,
        x: &Tensor,
        dy: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (_, _, h, w) = x.dims4()?;
        let d_x = conv2d_input_grad(dy, &grad, (h, w), self.0)?;
        let d_dy = conv2d(x, &grad, None, self.0)?;
        Ok((Some(d_x), Some(d_dy)))
    }
}

/// The 2-D convolution (cross-correlation, as in PyTorch) of `x: [n, c_in, h, w]` with
/// `w: [c_out, c_in, kh, kw]`, plus `bias: [c_out]` per output channel, giving
/// `[n, c_out, oh, ow]`. Differentiable in all three arguments; the input's gradient is
/// skipped when `x` is a plain tensor outside the graph. Off the CPU this is candle's conv2d.
pub fn conv2d(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, cfg: Conv2dConfig) -> Result<Tensor> {
    conv2d_then(x, w, bias, cfg, false)
}

/// `relu(conv2d(x, w, bias, cfg))` as one op: the ReLU runs while each image's output is in
/// cache, and the graph has one node fewer, saving candle's backward a zero-filled buffer and
/// a sum over the activation.
pub fn conv2d_relu(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
) -> Result<Tensor> {
    conv2d_then(x, w, bias, cfg, true)
}

fn conv2d_then(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    cfg: Conv2dConfig,
    relu: bool,
) -> Result<Tensor> {
    if !x.device().is_cpu() {
        let y = x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, 1)?;
        let y = match bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
            None => y,
        };
        return if relu { y.relu() } else { Ok(y) };
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match bias {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, Conv2dBias(cfg, relu)),
        None => x.apply_op2(&w, Conv2d(cfg, relu)),
    }
}

/// The gradient of [`conv2d`] with respect to its input of height and width `input_hw`,
/// given the output gradient `dy: [n, c_out, oh, ow]` and the weight: `col2im(wᵀ · dy)`.
/// This is the transposed convolution of `dy` with `w`.
pub fn conv2d_input_grad(
    dy: &Tensor,
    w: &Tensor,
    input_hw: (usize, usize),
    cfg: Conv2dConfig,
) -> Result<Tensor> {
    dy.contiguous()?
        .apply_op2(&w.contiguous()?, InputGrad(cfg, input_hw))
}

/// The gradient of [`conv2d`] with respect to a weight of height and width `kernel_hw`,
/// given the input `x` and the output gradient `dy`: `Σ_images dy · im2col(x)ᵀ`.
pub fn conv2d_weight_grad(
    x: &Tensor,
    dy: &Tensor,
    kernel_hw: (usize, usize),
    cfg: Conv2dConfig,
) -> Result<Tensor> {
    x.contiguous()?
        .apply_op2(&dy.contiguous()?, WeightGrad(cfg, kernel_hw))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Var};

    use super::*;
    use crate::train::kernels::budget::with_thread_budget;
    use crate::train::kernels::testing::*;

    /// (batch, c_in, h, w, c_out, kh, kw): odd sizes, channels 1–5, batches 1 and up.
    /// The last has rows wide enough (≥ 8 outputs) for im2col's row-copy path at strides 1
    /// and 2; the others take the gather-table path.
    const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 7] = [
        (1, 1, 7, 5, 1, 3, 2),
        (2, 3, 6, 5, 4, 3, 3),
        (1, 2, 5, 6, 3, 2, 2),
        (2, 3, 7, 5, 4, 3, 2),
        (3, 5, 6, 7, 2, 2, 3),
        (4, 2, 5, 5, 5, 1, 1),
        (2, 2, 6, 19, 3, 3, 3),
    ];

    fn configs() -> impl Iterator<Item = Conv2dConfig> {
        (1..=3).flat_map(|stride| {
            (0..=2).flat_map(move |padding| {
                (1..=2).map(move |dilation| Conv2dConfig {
                    stride,
                    padding,
                    dilation,
                })
            })
        })
    }

    fn fits(
        &(_, _, h, w, _, kh, kw): &(usize, usize, usize, usize, usize, usize, usize),
        cfg: Conv2dConfig,
    ) -> bool {
        out_size(h, kh, cfg).is_ok() && out_size(w, kw, cfg).is_ok()
    }

    fn candle_conv(
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        cfg: Conv2dConfig,
    ) -> Result<Tensor> {
        let y = x.conv2d(w, cfg.padding, cfg.stride, cfg.dilation, 1)?;
        match b {
            Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
            None => Ok(y),
        }
    }

    #[test]
    fn forward_matches_candle_in_f32() {
        let mut seed = 0;
        for shape in SHAPES {
            let (n, ci, h, w, co, kh, kw) = shape;
            for cfg in configs().filter(|cfg| fits(&shape, *cfg)) {
                seed += 1;
                let x = uniform(&[n, ci, h, w], seed, DType::F32);
                let k = uniform(&[co, ci, kh, kw], seed + 1000, DType::F32);
                let b = uniform(&[co], seed + 2000, DType::F32);
                let ours = conv2d(&x, &k, Some(&b), cfg).unwrap();
                let theirs = candle_conv(&x, &k, Some(&b), cfg).unwrap();
                assert_close(&ours, &theirs, 1e-4, &format!("{shape:?} {cfg:?}"));
            }
        }
    }

    #[test]
    fn gradients_match_candle_in_f64() {
        // candle's own backward fails for some non-square cases (its transposed convolution
        // derives both output paddings from the height); those are left to the finite
        // differences below.
        let (mut seed, mut compared) = (0, 0);
        for shape in SHAPES {
            let (n, ci, h, w, co, kh, kw) = shape;
            for cfg in configs().filter(|cfg| fits(&shape, *cfg)) {
                seed += 1;
                let x = Var::from_tensor(&uniform(&[n, ci, h, w], seed, DType::F64)).unwrap();
                let k =
                    Var::from_tensor(&uniform(&[co, ci, kh, kw], seed + 1000, DType::F64)).unwrap();
                let b = Var::from_tensor(&uniform(&[co], seed + 2000, DType::F64)).unwrap();
                let ours = conv2d(&x, &k, Some(&b), cfg).unwrap();
                let r = uniform(ours.dims(), seed + 3000, DType::F64);
                let theirs = candle_conv(&x, &k, Some(&b), cfg).unwrap();
                let ours = autograd(&ours, &r, &[&x, &k, &b]);
                let Ok(theirs) = try_autograd(&theirs, &r, &[&x, &k, &b]) else {
                    continue;
                };
                compared += 1;
                for (i, name) in ["dx", "dw", "db"].iter().enumerate() {
                    assert_close(
                        &ours[i],
                        &theirs[i],
                        1e-10,
                        &format!("{name} {shape:?} {cfg:?}"),
                    );
                }
            }
        }
        assert!(compared >= 20, "only {compared} cases had a reference");
    }

    #[test]
    fn gradients_match_finite_differences() {
        let cases = [
            (
                (2, 3, 7, 5, 2, 3, 2),
                Conv2dConfig {
                    stride: 2,
                    padding: 1,
                    dilation: 2,
                },
            ),
            (
                (1, 2, 6, 7, 3, 2, 3),
                Conv2dConfig {
                    stride: 3,
                    padding: 2,
                    dilation: 1,
                },
            ),
            ((3, 1, 5, 5, 2, 3, 3), Conv2dConfig::default()),
        ];
        for (seed, (shape, cfg)) in cases.into_iter().enumerate() {
            let (n, ci, h, w, co, kh, kw) = shape;
            let seed = seed as u64 * 10;
            let x = uniform(&[n, ci, h, w], seed, DType::F64);
            let k = uniform(&[co, ci, kh, kw], seed + 1, DType::F64);
            let b = uniform(&[co], seed + 2, DType::F64);
            let (xv, kv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&k).unwrap(),
                Var::from_tensor(&b).unwrap(),
            );
            let y = conv2d(&xv, &kv, Some(&bv), cfg).unwrap();
            let r = uniform(y.dims(), seed + 3, DType::F64);
            let grads = autograd(&y, &r, &[&xv, &kv, &bv]);
            let fd = [
                finite_difference(|x| conv2d(x, &k, Some(&b), cfg), &x, &r),
                finite_difference(|k| conv2d(&x, k, Some(&b), cfg), &k, &r),
                finite_difference(|b| conv2d(&x, &k, Some(b), cfg), &b, &r),
            ];
            for (i, name) in ["dx", "dw", "db"].iter().enumerate() {
                assert_close(
                    &grads[i],
                    &fd[i],
                    1e-7,
                    &format!("{name} {shape:?} {cfg:?}"),
                );
            }
        }
    }

    #[test]
    fn the_gradient_ops_are_differentiable_too() {
        let cfg = Conv2dConfig {
            stride: 2,
            padding: 1,
            dilation: 1,
        };
        let x = uniform(&[2, 3, 7, 5], 1, DType::F64);
        let w = uniform(&[4, 3, 3, 2], 2, DType::F64);
        let dy = uniform(&[2, 4, 4, 3], 3, DType::F64);
        let r_dx = uniform(&[2, 3, 7, 5], 4, DType::F64);
        let r_dw = uniform(&[4, 3, 3, 2], 5, DType::F64);
        let (wv, dyv, xv) = (
            Var::from_tensor(&w).unwrap(),
            Var::from_tensor(&dy).unwrap(),
            Var::from_tensor(&x).unwrap(),
        );

        let dx = conv2d_input_grad(&dyv, &wv, (7, 5), cfg).unwrap();
        let grads = autograd(&dx, &r_dx, &[&dyv, &wv]);
        let fd_dy = finite_difference(|dy| conv2d_input_grad(dy, &w, (7, 5), cfg), &dy, &r_dx);
        let fd_w = finite_difference(|w| conv2d_input_grad(&dy, w, (7, 5), cfg), &w, &r_dx);
        assert_close(&grads[0], &fd_dy, 1e-7, "d(dx)/d(dy)");
        assert_close(&grads[1], &fd_w, 1e-7, "d(dx)/dw");

        let dw = conv2d_weight_grad(&xv, &dyv, (3, 2), cfg).unwrap();
        let grads = autograd(&dw, &r_dw, &[&xv, &dyv]);
        let fd_x = finite_difference(|x| conv2d_weight_grad(x, &dy, (3, 2), cfg), &x, &r_dw);
        let fd_dy = finite_difference(|dy| conv2d_weight_grad(&x, dy, (3, 2), cfg), &dy, &r_dw);
        assert_close(&grads[0], &fd_x, 1e-7, "d(dw)/dx");
        assert_close(&grads[1], &fd_dy, 1e-7, "d(dw)/d(dy)");
    }

    #[test]
    fn the_fused_relu_matches_relu_after_the_convolution() {
        for (seed, cfg) in [
            Conv2dConfig::default(),
            Conv2dConfig {
                stride: 2,
                padding: 1,
                dilation: 2,
            },
        ]
        .into_iter()
        .enumerate()
        {
            let seed = seed as u64 * 10;
            // Grouped (3×2 outputs) and ungrouped (16×16) GEMMs.
            for (h, w) in [(7, 5), (32, 32)] {
                let x = uniform(&[3, 2, h, w], seed, DType::F64);
                let k = uniform(&[4, 2, 3, 2], seed + 1, DType::F64);
                let b = uniform(&[4], seed + 2, DType::F64);
                let (xv, kv, bv) = (
                    Var::from_tensor(&x).unwrap(),
                    Var::from_tensor(&k).unwrap(),
                    Var::from_tensor(&b).unwrap(),
                );
                let fused = conv2d_relu(&xv, &kv, Some(&bv), cfg).unwrap();
                let apart = conv2d(&xv, &kv, Some(&bv), cfg).unwrap().relu().unwrap();
                assert_close(&fused, &apart, 0.0, "forward");
                let r = uniform(fused.dims(), seed + 3, DType::F64);
                let ours = autograd(&fused, &r, &[&xv, &kv, &bv]);
                let theirs = autograd(&apart, &r, &[&xv, &kv, &bv]);
                for (i, name) in ["dx", "dw", "db"].iter().enumerate() {
                    assert_close(
                        &ours[i],
                        &theirs[i],
                        1e-12,
                        &format!("{name} {cfg:?} {h}x{w}"),
                    );
                }
                let no_bias = conv2d_relu(&xv, &kv, None, cfg).unwrap();
                let want = conv2d(&xv, &kv, None, cfg).unwrap().relu().unwrap();
                assert_close(&no_bias, &want, 0.0, "without bias");
            }
        }
    }

    #[test]
    fn a_plain_input_gets_no_gradient() {
        let x = uniform(&[2, 3, 6, 6], 1, DType::F32);
        let w = Var::from_tensor(&uniform(&[4, 3, 3, 3], 2, DType::F32)).unwrap();
        let y = conv2d(&x, &w, None, Conv2dConfig::default()).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn results_do_not_depend_on_the_thread_budget_or_grouping() {
        // 2×2 output planes group many images per GEMM; 7 images split unevenly.
        let cfg = Conv2dConfig {
            stride: 2,
            padding: 0,
            dilation: 1,
        };
        let x = Var::from_tensor(&uniform(&[7, 3, 5, 5], 1, DType::F64)).unwrap();
        let w = Var::from_tensor(&uniform(&[4, 3, 3, 3], 2, DType::F64)).unwrap();
        let r = uniform(&[7, 4, 2, 2], 3, DType::F64);
        let run = |threads| {
            with_thread_budget(threads, || {
                let y = conv2d(&x, &w, None, cfg).unwrap();
                let mut out = autograd(&y, &r, &[&x, &w]);
                out.push(y);
                out
            })
        };
        let one = run(1);
        for threads in [2, 3, 8] {
            let first = run(threads);
            for (a, b) in first.iter().zip(&one) {
                assert_close(a, b, 1e-12, &format!("{threads} threads"));
            }
            // Reproducible for a given budget, whichever thread claims which images.
            for (a, b) in run(threads).iter().zip(&first) {
                assert_close(a, b, 0.0, &format!("{threads} threads again"));
            }
        }
        let theirs = candle_conv(&x, &w, None, cfg).unwrap();
        assert_close(&one[2], &theirs, 1e-12, "grouped forward");
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let x = uniform(&[1, 3, 5, 5], 1, DType::F32);
        let w = uniform(&[2, 2, 3, 3], 2, DType::F32);
        assert!(conv2d(&x, &w, None, Conv2dConfig::default()).is_err());
        let w = uniform(&[2, 3, 7, 7], 2, DType::F32);
        assert!(conv2d(&x, &w, None, Conv2dConfig::default()).is_err());
    }
}
