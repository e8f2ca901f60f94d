use sqlx::FromRow;

use super::{NOW, Store, classify_db_error, db_error};
use crate::domain::DatasetId;
use crate::error::{Error, Result};

/// A data set as stored; `summary` is JSON describing features, classes and splits.
#[derive(Clone, Debug, FromRow)]
pub struct DatasetRow {
    /// Its id.
    #[sqlx(try_from = "String")]
    pub id: DatasetId,
    /// Its unique name.
    pub name: String,
    /// `builtin`, `synthetic` or `upload`.
    pub source: String,
    /// JSON summary.
    pub summary: String,
    /// Whether every token may see and train on it.
    pub public: bool,
    /// When it was added.
    pub created_at: String,
}

impl Store {
    /// Records a data set whose files are already in place; a taken name is a conflict.
    pub async fn insert_dataset(
        &self,
        id: DatasetId,
        name: &str,
        source: &str,
        summary: &str,
        owner: Option<&str>,
    ) -> Result<DatasetRow> {
        // Built-in data sets are every token's to use.
        let sql = format!(
            "INSERT INTO datasets (id, name, source, summary, owner, public, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?3 = 'builtin', {NOW}) \
             RETURNING id, name, source, summary, public, created_at"
        );
        sqlx::query_as::<_, DatasetRow>(&sql)
            .bind(id.to_string())
            .bind(name)
            .bind(source)
            .bind(summary)
            .bind(owner)
            // Read to the end, so a failed autocommit is reported (see the module's documentation).
            .fetch_all(&self.writer)
            .await
            .map_err(|err| match &err {
                sqlx::Error::Database(db) if db.is_unique_violation() => {
                    Error::conflict(format!("a data set named '{name}' already exists"))
                }
                _ => classify_db_error("inserting a data set", err),
            })?
            .pop()
            .ok_or_else(|| Error::Internal("inserting a data set returned no row".into()))
    }

    /// Shares a data set with every token, or stops sharing it; `None` when there is none.
    pub async fn set_dataset_public(
        &self,
        id: DatasetId,
        public: bool,
    ) -> Result<Option<DatasetRow>> {
        sqlx::query_as::<_, DatasetRow>(
            "UPDATE datasets SET public = ? WHERE id = ? \
             RETURNING id, name, source, summary, public, created_at",
        )
        .bind(public)
        .bind(id.to_string())
        .fetch_all(&self.writer)
        .await
        .map(|rows| rows.into_iter().next())
        .map_err(db_error("sharing a data set"))
    }

    /// A data set by name or id.
    pub async fn find_dataset(&self, name_or_id: &str) -> Result<Option<DatasetRow>> {
        sqlx::query_as::<_, DatasetRow>(
            "SELECT id, name, source, summary, public, created_at FROM datasets WHERE name = ?1 OR id = ?1",
        )
        .bind(name_or_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error("reading a data set"))
    }

    /// A data set by id.
    pub async fn get_dataset(&self, id: DatasetId) -> Result<Option<DatasetRow>> {
        self.find_dataset(&id.to_string()).await
    }

    /// Every data set, oldest first.
    /// Only `owner`'s and public ones when an owner is given.
    pub async fn list_datasets(&self, owner: Option<&str>) -> Result<Vec<DatasetRow>> {
        sqlx::query_as::<_, DatasetRow>(
            "SELECT id, name, source, summary, public, created_at FROM datasets \
             WHERE ?1 IS NULL OR owner = ?1 OR public = 1 ORDER BY created_at, name",
        )
        .bind(owner)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing data sets"))
    }

    /// The ids of every data set, for telling a data set's folder from crash debris.
    pub async fn dataset_ids(&self) -> Result<Vec<DatasetId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM datasets")
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing data set ids"))?;
        ids.into_iter()
            .map(|id| {
                id.parse().map_err(|err| {
                    Error::internal(&format!("data set id '{id}' in the database"), err)
                })
            })
            .collect()
    }
}
