//! `/v1/tokens`: admin tokens make, list and revoke tokens over HTTP (the `tokens` command
//! does the same on the data folder, and makes the first one).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiResult;
use super::extract::JsonBody;
use crate::access::{TokenRequest, TokenView};
use crate::domain::{QuotaOverrides, Scope};
use crate::error::{Error, Result};

/// Body of `POST /v1/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it may do.
    scopes: Vec<Scope>,
    /// A name for people.
    #[serde(default)]
    name: Option<String>,
    /// Share resources with the tokens of this owner.
    #[serde(default)]
    owner: Option<String>,
    /// Its own quotas.
    #[serde(default)]
    quotas: QuotaOverrides,
}

/// A new token: the only time its secret is shown.
#[derive(Serialize)]
pub struct CreatedToken {
    /// `tsk_<id>_<secret>`: send as `Authorization: Bearer <token>`.
    token: String,
    #[serde(flatten)]
    view: TokenView,
}

/// `POST /v1/tokens`
pub async fn create(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<NewToken>,
) -> ApiResult<impl IntoResponse> {
    let (token, row) = state
        .gate
        .create_token(TokenRequest {
            name: request.name,
            owner: request.owner,
            scopes: request.scopes,
            quotas: request.quotas,
        })
        .await
        .map_err(|err| match err {
            Error::Invalid { field, message } if field == "scope" => {
                Error::invalid("scopes", message)
            }
            other => other,
        })?;
    let location = format!("/v1/tokens/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CreatedToken {
            token,
            view: TokenView::new(&row)?,
        }),
    ))
}

/// `GET /v1/tokens`: every token, never a secret.
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let tokens = state
        .store
        .list_tokens()
        .await?
        .iter()
        .map(TokenView::new)
        .collect::<Result<Vec<_>>>()?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

/// `DELETE /v1/tokens/{id}`: revokes a token; it is refused from the next request on.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.gate.revoke_token(&id).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(match state.store.get_token(&id).await? {
        Some(_) => Error::conflict(format!("token {id} is already revoked")),
        None => Error::not_found("token", id),
    }
    .into())
}
