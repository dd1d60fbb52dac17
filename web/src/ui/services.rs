//! Service views: `/services/{name}` (RED over time, operations,
//! dependencies in and out, recent errors, slowest traces, logs) and
//! `/service-map` (the dependency graph with RED per call, failing calls
//! and services in red).

use analytics::red::{Edge, Red, RedPoint, Window};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use web_islands::{Cell, SortableTable};

use super::charts::{GraphEdge, GraphNode, Line, Mark, ServiceGraph, TimeSeries, short};
use super::logs::log_table;
use super::traces::trace_table;
use super::{View, error_page, page, pct, url_encode};
use crate::WebState;
use analytics::search::{self as explore, LogSearch, TraceSearch};

/// Error ratio above which a service or a call is shown as failing.
const ERROR_HIGHLIGHT: f64 = 0.01;

/// The window widened to start on a minute, and a step of whole minutes
/// giving about `buckets` buckets, so series come from rollups.
pub(crate) fn aligned(w: &Window, buckets: i64) -> (Window, i64) {
    const MIN: i64 = 60_000_000_000;
    let step = ((w.to_ns - w.from_ns) / MIN / buckets).max(1) * 60;
    (
        Window {
            from_ns: w.from_ns.div_euclid(MIN) * MIN,
            to_ns: w.to_ns,
        },
        step,
    )
}

/// Exemplars of a service's latency chart: per minute, the slowest SERVER
/// span (from the span-metric rollups), linked to its trace.
fn latency_marks(rows: &[analytics::rollup::SpanMetricRow], service: &str) -> Vec<Mark> {
    let mut slowest: std::collections::BTreeMap<i64, &analytics::rollup::BucketExemplar> =
        Default::default();
    for r in rows
        .iter()
        .filter(|r| &*r.service == service && r.kind == "SERVER")
    {
        for e in &r.exemplars {
            let cur = slowest.entry(r.minute_ns).or_insert(e);
            if e.duration_ns > cur.duration_ns {
                *cur = e;
            }
        }
    }
    slowest
        .into_values()
        .map(|e| Mark {
            t_ns: e.time_ns,
            value: e.duration_ns as f64 / 1e6,
            href: format!("/traces/{}", e.trace_id),
            title: format!(
                "slowest span of the minute: {:.1} ms, trace {}",
                e.duration_ns as f64 / 1e6,
                e.trace_id
            ),
        })
        .collect()
}

/// RED series as three charts: rate, errors, latency percentiles (with
/// exemplar `marks`).
fn red_charts(points: &[RedPoint], w: &Window, marks: Vec<Mark>) -> impl IntoView + use<> {
    let line = |name: &str, f: &dyn Fn(&RedPoint) -> Option<f64>| Line {
        name: name.to_string(),
        points: points.iter().map(|p| (p.time_ns, f(p))).collect(),
    };
    let rate = vec![line("requests", &|p| Some(p.rate))];
    let errors = vec![line("errors", &|p| {
        (p.requests > 0).then_some(p.error_ratio * 100.0)
    })];
    let latency = vec![
        line("p50", &|p| p.p50_ms),
        line("p95", &|p| p.p95_ms),
        line("p99", &|p| p.p99_ms),
    ];
    let (from, to) = (w.from_ns, w.to_ns);
    view! {
        <div class="charts">
            <TimeSeries id="rate-chart".to_string() title="Request rate".to_string() unit="req/s".to_string() from_ns=from to_ns=to lines=rate/>
            <TimeSeries id="error-chart".to_string() title="Errors".to_string() unit="% of requests".to_string() from_ns=from to_ns=to lines=errors/>
            <TimeSeries id="latency-chart".to_string() title="Duration".to_string() unit="ms".to_string() from_ns=from to_ns=to lines=latency marks=marks/>
        </div>
    }
}

/// A call's RED as a short label.
fn edge_label(e: &Edge) -> String {
    format!(
        "{}/s · {} err · p95 {} ms",
        short(e.rate),
        pct(Some(e.error_ratio)),
        short(e.p95_ms)
    )
}

/// Edges as a sortable table; `link` is the column whose service links.
fn edge_table(id: &str, edges: &[Edge], q: &str) -> impl IntoView + use<> {
    if edges.is_empty() {
        return view! { <p class="muted">"None in this range."</p> }.into_any();
    }
    let rows: Vec<Vec<Cell>> = edges
        .iter()
        .map(|e| {
            let err = Cell::num(pct(Some(e.error_ratio)), Some(e.error_ratio));
            vec![
                Cell::text(e.caller.clone())
                    .link(format!("/services/{}?{q}", url_encode(&e.caller))),
                Cell::text(e.callee.clone())
                    .link(format!("/services/{}?{q}", url_encode(&e.callee))),
                Cell::text(e.kind.clone()),
                Cell::num(format!("{:.2}", e.rate), Some(e.rate)),
                if e.error_ratio > ERROR_HIGHLIGHT {
                    err.class("firing")
                } else {
                    err
                },
                Cell::num(format!("{:.1}", e.p50_ms), Some(e.p50_ms)),
                Cell::num(format!("{:.1}", e.p95_ms), Some(e.p95_ms)),
                Cell::num(format!("{:.1}", e.p99_ms), Some(e.p99_ms)),
            ]
        })
        .collect();
    let headers = [
        "caller", "callee", "kind", "calls/s", "errors", "p50 ms", "p95 ms", "p99 ms",
    ]
    .map(String::from)
    .to_vec();
    view! { <SortableTable id=id.to_string() headers=headers rows=rows/> }.into_any()
}

/// Trace search results, or the error.
fn trace_rows(id: &str, traces: Result<serde_json::Value, String>, q: &str) -> AnyView {
    match traces {
        Err(e) => view! { <p class="error">"Could not search traces: " {e}</p> }.into_any(),
        Ok(v) => trace_table(
            id,
            v["traces"].as_array().cloned().unwrap_or_default(),
            q,
            true,
        ),
    }
}

/// `GET /services/{name}`.
pub async fn service(State(s): State<WebState>, Path(name): Path<String>, view: View) -> Response {
    let w = view.window;
    let (series_window, step) = aligned(&w, 60);
    let errors_search = TraceSearch {
        service: Some(name.clone()),
        status: Some("error".into()),
        limit: Some(10),
        ..Default::default()
    };
    let slow_search = TraceSearch {
        service: Some(name.clone()),
        limit: Some(10),
        order: Some("duration".into()),
        ..Default::default()
    };
    let log_search = LogSearch {
        service: Some(name.clone()),
        limit: Some(20),
        ..Default::default()
    };
    let (totals, series, ops, edges, errors, slow, logs, span_rows) = tokio::join!(
        s.rollups.services(&w),
        s.rollups.series(&name, None, &series_window, step),
        s.rollups.operations(&name, &w),
        s.rollups.edges.service_map(&w, Some(&name)),
        explore::search_traces(
            &s.store,
            Some(&s.rollups.traces),
            &errors_search,
            &[],
            w.from_ns,
            w.to_ns
        ),
        explore::search_traces(
            &s.store,
            Some(&s.rollups.traces),
            &slow_search,
            &[],
            w.from_ns,
            w.to_ns
        ),
        explore::search_logs(
            &s.store,
            Some(&s.rollups.texts),
            &log_search,
            &[],
            w.from_ns,
            w.to_ns
        ),
        s.rollups.span_metrics(&series_window),
    );
    let marks = span_rows
        .map(|rows| latency_marks(&rows, &name))
        .unwrap_or_default();
    let q = view.query.clone();
    let enc = url_encode(&name);
    let me: Option<Red> = totals
        .ok()
        .and_then(|list| list.into_iter().find(|r| r.service == name));
    let summary = match &me {
        Some(r) => view! {
            <table id="service-summary">
                <tr><th>"requests"</th><th>"req/s"</th><th>"errors"</th><th>"p50 ms"</th><th>"p95 ms"</th><th>"p99 ms"</th><th>"source"</th></tr>
                <tr>
                    <td class="num">{r.requests}</td>
                    <td class="num">{format!("{:.2}", r.rate)}</td>
                    <td class={if r.error_ratio > ERROR_HIGHLIGHT { "num firing" } else { "num" }}>{pct(Some(r.error_ratio))}</td>
                    <td class="num">{format!("{:.1}", r.p50_ms)}</td>
                    <td class="num">{format!("{:.1}", r.p95_ms)}</td>
                    <td class="num">{format!("{:.1}", r.p99_ms)}</td>
                    <td>{format!("{:?}", r.source).to_lowercase()}</td>
                </tr>
            </table>
        }
        .into_any(),
        None => view! {
            <p class="muted">"No requests served by " {name.clone()} " in this range (no SERVER spans or request-duration histogram)."</p>
        }
        .into_any(),
    };
    let charts = match series {
        Ok(points) => red_charts(&points, &series_window, marks).into_any(),
        Err(e) => view! { <p class="error">"RED series could not be loaded: " {e.to_string()}</p> }
            .into_any(),
    };
    // The busiest operations and dependencies only (see crate::top).
    let mut ops_omitted = 0;
    let ops = ops.map(|list| {
        let t = crate::top::top(
            list,
            crate::top::PAGE_OPERATIONS,
            None,
            |r| r.operation.as_deref().unwrap_or_default(),
            |r| r.requests as f64,
        );
        ops_omitted = t.omitted();
        t.items
    });
    let ops_view = match ops {
        Err(e) => view! { <p class="error">"Operations could not be loaded: " {e.to_string()}</p> }
            .into_any(),
        Ok(list) if list.is_empty() => {
            view! { <p class="muted">"No operations in this range."</p> }.into_any()
        }
        Ok(list) => {
            let rows: Vec<Vec<Cell>> = list
                .into_iter()
                .map(|r| {
                    let op = r.operation.clone().unwrap_or_default();
                    let href = format!("/traces?{q}&service={enc}&operation={}", url_encode(&op));
                    let err = Cell::num(pct(Some(r.error_ratio)), Some(r.error_ratio));
                    vec![
                        Cell::text(op).link(href),
                        Cell::num(r.requests.to_string(), Some(r.requests as f64)),
                        Cell::num(format!("{:.2}", r.rate), Some(r.rate)),
                        if r.error_ratio > ERROR_HIGHLIGHT {
                            err.class("firing")
                        } else {
                            err
                        },
                        Cell::num(format!("{:.1}", r.p50_ms), Some(r.p50_ms)),
                        Cell::num(format!("{:.1}", r.p95_ms), Some(r.p95_ms)),
                        Cell::num(format!("{:.1}", r.p99_ms), Some(r.p99_ms)),
                    ]
                })
                .collect();
            let headers = [
                "operation",
                "requests",
                "req/s",
                "errors",
                "p50 ms",
                "p95 ms",
                "p99 ms",
            ]
            .map(String::from)
            .to_vec();
            view! { <SortableTable id="operations-table".to_string() headers=headers rows=rows/> }
                .into_any()
        }
    };
    let mut edges_omitted = 0;
    let (upstream, downstream, deps_error) = match edges {
        Ok(list) => {
            let up: Vec<Edge> = list.iter().filter(|e| e.callee == name).cloned().collect();
            let down: Vec<Edge> = list.into_iter().filter(|e| e.caller == name).collect();
            let busiest = |edges: Vec<Edge>, other: fn(&Edge) -> &str| {
                crate::top::top(edges, crate::top::PAGE_EDGES, None, other, |e| {
                    e.calls as f64
                })
            };
            let (up, down) = (busiest(up, |e| &e.caller), busiest(down, |e| &e.callee));
            edges_omitted = up.omitted() + down.omitted();
            (up.items, down.items, None)
        }
        Err(e) => (Vec::new(), Vec::new(), Some(e.to_string())),
    };
    let logs_view = match logs {
        Err(e) => {
            view! { <p class="error">"Logs could not be loaded: " {e.to_string()}</p> }.into_any()
        }
        Ok(v) => log_table(
            "service-logs",
            v["logs"].as_array().cloned().unwrap_or_default(),
            &q,
        ),
    };
    let body = view! {
        <h1>"Service " <span id="service-name">{name.clone()}</span></h1>
        <section id="red">{summary}{charts}</section>
        <section id="operations">
            <h2>"Operations"</h2>
            {ops_view}
            {(ops_omitted > 0).then(|| view! {
                <p class="muted" id="operations-omitted">{format!(
                    "{ops_omitted} more operations not shown: the {} busiest are listed.",
                    crate::top::PAGE_OPERATIONS
                )}</p>
            })}
        </section>
        <section id="dependencies">
            <h2>"Dependencies"</h2>
            {deps_error.map(|e| view! { <p class="error">"The service map could not be loaded: " {e}</p> })}
            <div class="grid2">
                <div id="callers"><h3>"Called by"</h3>{edge_table("callers-table", &upstream, &q)}</div>
                <div id="callees"><h3>"Calls"</h3>{edge_table("callees-table", &downstream, &q)}</div>
            </div>
            {(edges_omitted > 0).then(|| view! {
                <p class="muted">{format!(
                    "{edges_omitted} more callers and callees not shown: the {} busiest of each are listed.",
                    crate::top::PAGE_EDGES
                )}</p>
            })}
        </section>
        <section id="recent-errors">
            <h2>"Recent errors " <a class="muted" href=format!("/traces?{q}&service={enc}&status=error")>"all…"</a></h2>
            {trace_rows("error-traces", errors.map_err(|e| e.to_string()), &q)}
        </section>
        <section id="slowest">
            <h2>"Slowest traces"</h2>
            {trace_rows("slow-traces", slow.map_err(|e| e.to_string()), &q)}
        </section>
        <section id="logs">
            <h2>"Logs " <a class="muted" href=format!("/logs?{q}&service={enc}")>"search…"</a></h2>
            {logs_view}
        </section>
    }
    .to_html();
    page(&name, Some(&view), &format!("/services/{enc}"), body)
}

/// `GET /service-map`: the busiest calls (at most [`crate::top::MAP_EDGES`])
/// and services (the ends of those calls and at most
/// [`crate::top::MAP_NODES`] more), optionally only those whose name
/// contains `search`, with a count of what is left out.
pub async fn map(
    State(s): State<WebState>,
    view: View,
    Query(f): Query<super::ServiceFilter>,
) -> Response {
    let w = view.window;
    let (edges, services) = tokio::join!(
        s.rollups.edges.service_map(&w, None),
        s.rollups.services(&w)
    );
    let q = view.query.clone();
    let edges = match edges {
        Ok(e) => e,
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Service map",
                format!("the service map could not be computed: {e}"),
            );
        }
    };
    let search = f.search.clone().filter(|s| !s.trim().is_empty());
    let needle = search.as_deref().map(str::to_lowercase);
    let matches = |name: &str| {
        needle
            .as_deref()
            .is_none_or(|n| name.to_lowercase().contains(n))
    };
    let edges: Vec<Edge> = edges
        .into_iter()
        .filter(|e| matches(&e.caller) || matches(&e.callee))
        .collect();
    let edges = crate::top::top(
        edges,
        crate::top::MAP_EDGES,
        None,
        |e| &e.caller,
        |e| e.calls as f64,
    );
    let services = crate::top::top(
        services.unwrap_or_default(),
        crate::top::MAP_NODES,
        search.as_deref(),
        |r| r.service.as_str(),
        |r| r.requests as f64,
    );
    let omitted_edges = edges.omitted();
    let edges = edges.items;
    let red: std::collections::HashMap<&str, &Red> = services
        .items
        .iter()
        .map(|r| (r.service.as_str(), r))
        .collect();
    let mut names: std::collections::BTreeSet<String> =
        services.items.iter().map(|r| r.service.clone()).collect();
    for e in &edges {
        names.insert(e.caller.clone());
        names.insert(e.callee.clone());
    }
    let omitted_services = services.matched.saturating_sub(names.len());
    let nodes: Vec<GraphNode> = names
        .into_iter()
        .map(|n| {
            let red = red.get(n.as_str());
            GraphNode {
                href: format!("/services/{}?{q}", url_encode(&n)),
                detail: red
                    .map(|r| format!("{}/s · {} err", short(r.rate), pct(Some(r.error_ratio))))
                    .unwrap_or_else(|| "not instrumented".into()),
                error: red.is_some_and(|r| r.error_ratio > ERROR_HIGHLIGHT),
                name: n,
            }
        })
        .collect();
    let graph_edges: Vec<GraphEdge> = edges
        .iter()
        .map(|e| GraphEdge {
            from: e.caller.clone(),
            to: e.callee.clone(),
            label: edge_label(e),
            rate: e.rate,
            error: e.error_ratio > ERROR_HIGHLIGHT,
            unobserved: e.kind == "unobserved",
        })
        .collect();
    let graph = if nodes.is_empty() {
        view! { <p class="muted">"No services in this range."</p> }.into_any()
    } else {
        view! { <ServiceGraph nodes=nodes edges=graph_edges/> }.into_any()
    };
    let omitted = (omitted_edges > 0 || omitted_services > 0).then(|| {
        view! {
            <p class="muted" id="map-omitted">{format!(
                "{omitted_edges} more calls and {omitted_services} more services not shown: the busiest are drawn; search to narrow the map."
            )}</p>
        }
    });
    let body = view! {
        <h1>"Service map"</h1>
        <section id="graph">
            <form method="get" action="/service-map" class="search">
                {view.hidden_fields()}
                <input name="search" placeholder="search services" value=search.clone().unwrap_or_default()/>
                " "<button type="submit">"Search"</button>
            </form>
            {graph}
            {omitted}
            <p class="muted">"Calls in red fail more than 1% of the time; dashed calls go to services that send no telemetry. Click a service for its page."</p>
        </section>
        <section id="edges"><h2>"Calls"</h2>{edge_table("edges-table", &edges, &q)}</section>
    }
    .to_html();
    let path = match &search {
        Some(q) => format!("/service-map?search={}", url_encode(q)),
        None => "/service-map".to_string(),
    };
    page("Service map", Some(&view), &path, body)
}
