//! Deleting jobs and sweeps: a queued or running job is cancelled first and its worker let go
//! of it; then its rows go in one transaction, then its files. A crash between the two leaves
//! files without rows, which the next start removes (`orphans`), never a row whose file is
//! missing.

use std::time::{Duration, Instant};

use super::{JobEvent, Jobs};
use crate::domain::{JobId, SweepId};
use crate::error::{Error, Result};
use crate::store::JobRow;

/// How long a delete waits for cancelled jobs to stop: a running job stops within one batch
/// once its worker sees the cancel (at once on this node, within a heartbeat otherwise), but
/// a job still preparing its data only sees it when training starts.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// How often the wait looks at the rows when no event arrives.
const STOP_POLL: Duration = Duration::from_millis(200);

impl Jobs {
    /// Deletes a job, its rows and its checkpoint folder; a queued or running one is cancelled
    /// first. A 404 for an unknown job; a 409 for a sweep's trial (deleted with its sweep), for
    /// the `init.from_job` of a queued or running job, or for a job that did not stop in time.
    pub async fn delete_job(&self, id: JobId) -> Result<()> {
        let job = self.get(id).await?;
        // Refusals come before the cancel: a refused delete must not have stopped the job.
        self.inner.store.check_job_deletable(id).await?;
        if !job.status.is_terminal() {
            self.cancel_quietly(id).await?;
            self.wait_until_stopped(&[id]).await?;
        }
        self.inner.store.delete_job(id, false).await?;
        self.forget_jobs(&[id]).await;
        tracing::info!(job_id = %id, "job deleted");
        Ok(())
    }

    /// Deletes a sweep: its queued and running trials are cancelled, then every one of its
    /// jobs (current trials and those a resume replaced) goes as [`Jobs::delete_job`] deletes
    /// one, then the sweep. A 404 for an unknown sweep; a 409 while a job outside it loads a
    /// backbone from one of its jobs, or when a trial did not stop in time.
    pub async fn delete_sweep(&self, id: SweepId) -> Result<()> {
        self.get_sweep(id).await?;
        self.inner.store.check_sweep_deletable(id).await?;
        self.cancel_sweep(id).await?;
        let jobs = self.inner.store.sweep_job_ids(id).await?;
        self.wait_until_stopped(&jobs).await?;
        let deleted = self
            .inner
            .store
            .delete_sweep(id, false)
            .await?
            .unwrap_or_default();
        self.forget_jobs(&deleted).await;
        tracing::info!(sweep_id = %id, jobs = deleted.len(), "sweep deleted");
        Ok(())
    }

    /// Pins a job (the age retention keeps it) or unpins it.
    pub async fn set_pinned(&self, id: JobId, pinned: bool) -> Result<JobRow> {
        self.inner
            .store
            .set_pinned(id, pinned)
            .await?
            .ok_or_else(|| Error::not_found("job", id.to_string()))
    }

    /// Cancels a job unless it has ended meanwhile.
    async fn cancel_quietly(&self, id: JobId) -> Result<()> {
        match self.cancel(id).await {
            Ok(_) | Err(Error::Conflict { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Waits until none of `ids` is queued or running (a job that is gone counts as stopped),
    /// at most [`STOP_WAIT`]: once a job's end is recorded its worker writes nothing more.
    async fn wait_until_stopped(&self, ids: &[JobId]) -> Result<()> {
        let started = Instant::now();
        // Subscribed before looking, so an end recorded in between still wakes the wait.
        let mut events = self.subscribe();
        let mut waiting: Vec<JobId> = ids.to_vec();
        loop {
            let mut still = Vec::new();
            for &id in &waiting {
                if let Some(job) = self.inner.store.get_job(id).await?
                    && !job.status.is_terminal()
                {
                    still.push(id);
                }
            }
            waiting = still;
            let Some(first) = waiting.first() else {
                return Ok(());
            };
            let left = STOP_WAIT.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::conflict(format!(
                    "job {first} was cancelled but has not stopped after {} s (it may still \
                     be preparing its data); try the delete again in a moment",
                    STOP_WAIT.as_secs()
                )));
            }
            let pause = left.min(STOP_POLL);
            let _ = tokio::time::timeout(pause, async {
                while let Ok(event) = events.recv().await {
                    if matches!(event, JobEvent::Status { .. }) && waiting.contains(&event.job_id())
                    {
                        return;
                    }
                }
            })
            .await;
        }
    }

    /// After jobs' rows are gone: removes their checkpoint folders and tells listeners (event
    /// streams, the prediction cache). A folder that cannot be removed is logged; the next
    /// start collects it.
    pub(super) async fn forget_jobs(&self, ids: &[JobId]) {
        let root = self.inner.config.data_dir.join("checkpoints");
        let folders: Vec<_> = ids.iter().map(|id| root.join(id.to_string())).collect();
        let removed = tokio::task::spawn_blocking(move || {
            for folder in folders {
                match std::fs::remove_dir_all(&folder) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        tracing::warn!(path = %folder.display(), error = %err,
                            "removing a deleted job's checkpoints failed; the next start removes them")
                    }
                }
            }
        })
        .await;
        if let Err(err) = removed {
            tracing::error!(error = %err, "removing deleted jobs' checkpoints failed");
        }
        for &job_id in ids {
            self.publish(JobEvent::Deleted { job_id });
        }
    }
}
