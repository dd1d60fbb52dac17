//! `/logs`: log search (text or regex, minimum severity, service, trace id,
//! attribute, the view's range), newest first, each record linking to its
//! trace.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use serde::Deserialize;
use slo_engine::openslo::SEVERITIES;

use super::traces::ts;
use super::{View, attribute_filter, error_page, explore_status, non_empty, page};
use crate::WebState;
use analytics::search::{self as explore, LogSearch};

/// `/logs` form fields (besides the view's range).
#[derive(Debug, Default, Deserialize)]
pub struct LogForm {
    /// Text the body contains.
    pub q: Option<String>,
    /// A regular expression the body matches.
    pub regex: Option<String>,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL` or empty.
    pub severity: Option<String>,
    /// Service.
    pub service: Option<String>,
    /// Trace id.
    pub trace_id: Option<String>,
    /// `key=value`.
    pub attribute: Option<String>,
}

/// Log records as a table (time, service, severity, body, trace link), or
/// a line saying there are none.
pub(crate) fn log_table(id: &str, rows: Vec<serde_json::Value>, q: &str) -> AnyView {
    if rows.is_empty() {
        return view! { <p class="muted">"No log records match in this range."</p> }.into_any();
    }
    view! {
        <table id=id.to_string()>
            <tr><th>"time"</th><th>"service"</th><th>"severity"</th><th>"body"</th><th>"trace"</th></tr>
            {rows
                .into_iter()
                .map(|l| {
                    let time = ts(&l["time"])
                        .map(slo_engine::notify::rfc3339)
                        .unwrap_or_default();
                    let sev = l["severity_text"].as_str().unwrap_or("").to_string();
                    let trace = l["trace_id"].as_str().unwrap_or("").to_string();
                    let link = (!trace.is_empty()).then(|| {
                        let href = format!("/traces/{trace}?{q}");
                        view! { <a class="trace-link" href=href>{trace[..trace.len().min(16)].to_string()}</a> }
                    });
                    view! {
                        <tr>
                            <td>{time}</td>
                            <td>{l["service_name"].as_str().unwrap_or("").to_string()}</td>
                            <td class={if sev == "ERROR" || sev == "FATAL" { "firing" } else { "" }}>{sev.clone()}</td>
                            <td>{l["body"].as_str().map_or(l["body"].to_string(), str::to_string)}</td>
                            <td>{link}</td>
                        </tr>
                    }
                })
                .collect_view()}
        </table>
    }
    .into_any()
}

/// `GET /logs`.
pub async fn search(
    State(s): State<WebState>,
    view: View,
    Query(f): Query<LogForm>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Response {
    let severity = non_empty(&f.severity).map(|s| s.to_ascii_uppercase());
    let min_severity = match &severity {
        None => None,
        Some(name) => match SEVERITIES.iter().find(|(n, _)| n == name) {
            Some((_, n)) => Some(*n),
            None => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Bad search",
                    format!("severity {name:?}: use TRACE, DEBUG, INFO, WARN, ERROR or FATAL"),
                );
            }
        },
    };
    let attributes = match attribute_filter(&f.attribute) {
        Ok(a) => a,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Bad search", e),
    };
    let search = LogSearch {
        q: non_empty(&f.q),
        regex: non_empty(&f.regex),
        min_severity,
        service: non_empty(&f.service),
        trace_id: non_empty(&f.trace_id),
        limit: Some(200),
        ..Default::default()
    };
    let result = explore::search_logs(
        &s.store,
        Some(&s.rollups.texts),
        &search,
        &attributes,
        view.window.from_ns,
        view.window.to_ns,
    )
    .await;
    let q = view.query.clone();
    let results = match result {
        Err(e) => {
            return error_page(explore_status(&e), "Log search", e.to_string());
        }
        Ok(v) => {
            let rows = v["logs"].as_array().cloned().unwrap_or_default();
            log_table("log-results", rows, &q)
        }
    };
    let val = |o: &Option<String>| o.clone().unwrap_or_default();
    let chosen = severity.unwrap_or_default();
    let body = view! {
        <h1>"Logs"</h1>
        <section>
            <form method="get" action="/logs" class="search">
                {view.hidden_fields()}
                <label>"text " <input name="q" value=val(&f.q)/></label>
                <label>" regex " <input name="regex" value=val(&f.regex)/></label>
                <label>" severity ≥ "
                    <select name="severity">
                        <option value="" selected=chosen.is_empty()>"any"</option>
                        {SEVERITIES
                            .iter()
                            .map(|(n, _)| view! { <option value=*n selected=chosen == *n>{*n}</option> })
                            .collect_view()}
                    </select>
                </label>
                <label>" service " <input name="service" value=val(&f.service)/></label>
                <label>" trace " <input name="trace_id" size="34" value=val(&f.trace_id)/></label>
                <label>" attribute " <input name="attribute" placeholder="key=value" value=val(&f.attribute)/></label>
                " " <button type="submit">"Search"</button>
            </form>
        </section>
        <section>{results}</section>
    }
    .to_html();
    page(
        "Logs",
        Some(&view),
        &super::own_path("/logs", raw.as_deref()),
        body,
    )
}
