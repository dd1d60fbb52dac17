//! Traces and logs for SREs: a trace by id, trace search, log search.
//!
//! Every user value reaches SQL as a quoted literal or a validated number;
//! trace ids must be 32 hex characters.

use std::sync::Arc;

use crate::red::quote;
use arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch, TimestampNanosecondArray};
use arrow::datatypes::{Int64Type, TimestampNanosecondType};
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
    index: Option<&crate::trace_index::TraceIndex>,
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
    // Two steps: the matching traces (one scan of the window with every
    // filter), then the spans of just those traces around the window. The
    // second step names the ids, so the Parquet bloom filters and row-group
    // statistics on `trace_id` skip what cannot hold them instead of a join
    // reading every span within the margin.
    let hits_sql = format!(
        "SELECT trace_id, max(start_time) AS last, max(duration_ns) AS longest FROM spans \
         WHERE {} GROUP BY trace_id ORDER BY {order} DESC, trace_id LIMIT {limit}",
        conds.join(" AND ")
    );
    let hits = run(store, &hits_sql).await?;
    let mut rank: Vec<(String, i64, i64)> = Vec::new();
    for b in &hits {
        let (Some(ids), Some(last), Some(longest)) = (
            b.column(0).as_string_opt::<i32>(),
            b.column(1).as_primitive_opt::<TimestampNanosecondType>(),
            b.column(2).as_primitive_opt::<Int64Type>(),
        ) else {
            return Err(ExploreError::Query(format!(
                "trace search: unexpected hit columns {:?}",
                b.schema()
            )));
        };
        for i in 0..b.num_rows() {
            rank.push((ids.value(i).to_string(), last.value(i), longest.value(i)));
        }
    }
    if rank.is_empty() {
        return Ok(serde_json::json!({ "traces": [] }));
    }
    let ids: Vec<String> = rank.iter().map(|(id, _, _)| quote(id)).collect();
    let summary_sql = format!(
        "SELECT trace_id, count(*) AS span_count, min(start_time) AS start_time, \
                (max(arrow_cast(end_time, 'Int64')) - min(arrow_cast(start_time, 'Int64'))) / 1e6 AS duration_ms, \
                sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS error_spans, \
                first_value(service_name ORDER BY start_time) AS root_service, \
                first_value(name ORDER BY start_time) AS root_operation \
         FROM spans WHERE trace_id IN ({}) \
           AND start_time >= to_timestamp_nanos({lo}) AND start_time < to_timestamp_nanos({hi}) \
         GROUP BY trace_id",
        ids.join(", "),
        lo = from_ns.saturating_sub(TRACE_MARGIN_NS),
        hi = to_ns.saturating_add(TRACE_MARGIN_NS),
    );
    // With the trace-id filters, only the files that may hold one of the
    // ids are read.
    let summaries = match index {
        Some(index) => {
            let ids: Vec<&str> = rank.iter().map(|(id, _, _)| id.as_str()).collect();
            index
                .query_spans_of(&ids, &summary_sql)
                .await
                .map_err(|e| ExploreError::Query(e.to_string()))?
        }
        None => run(store, &summary_sql).await?,
    };
    let summaries = to_json(&summaries)?;
    let mut by_id: std::collections::HashMap<String, serde_json::Map<String, serde_json::Value>> =
        summaries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_object().cloned())
            .filter_map(|r| Some((r.get("trace_id")?.as_str()?.to_string(), r)))
            .collect();
    // Newest (or longest) first, ties by id, as the hits were ranked; the
    // hit columns render as the summary's do.
    let ranked = RecordBatch::try_from_iter([
        (
            "last",
            Arc::new(
                TimestampNanosecondArray::from_iter_values(rank.iter().map(|r| r.1))
                    .with_timezone("UTC"),
            ) as ArrayRef,
        ),
        (
            "longest_match_ms",
            Arc::new(Float64Array::from_iter_values(
                rank.iter().map(|r| r.2 as f64 / 1e6),
            )) as ArrayRef,
        ),
    ])
    .map_err(|e| ExploreError::Query(e.to_string()))?;
    let ranked = to_json(&[ranked])?;
    let traces: Vec<serde_json::Value> = rank
        .iter()
        .zip(ranked.as_array().into_iter().flatten())
        .filter_map(|((id, _, _), hit)| {
            let mut row = by_id.remove(id)?;
            for (k, v) in hit.as_object()? {
                row.insert(k.clone(), v.clone());
            }
            Some(serde_json::Value::Object(row))
        })
        .collect();
    Ok(serde_json::json!({ "traces": traces }))
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

/// The first (newest) slice of a log search's range; each older slice is
/// four times the one after it.
const LOG_SLICE_NS: i64 = 3_600_000_000_000;

/// Runs a log query over `snap` (registered as `logs`) one slice of
/// `[from_ns, to_ns)` at a time, the newest slice first (oldest first
/// without `newest_first`): the first slice is an hour, each next one four
/// times the one before, and it stops once `limit` rows are found. `sql`
/// makes the query of the slice `[lo, hi)` for at most `n` rows, ordered in
/// the same direction.
pub(crate) async fn sliced_logs(
    store: &Store,
    snap: store::Snapshot,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
    newest_first: bool,
    sql: impl Fn(i64, i64, usize) -> String,
) -> Result<Vec<RecordBatch>, ExploreError> {
    let ctx = store.session();
    crate::red::register(&ctx, "logs", snap).map_err(|e| ExploreError::Query(e.to_string()))?;
    let mut rows: Vec<RecordBatch> = Vec::new();
    let (mut found, mut done, mut slice) = (0usize, 0i64, LOG_SLICE_NS);
    let span = to_ns.saturating_sub(from_ns);
    while done < span && found < limit {
        let next = done.saturating_add(slice).min(span);
        let (lo, hi) = if newest_first {
            (to_ns - next, to_ns - done)
        } else {
            (from_ns + done, from_ns + next)
        };
        let part = ctx
            .sql(&sql(lo, hi, limit - found))
            .await
            .map_err(|e| ExploreError::Query(e.to_string()))?
            .collect()
            .await
            .map_err(|e| ExploreError::Query(e.to_string()))?;
        found += part.iter().map(|b| b.num_rows()).sum::<usize>();
        rows.extend(part);
        done = next;
        slice = slice.saturating_mul(4);
    }
    Ok(rows)
}

/// Log records matching every filter in `[from_ns, to_ns)`, newest first.
pub async fn search_logs(
    store: &Store,
    index: Option<&crate::text_index::TextIndex>,
    f: &LogSearch,
    attributes: &[(String, String)],
    from_ns: i64,
    to_ns: i64,
) -> Result<serde_json::Value, ExploreError> {
    let mut conds = Vec::new();
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
    // Newest first, a growing slice of the range at a time (the last hour,
    // then 4 h before it, then 16 h, ...), stopping once `limit` records
    // are found: a search over a week for a frequent text reads the last
    // hour or so, and one for a rare text reads the whole range in at
    // most a handful of queries.
    //
    // With a text and a text index, only the files whose trigram filter
    // may hold the text are read (see [`crate::text_index`]). Every slice
    // reads the same snapshot of the table.
    let snap = match (index, &f.q) {
        (Some(index), Some(q)) => index.logs_for(q).await,
        _ => store.snapshot(store::Table::Logs),
    };
    let where_ = conds
        .iter()
        .map(|c| format!(" AND {c}"))
        .collect::<String>();
    let rows = sliced_logs(store, snap, from_ns, to_ns, limit, true, |lo, hi, n| {
        format!(
            "SELECT time, service_name, severity_number, severity_text, body, trace_id, span_id, attributes \
             FROM logs WHERE time >= to_timestamp_nanos({lo}) AND time < to_timestamp_nanos({hi}){where_} \
             ORDER BY time DESC LIMIT {n}"
        )
    })
    .await?;
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
