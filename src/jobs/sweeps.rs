use std::collections::{HashMap, HashSet};

use super::Jobs;
use crate::domain::{Caller, JobStatus, StudyId, SweepId, SweepSpec, Trial};
use crate::error::{Error, Result};
use crate::store::{NewTrial, OwnedKind, SweepRow, TrialReplacement};

/// What creating a sweep did (or, for a dry run, would do).
pub struct SweepPlan {
    /// The stored sweep; `None` for a dry run.
    pub sweep: Option<SweepRow>,
    /// The trials, validated.
    pub trials: Vec<Trial>,
}

impl Jobs {
    /// Expands a sweep into trials and queues each as an ordinary job, all in one transaction.
    /// The sweep and its jobs belong to `caller`.
    pub async fn create_sweep(&self, spec: SweepSpec, caller: &Caller) -> Result<SweepPlan> {
        self.create_sweep_for(spec, caller, None).await
    }

    /// [`Jobs::create_sweep`], recording the sweep as a study's part in the same transaction
    /// when `study` names one (a part already created is a conflict).
    pub async fn create_sweep_for(
        &self,
        spec: SweepSpec,
        caller: &Caller,
        study: Option<(StudyId, &str)>,
    ) -> Result<SweepPlan> {
        self.refuse_when_stopping()?;
        let trials = spec.expand()?;
        self.check_sweep_quotas(&trials, caller, spec.dry_run)
            .await?;
        let id = SweepId::new();
        let mut rows = Vec::with_capacity(trials.len());
        for trial in &trials {
            let job = self
                .new_job(trial.spec.clone(), Some(id), caller)
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
                caller.owner.as_deref(),
                study,
            )
            .await?;
        tracing::info!(sweep_id = %id, trials = rows.len(), "sweep queued");
        self.inner.wake.notify_one();
        Ok(SweepPlan {
            sweep: Some(sweep),
            trials,
        })
    }

    /// A sweep's size against the caller's quotas: its trials, its estimated work (rows x
    /// epochs over its trials) and the jobs it would add to those already queued or running.
    async fn check_sweep_quotas(
        &self,
        trials: &[Trial],
        caller: &Caller,
        dry_run: bool,
    ) -> Result<()> {
        let (Some(quotas), Some(owner)) = (caller.quotas, caller.owner.as_deref()) else {
            return Ok(());
        };
        if trials.len() as u64 > u64::from(quotas.sweep_trials) {
            return Err(Error::quota(
                format!(
                    "the sweep has {} trials; this token may run at most {} in one sweep",
                    trials.len(),
                    quotas.sweep_trials
                ),
                None,
            ));
        }
        let mut rows_of: HashMap<String, u64> = HashMap::new();
        let mut work: u64 = 0;
        for trial in trials {
            let name = &trial.spec.dataset;
            let rows = match rows_of.get(name) {
                Some(rows) => *rows,
                None => {
                    // Unknown data sets are named by the trial's own check.
                    let rows = match self.inner.catalog.find(name).await? {
                        Some(row) => {
                            serde_json::from_str::<crate::catalog::DatasetSummary>(&row.summary)
                                .map(|s| s.rows as u64)
                                .unwrap_or(0)
                        }
                        None => 0,
                    };
                    rows_of.insert(name.clone(), rows);
                    rows
                }
            };
            work = work.saturating_add(rows.saturating_mul(u64::from(trial.spec.training.epochs)));
        }
        if work > quotas.sweep_sample_epochs {
            return Err(Error::quota(
                format!(
                    "the sweep's estimated work is {work} sample-epochs (rows x epochs, summed over its trials); this token may queue at most {} in one sweep",
                    quotas.sweep_sample_epochs
                ),
                None,
            ));
        }
        if !dry_run {
            let active = self.inner.store.active_jobs_of(owner).await?.max(0) as u64;
            if active + trials.len() as u64 > u64::from(quotas.active_jobs) {
                return Err(Error::quota(
                    format!(
                        "this token may have {} jobs queued or running and has {active}; the sweep's {} trials would exceed it",
                        quotas.active_jobs,
                        trials.len()
                    ),
                    Some(30),
                ));
            }
        }
        Ok(())
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
        // New trial jobs belong to the sweep's owner, whoever resumes it.
        let owner = self
            .inner
            .store
            .ownership(OwnedKind::Sweep, &id.to_string())
            .await?
            .and_then(|found| found.owner);
        let on_behalf = Caller::acting_for(owner);
        let mut replacements = Vec::new();
        for trial in self.inner.store.list_trials(id).await? {
            let job = self.get(trial.job_id).await?;
            if matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
                let spec = serde_json::from_str(&job.spec)
                    .map_err(|err| Error::internal("reading a trial spec", err))?;
                replacements.push(TrialReplacement {
                    trial_index: trial.trial_index,
                    replaces: job.id,
                    job: self.new_job(spec, Some(id), &on_behalf).await?,
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
