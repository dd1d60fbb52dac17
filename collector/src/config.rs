//! Collector settings.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Settings of the OTLP receivers. Every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// OTLP/gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address.
    pub http_addr: SocketAddr,
    /// Largest request body accepted, in bytes, checked on the compressed
    /// body and again while decompressing.
    pub max_body_bytes: usize,
    /// Most decoded request bytes held at once across all requests; past it
    /// requests wait briefly, then get 429 / RESOURCE_EXHAUSTED.
    pub max_inflight_bytes: usize,
    /// Most export requests processed at once.
    pub max_concurrent_requests: usize,
    /// How long a request may wait for capacity before it is refused (ms).
    pub queue_timeout_ms: u64,
    /// Most time to receive a request's body once admitted (ms): a sender
    /// that trickles its body gets 408 instead of holding a request slot.
    /// gRPC requests get this plus `queue_timeout_ms` plus 10 s in all.
    pub body_timeout_ms: u64,
    /// Bearer tokens accepted for ingest. Empty (and no `auth_sha256`): no
    /// authentication.
    pub auth_tokens: Vec<String>,
    /// SHA-256 digests (hex) of further bearer tokens accepted for ingest
    /// (filled from the `[auth]` tokens with role ingest or admin).
    pub auth_sha256: Vec<String>,
    /// A span may end this many milliseconds before it starts and still be kept.
    pub end_before_start_tolerance_ms: u64,
    /// TLS on both OTLP listeners (PEM certificate and key). Absent: plain TCP.
    pub tls: Option<listeners::tls::TlsFiles>,
    /// Most attributes kept per span, event, link, log record, data point or
    /// resource; the rest are dropped, counted in `dropped_attributes_count`
    /// and reported to the sender as a `partialSuccess` warning.
    pub max_attributes: usize,
    /// Longest attribute key or value kept, in bytes; longer ones are cut
    /// (at a character boundary) and reported the same way. Status messages,
    /// trace states, metric units and descriptions get the same limit.
    pub max_attribute_value_bytes: usize,
    /// Longest span, event, metric, scope or service name, log event name
    /// or severity text kept, in bytes; cut and reported the same way.
    pub max_name_bytes: usize,
    /// Longest log body kept, in bytes (a structured body as JSON text);
    /// cut and reported the same way.
    pub max_log_body_bytes: usize,
    /// Most distinct services (`service.name`) accepted per hour; items of
    /// further services are rejected in `partialSuccess` until the next
    /// hour. 0: no limit.
    pub max_services_per_hour: usize,
    /// Most distinct metric series (service, metric name and data point
    /// attributes) accepted per hour; points of further series are
    /// rejected the same way. 0: no limit.
    pub max_series_per_hour: usize,
    /// Connection cap and header deadline of both OTLP listeners (set from
    /// the top-level `[connections]`).
    #[serde(skip)]
    pub connections: listeners::net::ConnectionLimits,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 4317)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 4318)),
            max_body_bytes: 64 << 20,
            max_inflight_bytes: 512 << 20,
            max_concurrent_requests: 64,
            queue_timeout_ms: 1000,
            body_timeout_ms: 30_000,
            auth_tokens: Vec::new(),
            auth_sha256: Vec::new(),
            end_before_start_tolerance_ms: 0,
            tls: None,
            max_attributes: crate::convert::DEFAULT_MAX_ATTRIBUTES,
            max_attribute_value_bytes: crate::convert::DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES,
            max_name_bytes: crate::convert::DEFAULT_MAX_NAME_BYTES,
            max_log_body_bytes: crate::convert::DEFAULT_MAX_LOG_BODY_BYTES,
            max_services_per_hour: 10_000,
            max_series_per_hour: 200_000,
            connections: listeners::net::ConnectionLimits::default(),
        }
    }
}
