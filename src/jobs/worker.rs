use std::panic::{AssertUnwindSafe, catch_unwind};

use candle_core::Device;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::{JobEvent, Jobs, now_ms, retention};
use crate::domain::{JobId, JobSpec, JobStatus};
use crate::error::{Error, Result};
use crate::store::{CheckpointRow, Claim, EpochCommit, EpochRow, LayerGradRow, StepBatch};
use crate::train::checkpoint::{self, CheckpointData};
use crate::train::{
    EpochMetrics, EpochReport, FitOutcome, InterruptReason, LayerStats, Start, TrainError, fit,
    prepare,
};

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
        let table = self.inner.catalog.load(job.dataset_id).await?;
        let data_spec = spec.data.clone();
        let data = tokio::task::spawn_blocking(move || prepare(&table, &data_spec, &Device::Cpu))
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

        let live = self.inner.live.register(job.id);
        let (reports, mut received) = mpsc::channel::<EpochReport>(2);
        let (done, finished) = oneshot::channel::<FitResult>();
        let thread_live = live.clone();
        std::thread::Builder::new()
            .name(format!("train-{}", job.id))
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    fit(
                        &spec,
                        &data,
                        match (resume, &backbone) {
                            (Some((epoch, saved)), _) => Start::Resume(epoch, saved),
                            (None, Some((backbone, field))) => Start::Backbone(backbone, field),
                            (None, None) => Start::Fresh,
                        },
                        &Device::Cpu,
                        &thread_live.interrupter,
                        &mut |progress| thread_live.record(&progress),
                        &mut |report| {
                            reports.blocking_send(report).map_err(|_| {
                                Error::Internal("the job's checkpoint writer stopped".into())
                            })
                        },
                    )
                }));
                let _ = done.send(result);
            })
            .map_err(|err| Error::internal("starting a training thread", err))?;

        let mut heartbeat = tokio::time::interval(self.inner.config.heartbeat);
        heartbeat.tick().await;
        let mut persist_failure = None;
        loop {
            tokio::select! {
                report = received.recv() => match report {
                    None => break,
                    Some(report) => match self.persist(job.id, claim.lease_epoch, report).await {
                        Ok(true) => {}
                        Ok(false) => live.interrupter.interrupt(InterruptReason::LeaseLost),
                        Err(err) => {
                            tracing::error!(error = %err, "saving an epoch failed");
                            persist_failure = Some(format!("could not save an epoch: {err}"));
                            // Makes the training thread's next report fail, which stops it.
                            received.close();
                        }
                    },
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
        let saved = tokio::task::spawn_blocking(move || {
            checkpoint::read_verified(&path, &row.sha256, &Device::Cpu)
        })
        .await
        .map_err(|err| Error::internal("reading a checkpoint", err))??;
        tracing::info!(epoch = epochs_done, "resuming from checkpoint");
        Ok(Some((epochs_done as u32, saved)))
    }

    /// Writes an epoch's checkpoint file, then commits its metrics, step losses, layer norms,
    /// checkpoint row and any early stop in one transaction, then applies retention. False
    /// when the claim was lost.
    async fn persist(&self, id: JobId, lease_epoch: i64, report: EpochReport) -> Result<bool> {
        let metrics = epoch_row(&report.metrics);
        let relative = format!("checkpoints/{id}/{:06}.safetensors", metrics.epoch);
        let path = self.inner.config.data_dir.join(&relative);
        let bytes = report.checkpoint;
        let size = bytes.len() as i64;
        let sha256 =
            tokio::task::spawn_blocking(move || checkpoint::write_atomically(&path, &bytes))
                .await
                .map_err(|err| Error::internal("writing a checkpoint", err))??;
        let row = CheckpointRow {
            epoch: metrics.epoch,
            path: relative,
            sha256,
            bytes: size,
            val_acc: metrics.val_acc,
            val_loss: metrics.val_loss,
        };
        let steps = StepBatch {
            epoch: metrics.epoch,
            first_step: report.first_step as i64,
            losses: report.step_losses,
        };
        let layers = layer_rows(metrics.epoch, &report.layers);
        let commit = EpochCommit {
            epoch: &metrics,
            checkpoint: &row,
            steps: &steps,
            layers: &layers,
            stopped_early: report.stopped_early.as_deref(),
        };
        if !self
            .inner
            .store
            .commit_epoch(id, lease_epoch, &commit)
            .await?
        {
            return Ok(false);
        }
        self.publish(JobEvent::Epoch {
            job_id: id,
            metrics,
        });
        self.apply_retention(id).await?;
        Ok(true)
    }

    async fn apply_retention(&self, id: JobId) -> Result<()> {
        let job = self.get(id).await?;
        let spec: JobSpec = serde_json::from_str(&job.spec)
            .map_err(|err| Error::internal("reading the stored spec", err))?;
        let checkpoints = self.inner.store.list_checkpoints(id).await?;
        let epochs: Vec<i64> = checkpoints.iter().map(|c| c.epoch).collect();
        let doomed = retention::epochs_to_delete(
            &epochs,
            job.best_epoch,
            spec.checkpoints.every,
            spec.checkpoints.keep_last,
        );
        if doomed.is_empty() {
            return Ok(());
        }
        self.inner.store.delete_checkpoints(id, &doomed).await?;
        for checkpoint in checkpoints.iter().filter(|c| doomed.contains(&c.epoch)) {
            let path = self.inner.config.data_dir.join(&checkpoint.path);
            if let Err(err) = tokio::fs::remove_file(&path).await {
                tracing::warn!(path = %path.display(), error = %err, "removing a pruned checkpoint failed");
            }
        }
        Ok(())
    }

    async fn settle(&self, id: JobId, lease_epoch: i64, ending: Ending) {
        let store = &self.inner.store;
        let result = match &ending {
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
        };
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
}

fn epoch_row(metrics: &EpochMetrics) -> EpochRow {
    EpochRow {
        epoch: i64::from(metrics.epoch),
        train_loss: metrics.train_loss,
        train_acc: metrics.train_acc,
        train_eval_loss: Some(metrics.train_eval_loss),
        train_eval_acc: Some(metrics.train_eval_acc),
        val_loss: metrics.val_loss,
        val_acc: metrics.val_acc,
        test_loss: metrics.test_loss,
        test_acc: metrics.test_acc,
        lr: metrics.lr,
        steps: metrics.steps as i64,
        step_loss_cv: Some(metrics.step_loss_cv),
        epoch_seconds: metrics.epoch_seconds,
        samples_per_sec: metrics.samples_per_sec,
    }
}

fn layer_rows(epoch: i64, layers: &[LayerStats]) -> Vec<LayerGradRow> {
    layers
        .iter()
        .enumerate()
        .map(|(position, l)| LayerGradRow {
            position: position as i64,
            epoch,
            tensor: l.name.clone(),
            layer: l.layer.clone(),
            layer_index: l.index as i64,
            role: l.role.clone(),
            grad_norm_mean: Some(l.grad_norm_mean),
            grad_norm_max: Some(l.grad_norm_max),
            weight_norm: Some(l.weight_norm),
        })
        .collect()
}
