//! The model registry: names, their immutable numbered versions, and aliases that point at
//! versions. Every change is one `BEGIN IMMEDIATE` transaction, so an alias moves atomically
//! and a version an alias points at cannot be deleted under it.

use sqlx::FromRow;

use super::{NOW, Store, classify_db_error, db_error};
use crate::error::{Error, Result};

/// One version of a named model as stored.
#[derive(Clone, Debug, FromRow)]
pub struct ModelVersionRow {
    /// The model's name.
    pub name: String,
    /// Its number, from 1; never reused.
    pub version: i64,
    /// `job` or `import`.
    pub source: String,
    /// The job it was registered from.
    pub job_id: Option<String>,
    /// The epoch of that job's checkpoint.
    pub checkpoint_epoch: Option<i64>,
    /// The upload its weights were copied from.
    pub weights_id: Option<String>,
    /// JSON: the model spec.
    pub model_spec: String,
    /// JSON: the engine's preprocessing.
    pub preprocessing: String,
    /// Free text.
    pub description: String,
    /// JSON: how its requests are batched.
    pub serving: String,
    /// Its weights file (safetensors), relative to the data folder.
    pub path: String,
    /// Size of that file.
    pub bytes: i64,
    /// Hex SHA-256 of that file.
    pub sha256: String,
    /// Number of parameters.
    pub parameters: i64,
    /// When it was registered.
    pub created_at: String,
}

/// An alias of a model.
#[derive(Clone, Debug, FromRow)]
pub struct ModelAliasRow {
    /// The model's name.
    pub name: String,
    /// The alias, such as `production`.
    pub alias: String,
    /// The version it points at.
    pub version: i64,
    /// When it last moved.
    pub updated_at: String,
}

/// A named model.
#[derive(Clone, Debug, FromRow)]
pub struct ModelNameRow {
    /// Its name.
    pub name: String,
    /// Who registered its first version.
    pub owner: Option<String>,
    /// When its first version was registered.
    pub created_at: String,
}

/// A version to record, its file already in place.
pub struct NewModelVersion<'a> {
    /// The model's name (created with `owner` if new).
    pub name: &'a str,
    /// Who registers it.
    pub owner: Option<&'a str>,
    /// `job` or `import`.
    pub source: &'a str,
    /// The job it comes from.
    pub job_id: Option<String>,
    /// The epoch of the job's checkpoint.
    pub checkpoint_epoch: Option<i64>,
    /// The upload its weights come from.
    pub weights_id: Option<String>,
    /// JSON model spec.
    pub model_spec: &'a str,
    /// JSON preprocessing.
    pub preprocessing: &'a str,
    /// Free text.
    pub description: &'a str,
    /// JSON: how its requests are batched.
    pub serving: &'a str,
    /// The weights file, relative to the data folder.
    pub path: &'a str,
    /// Its size.
    pub bytes: i64,
    /// Its SHA-256.
    pub sha256: &'a str,
    /// Number of parameters.
    pub parameters: i64,
}

const VERSION_COLUMNS: &str = "name, version, source, job_id, checkpoint_epoch, weights_id, \
     model_spec, preprocessing, description, serving, path, bytes, sha256, parameters, created_at";

impl Store {
    async fn begin_registry(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting a registry change"))
    }

    /// Records the next version of `name` (creating the name), returning it. A name that
    /// belongs to another owner is a 409 (the caller checked visibility before).
    pub async fn insert_model_version(&self, new: NewModelVersion<'_>) -> Result<ModelVersionRow> {
        let mut tx = self.begin_registry().await?;
        sqlx::query(&format!(
            "INSERT INTO model_names (name, owner, created_at) VALUES (?, ?, {NOW}) \
             ON CONFLICT (name) DO NOTHING"
        ))
        .bind(new.name)
        .bind(new.owner)
        .execute(&mut *tx)
        .await
        .map_err(db_error("naming a model"))?;
        let version: i64 = sqlx::query_scalar(
            "UPDATE model_names SET next_version = next_version + 1 WHERE name = ? \
             RETURNING next_version - 1",
        )
        .bind(new.name)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error("numbering a model version"))?;
        let row = sqlx::query_as::<_, ModelVersionRow>(&format!(
            "INSERT INTO model_versions (name, version, source, job_id, checkpoint_epoch, \
             weights_id, model_spec, preprocessing, description, serving, path, bytes, sha256, \
             parameters, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW}) \
             RETURNING {VERSION_COLUMNS}"
        ))
        .bind(new.name)
        .bind(version)
        .bind(new.source)
        .bind(new.job_id)
        .bind(new.checkpoint_epoch)
        .bind(new.weights_id)
        .bind(new.model_spec)
        .bind(new.preprocessing)
        .bind(new.description)
        .bind(new.serving)
        .bind(new.path)
        .bind(new.bytes)
        .bind(new.sha256)
        .bind(new.parameters)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error("recording a model version"))?;
        tx.commit()
            .await
            .map_err(|err| classify_db_error("committing a model version", err))?;
        Ok(row)
    }

    /// A named model.
    pub async fn model_name(&self, name: &str) -> Result<Option<ModelNameRow>> {
        sqlx::query_as("SELECT name, owner, created_at FROM model_names WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading a model"))
    }

    /// Every named model, or `owner`'s, by name.
    pub async fn list_model_names(&self, owner: Option<&str>) -> Result<Vec<ModelNameRow>> {
        sqlx::query_as(
            "SELECT name, owner, created_at FROM model_names \
             WHERE ?1 IS NULL OR owner = ?1 ORDER BY name",
        )
        .bind(owner)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing models"))
    }

    /// One version of a model.
    pub async fn model_version(&self, name: &str, version: i64) -> Result<Option<ModelVersionRow>> {
        sqlx::query_as(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE name = ? AND version = ?"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error("reading a model version"))
    }

    /// The versions of a model, oldest first.
    pub async fn model_versions(&self, name: &str) -> Result<Vec<ModelVersionRow>> {
        sqlx::query_as(&format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE name = ? ORDER BY version"
        ))
        .bind(name)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing model versions"))
    }

    /// The aliases of a model, by alias.
    pub async fn model_aliases(&self, name: &str) -> Result<Vec<ModelAliasRow>> {
        sqlx::query_as(
            "SELECT name, alias, version, updated_at FROM model_aliases WHERE name = ? ORDER BY alias",
        )
        .bind(name)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing model aliases"))
    }

    /// Every alias of every model.
    pub async fn all_model_aliases(&self) -> Result<Vec<ModelAliasRow>> {
        sqlx::query_as(
            "SELECT name, alias, version, updated_at FROM model_aliases ORDER BY name, alias",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing model aliases"))
    }

    /// Points `alias` of `name` at `version` (creating or moving it) in one statement; `None`
    /// when there is no such version.
    pub async fn set_model_alias(
        &self,
        name: &str,
        alias: &str,
        version: i64,
    ) -> Result<Option<ModelAliasRow>> {
        let mut tx = self.begin_registry().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM model_versions WHERE name = ? AND version = ?")
                .bind(name)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error("reading a model version"))?;
        if exists.is_none() {
            return Ok(None);
        }
        let row = sqlx::query_as::<_, ModelAliasRow>(&format!(
            "INSERT INTO model_aliases (name, alias, version, updated_at) VALUES (?, ?, ?, {NOW}) \
             ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, \
             updated_at = excluded.updated_at RETURNING name, alias, version, updated_at"
        ))
        .bind(name)
        .bind(alias)
        .bind(version)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error("moving a model alias"))?;
        tx.commit()
            .await
            .map_err(|err| classify_db_error("committing a model alias", err))?;
        Ok(Some(row))
    }

    /// Removes an alias; false when there was none.
    pub async fn delete_model_alias(&self, name: &str, alias: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM model_aliases WHERE name = ? AND alias = ?")
            .bind(name)
            .bind(alias)
            .execute(&self.writer)
            .await
            .map_err(db_error("removing a model alias"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a version no alias points at, returning it; `None` when there is no such
    /// version, a 409 naming the aliases that point at it.
    pub async fn delete_model_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<ModelVersionRow>> {
        let mut tx = self.begin_registry().await?;
        let aliases: Vec<String> = sqlx::query_scalar(
            "SELECT alias FROM model_aliases WHERE name = ? AND version = ? ORDER BY alias",
        )
        .bind(name)
        .bind(version)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error("reading model aliases"))?;
        if !aliases.is_empty() {
            return Err(Error::conflict(format!(
                "version {version} of model '{name}' is what {} point{} at; move or delete \
                 {} first (PUT or DELETE /v1/models/{name}/aliases/{{alias}})",
                aliases
                    .iter()
                    .map(|a| format!("'{name}@{a}'"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if aliases.len() == 1 { "s" } else { "" },
                if aliases.len() == 1 { "it" } else { "them" },
            )));
        }
        let row = sqlx::query_as::<_, ModelVersionRow>(&format!(
            "DELETE FROM model_versions WHERE name = ? AND version = ? RETURNING {VERSION_COLUMNS}"
        ))
        .bind(name)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error("deleting a model version"))?;
        tx.commit()
            .await
            .map_err(|err| classify_db_error("committing a model deletion", err))?;
        Ok(row)
    }
}
