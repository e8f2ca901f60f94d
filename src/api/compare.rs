//! `/v1/compare`: rank any set of jobs by the best epoch of a metric and judge each one.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::error::ApiResult;
use super::extract::QueryParams;
use super::jobs::job_id;
use crate::analysis::{self, Comparison};
use crate::domain::{Goal, JobId, RankMetric};
use crate::error::{Error, Result};

/// Most jobs one comparison may include.
pub const MAX_COMPARED: usize = 100;

/// Query of `GET /v1/compare` (and of its plot).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareQuery {
    /// Comma-separated job ids.
    jobs: String,
    /// val_acc (default), val_loss, test_acc, test_loss, train_acc, train_loss.
    metric: Option<String>,
    /// max or min; follows the metric by default.
    goal: Option<String>,
    /// Most curve points per job (default 200).
    max_points: Option<usize>,
}

/// The `jobs` parameter: 1 to [`MAX_COMPARED`] comma-separated job ids, or a 422 naming it
/// (an id that is no job's is a 404).
pub(super) fn parse_ids(raw: &str) -> Result<Vec<JobId>> {
    let ids = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(job_id)
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() || ids.len() > MAX_COMPARED {
        return Err(Error::invalid(
            "jobs",
            format!(
                "{} ids; valid: 1 to {MAX_COMPARED} comma-separated job ids",
                ids.len()
            ),
        ));
    }
    Ok(ids)
}

/// `GET /v1/compare?jobs=a,b,c`
pub async fn compare(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<CompareQuery>,
) -> ApiResult<Json<Comparison>> {
    Ok(Json(load(&state, &query).await?))
}

/// Loads, judges and ranks the jobs a compare query names; shared by the JSON comparison and
/// its plot, so both read and validate the query the same way.
pub(super) async fn load(state: &AppState, query: &CompareQuery) -> Result<Comparison> {
    let metric: RankMetric = query
        .metric
        .as_deref()
        .unwrap_or("val_acc")
        .parse()
        .map_err(|msg| Error::invalid("metric", msg))?;
    let goal = match query.goal.as_deref() {
        None => metric.natural_goal(),
        Some("max") => Goal::Max,
        Some("min") => Goal::Min,
        Some(other) => {
            return Err(Error::invalid(
                "goal",
                format!("'{other}'; valid: max, min"),
            ));
        }
    };
    let ids = parse_ids(&query.jobs)?;
    let max_points = query.max_points.unwrap_or(200).clamp(3, 10_000);
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        let row = state.jobs.get(id).await?;
        let epochs = state.store.list_epochs(id).await?;
        let mut summary = analysis::compare_job(
            id,
            &row.name,
            row.status.as_str(),
            &epochs,
            metric,
            goal,
            max_points,
        );
        let layers = state.store.list_layer_grads(id, None).await?;
        summary.findings = super::diagnosis::findings_for(&row, &epochs, &layers)?;
        jobs.push(summary);
    }
    jobs.sort_by(|a, b| match (a.best_value, b.best_value) {
        (Some(x), Some(y)) if analysis::better(x, y, goal) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) if analysis::better(y, x, goal) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => std::cmp::Ordering::Equal,
    });
    for (i, job) in jobs.iter_mut().enumerate() {
        job.rank = job.best_value.map(|_| i + 1);
    }
    Ok(Comparison { metric, goal, jobs })
}
