//! `/v1/datasets`: upload CSV files or image archives, or generate synthetic data; list,
//! inspect, and look at image samples.

use axum::Extension;
use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, is_json, read_body};
use super::views::DatasetView;
use crate::catalog::{Catalog, CsvUpload, ImageUpload, SyntheticRequest};
use crate::domain::{Caller, parse_json};
use crate::error::Error;

/// `POST /v1/datasets`: `multipart/form-data` with `name`, `label_column` and a `file` (or
/// `train`, `val` and optional `test` files); or with `name`, an `archive` of images and
/// optional `image_size` and `channels`; or JSON `{"name", "synthetic": {...}}`.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> ApiResult<impl IntoResponse> {
    state.gate.check_upload(&caller).await?;
    let owner = caller.owner.as_deref();
    let content_type = request.headers().get(header::CONTENT_TYPE).cloned();
    let row = if is_json(content_type.as_ref()) {
        let bytes = read_body(request, &state).await?;
        let synthetic: SyntheticRequest = parse_json(&bytes)?;
        state.catalog.add_synthetic(synthetic, owner).await?
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
        match read_upload(&state.catalog, multipart).await? {
            Upload::Csv(upload) => state.catalog.add_csv(*upload, owner).await?,
            Upload::Images(upload) => state.catalog.add_images(upload, owner).await?,
        }
    } else {
        return Err(Error::UnsupportedMediaType {
            message: "upload CSV files or an image archive as multipart/form-data, or send application/json for a synthetic data set".into(),
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

/// What a multipart upload holds.
enum Upload {
    Csv(Box<CsvUpload>),
    Images(ImageUpload),
}

/// The longest text part (`name`, `label_column`, `image_size`, `channels`), in bytes.
const MAX_TEXT_PART_BYTES: usize = 64 * 1024;

/// Reads the parts of an upload: text parts into memory (bounded), file parts streamed to
/// temporary files, so an upload costs memory for what is kept of it, not for its size.
async fn read_upload(catalog: &Catalog, mut multipart: Multipart) -> Result<Upload, ApiError> {
    let mut upload = CsvUpload {
        name: String::new(),
        label_column: String::new(),
        file: None,
        train: None,
        val: None,
        test: None,
    };
    let mut seen_name = false;
    let (mut archive, mut image_size, mut channels) = (None, None, None);
    loop {
        let field = multipart.next_field().await.map_err(multipart_error)?;
        let Some(mut field) = field else { break };
        let part = field.name().unwrap_or("").to_string();
        match part.as_str() {
            "file" | "train" | "val" | "test" | "archive" => {
                let mut file = catalog.upload_file().await?;
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    file.write(&chunk).await?;
                }
                file.finish().await?;
                let slot = match part.as_str() {
                    "file" => &mut upload.file,
                    "train" => &mut upload.train,
                    "val" => &mut upload.val,
                    "test" => &mut upload.test,
                    _ => &mut archive,
                };
                *slot = Some(file);
            }
            "name" => {
                upload.name = read_text(&part, field).await?.trim().to_string();
                seen_name = true;
            }
            "label_column" => {
                upload.label_column = read_text(&part, field).await?.trim().to_string();
            }
            "image_size" => image_size = Some(read_text(&part, field).await?),
            "channels" => channels = Some(read_text(&part, field).await?),
            other => {
                return Err(Error::invalid(
                    other.to_string(),
                    "unknown part; valid: name, label_column, file, train, val, test \
                     (CSV), or name, archive, image_size, channels (images)",
                )
                .into());
            }
        }
    }
    if !seen_name {
        return Err(Error::invalid("name", "give the data set a name").into());
    }
    let Some(archive) = archive else {
        if image_size.is_some() || channels.is_some() {
            return Err(Error::invalid(
                "archive",
                "image_size and channels go with an image 'archive' part; attach the archive",
            )
            .into());
        }
        return Ok(Upload::Csv(Box::new(upload)));
    };
    let csv_part = [
        (!upload.label_column.is_empty()).then_some("label_column"),
        upload.file.as_ref().map(|_| "file"),
        upload.train.as_ref().map(|_| "train"),
        upload.val.as_ref().map(|_| "val"),
        upload.test.as_ref().map(|_| "test"),
    ]
    .into_iter()
    .flatten()
    .next();
    if let Some(part) = csv_part {
        return Err(Error::invalid(
            part,
            "an image 'archive' upload takes only name, archive, image_size and channels; \
             send CSV files in a separate upload",
        )
        .into());
    }
    Ok(Upload::Images(ImageUpload {
        name: upload.name,
        archive,
        image_size,
        channels,
    }))
}

/// A short text part as UTF-8, refused past [`MAX_TEXT_PART_BYTES`].
async fn read_text(
    part: &str,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if bytes.len() + chunk.len() > MAX_TEXT_PART_BYTES {
            return Err(Error::invalid(
                part,
                format!("the '{part}' part is longer than {MAX_TEXT_PART_BYTES} bytes"),
            )
            .into());
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| Error::invalid(part, "must be UTF-8 text").into())
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
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<DatasetList>> {
    let datasets = state
        .catalog
        .list(caller.owner_filter())
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

/// Body of `PATCH /v1/datasets/{id}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetChange {
    /// Share the data set with every token (`true`), or only its owner's (`false`).
    public: bool,
}

/// `PATCH /v1/datasets/{id}`: share a data set with every token, or stop sharing it. Built-in
/// data sets are always shared.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(change): JsonBody<DatasetChange>,
) -> ApiResult<Json<DatasetView>> {
    let row = state
        .catalog
        .find(&id)
        .await?
        .ok_or_else(|| Error::not_found("data set", id.clone()))?;
    if row.source == "builtin" && !change.public {
        return Err(Error::conflict(format!(
            "'{}' is built in and shared with every token; it cannot be made private",
            row.name
        ))
        .into());
    }
    let row = state
        .store
        .set_dataset_public(row.id, change.public)
        .await?
        .ok_or_else(|| Error::not_found("data set", id))?;
    Ok(Json(DatasetView::new(row)?))
}

/// `DELETE /v1/datasets/{id}` (an id or a name): 204; a 409 for a built-in data set or while
/// a job uses it.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.catalog.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/datasets/{id}/samples/{index}.png`: one row of an image data set as a PNG. The
/// router matches the last segment as `{index}`; the `.png` suffix is checked here.
pub async fn sample(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let Some(index) = file.strip_suffix(".png") else {
        return Err(Error::not_found("sample", format!("{file} (samples are <index>.png)")).into());
    };
    let index: usize = index.parse().map_err(|_| {
        Error::invalid(
            "index",
            format!("'{index}' is not a row number; use 0, 1, 2, ..."),
        )
    })?;
    let png = state.catalog.sample_png(&id, index).await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}
