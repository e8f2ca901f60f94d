//! Wires the store, catalog, queue, predictor and router together, and runs them until a
//! shutdown signal: stop claiming, send running jobs back to the queue, close the database.

mod connections;
mod file_limit;

use crate::studies::Studies;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::access::{Gate, StorageMeter};
use crate::api::{self, AppState, BodyLimits};
use crate::catalog::Catalog;
use candle_core::Device;

use crate::config::{Config, DeviceChoice};
use crate::error::{Error, Result};
use crate::jobs::{Jobs, QueueConfig};
use crate::predict::Predictor;
use crate::store::Store;
use connections::ConnectionLimits;

/// A built, not yet running, service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    limits: BodyLimits,
    connections: ConnectionLimits,
}

impl Application {
    /// Creates the data folder and database if needed, recovers interrupted jobs, makes sure
    /// the built-in data sets exist and binds the listener.
    pub async fn build(config: Config) -> Result<Application> {
        // Installed before anything records a metric.
        crate::prometheus::handle();
        let connections = connection_limits(&config);
        std::fs::create_dir_all(config.datasets_dir()).map_err(|err| {
            Error::internal(&format!("creating {}", config.data_dir.display()), err)
        })?;
        std::fs::create_dir_all(config.checkpoints_dir())
            .map_err(|err| Error::internal("creating the checkpoint folder", err))?;
        let store = Store::open(&config.database_path()).await?;
        let catalog = Catalog::new(store.clone(), config.datasets_dir())
            .with_sizes(config.max_dataset_bytes, config.dataset_cache_bytes);
        // Before anything writes: what a crash left half-done is removed (and logged).
        catalog.collect_debris().await?;
        crate::catalog::remove_temp_files(&config.checkpoints_dir())?;
        crate::catalog::remove_temp_files(&config.data_dir.join("weights"))?;
        catalog.ensure_builtins().await?;
        let jobs = Jobs::new(
            store.clone(),
            catalog.clone(),
            QueueConfig {
                worker_slots: config.worker_slots,
                lease: std::time::Duration::from_secs(config.lease_seconds.max(2)),
                heartbeat: std::time::Duration::from_secs(config.heartbeat_seconds.max(1)),
                max_attempts: config.max_attempts.max(1),
                data_dir: config.data_dir.clone(),
                job_threads: config.job_threads(),
                device: training_device(config.device)?,
                max_job_memory: config.job_memory_limit(),
                max_priority: config.max_priority,
                retention: config.retention_policy(),
            },
        );
        jobs.recover().await?;
        // Files whose rows a delete removed just before a crash; before any job writes.
        jobs.collect_orphans().await?;
        let predictor = Predictor::new(
            store.clone(),
            config.data_dir.clone(),
            config.model_cache_bytes,
            config.prediction_threads(),
        );
        // What aliases point at is loaded in the background, so that it is warm before its
        // first request without holding up start-up.
        tokio::spawn({
            let predictor = predictor.clone();
            async move { predictor.warm_aliased().await }
        });
        check_bind_policy(&config, store.any_active_token().await?)?;
        let gate = Gate::new(
            store.clone(),
            config.quotas(),
            StorageMeter::new(config.datasets_dir()),
        );
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|err| Error::internal(&format!("binding {}", config.bind), err))?;
        let studies = Studies::new(
            store.clone(),
            jobs.clone(),
            catalog.clone(),
            predictor.clone(),
        );
        Ok(Application {
            listener,
            state: AppState {
                store,
                jobs,
                catalog,
                predictor,
                gate,
                studies,
            },
            limits: BodyLimits {
                json_bytes: config.max_body_bytes,
                upload_bytes: config.max_upload_bytes,
            },
            connections,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address; this is a bug")
    }

    /// The shared state, for in-process use (benchmarks).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops gracefully.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let Application {
            listener,
            state,
            limits,
            connections,
        } = self;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "trainserve listening");
        let scheduler = tokio::spawn(state.jobs.clone().run_scheduler());
        // Study parts that wait for another part (a transfer's source model) are created as
        // those finish, and at start for any a crash left waiting.
        tokio::spawn(state.studies.clone().run_advancer());
        tokio::spawn(forget_deleted_models(
            state.jobs.subscribe(),
            state.predictor.clone(),
        ));
        let jobs = state.jobs.clone();
        let store = state.store.clone();
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(connections::serve(
            listener,
            api::router(state, limits),
            connections,
            async move {
                let _ = http_stopped.await;
            },
        ));
        shutdown.await;
        tracing::info!("shutting down: no new jobs are claimed; running jobs go back to the queue");
        jobs.begin_shutdown();
        let _ = stop_http.send(());
        // Event streams would hold the server open; give connections a moment, then go.
        let _ = tokio::time::timeout(api::SHUTDOWN_GRACE, server).await;
        if let Err(err) = scheduler.await {
            tracing::error!(error = %err, "the scheduler failed");
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Refuses to expose a service without tokens beyond loopback, unless told to.
fn check_bind_policy(config: &Config, tokens_in_force: bool) -> Result<()> {
    if config.bind.ip().is_loopback() || tokens_in_force {
        if !tokens_in_force {
            tracing::info!(
                "no tokens in force: the service is open to every caller on this machine"
            );
        }
        return Ok(());
    }
    if config.insecure_no_auth {
        tracing::warn!(bind = %config.bind, "--insecure-no-auth: listening beyond loopback with no tokens; anyone who can reach this address can train, predict and delete");
        return Ok(());
    }
    Err(Error::Unavailable {
        message: format!(
            "refusing to listen on {} with no tokens: anyone who could reach it could train, predict and delete. Create one first with `trainserve tokens create --scope admin --data-dir {}`, bind a loopback address, or pass --insecure-no-auth",
            config.bind,
            config.data_dir.display()
        ),
    })
}

/// Drops deleted jobs' models from the prediction cache (however they were deleted: by a
/// request or by retention) until the queue is gone.
async fn forget_deleted_models(
    mut events: tokio::sync::broadcast::Receiver<crate::jobs::JobEvent>,
    predictor: Predictor,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(crate::jobs::JobEvent::Deleted { job_id }) => predictor.forget(job_id),
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// The timeouts and the connection cap; raises the open-file limit the cap is derived from.
fn connection_limits(config: &Config) -> ConnectionLimits {
    let open_files = file_limit::raise_open_file_limit();
    let max_connections = file_limit::connection_cap(config.max_connections, open_files);
    match open_files {
        Some(limit) if max_connections as u64 + file_limit::reserve(limit) > limit => {
            tracing::warn!(
                max_connections,
                open_file_limit = limit,
                "the connection cap leaves fewer than {} open files for training and the database",
                file_limit::reserve(limit)
            );
        }
        _ => tracing::info!(
            max_connections,
            open_file_limit = open_files,
            "connections are capped"
        ),
    }
    ConnectionLimits {
        header_read: Duration::from_secs(config.header_read_timeout_seconds.max(1)),
        idle: Duration::from_secs(config.idle_timeout_seconds.max(1)),
        max_connections,
    }
}

/// Sets up the process for training, before any other thread exists: candle's thread counts
/// (`threads` for matrix products, else the physical cores, unless `RAYON_NUM_THREADS` is set;
/// element-wise ops on the calling thread) and the allocator. Both binaries call it first.
pub fn configure_process(threads: Option<usize>) {
    // candle asks the OS how many cores there are on every matrix product unless this is set
    // (a quarter of a small MLP's training time); fix it once, while the process has one thread.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() || threads.is_some() {
        let threads = threads.unwrap_or_else(candle_core::utils::get_num_threads);
        // SAFETY: the caller runs this before any other thread exists, so nothing can read
        // the environment concurrently.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    // candle's element-wise ops (and the gradient sums of backward) otherwise run on a
    // process-wide spinning pool outside any job's thread budget; on the calling thread they
    // measured faster beside trainserve's kernels.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // SAFETY: as above, no other thread exists yet.
        unsafe { std::env::set_var("CANDLE_NUM_THREADS", "1") };
    }
    kernels::keep_freed_memory();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// The device `--device` asks for. A CUDA build cannot fall back at run time unless asked to
/// (`auto`): `cuda` without a usable GPU stops the start-up with the reason.
fn training_device(choice: DeviceChoice) -> Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => Device::new_cuda(0).map_err(|err| {
            Error::Internal(format!(
                "--device cuda: no usable GPU ({err}); build with `cargo build --release --features cuda` \
                 on a machine with an NVIDIA driver and CUDA toolkit, or use --device cpu"
            ))
        }),
        DeviceChoice::Auto => Ok(Device::new_cuda(0).unwrap_or(Device::Cpu)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_is_the_default_and_auto_falls_back_to_it() {
        assert!(training_device(DeviceChoice::Cpu).unwrap().is_cpu());
        #[cfg(not(feature = "cuda"))]
        {
            assert!(training_device(DeviceChoice::Auto).unwrap().is_cpu());
            let err = training_device(DeviceChoice::Cuda).unwrap_err().to_string();
            assert!(err.contains("--features cuda"), "{err}");
        }
    }
}
