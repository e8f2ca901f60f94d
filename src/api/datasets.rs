//! `/v1/datasets`: upload CSV files or generate synthetic data; list and inspect.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{is_json, read_body};
use super::views::DatasetView;
use crate::catalog::{CsvUpload, SyntheticRequest};
use crate::domain::parse_json;
use crate::error::Error;

/// `POST /v1/datasets`: `multipart/form-data` with `name`, `label_column` and a `file` (or
/// `train`, `val` and optional `test` files), or JSON `{"name", "synthetic": {...}}`.
pub async fn create(
    State(state): State<AppState>,
    request: Request,
) -> ApiResult<impl IntoResponse> {
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let row = if is_json(content_type.as_ref()) {
        let bytes = read_body(request, &state).await?;
        let synthetic: SyntheticRequest = parse_json(&bytes)?;
        state.catalog.add_synthetic(synthetic).await?
    } else if content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"))
    {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|rejection| {
                Error::bad_request(format!(
                    "unreadable multipart body: {}",
                    rejection.body_text()
                ))
            })?;
        let upload = read_upload(multipart).await?;
        state.catalog.add_csv(upload).await?
    } else {
        return Err(Error::UnsupportedMediaType {
            message: "upload CSV files as multipart/form-data, or send application/json for a synthetic data set".into(),
        }
        .into());
    };
    let location = format!("/v1/datasets/{}", row.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(DatasetView::new(row)?),
    ))
}

async fn read_upload(mut multipart: Multipart) -> Result<CsvUpload, ApiError> {
    let mut upload = CsvUpload {
        name: String::new(),
        label_column: String::new(),
        file: None,
        train: None,
        val: None,
        test: None,
    };
    let mut seen_name = false;
    loop {
        let field = multipart.next_field().await.map_err(multipart_error)?;
        let Some(field) = field else { break };
        let part = field.name().unwrap_or("").to_string();
        let bytes = field.bytes().await.map_err(multipart_error)?.to_vec();
        let text = || {
            String::from_utf8(bytes.clone())
                .map_err(|_| Error::invalid(part.clone(), "must be UTF-8 text"))
        };
        match part.as_str() {
            "name" => {
                upload.name = text()?.trim().to_string();
                seen_name = true;
            }
            "label_column" => upload.label_column = text()?.trim().to_string(),
            "file" => upload.file = Some(bytes),
            "train" => upload.train = Some(bytes),
            "val" => upload.val = Some(bytes),
            "test" => upload.test = Some(bytes),
            other => {
                return Err(Error::invalid(
                    other.to_string(),
                    "unknown part; valid: name, label_column, file, train, val, test",
                )
                .into());
            }
        }
    }
    if !seen_name {
        return Err(Error::invalid("name", "give the data set a name").into());
    }
    Ok(upload)
}

fn multipart_error(err: axum::extract::multipart::MultipartError) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(Error::PayloadTooLarge {
            message: "the upload is larger than TRAINSERVE_MAX_UPLOAD_BYTES allows".into(),
        })
    } else {
        ApiError(Error::bad_request(format!(
            "unreadable multipart body: {}",
            err.body_text()
        )))
    }
}

/// Every data set.
#[derive(Serialize)]
pub struct DatasetList {
    datasets: Vec<DatasetView>,
}

/// `GET /v1/datasets`
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<DatasetList>> {
    let datasets = state
        .catalog
        .list()
        .await?
        .into_iter()
        .map(DatasetView::new)
        .collect::<Result<_, _>>()?;
    Ok(Json(DatasetList { datasets }))
}

/// `GET /v1/datasets/{id}` (an id or a name)
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<DatasetView>> {
    let row = state
        .catalog
        .find(&id)
        .await?
        .ok_or_else(|| Error::not_found("data set", id))?;
    Ok(Json(DatasetView::new(row)?))
}
