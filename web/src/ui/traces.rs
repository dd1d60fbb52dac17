//! Trace pages: `/traces` (search form and results) and `/traces/{id}`
//! (the waterfall, each span's details, the trace's logs).

use std::collections::HashMap;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use super::{View, attribute_filter, error_page, escape, explore_status, non_empty, page};
use crate::WebState;
use analytics::search::{self as explore, TraceSearch};

/// `/traces` form fields (besides the view's range).
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    /// Service.
    pub service: Option<String>,
    /// Operation (span name).
    pub operation: Option<String>,
    /// `error`, `ok` or empty.
    pub status: Option<String>,
    /// Smallest span duration, ms.
    pub min_ms: Option<String>,
    /// Largest span duration, ms.
    pub max_ms: Option<String>,
    /// `key=value`.
    pub attribute: Option<String>,
}

/// Parses a timestamp column of the JSON rows (`2026-01-01T00:00:00.123456789`).
pub(crate) fn ts(v: &Value) -> Option<i64> {
    let s = v.as_str()?;
    let s = s.trim_end_matches('Z');
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .and_then(|d| d.and_utc().timestamp_nanos_opt())
}

fn ms(ns: i64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

/// An offset from the trace's start: `+12.00 ms`, `-4000.00 ms`.
fn offset(ns: i64) -> String {
    if ns < 0 {
        format!("-{}", ms(-ns))
    } else {
        format!("+{}", ms(ns))
    }
}

/// Trace search results as a table (with the longest matching span when
/// `slowest`), or a line saying there are none.
pub(crate) fn trace_table(id: &str, rows: Vec<Value>, q: &str, slowest: bool) -> AnyView {
    if rows.is_empty() {
        return view! { <p class="muted">"No traces match in this range."</p> }.into_any();
    }
    view! {
        <table id=id.to_string()>
            <tr>
                <th>"trace"</th><th>"root"</th><th>"start"</th>
                {slowest.then(|| view! { <th>"slowest match"</th> })}
                <th>"duration"</th><th>"spans"</th><th>"errors"</th>
            </tr>
            {rows
                .into_iter()
                .map(|t| {
                    let id = t["trace_id"].as_str().unwrap_or_default().to_string();
                    let href = format!("/traces/{id}?{q}");
                    let errors = t["error_spans"].as_i64().unwrap_or(0);
                    view! {
                        <tr>
                            <td><a class="trace-link" href=href>{id[..id.len().min(16)].to_string()}</a></td>
                            <td>{format!("{} {}", t["root_service"].as_str().unwrap_or(""), t["root_operation"].as_str().unwrap_or(""))}</td>
                            <td>{ts(&t["start_time"]).map(slo_engine::notify::rfc3339).unwrap_or_default()}</td>
                            {slowest.then(|| view! { <td class="num">{format!("{:.1} ms", t["longest_match_ms"].as_f64().unwrap_or(0.0))}</td> })}
                            <td class="num">{format!("{:.2} ms", t["duration_ms"].as_f64().unwrap_or(0.0))}</td>
                            <td class="num">{t["span_count"].as_i64().unwrap_or(0)}</td>
                            <td class={if errors > 0 { "num firing" } else { "num" }}>{errors}</td>
                        </tr>
                    }
                })
                .collect_view()}
        </table>
    }
    .into_any()
}

/// `GET /traces`: search.
pub async fn search(
    State(s): State<WebState>,
    view: View,
    Query(f): Query<SearchForm>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let parse_ms = |name: &str, t: &Option<String>| -> Result<Option<f64>, String> {
        non_empty(t)
            .map(|x| {
                x.parse::<f64>()
                    .map_err(|_| format!("{name} {x:?} is not a number of milliseconds"))
            })
            .transpose()
    };
    let (min, max) = match (parse_ms("min", &f.min_ms), parse_ms("max", &f.max_ms)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return error_page(StatusCode::BAD_REQUEST, "Bad search", e),
    };
    let attributes = match attribute_filter(&f.attribute) {
        Ok(a) => a,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Bad search", e),
    };
    let search = TraceSearch {
        service: non_empty(&f.service),
        operation: non_empty(&f.operation),
        status: non_empty(&f.status),
        min_duration_ms: min,
        max_duration_ms: max,
        limit: Some(50),
        ..Default::default()
    };
    let result = explore::search_traces(
        &s.store,
        Some(&s.rollups.traces),
        &search,
        &attributes,
        view.window.from_ns,
        view.window.to_ns,
    )
    .await;
    let q = view.query.clone();
    let results = match result {
        Err(e) => view! { <p class="error">"Search failed: " {e.to_string()}</p> }.into_any(),
        Ok(v) => {
            let rows = v["traces"].as_array().cloned().unwrap_or_default();
            trace_table("trace-results", rows, &q, false)
        }
    };
    let val = |o: &Option<String>| o.clone().unwrap_or_default();
    let status = val(&f.status);
    let body = view! {
        <h1>"Traces"</h1>
        <section>
            <form method="get" action="/traces" class="search">
                {view.hidden_fields()}
                <label>"service " <input name="service" value=val(&f.service)/></label>
                <label>" operation " <input name="operation" value=val(&f.operation)/></label>
                <label>" status "
                    <select name="status">
                        <option value="" selected=status.is_empty()>"any"</option>
                        <option value="error" selected=status == "error">"error"</option>
                        <option value="ok" selected=status == "ok">"ok"</option>
                    </select>
                </label>
                <label>" duration ≥ " <input name="min_ms" size="6" value=val(&f.min_ms)/> " ms"</label>
                <label>" ≤ " <input name="max_ms" size="6" value=val(&f.max_ms)/> " ms"</label>
                <label>" attribute " <input name="attribute" placeholder="key=value" value=val(&f.attribute)/></label>
                " " <button type="submit">"Search"</button>
            </form>
        </section>
        <section>{results}</section>
    }
    .to_html();
    page(
        "Traces",
        Some(&view),
        &super::own_path("/traces", raw.as_deref()),
        body,
    )
}

/// One span row of the waterfall.
struct Row {
    depth: usize,
    span: Value,
}

/// Spans in tree order (parents before children, siblings by start time).
fn tree(spans: Vec<Value>) -> Vec<Row> {
    let ids: std::collections::HashSet<String> = spans
        .iter()
        .filter_map(|s| s["span_id"].as_str().map(str::to_string))
        .collect();
    let mut children: HashMap<String, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s["parent_span_id"].as_str().filter(|p| ids.contains(*p)) {
            Some(p) => children.entry(p.to_string()).or_default().push(i),
            None => roots.push(i),
        }
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (i, 0)).collect();
    let mut seen = vec![false; spans.len()];
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        if let Some(kids) = spans[i]["span_id"].as_str().and_then(|id| children.get(id)) {
            for k in kids.iter().rev() {
                stack.push((*k, depth + 1));
            }
        }
        out.push(Row {
            depth,
            span: spans[i].clone(),
        });
    }
    out
}

fn kv_rows(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|e| {
                Some((
                    e.get("key")?.as_str()?.to_string(),
                    e.get("value")
                        .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
                        .unwrap_or_default(),
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `GET /traces/{id}`: the waterfall and the trace's logs.
pub async fn trace(
    State(s): State<WebState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let v = match explore::trace(&s.rollups.traces, &id).await {
        Ok(v) => v,
        Err(e) => {
            return error_page(explore_status(&e), "Trace", e.to_string());
        }
    };
    let spans = v["spans"].as_array().cloned().unwrap_or_default();
    if spans.is_empty() {
        return error_page(
            StatusCode::NOT_FOUND,
            "No such trace",
            format!("No span of trace {} is stored.", escape(&id)),
        );
    }
    let start = spans
        .iter()
        .filter_map(|s| ts(&s["start_time"]))
        .min()
        .unwrap_or(0);
    let end = spans
        .iter()
        .filter_map(|s| ts(&s["end_time"]))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let total = (end - start) as f64;
    let services: std::collections::BTreeSet<String> = spans
        .iter()
        .filter_map(|s| s["service_name"].as_str().map(str::to_string))
        .collect();
    let errors = spans.iter().filter(|s| s["status_code"] == "ERROR").count();
    let n = spans.len();
    let logs = v["logs"].as_array().cloned().unwrap_or_default();
    let q = raw.unwrap_or_default();
    let rows = tree(spans);
    let waterfall = rows
        .into_iter()
        .map(|r| {
            let sp = r.span;
            let s0 = ts(&sp["start_time"]).unwrap_or(start);
            let dur = sp["duration_ns"].as_i64().unwrap_or(0);
            let left = (s0 - start) as f64 / total * 100.0;
            let width = (dur as f64 / total * 100.0).max(0.3);
            let failed = sp["status_code"] == "ERROR";
            let mut attrs = kv_rows(&sp["attributes"]);
            for (key, column, _) in store::schema::SPAN_PROMOTED {
                if let Some(v) = sp.get(*column).filter(|v| !v.is_null()) {
                    attrs.push((key.to_string(), v.as_str().map_or(v.to_string(), str::to_string)));
                }
            }
            attrs.sort();
            attrs.dedup();
            let resource = kv_rows(&sp["resource_attributes"]);
            let events = sp["events"].as_array().cloned().unwrap_or_default();
            let links = sp["links"].as_array().cloned().unwrap_or_default();
            let service = sp["service_name"].as_str().unwrap_or("").to_string();
            let name = sp["name"].as_str().unwrap_or("").to_string();
            let kind = sp["kind"].as_str().unwrap_or("").to_string();
            let status = format!(
                "{} {}",
                sp["status_code"].as_str().unwrap_or(""),
                sp["status_message"].as_str().unwrap_or("")
            );
            let span_id = sp["span_id"].as_str().unwrap_or("").to_string();
            let anchor = format!("span-{span_id}");
            view! {
                <details class={if failed { "span failed" } else { "span" }} id=anchor>
                    <summary>
                        <span class="label" style=format!("padding-left:{}px", r.depth * 14)>
                            <b>{service}</b> " " {name} " " <span class="muted">{kind}</span>
                        </span>
                        <span class="lane">
                            <span class="bar" style=format!("left:{left:.2}%;width:{width:.2}%")></span>
                        </span>
                        <span class="dur num">{ms(dur)}</span>
                    </summary>
                    <div class="span-detail">
                        <p>"status: " {status} " · span " {span_id} " · starts at " {offset(s0 - start)}</p>
                        <table class="kv">
                            <tr><th colspan="2">"attributes"</th></tr>
                            {attrs.into_iter().map(|(k, v)| view! { <tr><td>{k}</td><td>{v}</td></tr> }).collect_view()}
                            <tr><th colspan="2">"resource"</th></tr>
                            {resource.into_iter().map(|(k, v)| view! { <tr><td>{k}</td><td>{v}</td></tr> }).collect_view()}
                        </table>
                        {(!events.is_empty()).then(|| view! {
                            <table class="kv">
                                <tr><th>"event"</th><th>"at"</th><th>"attributes"</th></tr>
                                {events.into_iter().map(|e| {
                                    let at = ts(&e["time"]).map(|t| offset(t - start)).unwrap_or_default();
                                    let a = kv_rows(&e["attributes"]).into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
                                    view! { <tr><td>{e["name"].as_str().unwrap_or("").to_string()}</td><td>{at}</td><td>{a}</td></tr> }
                                }).collect_view()}
                            </table>
                        })}
                        {(!links.is_empty()).then(|| view! {
                            <p>"links: "
                                {links.into_iter().map(|l| {
                                    let t = l["trace_id"].as_str().unwrap_or("").to_string();
                                    let href = format!("/traces/{t}#span-{}", l["span_id"].as_str().unwrap_or(""));
                                    view! { <a href=href>{t[..t.len().min(16)].to_string()}</a> " " }
                                }).collect_view()}
                            </p>
                        })}
                    </div>
                </details>
            }
        })
        .collect_view();
    let log_rows = if logs.is_empty() {
        view! { <p class="muted">"No log records carry this trace id."</p> }.into_any()
    } else {
        view! {
            <table id="trace-logs">
                <tr><th>"at"</th><th>"service"</th><th>"severity"</th><th>"body"</th></tr>
                {logs.into_iter().map(|l| {
                    let at = ts(&l["time"]).map(|t| offset(t - start)).unwrap_or_default();
                    let sev = l["severity_text"].as_str().unwrap_or("").to_string();
                    view! {
                        <tr>
                            <td>{at}</td>
                            <td>{l["service_name"].as_str().unwrap_or("").to_string()}</td>
                            <td class={if sev == "ERROR" || sev == "FATAL" { "firing" } else { "" }}>{sev.clone()}</td>
                            <td>{l["body"].as_str().map_or(l["body"].to_string(), str::to_string)}</td>
                        </tr>
                    }
                }).collect_view()}
            </table>
        }
        .into_any()
    };
    let api = format!("/api/v1/traces/{id}");
    let body = view! {
        <h1>"Trace " <code>{id.clone()}</code></h1>
        <section>
            <p>
                {ms(end - start)} " · " {n} " spans · " {services.len()} " services · "
                <span class={if errors > 0 { "firing" } else { "" }}>{errors} " failed"</span>
                " · " <a href=api>"JSON"</a> " · " <a href=format!("/traces?{q}")>"search"</a>
            </p>
            <div class="waterfall">{waterfall}</div>
        </section>
        <section id="logs"><h2>"Logs of this trace"</h2>{log_rows}</section>
    }
    .to_html();
    page("Trace", None, "/traces", body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spans_come_in_tree_order_with_depths() {
        let spans = vec![
            json!({"span_id": "b", "parent_span_id": "a"}),
            json!({"span_id": "a", "parent_span_id": null}),
            json!({"span_id": "c", "parent_span_id": "b"}),
            json!({"span_id": "d", "parent_span_id": "a"}),
            json!({"span_id": "x", "parent_span_id": "gone"}),
        ];
        let order: Vec<(String, usize)> = tree(spans)
            .into_iter()
            .map(|r| (r.span["span_id"].as_str().unwrap().to_string(), r.depth))
            .collect();
        assert_eq!(
            order,
            [
                ("a".to_string(), 0),
                ("b".to_string(), 1),
                ("c".to_string(), 2),
                ("d".to_string(), 1),
                ("x".to_string(), 0)
            ]
        );
    }

    #[test]
    fn timestamps_of_json_rows_parse() {
        assert_eq!(ts(&json!("1970-01-01T00:00:01.5")), Some(1_500_000_000));
        assert_eq!(ts(&json!("1970-01-01T00:00:01")), Some(1_000_000_000));
        assert_eq!(ts(&json!(null)), None);
    }
}
