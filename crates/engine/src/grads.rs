//! Gradient measurements and clipping. Squared norms are read straight from CPU memory (no
//! extra tensor operations); on other devices they are reduced on the device and fetched with
//! a single transfer, so measuring every step costs about one synchronization at most.

use candle_core::{DType, Storage, Tensor};

use crate::error::Result;
use crate::spec::GradClipSpec;

/// The squared L2 norm of each tensor (0 for a missing one).
pub(crate) fn squared_norms(tensors: &[Option<Tensor>]) -> Result<Vec<f64>> {
    let mut norms = vec![0.0; tensors.len()];
    let mut on_device = Vec::new();
    for (i, tensor) in tensors.iter().enumerate() {
        let Some(t) = tensor else { continue };
        match cpu_squared_norm(t) {
            Some(value) => norms[i] = value,
            None => on_device.push((i, t.sqr()?.sum_all()?.to_dtype(DType::F64)?)),
        }
    }
    if !on_device.is_empty() {
        let sums: Vec<Tensor> = on_device.iter().map(|(_, t)| t.clone()).collect();
        let values = Tensor::stack(&sums, 0)?.to_vec1::<f64>()?;
        for ((i, _), value) in on_device.iter().zip(values) {
            norms[*i] = value;
        }
    }
    Ok(norms)
}

/// Σx² of a contiguous f32 CPU tensor, read in place; `None` for anything else.
fn cpu_squared_norm(t: &Tensor) -> Option<f64> {
    if t.dtype() != DType::F32 {
        return None;
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    let data = cpu.as_slice::<f32>().ok()?.get(start..end)?;
    Some(sum_of_squares(data))
}

/// Σx² in blocks: eight f32 lanes per block (vectorizable), blocks summed in f64.
fn sum_of_squares(xs: &[f32]) -> f64 {
    let mut total = 0f64;
    for block in xs.chunks(1024) {
        let mut lanes = [0f32; 8];
        let mut chunks = block.chunks_exact(8);
        for chunk in &mut chunks {
            for (lane, x) in lanes.iter_mut().zip(chunk) {
                *lane += x * x;
            }
        }
        total += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
        total += chunks
            .remainder()
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>();
    }
    total
}

/// Clips gradients in place: each element to ±max_value, then all of them together to a
/// global L2 norm of at most max_norm ([`norm_scale`]). `squared` are the squared norms of the
/// unclipped gradients. The fused path clips its flat gradients with the same two rules.
pub(crate) fn clip(
    grads: &mut [Option<Tensor>],
    spec: &GradClipSpec,
    squared: &[f64],
) -> Result<()> {
    let mut squared = squared.to_vec();
    if let Some(max_value) = spec.max_value {
        for g in grads.iter_mut().flatten() {
            *g = g.clamp(-max_value, max_value)?;
        }
        if spec.max_norm.is_some() {
            squared = squared_norms(grads)?;
        }
    }
    if let Some(scale) = norm_scale(spec, squared.iter().sum()) {
        for g in grads.iter_mut().flatten() {
            *g = (&*g * scale)?;
        }
    }
    Ok(())
}

/// The factor that brings gradients of total squared L2 norm `squared` down to `max_norm`
/// (max_norm / (norm + 1e-6), as PyTorch scales), or `None` when they are within it.
pub(crate) fn norm_scale(spec: &GradClipSpec, squared: f64) -> Option<f64> {
    let max_norm = spec.max_norm?;
    let total = squared.sqrt();
    (total > max_norm).then(|| max_norm / (total + 1e-6))
}

/// Per-parameter gradient norms over an epoch's steps: their mean and maximum.
#[derive(Clone, Debug)]
pub(crate) struct GradStats {
    sum: Vec<f64>,
    max: Vec<f64>,
    steps: u64,
}

impl GradStats {
    /// Nothing recorded yet, for `params` tensors.
    pub(crate) fn new(params: usize) -> Self {
        GradStats {
            sum: vec![0.0; params],
            max: vec![0.0; params],
            steps: 0,
        }
    }

    /// Records one step's squared norms.
    pub(crate) fn record(&mut self, squared: &[f64]) {
        for ((sum, max), sq) in self.sum.iter_mut().zip(&mut self.max).zip(squared) {
            let norm = sq.sqrt();
            *sum += norm;
            *max = max.max(norm);
        }
        self.steps += 1;
    }

    /// The mean norm of parameter `i` over the recorded steps.
    pub(crate) fn mean(&self, i: usize) -> f64 {
        self.sum.get(i).copied().unwrap_or(0.0) / self.steps.max(1) as f64
    }

    /// The largest norm of parameter `i` over the recorded steps.
    pub(crate) fn max(&self, i: usize) -> f64 {
        self.max.get(i).copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(values: &[f32]) -> Option<Tensor> {
        Some(Tensor::new(values, &Device::Cpu).unwrap())
    }

    fn values(t: &Option<Tensor>) -> Vec<f32> {
        t.as_ref().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn squared_norms_match_the_definition_also_for_strided_views() {
        let long: Vec<f32> = (0..1037).map(|i| (i % 7) as f32 - 3.0).collect();
        let expected: f64 = long.iter().map(|&v| f64::from(v * v)).sum();
        let matrix = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let transposed = Some(matrix.t().unwrap()); // not contiguous
        let norms = squared_norms(&[t(&[3.0, 4.0]), None, t(&long), transposed]).unwrap();
        assert_eq!(norms, vec![25.0, 0.0, expected, 30.0]);
    }

    #[test]
    fn clipping_by_norm_scales_everything_to_the_limit() {
        let mut grads = vec![t(&[3.0]), t(&[4.0])]; // global norm 5
        let squared = squared_norms(&grads).unwrap();
        let spec = GradClipSpec {
            max_norm: Some(1.0),
            max_value: None,
        };
        clip(&mut grads, &spec, &squared).unwrap();
        assert!((values(&grads[0])[0] - 0.6).abs() < 1e-6);
        assert!((values(&grads[1])[0] - 0.8).abs() < 1e-6);
        let mut small = vec![t(&[0.3])];
        let squared = squared_norms(&small).unwrap();
        clip(&mut small, &spec, &squared).unwrap();
        assert_eq!(values(&small[0]), vec![0.3], "under the limit: untouched");
    }

    #[test]
    fn clipping_by_value_clamps_each_element_before_the_norm() {
        let mut grads = vec![t(&[-5.0, 0.5, 2.0])];
        let squared = squared_norms(&grads).unwrap();
        let spec = GradClipSpec {
            max_norm: Some(10.0),
            max_value: Some(1.0),
        };
        clip(&mut grads, &spec, &squared).unwrap();
        assert_eq!(values(&grads[0]), vec![-1.0, 0.5, 1.0]);
    }

    #[test]
    fn grad_stats_keep_the_mean_and_the_max_of_the_norms() {
        let mut stats = GradStats::new(2);
        stats.record(&[9.0, 1.0]);
        stats.record(&[1.0, 1.0]);
        assert_eq!((stats.mean(0), stats.max(0)), (2.0, 3.0));
        assert_eq!((stats.mean(1), stats.max(1)), (1.0, 1.0));
        assert_eq!(stats.mean(7), 0.0);
    }
}
