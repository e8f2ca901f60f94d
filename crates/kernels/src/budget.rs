//! The thread budget: how many cores the kernels may use on behalf of the calling thread.

use std::cell::Cell;

thread_local! {
    // 0 means "not set": fall back to candle's thread count.
    static BUDGET: Cell<usize> = const { Cell::new(0) };
}

/// The number of threads the kernels may use when called from this thread: the budget set by
/// [`with_thread_budget`], else candle's `get_num_threads()` (the
/// physical cores, or `RAYON_NUM_THREADS`).
pub fn thread_budget() -> usize {
    match BUDGET.with(Cell::get) {
        0 => candle_core::utils::get_num_threads().max(1),
        n => n,
    }
}

/// Runs `f` with this thread's budget set to `threads` (at least 1), restoring the previous
/// budget afterwards, also if `f` panics.
pub fn with_thread_budget<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUDGET.with(|b| b.set(self.0));
        }
    }
    let _restore = Restore(BUDGET.with(|b| b.replace(threads.max(1))));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_scoped_to_the_closure_and_the_thread() {
        let default = thread_budget();
        assert!(default >= 1);
        with_thread_budget(3, || {
            assert_eq!(thread_budget(), 3);
            with_thread_budget(0, || assert_eq!(thread_budget(), 1));
            assert_eq!(thread_budget(), 3);
            std::thread::spawn(move || assert_eq!(thread_budget(), default))
                .join()
                .unwrap();
        });
        assert_eq!(thread_budget(), default);
    }
}
