//! RED golden tests on a generated dataset: every figure is recomputed here
//! independently from the generated spans, and cross-checked with DuckDB
//! over the same Parquet files.

use slo_engine::red::{self, Window};
use store::rows::{Attr, Origin, SpanKind, SpanRecord, SpansBuilder, StatusCode};
use store::{Store, StoreConfig, Table};

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
    let store = Store::open(StoreConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    })
    .await
    .unwrap();
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

/// DuckDB over the same Parquet files computes the same RED figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_agrees_with_duckdb() {
    let python = std::env::var("BURNWATCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let gens = dataset();
    let store = store_with_data(dir.path(), &gens).await;
    store.flush().await.unwrap();
    let w = Window::new(T0, T0 + 7200 * SEC).unwrap();
    let got = red::services(&store, &w).await.unwrap();
    let script = format!(
        r#"
import duckdb, json, sys
rows = duckdb.sql("""
  SELECT service_name, count(*) AS n,
         sum(CASE WHEN status_code = 'ERROR' OR coalesce(http_response_status_code, 0) >= 500 THEN 1 ELSE 0 END) AS e,
         quantile_cont(duration_ns, 0.95) / 1e6 AS p95, quantile_cont(duration_ns, 0.99) / 1e6 AS p99
  FROM read_parquet('{root}/spans/**/*.parquet')
  WHERE kind = 'SERVER' AND start_time >= make_timestamp({from_us}) AND start_time < make_timestamp({to_us})
  GROUP BY 1 ORDER BY 1""").fetchall()
print(json.dumps([[r[0], int(r[1]), int(r[2]), float(r[3]), float(r[4])] for r in rows]))
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
    let duck: Vec<(String, u64, u64, f64, f64)> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(duck.len(), got.len());
    for (d, r) in duck.iter().zip(&got) {
        assert_eq!((&d.0, d.1, d.2), (&r.service, r.requests, r.errors));
        assert!(
            close(d.3, r.p95_ms) && close(d.4, r.p99_ms),
            "{d:?} vs {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_edges_from_client_server_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
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
    (got - exact).abs() <= slo_engine::sketch::RELATIVE_ACCURACY * exact + 1e-9
}

async fn check_rollups_match(store: &Store, rollups: &slo_engine::rollup::Rollups, gens: &[Gen]) {
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
    let rollups = slo_engine::rollup::Rollups::new(store.clone(), 1 << 20);
    // Half in files (one per hour), half in memory.
    check_rollups_match(&store, &rollups, &gens).await;
    assert_eq!(rollups.metrics.computed.load(Ordering::Relaxed), 2);
    // Everything flushed: four files, two of them new.
    store.flush().await.unwrap();
    assert_eq!(rollups.maintain().await.unwrap(), 2);
    check_rollups_match(&store, &rollups, &gens).await;
    let root = dir.path().join(slo_engine::rollup::ROLLUP_DIR);
    let count_files = |root: &std::path::Path| {
        let mut n = 0;
        for e in walk(root) {
            n += usize::from(e.extension().is_some_and(|x| x == "parquet"));
        }
        n
    };
    assert_eq!(count_files(&root), 4);
    // A fresh instance reads the rollup files instead of recomputing.
    let again = slo_engine::rollup::Rollups::new(store.clone(), 1 << 20);
    check_rollups_match(&store, &again, &gens).await;
    assert_eq!(again.metrics.computed.load(Ordering::Relaxed), 0);
    assert_eq!(again.metrics.loaded.load(Ordering::Relaxed), 4);
    // A damaged rollup file is recomputed, results unchanged.
    let victim = walk(&root).into_iter().next().unwrap();
    std::fs::write(&victim, b"not parquet").unwrap();
    let third = slo_engine::rollup::Rollups::new(store.clone(), 0);
    check_rollups_match(&store, &third, &gens).await;
    assert_eq!(third.metrics.unreadable.load(Ordering::Relaxed), 1);
    // Compaction replaces the files; rollups follow.
    store.compact(T0 + 30 * 86_400 * SEC).await.unwrap();
    check_rollups_match(&store, &rollups, &gens).await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
