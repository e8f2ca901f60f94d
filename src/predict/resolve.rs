//! Resolving a registry name, alias or version to a version, and loading (and warming) that
//! version: from memory once warm, else from its row and its weights file.

use std::sync::Arc;

use super::Predictor;
use super::batcher::BatchConfig;
use super::cache::Selector;
use super::model::{LoadedModel, ModelKey};
use crate::error::{Error, Result};
use crate::store::ModelVersionRow;
use engine::Preprocessing;
use engine::checkpoint;
use engine::spec::ModelSpec;

impl Predictor {
    /// A version's row; a 404 naming it.
    pub async fn version_row(&self, name: &str, version: i64) -> Result<ModelVersionRow> {
        self.store
            .model_version(name, version)
            .await?
            .ok_or_else(|| Error::not_found("model version", format!("{name}/versions/{version}")))
    }

    /// Whether a version is loaded and warm.
    pub fn is_warm(&self, name: &str, version: i64) -> bool {
        self.cache
            .contains(&ModelKey::Version(name.to_string(), version))
    }

    /// The name and version text of the model `selector` names when it is loaded and warm;
    /// `None` when it exists but is not loaded; a 404 when there is no such model.
    pub async fn warm_version(&self, selector: &Selector) -> Result<Option<(String, String)>> {
        if let Selector::Job(job, _) = selector {
            if let Some(key @ ModelKey::Checkpoint(_, epoch)) = self.cache.resolved(selector)
                && self.cache.contains(&key)
            {
                return Ok(Some((job.to_string(), format!("epoch-{epoch}"))));
            }
            self.store
                .get_job(*job)
                .await?
                .ok_or_else(|| Error::not_found("model", job.to_string()))?;
            return Ok(None);
        }
        let (name, version) = self.resolve_version(selector).await?;
        Ok(self
            .is_warm(&name, version)
            .then(|| (name, version.to_string())))
    }

    /// Resolves a name, alias or version of the registry to a version number.
    pub async fn resolve_version(&self, selector: &Selector) -> Result<(String, i64)> {
        if let Some(ModelKey::Version(name, version)) = self.cache.resolved(selector) {
            return Ok((name, version));
        }
        let (name, version) = match selector {
            Selector::Version(name, version) => {
                self.version_row(name, *version).await?;
                (name.clone(), *version)
            }
            Selector::Alias(name, alias) => {
                let aliases = self.store.model_aliases(name).await?;
                match aliases.iter().find(|a| a.alias == *alias) {
                    Some(found) => (name.clone(), found.version),
                    None if self.store.model_name(name).await?.is_none() => {
                        return Err(Error::not_found("model", name.clone()));
                    }
                    None => return Err(Error::not_found("alias", format!("{name}@{alias}"))),
                }
            }
            Selector::Name(name) => {
                let aliases = self.store.model_aliases(name).await?;
                let version = match aliases.iter().find(|a| a.alias == "production") {
                    Some(production) => production.version,
                    None => self
                        .store
                        .model_versions(name)
                        .await?
                        .last()
                        .map(|v| v.version)
                        .ok_or_else(|| Error::not_found("model", name.clone()))?,
                };
                (name.clone(), version)
            }
            Selector::Job(..) => {
                return Err(Error::Internal("a job is not a registry version".into()));
            }
        };
        self.cache
            .remember(selector.clone(), ModelKey::Version(name.clone(), version));
        Ok((name, version))
    }

    /// A registry version, loaded (and warmed) once.
    pub async fn load_version(&self, row: &ModelVersionRow) -> Result<Arc<LoadedModel>> {
        let key = ModelKey::Version(row.name.clone(), row.version);
        if let Some(model) = self.cache.get(&key) {
            return Ok(model);
        }
        let spec: ModelSpec = serde_json::from_str(&row.model_spec)
            .map_err(|err| Error::internal("reading a model spec", err))?;
        let preprocessing: Preprocessing = serde_json::from_str(&row.preprocessing)
            .map_err(|err| Error::internal("reading preprocessing", err))?;
        let batching: BatchConfig = serde_json::from_str(&row.serving)
            .map_err(|err| Error::internal("reading batching", err))?;
        let path = self.data_dir.join(&row.path);
        let sha256 = row.sha256.clone();
        let what = format!("{}/versions/{}", row.name, row.version);
        let lineage = row.job_id.clone().zip(row.checkpoint_epoch);
        let metric_name = row.name.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<LoadedModel> {
            let (bytes, _) = checkpoint::integrity()
                .read(&path, &sha256)?
                .map_err(|why| {
                    Error::conflict(format!("the weights of model {what} are damaged: {why}"))
                })?;
            let tensors = LoadedModel::tensors(&bytes)?;
            let mut model = LoadedModel::new(&spec, preprocessing, &tensors, batching, None)?;
            model.lineage = lineage;
            model.metric_name = metric_name;
            Ok(model)
        })
        .await
        .map_err(|err| Error::internal("loading a model", err))??;
        let loaded = Arc::new(loaded);
        self.cache.insert(key, Arc::clone(&loaded));
        Ok(loaded)
    }

    /// Loads and warms every version an alias points at (at start-up, so that what is in
    /// production is ready before its first request); failures are logged.
    pub async fn warm_aliased(&self) {
        let aliases = match self.store.all_model_aliases().await {
            Ok(aliases) => aliases,
            Err(err) => {
                tracing::warn!(error = %err, "listing aliases to warm failed");
                return;
            }
        };
        let mut versions: Vec<(String, i64)> =
            aliases.into_iter().map(|a| (a.name, a.version)).collect();
        versions.dedup();
        for (name, version) in versions {
            let warmed = match self.version_row(&name, version).await {
                Ok(row) => self.load_version(&row).await.map(|_| ()),
                Err(err) => Err(err),
            };
            match warmed {
                Ok(()) => tracing::info!(model = %name, version, "warmed"),
                Err(err) => {
                    tracing::warn!(model = %name, version, error = %err, "warming a model failed")
                }
            }
        }
    }
}
