//! The dashboard in a real headless Chromium: the server runs on a real
//! socket over a store with an hour of checkout traffic whose last ten
//! minutes fail; the SLO engine (the shop's SLOs from alert-rules/) has
//! opened a page incident. Chromium loads each page; the test reads the DOM
//! it rendered and keeps a screenshot of each page in the target directory.

use std::path::PathBuf;
use std::process::Command;

use store::{Store, Table};
use web::{WebState, app};

const SEC: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// One checkout per second over the last hour; the last 10 minutes fail.
fn checkouts(now: i64) -> arrow::array::RecordBatch {
    let requests: Vec<(i64, bool)> = (0..3600i64)
        .map(|i| (now - 3600 * SEC + i * SEC, i >= 3000))
        .collect();
    store::synth::http_requests("gateway", "POST", "/api/checkout", &requests)
}

fn chromium() -> String {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c.to_string();
        }
    }
    panic!("no Chromium found: install Debian's `chromium` (./scripts/test.sh does)");
}

/// Loads `url` in headless Chromium; returns the DOM after load and saves a
/// screenshot as `name.png`.
fn browse(browser: &str, url: &str, name: &str) -> String {
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1300,1100",
    ];
    let run = |extra: &str| {
        Command::new(browser)
            .args(common)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(extra)
            .arg(url)
            .output()
            .unwrap()
    };
    let dom = run("--dump-dom");
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let shot = shots.join(format!("{name}.png"));
    let s = run(&format!("--screenshot={}", shot.display()));
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "empty screenshot"
    );
    String::from_utf8(dom.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_in_chromium() {
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    let now = now_ns();
    store.write(Table::Spans, checkouts(now)).await.unwrap();
    // gateway calls payments (failing with the checkouts) and catalog.
    let hour: Vec<(i64, bool)> = (0..3600i64)
        .map(|i| (now - 3600 * SEC + i * SEC, i >= 3000))
        .collect();
    store
        .write(
            Table::Spans,
            store::synth::calls("gateway", "payments", "/charge", &hour),
        )
        .await
        .unwrap();
    let fine: Vec<(i64, bool)> = hour.iter().step_by(2).map(|(t, _)| (*t, false)).collect();
    store
        .write(
            Table::Spans,
            store::synth::calls("gateway", "catalog", "/products", &fine),
        )
        .await
        .unwrap();
    store
        .write(Table::Logs, store::synth::logs(3, 100, now - 600 * SEC))
        .await
        .unwrap();
    for m in 1..=10 {
        store
            .write(
                Table::MetricPoints,
                store::synth::metric_points(now - m * 60 * SEC),
            )
            .await
            .unwrap();
    }
    let rules = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../alert-rules");
    // The shop's SLOs, checkout availability with a runbook.
    let copy = dir.path().join("rules");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(&rules).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&f).unwrap().replace(
                "  name: checkout-availability\n  displayName: Checkout availability\n",
                "  name: checkout-availability\n  displayName: Checkout availability\n  annotations: {runbook_url: \"https://runbooks.example/checkout\", owner: shop-team}\n",
            );
            std::fs::write(copy.join(f.file_name().unwrap()), text).unwrap();
        }
    }
    // A grouped SLO: one instance per gateway route (evaluated last).
    std::fs::write(
        copy.join("zz-routes.yaml"),
        r#"apiVersion: openslo/v1
kind: SLO
metadata: {name: gateway-routes, displayName: Gateway routes}
spec:
  service: gateway
  groupBy: [http.route]
  indicator:
    metadata: {name: gateway-route-errors}
    spec:
      ratioMetric:
        bad: {metricSource: {type: burnwatch, spec: {service: gateway, errors: true}}}
        total: {metricSource: {type: burnwatch, spec: {service: gateway}}}
  timeWindow: [{duration: 1d, isRolling: true}]
  objectives: [{target: 0.99}]
"#,
    )
    .unwrap();
    let slos = slo_engine::openslo::load_dir(&copy).unwrap();
    assert!(
        slos.iter()
            .any(|s| s.annotations.get("owner").is_some_and(|o| o == "shop-team")),
        "the runbook was added"
    );
    let engine = slo_engine::engine::SloEngine::open(
        store.clone(),
        slos,
        Default::default(),
        &dir.path().join("state"),
    )
    .unwrap();
    // A correction of five good minutes, shown as a band and listed.
    engine
        .corrections()
        .create(
            &slo_engine::corrections::NewCorrection {
                kind: None,
                scope: slo_engine::corrections::Scope {
                    slo: Some("checkout-availability".into()),
                    ..Default::default()
                },
                from_ns: now - 50 * 60 * SEC,
                to_ns: now - 45 * 60 * SEC,
                reason: "synthetic load test".into(),
                created_by: "alice".into(),
            },
            now,
        )
        .unwrap();
    let statuses = engine.evaluate_at(now).await;
    let checkout = statuses
        .iter()
        .find(|s| s.name == "checkout-availability")
        .unwrap();
    assert_eq!(checkout.state.as_str(), "page");

    let state = WebState {
        slo: Some(engine),
        ..WebState::new(store)
    };
    let base = testkit::serve(app(state)).await;

    let b = browser.clone();
    let base2 = base.clone();
    let abs_from = slo_engine::notify::rfc3339(now - 2 * 3600 * SEC);
    let abs_to = slo_engine::notify::rfc3339(now - 1800 * SEC);
    // This month (UTC: the shop's SLOs have rolling windows).
    let month_of = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .format("%Y-%m")
            .to_string()
    };
    let month = month_of(now);
    let whole_hour_in_month = month_of(now - 3600 * SEC) == month;
    let report_month = month.clone();
    let pages = tokio::task::spawn_blocking(move || {
        [
            ("overview", "/?refresh=0&range=24h".to_string()),
            ("slo", "/slos/checkout-availability?refresh=0".to_string()),
            ("slos", "/slos?refresh=0".to_string()),
            ("incidents", "/incidents?refresh=0".to_string()),
            ("incident", "/incidents/1?refresh=0".to_string()),
            ("missing", "/slos/nope".to_string()),
            ("service", "/services/gateway?refresh=0".to_string()),
            ("service-map", "/service-map?refresh=0".to_string()),
            ("metrics", "/explore/metrics?refresh=0&name=queue.depth&group_by=service.name".to_string()),
            (
                "query",
                "/query?refresh=0&sql=SELECT+service_name%2C+count(*)+AS+n+FROM+spans+WHERE+start_time+%3E%3D+%24from+GROUP+BY+1+ORDER+BY+1".to_string(),
            ),
            ("silences", "/silences?refresh=0".to_string()),
            ("traces", "/traces?refresh=0&service=payments&status=error".to_string()),
            ("logs", "/logs?refresh=0&severity=ERROR&service=orders".to_string()),
            (
                "histogram",
                "/explore/metrics?refresh=0&name=http.server.request.duration&stat=p99".to_string(),
            ),
            ("absolute", format!("/services/gateway?refresh=0&from={abs_from}&to={abs_to}")),
            ("report", format!("/slos/checkout-availability/report?refresh=0&month={report_month}")),
        ]
        .map(|(name, path)| browse(&b, &format!("{base2}{path}"), name))
    })
    .await
    .unwrap();
    let [
        overview,
        slo,
        slos,
        incidents,
        incident,
        missing,
        service,
        map,
        metrics,
        query,
        silences,
        traces_page,
        logs_page,
        histogram,
        absolute,
        report,
    ] = pages;

    // Overview: the open page incident on top, SLOs, services with RED.
    assert!(overview.contains("<h1>Overview</h1>"), "{overview}");
    let open = &overview[overview.find("id=\"open-incidents\"").unwrap()..];
    assert!(open.contains("checkout-availability"), "{open}");
    assert!(open.contains("badge page"), "{open}");
    assert!(overview.contains("Checkout availability"));
    assert!(
        overview.contains("<a href=\"/services/gateway?range=24h&amp;refresh=0\">gateway</a>"),
        "{overview}"
    );
    assert!(overview.contains("class=\"sparkline\""), "{overview}");
    // One request a second for the last hour of a 24 h range: the current
    // rate reads about 1 req/s, the range's average (labelled) 3600 / 86400.
    let table = &overview[overview.find("id=\"services-table\"").unwrap()..];
    assert!(
        table.contains("req/s (5m)") && table.contains("avg req/s (range)"),
        "{table}"
    );
    let row = &table[table.find(">gateway</a>").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    let cells: Vec<String> = row
        .split("</td>")
        .map(|c| {
            // The cell's text: everything outside tags and comments.
            let (mut text, mut depth) = (String::new(), 0);
            for ch in c.chars() {
                match ch {
                    '<' => depth += 1,
                    '>' => depth -= 1,
                    _ if depth == 0 => text.push(ch),
                    _ => {}
                }
            }
            text
        })
        .collect();
    // (The page is rendered seconds after the last request.)
    let current: f64 = cells[1].parse().unwrap();
    assert!((0.85..=1.0).contains(&current), "{row}");
    assert_eq!(cells.get(2).map(String::as_str), Some("0.04"), "{row}");

    // The monthly report: this month's checkouts, the open page incident.
    assert!(
        report.contains(&format!("Checkout availability: {month}")),
        "{report}"
    );
    assert!(report.contains("id=\"report-incidents\""), "{report}");
    assert!(report.contains("href=\"/incidents/1?"), "{report}");
    if whole_hour_in_month {
        // 3600 checkouts, the last 600 failed, 300 good ones corrected
        // away: 81.82% against 99.9%.
        assert!(report.contains("81.82%"), "{report}");
    }
    let csv = reqwest::get(format!(
        "{base}/api/v1/slos/checkout-availability/report?month={month}&format=csv"
    ))
    .await
    .unwrap();
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.unwrap();
    assert!(csv.starts_with("row,slo,month,"), "{csv}");
    assert!(
        csv.contains(&format!("month,checkout-availability,{month},UTC,0.999,")),
        "{csv}"
    );
    // The postmortem draft of the open page incident.
    assert!(incident.contains("id=\"postmortem-link\""), "{incident}");
    let pm = reqwest::get(format!("{base}/api/v1/incidents/1/postmortem"))
        .await
        .unwrap();
    assert_eq!(pm.status(), 200);
    assert!(
        pm.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("postmortem-1.md")
    );
    let pm = pm.text().await.unwrap();
    for section in [
        "# Postmortem (draft): Checkout availability page incident #1",
        "- **Runbook**: https://runbooks.example/checkout",
        "## Timeline (UTC)",
        "| opened |",
        "## Impact",
        "## Burn rate (1 h window)",
        "## Evidence",
        "| gateway | POST /api/checkout |",
        "## Cause",
        "## Action items",
    ] {
        assert!(pm.contains(section), "{section:?} missing:\n{pm}");
    }
    // Opened at the evaluation: every checkout since is bad.
    let impact = &pm[pm.find("## Impact").unwrap()..pm.find("## Burn rate").unwrap()];
    let line = impact
        .lines()
        .find(|l| l.starts_with("- **Events while open**"))
        .unwrap();
    let (total, bad) = line
        .trim_start_matches("- **Events while open**: ")
        .split_once(", of them bad: ")
        .unwrap();
    let bad = bad.split(' ').next().unwrap();
    assert_eq!(total, bad, "{impact}");
    assert_eq!(
        reqwest::get(format!("{base}/api/v1/incidents/99/postmortem"))
            .await
            .unwrap()
            .status(),
        404
    );
    let bad = reqwest::get(format!(
        "{base}/api/v1/slos/checkout-availability/report?month=2026-13"
    ))
    .await
    .unwrap();
    assert_eq!(bad.status(), 400);

    // SLO page: burn-rate table with the fast tier firing, budget, chart.
    assert!(slo.contains("Burn rate per alert window"), "{slo}");
    assert!(slo.contains("14.40x"), "{slo}");
    assert!(slo.contains("firing"), "{slo}");
    assert!(slo.contains("id=\"budget-left\""), "{slo}");
    assert!(slo.contains("class=\"burndown\""), "{slo}");
    // The budget chart has its axes labelled; one burn chart per tier
    // with its threshold; the correction is a band and listed.
    assert!(slo.contains("% of the window's budget"), "{slo}");
    assert!(slo.contains("time (UTC)"), "{slo}");
    for i in 0..4 {
        assert!(
            slo.contains(&format!("id=\"burn-tier-{i}\"")),
            "tier {i}: {slo}"
        );
    }
    assert!(slo.contains("fires above 14.40x"), "{slo}");
    assert!(slo.contains("threshold"), "{slo}");
    assert!(slo.contains("class=\"band\""), "{slo}");
    let corrections = &slo[slo.find("id=\"corrections\"").expect("corrections table")..];
    assert!(corrections.contains("synthetic load test"), "{corrections}");
    assert!(corrections.contains("alice"), "{corrections}");
    // The SLI over the window, against the objective.
    let sli = &slo[slo.find("id=\"sli\"").expect("SLI chart")..];
    assert!(sli.contains("<polyline"), "{sli}");
    assert!(sli.contains("objective"), "{sli}");
    // 600 bad of 3600, less the correction's 300 good ones: 81.82%.
    assert!(slo.contains("81.82%"), "{slo}");

    // A grouped SLO: its page lists the instances (one per gateway route
    // that has requests), an instance has its own page and incident.
    let b = browser.clone();
    let base2 = base.clone();
    let [grouped, instance] = tokio::task::spawn_blocking(move || {
        [
            ("grouped", "/slos/gateway-routes?refresh=0".to_string()),
            (
                "instance",
                "/slos/gateway-routes%7Bhttp.route%3D%22%2Fapi%2Fcheckout%22%7D?refresh=0"
                    .to_string(),
            ),
        ]
        .map(|(name, path)| browse(&b, &format!("{base2}{path}"), name))
    })
    .await
    .unwrap();
    let list = &grouped[grouped
        .find("id=\"slo-instances\"")
        .expect("instances section")..];
    assert!(list.contains("Instances by http.route"), "{list}");
    assert!(
        list.contains("gateway-routes{http.route=\"/api/checkout\"}")
            || list.contains("gateway-routes{http.route=&quot;/api/checkout&quot;}"),
        "{list}"
    );
    assert!(list.contains("badge page"), "{list}");
    assert!(
        instance.contains("Burn rate per alert window"),
        "{instance}"
    );
    assert!(instance.contains("badge page"), "{instance}");
    assert!(
        !instance.contains("id=\"slo-instances\">Instances"),
        "{instance}"
    );
    assert!(slos.contains("1 instances by http.route"), "{slos}");
    let api: serde_json::Value =
        reqwest::get(format!("{base}/api/v1/slos/gateway-routes/instances"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        api["instances"][0]["group"]["http.route"], "/api/checkout",
        "{api}"
    );
    assert_eq!(api["over_cap"], 0, "{api}");

    // The correction form on the SLO page: add a maintenance window
    // (303 back to the page, listed at once), a bad one is a 400 saying
    // why, delete it (kept in the audit trail).
    assert!(slo.contains("id=\"correction-form\""), "{slo}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let field = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    };
    let form = [
        ("kind", "maintenance".to_string()),
        ("from", field(now + 3600 * SEC)),
        ("duration", "30m".to_string()),
        ("to", String::new()),
        ("reason", "database upgrade".to_string()),
        ("created_by", "bob".to_string()),
    ];
    let r = http
        .post(format!(
            "{base}/slos/checkout-availability/corrections?refresh=0"
        ))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with("/slos/checkout-availability?"), "{to}");
    let id: i64 = to.rsplit("#correction-").next().unwrap().parse().unwrap();
    let page = http
        .get(format!("{base}/slos/checkout-availability?refresh=0"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let row = &page[page
        .find(&format!("id=\"correction-{id}\""))
        .expect("listed")..];
    assert!(
        row.contains("database upgrade") && row.contains("bob"),
        "{row}"
    );
    assert!(row.contains("maintenance"), "{row}");
    let mut bad = form.clone();
    bad[4].1 = " ".into();
    let r = http
        .post(format!("{base}/slos/checkout-availability/corrections"))
        .form(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("reason and createdBy are required")
    );
    let r = http
        .post(format!(
            "{base}/slos/checkout-availability/corrections/{id}/delete"
        ))
        .form(&[("by", "carol")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let audit: serde_json::Value = reqwest::get(format!("{base}/api/v1/corrections/{id}/audit"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let trail: Vec<(&str, &str)> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["action"].as_str().unwrap(), a["by"].as_str().unwrap()))
        .collect();
    assert_eq!(trail, [("created", "bob"), ("deleted", "carol")], "{audit}");

    // SLO list: least budget left first.
    let first = slos.find("Checkout availability").unwrap();
    let calm = slos.find("Login availability").unwrap();
    assert!(first < calm, "{slos}");

    // Incidents: the timeline of the open incident.
    assert!(incidents.contains("id=\"incident-1\""), "{incidents}");
    assert!(incidents.contains("opened"), "{incidents}");

    // The incident's page: burn now, evidence (the failing operation, its
    // example traces), the timeline, the actions.
    assert!(incident.contains("id=\"burn-now\""), "{incident}");
    assert!(incident.contains("14.40x"), "{incident}");
    // The runbook and the other annotations of the SLO.
    let runbook = &incident[incident.find("id=\"runbook\"").expect("runbook section")..];
    assert!(
        runbook.contains("href=\"https://runbooks.example/checkout\""),
        "{runbook}"
    );
    assert!(runbook.contains("shop-team"), "{runbook}");
    let ops = &incident[incident
        .find("id=\"evidence-operations\"")
        .expect("evidence")..];
    assert!(ops.contains("POST /api/checkout"), "{ops}");
    let traces = &incident[incident.find("id=\"evidence-traces\"").unwrap()..];
    assert_eq!(
        traces[..traces.find("</table>").unwrap()]
            .matches("class=\"trace-link\"")
            .count(),
        5,
        "{traces}"
    );
    assert!(incident.contains("resolve-button"), "{incident}");
    let r = reqwest::get(format!("{base}/incidents/99")).await.unwrap();
    assert_eq!(r.status(), 404);

    // Errors are shown in the page, never a blank one.
    assert!(missing.contains("No SLO named"), "{missing}");

    // Service page: RED summary and charts, operations, dependencies,
    // recent errors, slowest traces.
    assert!(service.contains("id=\"service-name\">gateway"), "{service}");
    for id in ["rate-chart", "error-chart", "latency-chart"] {
        let chart = &service[service.find(&format!("id=\"{id}\"")).unwrap()..];
        assert!(
            chart[..chart.find("</figure>").unwrap()].contains("<polyline"),
            "{id}"
        );
    }
    // The latency chart carries exemplars (the slowest span per minute),
    // each a link to its trace.
    let latency = &service[service.find("id=\"latency-chart\"").unwrap()..];
    let latency = &latency[..latency.find("</figure>").unwrap()];
    let marks = latency.matches("class=\"exemplar\"").count();
    assert!(marks >= 30, "{marks} exemplars on the latency chart");
    let href = &latency[latency.find("href=\"/traces/").unwrap() + 14..];
    assert!(
        href[..32].bytes().all(|b| b.is_ascii_hexdigit()) && href.as_bytes()[32] == b'"',
        "{}",
        &href[..40]
    );
    let ops = &service[service.find("id=\"operations-table\"").unwrap()..];
    assert!(ops.contains("POST /api/checkout"), "{ops}");
    let callees = &service[service.find("id=\"callees-table\"").unwrap()..];
    assert!(
        callees.contains(">payments</a>") && callees.contains(">catalog</a>"),
        "{callees}"
    );
    let errors = &service[service.find("id=\"error-traces\"").unwrap()..];
    assert!(errors.contains("class=\"trace-link\""), "{errors}");
    assert!(service.contains("id=\"slow-traces\""), "{service}");

    // Service map: gateway -> payments in red (it fails 1 in 6), -> catalog not.
    assert!(map.contains("class=\"graph\""), "{map}");
    let call = |to: &str| {
        let at = map
            .find(&format!("data-from=\"gateway\" data-to=\"{to}\""))
            .unwrap_or_else(|| panic!("no edge to {to}: {map}"));
        map[at..at + map[at..].find("</g>").unwrap()].to_string()
    };
    assert!(
        call("payments").contains("class=\"edge error\""),
        "{}",
        call("payments")
    );
    assert!(
        call("catalog").contains("class=\"edge\""),
        "{}",
        call("catalog")
    );
    assert!(
        map.contains("data-service=\"payments\" class=\"node error\""),
        "{map}"
    );
    assert!(map.contains("id=\"edges-table\""), "{map}");

    // Metrics: the gauge charted by service, its latest value.
    assert!(metrics.contains("id=\"metric-chart\""), "{metrics}");
    let groups = &metrics[metrics.find("id=\"metric-groups\"").unwrap()..];
    assert!(groups.contains("service.name=payments"), "{groups}");
    assert!(groups.contains(">42<"), "{groups}");

    // Trace search: payments' failing calls; log search: ERROR records only.
    let found = &traces_page[traces_page.find("id=\"trace-results\"").expect("traces")..];
    assert!(found.contains("POST /charge"), "{found}");
    let records = &logs_page[logs_page.find("id=\"log-results\"").expect("logs")..];
    let records = &records[..records.find("</table>").unwrap()];
    assert_eq!(
        records.matches("<tr>").count(),
        11,
        "a header and 10 of 100: {records}"
    );
    assert!(!records.contains(">INFO<"), "{records}");

    // A histogram: its p99 over time and its distribution as a heatmap.
    assert!(
        histogram.contains("http.server.request.duration (p99)"),
        "{histogram}"
    );
    // Its stored exemplars, linked to their traces.
    let chart = &histogram[histogram.find("id=\"metric-chart\"").unwrap()..];
    let chart = &chart[..chart.find("</figure>").unwrap()];
    assert!(
        chart.contains(&format!("href=\"/traces/{}\"", "ab".repeat(16))),
        "{chart}"
    );
    let heat = &histogram[histogram.find("id=\"metric-heatmap\"").expect("heatmap")..];
    assert!(
        heat[..heat.find("</figure>").unwrap()].contains("<rect"),
        "{heat}"
    );

    // Query console: the result as a table and as bars.
    let results = &query[query.find("id=\"query-results\"").expect("results")..];
    assert!(results.contains("<td>gateway</td>"), "{results}");
    assert!(
        query.contains("<svg id=\"query-chart\"") && query.contains("class=\"bars\""),
        "{query}"
    );

    // Silences: none yet, and the form.
    assert!(silences.contains("No silences."), "{silences}");
    assert!(silences.contains("name=\"matchers\""), "{silences}");

    // An absolute range: the picker shows it, the charts span it.
    assert!(absolute.contains("label class=\"on\""), "{absolute}");
    assert!(absolute.contains("id=\"rate-chart\""), "{absolute}");

    // Errors in place, with the right status.
    let bad_sql = reqwest::get(format!("{base}/query?sql=DROP+TABLE+spans"))
        .await
        .unwrap();
    assert_eq!(bad_sql.status(), 400);
    assert!(bad_sql.text().await.unwrap().contains("id=\"query-error\""));
    let r = reqwest::get(format!("{base}/explore/metrics?name=nope"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("No metric named nope"));
    let r = reqwest::get(format!("{base}/?from=yesterday"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("is not a time"));

    // Deep links keep the view: a bad range is explained, in the page.
    let r = reqwest::get(format!("{base}/?range=forever"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("range"));
}
