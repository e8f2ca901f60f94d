//! A fresh service in a temporary folder, for the benchmarks that time jobs through the whole
//! service: queue, worker pool, checkpoints, database.

use std::path::PathBuf;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use trainserve::api::AppState;
use trainserve::config::Config;
use trainserve::domain::{JobId, JobSpec, JobStatus};
use trainserve::error::{Error, Result};
use trainserve::jobs::JobEvent;
use trainserve::startup::Application;

/// A running service on a random port with its own data folder, removed by [`Self::stop`].
pub struct ScratchService {
    /// The service's state, to submit jobs and read results directly.
    pub state: AppState,
    dir: PathBuf,
    stop: oneshot::Sender<()>,
    server: JoinHandle<Result<()>>,
}

impl ScratchService {
    /// Starts a service with `worker_slots` slots and every other setting at its default.
    pub async fn start(worker_slots: usize) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("trainserve-bench-{}", uuid::Uuid::new_v4()));
        let mut config =
            Config::with_data_dir(dir.clone(), "127.0.0.1:0".parse().expect("a valid address"));
        config.worker_slots = worker_slots;
        let app = Application::build(config).await?;
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Ok(ScratchService {
            state,
            dir,
            stop,
            server,
        })
    }

    /// Submits `specs` and waits until every job has ended; an error unless all succeeded.
    pub async fn train_all(&self, specs: Vec<JobSpec>) -> Result<Vec<JobId>> {
        let mut events = self.state.jobs.subscribe();
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            ids.push(
                self.state
                    .jobs
                    .submit(spec, &trainserve::domain::Caller::open())
                    .await?
                    .id,
            );
        }
        let mut pending = ids.clone();
        while !pending.is_empty() {
            match events.recv().await {
                Ok(JobEvent::Status {
                    job_id,
                    status,
                    failure,
                }) if status.is_terminal() && pending.contains(&job_id) => {
                    if status != JobStatus::Succeeded {
                        return Err(Error::Internal(format!(
                            "benchmark job ended {status}: {failure:?}"
                        )));
                    }
                    pending.retain(|id| *id != job_id);
                }
                Ok(_) => {}
                Err(err) => return Err(Error::internal("waiting for the benchmark jobs", err)),
            }
        }
        Ok(ids)
    }

    /// Stops the service and removes its folder.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.server.await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
