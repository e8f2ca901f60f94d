//! Tuning glibc's allocator for training: keep freed activation buffers in the process.
//!
//! A training step allocates and frees the same few large activation and gradient buffers
//! (megabytes each) over and over. By default glibc serves allocations above a threshold with
//! fresh `mmap`s, and trims freed memory at the top of the heap back to the kernel, so every
//! step pays page faults and zero-filling for each buffer: measured on the `cnn` workload,
//! about a quarter of the step.

/// Makes glibc keep freed memory for reuse instead of returning it to the kernel: buffers up
/// to 32 MiB come from the heap, the heap is never trimmed, and it grows 256 MiB at a time
/// (address space, touched only as used). The resident size then stays at the peak of a
/// step rather than being refaulted every step. Process-wide; call once at startup, before
/// other threads allocate. Does nothing off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // SAFETY: mallopt only changes allocator parameters; these values are in range
        // (glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit targets).
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
            mallopt(M_TOP_PAD, 256 << 20);
        }
    }
}
