//! `/slos` and `/slos/{name}`: every SLO at a glance, and one SLO:
//! objective, SLI, budget, burn-rate table per alert window with state,
//! the error-budget burn-down, its incidents.

use super::*;

/// `GET /slos`: every SLO, least budget left first.
pub async fn slo_list(State(s): State<WebState>, view: View) -> Response {
    let body = view! {
        <h1>"SLOs"</h1>
        <section><SloRows slos=slo_statuses(&s) query=view.query.clone()/></section>
    }
    .to_html();
    page("SLOs", Some(&view), "/slos", body)
}

/// `GET /slos/{name}`: one SLO with its burn rates and budget burn-down.
pub async fn slo_page(State(s): State<WebState>, Path(name): Path<String>, view: View) -> Response {
    let engine = match engine(&s, "No SLOs") {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Some(def) = engine.find_slo(&name) else {
        return error_page(
            StatusCode::NOT_FOUND,
            "Unknown SLO",
            format!("No SLO named {name:?}."),
        );
    };
    let at = view.window.to_ns;
    let status = if view.to.is_some() {
        engine.status_of(&def, at).await
    } else {
        match engine.last_statuses().into_iter().find(|x| x.name == name) {
            Some(st) => Ok(st),
            None => engine.status_of(&def, at).await,
        }
    };
    let status = match status {
        Ok(st) => st,
        Err(e) => {
            return error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Evaluation failed",
                e.to_string(),
            );
        }
    };
    let burn: Vec<BurnPoint> = engine
        .burndown(&def, status.at_ns, 120)
        .await
        .unwrap_or_default();
    let bands: Vec<charts::Band> = status
        .corrections
        .iter()
        .map(|c| charts::Band {
            from_ns: c.from_ns,
            to_ns: c.to_ns,
            title: format!("{} #{}: {} ({})", c.kind, c.id, c.reason, c.created_by),
        })
        .collect();
    let sli_chart = sli_chart(&burn, status.objective, bands.clone());
    // Each tier's burn over the page's range, with its threshold.
    let history = engine
        .burn_history(
            &def,
            view.window.from_ns,
            view.window.to_ns.min(status.at_ns),
            60,
        )
        .await
        .unwrap_or_default();
    let burn_charts = history
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (from, to) = (view.window.from_ns, view.window.to_ns.min(status.at_ns));
            let span = |secs: u64| humantime::format_duration(Duration::from_secs(secs)).to_string();
            let title = format!(
                "{} tier: burn over {} and {} (fires above {:.2}x)",
                t.severity,
                span(t.long_secs),
                span(t.short_secs),
                t.factor
            );
            let lines = vec![
                charts::Line {
                    name: format!("{} window", span(t.long_secs)),
                    points: t.points.iter().map(|p| (p.0, p.1)).collect(),
                },
                charts::Line {
                    name: format!("{} window", span(t.short_secs)),
                    points: t.points.iter().map(|p| (p.0, p.2)).collect(),
                },
                charts::Line {
                    name: "threshold".into(),
                    points: vec![(from, Some(t.factor)), (to, Some(t.factor))],
                },
            ];
            // Rendered apart: one deep view per tier would make the page's
            // view type (and its stack use) grow with the tiers.
            view! {
                <TimeSeries id=format!("burn-tier-{i}") title=title unit="burn rate (x budget)".to_string()
                    from_ns=from to_ns=to lines=lines bands=bands.clone() x_label="time (UTC)".to_string()/>
            }
            .to_html()
        })
        .collect::<String>();
    let mine: Vec<Incident> = incidents(&s, 500)
        .into_iter()
        .filter(|i| i.slo == name || i.slo.starts_with(&format!("{name}{{")))
        .collect();
    let q = view.query.clone();
    let tte = status
        .time_to_exhaustion_secs
        .map(|t| humantime::format_duration(Duration::from_secs(t as u64)).to_string())
        .unwrap_or_else(|| "–".into());
    // The charts and the corrections are rendered apart, so the page's
    // view stays small (a deep view type costs stack in debug builds).
    let budget_chart =
        view! { <BurnDown points=burn objective=status.objective bands=bands.clone()/> }.to_html();
    let sli_chart = sli_chart.to_html();
    // Listed from the store, not the last evaluation, so one just added
    // (or planned for later) shows at once.
    let listed: Vec<slo_engine::corrections::Correction> = engine
        .all_corrections()
        .into_iter()
        .filter(|c| c.scope.matches(&def) && c.to_ns > status.window_from_ns)
        .collect();
    let corrections_html = corrections_view(&name, &listed, &q).to_html();
    let instances_html = if def.group_by.is_empty() {
        String::new()
    } else {
        let last = engine.last_groups().into_iter().find(|g| g.name == name);
        let group = match last {
            Some(g) if view.to.is_none() => Ok(g),
            _ => engine.group_at(&def, at).await,
        };
        match group {
            Ok(g) => instances_view(&g, &q).to_html(),
            Err(e) => format!(
                "<p class=\"error\">{}</p>",
                escape(&format!("cannot evaluate the instances: {e}"))
            ),
        }
    };
    let body = view! {
        <h1>{status.display_name.clone()} " " <StateBadge state=status.state.as_str().to_string()/></h1>
        <section id="summary">
            <table>
                <tr><th>"objective"</th><th>"window"</th><th>"SLI"</th><th>"events"</th><th>"bad"</th><th>"SLI value"</th><th>"budget left"</th><th>"budget exhausted in"</th></tr>
                <tr>
                    <td class="num">{pct(Some(status.objective))}</td>
                    <td>{format!("{} ({})", status.window, status.budgeting)}</td>
                    <td>{status.sli_kind.clone()}</td>
                    <td class="num">{status.total}</td>
                    <td class="num">{status.bad}</td>
                    <td class="num">{pct(status.sli)}</td>
                    <td class="num" id="budget-left">{pct(status.budget_remaining)}</td>
                    <td class="num">{tte}</td>
                </tr>
            </table>
            {status.coverage_note.clone().map(|n| view! {
                <p class="coverage" id="coverage">{format!("Partial window: {n}. Budget and burn are over that much history only.")}</p>
            })}
            {status.held_by.clone().map(|h| view! {
                <p class="held" id="held">{format!("Alerts held: {h}")}</p>
            })}
            <p class="muted">{def.description.clone()}</p>
            {status.warnings.iter().map(|w| view! { <p class="error">{w.clone()}</p> }).collect_view()}
        </section>
        <section id="slo-instances" inner_html=instances_html></section>
        <section id="burn-rates">
            <h2>"Burn rate per alert window"</h2>
            <BurnTable tiers=status.tiers.clone()/>
        </section>
        <section id="burndown">
            <h2>"Error budget over the window"</h2>
            <div inner_html=budget_chart></div>
        </section>
        <section id="burn-history">
            <h2>"Burn rate over time, per alert tier"</h2>
            <div inner_html=burn_charts></div>
        </section>
        <section id="sli-chart" inner_html=sli_chart></section>
        <section id="slo-corrections" inner_html=corrections_html></section>
        <section id="slo-incidents"><h2>"Incidents"</h2><IncidentRows incidents=mine query=q.clone()/></section>
        <p><a id="report-link" href=format!("/slos/{}/report?{q}", url_encode(&name))>"Monthly report"</a></p>
    }
    .to_html();
    page(
        &status.display_name,
        Some(&view),
        &format!("/slos/{name}"),
        body,
    )
}

/// A grouped SLO's instances, worst first, and the values beyond the cap.
fn instances_view(g: &slo_engine::evaluate::GroupStatus, query: &str) -> impl IntoView + use<> {
    let over = (g.over_cap > 0).then(|| {
        format!(
            "{}{} more values of {} beyond the cap of {} instances are not tracked \
             (the instances kept have the most events; raise [slo] max_instances_per_slo to track more).",
            if g.saturated { "At least " } else { "" },
            g.over_cap,
            g.group_by.join(", "),
            g.cap
        )
    });
    view! {
        <h2>{format!("Instances by {} ({}), worst first", g.group_by.join(", "), g.instances.len())}</h2>
        {over.map(|o| view! { <p class="coverage" id="over-cap">{o}</p> })}
        <p class="muted">"The page above counts every event of the SLO together; each instance has its own budget, alerts and incidents."</p>
        <SloRows slos=g.instances.clone() query=query.to_string()/>
    }
}

/// The burn rate of every alert tier: windows, threshold, burns, state.
#[component]
pub(super) fn BurnTable(tiers: Vec<slo_engine::evaluate::TierStatus>) -> impl IntoView {
    view! {
            <table>
                <tr><th>"severity"</th><th>"long window"</th><th>"short window"</th><th>"threshold"</th><th>"long burn"</th><th>"short burn"</th><th>"events (long)"</th><th>"state"</th></tr>
                {tiers
                    .iter()
                    .map(|t| {
                        let state = if t.firing {
                            "firing"
                        } else if t.insufficient_data {
                            "insufficient data"
                        } else {
                            "ok"
                        };
                        let class = if t.firing { "firing" } else { "" };
                        view! {
                            <tr>
                                <td><StateBadge state=t.severity.to_string()/></td>
                                <td>{humantime::format_duration(Duration::from_secs(t.long_secs)).to_string()}</td>
                                <td>{humantime::format_duration(Duration::from_secs(t.short_secs)).to_string()}</td>
                                <td class="num">{format!("{:.2}x", t.factor)}</td>
                                <td class="num">{num(t.long_burn)}</td>
                                <td class="num">{num(t.short_burn)}</td>
                                <td class="num">{t.long_events}</td>
                                <td class=class>{state}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </table>
    }
}

/// The SLI per burn-down bucket (good share of that bucket's events, %)
/// against the objective, over the SLO window.
pub(super) fn sli_chart(
    burn: &[BurnPoint],
    objective: f64,
    bands: Vec<charts::Band>,
) -> impl IntoView + use<> {
    let points: Vec<(i64, Option<f64>)> = burn
        .windows(2)
        .map(|w| {
            let total = w[1].total.saturating_sub(w[0].total);
            let bad = w[1].bad.saturating_sub(w[0].bad);
            (
                w[1].time_ns,
                (total > 0).then(|| 100.0 * (1.0 - bad as f64 / total as f64)),
            )
        })
        .collect();
    let (from, to) = match (burn.first(), burn.last()) {
        (Some(a), Some(b)) if b.time_ns > a.time_ns => (a.time_ns, b.time_ns),
        _ => return view! { <p class="muted">"No SLI history in the window yet."</p> }.into_any(),
    };
    let objective_pct = objective * 100.0;
    let worst = points
        .iter()
        .filter_map(|p| p.1)
        .fold(objective_pct, f64::min);
    // Room below the worst bucket and the objective line, on a round step.
    let gap = (100.0 - worst).max(0.01) * 1.25;
    let step = charts::nice_max(gap / 4.0);
    let lo = ((100.0 - gap) / step).floor() * step;
    let lines = vec![
        charts::Line {
            name: "SLI".into(),
            points,
        },
        charts::Line {
            name: "objective".into(),
            points: vec![(from, Some(objective_pct)), (to, Some(objective_pct))],
        },
    ];
    view! {
        <TimeSeries id="sli".to_string() title="SLI over the window".to_string() unit="% good per bucket".to_string()
            from_ns=from to_ns=to lines=lines y_range=(lo.max(0.0), 100.0) bands=bands x_label="time (UTC)".to_string()/>
    }
    .into_any()
}

/// Query of the report page.
#[derive(Debug, serde::Deserialize)]
pub struct ReportQuery {
    /// `YYYY-MM` [default: the previous month].
    pub month: Option<String>,
}

/// `GET /slos/{name}/report?month=YYYY-MM`: the SLO's month: attainment,
/// budget used, incidents with the budget each spent, top bad operations,
/// with Markdown and CSV downloads.
pub async fn slo_report(
    State(s): State<WebState>,
    Path(name): Path<String>,
    axum::extract::Query(rq): axum::extract::Query<ReportQuery>,
    view: View,
) -> Response {
    let engine = match engine(&s, "No SLOs") {
        Ok(e) => e,
        Err(r) => return r,
    };
    if engine.find_slo(&name).is_none() {
        return error_page(
            StatusCode::NOT_FOUND,
            "Unknown SLO",
            format!("No SLO named {name:?}."),
        );
    }
    let r = match engine
        .month_report(&name, rq.month.as_deref().filter(|m| !m.is_empty()))
        .await
    {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Report", e),
    };
    let tz = r.time_zone.clone();
    let when = move |ns: i64| {
        let tz: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
        use chrono::TimeZone;
        tz.timestamp_nanos(ns)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    };
    let api = format!(
        "/api/v1/slos/{}/report?month={}",
        url_encode(&name),
        url_encode(&r.month)
    );
    let q = view.query.clone();
    let incidents_view = if r.incidents.is_empty() {
        view! { <p class="muted">"No incidents this month."</p> }.into_any()
    } else {
        view! {
            <table id="report-incidents">
                <tr><th>"#"</th><th>"severity"</th><th>"opened"</th><th>"resolved"</th><th>"duration"</th><th>"bad"</th><th>{r.unit.clone()}</th><th>"budget spent"</th></tr>
                {r.incidents.iter().map(|i| view! {
                    <tr>
                        <td><a href=format!("/incidents/{}?{q}", i.id)>{i.id}</a></td>
                        <td>{i.severity.clone()}</td>
                        <td>{when(i.opened_ns)}</td>
                        <td>{i.resolved_ns.map_or_else(|| "open".to_string(), &when)}</td>
                        <td class="num">{slo_engine::evaluate::human_span(i.duration_secs)}</td>
                        <td class="num">{i.bad}</td>
                        <td class="num">{i.total}</td>
                        <td class="num">{pct(i.budget_spent)}</td>
                    </tr>
                }).collect_view()}
            </table>
        }
        .into_any()
    };
    let body = view! {
        <h1>{format!("{}: {}", r.display_name, r.month)}</h1>
        <form method="get" class="search">
            <input name="month" value=r.month.clone() placeholder="YYYY-MM"/>
            " "<button type="submit">"Show"</button>
            " "<a href=format!("{api}&format=md")>"Markdown"</a>
            " "<a href=format!("{api}&format=csv")>"CSV"</a>
        </form>
        <p class="muted">{format!("{} to {} ({})", when(r.from_ns), when(r.to_ns), r.time_zone)}</p>
        <table id="report-summary">
            <tr><th>"objective"</th><th>"attainment"</th><th>"met"</th><th>{r.unit.clone()}</th><th>"bad"</th><th>"budget used"</th></tr>
            <tr>
                <td class="num">{pct(Some(r.objective))}</td>
                <td class="num" id="attainment">{pct(r.attainment)}</td>
                <td>{r.met.map_or("–", |m| if m { "yes" } else { "no" })}</td>
                <td class="num">{r.total}</td>
                <td class="num">{r.bad}</td>
                <td class="num" id="budget-used">{pct(r.budget_used)}</td>
            </tr>
        </table>
        <h2>"Incidents"</h2>
        {incidents_view}
        <h2>"Top bad operations"</h2>
        <table>
            <tr><th>"service"</th><th>"operation"</th><th>"bad"</th><th>"events"</th><th>"share of bad"</th></tr>
            {r.top_operations.iter().map(|o| view! {
                <tr><td>{o.service.clone()}</td><td>{o.operation.clone()}</td><td class="num">{o.bad}</td><td class="num">{o.total}</td><td class="num">{pct(Some(o.share_of_bad))}</td></tr>
            }).collect_view()}
        </table>
    }
    .to_html();
    page(
        &format!("{} report", r.display_name),
        Some(&view),
        &format!("/slos/{name}/report"),
        body,
    )
}

/// The corrections and maintenance windows of an SLO's window.
fn corrections_view(
    slo: &str,
    list: &[slo_engine::corrections::Correction],
    query: &str,
) -> impl IntoView + use<> {
    let status_corrections = list.to_vec();
    let base = format!("/slos/{}/corrections", url_encode(slo));
    let action = format!("{base}?{query}");
    let now = field_time(slo_engine::engine::now_ns());
    let by = crate::auth::signed_in().map(|p| p.name).unwrap_or_default();
    let delete_base = base.clone();
    let delete_query = query.to_string();
    let delete_by = by.clone();
    view! {
        <h2>"Corrections and maintenance windows"</h2>
            {if status_corrections.is_empty() {
                view! { <p class="muted">"None in this window. Events inside a correction do not count; a maintenance window also holds the alerts (also through /api/v1/corrections, burnwatch slo correct, or YAML kind BudgetAdjustment)."</p> }.into_any()
            } else {
                view! {
                    <table id="corrections">
                        <tr><th>"#"</th><th>"kind"</th><th>"from"</th><th>"to"</th><th>"reason"</th><th>"by"</th><th>"source"</th><th></th></tr>
                        {status_corrections.iter().map(|c| {
                            // Stored ones can be deleted here; YAML ones live in their file.
                            let delete = (c.id > 0).then(|| {
                                let action = format!("{delete_base}/{}/delete?{delete_query}", c.id);
                                view! {
                                    <form method="post" action=action class="expire">
                                        <input type="hidden" name="by" value=delete_by.clone()/>
                                        <button type="submit">"Delete"</button>
                                    </form>
                                }
                            });
                            view! {
                                <tr id=format!("correction-{}", c.id)>
                                    <td>{c.id}</td>
                                    <td>{c.kind.clone()}</td>
                                    <td>{slo_engine::notify::rfc3339(c.from_ns)}</td>
                                    <td>{slo_engine::notify::rfc3339(c.to_ns)}</td>
                                    <td>{c.reason.clone()}</td>
                                    <td>{c.created_by.clone()}</td>
                                    <td>{c.source.clone()}</td>
                                    <td>{delete}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </table>
                }
                .into_any()
            }}
        <form method="post" action=action class="search" id="correction-form">
            <label>"Add a " <select name="kind">
                <option value="correction">"correction (events not counted)"</option>
                <option value="maintenance">"maintenance window (also holds alerts)"</option>
            </select></label>
            <label>" from " <input type="datetime-local" name="from" value=now/></label>
            <label>" for " <input name="duration" size="5" value="1h"/></label>
            <label>" or until " <input type="datetime-local" name="to"/></label>
            <label>" reason " <input name="reason" size="30"/></label>
            <label>" by " <input name="created_by" size="10" value=by/></label>
            <button type="submit">"Add"</button>
            <span class="muted">" Times in UTC; needs the editor role when sign-in is on."</span>
        </form>
    }
}

/// The correction form's fields.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct CorrectionForm {
    /// `correction` or `maintenance`.
    pub kind: Option<String>,
    /// Start: `YYYY-MM-DDTHH:MM` (UTC), RFC 3339, or empty for now.
    pub from: Option<String>,
    /// End, like `from`; or give `duration`.
    pub to: Option<String>,
    /// Length from the start, e.g. `2h`.
    pub duration: Option<String>,
    /// Why.
    pub reason: Option<String>,
    /// Who.
    pub created_by: Option<String>,
}

/// The correction a form describes for SLO `slo` (scope: that SLO).
pub fn new_correction(
    slo: &str,
    f: &CorrectionForm,
    now: i64,
) -> Result<slo_engine::corrections::NewCorrection, String> {
    fn filled(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let from = match filled(&f.from) {
        None => now,
        Some(t) => super::view_time("from", t)?,
    };
    let to = match (filled(&f.to), filled(&f.duration)) {
        (Some(t), _) => super::view_time("to", t)?,
        (None, Some(d)) => {
            let d = humantime::parse_duration(d)
                .map_err(|e| format!("duration {d:?}: {e} (e.g. 30m, 2h, 1d)"))?;
            from.saturating_add(d.as_nanos().min(i64::MAX as u128) as i64)
        }
        (None, None) => return Err("give an end (until) or a duration".into()),
    };
    let by = filled(&f.created_by)
        .map(str::to_string)
        .or_else(|| crate::auth::signed_in().map(|p| p.name))
        .unwrap_or_default();
    Ok(slo_engine::corrections::NewCorrection {
        kind: filled(&f.kind).map(str::to_string),
        scope: slo_engine::corrections::Scope {
            slo: Some(slo.to_string()),
            ..Default::default()
        },
        from_ns: from,
        to_ns: to,
        reason: f.reason.clone().unwrap_or_default(),
        created_by: by,
    })
}

/// `POST /slos/{name}/corrections`: adds a correction or maintenance
/// window for this SLO; 303 back to its page, or 400 saying what was wrong.
pub async fn create_correction(
    State(s): State<WebState>,
    Path(name): Path<String>,
    axum::extract::Query(v): axum::extract::Query<ViewParams>,
    axum::extract::Form(f): axum::extract::Form<CorrectionForm>,
) -> Response {
    let engine = match engine(&s, "No SLOs") {
        Ok(e) => e,
        Err(r) => return r,
    };
    if engine.find_slo(&name).is_none() {
        return error_page(
            StatusCode::NOT_FOUND,
            "Unknown SLO",
            format!("No SLO named {name:?}."),
        );
    }
    let now = slo_engine::engine::now_ns();
    let created = new_correction(&name, &f, now).and_then(|n| engine.corrections().create(&n, now));
    match created {
        Ok(c) => {
            tracing::info!(slo = %name, id = c.id, by = %c.created_by, "correction added from the SLO page");
            let view = v.resolve().map(|v| v.query).unwrap_or_default();
            axum::response::Redirect::to(&format!(
                "/slos/{}?{view}#correction-{}",
                url_encode(&name),
                c.id
            ))
            .into_response()
        }
        Err(e) => error_page(
            StatusCode::BAD_REQUEST,
            "Correction not added",
            format!("{e}. Go back to the SLO page to fix the form."),
        ),
    }
}

/// The delete form's fields.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct DeleteForm {
    /// Who deletes it [default: the signed-in token's name].
    pub by: Option<String>,
}

/// `POST /slos/{name}/corrections/{id}/delete`: deletes a stored
/// correction (kept in its audit trail); 303 back to the SLO page.
pub async fn delete_correction(
    State(s): State<WebState>,
    Path((name, id)): Path<(String, i64)>,
    axum::extract::Query(v): axum::extract::Query<ViewParams>,
    axum::extract::Form(f): axum::extract::Form<DeleteForm>,
) -> Response {
    let engine = match engine(&s, "No SLOs") {
        Ok(e) => e,
        Err(r) => return r,
    };
    let by =
        f.by.filter(|b| !b.trim().is_empty())
            .or_else(|| crate::auth::signed_in().map(|p| p.name))
            .unwrap_or_else(|| "dashboard".into());
    match engine
        .corrections()
        .delete(id, &by, slo_engine::engine::now_ns())
    {
        Ok(true) => {
            let view = v.resolve().map(|v| v.query).unwrap_or_default();
            axum::response::Redirect::to(&format!("/slos/{}?{view}", url_encode(&name)))
                .into_response()
        }
        Ok(false) => error_page(
            StatusCode::NOT_FOUND,
            "Corrections",
            format!("No correction #{id}."),
        ),
        Err(e) => error_page(StatusCode::BAD_REQUEST, "Corrections", e),
    }
}
