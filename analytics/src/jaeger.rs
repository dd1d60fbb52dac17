//! Stored spans in Jaeger's query model: the services and operations, trace
//! search and one trace, as Jaeger UI and Grafana's Jaeger data source read
//! them (`/jaeger/api/...`).
//!
//! Where OTLP and Jaeger differ (see docs/jaeger.md):
//! - ids are written as 32 lowercase hex characters; a lookup takes 1 to 32
//!   hex digits and pads them on the left with zeros (Jaeger's 64-bit ids);
//! - the parent is a `CHILD_OF` reference, each span link a `FOLLOWS_FROM`
//!   reference (link attributes and trace state, which references cannot
//!   hold, become span warnings);
//! - kind, status and scope become the tags Jaeger's OTLP translator uses:
//!   `span.kind`, `otel.status_code`, `otel.status_description`,
//!   `error=true`, `otel.scope.name`, `otel.scope.version`,
//!   `w3c.tracestate`;
//! - events become logs whose first field is `event` (the event name);
//! - attribute values are kept as text by the store, so tags are strings,
//!   except the promoted integer attributes (`http.response.status_code`,
//!   `server.port`, `rpc.grpc.status_code`: `int64`) and the synthesized
//!   `error` tag (`bool`);
//! - each distinct (service, resource attributes) of a trace is one
//!   process, `p1`, `p2`, ... in order of first appearance.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StructArray};
use arrow::datatypes::{Int64Type, TimestampNanosecondType, UInt32Type};
use serde_json::{Value, json};
use store::Store;

use crate::red::quote;
use crate::search::{ExploreError, TRACE_MARGIN_NS, attribute_condition};

/// The span columns the Jaeger model is built from.
const SPAN_COLUMNS: &str = "trace_id, span_id, parent_span_id, trace_state, flags, service_name, \
    name, kind, arrow_cast(start_time, 'Int64') AS start_ns, duration_ns, status_code, \
    status_message, scope_name, scope_version, attributes, resource_attributes, \
    dropped_attributes_count, events, dropped_events_count, links, dropped_links_count";

/// Most spans one search answer carries; traces past it are left out.
pub const MAX_SEARCH_SPANS: usize = 100_000;

/// Most traces one search returns.
pub const MAX_LIMIT: usize = 1500;

async fn run(store: &Store, sql: &str) -> Result<Vec<RecordBatch>, ExploreError> {
    store::query::collect(store, sql)
        .await
        .map_err(|e| ExploreError::Query(e.to_string()))
}

/// A Jaeger trace id (1 to 32 hex digits) as Burnwatch's 32 lowercase hex.
pub fn trace_id(s: &str) -> Result<String, ExploreError> {
    let s = s.trim();
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ExploreError::BadRequest(format!(
            "trace id {s:?} is not 1 to 32 hex characters"
        )));
    }
    Ok(format!("{:0>32}", s.to_ascii_lowercase()))
}

/// Parses a Go duration (`1.2s`, `100ms`, `1h30m`, `250us`, `5µs`, `7ns`).
pub fn go_duration_ns(s: &str) -> Result<i64, ExploreError> {
    let bad = || {
        ExploreError::BadRequest(format!(
            "duration {s:?}: use a number and a unit (ns, us, ms, s, m, h), like 1.2s or 100ms"
        ))
    };
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let mut rest = t;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * scale;
    }
    if !total.is_finite() || total > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(total.round() as i64)
}

/// Parses Jaeger's `tags` parameter: a JSON object (`{"error":"true"}`) or
/// logfmt (`error=true http.method="GET"`).
pub fn parse_tags(s: &str) -> Result<Vec<(String, String)>, ExploreError> {
    let t = s.trim();
    if t.is_empty() {
        return Ok(Vec::new());
    }
    if t.starts_with('{') {
        let v: serde_json::Map<String, Value> = serde_json::from_str(t)
            .map_err(|e| ExploreError::BadRequest(format!("malformed 'tags' parameter: {e}")))?;
        return Ok(v
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect());
    }
    let mut out = Vec::new();
    let mut chars = t.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') || key.is_empty() {
            return Err(ExploreError::BadRequest(format!(
                "malformed 'tags' parameter {t:?}: use a JSON object or key=value pairs"
            )));
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(ExploreError::BadRequest(format!(
                    "malformed 'tags' parameter {t:?}: unterminated quote"
                )));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

/// Services that sent spans in `[from_ns, to_ns)`, sorted.
pub async fn services(
    store: &Store,
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<String>, ExploreError> {
    let sql = format!(
        "SELECT DISTINCT service_name FROM spans WHERE {} ORDER BY 1",
        within(from_ns, to_ns)
    );
    let mut out = Vec::new();
    for b in run(store, &sql).await? {
        let c = b.column(0).as_string::<i32>();
        out.extend((0..b.num_rows()).map(|i| c.value(i).to_string()));
    }
    Ok(out)
}

/// Span names (with their Jaeger kind) of a service, or of every service,
/// optionally of one kind, in `[from_ns, to_ns)`, sorted.
pub async fn operations(
    store: &Store,
    service: Option<&str>,
    kind: Option<&str>,
    from_ns: i64,
    to_ns: i64,
) -> Result<Vec<(String, String)>, ExploreError> {
    let mut conds = vec![within(from_ns, to_ns)];
    if let Some(s) = service {
        conds.push(format!("service_name = {}", quote(s)));
    }
    if let Some(k) = kind.filter(|k| !k.is_empty()) {
        let otlp = match k {
            "server" | "client" | "producer" | "consumer" | "internal" => k.to_ascii_uppercase(),
            other => {
                return Err(ExploreError::BadRequest(format!(
                    "spanKind {other:?}: use server, client, producer, consumer or internal"
                )));
            }
        };
        conds.push(format!("kind = {}", quote(&otlp)));
    }
    let sql = format!(
        "SELECT DISTINCT name, kind FROM spans WHERE {} ORDER BY 1, 2",
        conds.join(" AND ")
    );
    let mut out = Vec::new();
    for b in run(store, &sql).await? {
        let n = b.column(0).as_string::<i32>();
        let k = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((n.value(i).to_string(), jaeger_kind(k.value(i)).to_string()));
        }
    }
    Ok(out)
}

fn within(from_ns: i64, to_ns: i64) -> String {
    format!(
        "start_time >= to_timestamp_nanos({from_ns}) AND start_time < to_timestamp_nanos({to_ns})"
    )
}

fn jaeger_kind(otlp: &str) -> &'static str {
    match otlp {
        "SERVER" => "server",
        "CLIENT" => "client",
        "PRODUCER" => "producer",
        "CONSUMER" => "consumer",
        "INTERNAL" => "internal",
        _ => "",
    }
}

/// A trace search: traces with at least one span matching every filter.
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    /// Service of the matching span.
    pub service: Option<String>,
    /// Operation (span name) of the matching span.
    pub operation: Option<String>,
    /// Tags the matching span has (its attributes, its resource's, or the
    /// synthesized `error`, `span.kind`, `otel.status_code`).
    pub tags: Vec<(String, String)>,
    /// Window start (ns).
    pub start_ns: i64,
    /// Window end (ns, exclusive).
    pub end_ns: i64,
    /// Smallest duration of the matching span (ns).
    pub min_duration_ns: Option<i64>,
    /// Largest duration of the matching span (ns).
    pub max_duration_ns: Option<i64>,
    /// Most traces returned.
    pub limit: usize,
}

/// The SQL condition a Jaeger tag filter becomes.
fn tag_condition(key: &str, value: &str) -> String {
    match key {
        "error" => {
            if value == "true" {
                "status_code = 'ERROR'".into()
            } else {
                "status_code <> 'ERROR'".into()
            }
        }
        "span.kind" => format!("kind = {}", quote(&value.to_ascii_uppercase())),
        "otel.status_code" => format!("status_code = {}", quote(value)),
        "otel.status_description" => format!("status_message = {}", quote(value)),
        "otel.scope.name" | "otel.library.name" => format!("scope_name = {}", quote(value)),
        _ => attribute_condition(store::Table::Spans, key, value),
    }
}

/// The newest traces matching `q` (by their latest matching span), each
/// with every span within [`TRACE_MARGIN_NS`] of the window, in Jaeger's
/// model.
///
/// With the trace-id filters, the spans of the found traces are read only
/// from the files whose filter may hold one of them.
pub async fn find_traces(
    store: &Store,
    index: Option<&crate::trace_index::TraceIndex>,
    q: &TraceQuery,
) -> Result<Vec<Value>, ExploreError> {
    let mut conds = vec![within(q.start_ns, q.end_ns)];
    if let Some(s) = &q.service {
        conds.push(format!("service_name = {}", quote(s)));
    }
    if let Some(o) = &q.operation {
        conds.push(format!("name = {}", quote(o)));
    }
    if let Some(d) = q.min_duration_ns {
        conds.push(format!("duration_ns >= {d}"));
    }
    if let Some(d) = q.max_duration_ns {
        conds.push(format!("duration_ns <= {d}"));
    }
    for (k, v) in &q.tags {
        conds.push(tag_condition(k, v));
    }
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let ids_sql = format!(
        "SELECT trace_id FROM spans WHERE {} GROUP BY trace_id ORDER BY max(start_time) DESC, trace_id LIMIT {limit}",
        conds.join(" AND ")
    );
    let mut ids = Vec::new();
    for b in run(store, &ids_sql).await? {
        let c = b.column(0).as_string::<i32>();
        ids.extend((0..b.num_rows()).map(|i| c.value(i).to_string()));
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = ids.iter().map(|i| quote(i)).collect();
    let sql = format!(
        "SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id IN ({}) AND {} ORDER BY start_time, span_id LIMIT {}",
        list.join(", "),
        within(
            q.start_ns.saturating_sub(TRACE_MARGIN_NS),
            q.end_ns.saturating_add(TRACE_MARGIN_NS)
        ),
        MAX_SEARCH_SPANS + 1
    );
    let batches = match index {
        Some(index) => {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            index
                .query_spans_of(&ids, &sql)
                .await
                .map_err(|e| ExploreError::Query(e.to_string()))?
        }
        None => run(store, &sql).await?,
    };
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut traces = to_traces(&batches)?;
    if rows > MAX_SEARCH_SPANS {
        // The last trace may be cut short: leave it out rather than show
        // part of it.
        traces.retain(|t| t["traceID"] != json!(ids.last()));
    }
    // Newest match first, as the id query ordered them.
    let rank: HashMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    traces.sort_by_key(|t| {
        rank.get(t["traceID"].as_str().unwrap_or(""))
            .copied()
            .unwrap_or(usize::MAX)
    });
    Ok(traces)
}

/// One trace in Jaeger's model, or `None` when no span has its id.
pub async fn trace(
    index: &crate::trace_index::TraceIndex,
    id: &str,
) -> Result<Option<Value>, ExploreError> {
    let id = trace_id(id)?;
    let ctx = index
        .session_for(&id)
        .await
        .map_err(|e| ExploreError::Query(e.to_string()))?;
    let sql = format!(
        "SELECT {SPAN_COLUMNS} FROM spans WHERE trace_id = {} ORDER BY start_time, span_id",
        quote(&id)
    );
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| ExploreError::Query(e.to_string()))?
        .collect()
        .await
        .map_err(|e| ExploreError::Query(e.to_string()))?;
    Ok(to_traces(&batches)?.into_iter().next())
}

fn map_pairs(m: &MapArray, i: usize) -> Vec<(String, String)> {
    if m.is_null(i) {
        return Vec::new();
    }
    let entries = m.value(i);
    let k = entries.column(0).as_string::<i32>();
    let v = entries.column(1).as_string::<i32>();
    (0..entries.len())
        .map(|j| {
            (
                k.value(j).to_string(),
                if v.is_null(j) {
                    String::new()
                } else {
                    v.value(j).to_string()
                },
            )
        })
        .collect()
}

fn tag(key: &str, value: Value) -> Value {
    let ty = match &value {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        _ => "string",
    };
    json!({ "key": key, "type": ty, "value": value })
}

fn attr_tag(key: &str, value: &str) -> Value {
    let int = store::schema::SPAN_PROMOTED
        .iter()
        .any(|(k, _, is_int)| *is_int && *k == key);
    match value.parse::<i64>() {
        Ok(n) if int => tag(key, json!(n)),
        _ => tag(key, json!(value)),
    }
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, ExploreError> {
    b.column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| ExploreError::Query(format!("column {name} missing")))
}

/// Jaeger traces from span rows (columns of [`SPAN_COLUMNS`]), in order of
/// each trace's first row.
fn to_traces(batches: &[RecordBatch]) -> Result<Vec<Value>, ExploreError> {
    struct Trace {
        spans: Vec<Value>,
        processes: Vec<(String, Vec<(String, String)>)>,
    }
    let mut order: Vec<String> = Vec::new();
    let mut traces: HashMap<String, Trace> = HashMap::new();
    let opt = |a: &dyn Array, i: usize| -> Option<String> {
        let s = a.as_string::<i32>();
        (!s.is_null(i) && !s.value(i).is_empty()).then(|| s.value(i).to_string())
    };
    for b in batches {
        let trace_ids = col(b, "trace_id")?.as_string::<i32>();
        let span_ids = col(b, "span_id")?.as_string::<i32>();
        let parents = col(b, "parent_span_id")?;
        let states = col(b, "trace_state")?;
        let flags = col(b, "flags")?.as_primitive::<UInt32Type>();
        let services = col(b, "service_name")?.as_string::<i32>();
        let names = col(b, "name")?.as_string::<i32>();
        let kinds = col(b, "kind")?.as_string::<i32>();
        let starts = col(b, "start_ns")?.as_primitive::<Int64Type>();
        let durations = col(b, "duration_ns")?.as_primitive::<Int64Type>();
        let statuses = col(b, "status_code")?.as_string::<i32>();
        let messages = col(b, "status_message")?;
        let scopes = col(b, "scope_name")?;
        let scope_versions = col(b, "scope_version")?;
        let attrs = col(b, "attributes")?.as_map();
        let res = col(b, "resource_attributes")?.as_map();
        let dropped_attrs = col(b, "dropped_attributes_count")?.as_primitive::<UInt32Type>();
        let events = col(b, "events")?.as_list::<i32>();
        let dropped_events = col(b, "dropped_events_count")?.as_primitive::<UInt32Type>();
        let links = col(b, "links")?.as_list::<i32>();
        let dropped_links = col(b, "dropped_links_count")?.as_primitive::<UInt32Type>();
        for i in 0..b.num_rows() {
            let tid = trace_ids.value(i).to_string();
            let t = traces.entry(tid.clone()).or_insert_with(|| {
                order.push(tid.clone());
                Trace {
                    spans: Vec::new(),
                    processes: Vec::new(),
                }
            });
            // The process: service and sorted resource attributes.
            let service = services.value(i).to_string();
            let mut rtags: Vec<(String, String)> = map_pairs(res, i)
                .into_iter()
                .filter(|(k, _)| k != "service.name")
                .collect();
            rtags.sort();
            let pidx = match t
                .processes
                .iter()
                .position(|(s, r)| *s == service && *r == rtags)
            {
                Some(p) => p,
                None => {
                    t.processes.push((service, rtags));
                    t.processes.len() - 1
                }
            };
            let mut warnings: Vec<String> = Vec::new();
            let mut references = Vec::new();
            if let Some(p) = opt(parents, i) {
                references.push(json!({ "refType": "CHILD_OF", "traceID": tid, "spanID": p }));
            }
            if !links.is_null(i) {
                let l = links.value(i);
                let l: &StructArray = l.as_struct();
                let lt = l.column(0).as_string::<i32>();
                let ls = l.column(1).as_string::<i32>();
                let lstate = l.column(2);
                let lattrs = l.column(3).as_map();
                for j in 0..l.len() {
                    references.push(json!({
                        "refType": "FOLLOWS_FROM",
                        "traceID": lt.value(j),
                        "spanID": ls.value(j),
                    }));
                    let mut extra: Vec<String> = map_pairs(lattrs, j)
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    if let Some(s) = opt(lstate, j) {
                        extra.push(format!("tracestate={s}"));
                    }
                    if !extra.is_empty() {
                        warnings.push(format!(
                            "link to span {} of trace {}: {}",
                            ls.value(j),
                            lt.value(j),
                            extra.join(", ")
                        ));
                    }
                }
            }
            let mut tags: Vec<Value> = map_pairs(attrs, i)
                .iter()
                .map(|(k, v)| attr_tag(k, v))
                .collect();
            let kind = jaeger_kind(kinds.value(i));
            if !kind.is_empty() {
                tags.push(tag("span.kind", json!(kind)));
            }
            let status = statuses.value(i);
            if status != "UNSET" {
                tags.push(tag("otel.status_code", json!(status)));
            }
            if status == "ERROR" {
                tags.push(tag("error", json!(true)));
            }
            if let Some(m) = opt(messages, i) {
                tags.push(tag("otel.status_description", json!(m)));
            }
            if let Some(s) = opt(scopes, i) {
                tags.push(tag("otel.scope.name", json!(s)));
            }
            if let Some(s) = opt(scope_versions, i) {
                tags.push(tag("otel.scope.version", json!(s)));
            }
            if let Some(s) = opt(states, i) {
                tags.push(tag("w3c.tracestate", json!(s)));
            }
            let mut logs = Vec::new();
            if !events.is_null(i) {
                let e = events.value(i);
                let e: &StructArray = e.as_struct();
                let et = e.column(0).as_primitive::<TimestampNanosecondType>();
                let en = e.column(1).as_string::<i32>();
                let ea = e.column(2).as_map();
                for j in 0..e.len() {
                    let mut fields = vec![tag("event", json!(en.value(j)))];
                    fields.extend(map_pairs(ea, j).iter().map(|(k, v)| attr_tag(k, v)));
                    logs.push(
                        json!({ "timestamp": et.value(j).div_euclid(1000), "fields": fields }),
                    );
                }
            }
            for (n, what) in [
                (dropped_attrs.value(i), "attributes"),
                (dropped_events.value(i), "events"),
                (dropped_links.value(i), "links"),
            ] {
                if n > 0 {
                    warnings.push(format!("the SDK dropped {n} {what} of this span"));
                }
            }
            t.spans.push(json!({
                "traceID": tid,
                "spanID": span_ids.value(i),
                "flags": flags.value(i) & 0xff,
                "operationName": names.value(i),
                "references": references,
                "startTime": starts.value(i).div_euclid(1000),
                "duration": durations.value(i).div_euclid(1000),
                "tags": tags,
                "logs": logs,
                "processID": format!("p{}", pidx + 1),
                "warnings": if warnings.is_empty() { Value::Null } else { json!(warnings) },
            }));
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| {
            let t = traces.remove(&id)?;
            let processes: BTreeMap<String, Value> = t
                .processes
                .iter()
                .enumerate()
                .map(|(n, (service, rtags))| {
                    (
                        format!("p{}", n + 1),
                        json!({
                            "serviceName": service,
                            "tags": rtags.iter().map(|(k, v)| tag(k, json!(v))).collect::<Vec<_>>(),
                        }),
                    )
                })
                .collect();
            Some(json!({
                "traceID": id,
                "spans": t.spans,
                "processes": processes,
                "warnings": Value::Null,
            }))
        })
        .collect())
}

/// Jaeger's dependency links (`parent` calls `child`, `callCount` calls)
/// from the service map's edges.
pub fn dependencies(edges: &[crate::red::Edge]) -> Vec<Value> {
    let mut by_pair: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for e in edges {
        *by_pair.entry((&e.caller, &e.callee)).or_default() += e.calls;
    }
    by_pair
        .into_iter()
        .map(
            |((p, c), n)| json!({ "parent": p, "child": c, "callCount": n, "source": "burnwatch" }),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration_ns("1.2s").unwrap(), 1_200_000_000);
        assert_eq!(go_duration_ns("100ms").unwrap(), 100_000_000);
        assert_eq!(go_duration_ns("1h30m").unwrap(), 5_400_000_000_000);
        assert_eq!(go_duration_ns("250us").unwrap(), 250_000);
        assert_eq!(go_duration_ns("5µs").unwrap(), 5_000);
        assert_eq!(go_duration_ns("0").unwrap(), 0);
        for bad in ["", "12", "ms", "1.2x", "-1s", "1s2"] {
            assert!(go_duration_ns(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_as_json_or_logfmt() {
        assert_eq!(
            parse_tags(r#"{"error":"true","http.response.status_code":500}"#).unwrap(),
            vec![
                ("error".to_string(), "true".to_string()),
                ("http.response.status_code".to_string(), "500".to_string())
            ]
        );
        assert_eq!(
            parse_tags(r#"error=true  note="a \"b\" c""#).unwrap(),
            vec![
                ("error".to_string(), "true".to_string()),
                ("note".to_string(), "a \"b\" c".to_string())
            ]
        );
        assert!(parse_tags("{not json").is_err());
        assert!(parse_tags("novalue").is_err());
        assert!(parse_tags(r#"k="open"#).is_err());
    }

    #[test]
    fn ids_pad_to_128_bits() {
        assert_eq!(
            trace_id("00ABCDEF00000001").unwrap(),
            format!("{:0>32}", "00abcdef00000001")
        );
        assert!(trace_id("xyz").is_err());
        assert!(trace_id(&"a".repeat(33)).is_err());
    }
}
