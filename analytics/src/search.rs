//! Traces and logs for SREs: a trace by id, trace search, log search.
//!
//! Every user value reaches SQL as a quoted literal or a validated number;
//! trace ids must be 32 hex characters.

use crate::red::quote;
use arrow::array::RecordBatch;
use serde::Deserialize;
use store::Store;

/// Errors of the exploration queries.
#[derive(Debug, thiserror::Error)]
pub enum ExploreError {
    /// A parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The query failed.
    #[error("query failed: {0}")]
    Query(String),
}

/// Checks and normalises a trace id (32 hex characters, any case).
pub fn trace_id(s: &str) -> Result<String, ExploreError> {
    let s = s.trim().to_ascii_lowercase();
    if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(ExploreError::BadRequest(format!(
            "trace id {s:?} is not 32 hex characters"
        )))
    }
}

async fn run(store: &Store, sql: &str) -> Result<Vec<RecordBatch>, ExploreError> {
    store::query::collect(store, sql)
        .await
        .map_err(|e| ExploreError::Query(e.to_string()))
}

/// Rows as JSON objects.
pub fn to_json(batches: &[RecordBatch]) -> Result<serde_json::Value, ExploreError> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::ArrayWriter::new(&mut buf);
        w.write_batches(&refs)
            .map_err(|e| ExploreError::Query(e.to_string()))?;
        w.finish().map_err(|e| ExploreError::Query(e.to_string()))?;
    }
    if buf.is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&buf).map_err(|e| ExploreError::Query(e.to_string()))
}

/// Every span of a trace (oldest first) and the trace's logs. Only the
/// files whose trace-id filter may hold the trace are read (see
/// [`crate::trace_index`]), so the time does not grow with retention.
pub async fn trace(
    index: &crate::trace_index::TraceIndex,
    id: &str,
) -> Result<serde_json::Value, ExploreError> {
    let id = trace_id(id)?;
    let ctx = index
        .session_for(&id)
        .await
        .map_err(|e| ExploreError::Query(e.to_string()))?;
    let spans_sql = format!(
        "SELECT * FROM spans WHERE trace_id = {} ORDER BY start_time, span_id",
        quote(&id)
    );
    let logs_sql = format!(
        "SELECT * FROM logs WHERE trace_id = {} ORDER BY time",
        quote(&id)
    );
    let collect = |sql: String| {
        let ctx = ctx.clone();
        async move {
            ctx.sql(&sql)
                .await
                .map_err(|e| ExploreError::Query(e.to_string()))?
                .collect()
                .await
                .map_err(|e| ExploreError::Query(e.to_string()))
        }
    };
    let (spans, logs) = tokio::join!(collect(spans_sql), collect(logs_sql));
    let (spans, logs) = (spans?, logs?);
    Ok(serde_json::json!({ "trace_id": id, "spans": to_json(&spans)?, "logs": to_json(&logs)? }))
}

/// The SQL condition `key = value` on a span or log record: a promoted
/// span attribute is its typed column (compared as text), `service.name`
/// the service column, any other key the record's attributes or, failing
/// those, its resource's.
pub(crate) fn attribute_condition(table: store::Table, key: &str, value: &str) -> String {
    if key == "service.name" {
        return format!("service_name = {}", quote(value));
    }
    if table == store::Table::Spans
        && let Some((_, column, _)) = store::schema::SPAN_PROMOTED
            .iter()
            .find(|(k, _, _)| *k == key)
    {
        return format!("arrow_cast({column}, 'Utf8') = {}", quote(value));
    }
    format!(
        "coalesce(attributes[{k}], resource_attributes[{k}]) = {}",
        quote(value),
        k = quote(key)
    )
}

/// How far around a search window the spans of a matching trace are
/// gathered for its summary (span count, duration): traces longer than
/// this are summarised from the part inside the margin.
pub const TRACE_MARGIN_NS: i64 = 6 * 3_600_000_000_000;

/// Filters of a trace search (plus any number of `attribute=key=value`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceSearch {
    /// Start: RFC 3339 or ns [default: `to` minus one hour].
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 or ns [default: now].
    pub to: Option<String>,
    /// Service of a matching span.
    pub service: Option<String>,
    /// Operation (span name) of a matching span.
    pub operation: Option<String>,
    /// `error` or `ok` (not error).
    pub status: Option<String>,
    /// Smallest span duration, ms.
    pub min_duration_ms: Option<f64>,
    /// Largest span duration, ms.
    pub max_duration_ms: Option<f64>,
    /// Most traces returned [default 20, at most 1000].
    pub limit: Option<usize>,
    /// `newest` (default: by the latest matching span) or `duration` (by
    /// the longest matching span: the slowest first).
    pub order: Option<String>,
}

/// Traces with a span matching every filter (and every `(key, value)` of
/// `attributes`) in `[from_ns, to_ns)`, newest first, each with its span
/// count, duration and whether any span failed, from its spans within
/// [`TRACE_MARGIN_NS`] of the window.
pub async fn search_traces(
    store: &Store,
    f: &TraceSearch,
    attributes: &[(String, String)],
    from_ns: i64,
    to_ns: i64,
) -> Result<serde_json::Value, ExploreError> {
    let mut conds = vec![format!(
        "start_time >= to_timestamp_nanos({from_ns}) AND start_time < to_timestamp_nanos({to_ns})"
    )];
    if let Some(s) = &f.service {
        conds.push(format!("service_name = {}", quote(s)));
    }
    if let Some(o) = &f.operation {
        conds.push(format!("name = {}", quote(o)));
    }
    match f.status.as_deref() {
        None => {}
        Some("error") => conds.push("status_code = 'ERROR'".into()),
        Some("ok") => conds.push("status_code <> 'ERROR'".into()),
        Some(other) => {
            return Err(ExploreError::BadRequest(format!(
                "status {other:?}: use error or ok"
            )));
        }
    }
    for (v, op) in [(f.min_duration_ms, ">="), (f.max_duration_ms, "<=")] {
        if let Some(ms) = v {
            if !ms.is_finite() || ms < 0.0 {
                return Err(ExploreError::BadRequest(format!(
                    "duration {ms} must be a non-negative number of ms"
                )));
            }
            conds.push(format!("duration_ns {op} {}", (ms * 1e6) as i64));
        }
    }
    for (k, v) in attributes {
        conds.push(attribute_condition(store::Table::Spans, k, v));
    }
    let limit = f.limit.unwrap_or(20).clamp(1, 1000);
    let order = match f.order.as_deref() {
        None | Some("newest") => "last",
        Some("duration") => "longest",
        Some(other) => {
            return Err(ExploreError::BadRequest(format!(
                "order {other:?}: use newest or duration"
            )));
        }
    };
    let sql = format!(
        "WITH hits AS (SELECT trace_id, max(start_time) AS last, max(duration_ns) AS longest FROM spans WHERE {} GROUP BY trace_id ORDER BY {order} DESC LIMIT {limit}) \
         SELECT s.trace_id, count(*) AS span_count, min(s.start_time) AS start_time, \
                (max(arrow_cast(s.end_time, 'Int64')) - min(arrow_cast(s.start_time, 'Int64'))) / 1e6 AS duration_ms, \
                sum(CASE WHEN s.status_code = 'ERROR' THEN 1 ELSE 0 END) AS error_spans, \
                first_value(s.service_name ORDER BY s.start_time) AS root_service, \
                first_value(s.name ORDER BY s.start_time) AS root_operation, max(h.last) AS last, \
                max(h.longest) / 1e6 AS longest_match_ms \
         FROM spans s JOIN hits h ON s.trace_id = h.trace_id \
         WHERE s.start_time >= to_timestamp_nanos({lo}) AND s.start_time < to_timestamp_nanos({hi}) \
         GROUP BY s.trace_id ORDER BY max(h.{order}) DESC, s.trace_id",
        conds.join(" AND "),
        lo = from_ns.saturating_sub(TRACE_MARGIN_NS),
        hi = to_ns.saturating_add(TRACE_MARGIN_NS),
    );
    let rows = run(store, &sql).await?;
    Ok(serde_json::json!({ "traces": to_json(&rows)? }))
}

/// Filters of a log search (plus any number of `attribute=key=value`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSearch {
    /// Start: RFC 3339 or ns [default: `to` minus one hour].
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 or ns [default: now].
    pub to: Option<String>,
    /// Text the body contains (case-insensitive).
    pub q: Option<String>,
    /// A regular expression the body matches.
    pub regex: Option<String>,
    /// Smallest severity number (9 = INFO, 13 = WARN, 17 = ERROR).
    pub min_severity: Option<i32>,
    /// Service.
    pub service: Option<String>,
    /// Trace id.
    pub trace_id: Option<String>,
    /// Most records returned [default 100, at most 5000].
    pub limit: Option<usize>,
}

/// Log records matching every filter in `[from_ns, to_ns)`, newest first.
pub async fn search_logs(
    store: &Store,
    f: &LogSearch,
    attributes: &[(String, String)],
    from_ns: i64,
    to_ns: i64,
) -> Result<serde_json::Value, ExploreError> {
    let mut conds = vec![format!(
        "time >= to_timestamp_nanos({from_ns}) AND time < to_timestamp_nanos({to_ns})"
    )];
    if let Some(q) = &f.q {
        let pattern = format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        conds.push(format!("body ILIKE {}", quote(&pattern)));
    }
    if let Some(r) = &f.regex {
        regex_check(r)?;
        conds.push(format!("regexp_like(body, {})", quote(r)));
    }
    if let Some(s) = f.min_severity {
        conds.push(format!("severity_number >= {s}"));
    }
    if let Some(s) = &f.service {
        conds.push(format!("service_name = {}", quote(s)));
    }
    if let Some(t) = &f.trace_id {
        conds.push(format!("trace_id = {}", quote(&trace_id(t)?)));
    }
    for (k, v) in attributes {
        conds.push(attribute_condition(store::Table::Logs, k, v));
    }
    let limit = f.limit.unwrap_or(100).clamp(1, 5000);
    let sql = format!(
        "SELECT time, service_name, severity_number, severity_text, body, trace_id, span_id, attributes \
         FROM logs WHERE {} ORDER BY time DESC LIMIT {limit}",
        conds.join(" AND ")
    );
    let rows = run(store, &sql).await?;
    Ok(serde_json::json!({ "logs": to_json(&rows)? }))
}

fn regex_check(r: &str) -> Result<(), ExploreError> {
    if r.len() > 1000 {
        return Err(ExploreError::BadRequest(
            "regex longer than 1000 characters".into(),
        ));
    }
    Ok(())
}
