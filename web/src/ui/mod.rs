//! The dashboard: Leptos components rendered on the server into complete
//! HTML pages, next to the JSON API. Every view is a URL (time range and
//! refresh in the query string), so a link pasted into an incident channel
//! opens the same view. Charts are SVG drawn here, no JavaScript library.
//!
//! - `/`: overview: open incidents, SLOs at a glance, services with RED and
//!   a request-rate sparkline.
//! - `/slos/{name}`: an SLO: objective, SLI, budget, burn-rate table per
//!   alert window with state, the error-budget burn-down, its incidents.
//! - `/incidents`: incidents with their timelines.

use std::time::Duration;

use analytics::red::{Red, Window};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use leptos::prelude::*;
use serde::Deserialize;
use slo_engine::engine::now_ns;
use slo_engine::evaluate::{BurnPoint, SloStatus};
use slo_engine::incidents::Incident;

use crate::WebState;

pub mod assets;
mod charts;
pub mod incidents;
pub mod logs;
pub mod metrics;
pub mod query;
pub mod services;
pub mod silences;
pub mod traces;

use charts::{BurnDown, Sparkline, TimeSeries};
use web_islands::{AutoRefresh, Cell, IncidentAction, SortableTable};

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:24px;align-items:center}
header a{color:#cfd6e4;text-decoration:none}header .who{margin-left:auto;display:flex;gap:.5rem;align-items:center}header .who form{margin:0}header a.brand{color:#fff;font-weight:700}
main{padding:16px;max-width:1280px;margin:auto}
section{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:12px 16px;margin-bottom:16px}
h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f4}
th{font-weight:600;color:#5b6475}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.page{background:#fde2e1;color:#b3261e}.ticket{background:#fff0d6;color:#8a5300}
.ok{background:#dcf3e3;color:#1e6b35}.insufficient_data{background:#e8eaef;color:#5b6475}
.open{background:#fde2e1;color:#b3261e}.acknowledged{background:#fff0d6;color:#8a5300}.resolved{background:#dcf3e3;color:#1e6b35}
.error{background:#fde2e1;border-color:#f3b3ae;color:#b3261e}
.muted{color:#7a8294}.ranges a{margin-right:8px}.ranges a.on{font-weight:700}
.firing{color:#b3261e;font-weight:600}
.waterfall details.span summary{display:flex;gap:8px;align-items:center;cursor:pointer;list-style:none;padding:1px 0}
.waterfall .label{width:38%;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.waterfall .lane{position:relative;flex:1;height:12px;background:#f0f2f6}
.waterfall .bar{position:absolute;top:0;bottom:0;background:#3b6fd8;border-radius:2px;min-width:2px}
.waterfall .failed .bar{background:#d93025}.waterfall .dur{width:90px}
.span-detail{margin:4px 0 10px 24px;font-size:13px}table.kv td{font-family:ui-monospace,monospace;font-size:12px}
form.search label{margin-right:6px}.range-links a{margin-right:8px}.range-links a.on{font-weight:700}
form.range-form{display:inline-block;margin-left:12px}form.range-form label.on{font-weight:700}.ranges{margin-bottom:8px}
svg text{font:11px system-ui,sans-serif;fill:#5b6475}.legend span{margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.charts{display:grid;grid-template-columns:1fr;gap:8px}.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
textarea.sql{width:100%;font-family:ui-monospace,monospace;font-size:13px}pre.sql{white-space:pre-wrap}
.graph .node rect{fill:#fff;stroke:#8a93a6;stroke-width:1.5}.graph .node.error rect{stroke:#d93025;stroke-width:2.5}
.graph .edge{fill:none;stroke:#8a93a6}.graph .edge.error{stroke:#d93025}.graph .edge.unobserved{stroke-dasharray:5 4}
.graph text.name{font-weight:600;fill:#1d2330;font-size:12px}.graph text.edge-label{paint-order:stroke;stroke:#fff;stroke-width:4px}.graph text.edge-label.error{fill:#b3261e}table.sortable th{cursor:pointer;user-select:none}
"#;

/// Query parameters every page takes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ViewParams {
    /// Relative range ending now (or at `to`): `15m`, `1h`, `6h`, `24h`, `7d`.
    pub range: Option<String>,
    /// Start of an absolute range: RFC 3339, `YYYY-MM-DDTHH:MM` (UTC, as a
    /// browser's date-time field sends it) or ns since the epoch; with it,
    /// the range is `from` to `to` and `range` is ignored.
    pub from: Option<String>,
    /// End of the range: like `from` [default: now].
    pub to: Option<String>,
    /// Auto-refresh period in seconds; 0 turns it off [default: 30].
    pub refresh: Option<u64>,
}

/// The service search of the overview and the service map.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceFilter {
    /// Only services whose name contains this (any case).
    pub search: Option<String>,
}

/// A resolved view: the window, and how to say it again in a URL.
#[derive(Debug, Clone)]
pub struct View {
    /// The time window shown.
    pub window: Window,
    /// The relative range (`1h`), or `custom` for an absolute one.
    pub range: String,
    /// Seconds between refreshes (0: off).
    pub refresh: u64,
    /// The view as a query string (`range=1h&refresh=30[&from=..][&to=..]`).
    pub query: String,
    from: Option<String>,
    to: Option<String>,
}

/// Parses a view time: ns since the epoch, RFC 3339, or a date-time field's
/// `YYYY-MM-DDTHH:MM[:SS]` read as UTC.
fn view_time(name: &str, t: &str) -> Result<i64, String> {
    let t = t.trim();
    if let Ok(ns) = crate::api::parse_time(name, t) {
        return Ok(ns);
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Some(ns) = chrono::NaiveDateTime::parse_from_str(t, f)
            .ok()
            .and_then(|d| d.and_utc().timestamp_nanos_opt())
        {
            return Ok(ns);
        }
    }
    Err(format!(
        "{name}={t:?} is not a time: use RFC 3339 (2026-11-21T10:00:00Z), YYYY-MM-DDTHH:MM (UTC) or ns since the epoch"
    ))
}

/// `ns` as a date-time field's value (`YYYY-MM-DDTHH:MM`, UTC).
fn field_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M")
        .to_string()
}

impl ViewParams {
    /// The window and URL form of these parameters, or what is wrong with them.
    pub fn resolve(&self) -> Result<View, String> {
        let from = non_empty(&self.from);
        let to_text = non_empty(&self.to);
        let to = match &to_text {
            Some(t) => view_time("to", t)?,
            None => now_ns(),
        };
        let (range, len) = match &from {
            Some(f) => {
                let start = view_time("from", f)?;
                if start >= to {
                    return Err(format!("from ({f}) must be before to"));
                }
                (
                    "custom".to_string(),
                    Duration::from_nanos((to - start) as u64),
                )
            }
            None => {
                let range = non_empty(&self.range).unwrap_or_else(|| "1h".into());
                let len = humantime::parse_duration(&range)
                    .map_err(|e| format!("range {range:?}: {e} (try 15m, 1h, 24h)"))?;
                (range, len)
            }
        };
        if len < Duration::from_secs(60) || len > Duration::from_secs(90 * 86400) {
            return Err(format!(
                "the range ({}) must be between 1m and 90d",
                humantime::format_duration(len)
            ));
        }
        let window = Window::new(to - len.as_nanos() as i64, to).map_err(|e| e.to_string())?;
        let refresh = self.refresh.unwrap_or(30);
        let mut query = format!("range={range}&refresh={refresh}");
        for (k, v) in [("from", &from), ("to", &to_text)] {
            if let Some(v) = v {
                query.push_str(&format!("&{k}={}", url_encode(v)));
            }
        }
        Ok(View {
            window,
            range,
            refresh,
            query,
            from,
            to: to_text,
        })
    }
}

impl ViewParams {
    /// [`ViewParams::resolve`], or the 400 page saying what is wrong.
    #[allow(clippy::result_large_err)]
    fn view(&self) -> Result<View, Response> {
        self.resolve()
            .map_err(|e| error_page(StatusCode::BAD_REQUEST, "Bad view", e))
    }
}

/// The SLO engine, or the 404 page saying that none runs.
#[allow(clippy::result_large_err)]
fn engine(
    s: &WebState,
    what: &str,
) -> Result<std::sync::Arc<slo_engine::engine::SloEngine>, Response> {
    s.slo.clone().ok_or_else(|| {
        error_page(
            StatusCode::NOT_FOUND,
            what,
            "No SLO engine is running (no rules directory).".into(),
        )
    })
}

impl View {
    /// Hidden form fields that keep this view when a page's form is sent.
    fn hidden_fields(&self) -> impl IntoView + use<> {
        let mut fields = vec![
            ("range", self.range.clone()),
            ("refresh", self.refresh.to_string()),
        ];
        if let Some(f) = &self.from {
            fields.push(("from", f.clone()));
        }
        if let Some(t) = &self.to {
            fields.push(("to", t.clone()));
        }
        fields
            .into_iter()
            .map(|(k, v)| view! { <input type="hidden" name=k value=v/> })
            .collect_view()
    }
}

/// `base` with the request's own query parameters (not the view's), for
/// [`page`]'s range picker.
fn own_path(base: &str, raw: Option<&str>) -> String {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
    let own: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(k, v)| {
            !matches!(k.as_str(), "range" | "from" | "to" | "refresh") && !v.is_empty()
        })
        .collect();
    if own.is_empty() {
        return base.to_string();
    }
    format!(
        "{base}?{}",
        serde_urlencoded::to_string(own).unwrap_or_default()
    )
}

/// Percent-encodes a query-string value.
pub(crate) fn url_encode(v: &str) -> String {
    serde_urlencoded::to_string([("", v)])
        .map(|s| s[1..].to_string())
        .unwrap_or_default()
}

/// The page around a body: head, style, navigation, range picker, and
/// (with the browser bundle) the loader that hydrates the islands. Live
/// views refresh themselves: a countdown island with pause, or without
/// JavaScript a meta refresh. `path` is the page's own URL without the
/// view (it may carry the page's own query, e.g. search fields), so the
/// range picker keeps them.
fn page(title: &str, view: Option<&View>, path: &str, body: String) -> Response {
    let live = view.filter(|v| v.refresh > 0 && v.window.to_ns >= now_ns() - 60_000_000_000);
    let hydrate = assets::enabled();
    let refresh = live
        .map(|v| {
            let meta = format!(r#"<meta http-equiv="refresh" content="{}">"#, v.refresh);
            if hydrate {
                format!("<noscript>{meta}</noscript>")
            } else {
                meta
            }
        })
        .unwrap_or_default();
    let countdown = match live {
        Some(v) if hydrate => view! { <AutoRefresh seconds=v.refresh/> }.to_html(),
        _ => String::new(),
    };
    let loader = if hydrate { assets::LOADER } else { "" };
    let q = view.map(|v| v.query.clone()).unwrap_or_default();
    let picker = view.map(|v| range_picker(v, path)).unwrap_or_default();
    let nav = view! {
        <header>
            <a class="brand" href=format!("/?{q}")>"Burnwatch"</a>
            <a href=format!("/?{q}")>"Overview"</a>
            <a href=format!("/service-map?{q}")>"Service map"</a>
            <a href=format!("/traces?{q}")>"Traces"</a>
            <a href=format!("/logs?{q}")>"Logs"</a>
            <a href=format!("/explore/metrics?{q}")>"Metrics"</a>
            <a href=format!("/slos?{q}")>"SLOs"</a>
            <a href=format!("/incidents?{q}")>"Incidents"</a>
            <a href=format!("/silences?{q}")>"Silences"</a>
            <a href=format!("/query?{q}")>"Query"</a>
            {crate::auth::signed_in().map(|p| view! {
                <span class="who">
                    <span class="muted">{format!("{} ({})", p.name, p.role.as_str())}</span>
                    <form method="post" action="/logout">
                        <button type="submit" id="sign-out">"Sign out"</button>
                    </form>
                </span>
            })}
        </header>
    }
    .to_html();
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{} · Burnwatch</title>{refresh}<style>{STYLE}</style></head><body>{nav}<main><div class=\"ranges muted\">{picker} {countdown}</div>{body}</main>{loader}</body></html>",
        escape(title)
    );
    Html(html).into_response()
}

/// The time-range picker: relative ranges ending now, and an absolute
/// from/to form (UTC), both keeping the page's own query.
fn range_picker(v: &View, path: &str) -> String {
    let (base, own) = path.split_once('?').unwrap_or((path, ""));
    let own_pairs: Vec<(String, String)> = serde_urlencoded::from_str(own).unwrap_or_default();
    let sep = if own.is_empty() {
        String::new()
    } else {
        format!("{own}&")
    };
    let links = ["15m", "1h", "6h", "24h", "7d"]
        .iter()
        .map(|r| {
            let class = if *r == v.range { "on" } else { "" };
            let href = format!("{base}?{sep}range={r}&refresh={}", v.refresh);
            view! { <a class=class href=href>{*r}</a> }
        })
        .collect_view();
    let custom = v.range == "custom";
    let refresh = v.refresh.to_string();
    view! {
        <span class="range-links">{links}</span>
        <form method="get" action=base.to_string() class="range-form">
            {own_pairs
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "range" | "from" | "to" | "refresh"))
                .map(|(k, val)| view! { <input type="hidden" name=k value=val/> })
                .collect_view()}
            <input type="hidden" name="refresh" value=refresh/>
            <label class=if custom { "on" } else { "" }>"from "
                <input type="datetime-local" name="from" value=field_time(v.window.from_ns)/>
            </label>
            <label>" to " <input type="datetime-local" name="to" value=field_time(v.window.to_ns)/></label>
            " UTC " <button type="submit">"apply"</button>
        </form>
    }
    .to_html()
}

/// A form field's trimmed value, if it has one.
fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_ref()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A search form's `attribute` field (`key=value`) as filters.
fn attribute_filter(v: &Option<String>) -> Result<Vec<(String, String)>, String> {
    let Some(a) = non_empty(v) else {
        return Ok(Vec::new());
    };
    match a.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => {
            Ok(vec![(k.trim().to_string(), v.trim().to_string())])
        }
        _ => Err(format!(
            "attribute {a:?}: use key=value, e.g. http.route=/api/checkout"
        )),
    }
}

/// The page status for an explore error: bad input is 400, the rest 500.
fn explore_status(e: &analytics::search::ExploreError) -> StatusCode {
    match e {
        analytics::search::ExploreError::BadRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_page(status: StatusCode, title: &str, message: String) -> Response {
    let body = view! {
        <section class="error"><h1>{title.to_string()}</h1><p>{message}</p></section>
    }
    .to_html();
    let mut r = page(title, None, "/", body);
    *r.status_mut() = status;
    r
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |f| format!("{:.2}%", f * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or("–".into(), |f| format!("{f:.2}"))
}

fn ago(ns: i64) -> String {
    let secs = ((now_ns() - ns) / 1_000_000_000).max(0) as u64;
    format!(
        "{} ago",
        humantime::format_duration(Duration::from_secs(secs))
    )
}

#[component]
fn StateBadge(state: String) -> impl IntoView {
    let label = state.replace('_', " ");
    view! { <span class=format!("badge {state}")>{label}</span> }
}

#[component]
fn IncidentRows(incidents: Vec<Incident>, query: String) -> impl IntoView {
    if incidents.is_empty() {
        return view! { <p class="muted">"No incidents."</p> }.into_any();
    }
    view! {
        <table>
            <tr><th>"#"</th><th>"SLO"</th><th>"severity"</th><th>"state"</th><th>"opened"</th><th>"summary"</th></tr>
            {incidents
                .into_iter()
                .map(|i| {
                    let href = format!("/incidents/{}?{query}", i.id);
                    let slo_href = format!("/slos/{}?{query}", i.slo);
                    view! {
                        <tr>
                            <td><a href=href>{i.id}</a></td>
                            <td><a href=slo_href>{i.slo.clone()}</a></td>
                            <td><StateBadge state=i.severity.clone()/></td>
                            <td><StateBadge state=i.state.clone()/></td>
                            <td>{ago(i.opened_ns)}</td>
                            <td>{i.summary.clone()}</td>
                        </tr>
                    }
                })
                .collect_view()}
        </table>
    }
    .into_any()
}

#[component]
fn SloRows(slos: Vec<SloStatus>, query: String) -> impl IntoView {
    if slos.is_empty() {
        return view! { <p class="muted">"No SLOs are defined (see alert-rules/)."</p> }.into_any();
    }
    view! {
        <table>
            <tr><th>"SLO"</th><th>"objective"</th><th>"window"</th><th>"SLI"</th><th>"budget left"</th><th>"burn (1st tier)"</th><th>"state"</th></tr>
            {slos
                .into_iter()
                .map(|s| {
                    let href = format!("/slos/{}?{query}", s.name);
                    view! {
                        <tr>
                            <td><a href=href>{s.display_name.clone()}</a></td>
                            <td class="num">{pct(Some(s.objective))}</td>
                            <td>{s.window.clone()}</td>
                            <td class="num">{pct(s.sli)}</td>
                            <td class="num">{pct(s.budget_remaining)}</td>
                            <td class="num">{num(s.current_burn)}</td>
                            <td><StateBadge state=s.state.as_str().to_string()/></td>
                        </tr>
                    }
                })
                .collect_view()}
        </table>
    }
    .into_any()
}

fn slo_statuses(s: &WebState) -> Vec<SloStatus> {
    let mut v = s
        .slo
        .as_ref()
        .map(|e| e.last_statuses())
        .unwrap_or_default();
    // Least budget left first.
    v.sort_by(|a, b| {
        a.budget_remaining
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.budget_remaining.unwrap_or(f64::INFINITY))
    });
    v
}

fn incidents(s: &WebState, limit: usize) -> Vec<Incident> {
    s.slo
        .as_ref()
        .and_then(|e| e.incidents(limit).ok())
        .unwrap_or_default()
}

/// `GET /`: the overview.
pub async fn overview(
    State(s): State<WebState>,
    Query(p): Query<ViewParams>,
    Query(f): Query<ServiceFilter>,
) -> Response {
    let view = match p.view() {
        Ok(v) => v,
        Err(r) => return r,
    };
    let search = f.search.clone().filter(|q| !q.trim().is_empty());
    // The busiest services (after the search), at most PAGE_SERVICES.
    let mut omitted = 0;
    let services: Result<Vec<Red>, String> = s
        .rollups
        .services(&view.window)
        .await
        .map(|list| {
            let t = crate::top::top(
                list,
                crate::top::PAGE_SERVICES,
                search.as_deref(),
                |r| r.service.as_str(),
                |r| r.requests as f64,
            );
            omitted = t.omitted();
            t.items
        })
        .map_err(|e| e.to_string());
    // Sparklines in whole-minute buckets from a minute boundary, so they
    // come from rollups rather than raw spans.
    let (spark_window, step) = services::aligned(&view.window, 30);
    let mut sparks = std::collections::HashMap::new();
    if let Ok(list) = &services {
        for r in list.iter().take(30) {
            if let Ok(points) = s
                .rollups
                .series(&r.service, None, &spark_window, step)
                .await
            {
                sparks.insert(
                    r.service.clone(),
                    points.iter().map(|p| p.rate).collect::<Vec<_>>(),
                );
            }
        }
    }
    let mut open: Vec<Incident> = incidents(&s, 200)
        .into_iter()
        .filter(|i| i.state != "resolved")
        .collect();
    open.sort_by_key(|i| (i.severity != "page", -i.opened_ns));
    let q = view.query.clone();
    let services_view = match services {
        Err(e) => view! { <p class="error">"Services could not be loaded: " {e}</p> }.into_any(),
        Ok(list) if list.is_empty() && search.is_some() => view! {
            <p class="muted">"No service matches this search in this range."</p>
        }
        .into_any(),
        Ok(list) if list.is_empty() => view! {
            <p class="muted">"No server spans in this range. Point an OpenTelemetry exporter at the OTLP ports, or run `burnwatch demo`."</p>
        }
        .into_any(),
        Ok(list) => {
            let rows: Vec<Vec<Cell>> = list
                .into_iter()
                .map(|r| {
                    let spark = sparks.get(&r.service).cloned().unwrap_or_default();
                    let errors = Cell::num(pct(Some(r.error_ratio)), Some(r.error_ratio));
                    vec![
                        Cell::text(r.service.clone())
                            .link(format!("/services/{}?{q}", url_encode(&r.service))),
                        Cell::num(format!("{:.2}", r.rate), Some(r.rate)),
                        if r.error_ratio > 0.01 { errors.class("firing") } else { errors },
                        Cell::num(format!("{:.1}", r.p95_ms), Some(r.p95_ms)),
                        Cell::num(format!("{:.1}", r.p99_ms), Some(r.p99_ms)),
                        Cell::svg(view! { <Sparkline values=spark/> }.to_html(), Some(r.rate)),
                    ]
                })
                .collect();
            let headers = ["service", "req/s", "errors", "p95 ms", "p99 ms", "rate"]
                .map(String::from)
                .to_vec();
            view! { <SortableTable id="services-table".to_string() headers=headers rows=rows/> }
                .into_any()
        }
    };
    let body = view! {
        <h1>"Overview"</h1>
        <section id="open-incidents"><h2>"Open incidents"</h2><IncidentRows incidents=open query=q.clone()/></section>
        <section id="slos"><h2>"SLOs"</h2><SloRows slos=slo_statuses(&s) query=q.clone()/></section>
        <section id="services">
            <h2>"Services"</h2>
            <form method="get" action="/" class="search">
                {view.hidden_fields()}
                <input name="search" placeholder="search services" value=search.clone().unwrap_or_default()/>
                " "<button type="submit">"Search"</button>
            </form>
            {services_view}
            {(omitted > 0).then(|| view! {
                <p class="muted" id="services-omitted">{format!(
                    "{omitted} more services not shown: the {} busiest are listed; search to find one.",
                    crate::top::PAGE_SERVICES
                )}</p>
            })}
        </section>
    }
    .to_html();
    let path = match &search {
        Some(q) => format!("/?search={}", url_encode(q)),
        None => "/".to_string(),
    };
    page("Overview", Some(&view), &path, body)
}

/// `GET /slos`: every SLO, least budget left first.
pub async fn slo_list(State(s): State<WebState>, Query(p): Query<ViewParams>) -> Response {
    let view = match p.view() {
        Ok(v) => v,
        Err(r) => return r,
    };
    let body = view! {
        <h1>"SLOs"</h1>
        <section><SloRows slos=slo_statuses(&s) query=view.query.clone()/></section>
    }
    .to_html();
    page("SLOs", Some(&view), "/slos", body)
}

/// `GET /slos/{name}`: one SLO with its burn rates and budget burn-down.
pub async fn slo_page(
    State(s): State<WebState>,
    Path(name): Path<String>,
    Query(p): Query<ViewParams>,
) -> Response {
    let view = match p.view() {
        Ok(v) => v,
        Err(r) => return r,
    };
    let engine = match engine(&s, "No SLOs") {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Some(def) = engine.slos().iter().find(|d| d.name == name).cloned() else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Unknown SLO",
            format!("No SLO named {name:?}."),
        );
    };
    let at = view.window.to_ns;
    let status = if p.to.is_some() {
        slo_engine::evaluate::evaluate(engine.sli_counter(), &def, at).await
    } else {
        match engine.last_statuses().into_iter().find(|x| x.name == name) {
            Some(st) => Ok(st),
            None => slo_engine::evaluate::evaluate(engine.sli_counter(), &def, at).await,
        }
    };
    let status = match status {
        Ok(st) => st,
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Evaluation failed",
                e.to_string(),
            );
        }
    };
    let burn: Vec<BurnPoint> =
        slo_engine::evaluate::burndown(engine.sli_counter(), &def, status.at_ns, 120)
            .await
            .unwrap_or_default();
    let sli_chart = sli_chart(&burn, status.objective);
    let mine: Vec<Incident> = incidents(&s, 500)
        .into_iter()
        .filter(|i| i.slo == name)
        .collect();
    let q = view.query.clone();
    let tte = status
        .time_to_exhaustion_secs
        .map(|t| humantime::format_duration(Duration::from_secs(t as u64)).to_string())
        .unwrap_or_else(|| "–".into());
    let body = view! {
        <h1>{status.display_name.clone()} " " <StateBadge state=status.state.as_str().to_string()/></h1>
        <section id="summary">
            <table>
                <tr><th>"objective"</th><th>"window"</th><th>"SLI"</th><th>"events"</th><th>"bad"</th><th>"SLI value"</th><th>"budget left"</th><th>"budget exhausted in"</th></tr>
                <tr>
                    <td class="num">{pct(Some(status.objective))}</td>
                    <td>{format!("{} ({})", status.window, status.budgeting)}</td>
                    <td>{status.sli_kind.clone()}</td>
                    <td class="num">{status.total}</td>
                    <td class="num">{status.bad}</td>
                    <td class="num">{pct(status.sli)}</td>
                    <td class="num" id="budget-left">{pct(status.budget_remaining)}</td>
                    <td class="num">{tte}</td>
                </tr>
            </table>
            <p class="muted">{def.description.clone()}</p>
            {status.warnings.iter().map(|w| view! { <p class="error">{w.clone()}</p> }).collect_view()}
        </section>
        <section id="burn-rates">
            <h2>"Burn rate per alert window"</h2>
            <BurnTable tiers=status.tiers.clone()/>
        </section>
        <section id="burndown">
            <h2>"Error budget over the window"</h2>
            <BurnDown points=burn objective=status.objective/>
        </section>
        <section id="sli-chart">{sli_chart}</section>
        <section id="slo-incidents"><h2>"Incidents"</h2><IncidentRows incidents=mine query=q/></section>
    }
    .to_html();
    page(
        &status.display_name,
        Some(&view),
        &format!("/slos/{name}"),
        body,
    )
}

/// The burn rate of every alert tier: windows, threshold, burns, state.
#[component]
fn BurnTable(tiers: Vec<slo_engine::evaluate::TierStatus>) -> impl IntoView {
    view! {
            <table>
                <tr><th>"severity"</th><th>"long window"</th><th>"short window"</th><th>"threshold"</th><th>"long burn"</th><th>"short burn"</th><th>"events (long)"</th><th>"state"</th></tr>
                {tiers
                    .iter()
                    .map(|t| {
                        let state = if t.firing {
                            "firing"
                        } else if t.insufficient_data {
                            "insufficient data"
                        } else {
                            "ok"
                        };
                        let class = if t.firing { "firing" } else { "" };
                        view! {
                            <tr>
                                <td><StateBadge state=t.severity.to_string()/></td>
                                <td>{humantime::format_duration(Duration::from_secs(t.long_secs)).to_string()}</td>
                                <td>{humantime::format_duration(Duration::from_secs(t.short_secs)).to_string()}</td>
                                <td class="num">{format!("{:.2}x", t.factor)}</td>
                                <td class="num">{num(t.long_burn)}</td>
                                <td class="num">{num(t.short_burn)}</td>
                                <td class="num">{t.long_events}</td>
                                <td class=class>{state}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </table>
    }
}

/// The SLI per burn-down bucket (good share of that bucket's events, %)
/// against the objective, over the SLO window.
fn sli_chart(burn: &[BurnPoint], objective: f64) -> impl IntoView + use<> {
    let points: Vec<(i64, Option<f64>)> = burn
        .windows(2)
        .map(|w| {
            let total = w[1].total.saturating_sub(w[0].total);
            let bad = w[1].bad.saturating_sub(w[0].bad);
            (
                w[1].time_ns,
                (total > 0).then(|| 100.0 * (1.0 - bad as f64 / total as f64)),
            )
        })
        .collect();
    let (from, to) = match (burn.first(), burn.last()) {
        (Some(a), Some(b)) if b.time_ns > a.time_ns => (a.time_ns, b.time_ns),
        _ => return view! { <p class="muted">"No SLI history in the window yet."</p> }.into_any(),
    };
    let objective_pct = objective * 100.0;
    let worst = points
        .iter()
        .filter_map(|p| p.1)
        .fold(objective_pct, f64::min);
    // Room below the worst bucket and the objective line, on a round step.
    let gap = (100.0 - worst).max(0.01) * 1.25;
    let step = charts::nice_max(gap / 4.0);
    let lo = ((100.0 - gap) / step).floor() * step;
    let lines = vec![
        charts::Line {
            name: "SLI".into(),
            points,
        },
        charts::Line {
            name: "objective".into(),
            points: vec![(from, Some(objective_pct)), (to, Some(objective_pct))],
        },
    ];
    view! {
        <TimeSeries id="sli".to_string() title="SLI over the window".to_string() unit="% good per bucket".to_string()
            from_ns=from to_ns=to lines=lines y_range=(lo.max(0.0), 100.0)/>
    }
    .into_any()
}

/// `GET /incidents`: every incident with its timeline.
pub async fn incident_list(State(s): State<WebState>, Query(p): Query<ViewParams>) -> Response {
    let view = match p.view() {
        Ok(v) => v,
        Err(r) => return r,
    };
    let list = incidents(&s, 200);
    let q = view.query.clone();
    let body = view! {
        <h1>"Incidents"</h1>
        <section><IncidentRows incidents=list.clone() query=q.clone()/></section>
        {list
            .into_iter()
            .map(|i| {
                let id = format!("incident-{}", i.id);
                let slo_href = format!("/slos/{}?{q}", i.slo);
                view! {
                    <section id=id>
                        <h2><a href=format!("/incidents/{}?{q}", i.id)>{format!("#{}", i.id)}</a> " " <a href=slo_href>{i.slo.clone()}</a> " " <StateBadge state=i.severity.clone()/> " " <StateBadge state=i.state.clone()/></h2>
                        <p>{i.summary.clone()}</p>
                        {i.acknowledged_by.clone().map(|by| view! { <p class="muted">"acknowledged by " {by}</p> })}
                        {(i.state == "open").then(|| view! { <p><IncidentAction id=i.id action="ack".to_string()/></p> })}
                        {(i.state != "resolved").then(|| {
                            let silence = format!(
                                "/silences?{q}&matchers={}",
                                url_encode(&format!("slo=\"{}\"", i.slo))
                            );
                            view! {
                                <p>
                                    <IncidentAction id=i.id action="resolve".to_string()/>
                                    " " <a class="silence-link" href=silence>"Silence its notifications…"</a>
                                </p>
                            }
                        })}
                        <Timeline entries=i.timeline.clone()/>
                    </section>
                }
            })
            .collect_view()}
    }
    .to_html();
    page("Incidents", Some(&view), "/incidents", body)
}

/// An incident's timeline: when (ago, exact time on hover), event, detail
/// with links to the example traces.
#[component]
fn Timeline(entries: Vec<slo_engine::incidents::TimelineEntry>) -> impl IntoView {
    view! {
        <table>
            <tr><th>"when"</th><th>"event"</th><th>"detail"</th></tr>
            {entries
                .iter()
                .map(|t| view! {
                    <tr>
                        <td title=slo_engine::notify::rfc3339(t.at_ns)>{ago(t.at_ns)}</td>
                        <td>{t.event.clone()}</td>
                        <td class="muted">{timeline_detail(&t.detail)} {trace_links(&t.detail)}</td>
                    </tr>
                })
                .collect_view()}
        </table>
    }
}

/// Links to the example traces of an `evidence` entry.
fn trace_links(d: &serde_json::Value) -> impl IntoView + use<> {
    let ids: Vec<String> = d
        .get("traces")
        .and_then(|t| t.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|t| t["trace_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (!ids.is_empty()).then(|| {
        view! {
            <span class="traces">"example traces: "
                {ids
                    .into_iter()
                    .map(|id| {
                        let href = format!("/traces/{id}");
                        let short = id[..id.len().min(8)].to_string();
                        view! { <a class="trace-link" href=href>{short}</a> " " }
                    })
                    .collect_view()}
            </span>
        }
    })
}

fn timeline_detail(d: &serde_json::Value) -> String {
    let mut parts = Vec::new();
    if let Some(ops) = d.get("operations").and_then(|o| o.as_array()) {
        let top: Vec<String> = ops
            .iter()
            .map(|o| {
                format!(
                    "{} {} {}/{} bad ({:.0}%)",
                    o["service"].as_str().unwrap_or(""),
                    o["operation"].as_str().unwrap_or(""),
                    o["bad"],
                    o["total"],
                    o["share_of_bad"].as_f64().unwrap_or(0.0) * 100.0
                )
            })
            .collect();
        if !top.is_empty() {
            parts.push(format!("top operations: {}", top.join("; ")));
        }
        if let Some(n) = d.get("logs").and_then(|l| l.as_array()).map(|l| l.len()) {
            parts.push(format!("{n} log records of the example traces"));
        }
    }
    for key in [
        "state", "target", "status", "by", "note", "attempts", "error",
    ] {
        if let Some(v) = d.get(key).filter(|v| !v.is_null()) {
            parts.push(format!(
                "{key}: {}",
                v.as_str().map_or(v.to_string(), str::to_string)
            ));
        }
    }
    if let Some(b) = d.get("current_burn").and_then(|v| v.as_f64()) {
        parts.push(format!("burn {b:.2}x"));
    }
    if let Some(r) = d.get("budget_remaining").and_then(|v| v.as_f64()) {
        parts.push(format!("budget left {:.1}%", r * 100.0));
    }
    parts.join(", ")
}
