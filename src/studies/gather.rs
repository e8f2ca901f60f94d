//! A study's question read back from the store: the runs of its parts with their labels,
//! epochs, gradient norms and findings, the sweep summary and the comparison of its runs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Studies;
use crate::analysis::{Comparison, Finding, SweepSummary};
use crate::catalog::DatasetSummary;
use crate::domain::{
    Goal, JobSpec, PartRole, RankMetric, StudyKind, StudyPart, SweepId, SweepSpec,
};
use crate::error::{Error, Result};
use crate::evidence;
use crate::store::{EpochRow, JobRow, LayerGradRow, StudyRow, SweepRow};

/// Most curve points per run in a report's plots.
const MAX_POINTS: usize = 400;

/// One trial of a question: what varied, and what happened.
pub struct Run {
    /// What sets it apart from the other runs of its question ("lr=0.001").
    pub label: String,
    /// Its axis values.
    pub params: BTreeMap<String, Value>,
    /// Its job.
    pub job: JobRow,
    /// Its spec.
    pub spec: JobSpec,
    /// Its epochs.
    pub epochs: Vec<EpochRow>,
    /// Its per-tensor gradient norms.
    pub layers: Vec<LayerGradRow>,
    /// What the diagnosis finds.
    pub findings: Vec<Finding>,
}

impl Run {
    /// The epoch of best validation accuracy.
    pub fn best(&self) -> Option<&EpochRow> {
        crate::analysis::best_epoch(&self.epochs, RankMetric::ValAcc, Goal::Max)
    }

    /// Whether a finding of `kind` is among its findings.
    pub fn has(&self, kind: &str) -> bool {
        self.findings.iter().any(|f| f.kind == kind)
    }

    /// Mean seconds per epoch.
    pub fn seconds_per_epoch(&self) -> Option<f64> {
        (!self.epochs.is_empty()).then(|| {
            self.epochs.iter().map(|e| e.epoch_seconds).sum::<f64>() / self.epochs.len() as f64
        })
    }
}

/// Rows of each split.
#[derive(Clone, Copy, Debug)]
pub struct SplitCounts {
    /// Training rows.
    pub train: usize,
    /// Validation rows.
    pub val: usize,
    /// Test rows.
    pub test: usize,
}

/// Everything a question's answer and report section are made of.
pub struct QuestionEvidence {
    /// The question.
    pub question: StudyKind,
    /// Its main part as planned.
    pub part: StudyPart,
    /// The main part's sweep.
    pub sweep: SweepRow,
    /// Its spec.
    pub spec: SweepSpec,
    /// Its runs, in trial order.
    pub runs: Vec<Run>,
    /// The source model a transfer question starts from.
    pub source: Option<Run>,
    /// The sweep judged on validation accuracy.
    pub summary: SweepSummary,
    /// The runs ranked by best validation accuracy, labelled as [`Run::label`].
    pub comparison: Comparison,
    /// How the data set was split (the same for every run of the question).
    pub split: Option<SplitCounts>,
    /// The data set's name as the study names it.
    pub dataset: String,
    /// Number of classes.
    pub classes: usize,
}

/// The questions of a plan, in order, once each.
pub fn questions(plan: &[StudyPart]) -> Vec<StudyKind> {
    let mut seen = Vec::new();
    for part in plan {
        if !seen.contains(&part.question) {
            seen.push(part.question);
        }
    }
    seen
}

/// Reads a question back; `None` when its main part has no sweep (not created yet, or
/// deleted).
pub async fn question(
    studies: &Studies,
    study: &StudyRow,
    plan: &[StudyPart],
    created: &BTreeMap<String, SweepId>,
    question: StudyKind,
) -> Result<Option<QuestionEvidence>> {
    let Some(part) = plan
        .iter()
        .find(|p| p.question == question && p.role == PartRole::Main)
    else {
        return Ok(None);
    };
    let Some(sweep_id) = created.get(&part.key()) else {
        return Ok(None);
    };
    let Some(sweep) = studies.store.get_sweep(*sweep_id).await? else {
        return Ok(None);
    };
    let spec: SweepSpec =
        serde_json::from_str(&sweep.spec).map_err(|err| Error::internal("reading a sweep", err))?;
    let runs = runs_of(studies, &sweep, &spec, part).await?;
    let source = match plan
        .iter()
        .find(|p| p.question == question && p.role == PartRole::Source)
        .and_then(|p| created.get(&p.key()))
    {
        Some(id) => match studies.store.get_sweep(*id).await? {
            Some(row) => {
                let source_spec: SweepSpec = serde_json::from_str(&row.spec)
                    .map_err(|err| Error::internal("reading a sweep", err))?;
                runs_of(studies, &row, &source_spec, part)
                    .await?
                    .into_iter()
                    .next()
                    .map(|mut run| {
                        run.label = "source".into();
                        run
                    })
            }
            None => None,
        },
        None => None,
    };
    let summary = evidence::sweep_summary(
        &studies.jobs,
        &studies.store,
        &sweep,
        &spec,
        Some(RankMetric::ValAcc),
    )
    .await?;
    let ids: Vec<_> = runs.iter().map(|r| r.job.id).collect();
    let mut comparison = evidence::comparison(
        &studies.jobs,
        &studies.store,
        &ids,
        RankMetric::ValAcc,
        Goal::Max,
        MAX_POINTS,
    )
    .await?;
    for summary in &mut comparison.jobs {
        if let Some(run) = runs.iter().find(|r| r.job.id == summary.job_id) {
            summary.name.clone_from(&run.label);
        }
    }
    let data = match runs.first() {
        Some(run) => {
            studies
                .catalog
                .find(&run.job.dataset_id.to_string())
                .await?
        }
        None => None,
    };
    let data_summary: Option<DatasetSummary> = data
        .map(|row| serde_json::from_str(&row.summary))
        .transpose()
        .map_err(|err| Error::internal("reading a data-set summary", err))?;
    let split = match (runs.first(), &data_summary) {
        (Some(run), Some(summary)) => Some(split_counts(summary, &run.spec)),
        _ => None,
    };
    Ok(Some(QuestionEvidence {
        question,
        part: part.clone(),
        sweep,
        spec,
        runs,
        source,
        summary,
        comparison,
        split,
        dataset: study.dataset.clone(),
        classes: data_summary.as_ref().map_or(2, |s| s.classes.len()),
    }))
}

async fn runs_of(
    studies: &Studies,
    sweep: &SweepRow,
    spec: &SweepSpec,
    part: &StudyPart,
) -> Result<Vec<Run>> {
    let mut runs = Vec::new();
    for trial in studies.store.list_trials(sweep.id).await? {
        let job = studies.jobs.get(trial.job_id).await?;
        let params: BTreeMap<String, Value> = serde_json::from_str(&trial.params)
            .map_err(|err| Error::internal("reading trial params", err))?;
        let job_spec: JobSpec = serde_json::from_str(&job.spec)
            .map_err(|err| Error::internal("reading a spec", err))?;
        let epochs = studies.store.list_epochs(job.id).await?;
        let layers = studies.store.list_layer_grads(job.id, None).await?;
        let findings = evidence::findings_for(&job, &epochs, &layers)?;
        runs.push(Run {
            label: label(spec, part, &params, trial.repeat),
            params,
            job,
            spec: job_spec,
            epochs,
            layers,
            findings,
        });
    }
    Ok(runs)
}

/// "lr=0.001, batch_norm=true (seed +1)": each axis's last path segment and its value.
pub fn label(
    spec: &SweepSpec,
    part: &StudyPart,
    params: &BTreeMap<String, Value>,
    repeat: i64,
) -> String {
    let mut pieces = Vec::new();
    for (path, axis) in &spec.axes {
        let Some(value) = params.get(path) else {
            continue;
        };
        let named = part.value_labels.get(path).and_then(|labels| match axis {
            crate::domain::Axis::Values(values) => values
                .iter()
                .position(|v| v == value)
                .and_then(|i| labels.get(i).cloned()),
            crate::domain::Axis::Distribution(_) => None,
        });
        pieces.push(named.unwrap_or_else(|| {
            format!(
                "{}={}",
                path.rsplit('.').next().unwrap_or(path),
                value_text(value)
            )
        }));
    }
    let mut text = pieces.join(", ");
    if spec.repeats > 1 {
        text.push_str(&format!(" (seed +{repeat})"));
    }
    text
}

/// A value as a label shows it: numbers compact (1e-5, 0.001), `none` for null.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(x) if n.is_f64() => number(x),
            _ => n.to_string(),
        },
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", value_text(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// A number as a person writes it: 1e-5, 0.003, 0.5, 1.
pub fn number(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:e}")
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{}", (x * 1e6).round() / 1e6)
    }
}

fn split_counts(summary: &DatasetSummary, spec: &JobSpec) -> SplitCounts {
    if let Some(fixed) = &summary.fixed_split {
        return SplitCounts {
            train: fixed.train,
            val: fixed.val,
            test: fixed.test,
        };
    }
    let (mut val, mut test) = (0, 0);
    for class in &summary.classes {
        let (v, t) =
            data::class_split(class.count, spec.data.val_fraction, spec.data.test_fraction);
        val += v;
        test += t;
    }
    SplitCounts {
        train: summary.rows.saturating_sub(val + test),
        val,
        test,
    }
}
