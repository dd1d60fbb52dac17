//! SVG charts as Leptos components.

use leptos::prelude::*;
use slo_engine::evaluate::BurnPoint;

/// Scales `values` into an SVG polyline of `w` x `h`.
pub fn polyline(values: &[f64], w: f64, h: f64, lo: f64, hi: f64) -> String {
    let n = values.len().max(2) as f64 - 1.0;
    let span = if hi > lo { hi - lo } else { 1.0 };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x = i as f64 / n * w;
            let y = h - ((v - lo) / span).clamp(0.0, 1.0) * h;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A small line of the values (request rate over the range).
#[component]
pub fn Sparkline(values: Vec<f64>) -> impl IntoView {
    let hi = values.iter().copied().fold(0.0, f64::max);
    let points = polyline(&values, 120.0, 24.0, 0.0, hi);
    view! {
        <svg class="sparkline" width="120" height="24" viewBox="0 0 120 24" role="img">
            <polyline points=points fill="none" stroke="#3b6fd8" stroke-width="1.5"/>
        </svg>
    }
}

/// Error budget left over the SLO window: 100% at the start, falling with
/// every bad event; the zero line marks exhaustion.
#[component]
pub fn BurnDown(points: Vec<BurnPoint>, objective: f64) -> impl IntoView {
    let (w, h) = (800.0, 200.0);
    let allowed_total = points
        .last()
        .map(|p| (1.0 - objective) * p.total as f64)
        .unwrap_or(0.0);
    if points.is_empty() || allowed_total <= 0.0 {
        return view! { <p class="muted">"No events in the window yet."</p> }.into_any();
    }
    // Remaining share of the window's budget after each bucket.
    let remaining: Vec<f64> = points
        .iter()
        .map(|p| 1.0 - p.bad as f64 / allowed_total)
        .collect();
    let lo = remaining.iter().copied().fold(0.0, f64::min);
    let line = polyline(&remaining, w, h, lo, 1.0);
    let zero_y = h - ((0.0 - lo) / (1.0 - lo).max(1e-9)) * h;
    let last = remaining.last().copied().unwrap_or(1.0);
    view! {
        <svg class="burndown" width="800" height="220" viewBox="0 0 800 220" role="img">
            <line x1="0" x2="800" y1=format!("{zero_y:.1}") y2=format!("{zero_y:.1}") stroke="#b3261e" stroke-dasharray="4 4"/>
            <polyline points=line fill="none" stroke="#3b6fd8" stroke-width="2"/>
            <text x="4" y="214" font-size="12" fill="#5b6475">"window start"</text>
            <text x="700" y="214" font-size="12" fill="#5b6475">"now: " {format!("{:.1}%", last * 100.0)}</text>
        </svg>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polyline_scales_into_the_box() {
        assert_eq!(
            polyline(&[0.0, 5.0, 10.0], 100.0, 10.0, 0.0, 10.0),
            "0.0,10.0 50.0,5.0 100.0,0.0"
        );
        // Flat and empty series do not divide by zero.
        assert_eq!(
            polyline(&[3.0, 3.0], 10.0, 10.0, 3.0, 3.0),
            "0.0,10.0 10.0,10.0"
        );
        assert_eq!(polyline(&[], 10.0, 10.0, 0.0, 1.0), "");
    }

    #[test]
    fn burndown_renders_the_remaining_budget() {
        let pts = vec![
            BurnPoint {
                time_ns: 1,
                total: 500,
                bad: 0,
            },
            BurnPoint {
                time_ns: 2,
                total: 1000,
                bad: 1,
            },
        ];
        let html = view! { <BurnDown points=pts objective=0.999/> }.to_html();
        assert!(html.contains("<polyline"), "{html}");
        assert!(
            html.contains("now: <!>0.0%") || html.contains("now: 0.0%"),
            "{html}"
        );
        let empty = view! { <BurnDown points=vec![] objective=0.999/> }.to_html();
        assert!(empty.contains("No events"), "{empty}");
    }
}
