//! The durable job queue: submission, the scheduler that claims queued rows, the workers that
//! train them on dedicated threads, cancellation, leases and crash recovery.

mod deletion;
mod disk_reserve;
mod epoch_writer;
mod intact;
mod live;
mod lr_finder;
mod orphans;
mod pruning;
mod readiness;
mod retention;
mod scheduler;
mod sweeps;
mod transfer;
mod usage;
mod weights;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, broadcast, watch};

pub use intact::newest_intact_checkpoint;
use live::LiveJobs;
pub use live::{JobEvent, LiveProgress};
pub use readiness::Readiness;
pub use retention::RetentionPolicy;
pub use sweeps::SweepPlan;
pub use usage::Usage;

use crate::catalog::Catalog;
use crate::domain::{Caller, DataShape, DatasetId, JobId, JobSpec, JobSubmission, SweepId};
use crate::error::{Error, Result};
use crate::store::{CancelOutcome, JobRow, NewJob, OwnedKind, RecoveryReport, Store};
use engine::InterruptReason;

/// Settings of the queue and its workers.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Jobs trained at the same time.
    pub worker_slots: usize,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often claims are renewed and the queue is polled.
    pub heartbeat: Duration,
    /// Crash-interrupted attempts before a job is failed.
    pub max_attempts: u32,
    /// The data folder (checkpoint paths are stored relative to it).
    pub data_dir: PathBuf,
    /// Cores each training job may use: its own rayon pool and kernel thread budget, so
    /// concurrent jobs do not oversubscribe the machine.
    pub job_threads: usize,
    /// Where jobs train.
    pub device: candle_core::Device,
    /// Most bytes one job may need (its estimated peak); a larger spec is refused.
    pub max_job_memory: u64,
    /// The highest priority a caller without the `admin` scope may give a job.
    pub max_priority: i32,
    /// What the scheduler's retention pass removes.
    pub retention: RetentionPolicy,
}

/// What the memory estimate needs from a data set's summary.
fn data_shape(summary: &crate::catalog::DatasetSummary) -> DataShape {
    DataShape {
        rows: summary.rows,
        features: summary.features,
        image_shape: summary.image_shape,
        class_counts: summary.classes.iter().map(|c| c.count).collect(),
        fixed_split: summary
            .fixed_split
            .as_ref()
            .map(|s| [s.train, s.val, s.test]),
    }
}

/// Handle to the queue; cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    catalog: Catalog,
    config: QueueConfig,
    owner: String,
    wake: Notify,
    live: LiveJobs,
    reserve: disk_reserve::DiskReserve,
    events: broadcast::Sender<JobEvent>,
    stopping: watch::Sender<bool>,
    /// Range tests asked for over HTTP run at most this many at once.
    range_tests: tokio::sync::Semaphore,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Jobs {
    /// A queue over `store`; call [`Jobs::recover`] and [`Jobs::run_scheduler`] to start it.
    pub fn new(store: Store, catalog: Catalog, config: QueueConfig) -> Self {
        tracing::info!(
            max_job_memory = %crate::domain::format_bytes(config.max_job_memory),
            "memory limit per job"
        );
        let (events, _) = broadcast::channel(1024);
        let (stopping, _) = watch::channel(false);
        let reserve = disk_reserve::DiskReserve::new(&config.data_dir);
        let range_tests = config.worker_slots.max(1);
        Jobs {
            inner: Arc::new(Inner {
                store,
                catalog,
                config,
                owner: format!("node-{}", uuid::Uuid::new_v4()),
                wake: Notify::new(),
                live: LiveJobs::default(),
                reserve,
                events,
                stopping,
                range_tests: tokio::sync::Semaphore::new(range_tests),
            }),
        }
    }

    /// Validates a spec, fills in what it leaves open (data set id, seed) and queues it as
    /// `caller`'s job; with `"lr": "auto"` its worker runs a range test first. The data set and any transfer source must be the caller's to see.
    pub async fn submit(
        &self,
        submission: impl Into<JobSubmission>,
        caller: &Caller,
    ) -> Result<JobRow> {
        self.refuse_when_stopping()?;
        let submission = submission.into();
        let mut job = self.new_job(submission.spec, None, caller).await?;
        job.lr_auto = submission.lr_auto;
        let row = self.inner.store.insert_job(&job).await?;
        tracing::info!(job_id = %row.id, name = %row.name, "job queued");
        self.publish(JobEvent::status(&row));
        self.inner.wake.notify_one();
        Ok(row)
    }

    fn refuse_when_stopping(&self) -> Result<()> {
        if *self.inner.stopping.borrow() {
            return Err(Error::Unavailable {
                message: "the service is shutting down".into(),
            });
        }
        Ok(())
    }

    /// The row to insert for a spec: validated, data set resolved, name and seed fixed.
    async fn new_job(
        &self,
        mut spec: JobSpec,
        sweep_id: Option<SweepId>,
        caller: &Caller,
    ) -> Result<NewJob> {
        spec.validate()?;
        self.check_knobs(&spec, caller)?;
        let no_dataset = || {
            Error::invalid(
                "dataset",
                format!(
                    "no data set named '{}'; GET /v1/datasets lists them",
                    spec.dataset
                ),
            )
        };
        if !self.sees(caller, OwnedKind::Dataset, &spec.dataset).await? {
            return Err(no_dataset());
        }
        let dataset = self
            .inner
            .catalog
            .find(&spec.dataset)
            .await?
            .ok_or_else(no_dataset)?;
        self.check_transfer_visible(&spec, caller).await?;
        let summary = serde_json::from_str::<crate::catalog::DatasetSummary>(&dataset.summary).ok();
        let image_shape = summary.as_ref().and_then(|summary| summary.image_shape);
        spec.validate_for_dataset(image_shape)?;
        // Every split asked for gets at least one row, counted as the split will count them.
        if let Some(summary) = summary.as_ref().filter(|s| s.fixed_split.is_none()) {
            let rows: Vec<usize> = summary.classes.iter().map(|c| c.count).collect();
            spec.data.check_split_sizes(&rows)?;
        }
        match &summary {
            Some(summary) => {
                let config = &self.inner.config;
                let estimate = spec.check_resources(
                    &data_shape(summary),
                    config.max_job_memory,
                    config.job_threads,
                )?;
                tracing::debug!(
                    estimate = %crate::domain::format_bytes(estimate.total()),
                    data = %crate::domain::format_bytes(estimate.data()),
                    "job memory estimated"
                );
            }
            // Preparation still checks its own allocation against the limit.
            None => {
                tracing::warn!(dataset = %dataset.id, "no readable summary; memory not estimated")
            }
        }
        self.check_transfer(&spec, spec.input_shape(image_shape)?)
            .await?;
        spec.name = Some(spec.display_name());
        spec.fill_defaults();
        if spec.training.seed.is_none() {
            spec.training.seed = Some(rand::random::<u32>() as u64);
        }
        Ok(NewJob {
            id: JobId::new(),
            name: spec.display_name(),
            dataset_id: dataset.id,
            spec: serde_json::to_string(&spec)
                .map_err(|err| Error::internal("encoding a spec", err))?,
            priority: i64::from(spec.priority),
            epochs_total: i64::from(spec.training.epochs),
            sweep_id,
            owner: caller.owner.clone(),
            lr_auto: false,
        })
    }

    /// The knobs a caller without `admin` may not turn past its limits: priority (a 403, since
    /// only `admin` may jump the queue) and kept checkpoints (a 422 naming its quota).
    fn check_knobs(&self, spec: &JobSpec, caller: &Caller) -> Result<()> {
        let max_priority = self.inner.config.max_priority;
        if spec.priority > max_priority && !caller.is_admin() {
            return Err(Error::forbidden(format!(
                "priority: {} is above {max_priority}, the highest a token without the 'admin' scope may set",
                spec.priority
            )));
        }
        if let Some(quotas) = caller.quotas
            && spec.checkpoints.keep_last > quotas.keep_last
        {
            return Err(Error::invalid(
                "checkpoints.keep_last",
                format!(
                    "{} is over this token's quota of {} checkpoints kept per job",
                    spec.checkpoints.keep_last, quotas.keep_last
                ),
            ));
        }
        Ok(())
    }

    /// Whether a resource that exists is the caller's to see; unknown ones count as seen, so
    /// the lookup that follows answers for them.
    async fn sees(&self, caller: &Caller, kind: OwnedKind, key: &str) -> Result<bool> {
        if caller.is_admin() {
            return Ok(true);
        }
        Ok(match self.inner.store.ownership(kind, key).await? {
            Some(found) => caller.sees(found.owner.as_deref(), found.public),
            None => true,
        })
    }

    /// A transfer may only start from the caller's own jobs and weights: others' are unknown.
    async fn check_transfer_visible(&self, spec: &JobSpec, caller: &Caller) -> Result<()> {
        let Some(init) = spec.init.as_ref() else {
            return Ok(());
        };
        if let Some(job) = init.from_job.as_deref().filter(|j| !j.trim().is_empty())
            && !self.sees(caller, OwnedKind::Job, job).await?
        {
            return Err(Error::invalid(
                "init.from_job",
                format!("no job '{job}'; GET /v1/jobs lists them"),
            ));
        }
        if let Some(weights) = init
            .from_weights
            .as_deref()
            .filter(|w| !w.trim().is_empty())
            && !self.sees(caller, OwnedKind::Weights, weights).await?
        {
            return Err(Error::invalid(
                "init.from_weights",
                format!("no weights named '{weights}'; GET /v1/weights lists them"),
            ));
        }
        Ok(())
    }

    /// The memory a stored job needs, refused with the reason when it exceeds the limit now in
    /// force (a job queued before the limit was lowered, or before estimates existed).
    async fn check_memory(&self, spec: &JobSpec, dataset: DatasetId) -> Result<()> {
        let Some(row) = self.inner.catalog.find(&dataset.to_string()).await? else {
            return Ok(());
        };
        let Ok(summary) = serde_json::from_str::<crate::catalog::DatasetSummary>(&row.summary)
        else {
            return Ok(());
        };
        let config = &self.inner.config;
        Ok(spec
            .memory_estimate(&data_shape(&summary), config.job_threads)?
            .check(spec, config.max_job_memory)?)
    }

    /// Cancels a job: a queued one never starts, a running one stops within one batch.
    pub async fn cancel(&self, id: JobId) -> Result<JobRow> {
        match self.inner.store.request_cancel(id).await? {
            CancelOutcome::Requested => self.inner.live.interrupt(id, InterruptReason::Cancelled),
            CancelOutcome::CancelledWhileQueued => {
                tracing::info!(job_id = %id, "queued job cancelled")
            }
            CancelOutcome::AlreadyEnded(status) => {
                return Err(Error::conflict(format!(
                    "job {id} has already ended: it {status}"
                )));
            }
        }
        let row = self.get(id).await?;
        self.publish(JobEvent::status(&row));
        Ok(row)
    }

    /// One job, or a 404.
    pub async fn get(&self, id: JobId) -> Result<JobRow> {
        self.inner
            .store
            .get_job(id)
            .await?
            .ok_or_else(|| Error::not_found("job", id.to_string()))
    }

    /// Step-level progress of a job this node is training right now.
    pub fn live_progress(&self, id: JobId) -> Option<LiveProgress> {
        self.inner.live.progress(id)
    }

    /// Events of every job (status changes, epochs), for streaming.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    fn publish(&self, event: JobEvent) {
        // No subscriber is fine.
        let _ = self.inner.events.send(event);
    }

    /// After a crash, puts every job that was running back in the queue (or fails those
    /// interrupted too often). This node is the only one, so any `running` row is orphaned.
    pub async fn recover(&self) -> Result<RecoveryReport> {
        if let Err(err) = self.ensure_disk_reserve().await {
            tracing::warn!(error = %err, "no room for the disk reserve in the data folder");
        }
        let report = self
            .inner
            .store
            .recover_interrupted_jobs(i64::MAX, i64::from(self.inner.config.max_attempts))
            .await?;
        let tests = self.inner.store.fail_interrupted_lr_finds().await?;
        if tests > 0 {
            tracing::warn!(
                count = tests,
                "learning-rate tests interrupted by a previous stop marked failed"
            );
        }
        if !report.requeued.is_empty() || !report.failed.is_empty() || !report.cancelled.is_empty()
        {
            tracing::warn!(
                requeued = report.requeued.len(),
                failed = report.failed.len(),
                cancelled = report.cancelled.len(),
                "recovered jobs interrupted by a previous stop"
            );
        }
        Ok(report)
    }

    /// Stops claiming new jobs and asks running ones to stop; they go back to the queue and
    /// resume from their last checkpoint on the next start. Resolves once the scheduler exits.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
        self.inner.live.interrupt_all(InterruptReason::Shutdown);
        self.inner.wake.notify_waiters();
    }

    /// Writes the disk reserve if it is missing (see `disk_reserve`).
    pub(crate) async fn ensure_disk_reserve(&self) -> std::io::Result<()> {
        let jobs = self.clone();
        tokio::task::spawn_blocking(move || jobs.inner.reserve.ensure())
            .await
            .unwrap_or_else(|err| Err(std::io::Error::other(err)))
    }

    /// Frees the disk reserve so that a failure can be recorded on a full disk.
    pub(crate) fn release_disk_reserve(&self) -> bool {
        self.inner.reserve.release()
    }

    /// Cores each training job uses.
    pub fn threads_per_job(&self) -> usize {
        self.inner.config.job_threads
    }

    /// True once shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.inner.stopping.borrow()
    }
}
