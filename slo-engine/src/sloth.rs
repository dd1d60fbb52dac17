//! Burnwatch's SLOs as the series Sloth's recording rules produce, for the
//! Prometheus API (so SLO dashboards built on Sloth's metrics work on
//! Burnwatch without recording rules):
//!
//! - `slo:sli_error:ratio_rate<w>` for w in 5m, 30m, 1h, 2h, 6h, 1d, 3d
//!   and the SLO window (`30d`, ...): bad / total events over the `w`
//!   before each sample (absent without events);
//! - `slo:objective:ratio`, `slo:error_budget:ratio` (1 - objective),
//!   `slo:time_period:days`;
//! - `slo:current_burn_rate:ratio` (5m error ratio / error budget),
//!   `slo:period_burn_rate:ratio` (window error ratio / error budget),
//!   `slo:period_error_budget_remaining:ratio` (1 - period burn);
//! - `sloth_slo_info` (1) with `sloth_mode="burnwatch"` and
//!   `sloth_objective`.
//!
//! Every series has `sloth_service`, `sloth_slo` and `sloth_id`
//! (`<service>-<slo>`), and one sample per minute boundary in the
//! selection.
//!
//! Pyrra's generic recording rules are answered too, labelled `slo` (the
//! SLO's name): `pyrra_objective`, `pyrra_window` (seconds),
//! `pyrra_availability` (good / total over the SLO window),
//! `pyrra_requests:rate5m` and `pyrra_errors:rate5m` (events per second). Counts are the SLO's own (the [`crate::sli::SliCounter`]
//! minutes the engine evaluates), as occurrences: a timeslice SLO's ratios
//! here are of events, not slices.

use std::collections::BTreeMap;

use promql::{Labels, Matcher, Series};

use crate::engine::SloEngine;
use crate::openslo::Slo;

const MINUTE_NS: i64 = 60_000_000_000;
const MINUTE_MS: i64 = 60_000;

/// The short error-ratio windows, as Sloth names them.
const RATE_WINDOWS: [(&str, i64); 7] = [
    ("5m", 5),
    ("30m", 30),
    ("1h", 60),
    ("2h", 120),
    ("6h", 360),
    ("1d", 1440),
    ("3d", 4320),
];

/// Most minutes one selection evaluates per SLO (the latest ones).
const MAX_MINUTES: i64 = 11_000;

/// Every series name this module answers, as (name, help).
pub fn names(slos: &[Slo]) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = RATE_WINDOWS
        .iter()
        .map(|(w, _)| {
            (
                format!("slo:sli_error:ratio_rate{w}"),
                "Share of bad events over the window (Sloth's name).",
            )
        })
        .collect();
    for slo in slos {
        let n = format!("slo:sli_error:ratio_rate{}", period_name(slo));
        if !out.iter().any(|(x, _)| *x == n) {
            out.push((n, "Share of bad events over the SLO window (Sloth's name)."));
        }
    }
    out.extend([
        ("slo:objective:ratio".to_string(), "The SLO objective."),
        ("slo:error_budget:ratio".to_string(), "1 - objective."),
        ("slo:time_period:days".to_string(), "The SLO window, days."),
        (
            "slo:current_burn_rate:ratio".to_string(),
            "5m error ratio over the error budget.",
        ),
        (
            "slo:period_burn_rate:ratio".to_string(),
            "Error ratio over the SLO window, over the error budget.",
        ),
        (
            "slo:period_error_budget_remaining:ratio".to_string(),
            "Share of the window's error budget left.",
        ),
        ("sloth_slo_info".to_string(), "One per SLO."),
        (
            "pyrra_objective".to_string(),
            "The SLO objective (Pyrra's name).",
        ),
        (
            "pyrra_window".to_string(),
            "The SLO window, seconds (Pyrra's name).",
        ),
        (
            "pyrra_availability".to_string(),
            "Good / total events over the SLO window (Pyrra's name).",
        ),
        (
            "pyrra_requests:rate5m".to_string(),
            "Events per second over 5m (Pyrra's name).",
        ),
        (
            "pyrra_errors:rate5m".to_string(),
            "Bad events per second over 5m (Pyrra's name).",
        ),
    ]);
    out
}

fn window_minutes(slo: &Slo) -> i64 {
    (slo.window.as_secs() as i64 / 60).max(1)
}

fn period_name(slo: &Slo) -> String {
    let m = window_minutes(slo);
    if m % 1440 == 0 {
        format!("{}d", m / 1440)
    } else if m % 60 == 0 {
        format!("{}h", m / 60)
    } else {
        format!("{m}m")
    }
}

/// Whether a selection with these `__name__` matchers may want SLO series.
pub fn wanted(slos: &[Slo], name_matchers: &[&Matcher]) -> bool {
    names(slos)
        .iter()
        .any(|(n, _)| name_matchers.iter().all(|m| m.matches(n)))
}

/// The SLO series matching `matchers` with one sample per minute boundary
/// in `[start_ms, end_ms]` (labels only when `with_samples` is false).
pub async fn series(
    engine: &SloEngine,
    matchers: &[Matcher],
    start_ms: i64,
    end_ms: i64,
    with_samples: bool,
) -> Result<Vec<Series>, String> {
    let first = start_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
    let last = end_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
    if last < first {
        return Ok(Vec::new());
    }
    // Never past the next minute after now, and at most MAX_MINUTES
    // samples: a longer selection gets its last MAX_MINUTES minutes.
    let now_ms = crate::engine::now_ns().div_euclid(1_000_000);
    let last = last.min(now_ms.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS);
    let first = first.max(last - MAX_MINUTES * MINUTE_MS);
    if last < first {
        return Ok(Vec::new());
    }
    let matches = |l: &Labels| {
        matchers
            .iter()
            .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
    };
    let mut out = Vec::new();
    for slo in engine.slos() {
        let base = vec![
            ("sloth_service".to_string(), slo.service.clone()),
            ("sloth_slo".to_string(), slo.name.clone()),
            (
                "sloth_id".to_string(),
                format!("{}-{}", slo.service, slo.name),
            ),
        ];
        let label = |name: &str, extra: &[(&str, String)]| {
            let mut p = base.clone();
            p.push(("__name__".into(), name.to_string()));
            p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
            Labels::new(p)
        };
        let period = period_name(slo);
        let period_m = window_minutes(slo);
        let budget = 1.0 - slo.objective;
        // Each wanted series and how its value comes from the counts.
        let mut wanted: Vec<(Labels, Value)> = Vec::new();
        for (w, m) in RATE_WINDOWS {
            wanted.push((
                label(&format!("slo:sli_error:ratio_rate{w}"), &[]),
                Value::Ratio(m),
            ));
        }
        if !RATE_WINDOWS.iter().any(|(w, _)| *w == period) {
            wanted.push((
                label(&format!("slo:sli_error:ratio_rate{period}"), &[]),
                Value::Ratio(period_m),
            ));
        }
        let sloth_window = [("sloth_window", period.clone())];
        wanted.extend([
            (
                label("slo:objective:ratio", &[]),
                Value::Const(slo.objective),
            ),
            (label("slo:error_budget:ratio", &[]), Value::Const(budget)),
            (
                label("slo:time_period:days", &[]),
                Value::Const(period_m as f64 / 1440.0),
            ),
            (
                label("slo:current_burn_rate:ratio", &[]),
                Value::Burn(5, budget),
            ),
            (
                label("slo:period_burn_rate:ratio", &[]),
                Value::Burn(period_m, budget),
            ),
            (
                label("slo:period_error_budget_remaining:ratio", &sloth_window),
                Value::Remaining(period_m, budget),
            ),
            (
                label(
                    "sloth_slo_info",
                    &[
                        ("sloth_mode", "burnwatch".to_string()),
                        ("sloth_version", env!("CARGO_PKG_VERSION").to_string()),
                        ("sloth_objective", format!("{}", slo.objective * 100.0)),
                    ],
                ),
                Value::Const(1.0),
            ),
        ]);
        let pyrra = |name: &str| {
            Labels::new(vec![
                ("__name__".to_string(), name.to_string()),
                ("slo".to_string(), slo.name.clone()),
            ])
        };
        wanted.extend([
            (pyrra("pyrra_objective"), Value::Const(slo.objective)),
            (pyrra("pyrra_window"), Value::Const(period_m as f64 * 60.0)),
            (pyrra("pyrra_availability"), Value::Availability(period_m)),
            (pyrra("pyrra_requests:rate5m"), Value::PerSecond(5, false)),
            (pyrra("pyrra_errors:rate5m"), Value::PerSecond(5, true)),
        ]);
        wanted.retain(|(l, _)| matches(l));
        if wanted.is_empty() {
            continue;
        }
        if !with_samples {
            out.extend(wanted.into_iter().map(|(labels, _)| Series {
                labels,
                samples: Vec::new(),
            }));
            continue;
        }
        let longest = wanted.iter().map(|(_, v)| v.minutes()).max().unwrap_or(0);
        // Per-minute counts from the longest window before the first
        // sample to the last sample.
        let from_ns = (first - longest * MINUTE_MS).saturating_mul(1_000_000);
        let to_ns = last.saturating_mul(1_000_000);
        let counts = if longest > 0 {
            engine
                .sli_counter()
                .minutes(&slo.sli.source, from_ns, to_ns)
                .await
                .map_err(|e| e.to_string())?
        } else {
            BTreeMap::new()
        };
        let prefix = Prefix::new(&counts, from_ns, to_ns);
        for (labels, v) in wanted {
            let mut samples = Vec::new();
            let mut t = first;
            while t <= last {
                let t_ns = t.saturating_mul(1_000_000);
                if let Some(x) = v.at(&prefix, t_ns) {
                    samples.push((t, x));
                }
                t += MINUTE_MS;
            }
            if !samples.is_empty() {
                out.push(Series { labels, samples });
            }
        }
    }
    Ok(out)
}

/// How a series' value follows from the counts.
enum Value {
    Const(f64),
    /// Error ratio over this many minutes.
    Ratio(i64),
    /// Error ratio over the minutes, over the budget.
    Burn(i64, f64),
    /// 1 - burn.
    Remaining(i64, f64),
    /// 1 - error ratio over the minutes.
    Availability(i64),
    /// Events (or bad events, when true) per second over the minutes.
    PerSecond(i64, bool),
}

impl Value {
    fn minutes(&self) -> i64 {
        match self {
            Value::Const(_) => 0,
            Value::Ratio(m)
            | Value::Burn(m, _)
            | Value::Remaining(m, _)
            | Value::Availability(m)
            | Value::PerSecond(m, _) => *m,
        }
    }

    fn at(&self, p: &Prefix, t_ns: i64) -> Option<f64> {
        let ratio = |m: i64| {
            let (total, bad) = p.between(t_ns - m * MINUTE_NS, t_ns);
            (total > 0).then(|| bad as f64 / total as f64)
        };
        match *self {
            Value::Const(v) => Some(v),
            Value::Ratio(m) => ratio(m),
            Value::Burn(m, budget) => ratio(m).map(|r| r / budget),
            Value::Remaining(m, budget) => ratio(m).map(|r| 1.0 - r / budget),
            Value::Availability(m) => ratio(m).map(|r| 1.0 - r),
            Value::PerSecond(m, bad) => {
                let (total, b) = p.between(t_ns - m * MINUTE_NS, t_ns);
                let n = if bad { b } else { total };
                Some(n as f64 / (m as f64 * 60.0))
            }
        }
    }
}

/// Cumulative (total, bad) per minute, for window sums in O(log n).
struct Prefix {
    minutes: Vec<i64>,
    cum: Vec<(u64, u64)>,
}

impl Prefix {
    fn new(counts: &BTreeMap<i64, (u64, u64)>, from_ns: i64, to_ns: i64) -> Prefix {
        let mut minutes = Vec::new();
        let mut cum = Vec::new();
        let (mut t, mut b) = (0u64, 0u64);
        for (&m, &(total, bad)) in counts.range(from_ns..to_ns) {
            t += total;
            b += bad;
            minutes.push(m);
            cum.push((t, b));
        }
        Prefix { minutes, cum }
    }

    /// Sum of the minutes starting in `[a, b)`.
    fn between(&self, a: i64, b: i64) -> (u64, u64) {
        let upto = |x: i64| {
            let i = self.minutes.partition_point(|m| *m < x);
            if i == 0 { (0, 0) } else { self.cum[i - 1] }
        };
        let (t1, b1) = upto(b);
        let (t0, b0) = upto(a);
        (t1 - t0, b1 - b0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sums_from_prefixes() {
        let mut c = BTreeMap::new();
        for m in 0..10i64 {
            c.insert(m * MINUTE_NS, (10, m as u64 % 3));
        }
        let p = Prefix::new(&c, 0, 10 * MINUTE_NS);
        assert_eq!(p.between(0, 10 * MINUTE_NS), (100, 9));
        assert_eq!(p.between(5 * MINUTE_NS, 10 * MINUTE_NS), (50, 5));
        assert_eq!(p.between(-5 * MINUTE_NS, 0), (0, 0));
        let v = Value::Burn(5, 0.1);
        let got = v.at(&p, 10 * MINUTE_NS).unwrap();
        assert!((got - (5.0 / 50.0) / 0.1).abs() < 1e-12);
        assert_eq!(Value::Ratio(5).at(&p, 100 * MINUTE_NS), None);
        assert_eq!(
            Value::PerSecond(5, true).at(&p, 10 * MINUTE_NS),
            Some(5.0 / 300.0)
        );
        assert_eq!(
            Value::Availability(10).at(&p, 10 * MINUTE_NS),
            Some(1.0 - 9.0 / 100.0)
        );
    }
}
