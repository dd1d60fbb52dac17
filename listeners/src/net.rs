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
//! closes; new connections wait in the kernel's accept queue. One client
//! address may hold at most `max_per_client` of them: past it, its new
//! connections are closed at once, so one client cannot take the whole
//! cap. A connection without requests for `idle_timeout_ms` is closed
//! (HTTP: gracefully, as soon as nothing is in flight; gRPC: when no
//! request data has arrived for that long, pings not counted).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
use tokio::time::{Instant, Sleep};
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
    /// Most connections open at once from one client address on each
    /// listener; past it the client's new connections are closed at once.
    pub max_per_client: usize,
    /// A connection with no request for this long is closed: HTTP/2 (and
    /// HTTP/1) once nothing is in flight, gRPC once no request data came
    /// for this long (ms; at least 1 s, and keep it above the gRPC request
    /// deadline, `body_timeout_ms` + `queue_timeout_ms` + 10 s).
    pub idle_timeout_ms: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_timeout_ms: 30_000,
            max_per_client: 256,
            idle_timeout_ms: 300_000,
        }
    }
}

impl ConnectionLimits {
    /// The first-request (and TLS handshake) deadline.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms.max(1))
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.max(1000))
    }
}

/// The address a connection comes from.
pub trait PeerAddr {
    /// Its IP address, if it has one.
    fn peer_ip(&self) -> Option<IpAddr>;
}

impl PeerAddr for SocketAddr {
    fn peer_ip(&self) -> Option<IpAddr> {
        Some(self.ip())
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
    per_client_refused: AtomicU64,
    idle_closed: AtomicU64,
    /// Open connections per client address (entries leave at zero).
    per_client: Mutex<HashMap<IpAddr, usize>>,
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
            per_client_refused: AtomicU64::new(0),
            idle_closed: AtomicU64::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// Connections refused because their client held `max_per_client`.
    pub fn per_client_refused(&self) -> u64 {
        self.per_client_refused.load(Ordering::Relaxed)
    }

    /// Connections closed after `idle_timeout_ms` without requests.
    pub fn idle_closed(&self) -> u64 {
        self.idle_closed.load(Ordering::Relaxed)
    }

    /// Counts one more connection from `ip`, unless it holds `max` already.
    fn admit(&self, ip: IpAddr, max: usize) -> bool {
        let mut m = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= max.max(1) {
            drop(m);
            let refused = self.per_client_refused.fetch_add(1, Ordering::Relaxed);
            if refused.is_power_of_two() || refused == 0 {
                tracing::warn!(
                    listener = self.listener,
                    client = %ip,
                    times = refused + 1,
                    "client at [connections] max_per_client; its new connection closed"
                );
            }
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut m = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
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
    let counters: [(&str, &str, Get); 5] = [
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
        (
            "burnwatch_connections_per_client_refused_total",
            "Connections closed at once because their client address held [connections] max_per_client.",
            |s| s.per_client_refused.load(Ordering::Relaxed),
        ),
        (
            "burnwatch_connections_idle_closed_total",
            "Connections closed after [connections] idle_timeout_ms without requests.",
            |s| s.idle_closed.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, get) in counters {
        out.counters(name, help, series(get))?;
    }
    Ok(())
}

/// One open connection: its place under the cap (and its client's).
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    stats: Arc<ConnectionStats>,
    client: Option<IpAddr>,
}

impl Slot {
    /// Counts the connection against its client's share; `false` (and
    /// nothing counted) when the client holds its maximum already.
    fn admit(&mut self, client: Option<IpAddr>, max: usize) -> bool {
        let Some(ip) = client else {
            return true;
        };
        if !self.stats.admit(ip, max) {
            return false;
        }
        self.client = Some(ip);
        true
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.client {
            self.stats.release(ip);
        }
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
        client: None,
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
    L::Addr: std::fmt::Debug + PeerAddr,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    loop {
        let mut slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = take_slot(&slots, &stats) => s,
        };
        let (io, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = listener.accept() => c,
        };
        if !slot.admit(peer.peer_ip(), limits.max_per_client) {
            // Closed at once: dropping the connection and its slot.
            continue;
        }
        connections.spawn(serve_connection(
            io,
            peer,
            slot,
            app.clone(),
            limits.clone(),
            shutdown.clone(),
        ));
    }
    connections.close();
    connections.wait().await;
}

/// Requests of one connection: how many are in flight, when the last one
/// started or answered, whether any came.
#[derive(Debug)]
struct Activity {
    started: Instant,
    in_flight: AtomicU64,
    /// ms since `started` of the last request or answer; `u64::MAX`: none yet.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicU64::new(0),
            last_ms: AtomicU64::new(u64::MAX),
        })
    }

    fn touch(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Release);
    }

    fn requested(&self) -> bool {
        self.last_ms.load(Ordering::Acquire) != u64::MAX
    }

    /// When the connection counts as idle if nothing happens before.
    fn idle_at(&self, idle: Duration) -> Instant {
        match self.last_ms.load(Ordering::Acquire) {
            u64::MAX => self.started + idle,
            ms => self.started + Duration::from_millis(ms) + idle,
        }
    }
}

async fn serve_connection<I, A>(
    io: I,
    peer: A,
    slot: Slot,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: std::fmt::Debug,
{
    let timeout = limits.header_timeout();
    let idle = limits.idle_timeout();
    // Requests in flight and the last activity: the first-request deadline
    // and the idle timeout read them.
    let activity = Activity::new();
    let (on_request, on_answer) = (activity.clone(), activity.clone());
    let service = app
        .map_request(move |req: Request<hyper::body::Incoming>| {
            on_request.in_flight.fetch_add(1, Ordering::AcqRel);
            on_request.touch();
            req
        })
        .map_response(move |resp: axum::response::Response| {
            on_answer.in_flight.fetch_sub(1, Ordering::AcqRel);
            on_answer.touch();
            resp
        });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A connection's read buffer is capped at 64 KiB (hyper's default is
    // about 400 KiB): under overload hundreds of connections wait for a
    // request slot with part of a body read, and bodies are streamed into
    // the handler's own bounded buffer anyway.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(64 * 1024);
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
    let mut idle_check = pin!(tokio::time::sleep_until(activity.idle_at(idle)));
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
                if !activity.requested() {
                    slot.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(?peer, "no request within the header timeout; connection closed");
                    break;
                }
            }
            _ = &mut idle_check, if !closing => {
                let at = activity.idle_at(idle);
                if activity.in_flight.load(Ordering::Acquire) == 0 && at <= Instant::now() {
                    slot.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(?peer, "no request within the idle timeout; closing the connection");
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                } else {
                    // Busy or active since: look again one idle time on.
                    idle_check.as_mut().reset(at.max(Instant::now() + idle / 4));
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
    let idle = limits.idle_timeout();
    let per_client = limits.max_per_client;
    futures::stream::unfold((listener, slots, stats), move |(listener, slots, stats)| {
        let shutdown = shutdown.clone();
        async move {
            let (tcp, slot) = loop {
                let mut slot = take_slot(&slots, &stats).await;
                let (tcp, peer) = loop {
                    match listener.accept().await {
                        Ok(c) => break c,
                        Err(e) => {
                            tracing::warn!(error = %e, "gRPC accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                };
                if slot.admit(Some(peer.ip()), per_client) {
                    break (tcp, slot);
                }
            };
            let _ = tcp.set_nodelay(true);
            let conn = Guarded {
                inner: tcp,
                deadline: Some(Box::pin(tokio::time::sleep(timeout))),
                stop: Some(Box::pin(shutdown.cancelled_owned())),
                remaining: FIRST_BYTES,
                idle,
                idle_timer: Box::pin(tokio::time::sleep(idle)),
                slot,
            };
            Some((Ok(conn), (listener, slots, stats)))
        }
    })
}

/// A read at least this large is request data; smaller ones are HTTP/2
/// control frames (a PING is 17 bytes, 39 in a TLS record) and do not keep
/// a connection from being idle.
const ACTIVE_READ: usize = 64;

/// A connection under the cap whose first bytes must arrive by a deadline:
/// reading past it fails with `TimedOut`, and the server drops the connection.
#[derive(Debug)]
pub struct Guarded<T> {
    inner: T,
    deadline: Option<Pin<Box<Sleep>>>,
    stop: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    remaining: usize,
    /// Closed (end of stream) after this long without request data.
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
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
                if n >= ACTIVE_READ {
                    this.idle_timer.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if this.idle_timer.as_mut().poll(cx).is_ready() {
                    // No request data for the idle time: end of stream, the
                    // server closes the connection.
                    this.slot.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        "gRPC connection idle past [connections] idle_timeout_ms; closed"
                    );
                    this.idle_timer
                        .as_mut()
                        .reset(Instant::now() + Duration::from_secs(3600));
                    return Poll::Ready(Ok(()));
                }
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
