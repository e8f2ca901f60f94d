//! Retention: which checkpoints a job keeps, and the pass the scheduler runs every
//! `--retention-interval-seconds` over ended jobs: checkpoints beyond the best, the latest and
//! the last `--retention-keep-last` are removed, and with `--retention-days` jobs (and whole
//! sweeps) that ended longer ago are deleted unless pinned. Rows go before files, as in every
//! delete (see `deletion`).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;

use super::Jobs;
use crate::domain::{JobId, JobSpec};
use crate::error::{Error, Result};

/// What the retention pass does, from the `--retention-*` settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RetentionPolicy {
    /// How often a pass runs (the first at start-up); `None`: never.
    pub interval: Option<Duration>,
    /// Checkpoints an ended job keeps beside its best and its latest (fewer when its spec's
    /// `checkpoints.keep_last` asks for fewer).
    pub keep_last: u32,
    /// Jobs that ended longer ago are deleted unless pinned (a sweep once every one of its
    /// jobs has, and none is pinned); `None`: never.
    pub max_age: Option<Duration>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            interval: Some(Duration::from_secs(3600)),
            keep_last: 3,
            max_age: None,
        }
    }
}

/// What one pass removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Checkpoint files removed from ended jobs that are kept.
    pub checkpoints: usize,
    /// Jobs deleted for their age (sweeps' trials included).
    pub jobs: usize,
    /// Sweeps deleted for their age.
    pub sweeps: usize,
}

/// Most jobs (or sweeps) one pass looks at for each rule; the next pass takes the rest.
const BATCH: i64 = 500;

/// The checkpoint epochs to delete: everything except the latest, the best, and the most
/// recent `keep_last` of the epochs that are multiples of `every`.
pub fn epochs_to_delete(epochs: &[i64], best: Option<i64>, every: u32, keep_last: u32) -> Vec<i64> {
    let Some(&latest) = epochs.iter().max() else {
        return Vec::new();
    };
    let mut keep: BTreeSet<i64> = BTreeSet::from([latest]);
    keep.extend(best);
    let every = i64::from(every.max(1));
    let mut periodic: Vec<i64> = epochs.iter().copied().filter(|e| e % every == 0).collect();
    periodic.sort_unstable();
    keep.extend(periodic.iter().rev().take(keep_last as usize));
    epochs
        .iter()
        .copied()
        .filter(|e| !keep.contains(e))
        .collect()
}

impl Jobs {
    /// Runs a retention pass now and then every interval of the policy until shutdown begins.
    pub(super) async fn run_retention(self) {
        let policy = self.inner.config.retention.clone();
        let Some(interval) = policy.interval else {
            return;
        };
        let mut stopping: watch::Receiver<bool> = self.inner.stopping.subscribe();
        loop {
            if *stopping.borrow_and_update() {
                return;
            }
            match self.retention_pass().await {
                Ok(report) if report != RetentionReport::default() => {
                    tracing::info!(
                        checkpoints = report.checkpoints,
                        jobs = report.jobs,
                        sweeps = report.sweeps,
                        "retention removed what it does not keep"
                    )
                }
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "the retention pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// One pass of the retention policy over ended jobs.
    pub(super) async fn retention_pass(&self) -> Result<RetentionReport> {
        let policy = &self.inner.config.retention;
        let store = &self.inner.store;
        let mut report = RetentionReport::default();
        if let Some(max_age) = policy.max_age {
            let seconds = max_age.as_secs_f64();
            for id in store.expired_jobs(seconds, BATCH).await? {
                match store.delete_job(id, true).await {
                    Ok(true) => {
                        self.forget_jobs(&[id]).await;
                        report.jobs += 1;
                    }
                    Ok(false) => {}
                    // Pinned, deleted, resumed or made a transfer source meanwhile.
                    Err(Error::NotFound { .. } | Error::Conflict { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            for id in store.expired_sweeps(seconds, BATCH).await? {
                match store.delete_sweep(id, true).await {
                    Ok(Some(jobs)) => {
                        self.forget_jobs(&jobs).await;
                        report.jobs += jobs.len();
                        report.sweeps += 1;
                    }
                    Ok(None) => {}
                    Err(Error::NotFound { .. } | Error::Conflict { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        let most = i64::from(policy.keep_last) + 2;
        for id in store
            .ended_jobs_with_more_checkpoints_than(most, BATCH)
            .await?
        {
            match self.trim_checkpoints(id, Some(policy.keep_last)).await {
                Ok(removed) => report.checkpoints += removed,
                Err(Error::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(report)
    }

    /// Removes the checkpoints of job `id` that its spec's `checkpoints` (and `cap`, when
    /// given, on `keep_last`) do not keep: rows first, then files. Returns how many went.
    pub(super) async fn trim_checkpoints(&self, id: JobId, cap: Option<u32>) -> Result<usize> {
        let job = self.get(id).await?;
        let spec: JobSpec = serde_json::from_str(&job.spec)
            .map_err(|err| Error::internal("reading the stored spec", err))?;
        let keep_last = cap.map_or(spec.checkpoints.keep_last, |cap| {
            cap.min(spec.checkpoints.keep_last)
        });
        let checkpoints = self.inner.store.list_checkpoints(id).await?;
        let epochs: Vec<i64> = checkpoints.iter().map(|c| c.epoch).collect();
        let doomed = epochs_to_delete(&epochs, job.best_epoch, spec.checkpoints.every, keep_last);
        if doomed.is_empty() {
            return Ok(0);
        }
        self.inner.store.delete_checkpoints(id, &doomed).await?;
        for checkpoint in checkpoints.iter().filter(|c| doomed.contains(&c.epoch)) {
            let path = self.inner.config.data_dir.join(&checkpoint.path);
            if let Err(err) = tokio::fs::remove_file(&path).await {
                tracing::warn!(path = %path.display(), error = %err, "removing a pruned checkpoint failed");
            }
        }
        Ok(doomed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_the_best_and_the_last_few_periodic_ones_are_kept() {
        let epochs: Vec<i64> = (1..=10).collect();
        assert_eq!(
            epochs_to_delete(&epochs, Some(2), 1, 3),
            vec![1, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            epochs_to_delete(&epochs, Some(3), 4, 1),
            vec![1, 2, 4, 5, 6, 7, 9]
        );
    }

    #[test]
    fn keep_last_zero_keeps_only_the_best_and_the_latest() {
        let epochs: Vec<i64> = (1..=4).collect();
        assert_eq!(epochs_to_delete(&epochs, Some(1), 1, 0), vec![2, 3]);
        assert!(epochs_to_delete(&[], None, 1, 0).is_empty());
    }
}
