//! Optimizer updates of f32 parameters on the CPU as one in-place pass over the parameter, its
//! gradient and its state buffers, where the tensor form takes a pass per operation, each
//! allocating: for a ResNet-18's 11M parameters that was a large share of a training step.

use std::sync::Mutex;

use candle_core::{CpuStorage, InplaceOp2, Layout, Result, bail};
use rayon::prelude::*;

use kernels::thread_budget;

// Elements below which a parameter is updated on the calling thread alone.
const PARALLEL_ABOVE: usize = 1 << 16;

/// The in-place update of a parameter from `(parameter, gradient)` by `update(θ, g, state)`
/// over matching runs of elements, moving the state buffers it holds (behind a mutex only
/// because candle's ops take `&self`).
pub(super) struct InPlace<'a, F> {
    pub state: Mutex<Vec<&'a mut [f32]>>,
    pub update: F,
}

impl<'a, F> InPlace<'a, F>
where
    F: Fn(&mut [f32], &[f32], &mut [&mut [f32]]) + Sync,
{
    pub(crate) fn new(state: Vec<&'a mut [f32]>, update: F) -> Self {
        InPlace {
            state: Mutex::new(state),
            update,
        }
    }
}

impl<F> InplaceOp2 for InPlace<'_, F>
where
    F: Fn(&mut [f32], &[f32], &mut [&mut [f32]]) + Sync + Send,
{
    fn name(&self) -> &'static str {
        "trainserve-optimizer-step"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            bail!("optimizer step: f32 parameters and gradients expected");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("optimizer step: contiguous parameters and gradients expected");
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() != p.len() || state.iter().any(|s| s.len() != p.len()) {
            bail!(
                "optimizer step: {} parameters, {} gradients",
                p.len(),
                g.len()
            );
        }
        let threads = thread_budget();
        if threads <= 1 || p.len() <= PARALLEL_ABOVE {
            (self.update)(p, g, &mut state);
            return Ok(());
        }
        // Matching runs of every buffer, one work item each.
        let chunk = p.len().div_ceil(threads).max(PARALLEL_ABOVE / 2);
        let mut state_runs: Vec<_> = state.iter_mut().map(|s| s.chunks_mut(chunk)).collect();
        let runs: Vec<_> = p
            .chunks_mut(chunk)
            .zip(g.chunks(chunk))
            .map(|(p, g)| {
                let state: Vec<&mut [f32]> = state_runs
                    .iter_mut()
                    .map(|runs| runs.next().unwrap_or_default())
                    .collect();
                (p, g, state)
            })
            .collect();
        runs.into_par_iter()
            .for_each(|(p, g, mut state)| (self.update)(p, g, &mut state));
        Ok(())
    }
}
