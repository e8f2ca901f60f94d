//! The accept loop: HTTP/1 connections served by hyper, each one bounded in time
//! (a header-read timeout and an idle timeout) and all of them bounded in number.
//!
//! `axum::serve` has none of these, and without them a few thousand silent sockets hold a
//! descriptor each until the process can open no file at all. Connections beyond the cap are
//! not accepted: they wait in the kernel's accept queue (where they cost the process nothing)
//! until a slot frees, which the timeouts guarantee happens; a busy server is slow to answer
//! rather than out of descriptors.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// How long connections may take and how many may be open.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// From a request's first byte (or, for a connection's first request, from the accept)
    /// to the end of its headers.
    pub header_read: Duration,
    /// With no request being handled and no byte moving.
    pub idle: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, asks every
/// connection to finish its current request and close, and returns once all have.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(());
    let clock = Instant::now();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("the slots are never closed"),
        };
        let stream = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            limits,
            clock,
            stop_rx.clone(),
            slot,
        ));
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(());
    stop_tx.closed().await;
}

/// Connection resets while in the queue are the client's business; anything else (out of
/// descriptors, say) is logged and retried after a pause rather than spun on.
async fn accept_failed(err: io::Error) {
    if matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One connection, from accept to close; holds its slot until it ends.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    clock: Instant,
    mut stop: watch::Receiver<()>,
    _slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new(clock));
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let handling = activity.begin();
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(handling);
                response
            }
        })
    };
    // Headers are timed below, not by hyper, whose timer also runs while a keep-alive
    // connection waits for its next request (which the idle timeout governs).
    let conn = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(deadline) => {
                if activity.in_flight() == 0 && activity.deadline(&limits) <= Instant::now() {
                    tracing::debug!("closing a connection that sent no complete request in time, or sat idle");
                    return;
                }
            }
        }
    }
}

/// What a connection has been doing, in milliseconds since the server's clock started.
struct Activity {
    clock: Instant,
    /// Requests whose handler is running.
    in_flight: AtomicUsize,
    /// Whether any request has reached a handler.
    served: AtomicBool,
    /// The accept, the end of the last handler, or the last byte written.
    idle_since: AtomicU64,
    /// The first byte read while no handler ran: the start of the next request's headers.
    head_started: AtomicU64,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new(clock: Instant) -> Self {
        let activity = Activity {
            clock,
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
        };
        activity.idle_since.store(activity.now(), Ordering::Relaxed);
        activity
    }

    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// A request reached its handler; the guard marks its end.
    fn begin(self: &Arc<Self>) -> Handling {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Relaxed);
        self.head_started.store(NONE, Ordering::Relaxed);
        Handling(Arc::clone(self))
    }

    fn read(&self) {
        if self.in_flight() == 0 && self.head_started.load(Ordering::Relaxed) == NONE {
            self.head_started.store(self.now(), Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.idle_since.store(self.now(), Ordering::Relaxed);
    }

    /// When the connection is to be closed if nothing changes; while a handler runs, only a
    /// time to look again.
    fn deadline(&self, limits: &ConnectionLimits) -> Instant {
        match self.deadline_ms(limits) {
            Some(ms) => self.clock + Duration::from_millis(ms),
            None => Instant::now() + limits.header_read.min(limits.idle),
        }
    }

    /// The deadline on the connection's clock; `None` while a handler runs.
    fn deadline_ms(&self, limits: &ConnectionLimits) -> Option<u64> {
        if self.in_flight() > 0 {
            return None;
        }
        let ms = |d: Duration| d.as_millis() as u64;
        let head_started = self.head_started.load(Ordering::Relaxed);
        let idle_since = self.idle_since.load(Ordering::Relaxed);
        Some(if head_started != NONE {
            head_started + ms(limits.header_read)
        } else if !self.served.load(Ordering::Relaxed) {
            idle_since + ms(limits.header_read)
        } else {
            idle_since + ms(limits.idle)
        })
    }
}

/// A running handler; its drop ends the request's share of the connection's activity.
struct Handling(Arc<Activity>);

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket that reports its reads and writes to the connection's [`Activity`].
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            max_connections: 8,
        }
    }

    #[test]
    fn a_new_connection_gets_the_header_timeout_and_a_served_one_the_idle_timeout() {
        let activity = Arc::new(Activity::new(Instant::now()));
        let load = |at: &AtomicU64| at.load(Ordering::Relaxed);
        let accepted = load(&activity.idle_since);
        assert_eq!(activity.deadline_ms(&limits()), Some(accepted + 10_000));

        activity.read();
        let head = load(&activity.head_started);
        assert_eq!(activity.deadline_ms(&limits()), Some(head + 10_000));

        let handling = activity.begin();
        activity.read();
        assert_eq!(
            activity.deadline_ms(&limits()),
            None,
            "a running handler (reading its body) is never timed out"
        );
        drop(handling);
        let ended = load(&activity.idle_since);
        assert_eq!(activity.deadline_ms(&limits()), Some(ended + 60_000));

        activity.read();
        let next = load(&activity.head_started);
        assert_eq!(
            activity.deadline_ms(&limits()),
            Some(next + 10_000),
            "the next request's headers are timed from their first byte"
        );
    }
}
