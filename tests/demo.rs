//! The demo shop end to end with real processes: `burnwatch demo` starts the
//! control center, eight shop services (each its own process, exporting OTLP
//! through the OpenTelemetry SDK) and the load generator. The assertions go
//! through SQL on what the collector stored: the shop's traces cross
//! processes with correct parent/child links, metrics and logs arrive and
//! correlate, the outbox links consumer to producer, and chaos at payments
//! shows up in the checkout error ratio the saga predicts.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{DemoProcess, chaos_payments};
use serde_json::Value;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

struct Demo {
    proc: DemoProcess,
    api: String,
    http: reqwest::blocking::Client,
}

impl Demo {
    fn sql(&self, sql: &str) -> Vec<Value> {
        let resp = self
            .http
            .post(format!("{}/api/v1/query", self.api))
            .json(&serde_json::json!({ "sql": sql, "format": "json" }))
            .send()
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().unwrap();
        assert!(status.is_success(), "{sql}\n-> {status} {body}");
        body["rows"].as_array().cloned().unwrap_or_default()
    }

    fn int(&self, sql: &str) -> i64 {
        let rows = self.sql(sql);
        rows.first()
            .and_then(|r| r.as_object())
            .and_then(|o| o.values().next())
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// Polls `sql` until `ok` holds on its integer result, or fails.
    fn wait_for(&self, what: &str, sql: &str, ok: impl Fn(i64) -> bool) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.int(sql);
            if ok(v) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: last value {v}\n{sql}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Checkouts answered by the gateway in [from, to): (total, errors).
    fn checkouts(&self, from: i64, to: i64) -> (i64, i64) {
        let rows = self.sql(&format!(
            "SELECT count(*) AS n, sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS e \
             FROM spans WHERE service_name = 'gateway' AND kind = 'SERVER' AND http_route = '/api/checkout' \
             AND start_time >= to_timestamp_nanos({from}) AND start_time < to_timestamp_nanos({to})"
        ));
        let r = &rows[0];
        (r["n"].as_i64().unwrap_or(0), r["e"].as_i64().unwrap_or(0))
    }

    fn chaos(&self, data_dir: &std::path::Path, args: &[&str]) {
        chaos_payments(data_dir, args);
    }
}

fn start_demo(data_dir: &std::path::Path) -> Demo {
    let proc = common::start_demo(
        data_dir,
        &[
            "--rps",
            "40",
            "--users",
            "12",
            "--mix",
            "browse=20,search=10,product=10,cart=10,checkout=50",
            "--report-every",
            "5s",
        ],
        &[
            ("OTEL_METRIC_EXPORT_INTERVAL", "2000"),
            ("OTEL_BSP_SCHEDULE_DELAY", "300"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "300"),
        ],
    );
    Demo {
        api: proc.api.clone(),
        proc,
        http: reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

#[test]
fn demo_shop_end_to_end_with_chaos() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = start_demo(dir.path());
    let started = now_ns();

    // Spans from all eight services.
    demo.wait_for(
        "spans from all eight services",
        "SELECT count(DISTINCT service_name) FROM spans",
        |n| n == 8,
    );
    // Traces that cross at least five services (checkout: gateway, orders,
    // cart, inventory, payments).
    demo.wait_for(
        "traces across five services",
        "SELECT count(*) FROM (SELECT trace_id FROM spans GROUP BY trace_id HAVING count(DISTINCT service_name) >= 5)",
        |n| n >= 5,
    );
    // `http.server.request.duration` from every service.
    demo.wait_for(
        "duration histograms from every service",
        "SELECT count(DISTINCT service_name) FROM metric_points WHERE metric_name = 'http.server.request.duration' AND metric_type = 'histogram'",
        |n| n == 8,
    );
    // Business metrics.
    demo.wait_for(
        "orders placed counter",
        "SELECT count(*) FROM metric_points WHERE metric_name = 'shop.orders.placed' AND service_name = 'orders'",
        |n| n > 0,
    );

    // A healthy phase of at least 15 s, for a baseline checkout error ratio.
    let healthy_for = Duration::from_nanos((now_ns() - started).max(0) as u64);
    if healthy_for < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_secs(15) - healthy_for);
    }
    let healthy_end = now_ns();
    // Let in-flight traces finish exporting, then check the structure of
    // the traces that started in the healthy phase.
    std::thread::sleep(Duration::from_secs(2));
    let until = healthy_end - 1_000_000_000;
    let window = |t: &str| {
        format!(
            "{t}start_time >= to_timestamp_nanos({started}) AND {t}start_time < to_timestamp_nanos({until})"
        )
    };
    // Every cross-process SERVER span's parent is a CLIENT span of another
    // service that named it as peer.
    let cross = demo.int(&format!(
        "SELECT count(*) FROM spans c JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id \
         WHERE c.kind = 'SERVER' AND p.kind = 'CLIENT' AND c.service_name <> p.service_name \
         AND p.peer_service = c.service_name AND {}", window("c.")
    ));
    let non_root_servers = demo.int(&format!(
        "SELECT count(*) FROM spans c WHERE c.kind = 'SERVER' AND c.service_name <> 'gateway' AND {}", window("c.")
    ));
    assert!(cross > 50, "cross-process parent links: {cross}");
    assert_eq!(
        cross, non_root_servers,
        "every server span below the gateway has its client parent in another process"
    );
    // No orphans: every parent id points at a stored span of the same trace.
    let orphans = demo.int(&format!(
        "SELECT count(*) FROM spans c LEFT JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id \
         WHERE c.parent_span_id IS NOT NULL AND p.span_id IS NULL AND {}", window("c.")
    ));
    assert_eq!(orphans, 0, "spans whose parent is missing");
    // Gateway SERVER spans are the roots (the load generator is not traced).
    let roots = demo.int(&format!(
        "SELECT count(DISTINCT service_name) FROM spans WHERE parent_span_id IS NULL AND kind = 'SERVER' AND {}", window("")
    ));
    assert_eq!(roots, 1);
    // Database spans from the services' own SQLite files.
    let db = demo.int(&format!(
        "SELECT count(DISTINCT service_name) FROM spans WHERE db_system = 'sqlite' AND {}",
        window("")
    ));
    assert!(db >= 7, "services with database spans: {db}");

    // Logs carry trace and span ids of stored spans.
    demo.wait_for(
        "logs correlated with spans",
        "SELECT count(DISTINCT l.service_name) FROM logs l JOIN spans s ON l.trace_id = s.trace_id AND l.span_id = s.span_id",
        |n| n >= 4,
    );
    // Outbox messaging: CONSUMER spans link to the PRODUCER span.
    demo.wait_for(
        "consumer spans linked to producer spans",
        "SELECT count(*) FROM (SELECT unnest(links) AS l FROM spans WHERE kind = 'CONSUMER' AND service_name = 'notifications') c \
         JOIN spans p ON p.trace_id = c.l['trace_id'] AND p.span_id = c.l['span_id'] \
         WHERE p.kind = 'PRODUCER' AND p.service_name = 'orders' AND p.messaging_destination_name = 'order-events'",
        |n| n >= 3,
    );

    // Before chaos: checkouts succeed (2% card declines are 402, not errors).
    let (n, e) = demo.checkouts(started, healthy_end);
    assert!(n >= 10, "checkouts in the healthy phase: {n}");
    assert!(
        e as f64 <= 0.05 * n as f64,
        "healthy checkout errors {e}/{n}"
    );

    // Chaos: payments fails half its charges. The saga makes no retries, so
    // about half the checkouts fail (502) and each failure releases its stock.
    demo.chaos(
        dir.path(),
        &["--error-rate", "0.5", "--route", "POST /charges"],
    );
    let chaos_start = now_ns() + 1_000_000_000;
    std::thread::sleep(Duration::from_secs(25));
    demo.chaos(dir.path(), &["--clear"]);
    let chaos_end = now_ns();
    std::thread::sleep(Duration::from_secs(20));
    let recovered_start = chaos_end + 1_000_000_000;
    let recovered_end = now_ns() - 2_000_000_000;
    std::thread::sleep(Duration::from_secs(2));

    let (n, e) = demo.checkouts(chaos_start, chaos_end);
    let ratio = e as f64 / n as f64;
    println!("checkouts under chaos: {e}/{n} failed ({ratio:.3})");
    assert!(n >= 30, "checkouts under chaos: {n}");
    assert!(
        (0.35..=0.65).contains(&ratio),
        "checkout error ratio {ratio:.3} ({e}/{n}); the saga predicts 0.5"
    );
    let released = demo.int(&format!(
        "SELECT count(*) FROM spans WHERE service_name = 'inventory' AND kind = 'SERVER' AND http_route = '/reservations/{{id}}' \
         AND http_request_method = 'DELETE' AND start_time >= to_timestamp_nanos({chaos_start})"
    ));
    assert!(
        released >= e / 2,
        "compensations {released} for {e} failures"
    );
    let (n, e) = demo.checkouts(recovered_start, recovered_end);
    println!("checkouts after clearing: {e}/{n} failed");
    assert!(n >= 20, "checkouts after clearing: {n}");
    assert!(
        e as f64 <= 0.05 * n as f64,
        "after clearing: {e}/{n} failed"
    );

    // Grafana: every query of the provisioned dashboards returns data, and
    // every call Grafana's Jaeger data source makes answers.
    grafana_dashboards_answer(&demo);
    grafana_jaeger_calls_answer(&demo);
    sloth_series_equal_the_engine(&demo);

    // ctrl-c semantics: SIGTERM stops the shop and the control center.
    let pid = demo.proc.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = demo.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo did not stop");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{status}");
    // No shop process is left behind.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    let leftover = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains("demo service") && l.contains(dir.path().to_str().unwrap()))
        .count();
    assert_eq!(leftover, 0, "shop services still running");
}

/// Every PromQL expression (`expr`) in a dashboard's panels and variables.
fn dashboard_queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_queries(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| dashboard_queries(x, out)),
        _ => {}
    }
}

/// Runs every PromQL query of deploy/grafana/dashboards (variables
/// substituted as Grafana would, over the last 15 minutes, with the data
/// source's 60 s scrape interval) against the running demo; each must
/// return data. Variable queries (`label_values(...)`) must list values.
fn grafana_dashboards_answer(demo: &Demo) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "dashboards in {}", dir.display());
    // Label values answer GET only (as in Prometheus); queries go by POST
    // (the data source's httpMethod).
    let prom = |path: &str, params: &[(&str, String)]| -> Value {
        let url = format!("{}/prometheus/api/v1/{path}", demo.api);
        let r = if path.starts_with("label/") {
            let q = serde_urlencoded::to_string(params).unwrap();
            demo.http.get(format!("{url}?{q}")).send().unwrap()
        } else {
            demo.http.post(url).form(params).send().unwrap()
        };
        let status = r.status();
        let v: Value = r.json().unwrap();
        assert!(status.is_success(), "{path} {params:?} -> {status} {v}");
        v
    };
    let mut checked = 0;
    for f in &files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        // Variables: label_values(selector, label).
        for var in d["templating"]["list"].as_array().unwrap() {
            let q = var["definition"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{}: variable query {q}", f.display()));
            let (sel, label) = inner.rsplit_once(',').unwrap();
            let end = now_ns() / 1_000_000_000;
            let v = prom(
                &format!("label/{}/values", label.trim()),
                &[
                    ("match[]", sel.trim().to_string()),
                    ("start", (end - 3600).to_string()),
                    ("end", end.to_string()),
                ],
            );
            assert!(
                !v["data"].as_array().unwrap().is_empty(),
                "{}: variable {q} has no values",
                f.display()
            );
        }
        let mut queries = Vec::new();
        dashboard_queries(&d["panels"], &mut queries);
        for q in queries {
            let q = q
                .replace("$__rate_interval", "4m")
                .replace("$__interval", "60s")
                .replace("$__range", "15m")
                .replace("=~\"$service\"", "=~\".+\"")
                .replace("$service", "gateway");
            assert!(!q.contains('$'), "unsubstituted variable in {q}");
            // Span metrics and SLO series have one sample per minute: the
            // series need two minutes of data; wait for them.
            let deadline = Instant::now() + Duration::from_secs(150);
            loop {
                let end = now_ns() / 1_000_000_000;
                let v = prom(
                    "query_range",
                    &[
                        ("query", q.clone()),
                        ("start", (end - 900).to_string()),
                        ("end", end.to_string()),
                        ("step", "60".to_string()),
                    ],
                );
                let n = v["data"]["result"].as_array().map_or(0, Vec::len);
                if n > 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: no data for {q}\n{v}",
                    f.display()
                );
                std::thread::sleep(Duration::from_secs(5));
            }
            checked += 1;
        }
    }
    println!("grafana dashboards: {checked} queries returned data");
    assert!(checked >= 15, "{checked} dashboard queries");
}

/// The calls Grafana's Jaeger data source makes (services, operations,
/// search, one trace, the dependency graph) answer with data.
fn grafana_jaeger_calls_answer(demo: &Demo) {
    let get = |path: &str| -> Value {
        let r = demo
            .http
            .get(format!("{}/jaeger{path}", demo.api))
            .send()
            .unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap();
        assert!(status.is_success(), "{path} -> {status} {v}");
        assert!(v["errors"].is_null(), "{path}: {v}");
        v
    };
    let services = get("/api/services");
    let services: Vec<&str> = services["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(services.contains(&"gateway"), "{services:?}");
    let ops = get("/api/services/gateway/operations");
    assert!(!ops["data"].as_array().unwrap().is_empty());
    let end_us = now_ns() / 1000;
    let found = get(&format!(
        "/api/traces?service=gateway&start={}&end={end_us}&limit=20&minDuration=1us&tags=%7B%7D",
        end_us - 900_000_000
    ));
    let traces = found["data"].as_array().unwrap();
    assert!(!traces.is_empty() && traces.len() <= 20);
    let id = traces[0]["traceID"].as_str().unwrap();
    let one = get(&format!("/api/traces/{id}"));
    let spans = one["data"][0]["spans"].as_array().unwrap();
    let services_in_trace: std::collections::HashSet<&str> = spans
        .iter()
        .map(|s| {
            one["data"][0]["processes"][s["processID"].as_str().unwrap()]["serviceName"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(services_in_trace.contains("gateway"));
    let deps = get(&format!(
        "/api/dependencies?endTs={}&lookback=900000",
        end_us / 1000
    ));
    let edges = deps["data"].as_array().unwrap();
    assert!(
        edges
            .iter()
            .any(|e| e["parent"] == "gateway" && e["callCount"].as_u64().unwrap_or(0) > 0),
        "{deps}"
    );

    // Trace to logs: the Loki query Grafana builds for a span of a trace
    // with logs returns them.
    let rows = demo.sql(
        "SELECT trace_id, service_name, count(*) AS n FROM logs WHERE trace_id IS NOT NULL AND trace_id <> '' \
         GROUP BY 1, 2 ORDER BY n DESC LIMIT 1",
    );
    let (tid, svc, n) = (
        rows[0]["trace_id"].as_str().unwrap(),
        rows[0]["service_name"].as_str().unwrap(),
        rows[0]["n"].as_i64().unwrap(),
    );
    let q = serde_urlencoded::to_string([
        ("query", format!("{{service_name=\"{svc}\"}} |= \"{tid}\"")),
        ("start", ((now_ns() - 1_800_000_000_000).to_string())),
        ("end", now_ns().to_string()),
        ("limit", "1000".to_string()),
    ])
    .unwrap();
    let r = demo
        .http
        .get(format!("{}/loki/api/v1/query_range?{q}", demo.api))
        .send()
        .unwrap();
    assert!(r.status().is_success());
    let v: Value = r.json().unwrap();
    let lines: usize = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(lines as i64, n, "{v}");
}

/// The Sloth-named budget series equal the SLO engine's own evaluation at
/// the same minute boundary (Occurrences SLOs: the same events counted).
fn sloth_series_equal_the_engine(demo: &Demo) {
    // At the latest minute boundary at least 5 s old (its spans have
    // arrived), once at least two SLOs have events.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let now_s = now_ns() / 1_000_000_000;
        let t = (now_s - 5) / 60 * 60;
        if sloth_compare_at(demo, t) >= 2 {
            return;
        }
        assert!(Instant::now() < deadline, "SLOs without events");
        std::thread::sleep(Duration::from_secs(15));
    }
}

/// Compares every Occurrences SLO with events at `t` (seconds); returns
/// how many were compared.
fn sloth_compare_at(demo: &Demo, t: i64) -> usize {
    let slos: Value = demo
        .http
        .get(format!("{}/api/v1/slos?at={}", demo.api, t * 1_000_000_000))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let mut compared = 0;
    for st in slos["slos"].as_array().unwrap() {
        if st["budgeting"] != "Occurrences" || st["total"].as_u64().unwrap_or(0) == 0 {
            continue;
        }
        let name = st["name"].as_str().unwrap();
        let q = serde_urlencoded::to_string([
            (
                "query",
                format!("slo:period_error_budget_remaining:ratio{{sloth_slo=\"{name}\"}}"),
            ),
            ("time", t.to_string()),
        ])
        .unwrap();
        let v: Value = demo
            .http
            .get(format!("{}/prometheus/api/v1/query?{q}", demo.api))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let got: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {v}"))
            .parse()
            .unwrap();
        let want = st["budget_remaining"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9,
            "{name}: Sloth series {got}, engine {want}"
        );
        compared += 1;
    }
    compared
}
