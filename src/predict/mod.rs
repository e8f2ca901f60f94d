//! Serving predictions from frozen copies of checkpoints: a cache of loaded models and the
//! decoding of request rows through each job's own preprocessing.

mod batcher;
mod cache;
mod images;
mod input;
mod model;
mod registry;
mod resolve;

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use cache::ModelCache;
use images::{ImageInput, decode_base64, image_rows};

pub use batcher::{BatchConfig, InferencePool, Rows};
pub use cache::Selector;
pub use input::InputSpec;
pub use model::{LoadedModel, ModelKey, OutputOptions, Prediction};
pub use registry::{RegisterRequest, check_name};

use crate::domain::{JobId, JobSpec};
use crate::error::{Error, Result};
use crate::store::{CheckpointRow, JobRow, Store};
use engine::Preprocessing;
use engine::checkpoint::{self, FileStamp};

/// Most rows one request may send.
pub const MAX_ROWS: usize = 10_000;

/// Which checkpoint of a job answers.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CheckpointChoice {
    /// `"best"` (highest validation accuracy) or `"latest"`.
    Named(String),
    /// A specific epoch.
    Epoch(i64),
}

/// A prediction request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictRequest {
    /// Rows of raw feature values, in the data set's column order (for image data sets: the
    /// image flattened `C x H x W`, values as the data set stores them).
    #[serde(default)]
    pub inputs: Vec<Vec<f64>>,
    /// For models trained on images: PNG or JPEG images in base64, decoded like uploads to
    /// the data set's channels, size (resized only when the job declares a resize) and pixel
    /// scale, then preprocessed like `inputs`.
    #[serde(default)]
    pub images: Vec<String>,
    /// Which checkpoint, when the model is a job id; the best by default.
    #[serde(default)]
    pub checkpoint: Option<CheckpointChoice>,
    /// Include each row's raw scores (`logits`, in label order).
    #[serde(default)]
    pub logits: bool,
    /// Include the `k` most probable labels of each row (`top_k`).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Encoded images from a multipart request's `image` parts (never read from JSON).
    #[serde(skip)]
    pub image_parts: Vec<Vec<u8>>,
}

/// The answer to a prediction request.
#[derive(Clone, Debug, Serialize)]
pub struct PredictResponse {
    /// The model that answered: the job id, or the registry name.
    pub model: String,
    /// The registry version that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// The job the weights were trained by, for a registry version made from a job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The epoch of the checkpoint used (absent for imported models).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_epoch: Option<i64>,
    /// One prediction per input row.
    pub predictions: Vec<Prediction>,
}

/// A resolved model and what to call it in answers.
pub struct Resolved {
    /// The loaded model.
    pub model: Arc<LoadedModel>,
    /// The registry name, or the job id.
    pub name: String,
    /// The registry version.
    pub version: Option<i64>,
    /// The job it was trained by.
    pub job: Option<String>,
    /// The checkpoint's epoch.
    pub checkpoint_epoch: Option<i64>,
}

/// Handle to the prediction service; cheap to clone.
#[derive(Clone)]
pub struct Predictor {
    store: Store,
    data_dir: PathBuf,
    cache: Arc<ModelCache>,
    pool: InferencePool,
}

impl Predictor {
    /// A predictor reading weights under `data_dir`, keeping at most `cache_bytes` of loaded
    /// weights, predicting on `threads` inference threads.
    pub fn new(store: Store, data_dir: PathBuf, cache_bytes: u64, threads: usize) -> Self {
        Predictor {
            store,
            data_dir,
            cache: Arc::new(ModelCache::new(cache_bytes)),
            pool: InferencePool::start(threads),
        }
    }

    /// Models loaded in memory.
    pub fn cached_models(&self) -> usize {
        self.cache.len()
    }

    /// Inference threads.
    pub fn inference_threads(&self) -> usize {
        self.pool.threads()
    }

    /// Lets go of the loaded models of a deleted job.
    pub fn forget(&self, job: JobId) {
        self.cache.remove_job(job);
    }

    /// What `/v1/models/{model}/predict` names: a job id, `name` or `name@alias`.
    pub fn selector(model: &str, checkpoint: Option<&CheckpointChoice>) -> Result<Selector> {
        if let Ok(job) = model.parse::<JobId>() {
            let choice = match checkpoint {
                None => "best".to_string(),
                Some(CheckpointChoice::Named(name)) => name.clone(),
                Some(CheckpointChoice::Epoch(epoch)) => epoch.to_string(),
            };
            return Ok(Selector::Job(job, choice));
        }
        if checkpoint.is_some() {
            return Err(Error::invalid(
                "checkpoint",
                "checkpoint chooses among a job's checkpoints; a registry model is chosen by name@alias or /versions/N",
            ));
        }
        Ok(match model.split_once('@') {
            Some((name, alias)) => Selector::Alias(name.to_string(), alias.to_string()),
            None => Selector::Name(model.to_string()),
        })
    }

    /// The loaded model a selector names: from memory once warm (no database), else resolved
    /// and loaded.
    pub async fn resolve(
        &self,
        selector: &Selector,
        checkpoint: Option<&CheckpointChoice>,
    ) -> Result<Resolved> {
        if let Selector::Job(job, _) = selector {
            return self.resolve_job(selector, *job, checkpoint).await;
        }
        let (name, version) = self.resolve_version(selector).await?;
        let key = ModelKey::Version(name.clone(), version);
        let model = match self.cache.get(&key) {
            Some(model) => model,
            None => {
                let row = self.version_row(&name, version).await?;
                self.load_version(&row).await?
            }
        };
        Ok(Resolved {
            job: model.lineage.as_ref().map(|(job, _)| job.clone()),
            checkpoint_epoch: model.lineage.as_ref().map(|(_, epoch)| *epoch),
            model,
            name,
            version: Some(version),
        })
    }

    async fn resolve_job(
        &self,
        selector: &Selector,
        job_id: JobId,
        checkpoint: Option<&CheckpointChoice>,
    ) -> Result<Resolved> {
        let resolved = |model, epoch| Resolved {
            model,
            name: job_id.to_string(),
            version: None,
            job: None,
            checkpoint_epoch: Some(epoch),
        };
        if let Some(key @ ModelKey::Checkpoint(_, epoch)) = self.cache.resolved(selector)
            && let Some(model) = self.cache.get(&key)
            && model.unchanged_on_disk()
        {
            return Ok(resolved(model, epoch));
        }
        let job = self
            .store
            .get_job(job_id)
            .await?
            .ok_or_else(|| Error::not_found("model", job_id.to_string()))?;
        let (checkpoint, model) = self.choose_and_load(&job, checkpoint).await?;
        if job.status.is_terminal() {
            self.cache.remember(
                selector.clone(),
                ModelKey::Checkpoint(job_id, checkpoint.epoch),
            );
        }
        Ok(resolved(model, checkpoint.epoch))
    }

    /// Predicts labels for the request's rows with the model `model` names.
    pub async fn predict(&self, model: &str, request: PredictRequest) -> Result<PredictResponse> {
        let selector = Self::selector(model, request.checkpoint.as_ref())?;
        self.predict_with(&selector, request).await
    }

    /// Predicts labels for the request's rows with the model `selector` names.
    pub async fn predict_with(
        &self,
        selector: &Selector,
        request: PredictRequest,
    ) -> Result<PredictResponse> {
        let images = request_images(&request)?;
        if request.inputs.is_empty() && images.is_empty() {
            return Err(Error::invalid(
                "inputs",
                "send at least one row in 'inputs' (or, for image models, one image)",
            ));
        }
        if !request.inputs.is_empty() && !images.is_empty() {
            return Err(Error::invalid(
                "images",
                "send rows in 'inputs' or images, not both",
            ));
        }
        let count = request.inputs.len() + images.len();
        if count > MAX_ROWS {
            let field = if images.is_empty() {
                "inputs"
            } else {
                "images"
            };
            return Err(Error::invalid(
                field,
                format!("{count} rows; valid: at most {MAX_ROWS} per request"),
            ));
        }
        let resolved = self.resolve(selector, request.checkpoint.as_ref()).await?;
        let options = OutputOptions {
            logits: request.logits,
            top_k: request.top_k,
        };
        model::check_options(&options, resolved.model.classes())?;
        let rows = if images.is_empty() {
            Rows::Raw(request.inputs)
        } else {
            let model = Arc::clone(&resolved.model);
            Rows::Raw(
                tokio::task::spawn_blocking(move || image_rows(&images, model.preprocessing()))
                    .await
                    .map_err(|err| Error::internal("decoding images", err))??,
            )
        };
        let predictions = self.pool.predict(&resolved.model, rows, options).await?;
        Ok(PredictResponse {
            model: resolved.name,
            version: resolved.version,
            job: resolved.job,
            checkpoint_epoch: resolved.checkpoint_epoch,
            predictions,
        })
    }

    /// Predictions for rows already flattened (the Open Inference Protocol's tensors).
    pub async fn predict_rows(
        &self,
        model: &Arc<LoadedModel>,
        rows: Rows,
        options: OutputOptions,
    ) -> Result<Vec<Prediction>> {
        self.pool.predict(model, rows, options).await
    }

    /// The best checkpoint's class index and confidence for each raw row of a job's data set
    /// (rows as the data set stores them; the job's preprocessing is applied here).
    pub async fn classify_rows(
        &self,
        job: &JobRow,
        rows: Vec<Vec<f32>>,
    ) -> Result<(i64, Vec<(usize, f32)>)> {
        let (checkpoint, loaded) = self.choose_and_load(job, None).await?;
        let classified = tokio::task::spawn_blocking(move || -> Result<Vec<(usize, f32)>> {
            let width = loaded.preprocessing.input_width();
            let mut x = Vec::with_capacity(rows.len() * width);
            for row in &rows {
                loaded.preprocessing.transform_into(row, &mut x);
            }
            let probabilities = loaded.network.probabilities(x, rows.len(), width)?;
            Ok(probabilities
                .iter()
                .map(|p| {
                    p.iter()
                        .enumerate()
                        .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a })
                })
                .collect())
        })
        .await
        .map_err(|err| Error::internal("classifying rows", err))??;
        Ok((checkpoint.epoch, classified))
    }

    /// The chosen checkpoint, loaded. When it is corrupt and the caller did not pin its epoch,
    /// the newest intact checkpoint of the job answers instead; a pinned corrupt epoch, or a
    /// job with no intact checkpoint left, is a 409 naming the chosen epoch.
    async fn choose_and_load(
        &self,
        job: &JobRow,
        choice: Option<&CheckpointChoice>,
    ) -> Result<(CheckpointRow, Arc<LoadedModel>)> {
        let chosen = self.choose_checkpoint(job, choice).await?;
        let corrupt = match self.load(job, &chosen).await {
            Ok(model) => return Ok((chosen, model)),
            Err(err @ Error::CorruptCheckpoint { .. }) => err,
            Err(err) => return Err(err),
        };
        if matches!(choice, Some(CheckpointChoice::Epoch(_))) {
            return Err(corrupt);
        }
        let rows = self.store.list_checkpoints(job.id).await?;
        for row in rows.into_iter().rev().filter(|r| r.epoch != chosen.epoch) {
            match self.load(job, &row).await {
                Ok(model) => {
                    tracing::warn!(job = %job.id, corrupt_epoch = chosen.epoch, served_epoch = row.epoch,
                        "a corrupt checkpoint was passed over for the newest intact one");
                    return Ok((row, model));
                }
                Err(Error::CorruptCheckpoint { .. }) => continue,
                Err(err) => return Err(err),
            }
        }
        match corrupt {
            Error::CorruptCheckpoint { job, epoch, detail } => Err(Error::CorruptCheckpoint {
                job,
                epoch,
                detail: format!("{detail}; no other checkpoint of the job is intact"),
            }),
            other => Err(other),
        }
    }

    async fn choose_checkpoint(
        &self,
        job: &JobRow,
        choice: Option<&CheckpointChoice>,
    ) -> Result<CheckpointRow> {
        let none_yet = || {
            Error::conflict(format!(
                "job {} has no checkpoint yet; wait for its first epoch",
                job.id
            ))
        };
        match choice {
            None => self.best(job).await?.ok_or_else(none_yet),
            Some(CheckpointChoice::Named(name)) if name == "best" => self.best(job).await?.ok_or_else(none_yet),
            Some(CheckpointChoice::Named(name)) if name == "latest" => {
                self.store.latest_checkpoint(job.id).await?.ok_or_else(none_yet)
            }
            Some(CheckpointChoice::Named(name)) => Err(Error::invalid(
                "checkpoint",
                format!("'{name}' is not a checkpoint; valid: \"best\", \"latest\" or an epoch number"),
            )),
            Some(CheckpointChoice::Epoch(epoch)) => {
                self.store.get_checkpoint(job.id, *epoch).await?.ok_or_else(|| {
                    Error::invalid("checkpoint", format!("job {} keeps no checkpoint of epoch {epoch}; GET /v1/jobs/{}/checkpoints lists them", job.id, job.id))
                })
            }
        }
    }

    async fn best(&self, job: &JobRow) -> Result<Option<CheckpointRow>> {
        if let Some(epoch) = job.best_epoch
            && let Some(row) = self.store.get_checkpoint(job.id, epoch).await?
        {
            return Ok(Some(row));
        }
        self.store.latest_checkpoint(job.id).await
    }

    /// A checkpoint loaded for serving: from the cache when its file is the one loaded before
    /// (one `stat` per request tells), else read, verified against its SHA-256 and loaded.
    async fn load(&self, job: &JobRow, checkpoint: &CheckpointRow) -> Result<Arc<LoadedModel>> {
        let key = ModelKey::Checkpoint(job.id, checkpoint.epoch);
        let corrupt = |detail: String| Error::CorruptCheckpoint {
            job: job.id.to_string(),
            epoch: checkpoint.epoch,
            detail,
        };
        let path = self.data_dir.join(&checkpoint.path);
        match FileStamp::of(&path) {
            Ok(stamp) => {
                if let Some(model) = self.cache.get(&key)
                    && model.stamp.as_ref().is_some_and(|(_, s)| *s == stamp)
                {
                    return Ok(model);
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                self.cache.remove(&key);
                return Err(corrupt("its file is missing".into()));
            }
            Err(err) => return Err(Error::internal("looking at a checkpoint file", err)),
        }
        let spec: JobSpec = serde_json::from_str(&job.spec)
            .map_err(|err| Error::internal("reading a spec", err))?;
        let preprocessing: Preprocessing = serde_json::from_str(
            job.preprocessing
                .as_deref()
                .ok_or_else(|| Error::conflict(format!("job {} has not started", job.id)))?,
        )
        .map_err(|err| Error::internal("reading preprocessing", err))?;
        let sha256 = checkpoint.sha256.clone();
        let loaded = tokio::task::spawn_blocking(
            move || -> Result<std::result::Result<LoadedModel, String>> {
                let (bytes, stamp) = match checkpoint::integrity().read(&path, &sha256)? {
                    Ok(read) => read,
                    Err(why) => return Ok(Err(why)),
                };
                let saved = checkpoint::decode(&bytes, &Device::Cpu)?;
                drop(bytes);
                let model = LoadedModel::new(
                    &spec.model,
                    preprocessing,
                    &saved.model,
                    BatchConfig::default(),
                    Some((path, stamp)),
                )
                .map_err(|err| {
                    Error::Internal(format!("checkpoint does not fit its job: {err}"))
                })?;
                Ok(Ok(model))
            },
        )
        .await
        .map_err(|err| Error::internal("loading a model", err))??;
        let loaded = match loaded {
            Ok(loaded) => Arc::new(loaded),
            Err(why) => {
                self.cache.remove(&key);
                return Err(corrupt(why));
            }
        };
        self.cache.insert(key, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Whether each checkpoint's file is known to be corrupt (missing, of another length than
    /// written, or found corrupt since it last changed): one `stat` each, no hashing.
    pub async fn known_corrupt(&self, checkpoints: &[CheckpointRow]) -> Result<Vec<bool>> {
        let files: Vec<(PathBuf, u64)> = checkpoints
            .iter()
            .map(|c| (self.data_dir.join(&c.path), c.bytes.max(0) as u64))
            .collect();
        tokio::task::spawn_blocking(move || {
            files
                .iter()
                .map(|(path, bytes)| checkpoint::integrity().known_corrupt(path, *bytes))
                .collect()
        })
        .await
        .map_err(|err| Error::internal("checking checkpoint files", err))
    }
}

/// The request's images, base64 ones decoded; a 422 naming an item that is not base64.
fn request_images(request: &PredictRequest) -> Result<Vec<ImageInput>> {
    let mut images = Vec::with_capacity(request.images.len() + request.image_parts.len());
    for (i, text) in request.images.iter().enumerate() {
        let field = format!("images[{i}]");
        let bytes = decode_base64(text)
            .map_err(|why| Error::invalid(field.clone(), format!("{field} {why}")))?;
        images.push(ImageInput { field, bytes });
    }
    for (i, bytes) in request.image_parts.iter().enumerate() {
        images.push(ImageInput {
            field: format!("image[{i}]"),
            bytes: bytes.clone(),
        });
    }
    Ok(images)
}

fn feature_hint(preprocessing: &Preprocessing) -> String {
    let names = &preprocessing.feature_names;
    if names.len() <= 6 {
        names.join(", ")
    } else {
        format!("{}, ..., {}", names[..3].join(", "), names[names.len() - 1])
    }
}
