//! The JSON API through the router (no socket): SQL in, rows out, and every
//! guard and limit.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use store::{Store, Table, synth};
use tower::ServiceExt as _;
use web::{WebState, app};

const BASE: i64 = 1_709_632_800_000_000_000;

async fn state(limits: store::sql::QueryLimits) -> (WebState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    store
        .write(Table::Spans, synth::spans(1, 400, BASE, 3_600_000_000_000))
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
        .write(Table::Spans, synth::spans(2, 100, BASE, 3_600_000_000_000))
        .await
        .unwrap();
    (
        WebState {
            query_limits: limits,
            ..WebState::new(store)
        },
        dir,
    )
}

async fn post(
    state: &WebState,
    body: serde_json::Value,
    accept: Option<&str>,
) -> (StatusCode, String, Vec<u8>) {
    let mut req = Request::post("/api/v1/query").header("content-type", "application/json");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = app(state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, ct, bytes)
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_returns_rows_in_json_csv_and_arrow() {
    let (s, _dir) = state(Default::default()).await;
    let sql = "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name ORDER BY service_name LIMIT 2";
    let (status, ct, body) = post(&s, serde_json::json!({ "sql": sql }), None).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/json");
    let v = json(&body);
    assert_eq!(v["columns"][0]["name"], "service_name");
    assert_eq!(v["columns"][1]["type"], "Int64");
    assert_eq!(v["row_count"], 2);
    assert_eq!(v["truncated"], false);
    assert_eq!(v["rows"][0]["service_name"], "cart");
    // All 500 rows, flushed and buffered, are visible.
    let (_, _, body) = post(
        &s,
        serde_json::json!({ "sql": "SELECT count(*) AS n FROM spans" }),
        None,
    )
    .await;
    assert_eq!(json(&body)["rows"][0]["n"], 500);

    let (status, ct, body) =
        post(&s, serde_json::json!({ "sql": sql, "format": "csv" }), None).await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::OK, "text/csv; charset=utf-8")
    );
    let csv = String::from_utf8(body).unwrap();
    assert!(csv.starts_with("service_name,n\ncart,"), "{csv}");

    let (status, ct, body) = post(
        &s,
        serde_json::json!({ "sql": sql }),
        Some(web::api::ARROW_STREAM),
    )
    .await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::OK, web::api::ARROW_STREAM)
    );
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_read_only_queries_run() {
    let (s, dir) = state(Default::default()).await;
    for sql in [
        "DROP TABLE spans",
        "INSERT INTO spans SELECT * FROM spans",
        "COPY (SELECT 1) TO '/tmp/burnwatch-copy-test.csv'",
        &format!(
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{}'",
            dir.path().display()
        ),
        "SET datafusion.execution.target_partitions = 1",
        "SELECT 1; SELECT 2",
    ] {
        let (status, _, body) = post(&s, serde_json::json!({ "sql": sql }), None).await;
        assert_eq!(status, 400, "{sql}");
        let v = json(&body);
        assert_eq!(v["error"]["code"], "not_allowed", "{sql}: {v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    assert!(!std::path::Path::new("/tmp/burnwatch-copy-test.csv").exists());
    // Tables or functions that read files or URLs are refused by name.
    for (sql, says) in [
        ("SELECT * FROM '/etc/passwd'", "reading files or URLs"),
        (
            "SELECT * FROM read_parquet('/etc/passwd')",
            "table functions",
        ),
        ("SELECT * FROM read_csv('/etc/passwd')", "table functions"),
        (
            "SELECT count(*) FROM spans JOIN 'https://example.com/x.parquet' USING (trace_id)",
            "reading files or URLs",
        ),
    ] {
        let (status, _, body) = post(&s, serde_json::json!({ "sql": sql }), None).await;
        assert_eq!(status, 400, "{sql}");
        let v = json(&body);
        assert_eq!(v["error"]["code"], "not_allowed", "{sql}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.contains(says) && m.contains("spans, logs and metric_points"),
            "{m}"
        );
    }
    let (status, _, body) = post(
        &s,
        serde_json::json!({ "sql": "SELECT nope FROM spans" }),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    let (status, _, body) = post(&s, serde_json::json!({ "query": "SELECT 1" }), None).await;
    assert_eq!(status, 400);
    assert_eq!(json(&body)["error"]["code"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_time_and_memory_limits() {
    let (s, _dir) = state(store::sql::QueryLimits {
        max_rows: 50,
        ..Default::default()
    })
    .await;
    let (status, _, body) = post(
        &s,
        serde_json::json!({ "sql": "SELECT span_id FROM spans" }),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let v = json(&body);
    assert_eq!(
        (v["row_count"].as_u64(), v["truncated"].as_bool()),
        (Some(50), Some(true))
    );
    let (_, _, body) = post(
        &s,
        serde_json::json!({ "sql": "SELECT span_id FROM spans", "max_rows": 7 }),
        None,
    )
    .await;
    assert_eq!(json(&body)["row_count"], 7);

    // A cross join far too big for the time limit.
    let (s, _dir) = state(store::sql::QueryLimits {
        timeout_secs: 0.2,
        ..Default::default()
    })
    .await;
    let heavy = "SELECT count(*) FROM spans a, spans b, spans c WHERE a.duration_ns + b.duration_ns > c.duration_ns";
    let (status, _, body) = post(&s, serde_json::json!({ "sql": heavy }), None).await;
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["error"]["code"], "query_timeout");

    // A sort that needs more memory than allowed.
    let (s, _dir) = state(store::sql::QueryLimits {
        memory_bytes: 1 << 20,
        ..Default::default()
    })
    .await;
    let big = "SELECT a.attributes, b.span_id FROM spans a JOIN spans b ON a.service_name = b.service_name ORDER BY b.span_id, a.span_id";
    let (status, _, body) = post(&s, serde_json::json!({ "sql": big }), None).await;
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    assert_eq!(json(&body)["error"]["code"], "query_memory_limit");
}

async fn get(state: &WebState, uri: &str) -> (StatusCode, serde_json::Value) {
    let resp = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_endpoints() {
    let (s, _dir) = state(Default::default()).await;
    // synth::spans makes every 8th span a SERVER span.
    let from = "2024-03-05T10:00:00Z";
    let to = BASE + 3_600_000_000_000;
    let (status, v) = get(&s, &format!("/api/v1/red/services?from={from}&to={to}")).await;
    assert_eq!(status, 200, "{v}");
    let total: u64 = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_u64().unwrap())
        .sum();
    let (_, _, q) = post(
        &s,
        serde_json::json!({ "sql": "SELECT count(*) AS n FROM spans WHERE kind = 'SERVER'" }),
        None,
    )
    .await;
    assert_eq!(total, json(&q)["rows"][0]["n"].as_u64().unwrap());
    assert!(total > 0);
    let svc = v["services"][0]["service"].as_str().unwrap().to_string();
    let (status, v) = get(
        &s,
        &format!("/api/v1/red/operations?service={svc}&from={from}&to={to}"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(!v["operations"].as_array().unwrap().is_empty());
    let (status, v) = get(
        &s,
        &format!("/api/v1/red/series?service={svc}&from={from}&to={to}&step=600"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["points"].as_array().unwrap().len(), 6);

    let (status, v) = get(&s, "/api/v1/red/operations").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_parameter"))
    );
    let (status, v) = get(&s, "/api/v1/red/services?from=yesterday").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_time"))
    );
    let (status, v) = get(&s, &format!("/api/v1/red/services?from={to}&to={to}")).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_window"))
    );
    let (status, v) = get(&s, "/api/v1/nope").await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_every_endpoint() {
    let (s, _dir) = state(Default::default()).await;
    let (status, doc) = get(&s, "/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for p in [
        "/api/v1/query",
        "/api/v1/red/services",
        "/api/v1/red/operations",
        "/api/v1/red/series",
        "/api/v1/service-map",
        "/api/v1/traces",
        "/api/v1/traces/{trace_id}",
        "/api/v1/logs",
        "/api/v1/openapi.json",
        "/api/v1/metrics",
        "/api/v1/metrics/rate",
        "/api/v1/metrics/quantile",
        "/api/v1/metrics/gauge",
        "/api/v1/slos",
        "/api/v1/slos/{name}",
        "/api/v1/incidents",
        "/api/v1/incidents/{id}/ack",
        "/api/v1/incidents/{id}/resolve",
        "/api/v1/incidents/{id}/postmortem",
        "/api/v1/slos/{name}/report",
        "/api/v1/corrections",
        "/api/v1/corrections/{id}",
        "/api/v1/corrections/{id}/audit",
    ] {
        assert!(
            paths.iter().any(|x| x.as_str() == p),
            "{p} missing from the OpenAPI document"
        );
    }
    // Every documented GET path answers (not 404/405) on the real router.
    for p in paths {
        let Some(op) = doc["paths"][p.as_str()].get("get") else {
            continue;
        };
        let _ = op;
        let uri = p
            .replace("{trace_id}", &"ab".repeat(16))
            .replace("{name}", "checkout");
        let uri = if uri.contains("red/operations") || uri.contains("red/series") {
            format!("{uri}?service=cart")
        } else if uri.ends_with("metrics/rate")
            || uri.ends_with("metrics/quantile")
            || uri.ends_with("metrics/gauge")
        {
            format!("{uri}?name=requests")
        } else {
            uri
        };
        let resp = app(s.clone())
            .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let st = resp.status();
        assert!(
            st == 200
                || (uri.contains("/traces/") && st == 404)
                // No SLO engine in this state: a 404 that says so.
                || ((uri.contains("/slos")
                    || uri.contains("/incidents")
                    || uri.ends_with("/alerts")
                    || uri.ends_with("/rules")
                    || uri.ends_with("/silences")
                    || uri.contains("/corrections"))
                    && st == 404),
            "{uri}: {st}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slo_and_incident_endpoints() {
    let (mut s, dir) = state(Default::default()).await;
    let rules = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../alert-rules");
    let slos = slo_engine::openslo::load_dir(&rules).unwrap();
    let groups =
        slo_engine::rules::load_files(&slo_engine::rules::yaml_files(&rules).unwrap()).unwrap();
    let engine = slo_engine::engine::SloEngine::open_with_rules(
        s.store.clone(),
        slos,
        groups,
        Default::default(),
        &dir.path().join("state"),
    )
    .unwrap();
    let at = BASE + 3_600_000_000_000;
    engine.evaluate_at(at).await;
    // shop-http (PromQL, from shop-prometheus-rules.yaml) and shop-errors.
    engine.evaluate_rules_at(0, at).await;
    engine.evaluate_rules_at(1, at).await;
    s.slo = Some(engine);

    // The shipped rule groups, their health after one evaluation, no alerts.
    let (st, v) = get(&s, "/api/v1/rules").await;
    assert_eq!(st, 200, "{v}");
    let names: Vec<&str> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop-http", "shop-errors", "shop-business"]);
    let health = |alert: &str| {
        v["health"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["alert"] == alert)
            .map(|h| h["health"].clone())
            .unwrap_or_else(|| panic!("{alert} in {v}"))
    };
    assert_eq!(health("ServiceErrorRatioHigh"), "ok", "{v}");
    assert_eq!(health("job_route:http_server_requests:rate5m"), "ok", "{v}");
    assert_eq!(health("RouteErrorRatioHigh"), "ok", "{v}");
    assert_eq!(health("PaymentFailuresHigh"), "unknown");
    assert_eq!(v["groups"][0]["rules"][0]["record"], true);
    assert_eq!(v["groups"][0]["rules"][0]["lang"], "promql");
    let (st, v) = get(&s, "/api/v1/alerts").await;
    assert_eq!(
        (st, v["alerts"].clone()),
        (StatusCode::OK, serde_json::json!([]))
    );

    // Silences: create (string and object matchers), list, expire; bad ones refused.
    let send = |method: &'static str, uri: String, body: String| {
        let s = s.clone();
        async move {
            let resp = app(s)
                .oneshot(
                    Request::builder()
                        .method(method)
                        .uri(uri)
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            let st = resp.status();
            let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (st, serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        }
    };
    let (st, v) = send(
        "POST",
        "/api/v1/silences".into(),
        serde_json::json!({
            "matchers": ["service=\"gateway\"", {"name": "severity", "value": "page|ticket", "isRegex": true}],
            "duration": "2h", "createdBy": "alice", "comment": "deploy"
        })
        .to_string(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (_, v) = get(&s, "/api/v1/silences").await;
    assert_eq!(v["silences"][0]["state"], "active");
    assert_eq!(v["silences"][0]["matchers"][1]["isRegex"], true);
    assert_eq!(v["silences"][0]["created_by"], "alice");
    for (body, code) in [
        (
            serde_json::json!({"matchers": ["service"], "duration": "1h", "createdBy": "a", "comment": "c"}),
            "invalid_silence",
        ),
        (
            serde_json::json!({"matchers": ["a=~\"(\""], "duration": "1h", "createdBy": "a", "comment": "c"}),
            "invalid_silence",
        ),
        (
            serde_json::json!({"matchers": ["a=\"b\""], "createdBy": "a", "comment": "c"}),
            "invalid_silence",
        ),
        (
            serde_json::json!({"matchers": ["a=\"b\""], "duration": "1h", "comment": "c"}),
            "invalid_body",
        ),
        (
            serde_json::json!({"matchers": [], "duration": "1h", "createdBy": "a", "comment": "c"}),
            "invalid_silence",
        ),
    ] {
        let (st, v) = send("POST", "/api/v1/silences".into(), body.to_string()).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}: {v}"
        );
    }
    let (st, v) = send("DELETE", format!("/api/v1/silences/{id}"), String::new()).await;
    assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some("expired")));
    let (st, v) = send("DELETE", format!("/api/v1/silences/{id}"), String::new()).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_active_silence"))
    );

    let (st, v) = get(&s, "/api/v1/slos").await;
    assert_eq!(st, 200);
    let list = v["slos"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert!(
        list.iter()
            .all(|x| x["state"].is_string() && x["tiers"].is_array())
    );
    let (st, v) = get(&s, &format!("/api/v1/slos/checkout-availability?at={at}")).await;
    assert_eq!(st, 200);
    assert_eq!(v["name"], "checkout-availability");
    assert_eq!(v["at_ns"], at);
    let (st, v) = get(&s, "/api/v1/slos/nope").await;
    assert_eq!(st, 404);
    assert_eq!(v["error"]["code"], "not_found");
    let (st, v) = get(&s, "/api/v1/slos?at=yesterday").await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = get(&s, "/api/v1/incidents").await;
    assert_eq!(
        (st, v["incidents"].clone()),
        (StatusCode::OK, serde_json::json!([]))
    );

    let post = |path: &'static str, body: &'static str| {
        let s = s.clone();
        async move {
            let resp = app(s)
                .oneshot(
                    Request::post(path)
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            let st = resp.status();
            let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (st, serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        }
    };
    let ack = "/api/v1/incidents/7/ack";
    let (st, v) = post(ack, r#"{"by": "alice"}"#).await;
    assert_eq!(st, 409);
    assert_eq!(v["error"]["code"], "not_open");
    let (st, v) = post(ack, r#"{"who": "alice"}"#).await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["code"], "invalid_body");
    let resolve = "/api/v1/incidents/7/resolve";
    let (st, v) = post(resolve, r#"{"by": "alice", "note": "fixed"}"#).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("not_open"))
    );
    let (st, v) = post(resolve, r#"{"by": " "}"#).await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("who resolves"),
        "{v}"
    );

    // Corrections over HTTP: create, list, the status reflects it, edit,
    // audit, delete; bad input is a 400 that says why.
    let send = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let s = s.clone();
        async move {
            let mut req = Request::builder().method(method).uri(path);
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let resp = app(s)
                .oneshot(
                    req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
                        .unwrap(),
                )
                .await
                .unwrap();
            let st = resp.status();
            let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                st,
                serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default(),
            )
        }
    };
    let body = serde_json::json!({
        "kind": "correction",
        "scope": {"slo": "checkout-availability"},
        "from": (at - 600_000_000_000).to_string(),
        "duration": "5m",
        "reason": "synthetic load test",
        "createdBy": "alice",
    });
    let (st, c) = send("POST", "/api/v1/corrections".into(), Some(body.clone())).await;
    assert_eq!(st, 201, "{c}");
    let id = c["id"].as_i64().unwrap();
    assert_eq!(
        c["to_ns"].as_i64().unwrap() - c["from_ns"].as_i64().unwrap(),
        300_000_000_000
    );
    let (st, v) = get(&s, "/api/v1/corrections").await;
    assert_eq!(st, 200);
    assert_eq!(v["corrections"].as_array().unwrap().len(), 1, "{v}");
    let (_, v) = get(&s, &format!("/api/v1/slos/checkout-availability?at={at}")).await;
    assert_eq!(v["corrections"][0]["id"], id, "{v}");
    let mut edited = body.clone();
    edited["kind"] = "maintenance".into();
    edited["createdBy"] = "bob".into();
    let (st, v) = send("PUT", format!("/api/v1/corrections/{id}"), Some(edited)).await;
    assert_eq!(
        (st, v["kind"].as_str()),
        (StatusCode::OK, Some("maintenance")),
        "{v}"
    );
    let (st, v) = send("DELETE", format!("/api/v1/corrections/{id}?by=carol"), None).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = send("DELETE", format!("/api/v1/corrections/{id}?by=carol"), None).await;
    assert_eq!(st, 404, "{v}");
    let (_, v) = get(&s, &format!("/api/v1/corrections/{id}/audit")).await;
    let trail: Vec<(String, String)> = v["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().into(),
                a["by"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("created", "alice"),
            ("edited", "bob"),
            ("deleted", "carol")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let mut wrong = body.clone();
    wrong["duration"] = serde_json::Value::Null;
    let (st, v) = send("POST", "/api/v1/corrections".into(), Some(wrong)).await;
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one of to and duration"),
        "{v}"
    );
    let mut wrong = body;
    wrong["reason"] = " ".into();
    let (st, v) = send("POST", "/api/v1/corrections".into(), Some(wrong)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_correction"))
    );
}
