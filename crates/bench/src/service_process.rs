//! The `trainserve` binary as production runs it, in a process of its own: a fresh data
//! folder, a random loopback port, every setting at its default (logging included: the
//! service's output goes to a file beside its data folder). Its resident memory is read from
//! `/proc/<pid>/status`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use tokio::process::{Child, Command};

use super::load;
use trainserve::error::{Error, Result};

/// How long a fresh service may take to answer `/readyz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The service binary to start: `explicit`, or the `trainserve` beside this benchmark's own
/// binary. Run through `cargo run`, that binary is built (or found up to date) first with the
/// same cargo and profile, so that it is never older than the sources.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return path.exists().then(|| path.to_path_buf()).ok_or_else(|| {
            Error::invalid("service-bin", format!("{} does not exist", path.display()))
        });
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let mut build = std::process::Command::new(cargo);
        build
            .args(["build", "--bin", "trainserve", "--manifest-path"])
            .arg(manifest)
            .stdout(Stdio::null());
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build
            .status()
            .map_err(|err| Error::internal("running cargo build --bin trainserve", err))?;
        if !status.success() {
            return Err(Error::Internal(format!(
                "cargo build --bin trainserve failed ({status})"
            )));
        }
    }
    let exe = std::env::current_exe()
        .map_err(|err| Error::internal("finding the benchmark's own binary", err))?;
    let beside = exe
        .with_file_name("trainserve")
        .with_extension(std::env::consts::EXE_EXTENSION);
    beside.exists().then_some(beside.clone()).ok_or_else(|| {
        Error::invalid(
            "service-bin",
            format!(
                "{} does not exist: build it with `cargo build --release --bin trainserve`, or \
                 pass --service-bin",
                beside.display()
            ),
        )
    })
}

/// A running service process, killed (and its folder removed) by [`Self::stop`], or killed
/// when dropped.
pub struct ServiceProcess {
    child: Child,
    pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl ServiceProcess {
    /// Starts `binary` on a fresh data folder and a free loopback port and waits until it is
    /// ready.
    pub async fn start(binary: &Path) -> Result<ServiceProcess> {
        let dir =
            std::env::temp_dir().join(format!("trainserve-bench-serve-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir)
            .map_err(|err| Error::internal(&format!("creating {}", dir.display()), err))?;
        let log = std::fs::File::create(dir.join("service.log"))
            .map_err(|err| Error::internal("creating the service's log file", err))?;
        let err_log = log
            .try_clone()
            .map_err(|err| Error::internal("sharing the service's log file", err))?;
        let addr = free_port()?;
        let child = Command::new(binary)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--bind")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| Error::internal(&format!("starting {}", binary.display()), err))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::Internal("the service exited at once".into()))?;
        let mut service = ServiceProcess {
            child,
            pid,
            addr,
            dir,
        };
        service.wait_until_ready().await?;
        Ok(service)
    }

    async fn wait_until_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Internal(format!(
                    "the service exited ({status}) before it was ready; its log: {}",
                    self.log_tail()
                )));
            }
            if let Ok((StatusCode::OK, _)) =
                load::call(self.addr, Method::GET, "/readyz", None).await
            {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Error::Internal(format!(
                    "the service was not ready within {START_TIMEOUT:?}; its log: {}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines the service wrote, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("service.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Its resident memory (`VmRSS`), in MiB.
    pub fn rss_mib(&self) -> Result<f64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path)
            .map_err(|err| Error::internal(&format!("reading {path}"), err))?;
        vm_rss_kib(&status)
            .map(|kib| kib as f64 / 1024.0)
            .ok_or_else(|| Error::Internal(format!("{path} has no VmRSS line")))
    }

    /// CPU time it has used so far, user and system, all threads, in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        let path = format!("/proc/{}/stat", self.pid);
        let stat = std::fs::read_to_string(&path)
            .map_err(|err| Error::internal(&format!("reading {path}"), err))?;
        cpu_ticks(&stat)
            .map(|ticks| ticks as f64 / USER_HZ)
            .ok_or_else(|| Error::Internal(format!("{path} is not as expected")))
    }

    /// Kills the service and removes its folder.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_port() -> Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|err| Error::internal("finding a free port", err))
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`: 100 on every Linux
/// architecture the service builds for).
const USER_HZ: f64 = 100.0;

/// `utime + stime` of a `/proc/<pid>/stat` text, in clock ticks. The command name, in
/// parentheses, may hold spaces: fields are counted after its closing parenthesis.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3) at index 0.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The `VmRSS` of a `/proc/<pid>/status` text, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_the_vm_rss_line() {
        let status = "Name:\ttrainserve\nVmPeak:\t  900000 kB\nVmRSS:\t   51234 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_kib(status), Some(51234));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_time_is_user_plus_system_ticks_after_the_command_name() {
        let stat =
            "4242 (trainserve (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 350 25 0 0 20 0 9 0";
        assert_eq!(cpu_ticks(stat), Some(375));
        assert_eq!(cpu_ticks("4242 (trainserve) S 1"), None);
    }
}
