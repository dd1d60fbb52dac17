//! `/incidents/{id}`: one incident for whoever is on call: its state and
//! actions (acknowledge, resolve, silence), the SLO's burn now, the
//! evidence gathered when it opened or escalated (the operations with the
//! most bad events, example failing traces, their logs), and the timeline.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use serde_json::Value;
use slo_engine::notify::rfc3339;

use web_islands::IncidentAction;

use super::View;
use super::slos::BurnTable;
use super::*;
use crate::WebState;

/// The evidence entries of a timeline, newest first.
fn evidence(timeline: &[slo_engine::incidents::TimelineEntry]) -> Vec<&Value> {
    timeline
        .iter()
        .rev()
        .filter(|t| t.event == "evidence")
        .map(|t| &t.detail)
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// The newest evidence: operations, traces, logs.
fn evidence_view(ev: Option<&Value>, q: &str) -> impl IntoView + use<> {
    let Some(ev) = ev else {
        return view! { <p class="muted">"No evidence was recorded (it is gathered when an incident opens or escalates)."</p> }.into_any();
    };
    let list = |k: &str| ev[k].as_array().cloned().unwrap_or_default();
    let window = match (ev["from_ns"].as_i64(), ev["to_ns"].as_i64()) {
        (Some(a), Some(b)) => format!("from {} to {}", rfc3339(a), rfc3339(b)),
        _ => String::new(),
    };
    let ops = list("operations");
    let traces = list("traces");
    let logs = list("logs");
    view! {
        <p class="muted">"Gathered over the firing window " {window} "."</p>
        <h3>"Operations with the most bad events"</h3>
        <table id="evidence-operations">
            <tr><th>"service"</th><th>"operation"</th><th>"bad"</th><th>"total"</th><th>"share of the bad"</th></tr>
            {ops
                .into_iter()
                .map(|o| {
                    let service = text(&o["service"]);
                    let href = format!(
                        "/traces?{q}&service={}&operation={}&status=error",
                        url_encode(&service),
                        url_encode(&text(&o["operation"]))
                    );
                    view! {
                        <tr>
                            <td><a href=format!("/services/{}?{q}", url_encode(&service))>{service.clone()}</a></td>
                            <td><a href=href>{text(&o["operation"])}</a></td>
                            <td class="num firing">{o["bad"].as_u64().unwrap_or(0)}</td>
                            <td class="num">{o["total"].as_u64().unwrap_or(0)}</td>
                            <td class="num">{pct(o["share_of_bad"].as_f64())}</td>
                        </tr>
                    }
                })
                .collect_view()}
        </table>
        <h3>"Example failing traces"</h3>
        <table id="evidence-traces">
            <tr><th>"trace"</th><th>"service"</th><th>"operation"</th><th>"start"</th><th>"duration"</th><th>"status"</th></tr>
            {traces
                .into_iter()
                .map(|t| {
                    let id = text(&t["trace_id"]);
                    let status = format!(
                        "{}{}",
                        text(&t["status_code"]),
                        t["http_status"].as_i64().map(|h| format!(" (HTTP {h})")).unwrap_or_default()
                    );
                    view! {
                        <tr>
                            <td><a class="trace-link" href=format!("/traces/{id}?{q}")><code>{id.clone()}</code></a></td>
                            <td>{text(&t["service"])}</td>
                            <td>{text(&t["operation"])}</td>
                            <td>{t["start_ns"].as_i64().map(rfc3339).unwrap_or_default()}</td>
                            <td class="num">{format!("{:.1} ms", t["duration_ms"].as_f64().unwrap_or(0.0))}</td>
                            <td class="firing">{status}</td>
                        </tr>
                    }
                })
                .collect_view()}
        </table>
        <h3>"Their logs"</h3>
        {if logs.is_empty() {
            view! { <p class="muted">"The example traces wrote no logs."</p> }.into_any()
        } else {
            view! {
                <table id="evidence-logs">
                    <tr><th>"time"</th><th>"service"</th><th>"severity"</th><th>"body"</th><th>"trace"</th></tr>
                    {logs
                        .into_iter()
                        .map(|l| {
                            let id = text(&l["trace_id"]);
                            view! {
                                <tr>
                                    <td>{l["time_ns"].as_i64().map(rfc3339).unwrap_or_default()}</td>
                                    <td>{text(&l["service"])}</td>
                                    <td>{text(&l["severity"])}</td>
                                    <td>{text(&l["body"])}</td>
                                    <td><a class="trace-link" href=format!("/traces/{id}?{q}")><code>{id.clone()}</code></a></td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </table>
            }
            .into_any()
        }}
    }
    .into_any()
}

/// `GET /incidents/{id}`.
pub async fn incident(State(s): State<WebState>, Path(id): Path<i64>, view: View) -> Response {
    let engine = match engine(&s, "No incidents") {
        Ok(e) => e,
        Err(r) => return r,
    };
    let inc = match engine.incident(id) {
        Ok(Some(i)) => i,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                "Unknown incident",
                format!("No incident #{id}."),
            );
        }
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Incident",
                format!("cannot read incident #{id}: {e}"),
            );
        }
    };
    let q = view.query.clone();
    let status = engine
        .last_statuses()
        .into_iter()
        .find(|st| st.name == inc.slo);
    let definition = engine.find_slo(&inc.slo);
    let display = definition
        .as_ref()
        .map_or_else(|| inc.slo.clone(), |d| d.display_name.clone());
    // The runbook and other annotations of the SLO and its alert policy.
    let notes = definition
        .map(|d| d.annotations_for(slo_engine::burn::Severity::of_incident(&inc.severity)))
        .unwrap_or_default();
    let runbook = notes.get("runbook_url").cloned();
    let other_notes: Vec<(String, String)> = notes
        .into_iter()
        .filter(|(k, _)| k != "runbook_url")
        .collect();
    let notes_view = (runbook.is_some() || !other_notes.is_empty()).then(|| {
        view! {
            <section id="runbook">
                <h2>"Runbook"</h2>
                {match runbook {
                    Some(u) => view! { <p><a class="runbook" href=u.clone() rel="noopener">{u.clone()}</a></p> }.into_any(),
                    None => view! { <p class="muted">"No runbook_url is annotated on this SLO or its alert policy."</p> }.into_any(),
                }}
                {(!other_notes.is_empty()).then(|| view! {
                    <table class="annotations">
                        {other_notes.into_iter().map(|(k, v)| view! { <tr><th>{k}</th><td>{v}</td></tr> }).collect_view()}
                    </table>
                })}
            </section>
        }
    });
    let evidence_list = evidence(&inc.timeline);
    let newest = evidence_list.first().map(|v| (*v).clone());
    let slo_href = format!("/slos/{}?{q}", inc.slo);
    let silence = format!(
        "/silences?{q}&matchers={}",
        url_encode(&format!("slo=\"{}\"", inc.slo))
    );
    let open = inc.state != "resolved";
    let burn = match status {
        Some(st) => view! {
            <p>"SLI " {pct(st.sli)} ", budget left " {pct(st.budget_remaining)} ", state " <StateBadge state=st.state.as_str().to_string()/></p>
            <BurnTable tiers=st.tiers/>
        }
        .into_any(),
        None => view! { <p class="muted">"The SLO has not been evaluated since the start."</p> }.into_any(),
    };
    let body = view! {
        <h1>
            {format!("#{} ", inc.id)} <a href=slo_href>{display}</a> " "
            <StateBadge state=inc.severity.clone()/> " " <StateBadge state=inc.state.clone()/>
        </h1>
        <section id="incident-summary">
            <p>{inc.summary.clone()}</p>
            <p class="muted">
                {format!("opened {} ({})", rfc3339(inc.opened_ns), ago(inc.opened_ns))}
                {inc.resolved_ns.map(|r| format!(", resolved {}", rfc3339(r)))}
                {inc.acknowledged_by.clone().map(|by| format!(", acknowledged by {by}"))}
            </p>
            <p><a id="postmortem-link" href=format!("/api/v1/incidents/{}/postmortem", inc.id)>"Postmortem draft (Markdown)"</a></p>
            {(inc.state == "open").then(|| view! { <p><IncidentAction id=inc.id action="ack".to_string()/></p> })}
            {open.then(|| view! {
                <p>
                    <IncidentAction id=inc.id action="resolve".to_string()/>
                    " " <a class="silence-link" href=silence>"Silence its notifications…"</a>
                </p>
            })}
        </section>
        {notes_view}
        <section id="burn-now"><h2>"Burn now"</h2>{burn}</section>
        <section id="evidence"><h2>"Evidence"</h2>{evidence_view(newest.as_ref(), &q)}</section>
        <section id="timeline">
            <h2>"Timeline"</h2>
            <Timeline entries=inc.timeline.clone()/>
        </section>
    }
    .to_html();
    page(
        &format!("Incident #{id}"),
        Some(&view),
        &format!("/incidents/{id}"),
        body,
    )
}

/// `GET /incidents`: every incident with its timeline.
pub async fn incident_list(State(s): State<WebState>, view: View) -> Response {
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
pub(super) fn Timeline(entries: Vec<slo_engine::incidents::TimelineEntry>) -> impl IntoView {
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
pub(super) fn trace_links(d: &serde_json::Value) -> impl IntoView + use<> {
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

pub(super) fn timeline_detail(d: &serde_json::Value) -> String {
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
