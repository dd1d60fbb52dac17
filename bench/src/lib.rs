//! Shared helpers of the benchmark binaries: statistics, process CPU and RSS,
//! and realistic OTLP requests.

use std::time::Duration;

pub mod bucket;
pub mod dataset;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use testkit::otlp::{kv, kv_int};
use testkit::synth::{ROUTES, Rng, SERVICES};

/// The median of some samples (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    percentile(v, 0.5)
}

/// A percentile (0..=1) by nearest rank (sorts in place).
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let idx = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}

/// Peak resident set size of a process (`"self"` or a pid), bytes (VmHWM).
pub fn peak_rss_bytes(pid: &str) -> u64 {
    status_kib(pid, "VmHWM:") * 1024
}

/// Current resident set size of a process (`"self"` or a pid), bytes (VmRSS).
pub fn rss_bytes(pid: &str) -> u64 {
    status_kib(pid, "VmRSS:") * 1024
}

fn status_kib(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process (`"self"` or a pid) so far.
pub fn cpu_time(pid: &str) -> Duration {
    // /proc/<pid>/stat fields 14 and 15 are utime and stime in clock ticks (100 Hz on Linux).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // After the ")" the state is field 3, so utime (14) is index 11 and stime (15) index 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Realistic span batches of 512 spans each ([`trace_request`]), converted
/// to Arrow exactly as the collector does, from the random `seed`.
pub fn span_batches(n_spans: usize, seed: u64) -> Vec<arrow::array::RecordBatch> {
    let mut rng = Rng::new(seed);
    let base = 1_763_700_000_000_000_000u64; // 2025-11-21
    (0..n_spans.div_ceil(512))
        .map(|_| {
            let req = trace_request(&mut rng, 512, base);
            let c = collector::convert::spans(&req, &collector::convert::ConvertOptions::default());
            c.batch.expect("valid spans")
        })
        .collect()
}

/// A realistic export request: one resource (service) with `n` HTTP server
/// spans, ten semantic-convention attributes each, traces of eight spans.
pub fn trace_request(rng: &mut Rng, n: usize, base_ns: u64) -> ExportTraceServiceRequest {
    let svc = SERVICES[rng.below(SERVICES.len() as u64) as usize];
    let mut trace_id = [0u8; 16];
    let spans = (0..n)
        .map(|i| {
            if i % 8 == 0 {
                trace_id = ((rng.next_u64() as u128) << 64 | rng.next_u64() as u128).to_be_bytes();
            }
            let (method, route) = ROUTES[rng.below(ROUTES.len() as u64) as usize];
            let start = base_ns + rng.below(1_000_000_000);
            let status = if rng.below(100) < 2 { 503 } else { 200 };
            Span {
                trace_id: trace_id.to_vec(),
                span_id: rng.next_u64().to_be_bytes().to_vec(),
                parent_span_id: if i % 8 == 0 {
                    Vec::new()
                } else {
                    rng.next_u64().to_be_bytes().to_vec()
                },
                name: format!("{method} {route}"),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 100_000 + rng.below(30_000_000),
                attributes: vec![
                    kv("http.request.method", method),
                    kv("http.route", route),
                    kv_int("http.response.status_code", status),
                    kv("url.scheme", "http"),
                    kv("url.path", route),
                    kv("server.address", svc),
                    kv_int("server.port", 8080),
                    kv("network.protocol.version", "1.1"),
                    kv(
                        "user_agent.original",
                        "Mozilla/5.0 (X11; Linux x86_64) shop-load/1.0",
                    ),
                    kv("client.address", "10.1.2.3"),
                ],
                status: (status >= 500).then(|| Status {
                    code: 2,
                    message: "upstream unavailable".into(),
                }),
                flags: 1,
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", svc),
                    kv("service.version", "2.3.1"),
                    kv("deployment.environment.name", "production"),
                    kv("host.name", "node-12"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "shop.http".into(),
                    version: "0.9.0".into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
