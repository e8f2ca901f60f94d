//! im2col and col2im for [`super::Geometry`]: an image's patches as the columns of a matrix
//! (one row per input channel and kernel tap, one column per output pixel), and the adjoint
//! that adds such a matrix back onto an image.

use super::Geometry;
use crate::cpu::{Real, valid};

// Output rows shorter than this are im2col'ed through a gather table rather than row copies.
const NARROW: usize = 8;

/// One kernel row or column: its input offset and the outputs `lo..hi` it reaches inside
/// the input.
#[derive(Clone, Copy, Debug)]
struct Tap {
    offset: isize,
    lo: usize,
    hi: usize,
}

impl Geometry {
    /// Per kernel row (`ky`) and column (`kx`): the input offset `k·dilation − padding` and
    /// the output range whose input stays inside the image. The same for every channel, so
    /// computed once per image rather than per im2col row (the divisions dominated im2col on
    /// the small planes of a ResNet's last stages).
    fn taps(&self) -> (Vec<Tap>, Vec<Tap>) {
        let (s, d, p) = (
            self.cfg.stride,
            self.cfg.dilation,
            self.cfg.padding as isize,
        );
        let tap = |k: usize, out: usize, input: usize| {
            let offset = (k * d) as isize - p;
            let (lo, hi) = valid(out, input, s, offset);
            Tap { offset, lo, hi }
        };
        (
            (0..self.kh).map(|ky| tap(ky, self.oh, self.h)).collect(),
            (0..self.kw).map(|kx| tap(kx, self.ow, self.w)).collect(),
        )
    }

    /// For each kernel tap (row-major over `ky, kx`) and output pixel, the input pixel it
    /// reads within a channel, or `u32::MAX` in the padding.
    fn gather_table(&self) -> Vec<u32> {
        let (rows, columns) = self.taps();
        let s = self.cfg.stride as isize;
        let mut table = Vec::with_capacity(rows.len() * columns.len() * self.out_plane());
        for ty in &rows {
            for tx in &columns {
                for oy in 0..self.oh {
                    for ox in 0..self.ow {
                        let inside = (ty.lo..ty.hi).contains(&oy) && (tx.lo..tx.hi).contains(&ox);
                        table.push(match inside {
                            true => {
                                let iy = oy as isize * s + ty.offset;
                                let ix = ox as isize * s + tx.offset;
                                (iy as usize * self.w + ix as usize) as u32
                            }
                            false => u32::MAX,
                        });
                    }
                }
            }
        }
        table
    }

    /// [`Geometry::im2col`] for planes with short rows (a ResNet's last stages), where
    /// per-row copies cost more than the copying: a gather through a precomputed table.
    fn im2col_narrow<T: Real>(&self, image: &[T], cols: &mut [T], ld: usize, col0: usize) {
        let plane = self.out_plane();
        let table = self.gather_table();
        let mut row = 0;
        for channel in image.chunks_exact(self.h * self.w).take(self.c_in) {
            for tap in table.chunks_exact(plane) {
                let dst = &mut cols[row * ld + col0..][..plane];
                row += 1;
                for (o, &at) in dst.iter_mut().zip(tap) {
                    *o = channel.get(at as usize).copied().unwrap_or(T::ZERO);
                }
            }
        }
    }

    /// [`Geometry::col2im`] for planes with short rows: a scatter through the same table.
    fn col2im_narrow<T: Real>(&self, cols: &[T], ld: usize, col0: usize, image: &mut [T]) {
        let plane = self.out_plane();
        let table = self.gather_table();
        let mut row = 0;
        for channel in image.chunks_exact_mut(self.h * self.w).take(self.c_in) {
            for tap in table.chunks_exact(plane) {
                let src = &cols[row * ld + col0..][..plane];
                row += 1;
                for (v, &at) in src.iter().zip(tap) {
                    if let Some(o) = channel.get_mut(at as usize) {
                        *o += *v;
                    }
                }
            }
        }
    }

    /// Writes the im2col matrix of one image into columns `col0..col0 + oh·ow` of `cols`,
    /// whose rows are `ld` apart.
    ///
    /// Each channel is first copied into a zero-bordered plane, so every output row reads a
    /// whole run of `ow` inputs with no bounds to clip: on a ResNet's 16-pixel rows, clipping
    /// cost three library calls (two tiny fills and a short copy) per output row.
    pub(super) fn im2col<T: Real>(&self, image: &[T], cols: &mut [T], ld: usize, col0: usize) {
        if self.ow < NARROW {
            return self.im2col_narrow(image, cols, ld, col0);
        }
        let (s, d, p) = (self.cfg.stride, self.cfg.dilation, self.cfg.padding);
        let (plane, ow, w) = (self.out_plane(), self.ow, self.w);
        let pw = w + 2 * p;
        T::with_scratch((self.h + 2 * p) * pw, |padded| {
            // The border stays zero: only interiors are written below.
            padded.fill(T::ZERO);
            let mut row = 0;
            for channel in image.chunks_exact(self.h * w).take(self.c_in) {
                for (y, src) in channel.chunks_exact(w).enumerate() {
                    padded[(y + p) * pw + p..][..w].copy_from_slice(src);
                }
                for ky in 0..self.kh {
                    for kx in 0..self.kw {
                        let dst = &mut cols[row * ld + col0..][..plane];
                        row += 1;
                        for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
                            let src = &padded[(oy * s + ky * d) * pw + kx * d..];
                            if s == 1 {
                                copy_run(out, &src[..ow]);
                            } else {
                                for (o, v) in out.iter_mut().zip(src.iter().step_by(s)) {
                                    *o = *v;
                                }
                            }
                        }
                    }
                }
            }
        })
    }

    /// Adds columns `col0..col0 + oh·ow` of an im2col-shaped matrix back onto one image's
    /// input gradient (the adjoint of [`Geometry::im2col`]).
    pub(super) fn col2im<T: Real>(&self, cols: &[T], ld: usize, col0: usize, image: &mut [T]) {
        if self.ow < NARROW {
            return self.col2im_narrow(cols, ld, col0, image);
        }
        let s = self.cfg.stride;
        let (rows, columns) = self.taps();
        let (plane, ow, w) = (self.out_plane(), self.ow, self.w);
        let mut row = 0;
        for channel in image.chunks_exact_mut(self.h * w).take(self.c_in) {
            for ty in &rows {
                for tx in &columns {
                    let src = &cols[row * ld + col0..][..plane];
                    row += 1;
                    let x0 = (tx.lo as isize * s as isize + tx.offset) as usize;
                    let n = tx.hi - tx.lo;
                    for oy in ty.lo..ty.hi {
                        let iy = (oy as isize * s as isize + ty.offset) as usize;
                        let dst = &mut channel[iy * w..][..w];
                        let src = &src[oy * ow + tx.lo..][..n];
                        if s == 1 {
                            for (o, v) in dst[x0..x0 + n].iter_mut().zip(src) {
                                *o += *v;
                            }
                        } else {
                            for (j, v) in src.iter().enumerate() {
                                dst[x0 + j * s] += *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for runs of at least 8 elements, as fixed-size copies the
/// compiler inlines (the last one overlapping the one before), where a short variable-length
/// copy would be a library call.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    const RUN: usize = 8;
    let n = dst.len();
    debug_assert!(n >= RUN && src.len() == n);
    let mut at = 0;
    while at + RUN <= n {
        dst[at..at + RUN].copy_from_slice(&src[at..at + RUN]);
        at += RUN;
    }
    if at < n {
        dst[n - RUN..].copy_from_slice(&src[n - RUN..]);
    }
}
