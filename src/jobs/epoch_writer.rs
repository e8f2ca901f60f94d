//! Makes a training job's epochs durable: checkpoint files, then metrics, step losses, layer
//! norms and checkpoint rows in one transaction, then retention.
//!
//! The trainer runs ahead of the writer by up to [`BACKLOG_BYTES`] of reports. When epochs
//! finish faster than the disk can make checkpoints durable (a small MLP trains an epoch in a
//! few milliseconds; an fsync'd checkpoint costs about as much), the writer takes the whole
//! backlog at once: it commits every epoch's metrics but writes checkpoint files only for the
//! backlog's newest epoch (the resume point) and its new best. Slower epochs each get their
//! own checkpoint, as `checkpoints.every` asks.

use std::sync::{Condvar, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::pruning::PruningPlan;
use super::{JobEvent, Jobs};
use crate::domain::JobId;
use crate::error::{Error, Result};
use crate::store::{CheckpointRow, EpochCommit, EpochRow, LayerGradRow, StepBatch};
use engine::checkpoint;
use engine::{EpochMetrics, EpochReport, LayerStats};

/// Most bytes of checkpoints that may wait for the writer before the trainer blocks.
pub const BACKLOG_BYTES: usize = 64 << 20;

/// Bounds the bytes of reports in flight between a training thread and its writer.
#[derive(Default)]
pub struct Backlog {
    /// Bytes queued, and whether the writer has stopped taking reports.
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Backlog {
    /// Blocks the training thread until `bytes` more fit (a single report always fits when
    /// nothing is queued) or the writer has stopped.
    pub fn reserve(&self, bytes: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while state.0 > 0 && state.0 + bytes > BACKLOG_BYTES && !state.1 {
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.0 += bytes;
    }

    /// The writer is done with `bytes`.
    pub fn release(&self, bytes: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0 = state.0.saturating_sub(bytes);
        self.freed.notify_all();
    }

    /// The writer takes no more reports: wake a waiting trainer so its send fails.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
        self.freed.notify_all();
    }
}

/// What committing a backlog did.
pub enum Persisted {
    Saved,
    /// Saved up to an epoch where the sweep's pruning rule ended the job; later epochs of
    /// the backlog were dropped.
    Pruned,
    /// Another worker owns the job; nothing was written.
    LeaseLost,
}

/// The best validation result so far, ranked as the store ranks it: higher accuracy, then
/// lower loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Best {
    pub val_acc: f64,
    pub val_loss: f64,
}

impl Best {
    /// The job's best so far as stored, if any.
    pub fn stored(val_acc: Option<f64>, val_loss: Option<f64>) -> Option<Best> {
        Some(Best {
            val_acc: val_acc?,
            val_loss: val_loss.unwrap_or(f64::INFINITY),
        })
    }

    fn improved_by(best: Option<Best>, metrics: &EpochMetrics) -> bool {
        best.is_none_or(|b| {
            metrics.val_acc > b.val_acc
                || (metrics.val_acc == b.val_acc && metrics.val_loss < b.val_loss)
        })
    }
}

/// Takes every report waiting after `first`, oldest first.
pub fn drain_backlog(
    first: EpochReport,
    received: &mut mpsc::UnboundedReceiver<EpochReport>,
) -> Vec<EpochReport> {
    let mut batch = vec![first];
    while let Ok(report) = received.try_recv() {
        batch.push(report);
    }
    batch
}

/// Which reports of a backlog get a checkpoint file: the newest, and the one that ends up best
/// if it beats `best`. Advances `best`.
fn files_to_write(reports: &[EpochReport], best: &mut Option<Best>) -> Vec<usize> {
    let mut new_best = None;
    for (i, report) in reports.iter().enumerate() {
        if Best::improved_by(*best, &report.metrics) {
            *best = Some(Best {
                val_acc: report.metrics.val_acc,
                val_loss: report.metrics.val_loss,
            });
            new_best = Some(i);
        }
    }
    let newest = reports.len() - 1;
    let mut chosen: Vec<usize> = new_best.filter(|&i| i != newest).into_iter().collect();
    chosen.push(newest);
    chosen
}

impl Jobs {
    /// Persists a backlog of epochs (see the module's documentation), judging each by the
    /// sweep's pruning rule, if any, in the same transaction.
    pub(super) async fn persist_epochs(
        &self,
        id: JobId,
        lease_epoch: i64,
        mut reports: Vec<EpochReport>,
        best: &mut Option<Best>,
        pruning: Option<&PruningPlan>,
    ) -> Result<Persisted> {
        let mut rows: Vec<EpochRow> = reports.iter().map(|r| epoch_row(&r.metrics)).collect();
        let prune = match pruning {
            Some(plan) => {
                let judged = reports
                    .iter()
                    .position(|r| r.stopped_early.is_some())
                    .unwrap_or(reports.len());
                self.first_pruned(plan, id, &rows, judged).await?
            }
            None => None,
        };
        if let Some((i, _)) = &prune {
            reports.truncate(i + 1);
            rows.truncate(i + 1);
        }
        if reports.is_empty() {
            return Ok(Persisted::Saved);
        }
        let chosen = files_to_write(&reports, best);
        let mut files = Vec::with_capacity(chosen.len());
        for &i in &chosen {
            let epoch = reports[i].metrics.epoch;
            let relative = format!("checkpoints/{id}/{epoch:06}.safetensors");
            files.push((i, relative, std::mem::take(&mut reports[i].checkpoint)));
        }
        let data_dir = self.inner.config.data_dir.clone();
        let written = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|(i, relative, bytes)| {
                    let sha256 = checkpoint::write_atomically(&data_dir.join(&relative), &bytes)?;
                    Ok((i, relative, sha256, bytes.len() as i64))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|err| Error::internal("writing a checkpoint", err))??;

        let checkpoints: Vec<Option<CheckpointRow>> = (0..reports.len())
            .map(|i| {
                let (_, path, sha256, bytes) = written.iter().find(|w| w.0 == i)?;
                Some(CheckpointRow {
                    epoch: rows[i].epoch,
                    path: path.clone(),
                    sha256: sha256.clone(),
                    bytes: *bytes,
                    val_acc: rows[i].val_acc,
                    val_loss: rows[i].val_loss,
                })
            })
            .collect();
        let steps: Vec<StepBatch> = reports
            .iter_mut()
            .map(|r| StepBatch {
                epoch: i64::from(r.metrics.epoch),
                first_step: r.first_step as i64,
                losses: std::mem::take(&mut r.step_losses),
            })
            .collect();
        let layers: Vec<Vec<LayerGradRow>> = reports
            .iter()
            .map(|r| layer_rows(i64::from(r.metrics.epoch), &r.layers))
            .collect();
        let commits: Vec<EpochCommit> = (0..reports.len())
            .map(|i| EpochCommit {
                epoch: &rows[i],
                checkpoint: checkpoints[i].as_ref(),
                steps: &steps[i],
                layers: &layers[i],
                stopped_early: match &prune {
                    Some((p, reason)) if *p == i => Some(reason.as_str()),
                    _ => reports[i].stopped_early.as_deref(),
                },
                pruned: prune.as_ref().is_some_and(|(p, _)| *p == i),
            })
            .collect();
        if !self
            .inner
            .store
            .commit_epochs(id, lease_epoch, &commits)
            .await?
        {
            return Ok(Persisted::LeaseLost);
        }
        for row in rows {
            metrics::histogram!(crate::prometheus::EPOCH_SECONDS).record(row.epoch_seconds);
            let samples = (row.samples_per_sec * row.epoch_seconds).round().max(0.0) as u64;
            metrics::counter!(crate::prometheus::TRAINING_SAMPLES).increment(samples);
            self.publish(JobEvent::Epoch {
                job_id: id,
                metrics: row,
            });
        }
        self.trim_checkpoints(id, None).await?;
        Ok(if prune.is_some() {
            Persisted::Pruned
        } else {
            Persisted::Saved
        })
    }
}

fn epoch_row(metrics: &EpochMetrics) -> EpochRow {
    EpochRow {
        epoch: i64::from(metrics.epoch),
        train_loss: metrics.train_loss,
        train_acc: metrics.train_acc,
        train_eval_loss: Some(metrics.train_eval_loss),
        train_eval_acc: Some(metrics.train_eval_acc),
        val_loss: metrics.val_loss,
        val_acc: metrics.val_acc,
        test_loss: metrics.test_loss,
        test_acc: metrics.test_acc,
        lr: metrics.lr,
        steps: metrics.steps as i64,
        step_loss_cv: Some(metrics.step_loss_cv),
        epoch_seconds: metrics.epoch_seconds,
        samples_per_sec: metrics.samples_per_sec,
    }
}

fn layer_rows(epoch: i64, layers: &[LayerStats]) -> Vec<LayerGradRow> {
    layers
        .iter()
        .enumerate()
        .map(|(position, l)| LayerGradRow {
            position: position as i64,
            epoch,
            tensor: l.name.clone(),
            layer: l.layer.clone(),
            layer_index: l.index as i64,
            role: l.role.clone(),
            grad_norm_mean: Some(l.grad_norm_mean),
            grad_norm_max: Some(l.grad_norm_max),
            weight_norm: Some(l.weight_norm),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(epoch: u32, val_acc: f64, val_loss: f64) -> EpochReport {
        EpochReport {
            metrics: EpochMetrics {
                epoch,
                val_acc,
                val_loss,
                ..EpochMetrics::default()
            },
            first_step: 1,
            step_losses: Vec::new(),
            layers: Vec::new(),
            stopped_early: None,
            checkpoint: vec![epoch as u8],
        }
    }

    #[test]
    fn a_backlog_writes_its_newest_epoch_and_its_new_best() {
        let reports = [
            report(1, 0.5, 1.0),
            report(2, 0.7, 0.8),
            report(3, 0.6, 0.9),
        ];
        let mut best = None;
        assert_eq!(files_to_write(&reports, &mut best), vec![1, 2]);
        assert_eq!(best.map(|b| b.val_acc), Some(0.7));
    }

    #[test]
    fn a_backlog_that_does_not_beat_the_best_writes_only_its_newest_epoch() {
        let reports = [report(4, 0.6, 0.9), report(5, 0.7, 0.9)];
        let mut best = Some(Best {
            val_acc: 0.7,
            val_loss: 0.8,
        });
        assert_eq!(files_to_write(&reports, &mut best), vec![1]);
        assert_eq!(
            best,
            Some(Best {
                val_acc: 0.7,
                val_loss: 0.8
            })
        );
    }

    #[test]
    fn equal_accuracy_with_lower_loss_is_a_new_best() {
        let reports = [report(6, 0.7, 0.5), report(7, 0.1, 2.0)];
        let mut best = Some(Best {
            val_acc: 0.7,
            val_loss: 0.8,
        });
        assert_eq!(files_to_write(&reports, &mut best), vec![0, 1]);
    }
}
