//! Burnwatch's OTLP collector.
//!
//! Parts:
//! - [`http`]: the OTLP/HTTP receiver (axum): `/v1/traces`, `/v1/metrics`,
//!   `/v1/logs`, protobuf and JSON, gzip/zstd/deflate, spec status codes.
//! - [`grpc`]: the OTLP/gRPC receiver (tonic): the three export services.
//! - [`ingest`]: what both share: admission control (request slots and a
//!   memory budget), conversion off the async workers, the durable write, and
//!   store errors mapped to "retry later".
//! - [`remote_write`]: Prometheus remote write 1.0 and 2.0 on the OTLP/HTTP
//!   listener (`POST /api/v1/write`), into `metric_points`.
//! - [`json`]: the proto3 JSON number forms (doubles and integers written as
//!   strings, `"NaN"`, `"Infinity"`) for OTLP JSON bodies.
//! - [`cardinality`]: limits on new services and metric series per hour,
//!   so one client cannot flood the store's indexes and pages.
//! - [`convert`]: OTLP protobuf types straight into the store's Arrow builders,
//!   with per-item validation for `partialSuccess`.
//! - [`metrics`]: self-telemetry counters, reported to `/metrics` through
//!   the `exposition` crate.
//!
//! The listeners themselves (connection cap, deadlines, TLS) come from the
//! `listeners` crate, which the HTTP API's listener uses too.
//!
//! Data flow: receiver -> decode -> `Ingest::export` -> convert (blocking pool)
//! -> `Store::write` (WAL fsync) -> answer. Nothing is acknowledged before it
//! is durable.

pub mod cardinality;
pub mod config;
pub mod convert;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod json;
pub mod metrics;
pub mod remote_write;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::CollectorConfig;
pub use ingest::Ingest;
use listeners::{net, tls};
pub use metrics::CollectorMetrics;
use store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Errors starting the receivers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The bound receivers.
#[derive(Debug)]
pub struct Collector {
    /// Where OTLP/gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where OTLP/HTTP listens.
    pub http_addr: SocketAddr,
    /// The shared ingest path (for its metrics).
    pub ingest: Arc<Ingest>,
    /// Connection counters of the gRPC listener.
    pub grpc_connections: Arc<net::ConnectionStats>,
    /// Connection counters of the HTTP listener.
    pub http_connections: Arc<net::ConnectionStats>,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

impl Collector {
    /// Binds both receivers and serves them on `tracker` until `shutdown` is
    /// cancelled; then they stop accepting and finish in-flight requests.
    pub async fn start(
        config: CollectorConfig,
        store: Store,
        metrics: Arc<CollectorMetrics>,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Collector, Error> {
        let grpc_listener = bind(config.grpc_addr).await?;
        let http_listener = bind(config.http_addr).await?;
        let grpc_addr = grpc_listener.local_addr().map_err(|source| Error::Bind {
            addr: config.grpc_addr,
            source,
        })?;
        let http_addr = http_listener.local_addr().map_err(|source| Error::Bind {
            addr: config.http_addr,
            source,
        })?;
        let tls = match &config.tls {
            Some(files) => Some((files.server_config()?, files.read()?)),
            None => None,
        };
        let body_timeout_ms = config.body_timeout_ms;
        let limits = config.connections.clone();
        let grpc_connections = net::ConnectionStats::new("otlp_grpc");
        let http_connections = net::ConnectionStats::new("otlp_http");
        let queue_timeout_ms = config.queue_timeout_ms;
        let ingest = Arc::new(Ingest::new(store, config, metrics));

        let (traces, metrics_svc, logs) = grpc::OtlpGrpc::new(ingest.clone()).services();
        // Receiving the message, waiting for capacity and the durable write
        // together: a sender that trickles its message is cut off.
        let grpc_timeout =
            std::time::Duration::from_millis(body_timeout_ms + queue_timeout_ms + 10_000);
        let oversize =
            grpc::OversizeLayer::new(ingest.metrics().clone(), ingest.config().max_body_bytes);
        let mut builder = tonic::transport::Server::builder()
            .timeout(grpc_timeout)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
        if let Some((_, (cert, key))) = &tls {
            let identity = tonic::transport::Identity::from_pem(cert, key);
            builder = builder
                // A client that starts a handshake and stalls is cut off.
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(identity)
                        .timeout(limits.header_timeout()),
                )
                .map_err(|e| Error::Tls(tls::TlsError::Config(e.to_string())))?;
        }
        let token = shutdown.clone();
        let incoming = net::incoming(
            grpc_listener,
            limits.clone(),
            grpc_connections.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            let result = builder
                .layer(oversize)
                .add_service(traces)
                .add_service(metrics_svc)
                .add_service(logs)
                .serve_with_incoming_shutdown(incoming, token.cancelled_owned())
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "OTLP/gRPC server failed");
            }
        });

        let app = http::router(ingest.clone());
        match tls {
            Some((server_config, _)) => {
                let listener = tls::TlsListener::new(
                    http_listener,
                    server_config,
                    limits.max_connections,
                    shutdown.clone(),
                    tracker,
                )
                .map_err(|source| Error::Bind {
                    addr: http_addr,
                    source,
                })?;
                tracker.spawn(net::serve_http(
                    listener,
                    app,
                    limits,
                    http_connections.clone(),
                    shutdown.clone(),
                ));
            }
            None => {
                tracker.spawn(net::serve_http(
                    http_listener,
                    app,
                    limits,
                    http_connections.clone(),
                    shutdown.clone(),
                ));
            }
        }
        tracing::info!(%grpc_addr, %http_addr, "OTLP receivers listening");
        Ok(Collector {
            grpc_addr,
            http_addr,
            ingest,
            grpc_connections,
            http_connections,
        })
    }
}
