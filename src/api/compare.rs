//! `/v1/compare`: rank any set of jobs by the best epoch of a metric and judge each one.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::error::ApiResult;
use super::extract::QueryParams;
use super::jobs::job_id;
use crate::analysis::Comparison;
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
    crate::evidence::comparison(&state.jobs, &state.store, &ids, metric, goal, max_points).await
}
