//! Burn-rate math.
//!
//! A burn rate of 1 spends exactly the error budget over the SLO window. The
//! workbook's tiers for a 30-day window page at 14.4x over 1h (confirmed over
//! 5m) and 6x over 6h (30m), and ticket at 3x over 1d (2h) and 1x over 3d (6h).
//! Each tier spends a fixed share of the budget (2%, 5%, 10%, 10%) in its long
//! window, so for another SLO window the factor is rescaled to spend the same
//! share: `factor = share * slo_window / long_window`.

use std::time::Duration;

/// What an alert tier does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Open a ticket.
    Ticket,
}

impl Severity {
    /// `page` or `ticket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }

    /// The tier severity of an incident's severity (`page`; anything else
    /// is a ticket).
    pub fn of_incident(severity: &str) -> Severity {
        if severity == "page" {
            Severity::Page
        } else {
            Severity::Ticket
        }
    }
}

/// One multiwindow alert condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tier {
    /// Page or ticket.
    pub severity: Severity,
    /// The long window.
    pub long: Duration,
    /// The short window that confirms the burn is still going on.
    pub short: Duration,
    /// Both windows must burn faster than this.
    pub factor: f64,
    /// Whether a burn equal to `factor` fires too (the condition's `op`:
    /// `gte`; `gt` when false).
    pub inclusive: bool,
}

impl Tier {
    /// Whether a burn rate crosses this tier's threshold.
    pub fn crossed(&self, burn: f64) -> bool {
        if self.inclusive {
            burn >= self.factor
        } else {
            burn > self.factor
        }
    }

    /// The condition's operator as written in OpenSLO.
    pub fn op(&self) -> &'static str {
        if self.inclusive { "gte" } else { "gt" }
    }
}

const HOUR: u64 = 3600;

/// The workbook's four tiers, rescaled for `slo_window`.
pub fn standard_tiers(slo_window: Duration) -> [Tier; 4] {
    let w = slo_window.as_secs_f64();
    let tier = |severity, long_h: u64, short_min: u64, share: f64| {
        let long = Duration::from_secs(long_h * HOUR);
        Tier {
            severity,
            long,
            short: Duration::from_secs(short_min * 60),
            factor: share * w / long.as_secs_f64(),
            inclusive: false,
        }
    };
    [
        tier(Severity::Page, 1, 5, 0.02),
        tier(Severity::Page, 6, 30, 0.05),
        tier(Severity::Ticket, 24, 120, 0.10),
        tier(Severity::Ticket, 72, 360, 0.10),
    ]
}

/// Burn rate of a window: the observed error ratio over the allowed one.
/// `None` when the window has no events (no data is not "no burn").
pub fn burn_rate(bad: u64, total: u64, objective: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let budget = 1.0 - objective;
    if budget <= 0.0 {
        return Some(if bad > 0 { f64::INFINITY } else { 0.0 });
    }
    Some((bad as f64 / total as f64) / budget)
}

/// Whether a tier can ever fire for an objective: the highest possible burn
/// rate (every event bad) is `1 / (1 - objective)`.
pub fn tier_can_fire(tier: &Tier, objective: f64) -> bool {
    let budget = 1.0 - objective;
    budget <= 0.0 || tier.crossed(1.0 / budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn thirty_day_factors_match_the_workbook() {
        let t = standard_tiers(Duration::from_secs(30 * 24 * HOUR));
        let f: Vec<f64> = t.iter().map(|t| t.factor).collect();
        for (got, want) in f.iter().zip([14.4, 6.0, 3.0, 1.0]) {
            assert!(close(*got, want), "{f:?}");
        }
        assert_eq!(t[0].short, Duration::from_secs(300));
        assert_eq!(t[3].long, Duration::from_secs(72 * HOUR));
    }

    #[test]
    fn twenty_eight_day_factors_rescale() {
        let t = standard_tiers(Duration::from_secs(28 * 24 * HOUR));
        let f: Vec<f64> = t
            .iter()
            .map(|t| (t.factor * 1000.0).round() / 1000.0)
            .collect();
        assert_eq!(f, vec![13.44, 5.6, 2.8, 0.933]);
    }

    #[test]
    fn burn_rates() {
        assert_eq!(burn_rate(0, 0, 0.999), None);
        assert!(close(burn_rate(1, 1000, 0.999).unwrap(), 1.0));
        assert!(close(burn_rate(144, 10_000, 0.999).unwrap(), 14.4));
        // A 90% objective can burn at most 10x: the 14.4x tier can never fire.
        let tiers = standard_tiers(Duration::from_secs(30 * 24 * HOUR));
        assert!(!tier_can_fire(&tiers[0], 0.90));
        assert!(tier_can_fire(&tiers[1], 0.90));
    }
}
