//! RED metrics (rate, errors, duration) from server spans.
//!
//! Definitions, used everywhere Burnwatch shows RED:
//! - a request is a span with `kind = 'SERVER'` whose `start_time` is in the
//!   window `[from, to)`;
//! - it is an error when `status_code = 'ERROR'` or
//!   `http_response_status_code >= 500`;
//! - rate is requests per second of window; error ratio is errors / requests;
//! - duration percentiles are exact (`percentile_cont`, linear interpolation
//!   between the two nearest ranks) over `duration_ns`, reported in ms.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use serde::Serialize;
use store::Store;

/// Errors computing RED.
#[derive(Debug, thiserror::Error)]
pub enum RedError {
    /// The window or step is not usable.
    #[error("{0}")]
    BadRequest(String),
    /// The query failed.
    #[error("query failed: {0}")]
    Query(String),
}

/// A half-open time window `[from_ns, to_ns)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, ns since the epoch (inclusive).
    pub from_ns: i64,
    /// End, ns since the epoch (exclusive).
    pub to_ns: i64,
}

impl Window {
    /// Checks `from < to`.
    pub fn new(from_ns: i64, to_ns: i64) -> Result<Window, RedError> {
        if from_ns >= to_ns {
            return Err(RedError::BadRequest(format!(
                "empty time window: from ({from_ns}) must be before to ({to_ns})"
            )));
        }
        Ok(Window { from_ns, to_ns })
    }

    /// Checks a bucket width and returns it in ns with the number of buckets
    /// (at most [`MAX_POINTS`]) that cover the window.
    pub fn buckets(&self, step_secs: i64) -> Result<(i64, i64), RedError> {
        if step_secs <= 0 {
            return Err(RedError::BadRequest(format!(
                "step must be a positive number of seconds, got {step_secs}"
            )));
        }
        let step_ns = step_secs.saturating_mul(1_000_000_000);
        let buckets = (self.to_ns - self.from_ns + step_ns - 1) / step_ns;
        if buckets > MAX_POINTS {
            return Err(RedError::BadRequest(format!(
                "{buckets} buckets requested; at most {MAX_POINTS}: use a larger step"
            )));
        }
        Ok((step_ns, buckets))
    }

    fn seconds(&self) -> f64 {
        (self.to_ns - self.from_ns) as f64 / 1e9
    }

    fn predicate(&self) -> String {
        format!(
            "kind = 'SERVER' AND start_time >= to_timestamp_nanos({}) AND start_time < to_timestamp_nanos({})",
            self.from_ns, self.to_ns
        )
    }
}

/// RED of one group (a service, or an operation of a service) over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Red {
    /// `service.name`.
    pub service: String,
    /// Span name, for per-operation results.
    pub operation: Option<String>,
    /// Requests in the window.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Requests per second.
    pub rate: f64,
    /// errors / requests.
    pub error_ratio: f64,
    /// Duration percentiles, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Where the figures come from.
    pub source: RedSource,
}

/// The data behind a [`Red`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedSource {
    /// SERVER spans (exact counts; exact or sketched percentiles).
    Spans,
    /// The `http.server.request.duration` histogram (exact counts;
    /// percentiles interpolated in its buckets), for services without spans.
    Histogram,
}

/// One bucket of a RED time series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedPoint {
    /// Bucket start, ns.
    pub time_ns: i64,
    /// Requests in the bucket.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Requests per second over the bucket.
    pub rate: f64,
    /// errors / requests (0 for an empty bucket).
    pub error_ratio: f64,
    /// Median duration, ms (`None` for an empty bucket).
    pub p50_ms: Option<f64>,
    /// 90th percentile duration, ms.
    pub p90_ms: Option<f64>,
    /// 95th percentile duration, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile duration, ms.
    pub p99_ms: Option<f64>,
}

/// The quantiles a [`RedPoint`] carries.
pub const SERIES_QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// A SQL string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) const ERROR: &str =
    "(status_code = 'ERROR' OR coalesce(http_response_status_code, 0) >= 500)";

fn aggregates() -> String {
    format!(
        "count(*) AS requests, \
         sum(CASE WHEN {ERROR} THEN 1 ELSE 0 END) AS errors, \
         percentile_cont(duration_ns, 0.5) / 1e6 AS p50, \
         percentile_cont(duration_ns, 0.9) / 1e6 AS p90, \
         percentile_cont(duration_ns, 0.95) / 1e6 AS p95, \
         percentile_cont(duration_ns, 0.99) / 1e6 AS p99"
    )
}

/// SQL for RED per service.
pub fn services_sql(w: &Window) -> String {
    format!(
        "SELECT service_name, {} FROM spans WHERE {} GROUP BY service_name ORDER BY service_name",
        aggregates(),
        w.predicate()
    )
}

/// SQL for RED per operation of one service.
pub fn operations_sql(service: &str, w: &Window) -> String {
    format!(
        "SELECT service_name, name, {} FROM spans WHERE {} AND service_name = {} GROUP BY service_name, name ORDER BY name",
        aggregates(),
        w.predicate(),
        quote(service)
    )
}

pub(crate) async fn run(store: &Store, sql: &str) -> Result<Vec<RecordBatch>, RedError> {
    store::query::collect(store, sql)
        .await
        .map_err(|e| RedError::Query(e.to_string()))
}

fn f64_at(b: &RecordBatch, name: &str, i: usize) -> f64 {
    b.column_by_name(name)
        .and_then(|c| {
            c.as_primitive_opt::<Float64Type>()
                .map(|a| if a.is_null(i) { f64::NAN } else { a.value(i) })
        })
        .unwrap_or(f64::NAN)
}

fn i64_at(b: &RecordBatch, name: &str, i: usize) -> i64 {
    b.column_by_name(name)
        .and_then(|c| {
            c.as_primitive_opt::<Int64Type>()
                .map(|a| if a.is_null(i) { 0 } else { a.value(i) })
        })
        .unwrap_or(0)
}

fn rows(batches: &[RecordBatch], w: &Window, per_operation: bool) -> Vec<Red> {
    let mut out = Vec::new();
    for b in batches {
        let svc = b.column(0).as_string::<i32>();
        let op = per_operation.then(|| b.column(1).as_string::<i32>());
        for i in 0..b.num_rows() {
            let requests = i64_at(b, "requests", i) as u64;
            let errors = i64_at(b, "errors", i) as u64;
            out.push(Red {
                service: svc.value(i).to_string(),
                operation: op.map(|o| o.value(i).to_string()),
                requests,
                errors,
                rate: requests as f64 / w.seconds(),
                error_ratio: if requests == 0 {
                    0.0
                } else {
                    errors as f64 / requests as f64
                },
                p50_ms: f64_at(b, "p50", i),
                p90_ms: f64_at(b, "p90", i),
                p95_ms: f64_at(b, "p95", i),
                p99_ms: f64_at(b, "p99", i),
                source: RedSource::Spans,
            });
        }
    }
    out
}

/// RED per service over a window (services without requests are absent).
pub async fn services(store: &Store, w: &Window) -> Result<Vec<Red>, RedError> {
    Ok(rows(&run(store, &services_sql(w)).await?, w, false))
}

/// RED per operation of a service over a window.
pub async fn operations(store: &Store, service: &str, w: &Window) -> Result<Vec<Red>, RedError> {
    Ok(rows(
        &run(store, &operations_sql(service, w)).await?,
        w,
        true,
    ))
}

/// Most buckets a series may have.
pub const MAX_POINTS: i64 = 11_000;

/// RED of a service (or one of its operations) as a series of `step_secs`
/// buckets aligned to `w.from_ns`; every bucket is present, empty ones with
/// zero requests.
pub async fn series(
    store: &Store,
    service: &str,
    operation: Option<&str>,
    w: &Window,
    step_secs: i64,
) -> Result<Vec<RedPoint>, RedError> {
    let (step_ns, buckets) = w.buckets(step_secs)?;
    let op = operation
        .map(|o| format!(" AND name = {}", quote(o)))
        .unwrap_or_default();
    let sql = format!(
        "SELECT date_bin(INTERVAL '{step_secs} seconds', start_time, to_timestamp_nanos({from})) AS bucket, \
         count(*) AS requests, sum(CASE WHEN {ERROR} THEN 1 ELSE 0 END) AS errors, \
         percentile_cont(duration_ns, 0.5) / 1e6 AS p50, percentile_cont(duration_ns, 0.9) / 1e6 AS p90, \
         percentile_cont(duration_ns, 0.95) / 1e6 AS p95, percentile_cont(duration_ns, 0.99) / 1e6 AS p99 \
         FROM spans WHERE {} AND service_name = {}{op} GROUP BY 1 ORDER BY 1",
        w.predicate(),
        quote(service),
        from = w.from_ns,
    );
    let mut found: BTreeMap<i64, (u64, u64, [Option<f64>; 4])> = BTreeMap::new();
    for b in run(store, &sql).await? {
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        for i in 0..b.num_rows() {
            found.insert(
                t.value(i),
                (
                    i64_at(&b, "requests", i) as u64,
                    i64_at(&b, "errors", i) as u64,
                    ["p50", "p90", "p95", "p99"].map(|q| Some(f64_at(&b, q, i))),
                ),
            );
        }
    }
    Ok((0..buckets)
        .map(|k| {
            let time_ns = w.from_ns + k * step_ns;
            match found.get(&time_ns) {
                Some(&(requests, errors, qs)) => point(w, time_ns, step_ns, (requests, errors), qs),
                None => point(w, time_ns, step_ns, (0, 0), [None; 4]),
            }
        })
        .collect())
}

/// The bucket of a series starting at `time_ns` (the last one may be cut
/// short by the window's end) with its `(requests, errors)` and the
/// [`SERIES_QUANTILES`] in ms.
pub(crate) fn point(
    w: &Window,
    time_ns: i64,
    step_ns: i64,
    (requests, errors): (u64, u64),
    [p50_ms, p90_ms, p95_ms, p99_ms]: [Option<f64>; 4],
) -> RedPoint {
    let secs = ((w.to_ns.min(time_ns + step_ns)) - time_ns) as f64 / 1e9;
    RedPoint {
        time_ns,
        requests,
        errors,
        rate: requests as f64 / secs,
        error_ratio: errors as f64 / requests.max(1) as f64,
        p50_ms,
        p90_ms,
        p95_ms,
        p99_ms,
    }
}

/// One edge of the service map: `caller` calls `callee`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// Calling service (the CLIENT or PRODUCER span's service).
    pub caller: String,
    /// Called service (the SERVER or CONSUMER span's service, or the
    /// CLIENT span's `peer.service` for an uninstrumented callee).
    pub callee: String,
    /// `call` (CLIENT -> SERVER), `message` (PRODUCER -> CONSUMER, as
    /// parent or as a span link) or `unobserved` (CLIENT spans naming a
    /// `peer.service` that sent no server spans in the window; RED from the
    /// CLIENT spans).
    pub kind: String,
    /// Calls in the window (by the callee span's start time; by the CLIENT
    /// span's for `unobserved` edges).
    pub calls: u64,
    /// Failed calls (by the RED error rule, on the callee span).
    pub errors: u64,
    /// Calls per second.
    pub rate: f64,
    /// errors / calls.
    pub error_ratio: f64,
    /// Median duration of the callee span, ms (exact from
    /// [`service_map`]; within 1% from [`crate::edges::EdgeIndex`], which
    /// the server uses).
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
}

/// How far apart the starts of a caller and a callee span may be to pair
/// (as [`crate::edges::PAIR_SLACK_NS`]).
const PAIR_SLACK: &str = "INTERVAL '1 hour'";

/// Caller -> callee edges with RED per edge, by one SQL join over raw spans
/// (the reference for [`crate::edges::EdgeIndex`], which answers the same
/// from cached per-file extracts), from three kinds of evidence:
/// a SERVER (or CONSUMER) span whose parent is a CLIENT (or PRODUCER) span
/// of another service; a CONSUMER span linked to a PRODUCER span of another
/// service (a message consumed in a new trace); and a CLIENT span with a
/// `peer.service` naming a service that sent no SERVER or CONSUMER spans
/// in the window (the callee is not instrumented).
pub async fn service_map(store: &Store, w: &Window) -> Result<Vec<Edge>, RedError> {
    service_map_of(store, w, None).await
}

/// The edges of [`service_map`] that `service` takes part in (as caller or
/// callee), or all of them for `None`. Filtering inside the query keeps one
/// side of each join to that service's spans, so it costs a fraction of the
/// whole map.
pub async fn service_map_of(
    store: &Store,
    w: &Window,
    service: Option<&str>,
) -> Result<Vec<Edge>, RedError> {
    let sql = format!(
        "WITH edges AS ({}) \
         SELECT caller, callee, kind, count(*) AS requests, sum(err) AS errors, \
                percentile_cont(d, 0.5) / 1e6 AS p50, percentile_cont(d, 0.95) / 1e6 AS p95, \
                percentile_cont(d, 0.99) / 1e6 AS p99 \
         FROM edges GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        edge_rows_sql(w, service)
    );
    let mut out = Vec::new();
    for b in run(store, &sql).await? {
        let caller = b.column(0).as_string::<i32>();
        let callee = b.column(1).as_string::<i32>();
        let kind = b.column(2).as_string::<i32>();
        for i in 0..b.num_rows() {
            let calls = i64_at(&b, "requests", i) as u64;
            let errors = i64_at(&b, "errors", i) as u64;
            out.push(Edge {
                caller: caller.value(i).to_string(),
                callee: callee.value(i).to_string(),
                kind: kind.value(i).to_string(),
                calls,
                errors,
                rate: calls as f64 / w.seconds(),
                error_ratio: errors as f64 / calls.max(1) as f64,
                p50_ms: f64_at(&b, "p50", i),
                p95_ms: f64_at(&b, "p95", i),
                p99_ms: f64_at(&b, "p99", i),
            });
        }
    }
    Ok(out)
}

/// The rows of the service map's edges in `w`, one per call (for one
/// service's edges, or all): `caller`, `callee`, `kind` (`call`,
/// `message`, `unobserved`), `d` (the callee span's duration, ns), `err`
/// (0/1 by the RED error rule, on the callee span), `t` (the callee span's
/// start, ns; the CLIENT span's for `unobserved`) and `dc` (the caller
/// span's duration, ns).
pub fn edge_rows_sql(w: &Window, service: Option<&str>) -> String {
    let err = |t: &str| {
        format!(
            "CASE WHEN ({t}.status_code = 'ERROR' OR coalesce({t}.http_response_status_code, 0) >= 500) THEN 1 ELSE 0 END"
        )
    };
    let within = |t: &str| {
        format!(
            "{t}.start_time >= to_timestamp_nanos({}) AND {t}.start_time < to_timestamp_nanos({})",
            w.from_ns, w.to_ns
        )
    };
    let (from, to) = (w.from_ns, w.to_ns);
    let calls = |side: &str| {
        format!(
            "SELECT c.service_name AS caller, s.service_name AS callee, \
                  CASE WHEN c.kind = 'PRODUCER' THEN 'message' ELSE 'call' END AS kind, \
                  s.duration_ns AS d, {err_s} AS err, arrow_cast(s.start_time, 'Int64') AS t, \
                  c.duration_ns AS dc \
           FROM spans s JOIN spans c ON s.parent_span_id = c.span_id AND s.trace_id = c.trace_id \
           WHERE s.kind IN ('SERVER', 'CONSUMER') AND c.kind IN ('CLIENT', 'PRODUCER') \
             AND s.service_name <> c.service_name AND {within_s} \
             AND c.start_time >= s.start_time - {PAIR_SLACK} AND c.start_time < s.start_time + {PAIR_SLACK} \
             AND c.start_time >= to_timestamp_nanos({from}) - {PAIR_SLACK} AND c.start_time < to_timestamp_nanos({to}) + {PAIR_SLACK}{side}",
            err_s = err("s"),
            within_s = within("s"),
        )
    };
    // For one service: its calls in (as callee) and out (as caller), two
    // disjoint joins (a call never stays inside one service), each with one
    // side cut down to the service's spans.
    let (calls, link_filter, peer_filter) = match service {
        None => (calls(""), String::new(), String::new()),
        Some(x) => {
            let x = quote(x);
            (
                format!(
                    "{} UNION ALL {}",
                    calls(&format!(" AND s.service_name = {x}")),
                    calls(&format!(" AND c.service_name = {x}"))
                ),
                format!(" AND (s.service_name = {x} OR p.service_name = {x})"),
                format!(" AND (c.service_name = {x} OR c.peer_service = {x})"),
            )
        }
    };
    format!(
        "{calls} \
         UNION ALL \
           SELECT p.service_name, s.service_name, 'message', s.duration_ns, {err_s}, arrow_cast(s.start_time, 'Int64'), p.duration_ns \
           FROM (SELECT service_name, parent_span_id, duration_ns, status_code, http_response_status_code, \
                        start_time, unnest(links) AS l \
                 FROM spans s WHERE kind = 'CONSUMER' AND cardinality(links) > 0 AND {within_s}) s \
           JOIN spans p ON p.trace_id = get_field(s.l, 'trace_id') AND p.span_id = get_field(s.l, 'span_id') \
           WHERE p.kind = 'PRODUCER' AND p.service_name <> s.service_name \
             AND p.span_id <> coalesce(s.parent_span_id, ''){link_filter} \
             AND p.start_time >= s.start_time - {PAIR_SLACK} AND p.start_time < s.start_time + {PAIR_SLACK} \
             AND p.start_time >= to_timestamp_nanos({from}) - {PAIR_SLACK} AND p.start_time < to_timestamp_nanos({to}) + {PAIR_SLACK} \
         UNION ALL \
           SELECT c.service_name, c.peer_service, 'unobserved', c.duration_ns, {err_c}, arrow_cast(c.start_time, 'Int64'), c.duration_ns AS dc \
           FROM spans c \
           WHERE c.kind = 'CLIENT' AND c.peer_service IS NOT NULL AND c.peer_service <> '' \
             AND c.peer_service <> c.service_name AND {within_c}{peer_filter} \
             AND c.peer_service NOT IN ( \
               SELECT DISTINCT service_name FROM spans \
               WHERE kind IN ('SERVER', 'CONSUMER') AND start_time >= to_timestamp_nanos({from}) \
                 AND start_time < to_timestamp_nanos({to}) + {PAIR_SLACK})",
        err_s = err("s"),
        err_c = err("c"),
        within_s = within("s"),
        within_c = within("c"),
    )
}

/// Registers a fixed snapshot of a table as `name` in `ctx`.
pub fn register(
    ctx: &datafusion::prelude::SessionContext,
    name: &str,
    snap: store::Snapshot,
) -> Result<(), RedError> {
    ctx.register_table(
        name,
        std::sync::Arc::new(store::query::StoreTable::fixed(snap)),
    )
    .map(|_| ())
    .map_err(|e| RedError::Query(e.to_string()))
}
