//! Adam's update of an f32 parameter on the CPU as one in-place pass over the parameter, its
//! gradient and its two moments, where the tensor form takes a dozen passes that each allocate:
//! for a ResNet-18's 11M parameters that was a large share of a training step.

use std::sync::Mutex;

use candle_core::{CpuStorage, InplaceOp2, Layout, Result, bail};
use rayon::prelude::*;

use crate::train::kernels::thread_budget;

// Elements below which a parameter is updated on the calling thread alone.
const PARALLEL_ABOVE: usize = 1 << 16;

/// The constants of one step, in f32 as the update runs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Step {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// `1 − β₁ᵗ` and `1 − β₂ᵗ`.
    pub correction1: f32,
    pub correction2: f32,
    /// Coupled (L2, into the gradient) or decoupled (AdamW, onto the weight) decay.
    pub weight_decay: f32,
    pub decoupled: bool,
}

/// The in-place update of a parameter from `(parameter, gradient)`, moving the moments it
/// holds. The moments sit behind a mutex only because candle's ops take `&self`.
pub(super) struct AdamUpdate<'a> {
    pub step: Step,
    pub moments: Mutex<(&'a mut [f32], &'a mut [f32])>,
}

impl Step {
    /// θ, m and v after one step with gradient g, for a run of elements.
    fn apply(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let s = *self;
        let keep = if s.decoupled {
            1.0 - s.lr * s.weight_decay
        } else {
            1.0
        };
        let l2 = if s.decoupled { 0.0 } else { s.weight_decay };
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let theta = *p * keep;
            let d = g + l2 * theta;
            *m = s.beta1 * *m + (1.0 - s.beta1) * d;
            *v = s.beta2 * *v + (1.0 - s.beta2) * d * d;
            *p = theta - s.lr * (*m / s.correction1) / ((*v / s.correction2).sqrt() + s.eps);
        }
    }
}

impl InplaceOp2 for AdamUpdate<'_> {
    fn name(&self) -> &'static str {
        "trainserve-adam"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            bail!("adam: f32 parameters and gradients expected");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("adam: contiguous parameters and gradients expected");
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut moments = self.moments.lock().unwrap_or_else(|e| e.into_inner());
        let (m, v) = &mut *moments;
        if g.len() != p.len() || m.len() != p.len() || v.len() != p.len() {
            bail!(
                "adam: {} parameters, {} gradients, {} moments",
                p.len(),
                g.len(),
                m.len()
            );
        }
        let threads = thread_budget();
        if threads <= 1 || p.len() <= PARALLEL_ABOVE {
            self.step.apply(p, g, m, v);
            return Ok(());
        }
        let chunk = p.len().div_ceil(threads).max(PARALLEL_ABOVE / 2);
        p.par_chunks_mut(chunk)
            .zip(g.par_chunks(chunk))
            .zip(m.par_chunks_mut(chunk))
            .zip(v.par_chunks_mut(chunk))
            .for_each(|(((p, g), m), v)| self.step.apply(p, g, m, v));
        Ok(())
    }
}
