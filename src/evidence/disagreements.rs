//! The samples one model gets right and another gets wrong, judged on one split.

use std::sync::Arc;

use serde::Serialize;

use crate::analysis::plot::{SampleTile, TileSection};
use crate::analysis::{self, DisagreementSets};
use crate::catalog::Catalog;
use crate::domain::{JobId, JobSpec};
use crate::error::{Error, Result};
use crate::jobs::Jobs;
use crate::predict::Predictor;
use data::{SplitPlan, Table, sample_rgb, split};

/// Both models' best checkpoints judged on the same rows.
#[derive(Serialize)]
pub struct DisagreementView {
    /// Model A.
    pub a: ModelRef,
    /// Model B.
    pub b: ModelRef,
    /// The split judged.
    pub split: String,
    /// Where each sample's image is, when the data set holds images (`{index}` is the row).
    pub sample_url: Option<String>,
    /// The samples each side gets right and the other wrong.
    #[serde(flatten)]
    pub sets: DisagreementSets,
}

/// A compared model.
#[derive(Serialize)]
pub struct ModelRef {
    /// The job.
    pub job_id: JobId,
    /// Its name.
    pub name: String,
    /// The checkpoint judged.
    pub checkpoint_epoch: i64,
}

fn spec_of(row: &crate::store::JobRow) -> Result<JobSpec> {
    serde_json::from_str(&row.spec).map_err(|err| Error::internal("reading a spec", err))
}

/// Judges the best checkpoints of jobs `a` and `b` on one split (`test`, `val` or `train`),
/// listing at most `limit` samples per side; errors name the query fields `b`, `split` and
/// `limit`. Returns the data set's table too, for the images.
pub async fn disagreements(
    jobs: &Jobs,
    catalog: &Catalog,
    predictor: &Predictor,
    a: JobId,
    b: JobId,
    split_name: Option<String>,
    limit: Option<usize>,
) -> Result<(DisagreementView, Arc<Table>)> {
    let a = jobs.get(a).await?;
    let b = jobs.get(b).await?;
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
    let split_name = split_name.unwrap_or_else(|| "test".into());
    let limit = limit.unwrap_or(20);
    if limit > 1000 {
        return Err(Error::invalid(
            "limit",
            format!("{limit}; valid: 0 to 1000"),
        ));
    }
    let table = catalog.load(a.dataset_id).await?;
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
    let (epoch_a, answers_a) = predictor.classify_rows(&a, raw.clone()).await?;
    let (epoch_b, answers_b) = predictor.classify_rows(&b, raw).await?;
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

/// What a disagreement image grid shows: a title, a subtitle and one section per side.
pub struct GridDrawing {
    /// "A: … vs B: …".
    pub title: String,
    /// The split, the sample count and both accuracies.
    pub subtitle: String,
    /// A right and B wrong, then B right and A wrong.
    pub sections: Vec<TileSection>,
}

fn label_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn truncate_name(name: &str) -> String {
    if name.chars().count() <= 40 {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(39).collect::<String>())
    }
}

/// The tiles of a disagreement grid, with the samples' images from `table` (which must hold
/// images; a sample without one is left out).
pub fn grid_drawing(view: &DisagreementView, table: &Table) -> GridDrawing {
    let tiles = |side: &[analysis::Disagreement]| -> Vec<SampleTile> {
        side.iter()
            .filter_map(|d| {
                let (width, height, rgb) = sample_rgb(table, d.index)?;
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
    GridDrawing {
        title: format!(
            "A: {} vs B: {}",
            truncate_name(&view.a.name),
            truncate_name(&view.b.name)
        ),
        subtitle: format!(
            "{} split, {} samples; accuracy A {:.3}, B {:.3}; most confident mistakes first",
            view.split, sets.compared, sets.a_accuracy, sets.b_accuracy
        ),
        sections,
    }
}
