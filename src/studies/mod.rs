//! Studies: a whole training question (or all of them) answered on a data set, with its
//! report. A study is planned into parts (`domain::plan_study`), each an ordinary sweep of
//! ordinary jobs, so it is queued, trained, cancelled and resumed like any other work and
//! survives restarts. What a study finds is computed from the stored runs whenever it is
//! asked for (`findings`, `report`), so every number in it is a stored one.

mod document;
mod findings;
mod gather;
mod report;

use std::collections::BTreeMap;

use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use crate::catalog::{Catalog, DatasetSummary};
use crate::domain::{
    Caller, DataFacts, JobStatus, PartRole, StudyId, StudyKind, StudyPart, StudyRequest, SweepId,
    plan_study,
};
use crate::error::{Error, Result};
use crate::jobs::{JobEvent, Jobs};
use crate::predict::Predictor;
use crate::store::{NewStudy, OwnedKind, Store, StudyRow};

pub use findings::QuestionFindings;
pub use report::ReportFormat;

/// Handle to the studies; cheap to clone.
#[derive(Clone)]
pub struct Studies {
    store: Store,
    jobs: Jobs,
    catalog: Catalog,
    predictor: Predictor,
}

/// A part of a study as its view shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PartView {
    /// `learning_rate`, `transfer.source`, ...
    pub part: String,
    /// The question it serves.
    pub question: StudyKind,
    /// Its sweep, once created.
    pub sweep_id: Option<SweepId>,
    /// Trials planned.
    pub trials: usize,
    /// Its trials' jobs by status; empty before the sweep exists.
    pub status_counts: BTreeMap<String, i64>,
    /// Why it has not started, when it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
}

/// A study with its progress and, for each question whose runs have all ended, its findings.
#[derive(Clone, Debug, Serialize)]
pub struct StudyView {
    /// Its id.
    pub id: StudyId,
    /// Its name.
    pub name: String,
    /// The kind asked for.
    pub kind: String,
    /// The data set, as named.
    pub dataset: String,
    /// The budget.
    pub budget: String,
    /// running, completed, cancelled or failed.
    pub status: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// Trials ended (succeeded, failed or cancelled) and planned, over every part.
    pub progress: Progress,
    /// Its parts.
    pub parts: Vec<PartView>,
    /// The questions' answers, for each question whose runs have all ended.
    pub findings: Vec<QuestionFindings>,
    /// The request as accepted.
    pub request: serde_json::Value,
}

/// How far a study is.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Progress {
    /// Trials whose job ended.
    pub trials_done: usize,
    /// Trials planned.
    pub trials_total: usize,
}

fn plan_of(row: &StudyRow) -> Result<Vec<StudyPart>> {
    serde_json::from_str(&row.plan).map_err(|err| Error::internal("reading a study plan", err))
}

fn facts(name: &str, summary: &DatasetSummary) -> DataFacts {
    DataFacts {
        name: name.to_string(),
        rows: summary.rows,
        features: summary.features,
        image_shape: summary.image_shape,
        classes: summary.classes.len(),
    }
}

impl Studies {
    /// Studies over the service's store, queue, catalog and predictor.
    pub fn new(store: Store, jobs: Jobs, catalog: Catalog, predictor: Predictor) -> Self {
        Studies {
            store,
            jobs,
            catalog,
            predictor,
        }
    }

    async fn data_facts(&self, field: &str, name: &str) -> Result<DataFacts> {
        let row = self.catalog.find(name).await?.ok_or_else(|| {
            Error::invalid(
                field,
                format!("no data set named '{name}'; GET /v1/datasets lists them"),
            )
        })?;
        let summary: DatasetSummary = serde_json::from_str(&row.summary)
            .map_err(|err| Error::internal("reading a data-set summary", err))?;
        Ok(facts(name, &summary))
    }

    /// Plans a study, checks every part it can check now as a dry run, records it and queues
    /// the parts that need nothing first. `caller` owns it and its runs.
    pub async fn create(&self, request: StudyRequest, caller: &Caller) -> Result<StudyRow> {
        let facts = self.data_facts("dataset", &request.dataset).await?;
        let parts = plan_study(&request, &facts)?;
        if let Some(source) = &request.source_dataset {
            let source_facts = self.data_facts("source_dataset", source).await?;
            if source_facts.image_shape != facts.image_shape {
                return Err(Error::invalid(
                    "source_dataset",
                    format!(
                        "'{source}' holds images of shape {:?} and '{}' of {:?}; a source must hold images of the same height, width and channels",
                        source_facts.image_shape, request.dataset, facts.image_shape
                    ),
                ));
            }
        }
        for part in parts.iter().filter(|p| self.ready_at_creation(p)) {
            let mut dry = part.sweep.clone();
            dry.dry_run = true;
            self.jobs
                .create_sweep_for(dry, caller, None)
                .await
                .map_err(|err| part_error(part, err))?;
        }
        let id = StudyId::new();
        let name = request
            .name
            .clone()
            .unwrap_or_else(|| format!("{} study on {}", request.kind, request.dataset));
        let request_json = serde_json::to_string(&request)
            .map_err(|err| Error::internal("encoding a study", err))?;
        let plan_json =
            serde_json::to_string(&parts).map_err(|err| Error::internal("encoding a plan", err))?;
        let row = self
            .store
            .insert_study(&NewStudy {
                id,
                name: &name,
                kind: request.kind.as_str(),
                dataset: &request.dataset,
                budget: request.budget.as_str(),
                request: &request_json,
                plan: &plan_json,
                owner: caller.owner.as_deref(),
            })
            .await?;
        tracing::info!(study_id = %id, parts = parts.len(), "study created");
        for part in parts.iter().filter(|p| self.ready_at_creation(p)) {
            if let Err(err) = self
                .jobs
                .create_sweep_for(part.sweep.clone(), caller, Some((id, &part.key())))
                .await
            {
                // Nothing half-made stays behind: the parts made so far and the study go.
                let _ = self.delete(id).await;
                return Err(part_error(part, err));
            }
        }
        Ok(row)
    }

    fn ready_at_creation(&self, part: &StudyPart) -> bool {
        !(part.question == StudyKind::Transfer && part.role == PartRole::Main)
    }

    /// A study, or a 404.
    pub async fn get(&self, id: StudyId) -> Result<StudyRow> {
        self.store
            .get_study(id)
            .await?
            .ok_or_else(|| Error::not_found("study", id.to_string()))
    }

    /// Every study `owner` may see (all with `None`), newest first.
    pub async fn list(&self, owner: Option<&str>) -> Result<Vec<StudyRow>> {
        self.store.list_studies(owner).await
    }

    /// The sweep each created part became, by part key.
    async fn created_parts(&self, id: StudyId) -> Result<BTreeMap<String, SweepId>> {
        Ok(self.store.study_parts(id).await?.into_iter().collect())
    }

    /// A study's progress and parts, and with `findings` the answers of its finished
    /// questions (which read every run back: leave them out of lists).
    pub async fn view(&self, row: &StudyRow, findings: bool) -> Result<StudyView> {
        let plan = plan_of(row)?;
        let created = self.created_parts(row.id).await?;
        let mut parts = Vec::new();
        let mut progress = Progress::default();
        let mut open = false;
        for part in &plan {
            let key = part.key();
            let trials = part.sweep.expand().map(|t| t.len()).unwrap_or(0);
            progress.trials_total += trials;
            let sweep_id = created.get(&key).copied();
            let status_counts: BTreeMap<String, i64> = match sweep_id {
                Some(sweep) => self
                    .store
                    .sweep_status_counts(sweep)
                    .await?
                    .into_iter()
                    .collect(),
                None => BTreeMap::new(),
            };
            let ended: i64 = status_counts
                .iter()
                .filter(|(status, _)| {
                    status
                        .parse::<JobStatus>()
                        .is_ok_and(JobStatus::is_terminal)
                })
                .map(|(_, n)| n)
                .sum();
            progress.trials_done += ended as usize;
            let waiting_for = match sweep_id {
                Some(_) => None,
                None => Some(self.waiting_reason(part, &created).await?),
            };
            open |= sweep_id.is_none() || (ended as usize) < trials;
            parts.push(PartView {
                part: key,
                question: part.question,
                sweep_id,
                trials,
                status_counts,
                waiting_for,
            });
        }
        let status = if row.failure.is_some() {
            "failed"
        } else if row.cancelled {
            "cancelled"
        } else if open {
            "running"
        } else {
            "completed"
        };
        let mut answers = Vec::new();
        for question in gather::questions(&plan).into_iter().filter(|_| findings) {
            let done = parts
                .iter()
                .filter(|p| p.question == question)
                .all(|p| p.sweep_id.is_some() && progress_of(p) >= p.trials);
            if done
                && let Some(evidence) =
                    gather::question(self, row, &plan, &created, question).await?
            {
                answers.push(findings::answer(&evidence));
            }
        }
        Ok(StudyView {
            id: row.id,
            name: row.name.clone(),
            kind: row.kind.clone(),
            dataset: row.dataset.clone(),
            budget: row.budget.clone(),
            status,
            failure: row.failure.clone(),
            created_at: row.created_at.clone(),
            progress,
            parts,
            findings: answers,
            request: serde_json::from_str(&row.request)
                .map_err(|err| Error::internal("reading a study request", err))?,
        })
    }

    async fn waiting_reason(
        &self,
        part: &StudyPart,
        created: &BTreeMap<String, SweepId>,
    ) -> Result<String> {
        let source_key = format!("{}.source", part.question.as_str());
        let Some(source) = created.get(&source_key) else {
            return Ok(format!("the part '{source_key}' has not been created"));
        };
        Ok(match self.source_job(*source).await? {
            Some((job, status)) => format!("its source model (job {job}) is {status}"),
            None => "its source model has no job".to_string(),
        })
    }

    async fn source_job(
        &self,
        sweep: SweepId,
    ) -> Result<Option<(crate::domain::JobId, JobStatus)>> {
        let Some(trial) = self.store.list_trials(sweep).await?.into_iter().next() else {
            return Ok(None);
        };
        let job = self.jobs.get(trial.job_id).await?;
        Ok(Some((job.id, job.status)))
    }

    /// Creates every planned part whose prerequisite is done, in every open study. Safe to
    /// run from any number of places at once: a part is created once.
    pub async fn advance(&self) -> Result<()> {
        for row in self.store.open_studies().await? {
            let plan = plan_of(&row)?;
            let created = self.created_parts(row.id).await?;
            for part in plan.iter().filter(|p| !created.contains_key(&p.key())) {
                let source_key = format!("{}.source", part.question.as_str());
                let Some(source_sweep) = created.get(&source_key) else {
                    continue;
                };
                let Some((job, JobStatus::Succeeded)) = self.source_job(*source_sweep).await?
                else {
                    continue;
                };
                let sweep = crate::domain::with_source(part.sweep.clone(), &job.to_string());
                let owner = self
                    .store
                    .ownership(OwnedKind::Study, &row.id.to_string())
                    .await?
                    .and_then(|o| o.owner);
                let on_behalf = Caller::acting_for(owner);
                match self
                    .jobs
                    .create_sweep_for(sweep, &on_behalf, Some((row.id, &part.key())))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(study_id = %row.id, part = %part.key(), "study part queued")
                    }
                    Err(Error::Conflict { .. }) => {}
                    Err(Error::Unavailable { .. }) => {}
                    Err(err) => {
                        let reason = format!("creating its part '{}': {err}", part.key());
                        tracing::warn!(study_id = %row.id, %reason, "study failed");
                        self.store.fail_study(row.id, &reason).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates parts as their prerequisites finish: once at start (parts a crash left
    /// waiting), then whenever a job ends.
    pub async fn run_advancer(self) {
        let mut events = self.jobs.subscribe();
        if let Err(err) = self.advance().await {
            tracing::warn!(error = %err, "advancing studies");
        }
        loop {
            match events.recv().await {
                Ok(JobEvent::Status { status, .. }) if status == JobStatus::Succeeded => {}
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
            if let Err(err) = self.advance().await {
                tracing::warn!(error = %err, "advancing studies");
            }
        }
    }

    /// Cancels a study: no further part is created and its queued and running trials stop.
    /// Returns how many trials were cancelled.
    pub async fn cancel(&self, id: StudyId) -> Result<usize> {
        self.get(id).await?;
        self.store.cancel_study(id).await?;
        let mut cancelled = 0;
        for sweep in self.created_parts(id).await?.into_values() {
            match self.jobs.cancel_sweep(sweep).await {
                Ok(n) => cancelled += n,
                Err(Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(cancelled)
    }

    /// Resumes a cancelled or failed study: its failed and cancelled trials are queued again
    /// (nothing that succeeded runs twice) and waiting parts are created as their sources end.
    pub async fn resume(&self, id: StudyId) -> Result<Vec<(String, Vec<i64>)>> {
        self.get(id).await?;
        self.store.reopen_study(id).await?;
        let mut requeued = Vec::new();
        for (part, sweep) in self.created_parts(id).await? {
            match self.jobs.resume_sweep(sweep).await {
                Ok(trials) => requeued.push((part, trials)),
                Err(Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        self.advance().await?;
        Ok(requeued)
    }

    /// Deletes a study: its trials are cancelled, then its sweeps with their jobs, then it.
    pub async fn delete(&self, id: StudyId) -> Result<()> {
        self.get(id).await?;
        self.store.cancel_study(id).await?;
        for sweep in self.created_parts(id).await?.into_values() {
            match self.jobs.delete_sweep(sweep).await {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        self.store.delete_study_row(id).await
    }

    /// The study's report in `format`: (content type, bytes).
    pub async fn report(
        &self,
        row: &StudyRow,
        format: ReportFormat,
    ) -> Result<(&'static str, Vec<u8>)> {
        report::render(self, row, format).await
    }
}

fn progress_of(part: &PartView) -> usize {
    part.status_counts
        .iter()
        .filter(|(status, _)| {
            status
                .parse::<JobStatus>()
                .is_ok_and(JobStatus::is_terminal)
        })
        .map(|(_, n)| *n as usize)
        .sum()
}

/// A part's sweep error, named on the request's fields: the data set, or the budget that
/// sized the experiment.
fn part_error(part: &StudyPart, err: Error) -> Error {
    match err {
        Error::Invalid { field, message } if field.ends_with("dataset") => {
            let field = if part.role == PartRole::Source {
                "source_dataset"
            } else {
                "dataset"
            };
            Error::invalid(field, message)
        }
        Error::Invalid { field, message } => Error::invalid(
            "budget",
            format!(
                "the '{}' experiment cannot run on this data set at this budget ({field}: {message})",
                part.key()
            ),
        ),
        other => other,
    }
}
