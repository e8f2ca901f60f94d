//! Pruning of sweep trials, decided where each epoch is committed: the verdict is committed
//! with the epoch it judges, so a restart or a resume sees the trial as finished.

use super::Jobs;
use crate::analysis::prune_verdict;
use crate::domain::{Goal, JobId, PruningSpec, RankMetric, SweepId, SweepSpec};
use crate::error::{Error, Result};
use crate::store::{EpochRow, JobRow};

/// The pruning rule a trial is judged by, with its sweep's ranking metric.
pub(super) struct PruningPlan {
    sweep: SweepId,
    rule: PruningSpec,
    metric: RankMetric,
    goal: Goal,
    epochs_total: i64,
}

impl Jobs {
    /// The pruning rule of the sweep a job is a trial of, if that sweep has one.
    pub(super) async fn pruning_plan(&self, job: &JobRow) -> Result<Option<PruningPlan>> {
        let Some(sweep) = job.sweep_id.0 else {
            return Ok(None);
        };
        let row = self.get_sweep(sweep).await?;
        let spec: SweepSpec = serde_json::from_str(&row.spec)
            .map_err(|err| Error::internal("reading a sweep", err))?;
        Ok(spec.pruning.clone().map(|rule| PruningPlan {
            sweep,
            rule,
            metric: spec.metric,
            goal: spec.goal(),
            epochs_total: job.epochs_total,
        }))
    }

    /// The first epoch of a backlog (`rows`, oldest first, not committed yet) that the rule
    /// stops, with the reason. Only the first `judged` rows are judged: an epoch where early
    /// stopping already ends the job is not, nor anything after it.
    pub(super) async fn first_pruned(
        &self,
        plan: &PruningPlan,
        id: JobId,
        rows: &[EpochRow],
        judged: usize,
    ) -> Result<Option<(usize, String)>> {
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut own = self.inner.store.list_epochs(id).await?;
        own.retain(|e| e.epoch < first.epoch);
        for (i, latest) in rows.iter().take(judged).enumerate() {
            own.push(latest.clone());
            let epoch = latest.epoch;
            if epoch < i64::from(plan.rule.after_epochs) || epoch >= plan.epochs_total {
                continue;
            }
            let others = self
                .inner
                .store
                .other_trial_epochs(plan.sweep, id, epoch)
                .await?;
            let verdict = prune_verdict(
                &plan.rule,
                plan.metric,
                plan.goal,
                epoch,
                plan.epochs_total,
                &own,
                &others,
            );
            if let Some(reason) = verdict {
                tracing::info!(job_id = %id, %reason, "trial pruned");
                return Ok(Some((i, reason)));
            }
        }
        Ok(None)
    }
}
