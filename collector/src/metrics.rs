//! Self-telemetry of the receivers, reported to `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The signal of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Traces (spans).
    Traces,
    /// Metrics (data points).
    Metrics,
    /// Logs (log records).
    Logs,
}

impl Signal {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// The transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP.
    Http,
    /// Prometheus remote write (1.0 and 2.0) on the OTLP/HTTP listener.
    RemoteWrite,
}

impl Transport {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
            Transport::RemoteWrite => "prometheus_remote_write",
        }
    }
    fn idx(self) -> usize {
        self as usize
    }
}

/// A series' labels (name, value).
type Labels<const N: usize> = [(&'static str, &'static str); N];

const SIGNALS: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];
const TRANSPORTS: [Transport; 3] = [Transport::Grpc, Transport::Http, Transport::RemoteWrite];
/// Upper bounds of the request-duration histogram, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct PerLabel {
    requests: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    cardinality_rejected: AtomicU64,
    refused: AtomicU64,
    bad_requests: AtomicU64,
    attributes_dropped: AtomicU64,
    values_truncated: AtomicU64,
    bytes: AtomicU64,
    duration_buckets: [AtomicU64; BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_micros: AtomicU64,
}

/// Counters per signal and transport.
#[derive(Debug, Default)]
pub struct CollectorMetrics {
    by: [[PerLabel; 3]; 3],
    unauthorized: AtomicU64,
}

impl CollectorMetrics {
    fn get(&self, s: Signal, t: Transport) -> &PerLabel {
        &self.by[s.idx()][t.idx()]
    }

    /// Records a finished request.
    pub fn request(&self, s: Signal, t: Transport, bytes: usize, elapsed: Duration) {
        let p = self.get(s, t);
        p.requests.fetch_add(1, Ordering::Relaxed);
        p.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                p.duration_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        p.duration_count.fetch_add(1, Ordering::Relaxed);
        p.duration_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Items stored.
    pub fn accepted(&self, s: Signal, t: Transport, n: u64) {
        self.get(s, t).accepted.fetch_add(n, Ordering::Relaxed);
    }

    /// Items rejected as invalid (reported in `partialSuccess`).
    pub fn rejected(&self, s: Signal, t: Transport, n: u64) {
        self.get(s, t).rejected.fetch_add(n, Ordering::Relaxed);
    }

    /// Attributes dropped and keys or values cut by the attribute limits.
    pub fn limited(&self, s: Signal, t: Transport, dropped: u64, truncated: u64) {
        let p = self.get(s, t);
        p.attributes_dropped.fetch_add(dropped, Ordering::Relaxed);
        p.values_truncated.fetch_add(truncated, Ordering::Relaxed);
    }

    /// Items rejected by the services or series per hour limits (also
    /// counted as rejected).
    pub fn cardinality_rejected(&self, s: Signal, t: Transport, n: u64) {
        self.get(s, t)
            .cardinality_rejected
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Requests refused for lack of capacity (429/503, RESOURCE_EXHAUSTED/UNAVAILABLE).
    pub fn refused(&self, s: Signal, t: Transport) {
        self.get(s, t).refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests that could not be read or decoded (4xx, INVALID_ARGUMENT).
    pub fn bad_request(&self, s: Signal, t: Transport) {
        self.get(s, t).bad_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests without a valid token.
    pub fn unauthorized(&self) {
        self.unauthorized.fetch_add(1, Ordering::Relaxed);
    }

    /// Accepted items of a signal over both transports.
    pub fn accepted_total(&self, s: Signal) -> u64 {
        TRANSPORTS
            .iter()
            .map(|t| self.get(s, *t).accepted.load(Ordering::Relaxed))
            .sum()
    }

    /// Reports these metrics to `/metrics`.
    pub fn collect(&self, out: &mut exposition::Out<'_>) -> std::fmt::Result {
        let item = |s: Signal| match s {
            Signal::Traces => "spans",
            Signal::Metrics => "data_points",
            Signal::Logs => "log_records",
        };
        type Field = fn(&PerLabel) -> &AtomicU64;
        let counters: [(&str, &str, Field); 9] = [
            (
                "burnwatch_otlp_requests_total",
                "Export requests received.",
                |p| &p.requests,
            ),
            (
                "burnwatch_otlp_accepted_items_total",
                "Items stored (acknowledged after WAL fsync).",
                |p| &p.accepted,
            ),
            (
                "burnwatch_otlp_rejected_items_total",
                "Invalid items rejected and reported in partialSuccess.",
                |p| &p.rejected,
            ),
            (
                "burnwatch_otlp_cardinality_rejected_items_total",
                "Items rejected because their service or series was new past collector.max_services_per_hour or max_series_per_hour (also in rejected_items).",
                |p| &p.cardinality_rejected,
            ),
            (
                "burnwatch_otlp_refused_requests_total",
                "Requests refused under backpressure or disk full (429/503).",
                |p| &p.refused,
            ),
            (
                "burnwatch_otlp_bad_requests_total",
                "Requests that could not be read or decoded (4xx).",
                |p| &p.bad_requests,
            ),
            (
                "burnwatch_otlp_attributes_dropped_total",
                "Attributes dropped over collector.max_attributes (the items were kept).",
                |p| &p.attributes_dropped,
            ),
            (
                "burnwatch_otlp_attribute_values_truncated_total",
                "Texts cut to their length limits: attribute keys and values (collector.max_attribute_value_bytes), names (max_name_bytes), log bodies (max_log_body_bytes).",
                |p| &p.values_truncated,
            ),
            (
                "burnwatch_otlp_received_bytes_total",
                "Request body bytes received (as sent, before decompression).",
                |p| &p.bytes,
            ),
        ];
        let pairs: Vec<(Signal, Transport, Labels<3>)> = SIGNALS
            .iter()
            .flat_map(|s| {
                TRANSPORTS.iter().map(move |t| {
                    (
                        *s,
                        *t,
                        [
                            ("signal", s.as_str()),
                            ("item", item(*s)),
                            ("transport", t.as_str()),
                        ],
                    )
                })
            })
            .collect();
        for (name, help, field) in counters {
            out.counters(
                name,
                help,
                pairs.iter().map(|(s, t, labels)| {
                    (&labels[..], field(self.get(*s, *t)).load(Ordering::Relaxed))
                }),
            )?;
        }
        let by_signal: Vec<(Signal, Transport, Labels<2>)> = pairs
            .iter()
            .map(|(s, t, _)| (*s, *t, [("signal", s.as_str()), ("transport", t.as_str())]))
            .collect();
        out.histograms(
            "burnwatch_otlp_request_duration_seconds",
            "Time from request start to response.",
            by_signal.iter().map(|(s, t, labels)| {
                let p = self.get(*s, *t);
                let h = exposition::Histogram {
                    cumulative: BUCKETS
                        .iter()
                        .zip(&p.duration_buckets)
                        .map(|(b, n)| (*b, n.load(Ordering::Relaxed)))
                        .collect(),
                    count: p.duration_count.load(Ordering::Relaxed),
                    sum: p.duration_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
                };
                (&labels[..], h)
            }),
        )?;
        out.counter(
            "burnwatch_otlp_unauthorized_requests_total",
            "Requests without a valid bearer token.",
            self.unauthorized.load(Ordering::Relaxed),
        )
    }
}
