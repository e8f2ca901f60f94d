//! Response bodies, built from store rows.

use serde::Serialize;

use crate::catalog::DatasetSummary;
use crate::domain::{DatasetId, JobId, JobStatus};
use crate::error::{Error, Result};
use crate::jobs::LiveProgress;
use crate::store::{DatasetRow, EpochRow, JobRow, LrFindRow};

/// A job as the API shows it.
#[derive(Serialize)]
pub struct JobView {
    pub id: JobId,
    pub name: String,
    pub status: JobStatus,
    pub dataset_id: DatasetId,
    pub spec: serde_json::Value,
    pub priority: i64,
    pub attempt: i64,
    pub cancel_requested: bool,
    pub queue_position: Option<i64>,
    pub progress: ProgressView,
    pub latest: Option<EpochRow>,
    pub best: Option<EpochRow>,
    pub stopped_early: Option<EarlyStopView>,
    /// Its sweep's pruning rule stopped it (the reason is in `stopped_early`).
    pub pruned: bool,
    /// The age retention keeps it (`PUT /v1/jobs/{id}/pin`).
    pub pinned: bool,
    pub failure: Option<String>,
    /// The image preprocessing fitted when the job started (mean and std per channel, shapes).
    pub image_preprocessing: Option<serde_json::Value>,
    /// For a job submitted with `"lr": "auto"`: the rate its range test chose, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_choice: Option<LrChoiceView>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub updated_at: String,
}

/// Where and why early stopping ended a job.
#[derive(Serialize)]
pub struct EarlyStopView {
    /// The last epoch trained.
    pub epoch: i64,
    /// Why it stopped.
    pub reason: String,
}

/// How far a job has come.
#[derive(Serialize)]
pub struct ProgressView {
    /// Epochs asked for.
    pub epochs_total: i64,
    /// Epochs committed (metrics and checkpoint recorded).
    pub epochs_done: i64,
    /// Epoch in progress, while running.
    pub epoch: Option<u32>,
    /// Steps done in the epoch in progress.
    pub step_in_epoch: Option<u64>,
    /// Steps per epoch.
    pub steps_per_epoch: Option<u64>,
    /// Steps since the job started.
    pub global_step: Option<u64>,
    /// Loss of the latest step.
    pub last_step_loss: Option<f32>,
    /// Fraction of all steps done, 0 to 1.
    pub fraction: f64,
}

/// Parts of a job view that need more than its row.
pub struct JobExtras {
    pub queue_position: Option<i64>,
    pub live: Option<LiveProgress>,
    pub latest: Option<EpochRow>,
    pub best: Option<EpochRow>,
    /// The range test that chose an `"lr": "auto"` job's rate, once it ran.
    pub lr_find: Option<LrFindRow>,
}

/// How an `"lr": "auto"` job's rate is chosen: a range test before its first epoch.
#[derive(Serialize)]
pub struct LrChoiceView {
    /// Whether the test has run and the spec holds the rate it chose.
    pub chosen: bool,
    /// The rate chosen.
    pub lr: Option<f64>,
    /// Why that rate, in words.
    pub rule: Option<String>,
    /// The test (`GET /v1/lr-finder/{id}`).
    pub lr_find_id: Option<String>,
    /// Its plot.
    pub plot: Option<String>,
}

impl LrChoiceView {
    fn of(row: &JobRow, test: Option<&LrFindRow>) -> Option<LrChoiceView> {
        if !row.lr_auto {
            return None;
        }
        let curve = test
            .and_then(|t| t.curve.as_deref())
            .and_then(|c| serde_json::from_str::<engine::LrCurve>(c).ok());
        let spec: Option<engine::spec::JobSpec> = serde_json::from_str(&row.spec).ok();
        Some(LrChoiceView {
            chosen: row.lr_find_id.is_some(),
            lr: row
                .lr_find_id
                .as_ref()
                .and(spec.map(|s| s.training.optimizer.lr())),
            rule: curve.map(|c| c.rule),
            lr_find_id: row.lr_find_id.clone(),
            plot: row
                .lr_find_id
                .as_ref()
                .map(|id| format!("/v1/lr-finder/{id}/plot.svg")),
        })
    }
}

/// The fitted image pipeline of a job's stored preprocessing, with the network's input shape.
fn image_preprocessing(stored: Option<&str>) -> Option<serde_json::Value> {
    let preprocessing: engine::Preprocessing = serde_json::from_str(stored?).ok()?;
    let pipeline = preprocessing.image?;
    let mut view = serde_json::to_value(&pipeline).ok()?;
    view["output_shape"] = serde_json::json!(pipeline.output_shape());
    Some(view)
}

impl JobView {
    /// Builds the view of a job.
    pub fn new(row: JobRow, extras: JobExtras) -> Result<Self> {
        let mut spec: serde_json::Value = serde_json::from_str(&row.spec)
            .map_err(|err| Error::internal("reading a spec", err))?;
        let lr_choice = LrChoiceView::of(&row, extras.lr_find.as_ref());
        // Until the test has run, the stored rate is only the optimizer's default.
        if row.lr_auto
            && row.lr_find_id.is_none()
            && let Some(optimizer) = spec.pointer_mut("/training/optimizer")
        {
            optimizer["lr"] = serde_json::json!("auto");
        }
        let live = extras.live.filter(|_| row.status == JobStatus::Running);
        let total = row.epochs_total.max(1) as f64;
        let fraction = match (row.status, live) {
            (JobStatus::Succeeded, _) => 1.0,
            (_, Some(p)) if p.steps_per_epoch > 0 && p.epoch > 0 => {
                (f64::from(p.epoch - 1) + p.step_in_epoch as f64 / p.steps_per_epoch as f64) / total
            }
            _ => row.epochs_done as f64 / total,
        };
        Ok(JobView {
            id: row.id,
            name: row.name,
            status: row.status,
            dataset_id: row.dataset_id,
            spec,
            priority: row.priority,
            attempt: row.attempt,
            cancel_requested: row.cancel_requested,
            queue_position: extras.queue_position,
            progress: ProgressView {
                epochs_total: row.epochs_total,
                epochs_done: row.epochs_done,
                epoch: live.map(|p| p.epoch),
                step_in_epoch: live.map(|p| p.step_in_epoch),
                steps_per_epoch: live.map(|p| p.steps_per_epoch),
                global_step: live.map(|p| p.global_step),
                last_step_loss: live.map(|p| p.last_loss).filter(|v| v.is_finite()),
                fraction: fraction.clamp(0.0, 1.0),
            },
            latest: extras.latest,
            best: extras.best,
            stopped_early: row.stopped_early_epoch.map(|epoch| EarlyStopView {
                epoch,
                reason: row.stop_reason.clone().unwrap_or_default(),
            }),
            pruned: row.pruned,
            pinned: row.pinned,
            failure: row.failure,
            image_preprocessing: image_preprocessing(row.preprocessing.as_deref()),
            lr_choice,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            updated_at: row.updated_at,
        })
    }
}

/// A data set as the API shows it.
#[derive(Serialize)]
pub struct DatasetView {
    pub id: DatasetId,
    pub name: String,
    pub source: String,
    /// Whether every token may see and train on it.
    pub public: bool,
    pub created_at: String,
    #[serde(flatten)]
    pub summary: DatasetSummary,
}

impl DatasetView {
    /// Builds the view of a data set.
    pub fn new(row: DatasetRow) -> Result<Self> {
        let summary = serde_json::from_str(&row.summary)
            .map_err(|err| Error::internal("reading a summary", err))?;
        Ok(DatasetView {
            id: row.id,
            name: row.name,
            source: row.source,
            public: row.public,
            created_at: row.created_at,
            summary,
        })
    }
}
