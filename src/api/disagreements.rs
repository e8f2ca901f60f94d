//! `GET /v1/compare/disagreements`: the samples one model gets right and another gets wrong.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::error::ApiResult;
use super::extract::QueryParams;
use super::jobs::job_id;
use crate::analysis::{self, DisagreementSets};
use crate::domain::{JobId, JobSpec};
use crate::error::{Error, Result};
use crate::train::dataset::{SplitPlan, split};

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
    let a = state.jobs.get(job_id(&query.a)?).await?;
    let b = state.jobs.get(job_id(&query.b)?).await?;
    if a.dataset_id != b.dataset_id {
        return Err(Error::invalid(
            "b",
            "the two jobs trained on different data sets; compare models of one data set",
        )
        .into());
    }
    let (spec_a, spec_b) = (spec_of(&a)?, spec_of(&b)?);
    let same_split = spec_a.data.val_fraction == spec_b.data.val_fraction
        && spec_a.data.test_fraction == spec_b.data.test_fraction
        && spec_a.data.split_seed == spec_b.data.split_seed;
    if !same_split {
        return Err(Error::invalid("b", "the two jobs split the data differently (data.val_fraction, test_fraction or split_seed)").into());
    }
    let split_name = query.split.unwrap_or_else(|| "test".into());
    let limit = query.limit.unwrap_or(20);
    if limit > 1000 {
        return Err(Error::invalid("limit", format!("{limit}; valid: 0 to 1000")).into());
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
            return Err(
                Error::invalid("split", format!("'{other}'; valid: test, val, train")).into(),
            );
        }
    };
    if rows.is_empty() {
        return Err(Error::invalid(
            "split",
            format!("the {split_name} split of this data set is empty"),
        )
        .into());
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
    Ok(Json(DisagreementView {
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
    }))
}
