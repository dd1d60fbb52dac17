//! Replays stored history through an SLO's alerting: evaluates it every
//! `step` over `[from, to)` exactly as the engine does (same queries, same
//! tiers, same incident transitions) and reports when each tier fired and
//! reset and what the incident would have done, without touching the
//! incident database or notifying anyone.

use serde::Serialize;
use store::Store;

use crate::sli::SliCounter;

use crate::evaluate::AlertState;
use crate::incidents::{Transition, transition};
use crate::openslo::Slo;

/// Most evaluation instants one backtest runs.
pub const MAX_STEPS: i64 = 20_000;

/// A tier firing over an interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierFiring {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// Long window, seconds.
    pub long_secs: u64,
    /// Short window, seconds.
    pub short_secs: u64,
    /// First evaluation at which it fired, ns.
    pub fired_at_ns: i64,
    /// First evaluation at which it no longer fired, ns (`None`: still
    /// firing at the end).
    pub reset_at_ns: Option<i64>,
    /// Highest long-window burn while it fired.
    pub peak_long_burn: f64,
}

/// What the incident would have done at one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncidentEvent {
    /// Evaluation time, ns.
    pub at_ns: i64,
    /// `opened`, `escalated`, `deescalated` or `resolved`.
    pub event: &'static str,
    /// The SLO's state after it.
    pub state: &'static str,
    /// Fastest long-window burn of the firing tiers (or of all tiers).
    pub burn: Option<f64>,
}

/// The replay of one SLO.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backtest {
    /// SLO name.
    pub slo: String,
    /// Start, ns.
    pub from_ns: i64,
    /// End, ns.
    pub to_ns: i64,
    /// Step, seconds.
    pub step_secs: u64,
    /// Evaluations run.
    pub evaluations: u64,
    /// Every interval a tier fired, in order.
    pub tiers: Vec<TierFiring>,
    /// Incident transitions, in order (one incident per problem, as live).
    pub incidents: Vec<IncidentEvent>,
}

/// Replays `slo` every `step_secs` over `[from_ns, to_ns)`.
pub async fn run(
    store: &Store,
    slo: &Slo,
    from_ns: i64,
    to_ns: i64,
    step_secs: u64,
) -> Result<Backtest, String> {
    run_corrected(store, slo, from_ns, to_ns, step_secs, &[]).await
}

/// [`run`] with corrections: their events are left out, and a running
/// maintenance window holds incident changes, as live.
pub async fn run_corrected(
    store: &Store,
    slo: &Slo,
    from_ns: i64,
    to_ns: i64,
    step_secs: u64,
    corrections: &[crate::corrections::Correction],
) -> Result<Backtest, String> {
    if from_ns >= to_ns {
        return Err("the backtest window is empty: --from must be before --to".into());
    }
    if step_secs == 0 {
        return Err("the step must be at least one second".into());
    }
    let step_ns = step_secs as i64 * 1_000_000_000;
    let steps = (to_ns - from_ns + step_ns - 1) / step_ns;
    if steps > MAX_STEPS {
        return Err(format!(
            "{steps} evaluations requested; at most {MAX_STEPS}: use a larger step"
        ));
    }
    // One counter for the whole replay: each file's rollup is computed once.
    let counter = SliCounter::new(store.clone(), crate::sli::DEFAULT_CACHE_BYTES);
    let mut out = Backtest {
        slo: slo.name.clone(),
        from_ns,
        to_ns,
        step_secs,
        evaluations: 0,
        tiers: Vec::new(),
        incidents: Vec::new(),
    };
    // Index in `out.tiers` of the open firing of each tier.
    let mut open_tier: Vec<Option<usize>> = Vec::new();
    let mut incident: Option<AlertState> = None;
    let mut at = from_ns;
    while at < to_ns {
        let status = crate::evaluate::evaluate_corrected(&counter, slo, at, corrections)
            .await
            .map_err(|e| e.to_string())?;
        out.evaluations += 1;
        open_tier.resize(status.tiers.len(), None);
        for (k, t) in status.tiers.iter().enumerate() {
            match (t.firing, open_tier[k]) {
                (true, None) => {
                    open_tier[k] = Some(out.tiers.len());
                    out.tiers.push(TierFiring {
                        severity: t.severity,
                        long_secs: t.long_secs,
                        short_secs: t.short_secs,
                        fired_at_ns: at,
                        reset_at_ns: None,
                        peak_long_burn: t.long_burn.unwrap_or(0.0),
                    });
                }
                (true, Some(i)) => {
                    let f = &mut out.tiers[i];
                    f.peak_long_burn = f.peak_long_burn.max(t.long_burn.unwrap_or(0.0));
                }
                (false, Some(i)) => {
                    out.tiers[i].reset_at_ns = Some(at);
                    open_tier[k] = None;
                }
                (false, None) => {}
            }
        }
        let burn = status
            .tiers
            .iter()
            .filter(|t| t.firing || status.state == AlertState::Ok)
            .filter_map(|t| t.long_burn)
            .fold(None, |m: Option<f64>, b| Some(m.map_or(b, |m| m.max(b))));
        let held = status.held_by.is_some();
        let event = match if held {
            Transition::None
        } else {
            transition(incident, status.state)
        } {
            Transition::None => None,
            Transition::Open(s) => {
                incident = Some(s);
                Some("opened")
            }
            Transition::Escalate(s) => {
                incident = Some(s);
                Some("escalated")
            }
            Transition::Deescalate(s) => {
                incident = Some(s);
                Some("deescalated")
            }
            Transition::Resolve => {
                incident = None;
                Some("resolved")
            }
        };
        if let Some(event) = event {
            out.incidents.push(IncidentEvent {
                at_ns: at,
                event,
                state: status.state.as_str(),
                burn,
            });
        }
        at += step_ns;
    }
    out.tiers.sort_by_key(|t| t.fired_at_ns);
    Ok(out)
}
