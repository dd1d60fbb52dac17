//! RED golden tests on a generated dataset: every figure is recomputed here
//! independently from the generated spans, and cross-checked with DuckDB
//! over the same Parquet files.

use analytics::red::{self, Window};
use store::rows::{Attr, Origin, SpanKind, SpanRecord, SpansBuilder, StatusCode};
use store::{Store, Table};

const T0: i64 = 1_709_632_800_000_000_000; // 2024-03-05T10:00:00Z
const SEC: i64 = 1_000_000_000;

#[derive(Clone)]
struct Gen {
    service: &'static str,
    op: &'static str,
    kind: SpanKind,
    start: i64,
    dur: i64,
    status: StatusCode,
    http: Option<i64>,
}

fn dataset() -> Vec<Gen> {
    let mut v = Vec::new();
    let mut x: u64 = 42;
    let mut rnd = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let ops = [
        ("gateway", "GET /"),
        ("gateway", "POST /checkout"),
        ("payments", "charge"),
        ("catalog", "list"),
    ];
    for i in 0..3000 {
        let (service, op) = ops[rnd(4) as usize];
        let start = T0 + (rnd(7200) as i64) * SEC + rnd(1000) as i64 * 1_000_000;
        let dur = 1_000_000 + rnd(400) as i64 * 250_000;
        let r = rnd(100);
        v.push(Gen {
            service,
            op,
            kind: if i % 5 == 0 {
                SpanKind::Client
            } else {
                SpanKind::Server
            },
            start,
            dur,
            // 4% ERROR status, 3% HTTP 5xx with UNSET status, 2% HTTP 404 (not an error).
            status: if r < 4 {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            http: match r {
                4..=6 => Some(503),
                7..=8 => Some(404),
                _ => Some(200),
            },
        });
    }
    // Edges: exactly at the window start (in), exactly at the end (out).
    for (start, op) in [(T0, "edge-in"), (T0 + 3600 * SEC, "edge-out")] {
        v.push(Gen {
            service: "edge",
            op,
            kind: SpanKind::Server,
            start,
            dur: 5_000_000,
            status: StatusCode::Unset,
            http: None,
        });
    }
    v
}

fn batch(gens: &[Gen]) -> arrow::array::RecordBatch {
    let mut b = SpansBuilder::new();
    for (i, g) in gens.iter().enumerate() {
        let res = vec![Attr::new("service.name", g.service)];
        let code = g.http.map(|c| c.to_string());
        let attrs: Vec<Attr> = code
            .iter()
            .map(|c| Attr::new("http.response.status_code", c.as_str()))
            .collect();
        b.append(
            &Origin {
                service_name: g.service,
                resource_attributes: &res,
                scope_name: "",
                scope_version: "",
            },
            &SpanRecord {
                trace_id: (i as u128 + 1).to_be_bytes(),
                span_id: (i as u64 + 1).to_be_bytes(),
                parent_span_id: None,
                trace_state: "",
                flags: 0,
                name: g.op,
                kind: g.kind,
                start_time_ns: g.start,
                end_time_ns: g.start + g.dur,
                status_code: g.status,
                status_message: "",
                attributes: attrs,
                dropped_attributes_count: 0,
                events: vec![],
                dropped_events_count: 0,
                links: vec![],
                dropped_links_count: 0,
            },
        );
    }
    b.finish()
}

fn percentile(mut v: Vec<i64>, p: f64) -> f64 {
    v.sort();
    let rank = p * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    (v[lo] as f64 + (v[hi] - v[lo]) as f64 * (rank - lo as f64)) / 1e6
}

fn close(a: f64, b: f64) -> bool {
    // Percentiles are exact up to floating-point rounding (about 1e-8 relative).
    (a - b).abs() <= 1e-6 * a.abs().max(1.0)
}

struct Expected {
    requests: u64,
    errors: u64,
    durs: Vec<i64>,
}

fn expected(
    gens: &[Gen],
    w: &Window,
    key: impl Fn(&Gen) -> String,
) -> std::collections::BTreeMap<String, Expected> {
    let mut m = std::collections::BTreeMap::new();
    for g in gens
        .iter()
        .filter(|g| g.kind == SpanKind::Server && g.start >= w.from_ns && g.start < w.to_ns)
    {
        let e = m.entry(key(g)).or_insert(Expected {
            requests: 0,
            errors: 0,
            durs: vec![],
        });
        e.requests += 1;
        e.errors += u64::from(g.status == StatusCode::Error || g.http.is_some_and(|c| c >= 500));
        e.durs.push(g.dur);
    }
    m
}

async fn store_with_data(dir: &std::path::Path, gens: &[Gen]) -> Store {
    let store = Store::open(testkit::store_config(dir)).await.unwrap();
    // Half flushed to Parquet, half still in memory: results must not care.
    let half = gens.len() / 2;
    store
        .write(Table::Spans, batch(&gens[..half]))
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
        .write(Table::Spans, batch(&gens[half..]))
        .await
        .unwrap();
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_per_service_and_operation_match_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let gens = dataset();
    let store = store_with_data(dir.path(), &gens).await;
    for w in [
        Window::new(T0, T0 + 3600 * SEC).unwrap(),
        Window::new(T0 + 1800 * SEC, T0 + 7200 * SEC).unwrap(),
    ] {
        let got = red::services(&store, &w).await.unwrap();
        let want = expected(&gens, &w, |g| g.service.to_string());
        assert_eq!(
            got.iter().map(|r| r.service.clone()).collect::<Vec<_>>(),
            want.keys().cloned().collect::<Vec<_>>()
        );
        for r in &got {
            let e = &want[&r.service];
            assert_eq!(
                (r.requests, r.errors),
                (e.requests, e.errors),
                "{}",
                r.service
            );
            let secs = (w.to_ns - w.from_ns) as f64 / 1e9;
            assert!(close(r.rate, e.requests as f64 / secs));
            assert!(close(r.error_ratio, e.errors as f64 / e.requests as f64));
            for (got, p) in [
                (r.p50_ms, 0.5),
                (r.p90_ms, 0.9),
                (r.p95_ms, 0.95),
                (r.p99_ms, 0.99),
            ] {
                assert!(
                    close(got, percentile(e.durs.clone(), p)),
                    "{} p{p}: {got}",
                    r.service
                );
            }
        }
        let ops = red::operations(&store, "gateway", &w).await.unwrap();
        let want = expected(&gens, &w, |g| {
            if g.service == "gateway" {
                g.op.to_string()
            } else {
                String::new()
            }
        });
        assert_eq!(ops.len(), 2);
        for r in &ops {
            let e = &want[r.operation.as_deref().unwrap()];
            assert_eq!((r.requests, r.errors), (e.requests, e.errors));
            assert!(close(r.p99_ms, percentile(e.durs.clone(), 0.99)));
        }
    }
    // The edge spans: start == from is in, start == to is out.
    let w = Window::new(T0, T0 + 3600 * SEC).unwrap();
    let edge = red::operations(&store, "edge", &w).await.unwrap();
    assert_eq!(
        edge.iter()
            .map(|r| r.operation.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["edge-in"]
    );
    // An empty window, and a single-span window.
    let empty = Window::new(T0 - 100 * SEC, T0).unwrap();
    assert!(red::services(&store, &empty).await.unwrap().is_empty());
    let one = red::operations(&store, "edge", &Window::new(T0, T0 + 1).unwrap())
        .await
        .unwrap();
    assert_eq!(
        (one[0].requests, one[0].p50_ms, one[0].p99_ms),
        (1, 5.0, 5.0)
    );
    assert!(Window::new(T0, T0).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_series_fills_every_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let gens = dataset();
    let store = store_with_data(dir.path(), &gens).await;
    let w = Window::new(T0 - 600 * SEC, T0 + 7200 * SEC).unwrap();
    let s = red::series(&store, "payments", None, &w, 300)
        .await
        .unwrap();
    assert_eq!(s.len(), (7800 / 300) as usize);
    assert!(s[..2].iter().all(|p| p.requests == 0 && p.p95_ms.is_none()));
    for p in &s {
        let b = Window::new(p.time_ns, p.time_ns + 300 * SEC).unwrap();
        let e = expected(&gens, &b, |g| g.service.to_string());
        match e.get("payments") {
            Some(e) => {
                assert_eq!((p.requests, p.errors), (e.requests, e.errors));
                assert!(close(p.p95_ms.unwrap(), percentile(e.durs.clone(), 0.95)));
                assert!(close(p.rate, e.requests as f64 / 300.0));
            }
            None => assert_eq!(p.requests, 0),
        }
    }
    let total: u64 = s.iter().map(|p| p.requests).sum();
    let whole = red::services(&store, &w).await.unwrap();
    assert_eq!(
        total,
        whole
            .iter()
            .find(|r| r.service == "payments")
            .unwrap()
            .requests
    );
    let by_op = red::series(&store, "gateway", Some("GET /"), &w, 3600)
        .await
        .unwrap();
    assert_eq!(by_op.len(), 3);
    assert!(red::series(&store, "gateway", None, &w, 0).await.is_err());
    let two_days = Window::new(T0, T0 + 2 * 86_400 * SEC).unwrap();
    assert!(
        red::series(&store, "gateway", None, &two_days, 1)
            .await
            .is_err(),
        "too many buckets"
    );
}

/// DuckDB over the same Parquet files computes the same RED figures: per
/// service and per operation, exact on raw spans and within the sketch's
/// error through rollups, and per 5-minute bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_agrees_with_duckdb() {
    let python = std::env::var("BURNWATCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let gens = dataset();
    let store = store_with_data(dir.path(), &gens).await;
    store.flush().await.unwrap();
    let rollups = analytics::rollup::Rollups::new(store.clone(), 1 << 20);
    // Unaligned edges, so rollups combine with raw edge minutes.
    let w = Window::new(T0 + 7 * SEC, T0 + 7100 * SEC + 300_000_000).unwrap();
    let script = format!(
        r#"
import duckdb, json
def red(group, where=""):
    return [[*r[:-6], int(r[-6]), int(r[-5]), *map(float, r[-4:])] for r in duckdb.sql(f"""
  SELECT {{group}}, count(*) AS n,
         sum(CASE WHEN status_code = 'ERROR' OR coalesce(http_response_status_code, 0) >= 500 THEN 1 ELSE 0 END) AS e,
         quantile_cont(duration_ns, 0.5) / 1e6, quantile_cont(duration_ns, 0.9) / 1e6,
         quantile_cont(duration_ns, 0.95) / 1e6, quantile_cont(duration_ns, 0.99) / 1e6
  FROM read_parquet('{root}/spans/**/*.parquet')
  WHERE kind = 'SERVER' AND start_time >= make_timestamp({from_us}) AND start_time < make_timestamp({to_us}) {{where}}
  GROUP BY ALL ORDER BY ALL""").fetchall()]
buckets = duckdb.sql("""
  SELECT (epoch_us(CAST(start_time AS TIMESTAMPTZ)) - {from_us}) // 300000000 AS b, count(*),
         sum(CASE WHEN status_code = 'ERROR' OR coalesce(http_response_status_code, 0) >= 500 THEN 1 ELSE 0 END)
  FROM read_parquet('{root}/spans/**/*.parquet')
  WHERE kind = 'SERVER' AND service_name = 'payments'
    AND start_time >= make_timestamp({from_us}) AND start_time < make_timestamp({to_us})
  GROUP BY ALL ORDER BY ALL""").fetchall()
print(json.dumps({{"services": red("service_name"), "operations": red("service_name, name"),
                  "buckets": [[int(b), int(n), int(e)] for b, n, e in buckets]}}))
"#,
        root = dir.path().display(),
        from_us = w.from_ns / 1000,
        to_us = w.to_ns / 1000,
    );
    let out = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let quantiles = |row: &[serde_json::Value]| -> [f64; 4] {
        let n = row.len();
        std::array::from_fn(|k| row[n - 4 + k].as_f64().unwrap())
    };
    let counts = |row: &[serde_json::Value]| {
        let n = row.len();
        (row[n - 6].as_u64().unwrap(), row[n - 5].as_u64().unwrap())
    };
    let figures = |r: &red::Red| [r.p50_ms, r.p90_ms, r.p95_ms, r.p99_ms];
    // Per service: exact path equal, rollups within the sketch error.
    let exact = red::services(&store, &w).await.unwrap();
    let rolled = rollups.services(&w).await.unwrap();
    let rows = duck["services"].as_array().unwrap();
    assert_eq!(rows.len(), exact.len());
    assert_eq!(rows.len(), rolled.len());
    for ((d, x), r) in rows.iter().zip(&exact).zip(&rolled) {
        let d = d.as_array().unwrap();
        assert_eq!(d[0].as_str().unwrap(), x.service);
        assert_eq!(counts(d), (x.requests, x.errors), "{}", x.service);
        assert_eq!(counts(d), (r.requests, r.errors), "{}", r.service);
        for ((q, a), b) in quantiles(d).iter().zip(figures(x)).zip(figures(r)) {
            assert!(close(*q, a), "{}: duckdb {q} vs {a}", x.service);
            assert!(
                within_sketch_error(b, *q),
                "{}: duckdb {q} vs rollup {b}",
                r.service
            );
        }
    }
    // Per operation of every service.
    let rows = duck["operations"].as_array().unwrap();
    let mut seen = 0;
    for x in &exact {
        let ops = red::operations(&store, &x.service, &w).await.unwrap();
        let rops = rollups.operations(&x.service, &w).await.unwrap();
        assert_eq!(ops.len(), rops.len());
        for (o, r) in ops.iter().zip(&rops) {
            let d = rows
                .iter()
                .map(|d| d.as_array().unwrap())
                .find(|d| d[0] == x.service.as_str() && d[1] == o.operation.as_deref().unwrap())
                .unwrap();
            assert_eq!(counts(d), (o.requests, o.errors));
            assert_eq!(counts(d), (r.requests, r.errors));
            for ((q, a), b) in quantiles(d).iter().zip(figures(o)).zip(figures(r)) {
                assert!(close(*q, a) && within_sketch_error(b, *q), "{o:?}");
            }
            seen += 1;
        }
    }
    assert_eq!(seen, rows.len());
    // Buckets of 5 minutes: counts per bucket.
    let series = rollups.series("payments", None, &w, 300).await.unwrap();
    let mut want = vec![(0u64, 0u64); series.len()];
    for b in duck["buckets"].as_array().unwrap() {
        let b = b.as_array().unwrap();
        want[b[0].as_u64().unwrap() as usize] = (b[1].as_u64().unwrap(), b[2].as_u64().unwrap());
    }
    assert_eq!(
        series
            .iter()
            .map(|p| (p.requests, p.errors))
            .collect::<Vec<_>>(),
        want
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_edges_from_client_server_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    // gateway SERVER -> gateway CLIENT -> payments SERVER (x3, one failing), and an INTERNAL span.
    let mut b = SpansBuilder::new();
    for t in 0..3u8 {
        for (svc, id, parent, kind, err) in [
            ("gateway", 1u8, None, SpanKind::Server, false),
            ("gateway", 2, Some(1u8), SpanKind::Client, false),
            ("payments", 3, Some(2), SpanKind::Server, t == 0),
            ("payments", 4, Some(3), SpanKind::Internal, false),
        ] {
            let res = vec![Attr::new("service.name", svc)];
            b.append(
                &Origin {
                    service_name: svc,
                    resource_attributes: &res,
                    scope_name: "",
                    scope_version: "",
                },
                &SpanRecord {
                    trace_id: [t + 1; 16],
                    span_id: [id; 8],
                    parent_span_id: parent.map(|p| [p; 8]),
                    trace_state: "",
                    flags: 0,
                    name: "op",
                    kind,
                    start_time_ns: T0 + (t as i64) * SEC + id as i64 * 1_000_000,
                    end_time_ns: T0 + (t as i64) * SEC + 10_000_000 * (t as i64 + 1),
                    status_code: if err {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    },
                    status_message: "",
                    attributes: vec![],
                    dropped_attributes_count: 0,
                    events: vec![],
                    dropped_events_count: 0,
                    links: vec![],
                    dropped_links_count: 0,
                },
            );
        }
    }
    store.write(Table::Spans, b.finish()).await.unwrap();
    let edges = red::service_map(&store, &Window::new(T0, T0 + 60 * SEC).unwrap())
        .await
        .unwrap();
    assert_eq!(edges.len(), 1, "{edges:?}");
    let e = &edges[0];
    assert_eq!(
        (e.caller.as_str(), e.callee.as_str(), e.calls, e.errors),
        ("gateway", "payments", 3, 1)
    );
    // Callee durations 7, 17, 27 ms: p95 = 17 + 0.9 * 10 = 26 ms.
    assert!(close(e.p95_ms, 26.0), "{e:?}");
}

fn within_sketch_error(got: f64, exact: f64) -> bool {
    (got - exact).abs() <= analytics::sketch::RELATIVE_ACCURACY * exact + 1e-9
}

async fn check_rollups_match(store: &Store, rollups: &analytics::rollup::Rollups, gens: &[Gen]) {
    for w in [
        // Unaligned at both ends, whole minutes in between.
        Window::new(T0 + 17 * SEC + 300_000_000, T0 + 3601 * SEC + 700_000_000).unwrap(),
        // Aligned to minutes, spanning both hours.
        Window::new(T0 + 1800 * SEC, T0 + 7200 * SEC).unwrap(),
        // Shorter than a minute: raw only.
        Window::new(T0 + 100 * SEC, T0 + 130 * SEC).unwrap(),
        // Empty.
        Window::new(T0 - 100 * SEC, T0).unwrap(),
    ] {
        let got = rollups.services(&w).await.unwrap();
        let exact = red::services(store, &w).await.unwrap();
        let want = expected(gens, &w, |g| g.service.to_string());
        assert_eq!(got.len(), want.len(), "{w:?}");
        for (r, x) in got.iter().zip(&exact) {
            let e = &want[&r.service];
            assert_eq!(
                (r.requests, r.errors),
                (e.requests, e.errors),
                "{w:?} {}",
                r.service
            );
            assert_eq!(
                (r.service.as_str(), r.requests, r.errors),
                (x.service.as_str(), x.requests, x.errors)
            );
            for (got, p) in [
                (r.p50_ms, 0.5),
                (r.p90_ms, 0.9),
                (r.p95_ms, 0.95),
                (r.p99_ms, 0.99),
            ] {
                let exact = percentile(e.durs.clone(), p);
                assert!(
                    within_sketch_error(got, exact),
                    "{w:?} {} p{p}: {got} vs {exact}",
                    r.service
                );
            }
        }
        let ops = rollups.operations("gateway", &w).await.unwrap();
        let want = expected(gens, &w, |g| {
            if g.service == "gateway" {
                g.op.to_string()
            } else {
                String::new()
            }
        });
        for r in &ops {
            let e = &want[r.operation.as_deref().unwrap()];
            assert_eq!((r.requests, r.errors), (e.requests, e.errors));
        }
    }
    // Series: minute-aligned (rollups) and not aligned (raw); both exact counts.
    for (from, step) in [(T0 - 600 * SEC, 300), (T0 + 7 * SEC, 300), (T0, 60)] {
        let w = Window::new(from, T0 + 7200 * SEC + 500_000_000).unwrap();
        let s = rollups.series("payments", None, &w, step).await.unwrap();
        let x = red::series(store, "payments", None, &w, step)
            .await
            .unwrap();
        assert_eq!(s.len(), x.len());
        for (p, q) in s.iter().zip(&x) {
            assert_eq!(
                (p.time_ns, p.requests, p.errors),
                (q.time_ns, q.requests, q.errors)
            );
            let b = Window::new(p.time_ns, (p.time_ns + step * SEC).min(w.to_ns)).unwrap();
            if let Some(e) = expected(gens, &b, |g| g.service.to_string()).get("payments") {
                let exact = percentile(e.durs.clone(), 0.95);
                assert!(
                    within_sketch_error(p.p95_ms.unwrap(), exact),
                    "{p:?} vs {exact}"
                );
            } else {
                assert!(p.p95_ms.is_none());
            }
        }
    }
}

/// Rollups answer RED with exact counts and percentiles within 1%, whether
/// rows are in memory, flushed, compacted, or the rollup file was damaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_agree_with_raw_spans() {
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap();
    let gens = dataset();
    let store = store_with_data(dir.path(), &gens).await;
    let rollups = analytics::rollup::Rollups::new(store.clone(), 1 << 20);
    // Half in files (one per hour), half in memory.
    check_rollups_match(&store, &rollups, &gens).await;
    assert_eq!(rollups.metrics.computed.load(Ordering::Relaxed), 2);
    // Everything flushed: four files, two of them new.
    store.flush().await.unwrap();
    assert_eq!(rollups.maintain().await.unwrap(), 2);
    check_rollups_match(&store, &rollups, &gens).await;
    let root = dir.path().join(analytics::rollup::ROLLUP_DIR);
    let count_files = |root: &std::path::Path| {
        let mut n = 0;
        for e in testkit::files_under(root) {
            n += usize::from(e.extension().is_some_and(|x| x == "parquet"));
        }
        n
    };
    assert_eq!(count_files(&root), 4);
    // A fresh instance reads the rollup files instead of recomputing.
    let again = analytics::rollup::Rollups::new(store.clone(), 1 << 20);
    check_rollups_match(&store, &again, &gens).await;
    assert_eq!(again.metrics.computed.load(Ordering::Relaxed), 0);
    assert_eq!(again.metrics.loaded.load(Ordering::Relaxed), 4);
    // A damaged rollup file is recomputed, results unchanged.
    let victim = testkit::files_under(&root).into_iter().next().unwrap();
    std::fs::write(&victim, b"not parquet").unwrap();
    let third = analytics::rollup::Rollups::new(store.clone(), 0);
    check_rollups_match(&store, &third, &gens).await;
    assert_eq!(third.metrics.unreadable.load(Ordering::Relaxed), 1);
    // Compaction replaces the files; rollups follow.
    store.compact(T0 + 30 * 86_400 * SEC).await.unwrap();
    check_rollups_match(&store, &rollups, &gens).await;
}

/// One span for the map and edge tests.
#[allow(clippy::too_many_arguments)]
fn span<'a>(
    svc: &'a str,
    trace: u8,
    id: u8,
    parent: Option<u8>,
    kind: SpanKind,
    start: i64,
    dur: i64,
    attributes: Vec<Attr<'a>>,
    links: Vec<store::rows::LinkRecord<'a>>,
) -> (&'a str, SpanRecord<'a>) {
    (
        svc,
        SpanRecord {
            trace_id: [trace; 16],
            span_id: [id; 8],
            parent_span_id: parent.map(|p| [p; 8]),
            trace_state: "",
            flags: 0,
            name: "op",
            kind,
            start_time_ns: start,
            end_time_ns: start + dur,
            status_code: StatusCode::Unset,
            status_message: "",
            attributes,
            dropped_attributes_count: 0,
            events: vec![],
            dropped_events_count: 0,
            links,
            dropped_links_count: 0,
        },
    )
}

fn spans_batch(spans: &[(&str, SpanRecord<'_>)]) -> arrow::array::RecordBatch {
    let mut b = SpansBuilder::new();
    for (svc, s) in spans {
        let res = vec![Attr::new("service.name", *svc)];
        b.append(
            &Origin {
                service_name: svc,
                resource_attributes: &res,
                scope_name: "",
                scope_version: "",
            },
            s,
        );
    }
    b.finish()
}

/// Messages consumed in a new trace (a span link to the producer) and calls
/// to a service that sends no spans (`peer.service` on the CLIENT span) are
/// edges too; a CLIENT span whose callee is instrumented is not counted
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_follows_links_and_peer_service() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let ms = 1_000_000;
    let link = |trace: u8, id: u8| store::rows::LinkRecord {
        trace_id: [trace; 16],
        span_id: [id; 8],
        trace_state: "",
        attributes: vec![],
        dropped_attributes_count: 0,
        flags: 0,
    };
    let peer = |p: &'static str| vec![Attr::new("peer.service", p)];
    let spans = vec![
        // Trace 1: orders SERVER -> orders PRODUCER (outbox) ...
        span(
            "orders",
            1,
            1,
            None,
            SpanKind::Server,
            T0,
            50 * ms,
            vec![],
            vec![],
        ),
        span(
            "orders",
            1,
            2,
            Some(1),
            SpanKind::Producer,
            T0 + ms,
            2 * ms,
            vec![],
            vec![],
        ),
        // ... consumed by notifications in trace 2, linked to the producer (4 ms).
        span(
            "notifications",
            2,
            3,
            None,
            SpanKind::Consumer,
            T0 + 500 * ms,
            4 * ms,
            vec![],
            vec![link(1, 2)],
        ),
        // ... and a second message in trace 3 (6 ms).
        span(
            "orders",
            3,
            4,
            None,
            SpanKind::Producer,
            T0 + 2 * SEC,
            2 * ms,
            vec![],
            vec![],
        ),
        span(
            "notifications",
            4,
            5,
            None,
            SpanKind::Consumer,
            T0 + 3 * SEC,
            6 * ms,
            vec![],
            vec![link(3, 4)],
        ),
        // payments calls the bank, which sends no spans: 30 ms and 40 ms.
        span(
            "payments",
            5,
            6,
            None,
            SpanKind::Client,
            T0 + 4 * SEC,
            30 * ms,
            peer("bank"),
            vec![],
        ),
        span(
            "payments",
            5,
            7,
            None,
            SpanKind::Client,
            T0 + 5 * SEC,
            40 * ms,
            peer("bank"),
            vec![],
        ),
        // orders calls payments, which is instrumented: a `call` edge, not `unobserved`.
        span(
            "orders",
            6,
            8,
            None,
            SpanKind::Client,
            T0 + 6 * SEC,
            20 * ms,
            peer("payments"),
            vec![],
        ),
        span(
            "payments",
            6,
            9,
            Some(8),
            SpanKind::Server,
            T0 + 6 * SEC + ms,
            18 * ms,
            vec![],
            vec![],
        ),
        // A link to a span of the same service is no edge.
        span(
            "notifications",
            7,
            10,
            None,
            SpanKind::Consumer,
            T0 + 7 * SEC,
            ms,
            vec![],
            vec![link(2, 3)],
        ),
    ];
    store
        .write(Table::Spans, spans_batch(&spans))
        .await
        .unwrap();
    for flushed in [false, true] {
        if flushed {
            store.flush().await.unwrap();
        }
        let edges = red::service_map(&store, &Window::new(T0, T0 + 60 * SEC).unwrap())
            .await
            .unwrap();
        let got: Vec<(&str, &str, &str, u64, f64)> = edges
            .iter()
            .map(|e| {
                (
                    e.caller.as_str(),
                    e.callee.as_str(),
                    e.kind.as_str(),
                    e.calls,
                    e.p50_ms,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("orders", "notifications", "message", 2, 5.0),
                ("orders", "payments", "call", 1, 18.0),
                ("payments", "bank", "unobserved", 2, 35.0),
            ],
            "flushed: {flushed}"
        );
        // One service's part of the map: exactly the edges it is in.
        for svc in ["orders", "notifications", "payments", "bank", "gateway"] {
            let mine =
                red::service_map_of(&store, &Window::new(T0, T0 + 60 * SEC).unwrap(), Some(svc))
                    .await
                    .unwrap();
            let expected: Vec<_> = edges
                .iter()
                .filter(|e| e.caller == svc || e.callee == svc)
                .cloned()
                .collect();
            assert_eq!(mine, expected, "{svc}, flushed: {flushed}");
        }
    }
}

/// A span belongs to the window its start falls in, whatever its end; the
/// raw and the rollup paths agree at minute and window edges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_crossing_window_edges_count_where_they_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let ms = 1_000_000;
    let spans = vec![
        // Starts 100 ms before the minute (and the second window), ends 1.9 s into it.
        span(
            "api",
            1,
            1,
            None,
            SpanKind::Server,
            T0 + 60 * SEC - 100 * ms,
            2 * SEC,
            vec![],
            vec![],
        ),
        // Starts in the first window, lasts a minute.
        span(
            "api",
            2,
            2,
            None,
            SpanKind::Server,
            T0 + 30 * SEC,
            60 * SEC,
            vec![],
            vec![],
        ),
        // Starts exactly at the second window's start.
        span(
            "api",
            3,
            3,
            None,
            SpanKind::Server,
            T0 + 60 * SEC,
            ms,
            vec![],
            vec![],
        ),
        // Started long before both windows, ends inside the first.
        span(
            "api",
            4,
            4,
            None,
            SpanKind::Server,
            T0 - 3600 * SEC,
            3610 * SEC,
            vec![],
            vec![],
        ),
    ];
    store
        .write(Table::Spans, spans_batch(&spans))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let rollups = analytics::rollup::Rollups::new(store.clone(), 1 << 20);
    for (w, want) in [
        (Window::new(T0, T0 + 60 * SEC).unwrap(), 2),
        (Window::new(T0 + 60 * SEC, T0 + 120 * SEC).unwrap(), 1),
        // Unaligned: only the span at T0 + 59.9 s.
        (Window::new(T0 + 45 * SEC, T0 + 60 * SEC).unwrap(), 1),
        (Window::new(T0 - 3600 * SEC, T0 + 120 * SEC).unwrap(), 4),
        (Window::new(T0 + 120 * SEC, T0 + 3600 * SEC).unwrap(), 0),
    ] {
        let exact: u64 = red::services(&store, &w)
            .await
            .unwrap()
            .iter()
            .map(|r| r.requests)
            .sum();
        let rolled: u64 = rollups
            .services(&w)
            .await
            .unwrap()
            .iter()
            .map(|r| r.requests)
            .sum();
        assert_eq!((exact, rolled), (want, want), "{w:?}");
    }
}
