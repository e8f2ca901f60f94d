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

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::activation::relu_grad;
use super::budget::thread_budget;
use super::channels::channel_sum;
use super::cpu::{by_dtype, dims4, storage, view};

mod geometry;
mod im2col;

pub use geometry::GROUP_COLUMNS;
use geometry::Geometry;
#[cfg(test)]
use geometry::out_size;

/// Stride, zero padding and dilation of a convolution, the same along height and width
/// (as in candle's and PyTorch's usual configurations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on each side.
    pub padding: usize,
    /// Spacing between the kernel's taps.
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
mod tests;
