//! Studies and the sweeps their parts became.

use sqlx::FromRow;

use super::{NOW, Store, db_error};
use crate::domain::{StudyId, SweepId};
use crate::error::{Error, Result};

/// A study as stored.
#[derive(Clone, Debug, FromRow)]
pub struct StudyRow {
    /// Its id.
    #[sqlx(try_from = "String")]
    pub id: StudyId,
    /// Its name.
    pub name: String,
    /// The kind asked for (`all` included).
    pub kind: String,
    /// The data set, as the request named it.
    pub dataset: String,
    /// quick, standard or thorough.
    pub budget: String,
    /// The request, as JSON.
    pub request: String,
    /// The parts, as JSON.
    pub plan: String,
    /// Its owner.
    pub owner: Option<String>,
    /// Whether it was cancelled (no further part is created).
    pub cancelled: bool,
    /// Why a part could not be created, if one could not.
    pub failure: Option<String>,
    /// When it was created.
    pub created_at: String,
}

/// A new study.
pub struct NewStudy<'a> {
    /// Its id.
    pub id: StudyId,
    /// Its name.
    pub name: &'a str,
    /// The kind asked for.
    pub kind: &'a str,
    /// The data set's name as requested.
    pub dataset: &'a str,
    /// The budget.
    pub budget: &'a str,
    /// The request as JSON.
    pub request: &'a str,
    /// The plan as JSON.
    pub plan: &'a str,
    /// Its owner.
    pub owner: Option<&'a str>,
}

const STUDY_COLUMNS: &str =
    "id, name, kind, dataset, budget, request, plan, owner, cancelled, failure, created_at";

impl Store {
    /// Records a study; its parts' sweeps follow, each with [`Store::insert_sweep`].
    pub async fn insert_study(&self, study: &NewStudy<'_>) -> Result<StudyRow> {
        let sql = format!(
            "INSERT INTO studies (id, name, kind, dataset, budget, request, plan, owner, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, {NOW}) RETURNING {STUDY_COLUMNS}"
        );
        sqlx::query_as::<_, StudyRow>(&sql)
            .bind(study.id.to_string())
            .bind(study.name)
            .bind(study.kind)
            .bind(study.dataset)
            .bind(study.budget)
            .bind(study.request)
            .bind(study.plan)
            .bind(study.owner)
            .fetch_one(&self.writer)
            .await
            .map_err(db_error("inserting a study"))
    }

    /// One study.
    pub async fn get_study(&self, id: StudyId) -> Result<Option<StudyRow>> {
        let sql = format!("SELECT {STUDY_COLUMNS} FROM studies WHERE id = ?");
        sqlx::query_as::<_, StudyRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading a study"))
    }

    /// Every study, newest first; only `owner`'s when an owner is given.
    pub async fn list_studies(&self, owner: Option<&str>) -> Result<Vec<StudyRow>> {
        let sql = format!(
            "SELECT {STUDY_COLUMNS} FROM studies WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at DESC, id DESC"
        );
        sqlx::query_as::<_, StudyRow>(&sql)
            .bind(owner)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing studies"))
    }

    /// Studies that may still need a part created: not cancelled, not failed, with fewer
    /// parts than planned (the plan's length is passed in by the caller per study).
    pub async fn open_studies(&self) -> Result<Vec<StudyRow>> {
        let sql = format!(
            "SELECT {STUDY_COLUMNS} FROM studies WHERE cancelled = 0 AND failure IS NULL ORDER BY created_at"
        );
        sqlx::query_as::<_, StudyRow>(&sql)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing open studies"))
    }

    /// The parts created so far: (part key, sweep id), whether or not the sweep still exists.
    pub async fn study_parts(&self, id: StudyId) -> Result<Vec<(String, SweepId)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT part, sweep_id FROM study_parts WHERE study_id = ? ORDER BY created_at, part",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("listing a study's parts"))?;
        rows.into_iter()
            .map(|(part, sweep)| {
                let sweep = sweep
                    .parse()
                    .map_err(|err| Error::internal("reading a study part's sweep id", err))?;
                Ok((part, sweep))
            })
            .collect()
    }

    /// Marks a study cancelled: no further part is created.
    pub async fn cancel_study(&self, id: StudyId) -> Result<()> {
        sqlx::query("UPDATE studies SET cancelled = 1 WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(db_error("cancelling a study"))?;
        Ok(())
    }

    /// Clears a study's cancellation and failure (a resume).
    pub async fn reopen_study(&self, id: StudyId) -> Result<()> {
        sqlx::query("UPDATE studies SET cancelled = 0, failure = NULL WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(db_error("resuming a study"))?;
        Ok(())
    }

    /// Records why a study's part could not be created.
    pub async fn fail_study(&self, id: StudyId, failure: &str) -> Result<()> {
        sqlx::query("UPDATE studies SET failure = ? WHERE id = ?")
            .bind(failure)
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(db_error("recording a study's failure"))?;
        Ok(())
    }

    /// Deletes a study's row and its part records (its sweeps are deleted first, by the caller).
    pub async fn delete_study_row(&self, id: StudyId) -> Result<()> {
        sqlx::query("DELETE FROM studies WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.writer)
            .await
            .map_err(db_error("deleting a study"))?;
        Ok(())
    }
}
