//! `/v1/usage`: bytes on disk by job, data set and weights, with totals.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::AppState;
use super::error::ApiResult;
use super::extract::QueryParams;
use crate::error::Error;
use crate::jobs::Usage;
use crate::store::UsageFilter;

/// Query of `GET /v1/usage`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Rows listed per kind, largest first: 1 to 1000 (default 100). Totals count them all.
    limit: Option<i64>,
}

/// `GET /v1/usage`
pub async fn usage(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<UsageQuery>,
) -> ApiResult<Json<Usage>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", format!("{limit}; valid: 1 to 1000")).into());
    }
    Ok(Json(state.jobs.usage(&UsageFilter { limit }).await?))
}
