use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Why training was asked to stop before its last epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptReason {
    /// A user cancelled the job.
    Cancelled,
    /// The service is shutting down; the job goes back to the queue.
    Shutdown,
    /// Another worker holds the job now; this one must stop writing.
    LeaseLost,
    /// The sweep's pruning rule stopped the job; it has committed all it will.
    Pruned,
}

/// A shared stop flag, checked by the training loop before every batch.
#[derive(Clone, Debug, Default)]
pub struct Interrupter(Arc<AtomicU8>);

impl Interrupter {
    /// A flag that is not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises the flag; the first reason given wins.
    pub fn interrupt(&self, reason: InterruptReason) {
        let code = match reason {
            InterruptReason::Cancelled => 1,
            InterruptReason::Shutdown => 2,
            InterruptReason::LeaseLost => 3,
            InterruptReason::Pruned => 4,
        };
        let _ = self
            .0
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The reason, once raised.
    pub fn reason(&self) -> Option<InterruptReason> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(InterruptReason::Cancelled),
            2 => Some(InterruptReason::Shutdown),
            3 => Some(InterruptReason::LeaseLost),
            4 => Some(InterruptReason::Pruned),
            _ => None,
        }
    }
}
