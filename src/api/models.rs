//! `/v1/models`: the model registry (register versions from jobs or imports, move aliases,
//! list, inspect and delete versions) and predictions by name, alias or version.

use std::collections::BTreeMap;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiResult;
use super::extract::JsonBody;
use crate::domain::Caller;
use crate::error::{Error, Result};
use crate::predict::{BatchConfig, PredictResponse, RegisterRequest, Selector};
use crate::store::{ModelAliasRow, ModelNameRow, ModelVersionRow};

/// A version as the API shows it.
#[derive(Serialize)]
pub struct VersionView {
    name: String,
    version: i64,
    /// `job` or `import`.
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint_epoch: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weights: Option<String>,
    description: String,
    /// The network, as a job spec's `model`.
    model: serde_json::Value,
    /// What a row is: `{"features": [...]}` or `{"image": {"shape": [c, h, w]}}`.
    input: serde_json::Value,
    labels: Vec<serde_json::Value>,
    batching: BatchConfig,
    parameters: i64,
    bytes: i64,
    sha256: String,
    /// Aliases pointing at it.
    aliases: Vec<String>,
    /// Loaded and warmed in this process.
    ready: bool,
    created_at: String,
}

/// A named model as the API shows it.
#[derive(Serialize)]
pub struct ModelView {
    name: String,
    created_at: String,
    /// Alias to version.
    aliases: BTreeMap<String, i64>,
    /// What `POST /v1/models/{name}/predict` serves: `production`, else the newest version.
    default_version: Option<i64>,
    versions: Vec<VersionView>,
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|err| Error::Internal(format!("reading {what}: {err}")))
}

fn version_view(
    state: &AppState,
    row: ModelVersionRow,
    aliases: &[ModelAliasRow],
) -> Result<VersionView> {
    let preprocessing: engine::Preprocessing = parse(&row.preprocessing, "preprocessing")?;
    let input = match preprocessing.dataset_image_shape() {
        Some(shape) => {
            serde_json::json!({"image": {"shape": shape, "pixel_max": preprocessing.pixel_max}})
        }
        None => serde_json::json!({"features": preprocessing.feature_names}),
    };
    Ok(VersionView {
        ready: state.predictor.is_warm(&row.name, row.version),
        aliases: aliases
            .iter()
            .filter(|a| a.version == row.version)
            .map(|a| a.alias.clone())
            .collect(),
        model: parse(&row.model_spec, "a model spec")?,
        batching: parse(&row.serving, "batching")?,
        labels: preprocessing.labels,
        input,
        name: row.name,
        version: row.version,
        source: row.source,
        job: row.job_id,
        checkpoint_epoch: row.checkpoint_epoch,
        weights: row.weights_id,
        description: row.description,
        parameters: row.parameters,
        bytes: row.bytes,
        sha256: row.sha256,
        created_at: row.created_at,
    })
}

async fn model_view(state: &AppState, name: ModelNameRow) -> Result<ModelView> {
    let aliases = state.store.model_aliases(&name.name).await?;
    let rows = state.store.model_versions(&name.name).await?;
    let default_version = aliases
        .iter()
        .find(|a| a.alias == "production")
        .map(|a| a.version)
        .or_else(|| rows.last().map(|v| v.version));
    let versions = rows
        .into_iter()
        .map(|row| version_view(state, row, &aliases))
        .collect::<Result<Vec<_>>>()?;
    Ok(ModelView {
        name: name.name,
        created_at: name.created_at,
        aliases: aliases.into_iter().map(|a| (a.alias, a.version)).collect(),
        default_version,
        versions,
    })
}

/// `POST /v1/models`: registers a version (201 once it is loaded and warm).
pub async fn register(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(request): JsonBody<RegisterRequest>,
) -> ApiResult<impl IntoResponse> {
    let row = state.predictor.register(&caller, request).await?;
    let aliases = state.store.model_aliases(&row.name).await?;
    let location = format!("/v1/models/{}/versions/{}", row.name, row.version);
    let view = version_view(&state, row, &aliases)?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(view),
    ))
}

/// `GET /v1/models`: every named model the caller may see, with versions and aliases.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<serde_json::Value>> {
    let mut models = Vec::new();
    for name in state.store.list_model_names(caller.owner_filter()).await? {
        models.push(model_view(&state, name).await?);
    }
    Ok(Json(serde_json::json!({ "models": models })))
}

/// `GET /v1/models/{model}`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ModelView>> {
    let row = state
        .store
        .model_name(&name)
        .await?
        .ok_or_else(|| Error::not_found("model", name.clone()))?;
    Ok(Json(model_view(&state, row).await?))
}

/// `GET /v1/models/{model}/versions/{version}`.
pub async fn get_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<VersionView>> {
    let version = version_number(&name, &version)?;
    let row = state.predictor.version_row(&name, version).await?;
    let aliases = state.store.model_aliases(&name).await?;
    Ok(Json(version_view(&state, row, &aliases)?))
}

/// `DELETE /v1/models/{model}/versions/{version}`: a 409 while an alias points at it.
pub async fn delete_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let version = version_number(&name, &version)?;
    state.predictor.delete_version(&name, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `PUT /v1/models/{model}/aliases/{alias}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    /// The version the alias points at from now on.
    version: i64,
}

/// `PUT /v1/models/{model}/aliases/{alias}`: creates or moves an alias in one step, after
/// warming the version it will point at.
pub async fn set_alias(
    State(state): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    JsonBody(target): JsonBody<AliasTarget>,
) -> ApiResult<Json<serde_json::Value>> {
    let moved = state
        .predictor
        .set_alias(&name, &alias, target.version)
        .await?;
    Ok(Json(serde_json::json!({
        "name": moved.name,
        "alias": moved.alias,
        "version": moved.version,
        "updated_at": moved.updated_at,
    })))
}

/// `DELETE /v1/models/{model}/aliases/{alias}`.
pub async fn delete_alias(
    State(state): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.predictor.delete_alias(&name, &alias).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/models/{model}/versions/{version}/predict`.
pub async fn predict_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Json<PredictResponse>> {
    let version = version_number(&name, &version)?;
    let request = super::predict::read_request(&state, request).await?;
    if request.checkpoint.is_some() {
        return Err(Error::invalid(
            "checkpoint",
            "checkpoint chooses among a job's checkpoints; this names a registry version",
        )
        .into());
    }
    let selector = Selector::Version(name, version);
    Ok(Json(
        state.predictor.predict_with(&selector, request).await?,
    ))
}

/// A version number from the path; a 404 naming it otherwise.
pub fn version_number(name: &str, version: &str) -> Result<i64> {
    version
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| Error::not_found("model version", format!("{name}/versions/{version}")))
}
