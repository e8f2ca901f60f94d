//! A bounds-checked wrapper over the `gemm` crate for strided operands.

use std::mem::MaybeUninit;

use gemm::Parallelism;

use super::cpu::Real;

// Below this many multiply-adds a product runs on one thread: spawning costs more.
const PARALLEL_ABOVE: usize = 1 << 18;

/// A read-only matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major `rows × cols` matrix whose rows are `ld` apart.
    pub(crate) fn rows(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: ld,
            cs: 1,
        }
    }

    /// The transpose of a row-major `cols × rows` matrix whose rows are `ld` apart.
    pub(crate) fn transposed(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        Mat {
            data,
            rows,
            cols,
            rs: 1,
            cs: ld,
        }
    }

    /// The transpose of this matrix (the same elements, strides swapped).
    pub(crate) fn t(self) -> Self {
        Mat {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[m×n] (+)= a[m×k] · b[k×n]`, with `dst` row-major with rows `ld` apart; accumulates
/// into `dst` when `accumulate`, else overwrites it. Uses up to `threads` rayon threads.
pub(crate) fn matmul<T: Real>(
    dst: &mut [T],
    ld: usize,
    accumulate: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        a.in_bounds() && b.in_bounds() && b.rows == k && ld >= n,
        "matmul operands; this is a bug"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * ld + n <= dst.len(),
        "matmul output; this is a bug"
    );
    if k == 0 {
        if !accumulate {
            for row in dst.chunks_mut(ld).take(m) {
                row[..n].fill(T::ZERO);
            }
        }
        return;
    }
    // SAFETY: every element addressed through the strides lies within its slice (checked
    // above), the strides of `dst` are injective (cs = 1, rs = ld ≥ n), and `dst` is a unique
    // borrow so it aliases neither operand.
    unsafe { gemm_into(dst.as_mut_ptr(), ld, accumulate, a, b, threads) }
}

/// `dst[m×n] = a[m×k] · b[k×n]` into uninitialized memory (rows `ld` apart), returning
/// `dst` initialized. Only the `m × n` block is written: `dst` must be exactly `m` rows of
/// `ld == n` elements.
pub(crate) fn matmul_uninit<'d, T: Real>(
    dst: &'d mut [MaybeUninit<T>],
    ld: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    threads: usize,
) -> &'d mut [T] {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        a.in_bounds() && b.in_bounds() && b.rows == k && ld == n && dst.len() == m * n,
        "matmul operands; this is a bug"
    );
    if k == 0 {
        dst.fill(MaybeUninit::new(T::ZERO));
    } else if m > 0 && n > 0 {
        // SAFETY: as in `matmul`; gemm with `read_dst = false` writes every element of the
        // m×n block without reading it, and MaybeUninit<T> has T's layout.
        unsafe { gemm_into(dst.as_mut_ptr().cast::<T>(), ld, false, a, b, threads) }
    }
    // SAFETY: every element of `dst` (exactly the m×n block) was written above.
    unsafe { &mut *(dst as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// `dst (+)= a · b` through the `gemm` crate, `dst` row-major with rows `ld` apart.
///
/// # Safety
/// `dst` must be valid for writes (and reads when `accumulate`) of the `a.rows × b.cols`
/// block, alias neither operand, and `a`, `b` must be in bounds with `a.cols == b.rows`.
unsafe fn gemm_into<T: Real>(
    dst: *mut T,
    ld: usize,
    accumulate: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // SAFETY: forwarded from the caller; T is f32 or f64, which gemm supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ld as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            parallelism(m, n, k, threads),
        )
    }
}

fn parallelism(m: usize, n: usize, k: usize, threads: usize) -> Parallelism {
    if threads > 1 && m * n * k > PARALLEL_ABOVE {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_products_match_a_naive_loop() {
        let (m, n, k) = (5, 4, 7);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.11).cos()).collect();
        // a as m×k row-major, b as the transpose of n×k row-major.
        let mut c = vec![1.0; m * (n + 2)];
        matmul(
            &mut c,
            n + 2,
            true,
            Mat::rows(&a, m, k, k),
            Mat::transposed(&b, k, n, k),
            1,
        );
        for i in 0..m {
            for j in 0..n {
                let want: f64 = 1.0 + (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum::<f64>();
                assert!((c[i * (n + 2) + j] - want).abs() < 1e-12);
            }
            assert_eq!(c[i * (n + 2) + n], 1.0, "padding columns are left alone");
        }
    }
}
