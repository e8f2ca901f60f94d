use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::epoch_writer::{Backlog, Best, Persisted, drain_backlog};
use super::{JobEvent, Jobs, now_ms};
use crate::domain::{JobId, JobSpec, JobStatus};
use crate::error::{Error, Result};
use crate::store::Claim;
use engine::checkpoint::{self, CheckpointData};
use engine::{EpochReport, FitOutcome, InterruptReason, Start, TrainError, fit, prepare_within};
use kernels;

/// How a claimed job ends on this worker.
enum Ending {
    Succeeded,
    Failed(String),
    Cancelled,
    /// Shutdown: back to the queue, to resume from the last checkpoint.
    Requeue,
    /// Another worker owns the job now; write nothing more.
    LeaseLost,
}

/// Retries of a failed write of a job's end (pauses of 0.1 s doubling to 10 s: about 70 s).
const SETTLE_RETRIES: usize = 12;

type FitResult = std::thread::Result<std::result::Result<FitOutcome, TrainError>>;

impl Jobs {
    /// Trains a claimed job to its end and records how it ended.
    pub(super) async fn run_claimed(&self, claim: Claim) {
        let id = claim.job.id;
        let lease = claim.lease_epoch;
        let span = tracing::info_span!("job", job_id = %id, attempt = claim.job.attempt);
        async move {
            tracing::info!(resume_after_epoch = claim.job.epochs_done, "job started");
            self.publish(JobEvent::status(&claim.job));
            let ending = match self.train_claimed(&claim).await {
                Ok(ending) => ending,
                Err(err) => Ending::Failed(err.to_string()),
            };
            self.settle(id, lease, ending).await;
        }
        .instrument(span)
        .await
    }

    async fn train_claimed(&self, claim: &Claim) -> Result<Ending> {
        let job = &claim.job;
        if job.cancel_requested {
            return Ok(Ending::Cancelled);
        }
        let spec: JobSpec = serde_json::from_str(&job.spec)
            .map_err(|err| Error::internal("reading the stored spec", err))?;
        // A job queued before the limit was lowered fails here with the reason, once, rather
        // than aborting every process that claims it.
        self.check_memory(&spec, job.dataset_id).await?;
        let table = self.inner.catalog.load(job.dataset_id).await?;
        let (prep_spec, limit) = (spec.clone(), self.inner.config.max_job_memory);
        let device = self.inner.config.device.clone();
        let data =
            tokio::task::spawn_blocking(move || prepare_within(&table, &prep_spec, &device, limit))
                .await
                .map_err(|err| Error::internal("preparing data", err))??;
        if job.preprocessing.is_none() {
            let json = serde_json::to_string(&data.preprocessing)
                .map_err(|err| Error::internal("encoding preprocessing", err))?;
            if !self
                .inner
                .store
                .set_preprocessing(job.id, claim.lease_epoch, &json)
                .await?
            {
                return Ok(Ending::LeaseLost);
            }
        }
        // An early stop is committed with its epoch, so a restart after it does not train on.
        if job.epochs_done >= job.epochs_total || job.stopped_early_epoch.is_some() {
            return Ok(Ending::Succeeded);
        }
        let resume = self.resume_point(job.id, job.epochs_done).await?;
        let backbone = if resume.is_none() {
            self.backbone_for(&spec).await?
        } else {
            None
        };
        let data = Arc::new(data);
        // A restart after the choice finds it in the stored spec and does not test again.
        let spec = if job.lr_auto && job.lr_find_id.is_none() && resume.is_none() {
            match self
                .choose_lr(claim, spec, data.clone(), backbone.clone())
                .await
            {
                Ok(Some(spec)) => spec,
                Ok(None) => return Ok(Ending::LeaseLost),
                Err(Error::Unavailable { .. }) if self.is_stopping() => return Ok(Ending::Requeue),
                Err(err) => return Err(err),
            }
        } else {
            spec
        };

        let pruning = self.pruning_plan(job).await?;
        let live = self.inner.live.register(job.id);
        let (reports, mut received) = mpsc::unbounded_channel::<EpochReport>();
        let backlog = Arc::new(Backlog::default());
        let thread_backlog = backlog.clone();
        let (done, finished) = oneshot::channel::<FitResult>();
        let thread_live = live.clone();
        let device = self.inner.config.device.clone();
        let threads = self.inner.config.job_threads;
        std::thread::Builder::new()
            .name(format!("train-{}", job.id))
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    within_budget(threads, || {
                        fit(
                            &spec,
                            &data,
                            match (resume, &backbone) {
                                (Some((epoch, saved)), _) => Start::Resume(epoch, saved),
                                (None, Some((backbone, field))) => Start::Backbone(backbone, field),
                                (None, None) => Start::Fresh,
                            },
                            &device,
                            &thread_live.interrupter,
                            &mut |progress| thread_live.record(&progress),
                            &mut |report| {
                                thread_backlog.reserve(report.checkpoint.len());
                                reports.send(report).map_err(|_| {
                                    engine::EngineError::Internal(
                                        "the job's checkpoint writer stopped".into(),
                                    )
                                })
                            },
                        )
                    })
                }));
                let _ = done.send(result);
            })
            .map_err(|err| Error::internal("starting a training thread", err))?;

        let mut heartbeat = tokio::time::interval(self.inner.config.heartbeat);
        heartbeat.tick().await;
        let mut persist_failure = None;
        let mut best = Best::stored(job.best_val_acc, job.best_val_loss);
        let mut pruned = false;
        loop {
            tokio::select! {
                report = received.recv() => match report {
                    None => break,
                    // After a failed save nothing later may be recorded: it would leave a gap.
                    Some(_) if persist_failure.is_some() => {}
                    // Epochs the thread finished before it saw the prune are not recorded: the
                    // job ends at the epoch its verdict names.
                    Some(_) if pruned => {}
                    Some(first) => {
                        let batch = drain_backlog(first, &mut received);
                        let bytes = batch.iter().map(|r| r.checkpoint.len()).sum();
                        let persisted = self
                            .persist_epochs(
                                job.id,
                                claim.lease_epoch,
                                batch,
                                &mut best,
                                pruning.as_ref(),
                            )
                            .await;
                        backlog.release(bytes);
                        match persisted {
                            Ok(Persisted::Saved) => {}
                            Ok(Persisted::Pruned) => {
                                pruned = true;
                                live.interrupter.interrupt(InterruptReason::Pruned);
                            }
                            Ok(Persisted::LeaseLost) => {
                                live.interrupter.interrupt(InterruptReason::LeaseLost)
                            }
                            Err(err) => {
                                tracing::error!(error = %err, "saving an epoch failed");
                                persist_failure = Some(format!("could not save an epoch: {err}"));
                                // Makes the training thread's next report fail, which stops it.
                                received.close();
                                backlog.close();
                            }
                        }
                    }
                },
                _ = heartbeat.tick() => {
                    let until = now_ms() + self.inner.config.lease.as_millis() as i64;
                    match self.inner.store.renew_lease(job.id, claim.lease_epoch, until).await {
                        Ok(None) => live.interrupter.interrupt(InterruptReason::LeaseLost),
                        Ok(Some(true)) => live.interrupter.interrupt(InterruptReason::Cancelled),
                        Ok(Some(false)) => {}
                        Err(err) => tracing::warn!(error = %err, "renewing the lease failed"),
                    }
                }
            }
        }
        let result = finished.await;
        self.inner.live.remove(job.id);
        Ok(match result {
            Err(_) => Ending::Failed("the training thread ended without a result".into()),
            Ok(Err(panic)) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                tracing::error!(panic = %message, "training panicked");
                Ending::Failed(format!("training crashed: {message}"))
            }
            Ok(Ok(outcome)) => match (outcome, persist_failure) {
                (_, Some(failure)) => Ending::Failed(failure),
                (Ok(_), None) => Ending::Succeeded,
                (Err(TrainError::Interrupted(InterruptReason::Cancelled)), None) => {
                    Ending::Cancelled
                }
                (Err(TrainError::Interrupted(InterruptReason::Shutdown)), None) => Ending::Requeue,
                (Err(TrainError::Interrupted(InterruptReason::LeaseLost)), None) => {
                    Ending::LeaseLost
                }
                (Err(TrainError::Interrupted(InterruptReason::Pruned)), None) => Ending::Succeeded,
                (Err(err), None) => Ending::Failed(err.to_string()),
            },
        })
    }

    /// The last committed checkpoint of a job that already trained `epochs_done` epochs.
    async fn resume_point(
        &self,
        id: JobId,
        epochs_done: i64,
    ) -> Result<Option<(u32, CheckpointData)>> {
        if epochs_done == 0 {
            return Ok(None);
        }
        let row = self
            .inner
            .store
            .latest_checkpoint(id)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!(
                    "cannot resume after epoch {epochs_done}: no checkpoint is recorded"
                ))
            })?;
        let path = self.inner.config.data_dir.join(&row.path);
        let device = self.inner.config.device.clone();
        let saved = tokio::task::spawn_blocking(move || {
            checkpoint::read_verified(&path, &row.sha256, &device)
        })
        .await
        .map_err(|err| Error::internal("reading a checkpoint", err))??;
        tracing::info!(epoch = epochs_done, "resuming from checkpoint");
        Ok(Some((epochs_done as u32, saved)))
    }

    /// Records how a job ended. A full disk can refuse the write for a while: it is retried
    /// with growing pauses (about a minute in all), so the job ends with its reason instead of
    /// being left `running` until its lease runs out.
    async fn settle(&self, id: JobId, lease_epoch: i64, ending: Ending) {
        let mut pause = Duration::from_millis(100);
        let mut result = self.record_ending(id, lease_epoch, &ending).await;
        for _ in 0..SETTLE_RETRIES {
            let Err(err) = &result else { break };
            if matches!(err, Error::InsufficientStorage { .. }) && self.release_disk_reserve() {
                pause = Duration::ZERO;
            }
            tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64, "recording the end of a job failed; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
            result = self.record_ending(id, lease_epoch, &ending).await;
        }
        match result {
            Err(err) => tracing::error!(error = %err, "recording the end of a job failed"),
            Ok(false) if !matches!(ending, Ending::LeaseLost) => {
                tracing::warn!("the job was claimed elsewhere; its end was not recorded here")
            }
            Ok(_) => {}
        }
        if let Ok(row) = self.get(id).await {
            tracing::info!(status = %row.status, "job left its worker");
            self.publish(JobEvent::status(&row));
        }
    }

    async fn record_ending(&self, id: JobId, lease_epoch: i64, ending: &Ending) -> Result<bool> {
        let store = &self.inner.store;
        match ending {
            Ending::Succeeded => {
                store
                    .finish_job(id, lease_epoch, JobStatus::Succeeded, None)
                    .await
            }
            Ending::Failed(reason) => {
                tracing::warn!(%reason, "job failed");
                store
                    .finish_job(id, lease_epoch, JobStatus::Failed, Some(reason))
                    .await
            }
            Ending::Cancelled => {
                store
                    .finish_job(id, lease_epoch, JobStatus::Cancelled, None)
                    .await
            }
            Ending::Requeue => store.requeue_job(id, lease_epoch).await,
            Ending::LeaseLost => Ok(false),
        }
    }
}

/// Runs a job's training within `threads` cores: its own rayon pool (where candle's matrix
/// products and the kernels split their work) and the kernels' thread budget, so jobs in
/// different worker slots do not compete for the same cores.
pub(super) fn within_budget<R>(threads: usize, train: impl FnOnce() -> R + Send) -> R
where
    R: Send,
{
    let run = || kernels::with_thread_budget(threads, train);
    match rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("train-pool-{i}"))
        .build()
    {
        Ok(pool) => pool.install(run),
        Err(err) => {
            tracing::warn!(error = %err, "no pool of its own for this job; using the shared one");
            run()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_trains_on_a_pool_and_kernel_budget_of_its_own_size() {
        let (pool, budget) = within_budget(1, || {
            (rayon::current_num_threads(), kernels::thread_budget())
        });
        assert_eq!((pool, budget), (1, 1));
        let (pool, budget) = within_budget(3, || {
            (rayon::current_num_threads(), kernels::thread_budget())
        });
        assert_eq!((pool, budget), (3, 3));
    }
}
