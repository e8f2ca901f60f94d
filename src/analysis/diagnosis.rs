//! Plain-language findings about a run, each with its evidence and a suggestion. The
//! thresholds are constants here and documented in the README.

use serde::Serialize;
use serde_json::{Value, json};

use super::overfitting_onset;
use crate::store::{EpochRow, LayerGradRow};

/// Accuracy at most this multiple of chance counts as "stuck at chance".
pub const CHANCE_MULTIPLE: f64 = 1.5;
/// Training accuracy below this while the loss still falls every epoch means "far from converged".
pub const FAR_FROM_CONVERGED_TRAIN_ACC: f64 = 0.9;
/// Best training accuracy below this is underfitting.
pub const UNDERFIT_TRAIN_ACC: f64 = 0.8;
/// A train-minus-validation accuracy gap above this at the end is worth reporting.
pub const GAP_WORTH_REPORTING: f64 = 0.05;
/// A weight tensor whose mean gradient norm is below this fraction of the largest one's has a vanishing gradient.
pub const VANISHING_RATIO: f64 = 1e-3;
/// A tensor's largest gradient norm growing this much from one epoch to the next is an explosion.
pub const EXPLODING_JUMP: f64 = 10.0;
/// A step-loss coefficient of variation above this within an epoch is noisy training.
pub const NOISY_STEP_LOSS_CV: f64 = 0.5;

/// One finding about a run.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Machine-readable kind: diverged, learning_rate_too_high, learning_rate_too_low,
    /// overfitting, underfitting, vanishing_gradients, exploding_gradients, noisy_training, healthy.
    pub kind: &'static str,
    /// info, warning or error.
    pub severity: &'static str,
    /// What happened, in a sentence.
    pub summary: String,
    /// The numbers behind it.
    pub evidence: Value,
    /// What to try.
    pub suggestion: String,
}

/// What a diagnosis looks at.
pub struct RunFacts<'a> {
    /// The job's status.
    pub status: &'a str,
    /// Its failure reason.
    pub failure: Option<&'a str>,
    /// Its epochs.
    pub epochs: &'a [EpochRow],
    /// Number of classes (for chance level).
    pub classes: usize,
    /// The learning rate asked for.
    pub lr: f64,
    /// Per-tensor gradient norms by epoch (may be empty).
    pub layers: &'a [LayerGradRow],
}

/// Findings about a run, most severe first; `healthy` when nothing stands out.
pub fn diagnose(facts: &RunFacts) -> Vec<Finding> {
    let mut findings = Vec::new();
    let chance = 1.0 / facts.classes.max(1) as f64;
    if let Some(failure) = facts.failure.filter(|f| f.contains("diverged")) {
        findings.push(Finding {
            kind: "diverged",
            severity: "error",
            summary: format!("Training diverged: {failure}."),
            evidence: json!({"failure": failure, "lr": facts.lr, "epochs_completed": facts.epochs.len()}),
            suggestion: format!("Lower the learning rate (try {:.0e}), add gradient clipping, or use batch normalization.", facts.lr / 10.0),
        });
    }
    let epochs = facts.epochs;
    if let (Some(first), Some(last)) = (epochs.first(), epochs.last()) {
        let best_train_acc = epochs.iter().map(|e| e.train_acc).fold(0.0, f64::max);
        let best_val_acc = epochs.iter().map(|e| e.val_acc).fold(0.0, f64::max);
        let stuck = epochs.len() >= 2 && best_val_acc <= chance * CHANCE_MULTIPLE;
        let rising = epochs.len() >= 3 && last.train_loss > first.train_loss * 1.05;
        // Loss falling in every one of the last (up to) four epochs: slow but sure progress.
        let tail: Vec<&EpochRow> = epochs.iter().rev().take(4).collect();
        let steady = tail.len() >= 3 && tail.windows(2).all(|w| w[0].train_loss < w[1].train_loss);
        let per_epoch = if tail.len() >= 2 {
            1.0 - (tail[0].train_loss / tail[tail.len() - 1].train_loss)
                .powf(1.0 / (tail.len() - 1) as f64)
        } else {
            0.0
        };
        let too_high = rising || (stuck && !steady);
        let too_low = !too_high && steady && last.train_acc < FAR_FROM_CONVERGED_TRAIN_ACC;
        if too_high {
            findings.push(Finding {
                kind: "learning_rate_too_high",
                severity: "error",
                summary: if rising {
                    format!("Training loss rose from {:.4} to {:.4} over {} epochs.", first.train_loss, last.train_loss, epochs.len())
                } else {
                    format!(
                        "Validation accuracy never rose above {best_val_acc:.3}, about chance ({chance:.3}) for {} classes, and the loss is not falling steadily.",
                        facts.classes
                    )
                },
                evidence: json!({"lr": facts.lr, "best_val_acc": best_val_acc, "chance": chance, "first_train_loss": first.train_loss, "last_train_loss": last.train_loss}),
                suggestion: format!("The learning rate {} is likely too high: try 10x lower, or a warm-up.", facts.lr),
            });
        }
        if too_low {
            findings.push(Finding {
                kind: "learning_rate_too_low",
                severity: "warning",
                summary: format!(
                    "Training loss fell in every one of the last epochs ({:.2}% per epoch) but training accuracy is only {:.3} after {} epochs: slow, steady progress far from convergence.",
                    per_epoch * 100.0,
                    last.train_acc,
                    epochs.len()
                ),
                evidence: json!({"lr": facts.lr, "loss_drop_per_epoch": per_epoch, "last_train_acc": last.train_acc, "best_val_acc": best_val_acc, "epochs": epochs.len()}),
                suggestion: format!("Raise the learning rate (try {:.0e}) or train for more epochs.", facts.lr * 10.0),
            });
        }
        if let Some(onset) = overfitting_onset(epochs) {
            let at = epochs.iter().find(|e| e.epoch == onset).unwrap_or(last);
            findings.push(Finding {
                kind: "overfitting",
                severity: "warning",
                summary: format!(
                    "Validation loss was lowest at epoch {onset} ({:.4}) and rose to {:.4} by epoch {} while training loss kept falling ({:.4} → {:.4}).",
                    at.val_loss, last.val_loss, last.epoch, at.train_loss, last.train_loss
                ),
                evidence: json!({"onset_epoch": onset, "val_loss_at_onset": at.val_loss, "val_loss_at_end": last.val_loss,
                                  "train_val_acc_gap_at_end": last.train_acc - last.val_acc}),
                suggestion: format!("Stop near epoch {onset} (early stopping), or regularize: dropout, weight decay, more data."),
            });
        } else if last.train_acc - last.val_acc > GAP_WORTH_REPORTING && last.train_acc > 0.95 {
            findings.push(Finding {
                kind: "overfitting",
                severity: "info",
                summary: format!(
                    "Training accuracy {:.3} is {:.3} above validation accuracy {:.3}.",
                    last.train_acc,
                    last.train_acc - last.val_acc,
                    last.val_acc
                ),
                evidence: json!({"train_acc": last.train_acc, "val_acc": last.val_acc}),
                suggestion:
                    "A generalization gap: more data, augmentation or regularization may help."
                        .into(),
            });
        }
        if !too_high
            && !too_low
            && facts.status == "succeeded"
            && best_train_acc < UNDERFIT_TRAIN_ACC
        {
            findings.push(Finding {
                kind: "underfitting",
                severity: "warning",
                summary: format!("Training accuracy peaked at {best_train_acc:.3}: the model does not fit even the data it trains on."),
                evidence: json!({"best_train_acc": best_train_acc}),
                suggestion: "Train longer, raise the learning rate, or use a wider or deeper model.".into(),
            });
        }
    }
    findings.extend(gradient_findings(facts.layers));
    if let Some(noisy) = epochs.iter().rev().find(|e| e.step_loss_cv.is_some()) {
        let cv = noisy.step_loss_cv.unwrap_or(0.0);
        if cv > NOISY_STEP_LOSS_CV {
            findings.push(Finding {
                kind: "noisy_training",
                severity: "info",
                summary: format!("Step losses in epoch {} varied by {:.0}% of their mean (coefficient of variation {cv:.2}).", noisy.epoch, cv * 100.0),
                evidence: json!({"epoch": noisy.epoch, "step_loss_cv": cv, "steps": noisy.steps}),
                suggestion: "Noisy steps: a larger batch size or a lower learning rate smooths them (batch size 1 is the noisiest).".into(),
            });
        }
    }
    findings.sort_by_key(|f| match f.severity {
        "error" => 0,
        "warning" => 1,
        _ => 2,
    });
    if findings.is_empty() && !epochs.is_empty() {
        findings.push(Finding {
            kind: "healthy",
            severity: "info",
            summary:
                "Nothing stands out: the loss fell, validation followed, and nothing diverged."
                    .into(),
            evidence: json!({"epochs": epochs.len()}),
            suggestion:
                "Compare it with neighbours in a sweep to see whether another setting does better."
                    .into(),
        });
    }
    findings
}

/// Vanishing gradients (weight tensors far below the largest, at the last epoch) and exploding
/// ones (a tensor's largest gradient norm jumping by [`EXPLODING_JUMP`]× between epochs).
fn gradient_findings(layers: &[LayerGradRow]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Some(last_epoch) = layers.iter().map(|l| l.epoch).max() else {
        return findings;
    };
    let weights: Vec<&LayerGradRow> = layers
        .iter()
        .filter(|l| l.epoch == last_epoch && l.role == "weight")
        .collect();
    let largest = weights
        .iter()
        .filter_map(|l| l.grad_norm_mean)
        .fold(0.0, f64::max);
    if largest > 0.0 {
        let vanishing: Vec<&&LayerGradRow> = weights
            .iter()
            .filter(|l| {
                l.grad_norm_mean
                    .is_some_and(|g| g < largest * VANISHING_RATIO)
            })
            .collect();
        if !vanishing.is_empty() {
            let names: Vec<&str> = vanishing.iter().map(|l| l.tensor.as_str()).collect();
            let smallest = vanishing
                .iter()
                .filter_map(|l| l.grad_norm_mean)
                .fold(f64::INFINITY, f64::min);
            findings.push(Finding {
                kind: "vanishing_gradients",
                severity: "warning",
                summary: format!(
                    "{} of {} weight tensors get gradients below {VANISHING_RATIO} of the largest ({largest:.2e}) at epoch {last_epoch}, down to {smallest:.2e}: {}.",
                    names.len(),
                    weights.len(),
                    if names.len() > 6 { format!("{} … {}", names[..3].join(", "), names[names.len() - 1]) } else { names.join(", ") }
                ),
                evidence: json!({"epoch": last_epoch, "largest_grad_norm": largest, "smallest_grad_norm": smallest, "tensors": names}),
                suggestion: "Layers far from the output barely learn: use batch normalization, relu with kaiming initialization, or a shallower network.".into(),
            });
        }
    }
    let mut jumps = Vec::new();
    for pair in layers.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.tensor == b.tensor
            && b.epoch == a.epoch + 1
            && let (Some(before), Some(after)) = (a.grad_norm_max, b.grad_norm_max)
            && before > 0.0
            && after > before * EXPLODING_JUMP
        {
            jumps.push(json!({"tensor": b.tensor, "epoch": b.epoch, "from": before, "to": after}));
        }
    }
    if let Some(first) = jumps.first().cloned() {
        findings.push(Finding {
            kind: "exploding_gradients",
            severity: "warning",
            summary: format!(
                "Gradient norms jumped {EXPLODING_JUMP}× or more between epochs {} time(s), first in {} at epoch {} ({:.2e} → {:.2e}).",
                jumps.len(),
                first["tensor"].as_str().unwrap_or(""),
                first["epoch"],
                first["from"].as_f64().unwrap_or(0.0),
                first["to"].as_f64().unwrap_or(0.0)
            ),
            evidence: json!({"jumps": jumps}),
            suggestion: "Clip gradients (training.grad_clip.max_norm), lower the learning rate, or add batch normalization.".into(),
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::epoch;

    fn kinds(facts: &RunFacts) -> Vec<&'static str> {
        diagnose(facts).iter().map(|f| f.kind).collect()
    }

    #[test]
    fn a_run_stuck_at_chance_reads_as_a_learning_rate_too_high() {
        let epochs: Vec<EpochRow> = (1..=5).map(|i| epoch(i, 2.3, 2.3, 0.1)).collect();
        let facts = RunFacts {
            status: "succeeded",
            failure: None,
            epochs: &epochs,
            classes: 10,
            lr: 1.0,
            layers: &[],
        };
        assert_eq!(kinds(&facts), vec!["learning_rate_too_high"]);
    }

    #[test]
    fn divergence_is_an_error_with_a_lower_rate_suggested() {
        let facts = RunFacts {
            status: "failed",
            failure: Some("diverged at epoch 1, step 3: loss is NaN"),
            epochs: &[],
            classes: 10,
            lr: 1.0,
            layers: &[],
        };
        let findings = diagnose(&facts);
        assert_eq!(findings[0].kind, "diverged");
        assert!(
            findings[0].suggestion.contains("1e-1"),
            "{}",
            findings[0].suggestion
        );
    }

    #[test]
    fn slow_steady_progress_reads_as_a_learning_rate_too_low() {
        let epochs: Vec<EpochRow> = (1..=6)
            .map(|i| {
                let mut e = epoch(
                    i,
                    2.3 * 0.9f64.powi(i as i32),
                    2.3 * 0.9f64.powi(i as i32),
                    0.3 + 0.02 * i as f64,
                );
                e.train_acc = 0.3 + 0.02 * i as f64;
                e
            })
            .collect();
        let facts = RunFacts {
            status: "succeeded",
            failure: None,
            epochs: &epochs,
            classes: 10,
            lr: 1e-5,
            layers: &[],
        };
        assert!(
            kinds(&facts).contains(&"learning_rate_too_low"),
            "{:?}",
            kinds(&facts)
        );
    }

    #[test]
    fn validation_loss_turning_up_reads_as_overfitting() {
        let val = [1.0, 0.6, 0.4, 0.35, 0.38, 0.42, 0.47, 0.55];
        let epochs: Vec<EpochRow> = val
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let mut e = epoch(i as i64 + 1, 0.3 / (i as f64 + 1.0), *v, 0.9);
                e.train_acc = 0.99;
                e
            })
            .collect();
        let facts = RunFacts {
            status: "succeeded",
            failure: None,
            epochs: &epochs,
            classes: 10,
            lr: 1e-3,
            layers: &[],
        };
        let findings = diagnose(&facts);
        assert_eq!(findings[0].kind, "overfitting");
        assert_eq!(findings[0].evidence["onset_epoch"], 4);
    }

    #[test]
    fn a_good_run_is_healthy() {
        let epochs: Vec<EpochRow> = (1..=5)
            .map(|i| {
                let mut e = epoch(i, 1.0 / i as f64, 1.1 / i as f64, 0.9 + 0.01 * i as f64);
                e.train_acc = 0.97;
                e.val_acc = 0.96;
                e
            })
            .collect();
        let facts = RunFacts {
            status: "succeeded",
            failure: None,
            epochs: &epochs,
            classes: 10,
            lr: 1e-3,
            layers: &[],
        };
        assert_eq!(kinds(&facts), vec!["healthy"]);
    }

    fn layer(tensor: &str, epoch: i64, mean: f64, max: f64) -> LayerGradRow {
        LayerGradRow {
            position: 0,
            epoch,
            tensor: tensor.into(),
            layer: tensor.rsplit_once('.').map_or(tensor, |(l, _)| l).into(),
            layer_index: 0,
            role: "weight".into(),
            grad_norm_mean: Some(mean),
            grad_norm_max: Some(max),
            weight_norm: Some(1.0),
        }
    }

    #[test]
    fn tiny_first_layer_gradients_read_as_vanishing_and_jumps_as_exploding() {
        let layers = vec![
            layer("hidden.0.weight", 1, 1e-9, 1e-9),
            layer("hidden.0.weight", 2, 1e-9, 2e-9),
            layer("hidden.1.weight", 1, 1e-2, 1e-2),
            layer("hidden.1.weight", 2, 1e-2, 5.0),
            layer("output.weight", 1, 0.5, 0.5),
            layer("output.weight", 2, 0.5, 0.6),
        ];
        let findings = gradient_findings(&layers);
        let kinds: Vec<&str> = findings.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec!["vanishing_gradients", "exploding_gradients"]);
        assert_eq!(findings[0].evidence["tensors"], json!(["hidden.0.weight"]));
        assert_eq!(
            findings[1].evidence["jumps"][0]["tensor"],
            "hidden.1.weight"
        );
    }
}
