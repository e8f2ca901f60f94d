//! Deleting jobs, sweeps and data sets, pinning jobs, and what stands in the way of a delete.
//!
//! Every check is made again inside the deleting `BEGIN IMMEDIATE` transaction, so a
//! submission, resume or claim cannot slip in between the check and the delete. Rows go
//! first; the caller removes the files afterwards, so a crash in between leaves files without
//! rows (collected at the next start), never a row pointing at a missing file.

use sqlx::SqliteConnection;

use super::jobs::{JOB_COLUMNS, JobRow};
use super::{DatasetRow, NOW, Store, db_error};
use crate::domain::{DatasetId, JobId, JobStatus, SweepId};
use crate::error::{Error, Result};

/// Statuses of a job that has not ended (SQL).
pub(super) const UNFINISHED: &str = "('queued', 'running')";
/// Statuses of a job that has ended (SQL).
pub(super) const FINISHED: &str = "('succeeded', 'failed', 'cancelled')";

/// How many blocking jobs a conflict message names.
const NAMED_BLOCKERS: i64 = 5;

/// Jobs that stand in the way of a delete: the first few, and how many in all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Blockers {
    /// Up to five of them, oldest first.
    pub(super) first: Vec<String>,
    /// How many there are.
    pub(super) total: i64,
}

impl Blockers {
    /// "1 job: a", "2 jobs: a, b" or "12 jobs, among them a, b, c, d, e and 7 more".
    pub(super) fn describe(&self) -> String {
        let shown = self.first.join(", ");
        let more = self.total - self.first.len() as i64;
        let noun = if self.total == 1 { "job" } else { "jobs" };
        if more > 0 {
            format!("{} {noun}, among them {shown} and {more} more", self.total)
        } else {
            format!("{} {noun}: {shown}", self.total)
        }
    }
}

/// Whose checkpoints a transfer would load.
enum Source {
    /// One job.
    Job(JobId),
    /// Every job of a sweep (users inside the sweep itself do not count).
    Sweep(SweepId),
}

/// The jobs matching `condition` (a WHERE clause on `jobs u` with `?1`, `?2`, ... for
/// `binds`), oldest first.
async fn blockers(
    conn: &mut SqliteConnection,
    condition: &str,
    binds: &[&str],
) -> Result<Blockers> {
    let sql = format!(
        "SELECT u.id, COUNT(*) OVER () FROM jobs u WHERE {condition} ORDER BY u.seq LIMIT {NAMED_BLOCKERS}"
    );
    let mut query = sqlx::query_as(&sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    let rows: Vec<(String, i64)> = query
        .fetch_all(conn)
        .await
        .map_err(db_error("finding the jobs that use something"))?;
    Ok(Blockers {
        total: rows.first().map_or(0, |r| r.1),
        first: rows.into_iter().map(|r| r.0).collect(),
    })
}

/// Queued or running jobs that load their backbone from `source` when they start.
async fn transfer_users(conn: &mut SqliteConnection, source: &Source) -> Result<Blockers> {
    match source {
        Source::Job(id) => {
            let condition = format!(
                "u.status IN {UNFINISHED} AND json_extract(u.spec, '$.init.from_job') = ?1"
            );
            blockers(conn, &condition, &[&id.to_string()]).await
        }
        Source::Sweep(id) => {
            let condition = format!(
                "u.status IN {UNFINISHED} AND u.sweep_id IS NOT ?1 AND json_extract(u.spec, '$.init.from_job') \
                 IN (SELECT s.id FROM jobs s WHERE s.sweep_id = ?1)"
            );
            blockers(conn, &condition, &[&id.to_string()]).await
        }
    }
}

/// The queued or running jobs whose `init.from_weights` names uploaded weights by `name` or
/// `id`; they load the file when they start.
pub(super) async fn weights_users(
    conn: &mut SqliteConnection,
    name: &str,
    id: &str,
) -> Result<Blockers> {
    let condition = format!(
        "u.status IN {UNFINISHED} AND json_extract(u.spec, '$.init.from_weights') IN (?1, ?2)"
    );
    blockers(conn, &condition, &[name, id]).await
}

fn transfer_conflict(what: String, users: &Blockers) -> Error {
    Error::conflict(format!(
        "{what} is the init.from_job of queued or running jobs ({}), which load their \
         backbone from it when they start; wait for them to end or cancel them",
        users.describe()
    ))
}

impl Store {
    /// Starts a read-then-write transaction.
    async fn begin_delete(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting a delete"))
    }

    /// A 409 when job `id` cannot be deleted whatever its status: it is a sweep's trial, or
    /// a queued or running job's `init.from_job`. A job that does not exist passes.
    pub async fn check_job_deletable(&self, id: JobId) -> Result<()> {
        let mut conn = self.reader.acquire().await.map_err(db_error("reading"))?;
        refuse_job(&mut conn, id).await
    }

    /// A 409 while a queued or running job outside sweep `id` loads a checkpoint of one of
    /// its jobs.
    pub async fn check_sweep_deletable(&self, id: SweepId) -> Result<()> {
        let mut conn = self.reader.acquire().await.map_err(db_error("reading"))?;
        let users = transfer_users(&mut conn, &Source::Sweep(id)).await?;
        if users.total > 0 {
            return Err(transfer_conflict(format!("a job of sweep {id}"), &users));
        }
        Ok(())
    }

    /// Deletes an ended job that is no sweep's trial and no queued or running job's transfer
    /// source, with its epochs, steps, layer norms and checkpoint rows (they cascade). A 404
    /// when it does not exist, a 409 naming what stands in the way otherwise. With
    /// `keep_pinned` (the age retention) a pinned job stays: false.
    pub async fn delete_job(&self, id: JobId, keep_pinned: bool) -> Result<bool> {
        let mut tx = self.begin_delete().await?;
        let row: Option<(String, bool)> =
            sqlx::query_as("SELECT status, pinned FROM jobs WHERE id = ?")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error("reading a job to delete"))?;
        let (status, pinned) = row.ok_or_else(|| Error::not_found("job", id.to_string()))?;
        if keep_pinned && pinned {
            return Ok(false);
        }
        let status: JobStatus = status
            .parse()
            .map_err(|err| Error::internal("reading a job status", err))?;
        refuse_job(&mut tx, id).await?;
        if !status.is_terminal() {
            return Err(Error::conflict(format!(
                "job {id} is {status}; it is deleted once it has stopped"
            )));
        }
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error("deleting a job"))?;
        tx.commit().await.map_err(db_error("committing a delete"))?;
        Ok(true)
    }

    /// The ids of every job of a sweep, the trials' current jobs and those they replaced.
    pub async fn sweep_job_ids(&self, id: SweepId) -> Result<Vec<JobId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs WHERE sweep_id = ?")
            .bind(id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing a sweep's jobs"))?;
        parse_job_ids(ids)
    }

    /// Deletes a sweep whose jobs have all ended, with its trials and every one of its jobs
    /// (their rows cascade as in [`Store::delete_job`]); returns the jobs deleted. With
    /// `keep_pinned` (the age retention) a sweep with a pinned job stays: `None`.
    pub async fn delete_sweep(&self, id: SweepId, keep_pinned: bool) -> Result<Option<Vec<JobId>>> {
        let mut tx = self.begin_delete().await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sweeps WHERE id = ?)")
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error("reading a sweep to delete"))?;
        if !exists {
            return Err(Error::not_found("sweep", id.to_string()));
        }
        if keep_pinned {
            let pinned: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE sweep_id = ? AND pinned = 1)",
            )
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error("reading a sweep to delete"))?;
            if pinned {
                return Ok(None);
            }
        }
        let condition = format!("u.sweep_id = ?1 AND u.status IN {UNFINISHED}");
        let open = blockers(&mut tx, &condition, &[&id.to_string()]).await?;
        if open.total > 0 {
            return Err(Error::conflict(format!(
                "sweep {id} still has queued or running jobs ({}); it is deleted once they \
                 have stopped",
                open.describe()
            )));
        }
        let users = transfer_users(&mut tx, &Source::Sweep(id)).await?;
        if users.total > 0 {
            return Err(transfer_conflict(format!("a job of sweep {id}"), &users));
        }
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs WHERE sweep_id = ?")
            .bind(id.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error("listing a sweep's jobs"))?;
        // Trials point at jobs and jobs at the sweep: delete in that order.
        for sql in [
            "DELETE FROM trials WHERE sweep_id = ?",
            "DELETE FROM jobs WHERE sweep_id = ?",
            "DELETE FROM sweeps WHERE id = ?",
        ] {
            sqlx::query(sql)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_error("deleting a sweep"))?;
        }
        tx.commit().await.map_err(db_error("committing a delete"))?;
        parse_job_ids(ids).map(Some)
    }

    /// Deletes a data set's row, returning it (its folder is the caller's to remove): a 409
    /// for a built-in one, or while any job, ended or not, trains or trained on it.
    pub async fn delete_dataset(&self, id: DatasetId) -> Result<DatasetRow> {
        let mut tx = self.begin_delete().await?;
        let row: DatasetRow = sqlx::query_as(
            "SELECT id, name, source, summary, public, created_at FROM datasets WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error("reading a data set to delete"))?
        .ok_or_else(|| Error::not_found("data set", id.to_string()))?;
        if row.source == "builtin" {
            return Err(Error::conflict(format!(
                "'{}' is a built-in data set; built-ins cannot be deleted",
                row.name
            )));
        }
        let users = blockers(&mut tx, "u.dataset_id = ?1", &[&id.to_string()]).await?;
        if users.total > 0 {
            return Err(Error::conflict(format!(
                "data set '{}' is used by {}; delete them first (a sweep's trials go with \
                 DELETE /v1/sweeps/{{id}})",
                row.name,
                users.describe()
            )));
        }
        sqlx::query("DELETE FROM datasets WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error("deleting a data set"))?;
        tx.commit().await.map_err(db_error("committing a delete"))?;
        Ok(row)
    }

    /// Sets or clears a job's pin (a pinned job outlives the age retention); `None` when it
    /// does not exist.
    pub async fn set_pinned(&self, id: JobId, pinned: bool) -> Result<Option<JobRow>> {
        let sql = format!(
            "UPDATE jobs SET pinned = ?, updated_at = {NOW} WHERE id = ? RETURNING {JOB_COLUMNS}"
        );
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(pinned)
            .bind(id.to_string())
            // Read to the end, so a failed autocommit is reported (see the module's documentation).
            .fetch_all(&self.writer)
            .await
            .map(|rows| rows.into_iter().next())
            .map_err(db_error("pinning a job"))
    }
}

/// See [`Store::check_job_deletable`].
async fn refuse_job(conn: &mut SqliteConnection, id: JobId) -> Result<()> {
    let sweep: Option<Option<String>> =
        sqlx::query_scalar("SELECT sweep_id FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error("reading a job to delete"))?;
    if let Some(Some(sweep)) = sweep {
        return Err(Error::conflict(format!(
            "job {id} is a trial of sweep {sweep}; trials are deleted with their sweep \
             (DELETE /v1/sweeps/{sweep})"
        )));
    }
    let users = transfer_users(conn, &Source::Job(id)).await?;
    if users.total > 0 {
        return Err(transfer_conflict(format!("job {id}"), &users));
    }
    Ok(())
}

pub(super) fn parse_job_ids(ids: Vec<String>) -> Result<Vec<JobId>> {
    ids.into_iter()
        .map(|id| {
            id.parse()
                .map_err(|err| Error::internal("reading a job id", err))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockers_name_five_and_count_the_rest() {
        let few = Blockers {
            first: vec!["a".into()],
            total: 1,
        };
        assert_eq!(few.describe(), "1 job: a");
        let many = Blockers {
            first: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
            total: 12,
        };
        assert_eq!(
            many.describe(),
            "12 jobs, among them a, b, c, d, e and 7 more"
        );
    }
}
