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
pub fn BurnDown(
    points: Vec<BurnPoint>,
    objective: f64,
    /// Corrections and maintenance windows to shade.
    #[prop(optional)]
    bands: Vec<Band>,
) -> impl IntoView {
    let allowed_total = points
        .last()
        .map(|p| (1.0 - objective) * p.total as f64)
        .unwrap_or(0.0);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return view! { <p class="muted">"No events in the window yet."</p> }.into_any();
    };
    if allowed_total <= 0.0 || last.time_ns <= first.time_ns {
        return view! { <p class="muted">"No events in the window yet."</p> }.into_any();
    }
    // Remaining share of the window's budget after each bucket, in %.
    let remaining: Vec<(i64, Option<f64>)> = points
        .iter()
        .map(|p| {
            let left = 100.0 * (1.0 - p.bad as f64 / allowed_total);
            // No float dust (1e-13 %) on the axis and in the legend.
            (p.time_ns, Some((left * 1e6).round() / 1e6))
        })
        .collect();
    let lo = remaining.iter().filter_map(|p| p.1).fold(0.0, f64::min);
    let lo = if lo < 0.0 { -nice_max(-lo) } else { 0.0 };
    let (from, to) = (first.time_ns, last.time_ns);
    let lines = vec![
        Line {
            name: "budget left".into(),
            points: remaining,
        },
        Line {
            name: "exhausted".into(),
            points: vec![(from, Some(0.0)), (to, Some(0.0))],
        },
    ];
    view! {
        <div class="burndown">
            <TimeSeries id="budget-chart".to_string() title="Error budget left".to_string()
                unit="% of the window's budget".to_string() from_ns=from to_ns=to lines=lines
                y_range=(lo, 100.0) bands=bands x_label="time (UTC)".to_string()/>
        </div>
    }
    .into_any()
}

/// Series colours, in order.
pub const COLORS: [&str; 8] = [
    "#3b6fd8", "#d93025", "#1e8e3e", "#e37400", "#9334e6", "#129eaf", "#b0607a", "#5b6475",
];

/// A "nice" axis maximum at or above `v`: 1, 2 or 5 times a power of ten.
pub fn nice_max(v: f64) -> f64 {
    if !v.is_finite() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// A number for an axis or a label: short, without noise digits.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else if a >= 0.001 {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.1e}")
    }
}

/// A time label for an axis spanning `span_ns`: `HH:MM` within two days,
/// `MM-DD HH:MM` beyond (UTC).
pub fn time_label(ns: i64, span_ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns);
    if span_ns > 2 * 86_400_000_000_000 {
        t.format("%m-%d %H:%M").to_string()
    } else {
        t.format("%H:%M").to_string()
    }
}

/// One line of a [`TimeSeries`]: `(time ns, value)`; `None` is a gap.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub name: String,
    /// Points in time order.
    pub points: Vec<(i64, Option<f64>)>,
}

/// A point drawn over a [`TimeSeries`] that links somewhere: an exemplar
/// (a span behind the value) that opens its trace.
#[derive(Debug, Clone)]
pub struct Mark {
    /// Time, ns.
    pub t_ns: i64,
    /// Value in the chart's unit (drawn at the top edge when above it).
    pub value: f64,
    /// Where a click goes.
    pub href: String,
    /// Tooltip.
    pub title: String,
}

/// A shaded time range over a [`TimeSeries`] (e.g. a correction or a
/// maintenance window), with its tooltip.
#[derive(Debug, Clone)]
pub struct Band {
    /// Start, ns.
    pub from_ns: i64,
    /// End, ns.
    pub to_ns: i64,
    /// Tooltip.
    pub title: String,
}

/// The polylines of `points` (split at gaps) in a plot of `w` x `h`.
fn segments(
    points: &[(i64, Option<f64>)],
    (from, to): (i64, i64),
    (w, h): (f64, f64),
    (lo, hi): (f64, f64),
) -> Vec<String> {
    let span = (to - from).max(1) as f64;
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    for (t, v) in points {
        match v.filter(|v| v.is_finite()) {
            Some(v) => {
                let x = ((*t - from) as f64 / span).clamp(0.0, 1.0) * w;
                let y = h - ((v - lo) / (hi - lo).max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) * h;
                cur.push(format!("{x:.1},{y:.1}"));
            }
            None => {
                if !cur.is_empty() {
                    out.push(cur.join(" "));
                    cur.clear();
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur.join(" "));
    }
    out
}

/// A time-series chart: lines over `[from_ns, to_ns)` with a y axis from
/// zero (in `unit`), time labels (UTC), grid lines and a legend. A single
/// point in a segment is drawn as a dot.
#[component]
pub fn TimeSeries(
    /// Element id.
    id: String,
    /// Title above the chart.
    title: String,
    /// Unit of the y axis (`req/s`, `ms`, `%`).
    unit: String,
    /// Window start, ns.
    from_ns: i64,
    /// Window end, ns.
    to_ns: i64,
    /// The lines.
    lines: Vec<Line>,
    /// The y axis' bottom and top [default: zero to a round number above
    /// the largest value].
    #[prop(optional)]
    y_range: Option<(f64, f64)>,
    /// Linked points over the lines (exemplars), not part of the y range.
    #[prop(optional)]
    marks: Vec<Mark>,
    /// Shaded time ranges under the lines.
    #[prop(optional)]
    bands: Vec<Band>,
    /// The x axis' caption [default: none].
    #[prop(optional)]
    x_label: Option<String>,
) -> impl IntoView {
    let (left, top, w, h) = (52.0, 8.0, 720.0, 140.0);
    let unit_axis = unit.clone();
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().filter_map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let (lo, hi) = y_range.unwrap_or((0.0, nice_max(max)));
    let has_data = lines.iter().any(|l| l.points.iter().any(|p| p.1.is_some()));
    let grid = [0.0, 0.5, 1.0]
        .into_iter()
        .map(|f| {
            let y = top + h - f * h;
            view! {
                <line x1=left x2=left + w y1=y y2=y stroke="#eef0f4"/>
                <text x=left - 6.0 y=y + 4.0 text-anchor="end">{short(lo + (hi - lo) * f)}</text>
            }
        })
        .collect_view();
    let span = to_ns - from_ns;
    let ticks = (0..=4)
        .map(|i| {
            let t = from_ns + span / 4 * i;
            let x = left + w * i as f64 / 4.0;
            let anchor = match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            view! { <text x=x y=top + h + 16.0 text-anchor=anchor>{time_label(t, span)}</text> }
        })
        .collect_view();
    let paths = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let color = COLORS[i % COLORS.len()];
            segments(&l.points, (from_ns, to_ns), (w, h), (lo, hi))
                .into_iter()
                .map(|seg| {
                    if !seg.contains(' ') {
                        let (x, y) = seg.split_once(',').unwrap_or(("0", "0"));
                        let (x, y) = (
                            x.parse::<f64>().unwrap_or(0.0),
                            y.parse::<f64>().unwrap_or(0.0),
                        );
                        return view! { <circle cx=left + x cy=top + y r="2" fill=color/> }
                            .into_any();
                    }
                    view! {
                        <polyline
                            transform=format!("translate({left},{top})")
                            points=seg
                            fill="none"
                            stroke=color
                            stroke-width="1.5"
                        >
                            <title>{l.name.clone()}</title>
                        </polyline>
                    }
                    .into_any()
                })
                .collect_view()
        })
        .collect_view();
    let span_f = (to_ns - from_ns).max(1) as f64;
    let band_count = bands.len();
    let bands = bands
        .into_iter()
        .filter(|b| b.to_ns > from_ns && b.from_ns < to_ns)
        .map(|b| {
            let x0 = left + ((b.from_ns.max(from_ns) - from_ns) as f64 / span_f) * w;
            let x1 = left + ((b.to_ns.min(to_ns) - from_ns) as f64 / span_f) * w;
            view! {
                <rect class="band" x=format!("{x0:.1}") y=top width=format!("{:.1}", (x1 - x0).max(1.0)) height=h
                    fill="#f2e6c9" fill-opacity="0.7">
                    <title>{b.title}</title>
                </rect>
            }
        })
        .collect_view();
    let mark_count = marks.len();
    let marks = marks
        .into_iter()
        .filter(|m| m.value.is_finite() && m.t_ns >= from_ns && m.t_ns < to_ns)
        .map(|m| {
            let x = left + (m.t_ns - from_ns) as f64 / span_f * w;
            let y = top + h - ((m.value - lo) / (hi - lo).max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) * h;
            view! {
                <a href=m.href class="exemplar">
                    <rect x=x - 3.0 y=y - 3.0 width="6" height="6" transform=format!("rotate(45 {x:.1} {y:.1})")
                        fill="#ffffff" stroke="#6b21a8" stroke-width="1.5"/>
                    <title>{m.title}</title>
                </a>
            }
        })
        .collect_view();
    let legend = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let last = l.points.iter().rev().find_map(|p| p.1);
            let style = format!("background:{}", COLORS[i % COLORS.len()]);
            view! { <span><i style=style></i>{l.name.clone()} " " <b>{last.map(short).unwrap_or_else(|| "–".into())}</b></span> }
        })
        .collect_view();
    view! {
        <figure class="chart" id=id>
            <figcaption>{title} <span class="muted">" (" {unit} ")"</span></figcaption>
            <svg width="780" height="186" viewBox="0 0 780 186" role="img">
                {bands}
                {grid}
                {ticks}
                {paths}
                {marks}
                {(!has_data).then(|| view! { <text x="380" y="80" text-anchor="middle">"no data in this range"</text> })}
                <text class="axis-label" x="14" y=top + h / 2.0 text-anchor="middle" transform=format!("rotate(-90 14 {:.1})", top + h / 2.0)>{unit_axis}</text>
                {x_label.map(|x| view! { <text class="axis-label" x=left + w / 2.0 y=top + h + 32.0 text-anchor="middle">{x}</text> })}
            </svg>
            <div class="legend">{legend}
                {(mark_count > 0).then(|| view! { <span class="muted">"◇ exemplars: a click opens the trace"</span> })}
                {(band_count > 0).then(|| view! { <span class="muted">"shaded: corrections and maintenance windows (not counted)"</span> })}
            </div>
        </figure>
    }
}

/// Horizontal bars: one per `(label, value)`, longest scaled to the width.
#[component]
pub fn Bars(
    /// Element id.
    id: String,
    /// Bars in the order shown.
    items: Vec<(String, f64)>,
    /// Unit after each value.
    unit: String,
) -> impl IntoView {
    let hi = items
        .iter()
        .map(|i| i.1)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let hi = if hi > 0.0 { hi } else { 1.0 };
    let height = 22 * items.len().max(1) + 4;
    let bars = items
        .into_iter()
        .enumerate()
        .map(|(i, (label, v))| {
            let y = 4.0 + 22.0 * i as f64;
            let bw = (v.max(0.0) / hi * 440.0).max(1.0);
            view! {
                <text x="196" y=y + 13.0 text-anchor="end">{label}</text>
                <rect x="204" y=y width=format!("{bw:.1}") height="16" fill=COLORS[0] rx="2"/>
                <text x=format!("{:.1}", 208.0 + bw) y=y + 13.0>{format!("{} {unit}", short(v))}</text>
            }
        })
        .collect_view();
    view! {
        <svg class="bars" id=id width="780" height=height viewBox=format!("0 0 780 {height}") role="img">
            {bars}
        </svg>
    }
}

/// The fill of a heatmap cell holding `share` (0..=1) of the largest count:
/// from pale to dark blue (square-root scale, so small counts show).
pub fn heat(share: f64) -> String {
    let s = share.clamp(0.0, 1.0).sqrt();
    let mix = |a: f64, b: f64| (a + (b - a) * s).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(238.0, 26.0),
        mix(243.0, 63.0),
        mix(253.0, 143.0)
    )
}

/// A histogram over time: one column per time bucket, one row per
/// histogram bucket (lowest at the bottom; empty rows above and below the
/// data left out), darker where more observations fell.
#[component]
pub fn Heatmap(
    /// Element id.
    id: String,
    /// Title above the chart.
    title: String,
    /// Unit of the bucket bounds.
    unit: String,
    /// Start of each time bucket, ns.
    times_ns: Vec<i64>,
    /// End of the last time bucket, ns.
    to_ns: i64,
    /// Upper bounds of the histogram buckets.
    bounds: Vec<f64>,
    /// `counts[t][b]`.
    counts: Vec<Vec<u64>>,
) -> impl IntoView {
    let width = bounds.len() + 1;
    let used = |b: usize| {
        counts
            .iter()
            .any(|row| row.get(b).copied().unwrap_or(0) > 0)
    };
    let (Some(lo), Some(hi)) = (
        (0..width).find(|b| used(*b)),
        (0..width).rev().find(|b| used(*b)),
    ) else {
        return view! { <p class="muted">"No observations in this range."</p> }.into_any();
    };
    let rows = hi - lo + 1;
    let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let (left, top, w) = (72.0, 8.0, 700.0);
    let ch = (140.0 / rows as f64).clamp(6.0, 18.0);
    let h = ch * rows as f64;
    let cw = w / times_ns.len().max(1) as f64;
    let label = |b: usize| match bounds.get(b) {
        Some(u) => format!("≤ {}", short(*u)),
        None => format!("> {}", bounds.last().map_or("0".into(), |u| short(*u))),
    };
    let span = to_ns - times_ns.first().copied().unwrap_or(to_ns);
    let cells = counts
        .iter()
        .enumerate()
        .flat_map(|(t, row)| {
            let when = times_ns.get(t).copied().unwrap_or_default();
            (lo..=hi).filter_map(move |b| {
                let n = row.get(b).copied().unwrap_or(0);
                (n > 0).then_some((t, b, n, when))
            })
        })
        .map(|(t, b, n, when)| {
            let x = left + t as f64 * cw;
            let y = top + h - (b - lo + 1) as f64 * ch;
            view! {
                <rect x=format!("{x:.1}") y=format!("{y:.1}") width=format!("{:.1}", cw.max(1.0)) height=format!("{ch:.1}") fill=heat(n as f64 / max)>
                    <title>{format!("{} {}: {n}", time_label(when, span), label(b))}</title>
                </rect>
            }
        })
        .collect_view();
    let y_labels = (lo..=hi)
        .filter(|b| rows <= 12 || (b - lo) % rows.div_ceil(12) == 0)
        .map(|b| {
            let y = top + h - (b - lo) as f64 * ch - ch / 2.0 + 4.0;
            view! { <text x=left - 6.0 y=format!("{y:.1}") text-anchor="end">{label(b)}</text> }
        })
        .collect_view();
    let from = times_ns.first().copied().unwrap_or(to_ns);
    let ticks = (0..=4)
        .map(|i| {
            let x = left + w * i as f64 / 4.0;
            let anchor = match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            view! { <text x=x y=top + h + 16.0 text-anchor=anchor>{time_label(from + span / 4 * i, span)}</text> }
        })
        .collect_view();
    let height = h + 30.0;
    view! {
        <figure class="chart heatmap" id=id>
            <figcaption>{title} <span class="muted">" (" {unit} ", darker: more observations; most in one cell: " {max as u64} ")"</span></figcaption>
            <svg width="780" height=format!("{height:.0}") viewBox=format!("0 0 780 {height:.0}") role="img">
                {y_labels}
                {cells}
                {ticks}
            </svg>
        </figure>
    }
    .into_any()
}

/// A service in the [`ServiceGraph`].
#[derive(Debug, Clone)]
pub struct GraphNode {
    /// Service name.
    pub name: String,
    /// Second line (RED of the service), if known.
    pub detail: String,
    /// Whether to highlight it as failing.
    pub error: bool,
    /// Where a click goes.
    pub href: String,
}

/// A call between two services in the [`ServiceGraph`].
#[derive(Debug, Clone)]
pub struct GraphEdge {
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Label (RED of the calls).
    pub label: String,
    /// Calls per second (line width).
    pub rate: f64,
    /// Whether to highlight it as failing.
    pub error: bool,
    /// The callee is not instrumented (dashed).
    pub unobserved: bool,
}

/// Columns of a layered layout: each node one column right of its
/// furthest caller (cycles are cut after as many rounds as there are
/// nodes), rows by name within a column.
pub fn layers(nodes: &[String], edges: &[(String, String)]) -> Vec<Vec<String>> {
    let mut depth: std::collections::BTreeMap<&str, usize> =
        nodes.iter().map(|n| (n.as_str(), 0)).collect();
    for _ in 0..nodes.len() {
        let mut changed = false;
        for (a, b) in edges {
            let (Some(&da), Some(&db)) = (depth.get(a.as_str()), depth.get(b.as_str())) else {
                continue;
            };
            if a != b && db < da + 1 && da + 1 < nodes.len() {
                depth.insert(b.as_str(), da + 1);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let cols = depth.values().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); cols];
    for (n, d) in depth {
        out[d].push(n.to_string());
    }
    out
}

/// Orders each column by the mean row of its callers in earlier columns
/// (the barycentre heuristic, one pass left to right), so calls cross less.
pub fn order_rows(cols: &mut [Vec<String>], edges: &[(String, String)]) {
    let mut row: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for col in cols.iter_mut() {
        let mut keyed: Vec<(f64, String)> = col
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let callers: Vec<f64> = edges
                    .iter()
                    .filter(|(_, b)| b == n)
                    .filter_map(|(a, _)| row.get(a).copied())
                    .collect();
                let key = if callers.is_empty() {
                    i as f64
                } else {
                    callers.iter().sum::<f64>() / callers.len() as f64
                };
                (key, n.clone())
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        *col = keyed.into_iter().map(|(_, n)| n).collect();
        for (i, n) in col.iter().enumerate() {
            row.insert(n.clone(), i as f64);
        }
    }
}

/// The service dependency graph: services in columns by call depth, calls
/// as curves (width by rate, red when failing, dashed to uninstrumented
/// services) labelled with their RED; each service links to its page.
#[component]
pub fn ServiceGraph(nodes: Vec<GraphNode>, edges: Vec<GraphEdge>) -> impl IntoView {
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let pairs: Vec<(String, String)> = edges
        .iter()
        .map(|e| (e.from.clone(), e.to.clone()))
        .collect();
    let mut cols = layers(&names, &pairs);
    order_rows(&mut cols, &pairs);
    let (nw, nh, cw, rh) = (160.0, 40.0, 300.0, 70.0);
    let mut pos = std::collections::HashMap::new();
    for (c, col) in cols.iter().enumerate() {
        for (r, n) in col.iter().enumerate() {
            pos.insert(n.clone(), (20.0 + cw * c as f64, 20.0 + rh * r as f64));
        }
    }
    let rows = cols.iter().map(Vec::len).max().unwrap_or(0);
    let width = (40.0 + cw * cols.len() as f64).max(400.0);
    let height = 40.0 + rh * rows as f64;
    let max_rate = edges.iter().map(|e| e.rate).fold(0.0, f64::max);
    // Full labels fit a small graph; a large one labels failing calls in
    // full and the others with their rate (all of it is in the tooltip).
    let full_labels = edges.len() <= 6;
    let edge_views = edges
        .iter()
        .filter_map(|e| {
            let (x1, y1) = *pos.get(&e.from)?;
            let (x2, y2) = *pos.get(&e.to)?;
            let (sx, sy, ex, ey) = (x1 + nw, y1 + nh / 2.0, x2, y2 + nh / 2.0);
            let bend = ((ex - sx).abs() / 2.0).max(60.0);
            let d = format!(
                "M{sx:.1},{sy:.1} C{:.1},{sy:.1} {:.1},{ey:.1} {ex:.1},{ey:.1}",
                sx + bend,
                ex - bend
            );
            let width = if max_rate > 0.0 { 1.0 + 4.0 * (e.rate / max_rate).sqrt() } else { 1.0 };
            let class = format!(
                "edge{}{}",
                if e.error { " error" } else { "" },
                if e.unobserved { " unobserved" } else { "" }
            );
            let label_class = if e.error { "edge-label error" } else { "edge-label" };
            let label = if full_labels || e.error {
                e.label.clone()
            } else {
                format!("{}/s", short(e.rate))
            };
            // On the curve, a third of the way: labels of calls that leave
            // one service apart by where they go.
            let (mx, my) = (sx + (ex - sx) * 0.45, sy + (ey - sy) * 0.3 - 4.0);
            Some(view! {
                <g class="call" data-from=e.from.clone() data-to=e.to.clone()>
                    <path class=class d=d stroke-width=format!("{width:.1}") marker-end="url(#arrow)">
                        <title>{format!("{} → {}: {}", e.from, e.to, e.label)}</title>
                    </path>
                    <text class=label_class x=format!("{mx:.1}") y=format!("{my:.1}") text-anchor="middle">{label}</text>
                </g>
            })
        })
        .collect_view();
    let node_views = nodes
        .into_iter()
        .filter_map(|n| {
            let (x, y) = *pos.get(&n.name)?;
            let class = if n.error { "node error" } else { "node" };
            Some(view! {
                <a href=n.href.clone() class=class data-service=n.name.clone()>
                    <rect x=x y=y width=nw height=nh rx="6"/>
                    <text class="name" x=x + 8.0 y=y + 16.0>{n.name.clone()}</text>
                    <text x=x + 8.0 y=y + 32.0>{n.detail.clone()}</text>
                </a>
            })
        })
        .collect_view();
    view! {
        <svg class="graph" width=width height=height viewBox=format!("0 0 {width} {height}") style="max-width:100%;height:auto" role="img">
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse">
                    <path d="M 0 0 L 10 5 L 0 10 z" fill="#8a93a6"/>
                </marker>
            </defs>
            {edge_views}
            {node_views}
        </svg>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_and_labels_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.3), 10.0);
        assert_eq!(nice_max(10.0), 10.0);
        assert_eq!(nice_max(0.013), 0.02);
        assert_eq!(nice_max(420.0), 500.0);
        assert_eq!(short(1500.0), "1500");
        assert_eq!(short(25_000.0), "25.0k");
        assert_eq!(short(2.50), "2.5");
        assert_eq!(short(0.25), "0.25");
        assert_eq!(short(0.99675), "0.997");
        assert_eq!(short(0.00012), "1.2e-4");
    }

    #[test]
    fn gaps_split_lines_and_values_scale_into_the_plot() {
        let pts = [
            (0, Some(0.0)),
            (10, Some(5.0)),
            (20, None),
            (30, Some(10.0)),
            (40, Some(10.0)),
        ];
        let s = segments(&pts, (0, 40), (100.0, 10.0), (0.0, 10.0));
        assert_eq!(s, vec!["0.0,10.0 25.0,5.0", "75.0,0.0 100.0,0.0"]);
        let html = view! {
            <TimeSeries id="c".to_string() title="Rate".to_string() unit="req/s".to_string()
                from_ns=0 to_ns=40 lines=vec![Line { name: "gateway".into(), points: pts.to_vec() }]/>
        }
        .to_html();
        assert_eq!(html.matches("<polyline").count(), 2, "{html}");
        assert!(html.contains("gateway"), "{html}");
        let empty = view! {
            <TimeSeries id="c".to_string() title="Rate".to_string() unit="req/s".to_string()
                from_ns=0 to_ns=40 lines=vec![]/>
        }
        .to_html();
        assert!(empty.contains("no data in this range"), "{empty}");
    }

    #[test]
    fn heatmaps_draw_only_observed_buckets() {
        assert_eq!(heat(0.0), "#eef3fd");
        assert_eq!(heat(1.0), "#1a3f8f");
        let html = view! {
            <Heatmap id="h".to_string() title="latency".to_string() unit="ms".to_string()
                times_ns=vec![0, 60, 120] to_ns=180 bounds=vec![10.0, 20.0, 50.0]
                counts=vec![vec![0, 4, 4, 0], vec![0, 0, 1, 0], vec![0, 0, 0, 0]]/>
        }
        .to_html();
        // Rows ≤ 20 and ≤ 50 only; three non-empty cells, the fullest darkest.
        assert!(html.contains("≤ 20") && html.contains("≤ 50"), "{html}");
        assert!(
            !html.contains("≤ 10") && !html.contains("&gt; 50"),
            "{html}"
        );
        assert_eq!(html.matches("<rect").count(), 3, "{html}");
        assert_eq!(html.matches("fill=\"#1a3f8f\"").count(), 2, "{html}");
        let empty = view! {
            <Heatmap id="h".to_string() title="t".to_string() unit="".to_string()
                times_ns=vec![0] to_ns=60 bounds=vec![1.0] counts=vec![vec![0, 0]]/>
        }
        .to_html();
        assert!(empty.contains("No observations"), "{empty}");
    }

    #[test]
    fn layers_follow_calls_and_survive_cycles() {
        let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let e = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let cols = layers(
            &n(&["cart", "catalog", "gateway", "inventory", "orders"]),
            &e(&[
                ("gateway", "cart"),
                ("gateway", "orders"),
                ("cart", "catalog"),
                ("catalog", "inventory"),
                ("orders", "inventory"),
            ]),
        );
        assert_eq!(
            cols,
            vec![
                n(&["gateway"]),
                n(&["cart", "orders"]),
                n(&["catalog"]),
                n(&["inventory"])
            ]
        );
        // Callees line up with their callers.
        let mut cols = vec![n(&["a", "b"]), n(&["x", "y"])];
        order_rows(&mut cols, &e(&[("a", "y"), ("b", "x")]));
        assert_eq!(cols[1], n(&["y", "x"]));
        // A cycle does not loop forever; every node is placed once.
        let cols = layers(&n(&["a", "b"]), &e(&[("a", "b"), ("b", "a")]));
        assert_eq!(cols.iter().map(Vec::len).sum::<usize>(), 2);
    }

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
        // Labelled axes, the remaining budget (1 bad of 1 allowed: 0%)
        // and the exhaustion line.
        assert!(html.contains("% of the window's budget"), "{html}");
        assert!(html.contains("time (UTC)"), "{html}");
        let legend = &html[html.find("class=\"legend\"").unwrap()..];
        assert!(legend.contains("budget left"), "{legend}");
        assert!(legend.contains("<b>0</b>"), "{legend}");
        assert!(html.contains("exhausted"), "{html}");
        let empty = view! { <BurnDown points=vec![] objective=0.999/> }.to_html();
        assert!(empty.contains("No events"), "{empty}");
    }
}
