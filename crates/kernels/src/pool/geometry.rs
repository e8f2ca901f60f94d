//! The shapes of one pooling and its passes: max and average pooling forward and backward,
//! split across the thread budget.

use std::mem::MaybeUninit;

use candle_core::{Result, bail};

use crate::budget::thread_budget;
use crate::cpu::{Real, avx2, chunk_len, for_each_chunk, for_each_item, valid, written};

/// The shapes of one pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Window {
    pub(super) kernel: (usize, usize),
    pub(super) stride: (usize, usize),
    pub(super) padding: (usize, usize),
}

/// The shapes of one pooling applied to planes of `h × w`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    pub(super) planes: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) win: Window,
}

impl Window {
    pub(super) fn new(
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

    pub(super) fn geometry(&self, (n, c, h, w): (usize, usize, usize, usize)) -> Result<Geometry> {
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
    pub(super) fn in_plane(&self) -> usize {
        self.h * self.w
    }

    pub(super) fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    /// The input rows (or columns) of output position `o`'s window: `lo..hi`, clipped to
    /// the input.
    pub(super) fn span(o: usize, k: usize, s: usize, p: usize, input: usize) -> (usize, usize) {
        let start = (o * s) as isize - p as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + k as isize).max(0) as usize).min(input);
        (lo, hi.max(lo))
    }

    pub(super) fn rows(&self, oy: usize) -> (usize, usize) {
        let w = self.win;
        Self::span(oy, w.kernel.0, w.stride.0, w.padding.0, self.h)
    }

    pub(super) fn cols(&self, ox: usize) -> (usize, usize) {
        let w = self.win;
        Self::span(ox, w.kernel.1, w.stride.1, w.padding.1, self.w)
    }

    /// Planes per work item and the threads sharing the items.
    pub(super) fn schedule(&self) -> (usize, usize) {
        let threads = thread_budget();
        (chunk_len(self.planes, threads, 1), threads)
    }

    /// Max pooling of every plane: the maxima and, per output, the winning plane index.
    pub(super) fn max_forward<T: Real>(&self, x: &[T]) -> (Vec<T>, Vec<u32>) {
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
    pub(super) fn max_plane_avx2<T: Real>(
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
    pub(super) fn max_plane<T: Real>(
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
    pub(super) fn max_plane_2x2<T: Real>(&self, plane: &[T], out: &mut [T], arg: &mut [u32]) {
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
    pub(super) fn scatter<T: Real>(&self, dy: &[T], arg: &[u32]) -> Vec<T> {
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
    pub(super) fn tiles_exactly_2x2(&self) -> bool {
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
    pub(super) fn scatter_2x2<T: Real>(&self, dy: &[T], arg: &[u32]) -> Vec<T> {
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
    pub(super) fn gather<T: Real>(&self, g: &[T], arg: &[u32]) -> Vec<T> {
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
}
