use std::collections::HashSet;

use super::Jobs;
use crate::domain::{JobStatus, SweepId, SweepSpec, Trial};
use crate::error::{Error, Result};
use crate::store::{NewTrial, SweepRow, TrialReplacement};

/// What creating a sweep did (or, for a dry run, would do).
pub struct SweepPlan {
    /// The stored sweep; `None` for a dry run.
    pub sweep: Option<SweepRow>,
    /// The trials, validated.
    pub trials: Vec<Trial>,
}

impl Jobs {
    /// Expands a sweep into trials and queues each as an ordinary job, all in one transaction.
    pub async fn create_sweep(&self, spec: SweepSpec) -> Result<SweepPlan> {
        self.refuse_when_stopping()?;
        let trials = spec.expand()?;
        let id = SweepId::new();
        let mut rows = Vec::with_capacity(trials.len());
        for trial in &trials {
            let job = self
                .new_job(trial.spec.clone(), Some(id))
                .await
                // Named on the axis that set the value, or on the base spec.
                .map_err(|err| match err {
                    Error::Invalid { field, message } => match trial.params.get(&field) {
                        Some(value) => Error::invalid(
                            format!("axes.{field}"),
                            format!("value {value}: {message}"),
                        ),
                        None => Error::invalid(format!("base.{field}"), message),
                    },
                    other => other,
                })?;
            rows.push(NewTrial {
                index: i64::from(trial.index),
                params: serde_json::to_string(&trial.params)
                    .map_err(|err| Error::internal("encoding params", err))?,
                repeat: i64::from(trial.repeat),
                job,
            });
        }
        if spec.dry_run {
            return Ok(SweepPlan {
                sweep: None,
                trials,
            });
        }
        let json =
            serde_json::to_string(&spec).map_err(|err| Error::internal("encoding a sweep", err))?;
        let sweep = self
            .inner
            .store
            .insert_sweep(
                id,
                &spec.display_name(),
                &json,
                i64::from(spec.max_concurrent),
                &rows,
            )
            .await?;
        tracing::info!(sweep_id = %id, trials = rows.len(), "sweep queued");
        self.inner.wake.notify_one();
        Ok(SweepPlan {
            sweep: Some(sweep),
            trials,
        })
    }

    /// A sweep, or a 404.
    pub async fn get_sweep(&self, id: SweepId) -> Result<SweepRow> {
        self.inner
            .store
            .get_sweep(id)
            .await?
            .ok_or_else(|| Error::not_found("sweep", id.to_string()))
    }

    /// Re-queues the trials whose job failed or was cancelled; finished, queued and running
    /// trials are left alone, so nothing is ever run twice. Returns the re-queued indices.
    pub async fn resume_sweep(&self, id: SweepId) -> Result<Vec<i64>> {
        self.refuse_when_stopping()?;
        self.get_sweep(id).await?;
        let mut replacements = Vec::new();
        for trial in self.inner.store.list_trials(id).await? {
            let job = self.get(trial.job_id).await?;
            if matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
                let spec = serde_json::from_str(&job.spec)
                    .map_err(|err| Error::internal("reading a trial spec", err))?;
                replacements.push(TrialReplacement {
                    trial_index: trial.trial_index,
                    replaces: job.id,
                    job: self.new_job(spec, Some(id)).await?,
                });
            }
        }
        // Checked again inside one transaction: a concurrent resume may have won the race.
        let replaced = self
            .inner
            .store
            .replace_trial_jobs(id, &replacements)
            .await?;
        self.inner.wake.notify_one();
        Ok(replaced)
    }

    /// Cancels every queued or running trial of a sweep; returns how many.
    pub async fn cancel_sweep(&self, id: SweepId) -> Result<usize> {
        self.get_sweep(id).await?;
        let mut cancelled = 0;
        let mut seen = HashSet::new();
        for trial in self.inner.store.list_trials(id).await? {
            if !seen.insert(trial.job_id) {
                continue;
            }
            let job = self.get(trial.job_id).await?;
            if !job.status.is_terminal() {
                match self.cancel(job.id).await {
                    Ok(_) => cancelled += 1,
                    // It ended between the read and the cancel.
                    Err(Error::Conflict { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(cancelled)
    }
}
