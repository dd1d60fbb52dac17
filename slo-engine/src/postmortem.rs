//! Postmortem drafts: from an incident, a Markdown document with its
//! timeline (opened, escalated, acknowledged, resolved, by whom), the
//! burn over the incident as a text chart, the impact (events and bad
//! events while it was open, the share of the error budget they spent),
//! the evidence gathered (top operations, example traces, their logs) and
//! empty sections for the cause and the action items.

use std::fmt::Write as _;

use serde_json::Value;

use crate::incidents::Incident;
use crate::notify::rfc3339;
use crate::openslo::Slo;

/// What the incident cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Impact {
    /// Start and end (resolution, or now) of the incident, ns.
    pub from_ns: i64,
    /// End, ns.
    pub to_ns: i64,
    /// Events while it was open.
    pub total: u64,
    /// Bad events while it was open.
    pub bad: u64,
    /// Allowed bad events over the SLO window ending at `to_ns`.
    pub budget_events: f64,
}

impl Impact {
    /// The incident's bad events as a share of the window's budget.
    pub fn budget_spent(&self) -> Option<f64> {
        (self.budget_events > 0.0).then(|| self.bad as f64 / self.budget_events)
    }
}

/// One point of the burn chart: time, burn rate over `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnStep {
    /// Evaluation time, ns.
    pub at_ns: i64,
    /// Burn rate over the window ending there (`None` without events).
    pub burn: Option<f64>,
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// A short description of a timeline entry's detail.
fn detail(d: &Value) -> String {
    let mut parts = Vec::new();
    for key in ["state", "note", "target", "status", "error"] {
        if let Some(v) = d.get(key).filter(|v| !v.is_null()) {
            parts.push(format!("{key}: {}", text(v)));
        }
    }
    if let Some(b) = d.get("burn").filter(|v| !v.is_null()) {
        parts.push(format!("burn: {b}"));
    }
    parts.join("; ")
}

/// The draft, in Markdown. `external` is the server's external URL (for
/// links); `burn` the burn-chart points over `window_secs`.
pub fn render(
    slo: &Slo,
    inc: &Incident,
    impact: &Impact,
    burn: &[BurnStep],
    window_secs: u64,
    external: &str,
) -> String {
    let mut o = String::new();
    let ext = external.trim_end_matches('/');
    let _ = writeln!(
        o,
        "# Postmortem (draft): {} {} incident #{}\n",
        slo.display_name, inc.severity, inc.id
    );
    let _ = writeln!(
        o,
        "- **SLO**: {} (`{}`), objective {}% over {}; service {}",
        slo.display_name,
        slo.name,
        slo.objective * 100.0,
        slo.time_window.describe(),
        slo.service
    );
    let _ = writeln!(o, "- **Summary**: {}", inc.summary);
    let _ = writeln!(
        o,
        "- **State**: {}{}",
        inc.state,
        inc.acknowledged_by
            .as_ref()
            .map(|b| format!(" (acknowledged by {b})"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "- **Incident**: {ext}/incidents/{}", inc.id);
    if let Some(r) = slo
        .annotations_for(crate::burn::Severity::of_incident(&inc.severity))
        .get("runbook_url")
    {
        let _ = writeln!(o, "- **Runbook**: {r}");
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## Timeline (UTC)\n");
    let _ = writeln!(o, "| time | event | by | detail |");
    let _ = writeln!(o, "|---|---|---|---|");
    for t in inc.timeline.iter().filter(|t| t.event != "evidence") {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            rfc3339(t.at_ns),
            t.event,
            cell(&t.detail.get("by").map(text).unwrap_or_default()),
            cell(&detail(&t.detail))
        );
    }
    let _ = writeln!(o);

    let minutes = (impact.to_ns - impact.from_ns).max(0) / 60_000_000_000;
    let _ = writeln!(o, "## Impact\n");
    let _ = writeln!(
        o,
        "- **Duration**: {} ({} to {}{})",
        crate::evaluate::human_span((minutes * 60) as u64),
        rfc3339(impact.from_ns),
        rfc3339(impact.to_ns),
        if inc.resolved_ns.is_none() {
            ", still open"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "- **Events while open**: {}, of them bad: {}{}",
        impact.total,
        impact.bad,
        if impact.total > 0 {
            format!(" ({:.2}%)", impact.bad as f64 * 100.0 / impact.total as f64)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        o,
        "- **Error budget spent**: {} of the budget of the SLO window ending then ({:.1} bad events allowed)\n",
        impact
            .budget_spent()
            .map_or_else(|| "-".into(), |s| format!("{:.1}%", s * 100.0)),
        impact.budget_events
    );

    let _ = writeln!(
        o,
        "## Burn rate ({} window)\n",
        crate::evaluate::human_span(window_secs)
    );
    let peak = burn
        .iter()
        .filter_map(|b| b.burn)
        .fold(0.0f64, f64::max)
        .max(1.0);
    let _ = writeln!(o, "```");
    for b in burn {
        let bar = b
            .burn
            .map(|x| "#".repeat(((x / peak) * 40.0).round() as usize))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{} {:>9} {bar}",
            &rfc3339(b.at_ns)[..16],
            b.burn.map_or_else(|| "-".into(), |x| format!("{x:.2}x"))
        );
    }
    let _ = writeln!(o, "```\n");

    let _ = writeln!(o, "## Evidence\n");
    let evidence = inc
        .timeline
        .iter()
        .rev()
        .find(|t| t.event == "evidence")
        .map(|t| &t.detail);
    match evidence {
        None => {
            let _ = writeln!(o, "No evidence was recorded.\n");
        }
        Some(ev) => {
            let list = |k: &str| ev[k].as_array().cloned().unwrap_or_default();
            let _ = writeln!(o, "### Operations with the most bad events\n");
            let _ = writeln!(
                o,
                "| service | operation | bad | total | share of the bad |"
            );
            let _ = writeln!(o, "|---|---|---:|---:|---:|");
            for op in list("operations") {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {:.0}% |",
                    cell(&text(&op["service"])),
                    cell(&text(&op["operation"])),
                    op["bad"],
                    op["total"],
                    op["share_of_bad"].as_f64().unwrap_or(0.0) * 100.0
                );
            }
            let _ = writeln!(o, "\n### Example failing traces\n");
            for t in list("traces") {
                let _ = writeln!(
                    o,
                    "- [{}]({ext}/traces/{}) {} {} at {}: {}",
                    text(&t["trace_id"]),
                    text(&t["trace_id"]),
                    cell(&text(&t["service"])),
                    cell(&text(&t["operation"])),
                    t["start_ns"].as_i64().map(rfc3339).unwrap_or_default(),
                    text(&t["status_code"])
                );
            }
            let logs = list("logs");
            let _ = writeln!(o, "\n### Their logs\n");
            if logs.is_empty() {
                let _ = writeln!(o, "The example traces wrote no logs.");
            }
            for l in logs {
                let _ = writeln!(
                    o,
                    "- {} {} {}: {}",
                    l["time_ns"].as_i64().map(rfc3339).unwrap_or_default(),
                    cell(&text(&l["service"])),
                    text(&l["severity"]),
                    cell(&text(&l["body"]))
                );
            }
            let _ = writeln!(o);
        }
    }
    let _ = writeln!(o, "## Cause\n\n_To be written._\n");
    let _ = writeln!(o, "## What went well, what did not\n\n_To be written._\n");
    let _ = writeln!(o, "## Action items\n");
    let _ = writeln!(o, "| action | owner | due | ticket |");
    let _ = writeln!(o, "|---|---|---|---|");
    let _ = writeln!(o, "| | | | |");
    o
}
