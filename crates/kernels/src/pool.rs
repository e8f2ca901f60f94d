//! Max and average pooling of NCHW tensors with any kernel, stride and padding, and their
//! backward passes.
//!
//! Max pooling records, in its forward pass, which input of each window won (an index into
//! the image plane), so the backward pass is one scatter of the output gradient and its own
//! backward one gather. Padding is -∞ for max pooling and 0 for average pooling, whose
//! divisor is always the full kernel area (PyTorch's `count_include_pad=True`).

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, ToUsize2, bail};

use super::cpu::{by_dtype, dims4, storage, view};

mod geometry;

use geometry::{Geometry, Window};

/// Max pooling; records the winners for the backward pass.
struct MaxPool {
    win: Window,
    arg: Arc<OnceLock<Vec<u32>>>,
}

/// Scatters (`dy → dx`) or gathers (`g → d(dy)`) through recorded max-pool winners.
struct MaxPoolRoute {
    geometry: Geometry,
    arg: Arc<OnceLock<Vec<u32>>>,
    scatter: bool,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "trainserve-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(l, "max_pool2d input")?;
        let g = self.win.geometry((n, c, h, w))?;
        by_dtype!(s, "max_pool2d", T => {
            let (out, arg) = g.max_forward(view::<T>(s, l, "max_pool2d input")?);
            let _ = self.arg.set(arg);
            Ok((storage(out), (n, c, g.oh, g.ow).into()))
        })
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let geometry = self.win.geometry(x.dims4()?)?;
        let route = MaxPoolRoute {
            geometry,
            arg: self.arg.clone(),
            scatter: true,
        };
        Ok(Some(grad.contiguous()?.apply_op1(route)?))
    }
}

impl CustomOp1 for MaxPoolRoute {
    fn name(&self) -> &'static str {
        "trainserve-max-pool2d-route"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let (n, c, h, w) = dims4(l, "max_pool2d gradient")?;
        let (want, out) = match self.scatter {
            true => ((g.oh, g.ow), (g.h, g.w)),
            false => ((g.h, g.w), (g.oh, g.ow)),
        };
        if n * c != g.planes || (h, w) != want {
            bail!(
                "max_pool2d backward: gradient {:?} for planes of {want:?}",
                l.dims()
            );
        }
        let Some(arg) = self.arg.get() else {
            bail!("max_pool2d backward: the forward pass recorded no winners");
        };
        by_dtype!(s, "max_pool2d backward", T => {
            let data = view::<T>(s, l, "max_pool2d gradient")?;
            let result = match self.scatter {
                true => g.scatter(data, arg),
                false => g.gather(data, arg),
            };
            Ok((storage(result), (n, c, out.0, out.1).into()))
        })
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let adjoint = MaxPoolRoute {
            geometry: self.geometry,
            arg: self.arg.clone(),
            scatter: !self.scatter,
        };
        Ok(Some(grad.contiguous()?.apply_op1(adjoint)?))
    }
}

/// Max pooling of `x: [n, c, h, w]` over `kernel` windows moved by `stride`, with `padding`
/// (at most half the kernel) of -∞ on each side; `[n, c, oh, ow]` with
/// `oh = (h + 2·padding - kernel) / stride + 1`. Differentiable for any kernel and stride.
/// Off the CPU this is candle's max pooling (no padding; backward only when kernel == stride).
pub fn max_pool2d(
    x: &Tensor,
    kernel: impl ToUsize2,
    stride: impl ToUsize2,
    padding: impl ToUsize2,
) -> Result<Tensor> {
    let win = Window::new(kernel.to_usize2(), stride.to_usize2(), padding.to_usize2())?;
    if !x.device().is_cpu() {
        if win.padding != (0, 0) {
            bail!("max_pool2d: padding is only supported on the CPU");
        }
        return x.max_pool2d_with_stride(win.kernel, win.stride);
    }
    x.contiguous()?.apply_op1(MaxPool {
        win,
        arg: Arc::new(OnceLock::new()),
    })
}

/// Global average pooling: the mean of each channel of `x: [n, c, h, w]`, as `[n, c]`.
pub fn global_avg_pool2d(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h * w))?.mean(2)
}

#[cfg(test)]
mod tests;
