//! Learning-rate range tests: asked for on their own (`POST /v1/lr-finder`), or run by a
//! worker before the first epoch of a job submitted with `"lr": "auto"`, whose spec then
//! records the rate chosen.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor;

use super::Jobs;
use super::worker::within_budget;
use crate::domain::{Caller, JobSpec, LrFindId, LrFindRequest};
use crate::error::{Error, Result};
use crate::store::{Claim, LrFindRow, NewLrFind};
use engine::{
    InterruptReason, Interrupter, LrCurve, LrFindSettings, PreparedData, Start, TrainError,
    find_lr, prepare_within,
};

/// A transfer job's backbone tensors and the spec field they came from.
pub(super) type Backbone = Option<(HashMap<String, Tensor>, &'static str)>;

/// The highest rate a job may be given (the spec's own limit).
const MAX_JOB_LR: f64 = 10.0;

impl Jobs {
    /// Starts a range test of `request`'s spec as `caller`'s: the spec is checked as a
    /// submission is (data set, transfer source, memory), the test is recorded as `running`,
    /// and it runs in the background within one job's cores, at most as many at once as there
    /// are worker slots. The returned handle ends when the test's end is recorded.
    pub async fn start_lr_find(
        &self,
        request: LrFindRequest,
        caller: &Caller,
    ) -> Result<(LrFindId, tokio::task::JoinHandle<()>)> {
        self.refuse_when_stopping()?;
        let LrFindRequest { spec, settings } = request;
        let job = self.new_job(spec, None, caller).await.map_err(in_spec)?;
        let spec: JobSpec = serde_json::from_str(&job.spec)
            .map_err(|err| Error::internal("reading a spec", err))?;
        let id = LrFindId::new();
        self.inner
            .store
            .insert_lr_find(&NewLrFind {
                id,
                name: &job.name,
                dataset: &spec.dataset,
                spec: &job.spec,
                settings: &encode(&settings)?,
                curve: None,
                seconds: None,
                owner: caller.owner.as_deref(),
            })
            .await?;
        let jobs = self.clone();
        let dataset = job.dataset_id;
        let done = tokio::spawn(async move {
            let started = Instant::now();
            let outcome = jobs.run_lr_find(&spec, dataset, &settings).await;
            let seconds = started.elapsed().as_secs_f64();
            let recorded = match &outcome {
                Ok(curve) => {
                    jobs.inner
                        .store
                        .finish_lr_find(id, Ok(curve), seconds)
                        .await
                }
                Err(err) => {
                    tracing::warn!(lr_find_id = %id, error = %err, "learning-rate test failed");
                    let reason = err.to_string();
                    jobs.inner
                        .store
                        .finish_lr_find(id, Err(&reason), seconds)
                        .await
                }
            };
            if let Err(err) = recorded {
                tracing::error!(lr_find_id = %id, error = %err, "recording a learning-rate test failed");
            }
        });
        Ok((id, done))
    }

    /// Prepares the data and runs one test; the curve as JSON.
    async fn run_lr_find(
        &self,
        spec: &JobSpec,
        dataset: crate::domain::DatasetId,
        settings: &LrFindSettings,
    ) -> Result<String> {
        let _permit = self
            .inner
            .range_tests
            .acquire()
            .await
            .map_err(|err| Error::internal("waiting for a range-test slot", err))?;
        let table = self.inner.catalog.load(dataset).await?;
        let data = Arc::new(self.prepare(spec, table).await.map_err(in_spec)?);
        let backbone = self.backbone_for(spec).await.map_err(in_spec)?;
        encode(&self.range_test(spec, data, backbone, settings).await?)
    }

    /// One range test, or a 404.
    pub async fn lr_find(&self, id: LrFindId) -> Result<LrFindRow> {
        self.inner
            .store
            .get_lr_find(id)
            .await?
            .ok_or_else(|| Error::not_found("learning-rate test", id.to_string()))
    }

    /// Before the first epoch of a claimed `"lr": "auto"` job: runs the range test with the
    /// default settings and records the suggested rate in the job's spec. Returns the spec to
    /// train, or `None` when the claim was lost.
    pub(super) async fn choose_lr(
        &self,
        claim: &Claim,
        mut spec: JobSpec,
        data: Arc<PreparedData>,
        backbone: Backbone,
    ) -> Result<Option<JobSpec>> {
        let settings = LrFindSettings::default();
        let started = Instant::now();
        tracing::info!("choosing the learning rate with a range test");
        let curve = self.range_test(&spec, data, backbone, &settings).await?;
        let chosen = curve.suggested_lr.min(MAX_JOB_LR);
        spec.training.optimizer.set_lr(chosen);
        // A schedule's own bounds (cosine's `min_lr`) are checked against the chosen rate.
        spec.validate().map_err(|err| {
            Error::invalid(
                "training.optimizer.lr",
                format!("the range test chose {chosen}, which the rest of the spec does not allow: {err}"),
            )
        })?;
        let spec_json = encode(&spec)?;
        let (settings_json, curve_json) = (encode(&settings)?, encode(&curve)?);
        let job = &claim.job;
        let recorded = self
            .inner
            .store
            .record_lr_choice(
                job.id,
                claim.lease_epoch,
                &NewLrFind {
                    id: LrFindId::new(),
                    name: &job.name,
                    dataset: &spec.dataset,
                    spec: &spec_json,
                    settings: &settings_json,
                    curve: Some(&curve_json),
                    seconds: Some(started.elapsed().as_secs_f64()),
                    owner: None,
                },
                &spec_json,
            )
            .await?;
        tracing::info!(lr = chosen, rule = %curve.rule, "learning rate chosen");
        Ok(recorded.then_some(spec))
    }

    async fn prepare(&self, spec: &JobSpec, table: Arc<data::Table>) -> Result<PreparedData> {
        let (spec, limit) = (spec.clone(), self.inner.config.max_job_memory);
        let device = self.inner.config.device.clone();
        tokio::task::spawn_blocking(move || prepare_within(&table, &spec, &device, limit))
            .await
            .map_err(|err| Error::internal("preparing data", err))?
            .map_err(Error::from)
    }

    /// Runs the test on a thread of its own within one job's cores.
    async fn range_test(
        &self,
        spec: &JobSpec,
        data: Arc<PreparedData>,
        backbone: Backbone,
        settings: &LrFindSettings,
    ) -> Result<LrCurve> {
        let (spec, settings) = (spec.clone(), settings.clone());
        let device = self.inner.config.device.clone();
        let threads = self.inner.config.job_threads;
        let stopping = self.inner.stopping.subscribe();
        let interrupter = Interrupter::new();
        let watcher = interrupter.clone();
        let watch = tokio::spawn(async move {
            let mut stopping = stopping;
            if stopping.wait_for(|stop| *stop).await.is_ok() {
                watcher.interrupt(InterruptReason::Shutdown);
            }
        });
        let result = tokio::task::spawn_blocking(move || {
            within_budget(threads, || {
                let start = match &backbone {
                    Some((tensors, field)) => Start::Backbone(tensors, field),
                    None => Start::Fresh,
                };
                find_lr(&spec, &data, start, &device, &interrupter, &settings)
            })
        })
        .await
        .map_err(|err| Error::internal("running a range test", err));
        watch.abort();
        match result? {
            Ok(curve) => Ok(curve),
            Err(TrainError::Interrupted(_)) => Err(Error::Unavailable {
                message: "the service is shutting down".into(),
            }),
            Err(TrainError::Failed(err)) => Err(err.into()),
            Err(err @ TrainError::Diverged { .. }) => Err(Error::Internal(err.to_string())),
        }
    }
}

/// A spec field's error as the request names it: under `spec`.
fn in_spec(err: Error) -> Error {
    match err {
        Error::Invalid { field, message } => Error::Invalid {
            field: format!("spec.{field}"),
            message,
        },
        other => other,
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|err| Error::internal("encoding JSON", err))
}
