//! Who owns what, and what an owner holds: for access checks and quotas.

use super::{Store, db_error};
use crate::error::Result;

/// The kinds of resource that have an owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnedKind {
    /// A training job (also what `/v1/models/{job}` names).
    Job,
    /// A sweep.
    Sweep,
    /// A study.
    Study,
    /// A learning-rate range test.
    LrFind,
    /// A data set, by id or name.
    Dataset,
    /// Uploaded weights, by id or name.
    Weights,
    /// A registry model by name, or a job by id (what `/v1/models/{model}` names).
    Model,
}

/// Who a resource belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    /// Its owner; `None` when it was made while the service had no tokens.
    pub owner: Option<String>,
    /// Whether every token may see it (built-in and shared data sets).
    pub public: bool,
}

impl Store {
    /// Who owns a resource; `None` when there is no such resource.
    pub async fn ownership(&self, kind: OwnedKind, key: &str) -> Result<Option<Ownership>> {
        let sql = match kind {
            OwnedKind::Job => "SELECT owner, 0 FROM jobs WHERE id = ?1",
            OwnedKind::Sweep => "SELECT owner, 0 FROM sweeps WHERE id = ?1",
            OwnedKind::Study => "SELECT owner, 0 FROM studies WHERE id = ?1",
            OwnedKind::LrFind => "SELECT owner, 0 FROM lr_finds WHERE id = ?1",
            OwnedKind::Dataset => {
                "SELECT owner, public FROM datasets WHERE id = ?1 OR name = ?1 LIMIT 1"
            }
            OwnedKind::Weights => "SELECT owner, 0 FROM weights WHERE id = ?1 OR name = ?1 LIMIT 1",
            OwnedKind::Model => {
                "SELECT owner, 0 FROM model_names WHERE name = ?1 \
                 UNION ALL SELECT owner, 0 FROM jobs WHERE id = ?1 LIMIT 1"
            }
        };
        let row: Option<(Option<String>, i64)> = sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading an owner"))?;
        Ok(row.map(|(owner, public)| Ownership {
            owner,
            public: public != 0,
        }))
    }

    /// How many of an owner's jobs are queued or running.
    pub async fn active_jobs_of(&self, owner: &str) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ('queued', 'running')",
        )
        .bind(owner)
        .fetch_one(&self.reader)
        .await
        .map_err(db_error("counting active jobs"))
    }

    /// The creation times (ISO 8601, oldest first) of an owner's data-set and weights uploads
    /// in the last hour.
    pub async fn uploads_in_last_hour(&self, owner: &str) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT created_at FROM ( \
                 SELECT created_at FROM datasets WHERE owner = ?1 AND source <> 'builtin' \
                 UNION ALL SELECT created_at FROM weights WHERE owner = ?1) \
             WHERE created_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour') \
             ORDER BY created_at",
        )
        .bind(owner)
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("counting uploads"))
    }

    /// Bytes of checkpoints, uploaded weights and model versions an owner holds, and the ids of its data sets
    /// (whose folders the caller measures).
    pub async fn holdings_of(&self, owner: &str) -> Result<(i64, Vec<String>)> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT SUM(c.bytes) FROM checkpoints c JOIN jobs j ON j.id = c.job_id \
                              WHERE j.owner = ?1), 0) \
                  + COALESCE((SELECT SUM(bytes) FROM weights WHERE owner = ?1), 0) \
                  + COALESCE((SELECT SUM(v.bytes) FROM model_versions v \
                              JOIN model_names n ON n.name = v.name WHERE n.owner = ?1), 0)",
        )
        .bind(owner)
        .fetch_one(&self.reader)
        .await
        .map_err(db_error("measuring an owner's files"))?;
        let datasets = sqlx::query_scalar("SELECT id FROM datasets WHERE owner = ?")
            .bind(owner)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing an owner's data sets"))?;
        Ok((bytes, datasets))
    }
}
