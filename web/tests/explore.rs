//! Trace by id, trace search and log search through the router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use store::rows::{
    Attr, EventRecord, LogRecord, LogsBuilder, Origin, SpanKind, SpanRecord, SpansBuilder,
    StatusCode as St,
};
use store::{Store, Table};
use tower::ServiceExt as _;
use web::{WebState, app};

const T0: i64 = 1_709_632_800_000_000_000;
const MS: i64 = 1_000_000;

#[allow(clippy::too_many_arguments)]
fn span<'a>(
    trace: u8,
    id: u8,
    parent: Option<u8>,
    name: &'a str,
    start_ms: i64,
    dur_ms: i64,
    err: bool,
    attrs: Vec<Attr<'a>>,
) -> SpanRecord<'a> {
    SpanRecord {
        trace_id: [trace; 16],
        span_id: [id; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        trace_state: "",
        flags: 1,
        name,
        kind: if parent.is_none() {
            SpanKind::Server
        } else {
            SpanKind::Client
        },
        start_time_ns: T0 + start_ms * MS,
        end_time_ns: T0 + (start_ms + dur_ms) * MS,
        status_code: if err { St::Error } else { St::Unset },
        status_message: if err { "boom" } else { "" },
        attributes: attrs,
        dropped_attributes_count: 0,
        events: vec![EventRecord {
            time_ns: T0 + start_ms * MS,
            name: "start",
            attributes: vec![],
            dropped_attributes_count: 0,
        }],
        dropped_events_count: 0,
        links: vec![],
        dropped_links_count: 0,
    }
}

async fn state() -> (WebState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let res = vec![Attr::new("service.name", "checkout")];
    let origin = Origin {
        service_name: "checkout",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let mut b = SpansBuilder::new();
    // Trace 0xaa: slow, one failing child. Trace 0xbb: fast, fine, later.
    b.append(
        &origin,
        &span(
            0xaa,
            1,
            None,
            "POST /pay",
            0,
            900,
            false,
            vec![Attr::new("user.tier", "gold")],
        ),
    );
    b.append(
        &origin,
        &span(0xaa, 2, Some(1), "charge", 100, 700, true, vec![]),
    );
    b.append(
        &origin,
        &span(0xaa, 3, Some(1), "notify", 850, 20, false, vec![]),
    );
    b.append(
        &origin,
        &span(
            0xbb,
            4,
            None,
            "GET /cart",
            5_000,
            15,
            false,
            vec![Attr::new("user.tier", "free")],
        ),
    );
    store.write(Table::Spans, b.finish()).await.unwrap();
    store.flush().await.unwrap();
    let mut l = LogsBuilder::new();
    for (i, (trace, sev, body)) in [
        (0xaa, 17, "card declined: insufficient funds"),
        (0xaa, 9, "notified user"),
        (0xbb, 9, "cart viewed"),
    ]
    .into_iter()
    .enumerate()
    {
        l.append(
            &origin,
            &LogRecord {
                time_ns: T0 + (i as i64 * 1000 + 200) * MS,
                observed_time_ns: T0,
                severity_number: sev,
                severity_text: if sev >= 17 { "ERROR" } else { "INFO" },
                body: Some(body.into()),
                trace_id: Some([trace; 16]),
                span_id: Some([2; 8]),
                ..Default::default()
            },
        );
    }
    store.write(Table::Logs, l.finish()).await.unwrap();
    (WebState::new(store), dir)
}

async fn get(s: &WebState, uri: &str) -> (StatusCode, serde_json::Value) {
    let resp = app(s.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

const WIN: &str = "from=2024-03-05T09:00:00Z&to=2024-03-05T11:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_by_id_with_its_logs() {
    let (s, _d) = state().await;
    let (status, v) = get(&s, &format!("/api/v1/traces/{}", "AA".repeat(16))).await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["POST /pay", "charge", "notify"]);
    assert_eq!(v["spans"][1]["parent_span_id"], "0101010101010101");
    assert_eq!(v["spans"][1]["status_message"], "boom");
    assert_eq!(v["spans"][0]["events"][0]["name"], "start");
    assert_eq!(v["spans"][0]["attributes"]["user.tier"], "gold");
    assert_eq!(v["logs"].as_array().unwrap().len(), 2);
    let (status, v) = get(&s, &format!("/api/v1/traces/{}", "cc".repeat(16))).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("trace_not_found"))
    );
    let (status, v) = get(&s, "/api/v1/traces/xyz").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_search_filters_and_orders_newest_first() {
    let (s, _d) = state().await;
    let (status, v) = get(&s, &format!("/api/v1/traces?{WIN}")).await;
    assert_eq!(status, 200, "{v}");
    let t = v["traces"].as_array().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0]["trace_id"], "bb".repeat(16));
    assert_eq!(
        (t[1]["span_count"].as_i64(), t[1]["error_spans"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(t[1]["duration_ms"], 900.0);
    assert_eq!(t[1]["root_operation"], "POST /pay");
    for (filter, want) in [
        ("status=error", 1),
        ("min_duration_ms=500", 1),
        ("max_duration_ms=20", 2),
        ("max_duration_ms=16", 1),
        ("operation=GET%20/cart", 1),
        ("attribute=user.tier=gold", 1),
        ("service=nope", 0),
    ] {
        let (status, v) = get(&s, &format!("/api/v1/traces?{WIN}&{filter}")).await;
        assert_eq!(status, 200, "{filter}: {v}");
        assert_eq!(v["traces"].as_array().unwrap().len(), want, "{filter}");
    }
    let (status, _) = get(&s, &format!("/api/v1/traces?{WIN}&status=weird")).await;
    assert_eq!(status, 400);
    // Outside the window: nothing.
    let (_, v) = get(
        &s,
        "/api/v1/traces?from=2024-03-06T00:00:00Z&to=2024-03-06T01:00:00Z",
    )
    .await;
    assert!(v["traces"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_search() {
    let (s, _d) = state().await;
    for (filter, want) in [
        ("", 3),
        ("q=DECLINED", 1),
        ("q=100%25", 0),
        ("regex=^(card|cart)", 2),
        ("min_severity=17", 1),
        (&format!("trace_id={}", "bb".repeat(16)) as &str, 1),
        ("service=checkout&limit=2", 2),
    ] {
        let (status, v) = get(&s, &format!("/api/v1/logs?{WIN}&{filter}")).await;
        assert_eq!(status, 200, "{filter}: {v}");
        assert_eq!(v["logs"].as_array().unwrap().len(), want, "{filter}: {v}");
    }
    let (_, v) = get(&s, &format!("/api/v1/logs?{WIN}")).await;
    assert_eq!(v["logs"][0]["body"], "cart viewed", "newest first");
    let (status, _) = get(&s, &format!("/api/v1/logs?{WIN}&trace_id=nothex")).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_map_endpoint() {
    let (s, _d) = state().await;
    // Every span here is one service's: no edges between services.
    let (status, v) = get(&s, &format!("/api/v1/service-map?{WIN}")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["edges"], serde_json::json!([]));
}

/// A trace that runs for two hours, partly outside the search window: trace
/// by id returns every span and log; the search summarises the whole trace.
/// Several attribute filters must all match; promoted attributes (here
/// `http.route`) and `service.name` work like any other key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_hour_trace_and_attribute_filters() {
    let (s, _d) = state().await;
    let res = vec![Attr::new("service.name", "batch")];
    let origin = Origin {
        service_name: "batch",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let min = 60_000;
    let mut b = SpansBuilder::new();
    let attrs = || {
        vec![
            Attr::new("user.tier", "gold"),
            Attr::new("http.route", "/batch"),
        ]
    };
    // Root 10:20 -> 12:20; a child at 10:21 (inside the window) and one at 11:50 (after it).
    b.append(
        &origin,
        &span(
            0xdd,
            1,
            None,
            "POST /batch",
            20 * min,
            120 * min,
            false,
            attrs(),
        ),
    );
    b.append(
        &origin,
        &span(0xdd, 2, Some(1), "load", 21 * min, 10, false, vec![]),
    );
    b.append(
        &origin,
        &span(0xdd, 3, Some(1), "store", 110 * min, 30 * min, true, vec![]),
    );
    s.store.write(Table::Spans, b.finish()).await.unwrap();
    s.store.flush().await.unwrap();
    let mut l = LogsBuilder::new();
    l.append(
        &origin,
        &LogRecord {
            time_ns: T0 + 125 * min * MS,
            observed_time_ns: T0,
            severity_number: 17,
            severity_text: "ERROR",
            body: Some("store failed".into()),
            trace_id: Some([0xdd; 16]),
            span_id: Some([3; 8]),
            attributes: vec![Attr::new("order.id", "42")],
            ..Default::default()
        },
    );
    s.store.write(Table::Logs, l.finish()).await.unwrap();

    // Before the trace-id filters exist, after they are built (files that
    // cannot hold the trace are skipped), and with a damaged filter file
    // (never skipped, rebuilt by the next maintenance): the same answer.
    let skipped = || {
        s.rollups
            .traces
            .metrics
            .files_skipped
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let filters = s
        .store
        .data_dir()
        .join(analytics::trace_index::TRACE_INDEX_DIR);
    for round in 0..3 {
        match round {
            1 => {
                assert_eq!(
                    s.rollups.maintain().await.unwrap(),
                    3,
                    "rollups of three spans files"
                );
                assert!(filters.exists());
            }
            2 => {
                for e in walk(&filters) {
                    let mut b = std::fs::read(&e).unwrap();
                    let last = b.len() - 1;
                    b[last] ^= 0xff;
                    std::fs::write(&e, b).unwrap();
                }
                // Evict the cached filters so the damaged files are read.
                let fresh = analytics::rollup::Rollups::new(s.store.clone(), 1 << 20);
                let v = analytics::search::trace(&fresh.traces, &"dd".repeat(16))
                    .await
                    .unwrap();
                assert_eq!(v["spans"].as_array().unwrap().len(), 3);
                assert_eq!(
                    fresh
                        .traces
                        .metrics
                        .unreadable
                        .load(std::sync::atomic::Ordering::Relaxed),
                    4,
                    "three spans files and one logs file"
                );
                fresh.maintain().await.unwrap();
                assert_eq!(
                    fresh
                        .traces
                        .metrics
                        .built
                        .load(std::sync::atomic::Ordering::Relaxed),
                    4
                );
            }
            _ => {}
        }
        let before = skipped();
        let (status, v) = get(&s, &format!("/api/v1/traces/{}", "dd".repeat(16))).await;
        assert_eq!(status, 200, "{v}");
        let names: Vec<&str> = v["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["POST /batch", "load", "store"], "round {round}");
        assert_eq!(v["spans"][0]["http_route"], "/batch");
        assert_eq!(v["logs"][0]["body"], "store failed");
        // The checkout spans file and logs file cannot hold trace dd once
        // filters exist (the batch logs are still in memory; the server's
        // own filters stay cached in round 2).
        assert_eq!(
            skipped() - before,
            if round == 0 { 0 } else { 2 },
            "round {round}"
        );
        let (_, v) = get(&s, &format!("/api/v1/traces/{}", "aa".repeat(16))).await;
        assert_eq!(v["spans"].as_array().unwrap().len(), 3, "round {round}");
    }

    let (status, v) = get(&s, &format!("/api/v1/traces?{WIN}&service=batch")).await;
    assert_eq!(status, 200, "{v}");
    let t = &v["traces"][0];
    assert_eq!(
        (
            t["span_count"].as_i64(),
            t["error_spans"].as_i64(),
            t["duration_ms"].as_f64()
        ),
        (Some(3), Some(1), Some(120.0 * 60_000.0)),
        "{t}"
    );

    for (filter, want) in [
        ("attribute=user.tier=gold", vec!["dd", "aa"]),
        (
            "attribute=user.tier=gold&attribute=http.route=/batch",
            vec!["dd"],
        ),
        (
            "attribute=http.route=/batch&attribute=user.tier=free",
            vec![],
        ),
        (
            "attribute=service.name=checkout&attribute=user.tier=gold",
            vec!["aa"],
        ),
        ("attribute=service.name=batch", vec!["dd"]),
    ] {
        let (status, v) = get(&s, &format!("/api/v1/traces?{WIN}&{filter}")).await;
        assert_eq!(status, 200, "{filter}: {v}");
        let ids: Vec<String> = v["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].as_str().unwrap()[..2].to_string())
            .collect();
        assert_eq!(ids, want, "{filter}");
    }
    let (_, v) = get(
        &s,
        "/api/v1/logs?from=2024-03-05T12:00:00Z&to=2024-03-05T13:00:00Z&attribute=order.id=42",
    )
    .await;
    assert_eq!(v["logs"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = get(
        &s,
        "/api/v1/logs?from=2024-03-05T12:00:00Z&to=2024-03-05T13:00:00Z&attribute=order.id=43",
    )
    .await;
    assert!(v["logs"].as_array().unwrap().is_empty());
}

/// Every malformed request gets the API's error shape and a 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_methods_get_json_errors() {
    let (s, _d) = state().await;
    for (uri, code) in [
        ("/api/v1/traces?colour=red", "invalid_parameter"),
        ("/api/v1/traces?limit=many", "invalid_parameter"),
        ("/api/v1/traces?attribute=nokey", "invalid_parameter"),
        ("/api/v1/traces?attribute==x", "invalid_parameter"),
        ("/api/v1/logs?min_severity=high", "invalid_parameter"),
        ("/api/v1/red/services?attribute=a=b", "invalid_parameter"),
        ("/api/v1/red/series?service=a&step=1.5", "invalid_parameter"),
        (
            "/api/v1/metrics/rate?name=x&group_by=a&extra=1",
            "invalid_parameter",
        ),
        ("/api/v1/service-map?window=1h", "invalid_parameter"),
    ] {
        let (status, v) = get(&s, uri).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{uri}: {v}"
        );
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let too_many: String = (0..17).map(|i| format!("&attribute=k{i}=v")).collect();
    let (status, _) = get(&s, &format!("/api/v1/traces?{WIN}{too_many}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let resp = app(s.clone())
        .oneshot(Request::post("/api/v1/traces").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
