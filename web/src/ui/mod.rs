//! The dashboard: Leptos components rendered on the server into complete
//! HTML pages, next to the JSON API. Every view is a URL (time range and
//! refresh in the query string), so a link pasted into an incident channel
//! opens the same view. Charts are SVG drawn here, no JavaScript library.
//!
//! This module holds what every page shares (the chrome, the view in the
//! URL, formatting, SLO and incident rows); each page is a module:
//!
//! - [`overview`], `/`: open incidents, SLOs, services with RED;
//! - [`slos`], `/slos` and `/slos/{name}`;
//! - [`incidents`], `/incidents` and `/incidents/{id}`;
//! - [`services`], `/services/{name}` and `/service-map`;
//! - [`traces`] and [`logs`], search and one trace;
//! - [`metrics`], `/explore/metrics`;
//! - [`query`], the SQL console;
//! - [`silences`], `/silences`;
//! - [`assets`], the wasm bundle; `charts`, SVG charts.

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
pub mod overview;
pub mod query;
pub mod services;
pub mod silences;
pub mod slos;
pub mod traces;

use charts::{BurnDown, Sparkline, TimeSeries};
use web_islands::{AutoRefresh, Cell, SortableTable};

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
.missing-nodes{border:1px solid #b3261e;background:#fdecea;color:#5f1410;padding:.5em 1em;margin:.5em 0;border-radius:4px}
.missing-nodes ul{margin:.25em 0 0 0}
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

/// A page's view, read from the query string: handlers take `view: View`
/// and a bad view is answered with the 400 page saying what is wrong.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for View {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Query(p) = Query::<ViewParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| error_page(StatusCode::BAD_REQUEST, "Bad view", e.body_text()))?;
        p.view()
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
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{} · Burnwatch</title>{refresh}<style>{STYLE}</style></head><body>{nav}<main>{banner}<div class=\"ranges muted\">{picker} {countdown}</div>{body}</main>{loader}</body></html>",
        escape(title),
        banner = crate::cluster::banner(),
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
                    let href = format!("/slos/{}?{query}", url_encode(&s.name));
                    view! {
                        <tr>
                            <td><a href=href>{s.display_name.clone()}</a></td>
                            <td class="num">{pct(Some(s.objective))}</td>
                            <td>{s.window.clone()}</td>
                            <td class="num">{pct(s.sli)}</td>
                            <td class="num">{pct(s.budget_remaining)}{s.coverage_note.clone().map(|n| view! { <br/><span class="muted coverage">{n}</span> })}</td>
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

/// Every SLO's status; a grouped SLO is one row: its worst instance's
/// status under the grouped SLO's name (its page lists every instance).
fn slo_statuses(s: &WebState) -> Vec<SloStatus> {
    let Some(engine) = s.slo.as_ref() else {
        return Vec::new();
    };
    let mut v: Vec<SloStatus> = engine
        .last_statuses()
        .into_iter()
        .filter(|st| st.instance_of.is_none())
        .collect();
    for g in engine.last_groups() {
        let Some(worst) = g.instances.first() else {
            continue;
        };
        let mut row = worst.clone();
        let over = if g.over_cap > 0 {
            format!(", {} more values not tracked", g.over_cap)
        } else {
            String::new()
        };
        row.display_name = format!(
            "{} ({} instances by {}{over})",
            g.name,
            g.instances.len(),
            g.group_by.join(", ")
        );
        row.coverage_note = Some(format!("worst instance: {}", worst.name));
        row.name = g.name.clone();
        v.push(row);
    }
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
