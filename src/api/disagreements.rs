//! `GET /v1/compare/disagreements`: the samples one model gets right and another gets wrong.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::AppState;
use super::error::ApiResult;
use super::extract::QueryParams;
use super::jobs::job_id;
use crate::analysis::plot::{self, ImageFormat, SampleTile, TileSection};
use crate::analysis::{self, DisagreementSets};
use crate::domain::{JobId, JobSpec};
use crate::error::{Error, Result};
use data::{SplitPlan, Table, sample_rgb, split};

/// Query of `GET /v1/compare/disagreements`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisagreementQuery {
    /// Model A (a job id).
    a: String,
    /// Model B (a job id) on the same data set and split.
    b: String,
    /// test (default), val or train.
    split: Option<String>,
    /// Most samples listed per side (default 20, at most 1000).
    limit: Option<usize>,
}

/// Both models' best checkpoints judged on the same rows.
#[derive(Serialize)]
pub struct DisagreementView {
    a: ModelRef,
    b: ModelRef,
    split: String,
    /// Where each sample's image is, when the data set holds images (`{index}` is the row).
    sample_url: Option<String>,
    #[serde(flatten)]
    sets: DisagreementSets,
}

/// A compared model.
#[derive(Serialize)]
pub struct ModelRef {
    job_id: JobId,
    name: String,
    checkpoint_epoch: i64,
}

fn spec_of(row: &crate::store::JobRow) -> Result<JobSpec> {
    serde_json::from_str(&row.spec).map_err(|err| Error::internal("reading a spec", err))
}

/// `GET /v1/compare/disagreements?a=…&b=…&split=test`
pub async fn disagreements(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<DisagreementQuery>,
) -> ApiResult<Json<DisagreementView>> {
    let (view, _) = load(&state, query).await?;
    Ok(Json(view))
}

/// Judges both models on the split the query names; shared by the JSON answer and its image
/// grid. Returns the data set's table too, for the images.
async fn load(
    state: &AppState,
    query: DisagreementQuery,
) -> Result<(DisagreementView, Arc<Table>)> {
    let a = state.jobs.get(job_id(&query.a)?).await?;
    let b = state.jobs.get(job_id(&query.b)?).await?;
    if a.dataset_id != b.dataset_id {
        return Err(Error::invalid(
            "b",
            "the two jobs trained on different data sets; compare models of one data set",
        ));
    }
    let (spec_a, spec_b) = (spec_of(&a)?, spec_of(&b)?);
    let same_split = spec_a.data.val_fraction == spec_b.data.val_fraction
        && spec_a.data.test_fraction == spec_b.data.test_fraction
        && spec_a.data.split_seed == spec_b.data.split_seed;
    if !same_split {
        return Err(Error::invalid(
            "b",
            "the two jobs split the data differently (data.val_fraction, test_fraction or split_seed)",
        ));
    }
    let split_name = query.split.unwrap_or_else(|| "test".into());
    let limit = query.limit.unwrap_or(20);
    if limit > 1000 {
        return Err(Error::invalid(
            "limit",
            format!("{limit}; valid: 0 to 1000"),
        ));
    }
    let table = state.catalog.load(a.dataset_id).await?;
    let plan = SplitPlan {
        val_fraction: spec_a.data.val_fraction,
        test_fraction: spec_a.data.test_fraction,
        seed: spec_a.data.split_seed,
    };
    let indices = split(&table, &plan)?;
    let rows = match split_name.as_str() {
        "test" => indices.test,
        "val" => indices.val,
        "train" => indices.train,
        other => {
            return Err(Error::invalid(
                "split",
                format!("'{other}'; valid: test, val, train"),
            ));
        }
    };
    if rows.is_empty() {
        return Err(Error::invalid(
            "split",
            format!("the {split_name} split of this data set is empty"),
        ));
    }
    let raw: Vec<Vec<f32>> = rows.iter().map(|&i| table.row(i).to_vec()).collect();
    let truth: Vec<u32> = rows.iter().map(|&i| table.labels[i]).collect();
    let (epoch_a, answers_a) = state.predictor.classify_rows(&a, raw.clone()).await?;
    let (epoch_b, answers_b) = state.predictor.classify_rows(&b, raw).await?;
    let sets = analysis::disagreements(
        &rows,
        &truth,
        &answers_a,
        &answers_b,
        |c| table.label_json(c as u32),
        limit,
    );
    let view = DisagreementView {
        a: ModelRef {
            job_id: a.id,
            name: a.name,
            checkpoint_epoch: epoch_a,
        },
        b: ModelRef {
            job_id: b.id,
            name: b.name,
            checkpoint_epoch: epoch_b,
        },
        split: split_name,
        sample_url: table
            .image_shape
            .map(|_| format!("/v1/datasets/{}/samples/{{index}}.png", a.dataset_id)),
        sets,
    };
    Ok((view, table))
}

/// Most samples per side an image grid shows.
const MAX_GRID_SAMPLES: usize = 48;

fn label_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn grid(
    state: AppState,
    mut query: DisagreementQuery,
    format: ImageFormat,
) -> ApiResult<Response> {
    let limit = *query.limit.get_or_insert(12);
    if limit > MAX_GRID_SAMPLES {
        return Err(Error::invalid(
            "limit",
            format!("{limit}; valid: 0 to {MAX_GRID_SAMPLES} samples per side in an image"),
        )
        .into());
    }
    let (view, table) = load(&state, query).await?;
    if table.image_shape.is_none() {
        return Err(Error::invalid(
            "a",
            "the data set has no images; GET /v1/compare/disagreements lists the samples as JSON",
        )
        .into());
    }
    let tiles = |side: &[analysis::Disagreement]| -> Vec<SampleTile> {
        side.iter()
            .filter_map(|d| {
                let (width, height, rgb) = sample_rgb(&table, d.index)?;
                Some(SampleTile {
                    index: d.index,
                    width,
                    height,
                    rgb,
                    truth: label_text(&d.true_label),
                    a: (label_text(&d.a.label), d.a.confidence),
                    b: (label_text(&d.b.label), d.b.confidence),
                })
            })
            .collect()
    };
    let sets = &view.sets;
    let sections = vec![
        TileSection {
            heading: format!(
                "A right, B wrong: {} of {}",
                sets.a_right_b_wrong.len(),
                sets.a_right_b_wrong_count
            ),
            tiles: tiles(&sets.a_right_b_wrong),
        },
        TileSection {
            heading: format!(
                "B right, A wrong: {} of {}",
                sets.b_right_a_wrong.len(),
                sets.b_right_a_wrong_count
            ),
            tiles: tiles(&sets.b_right_a_wrong),
        },
    ];
    let title = format!(
        "A: {} vs B: {}",
        truncate_name(&view.a.name),
        truncate_name(&view.b.name)
    );
    let subtitle = format!(
        "{} split, {} samples; accuracy A {:.3}, B {:.3}; most confident mistakes first",
        view.split, sets.compared, sets.a_accuracy, sets.b_accuracy
    );
    super::plots::image(format, move |format| {
        plot::disagreement_grid(&title, &subtitle, &sections, format)
    })
    .await
}

fn truncate_name(name: &str) -> String {
    if name.chars().count() <= 40 {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(39).collect::<String>())
    }
}

/// `GET /v1/compare/disagreements.svg?a=…&b=…`
pub async fn grid_svg(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<DisagreementQuery>,
) -> ApiResult<Response> {
    grid(state, query, ImageFormat::Svg).await
}

/// `GET /v1/compare/disagreements.png?a=…&b=…`
pub async fn grid_png(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<DisagreementQuery>,
) -> ApiResult<Response> {
    grid(state, query, ImageFormat::Png).await
}
