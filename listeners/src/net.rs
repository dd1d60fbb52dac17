//! What every listener shares: a cap on open connections and deadlines for
//! clients that connect and then say nothing, or say it slowly.
//!
//! - [`serve_http`] serves an axum app on any [`axum::serve::Listener`]
//!   (plain TCP or [`crate::tls::TlsListener`]). A connection must send its
//!   first request head within `header_timeout_ms`; HTTP/1 request heads
//!   after that get the same deadline (hyper's `header_read_timeout`), which
//!   also closes keep-alive connections idle for that long. HTTP/2
//!   connections are pinged and closed when the peer stops answering.
//! - [`incoming`] does the same for the gRPC listener (tonic): the first
//!   bytes (the HTTP/2 preface or the TLS hello) must arrive within the
//!   deadline.
//!
//! Past `max_connections` a listener stops accepting until a connection
//! closes; new connections wait in the kernel's accept queue.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Request;
use futures::Stream;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// Limits on the connections of each listener (`[connections]` in the
/// configuration; they apply to the OTLP gRPC, OTLP HTTP and HTTP API ports
/// alike, each on its own).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Most connections open at once on each listener. Past it the listener
    /// stops accepting until one closes.
    pub max_connections: usize,
    /// Time a client has to send its first request head after connecting,
    /// and each later HTTP/1 request head; an HTTP/1 keep-alive connection
    /// idle this long is closed (ms).
    pub header_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout_ms: 30_000,
        }
    }
}

impl ConnectionLimits {
    fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(1))
    }
}

/// HTTP/2 connections are pinged after this long without frames ...
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
/// ... and closed if the ping is not answered within this.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Bytes a new gRPC connection must send within the header timeout: the
/// HTTP/2 client preface is 24 bytes, a TLS ClientHello is longer.
const FIRST_BYTES: usize = 24;

/// Counters of one listener, for `/metrics`.
#[derive(Debug)]
pub struct ConnectionStats {
    listener: &'static str,
    open: AtomicU64,
    accepted: AtomicU64,
    at_capacity: AtomicU64,
    header_timeouts: AtomicU64,
}

impl ConnectionStats {
    /// Counters for the listener named `listener` (the metrics label).
    pub fn new(listener: &'static str) -> Arc<ConnectionStats> {
        Arc::new(ConnectionStats {
            listener,
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            at_capacity: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections closed because no request head arrived in time.
    pub fn header_timeouts(&self) -> u64 {
        self.header_timeouts.load(Ordering::Relaxed)
    }

    /// Times the listener was full and stopped accepting.
    pub fn at_capacity(&self) -> u64 {
        self.at_capacity.load(Ordering::Relaxed)
    }
}

/// Reports the counters of several listeners as one set of families.
pub fn collect_metrics(
    stats: &[&ConnectionStats],
    out: &mut exposition::Out<'_>,
) -> std::fmt::Result {
    type Get = fn(&ConnectionStats) -> u64;
    let labels: Vec<[(&str, &str); 1]> = stats.iter().map(|s| [("listener", s.listener)]).collect();
    let series = |get: Get| {
        stats
            .iter()
            .zip(&labels)
            .map(move |(s, l)| (&l[..], get(s)))
    };
    out.gauges(
        "burnwatch_connections_open",
        "Connections open now, per listener.",
        series(|s| s.open.load(Ordering::Relaxed)).map(|(l, v)| (l, v as f64)),
    )?;
    let counters: [(&str, &str, Get); 3] = [
        (
            "burnwatch_connections_accepted_total",
            "Connections accepted, per listener.",
            |s| s.accepted.load(Ordering::Relaxed),
        ),
        (
            "burnwatch_connections_at_capacity_total",
            "Times a listener reached [connections] max_connections and stopped accepting.",
            |s| s.at_capacity.load(Ordering::Relaxed),
        ),
        (
            "burnwatch_connections_header_timeouts_total",
            "Connections closed because no request head arrived within [connections] header_timeout_ms.",
            |s| s.header_timeouts.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        out.counters(name, help, series(get))?;
    }
    Ok(())
}

/// One open connection: its place under the cap.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Waits for room under the cap, counting the times the listener is full.
async fn take_slot(slots: &Arc<Semaphore>, stats: &Arc<ConnectionStats>) -> Slot {
    let permit = match slots.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            let n = stats.at_capacity.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(
                    listener = stats.listener,
                    times = n + 1,
                    "listener at [connections] max_connections; new connections wait"
                );
            }
            slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed")
        }
    };
    stats.accepted.fetch_add(1, Ordering::Relaxed);
    stats.open.fetch_add(1, Ordering::Relaxed);
    Slot {
        _permit: permit,
        stats: stats.clone(),
    }
}

/// Serves `app` on `listener` until `shutdown`, then finishes the requests in
/// flight and returns once every connection is closed.
pub async fn serve_http<L>(
    mut listener: L,
    app: axum::Router,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let timeout = limits.header_timeout();
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = take_slot(&slots, &stats) => s,
        };
        let (io, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = listener.accept() => c,
        };
        connections.spawn(serve_connection(
            io,
            peer,
            slot,
            app.clone(),
            timeout,
            shutdown.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
}

async fn serve_connection<I, A>(
    io: I,
    peer: A,
    slot: Slot,
    app: axum::Router,
    timeout: Duration,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: std::fmt::Debug,
{
    // Set by the first request, so the first-request deadline lets it be.
    let requested = Arc::new(AtomicBool::new(false));
    let flag = requested.clone();
    let service = app.map_request(move |req: Request<hyper::body::Incoming>| {
        flag.store(true, Ordering::Release);
        req
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let mut conn = pin!(
        builder.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(service))
    );
    let mut first_deadline = pin!(tokio::time::sleep(timeout));
    let mut waiting_for_first = true;
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    let timed_out = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        slot.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(?peer, "request head not received in time; connection closed");
                    } else {
                        tracing::trace!(?peer, error = %e, "connection ended with an error");
                    }
                }
                break;
            }
            _ = &mut first_deadline, if waiting_for_first => {
                waiting_for_first = false;
                if !requested.load(Ordering::Acquire) {
                    slot.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(?peer, "no request within the header timeout; connection closed");
                    break;
                }
            }
            _ = shutdown.cancelled(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}

/// Accepted gRPC connections, under the cap and with the first-bytes
/// deadline, for `tonic`'s `serve_with_incoming_shutdown`. Accept errors
/// (out of file descriptors, a peer that left) are logged and retried, never
/// passed on. On `shutdown`, connections still waiting for their first bytes
/// fail at once (an HTTP/2 handshake in progress would otherwise hold the
/// graceful shutdown until the deadline).
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
) -> impl Stream<Item = io::Result<Guarded<TcpStream>>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let timeout = limits.header_timeout();
    futures::stream::unfold((listener, slots, stats), move |(listener, slots, stats)| {
        let shutdown = shutdown.clone();
        async move {
            let slot = take_slot(&slots, &stats).await;
            let tcp = loop {
                match listener.accept().await {
                    Ok((tcp, _)) => break tcp,
                    Err(e) => {
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            };
            let _ = tcp.set_nodelay(true);
            let conn = Guarded {
                inner: tcp,
                deadline: Some(Box::pin(tokio::time::sleep(timeout))),
                stop: Some(Box::pin(shutdown.cancelled_owned())),
                remaining: FIRST_BYTES,
                slot,
            };
            Some((Ok(conn), (listener, slots, stats)))
        }
    })
}

/// A connection under the cap whose first bytes must arrive by a deadline:
/// reading past it fails with `TimedOut`, and the server drops the connection.
#[derive(Debug)]
pub struct Guarded<T> {
    inner: T,
    deadline: Option<Pin<Box<Sleep>>>,
    stop: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    remaining: usize,
    slot: Slot,
}

impl<T> Guarded<T> {
    /// The first bytes came (or the connection failed): no more deadline.
    fn disarm(&mut self) {
        self.deadline = None;
        self.stop = None;
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                this.remaining = this.remaining.saturating_sub(n);
                if this.remaining == 0 || n == 0 {
                    this.disarm();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    this.disarm();
                    this.slot
                        .stats
                        .header_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing within [connections] header_timeout_ms",
                    )));
                }
                if let Some(stop) = this.stop.as_mut()
                    && stop.as_mut().poll(cx).is_ready()
                {
                    this.disarm();
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "shutting down before the client sent anything",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
