//! What one epoch measured: losses and accuracies in train and eval mode, timing, the
//! learning rate, the noise of the step losses, and per-parameter gradient and weight norms.

use candle_core::{DType, Tensor};

use super::{Mode, Network, SplitTensors};
use crate::error::Result;

/// The measurements of one finished epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Running mean of the step losses over the epoch, in training mode (dropout on, batch
    /// statistics, weights changing as it goes).
    pub train_loss: f64,
    /// Running accuracy over the epoch's steps, in training mode.
    pub train_acc: f64,
    /// Loss over the whole training split in evaluation mode, at the epoch's end.
    pub train_eval_loss: f64,
    /// Accuracy over the whole training split in evaluation mode, at the epoch's end.
    pub train_eval_acc: f64,
    /// Validation loss at the end of the epoch.
    pub val_loss: f64,
    /// Validation accuracy at the end of the epoch.
    pub val_acc: f64,
    /// Test loss at the end of the epoch, if there is a test split.
    pub test_loss: Option<f64>,
    /// Test accuracy at the end of the epoch, if there is a test split.
    pub test_acc: Option<f64>,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Optimizer steps taken.
    pub steps: u64,
    /// Coefficient of variation (population std / mean) of the epoch's step losses.
    pub step_loss_cv: f64,
    /// Wall time of training plus evaluation.
    pub epoch_seconds: f64,
    /// Training samples per second of training time.
    pub samples_per_sec: f64,
}

/// Gradient and weight norms of one parameter tensor over one epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    /// The tensor's name, e.g. `hidden.3.weight`.
    pub name: String,
    /// Its layer, e.g. `hidden.3` or `output`.
    pub layer: String,
    /// The layer's position: 0-based for hidden layers, the depth for the output layer.
    pub index: usize,
    /// Its role in the layer: `weight`, `bias`, `bn.weight`, `bn.bias`.
    pub role: String,
    /// Mean over the epoch's steps of the gradient's L2 norm (before clipping).
    pub grad_norm_mean: f64,
    /// Largest gradient L2 norm of any step of the epoch (before clipping).
    pub grad_norm_max: f64,
    /// L2 norm of the weights at the epoch's end.
    pub weight_norm: f64,
}

/// Evaluation forward passes keep each activation below this many elements where that still
/// leaves batches of `MIN_EVAL_ROWS`: candle runs larger element-wise operations on its barrier
/// pool, whose spinning workers cost more than they save for small layers (measured: evaluating
/// the whole digits training split in one batch slowed `trainserve-bench` by about a fifth on
/// 2 cores; in batches of 1023 rows, by a few percent).
const EVAL_ELEMENTS: usize = 64 * 1024 - 1;
const MIN_EVAL_ROWS: usize = 256;

/// How many predictions of a batch are right.
pub(crate) fn count_correct(logits: &Tensor, y: &Tensor) -> candle_core::Result<f64> {
    let predicted = logits.argmax(1)?;
    Ok(f64::from(
        predicted
            .eq(y)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?,
    ))
}

/// Mean loss and accuracy of the model on a split, in evaluation mode.
pub(crate) fn evaluate(model: &Network, split: &SplitTensors) -> Result<(f64, f64)> {
    let mut score = Score::default();
    let rows = (EVAL_ELEMENTS / model.widest().max(1)).max(MIN_EVAL_ROWS);
    let mut start = 0;
    while start < split.len {
        let len = rows.min(split.len - start);
        let x = split.x.narrow(0, start, len)?;
        let y = split.y.narrow(0, start, len)?;
        let logits = model.forward(&x, &mut Mode::Eval)?;
        score.add(
            &logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
            &y.to_vec1()?,
        );
        start += len;
    }
    Ok(score.mean())
}

/// Cross-entropy and accuracy summed over rows of logits: the one evaluation of both training
/// paths (the fused MLP passes its logits here too).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Score {
    loss: f64,
    correct: usize,
    rows: usize,
}

impl Score {
    /// Adds rows of `logits` (row-major, one row per target) against their `targets`.
    pub(crate) fn add(&mut self, logits: &[f32], targets: &[u32]) {
        let classes = logits.len() / targets.len().max(1);
        for (row, &target) in logits.chunks(classes.max(1)).zip(targets) {
            let (argmax, max) =
                row.iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |a, (j, &v)| if v > a.1 { (j, v) } else { a },
                    );
            let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
            self.loss += f64::from(max + sum.ln() - row[target as usize]);
            self.correct += usize::from(argmax == target as usize);
            self.rows += 1;
        }
    }

    /// Mean loss and accuracy (zeros for no rows).
    pub(crate) fn mean(&self) -> (f64, f64) {
        let n = self.rows.max(1) as f64;
        (self.loss / n, self.correct as f64 / n)
    }
}

/// Population standard deviation over mean; 0 for fewer than two values or a zero mean.
pub(crate) fn coefficient_of_variation(values: &[f32]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    if mean == 0.0 || !mean.is_finite() {
        return 0.0;
    }
    let variance = values
        .iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n;
    variance.sqrt() / mean.abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coefficient_of_variation_is_std_over_mean() {
        assert_eq!(coefficient_of_variation(&[2.0, 2.0, 2.0]), 0.0);
        // mean 2, population std 1
        assert!((coefficient_of_variation(&[1.0, 3.0]) - 0.5).abs() < 1e-12);
        assert_eq!(coefficient_of_variation(&[5.0]), 0.0);
        assert_eq!(coefficient_of_variation(&[]), 0.0);
    }
}
