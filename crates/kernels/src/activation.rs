//! ReLU with a one-pass backward.
//!
//! candle's own ReLU backward builds a zero tensor, a comparison mask, a dtype conversion and
//! a product: four passes over activations that, in a CNN, are the largest tensors of the
//! step. Here the backward pass is one pass, masking the output gradient by the output.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::budget::thread_budget;
use std::mem::MaybeUninit;

use super::cpu::{Real, by_dtype, chunk_len, storage, view, written};

// Elements below which an element-wise pass runs on the calling thread alone.
const PARALLEL_ABOVE: usize = 1 << 15;

/// A new buffer of `len` elements written by `f(index, out_chunk)` over chunks, on the thread
/// budget. `f` must write its whole chunk.
fn elementwise<T: Real>(len: usize, f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync) -> Vec<T> {
    let threads = if len < PARALLEL_ABOVE {
        1
    } else {
        thread_budget()
    };
    let chunk = chunk_len(len, threads, PARALLEL_ABOVE / 2);
    // SAFETY: both callers below write every element of their chunk (zip with an input at
    // least as long).
    unsafe { written(len, chunk, threads, |i, c| f(i * chunk, c)) }
}

struct Relu;
/// `dy · [y > 0]`, from `(dy, y)`.
struct ReluGrad;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "trainserve-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        by_dtype!(s, "relu", T => {
            let x = view::<T>(s, l, "relu input")?;
            let out = elementwise::<T>(x.len(), |at, out| {
                for (o, &v) in out.iter_mut().zip(&x[at..]) {
                    o.write(if v > T::ZERO { v } else { T::ZERO });
                }
            });
            Ok((storage(out), l.shape().clone()))
        })
    }

    fn bwd(&self, _x: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op2(res, ReluGrad)?))
    }
}

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "trainserve-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "relu backward: gradient {:?} for output {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        by_dtype!(s1, "relu backward", T => {
            let dy = view::<T>(s1, l1, "relu gradient")?;
            let y = view::<T>(s2, l2, "relu output")?;
            let out = elementwise::<T>(dy.len(), |at, out| {
                for ((o, &g), &v) in out.iter_mut().zip(&dy[at..]).zip(&y[at..]) {
                    o.write(if v > T::ZERO { g } else { T::ZERO });
                }
            });
            Ok((storage(out), l1.shape().clone()))
        })
    }

    /// Linear in `dy` with the same mask; the mask is piecewise constant in `y`.
    fn bwd(
        &self,
        _dy: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.contiguous()?.apply_op2(y, ReluGrad)?), None))
    }
}

/// `dy · [y > 0]`: the gradient through a ReLU whose output is `y`; differentiable in `dy`.
pub(crate) fn relu_grad(dy: &Tensor, y: &Tensor) -> Result<Tensor> {
    dy.contiguous()?.apply_op2(&y.contiguous()?, ReluGrad)
}

/// `max(x, 0)` element-wise, with a one-pass backward (gradient 0 at 0, as in PyTorch).
/// Off the CPU this is candle's ReLU.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.relu();
    }
    x.contiguous()?.apply_op1(Relu)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Var};

    use super::*;
    use crate::budget::with_thread_budget;
    use crate::testing::*;

    #[test]
    fn relu_and_its_gradient_match_candle_away_from_zero() {
        for (threads, len) in [(1, 37), (2, 70_001), (3, 100_000)] {
            with_thread_budget(threads, || {
                let x = Var::from_tensor(&uniform(&[len], len as u64, DType::F32)).unwrap();
                let y = relu(&x).unwrap();
                assert_close(&y, &x.relu().unwrap(), 0.0, "forward");
                let r = uniform(&[len], 1, DType::F32);
                let ours = autograd(&y, &r, &[&x]);
                let theirs = autograd(&x.relu().unwrap(), &r, &[&x]);
                assert_close(&ours[0], &theirs[0], 0.0, "backward");
            });
        }
    }

    #[test]
    fn the_gradient_at_zero_is_zero_and_keeps_any_shape() {
        let x = Var::from_tensor(
            &Tensor::new(&[[0.0f64, -1.0], [2.0, 0.0]], &candle_core::Device::Cpu).unwrap(),
        )
        .unwrap();
        let y = relu(&x).unwrap();
        let g = autograd(
            &y,
            &Tensor::ones((2, 2), DType::F64, &candle_core::Device::Cpu).unwrap(),
            &[&x],
        );
        assert_eq!(
            g[0].to_vec2::<f64>().unwrap(),
            vec![vec![0.0, 0.0], vec![1.0, 0.0]]
        );
    }
}
