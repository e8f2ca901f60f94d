//! The `serve` workload's load generator: a fixed number of workers, each with one HTTP/1
//! keep-alive connection of its own (hyper's client connection), sending the same request
//! back to back for a fixed time, latencies in an HDR histogram.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use trainserve::error::{Error, Result};

/// The largest latency the histogram holds, in microseconds (a minute); longer ones are
/// recorded as a minute.
const HIGHEST_MICROS: u64 = 60_000_000;

/// One kind of request, sent over and over.
#[derive(Clone, Debug)]
pub struct Target {
    /// The service's address.
    pub addr: SocketAddr,
    /// The route, e.g. `/v1/echo`.
    pub path: String,
    /// The JSON body of every request.
    pub body: Bytes,
}

/// What one run measured: every answered request's latency, and what failed.
#[derive(Clone, Debug)]
pub struct Tally {
    /// Latencies of answered requests (2xx or not), in microseconds.
    pub latencies: Histogram<u64>,
    /// Requests answered with a 2xx status.
    pub ok: u64,
    /// Requests answered with another status.
    pub non_2xx: u64,
    /// Requests that got no answer: connection refused, reset or closed mid-request.
    pub transport_errors: u64,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Tally {
        Tally {
            latencies: Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
                .expect("valid histogram bounds; this is a bug"),
            ok: 0,
            non_2xx: 0,
            transport_errors: 0,
        }
    }

    /// Records one answered request.
    pub fn answered(&mut self, status: StatusCode, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latencies
            .saturating_record(micros.clamp(1, HIGHEST_MICROS));
        if status.is_success() {
            self.ok += 1;
        } else {
            self.non_2xx += 1;
        }
    }

    /// Adds another worker's tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        self.latencies
            .add(&other.latencies)
            .expect("tallies share their bounds; this is a bug");
        self.ok += other.ok;
        self.non_2xx += other.non_2xx;
        self.transport_errors += other.transport_errors;
    }

    /// The figures of a run that lasted `elapsed`, each request carrying `rows` rows.
    pub fn summary(&self, elapsed: Duration, rows: usize) -> Summary {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let millis = |quantile: f64| {
            if self.latencies.is_empty() {
                f64::NAN
            } else {
                self.latencies.value_at_quantile(quantile) as f64 / 1000.0
            }
        };
        Summary {
            seconds,
            requests: self.ok + self.non_2xx,
            requests_per_s: self.ok as f64 / seconds,
            rows_per_s: (self.ok * rows as u64) as f64 / seconds,
            p50_ms: millis(0.5),
            p99_ms: millis(0.99),
            p999_ms: millis(0.999),
            max_ms: self.latencies.max() as f64 / 1000.0,
            errors: self.non_2xx + self.transport_errors,
        }
    }
}

impl Default for Tally {
    fn default() -> Self {
        Tally::new()
    }
}

/// A run's figures. Rates count successful requests only; latencies every answered one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// How long the run took, from the first request to the last answer.
    pub seconds: f64,
    /// Requests answered, whatever their status.
    pub requests: u64,
    /// 2xx answers per second.
    pub requests_per_s: f64,
    /// Rows predicted (or echoed) per second: 2xx answers times the rows of each request.
    pub rows_per_s: f64,
    /// Median latency, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile latency, in milliseconds.
    pub p999_ms: f64,
    /// The slowest answer, in milliseconds.
    pub max_ms: f64,
    /// Non-2xx answers plus requests that got no answer.
    pub errors: u64,
}

/// Sends `target` from `connections` workers for `duration` and tallies what came back.
/// Each worker sends its next request as soon as the previous answer is read; a worker that
/// loses its connection counts a transport error and connects again.
pub async fn run(
    target: &Target,
    connections: usize,
    duration: Duration,
) -> Result<(Tally, Duration)> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let target = target.clone();
        workers.push(tokio::spawn(async move { worker(&target, deadline).await }));
    }
    let mut tally = Tally::new();
    for worker in workers {
        let worker = worker
            .await
            .map_err(|err| Error::internal("a load worker", err))?;
        tally.merge(&worker);
    }
    Ok((tally, started.elapsed()))
}

/// One connection's loop until `deadline`.
async fn worker(target: &Target, deadline: Instant) -> Tally {
    let mut tally = Tally::new();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < deadline {
        let connection = match sender.as_mut() {
            Some(connection) => connection,
            None => match connect(target.addr).await {
                Ok(connection) => sender.insert(connection),
                Err(_) => {
                    tally.transport_errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        match send(connection, target).await {
            Ok(status) => tally.answered(status, sent.elapsed()),
            Err(_) => {
                tally.transport_errors += 1;
                sender = None;
            }
        }
    }
    tally
}

/// A new keep-alive connection, its I/O driven by a task of its own.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|err| Error::internal(&format!("connecting to {addr}"), err))?;
    stream
        .set_nodelay(true)
        .map_err(|err| Error::internal("setting TCP_NODELAY", err))?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| Error::internal("the HTTP/1 handshake", err))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// One request; the answer's body is read to its end so that the connection can be reused.
async fn send(sender: &mut SendRequest<Full<Bytes>>, target: &Target) -> Result<StatusCode> {
    let (status, _) = exchange(
        sender,
        target.addr,
        Method::POST,
        &target.path,
        target.body.clone(),
    )
    .await?;
    Ok(status)
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes)> {
    let broken = |err: hyper::Error| Error::internal(&format!("{method} {path}"), err);
    sender.ready().await.map_err(broken)?;
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(HOST, addr.to_string())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|err| Error::internal("building a request", err))?;
    let response = sender.send_request(request).await.map_err(broken)?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(broken)?
        .to_bytes();
    Ok((status, body))
}

/// One request on a connection of its own, for the set-up calls (submitting a job, polling
/// it): the status and the body as JSON (`null` when it is not JSON).
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value)> {
    let mut sender = connect(addr).await?;
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let (status, body) = exchange(&mut sender, addr, method, path, body).await?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally_of(latencies_ms: &[u64], failed: u64) -> Tally {
        let mut tally = Tally::new();
        for &ms in latencies_ms {
            tally.answered(StatusCode::OK, Duration::from_millis(ms));
        }
        for _ in 0..failed {
            tally.answered(StatusCode::TOO_MANY_REQUESTS, Duration::from_millis(1));
        }
        tally
    }

    #[test]
    fn rates_count_successful_requests_and_their_rows_over_the_elapsed_time() {
        let summary = tally_of(&[1; 400], 100).summary(Duration::from_secs(2), 64);
        assert_eq!(summary.requests, 500);
        assert_eq!(summary.requests_per_s, 200.0);
        assert_eq!(summary.rows_per_s, 200.0 * 64.0);
        assert_eq!(summary.errors, 100);
    }

    #[test]
    fn percentiles_are_read_from_the_histogram_in_milliseconds() {
        // 1..=1000 ms: the median is 500 ms, p99 990 ms, p99.9 999 ms (within the histogram's
        // three significant digits).
        let latencies: Vec<u64> = (1..=1000).collect();
        let summary = tally_of(&latencies, 0).summary(Duration::from_secs(1), 1);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(close(summary.p50_ms, 500.0), "{summary:?}");
        assert!(close(summary.p99_ms, 990.0), "{summary:?}");
        assert!(close(summary.p999_ms, 999.0), "{summary:?}");
        assert!(close(summary.max_ms, 1000.0), "{summary:?}");
    }

    #[test]
    fn merged_tallies_add_their_counts_and_latencies() {
        let mut first = tally_of(&[1, 2, 3], 1);
        let mut second = tally_of(&[4, 5], 0);
        second.transport_errors = 2;
        first.merge(&second);
        assert_eq!((first.ok, first.non_2xx, first.transport_errors), (5, 1, 2));
        assert_eq!(first.latencies.len(), 6);
        assert_eq!(first.summary(Duration::from_secs(1), 1).errors, 3);
    }

    #[test]
    fn a_run_without_answers_has_no_percentiles_and_no_rate() {
        let summary = Tally::new().summary(Duration::from_secs(1), 1);
        assert_eq!(summary.requests_per_s, 0.0);
        assert!(summary.p50_ms.is_nan() && summary.p99_ms.is_nan());
    }
}
