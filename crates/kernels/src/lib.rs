//! Fast CPU kernels for training: convolutions, pooling, batch normalization and ReLU as
//! candle custom ops, and the dense products of the MLP fast path. All the `unsafe` of the
//! training side is here (the service's is limited to start-up: the file limit and
//! candle's thread settings).
//!
//! # Map
//! - [`conv2d`] (`conv2d/`: geometry, im2col/col2im), [`max_pool2d`] and friends (`pool/`),
//!   batch normalization (`batch_norm`), [`relu`] (`activation`), [`channel_sum`]
//!   (`channels`): candle `CustomOp`s with their backward passes.
//! - [`dense`]: the three row-major products an MLP step needs.
//! - `gemm`: the bounds-checked wrapper over the `gemm` crate every product goes through;
//!   `cpu`: storage access and the float types ([`f32`], and [`f64`] for gradient checks).
//! - [`thread_budget`] (`budget`): how many threads one job's ops may use;
//!   [`keep_freed_memory`] (`malloc`): the allocator tuning a training process wants.
//!
//! Rule: this crate depends on candle-core, gemm and rayon only; nothing in the workspace is
//! below it. Tests live in each module's `tests` (inline, or `<module>/tests.rs` when long);
//! `testing` has their shared helpers.
//!
//!
//! candle 0.11's own CPU path computes a convolution's input gradient with a direct
//! transposed-convolution loop, has no max-pool backward unless kernel == stride (and that
//! one scales the gradient by 1/(kh·kw)), and sums a bias gradient with a slow strided
//! reduction; together they make CNN training several times slower than PyTorch. The ops
//! here run forward and backward through im2col/col2im and GEMM (the `gemm` crate, the
//! engine candle itself uses): [`conv2d`] (optionally fused with its ReLU, [`conv2d_relu`]),
//! [`max_pool2d`] with any kernel, stride and padding, [`global_avg_pool2d`], training- and
//! evaluation-mode batch normalization with a closed-form backward, and a one-pass [`relu`].
//! Each op is a `CustomOp` whose `bwd` returns tensors made by further custom ops, so
//! `Tensor::backward` composes through them (and, for convolution and pooling, through their
//! gradients again).
//!
//! The ops take NCHW tensors of f32 (the training dtype) or f64 (so tests can check gradients
//! by finite differences at full precision). Tensors on another device fall back to candle's
//! own ops where candle has them.
//!
//! Threads: every op splits its work into at most [`thread_budget`] parts on rayon's pool; a
//! job sets its share of the cores with [`with_thread_budget`] so concurrent jobs do not
//! oversubscribe the machine. candle's own ops in
//! the same graph are outside the budget: its matmuls use `RAYON_NUM_THREADS` threads, and
//! its element-wise ops (including the gradient sums of `Tensor::backward`) a process-wide
//! spinning pool of `CANDLE_NUM_THREADS`; `CANDLE_NUM_THREADS=1` runs those on the calling
//! thread, which measured faster alongside these kernels and keeps jobs within budget.
//! A training process should also call [`keep_freed_memory`] once at startup.

#![warn(missing_docs, unreachable_pub)]

mod activation;
mod batch_norm;
mod budget;
mod channels;
mod conv2d;
mod cpu;
pub mod dense;
mod gemm;
mod malloc;
mod pool;
#[cfg(test)]
mod testing;

pub use activation::relu;
pub use batch_norm::{Epilogue, batch_norm_eval, batch_norm_train, update_running_stats};
pub use budget::{thread_budget, with_thread_budget};
pub use channels::channel_sum;
pub use conv2d::{
    Conv2dConfig, GROUP_COLUMNS, conv2d, conv2d_input_grad, conv2d_relu, conv2d_weight_grad,
};

pub use malloc::keep_freed_memory;
pub use pool::{global_avg_pool2d, max_pool2d};
