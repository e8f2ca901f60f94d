//! The three products an MLP step needs, on row-major slices, through the kernels' checked
//! wrapper over the `gemm` crate (the engine candle itself uses on the CPU).

use crate::gemm::{Mat, matmul};

/// `c[m×n] (+)= a[m×k] · b[n×k]ᵀ`: activations times transposed weights (forward pass).
#[allow(clippy::too_many_arguments)]
pub fn a_bt(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
    threads: usize,
) {
    let (a, b) = (Mat::rows(a, m, k, k), Mat::transposed(b, k, n, k));
    matmul(&mut c[..m * n], n, accumulate, a, b, threads);
}

/// `c[m×n] = a[m×k] · b[k×n]`: output gradients times weights (input gradient).
pub fn a_b(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, threads: usize) {
    let (a, b) = (Mat::rows(a, m, k, k), Mat::rows(b, k, n, n));
    matmul(&mut c[..m * n], n, false, a, b, threads);
}

/// `c[m×n] = a[k×m]ᵀ · b[k×n]`: output gradients transposed times activations (weight gradient).
pub fn at_b(c: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, threads: usize) {
    let (a, b) = (Mat::transposed(a, m, k, m), Mat::rows(b, k, n, n));
    matmul(&mut c[..m * n], n, false, a, b, threads);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, at: bool, bt: bool) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let x = if at { a[p * m + i] } else { a[i * k + p] };
                    let y = if bt { b[j * k + p] } else { b[p * n + j] };
                    c[i * n + j] += x * y;
                }
            }
        }
        c
    }

    #[test]
    fn the_three_products_match_a_naive_loop() {
        let (m, n, k) = (5, 3, 7);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);

        let mut c = vec![0.0; m * n];
        a_bt(&mut c, &a, &b, m, n, k, false, 1);
        assert!(close(&c, &naive(&a, &b, m, n, k, false, true)));
        a_bt(&mut c, &a, &b, m, n, k, true, 1);
        let twice: Vec<f32> = naive(&a, &b, m, n, k, false, true)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        assert!(close(&c, &twice));

        let mut c = vec![0.0; m * n];
        a_b(&mut c, &a, &b, m, n, k, 1);
        assert!(close(&c, &naive(&a, &b, m, n, k, false, false)));

        let at: Vec<f32> = (0..k * m).map(|i| (i as f32 * 0.23).sin()).collect();
        let mut c = vec![0.0; m * n];
        at_b(&mut c, &at, &b, m, n, k, 1);
        assert!(close(&c, &naive(&at, &b, m, n, k, true, false)));
    }
}
