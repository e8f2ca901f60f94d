//! Stored runs read into the analysis layer's results: sweep summaries, comparisons, findings
//! and disagreements. The API's JSON answers and plots and the study reports both come from
//! here, so a figure in a report is the figure the API gives.

mod disagreements;

use crate::analysis::{self, Comparison, Finding, RunFacts, SweepSummary, TrialResult};
use crate::domain::{Goal, JobId, JobSpec, RankMetric, SweepSpec};
use crate::error::{Error, Result};
use crate::jobs::Jobs;
use crate::store::{EpochRow, JobRow, LayerGradRow, Store, SweepRow};

pub use disagreements::{DisagreementView, GridDrawing, ModelRef, disagreements, grid_drawing};

/// Diagnoses a stored job from its row, epochs and per-tensor gradient norms.
pub fn findings_for(
    row: &JobRow,
    epochs: &[EpochRow],
    layers: &[LayerGradRow],
) -> Result<Vec<Finding>> {
    let spec: JobSpec =
        serde_json::from_str(&row.spec).map_err(|err| Error::internal("reading a spec", err))?;
    let classes = row
        .preprocessing
        .as_deref()
        .and_then(|p| serde_json::from_str::<engine::Preprocessing>(p).ok())
        .map_or(2, |p| p.labels.len());
    Ok(analysis::diagnose(&RunFacts {
        status: row.status.as_str(),
        failure: row.failure.as_deref(),
        epochs,
        classes,
        lr: spec.training.optimizer.lr(),
        layers,
    }))
}

/// Judges a sweep's trials on `metric` (the sweep's own by default).
pub async fn sweep_summary(
    jobs: &Jobs,
    store: &Store,
    row: &SweepRow,
    spec: &SweepSpec,
    metric: Option<RankMetric>,
) -> Result<SweepSummary> {
    let metric = metric.unwrap_or(spec.metric);
    let goal = if metric == spec.metric {
        spec.goal()
    } else {
        metric.natural_goal()
    };
    let mut trials = Vec::new();
    for trial in store.list_trials(row.id).await? {
        let job = jobs.get(trial.job_id).await?;
        let epochs = store.list_epochs(job.id).await?;
        let best = analysis::best_epoch(&epochs, metric, goal);
        trials.push(TrialResult {
            index: trial.trial_index,
            params: serde_json::from_str(&trial.params)
                .map_err(|err| Error::internal("reading trial params", err))?,
            repeat: trial.repeat,
            job_id: job.id,
            status: job.status.to_string(),
            best_epoch: best.map(|e| e.epoch),
            best_value: best.and_then(|e| analysis::metric_value(e, metric)),
            epochs_done: job.epochs_done,
            failure: job.failure,
            pruned: job.pruned,
            stop_reason: job.stop_reason,
        });
    }
    let axes: Vec<String> = spec.axes.keys().cloned().collect();
    Ok(analysis::summarize_sweep(metric, goal, &axes, trials))
}

/// Ranks jobs by the best epoch of `metric`, each judged and diagnosed; best first.
pub async fn comparison(
    jobs: &Jobs,
    store: &Store,
    ids: &[JobId],
    metric: RankMetric,
    goal: Goal,
    max_points: usize,
) -> Result<Comparison> {
    let mut summaries = Vec::with_capacity(ids.len());
    for &id in ids {
        let row = jobs.get(id).await?;
        let epochs = store.list_epochs(id).await?;
        let mut summary = analysis::compare_job(
            id,
            &row.name,
            row.status.as_str(),
            &epochs,
            metric,
            goal,
            max_points,
        );
        let layers = store.list_layer_grads(id, None).await?;
        summary.findings = findings_for(&row, &epochs, &layers)?;
        summaries.push(summary);
    }
    summaries.sort_by(|a, b| match (a.best_value, b.best_value) {
        (Some(x), Some(y)) if analysis::better(x, y, goal) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) if analysis::better(y, x, goal) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    });
    for (i, job) in summaries.iter_mut().enumerate() {
        job.rank = job.best_value.map(|_| i + 1);
    }
    Ok(Comparison {
        metric,
        goal,
        jobs: summaries,
    })
}
