use sqlx::FromRow;

use super::{NOW, Store, db_error};
use crate::domain::{Clause, DatasetId, Field, JobId, JobStatus, SweepId};
use crate::error::{Error, Result};

/// A job as stored.
#[derive(Clone, Debug, FromRow)]
pub struct JobRow {
    /// The job's id.
    #[sqlx(try_from = "String")]
    pub id: JobId,
    /// Its display name.
    pub name: String,
    /// The data set it trains on.
    #[sqlx(try_from = "String")]
    pub dataset_id: DatasetId,
    /// The complete spec, as JSON.
    pub spec: String,
    /// Where it is in its life.
    #[sqlx(try_from = "String")]
    pub status: JobStatus,
    /// Higher runs first.
    pub priority: i64,
    /// How many times a worker has claimed it.
    pub attempt: i64,
    /// Fencing token of the current claim.
    pub lease_epoch: i64,
    /// A user asked to cancel it while it ran.
    pub cancel_requested: bool,
    /// Epochs asked for.
    pub epochs_total: i64,
    /// Epochs committed.
    pub epochs_done: i64,
    /// Preprocessing fitted on the training split, as JSON, once the job has started.
    pub preprocessing: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The epoch with the best validation accuracy so far.
    pub best_epoch: Option<i64>,
    /// That epoch's validation accuracy.
    pub best_val_acc: Option<f64>,
    /// That epoch's validation loss.
    pub best_val_loss: Option<f64>,
    /// The epoch after which early stopping ended the job, if it did.
    pub stopped_early_epoch: Option<i64>,
    /// Why early stopping ended the job.
    pub stop_reason: Option<String>,
    /// Whether that early stop was its sweep's pruning rule.
    pub pruned: bool,
    /// When it was submitted.
    pub created_at: String,
    /// When it first started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Last change.
    pub updated_at: String,
    /// The sweep this job is a trial of.
    #[sqlx(try_from = "Option<String>")]
    pub sweep_id: OptionalSweepId,
    /// Kept by the age retention however old it is.
    pub pinned: bool,
    /// Submitted with `"lr": "auto"`: a range test picks the rate before the first epoch.
    pub lr_auto: bool,
    /// The range test that chose the rate, once it has.
    pub lr_find_id: Option<String>,
}

/// A sweep id that may be absent (a newtype so the row can convert it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionalSweepId(pub Option<SweepId>);

impl TryFrom<Option<String>> for OptionalSweepId {
    type Error = uuid::Error;
    fn try_from(value: Option<String>) -> Result<Self, Self::Error> {
        value.map(|s| s.parse()).transpose().map(OptionalSweepId)
    }
}

/// What `insert_job` needs.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The new job's id.
    pub id: JobId,
    /// Display name.
    pub name: String,
    /// Resolved data set.
    pub dataset_id: DatasetId,
    /// Complete spec as JSON.
    pub spec: String,
    /// Queue priority.
    pub priority: i64,
    /// Epochs asked for.
    pub epochs_total: i64,
    /// The sweep this job is a trial of.
    pub sweep_id: Option<SweepId>,
    /// Who it belongs to; none when the service has no tokens.
    pub owner: Option<String>,
    /// Its rate is left to a range test before the first epoch (`"lr": "auto"`).
    pub lr_auto: bool,
}

/// A worker's claim on a job: the job plus the fencing token every later write must carry.
#[derive(Clone, Debug)]
pub struct Claim {
    /// The claimed job.
    pub job: JobRow,
    /// Writes with an older token are ignored.
    pub lease_epoch: i64,
}

/// The order of a job listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobSort {
    /// Submission time.
    CreatedAt,
    /// Best validation accuracy (jobs without one last).
    BestValAcc,
    /// Name.
    Name,
    /// Status.
    Status,
}

/// Filters, order and page of a job listing.
#[derive(Clone, Debug)]
pub struct JobFilter {
    /// Only these statuses (all when empty).
    pub statuses: Vec<JobStatus>,
    /// Only jobs on this data set.
    pub dataset_id: Option<DatasetId>,
    /// Only names containing this text.
    pub name_contains: Option<String>,
    /// Only trials of this sweep.
    pub sweep_id: Option<SweepId>,
    /// Conditions on best-epoch metrics, spec fields and columns (all must hold).
    pub clauses: Vec<Clause>,
    /// Order by this field instead of `sort` (in `descending` order; jobs without a value last).
    pub order_by: Option<Field>,
    /// Order.
    pub sort: JobSort,
    /// Descending order.
    pub descending: bool,
    /// Page size.
    pub limit: i64,
    /// Rows to skip.
    pub offset: i64,
    /// Only jobs of this owner (all when `None`).
    pub owner: Option<String>,
}

/// What a cancel request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The job was queued and is now cancelled; it never starts.
    CancelledWhileQueued,
    /// The job is running; its worker will stop it at the next batch.
    Requested,
    /// The job had already ended with this status.
    AlreadyEnded(JobStatus),
}

/// Jobs touched by crash recovery.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Put back in the queue to resume from their last checkpoint.
    pub requeued: Vec<JobId>,
    /// Failed because they were interrupted too often.
    pub failed: Vec<JobId>,
    /// Cancelled because a cancel was pending when they were interrupted.
    pub cancelled: Vec<JobId>,
}

pub(super) const JOB_COLUMNS: &str = "id, name, dataset_id, spec, status, priority, attempt, lease_epoch, \
    cancel_requested, epochs_total, epochs_done, preprocessing, failure, best_epoch, best_val_acc, \
    best_val_loss, stopped_early_epoch, stop_reason, pruned, created_at, started_at, finished_at, updated_at, sweep_id, pinned, lr_auto, lr_find_id";

impl Store {
    /// Inserts a job as `queued`: from here on it is durable.
    pub async fn insert_job(&self, job: &NewJob) -> Result<JobRow> {
        insert_job_with(&self.writer, job).await
    }

    /// One job, if it exists.
    pub async fn get_job(&self, id: JobId) -> Result<Option<JobRow>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
        sqlx::query_as::<_, JobRow>(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_error("reading a job"))
    }

    /// A page of jobs and the total number that match the filter.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<(Vec<JobRow>, i64)> {
        let mut conditions = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        if !filter.statuses.is_empty() {
            let marks = vec!["?"; filter.statuses.len()].join(", ");
            conditions.push(format!("status IN ({marks})"));
            binds.extend(
                filter
                    .statuses
                    .iter()
                    .map(|s| Bind::Text(s.as_str().to_string())),
            );
        }
        if let Some(owner) = &filter.owner {
            conditions.push("owner = ?".to_string());
            binds.push(Bind::Text(owner.clone()));
        }
        if let Some(dataset) = filter.dataset_id {
            conditions.push("dataset_id = ?".to_string());
            binds.push(Bind::Text(dataset.to_string()));
        }
        if let Some(name) = &filter.name_contains {
            conditions.push("instr(lower(name), lower(?)) > 0".to_string());
            binds.push(Bind::Text(name.clone()));
        }
        if let Some(sweep) = filter.sweep_id {
            conditions.push("sweep_id = ?".to_string());
            binds.push(Bind::Text(sweep.to_string()));
        }
        for clause in &filter.clauses {
            let (expr, path) = field_sql(&clause.field);
            binds.extend(path);
            conditions.push(format!("{expr} {} ?", clause.op.sql()));
            binds.push(match &clause.value {
                serde_json::Value::Number(n) => Bind::Real(n.as_f64().unwrap_or(f64::NAN)),
                serde_json::Value::Bool(b) => Bind::Int(i64::from(*b)),
                other => Bind::Text(
                    other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_string),
                ),
            });
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let direction = if filter.descending { "DESC" } else { "ASC" };
        let mut order_binds = Vec::new();
        let order = match (&filter.order_by, filter.sort) {
            (Some(field), _) => {
                let (expr, path) = field_sql(field);
                order_binds.extend(path);
                format!("{expr} IS NULL, {expr} {direction}, seq {direction}")
            }
            (None, JobSort::CreatedAt) => format!("seq {direction}"),
            (None, JobSort::BestValAcc) => {
                format!("best_val_acc IS NULL, best_val_acc {direction}, seq {direction}")
            }
            (None, JobSort::Name) => format!("name {direction}, seq {direction}"),
            (None, JobSort::Status) => format!("status {direction}, seq {direction}"),
        };
        // A parameter path appears twice in the ORDER BY (null test and value).
        let order_binds: Vec<Bind> = order_binds
            .iter()
            .cloned()
            .chain(order_binds.iter().cloned())
            .collect();
        let page_sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs {where_clause} ORDER BY {order} LIMIT ? OFFSET ?"
        );
        let count_sql = format!("SELECT COUNT(*) FROM jobs {where_clause}");

        let mut page = sqlx::query_as::<_, JobRow>(&page_sql);
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for bind in &binds {
            page = bind.to(page);
            count = bind.to_scalar(count);
        }
        for bind in &order_binds {
            page = bind.to(page);
        }
        let rows = page
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(&self.reader)
            .await
            .map_err(db_error("listing jobs"))?;
        let total = count
            .fetch_one(&self.reader)
            .await
            .map_err(db_error("counting jobs"))?;
        Ok((rows, total))
    }

    /// How many queued jobs will be claimed before this one (0 = next), if it is queued.
    pub async fn queue_position(&self, id: JobId) -> Result<Option<i64>> {
        sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT COUNT(*) FROM jobs o WHERE o.status = 'queued' \
                       AND (o.priority > j.priority OR (o.priority = j.priority AND o.seq < j.seq))) \
             FROM jobs j WHERE j.id = ? AND j.status = 'queued'",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_error("computing a queue position"))
    }
}

/// Inserts a job on any connection or transaction.
pub(super) async fn insert_job_with<'e, E: sqlx::SqliteExecutor<'e>>(
    executor: E,
    job: &NewJob,
) -> Result<JobRow> {
    let sql = format!(
        "INSERT INTO jobs (id, seq, name, dataset_id, spec, status, priority, epochs_total, sweep_id, owner, lr_auto, created_at, updated_at) \
         VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, ?, ?, 'queued', ?, ?, ?, ?, ?, {NOW}, {NOW}) \
         RETURNING {JOB_COLUMNS}"
    );
    sqlx::query_as::<_, JobRow>(&sql)
        .bind(job.id.to_string())
        .bind(&job.name)
        .bind(job.dataset_id.to_string())
        .bind(&job.spec)
        .bind(job.priority)
        .bind(job.epochs_total)
        .bind(job.sweep_id.map(|s| s.to_string()))
        .bind(&job.owner)
        .bind(job.lr_auto)
        // Read to the end, so a failed autocommit is reported (see the module's documentation).
        .fetch_all(executor)
        .await
        .map_err(|err| match &err {
            // The only reference a new job makes that can vanish under it.
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => Error::invalid(
                "dataset",
                "the data set was deleted while the job was being submitted",
            ),
            _ => db_error("inserting a job")(err),
        })?
        .pop()
        .ok_or_else(|| Error::Internal("inserting a job returned no row".into()))
}

/// A value bound into a dynamically built statement.
#[derive(Clone, Debug)]
enum Bind {
    Text(String),
    Real(f64),
    Int(i64),
}

type Args<'q> = sqlx::sqlite::SqliteArguments<'q>;

impl Bind {
    fn to<'q, O>(
        &self,
        q: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, Args<'q>>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, O, Args<'q>> {
        match self {
            Bind::Text(v) => q.bind(v.clone()),
            Bind::Real(v) => q.bind(*v),
            Bind::Int(v) => q.bind(*v),
        }
    }

    fn to_scalar<'q, O>(
        &self,
        q: sqlx::query::QueryScalar<'q, sqlx::Sqlite, O, Args<'q>>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Sqlite, O, Args<'q>> {
        match self {
            Bind::Text(v) => q.bind(v.clone()),
            Bind::Real(v) => q.bind(*v),
            Bind::Int(v) => q.bind(*v),
        }
    }
}

/// The SQL for a search field, and the JSON path to bind for a spec field. Metric and column
/// names come from fixed lists in `domain::query`, never from the request.
fn field_sql(field: &Field) -> (String, Option<Bind>) {
    match field {
        Field::Best(metric) => (
            format!(
                "(SELECT e.{metric} FROM epochs e WHERE e.job_id = jobs.id AND e.epoch = jobs.best_epoch)"
            ),
            None,
        ),
        Field::Param(parts) => (
            "json_extract(spec, ?)".to_string(),
            Some(Bind::Text(format!("$.{}", parts.join(".")))),
        ),
        Field::Column(column) => (column.to_string(), None),
    }
}
