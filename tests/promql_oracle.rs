//! Prometheus itself is the oracle for Burnwatch's PromQL.
//!
//! A small exporter in this test serves counters (one that resets),
//! gauges (one that is NaN at times), a classic histogram and series that
//! come and go (stale markers). A real Prometheus 2.42 (Debian's
//! `prometheus`) scrapes it every second and remote-writes everything to a
//! `burnwatch serve`. Then a corpus of PromQL queries (instant at several
//! times, range at two steps, and bad queries) goes to both HTTP APIs:
//! the same series with the same labels, values equal within 1e-9
//! relative (NaN equals NaN, infinities by sign), and for errors the same
//! `errorType`. The `series`, `labels` and `label values` endpoints and
//! the calls Grafana's Prometheus data source makes are checked too.
//!
//! The short form (CI) scrapes for 150 s; set `BURNWATCH_ORACLE_SECS` for
//! a longer run (e.g. 900: counters reset several times, churn turns over).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

const EPS: f64 = 1e-9;

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The exposition for scrape number `n` (deterministic in `n`).
fn exposition(n: u64) -> String {
    let mut out = String::new();
    let nf = n as f64;
    out.push_str(
        "# HELP oracle_requests_total Requests served.\n# TYPE oracle_requests_total counter\n",
    );
    for (pi, path) in ["/a", "/b", "/c"].iter().enumerate() {
        for (ci, code) in ["200", "500"].iter().enumerate() {
            let rate = (pi as u64 + 1) * if ci == 0 { 7 } else { 1 };
            let v = n * rate + (n * n + pi as u64) % 5;
            out.push_str(&format!(
                "oracle_requests_total{{path=\"{path}\",code=\"{code}\"}} {v}\n"
            ));
        }
    }
    out.push_str("# TYPE oracle_resets_total counter\n");
    out.push_str(&format!("oracle_resets_total {}\n", (n % 37) * 3 + n % 2));
    out.push_str("# HELP oracle_temperature Degrees.\n# TYPE oracle_temperature gauge\n");
    for (i, room) in ["kitchen", "hall", "attic"].iter().enumerate() {
        let v = 20.0 + (nf / 10.0 + i as f64).sin() * 2.5 + i as f64 * 0.25;
        out.push_str(&format!("oracle_temperature{{room=\"{room}\"}} {v}\n"));
    }
    out.push_str("# TYPE oracle_queue_depth gauge\n");
    out.push_str(&format!("oracle_queue_depth {}\n", (n * 7) % 11));
    out.push_str("# TYPE oracle_nan_gauge gauge\n");
    if n % 10 == 3 {
        out.push_str("oracle_nan_gauge NaN\n");
    } else {
        out.push_str(&format!("oracle_nan_gauge {}\n", nf * 0.5 - 20.0));
    }
    out.push_str(
        "# HELP oracle_latency_seconds Latency.\n# TYPE oracle_latency_seconds histogram\n",
    );
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "+Inf"];
    for (ri, route) in ["/a", "/b"].iter().enumerate() {
        let mut acc = 0u64;
        for (bi, le) in bounds.iter().enumerate() {
            acc += n * (bi as u64 + 1 + ri as u64) + (n + bi as u64) % 3;
            out.push_str(&format!(
                "oracle_latency_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {acc}\n"
            ));
        }
        out.push_str(&format!(
            "oracle_latency_seconds_sum{{route=\"{route}\"}} {}\n",
            nf * 1.75 + ri as f64
        ));
        out.push_str(&format!(
            "oracle_latency_seconds_count{{route=\"{route}\"}} {acc}\n"
        ));
    }
    // Three ids at a time; the window moves every 20 scrapes.
    out.push_str("# TYPE oracle_churn gauge\n");
    let first = n / 20;
    for id in first..first + 3 {
        out.push_str(&format!(
            "oracle_churn{{id=\"{id}\"}} {}\n",
            id * 10 + n % 4
        ));
    }
    out
}

async fn start_exporter() -> (String, Arc<AtomicU64>) {
    let scrapes = Arc::new(AtomicU64::new(0));
    let s = scrapes.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let s = s.clone();
            async move {
                let n = s.fetch_add(1, Ordering::SeqCst);
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    exposition(n),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, scrapes)
}

fn start_prometheus(dir: &std::path::Path, exporter: &str, remote_write: &str) -> (Kill, String) {
    let port = common::s3::free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: oracle\n    static_configs:\n      - targets: ['{exporter}']\n\
             remote_write:\n  - url: {remote_write}\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n    metadata_config:\n      send_interval: 5s\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child =
        Command::new(std::env::var("BURNWATCH_PROMETHEUS").unwrap_or_else(|_| "prometheus".into()))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's `prometheus` package; scripts/test.sh installs it)");
    (Kill(child), format!("http://127.0.0.1:{port}"))
}

async fn get(c: &reqwest::Client, url: &str, params: &[(&str, String)]) -> (u16, Value) {
    let r = c.get(url).query(params).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn value_of(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap(),
    }
}

fn same(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    a == b || (a - b).abs() <= EPS * a.abs().max(b.abs())
}

/// A result as (labels → points) for comparison.
fn points(data: &Value) -> (String, BTreeMap<String, Vec<(f64, f64)>>) {
    let kind = data["resultType"].as_str().unwrap_or("").to_string();
    let mut out = BTreeMap::new();
    let pt = |p: &Value| (p[0].as_f64().unwrap(), value_of(p[1].as_str().unwrap()));
    match kind.as_str() {
        "scalar" | "string" => {
            out.insert(String::new(), vec![pt(&data["result"])]);
        }
        _ => {
            for s in data["result"].as_array().unwrap() {
                let key = serde_json::to_string(&s["metric"]).unwrap();
                let pts = match s.get("values") {
                    Some(v) => v.as_array().unwrap().iter().map(pt).collect(),
                    None => vec![pt(&s["value"])],
                };
                assert!(
                    out.insert(key, pts).is_none(),
                    "duplicate series in a result"
                );
            }
        }
    }
    (kind, out)
}

/// What the comparisons covered: (non-empty results, errors).
#[derive(Default)]
struct Covered {
    results: usize,
    errors: usize,
}

fn compare(
    what: &str,
    prom: &(u16, Value),
    bw: &(u16, Value),
    failures: &mut Vec<String>,
    covered: &mut Covered,
) {
    let (ps, pb) = prom;
    let (bs, bb) = bw;
    if pb["status"] != "success" {
        assert!(
            pb["errorType"].is_string(),
            "{what}: Prometheus gave no answer: {ps} {pb}"
        );
        covered.errors += 1;
        if bb["errorType"] != pb["errorType"] || ps != bs {
            failures.push(format!(
                "{what}: Prometheus {ps} {} ({}), Burnwatch {bs} {} ({})",
                pb["errorType"], pb["error"], bb["errorType"], bb["error"]
            ));
        }
        return;
    }
    if bb["status"] != "success" {
        failures.push(format!(
            "{what}: Prometheus succeeded, Burnwatch {bs}: {}",
            bb["error"]
        ));
        return;
    }
    let (pk, pp) = points(&pb["data"]);
    let (bk, bp) = points(&bb["data"]);
    if !pp.is_empty() {
        covered.results += 1;
    }
    if pk != bk {
        failures.push(format!("{what}: result type {pk} vs {bk}"));
        return;
    }
    if pp.keys().ne(bp.keys()) {
        let only_p: Vec<_> = pp.keys().filter(|k| !bp.contains_key(*k)).take(3).collect();
        let only_b: Vec<_> = bp.keys().filter(|k| !pp.contains_key(*k)).take(3).collect();
        failures.push(format!(
            "{what}: series differ ({} vs {}); only in Prometheus {only_p:?}; only in Burnwatch {only_b:?}",
            pp.len(),
            bp.len()
        ));
        return;
    }
    for (k, a) in &pp {
        let b = &bp[k];
        let ok = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && same(x.1, y.1));
        if !ok {
            let diff = a
                .iter()
                .zip(b)
                .find(|(x, y)| !(x.0 == y.0 && same(x.1, y.1)))
                .map(|(x, y)| {
                    format!("first difference at {}: {} vs {} at {}", x.0, x.1, y.1, y.0)
                });
            failures.push(format!(
                "{what}: series {k}: {} vs {} points; {}",
                a.len(),
                b.len(),
                diff.unwrap_or_default()
            ));
        }
    }
}

/// Instant-vector and scalar queries: run instant and range.
const QUERIES: &[&str] = &[
    "oracle_requests_total",
    "oracle_requests_total{code=\"500\"}",
    "oracle_requests_total{path=~\"/a|/b\"}",
    "oracle_requests_total{path!=\"/a\"}",
    "oracle_requests_total{path!~\"/(a|b)\"}",
    "{__name__=~\"oracle_temp.*\"}",
    "oracle_temperature offset 30s",
    "oracle_temperature offset -10s",
    "oracle_churn",
    "up",
    "scrape_samples_scraped",
    "rate(oracle_requests_total[1m])",
    "rate(oracle_requests_total[30s])",
    "increase(oracle_requests_total[1m])",
    "irate(oracle_requests_total[1m])",
    "rate(oracle_resets_total[1m])",
    "increase(oracle_resets_total[2m])",
    "resets(oracle_resets_total[2m])",
    "changes(oracle_temperature[1m])",
    "delta(oracle_temperature[1m])",
    "idelta(oracle_temperature[1m])",
    "deriv(oracle_temperature[1m])",
    "predict_linear(oracle_temperature[1m], 60)",
    "avg_over_time(oracle_temperature[1m])",
    "min_over_time(oracle_temperature[1m])",
    "max_over_time(oracle_temperature[1m])",
    "sum_over_time(oracle_queue_depth[1m])",
    "count_over_time(oracle_churn[1m])",
    "last_over_time(oracle_temperature[1m])",
    "present_over_time(oracle_churn[1m])",
    "quantile_over_time(0.9, oracle_temperature[1m])",
    "stddev_over_time(oracle_temperature[1m])",
    "stdvar_over_time(oracle_temperature[1m])",
    "absent_over_time(nonexistent_metric{job=\"x\"}[1m])",
    "absent_over_time(oracle_temperature[1m])",
    "avg_over_time(oracle_nan_gauge[30s])",
    "histogram_quantile(0.9, rate(oracle_latency_seconds_bucket[1m]))",
    "histogram_quantile(0.5, sum by (le) (rate(oracle_latency_seconds_bucket[1m])))",
    "histogram_quantile(0.99, sum by (le, route) (increase(oracle_latency_seconds_bucket[2m])))",
    "histogram_quantile(0, oracle_latency_seconds_bucket)",
    "histogram_quantile(1.5, oracle_latency_seconds_bucket)",
    "rate(oracle_latency_seconds_sum[1m]) / rate(oracle_latency_seconds_count[1m])",
    "sum(oracle_requests_total)",
    "sum by (code) (rate(oracle_requests_total[1m]))",
    "sum without (path) (rate(oracle_requests_total[1m]))",
    "avg(oracle_temperature)",
    "min(oracle_temperature)",
    "max by (room) (oracle_temperature)",
    "count(oracle_requests_total)",
    "count by (code) (oracle_requests_total)",
    "group by (path) (oracle_requests_total)",
    "stddev(oracle_temperature)",
    "stdvar(oracle_temperature)",
    "topk(2, oracle_temperature)",
    "bottomk(1, rate(oracle_requests_total[1m]))",
    "quantile(0.5, oracle_temperature)",
    "quantile by (code) (0.25, rate(oracle_requests_total[1m]))",
    "count_values(\"v\", oracle_queue_depth)",
    "sum(rate(oracle_requests_total[1m])) by (path)",
    "sum(oracle_nan_gauge)",
    "oracle_requests_total * 2",
    "2 * oracle_temperature - 1",
    "oracle_temperature / 0",
    "-oracle_temperature",
    "oracle_temperature % 3",
    "oracle_temperature ^ 2",
    "2 ^ 3 ^ 2",
    "oracle_temperature > 20",
    "oracle_temperature > bool 20",
    "20 < oracle_temperature",
    "oracle_nan_gauge > 0",
    "oracle_temperature atan2 oracle_temperature",
    "rate(oracle_requests_total{code=\"500\"}[1m]) / ignoring(code) rate(oracle_requests_total{code=\"200\"}[1m])",
    "sum by (path) (rate(oracle_requests_total{code=\"500\"}[1m])) / on(path) sum by (path) (rate(oracle_requests_total[1m]))",
    "oracle_requests_total / on(path) group_left sum by (path) (oracle_requests_total)",
    "sum by (path) (oracle_requests_total) * on(path) group_right oracle_requests_total",
    "oracle_requests_total / on(path) group_left(room) (sum by (path) (oracle_requests_total) + on() group_left(room) (oracle_temperature{room=\"hall\"} * 0))",
    "oracle_requests_total and oracle_requests_total{code=\"500\"}",
    "oracle_requests_total or oracle_temperature",
    "oracle_requests_total unless oracle_requests_total{path=\"/a\"}",
    "oracle_requests_total / oracle_requests_total",
    "oracle_requests_total == bool oracle_requests_total",
    "abs(oracle_temperature - 21)",
    "ceil(oracle_temperature)",
    "floor(oracle_temperature)",
    "round(oracle_temperature)",
    "round(oracle_temperature, 0.5)",
    "clamp(oracle_temperature, 19, 21)",
    "clamp_min(oracle_temperature, 20)",
    "clamp_max(oracle_temperature, 20)",
    "sgn(oracle_temperature - 20)",
    "exp(oracle_temperature / 10)",
    "ln(oracle_temperature)",
    "log2(oracle_temperature)",
    "log10(oracle_temperature)",
    "sqrt(oracle_temperature)",
    "label_replace(oracle_temperature, \"r\", \"$1\", \"room\", \"(.*)en\")",
    "label_replace(oracle_temperature, \"room\", \"\", \"room\", \"hall\")",
    "label_join(oracle_requests_total, \"pc\", \"-\", \"path\", \"code\")",
    "absent(nonexistent{job=\"x\"})",
    "absent(oracle_temperature)",
    "time()",
    "timestamp(oracle_temperature)",
    "vector(1)",
    "scalar(oracle_queue_depth)",
    "scalar(oracle_temperature)",
    "sort(oracle_temperature)",
    "sort_desc(oracle_temperature)",
    "rate(oracle_requests_total[1m] offset 30s)",
    "max_over_time(rate(oracle_requests_total[30s])[2m:10s])",
    "avg_over_time(oracle_temperature[1m:5s])",
    "min_over_time(sum(oracle_temperature)[1m:15s] offset 30s)",
    "rate(oracle_requests_total[1m] @ end())",
    "oracle_temperature @ start()",
    "sum(up)",
    "hour(vector(time()))",
    "minute()",
    "day_of_week()",
    "days_in_month(vector(time()))",
    "month()",
    "year(vector(time()))",
    "1 + 2 * 3",
];

/// Queries that fail; the error type must match.
const BAD: &[&str] = &[
    "sum(",
    "rate(oracle_temperature)",
    "oracle_temperature{",
    "unknown_function(up)",
    "1 > 2",
    "topk(\"a\", up)",
    "oracle_requests_total + on(path) oracle_requests_total",
    "label_replace(up, \"1bad\", \"\", \"\", \"\")",
    "oracle_requests_total{code=\"500\"} + on() oracle_requests_total",
];

/// Range-vector queries: instant only (a range query refuses them).
const RANGE_VECTOR: &[&str] = &[
    "oracle_temperature[30s]",
    "oracle_churn[1m]",
    "rate(oracle_requests_total[1m])[1m:20s]",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_agrees_with_prometheus() {
    let secs: u64 = std::env::var("BURNWATCH_ORACLE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = common::start_serve(
        &[std::ffi::OsStr::new("--data-dir"), data.as_os_str()],
        Stdio::null(),
    );
    let (exporter, scrapes) = start_exporter().await;
    let write_url = format!("http://{}/api/v1/write", serve.otlp_http);
    let (_prom, prom) = start_prometheus(dir.path(), &exporter, &write_url);
    let bw = serve.api_url("/prometheus");
    let c = reqwest::Client::new();

    tokio::time::sleep(Duration::from_secs(secs)).await;
    assert!(
        scrapes.load(Ordering::SeqCst) >= secs / 2,
        "Prometheus hardly scraped"
    );

    // Evaluate in the past, once Burnwatch holds what Prometheus holds.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // `offset -10s` at `end` reads up to `end + 10 s`: that too must be in
    // the past and caught up (remote write lags Prometheus's own scrapes
    // by its batch deadline, 5 s).
    let end = now - 15_000;
    let end_s = format!("{:.3}", end as f64 / 1000.0);
    let caught_up_at = format!("{:.3}", (end + 10_000) as f64 / 1000.0);
    let check = "count_over_time(oracle_temperature[10m])";
    let mut caught_up = false;
    for _ in 0..60 {
        let p = get(
            &c,
            &format!("{prom}/api/v1/query"),
            &[("query", check.into()), ("time", caught_up_at.clone())],
        )
        .await;
        let b = get(
            &c,
            &format!("{bw}/api/v1/query"),
            &[("query", check.into()), ("time", caught_up_at.clone())],
        )
        .await;
        if p.1["data"] == b.1["data"] && p.1["status"] == "success" {
            caught_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(caught_up, "remote write did not catch up");

    let times = [end, end - 37_500, end - 61_123];
    let range_start = end - (secs as i64 - 20).clamp(60, 600) * 1000;
    let mut failures = Vec::new();
    let mut covered = Covered::default();
    let mut compared = 0;
    for q in QUERIES.iter().chain(BAD).chain(RANGE_VECTOR) {
        for t in times {
            let params = [
                ("query", q.to_string()),
                ("time", format!("{:.3}", t as f64 / 1000.0)),
            ];
            let p = get(&c, &format!("{prom}/api/v1/query"), &params).await;
            let b = get(&c, &format!("{bw}/api/v1/query"), &params).await;
            compare(
                &format!("instant {q} @ {t}"),
                &p,
                &b,
                &mut failures,
                &mut covered,
            );
            compared += 1;
        }
    }
    for q in QUERIES.iter().chain(BAD).chain(RANGE_VECTOR) {
        for step in ["10", "7s"] {
            let params = [
                ("query", q.to_string()),
                ("start", format!("{:.3}", range_start as f64 / 1000.0)),
                ("end", end_s.clone()),
                ("step", step.to_string()),
            ];
            let p = get(&c, &format!("{prom}/api/v1/query_range"), &params).await;
            let b = get(&c, &format!("{bw}/api/v1/query_range"), &params).await;
            compare(
                &format!("range {q} step {step}"),
                &p,
                &b,
                &mut failures,
                &mut covered,
            );
            compared += 1;
        }
    }

    // The series and label endpoints.
    let window = [
        ("start", format!("{:.3}", range_start as f64 / 1000.0)),
        ("end", end_s.clone()),
    ];
    for (path, extra) in [
        (
            "/api/v1/series",
            vec![("match[]", "oracle_requests_total".to_string())],
        ),
        (
            "/api/v1/series",
            vec![(
                "match[]",
                "{__name__=~\"oracle_(temperature|churn)\"}".to_string(),
            )],
        ),
        (
            "/api/v1/labels",
            vec![("match[]", "oracle_requests_total".to_string())],
        ),
        (
            "/api/v1/label/path/values",
            vec![("match[]", "oracle_requests_total".to_string())],
        ),
        ("/api/v1/label/room/values", vec![]),
    ] {
        let mut params = window.to_vec();
        params.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let p = get(&c, &format!("{prom}{path}"), &params).await;
        let b = get(&c, &format!("{bw}{path}"), &params).await;
        let norm = |v: &Value| {
            let mut items: Vec<String> = v["data"]
                .as_array()
                .map(|a| a.iter().map(|x| x.to_string()).collect())
                .unwrap_or_default();
            items.sort();
            items
        };
        if p.0 != b.0 || norm(&p.1) != norm(&b.1) {
            failures.push(format!(
                "{path} {extra:?}: {} {:?} vs {} {:?}",
                p.0,
                norm(&p.1),
                b.0,
                norm(&b.1)
            ));
        }
        compared += 1;
    }
    assert!(compared >= 80 * 3, "corpus too small: {compared}");
    // Most comparisons must be of real results, and every bad query must
    // have failed on both sides (an empty answer proves nothing).
    assert!(
        covered.results >= 500,
        "only {} non-empty results compared",
        covered.results
    );
    assert!(
        covered.errors >= BAD.len() * 5,
        "only {} errors compared",
        covered.errors
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} comparisons differ:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // What Grafana's Prometheus data source calls, answered as it expects.
    let (s, v) = get(&c, &format!("{bw}/api/v1/status/buildinfo"), &[]).await;
    assert_eq!(s, 200);
    assert!(v["data"]["version"].as_str().unwrap().starts_with("2."));
    let (s, v) = get(&c, &format!("{bw}/api/v1/labels"), &[]).await;
    assert_eq!(s, 200);
    assert!(
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "__name__")
    );
    let (s, v) = get(&c, &format!("{bw}/api/v1/metadata"), &[]).await;
    assert_eq!(s, 200);
    assert!(
        v["data"]["oracle_requests_total"][0]["type"] == "counter",
        "{v}"
    );
    let form = [
        ("query", "sum(rate(oracle_requests_total[1m]))".to_string()),
        ("start", format!("{:.3}", range_start as f64 / 1000.0)),
        ("end", end_s.clone()),
        ("step", "15".to_string()),
    ];
    let r = c
        .post(format!("{bw}/api/v1/query_range"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["resultType"], "matrix");
    assert!(
        !v["data"]["result"][0]["values"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let r = c
        .post(format!("{bw}/api/v1/query"))
        .form(&[("query", "up"), ("time", end_s.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, v) = get(
        &c,
        &format!("{bw}/api/v1/query_range"),
        &[
            ("query", "up".into()),
            ("start", "10".into()),
            ("end", "1".into()),
            ("step", "1".into()),
        ],
    )
    .await;
    assert_eq!((s, v["errorType"].as_str()), (400, Some("bad_data")));
    drop(serve);
}
