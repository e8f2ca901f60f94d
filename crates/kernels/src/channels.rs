//! Per-channel helpers over NCHW tensors: sums over (N, H, W) and per-channel affine maps,
//! parallel over channels or images; and the channel sum as a differentiable op (a
//! convolution's bias gradient), which candle computes with a slow strided reduction.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Storage, Tensor, WithDType, bail};

use super::budget::thread_budget;
use super::cpu::{Real, by_dtype, chunk_len, dims4, for_each_chunk, storage, view, written};

/// The NCHW shape seen as `n` images of `c` planes of `plane` elements.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Planes {
    pub n: usize,
    pub c: usize,
    pub plane: usize,
}

impl Planes {
    pub(crate) fn of(l: &Layout, what: &str) -> Result<Self> {
        let (n, c, h, w) = dims4(l, what)?;
        Ok(Planes { n, c, plane: h * w })
    }

    pub(crate) fn count(&self) -> usize {
        self.n * self.plane
    }

    /// Per channel, over all images: `(Σ a, Σ a·b)` when `b` is given, else `(Σ a, Σ a²)`;
    /// in parallel over channels.
    pub(crate) fn channel_sums<T: Real>(&self, a: &[T], b: Option<&[T]>) -> (Vec<f64>, Vec<f64>) {
        let threads = thread_budget();
        let mut sums = vec![(0.0f64, 0.0f64); self.c];
        let chunk = chunk_len(self.c, threads, 1);
        for_each_chunk(&mut sums, chunk, threads, |i, sums| {
            for (j, out) in sums.iter_mut().enumerate() {
                let ch = i * chunk + j;
                let (mut s1, mut s2) = (0.0f64, 0.0f64);
                for img in 0..self.n {
                    let at = (img * self.c + ch) * self.plane;
                    let a = &a[at..at + self.plane];
                    // Sum each plane in T, then in f64 across planes: exact enough, and the
                    // inner loop vectorizes.
                    let (mut p1, mut p2) = (T::ZERO, T::ZERO);
                    match b {
                        Some(b) => {
                            for (&u, &v) in a.iter().zip(&b[at..at + self.plane]) {
                                p1 += u;
                                p2 += u * v;
                            }
                        }
                        None => {
                            for &u in a {
                                p1 += u;
                                p2 += u * u;
                            }
                        }
                    }
                    s1 += p1.to_f64();
                    s2 += p2.to_f64();
                }
                *out = (s1, s2);
            }
        });
        sums.into_iter().unzip()
    }

    /// `out = a[c]·u + b[c]·v + k[c]` per channel (`v` optional), clamped at 0 if `relu`, in
    /// parallel over images.
    pub(crate) fn channel_affine<T: Real>(
        &self,
        u: &[T],
        v: Option<&[T]>,
        a: &[f64],
        b: &[f64],
        k: &[f64],
        relu: bool,
    ) -> Vec<T> {
        match relu {
            true => self.channel_map(u, v, (a, b, k), |y| if y > T::ZERO { y } else { T::ZERO }),
            false => self.channel_map(u, v, (a, b, k), |y| y),
        }
    }

    /// `post(a[c]·u + b[c]·v + k[c])`; `post` is a type parameter so each variant's inner
    /// loop is compiled (and vectorized) on its own.
    fn channel_map<T: Real>(
        &self,
        u: &[T],
        v: Option<&[T]>,
        (a, b, k): (&[f64], &[f64], &[f64]),
        post: impl Fn(T) -> T + Sync,
    ) -> Vec<T> {
        let image = self.c * self.plane;
        if self.n * image == 0 {
            return Vec::new();
        }
        let threads = thread_budget();
        let images = chunk_len(self.n, threads, 1);
        let (a, b, k): (Vec<T>, Vec<T>, Vec<T>) = (
            a.iter().map(|&x| T::from_f64(x)).collect(),
            b.iter().map(|&x| T::from_f64(x)).collect(),
            k.iter().map(|&x| T::from_f64(x)).collect(),
        );
        let write = |part: usize, out: &mut [MaybeUninit<T>]| {
            let first = part * images * image;
            for (i, out) in out.chunks_mut(self.plane).enumerate() {
                let ch = i % self.c;
                let at = first + i * self.plane;
                let u = &u[at..at + self.plane];
                match v {
                    Some(v) => {
                        for ((o, &x), &y) in out.iter_mut().zip(u).zip(&v[at..at + self.plane]) {
                            o.write(post(a[ch] * x + b[ch] * y + k[ch]));
                        }
                    }
                    None => {
                        for (o, &x) in out.iter_mut().zip(u) {
                            o.write(post(a[ch] * x + k[ch]));
                        }
                    }
                }
            }
        };
        // SAFETY: `write` writes every element of every plane of its chunk of images.
        unsafe { written(self.n * image, images * image, threads, write) }
    }
}

/// `(Σ a, Σ a·b)` per channel of `a` (and `b`, of the same shape), over (N, H, W), read
/// straight from the storage; for backward passes whose parameter gradients are leaves.
pub(crate) fn channel_sums_of(a: &Tensor, b: Option<&Tensor>) -> Result<(Vec<f64>, Vec<f64>)> {
    let a = a.contiguous()?;
    let b = b.map(|b| b.contiguous()).transpose()?;
    if let Some(b) = &b
        && b.shape() != a.shape()
    {
        bail!("channel sums: shapes {:?} and {:?}", a.dims(), b.dims());
    }
    let (sa, la) = a.storage_and_layout();
    let Storage::Cpu(ca) = &*sa else {
        bail!("channel sums: a CPU tensor expected");
    };
    let p = Planes::of(la, "channel sums")?;
    match &b {
        None => {
            by_dtype!(ca, "channel sums", T => Ok(p.channel_sums(view::<T>(ca, la, "channel sums")?, None)))
        }
        Some(b) => {
            let (sb, lb) = b.storage_and_layout();
            let Storage::Cpu(cb) = &*sb else {
                bail!("channel sums: a CPU tensor expected");
            };
            by_dtype!(ca, "channel sums", T => Ok(p.channel_sums(
                view::<T>(ca, la, "channel sums")?,
                Some(view::<T>(cb, lb, "channel sums")?),
            )))
        }
    }
}

/// `Σ_{n,h,w} x[n, c, h, w]`, as `[c]`.
struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "trainserve-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = Planes::of(l, "channel_sum input")?;
        by_dtype!(s, "channel_sum", T => {
            let (sums, _) = p.channel_sums(view::<T>(s, l, "channel_sum input")?, None);
            let out: Vec<T> = sums.into_iter().map(T::from_f64).collect();
            Ok((storage(out), Shape::from(p.c)))
        })
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (_, c, _, _) = x.dims4()?;
        Ok(Some(grad.reshape((1, c, 1, 1))?.broadcast_as(x.shape())?))
    }
}

/// The sum of each channel of `x: [n, c, h, w]` over (n, h, w), as `[c]`; differentiable.
pub fn channel_sum(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.sum((0, 2, 3));
    }
    x.contiguous()?.apply_op1(ChannelSum)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Var};

    use super::*;
    use crate::testing::*;

    #[test]
    fn channel_sums_match_candle() {
        let x = Var::from_tensor(&uniform(&[3, 4, 5, 2], 1, DType::F64)).unwrap();
        let y = channel_sum(&x).unwrap();
        let want = x.sum((0, 2, 3)).unwrap();
        assert_close(&y, &want, 1e-12, "sum");
        let r = uniform(&[4], 2, DType::F64);
        assert_close(
            &autograd(&y, &r, &[&x])[0],
            &autograd(&want, &r, &[&x])[0],
            0.0,
            "grad",
        );
        let (s, sp) = channel_sums_of(&x, Some(&x)).unwrap();
        let s = Tensor::new(s, &candle_core::Device::Cpu).unwrap();
        assert_close(&s, &want, 1e-12, "sums of");
        let sq = Tensor::new(sp, &candle_core::Device::Cpu).unwrap();
        assert_close(
            &sq,
            &x.sqr().unwrap().sum((0, 2, 3)).unwrap(),
            1e-12,
            "products",
        );
    }
}
