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
    /// 95th percentile duration, ms (`None` for an empty bucket).
    pub p95_ms: Option<f64>,
    /// 99th percentile duration, ms.
    pub p99_ms: Option<f64>,
}

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
         percentile_cont(duration_ns, 0.95) / 1e6 AS p95, percentile_cont(duration_ns, 0.99) / 1e6 AS p99 \
         FROM spans WHERE {} AND service_name = {}{op} GROUP BY 1 ORDER BY 1",
        w.predicate(),
        quote(service),
        from = w.from_ns,
    );
    let mut found: BTreeMap<i64, (u64, u64, f64, f64)> = BTreeMap::new();
    for b in run(store, &sql).await? {
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        for i in 0..b.num_rows() {
            found.insert(
                t.value(i),
                (
                    i64_at(&b, "requests", i) as u64,
                    i64_at(&b, "errors", i) as u64,
                    f64_at(&b, "p95", i),
                    f64_at(&b, "p99", i),
                ),
            );
        }
    }
    Ok((0..buckets)
        .map(|k| {
            let time_ns = w.from_ns + k * step_ns;
            match found.get(&time_ns) {
                Some(&(requests, errors, p95, p99)) => point(
                    w,
                    time_ns,
                    step_ns,
                    (requests, errors),
                    Some(p95),
                    Some(p99),
                ),
                None => point(w, time_ns, step_ns, (0, 0), None, None),
            }
        })
        .collect())
}

/// The bucket of a series starting at `time_ns` (the last one may be cut
/// short by the window's end) with its `(requests, errors)` and percentiles.
pub(crate) fn point(
    w: &Window,
    time_ns: i64,
    step_ns: i64,
    (requests, errors): (u64, u64),
    p95_ms: Option<f64>,
    p99_ms: Option<f64>,
) -> RedPoint {
    let secs = ((w.to_ns.min(time_ns + step_ns)) - time_ns) as f64 / 1e9;
    RedPoint {
        time_ns,
        requests,
        errors,
        rate: requests as f64 / secs,
        error_ratio: errors as f64 / requests.max(1) as f64,
        p95_ms,
        p99_ms,
    }
}

/// One edge of the service map: `caller` calls `callee`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// Calling service (the CLIENT or PRODUCER span's service).
    pub caller: String,
    /// Called service (the SERVER or CONSUMER span's service).
    pub callee: String,
    /// Calls in the window (by the callee span's start time).
    pub calls: u64,
    /// Failed calls (callee span failed by the RED error rule).
    pub errors: u64,
    /// Calls per second.
    pub rate: f64,
    /// errors / calls.
    pub error_ratio: f64,
    /// 95th percentile of the callee span's duration, ms.
    pub p95_ms: f64,
}

/// Caller -> callee edges: a SERVER (or CONSUMER) span whose parent is a
/// CLIENT (or PRODUCER) span of another service, with RED per edge.
pub async fn service_map(store: &Store, w: &Window) -> Result<Vec<Edge>, RedError> {
    let sql = format!(
        "SELECT c.service_name AS caller, s.service_name AS callee, count(*) AS requests, \
         sum(CASE WHEN (s.status_code = 'ERROR' OR coalesce(s.http_response_status_code, 0) >= 500) THEN 1 ELSE 0 END) AS errors, \
         percentile_cont(s.duration_ns, 0.95) / 1e6 AS p95 \
         FROM spans s JOIN spans c ON s.parent_span_id = c.span_id AND s.trace_id = c.trace_id \
         WHERE s.kind IN ('SERVER', 'CONSUMER') AND c.kind IN ('CLIENT', 'PRODUCER') \
           AND s.service_name <> c.service_name \
           AND s.start_time >= to_timestamp_nanos({from}) AND s.start_time < to_timestamp_nanos({to}) \
           AND c.start_time >= to_timestamp_nanos({from}) - INTERVAL '1 hour' AND c.start_time < to_timestamp_nanos({to}) \
         GROUP BY 1, 2 ORDER BY 1, 2",
        from = w.from_ns,
        to = w.to_ns
    );
    let mut out = Vec::new();
    for b in run(store, &sql).await? {
        let caller = b.column(0).as_string::<i32>();
        let callee = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            let calls = i64_at(&b, "requests", i) as u64;
            let errors = i64_at(&b, "errors", i) as u64;
            out.push(Edge {
                caller: caller.value(i).to_string(),
                callee: callee.value(i).to_string(),
                calls,
                errors,
                rate: calls as f64 / w.seconds(),
                error_ratio: errors as f64 / calls.max(1) as f64,
                p95_ms: f64_at(&b, "p95", i),
            });
        }
    }
    Ok(out)
}
