//! SLO status at an instant: SLI, error budget, burn rate per window and the
//! alert state of every tier, computed exactly (event-weighted counts of
//! good and bad events, never an average of ratios) in one scan of the
//! store per SLO.

use std::collections::BTreeSet;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use serde::Serialize;
use store::Store;
use store::sql::{QueryError, QueryLimits};

use crate::burn::{Severity, Tier, burn_rate};
use crate::openslo::Slo;

/// Counts over one window ending at the evaluation time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowCounts {
    /// Window length, seconds.
    pub window_secs: u64,
    /// Events.
    pub total: u64,
    /// Bad events.
    pub bad: u64,
    /// Burn rate over the window; `None` without events.
    pub burn_rate: Option<f64>,
}

/// One tier at the evaluation time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierStatus {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// Long window, seconds.
    pub long_secs: u64,
    /// Short window, seconds.
    pub short_secs: u64,
    /// Both windows must burn faster than this.
    pub factor: f64,
    /// Burn over the long window.
    pub long_burn: Option<f64>,
    /// Burn over the short window.
    pub short_burn: Option<f64>,
    /// Events in the long window.
    pub long_events: u64,
    /// Fewer events than the SLO's `minEvents` in the long window.
    pub insufficient_data: bool,
    /// Both windows above the factor, with enough data.
    pub firing: bool,
}

/// The alert state of an SLO: the most severe firing tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// Not enough events to judge any tier.
    InsufficientData,
    /// No tier fires.
    Ok,
    /// A ticket tier fires.
    Ticket,
    /// A page tier fires.
    Page,
}

impl AlertState {
    /// `ok`, `ticket`, `page`, `insufficient_data`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::InsufficientData => "insufficient_data",
            AlertState::Ok => "ok",
            AlertState::Ticket => "ticket",
            AlertState::Page => "page",
        }
    }
}

/// Everything about one SLO at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    /// SLO name.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Service.
    pub service: String,
    /// Objective, e.g. 0.999.
    pub objective: f64,
    /// SLO window, seconds.
    pub window_secs: u64,
    /// `ratio` or `latency lte 0.3 s`.
    pub sli_kind: String,
    /// Evaluation time, ns since the epoch.
    pub at_ns: i64,
    /// Events in the SLO window.
    pub total: u64,
    /// Bad events in the SLO window.
    pub bad: u64,
    /// Share of good events over the SLO window; `None` without events.
    pub sli: Option<f64>,
    /// Allowed bad events in the window: (1 - objective) x total.
    pub budget_events: f64,
    /// Share of the budget spent (bad / allowed); can exceed 1.
    pub budget_consumed: Option<f64>,
    /// 1 - consumed.
    pub budget_remaining: Option<f64>,
    /// Burn over the shortest page tier's long window (the "current" burn).
    pub current_burn: Option<f64>,
    /// Seconds until the budget is gone at the current burn.
    pub time_to_exhaustion_secs: Option<f64>,
    /// Counts per window (the SLO window and each tier's windows).
    pub windows: Vec<WindowCounts>,
    /// Each tier.
    pub tiers: Vec<TierStatus>,
    /// Overall alert state.
    pub state: AlertState,
    /// Load-time warnings.
    pub warnings: Vec<String>,
}

/// Counts, per window length, the SLI's events ending at `at_ns`.
async fn count_windows(
    store: &Store,
    slo: &Slo,
    windows: &[Duration],
    at_ns: i64,
) -> Result<Vec<(u64, u64)>, QueryError> {
    let longest = windows.iter().max().copied().unwrap_or_default();
    let from = at_ns - longest.as_nanos() as i64;
    let mut cols = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        let start = at_ns - w.as_nanos() as i64;
        cols.push(format!(
            "sum(CASE WHEN start_time >= to_timestamp_nanos({start}) THEN 1 ELSE 0 END) AS t{i}, \
             sum(CASE WHEN start_time >= to_timestamp_nanos({start}) AND ({bad}) THEN 1 ELSE 0 END) AS b{i}",
            bad = slo.sli.bad
        ));
    }
    let sql = format!(
        "SELECT {} FROM spans WHERE ({}) AND start_time >= to_timestamp_nanos({from}) AND start_time < to_timestamp_nanos({at_ns})",
        cols.join(", "),
        slo.sli.total
    );
    let limits = QueryLimits {
        max_rows: 1,
        timeout_secs: 120.0,
        ..QueryLimits::default()
    };
    let result = store::sql::run(store, &sql, &limits).await?;
    let batch = result.batches.iter().find(|b| b.num_rows() > 0);
    let value = |col: usize| -> u64 {
        batch
            .and_then(|b| {
                let c = b.column(col);
                let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Int64).ok()?;
                let a = c.as_primitive::<Int64Type>();
                (!a.is_null(0)).then(|| a.value(0).max(0) as u64)
            })
            .unwrap_or(0)
    };
    Ok((0..windows.len())
        .map(|i| (value(2 * i), value(2 * i + 1)))
        .collect())
}

/// Evaluates `slo` at `at_ns`.
pub async fn evaluate(store: &Store, slo: &Slo, at_ns: i64) -> Result<SloStatus, QueryError> {
    let mut lengths: BTreeSet<Duration> = BTreeSet::new();
    lengths.insert(slo.window);
    for t in &slo.tiers {
        lengths.insert(t.long);
        lengths.insert(t.short);
    }
    let lengths: Vec<Duration> = lengths.into_iter().collect();
    let counts = count_windows(store, slo, &lengths, at_ns).await?;
    let windows: Vec<WindowCounts> = lengths
        .iter()
        .zip(&counts)
        .map(|(w, (total, bad))| WindowCounts {
            window_secs: w.as_secs(),
            total: *total,
            bad: *bad,
            burn_rate: burn_rate(*bad, *total, slo.objective),
        })
        .collect();
    let find = |d: Duration| {
        windows
            .iter()
            .find(|w| w.window_secs == d.as_secs())
            .copied()
            .expect("every window was counted")
    };
    Ok(status_from_counts(
        slo,
        at_ns,
        &find(slo.window),
        &windows,
        find,
    ))
}

/// The pure part of [`evaluate`]: status from window counts.
pub fn status_from_counts(
    slo: &Slo,
    at_ns: i64,
    slo_window: &WindowCounts,
    windows: &[WindowCounts],
    window: impl Fn(Duration) -> WindowCounts,
) -> SloStatus {
    let tiers: Vec<TierStatus> = slo
        .tiers
        .iter()
        .map(|t: &Tier| {
            let long = window(t.long);
            let short = window(t.short);
            let insufficient = long.total < slo.min_events;
            let above = |b: Option<f64>| b.is_some_and(|b| b > t.factor);
            TierStatus {
                severity: match t.severity {
                    Severity::Page => "page",
                    Severity::Ticket => "ticket",
                },
                long_secs: t.long.as_secs(),
                short_secs: t.short.as_secs(),
                factor: t.factor,
                long_burn: long.burn_rate,
                short_burn: short.burn_rate,
                long_events: long.total,
                insufficient_data: insufficient,
                firing: !insufficient && above(long.burn_rate) && above(short.burn_rate),
            }
        })
        .collect();
    let state = if tiers.iter().any(|t| t.firing && t.severity == "page") {
        AlertState::Page
    } else if tiers.iter().any(|t| t.firing) {
        AlertState::Ticket
    } else if !tiers.is_empty() && tiers.iter().all(|t| t.insufficient_data) {
        AlertState::InsufficientData
    } else {
        AlertState::Ok
    };
    let budget_events = (1.0 - slo.objective) * slo_window.total as f64;
    let budget_consumed = (slo_window.total > 0).then(|| slo_window.bad as f64 / budget_events);
    let current = slo
        .tiers
        .iter()
        .filter(|t| t.severity == Severity::Page)
        .map(|t| t.long)
        .min()
        .or_else(|| slo.tiers.iter().map(|t| t.long).min())
        .map(&window);
    let current_burn = current.and_then(|w| w.burn_rate);
    let budget_remaining = budget_consumed.map(|c| 1.0 - c);
    let time_to_exhaustion_secs = match (budget_remaining, current_burn) {
        (Some(r), Some(b)) if b > 0.0 => Some((r.max(0.0)) * slo.window.as_secs_f64() / b),
        _ => None,
    };
    SloStatus {
        name: slo.name.clone(),
        display_name: slo.display_name.clone(),
        service: slo.service.clone(),
        objective: slo.objective,
        window_secs: slo.window.as_secs(),
        sli_kind: slo.sli.kind.clone(),
        at_ns,
        total: slo_window.total,
        bad: slo_window.bad,
        sli: (slo_window.total > 0).then(|| 1.0 - slo_window.bad as f64 / slo_window.total as f64),
        budget_events,
        budget_consumed,
        budget_remaining,
        current_burn,
        time_to_exhaustion_secs,
        windows: windows.to_vec(),
        tiers,
        state,
        warnings: slo.warnings.clone(),
    }
}

/// Cumulative events and bad events of an SLO over its window, in `points`
/// equal buckets ending at `at_ns` (for the error-budget burn-down chart).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BurnPoint {
    /// End of the bucket, ns since the epoch.
    pub time_ns: i64,
    /// Events from the window start to here.
    pub total: u64,
    /// Bad events from the window start to here.
    pub bad: u64,
}

/// The burn-down series of `slo` at `at_ns` (one scan, `points` buckets).
pub async fn burndown(
    store: &Store,
    slo: &Slo,
    at_ns: i64,
    points: usize,
) -> Result<Vec<BurnPoint>, QueryError> {
    let points = points.clamp(2, 500) as i64;
    let from = at_ns - slo.window.as_nanos() as i64;
    let step = ((at_ns - from) / points).max(1);
    let sql = format!(
        "SELECT CAST((CAST(start_time AS BIGINT) - {from}) / {step} AS BIGINT) AS b, count(*) AS t, \
         sum(CASE WHEN ({bad}) THEN 1 ELSE 0 END) AS e \
         FROM spans WHERE ({total}) AND start_time >= to_timestamp_nanos({from}) AND start_time < to_timestamp_nanos({at_ns}) \
         GROUP BY 1 ORDER BY 1",
        bad = slo.sli.bad,
        total = slo.sli.total
    );
    let limits = QueryLimits {
        max_rows: points as usize + 1,
        timeout_secs: 120.0,
        ..QueryLimits::default()
    };
    let result = store::sql::run(store, &sql, &limits).await?;
    let mut per = vec![(0u64, 0u64); points as usize];
    for batch in &result.batches {
        let col = |i: usize| {
            arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Int64)
                .map(|c| c.as_primitive::<Int64Type>().clone())
        };
        let (Ok(b), Ok(t), Ok(e)) = (col(0), col(1), col(2)) else {
            continue;
        };
        for r in 0..batch.num_rows() {
            let i = b.value(r).clamp(0, points - 1) as usize;
            per[i].0 += t.value(r).max(0) as u64;
            per[i].1 += if e.is_null(r) {
                0
            } else {
                e.value(r).max(0) as u64
            };
        }
    }
    let mut total = 0;
    let mut bad = 0;
    Ok(per
        .into_iter()
        .enumerate()
        .map(|(i, (t, e))| {
            total += t;
            bad += e;
            BurnPoint {
                time_ns: from + (i as i64 + 1) * step,
                total,
                bad,
            }
        })
        .collect())
}
