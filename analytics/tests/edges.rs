//! The service map from per-file extracts ([`analytics::edges::EdgeIndex`])
//! against the same rules in one SQL join ([`analytics::red::service_map_of`]):
//! random traces over four hours, in several files and in memory, over
//! windows aligned and cut at every kind of edge, before and after more
//! writes, flushes and a compaction.

use analytics::edges::EdgeIndex;
use analytics::red::{self, Edge, Window};
use store::rows::{Attr, LinkRecord, Origin, SpanKind, SpanRecord, SpansBuilder, StatusCode};
use store::{Store, Table};

const T0: i64 = 1_709_632_800_000_000_000; // 2024-03-05T10:00:00Z, an hour boundary
const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 3600 * SEC;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One generated span (owned, so batches can be built in any split).
#[derive(Clone)]
struct S {
    svc: &'static str,
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    kind: SpanKind,
    start: i64,
    dur: i64,
    error: bool,
    http: Option<i64>,
    peer: Option<&'static str>,
    links: Vec<([u8; 16], [u8; 8])>,
}

fn id8(r: &mut Rng) -> [u8; 8] {
    r.next().to_le_bytes()
}

fn id16(r: &mut Rng) -> [u8; 16] {
    let mut t = [0; 16];
    t[..8].copy_from_slice(&r.next().to_le_bytes());
    t[8..].copy_from_slice(&r.next().to_le_bytes());
    t
}

/// Traces over `[T0, T0 + 4h)`: gateway -> orders/payments calls (callee
/// starts a little after, or up to 70 minutes away from, its caller),
/// orders -> mailer messages (as parent or as a link in a new trace),
/// CLIENT spans naming `bank` (which sends SERVER spans only in the third
/// hour) or an instrumented service, duplicated caller spans, errors by
/// status and by HTTP code.
fn traces(r: &mut Rng, n: usize) -> Vec<S> {
    let mut out = Vec::new();
    let callees = ["orders", "payments"];
    for _ in 0..n {
        let trace = id16(r);
        let t = T0 + (r.below(4 * 3600 * 1000) as i64) * 1_000_000;
        let root = id8(r);
        let dur = || 1_000_000;
        let server = |svc, id, parent, start, r: &mut Rng| S {
            svc,
            trace,
            id,
            parent,
            kind: SpanKind::Server,
            start,
            dur: 1_000_000 + r.below(500) as i64 * 100_000,
            error: r.below(20) == 0,
            http: match r.below(10) {
                0 => Some(503),
                1 => Some(404),
                _ => None,
            },
            peer: None,
            links: vec![],
        };
        out.push(server("gateway", root, None, t, r));
        let client = id8(r);
        let peer = match r.below(6) {
            0 => Some("bank"),
            1 => Some("payments"),
            _ => None,
        };
        let mut c = S {
            svc: "gateway",
            trace,
            id: client,
            parent: Some(root),
            kind: SpanKind::Client,
            start: t + 1_000_000,
            dur: 5_000_000 + r.below(100) as i64 * 1_000_000,
            error: r.below(15) == 0,
            http: None,
            peer,
            links: vec![],
        };
        let _ = dur;
        if peer == Some("bank") {
            out.push(c);
            continue;
        }
        if r.below(25) == 0 {
            // The same CLIENT span twice (an export retried).
            out.push(c.clone());
        }
        if r.below(10) == 0 {
            c.start = t - 61 * MIN + r.below(4) as i64 * MIN; // far from its callee
        }
        out.push(c);
        let callee = callees[r.below(2) as usize];
        let sid = id8(r);
        let start = t + 2_000_000 + r.below(3) as i64 * 1_000_000;
        out.push(server(callee, sid, Some(client), start, r));
        if callee == "orders" && r.below(3) == 0 {
            let producer = id8(r);
            out.push(S {
                svc: "orders",
                trace,
                id: producer,
                parent: Some(sid),
                kind: SpanKind::Producer,
                start: start + 1_000_000,
                dur: 300_000,
                error: false,
                http: None,
                peer: None,
                links: vec![],
            });
            let as_link = r.below(2) == 0;
            let later = start + (r.below(90) as i64) * MIN / 2;
            out.push(S {
                svc: "mailer",
                trace: if as_link { id16(r) } else { trace },
                id: id8(r),
                parent: (!as_link).then_some(producer),
                kind: SpanKind::Consumer,
                start: later,
                dur: 2_000_000 + r.below(50) as i64 * 1_000_000,
                error: r.below(10) == 0,
                http: None,
                peer: None,
                links: if as_link {
                    vec![(trace, producer), (id16(r), id8(r))]
                } else {
                    vec![]
                },
            });
        }
    }
    // bank sends SERVER spans only in the third hour.
    for k in 0..20 {
        out.push(S {
            svc: "bank",
            trace: id16(r),
            id: id8(r),
            parent: None,
            kind: SpanKind::Server,
            start: T0 + 2 * HOUR + k * 3 * MIN,
            dur: 1_000_000,
            error: false,
            http: None,
            peer: None,
            links: vec![],
        });
    }
    out
}

fn batch(spans: &[S]) -> arrow::array::RecordBatch {
    let mut b = SpansBuilder::new();
    for s in spans {
        let res = vec![Attr::new("service.name", s.svc)];
        let mut attributes = Vec::new();
        if let Some(p) = s.peer {
            attributes.push(Attr::new("peer.service", p));
        }
        if let Some(code) = s.http {
            attributes.push(Attr::new("http.response.status_code", code.to_string()));
        }
        b.append(
            &Origin {
                service_name: s.svc,
                resource_attributes: &res,
                scope_name: "",
                scope_version: "",
            },
            &SpanRecord {
                trace_id: s.trace,
                span_id: s.id,
                parent_span_id: s.parent,
                trace_state: "",
                flags: 0,
                name: "op",
                kind: s.kind,
                start_time_ns: s.start,
                end_time_ns: s.start + s.dur,
                status_code: if s.error {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                status_message: "",
                attributes,
                dropped_attributes_count: 0,
                events: vec![],
                dropped_events_count: 0,
                links: s
                    .links
                    .iter()
                    .map(|(t, i)| LinkRecord {
                        trace_id: *t,
                        span_id: *i,
                        trace_state: "",
                        attributes: vec![],
                        dropped_attributes_count: 0,
                        flags: 0,
                    })
                    .collect(),
                dropped_links_count: 0,
            },
        );
    }
    b.finish()
}

fn windows() -> Vec<Window> {
    let w = |a: i64, b: i64| Window::new(T0 + a, T0 + b).unwrap();
    vec![
        w(0, 4 * HOUR),                                              // every hour whole
        w(HOUR, 2 * HOUR),                                           // one whole hour
        w(HOUR + 17 * MIN + 3 * SEC, 2 * HOUR + 17 * MIN + 3 * SEC), // cut mid-minute
        w(30 * MIN, 3 * HOUR + 45 * MIN + 500_000),                  // whole hours and two cut ones
        w(2 * HOUR + 5 * MIN, 2 * HOUR + 6 * MIN),                   // one minute
        w(-2 * HOUR, HOUR / 2),                                      // before the data
        w(3 * HOUR, 5 * HOUR),                                       // past its end
    ]
}

fn within_sketch_error(got: f64, exact: f64) -> bool {
    (got.is_nan() && exact.is_nan()) || (got - exact).abs() <= exact.abs() * 0.0101 + 1e-9
}

async fn check(store: &Store, index: &EdgeIndex, stage: &str) {
    let mut seen = 0;
    for w in windows() {
        for service in [None, Some("orders"), Some("bank")] {
            let want: Vec<Edge> = red::service_map_of(store, &w, service).await.unwrap();
            let got = index.service_map(&w, service).await.unwrap();
            let key = |e: &Edge| {
                (
                    e.caller.clone(),
                    e.callee.clone(),
                    e.kind.clone(),
                    e.calls,
                    e.errors,
                )
            };
            assert_eq!(
                got.iter().map(key).collect::<Vec<_>>(),
                want.iter().map(key).collect::<Vec<_>>(),
                "{stage}: window {w:?}, service {service:?}"
            );
            for (g, e) in got.iter().zip(&want) {
                for (a, b) in [
                    (g.p50_ms, e.p50_ms),
                    (g.p95_ms, e.p95_ms),
                    (g.p99_ms, e.p99_ms),
                ] {
                    assert!(within_sketch_error(a, b), "{stage}: {g:?} vs {e:?}");
                }
                assert!(
                    (g.rate - e.rate).abs() < 1e-9 && (g.error_ratio - e.error_ratio).abs() < 1e-12
                );
            }
            seen += want.len();
        }
    }
    assert!(
        seen > 20,
        "{stage}: the windows hold too few edges to test anything ({seen})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extracts_give_the_map_the_sql_join_gives() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let index = EdgeIndex::new(store.clone());
    let mut r = Rng(7);
    let spans = traces(&mut r, 1500);
    // Three flushes (several files per hour), then a part left in memory.
    let parts: Vec<&[S]> = spans.chunks(spans.len() / 4 + 1).collect();
    for p in &parts[..3] {
        store.write(Table::Spans, batch(p)).await.unwrap();
        store.flush().await.unwrap();
    }
    store.write(Table::Spans, batch(parts[3])).await.unwrap();
    check(&store, &index, "three flushes and rows in memory").await;
    // Every edge kind is there. bank sends SERVER spans from T0 + 2h, so
    // calls naming it are `unobserved` only in windows that end (with the
    // hour of slack) before then.
    let all = index
        .service_map(&Window::new(T0, T0 + 4 * HOUR).unwrap(), None)
        .await
        .unwrap();
    let early = index
        .service_map(&Window::new(T0, T0 + 30 * MIN).unwrap(), None)
        .await
        .unwrap();
    for kind in ["call", "message"] {
        assert!(
            all.iter().any(|e| e.kind == kind),
            "no {kind} edge: {all:?}"
        );
    }
    assert!(!all.iter().any(|e| e.kind == "unobserved"), "{all:?}");
    assert!(
        early
            .iter()
            .any(|e| e.kind == "unobserved" && e.callee == "bank"),
        "{early:?}"
    );

    // Cached hours must follow new files and a compaction.
    index.maintain().await.unwrap();
    store.flush().await.unwrap();
    check(&store, &index, "all flushed").await;
    let computed = index
        .metrics
        .hours_computed
        .load(std::sync::atomic::Ordering::Relaxed);
    check(&store, &index, "again, from the cache").await;
    assert_eq!(
        index
            .metrics
            .hours_computed
            .load(std::sync::atomic::Ordering::Relaxed),
        computed,
        "nothing changed, yet hours were paired again"
    );
    let more = traces(&mut Rng(99), 300);
    store.write(Table::Spans, batch(&more)).await.unwrap();
    store.flush().await.unwrap();
    check(&store, &index, "late spans in every hour").await;
    store.compact(T0 + 30 * 86_400 * SEC).await.unwrap();
    check(&store, &index, "compacted").await;
}
