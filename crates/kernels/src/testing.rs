//! Helpers for the kernels' gradient tests: seeded tensors, finite differences in f64 and
//! tolerant comparisons.

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A tensor of uniform values in [-1, 1), seeded.
pub(crate) fn uniform(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let data: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(data, shape, &Device::Cpu)
        .and_then(|t| t.to_dtype(dtype))
        .unwrap()
}

/// A tensor of distinct values (a shuffled grid 0.1 apart), so no max-pool window has a tie
/// that a finite difference could flip.
pub(crate) fn distinct(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let mut data: Vec<f64> = (0..n).map(|i| i as f64 * 0.1 - n as f64 * 0.05).collect();
    for i in (1..n).rev() {
        data.swap(i, rng.random_range(0..=i));
    }
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

/// `Σ f(x)·r`, the scalar whose gradient the tests check (a random `r` exercises every
/// output).
pub(crate) fn weighted_sum(y: &Tensor, r: &Tensor) -> Result<Tensor> {
    (y * r)?.sum_all()
}

/// The gradient of `x ↦ Σ f(x)·r` at `x` (f64) by central differences.
pub(crate) fn finite_difference(
    f: impl Fn(&Tensor) -> Result<Tensor>,
    x: &Tensor,
    r: &Tensor,
) -> Tensor {
    let h = 1e-5;
    let base: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
    let at = |v: &[f64]| -> f64 {
        let t = Tensor::from_slice(v, x.shape(), &Device::Cpu).unwrap();
        weighted_sum(&f(&t).unwrap(), r)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    let mut grad = vec![0.0; base.len()];
    let mut v = base.clone();
    for i in 0..base.len() {
        v[i] = base[i] + h;
        let up = at(&v);
        v[i] = base[i] - h;
        let down = at(&v);
        v[i] = base[i];
        grad[i] = (up - down) / (2.0 * h);
    }
    Tensor::from_vec(grad, x.shape(), &Device::Cpu).unwrap()
}

/// The gradients of `Σ y·r` with respect to `vars`, by `Tensor::backward`.
pub(crate) fn autograd(y: &Tensor, r: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
    try_autograd(y, r, vars).unwrap()
}

/// [`autograd`], for references whose backward may fail.
pub(crate) fn try_autograd(y: &Tensor, r: &Tensor, vars: &[&Var]) -> Result<Vec<Tensor>> {
    let grads = weighted_sum(y, r)?.backward()?;
    Ok(vars
        .iter()
        .map(|v| grads.get(v.as_tensor()).expect("a gradient").clone())
        .collect())
}

/// Asserts `|a − b| ≤ tol·(1 + max|b|)` element-wise.
#[track_caller]
pub(crate) fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let a: Vec<f64> = a
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f64> = b
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let scale = 1.0 + b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= tol * scale,
        "{what}: max difference {worst:e} > {tol:e}·{scale}"
    );
}
