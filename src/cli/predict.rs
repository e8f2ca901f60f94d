//! `trainserve predict MODEL --input rows.csv | --image cat.png`: `POST
//! /v1/models/{model}/predict` with CSV rows as `inputs`, or images as multipart `image` parts.

use std::path::{Path, PathBuf};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use super::Outcome;
use super::client::{CliError, Client, Connection, read_input, segment};
use super::table::{Table, cell, metric};

/// `trainserve predict MODEL (--input rows.csv | --image a.png --image b.png)`
#[derive(Clone, Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["input", "image"])))]
pub struct PredictArgs {
    /// A job's id, or a registry model: `name`, `name@alias` or `name/versions/N`.
    pub(crate) model: String,
    /// A CSV of raw feature values, one row per line in the data set's column order; a header
    /// line is skipped (`-` reads standard input).
    #[arg(long)]
    pub(crate) input: Option<PathBuf>,
    /// A PNG or JPEG image, for models trained on images; repeat for more.
    #[arg(long)]
    pub(crate) image: Vec<PathBuf>,
    /// A job's checkpoint: best (the server's default), latest, or an epoch number.
    #[arg(long)]
    pub(crate) checkpoint: Option<String>,
    /// Also show each row's k most probable labels.
    #[arg(long)]
    pub(crate) top_k: Option<u32>,
    #[command(flatten)]
    pub(crate) connection: Connection,
}

/// Sends the rows or images and prints one prediction per row.
pub(crate) async fn predict(client: &Client, args: &PredictArgs) -> Result<Outcome, CliError> {
    let path = predict_path(&args.model);
    let (answer, row_names) = match &args.input {
        Some(csv) => {
            let rows = parse_rows(&String::from_utf8_lossy(&read_input(csv)?), csv)?;
            let names: Vec<String> = (1..=rows.len()).map(|row| row.to_string()).collect();
            let mut body = json!({ "inputs": rows });
            if let Some(checkpoint) = &args.checkpoint {
                body["checkpoint"] = checkpoint_value(checkpoint);
            }
            if let Some(k) = args.top_k {
                body["top_k"] = json!(k);
            }
            let bytes = serde_json::to_vec(&body)
                .map_err(|err| CliError::BadInput(format!("cannot encode the rows: {err}")))?;
            (client.post_json(&path, bytes).await?, names)
        }
        None => {
            if args.top_k.is_some() {
                return Err(CliError::BadInput(
                    "--top-k applies to --input rows; images are sent as a form, which has no top_k"
                        .to_string(),
                ));
            }
            let mut form = Form::new();
            for image in &args.image {
                form = form.part("image", image_part(image)?);
            }
            if let Some(checkpoint) = &args.checkpoint {
                form = form.text("checkpoint", checkpoint.clone());
            }
            let names: Vec<String> = args.image.iter().map(|p| p.display().to_string()).collect();
            (client.post_form(&path, form).await?, names)
        }
    };
    let response = answer.body;
    if args.connection.json {
        outln!("{response}");
    } else {
        out!("{}", render(&response, &row_names, args.top_k.is_some()));
    }
    Ok(Outcome::Succeeded)
}

/// The predict route of a model: a registry version (`name/versions/N`) has its own.
fn predict_path(model: &str) -> String {
    match model.split_once("/versions/") {
        Some((name, version)) => format!(
            "/v1/models/{}/versions/{}/predict",
            segment(name),
            segment(version)
        ),
        None => format!("/v1/models/{}/predict", segment(model)),
    }
}

/// `12` as the epoch number the API takes; anything else (`best`, `latest`) as text.
fn checkpoint_value(text: &str) -> Value {
    match text.parse::<u64>() {
        Ok(epoch) => json!(epoch),
        Err(_) => json!(text),
    }
}

fn image_part(path: &Path) -> Result<Part, CliError> {
    let bytes = read_input(path)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_string());
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let mime = match extension.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        _ => "application/octet-stream",
    };
    Part::bytes(bytes)
        .file_name(name)
        .mime_str(mime)
        .map_err(|err| CliError::BadInput(format!("{}: {err}", path.display())))
}

/// The rows of a CSV of numbers. A first line that is not all numbers is a header and
/// skipped; blank lines are skipped; every other line must hold as many numbers as the first.
fn parse_rows(text: &str, path: &Path) -> Result<Vec<Vec<f64>>, CliError> {
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut seen_a_line = false;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line
            .split(',')
            .map(|field| field.trim().trim_matches('"').trim())
            .collect();
        let numbers: Vec<Option<f64>> = fields
            .iter()
            .map(|field| field.parse::<f64>().ok().filter(|value| value.is_finite()))
            .collect();
        let is_first = !seen_a_line;
        seen_a_line = true;
        if is_first && numbers.iter().any(Option::is_none) {
            continue;
        }
        let at = |column: usize| format!("{} line {}, column {column}", path.display(), index + 1);
        let mut row = Vec::with_capacity(fields.len());
        for (column, (field, number)) in fields.iter().zip(numbers).enumerate() {
            match number {
                Some(value) => row.push(value),
                None => {
                    return Err(CliError::BadInput(format!(
                        "{}: '{field}' is not a finite number",
                        at(column + 1)
                    )));
                }
            }
        }
        if let Some(first) = rows.first()
            && first.len() != row.len()
        {
            return Err(CliError::BadInput(format!(
                "{} line {} has {} values, the first row {}",
                path.display(),
                index + 1,
                row.len(),
                first.len()
            )));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(CliError::BadInput(format!(
            "{} holds no rows of numbers",
            path.display()
        )));
    }
    Ok(rows)
}

/// One line per prediction: the row (or image), its label and confidence, and the top k.
fn render(response: &Value, row_names: &[String], top_k: bool) -> String {
    let mut header = vec!["ROW", "LABEL", "CONFIDENCE"];
    if top_k {
        header.push("TOP K");
    }
    let mut table = Table::new(&header);
    let predictions = response["predictions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (index, prediction) in predictions.iter().enumerate() {
        let mut cells = vec![
            row_names
                .get(index)
                .cloned()
                .unwrap_or_else(|| (index + 1).to_string()),
            cell(&prediction["label"]),
            metric(&prediction["confidence"]),
        ];
        if top_k {
            let ranked: Vec<String> = prediction["top_k"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|entry| {
                    format!(
                        "{} {}",
                        cell(&entry["label"]),
                        metric(&entry["probability"])
                    )
                })
                .collect();
            cells.push(ranked.join(", "));
        }
        table.row(cells);
    }
    let mut text = format!("model {}", cell(&response["model"]));
    if let Some(version) = response["version"].as_i64() {
        text.push_str(&format!(" version {version}"));
    }
    if let Some(epoch) = response["checkpoint_epoch"].as_i64() {
        text.push_str(&format!(", checkpoint of epoch {epoch}"));
    }
    text.push('\n');
    text.push_str(&table.render());
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{parse_rows, predict_path};

    #[test]
    fn a_header_line_is_skipped_and_rows_become_numbers() {
        let rows = parse_rows("x,y\n0.5, -0.25\n\n\"1\",2e-1\n", Path::new("rows.csv")).unwrap();
        assert_eq!(rows, vec![vec![0.5, -0.25], vec![1.0, 0.2]]);
    }

    #[test]
    fn a_word_among_the_rows_is_named_by_line_and_column() {
        let err = parse_rows("1,2\n3,abc\n", Path::new("rows.csv")).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            format!("{err:?}").contains("rows.csv line 2, column 2: 'abc' is not a finite number")
        );
        let err = parse_rows("1,2\n3,inf\n", Path::new("rows.csv")).unwrap_err();
        assert!(format!("{err:?}").contains("line 2, column 2: 'inf' is not a finite number"));
        let err = parse_rows("1,2\n3\n", Path::new("rows.csv")).unwrap_err();
        assert!(format!("{err:?}").contains("line 2 has 1 values, the first row 2"));
        let err = parse_rows("a,b\n\n", Path::new("rows.csv")).unwrap_err();
        assert!(format!("{err:?}").contains("holds no rows"));
    }

    #[test]
    fn a_registry_version_goes_to_its_own_route() {
        assert_eq!(predict_path("digits"), "/v1/models/digits/predict");
        assert_eq!(
            predict_path("digits@production"),
            "/v1/models/digits%40production/predict"
        );
        assert_eq!(
            predict_path("digits/versions/2"),
            "/v1/models/digits/versions/2/predict"
        );
    }
}
