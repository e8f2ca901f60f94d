//! A study's report: every question's evidence read back, its plots drawn (SVG for the HTML
//! file, PNG for the Markdown's zip) on the blocking pool, and the document written out.

use std::io::{Cursor, Write};

use serde_json::Value;

use super::document::{self, Document, Figure, Section};
use super::findings::{self, pct};
use super::gather::{self, QuestionEvidence, Run, value_text};
use super::{Studies, plan_of};
use crate::analysis::plot::{self, ImageFormat, NoiseSeries};
use crate::domain::{RankMetric, StudyKind};
use crate::error::{Error, Result};
use crate::evidence::{self, DisagreementView, GridDrawing};
use crate::store::StudyRow;

/// Which form of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// One self-contained HTML file.
    Html,
    /// Markdown linking `plots/*.png`.
    Markdown,
    /// The Markdown and its PNG plots in a zip.
    Zip,
}

impl ReportFormat {
    /// The content type of the report in this form.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Html => "text/html; charset=utf-8",
            ReportFormat::Markdown => "text/markdown; charset=utf-8",
            ReportFormat::Zip => "application/zip",
        }
    }
}

/// Most samples per side a report shows.
const SAMPLES_PER_SIDE: usize = 12;

/// What a question's plots need beyond its evidence.
struct Extras {
    noise: Vec<NoiseSeries>,
    samples: Option<(DisagreementView, Option<GridDrawing>)>,
}

/// The report of a study in `format`: (content type, bytes).
pub(super) async fn render(
    studies: &Studies,
    row: &StudyRow,
    format: ReportFormat,
) -> Result<(&'static str, Vec<u8>)> {
    let view = studies.view(row, false).await?;
    let plan = plan_of(row)?;
    let created = studies.created_parts(row.id).await?;
    let mut prepared = Vec::new();
    for question in gather::questions(&plan) {
        let Some(evidence) = gather::question(studies, row, &plan, &created, question).await?
        else {
            continue;
        };
        let extras = extras(studies, &evidence).await?;
        prepared.push((evidence, extras));
    }
    let meta = vec![
        ("study".to_string(), row.id.to_string()),
        ("question".to_string(), row.kind.clone()),
        ("data set".to_string(), row.dataset.clone()),
        ("budget".to_string(), row.budget.clone()),
        ("status".to_string(), view.status.to_string()),
        (
            "runs ended".to_string(),
            format!(
                "{} of {}",
                view.progress.trials_done, view.progress.trials_total
            ),
        ),
        ("created".to_string(), row.created_at.clone()),
    ];
    let title = row.name.clone();
    let image = match format {
        ReportFormat::Html => ImageFormat::Svg,
        ReportFormat::Markdown | ReportFormat::Zip => ImageFormat::Png,
    };
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        let draw = format != ReportFormat::Markdown;
        let mut sections = Vec::new();
        for (evidence, extras) in &prepared {
            sections.push(section(evidence, extras, draw.then_some(image))?);
        }
        let doc = Document {
            title,
            meta,
            sections,
        };
        match format {
            ReportFormat::Html => Ok(document::html(&doc).into_bytes()),
            ReportFormat::Markdown => Ok(document::markdown(&doc).into_bytes()),
            ReportFormat::Zip => zip(&doc),
        }
    })
    .await
    .map_err(|err| Error::internal("writing a report", err))??;
    Ok((format.content_type(), bytes))
}

async fn extras(studies: &Studies, evidence: &QuestionEvidence) -> Result<Extras> {
    let mut noise = Vec::new();
    if evidence.question == StudyKind::BatchSize {
        for run in &evidence.runs {
            let batches = studies.store.list_steps(run.job.id, 1, i64::MAX).await?;
            noise.push(NoiseSeries::from_steps(
                &run.label,
                &batches,
                &run.epochs,
                600,
            ));
        }
    }
    let ranked: Vec<&Run> = {
        let mut runs: Vec<&Run> = evidence
            .runs
            .iter()
            .filter(|r| r.best().is_some())
            .collect();
        runs.sort_by(|a, b| {
            let (x, y) = (
                a.best().map_or(0.0, |e| e.val_acc),
                b.best().map_or(0.0, |e| e.val_acc),
            );
            y.total_cmp(&x)
        });
        runs
    };
    let samples = match (ranked.first(), ranked.last()) {
        (Some(best), Some(worst)) if best.job.id != worst.job.id => {
            match evidence::disagreements(
                &studies.jobs,
                &studies.catalog,
                &studies.predictor,
                best.job.id,
                worst.job.id,
                Some("test".into()),
                Some(SAMPLES_PER_SIDE),
            )
            .await
            {
                Ok((mut view, table)) => {
                    view.a.name.clone_from(&best.label);
                    view.b.name.clone_from(&worst.label);
                    let grid = table
                        .image_shape
                        .map(|_| evidence::grid_drawing(&view, &table));
                    Some((view, grid))
                }
                // A run without a checkpoint, or runs on different splits: no samples.
                Err(err) => {
                    tracing::debug!(error = %err, "no disagreements for a study report");
                    None
                }
            }
        }
        _ => None,
    };
    Ok(Extras { noise, samples })
}

fn section(
    evidence: &QuestionEvidence,
    extras: &Extras,
    image: Option<ImageFormat>,
) -> Result<Section> {
    let answer = findings::answer(evidence);
    let ended = evidence
        .runs
        .iter()
        .filter(|r| r.job.status.is_terminal())
        .count();
    let answer_text = if ended < evidence.runs.len() {
        format!(
            "(Still running: {ended} of {} runs have ended; the answer may change.) {}",
            evidence.runs.len(),
            answer.answer
        )
    } else {
        answer.answer.clone()
    };
    let id = evidence.question.as_str().to_string();
    let figures = match image {
        Some(format) => figures(&id, evidence, extras, format)?,
        None => plot_names(&id, evidence, extras),
    };
    Ok(Section {
        id,
        question: evidence.question.question().to_string(),
        answer: answer_text,
        experiment: experiment(evidence),
        base_spec: serde_json::to_string_pretty(&evidence.spec.base).unwrap_or_default(),
        runs: answer.runs,
        figures,
        findings: evidence
            .runs
            .iter()
            .map(|r| {
                let notes = r
                    .findings
                    .iter()
                    .filter(|f| f.kind != "healthy")
                    .map(|f| f.summary.clone())
                    .collect();
                (r.label.clone(), notes)
            })
            .collect(),
        samples: match &extras.samples {
            Some((view, None)) => Some(sample_rows(view)),
            _ => None,
        },
    })
}

/// What the experiment varied, on which data, and what every run shared.
fn experiment(evidence: &QuestionEvidence) -> Vec<String> {
    let mut lines = Vec::new();
    let varied: Vec<String> = evidence
        .spec
        .axes
        .iter()
        .map(|(path, axis)| match axis {
            crate::domain::Axis::Values(values) => {
                let names = evidence.part.value_labels.get(path);
                let shown: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        names
                            .and_then(|n| n.get(i).cloned())
                            .unwrap_or_else(|| value_text(v))
                    })
                    .collect();
                format!("{path} over {}", shown.join(", "))
            }
            crate::domain::Axis::Distribution(_) => format!("{path} (sampled)"),
        })
        .collect();
    let mut sentence = format!(
        "Varied: {}; {} runs",
        varied.join("; "),
        evidence.runs.len()
    );
    if evidence.spec.repeats > 1 {
        sentence.push_str(&format!(
            ", each setting over {} seeds",
            evidence.spec.repeats
        ));
    }
    lines.push(sentence + ".");
    if let (Some(split), Some(run)) = (evidence.split, evidence.runs.first()) {
        lines.push(format!(
            "Data: {}, {} training, {} validation and {} test rows (a stratified split with seed {}). Each run's figures are read at its epoch of best validation accuracy; the test split is never used to choose.",
            evidence.dataset, split.train, split.val, split.test, run.spec.data.split_seed
        ));
    }
    let base = &evidence.spec.base;
    let training = &base["training"];
    lines.push(format!(
        "Shared by every run: model {}, optimizer {} (learning rate {}), {} epochs, batch size {}, seed {}.",
        model_text(&base["model"]),
        training["optimizer"]["kind"].as_str().unwrap_or("?"),
        value_text(&training["optimizer"]["lr"]),
        value_text(&training["epochs"]),
        value_text(&training["batch_size"]),
        value_text(&training["seed"]),
    ) + " An axis overrides the field it names.");
    lines.push(format!(
        "The runs are the trials of sweep {} (GET /v1/sweeps/{}).",
        evidence.sweep.id, evidence.sweep.id
    ));
    if let Some(source) = &evidence.source {
        lines.push(format!(
            "The source model is job {}, trained on {} for {} epochs{}.",
            source.job.id,
            source.spec.dataset,
            source.epochs.len(),
            source.best().map_or(String::new(), |b| format!(
                " ({} best validation accuracy)",
                pct(b.val_acc)
            ))
        ));
    }
    lines
}

fn model_text(model: &Value) -> String {
    match model["kind"].as_str() {
        Some("mlp") => format!(
            "MLP of depth {} and width {} ({})",
            value_text(&model["depth"]),
            value_text(&model["width"]),
            model["activation"].as_str().unwrap_or("relu")
        ),
        Some("cnn") => {
            let channels: Vec<String> = model["blocks"]
                .as_array()
                .map(|b| b.iter().map(|b| value_text(&b["channels"])).collect())
                .unwrap_or_default();
            format!("CNN with conv blocks of {} channels", channels.join(", "))
        }
        Some(other) => other.to_string(),
        None => "?".into(),
    }
}

/// The figures a section has, named but not drawn (Markdown without its zip).
fn plot_names(id: &str, evidence: &QuestionEvidence, extras: &Extras) -> Vec<Figure> {
    plans(id, evidence, extras)
        .into_iter()
        .map(|(file, caption, _)| Figure {
            file,
            caption,
            bytes: Vec::new(),
        })
        .collect()
}

type Draw<'a> = Box<dyn Fn(ImageFormat) -> Result<Vec<u8>> + 'a>;

fn plans<'a>(
    id: &str,
    evidence: &'a QuestionEvidence,
    extras: &'a Extras,
) -> Vec<(String, String, Draw<'a>)> {
    let mut plans: Vec<(String, String, Draw<'a>)> = Vec::new();
    plans.push((
        format!("{id}-curves"),
        "Validation accuracy by epoch, one line per run (the legend lists the best first).".into(),
        Box::new(|f| plot::overlay_curves(&evidence.comparison, f)),
    ));
    let axes: Vec<&str> = evidence
        .spec
        .axes
        .keys()
        .map(|p| p.rsplit('.').next().unwrap_or(p))
        .collect();
    plans.push((
        format!("{id}-sweep"),
        if axes.len() == 2 {
            format!(
                "Mean best validation accuracy for each {} × {}.",
                axes[0], axes[1]
            )
        } else {
            format!("Best validation accuracy against {}.", axes.join(", "))
        },
        Box::new(|f| plot::sweep_chart(evidence.question.as_str(), &evidence.summary, f)),
    ));
    match evidence.question {
        StudyKind::Epochs => plans.push((
            format!("{id}-val-loss"),
            "Validation loss by epoch: where it turns up while training loss falls, the run overfits.".into(),
            Box::new(|f| {
                let mut losses = evidence.comparison.clone();
                losses.metric = RankMetric::ValLoss;
                plot::overlay_curves(&losses, f)
            }),
        )),
        StudyKind::BatchSize => plans.push((
            format!("{id}-noise"),
            "Step losses against training progress, and each epoch's step-loss coefficient of variation.".into(),
            Box::new(|f| plot::step_noise(&extras.noise, f)),
        )),
        StudyKind::Gradients => {
            for (i, run) in evidence.runs.iter().enumerate() {
                plans.push((
                    format!("{id}-gradients-{i}"),
                    format!("Gradient norm of each layer by epoch (log scale): {}.", run.label),
                    Box::new(move |f| plot::gradient_norms(&run.label, run.job.status.as_str(), &run.layers, f)),
                ));
            }
        }
        _ => {}
    }
    if let Some((view, Some(grid))) = &extras.samples {
        plans.push((
            format!("{id}-samples"),
            format!(
                "Test samples the best run ({}) gets right and the worst ({}) gets wrong, and the other way round.",
                view.a.name, view.b.name
            ),
            Box::new(move |f| plot::disagreement_grid(&grid.title, &grid.subtitle, &grid.sections, f)),
        ));
    }
    plans
}

fn figures(
    id: &str,
    evidence: &QuestionEvidence,
    extras: &Extras,
    format: ImageFormat,
) -> Result<Vec<Figure>> {
    plans(id, evidence, extras)
        .into_iter()
        .map(|(file, caption, draw)| {
            Ok(Figure {
                file,
                caption,
                bytes: draw(format)?,
            })
        })
        .collect()
}

fn label_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn sample_rows(view: &DisagreementView) -> (String, Vec<[String; 4]>) {
    let sets = &view.sets;
    let heading = format!(
        "On the {} split ({} samples), the best run ({}, accuracy {}) gets {} samples right that the worst ({}, accuracy {}) gets wrong, and the worst gets {} right that the best gets wrong. The most confident are listed.",
        view.split,
        sets.compared,
        view.a.name,
        pct(sets.a_accuracy),
        sets.a_right_b_wrong_count,
        view.b.name,
        pct(sets.b_accuracy),
        sets.b_right_a_wrong_count
    );
    let rows = sets
        .a_right_b_wrong
        .iter()
        .chain(&sets.b_right_a_wrong)
        .map(|d| {
            [
                format!("#{}", d.index),
                label_text(&d.true_label),
                format!("{} ({:.2})", label_text(&d.a.label), d.a.confidence),
                format!("{} ({:.2})", label_text(&d.b.label), d.b.confidence),
            ]
        })
        .collect();
    (heading, rows)
}

fn zip(doc: &Document) -> Result<Vec<u8>> {
    use zip::write::SimpleFileOptions;
    let failed = |err: zip::result::ZipError| Error::internal("writing a report zip", err);
    let mut archive = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default();
    archive.start_file("report.md", options).map_err(failed)?;
    archive
        .write_all(document::markdown(doc).as_bytes())
        .map_err(|err| Error::internal("writing a report zip", err))?;
    // PNGs are compressed already.
    let stored = options.compression_method(zip::CompressionMethod::Stored);
    for figure in doc.sections.iter().flat_map(|s| &s.figures) {
        archive
            .start_file(format!("plots/{}.png", figure.file), stored)
            .map_err(failed)?;
        archive
            .write_all(&figure.bytes)
            .map_err(|err| Error::internal("writing a report zip", err))?;
    }
    Ok(archive.finish().map_err(failed)?.into_inner())
}
