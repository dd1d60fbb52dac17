//! Deterministic synthetic telemetry for tests and benchmarks: spans shaped
//! like an instrumented HTTP service (about ten semantic-convention
//! attributes each), logs and metric points of every type.

use std::borrow::Cow;

use arrow::array::RecordBatch;

use crate::rows::{
    Attr, EventRecord, ExemplarRecord, LinkRecord, LogRecord, LogsBuilder, MetricPointRecord,
    MetricPointsBuilder, Number, Origin, PointData, SpanKind, SpanRecord, SpansBuilder, StatusCode,
    Temporality,
};

/// A small, fast, deterministic random number generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeds the generator (0 is replaced by a fixed constant).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Service names of the synthetic shop.
pub const SERVICES: &[&str] = &[
    "gateway",
    "users",
    "catalog",
    "inventory",
    "cart",
    "orders",
    "payments",
    "notifications",
];
/// (method, route) pairs of the synthetic shop.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/products"),
    ("GET", "/api/products/{id}"),
    ("POST", "/api/cart/items"),
    ("POST", "/api/checkout"),
    ("GET", "/api/users/{id}"),
    ("POST", "/api/login"),
];

/// `n` spans starting at `base_ns`, spread over `spread_ns`. The span id
/// of span `i` encodes `(seed, i)` so tests can check exactly which arrived.
pub fn spans(seed: u64, n: usize, base_ns: i64, spread_ns: i64) -> RecordBatch {
    let mut rng = Rng::new(seed.wrapping_add(1));
    let mut b = SpansBuilder::new();
    let resources: Vec<Vec<Attr<'static>>> = SERVICES
        .iter()
        .map(|s| {
            vec![
                Attr::new("service.name", *s),
                Attr::new("service.version", "1.4.2"),
                Attr::new("deployment.environment.name", "production"),
                Attr::new("host.name", "node-7"),
            ]
        })
        .collect();
    let mut trace_id = [0u8; 16];
    for i in 0..n {
        if i % 8 == 0 {
            trace_id = (rng.next_u64() as u128 | ((rng.next_u64() as u128) << 64)).to_be_bytes();
        }
        let svc = rng.below(SERVICES.len() as u64) as usize;
        let (method, route) = ROUTES[rng.below(ROUTES.len() as u64) as usize];
        let start = base_ns + (rng.below(spread_ns.max(1) as u64) as i64);
        let duration = 200_000 + rng.below(50_000_000) as i64;
        let status = 200 + if rng.below(100) < 3 { 300 } else { 0 };
        let status_text = status.to_string();
        let mut span_id = [0u8; 8];
        span_id[..4].copy_from_slice(&(seed as u32).to_be_bytes());
        span_id[4..].copy_from_slice(&(i as u32).to_be_bytes());
        let parent = (i % 8 != 0).then(|| (rng.next_u64()).to_be_bytes());
        let attributes = vec![
            Attr::new("http.request.method", method),
            Attr::new("http.route", route),
            Attr::new("http.response.status_code", Cow::Owned(status_text)),
            Attr::new("url.scheme", "http"),
            Attr::new("server.address", SERVICES[svc]),
            Attr::new("server.port", "8080"),
            Attr::new("network.protocol.version", "1.1"),
            Attr::new("user_agent.original", "burnwatch-load/0.1"),
            Attr::new("client.address", "10.0.3.17"),
            Attr::new(
                "app.request_id",
                Cow::Owned(format!("{:016x}", rng.next_u64())),
            ),
        ];
        let error = status >= 500;
        b.append(
            &Origin {
                service_name: SERVICES[svc],
                resource_attributes: &resources[svc],
                scope_name: "burnwatch-synth",
                scope_version: "0.1.0",
            },
            &SpanRecord {
                trace_id,
                span_id,
                parent_span_id: parent,
                trace_state: "",
                flags: 1,
                name: route,
                kind: if parent.is_none() {
                    SpanKind::Server
                } else {
                    SpanKind::Internal
                },
                start_time_ns: start,
                end_time_ns: start + duration,
                status_code: if error {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                status_message: if error { "upstream failed" } else { "" },
                attributes,
                dropped_attributes_count: 0,
                events: if error {
                    vec![EventRecord {
                        time_ns: start + duration / 2,
                        name: "exception",
                        attributes: vec![Attr::new("exception.type", "TimeoutError")],
                        dropped_attributes_count: 0,
                    }]
                } else {
                    Vec::new()
                },
                dropped_events_count: 0,
                links: if i % 50 == 7 {
                    vec![LinkRecord {
                        trace_id: [7; 16],
                        span_id: [9; 8],
                        trace_state: "vendor=1",
                        attributes: vec![Attr::new("link.kind", "follows")],
                        dropped_attributes_count: 0,
                        flags: 1,
                    }]
                } else {
                    Vec::new()
                },
                dropped_links_count: 0,
            },
        );
    }
    b.finish()
}

/// One SERVER span per request of `service` on `method route` (span name
/// `"{method} {route}"`, attribute `http.route`, 20 ms long): `(start_ns,
/// failed)`; a failed request has status ERROR and HTTP 503, the others 201.
/// For SLO and dashboard tests that need exact good/bad counts.
pub fn http_requests(
    service: &str,
    method: &str,
    route: &str,
    requests: &[(i64, bool)],
) -> RecordBatch {
    let mut b = SpansBuilder::new();
    let res = vec![Attr::new("service.name", service)];
    let name = format!("{method} {route}");
    for (i, (start, failed)) in requests.iter().enumerate() {
        b.append(
            &Origin {
                service_name: service,
                resource_attributes: &res,
                scope_name: "",
                scope_version: "",
            },
            &SpanRecord {
                trace_id: (*start as u128 * 7 + i as u128 + 1).to_be_bytes(),
                span_id: (*start as u64 ^ (i as u64 + 1)).to_be_bytes(),
                parent_span_id: None,
                trace_state: "",
                flags: 0,
                name: &name,
                kind: SpanKind::Server,
                start_time_ns: *start,
                end_time_ns: start + 20_000_000,
                status_code: if *failed {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                status_message: "",
                attributes: vec![
                    Attr::new("http.route", route),
                    Attr::new("http.request.method", method),
                    Attr::new(
                        "http.response.status_code",
                        if *failed { "503" } else { "201" },
                    ),
                ],
                dropped_attributes_count: 0,
                events: vec![],
                dropped_events_count: 0,
                links: vec![],
                dropped_links_count: 0,
            },
        );
    }
    b.finish()
}

/// One call per request from `caller` to `callee` on `route`: a CLIENT span
/// (`"POST {route}"`, `peer.service` = callee) in the caller and its child
/// SERVER span in the callee, 30 ms long, in a trace of their own;
/// `(start_ns, failed)`: a failed call has status ERROR and HTTP 503 on
/// both spans. For service-map and dashboard tests.
pub fn calls(caller: &str, callee: &str, route: &str, requests: &[(i64, bool)]) -> RecordBatch {
    let mut b = SpansBuilder::new();
    let caller_res = vec![Attr::new("service.name", caller)];
    let callee_res = vec![Attr::new("service.name", callee)];
    let name = format!("POST {route}");
    let salt = caller.len() as u128 * 131 + callee.len() as u128 * 17 + route.len() as u128;
    for (i, (start, failed)) in requests.iter().enumerate() {
        let trace_id = (*start as u128 * 11 + (i as u128 + 1) * 1_000_003 + salt).to_be_bytes();
        let client_id = (*start as u64 ^ (0xC1 << 56) ^ (i as u64 + 1)).to_be_bytes();
        let server_id = (*start as u64 ^ (0x5E << 56) ^ (i as u64 + 1)).to_be_bytes();
        let status = if *failed { "503" } else { "200" };
        for (service, res, kind, id, parent, start_ns, len) in [
            (
                caller,
                &caller_res,
                SpanKind::Client,
                client_id,
                None,
                *start,
                32_000_000,
            ),
            (
                callee,
                &callee_res,
                SpanKind::Server,
                server_id,
                Some(client_id),
                start + 1_000_000,
                30_000_000,
            ),
        ] {
            let mut attributes = vec![
                Attr::new("http.route", route),
                Attr::new("http.request.method", "POST"),
                Attr::new("http.response.status_code", status),
            ];
            if kind == SpanKind::Client {
                attributes.push(Attr::new("peer.service", callee));
            }
            b.append(
                &Origin {
                    service_name: service,
                    resource_attributes: res,
                    scope_name: "",
                    scope_version: "",
                },
                &SpanRecord {
                    trace_id,
                    span_id: id,
                    parent_span_id: parent,
                    trace_state: "",
                    flags: 1,
                    name: &name,
                    kind,
                    start_time_ns: start_ns,
                    end_time_ns: start_ns + len,
                    status_code: if *failed {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    },
                    status_message: "",
                    attributes,
                    dropped_attributes_count: 0,
                    events: vec![],
                    dropped_events_count: 0,
                    links: vec![],
                    dropped_links_count: 0,
                },
            );
        }
    }
    b.finish()
}

/// `n` log records starting at `base_ns`, one per millisecond.
pub fn logs(seed: u64, n: usize, base_ns: i64) -> RecordBatch {
    let mut rng = Rng::new(seed.wrapping_add(11));
    let mut b = LogsBuilder::new();
    let res = vec![Attr::new("service.name", "orders")];
    for i in 0..n {
        let trace = (rng.next_u64() as u128).to_be_bytes();
        b.append(
            &Origin {
                service_name: "orders",
                resource_attributes: &res,
                scope_name: "orders::checkout",
                scope_version: "",
            },
            &LogRecord {
                time_ns: base_ns + i as i64 * 1_000_000,
                observed_time_ns: base_ns + i as i64 * 1_000_000 + 5,
                severity_number: if i % 10 == 0 { 17 } else { 9 },
                severity_text: if i % 10 == 0 { "ERROR" } else { "INFO" },
                body: Some(Cow::Owned(format!("order {seed}-{i} processed"))),
                trace_id: Some(trace),
                span_id: Some([1, 2, 3, 4, 5, 6, 7, 8]),
                flags: 1,
                event_name: "",
                attributes: vec![Attr::new("order.seq", Cow::Owned(i.to_string()))],
                dropped_attributes_count: 0,
            },
        );
    }
    b.finish()
}

/// Five metric points at `time_ns`: one of each type, with an exemplar on the histogram.
pub fn metric_points(time_ns: i64) -> RecordBatch {
    let mut b = MetricPointsBuilder::new();
    let res = vec![Attr::new("service.name", "payments")];
    let origin = Origin {
        service_name: "payments",
        resource_attributes: &res,
        scope_name: "payments",
        scope_version: "2.0",
    };
    let attrs = || vec![Attr::new("http.route", "/charge")];
    let point = |name, unit, data| MetricPointRecord {
        time_ns,
        start_time_ns: Some(time_ns - 60_000_000_000),
        metric_name: name,
        unit,
        description: "synthetic",
        attributes: attrs(),
        flags: 0,
        data,
        exemplars: Vec::new(),
    };
    b.append(
        &origin,
        &point("queue.depth", "{item}", PointData::Gauge(Number::I64(42))),
    );
    b.append(
        &origin,
        &point(
            "payments.charged",
            "{charge}",
            PointData::Sum {
                value: Number::F64(1234.5),
                is_monotonic: true,
                temporality: Temporality::Cumulative,
            },
        ),
    );
    let mut hist = point(
        "http.server.request.duration",
        "s",
        PointData::Histogram {
            temporality: Temporality::Delta,
            count: 10,
            sum: Some(1.25),
            min: Some(0.01),
            max: Some(0.5),
            bucket_counts: &[2, 5, 3],
            explicit_bounds: &[0.05, 0.25],
        },
    );
    hist.exemplars.push(ExemplarRecord {
        time_ns,
        value: 0.5,
        trace_id: Some([0xab; 16]),
        span_id: Some([0xcd; 8]),
        filtered_attributes: vec![Attr::new("user.id", "u-1")],
    });
    b.append(&origin, &hist);
    b.append(
        &origin,
        &point(
            "rpc.latency",
            "ms",
            PointData::ExponentialHistogram {
                temporality: Temporality::Cumulative,
                count: 7,
                sum: Some(70.0),
                min: Some(1.0),
                max: Some(30.0),
                scale: 3,
                zero_count: 1,
                zero_threshold: 0.0,
                positive_offset: -2,
                positive_bucket_counts: &[1, 2, 3],
                negative_offset: 0,
                negative_bucket_counts: &[],
            },
        ),
    );
    b.append(
        &origin,
        &point(
            "gc.pause",
            "ms",
            PointData::Summary {
                count: 4,
                sum: 10.0,
                quantiles: vec![(0.5, 2.0), (0.99, 4.5)],
            },
        ),
    );
    b.finish()
}
