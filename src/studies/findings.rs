//! The answer to each question in plain language, built only from the stored figures of its
//! runs (best epochs, accuracies, overfitting onsets, seconds per epoch, step-loss noise,
//! gradient norms and the diagnosis findings). Pure: no I/O.

use serde::Serialize;
use serde_json::{Value, json};

use super::gather::{QuestionEvidence, Run, value_text};
use crate::analysis::{self, mean_std};
use crate::domain::StudyKind;

/// A question's answer and the figures it rests on.
#[derive(Clone, Debug, Serialize)]
pub struct QuestionFindings {
    /// The question's kind.
    pub question: StudyKind,
    /// The question, as asked.
    pub title: &'static str,
    /// The answer, in sentences.
    pub answer: String,
    /// The run with the best validation accuracy.
    pub best: Option<RunFigures>,
    /// Every run's figures, in trial order.
    pub runs: Vec<RunFigures>,
}

/// A run's figures, as the answer and the report's table use them.
#[derive(Clone, Debug, Serialize)]
pub struct RunFigures {
    /// What sets it apart.
    pub label: String,
    /// Its job.
    pub job_id: crate::domain::JobId,
    /// Its status.
    pub status: String,
    /// Its axis values.
    pub params: Value,
    /// Epochs recorded.
    pub epochs: usize,
    /// The epoch of best validation accuracy.
    pub best_epoch: Option<i64>,
    /// Train, validation and test accuracy at that epoch.
    pub train_acc: Option<f64>,
    /// Validation accuracy at the best epoch.
    pub val_acc: Option<f64>,
    /// Test accuracy at the best epoch.
    pub test_acc: Option<f64>,
    /// Training loss at the best epoch.
    pub train_loss: Option<f64>,
    /// Validation loss at the best epoch.
    pub val_loss: Option<f64>,
    /// Test loss at the best epoch.
    pub test_loss: Option<f64>,
    /// Mean seconds per epoch.
    pub seconds_per_epoch: Option<f64>,
    /// Mean step-loss coefficient of variation within an epoch.
    pub step_loss_cv: Option<f64>,
    /// The diagnosis findings' kinds.
    pub findings: Vec<&'static str>,
}

/// A run's figures.
pub fn figures(run: &Run) -> RunFigures {
    let best = run.best();
    let cvs: Vec<f64> = run.epochs.iter().filter_map(|e| e.step_loss_cv).collect();
    RunFigures {
        label: run.label.clone(),
        job_id: run.job.id,
        status: run.job.status.to_string(),
        params: json!(run.params),
        epochs: run.epochs.len(),
        best_epoch: best.map(|e| e.epoch),
        train_acc: best.map(|e| e.train_eval_acc.unwrap_or(e.train_acc)),
        val_acc: best.map(|e| e.val_acc),
        test_acc: best.and_then(|e| e.test_acc),
        train_loss: best.map(|e| e.train_loss),
        val_loss: best.map(|e| e.val_loss),
        test_loss: best.and_then(|e| e.test_loss),
        seconds_per_epoch: run.seconds_per_epoch(),
        step_loss_cv: (!cvs.is_empty()).then(|| cvs.iter().sum::<f64>() / cvs.len() as f64),
        findings: run.findings.iter().map(|f| f.kind).collect(),
    }
}

/// A fraction as a percentage with one decimal.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The run of best validation accuracy.
fn best_run(evidence: &QuestionEvidence) -> Option<&Run> {
    evidence
        .runs
        .iter()
        .filter_map(|r| r.best().map(|b| (r, b.val_acc)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r)
}

/// Answers a question from its evidence.
pub fn answer(evidence: &QuestionEvidence) -> QuestionFindings {
    let best = best_run(evidence);
    let answer = match evidence.question {
        StudyKind::LearningRate => learning_rate(evidence, best),
        StudyKind::Epochs => epochs(evidence),
        StudyKind::BatchNorm => batch_norm(evidence),
        StudyKind::BatchSize => batch_size(evidence, best),
        StudyKind::DepthWidth => depth_width(evidence, best),
        StudyKind::Gradients => gradients(evidence),
        StudyKind::Transfer => transfer(evidence),
        StudyKind::All => String::new(),
    };
    let answer = if evidence.runs.iter().all(|r| r.epochs.is_empty()) {
        "No run recorded an epoch, so there is nothing to compare.".to_string()
    } else {
        answer
    };
    QuestionFindings {
        question: evidence.question,
        title: evidence.question.question(),
        answer,
        best: best.map(figures),
        runs: evidence.runs.iter().map(figures).collect(),
    }
}

fn param(run: &Run, path: &str) -> String {
    run.params.get(path).map(value_text).unwrap_or_default()
}

/// One run's fate in a clause: diverged, stuck at chance, still improving, or where it peaked.
fn fate(run: &Run, name: &str, chance: f64) -> String {
    let planned = run.spec.training.epochs as usize;
    let Some(best) = run.best() else {
        return format!(
            "{name} recorded no epoch ({})",
            run.job
                .failure
                .as_deref()
                .unwrap_or(run.job.status.as_str())
        );
    };
    let last = run.epochs.last().unwrap_or(best);
    if run.has("diverged") {
        return format!("{name} diverged in epoch {}", run.epochs.len() + 1);
    }
    if best.val_acc <= chance * analysis::CHANCE_MULTIPLE && run.epochs.len() >= 2 {
        return format!(
            "{name} never rose above {} validation accuracy (chance is {})",
            pct(best.val_acc),
            pct(chance)
        );
    }
    if best.epoch == last.epoch && run.epochs.len() >= planned && run.epochs.len() >= 2 {
        return format!(
            "{name} was still improving after {} epochs at {} validation accuracy",
            run.epochs.len(),
            pct(best.val_acc)
        );
    }
    format!(
        "{name} peaked at {} in epoch {}",
        pct(best.val_acc),
        best.epoch
    )
}

fn learning_rate(evidence: &QuestionEvidence, best: Option<&Run>) -> String {
    let chance = 1.0 / evidence.classes.max(1) as f64;
    let path = "training.optimizer.lr";
    let mut clauses: Vec<String> = evidence
        .runs
        .iter()
        .filter(|r| Some(r.job.id) != best.map(|b| b.job.id))
        .map(|r| fate(r, &format!("a learning rate of {}", param(r, path)), chance))
        .collect();
    if let Some((run, at)) = best.and_then(|r| r.best().map(|b| (r, b))) {
        clauses.push(format!(
            "the best rate was {} ({} validation accuracy at epoch {}, {} on test)",
            param(run, path),
            pct(at.val_acc),
            at.epoch,
            at.test_acc.map_or("no test split".into(), pct)
        ));
    }
    sentence(&clauses.join("; "))
}

/// A ratio in a few digits: 0.74, 31, 2.3e-12.
fn ratio_text(r: f64) -> String {
    if (0.01..1000.0).contains(&r.abs()) {
        format!("{}", (r * 100.0).round() / 100.0)
    } else {
        format!("{r:.1e}")
    }
}

fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

fn epochs(evidence: &QuestionEvidence) -> String {
    let mut parts = Vec::new();
    for run in &evidence.runs {
        let Some(last) = run.epochs.last() else {
            continue;
        };
        let lowest_loss = run
            .epochs
            .iter()
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
            .unwrap_or(last);
        // Accuracy on the training split in evaluation mode (dropout off), where it was
        // measured: the running accuracy under dropout would understate it.
        let train_acc = last.train_eval_acc.unwrap_or(last.train_acc);
        let gap = train_acc - last.val_acc;
        let onset = analysis::overfitting_onset(&run.epochs);
        let what = match onset {
            Some(onset) => format!(
                "overfitting began after epoch {onset}: validation loss was lowest at epoch {} ({:.3}) and rose to {:.3} by epoch {} while training loss kept falling",
                lowest_loss.epoch, lowest_loss.val_loss, last.val_loss, last.epoch
            ),
            None => format!(
                "no overfitting onset within {} epochs (validation loss lowest at epoch {}, {:.3})",
                run.epochs.len(),
                lowest_loss.epoch,
                lowest_loss.val_loss
            ),
        };
        parts.push(format!(
            "with {} {what}; at the end training accuracy was {} against {} on validation, a gap of {:.1} points",
            run.label,
            pct(train_acc),
            pct(last.val_acc),
            gap * 100.0
        ));
    }
    let mut text = parts
        .iter()
        .map(|p| sentence(p))
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(best) = best_run(evidence).and_then(|r| r.best().map(|b| (r, b))) {
        text.push_str(&format!(
            " The best validation accuracy was {} with {} (epoch {}).",
            pct(best.1.val_acc),
            best.0.label,
            best.1.epoch
        ));
    }
    text
}

/// Runs grouped by their label without the seed: (label, runs).
fn by_setting(evidence: &QuestionEvidence) -> Vec<(String, Vec<&Run>)> {
    let mut groups: Vec<(String, Vec<&Run>)> = Vec::new();
    for run in &evidence.runs {
        let key = run
            .label
            .split(" (seed")
            .next()
            .unwrap_or(&run.label)
            .to_string();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(run),
            None => groups.push((key, vec![run])),
        }
    }
    groups
}

fn batch_norm(evidence: &QuestionEvidence) -> String {
    let mut clauses = Vec::new();
    for (setting, runs) in by_setting(evidence) {
        let best: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.best().map(|b| b.val_acc))
            .collect();
        let first: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.epochs.first().map(|e| e.val_acc))
            .collect();
        if best.is_empty() {
            continue;
        }
        let (mean, std) = mean_std(&best);
        let (first_mean, _) = mean_std(&first);
        clauses.push(format!(
            "with {setting}, best validation accuracy was {} ± {:.1} points over {} seeds, and {} after the first epoch",
            pct(mean),
            std * 100.0,
            best.len(),
            pct(first_mean)
        ));
    }
    sentence(&clauses.join("; "))
}

fn batch_size(evidence: &QuestionEvidence, best: Option<&Run>) -> String {
    let path = "training.batch_size";
    let mut clauses = Vec::new();
    for run in &evidence.runs {
        let figures = figures(run);
        let Some(val) = figures.val_acc else { continue };
        clauses.push(format!(
            "batch size {}: {} best validation accuracy, {:.2} s per epoch, step-loss variation {}",
            param(run, path),
            pct(val),
            figures.seconds_per_epoch.unwrap_or(0.0),
            figures
                .step_loss_cv
                .map_or("not measured".into(), |cv| format!("{cv:.2}"))
        ));
    }
    let mut text = sentence(&clauses.join("; "));
    let timed: Vec<&Run> = evidence
        .runs
        .iter()
        .filter(|r| r.seconds_per_epoch().is_some())
        .collect();
    if let (Some(fast), Some(slow)) = (
        timed.iter().min_by(|a, b| {
            a.seconds_per_epoch()
                .unwrap_or(0.0)
                .total_cmp(&b.seconds_per_epoch().unwrap_or(0.0))
        }),
        timed.iter().max_by(|a, b| {
            a.seconds_per_epoch()
                .unwrap_or(0.0)
                .total_cmp(&b.seconds_per_epoch().unwrap_or(0.0))
        }),
    ) && let (Some(f), Some(s)) = (fast.seconds_per_epoch(), slow.seconds_per_epoch())
        && f > 0.0
    {
        text.push_str(&format!(
            " An epoch at batch size {} took {:.1}× as long as at {}.",
            param(slow, path),
            s / f,
            param(fast, path)
        ));
    }
    if let Some(run) = best {
        text.push_str(&format!(
            " The most accurate was batch size {}.",
            param(run, path)
        ));
    }
    text
}

fn depth_width(evidence: &QuestionEvidence, best: Option<&Run>) -> String {
    let worst = evidence
        .runs
        .iter()
        .filter_map(|r| r.best().map(|b| (r, b.val_acc)))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let mut text = String::new();
    if let (Some(best), Some((worst, worst_acc))) = (best, worst) {
        let acc = best.best().map_or(0.0, |b| b.val_acc);
        text.push_str(&format!(
            "The best depth × width was {} × {} ({} validation accuracy); the worst was {} × {} ({}).",
            param(best, "model.depth"),
            param(best, "model.width"),
            pct(acc),
            param(worst, "model.depth"),
            param(worst, "model.width"),
            pct(worst_acc)
        ));
    }
    for axis in &evidence.summary.axes {
        let name = axis.path.rsplit('.').next().unwrap_or(&axis.path);
        let means: Vec<String> = axis
            .values
            .iter()
            .filter_map(|v| {
                v.mean
                    .map(|m| format!("{} {}", value_text(&v.value), pct(m)))
            })
            .collect();
        if !means.is_empty() {
            text.push_str(&format!(" Mean by {name}: {}.", means.join(", ")));
        }
    }
    for run in &evidence.runs {
        if let Some(finding) = run.findings.iter().find(|f| f.kind == "overfitting") {
            text.push_str(&format!(" {}: {}", run.label, finding.summary));
        }
    }
    text
}

/// The first weight layer's mean gradient norm over the last's, at the last epoch.
fn first_to_last_ratio(run: &Run) -> Option<f64> {
    let epoch = run.layers.iter().map(|l| l.epoch).max()?;
    let weights: Vec<_> = run
        .layers
        .iter()
        .filter(|l| l.epoch == epoch && l.role == "weight")
        .collect();
    let first = weights
        .iter()
        .min_by_key(|l| l.layer_index)?
        .grad_norm_mean?;
    let last = weights
        .iter()
        .max_by_key(|l| l.layer_index)?
        .grad_norm_mean?;
    (last > 0.0).then(|| first / last)
}

fn gradients(evidence: &QuestionEvidence) -> String {
    let mut clauses = Vec::new();
    let mut vanished = Vec::new();
    let mut exploded = Vec::new();
    for run in &evidence.runs {
        let ratio = first_to_last_ratio(run).map_or("no gradient norms recorded".into(), |r| {
            format!(
                "the first layer's gradient norm was {} times the output layer's",
                ratio_text(r)
            )
        });
        let acc = run.best().map_or("no epoch".into(), |b| pct(b.val_acc));
        clauses.push(format!(
            "{}: {ratio}, best validation accuracy {acc}",
            run.label
        ));
        if run.has("vanishing_gradients") {
            vanished.push(run.label.clone());
        }
        if run.has("exploding_gradients") || run.has("diverged") {
            exploded.push(run.label.clone());
        }
    }
    let mut text = sentence(&clauses.join("; "));
    text.push_str(&match vanished.len() {
        0 => " No configuration had vanishing gradients by the diagnosis' rule (a weight's gradient below 1/1000 of the largest).".to_string(),
        _ => format!(" Gradients vanished (some weights below 1/1000 of the largest) with {}.", vanished.join("; ")),
    });
    if !exploded.is_empty() {
        text.push_str(&format!(
            " Gradients exploded or training diverged with {}.",
            exploded.join("; ")
        ));
    }
    text
}

fn transfer(evidence: &QuestionEvidence) -> String {
    let mut clauses = Vec::new();
    for mode in ["fine_tune", "linear_probe", "scratch"] {
        let best = evidence
            .runs
            .iter()
            .filter(|r| param(r, "init.mode") == mode)
            .filter_map(|r| r.best().map(|b| (r, b)))
            .max_by(|a, b| a.1.val_acc.total_cmp(&b.1.val_acc));
        if let Some((run, at)) = best {
            let name = match mode {
                "fine_tune" => "fine-tuning",
                "linear_probe" => "the linear probe",
                _ => "training from scratch",
            };
            clauses.push(format!(
                "{name} reached {} best validation accuracy (learning rate {}, epoch {})",
                pct(at.val_acc),
                param(run, "training.optimizer.lr"),
                at.epoch
            ));
        }
    }
    let mut text = sentence(&clauses.join("; "));
    if let Some(best) = best_run(evidence) {
        text.push_str(&format!(" The best run was {}.", best.label));
    }
    if let Some(source) = &evidence.source
        && let Some(at) = source.best()
    {
        text.push_str(&format!(
            " The source model, pretrained on {} for {} epochs, reached {} validation accuracy.",
            source.spec.dataset,
            source.epochs.len(),
            pct(at.val_acc)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::gather::number;
    use super::*;

    #[test]
    fn sentences_start_with_a_capital_and_end_with_a_period() {
        assert_eq!(
            sentence("the best rate was 1e-3"),
            "The best rate was 1e-3."
        );
        assert_eq!(pct(0.9712), "97.1%");
        assert_eq!(number(0.00001), "1e-5");
        assert_eq!(number(0.001), "0.001");
        assert_eq!(number(1.0), "1");
    }
}
