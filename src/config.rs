//! All settings, from command-line flags and `TRAINSERVE_*` environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

    /// The largest data set, in bytes as stored and held in memory (4 bytes per feature value
    /// and per label): CSV uploads, image archives and synthetic data sets over it are refused
    /// with a 422 naming the limit.
    #[arg(long, env = "TRAINSERVE_MAX_DATASET_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub max_dataset_bytes: u64,

    /// Memory for data sets kept loaded between jobs, in bytes; the least recently used are
    /// dropped first. 0 keeps none.
    #[arg(long, env = "TRAINSERVE_DATASET_CACHE_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub dataset_cache_bytes: u64,

    /// Seconds a worker's claim on a job lasts without a heartbeat.
    #[arg(long, env = "TRAINSERVE_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,

    /// How often (seconds) a worker renews its claim, and the scheduler looks for work it missed.
    #[arg(long, env = "TRAINSERVE_HEARTBEAT_SECONDS", default_value_t = 10)]
    pub heartbeat_seconds: u64,

    /// How many times a job may be interrupted by a crash before it is failed.
    #[arg(long, env = "TRAINSERVE_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,

    /// Threads that run predictions (each model's batched forward passes), apart from
    /// training's, so that a running job cannot starve predictions; 0: half the cores.
    #[arg(long, env = "TRAINSERVE_INFERENCE_THREADS", default_value_t = 0)]
    pub inference_threads: usize,

    /// Memory the loaded models' weights may take, in bytes or with a binary suffix (`512M`,
    /// `2G`); beyond it the least recently used model is unloaded.
    #[arg(long, env = "TRAINSERVE_MODEL_CACHE_BYTES", default_value = "1G", value_parser = parse_bytes)]
    pub model_cache_bytes: u64,

    /// Most memory one job may need, in bytes or with a binary suffix (`512M`, `4G`, `1.5GiB`).
    /// Every job's peak (data as prepared, parameters, gradients, optimizer state, checkpoint
    /// copies and activations at its batch size) is estimated at submission; a larger one is
    /// refused with a 422, and a queued one found over the limit later fails with the reason.
    /// Default: half the memory this process may use (its cgroup's `memory.max`, else the
    /// machine's), divided by `--worker-slots`, since every slot may train a job at its limit
    /// at once and the other half stays for the data-set cache, uploads, prediction and the OS.
    #[arg(long, env = "TRAINSERVE_MAX_JOB_MEMORY", value_parser = parse_bytes)]
    pub max_job_memory: Option<u64>,

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

    /// Start on an address beyond loopback with no token in force, leaving the service open to
    /// anyone who can reach it. Without this, such a start is refused; with it, every start
    /// logs a warning.
    #[arg(long, env = "TRAINSERVE_INSECURE_NO_AUTH", default_value_t = false)]
    pub insecure_no_auth: bool,

    /// The highest job priority a token without the `admin` scope may set.
    #[arg(long, env = "TRAINSERVE_MAX_PRIORITY", default_value_t = 10)]
    pub max_priority: i32,

    /// Quota per token (without `admin`): jobs queued or running at once, sweep trials
    /// included; more are a 429 with `Retry-After`.
    #[arg(long, env = "TRAINSERVE_QUOTA_ACTIVE_JOBS", default_value_t = 100)]
    pub quota_active_jobs: u32,

    /// Quota per token: trials in one sweep.
    #[arg(long, env = "TRAINSERVE_QUOTA_SWEEP_TRIALS", default_value_t = 100)]
    pub quota_sweep_trials: u32,

    /// Quota per token: a sweep's estimated work, the sum over its trials of the data set's
    /// rows times the trial's epochs.
    #[arg(
        long,
        env = "TRAINSERVE_QUOTA_SWEEP_SAMPLE_EPOCHS",
        default_value_t = 1_000_000_000
    )]
    pub quota_sweep_sample_epochs: u64,

    /// Quota per token: `checkpoints.keep_last` of one job.
    #[arg(long, env = "TRAINSERVE_QUOTA_KEEP_LAST", default_value_t = 20)]
    pub quota_keep_last: u32,

    /// Quota per token: bytes of the data folder its checkpoints, data sets and weights may
    /// use (e.g. `10G`); uploads and submissions beyond it are refused.
    #[arg(long, env = "TRAINSERVE_QUOTA_STORAGE", default_value = "10G", value_parser = parse_bytes)]
    pub quota_storage: u64,

    /// Quota per token: data-set and weights uploads in any hour.
    #[arg(long, env = "TRAINSERVE_QUOTA_UPLOADS_PER_HOUR", default_value_t = 60)]
    pub quota_uploads_per_hour: u32,

    /// Quota per token: requests per second, with bursts of twice as many; 0 turns the rate
    /// limit off.
    #[arg(
        long,
        env = "TRAINSERVE_QUOTA_REQUESTS_PER_SECOND",
        default_value_t = 100
    )]
    pub quota_requests_per_second: u32,
    /// Seconds between retention passes over ended jobs (the first runs at start-up):
    /// checkpoints beyond `--retention-keep-last` are removed and, with `--retention-days`,
    /// old jobs deleted. 0 turns retention off.
    #[arg(long, env = "TRAINSERVE_RETENTION_INTERVAL_SECONDS", default_value_t = 3600.0,
          value_parser = parse_non_negative)]
    pub retention_interval_seconds: f64,

    /// Checkpoints an ended job keeps beside its best and its latest epoch (fewer when its
    /// spec's `checkpoints.keep_last` asks for fewer); 0 keeps only the best and the latest.
    #[arg(long, env = "TRAINSERVE_RETENTION_KEEP_LAST", default_value_t = 3)]
    pub retention_keep_last: u32,

    /// Days after which an ended job (succeeded, failed or cancelled) is deleted with its
    /// files, unless it is pinned (`PUT /v1/jobs/{id}/pin`) or a queued or running job loads
    /// its checkpoint; a sweep's trials go with their sweep, once every one of them ended that
    /// long ago and none is pinned. Fractions are allowed; 0 never deletes jobs.
    #[arg(long, env = "TRAINSERVE_RETENTION_DAYS", default_value_t = 0.0,
          value_parser = parse_non_negative)]
    pub retention_days: f64,

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
    /// Inference threads: `inference_threads`, or half the cores (at least one).
    pub fn prediction_threads(&self) -> usize {
        if self.inference_threads > 0 {
            return self.inference_threads;
        }
        (candle_core::utils::get_num_threads() / 2).max(1)
    }

    /// Cores for one training job: `threads_per_job`, or the machine's cores (as candle
    /// sees them) divided by the worker slots.
    pub fn job_threads(&self) -> usize {
        if self.threads_per_job > 0 {
            return self.threads_per_job;
        }
        (candle_core::utils::get_num_threads() / self.worker_slots.max(1)).max(1)
    }

    /// The memory one job may need: `max_job_memory`, or half of what this process may use
    /// shared between the worker slots.
    pub fn job_memory_limit(&self) -> u64 {
        self.max_job_memory
            .unwrap_or_else(|| usable_memory() / 2 / self.worker_slots.max(1) as u64)
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

    /// The quotas of tokens that set none of their own.
    pub fn quotas(&self) -> crate::domain::Quotas {
        crate::domain::Quotas {
            active_jobs: self.quota_active_jobs,
            sweep_trials: self.quota_sweep_trials,
            sweep_sample_epochs: self.quota_sweep_sample_epochs,
            keep_last: self.quota_keep_last,
            storage_bytes: self.quota_storage,
            uploads_per_hour: self.quota_uploads_per_hour,
            requests_per_second: self.quota_requests_per_second,
        }
    }

    /// The retention policy the `--retention-*` settings describe.
    pub fn retention_policy(&self) -> crate::jobs::RetentionPolicy {
        // Too long to represent is as good as never.
        let positive = |seconds: f64| {
            (seconds > 0.0)
                .then(|| Duration::try_from_secs_f64(seconds).ok())
                .flatten()
        };
        crate::jobs::RetentionPolicy {
            interval: positive(self.retention_interval_seconds),
            keep_last: self.retention_keep_last,
            max_age: positive(self.retention_days * 86_400.0),
        }
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

/// Assumed when neither the cgroup nor `/proc/meminfo` says how much memory there is.
const FALLBACK_MEMORY: u64 = 8 << 30;

/// The memory this process may use: the smallest cgroup v2 `memory.max` on its cgroup's path
/// (a container's or a systemd unit's limit), or the machine's `MemTotal`, whichever is less;
/// 8 GiB when neither can be read.
pub fn usable_memory() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| mem_total(&info));
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|groups| {
            let path = groups.lines().find_map(|line| line.strip_prefix("0::"))?;
            let mut dir = std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
            let mut limit: Option<u64> = None;
            loop {
                if let Ok(max) = std::fs::read_to_string(dir.join("memory.max"))
                    && let Ok(bytes) = max.trim().parse::<u64>()
                {
                    limit = Some(limit.map_or(bytes, |l| l.min(bytes)));
                }
                if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
                    break;
                }
            }
            limit
        });
    match (total, cgroup) {
        (Some(total), Some(limit)) => total.min(limit),
        (Some(bytes), None) | (None, Some(bytes)) => bytes,
        (None, None) => FALLBACK_MEMORY,
    }
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A finite number of 0 or more (seconds, days).
fn parse_non_negative(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        _ => Err(format!("'{text}' is not a number of 0 or more")),
    }
}

/// Bytes from `4294967296`, `4G`, `512M`, `1.5GiB` or `64k`: K, M, G and T (optionally
/// followed by `i`, `iB` or `B`) are powers of 1024, as in Docker's `--memory`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B').filter(|u| !u.is_empty()))
        .or_else(|| unit.strip_suffix('I'))
        .unwrap_or(&unit);
    let shift = match unit {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}'; valid: bytes, or a number with K, M, G or T (e.g. 512M, 4G)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size; valid: bytes, or e.g. 512M, 4G"))?;
    let bytes = (value * (1u64 << shift) as f64).ceil();
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("'{text}' is out of range; valid: at least 1 byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("4G"), Ok(4 << 30));
        assert_eq!(parse_bytes("4GB"), Ok(4 << 30));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("2 Ti"), Ok(2 << 40));
        assert!(parse_bytes("4X").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-1G").is_err());
    }

    #[test]
    fn the_machines_memory_is_read_from_meminfo() {
        let info = "MemTotal:       16318480 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total(info), Some(16_318_480 * 1024));
        assert_eq!(mem_total("nothing"), None);
        assert!(usable_memory() > 0);
    }

    #[test]
    fn retention_trims_checkpoints_hourly_and_deletes_no_job_by_default() {
        let mut config = Config::with_data_dir("d".into(), "127.0.0.1:0".parse().unwrap());
        let policy = config.retention_policy();
        assert_eq!(policy.interval, Some(Duration::from_secs(3600)));
        assert_eq!((policy.keep_last, policy.max_age), (3, None));
        config.retention_days = 0.5;
        config.retention_interval_seconds = 0.0;
        let policy = config.retention_policy();
        assert_eq!(policy.max_age, Some(Duration::from_secs(43_200)));
        assert_eq!(policy.interval, None);
        assert!(parse_non_negative("-1").is_err() && parse_non_negative("inf").is_err());
        assert_eq!(parse_non_negative("1e-5"), Ok(1e-5));
    }

    #[test]
    fn the_default_limit_is_half_the_memory_shared_by_the_slots() {
        let mut config = Config::with_data_dir("d".into(), "127.0.0.1:0".parse().unwrap());
        config.worker_slots = 2;
        assert_eq!(config.job_memory_limit(), usable_memory() / 4);
        config.max_job_memory = Some(123);
        assert_eq!(config.job_memory_limit(), 123);
    }
}
