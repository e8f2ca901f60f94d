//! Connections that send nothing, or half a request, cannot take the server's descriptors:
//! they are capped below the open-file limit and closed after the header-read timeout, while
//! health checks and training go on.

use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Api, digits_spec};

/// The server binary with extra flags and, optionally, an open-file limit (soft and hard).
struct Server {
    base: String,
    addr: String,
    client: reqwest::Client,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(flags: &[&str], open_files: Option<u64>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = StdListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_trainserve"));
        command
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--bind")
            .arg(format!("127.0.0.1:{port}"))
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(limit) = open_files {
            // SAFETY: setrlimit is async-signal-safe and touches only the child being started.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let server = Server {
            base: format!("http://127.0.0.1:{port}"),
            addr: format!("127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            child: command.spawn().expect("the server binary starts"),
            _dir: dir,
        };
        crate::helpers::wait_until_ready(&server.client, &server.base).await;
        server
    }

    /// `count` connections that never finish a request: every other one sends half a header.
    async fn idle_connections(&self, count: usize) -> Vec<TcpStream> {
        let mut sockets = Vec::with_capacity(count);
        for i in 0..count {
            let mut socket = TcpStream::connect(&self.addr).await.expect("connects");
            if i % 2 == 1 {
                socket
                    .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .unwrap();
            }
            sockets.push(socket);
        }
        sockets
    }

    /// `/healthz` from a fresh client, waiting at most 30 s.
    async fn healthz(&self) -> Result<StatusCode, String> {
        reqwest::Client::new()
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map(|r| r.status())
            .map_err(|err| err.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api for Server {
    fn base(&self) -> &str {
        &self.base
    }
    fn http(&self) -> &reqwest::Client {
        &self.client
    }
}

/// Whether the server closed the socket (end of stream or reset, after at most a 408),
/// waiting at most 30 s.
async fn closed_by_server(mut socket: TcpStream) -> bool {
    let mut received = Vec::new();
    match tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut received)).await {
        Ok(Ok(_)) => true,
        Ok(Err(err)) => matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_beyond_the_cap_wait_their_turn_and_are_closed_after_the_header_timeout()
{
    let server = Server::start(
        &[
            "--max-connections",
            "8",
            "--header-read-timeout-seconds",
            "1",
        ],
        None,
    )
    .await;
    let id = server.submit(digits_spec(20, 16)).await;

    let sockets = server.idle_connections(32).await;
    assert_eq!(server.healthz().await, Ok(StatusCode::OK));
    let closed = join_all(sockets.into_iter().map(closed_by_server)).await;
    let open = closed.iter().filter(|&&c| !c).count();
    assert_eq!(open, 0, "{open} of 32 idle connections were left open");

    let job = server.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_small_open_file_limit_idle_connections_starve_neither_health_checks_nor_training()
{
    // 128 descriptors: the derived cap leaves 64 of them to the database and training, and
    // 150 silent sockets are more than the whole limit.
    let server = Server::start(&["--header-read-timeout-seconds", "1"], Some(128)).await;
    let id = server.submit(digits_spec(20, 16)).await;

    let sockets = server.idle_connections(150).await;
    assert_eq!(server.healthz().await, Ok(StatusCode::OK));
    let job = server.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let closed = join_all(sockets.into_iter().map(closed_by_server)).await;
    assert!(closed.iter().all(|&c| c), "idle connections were left open");
}
