use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::domain::{JobId, JobStatus};
use crate::store::{EpochRow, JobRow};
use engine::{InterruptReason, Interrupter, Progress};

/// Step-level progress of a running job, kept in memory (writing every step to the database
/// would cost more than the step).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct LiveProgress {
    /// Epoch in progress.
    pub epoch: u32,
    /// Steps done in it.
    pub step_in_epoch: u64,
    /// Steps in a full epoch.
    pub steps_per_epoch: u64,
    /// Steps since the job started.
    pub global_step: u64,
    /// Loss of the latest step.
    pub last_loss: f32,
}

/// Something that happened to a job, for streaming clients.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// The job's status changed.
    Status {
        /// The job.
        job_id: JobId,
        /// Its new status.
        status: JobStatus,
        /// Why it failed, if it did.
        failure: Option<String>,
    },
    /// An epoch was committed.
    Epoch {
        /// The job.
        job_id: JobId,
        /// The epoch's metrics.
        metrics: EpochRow,
    },
    /// The job, its rows and its files were deleted.
    Deleted {
        /// The job.
        job_id: JobId,
    },
}

impl JobEvent {
    /// The status event for a job row.
    pub fn status(row: &JobRow) -> Self {
        JobEvent::Status {
            job_id: row.id,
            status: row.status,
            failure: row.failure.clone(),
        }
    }

    /// The job the event is about.
    pub fn job_id(&self) -> JobId {
        match self {
            JobEvent::Status { job_id, .. }
            | JobEvent::Epoch { job_id, .. }
            | JobEvent::Deleted { job_id } => *job_id,
        }
    }
}

/// A job training on this node: its stop flag and progress counters.
#[derive(Default)]
pub struct LiveJob {
    pub interrupter: Interrupter,
    epoch: AtomicU32,
    step_in_epoch: AtomicU64,
    steps_per_epoch: AtomicU64,
    global_step: AtomicU64,
    last_loss: AtomicU32,
}

impl LiveJob {
    pub fn record(&self, progress: &Progress) {
        self.epoch.store(progress.epoch, Ordering::Relaxed);
        self.step_in_epoch
            .store(progress.step_in_epoch, Ordering::Relaxed);
        self.steps_per_epoch
            .store(progress.steps_per_epoch, Ordering::Relaxed);
        self.global_step
            .store(progress.global_step, Ordering::Relaxed);
        self.last_loss
            .store(progress.loss.to_bits(), Ordering::Relaxed);
    }

    fn progress(&self) -> LiveProgress {
        LiveProgress {
            epoch: self.epoch.load(Ordering::Relaxed),
            step_in_epoch: self.step_in_epoch.load(Ordering::Relaxed),
            steps_per_epoch: self.steps_per_epoch.load(Ordering::Relaxed),
            global_step: self.global_step.load(Ordering::Relaxed),
            last_loss: f32::from_bits(self.last_loss.load(Ordering::Relaxed)),
        }
    }
}

/// The jobs training on this node.
#[derive(Default)]
pub struct LiveJobs(Mutex<HashMap<JobId, Arc<LiveJob>>>);

impl LiveJobs {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Arc<LiveJob>>> {
        self.0
            .lock()
            .expect("live-jobs lock poisoned; this is a bug")
    }

    pub fn register(&self, id: JobId) -> Arc<LiveJob> {
        Arc::clone(self.map().entry(id).or_default())
    }

    pub fn remove(&self, id: JobId) {
        self.map().remove(&id);
    }

    pub fn interrupt(&self, id: JobId, reason: InterruptReason) {
        if let Some(job) = self.map().get(&id) {
            job.interrupter.interrupt(reason);
        }
    }

    pub fn interrupt_all(&self, reason: InterruptReason) {
        for job in self.map().values() {
            job.interrupter.interrupt(reason);
        }
    }

    pub fn progress(&self, id: JobId) -> Option<LiveProgress> {
        self.map().get(&id).map(|job| job.progress())
    }
}
