//! The Open Inference Protocol (KServe v2) over REST, beside `/v1`: server and model
//! metadata, health and readiness, and inference with the protocol's JSON tensors, including
//! its binary tensor extension (what `tritonclient[http]` sends by default).
//!
//! A model is a registry name (its `production` alias, else its newest version), a version
//! (`/versions/N`), or a job id. Its one input, `input`, is FP32 rows as the model's data set
//! stores them (`[n, features]`, or `[n, c, h, w]` for images); its outputs are
//! `probabilities` and `logits` (FP32, `[n, labels]`) and `label` (BYTES, `[n]`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiResult;
use super::extract::read_body;
use super::models::version_number;
use crate::error::{Error, Result};
use crate::predict::{OutputOptions, Prediction, Predictor, Resolved, Rows, Selector};

/// The header that splits a binary-extension body into its JSON and its tensors.
const HEADER_LENGTH: &str = "inference-header-content-length";
const OUTPUTS: [&str; 3] = ["probabilities", "logits", "label"];

/// `GET /v2`: server metadata.
pub async fn server() -> Json<Value> {
    Json(json!({
        "name": "trainserve",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": ["binary_tensor_data"],
    }))
}

/// `GET /v2/health/live`.
pub async fn live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready`: as `/readyz`.
pub async fn ready(State(state): State<AppState>) -> Response {
    let ready = state.jobs.readiness().await.ready;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready}))).into_response()
}

fn selector(name: &str, version: Option<&str>) -> Result<Selector> {
    match version {
        Some(version) => Ok(Selector::Version(
            name.to_string(),
            version_number(name, version)?,
        )),
        None => Predictor::selector(name, None),
    }
}

async fn metadata_of(state: &AppState, name: &str, version: Option<&str>) -> Result<Value> {
    let resolved = state
        .predictor
        .resolve(&selector(name, version)?, None)
        .await?;
    let preprocessing = resolved.model.preprocessing();
    let input_shape: Vec<i64> = match preprocessing.dataset_image_shape() {
        Some([c, h, w]) => vec![-1, c as i64, h as i64, w as i64],
        None => vec![-1, preprocessing.n_features() as i64],
    };
    let classes = resolved.model.classes() as i64;
    let versions: Vec<String> = match &resolved.version {
        Some(_) => state
            .store
            .model_versions(&resolved.name)
            .await?
            .iter()
            .map(|v| v.version.to_string())
            .collect(),
        None => vec![version_text(&resolved)],
    };
    Ok(json!({
        "name": resolved.name,
        "versions": versions,
        "platform": "trainserve",
        "inputs": [{"name": "input", "datatype": "FP32", "shape": input_shape}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "logits", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }))
}

fn version_text(resolved: &Resolved) -> String {
    match (resolved.version, resolved.checkpoint_epoch) {
        (Some(version), _) => version.to_string(),
        (None, Some(epoch)) => format!("epoch-{epoch}"),
        (None, None) => String::new(),
    }
}

/// `GET /v2/models/{model}`.
pub async fn metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(metadata_of(&state, &name, None).await?))
}

/// `GET /v2/models/{model}/versions/{version}`.
pub async fn version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(metadata_of(&state, &name, Some(&version)).await?))
}

async fn readiness_of(state: &AppState, name: &str, version: Option<&str>) -> Result<Response> {
    let selector = selector(name, version)?;
    if let Some((name, version)) = state.predictor.warm_version(&selector).await? {
        return Ok(Json(json!({"name": name, "version": version, "ready": true})).into_response());
    }
    // Not loaded yet: start loading it, and say so.
    let predictor = state.predictor.clone();
    let loading = selector.clone();
    tokio::spawn(async move {
        if let Err(err) = predictor.resolve(&loading, None).await {
            tracing::warn!(error = %err, "warming a model for a readiness check failed");
        }
    });
    Err(Error::Unavailable {
        message: format!("model '{name}' is loading; ask again shortly"),
    })
}

/// `GET /v2/models/{model}/ready`: 200 once the model is loaded and warm.
pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(readiness_of(&state, &name, None).await?)
}

/// `GET /v2/models/{model}/versions/{version}/ready`.
pub async fn version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(readiness_of(&state, &name, Some(&version)).await?)
}

/// `POST /v2/models/{model}/infer`.
pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    Ok(infer_with(&state, &name, None, request).await?)
}

/// `POST /v2/models/{model}/versions/{version}/infer`.
pub async fn version_infer(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    Ok(infer_with(&state, &name, Some(&version), request).await?)
}

#[derive(Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Parameters,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Deserialize, Default)]
struct Parameters {
    #[serde(default)]
    binary_data_size: Option<usize>,
    #[serde(default)]
    binary_data: Option<bool>,
    #[serde(default)]
    binary_data_output: Option<bool>,
}

#[derive(Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    parameters: Parameters,
}

#[derive(Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Parameters,
}

async fn infer_with(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    request: Request,
) -> Result<Response> {
    let header_length = request
        .headers()
        .get(HEADER_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| Error::bad_request(format!("{HEADER_LENGTH} is not a number")))
        })
        .transpose()?;
    let body: Bytes = read_body(request, state).await.map_err(|e| e.0)?;
    let (json_part, mut binary) = match header_length {
        Some(n) if n <= body.len() => (&body[..n], &body[n..]),
        Some(n) => {
            return Err(Error::bad_request(format!(
                "{HEADER_LENGTH} is {n} but the body has {} bytes",
                body.len()
            )));
        }
        None => (&body[..], &[][..]),
    };
    let request: InferRequest = crate::domain::parse_json(json_part)?;
    let selector = selector(name, version)?;
    let resolved = state.predictor.resolve(&selector, None).await?;
    let [input] = request.inputs.as_slice() else {
        return Err(Error::invalid(
            "inputs",
            format!(
                "{} inputs; this model takes one, named 'input'",
                request.inputs.len()
            ),
        ));
    };
    if input.name != "input" {
        return Err(Error::invalid(
            "inputs[0].name",
            format!(
                "no input named '{}'; this model's input is 'input'",
                input.name
            ),
        ));
    }
    let (values, count) = input_values(
        input,
        &mut binary,
        resolved.model.preprocessing().n_features(),
    )?;
    let wanted = requested_outputs(&request)?;
    let options = OutputOptions {
        logits: wanted.iter().any(|(name, _)| *name == "logits"),
        top_k: None,
    };
    let predictions = state
        .predictor
        .predict_rows(&resolved.model, Rows::Flat { values, count }, options)
        .await?;
    Ok(respond(&resolved, request.id, &wanted, &predictions))
}

/// The input's values, row-major, and its number of rows; a 422 naming the input when its
/// shape, datatype or data do not fit the model.
fn input_values(
    input: &InputTensor,
    binary: &mut &[u8],
    width: usize,
) -> Result<(Vec<f32>, usize)> {
    let field = "inputs[0]";
    if input.shape.len() < 2 || input.shape.iter().any(|d| *d < 0) {
        return Err(Error::invalid(
            format!("{field}.shape"),
            format!(
                "{:?} is not a batch of rows; valid: [n, {width}] (or [n, c, h, w] for images)",
                input.shape
            ),
        ));
    }
    let count = input.shape[0] as usize;
    let row: usize = input.shape[1..].iter().map(|d| *d as usize).product();
    if row != width {
        return Err(Error::invalid(
            format!("{field}.shape"),
            format!("rows of {row} values; this model expects {width} per row"),
        ));
    }
    if count == 0 || count > crate::predict::MAX_ROWS {
        return Err(Error::invalid(
            format!("{field}.shape"),
            format!("{count} rows; valid: 1 to {}", crate::predict::MAX_ROWS),
        ));
    }
    let size = match input.datatype.as_str() {
        "FP32" => 4,
        "FP64" => 8,
        other => {
            return Err(Error::invalid(
                format!("{field}.datatype"),
                format!("'{other}' is not taken; valid: FP32 (or FP64)"),
            ));
        }
    };
    let n = count * width;
    let values: Vec<f32> = match (input.parameters.binary_data_size, &input.data) {
        (Some(bytes), _) => {
            if bytes != n * size || binary.len() < bytes {
                return Err(Error::invalid(
                    format!("{field}.parameters.binary_data_size"),
                    format!("{bytes} bytes; the shape and datatype need {}", n * size),
                ));
            }
            let (mine, rest) = binary.split_at(bytes);
            *binary = rest;
            if size == 4 {
                mine.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            } else {
                mine.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                    .collect()
            }
        }
        (None, Some(data)) => {
            let mut values = Vec::with_capacity(n);
            flatten(data, &mut values)
                .map_err(|why| Error::invalid(format!("{field}.data"), why))?;
            if values.len() != n {
                return Err(Error::invalid(
                    format!("{field}.data"),
                    format!(
                        "{} values; the shape {:?} needs {n}",
                        values.len(),
                        input.shape
                    ),
                ));
            }
            values
        }
        (None, None) => {
            return Err(Error::invalid(
                format!("{field}.data"),
                "the input has neither data nor parameters.binary_data_size",
            ));
        }
    };
    Ok((values, count))
}

fn flatten(value: &Value, out: &mut Vec<f32>) -> std::result::Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| flatten(item, out)),
        Value::Number(n) => {
            out.push(n.as_f64().unwrap_or(f64::NAN) as f32);
            Ok(())
        }
        other => Err(format!(
            "{other} is not a number; valid: numbers, flat or nested by row"
        )),
    }
}

/// The outputs to answer and whether each goes in binary; all three by default.
fn requested_outputs(request: &InferRequest) -> Result<Vec<(&'static str, bool)>> {
    let binary_default = request.parameters.binary_data_output.unwrap_or(false);
    let Some(outputs) = &request.outputs else {
        return Ok(OUTPUTS.iter().map(|name| (*name, binary_default)).collect());
    };
    outputs
        .iter()
        .enumerate()
        .map(|(i, output)| {
            let name = OUTPUTS
                .iter()
                .find(|known| **known == output.name)
                .ok_or_else(|| {
                    Error::invalid(
                        format!("outputs[{i}].name"),
                        format!(
                            "no output named '{}'; valid: {}",
                            output.name,
                            OUTPUTS.join(", ")
                        ),
                    )
                })?;
            Ok((
                *name,
                output.parameters.binary_data.unwrap_or(binary_default),
            ))
        })
        .collect()
}

/// One output tensor of an answer.
#[derive(Serialize)]
struct OutputTensor {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<OutputData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
}

/// Values written as JSON (f32 written as f32, as `/v1` writes them).
#[derive(Serialize)]
#[serde(untagged)]
enum OutputData {
    Floats(Vec<f32>),
    Labels(Vec<String>),
}

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputTensor>,
}

fn respond(
    resolved: &Resolved,
    id: Option<String>,
    wanted: &[(&'static str, bool)],
    predictions: &[Prediction],
) -> Response {
    let n = predictions.len();
    let classes = resolved.model.classes();
    let mut outputs = Vec::new();
    let mut binary = Vec::new();
    for &(name, as_binary) in wanted {
        let (datatype, shape, data) = match name {
            "probabilities" => (
                "FP32",
                vec![n, classes],
                OutputData::Floats(
                    predictions
                        .iter()
                        .flat_map(|p| p.probabilities.iter().copied())
                        .collect(),
                ),
            ),
            "logits" => (
                "FP32",
                vec![n, classes],
                OutputData::Floats(
                    predictions
                        .iter()
                        .flat_map(|p| p.logits.clone().unwrap_or_default())
                        .collect(),
                ),
            ),
            _ => (
                "BYTES",
                vec![n],
                OutputData::Labels(predictions.iter().map(Prediction::label_text).collect()),
            ),
        };
        let (data, parameters) = if as_binary {
            let start = binary.len();
            match &data {
                OutputData::Floats(floats) => {
                    binary.extend(floats.iter().flat_map(|v| v.to_le_bytes()));
                }
                OutputData::Labels(labels) => {
                    for label in labels {
                        binary.extend((label.len() as u32).to_le_bytes());
                        binary.extend(label.as_bytes());
                    }
                }
            }
            let binary_data_size = binary.len() - start;
            (None, Some(BinarySize { binary_data_size }))
        } else {
            (Some(data), None)
        };
        outputs.push(OutputTensor {
            name,
            datatype,
            shape,
            data,
            parameters,
        });
    }
    let body = InferResponse {
        model_name: &resolved.name,
        model_version: version_text(resolved),
        id,
        outputs,
    };
    let text = serde_json::to_vec(&body).expect("an answer serializes");
    if binary.is_empty() {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(HEADER_LENGTH, HeaderValue::from(text.len()));
    let mut bytes = text;
    bytes.extend(binary);
    (StatusCode::OK, headers, bytes).into_response()
}
