use sqlx::FromRow;

use super::epochs::EPOCH_COLUMNS;
use super::jobs::insert_job_with;
use super::{EpochRow, NOW, NewJob, Store, db_error};
use crate::domain::{JobId, StudyId, SweepId};
use crate::error::{Error, Result};

/// A sweep as stored.
#[derive(Clone, Debug, FromRow)]
pub struct SweepRow {
    /// Its id.
    #[sqlx(try_from = "String")]
    pub id: SweepId,
    /// Its name.
    pub name: String,
    /// The sweep spec, as JSON.
    pub spec: String,
    /// Trials allowed to train at once.
    pub max_concurrent: i64,
    /// When it was created.
    pub created_at: String,
}

/// A trial of a sweep and its current job.
#[derive(Clone, Debug, FromRow)]
pub struct TrialRow {
    /// Position in the sweep.
    pub trial_index: i64,
    /// Axis values, as a JSON object.
    pub params: String,
    /// Which repeat (seed offset).
    pub repeat: i64,
    /// The job that runs (or ran) it.
    #[sqlx(try_from = "String")]
    pub job_id: JobId,
}

/// A trial to insert with its job.
pub struct NewTrial {
    /// Position in the sweep.
    pub index: i64,
    /// Axis values as JSON.
    pub params: String,
    /// Which repeat.
    pub repeat: i64,
    /// Its job.
    pub job: NewJob,
}

/// A new job for a trial whose job failed or was cancelled.
#[derive(Clone, Debug)]
pub struct TrialReplacement {
    /// The trial.
    pub trial_index: i64,
    /// The job it replaces.
    pub replaces: JobId,
    /// The replacement, queued.
    pub job: NewJob,
}

impl Store {
    /// Records a sweep, its trials and their queued jobs in one transaction; with `study`, also
    /// that the sweep is that study's part (a part already created makes the whole insert fail
    /// with a conflict, so a part's sweep is created once).
    pub async fn insert_sweep(
        &self,
        id: SweepId,
        name: &str,
        spec: &str,
        max_concurrent: i64,
        trials: &[NewTrial],
        owner: Option<&str>,
        study: Option<(StudyId, &str)>,
    ) -> Result<SweepRow> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting a sweep"))?;
        let sql = format!(
            "INSERT INTO sweeps (id, name, spec, max_concurrent, owner, created_at) VALUES (?, ?, ?, ?, ?, {NOW}) \
             RETURNING id, name, spec, max_concurrent, created_at"
        );
        let row = sqlx::query_as::<_, SweepRow>(&sql)
            .bind(id.to_string())
            .bind(name)
            .bind(spec)
            .bind(max_concurrent)
            .bind(owner)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error("inserting a sweep"))?;
        if let Some((study, part)) = study {
            let inserted = sqlx::query(&format!(
                "INSERT INTO study_parts (study_id, part, sweep_id, created_at) VALUES (?, ?, ?, {NOW}) \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(study.to_string())
            .bind(part)
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error("recording a study part"))?;
            if inserted.rows_affected() == 0 {
                return Err(Error::Conflict {
                    message: format!("the study's part '{part}' was already created"),
                });
            }
        }
        for trial in trials {
            insert_job_with(&mut *tx, &trial.job).await?;
            sqlx::query("INSERT INTO trials (sweep_id, trial_index, params, repeat, job_id) VALUES (?, ?, ?, ?, ?)")
                .bind(id.to_string())
                .bind(trial.index)
                .bind(&trial.params)
                .bind(trial.repeat)
                .bind(trial.job.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_error("inserting a trial"))?;
        }
        tx.commit().await.map_err(db_error("committing a sweep"))?;
        Ok(row)
    }

    /// One sweep.
    pub async fn get_sweep(&self, id: SweepId) -> Result<Option<SweepRow>> {
        sqlx::query_as::<_, SweepRow>(
            "SELECT id, name, spec, max_concurrent, created_at FROM sweeps WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error("reading a sweep"))
    }

    /// Every sweep, newest first.
    /// Only `owner`'s when an owner is given.
    pub async fn list_sweeps(&self, owner: Option<&str>) -> Result<Vec<SweepRow>> {
        sqlx::query_as::<_, SweepRow>("SELECT id, name, spec, max_concurrent, created_at FROM sweeps WHERE ?1 IS NULL OR owner = ?1 ORDER BY created_at DESC, id DESC")
            .bind(owner)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing sweeps"))
    }

    /// A sweep's trials in order.
    pub async fn list_trials(&self, id: SweepId) -> Result<Vec<TrialRow>> {
        sqlx::query_as::<_, TrialRow>("SELECT trial_index, params, repeat, job_id FROM trials WHERE sweep_id = ? ORDER BY trial_index")
            .bind(id.to_string())
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing trials"))
    }

    /// Gives trials new jobs (a resume), in one transaction: each trial's old job stays as history.
    ///
    /// Each replacement names the job it replaces; a trial whose job is no longer that one, or
    /// no longer failed or cancelled, was resumed by a concurrent call and is skipped, so a trial
    /// is re-queued at most once. Returns the indices that were replaced.
    pub async fn replace_trial_jobs(
        &self,
        id: SweepId,
        replacements: &[TrialReplacement],
    ) -> Result<Vec<i64>> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error("starting a resume"))?;
        let mut replaced = Vec::new();
        for replacement in replacements {
            let still_ended: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM trials t JOIN jobs j ON j.id = t.job_id \
                 WHERE t.sweep_id = ? AND t.trial_index = ? AND t.job_id = ? \
                 AND j.status IN ('failed', 'cancelled'))",
            )
            .bind(id.to_string())
            .bind(replacement.trial_index)
            .bind(replacement.replaces.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error("checking a trial to resume"))?;
            if !still_ended {
                continue;
            }
            insert_job_with(&mut *tx, &replacement.job).await?;
            sqlx::query("UPDATE trials SET job_id = ? WHERE sweep_id = ? AND trial_index = ?")
                .bind(replacement.job.id.to_string())
                .bind(id.to_string())
                .bind(replacement.trial_index)
                .execute(&mut *tx)
                .await
                .map_err(db_error("replacing a trial's job"))?;
            replaced.push(replacement.trial_index);
        }
        tx.commit().await.map_err(db_error("committing a resume"))?;
        Ok(replaced)
    }
}

/// An epoch of some trial's job.
#[derive(FromRow)]
struct TrialEpoch {
    job_id: String,
    #[sqlx(flatten)]
    epoch: EpochRow,
}

impl Store {
    /// The epochs 1..=`upto` of every current trial job of a sweep except `except`, one list
    /// per job (jobs with no epoch there are left out): what the pruning rule compares with.
    pub async fn other_trial_epochs(
        &self,
        id: SweepId,
        except: JobId,
        upto: i64,
    ) -> Result<Vec<Vec<EpochRow>>> {
        let sql = format!(
            "SELECT e.job_id AS job_id, {EPOCH_COLUMNS} FROM trials t JOIN epochs e ON e.job_id = t.job_id \
             WHERE t.sweep_id = ? AND t.job_id != ? AND e.epoch <= ? ORDER BY e.job_id, e.epoch"
        );
        let rows = sqlx::query_as::<_, TrialEpoch>(&sql)
            .bind(id.to_string())
            .bind(except.to_string())
            .bind(upto)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("reading the epochs of a sweep's trials"))?;
        let mut grouped: Vec<(String, Vec<EpochRow>)> = Vec::new();
        for row in rows {
            match grouped.last_mut() {
                Some((job, epochs)) if *job == row.job_id => epochs.push(row.epoch),
                _ => grouped.push((row.job_id, vec![row.epoch])),
            }
        }
        Ok(grouped.into_iter().map(|(_, epochs)| epochs).collect())
    }

    /// How many of a sweep's current trial jobs are in each status.
    pub async fn sweep_status_counts(&self, id: SweepId) -> Result<Vec<(String, i64)>> {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT j.status, COUNT(*) FROM trials t JOIN jobs j ON j.id = t.job_id WHERE t.sweep_id = ? GROUP BY j.status ORDER BY j.status",
        )
        .bind(id.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(db_error("counting trials"))
    }
}
