//! `/explore/metrics`: pick a metric from the catalogue, group it by
//! attributes, and chart it: a counter as a per-second rate, a gauge as
//! its average (or min, max, last), a histogram as a quantile (or the
//! average).

use analytics::red::RedError;
use analytics::series::{MetricInfo, Series};
use axum::extract::{Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use serde::Deserialize;

use super::charts::{COLORS, Heatmap, Line, Mark, TimeSeries, short};
use super::services::aligned;
use super::{View, error_page, non_empty, own_path, page};
use crate::WebState;

/// Form fields besides the view.
#[derive(Debug, Default, Deserialize)]
pub struct MetricForm {
    /// Metric name.
    pub name: Option<String>,
    /// Comma-separated keys to group by (`service.name` or attributes).
    pub group_by: Option<String>,
    /// For gauges: `avg`, `min`, `max`, `last`; for histograms: `p50`,
    /// `p90`, `p95`, `p99`, `avg`. Counters always chart the rate.
    pub stat: Option<String>,
}

/// What a chart shows, as lines, and the y-axis unit.
type Charted = (Vec<Line>, String);

/// Lines from grouped series: one per group, the largest (by the sum of
/// their values) first, at most as many as there are colours.
fn lines<P>(
    series: Vec<Series<P>>,
    value: impl Fn(&P) -> (i64, Option<f64>),
) -> (Vec<Line>, usize) {
    let mut all: Vec<(f64, Line)> = series
        .into_iter()
        .map(|s| {
            let name = if s.labels.is_empty() {
                "all".to_string()
            } else {
                s.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let points: Vec<(i64, Option<f64>)> = s.points.iter().map(&value).collect();
            let weight = points.iter().filter_map(|p| p.1).sum::<f64>();
            (weight, Line { name, points })
        })
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let hidden = all.len().saturating_sub(COLORS.len());
    (
        all.into_iter().take(COLORS.len()).map(|(_, l)| l).collect(),
        hidden,
    )
}

async fn chart(
    s: &WebState,
    info: &MetricInfo,
    stat: &str,
    w: &analytics::red::Window,
    step: i64,
    group_by: &[String],
) -> Result<(Charted, usize, String), RedError> {
    let unit = info.unit.clone().unwrap_or_default();
    match info.metric_type.as_str() {
        "sum" => {
            let series =
                analytics::series::counter_rate(&s.store, &info.name, w, step, group_by).await?;
            let (l, hidden) = lines(series, |p| (p.time_ns, Some(p.rate)));
            Ok(((l, format!("{unit}/s")), hidden, "rate".into()))
        }
        "gauge" => {
            let series = analytics::series::gauge(&s.store, &info.name, w, step, group_by).await?;
            let stat = match stat {
                "min" | "max" | "last" => stat,
                _ => "avg",
            };
            let (l, hidden) = lines(series, |p| {
                let v = match stat {
                    "min" => p.min,
                    "max" => p.max,
                    "last" => p.last,
                    _ => p.avg,
                };
                (p.time_ns, v)
            });
            Ok(((l, unit), hidden, stat.into()))
        }
        "histogram" => {
            let q = match stat {
                "p50" => Some(0.5),
                "p90" => Some(0.9),
                "p99" => Some(0.99),
                "avg" => None,
                _ => Some(0.95),
            };
            let series = analytics::series::histogram(
                &s.store,
                &info.name,
                q.unwrap_or(0.5),
                w,
                step,
                group_by,
            )
            .await?;
            let (l, hidden) = lines(series, |p| {
                (p.time_ns, if q.is_some() { p.value } else { p.average })
            });
            let label = q.map_or("avg".to_string(), |q| format!("p{}", (q * 100.0).round()));
            Ok(((l, unit), hidden, label))
        }
        other => Err(RedError::BadRequest(format!(
            "{} is a {other} metric; charts cover sums (counters), gauges and histograms",
            info.name
        ))),
    }
}

/// `GET /explore/metrics`.
pub async fn explore(
    State(s): State<WebState>,
    view: View,
    Query(f): Query<MetricForm>,
    RawQuery(raw): RawQuery,
) -> Response {
    let w = view.window;
    let catalogue = match analytics::series::list(&s.store, &w).await {
        Ok(c) => c,
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Metrics",
                format!("the metric catalogue could not be read: {e}"),
            );
        }
    };
    let name = non_empty(&f.name);
    let group_by: Vec<String> = non_empty(&f.group_by)
        .map(|g| analytics::series::parse_group_by(&g))
        .unwrap_or_default();
    let stat = non_empty(&f.stat).unwrap_or_default();
    let mut status = StatusCode::OK;
    let info = name
        .as_ref()
        .and_then(|n| catalogue.iter().find(|m| &m.name == n));
    let result = match (&name, info) {
        (None, _) => view! { <p class="muted">"Pick a metric."</p> }.into_any(),
        (Some(n), None) => {
            status = StatusCode::NOT_FOUND;
            view! { <p class="error">{format!("No metric named {n} has points in this range.")}</p> }.into_any()
        }
        (Some(_), Some(info)) => {
            let (cw, step) = aligned(&w, 60);
            match chart(&s, info, &stat, &cw, step, &group_by).await {
                Ok(((lines, unit), hidden, label)) => {
                    let heatmap = if info.metric_type == "histogram" {
                        match analytics::series::heatmap(&s.store, &info.name, &cw, step).await {
                            Ok(h) => view! {
                                <Heatmap id="metric-heatmap".to_string() title=format!("{} distribution", info.name)
                                    unit=unit.clone() times_ns=h.times_ns to_ns=cw.to_ns bounds=h.bounds counts=h.counts/>
                            }
                            .into_any(),
                            Err(e) => view! { <p class="error">"The distribution could not be read: " {e.to_string()}</p> }.into_any(),
                        }
                    } else {
                        ().into_any()
                    };
                    let title = format!("{} ({label})", info.name);
                    // Exemplars of a histogram: the value and the trace behind it.
                    let marks: Vec<Mark> = if info.metric_type == "histogram" {
                        analytics::series::exemplars(&s.store, &info.name, &cw, 200)
                            .await
                            .unwrap_or_default()
                            .into_iter()
                            .map(|e| Mark {
                                t_ns: e.time_ns,
                                value: e.value,
                                href: format!("/traces/{}", e.trace_id),
                                title: format!(
                                    "exemplar {} {unit}, trace {}",
                                    short(e.value),
                                    e.trace_id
                                ),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let table: Vec<(String, Option<f64>)> = lines
                        .iter()
                        .map(|l| (l.name.clone(), l.points.iter().rev().find_map(|p| p.1)))
                        .collect();
                    view! {
                        <TimeSeries id="metric-chart".to_string() title=title unit=unit from_ns=cw.from_ns to_ns=cw.to_ns lines=lines marks=marks/>
                        {(hidden > 0).then(|| view! { <p class="muted">{hidden} " smaller groups not drawn."</p> })}
                        {heatmap}
                        <table id="metric-groups">
                            <tr><th>"group"</th><th>"latest"</th></tr>
                            {table
                                .into_iter()
                                .map(|(g, v)| view! { <tr><td>{g}</td><td class="num">{v.map(short).unwrap_or_else(|| "–".into())}</td></tr> })
                                .collect_view()}
                        </table>
                    }
                    .into_any()
                }
                Err(e) => {
                    status = match e {
                        RedError::BadRequest(_) => StatusCode::BAD_REQUEST,
                        _ => StatusCode::INTERNAL_SERVER_ERROR,
                    };
                    view! { <p class="error">{e.to_string()}</p> }.into_any()
                }
            }
        }
    };
    let chosen = name.clone().unwrap_or_default();
    // The metrics with the most points (the chosen one always), see crate::top.
    let shown = crate::top::top(
        catalogue.iter().collect::<Vec<_>>(),
        crate::top::PAGE_METRICS,
        None,
        |m| m.name.as_str(),
        |m| {
            if m.name == chosen {
                f64::INFINITY
            } else {
                m.points as f64
            }
        },
    );
    let metrics_omitted = shown.omitted();
    let shown = shown.items;
    let services_of = |m: &analytics::series::MetricInfo| {
        const SHOWN: usize = 10;
        let mut text = m
            .services
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if m.services.len() > SHOWN {
            text.push_str(&format!(" and {} more", m.services.len() - SHOWN));
        }
        text
    };
    let keys: Vec<String> = info
        .map(|i| {
            let mut k = vec!["service.name".to_string()];
            k.extend(i.attribute_keys.iter().cloned());
            k
        })
        .unwrap_or_default();
    let stats: &[&str] = match info.map(|i| i.metric_type.as_str()) {
        Some("gauge") => &["avg", "min", "max", "last"],
        Some("histogram") => &["p50", "p90", "p95", "p99", "avg"],
        _ => &[],
    };
    let body = view! {
        <h1>"Metrics"</h1>
        <section>
            <form method="get" action="/explore/metrics" class="search">
                {view.hidden_fields()}
                <label>"metric "
                    <select name="name" id="metric-name">
                        <option value="" selected=chosen.is_empty()>"choose…"</option>
                        {shown
                            .iter()
                            .map(|m| {
                                let label = format!("{} ({}{})", m.name, m.metric_type, m.unit.as_deref().map(|u| format!(", {u}")).unwrap_or_default());
                                view! { <option value=m.name.clone() selected=chosen == m.name>{label}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <label>" group by "
                    <input name="group_by" list="group-keys" placeholder="service.name" value=f.group_by.clone().unwrap_or_default()/>
                    <datalist id="group-keys">{keys.into_iter().map(|k| view! { <option value=k/> }).collect_view()}</datalist>
                </label>
                {(!stats.is_empty()).then(|| view! {
                    <label>" show "
                        <select name="stat">
                            {stats.iter().map(|x| view! { <option value=*x selected=stat == *x>{*x}</option> }).collect_view()}
                        </select>
                    </label>
                })}
                " " <button type="submit">"Chart"</button>
            </form>
        </section>
        <section id="metric-result">{result}</section>
        <section id="catalogue">
            <h2>"Catalogue"</h2>
            <table>
                <tr><th>"metric"</th><th>"type"</th><th>"unit"</th><th>"services"</th><th>"attributes"</th><th>"points"</th></tr>
                {shown
                    .iter()
                    .map(|m| {
                        let href = format!("/explore/metrics?{}&name={}", view.query, super::url_encode(&m.name));
                        view! {
                            <tr>
                                <td><a href=href>{m.name.clone()}</a></td>
                                <td>{m.metric_type.clone()}</td>
                                <td>{m.unit.clone().unwrap_or_default()}</td>
                                <td>{services_of(m)}</td>
                                <td>{m.attribute_keys.join(", ")}</td>
                                <td class="num">{m.points}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </table>
            {(metrics_omitted > 0).then(|| view! {
                <p class="muted">{format!(
                    "{metrics_omitted} more metrics not shown: the {} with the most points are listed.",
                    crate::top::PAGE_METRICS
                )}</p>
            })}
        </section>
    }
    .to_html();
    let mut r = page(
        "Metrics",
        Some(&view),
        &own_path("/explore/metrics", raw.as_deref()),
        body,
    );
    *r.status_mut() = status;
    r
}
