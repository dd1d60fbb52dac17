//! `/`: the overview: open incidents, SLOs at a glance, services with
//! RED and a request-rate sparkline.

use super::*;

/// The span of "current" rates: the last five minutes.
const RECENT_NS: i64 = 5 * 60 * 1_000_000_000;

/// `GET /`: the overview.
pub async fn overview(
    State(s): State<WebState>,
    view: View,
    Query(f): Query<ServiceFilter>,
) -> Response {
    let search = f.search.clone().filter(|q| !q.trim().is_empty());
    // The busiest services (after the search), at most PAGE_SERVICES.
    let mut omitted = 0;
    let services: Result<Vec<Red>, String> = s
        .rollups
        .services(&view.window)
        .await
        .map(|list| {
            let t = crate::top::top(
                list,
                crate::top::PAGE_SERVICES,
                search.as_deref(),
                |r| r.service.as_str(),
                |r| r.requests as f64,
            );
            omitted = t.omitted();
            t.items
        })
        .map_err(|e| e.to_string());
    // The current rate: the last five minutes of the range (its average
    // over the whole range is the next column, labelled as such: a range
    // that starts before the data would otherwise read as a low rate).
    let recent_ns = (view.window.to_ns - view.window.from_ns).min(RECENT_NS);
    let mut recent: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    if let Ok(list) = &services
        && !list.is_empty()
        && let Ok(w) = analytics::red::Window::new(view.window.to_ns - recent_ns, view.window.to_ns)
        && let Ok(now) = s.rollups.services(&w).await
    {
        recent = now.into_iter().map(|r| (r.service, r.rate)).collect();
    }
    // Sparklines in whole-minute buckets from a minute boundary, so they
    // come from rollups rather than raw spans.
    let (spark_window, step) = services::aligned(&view.window, 30);
    let mut sparks = std::collections::HashMap::new();
    if let Ok(list) = &services {
        for r in list.iter().take(30) {
            if let Ok(points) = s
                .rollups
                .series(&r.service, None, &spark_window, step)
                .await
            {
                sparks.insert(
                    r.service.clone(),
                    points.iter().map(|p| p.rate).collect::<Vec<_>>(),
                );
            }
        }
    }
    let mut open: Vec<Incident> = incidents(&s, 200)
        .into_iter()
        .filter(|i| i.state != "resolved")
        .collect();
    open.sort_by_key(|i| (i.severity != "page", -i.opened_ns));
    let q = view.query.clone();
    let services_view = match services {
        Err(e) => view! { <p class="error">"Services could not be loaded: " {e}</p> }.into_any(),
        Ok(list) if list.is_empty() && search.is_some() => view! {
            <p class="muted">"No service matches this search in this range."</p>
        }
        .into_any(),
        Ok(list) if list.is_empty() => view! {
            <p class="muted">"No server spans in this range. Point an OpenTelemetry exporter at the OTLP ports, or run `burnwatch demo`."</p>
        }
        .into_any(),
        Ok(list) => {
            let rows: Vec<Vec<Cell>> = list
                .into_iter()
                .map(|r| {
                    let spark = sparks.get(&r.service).cloned().unwrap_or_default();
                    let errors = Cell::num(pct(Some(r.error_ratio)), Some(r.error_ratio));
                    vec![
                        Cell::text(r.service.clone())
                            .link(format!("/services/{}?{q}", url_encode(&r.service))),
                        {
                            let now = recent.get(&r.service).copied().unwrap_or(0.0);
                            Cell::num(format!("{now:.2}"), Some(now))
                        },
                        Cell::num(format!("{:.2}", r.rate), Some(r.rate)),
                        if r.error_ratio > 0.01 { errors.class("firing") } else { errors },
                        Cell::num(format!("{:.1}", r.p95_ms), Some(r.p95_ms)),
                        Cell::num(format!("{:.1}", r.p99_ms), Some(r.p99_ms)),
                        Cell::svg(view! { <Sparkline values=spark/> }.to_html(), Some(r.rate)),
                    ]
                })
                .collect();
            let headers = [
                "service",
                "req/s (5m)",
                "avg req/s (range)",
                "errors",
                "p95 ms",
                "p99 ms",
                "rate",
            ]
                .map(String::from)
                .to_vec();
            view! { <SortableTable id="services-table".to_string() headers=headers rows=rows/> }
                .into_any()
        }
    };
    let body = view! {
        <h1>"Overview"</h1>
        <section id="open-incidents"><h2>"Open incidents"</h2><IncidentRows incidents=open query=q.clone()/></section>
        <section id="slos"><h2>"SLOs"</h2><SloRows slos=slo_statuses(&s) query=q.clone()/></section>
        <section id="services">
            <h2>"Services"</h2>
            <form method="get" action="/" class="search">
                {view.hidden_fields()}
                <input name="search" placeholder="search services" value=search.clone().unwrap_or_default()/>
                " "<button type="submit">"Search"</button>
            </form>
            {services_view}
            {(omitted > 0).then(|| view! {
                <p class="muted" id="services-omitted">{format!(
                    "{omitted} more services not shown: the {} busiest are listed; search to find one.",
                    crate::top::PAGE_SERVICES
                )}</p>
            })}
        </section>
    }
    .to_html();
    let path = match &search {
        Some(q) => format!("/?search={}", url_encode(q)),
        None => "/".to_string(),
    };
    page("Overview", Some(&view), &path, body)
}
