//! Service-graph metrics for PromQL: the series Tempo's metrics generator
//! and the OpenTelemetry Collector's servicegraph connector produce, from
//! the service map's edges (see [`crate::red::edge_rows_sql`]).
//!
//! - `traces_service_graph_request_total`,
//!   `traces_service_graph_request_failed_total` (counters);
//! - `traces_service_graph_request_server_seconds_bucket` / `_sum` /
//!   `_count` (the callee span's duration) and
//!   `traces_service_graph_request_client_seconds_*` (the caller span's),
//!   bounds [`SPAN_METRIC_BOUNDS`];
//! - labels `client`, `server` and `connection_type` (absent for a call,
//!   `messaging_system` for a message, `virtual_node` for a callee that is
//!   not instrumented, named by the caller's `peer.service`).
//!
//! The two sides of an edge are spans of different services, usually in
//! different files, so per-file rollups cannot pair them. Edges are
//! counted per minute of the callee span's start with one join per hour of
//! spans, and the counts of hours that ended more than
//! [`SETTLE_NS`] ago are kept in memory ([`MAX_CACHED_HOURS`] of them): a
//! settled hour is joined once. Samples follow the span metrics' rule: one
//! per minute boundary, counting from the selection's first minute.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use promql::{Labels, Matcher, Series};
use store::Store;

use crate::red::{RedError, Window};
use crate::rollup::{SPAN_METRIC_BOUNDS, bucket_of_duration};
use crate::spanmetrics::{bucket_bounds, cumulative, matches_all, with_name};

const MINUTE_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

/// How long after an hour ends its edges are taken as final (late spans
/// arrive within it).
pub const SETTLE_NS: i64 = 10 * MINUTE_NS;

/// Most settled hours kept in memory (two weeks).
pub const MAX_CACHED_HOURS: usize = 14 * 24;

const BUCKETS: usize = SPAN_METRIC_BOUNDS.len() + 1;

const NAMES: [&str; 8] = [
    "traces_service_graph_request_total",
    "traces_service_graph_request_failed_total",
    "traces_service_graph_request_server_seconds_bucket",
    "traces_service_graph_request_server_seconds_sum",
    "traces_service_graph_request_server_seconds_count",
    "traces_service_graph_request_client_seconds_bucket",
    "traces_service_graph_request_client_seconds_sum",
    "traces_service_graph_request_client_seconds_count",
];

/// One minute of one edge.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeMinute {
    /// Minute start, ns.
    pub minute_ns: i64,
    /// Calling service.
    pub client: Arc<str>,
    /// Called service.
    pub server: Arc<str>,
    /// `call`, `message` or `unobserved` (as [`crate::red::Edge::kind`]).
    pub kind: Arc<str>,
    /// Calls.
    pub calls: u64,
    /// Failed calls.
    pub failed: u64,
    /// Callee durations: sum (ns) and per bucket.
    pub server_sum_ns: i64,
    /// Callee spans per bucket (not cumulative).
    pub server_buckets: [u64; BUCKETS],
    /// Caller durations: sum (ns).
    pub client_sum_ns: i64,
    /// Caller spans per bucket (not cumulative).
    pub client_buckets: [u64; BUCKETS],
}

/// Whether a selection with these `__name__` matchers may want
/// service-graph series.
pub fn wanted(name_matchers: &[&Matcher]) -> bool {
    NAMES
        .iter()
        .any(|n| name_matchers.iter().all(|m| m.matches(n)))
}

/// The service-graph families, as the metadata endpoint lists them.
pub fn families() -> Vec<crate::prom::Family> {
    let f = |name: &str, metric_type: &str, prom_type: &'static str, unit: &str, help: &str| {
        crate::prom::Family {
            stored: String::new(),
            metric_type: metric_type.into(),
            remote_write: false,
            monotonic: true,
            temporality: "cumulative".into(),
            unit: unit.into(),
            help: help.into(),
            name: name.into(),
            prom_type,
        }
    };
    vec![
        f(
            "traces_service_graph_request_total",
            "sum",
            "counter",
            "",
            "Calls from client to server (service map edges).",
        ),
        f(
            "traces_service_graph_request_failed_total",
            "sum",
            "counter",
            "",
            "Failed calls from client to server.",
        ),
        f(
            "traces_service_graph_request_server_seconds",
            "histogram",
            "histogram",
            "seconds",
            "Duration of the server side of calls.",
        ),
        f(
            "traces_service_graph_request_client_seconds",
            "histogram",
            "histogram",
            "seconds",
            "Duration of the client side of calls.",
        ),
    ]
}

/// Per-minute edges, joined once per settled hour.
#[derive(Debug, Default)]
pub struct ServiceGraph {
    settled: Mutex<BTreeMap<i64, Arc<Vec<EdgeMinute>>>>,
}

/// Most hours one selection may join (beyond the cache): the two weeks
/// the cache holds.
pub const MAX_SELECTION_HOURS: i64 = MAX_CACHED_HOURS as i64;

/// The time range the spans table holds (files and rows in memory), ns.
fn span_extent(store: &Store) -> Option<(i64, i64)> {
    let snap = store.snapshot(store::Table::Spans);
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (_, m) in &snap.files {
        lo = lo.min(m.min_time_ns);
        hi = hi.max(m.max_time_ns);
    }
    for b in &snap.batches {
        if let Some(c) = b.column_by_name("start_time")
            && let Some(t) = c.as_primitive_opt::<arrow::datatypes::TimestampNanosecondType>()
            && let (Some(a), Some(z)) = (arrow::compute::min(t), arrow::compute::max(t))
        {
            lo = lo.min(a);
            hi = hi.max(z);
        }
    }
    (lo <= hi).then_some((lo, hi))
}

impl ServiceGraph {
    /// Edges per minute for the minutes overlapping `[from_ns, to_ns)`,
    /// where the store holds spans. A range over more than
    /// [`MAX_SELECTION_HOURS`] hours of spans is refused.
    pub async fn minutes(
        &self,
        store: &Store,
        from_ns: i64,
        to_ns: i64,
    ) -> Result<Vec<EdgeMinute>, RedError> {
        let Some((lo, hi)) = span_extent(store) else {
            return Ok(Vec::new());
        };
        let (from_ns, to_ns) = (from_ns.max(lo), to_ns.min(hi.saturating_add(1)));
        if from_ns >= to_ns {
            return Ok(Vec::new());
        }
        let first = from_ns.div_euclid(HOUR_NS);
        let last = (to_ns - 1).div_euclid(HOUR_NS);
        if last - first >= MAX_SELECTION_HOURS {
            return Err(RedError::BadRequest(format!(
                "service-graph series cover at most {MAX_SELECTION_HOURS} hours of spans per query; narrow the range"
            )));
        }
        let now = store::now_ns();
        let mut out = Vec::new();
        let mut h = from_ns.div_euclid(HOUR_NS) * HOUR_NS;
        while h < to_ns {
            let cached = self
                .settled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&h)
                .cloned();
            let rows = match cached {
                Some(r) => r,
                None => {
                    let r = Arc::new(hour(store, h).await?);
                    if h + HOUR_NS + SETTLE_NS <= now {
                        let mut c = self.settled.lock().unwrap_or_else(|e| e.into_inner());
                        c.insert(h, r.clone());
                        while c.len() > MAX_CACHED_HOURS {
                            c.pop_first();
                        }
                    }
                    r
                }
            };
            out.extend(
                rows.iter()
                    .filter(|e| e.minute_ns + MINUTE_NS > from_ns && e.minute_ns < to_ns)
                    .cloned(),
            );
            h += HOUR_NS;
        }
        Ok(out)
    }

    /// Hours held in memory.
    pub fn cached_hours(&self) -> usize {
        self.settled.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// (minute, client, server, kind).
type EdgeKey = (i64, Arc<str>, Arc<str>, Arc<str>);

/// The edges of one hour of callee spans, per minute.
async fn hour(store: &Store, h: i64) -> Result<Vec<EdgeMinute>, RedError> {
    let w = Window::new(h, h + HOUR_NS)?;
    let sql = format!(
        "SELECT caller, callee, kind, t, d, dc, err FROM ({})",
        crate::red::edge_rows_sql(&w, None)
    );
    let batches = store::query::collect(store, &sql)
        .await
        .map_err(|e| RedError::Query(e.to_string()))?;
    let mut acc: BTreeMap<EdgeKey, EdgeMinute> = BTreeMap::new();
    let mut names: BTreeMap<String, Arc<str>> = BTreeMap::new();
    let mut intern = |s: &str| -> Arc<str> {
        names
            .entry(s.to_string())
            .or_insert_with(|| Arc::from(s))
            .clone()
    };
    for b in &batches {
        let col = |i: usize| arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64);
        let text = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| RedError::Query(e.to_string()))
        };
        let (caller, callee, kind) = (text(0)?, text(1)?, text(2)?);
        let (caller, callee, kind) = (
            caller.as_string::<i32>(),
            callee.as_string::<i32>(),
            kind.as_string::<i32>(),
        );
        let ints: Vec<_> = (3..7)
            .map(col)
            .collect::<Result<_, _>>()
            .map_err(|e| RedError::Query(e.to_string()))?;
        let (t, d, dc, err) = (
            ints[0].as_primitive::<Int64Type>(),
            ints[1].as_primitive::<Int64Type>(),
            ints[2].as_primitive::<Int64Type>(),
            ints[3].as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            let minute = t.value(i).div_euclid(MINUTE_NS) * MINUTE_NS;
            let key = (
                minute,
                intern(caller.value(i)),
                intern(callee.value(i)),
                intern(kind.value(i)),
            );
            let e = acc.entry(key.clone()).or_insert_with(|| EdgeMinute {
                minute_ns: minute,
                client: key.1.clone(),
                server: key.2.clone(),
                kind: key.3.clone(),
                calls: 0,
                failed: 0,
                server_sum_ns: 0,
                server_buckets: [0; BUCKETS],
                client_sum_ns: 0,
                client_buckets: [0; BUCKETS],
            });
            e.calls += 1;
            e.failed += u64::from(!err.is_null(i) && err.value(i) != 0);
            let (sd, cd) = (d.value(i), dc.value(i));
            e.server_sum_ns += sd;
            e.server_buckets[bucket_of_duration(sd as f64)] += 1;
            e.client_sum_ns += cd;
            e.client_buckets[bucket_of_duration(cd as f64)] += 1;
        }
    }
    Ok(acc.into_values().collect())
}

/// The service-graph series matching `matchers` from per-minute edges.
pub fn series(
    edges: &[EdgeMinute],
    matchers: &[Matcher],
    start_ms: i64,
    end_ms: i64,
    with_samples: bool,
) -> Vec<Series> {
    let bounds = bucket_bounds();
    let mut inc: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    let matches = |l: &Labels| matches_all(matchers, l);
    for e in edges {
        let mut base = vec![
            ("client".to_string(), e.client.to_string()),
            ("server".to_string(), e.server.to_string()),
        ];
        match &*e.kind {
            "message" => base.push(("connection_type".into(), "messaging_system".into())),
            "unobserved" => base.push(("connection_type".into(), "virtual_node".into())),
            _ => {}
        }
        let minute = e.minute_ns.div_euclid(1_000_000);
        let mut parts: Vec<(Labels, f64)> = vec![
            (with_name(base.clone(), NAMES[0], None), e.calls as f64),
            (with_name(base.clone(), NAMES[1], None), e.failed as f64),
        ];
        for (side, sum, buckets) in [
            ("server", e.server_sum_ns, &e.server_buckets),
            ("client", e.client_sum_ns, &e.client_buckets),
        ] {
            let name = format!("traces_service_graph_request_{side}_seconds");
            parts.push((
                with_name(base.clone(), &format!("{name}_sum"), None),
                sum as f64 / 1e9,
            ));
            parts.push((
                with_name(base.clone(), &format!("{name}_count"), None),
                e.calls as f64,
            ));
            for (i, b) in bounds.iter().enumerate() {
                parts.push((
                    with_name(base.clone(), &format!("{name}_bucket"), Some(*b)),
                    buckets[..=i].iter().sum::<u64>() as f64,
                ));
            }
        }
        for (labels, v) in parts {
            if matches(&labels) {
                *inc.entry(labels).or_default().entry(minute).or_default() += v;
            }
        }
    }
    cumulative(inc, start_ms, end_ms, with_samples)
}
