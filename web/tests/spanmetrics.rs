//! Span metrics through the Prometheus API (`traces_spanmetrics_*`, from
//! the RED rollups) equal Burnwatch's own RED over the same window: counts
//! and rates exactly, quantiles within the histogram bucket that holds the
//! RED percentile. Part of the spans are in flushed files (rollups), part
//! still in memory.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use store::rows::{Origin, SpanKind, SpanRecord, SpansBuilder, StatusCode as St};
use store::{Store, Table};
use tower::ServiceExt as _;
use web::{WebState, app};

const T0: i64 = 1_709_632_800_000_000_000;
const MIN: i64 = 60_000_000_000;

/// Duration of span `i`, ns: spread over 0.5 ms .. ~3 s.
fn duration(i: i64) -> i64 {
    let x = (i * 7919) % 1000;
    500_000 + x * x * 3_000
}

fn span(service_kind: SpanKind, name: &str, i: i64, minute: i64) -> SpanRecord<'_> {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&i.to_be_bytes());
    id[15] = service_kind as u8 + 1;
    SpanRecord {
        trace_id: id,
        span_id: (i as u64 + 1).to_be_bytes(),
        parent_span_id: None,
        trace_state: "",
        flags: 1,
        name,
        kind: service_kind,
        start_time_ns: T0 + minute * MIN + (i % 50) * 1_000_000_000,
        end_time_ns: T0 + minute * MIN + (i % 50) * 1_000_000_000 + duration(i),
        status_code: if i % 7 == 0 { St::Error } else { St::Unset },
        status_message: "",
        attributes: vec![],
        dropped_attributes_count: 0,
        events: vec![],
        dropped_events_count: 0,
        links: vec![],
        dropped_links_count: 0,
    }
}

async fn write(store: &Store, minutes: std::ops::Range<i64>) {
    let res = vec![store::rows::Attr::new("service.name", "checkout")];
    let checkout = Origin {
        service_name: "checkout",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let res_db = vec![store::rows::Attr::new("service.name", "db-client")];
    let db = Origin {
        service_name: "db-client",
        resource_attributes: &res_db,
        scope_name: "",
        scope_version: "",
    };
    let mut b = SpansBuilder::new();
    for m in minutes {
        for k in 0..40 {
            let i = m * 1000 + k;
            let name = if k % 3 == 0 { "GET /cart" } else { "POST /pay" };
            b.append(&checkout, &span(SpanKind::Server, name, i, m));
            if k % 2 == 0 {
                b.append(&db, &span(SpanKind::Client, "SELECT", i, m));
            }
        }
    }
    store.write(Table::Spans, b.finish()).await.unwrap();
}

async fn get(state: &WebState, uri: &str) -> Value {
    let resp = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(status, StatusCode::OK, "{uri}: {v}");
    v
}

async fn instant(state: &WebState, q: &str, at_ns: i64) -> Vec<(Value, f64)> {
    let enc = serde_urlencoded::to_string([("query", q)]).unwrap();
    let v = get(
        state,
        &format!(
            "/prometheus/api/v1/query?{enc}&time={}",
            at_ns / 1_000_000_000
        ),
    )
    .await;
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"].clone(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_metrics_equal_red() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    write(&store, 0..8).await;
    store.flush().await.unwrap();
    let state = WebState::new(store.clone());
    assert!(
        state.rollups.maintain().await.unwrap() > 0,
        "rollups computed"
    );
    write(&store, 8..13).await;

    let end = T0 + 12 * MIN;
    let w = analytics::red::Window::new(end - 10 * MIN, end).unwrap();
    let red = state.rollups.services(&w).await.unwrap();
    let checkout = red.iter().find(|r| r.service == "checkout").unwrap();
    assert_eq!(checkout.requests, 10 * 40);

    let q = |s: &str| s.to_string();
    let by_service = |rows: Vec<(Value, f64)>| -> Vec<(String, f64)> {
        rows.into_iter()
            .map(|(m, v)| (m["service"].as_str().unwrap_or("").to_string(), v))
            .collect()
    };
    // Counts, errors and rates per service equal RED exactly.
    let calls = by_service(
        instant(
            &state,
            &q(r#"sum by (service) (increase(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER"}[10m]))"#),
            end,
        )
        .await,
    );
    assert_eq!(
        calls,
        vec![("checkout".to_string(), checkout.requests as f64)]
    );
    let errors = by_service(
        instant(
            &state,
            &q(r#"sum by (service) (increase(traces_spanmetrics_calls_total{span_kind="SPAN_KIND_SERVER",status_code="STATUS_CODE_ERROR"}[10m]))"#),
            end,
        )
        .await,
    );
    assert_eq!(
        errors,
        vec![("checkout".to_string(), checkout.errors as f64)]
    );
    assert!(checkout.errors > 0);
    let rate = instant(
        &state,
        r#"sum(rate(traces_spanmetrics_calls_total{service="checkout",span_kind="SPAN_KIND_SERVER"}[10m]))"#,
        end,
    )
    .await;
    assert!(
        (rate[0].1 - checkout.rate).abs() < 1e-9,
        "{rate:?} vs {}",
        checkout.rate
    );
    // Per operation, too.
    let ops = state.rollups.operations("checkout", &w).await.unwrap();
    let per_op = instant(
        &state,
        r#"sum by (span_name) (increase(traces_spanmetrics_calls_total{service_name="checkout"}[10m]))"#,
        end,
    )
    .await;
    for op in &ops {
        let name = op.operation.as_deref().unwrap();
        let v = per_op
            .iter()
            .find(|(m, _)| m["span_name"] == name)
            .map(|(_, v)| *v);
        assert_eq!(v, Some(op.requests as f64), "{name}");
    }
    // Other kinds are there too: the CLIENT spans of db-client.
    let client = instant(
        &state,
        r#"sum(increase(traces_spanmetrics_calls_total{service="db-client",span_kind="SPAN_KIND_CLIENT"}[10m]))"#,
        end,
    )
    .await;
    assert_eq!(client[0].1, 10.0 * 20.0);
    // The count and sum series agree with the calls.
    let count = instant(
        &state,
        r#"sum(increase(traces_spanmetrics_duration_seconds_count{service="checkout",span_kind="SPAN_KIND_SERVER"}[10m]))"#,
        end,
    )
    .await;
    assert_eq!(count[0].1, checkout.requests as f64);

    // Quantiles: histogram_quantile lands in the bucket holding RED's.
    let bounds = analytics::rollup::SPAN_METRIC_BOUNDS;
    for (qv, red_ms) in [
        (0.5, checkout.p50_ms),
        (0.95, checkout.p95_ms),
        (0.99, checkout.p99_ms),
    ] {
        let got = instant(
            &state,
            &format!(
                r#"histogram_quantile({qv}, sum by (le) (rate(traces_spanmetrics_duration_seconds_bucket{{service="checkout",span_kind="SPAN_KIND_SERVER"}}[10m])))"#
            ),
            end,
        )
        .await[0]
            .1;
        let red_s = red_ms / 1000.0;
        let bucket = |v: f64| bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        // The sketch is within 1%: either bucket of a value that close to a
        // bound is right.
        let near = [bucket(red_s * 0.99), bucket(red_s * 1.01)];
        assert!(
            near.contains(&bucket(got)),
            "q{qv}: PromQL {got} s, RED {red_s} s"
        );
    }

    // Exemplars: trace ids of spans in the bucket the exemplar sits in.
    let enc = serde_urlencoded::to_string([(
        "query",
        r#"traces_spanmetrics_duration_seconds_bucket{service="checkout"}"#,
    )])
    .unwrap();
    let v = get(
        &state,
        &format!(
            "/prometheus/api/v1/query_exemplars?{enc}&start={}&end={}",
            (end - 10 * MIN) / 1_000_000_000,
            end / 1_000_000_000
        ),
    )
    .await;
    let series = v["data"].as_array().unwrap();
    assert!(!series.is_empty(), "{v}");
    let mut seen = 0;
    for s in series {
        let le = s["seriesLabels"]["le"].as_str().unwrap();
        let le: f64 = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap()
        };
        for e in s["exemplars"].as_array().unwrap() {
            let value: f64 = e["value"].as_str().unwrap().parse().unwrap();
            assert!(value <= le, "{e} in le={le}");
            let tid = e["labels"]["trace_id"].as_str().unwrap();
            assert_eq!(tid.len(), 32);
            seen += 1;
        }
    }
    assert!(seen >= 10, "{seen} exemplars");

    // The names are listed.
    let names = get(&state, "/prometheus/api/v1/label/__name__/values").await;
    let names = names["data"].as_array().unwrap();
    for n in [
        "traces_spanmetrics_calls_total",
        "traces_spanmetrics_duration_seconds_bucket",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
}

/// Service-graph series equal the service map's edges over the same
/// window: calls and failures per client and server, for calls and for
/// an uninstrumented callee (`peer.service`), twice (the second time from
/// the cache of settled hours).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_graph_equals_service_map() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let res_f = vec![store::rows::Attr::new("service.name", "frontend")];
    let frontend = Origin {
        service_name: "frontend",
        resource_attributes: &res_f,
        scope_name: "",
        scope_version: "",
    };
    let res_c = vec![store::rows::Attr::new("service.name", "checkout")];
    let checkout = Origin {
        service_name: "checkout",
        resource_attributes: &res_c,
        scope_name: "",
        scope_version: "",
    };
    let mut b = SpansBuilder::new();
    for m in 0..13i64 {
        for k in 0..15i64 {
            let i = m * 1000 + k;
            let mut client = span(SpanKind::Client, "POST /checkout", i, m);
            client.span_id = (i as u64 + 1_000_000).to_be_bytes();
            client.status_code = St::Unset;
            let mut server = span(SpanKind::Server, "POST /checkout", i, m);
            server.trace_id = client.trace_id;
            server.parent_span_id = Some(client.span_id);
            server.status_code = if k % 4 == 0 { St::Error } else { St::Unset };
            b.append(&frontend, &client);
            b.append(&checkout, &server);
            if k % 5 == 0 {
                let mut legacy = span(SpanKind::Client, "GET /legacy", i + 500, m);
                legacy.attributes = vec![store::rows::Attr::new("peer.service", "legacy-pricing")];
                legacy.status_code = St::Unset;
                b.append(&frontend, &legacy);
            }
        }
    }
    store.write(Table::Spans, b.finish()).await.unwrap();
    store.flush().await.unwrap();
    let state = WebState::new(store.clone());

    let end = T0 + 12 * MIN;
    let w = analytics::red::Window::new(end - 10 * MIN, end).unwrap();
    let edges = analytics::red::service_map(&store, &w).await.unwrap();
    assert_eq!(edges.len(), 2, "{edges:?}");
    for round in 0..2 {
        let calls = instant(
            &state,
            "sum by (client, server, connection_type) (increase(traces_service_graph_request_total[10m]))",
            end,
        )
        .await;
        let failed = instant(
            &state,
            "sum by (client, server) (increase(traces_service_graph_request_failed_total[10m]))",
            end,
        )
        .await;
        let count = instant(
            &state,
            "sum by (client, server) (increase(traces_service_graph_request_server_seconds_count[10m]))",
            end,
        )
        .await;
        for e in &edges {
            let find = |rows: &[(Value, f64)]| {
                rows.iter()
                    .find(|(m, _)| {
                        m["client"] == e.caller.as_str() && m["server"] == e.callee.as_str()
                    })
                    .map(|(m, v)| (m.clone(), *v))
                    .unwrap_or_else(|| panic!("no series for {e:?} in {rows:?}"))
            };
            let (labels, n) = find(&calls);
            assert_eq!(n, e.calls as f64, "round {round}: {e:?}");
            let expected_type = if e.kind == "unobserved" {
                Value::from("virtual_node")
            } else {
                Value::Null
            };
            assert_eq!(labels["connection_type"], expected_type);
            assert_eq!(find(&failed).1, e.errors as f64, "{e:?}");
            assert_eq!(find(&count).1, e.calls as f64, "{e:?}");
        }
        assert_eq!(
            state.rollups.graph.cached_hours(),
            1,
            "the settled hour is cached"
        );
    }
}
