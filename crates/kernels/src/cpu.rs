//! Shared plumbing of the kernels: the element types, contiguous views of candle's CPU
//! storage, per-thread scratch buffers and splitting work across the thread budget.

use std::cell::RefCell;
use std::mem::MaybeUninit;

use candle_core::{CpuStorage, Layout, Result, WithDType, bail};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The float types the kernels run on: f32 for training, f64 for precise gradient checks.
pub(crate) trait Real: WithDType + Default {
    const ZERO: Self;
    const ONE: Self;
    const NEG_INFINITY: Self;

    /// Runs `f` on a scratch buffer of at least `len` elements with arbitrary contents, reused
    /// across calls on this thread (so the big im2col matrices are not reallocated per call).
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;

    /// `max(self, 0)`, with NaN to 0 (a select the compiler vectorizes).
    #[inline(always)]
    fn max_zero(self) -> Self {
        if self > Self::ZERO { self } else { Self::ZERO }
    }
}

// Buffers above this size are freed after use rather than kept for the thread's lifetime.
const KEEP_SCRATCH_BYTES: usize = 64 << 20;

macro_rules! real {
    ($t:ty, $pool:ident) => {
        thread_local! {
            static $pool: RefCell<Vec<Vec<$t>>> = const { RefCell::new(Vec::new()) };
        }

        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;

            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                // Take the buffer out of the pool rather than borrowing it, so that a nested
                // call (rayon may run another task on this thread while it waits) gets its own.
                let mut buf = $pool.with(|p| p.borrow_mut().pop()).unwrap_or_default();
                if buf.len() < len {
                    buf.resize(len, 0.0);
                }
                let out = f(&mut buf[..len]);
                if buf.len() * size_of::<$t>() <= KEEP_SCRATCH_BYTES {
                    $pool.with(|p| p.borrow_mut().push(buf));
                }
                out
            }
        }
    };
}
real!(f32, SCRATCH_F32);
real!(f64, SCRATCH_F64);

/// Runs `$body` with `$t` bound to the element type of `$storage` (f32 or f64).
macro_rules! by_dtype {
    ($storage:expr, $op:expr, $t:ident => $body:expr) => {
        match $storage {
            candle_core::CpuStorage::F32(_) => {
                type $t = f32;
                $body
            }
            candle_core::CpuStorage::F64(_) => {
                type $t = f64;
                $body
            }
            other => candle_core::bail!(
                "{}: f32 or f64 expected, got {:?}",
                $op,
                candle_core::backend::BackendStorage::dtype(other)
            ),
        }
    };
}
pub(crate) use by_dtype;

/// The elements of a contiguous tensor's storage.
pub(crate) fn view<'a, T: Real>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [T]> {
    let data = T::cpu_storage_as_slice(s)?;
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("{what} must be contiguous; this is a bug in the caller"),
    }
}

/// The four dimensions of an NCHW layout.
pub(crate) fn dims4(l: &Layout, what: &str) -> Result<(usize, usize, usize, usize)> {
    match *l.dims() {
        [n, c, h, w] => Ok((n, c, h, w)),
        ref other => bail!("{what}: a rank-4 NCHW tensor expected, got shape {other:?}"),
    }
}

/// The storage of a kernel's result.
pub(crate) fn storage<T: Real>(data: Vec<T>) -> CpuStorage {
    T::to_cpu_storage_owned(data)
}

// Work items per thread to aim for: with several, a thread slowed down by other load on
// the machine hands its share to the others instead of holding up the whole op (a static
// split made two threads barely faster than one on a busy 2-core machine).
const ITEMS_PER_THREAD: usize = 4;

/// Items per chunk when `items` are shared among `threads`, about [`ITEMS_PER_THREAD`]
/// chunks each, and at least `min` per chunk.
pub(crate) fn chunk_len(items: usize, threads: usize, min: usize) -> usize {
    items
        .div_ceil(threads.max(1) * ITEMS_PER_THREAD)
        .max(min)
        .max(1)
}

/// Folds `items` on up to `threads` threads that claim them one at a time: each thread that
/// gets any folds them, in order of claiming, into its own accumulator from `init`.
/// Returns the accumulators (at least one unless there are no items).
pub(crate) fn fold_items<I: Send, A: Send>(
    items: impl IntoIterator<Item = I>,
    threads: usize,
    init: impl Fn() -> A + Sync,
    f: impl Fn(&mut A, usize, I) + Sync,
) -> Vec<A> {
    let slots: Vec<Mutex<Option<I>>> = items.into_iter().map(|i| Mutex::new(Some(i))).collect();
    let workers = threads.clamp(1, slots.len().max(1));
    let next = AtomicUsize::new(0);
    let work = || {
        let mut acc = None;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(i) else {
                break;
            };
            let item = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(item) = item {
                f(acc.get_or_insert_with(&init), i, item);
            }
        }
        acc
    };
    if workers == 1 {
        return work().into_iter().collect();
    }
    let results = Mutex::new(Vec::new());
    rayon::scope(|s| {
        for _ in 1..workers {
            s.spawn(|_| {
                let acc = work();
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(acc);
            });
        }
        let acc = work();
        results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(acc);
    });
    results.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Calls `f(index, item)` for every item, on up to `threads` threads claiming them one at a
/// time (rayon's pool; the calling thread when `threads` is 1).
pub(crate) fn for_each_item<I: Send>(
    items: impl IntoIterator<Item = I>,
    threads: usize,
    f: impl Fn(usize, I) + Sync,
) {
    fold_items(items, threads, || (), |_, i, item| f(i, item));
}

/// Calls `f(index, chunk)` for consecutive chunks of `chunk` elements of `data`, on up to
/// `threads` threads.
pub(crate) fn for_each_chunk<T: Send>(
    data: &mut [T],
    chunk: usize,
    threads: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    for_each_item(data.chunks_mut(chunk.max(1)), threads, f);
}

/// A new buffer of `len` elements written by `write(index, chunk)` for consecutive chunks of
/// `chunk` elements on up to `threads` threads, without zero-filling it first: the clearing
/// would run on the calling thread alone while the others wait, and freed memory is reused,
/// so the allocator would have to clear it.
///
/// # Safety
///
/// `write` must initialize every element of each chunk it is given.
pub(crate) unsafe fn written<T: Real>(
    len: usize,
    chunk: usize,
    threads: usize,
    write: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let mut out = Box::<[T]>::new_uninit_slice(len);
    // Tests poison the buffer, so an element a kernel forgets to write shows as NaN.
    #[cfg(test)]
    out.fill(MaybeUninit::new(T::from_f64(f64::NAN)));
    for_each_chunk(&mut out, chunk, threads, write);
    // SAFETY: the chunks cover `out`, and the caller's `write` initialized each of them.
    unsafe { out.assume_init() }.into_vec()
}

/// Element-wise sum of partial results, in order (so the rounding is reproducible).
pub(crate) fn sum_parts<T: Real>(parts: Vec<Vec<T>>) -> Vec<T> {
    let mut parts = parts.into_iter();
    let mut total = parts.next().unwrap_or_default();
    for part in parts {
        for (t, p) in total.iter_mut().zip(part) {
            *t += p;
        }
    }
    total
}

/// The output positions `o` in `0..out` whose input position `o·stride + offset` lies in
/// `0..input`.
pub(crate) fn valid(out: usize, input: usize, stride: usize, offset: isize) -> (usize, usize) {
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(stride)
    };
    let last = input as isize - 1 - offset;
    let hi = if last < 0 {
        0
    } else {
        (last as usize / stride + 1).min(out)
    };
    (lo.min(hi), hi)
}

/// Whether the CPU has AVX2, for kernels compiled twice (the crate targets baseline x86-64).
pub(crate) fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
