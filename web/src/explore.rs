//! Traces and logs for SREs: a trace by id, trace search, log search.
//!
//! Every user value reaches SQL as a quoted literal or a validated number;
//! trace ids must be 32 hex characters.

use arrow::array::RecordBatch;
use serde::Deserialize;
use slo_engine::red::quote;
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

/// Every span of a trace (oldest first) and the trace's logs.
pub async fn trace(store: &Store, id: &str) -> Result<serde_json::Value, ExploreError> {
    let id = trace_id(id)?;
    // Both lookups prune by the bloom filters on trace_id; run them together.
    let spans_sql = format!(
        "SELECT * FROM spans WHERE trace_id = {} ORDER BY start_time, span_id",
        quote(&id)
    );
    let logs_sql = format!(
        "SELECT * FROM logs WHERE trace_id = {} ORDER BY time",
        quote(&id)
    );
    let (spans, logs) = tokio::join!(run(store, &spans_sql), run(store, &logs_sql));
    let (spans, logs) = (spans?, logs?);
    Ok(serde_json::json!({ "trace_id": id, "spans": to_json(&spans)?, "logs": to_json(&logs)? }))
}

/// Filters of a trace search.
#[derive(Debug, Default, Deserialize)]
pub struct TraceSearch {
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
    /// `key=value` attribute filter on the span.
    pub attribute: Option<String>,
    /// Most traces returned [default 20, at most 1000].
    pub limit: Option<usize>,
}

/// Traces with a span matching every filter in `[from_ns, to_ns)`, newest
/// first, each with its span count, duration and whether any span failed.
pub async fn search_traces(
    store: &Store,
    f: &TraceSearch,
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
    if let Some(a) = &f.attribute {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| ExploreError::BadRequest(format!("attribute {a:?}: use key=value")))?;
        conds.push(format!("attributes[{}] = {}", quote(k), quote(v)));
    }
    let limit = f.limit.unwrap_or(20).clamp(1, 1000);
    let sql = format!(
        "WITH hits AS (SELECT trace_id, max(start_time) AS last FROM spans WHERE {} GROUP BY trace_id ORDER BY last DESC LIMIT {limit}) \
         SELECT s.trace_id, count(*) AS span_count, min(s.start_time) AS start_time, \
                (max(arrow_cast(s.end_time, 'Int64')) - min(arrow_cast(s.start_time, 'Int64'))) / 1e6 AS duration_ms, \
                sum(CASE WHEN s.status_code = 'ERROR' THEN 1 ELSE 0 END) AS error_spans, \
                first_value(s.service_name ORDER BY s.start_time) AS root_service, \
                first_value(s.name ORDER BY s.start_time) AS root_operation, max(h.last) AS last \
         FROM spans s JOIN hits h ON s.trace_id = h.trace_id \
         GROUP BY s.trace_id ORDER BY last DESC, s.trace_id",
        conds.join(" AND ")
    );
    let rows = run(store, &sql).await?;
    Ok(serde_json::json!({ "traces": to_json(&rows)? }))
}

/// Filters of a log search.
#[derive(Debug, Default, Deserialize)]
pub struct LogSearch {
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
    /// `key=value` attribute filter.
    pub attribute: Option<String>,
    /// Most records returned [default 100, at most 5000].
    pub limit: Option<usize>,
}

/// Log records matching every filter in `[from_ns, to_ns)`, newest first.
pub async fn search_logs(
    store: &Store,
    f: &LogSearch,
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
    if let Some(a) = &f.attribute {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| ExploreError::BadRequest(format!("attribute {a:?}: use key=value")))?;
        conds.push(format!("attributes[{}] = {}", quote(k), quote(v)));
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
