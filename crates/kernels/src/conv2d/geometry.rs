//! The shapes of one convolution and its passes over them: forward, weight gradient and input
//! gradient as GEMMs over im2col/col2im matrices, split across the thread budget.

use std::mem::MaybeUninit;

use candle_core::{Result, Shape, bail};

use super::Conv2dConfig;
use crate::cpu::{Real, chunk_len, for_each_chunk, for_each_item, sum_parts, written};
use crate::gemm::{Mat, matmul, matmul_uninit};

/// Output pixels per GEMM worth aiming for: below this, images are grouped into one product.
pub const GROUP_COLUMNS: usize = 512;
// The largest weight (in elements) whose gradient is computed transposed.
const TRANSPOSE_WEIGHTS_UP_TO: usize = 1 << 18;

/// The shapes of one convolution.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    pub(super) n: usize,
    pub(super) c_in: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) c_out: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
    pub(super) cfg: Conv2dConfig,
}

pub(super) fn out_size(input: usize, kernel: usize, cfg: Conv2dConfig) -> Result<usize> {
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
    pub(super) fn new(
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
    pub(super) fn k(&self) -> usize {
        self.c_in * self.kh * self.kw
    }

    pub(super) fn in_image(&self) -> usize {
        self.c_in * self.h * self.w
    }

    pub(super) fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    pub(super) fn out_image(&self) -> usize {
        self.c_out * self.out_plane()
    }

    pub(super) fn out_shape(&self) -> Shape {
        (self.n, self.c_out, self.oh, self.ow).into()
    }

    pub(super) fn in_shape(&self) -> Shape {
        (self.n, self.c_in, self.h, self.w).into()
    }

    pub(super) fn weight_shape(&self) -> Shape {
        (self.c_out, self.c_in, self.kh, self.kw).into()
    }

    /// How the images split: (images per GEMM, threads claiming groups, threads per GEMM).
    /// Images are grouped until a GEMM has [`GROUP_COLUMNS`] columns; the budget's threads
    /// claim groups one at a time, and when there are fewer groups than threads (small
    /// planes, small batches) the GEMMs themselves run on the spare threads, so each thread
    /// packs only its share of the weight.
    pub(super) fn plan(&self, budget: usize) -> (usize, usize, usize) {
        let group = GROUP_COLUMNS
            .div_ceil(self.out_plane().max(1))
            .clamp(1, self.n.max(1));
        let workers = budget.clamp(1, self.n.div_ceil(group).max(1));
        (group, workers, (budget / workers).max(1))
    }

    /// The forward pass: `out = conv(x, w) + bias`, then ReLU if `relu`.
    pub(super) fn forward<T: Real>(
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
        // `y + bias[co]`, then ReLU, over one output row; the flags are read once per row so
        // that the loops vectorize.
        let finish = |co: usize, y: &mut [T]| {
            let b = bias.map_or(T::ZERO, |b| b[co]);
            match relu {
                true => y.iter_mut().for_each(|v| *v = (*v + b).max_zero()),
                false => y.iter_mut().for_each(|v| *v += b),
            }
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
                                finish(co, row);
                            }
                        }
                    } else {
                        T::with_scratch(c_out * ld, |tmp| {
                            matmul(tmp, ld, false, weight, cols, threads);
                            for j in 0..count {
                                let dst = &mut out[(g0 + j) * out_image..][..out_image];
                                for (co, row) in dst.chunks_mut(plane).enumerate() {
                                    let src = &mut tmp[co * ld + j * plane..][..plane];
                                    finish(co, src);
                                    for (o, v) in row.iter_mut().zip(&*src) {
                                        o.write(*v);
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
    pub(super) fn with_grad_group<T: Real, R>(
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

    /// Whether the weight gradient runs as `dwᵀ = cols · dyᵀ` (then transposed once) rather
    /// than `dw = dy · colsᵀ`. The gemm crate runs the first 10–35 % faster when the im2col
    /// matrix has more rows than there are output channels (3×3 and 7×7 kernels); above
    /// [`TRANSPOSE_WEIGHTS_UP_TO`] elements, the final transpose costs what it saves.
    fn transposes_weight_grad(&self) -> bool {
        self.k() > self.c_out && self.k() * self.c_out <= TRANSPOSE_WEIGHTS_UP_TO
    }

    /// The weight gradient: `dw = Σ_images dy · colsᵀ`.
    pub(super) fn weight_grad<T: Real>(&self, x: &[T], dy: &[T], budget: usize) -> Vec<T> {
        let (group, workers, threads) = self.plan(budget);
        let (k, plane, c_out, in_image) = (self.k(), self.out_plane(), self.c_out, self.in_image());
        if self.n == 0 {
            return vec![T::ZERO; c_out * k];
        }
        let transposed = self.transposes_weight_grad();
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
                        let (grad, cols) =
                            (Mat::rows(g, c_out, ld, g_ld), Mat::rows(&*cols, k, ld, ld));
                        match transposed {
                            true => matmul(dw, c_out, true, cols, grad.t(), threads),
                            false => matmul(dw, k, true, grad, cols.t(), threads),
                        }
                    });
                });
            }
        });
        let dw = sum_parts(partials);
        match transposed {
            true => transpose(&dw, k, c_out),
            false => dw,
        }
    }

    /// For stride 1 and a square kernel, the input gradient is itself a convolution: of
    /// `dy` with the kernel flipped and its channels swapped, padded by
    /// `dilation·(k − 1) − padding`. Running it through the forward path (one GEMM of depth
    /// `c_out·k²` per image) beats `wᵀ · dy` (depth `c_out`) plus col2im. Returns that
    /// convolution's geometry and the weight transform, or `None` where it does not apply.
    #[allow(clippy::type_complexity)]
    pub(super) fn transposed<T: Real>(
        &self,
    ) -> Option<(Geometry, impl Fn(&[T], usize) -> Vec<T> + use<T>)> {
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
    pub(super) fn input_grad<T: Real>(&self, dy: &[T], w: &[T], budget: usize) -> Vec<T> {
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

/// The `cols × rows` transpose of a row-major `rows × cols` matrix.
fn transpose<T: Real>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::ZERO; m.len()];
    // In tiles, so that both sides stay in cache.
    const TILE: usize = 16;
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    out
}
