use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Jobs, now_ms};

impl Jobs {
    /// Claims queued jobs into free worker slots until shutdown begins, then waits for the
    /// running ones to checkpoint or go back to the queue. Runs the retention policy beside.
    pub async fn run_scheduler(self) {
        let config = &self.inner.config;
        let slots = Arc::new(Semaphore::new(config.worker_slots.max(1)));
        let mut workers = JoinSet::new();
        let mut stopping = self.inner.stopping.subscribe();
        let retention = tokio::spawn(self.clone().run_retention());
        loop {
            if *stopping.borrow_and_update() {
                break;
            }
            let permit = tokio::select! {
                permit = Arc::clone(&slots).acquire_owned() => permit.expect("the slot semaphore is never closed; this is a bug"),
                _ = stopping.changed() => break,
            };
            // Listen before looking, so that a job submitted while we query is not missed.
            let notified = self.inner.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();

            let lease_until = now_ms() + config.lease.as_millis() as i64;
            match self
                .inner
                .store
                .claim_next_job(&self.inner.owner, lease_until)
                .await
            {
                Ok(Some(claim)) => {
                    let jobs = self.clone();
                    workers.spawn(async move {
                        jobs.run_claimed(claim).await;
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => drop(permit),
                Err(err) => {
                    drop(permit);
                    tracing::error!(error = %err, "claiming a job failed");
                }
            }
            // A worker that died without ending its job stops renewing its lease.
            if let Err(err) = self
                .inner
                .store
                .recover_interrupted_jobs(now_ms(), i64::from(config.max_attempts))
                .await
            {
                tracing::error!(error = %err, "reaping expired leases failed");
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(config.heartbeat) => {}
                _ = stopping.changed() => break,
                Some(_) = workers.join_next() => {}
            }
        }
        while let Some(result) = workers.join_next().await {
            if let Err(err) = result {
                tracing::error!(error = %err, "a worker task failed");
            }
        }
        if let Err(err) = retention.await {
            tracing::error!(error = %err, "the retention task failed");
        }
        tracing::info!("scheduler stopped");
    }
}
