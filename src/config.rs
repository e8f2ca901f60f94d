//! All settings, from command-line flags and `TRAINSERVE_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings of a running service. Every field has a default, so `trainserve serve` just works.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Address to listen on. Binding anything other than loopback exposes the service.
    #[arg(long, env = "TRAINSERVE_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Folder for the database, data sets and checkpoints; created on first start.
    #[arg(long, env = "TRAINSERVE_DATA_DIR", default_value = "./trainserve-data")]
    pub data_dir: PathBuf,

    /// How many jobs train at the same time.
    #[arg(long, env = "TRAINSERVE_WORKER_SLOTS", default_value_t = 1)]
    pub worker_slots: usize,

    /// Cores each training job may use (its kernels, matrix products and rayon pool); 0
    /// divides the machine's cores evenly between the worker slots.
    #[arg(long, env = "TRAINSERVE_THREADS_PER_JOB", default_value_t = 0)]
    pub threads_per_job: usize,

    /// Where jobs train: `cpu`, `cuda` (GPU 0; needs a build with `--features cuda`) or
    /// `auto` (the GPU when this build and machine have one, else the CPU).
    #[arg(long, env = "TRAINSERVE_DEVICE", default_value = "cpu")]
    pub device: DeviceChoice,

    /// Largest JSON request body, in bytes.
    #[arg(long, env = "TRAINSERVE_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest data-set upload, in bytes.
    #[arg(long, env = "TRAINSERVE_MAX_UPLOAD_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub max_upload_bytes: usize,

    /// Seconds a worker's claim on a job lasts without a heartbeat.
    #[arg(long, env = "TRAINSERVE_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,

    /// How often (seconds) a worker renews its claim, and the scheduler looks for work it missed.
    #[arg(long, env = "TRAINSERVE_HEARTBEAT_SECONDS", default_value_t = 10)]
    pub heartbeat_seconds: u64,

    /// How many times a job may be interrupted by a crash before it is failed.
    #[arg(long, env = "TRAINSERVE_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,

    /// Prediction requests computed at the same time; more get 429.
    #[arg(
        long,
        env = "TRAINSERVE_MAX_CONCURRENT_PREDICTIONS",
        default_value_t = 64
    )]
    pub max_concurrent_predictions: usize,

    /// Models kept loaded for prediction.
    #[arg(long, env = "TRAINSERVE_MODEL_CACHE_SIZE", default_value_t = 16)]
    pub model_cache_size: usize,

    /// Seconds a connection may take to send a request's headers, counted from its first byte
    /// (or from the moment it connects, for its first request); slower ones are closed.
    #[arg(long, env = "TRAINSERVE_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_seconds: u64,

    /// Seconds a connection may stay open with no request being handled and no byte moving
    /// (a keep-alive connection between requests, or a client that stopped reading a
    /// response); then it is closed.
    #[arg(long, env = "TRAINSERVE_IDLE_TIMEOUT_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_seconds: u64,

    /// Most client connections open at once; more wait in the kernel's accept queue until
    /// one closes. 0 derives it from the open-file limit (raised to its hard limit at start),
    /// keeping a quarter of it, and at least 64 descriptors, for training and the database.
    #[arg(long, env = "TRAINSERVE_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "TRAINSERVE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

/// The `--device` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The CPU, with trainserve's own kernels.
    Cpu,
    /// CUDA GPU 0; start-up fails if this build or machine has none.
    Cuda,
    /// CUDA GPU 0 when available, else the CPU.
    Auto,
}

impl Config {
    /// Cores for one training job: `threads_per_job`, or the machine's cores (as candle
    /// counts them, honouring `RAYON_NUM_THREADS`) divided between the worker slots.
    pub fn job_threads(&self) -> usize {
        if self.threads_per_job > 0 {
            return self.threads_per_job;
        }
        (candle_core::utils::get_num_threads() / self.worker_slots.max(1)).max(1)
    }

    /// The defaults, rooted at `data_dir`, listening on `bind`; used by tests and the benchmark.
    pub fn with_data_dir(data_dir: PathBuf, bind: SocketAddr) -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            config: Config,
        }
        let mut config = Wrapper::parse_from(["trainserve"]).config;
        config.data_dir = data_dir;
        config.bind = bind;
        config
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("trainserve.db")
    }

    /// Where data sets are stored, one folder each.
    pub fn datasets_dir(&self) -> PathBuf {
        self.data_dir.join("datasets")
    }

    /// Where checkpoints are stored, one folder per job.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.data_dir.join("checkpoints")
    }
}
