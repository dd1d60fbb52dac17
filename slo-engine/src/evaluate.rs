//! SLO status at an instant: SLI, error budget, burn rate per window and the
//! alert state of every tier, computed exactly (event-weighted counts of
//! good and bad events, never an average of ratios) in one scan of the
//! store per SLO.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;
use store::sql::QueryError;

use crate::burn::{Severity, Tier, burn_rate};
use crate::openslo::Slo;
use crate::sli::SliCounter;
use crate::window::Budgeting;

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
    /// Both windows must burn faster than this (or as fast, for `gte`).
    pub factor: f64,
    /// `gte` (a burn equal to `factor` fires) or `gt`.
    pub op: &'static str,
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
    /// SLO window, seconds (a calendar window's nominal length).
    pub window_secs: u64,
    /// `rolling 30d` or `calendar 1M (Europe/Berlin)`.
    pub window: String,
    /// Start of the counted part of the window, ns since the epoch.
    pub window_from_ns: i64,
    /// Length of the period the budget is spread over (a calendar
    /// window's current period), seconds.
    pub period_secs: u64,
    /// `Occurrences` or `Timeslices` (then counts are slices with events).
    pub budgeting: &'static str,
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
    /// The first event (or slice with events) in the SLO window, ns;
    /// `None` without events.
    pub data_from_ns: Option<i64>,
    /// Seconds of the counted window that hold data: from the first event
    /// to the evaluation time.
    pub coverage_secs: u64,
    /// Set when the data covers less than 99% of the counted window, e.g.
    /// "budget over 3 h 12 min of a 30-day window": budget and burn are
    /// then over that much history only.
    pub coverage_note: Option<String>,
    /// Corrections and maintenance windows that overlap the SLO window
    /// (their events are not counted).
    pub corrections: Vec<crate::corrections::Correction>,
    /// Set while a maintenance window holds the SLO's alerts: tiers may
    /// fire, but no incident opens and nothing is sent.
    pub held_by: Option<String>,
    /// For an instance of a grouped SLO: the grouped SLO's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_of: Option<String>,
    /// For an instance of a grouped SLO: its value of each `groupBy`
    /// attribute.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub group: std::collections::BTreeMap<String, String>,
}

/// `3 h 12 min`, `2 d 4 h`, `45 min`, `30 s`.
pub fn human_span(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

impl SloStatus {
    /// Fills the coverage fields from the first event's time.
    fn set_coverage(&mut self, first_ns: Option<i64>) {
        self.data_from_ns = first_ns;
        let counted = (self.at_ns - self.window_from_ns).max(0);
        let covered = first_ns.map_or(0, |f| (self.at_ns - f.max(self.window_from_ns)).max(0));
        self.coverage_secs = (covered / 1_000_000_000) as u64;
        self.coverage_note = (counted > 0 && (covered as f64) < 0.99 * counted as f64).then(|| {
            let of = if self.window.starts_with("rolling") {
                let w = self.window_secs;
                if w.is_multiple_of(86_400) {
                    format!("a {}-day window", w / 86_400)
                } else {
                    format!("a {} window", human_span(w))
                }
            } else {
                format!(
                    "the {} of this period so far",
                    human_span((counted / 1_000_000_000) as u64)
                )
            };
            if first_ns.is_none() {
                format!("no events yet in {of}")
            } else {
                format!("budget over {} of {of}", human_span(self.coverage_secs))
            }
        });
    }
}

/// Slices of `slice_ns` in `[from, to)` (both multiples of `slice_ns`) that
/// hold events: (slice start, bad).
fn slices(
    minutes: &std::collections::BTreeMap<i64, (u64, u64)>,
    from: i64,
    to: i64,
    slice_ns: i64,
    slice_target: f64,
) -> Vec<(i64, bool)> {
    let mut out = Vec::new();
    let mut s = from;
    while s < to {
        let (mut t, mut b) = (0u64, 0u64);
        for (_, (mt, mb)) in minutes.range(s..s + slice_ns) {
            t += mt;
            b += mb;
        }
        if t > 0 {
            let good = (t - b.min(t)) as f64 / t as f64;
            out.push((s, good < slice_target));
        }
        s += slice_ns;
    }
    out
}

/// The ranges to count for `windows` less `excluded` (disjoint): the
/// windows themselves, then each window's overlap with each excluded
/// range; and, per window, the indices of its overlaps.
fn with_overlaps(
    windows: &[(i64, i64)],
    excluded: &[(i64, i64)],
) -> (Vec<(i64, i64)>, Vec<Vec<usize>>) {
    let mut ranges = windows.to_vec();
    let mut parts: Vec<Vec<usize>> = Vec::with_capacity(windows.len());
    for &(a, b) in windows {
        let mut mine = Vec::new();
        for &(x, y) in excluded {
            let (lo, hi) = (a.max(x), b.min(y));
            if lo < hi {
                mine.push(ranges.len());
                ranges.push((lo, hi));
            }
        }
        parts.push(mine);
    }
    (ranges, parts)
}

/// Each window's counts less those of its overlaps (see [`with_overlaps`]).
fn less_overlaps(counts: &[(u64, u64)], parts: &[Vec<usize>]) -> Vec<(u64, u64)> {
    parts
        .iter()
        .enumerate()
        .map(|(w, idx)| {
            let (mut t, mut b) = counts[w];
            for &i in idx {
                t = t.saturating_sub(counts[i].0);
                b = b.saturating_sub(counts[i].1);
            }
            (t, b)
        })
        .collect()
}

/// Events and bad events per window `[from, to)`, each window less its
/// overlap with every (disjoint) `excluded` range (counts add up over
/// disjoint ranges, so this is exact); and the first event of the first
/// window outside the excluded ranges.
pub(crate) async fn count_events(
    counter: &SliCounter,
    slo: &Slo,
    windows: &[(i64, i64)],
    excluded: &[(i64, i64)],
) -> Result<(Vec<(u64, u64)>, Option<i64>), QueryError> {
    let (ranges, parts) = with_overlaps(windows, excluded);
    let (counts, first) = counter.windows_and_first(&slo.sli.source, &ranges).await?;
    let first = first.filter(|f| !excluded.iter().any(|(x, y)| f >= x && f < y));
    Ok((less_overlaps(&counts, &parts), first))
}

/// Where Timeslices are counted: slice-aligned `[from, to)` covering the
/// windows up to `at_ns`.
fn slice_range(windows: &[(i64, i64)], at_ns: i64, s: i64) -> (i64, i64) {
    let up = |t: i64| t.div_euclid(s) * s + if t.rem_euclid(s) == 0 { 0 } else { s };
    let to = at_ns.div_euclid(s) * s;
    let from = windows.iter().map(|w| up(w.0)).min().unwrap_or(to).min(to);
    (from, to)
}

/// Timeslice counts per window from events per minute over
/// [`slice_range`]: slices with events (bad ones), slices that overlap an
/// excluded range left out; and the first slice with events of the first
/// window.
fn slice_counts(
    minutes: &std::collections::BTreeMap<i64, (u64, u64)>,
    windows: &[(i64, i64)],
    (from, to): (i64, i64),
    s: i64,
    slice_target: f64,
    excluded: &[(i64, i64)],
) -> (Vec<(u64, u64)>, Option<i64>) {
    let up = |t: i64| t.div_euclid(s) * s + if t.rem_euclid(s) == 0 { 0 } else { s };
    let all: Vec<(i64, bool)> = slices(minutes, from, to, s, slice_target)
        .into_iter()
        .filter(|(start, _)| !excluded.iter().any(|(x, y)| *start < *y && start + s > *x))
        .collect();
    let first = windows
        .first()
        .and_then(|w| all.iter().find(|(start, _)| *start >= up(w.0)))
        .map(|(start, _)| *start);
    let counts = windows
        .iter()
        .map(|&(a, _)| {
            let a = up(a);
            let (mut t, mut b) = (0, 0);
            for (_, bad) in all.iter().filter(|(start, _)| *start >= a) {
                t += 1;
                b += u64::from(*bad);
            }
            (t, b)
        })
        .collect();
    (counts, first)
}

/// Timeslices per window `[from, to)` for reports: slices that overlap
/// the window and end by `until`, with events (bad ones), slices that
/// overlap an excluded range left out. An Occurrences SLO counts events.
pub(crate) async fn count_report(
    counter: &SliCounter,
    slo: &Slo,
    windows: &[(i64, i64)],
    until: i64,
    excluded: &[(i64, i64)],
) -> Result<Vec<(u64, u64)>, QueryError> {
    let Budgeting::Timeslices {
        slice,
        slice_target,
    } = slo.budgeting
    else {
        return Ok(count_events(counter, slo, windows, excluded).await?.0);
    };
    let s = slice.as_nanos() as i64;
    let to = until.div_euclid(s) * s;
    let from = windows
        .iter()
        .map(|w| w.0.div_euclid(s) * s)
        .min()
        .unwrap_or(to)
        .min(to);
    let minutes = counter.minutes(&slo.sli.source, from, to).await?;
    let all: Vec<(i64, bool)> = slices(&minutes, from, to, s, slice_target)
        .into_iter()
        .filter(|(start, _)| !excluded.iter().any(|(x, y)| *start < *y && start + s > *x))
        .collect();
    Ok(windows
        .iter()
        .map(|&(a, b)| {
            let (mut t, mut bad) = (0, 0);
            for (_, is_bad) in all.iter().filter(|(start, _)| *start < b && start + s > a) {
                t += 1;
                bad += u64::from(*is_bad);
            }
            (t, bad)
        })
        .collect())
}

/// Counts per window `[from, to)`: events, or for Timeslices slices with
/// events (only whole slices ending by `at_ns` count); and the time of the
/// first event (slice with events) of the first window.
async fn count_windows(
    counter: &SliCounter,
    slo: &Slo,
    windows: &[(i64, i64)],
    at_ns: i64,
    excluded: &[(i64, i64)],
) -> Result<(Vec<(u64, u64)>, Option<i64>), QueryError> {
    match slo.budgeting {
        Budgeting::Occurrences => count_events(counter, slo, windows, excluded).await,
        Budgeting::Timeslices {
            slice,
            slice_target,
        } => {
            let s = slice.as_nanos() as i64;
            let range = slice_range(windows, at_ns, s);
            let minutes = counter.minutes(&slo.sli.source, range.0, range.1).await?;
            Ok(slice_counts(
                &minutes,
                windows,
                range,
                s,
                slice_target,
                excluded,
            ))
        }
    }
}

/// Evaluates `slo` at `at_ns`.
pub async fn evaluate(
    counter: &SliCounter,
    slo: &Slo,
    at_ns: i64,
) -> Result<SloStatus, QueryError> {
    evaluate_corrected(counter, slo, at_ns, &[]).await
}

/// Evaluates `slo` at `at_ns` with `corrections` (those whose scope takes
/// in `slo` apply): their events are left out of every window, and a
/// running maintenance window holds the alerts.
pub async fn evaluate_corrected(
    counter: &SliCounter,
    slo: &Slo,
    at_ns: i64,
    corrections: &[crate::corrections::Correction],
) -> Result<SloStatus, QueryError> {
    let excluded = crate::corrections::excluded_ranges(slo, corrections);
    let (lengths, ranges) = evaluation_windows(slo, at_ns);
    let (counts, first) = count_windows(counter, slo, &ranges, at_ns, &excluded).await?;
    Ok(finish(
        slo,
        at_ns,
        &lengths,
        &ranges,
        &counts,
        first,
        corrections,
    ))
}

/// The windows one evaluation counts: the SLO window, then one per
/// distinct tier window length (returned first, ascending).
fn evaluation_windows(slo: &Slo, at_ns: i64) -> (Vec<Duration>, Vec<(i64, i64)>) {
    let mut lengths: BTreeSet<Duration> = BTreeSet::new();
    for t in &slo.tiers {
        lengths.insert(t.long);
        lengths.insert(t.short);
    }
    let lengths: Vec<Duration> = lengths.into_iter().collect();
    let mut ranges: Vec<(i64, i64)> = vec![slo.time_window.range_at(at_ns)];
    ranges.extend(lengths.iter().map(|w| (at_ns - w.as_nanos() as i64, at_ns)));
    (lengths, ranges)
}

/// The status from the counts of [`evaluation_windows`].
fn finish(
    slo: &Slo,
    at_ns: i64,
    lengths: &[Duration],
    ranges: &[(i64, i64)],
    counts: &[(u64, u64)],
    first: Option<i64>,
    corrections: &[crate::corrections::Correction],
) -> SloStatus {
    let slo_range = ranges[0];
    let counted = |(total, bad): (u64, u64), secs: u64| WindowCounts {
        window_secs: secs,
        total,
        bad,
        burn_rate: burn_rate(bad, total, slo.objective),
    };
    let slo_window = counted(
        counts[0],
        ((slo_range.1 - slo_range.0).max(0) / 1_000_000_000) as u64,
    );
    let mut windows: Vec<WindowCounts> = lengths
        .iter()
        .zip(&counts[1..])
        .map(|(w, c)| counted(*c, w.as_secs()))
        .collect();
    let find = |d: Duration| {
        windows
            .iter()
            .find(|w| w.window_secs == d.as_secs())
            .copied()
            .expect("every window was counted")
    };
    let mut status = status_from_counts(slo, at_ns, &slo_window, &windows, find);
    windows.insert(0, slo_window);
    status.windows = windows;
    status.window_from_ns = slo_range.0;
    status.period_secs = slo.time_window.period_at(at_ns).as_secs();
    status.set_coverage(first);
    let mine = corrections.iter().filter(|c| c.scope.matches(slo));
    status.corrections = mine
        .clone()
        .filter(|c| c.to_ns > slo_range.0 && c.from_ns < at_ns)
        .cloned()
        .collect();
    status.held_by = mine
        .filter(|c| c.holds(at_ns))
        .map(|c| {
            format!(
                "maintenance #{} until {}: {}",
                c.id,
                crate::notify::rfc3339(c.to_ns),
                c.reason
            )
        })
        .next();
    if let Some(ttx) = status.time_to_exhaustion_secs.as_mut() {
        // Rescale from the nominal window to this period's length.
        *ttx *= status.period_secs as f64 / slo.window.as_secs_f64();
    }
    status
}

/// The instances of a grouped SLO at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupStatus {
    /// The grouped SLO's name.
    pub name: String,
    /// Its `groupBy` attributes.
    pub group_by: Vec<String>,
    /// The instances kept (at most the cap), worst first: page, ticket,
    /// ok, insufficient data; then by budget left, least first.
    pub instances: Vec<SloStatus>,
    /// Distinct values seen beyond the cap, left out (their events are
    /// counted by no instance).
    pub over_cap: usize,
    /// More values than could even be held to rank: `over_cap` is a lower
    /// bound.
    pub saturated: bool,
    /// The cap.
    pub cap: usize,
}

/// Values held at most, to choose the instances kept, per instance allowed.
const HELD_PER_INSTANCE: usize = 4;

/// Evaluates every instance of grouped `slo` at `at_ns` in one pass over
/// the store: each distinct value of its `group_by` attributes is an
/// instance (see [`Slo::instance`]) with the status [`evaluate_corrected`]
/// would give it. At most `cap` instances are kept: those with the most
/// events in the SLO window.
pub async fn evaluate_group(
    counter: &SliCounter,
    slo: &Slo,
    at_ns: i64,
    corrections: &[crate::corrections::Correction],
    cap: usize,
) -> Result<GroupStatus, QueryError> {
    let (lengths, ranges) = evaluation_windows(slo, at_ns);
    let (span, slice) = match slo.budgeting {
        Budgeting::Occurrences => {
            let from = ranges.iter().map(|r| r.0).min().unwrap_or(at_ns);
            ((from, at_ns), None)
        }
        Budgeting::Timeslices {
            slice,
            slice_target,
        } => {
            let s = slice.as_nanos() as i64;
            (slice_range(&ranges, at_ns, s), Some((s, slice_target)))
        }
    };
    // Segment bounds: every window's ends, every correction's ends (so
    // each instance's own corrections count exactly, whichever they turn
    // out to be), and for Timeslices every slice start. A group then costs
    // 16 bytes a segment whatever the window's length.
    let mut bounds: Vec<i64> = vec![span.0, span.1];
    bounds.extend(ranges.iter().flat_map(|r| [r.0, r.1]));
    bounds.extend(corrections.iter().flat_map(|c| [c.from_ns, c.to_ns]));
    if let Some((s, _)) = slice {
        bounds.extend((span.0..span.1).step_by(s.max(1) as usize));
    }
    bounds.retain(|b| (span.0..=span.1).contains(b));
    bounds.sort_unstable();
    bounds.dedup();
    // Timeslice instances keep a segment per slice: hold no more than
    // the cap; Occurrences ones hold a few segments, so more can be
    // ranked.
    let held = match slice {
        None => cap.saturating_mul(HELD_PER_INSTANCE).max(cap),
        Some(_) => cap,
    };
    let (groups, saturated) = counter
        .grouped_events(
            &slo.sli.source,
            &slo.group_exprs(),
            bounds,
            ranges[0].0,
            held,
        )
        .await?;
    let mut instances: Vec<SloStatus> = groups
        .iter()
        .map(|(values, events)| {
            let inst = slo.instance(values);
            let excluded = crate::corrections::excluded_ranges(&inst, corrections);
            let (counts, first) = match slice {
                None => {
                    let (all, parts) = with_overlaps(&ranges, &excluded);
                    let counts: Vec<(u64, u64)> =
                        all.iter().map(|&(a, b)| events.window(a, b)).collect();
                    let first = events
                        .first()
                        .filter(|f| !excluded.iter().any(|(x, y)| f >= x && f < y));
                    (less_overlaps(&counts, &parts), first)
                }
                Some((s, target)) => {
                    let per = events.per_segment();
                    slice_counts(&per, &ranges, span, s, target, &excluded)
                }
            };
            finish(&inst, at_ns, &lengths, &ranges, &counts, first, corrections)
        })
        .collect();
    // Keep the instances with the most events in the SLO window.
    instances.sort_by(|a, b| b.total.cmp(&a.total).then(a.name.cmp(&b.name)));
    let over_cap = instances.len().saturating_sub(cap);
    instances.truncate(cap);
    instances.sort_by(worst_first);
    Ok(GroupStatus {
        name: slo.name.clone(),
        group_by: slo.group_by.clone(),
        instances,
        over_cap,
        saturated,
        cap,
    })
}

/// Worst first: page, ticket, ok, insufficient data; then the least
/// budget left; then by name.
pub fn worst_first(a: &SloStatus, b: &SloStatus) -> std::cmp::Ordering {
    let rank = |s: &SloStatus| match s.state {
        AlertState::Page => 0,
        AlertState::Ticket => 1,
        AlertState::Ok => 2,
        AlertState::InsufficientData => 3,
    };
    let left = |s: &SloStatus| s.budget_remaining.unwrap_or(f64::INFINITY);
    rank(a)
        .cmp(&rank(b))
        .then(left(a).total_cmp(&left(b)))
        .then(a.name.cmp(&b.name))
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
            let above = |b: Option<f64>| b.is_some_and(|b| t.crossed(b));
            TierStatus {
                severity: t.severity.as_str(),
                long_secs: t.long.as_secs(),
                short_secs: t.short.as_secs(),
                factor: t.factor,
                op: t.op(),
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
        window: slo.time_window.describe(),
        window_from_ns: at_ns - slo.window.as_nanos() as i64,
        period_secs: slo.window.as_secs(),
        budgeting: slo.budgeting.name(),
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
        data_from_ns: None,
        coverage_secs: 0,
        coverage_note: None,
        corrections: Vec::new(),
        held_by: None,
        instance_of: slo.instance_of.as_ref().map(|(base, _)| base.clone()),
        group: slo
            .instance_of
            .iter()
            .flat_map(|(_, values)| values.iter().cloned())
            .collect(),
    }
}

/// One alert tier's burn rates over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierHistory {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// Long window, seconds.
    pub long_secs: u64,
    /// Short window, seconds.
    pub short_secs: u64,
    /// The threshold both windows must cross.
    pub factor: f64,
    /// (time ns, long-window burn, short-window burn).
    pub points: Vec<(i64, Option<f64>, Option<f64>)>,
}

/// Each tier's burn rates at `points` evenly spaced times ending at
/// `to_ns` (the first after `from_ns`), with `corrections` applied.
pub async fn burn_history(
    counter: &SliCounter,
    slo: &Slo,
    corrections: &[crate::corrections::Correction],
    from_ns: i64,
    to_ns: i64,
    points: usize,
) -> Result<Vec<TierHistory>, QueryError> {
    let excluded = crate::corrections::excluded_ranges(slo, corrections);
    // Whole minutes (windows of whole minutes then need no raw rows at
    // their edges).
    const MINUTE: i64 = 60_000_000_000;
    let n = points.clamp(1, 500) as i64;
    let step = (((to_ns - from_ns) / n).max(MINUTE) + MINUTE - 1) / MINUTE * MINUTE;
    let end = to_ns.div_euclid(MINUTE) * MINUTE;
    let times: Vec<i64> = (1..=n)
        .map(|k| end - (n - k) * step)
        .filter(|t| *t > from_ns)
        .collect();
    let per_time = |t: i64| -> Vec<(i64, i64)> {
        slo.tiers
            .iter()
            .flat_map(|tier| {
                [
                    (t - tier.long.as_nanos() as i64, t),
                    (t - tier.short.as_nanos() as i64, t),
                ]
            })
            .collect()
    };
    // Occurrences: one count over every window; Timeslices align slices
    // to each evaluation time, so one count per time.
    let mut counts: Vec<Vec<(u64, u64)>> = Vec::with_capacity(times.len());
    match slo.budgeting {
        Budgeting::Occurrences => {
            let all: Vec<(i64, i64)> = times.iter().flat_map(|t| per_time(*t)).collect();
            let (c, _) = count_windows(counter, slo, &all, to_ns, &excluded).await?;
            let k = slo.tiers.len() * 2;
            counts.extend(c.chunks(k.max(1)).map(<[(u64, u64)]>::to_vec));
        }
        Budgeting::Timeslices { .. } => {
            for t in &times {
                counts.push(
                    count_windows(counter, slo, &per_time(*t), *t, &excluded)
                        .await?
                        .0,
                );
            }
        }
    }
    Ok(slo
        .tiers
        .iter()
        .enumerate()
        .map(|(i, tier)| TierHistory {
            severity: tier.severity.as_str(),
            long_secs: tier.long.as_secs(),
            short_secs: tier.short.as_secs(),
            factor: tier.factor,
            points: times
                .iter()
                .zip(&counts)
                .map(|(t, c)| {
                    let (l, s) = (c[2 * i], c[2 * i + 1]);
                    (
                        *t,
                        burn_rate(l.1, l.0, slo.objective),
                        burn_rate(s.1, s.0, slo.objective),
                    )
                })
                .collect(),
        })
        .collect())
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

/// The burn-down series of `slo` at `at_ns`: `points` buckets over the
/// SLO window (events, or slices for Timeslices), from per-minute counts.
pub async fn burndown(
    counter: &SliCounter,
    slo: &Slo,
    at_ns: i64,
    points: usize,
) -> Result<Vec<BurnPoint>, QueryError> {
    burndown_corrected(counter, slo, at_ns, points, &[]).await
}

/// [`burndown`] without the minutes (slices) that corrections exclude.
pub async fn burndown_corrected(
    counter: &SliCounter,
    slo: &Slo,
    at_ns: i64,
    points: usize,
    corrections: &[crate::corrections::Correction],
) -> Result<Vec<BurnPoint>, QueryError> {
    let excluded = crate::corrections::excluded_ranges(slo, corrections);
    let points = points.clamp(2, 500) as i64;
    let (from, _) = slo.time_window.range_at(at_ns);
    let step = ((at_ns - from) / points).max(1);
    let mut minutes = counter.minutes(&slo.sli.source, from, at_ns).await?;
    if !excluded.is_empty() {
        // Whole minutes inside an excluded range (the chart's resolution;
        // the status counts the edges exactly).
        minutes.retain(|m, _| {
            !excluded
                .iter()
                .any(|(x, y)| *m >= *x && m + 60_000_000_000 <= *y)
        });
    }
    let mut per = vec![(0u64, 0u64); points as usize];
    let bucket = |t: i64| ((t.max(from) - from) / step).clamp(0, points - 1) as usize;
    match slo.budgeting {
        Budgeting::Occurrences => {
            for (m, (t, b)) in &minutes {
                let i = bucket(*m);
                per[i].0 += t;
                per[i].1 += b;
            }
        }
        Budgeting::Timeslices {
            slice,
            slice_target,
        } => {
            let s = slice.as_nanos() as i64;
            let first = from.div_euclid(s) * s + if from.rem_euclid(s) == 0 { 0 } else { s };
            let last = at_ns.div_euclid(s) * s;
            for (start, bad) in slices(&minutes, first, last.max(first), s, slice_target) {
                let i = bucket(start);
                per[i].0 += 1;
                per[i].1 += u64::from(bad);
            }
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
