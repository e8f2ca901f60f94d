//! The model registry: named models with immutable numbered versions, registered from a job's
//! checkpoint or imported from uploaded safetensors weights, and aliases that move atomically.
//! A version owns a copy of its weights under `models/`, and is loaded and warmed before it is
//! acknowledged.

use std::sync::Arc;

use serde::Deserialize;

use super::batcher::BatchConfig;
use super::input::InputSpec;
use super::model::{LoadedModel, ModelKey};
use super::{CheckpointChoice, Predictor};
use crate::domain::{Caller, JobId, JobSpec};
use crate::error::{Error, Result};
use crate::store::{ModelAliasRow, ModelVersionRow, NewModelVersion};
use engine::checkpoint;
use engine::spec::ModelSpec;
use engine::{Preprocessing, weights};

/// Longest model or alias name.
const MAX_NAME_CHARS: usize = 100;

/// `POST /v1/models`: a new version of a named model, from a job or imported.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The model's name: letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// Free text for people.
    #[serde(default)]
    pub description: String,
    /// The job whose checkpoint becomes the version.
    #[serde(default)]
    pub from_job: Option<String>,
    /// Which of the job's checkpoints: `best` (default), `latest` or an epoch.
    #[serde(default)]
    pub checkpoint: Option<CheckpointChoice>,
    /// Imported: the network, as a job spec's `model`.
    #[serde(default)]
    pub model: Option<serde_json::Value>,
    /// Imported: uploaded weights (`POST /v1/weights`), by id or name.
    #[serde(default)]
    pub weights: Option<String>,
    /// Imported: what a row or an image is.
    #[serde(default)]
    pub input: Option<InputSpec>,
    /// Imported: the label of each output, in order.
    #[serde(default)]
    pub labels: Option<Vec<serde_json::Value>>,
    /// How concurrent requests are batched.
    #[serde(default)]
    pub batching: BatchConfig,
    /// Aliases to point at the new version at once.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A version being made: what its row and its loaded model need.
struct Made {
    source: &'static str,
    job_id: Option<String>,
    checkpoint_epoch: Option<i64>,
    weights_id: Option<String>,
    spec: ModelSpec,
    preprocessing: Preprocessing,
    /// The safetensors bytes of the network's tensors.
    bytes: Vec<u8>,
}

/// A 422 unless `name` is a usable model name: an alias's characters, and not a job id.
pub fn check_name(name: &str, field: &str) -> Result<()> {
    check_alias(name, field)?;
    if name.parse::<JobId>().is_ok() {
        return Err(Error::invalid(
            field,
            format!("'{name}' reads as a job id; choose a name that does not"),
        ));
    }
    Ok(())
}

/// A 422 unless `name` is a usable alias name.
pub fn check_alias(name: &str, field: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !valid {
        return Err(Error::invalid(
            field,
            format!(
                "'{name}' is not a valid name; valid: 1 to {MAX_NAME_CHARS} letters, digits, '.', '_' or '-', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

impl Predictor {
    /// Registers a new version, loads and warms it, and points the requested aliases at it.
    pub async fn register(
        &self,
        caller: &Caller,
        request: RegisterRequest,
    ) -> Result<ModelVersionRow> {
        check_name(&request.name, "name")?;
        for (i, alias) in request.aliases.iter().enumerate() {
            check_alias(alias, &format!("aliases[{i}]"))?;
        }
        request.batching.validate("batching")?;
        if let Some(existing) = self.store.model_name(&request.name).await?
            && !caller.sees(existing.owner.as_deref(), false)
        {
            return Err(Error::conflict(format!(
                "the model name '{}' is taken; choose another",
                request.name
            )));
        }
        let made = match (&request.from_job, &request.weights) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "weights",
                    "give from_job (a trained job) or model, weights, input and labels (an import), not both",
                ));
            }
            (Some(job), None) => self.version_from_job(caller, job, &request).await?,
            (None, Some(_)) => self.version_imported(caller, &request).await?,
            (None, None) => {
                return Err(Error::invalid(
                    "from_job",
                    "give from_job (a trained job) or model, weights, input and labels (an import)",
                ));
            }
        };
        let file = format!("models/{}.safetensors", uuid::Uuid::new_v4());
        let path = self.data_dir.join(&file);
        let Made {
            source,
            job_id,
            checkpoint_epoch,
            weights_id,
            spec,
            preprocessing,
            bytes,
        } = made;
        let batching = request.batching;
        let lineage = job_id.clone().zip(checkpoint_epoch);
        let name = request.name.clone();
        let size = bytes.len() as i64;
        let (loaded, sha256, spec) = tokio::task::spawn_blocking(move || -> Result<_> {
            let tensors = LoadedModel::tensors(&bytes)?;
            let mut loaded = LoadedModel::new(&spec, preprocessing, &tensors, batching, None)
                .map_err(|err| {
                    Error::invalid(
                        "weights",
                        format!("those weights do not fit the model: {err}"),
                    )
                })?;
            loaded.lineage = lineage;
            loaded.metric_name = name;
            let sha256 = checkpoint::write_atomically(&path, &bytes)?;
            Ok((loaded, sha256, spec))
        })
        .await
        .map_err(|err| Error::internal("loading a model", err))??;
        let inserted = self
            .store
            .insert_model_version(NewModelVersion {
                name: &request.name,
                owner: caller.owner.as_deref(),
                source,
                job_id,
                checkpoint_epoch,
                weights_id,
                model_spec: &to_json(&spec)?,
                preprocessing: &to_json(&loaded.preprocessing)?,
                description: &request.description,
                serving: &to_json(&batching)?,
                path: &file,
                bytes: size,
                sha256: &sha256,
                parameters: loaded.parameters as i64,
            })
            .await;
        let row = match inserted {
            Ok(row) => row,
            Err(err) => {
                let _ = std::fs::remove_file(self.data_dir.join(&file));
                return Err(err);
            }
        };
        self.cache.insert(
            ModelKey::Version(row.name.clone(), row.version),
            Arc::new(loaded),
        );
        for alias in &request.aliases {
            self.store
                .set_model_alias(&row.name, alias, row.version)
                .await?;
        }
        self.cache.forget_name(&row.name);
        Ok(row)
    }

    async fn version_from_job(
        &self,
        caller: &Caller,
        job: &str,
        request: &RegisterRequest,
    ) -> Result<Made> {
        for (field, given) in [
            ("model", request.model.is_some()),
            ("input", request.input.is_some()),
            ("labels", request.labels.is_some()),
        ] {
            if given {
                return Err(Error::invalid(
                    field,
                    format!(
                        "a version from a job takes its {field} from the job; leave {field} out"
                    ),
                ));
            }
        }
        let id: JobId = job.parse().map_err(|_| Error::not_found("job", job))?;
        let owner = self
            .store
            .ownership(crate::store::OwnedKind::Job, job)
            .await?
            .ok_or_else(|| Error::not_found("job", job))?
            .owner;
        if !caller.sees(owner.as_deref(), false) {
            return Err(Error::not_found("job", job));
        }
        let row = self
            .store
            .get_job(id)
            .await?
            .ok_or_else(|| Error::not_found("job", job))?;
        let chosen = self
            .choose_checkpoint(&row, request.checkpoint.as_ref())
            .await?;
        let spec: JobSpec = serde_json::from_str(&row.spec)
            .map_err(|err| Error::internal("reading a spec", err))?;
        let preprocessing: Preprocessing = serde_json::from_str(
            row.preprocessing
                .as_deref()
                .ok_or_else(|| Error::conflict(format!("job {id} has not started")))?,
        )
        .map_err(|err| Error::internal("reading preprocessing", err))?;
        let path = self.data_dir.join(&chosen.path);
        let sha256 = chosen.sha256.clone();
        let epoch = chosen.epoch;
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let (bytes, _) = checkpoint::integrity()
                .read(&path, &sha256)?
                .map_err(|why| Error::CorruptCheckpoint {
                    job: id.to_string(),
                    epoch,
                    detail: why,
                })?;
            let saved = checkpoint::decode(&bytes, &candle_core::Device::Cpu)?;
            safetensors::serialize(&saved.model, None)
                .map_err(|err| Error::internal("copying a checkpoint's weights", err))
        })
        .await
        .map_err(|err| Error::internal("reading a checkpoint", err))??;
        Ok(Made {
            source: "job",
            job_id: Some(id.to_string()),
            checkpoint_epoch: Some(epoch),
            weights_id: None,
            spec: spec.model,
            preprocessing,
            bytes,
        })
    }

    async fn version_imported(&self, caller: &Caller, request: &RegisterRequest) -> Result<Made> {
        if request.checkpoint.is_some() {
            return Err(Error::invalid(
                "checkpoint",
                "checkpoint chooses a job's checkpoint; an import has none",
            ));
        }
        let model = request.model.as_ref().ok_or_else(|| {
            Error::invalid(
                "model",
                "an import needs the network, as a job spec's model",
            )
        })?;
        let input = request.input.as_ref().ok_or_else(|| {
            Error::invalid(
                "input",
                "an import needs its input: {\"features\": [names]} or {\"image\": {\"shape\": [c, h, w], ...}}",
            )
        })?;
        let labels = request.labels.clone().ok_or_else(|| {
            Error::invalid(
                "labels",
                "an import needs the label of each output, in order",
            )
        })?;
        let weights_key = request.weights.as_deref().unwrap_or_default();
        let preprocessing = input.preprocessing(labels)?;
        let spec = parse_model(model, preprocessing.image_shape)?;
        let row = self
            .store
            .find_weights(weights_key)
            .await?
            .ok_or_else(|| Error::not_found("weights", weights_key))?;
        if !caller.sees(
            self.store
                .ownership(crate::store::OwnedKind::Weights, weights_key)
                .await?
                .and_then(|o| o.owner)
                .as_deref(),
            false,
        ) {
            return Err(Error::not_found("weights", weights_key));
        }
        let path = self.data_dir.join(&row.path);
        let sha256 = row.sha256.clone();
        let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
            let (bytes, _) = checkpoint::integrity()
                .read(&path, &sha256)?
                .map_err(|why| {
                    Error::conflict(format!("the uploaded weights are damaged: {why}"))
                })?;
            weights::inspect(&bytes)?;
            Ok(bytes)
        })
        .await
        .map_err(|err| Error::internal("reading weights", err))??;
        Ok(Made {
            source: "import",
            job_id: None,
            checkpoint_epoch: None,
            weights_id: Some(row.id.to_string()),
            spec,
            preprocessing,
            bytes,
        })
    }

    /// Points `alias` of `name` at `version`, and warms that version.
    pub async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<ModelAliasRow> {
        check_alias(alias, "alias")?;
        self.store
            .model_name(name)
            .await?
            .ok_or_else(|| Error::not_found("model", name))?;
        let row = self.version_row(name, version).await?;
        self.load_version(&row).await?;
        let moved = self
            .store
            .set_model_alias(name, alias, version)
            .await?
            .ok_or_else(|| {
                Error::not_found("model version", format!("{name}/versions/{version}"))
            })?;
        self.cache.forget_name(name);
        Ok(moved)
    }

    /// Removes an alias.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<()> {
        if !self.store.delete_model_alias(name, alias).await? {
            return Err(Error::not_found("alias", format!("{name}@{alias}")));
        }
        self.cache.forget_name(name);
        Ok(())
    }

    /// Deletes a version no alias points at, and its file.
    pub async fn delete_version(&self, name: &str, version: i64) -> Result<ModelVersionRow> {
        let row = self
            .store
            .delete_model_version(name, version)
            .await?
            .ok_or_else(|| {
                Error::not_found("model version", format!("{name}/versions/{version}"))
            })?;
        self.cache.forget_name(name);
        self.cache
            .remove(&ModelKey::Version(name.to_string(), version));
        let path = self.data_dir.join(&row.path);
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!(error = %err, path = %path.display(), "removing a model version's file failed");
        }
        Ok(row)
    }
}

/// An imported model's spec, read by a job spec's rules and checked against the network's
/// input (`[c, h, w]` after the input's resize and crop); errors name `model.*`.
fn parse_model(model: &serde_json::Value, input: Option<[usize; 3]>) -> Result<ModelSpec> {
    let body = serde_json::json!({"dataset": "imported", "model": model});
    let bytes = serde_json::to_vec(&body).map_err(|err| Error::internal("encoding a spec", err))?;
    let mut spec = crate::domain::parse_job_spec(&bytes)?;
    spec.fill_defaults();
    spec.model.validate()?;
    spec.model.validate_for(input)?;
    Ok(spec.model)
}

/// A value as stored JSON text.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|err| Error::internal("encoding JSON", err))
}
