//! Serving predictions from frozen copies of checkpoints: a cache of loaded models and the
//! decoding of request rows through each job's own preprocessing.

mod cache;
mod images;

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use cache::ModelCache;
use images::{ImageInput, decode_base64, image_rows};

use crate::domain::{JobId, JobSpec};
use crate::error::{Error, Result};
use crate::store::{CheckpointRow, JobRow, Store};
use engine::checkpoint::{self, FileStamp};
use engine::{InferenceNetwork, Preprocessing};

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
    /// Which checkpoint; the best by default.
    #[serde(default)]
    pub checkpoint: Option<CheckpointChoice>,
    /// Encoded images from a multipart request's `image` parts (never read from JSON).
    #[serde(skip)]
    pub image_parts: Vec<Vec<u8>>,
}

/// The prediction for one row.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    /// The most probable label, as the data set writes it.
    pub label: serde_json::Value,
    /// Probability of that label.
    pub confidence: f32,
    /// Probability of every label, keyed by label.
    pub probabilities: serde_json::Map<String, serde_json::Value>,
}

/// The answer to a prediction request.
#[derive(Clone, Debug, Serialize)]
pub struct PredictResponse {
    /// The job whose model answered.
    pub model: JobId,
    /// The epoch of the checkpoint used.
    pub checkpoint_epoch: i64,
    /// One prediction per input row.
    pub predictions: Vec<Prediction>,
}

/// A checkpoint loaded for serving: never the weights being trained.
pub struct LoadedModel {
    network: InferenceNetwork,
    preprocessing: Preprocessing,
}

/// Handle to the prediction service; cheap to clone.
#[derive(Clone)]
pub struct Predictor {
    store: Store,
    data_dir: PathBuf,
    cache: Arc<ModelCache>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
}

impl Predictor {
    /// A predictor reading checkpoints under `data_dir`.
    pub fn new(store: Store, data_dir: PathBuf, cache_size: usize, max_concurrent: usize) -> Self {
        Predictor {
            store,
            data_dir,
            cache: Arc::new(ModelCache::new(cache_size)),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            max_concurrent: max_concurrent.max(1),
        }
    }

    /// Predictions being computed now.
    pub fn in_flight(&self) -> usize {
        self.max_concurrent
            .saturating_sub(self.permits.available_permits())
    }

    /// Models loaded in memory.
    pub fn cached_models(&self) -> usize {
        self.cache.len()
    }

    /// Lets go of the loaded models of a deleted job.
    pub fn forget(&self, job: JobId) {
        self.cache.remove_job(job);
    }

    /// Predicts labels for the request's rows with the chosen checkpoint of job `model`.
    pub async fn predict(&self, model: &str, request: PredictRequest) -> Result<PredictResponse> {
        let job_id: JobId = model
            .parse()
            .map_err(|_| Error::not_found("model", model))?;
        let job = self
            .store
            .get_job(job_id)
            .await?
            .ok_or_else(|| Error::not_found("model", model))?;
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
        let _permit =
            Arc::clone(&self.permits)
                .try_acquire_owned()
                .map_err(|_| Error::Overloaded {
                    message: "too many predictions in flight; retry shortly".into(),
                })?;
        let (checkpoint, loaded) = self
            .choose_and_load(&job, request.checkpoint.as_ref())
            .await?;
        let inputs = request.inputs;
        let predictions = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let predictions = if images.is_empty() {
                run(&loaded, &inputs)
            } else {
                run(&loaded, &image_rows(&images, &loaded.preprocessing)?)
            };
            metrics::histogram!(crate::prometheus::PREDICTION_SECONDS)
                .record(started.elapsed().as_secs_f64());
            predictions
        })
        .await
        .map_err(|err| Error::internal("predicting", err))??;
        metrics::counter!(crate::prometheus::PREDICTION_ROWS).increment(count as u64);
        Ok(PredictResponse {
            model: job_id,
            checkpoint_epoch: checkpoint.epoch,
            predictions,
        })
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
        let key = (job.id, checkpoint.epoch);
        let corrupt = |detail: String| Error::CorruptCheckpoint {
            job: job.id.to_string(),
            epoch: checkpoint.epoch,
            detail,
        };
        let path = self.data_dir.join(&checkpoint.path);
        match FileStamp::of(&path) {
            Ok(stamp) => {
                if let Some(model) = self.cache.get(&key, &stamp) {
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
        type Loaded = std::result::Result<(LoadedModel, FileStamp), String>;
        let loaded = tokio::task::spawn_blocking(move || -> Result<Loaded> {
            let (bytes, stamp) = match checkpoint::integrity().read(&path, &sha256)? {
                Ok(read) => read,
                Err(why) => return Ok(Err(why)),
            };
            let saved = checkpoint::decode(&bytes, &Device::Cpu)?;
            drop(bytes);
            let network =
                InferenceNetwork::from_checkpoint(&spec.model, &preprocessing, &saved.model)?;
            Ok(Ok((
                LoadedModel {
                    network,
                    preprocessing,
                },
                stamp,
            )))
        })
        .await
        .map_err(|err| Error::internal("loading a model", err))??;
        let (loaded, stamp) = match loaded {
            Ok(loaded) => loaded,
            Err(why) => {
                self.cache.remove(&key);
                return Err(corrupt(why));
            }
        };
        let loaded = Arc::new(loaded);
        self.cache.insert(key, Arc::clone(&loaded), stamp);
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

/// Preprocesses rows, runs the model and decodes probabilities into labels.
fn run(loaded: &LoadedModel, inputs: &[Vec<f64>]) -> Result<Vec<Prediction>> {
    let raw_width = loaded.preprocessing.n_features();
    let width = loaded.preprocessing.input_width();
    let mut x = Vec::with_capacity(inputs.len() * width);
    let mut row_f32 = Vec::with_capacity(raw_width);
    for (i, row) in inputs.iter().enumerate() {
        if row.len() != raw_width {
            return Err(Error::invalid(
                format!("inputs[{i}]"),
                format!(
                    "row {i} has {} values; this model expects {raw_width} ({})",
                    row.len(),
                    feature_hint(&loaded.preprocessing)
                ),
            ));
        }
        let start = x.len();
        row_f32.clear();
        row_f32.extend(row.iter().map(|v| *v as f32));
        loaded.preprocessing.transform_into(&row_f32, &mut x);
        let bad = row_f32.iter().position(|v| !v.is_finite());
        if let Some(j) = bad.or_else(|| x[start..].iter().position(|v| !v.is_finite())) {
            return Err(Error::invalid(
                format!("inputs[{i}][{j}]"),
                format!(
                    "row {i} column {j} is not a finite number after preprocessing; valid: finite numbers within f32 range"
                ),
            ));
        }
    }
    let probabilities = loaded.network.probabilities(x, inputs.len(), width)?;
    let labels = &loaded.preprocessing.labels;
    Ok(probabilities
        .into_iter()
        .map(|p| {
            let (best, confidence) =
                p.iter().enumerate().fold(
                    (0, f32::MIN),
                    |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                );
            let probabilities = labels
                .iter()
                .zip(&p)
                .map(|(label, v)| (label_key(label), serde_json::json!(v)))
                .collect();
            Prediction {
                label: labels[best].clone(),
                confidence,
                probabilities,
            }
        })
        .collect())
}

fn label_key(label: &serde_json::Value) -> String {
    match label {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn feature_hint(preprocessing: &Preprocessing) -> String {
    let names = &preprocessing.feature_names;
    if names.len() <= 6 {
        names.join(", ")
    } else {
        format!("{}, ..., {}", names[..3].join(", "), names[names.len() - 1])
    }
}
