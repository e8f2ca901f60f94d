//! A hand-written CPU path for MLPs without batch normalization. candle spends a few
//! microseconds per operation; a small MLP step is hundreds of operations on tiny tensors, so
//! at small batch sizes that overhead is the whole cost. Here a step is a handful of loops and
//! GEMM calls over flat buffers, with the same parameters, names, initialization, dropout
//! draws and checkpoint format as [`super::Mlp`], so a job may switch paths between runs.

mod network;

pub use network::FusedMlp;
