//! `/v1/usage`: bytes on disk by job, data set and weights, with totals.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiResult;
use super::extract::QueryParams;
use crate::domain::Caller;
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

/// The usage report with each owner's bytes and tokens.
#[derive(Serialize)]
pub struct UsageView {
    #[serde(flatten)]
    usage: Usage,
    /// Per owner: its tokens and the bytes its jobs, data sets and weights hold; only the
    /// caller's own owner unless it is `admin`.
    owners: Vec<OwnerUsage>,
}

/// What one owner holds.
#[derive(Serialize)]
pub struct OwnerUsage {
    /// The owner.
    owner: Option<String>,
    /// Its tokens' ids, revoked ones included.
    tokens: Vec<String>,
    /// Bytes of its checkpoints, data sets and weights.
    bytes: u64,
    /// Its storage quota, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    quota_bytes: Option<u64>,
}

/// `GET /v1/usage`: everyone's usage for `admin` (and the open service), else the caller's
/// owner's.
pub async fn usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    QueryParams(query): QueryParams<UsageQuery>,
) -> ApiResult<Json<UsageView>> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Error::invalid("limit", format!("{limit}; valid: 1 to 1000")).into());
    }
    let owner = caller.owner_filter().map(str::to_owned);
    let usage = state
        .jobs
        .usage(&UsageFilter {
            limit,
            owner: owner.clone(),
        })
        .await?;
    let mut tokens_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for token in state.store.list_tokens().await? {
        if owner.is_none() || owner.as_deref() == Some(token.owner.as_str()) {
            tokens_of.entry(token.owner).or_default().push(token.id);
        }
    }
    let meter = state.gate.storage();
    let mut owners = Vec::with_capacity(tokens_of.len());
    for (name, tokens) in tokens_of {
        owners.push(OwnerUsage {
            bytes: meter.bytes_of(&state.store, &name).await?,
            owner: Some(name),
            tokens,
            quota_bytes: caller.quotas.map(|q| q.storage_bytes),
        });
    }
    owners.sort_by_key(|o| std::cmp::Reverse(o.bytes));
    Ok(Json(UsageView { usage, owners }))
}
