//! Max and average pooling of NCHW tensors with any kernel, stride and padding, and their
//! backward passes.
//!
//! Max pooling records, in its forward pass, which input of each window won (an index into
//! the image plane), so the backward pass is one scatter of the output gradient and its own
//! backward one gather. Padding is -∞ for max pooling and 0 for average pooling, whose
//! divisor is always the full kernel area (PyTorch's `count_include_pad=True`).

use std::mem::MaybeUninit;
use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, ToUsize2, bail};

use super::budget::thread_budget;
use super::cpu::{
    Real, avx2, by_dtype, chunk_len, dims4, for_each_chunk, for_each_item, storage, valid, view,
    written,
};

/// The shapes of one pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
}

/// The shapes of one pooling applied to planes of `h × w`.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    planes: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    win: Window,
}

impl Window {
    fn new(
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Self> {
        if kernel.0 == 0 || kernel.1 == 0 || stride.0 == 0 || stride.1 == 0 {
            bail!("pool2d: kernel {kernel:?} and stride {stride:?} must be positive");
        }
        if 2 * padding.0 > kernel.0 || 2 * padding.1 > kernel.1 {
            bail!("pool2d: padding {padding:?} is more than half the kernel {kernel:?}");
        }
        Ok(Window {
            kernel,
            stride,
            padding,
        })
    }

    fn geometry(&self, (n, c, h, w): (usize, usize, usize, usize)) -> Result<Geometry> {
        let size = |input: usize, k: usize, s: usize, p: usize| -> Result<usize> {
            if input + 2 * p < k {
                bail!(
                    "pool2d: kernel {:?} does not fit input {h}×{w} padded by {:?}",
                    self.kernel,
                    self.padding
                );
            }
            Ok((input + 2 * p - k) / s + 1)
        };
        Ok(Geometry {
            planes: n * c,
            h,
            w,
            oh: size(h, self.kernel.0, self.stride.0, self.padding.0)?,
            ow: size(w, self.kernel.1, self.stride.1, self.padding.1)?,
            win: *self,
        })
    }
}

impl Geometry {
    fn in_plane(&self) -> usize {
        self.h * self.w
    }

    fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// The input rows (or columns) of output position `o`'s window: `lo..hi`, clipped to
    /// the input.
    fn span(o: usize, k: usize, s: usize, p: usize, input: usize) -> (usize, usize) {
        let start = (o * s) as isize - p as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + k as isize).max(0) as usize).min(input);
        (lo, hi.max(lo))
    }

    fn rows(&self, oy: usize) -> (usize, usize) {
        let w = self.win;
        Self::span(oy, w.kernel.0, w.stride.0, w.padding.0, self.h)
    }

    fn cols(&self, ox: usize) -> (usize, usize) {
        let w = self.win;
        Self::span(ox, w.kernel.1, w.stride.1, w.padding.1, self.w)
    }

    /// Planes per work item and the threads sharing the items.
    fn schedule(&self) -> (usize, usize) {
        let threads = thread_budget();
        (chunk_len(self.planes, threads, 1), threads)
    }

    /// Max pooling of every plane: the maxima and, per output, the winning plane index.
    fn max_forward<T: Real>(&self, x: &[T]) -> (Vec<T>, Vec<u32>) {
        let (ip, op) = (self.in_plane(), self.out_plane());
        let mut out = vec![T::ZERO; self.planes * op];
        let mut arg = vec![0u32; self.planes * op];
        let (per_part, threads) = self.schedule();
        let avx2 = avx2();
        let work = |part: usize, (out, arg): (&mut [T], &mut [u32])| {
            let first = part * per_part;
            let mut candidates = vec![T::ZERO; self.ow];
            for (p, (out, arg)) in out.chunks_mut(op).zip(arg.chunks_mut(op)).enumerate() {
                let plane = &x[(first + p) * ip..][..ip];
                if avx2 {
                    // SAFETY: the CPU has AVX2 (checked at run time).
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        self.max_plane_avx2(plane, out, arg, &mut candidates)
                    };
                } else {
                    self.max_plane(plane, out, arg, &mut candidates);
                }
            }
        };
        let items = out
            .chunks_mut((per_part * op).max(1))
            .zip(arg.chunks_mut((per_part * op).max(1)));
        for_each_item(items, threads, work);
        (out, arg)
    }

    /// [`Geometry::max_plane`] compiled for AVX2, where its selects become blends (on the
    /// baseline x86-64 target they become branches that mispredict half the time).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn max_plane_avx2<T: Real>(
        &self,
        plane: &[T],
        out: &mut [T],
        arg: &mut [u32],
        candidates: &mut [T],
    ) {
        self.max_plane(plane, out, arg, candidates)
    }

    /// Max pooling of one plane: maxima into `out`, winners' plane indices into `arg`.
    #[inline(always)]
    fn max_plane<T: Real>(
        &self,
        plane: &[T],
        out: &mut [T],
        arg: &mut [u32],
        candidates: &mut [T],
    ) {
        let win = self.win;
        if win.kernel == (2, 2) && win.stride == (2, 2) && win.padding == (0, 0) {
            return self.max_plane_2x2(plane, out, arg);
        }
        for oy in 0..self.oh {
            let (y0, y1) = self.rows(oy);
            let best = &mut out[oy * self.ow..][..self.ow];
            let at = &mut arg[oy * self.ow..][..self.ow];
            best.fill(T::NEG_INFINITY);
            for (ox, at) in at.iter_mut().enumerate() {
                *at = (y0 * self.w + self.cols(ox).0) as u32;
            }
            // Row by row and, within a row, kernel column by kernel column over all
            // windows at once: each window still sees its inputs in row-major order,
            // so the first of equal maxima wins, as in PyTorch.
            for iy in y0..y1 {
                let row = &plane[iy * self.w..][..self.w];
                for kx in 0..win.kernel.1 {
                    let offset = kx as isize - win.padding.1 as isize;
                    let (lo, hi) = valid(self.ow, self.w, win.stride.1, offset);
                    if lo >= hi {
                        continue;
                    }
                    let s = win.stride.1;
                    // ix = ox·s + offset ≥ 0 for ox ≥ lo.
                    let ix_lo = (lo as isize * s as isize + offset) as usize;
                    let n = hi - lo;
                    // Gather the strided candidates first, so that the update below runs
                    // over contiguous arrays and vectorizes.
                    for (j, c) in candidates[..n].iter_mut().enumerate() {
                        *c = row[ix_lo + j * s];
                    }
                    let base = (iy * self.w + ix_lo) as u32;
                    let step = s as u32;
                    for (j, ((b, a), &v)) in best[lo..hi]
                        .iter_mut()
                        .zip(&mut at[lo..hi])
                        .zip(&candidates[..n])
                        .enumerate()
                    {
                        // `v != v`: a NaN wins and stays, as in PyTorch.
                        #[allow(clippy::eq_op)]
                        let take = (v > *b) | (v != v);
                        *b = if take { v } else { *b };
                        *a = if take { base + j as u32 * step } else { *a };
                    }
                }
            }
        }
    }

    /// [`Geometry::max_plane`] for the common 2×2 windows with stride 2 and no padding, in
    /// one pass over pairs of rows (the compiler vectorizes it with interleaved loads).
    #[inline(always)]
    fn max_plane_2x2<T: Real>(&self, plane: &[T], out: &mut [T], arg: &mut [u32]) {
        let w = self.w;
        for oy in 0..self.oh {
            let r0 = &plane[2 * oy * w..][..2 * self.ow];
            let r1 = &plane[(2 * oy + 1) * w..][..2 * self.ow];
            let best = &mut out[oy * self.ow..][..self.ow];
            let at = &mut arg[oy * self.ow..][..self.ow];
            let base = (2 * oy * w) as u32;
            for (ox, (((b, a), p0), p1)) in best
                .iter_mut()
                .zip(at.iter_mut())
                .zip(r0.chunks_exact(2))
                .zip(r1.chunks_exact(2))
                .enumerate()
            {
                // In row-major order, as in the general path: the first of equal maxima
                // wins, and a NaN wins.
                let i0 = base + 2 * ox as u32;
                let (mut m, mut i) = (p0[0], i0);
                for (v, j) in [
                    (p0[1], i0 + 1),
                    (p1[0], i0 + w as u32),
                    (p1[1], i0 + w as u32 + 1),
                ] {
                    #[allow(clippy::eq_op)]
                    let take = (v > m) | (v != v);
                    m = if take { v } else { m };
                    i = if take { j } else { i };
                }
                *b = m;
                *a = i;
            }
        }
    }

    /// `dx[plane][arg[o]] += dy[plane][o]`: the max-pool backward pass.
    fn scatter<T: Real>(&self, dy: &[T], arg: &[u32]) -> Vec<T> {
        let (ip, op) = (self.in_plane(), self.out_plane());
        if self.tiles_exactly_2x2() {
            return self.scatter_2x2(dy, arg);
        }
        let mut dx = vec![T::ZERO; self.planes * ip];
        let (per_part, threads) = self.schedule();
        for_each_chunk(&mut dx, per_part * ip, threads, |part, dx| {
            let first = part * per_part;
            for (p, dx) in dx.chunks_mut(ip).enumerate() {
                let (dy, arg) = (
                    &dy[(first + p) * op..][..op],
                    &arg[(first + p) * op..][..op],
                );
                for (&g, &at) in dy.iter().zip(arg) {
                    dx[at as usize] += g;
                }
            }
        });
        dx
    }

    /// Whether 2×2 windows with stride 2 cover every input exactly once.
    fn tiles_exactly_2x2(&self) -> bool {
        let win = self.win;
        win.kernel == (2, 2)
            && win.stride == (2, 2)
            && win.padding == (0, 0)
            && self.h.is_multiple_of(2)
            && self.w.is_multiple_of(2)
    }

    /// [`Geometry::scatter`] when the windows tile the input: each input is written once,
    /// with its window's gradient or zero, so the input gradient needs no zero-filling
    /// first.
    fn scatter_2x2<T: Real>(&self, dy: &[T], arg: &[u32]) -> Vec<T> {
        let (ip, op, w) = (self.in_plane(), self.out_plane(), self.w);
        let (per_part, threads) = self.schedule();
        let write = |part: usize, dx: &mut [MaybeUninit<T>]| {
            let first = part * per_part;
            for (p, dx) in dx.chunks_mut(ip).enumerate() {
                let (dy, arg) = (
                    &dy[(first + p) * op..][..op],
                    &arg[(first + p) * op..][..op],
                );
                for oy in 0..self.oh {
                    let (top, bottom) = dx[2 * oy * w..][..2 * w].split_at_mut(w);
                    for ox in 0..self.ow {
                        let (g, at) = (dy[oy * self.ow + ox], arg[oy * self.ow + ox] as usize);
                        let i0 = 2 * oy * w + 2 * ox;
                        let pick = |i: usize| if at == i { g } else { T::ZERO };
                        top[2 * ox].write(pick(i0));
                        top[2 * ox + 1].write(pick(i0 + 1));
                        bottom[2 * ox].write(pick(i0 + w));
                        bottom[2 * ox + 1].write(pick(i0 + w + 1));
                    }
                }
            }
        };
        // SAFETY: the windows tile each plane (even height and width), and each window
        // writes its four inputs.
        unsafe { written(self.planes * ip, per_part * ip, threads, write) }
    }

    /// `out[plane][o] = g[plane][arg[o]]`: the adjoint of [`Geometry::scatter`].
    fn gather<T: Real>(&self, g: &[T], arg: &[u32]) -> Vec<T> {
        let (ip, op) = (self.in_plane(), self.out_plane());
        let mut out = vec![T::ZERO; self.planes * op];
        let (per_part, threads) = self.schedule();
        for_each_chunk(&mut out, per_part * op, threads, |part, out| {
            let first = part * per_part;
            for (p, out) in out.chunks_mut(op).enumerate() {
                let (g, arg) = (&g[(first + p) * ip..][..ip], &arg[(first + p) * op..][..op]);
                for (o, &at) in out.iter_mut().zip(arg) {
                    *o = g[at as usize];
                }
            }
        });
        out
    }

    /// Average pooling with the full kernel area as divisor.
    fn avg_forward<T: Real>(&self, x: &[T]) -> Vec<T> {
        let (ip, op) = (self.in_plane(), self.out_plane());
        let scale = T::from_f64(1.0 / (self.win.kernel.0 * self.win.kernel.1) as f64);
        let mut out = vec![T::ZERO; self.planes * op];
        let (per_part, threads) = self.schedule();
        for_each_chunk(&mut out, per_part * op, threads, |part, out| {
            let first = part * per_part;
            for (p, out) in out.chunks_mut(op).enumerate() {
                let plane = &x[(first + p) * ip..][..ip];
                for oy in 0..self.oh {
                    let (y0, y1) = self.rows(oy);
                    for ox in 0..self.ow {
                        let (x0, x1) = self.cols(ox);
                        let mut sum = T::ZERO;
                        for iy in y0..y1 {
                            for &v in &plane[iy * self.w + x0..iy * self.w + x1] {
                                sum += v;
                            }
                        }
                        out[oy * self.ow + ox] = sum * scale;
                    }
                }
            }
        });
        out
    }

    /// The adjoint of [`Geometry::avg_forward`]: each output gradient spread over its window.
    fn avg_backward<T: Real>(&self, dy: &[T]) -> Vec<T> {
        let (ip, op) = (self.in_plane(), self.out_plane());
        let scale = T::from_f64(1.0 / (self.win.kernel.0 * self.win.kernel.1) as f64);
        let mut dx = vec![T::ZERO; self.planes * ip];
        let (per_part, threads) = self.schedule();
        for_each_chunk(&mut dx, per_part * ip, threads, |part, dx| {
            let first = part * per_part;
            for (p, dx) in dx.chunks_mut(ip).enumerate() {
                let dy = &dy[(first + p) * op..][..op];
                for oy in 0..self.oh {
                    let (y0, y1) = self.rows(oy);
                    for ox in 0..self.ow {
                        let (x0, x1) = self.cols(ox);
                        let g = dy[oy * self.ow + ox] * scale;
                        for iy in y0..y1 {
                            for d in &mut dx[iy * self.w + x0..iy * self.w + x1] {
                                *d += g;
                            }
                        }
                    }
                }
            }
        });
        dx
    }
}

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

/// Average pooling (`forward`) or its adjoint (`!forward`, which needs the input's size).
struct AvgPool {
    win: Window,
    forward: bool,
    input_hw: (usize, usize),
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

impl CustomOp1 for AvgPool {
    fn name(&self) -> &'static str {
        "trainserve-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(l, "avg_pool2d input")?;
        let input = if self.forward { (h, w) } else { self.input_hw };
        let g = self.win.geometry((n, c, input.0, input.1))?;
        if !self.forward && (h, w) != (g.oh, g.ow) {
            bail!(
                "avg_pool2d backward: gradient {:?} for output {}×{}",
                l.dims(),
                g.oh,
                g.ow
            );
        }
        by_dtype!(s, "avg_pool2d", T => {
            let data = view::<T>(s, l, "avg_pool2d input")?;
            Ok(match self.forward {
                true => (storage(g.avg_forward(data)), (n, c, g.oh, g.ow).into()),
                false => (storage(g.avg_backward(data)), (n, c, g.h, g.w).into()),
            })
        })
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, _, h, w) = x.dims4()?;
        let adjoint = AvgPool {
            win: self.win,
            forward: !self.forward,
            input_hw: if self.forward { (h, w) } else { self.input_hw },
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

/// Average pooling of `x: [n, c, h, w]` over `kernel` windows moved by `stride`, with
/// `padding` zeros on each side counted in the divisor (the kernel area), as PyTorch's
/// default. Differentiable for any kernel and stride. Off the CPU this is candle's.
pub fn avg_pool2d(
    x: &Tensor,
    kernel: impl ToUsize2,
    stride: impl ToUsize2,
    padding: impl ToUsize2,
) -> Result<Tensor> {
    let win = Window::new(kernel.to_usize2(), stride.to_usize2(), padding.to_usize2())?;
    if !x.device().is_cpu() {
        if win.padding != (0, 0) {
            bail!("avg_pool2d: padding is only supported on the CPU");
        }
        return x.avg_pool2d_with_stride(win.kernel, win.stride);
    }
    x.contiguous()?.apply_op1(AvgPool {
        win,
        forward: true,
        input_hw: (0, 0),
    })
}

/// Global average pooling: the mean of each channel of `x: [n, c, h, w]`, as `[n, c]`.
pub fn global_avg_pool2d(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h * w))?.mean(2)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Var};

    use super::*;
    use crate::train::kernels::budget::with_thread_budget;
    use crate::train::kernels::testing::*;

    /// (kernel, stride, padding) over odd kernels and overlapping, gapped and padded windows.
    type Hw = (usize, usize);
    const WINDOWS: [(Hw, Hw, Hw); 8] = [
        ((2, 2), (2, 2), (0, 0)),
        ((3, 3), (2, 2), (1, 1)),
        ((3, 2), (1, 1), (0, 0)),
        ((3, 2), (2, 3), (1, 1)),
        ((2, 3), (3, 1), (1, 0)),
        ((1, 1), (2, 2), (0, 0)),
        ((3, 3), (1, 1), (1, 1)),
        ((2, 2), (3, 3), (0, 0)),
    ];

    /// (n, c, h, w): odd sizes, batches and channels from 1, and one that 2×2 windows tile.
    const SHAPES: [[usize; 4]; 4] = [[1, 1, 7, 5], [2, 3, 6, 7], [3, 2, 5, 5], [2, 2, 4, 6]];

    #[test]
    fn forwards_match_candle_without_padding() {
        for (i, shape) in SHAPES.iter().enumerate() {
            let x = uniform(shape, i as u64, DType::F32);
            for (k, s, p) in WINDOWS.into_iter().filter(|w| w.2 == (0, 0)) {
                let ours = max_pool2d(&x, k, s, p).unwrap();
                assert_close(&ours, &x.max_pool2d_with_stride(k, s).unwrap(), 0.0, "max");
                let ours = avg_pool2d(&x, k, s, p).unwrap();
                assert_close(&ours, &x.avg_pool2d_with_stride(k, s).unwrap(), 1e-6, "avg");
            }
        }
    }

    #[test]
    fn average_gradients_match_candle_where_its_backward_works() {
        // candle backpropagates through pooling only when kernel == stride, and correctly
        // only when the kernel divides the input. (Its max-pool backward also scales the
        // gradient by 1/(kh·kw), so max pooling is checked against finite differences and a
        // window scan instead.)
        for (i, shape) in [[1, 1, 6, 4], [2, 3, 6, 8], [3, 2, 12, 6]]
            .iter()
            .enumerate()
        {
            let x = Var::from_tensor(&uniform(shape, i as u64, DType::F64)).unwrap();
            for k in [(1, 1), (2, 2), (3, 2)] {
                let avg = avg_pool2d(&x, k, k, 0).unwrap();
                let r = uniform(avg.dims(), 7, DType::F64);
                let ours = autograd(&avg, &r, &[&x]);
                let theirs = autograd(&x.avg_pool2d_with_stride(k, k).unwrap(), &r, &[&x]);
                assert_close(&ours[0], &theirs[0], 1e-12, &format!("avg {shape:?} {k:?}"));
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences_for_any_window() {
        for (i, shape) in SHAPES.iter().enumerate() {
            let x = distinct(shape, 10 + i as u64);
            let xv = Var::from_tensor(&x).unwrap();
            for (j, (k, s, p)) in WINDOWS.into_iter().enumerate() {
                let what = format!("{shape:?} k{k:?} s{s:?} p{p:?}");
                let max = max_pool2d(&xv, k, s, p).unwrap();
                let r = uniform(max.dims(), (i * 10 + j) as u64, DType::F64);
                let fd = finite_difference(|x| max_pool2d(x, k, s, p), &x, &r);
                assert_close(
                    &autograd(&max, &r, &[&xv])[0],
                    &fd,
                    1e-8,
                    &format!("max {what}"),
                );
                let avg = avg_pool2d(&xv, k, s, p).unwrap();
                let fd = finite_difference(|x| avg_pool2d(x, k, s, p), &x, &r);
                assert_close(
                    &autograd(&avg, &r, &[&xv])[0],
                    &fd,
                    1e-8,
                    &format!("avg {what}"),
                );
            }
        }
    }

    #[test]
    fn padded_max_pooling_and_its_gradient_match_a_naive_window_scan() {
        let x = Var::from_tensor(&distinct(&[2, 2, 5, 4], 3)).unwrap();
        let y = max_pool2d(&x, 3, 2, 1).unwrap();
        let r = uniform(y.dims(), 4, DType::F64);
        let dx = autograd(&y, &r, &[&x]).remove(0);
        let xs: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
        let ys: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
        let rs: Vec<f64> = r.flatten_all().unwrap().to_vec1().unwrap();
        let mut want_dx = vec![0.0; xs.len()];
        assert_eq!(y.dims(), &[2, 2, 3, 2]);
        let mut at = 0;
        for plane in 0..4 {
            for oy in 0..3isize {
                for ox in 0..2isize {
                    let mut best = f64::NEG_INFINITY;
                    for iy in (oy * 2 - 1).max(0)..(oy * 2 + 2).min(5) {
                        for ix in (ox * 2 - 1).max(0)..(ox * 2 + 2).min(4) {
                            best = best.max(xs[plane * 20 + (iy * 4 + ix) as usize]);
                        }
                    }
                    assert_eq!(ys[at], best);
                    let winner = xs.iter().position(|v| *v == best).unwrap();
                    assert_eq!(winner / 20, plane);
                    want_dx[winner] += rs[at];
                    at += 1;
                }
            }
        }
        let want_dx = Tensor::from_vec(want_dx, x.shape(), &candle_core::Device::Cpu).unwrap();
        assert_close(&dx, &want_dx, 0.0, "scattered gradient");
    }

    #[test]
    fn pooling_gradients_are_differentiable_too() {
        // candle detaches gradients between nodes, so the backward ops are applied directly.
        let x = distinct(&[2, 3, 7, 5], 1);
        for (k, s, p) in [((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 1), (0, 0))] {
            let win = Window::new(k, s, p).unwrap();
            let geometry = win.geometry(x.dims4().unwrap()).unwrap();
            let arg = Arc::new(OnceLock::new());
            let y = x
                .apply_op1(MaxPool {
                    win,
                    arg: arg.clone(),
                })
                .unwrap();
            let backward = |max: bool, dy: &Tensor| -> Result<Tensor> {
                match max {
                    true => dy.apply_op1(MaxPoolRoute {
                        geometry,
                        arg: arg.clone(),
                        scatter: true,
                    }),
                    false => dy.apply_op1(AvgPool {
                        win,
                        forward: false,
                        input_hw: (7, 5),
                    }),
                }
            };
            for max in [true, false] {
                let dy = uniform(y.dims(), 2, DType::F64);
                let dyv = Var::from_tensor(&dy).unwrap();
                let dx = backward(max, &dyv).unwrap();
                let r = uniform(dx.dims(), 3, DType::F64);
                let ours = autograd(&dx, &r, &[&dyv]);
                let fd = finite_difference(|dy| backward(max, dy), &dy, &r);
                assert_close(&ours[0], &fd, 1e-8, &format!("max {max} {k:?} {s:?} {p:?}"));
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_budget() {
        let x = Var::from_tensor(&distinct(&[3, 5, 7, 6], 4)).unwrap();
        let run = |threads| {
            with_thread_budget(threads, || {
                let y = max_pool2d(&x, 3, 2, 1).unwrap();
                let z = avg_pool2d(&x, 2, 1, 1).unwrap();
                let loss = (y.sum_all().unwrap() + z.sqr().unwrap().sum_all().unwrap()).unwrap();
                let grads = loss.backward().unwrap();
                vec![y, z, grads.get(x.as_tensor()).unwrap().clone()]
            })
        };
        let one = run(1);
        for threads in [2, 4, 16] {
            for (a, b) in run(threads).iter().zip(&one) {
                assert_close(a, b, 0.0, &format!("{threads} threads"));
            }
        }
    }

    #[test]
    fn global_average_pooling_is_the_channel_mean() {
        let x = uniform(&[2, 3, 5, 4], 1, DType::F32);
        let y = global_avg_pool2d(&x).unwrap();
        let want = x
            .mean_keepdim(3)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .squeeze(3)
            .unwrap()
            .squeeze(2)
            .unwrap();
        assert_close(&y, &want, 1e-6, "global average");
    }

    #[test]
    fn bad_windows_are_errors() {
        let x = uniform(&[1, 1, 4, 4], 1, DType::F32);
        assert!(
            max_pool2d(&x, 2, 2, 2).is_err(),
            "padding over half the kernel"
        );
        assert!(
            max_pool2d(&x, 5, 1, 0).is_err(),
            "kernel larger than the input"
        );
        assert!(avg_pool2d(&x, 2, 0, 0).is_err(), "zero stride");
    }
}
