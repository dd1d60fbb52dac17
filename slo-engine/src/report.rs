//! Monthly SLO reports: attainment against the objective over a calendar
//! month in the SLO's time zone (a calendar window's, else UTC), the
//! error budget used, each incident of the month with its duration and
//! the budget it spent, and the operations with the most bad events.
//! Rendered as Markdown or CSV (`burnwatch slo report`) and as a page.

use std::fmt::Write as _;

use chrono::{Datelike, TimeZone};
use serde::{Deserialize, Serialize};
use store::Store;

use crate::evidence::OperationBurn;
use crate::incidents::Incident;
use crate::openslo::Slo;
use crate::sli::SliCounter;
use crate::window::SloWindow;

/// One incident of the month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentLine {
    /// Incident id.
    pub id: i64,
    /// `page` or `ticket`.
    pub severity: String,
    /// When it opened, ns.
    pub opened_ns: i64,
    /// When it resolved, ns (`None`: still open).
    pub resolved_ns: Option<i64>,
    /// Its time inside the month (up to now when still open), seconds.
    pub duration_secs: u64,
    /// Events while it was open (inside the month).
    pub total: u64,
    /// Bad events while it was open (inside the month).
    pub bad: u64,
    /// Its bad events as a share of the month's error budget.
    pub budget_spent: Option<f64>,
}

/// An SLO's month.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonthReport {
    /// SLO name.
    pub slo: String,
    /// Display name.
    pub display_name: String,
    /// Objective, e.g. 0.999.
    pub objective: f64,
    /// `YYYY-MM`.
    pub month: String,
    /// The time zone the month is taken in.
    pub time_zone: String,
    /// Month start, ns.
    pub from_ns: i64,
    /// Month end (exclusive), or now for the current month, ns.
    pub to_ns: i64,
    /// What `total` and `bad` count: `events`, or `slices` (Timeslices).
    #[serde(default = "events_unit")]
    pub unit: String,
    /// Events (slices) in the month.
    pub total: u64,
    /// Bad events in the month.
    pub bad: u64,
    /// Share of good events; `None` without events.
    pub attainment: Option<f64>,
    /// Whether the attainment meets the objective.
    pub met: Option<bool>,
    /// Allowed bad events: (1 - objective) x events.
    pub budget_events: f64,
    /// Share of the budget used (bad / allowed); can exceed 1.
    pub budget_used: Option<f64>,
    /// The month's incidents, oldest first.
    pub incidents: Vec<IncidentLine>,
    /// Operations with the most bad events (span SLIs).
    pub top_operations: Vec<OperationBurn>,
}

fn events_unit() -> String {
    "events".into()
}

/// `[start, end)` of `month` (`YYYY-MM`) in `tz`, ns.
pub fn month_range(month: &str, tz: chrono_tz::Tz) -> Result<(i64, i64), String> {
    let bad = || format!("{month:?}: a month is YYYY-MM, e.g. 2026-11");
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&m) || !(1970..=9999).contains(&y) {
        return Err(bad());
    }
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let at = |y: i32, m: u32| -> Result<i64, String> {
        tz.with_ymd_and_hms(y, m, 1, 0, 0, 0)
            .earliest()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(bad)
    };
    Ok((at(y, m)?, at(ny, nm)?))
}

/// The month before the one holding `now_ns`, in `tz` (`YYYY-MM`).
pub fn previous_month(now_ns: i64, tz: chrono_tz::Tz) -> String {
    let now = tz.timestamp_nanos(now_ns);
    let (y, m) = if now.month() == 1 {
        (now.year() - 1, 12)
    } else {
        (now.year(), now.month() - 1)
    };
    format!("{y:04}-{m:02}")
}

/// The time zone of `slo`'s months.
pub fn time_zone(slo: &Slo) -> chrono_tz::Tz {
    match &slo.time_window {
        SloWindow::Calendar(c) => c.tz,
        SloWindow::Rolling(_) => chrono_tz::UTC,
    }
}

/// The report of `slo` for `month`, counted up to `now_ns`; `incidents`
/// are all incidents (those of other SLOs and months are left out).
pub async fn month_report(
    store: &Store,
    counter: &SliCounter,
    slo: &Slo,
    incidents: &[Incident],
    corrections: &[crate::corrections::Correction],
    month: &str,
    now_ns: i64,
) -> Result<MonthReport, String> {
    let tz = time_zone(slo);
    let (from, end) = month_range(month, tz)?;
    if from >= now_ns {
        return Err(format!("{month} has not started yet"));
    }
    let to = end.min(now_ns);
    let mut mine: Vec<&Incident> = incidents
        .iter()
        .filter(|i| i.slo == slo.name && i.opened_ns < to && i.resolved_ns.is_none_or(|r| r > from))
        .collect();
    mine.sort_by_key(|i| (i.opened_ns, i.id));
    let mut ranges = vec![(from, to)];
    for i in &mine {
        ranges.push((i.opened_ns.max(from), i.resolved_ns.unwrap_or(to).min(to)));
    }
    // Corrections and maintenance windows are left out, as live.
    let excluded = crate::corrections::excluded_ranges(slo, corrections);
    // Timeslices count slices: those overlapping the month (or an
    // incident) that ended by `to`.
    let counts = crate::evaluate::count_report(counter, slo, &ranges, to, &excluded)
        .await
        .map_err(|e| e.to_string())?;
    let (total, bad) = counts[0];
    let budget_events = (1.0 - slo.objective) * total as f64;
    let share = |b: u64| (budget_events > 0.0).then(|| b as f64 / budget_events);
    let attainment = (total > 0).then(|| 1.0 - bad as f64 / total as f64);
    let lines = mine
        .iter()
        .zip(&counts[1..])
        .map(|(i, &(t, b))| {
            let (a, z) = (i.opened_ns.max(from), i.resolved_ns.unwrap_or(to).min(to));
            IncidentLine {
                id: i.id,
                severity: i.severity.clone(),
                opened_ns: i.opened_ns,
                resolved_ns: i.resolved_ns,
                duration_secs: ((z - a).max(0) / 1_000_000_000) as u64,
                total: t,
                bad: b,
                budget_spent: share(b),
            }
        })
        .collect();
    let top_operations = crate::evidence::gather(store, slo, from, to)
        .await
        .map(|e| e.operations)
        .unwrap_or_default();
    Ok(MonthReport {
        slo: slo.name.clone(),
        display_name: slo.display_name.clone(),
        objective: slo.objective,
        month: month.to_string(),
        time_zone: tz.name().to_string(),
        from_ns: from,
        to_ns: to,
        unit: match slo.budgeting {
            crate::window::Budgeting::Occurrences => events_unit(),
            crate::window::Budgeting::Timeslices { .. } => "slices".into(),
        },
        total,
        bad,
        attainment,
        met: attainment.map(|a| a >= slo.objective),
        budget_events,
        budget_used: share(bad),
        incidents: lines,
        top_operations,
    })
}

fn pct(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{:.*}%", digits, v * 100.0))
}

fn when(ns: i64, tz: &str) -> String {
    let tz: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    tz.timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M %Z")
        .to_string()
}

/// The report as Markdown.
pub fn to_markdown(r: &MonthReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# {}: {} ({})\n", r.display_name, r.month, r.time_zone);
    let _ = writeln!(
        o,
        "From {} to {}.\n",
        when(r.from_ns, &r.time_zone),
        when(r.to_ns, &r.time_zone)
    );
    let _ = writeln!(
        o,
        "| objective | attainment | met | {} | bad | budget used |",
        r.unit
    );
    let _ = writeln!(o, "|---:|---:|---|---:|---:|---:|");
    let _ = writeln!(
        o,
        "| {} | {} | {} | {} | {} | {} |\n",
        pct(Some(r.objective), 3),
        pct(r.attainment, 3),
        r.met.map_or("-", |m| if m { "yes" } else { "no" }),
        r.total,
        r.bad,
        pct(r.budget_used, 1)
    );
    let _ = writeln!(o, "## Incidents\n");
    if r.incidents.is_empty() {
        let _ = writeln!(o, "None.\n");
    } else {
        let _ = writeln!(
            o,
            "| # | severity | opened | resolved | duration | bad | {} | budget spent |",
            r.unit
        );
        let _ = writeln!(o, "|---:|---|---|---|---:|---:|---:|---:|");
        for i in &r.incidents {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                i.id,
                i.severity,
                when(i.opened_ns, &r.time_zone),
                i.resolved_ns
                    .map_or_else(|| "open".into(), |t| when(t, &r.time_zone)),
                crate::evaluate::human_span(i.duration_secs),
                i.bad,
                i.total,
                pct(i.budget_spent, 1)
            );
        }
        let _ = writeln!(o);
    }
    let _ = writeln!(o, "## Top bad operations\n");
    if r.top_operations.is_empty() {
        let _ = writeln!(o, "None (or not a span SLI).");
    } else {
        let _ = writeln!(o, "| service | operation | bad | events | share of bad |");
        let _ = writeln!(o, "|---|---|---:|---:|---:|");
        for op in &r.top_operations {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                op.service,
                op.operation,
                op.bad,
                op.total,
                pct(Some(op.share_of_bad), 1)
            );
        }
    }
    o
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The report as CSV: one `month` row, then one row per incident.
pub fn to_csv(r: &MonthReport) -> String {
    let mut o = String::from(
        "row,slo,month,time_zone,objective,attainment,met,events,bad,budget_used,incident,severity,opened,resolved,duration_secs,budget_spent\n",
    );
    let num = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    let _ = writeln!(
        o,
        "month,{},{},{},{},{},{},{},{},{},,,,,,",
        csv_field(&r.slo),
        r.month,
        r.time_zone,
        r.objective,
        num(r.attainment),
        r.met.map_or_else(String::new, |m| m.to_string()),
        r.total,
        r.bad,
        num(r.budget_used)
    );
    for i in &r.incidents {
        let _ = writeln!(
            o,
            "incident,{},{},{},,,,{},{},,{},{},{},{},{},{}",
            csv_field(&r.slo),
            r.month,
            r.time_zone,
            i.total,
            i.bad,
            i.id,
            i.severity,
            crate::notify::rfc3339(i.opened_ns),
            i.resolved_ns
                .map(crate::notify::rfc3339)
                .unwrap_or_default(),
            i.duration_secs,
            num(i.budget_spent)
        );
    }
    o
}
