//! What an outside probe broke, tried again against the real binary:
//! a crashing SQL expression, scalar functions past the memory and time
//! limits, reflected XSS on the SQL console, an open redirect after
//! sign-in, writes from another site, a gzip body of two members that lost
//! its second, `EXPLAIN`, OTLP JSON numbers written as strings, an
//! oversize gRPC message, and a flood of distinct services.
//!
//! Each request is made over a real socket to `burnwatch serve` with API
//! tokens on; the server must keep answering `/healthz` throughout.

mod common;

use std::io::Write as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use prost::Message as _;

const ADMIN: &str = "probe-admin-token";

fn config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("burnwatch.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n[query]\ntimeout_secs = 4.0\nmax_result_bytes = 1048576\n[collector]\nmax_body_bytes = 1048576\n{extra}\n\
             [[auth.tokens]]\nname = \"probe\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            dir.join("data"),
            web::auth::sha256_hex(ADMIN)
        ),
    )
    .unwrap();
    path
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn query(
    c: &reqwest::Client,
    s: &common::ServeProcess,
    sql: &str,
) -> (u16, serde_json::Value) {
    let r = c
        .post(s.api_url("/api/v1/query"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

/// `/healthz` answers, and how long it took.
async fn health(c: &reqwest::Client, s: &common::ServeProcess) -> Duration {
    let started = Instant::now();
    let r = c.get(s.api_url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    started.elapsed()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn span_count(c: &reqwest::Client, s: &common::ServeProcess, service: &str) -> u64 {
    let (st, v) = query(
        c,
        s,
        &format!("SELECT count(*) AS n FROM spans WHERE service_name = '{service}'"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["rows"][0]["n"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_findings_are_answered_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let s = common::start_serve(&["--config".as_ref(), cfg.as_os_str()], Stdio::null());
    let c = client();
    let otlp = format!("http://{}/v1/traces", s.otlp_http);

    // 1. A long expression: refused with a reason, and the process lives.
    let sum = |n: usize| format!("SELECT 1{}", " + 1".repeat(n));
    for (n, want) in [
        (5_000, "operators and keywords"),
        (1_000, "nests more than 256"),
    ] {
        let (st, v) = query(&c, &s, &sum(n)).await;
        assert_eq!(st, 400, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{v}"
        );
        health(&c, &s).await;
    }

    // 2. Scalar functions cannot allocate past the budget; results are
    // capped in bytes; the worst query stops at its time limit while
    // /healthz keeps answering within a second.
    let (st, v) = query(&c, &s, "SELECT repeat('x', 2147483647)").await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["code"], "query_memory_limit", "{v}");
    let (st, v) = query(&c, &s, "SELECT repeat('x', 2000000) AS big").await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["code"], "query_result_too_large", "{v}");
    let heavy = {
        let (c, url) = (c.clone(), s.api_url("/api/v1/query"));
        tokio::spawn(async move {
            let started = Instant::now();
            let r = c
                .post(url)
                .bearer_auth(ADMIN)
                .json(&serde_json::json!({ "sql":
                    "SELECT count(*) FROM unnest(range(1000000)) a(x) CROSS JOIN unnest(range(1000000)) b(y) \
                     WHERE a.x + b.y = 7" }))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slowest = Duration::ZERO;
    while !heavy.is_finished() {
        slowest = slowest.max(health(&c, &s).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, took) = heavy.await.unwrap();
    assert_eq!(st, 408, "the heavy query stops at its limit");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz took {slowest:?}"
    );

    // 7. EXPLAIN answers.
    let (st, v) = query(&c, &s, "EXPLAIN SELECT count(*) FROM spans").await;
    assert_eq!(st, 200, "{v}");
    assert!(v["rows"].as_array().is_some_and(|r| !r.is_empty()), "{v}");

    // 6. Every member of a gzip body is stored; bytes after it are refused.
    let mut body = gzip(&common::trace_request(1, 3, "gz", 8).encode_to_vec());
    body.extend(gzip(
        &common::trace_request(100, 4, "gz", 8).encode_to_vec(),
    ));
    let post = |body: Vec<u8>| {
        c.post(&otlp)
            .bearer_auth(ADMIN)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .body(body)
            .send()
    };
    assert_eq!(post(body).await.unwrap().status(), 200);
    assert_eq!(span_count(&c, &s, "gz").await, 7);
    let mut tail = gzip(&common::trace_request(200, 2, "gz", 8).encode_to_vec());
    tail.extend_from_slice(b"junk");
    assert_eq!(post(tail).await.unwrap().status(), 400);
    assert_eq!(span_count(&c, &s, "gz").await, 7);

    // 8. OTLP JSON doubles written as strings.
    let json = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"j"}}]},
      "scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[
        {"asDouble":"1.5","timeUnixNano":"1700000000000000000"},{"asDouble":"NaN","timeUnixNano":"1700000000000000001"}]}}]}]}]}"#;
    let r = c
        .post(format!("http://{}/v1/metrics", s.otlp_http))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(json)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");

    // 10. An oversize gRPC message: RESOURCE_EXHAUSTED, no retry hint.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(channel);
    let mut req = tonic::Request::new(common::trace_request(300, 2000, "big", 1000));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let err = grpc.export(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    use tonic_types::StatusExt as _;
    assert!(err.get_details_retry_info().is_none());

    // 4. The SQL console escapes the query and the page sends a CSP.
    let attack = "</textarea><script>alert(1)</script>";
    let r = c
        .get(s.api_url("/query"))
        .query(&[("sql", attack)])
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let page = r.text().await.unwrap();
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(page.contains("&lt;/textarea&gt;&lt;script&gt;"), "{page}");

    // 5. After sign-in only local paths; CR/LF no longer answers 500.
    for next in ["/\t/evil.example", "/\r\n/evil.example", "//evil.example"] {
        let r = c
            .post(s.api_url("/login"))
            .form(&[("token", ADMIN), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{next:?}");
        assert_eq!(r.headers()["location"], "/", "{next:?}");
    }
    // Writes from another site are refused.
    let r = c
        .post(s.api_url("/api/v1/incidents/1/ack"))
        .bearer_auth(ADMIN)
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({ "by": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    health(&c, &s).await;
    s.terminate();
}

/// Tens of thousands of distinct services from one client: the collector
/// accepts the first `max_services_per_hour` (here 2,000) and rejects the
/// rest in `partialSuccess`; every page and list stays small and quick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_services_is_bounded_at_ingest_and_on_every_page() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "max_services_per_hour = 2000\n[store]\nflush_interval_secs = 1",
    );
    let s = common::start_serve(&["--config".as_ref(), cfg.as_os_str()], Stdio::null());
    let c = client();
    let otlp = format!("http://{}/v1/traces", s.otlp_http);
    const SERVICES: u64 = 20_000;
    const PER_REQUEST: u64 = 1_000;
    let mut rejected = 0u64;
    for batch in 0..SERVICES / PER_REQUEST {
        let mut req = ExportTraceServiceRequest::default();
        for i in 0..PER_REQUEST {
            let n = batch * PER_REQUEST + i;
            let mut one = common::trace_request(n, 1, &format!("svc-{n:05}"), 4);
            req.resource_spans.append(&mut one.resource_spans);
        }
        let r = c
            .post(&otlp)
            .bearer_auth(ADMIN)
            .header("content-type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        let resp =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                &body[..],
            )
            .unwrap();
        if let Some(p) = resp.partial_success {
            rejected += p.rejected_spans as u64;
            assert!(
                p.error_message.contains("max_services_per_hour"),
                "{}",
                p.error_message
            );
        }
    }
    assert_eq!(rejected, SERVICES - 2000);
    let (st, v) = query(
        &c,
        &s,
        "SELECT count(DISTINCT service_name) AS n FROM spans",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["rows"][0]["n"], 2000);
    let metrics = c
        .get(s.api_url("/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "burnwatch_otlp_cardinality_rejected_items_total{{signal=\"traces\",item=\"spans\",transport=\"http\"}} {}",
            SERVICES - 2000
        )),
        "{metrics}"
    );

    // Pages and lists: bounded in size; each answers quickly.
    let range = "range=24h&refresh=0";
    let day_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
        - 86_400_000_000_000;
    for (path, max_bytes) in [
        (format!("/?{range}"), 400_000),
        (format!("/?{range}&search=svc-0001"), 400_000),
        (format!("/service-map?{range}"), 1_500_000),
        (
            format!("/api/v1/red/services?from={day_ago}&limit=100"),
            100_000,
        ),
        (format!("/api/v1/red/services?from={day_ago}"), 1_000_000),
        (format!("/api/v1/service-map?from={day_ago}"), 1_000_000),
    ] {
        let started = Instant::now();
        let r = c
            .get(s.api_url(&path))
            .bearer_auth(ADMIN)
            .header("accept-encoding", "identity")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.bytes().await.unwrap();
        let took = started.elapsed();
        println!("{path}: {} bytes in {took:?}", body.len());
        assert!(body.len() < max_bytes, "{path}: {} bytes", body.len());
        assert!(took < Duration::from_secs(20), "{path}: {took:?}");
        let text = String::from_utf8_lossy(&body);
        if path == format!("/?{range}") {
            assert!(text.contains("1950 more services not shown"), "{path}");
        }
        if path.ends_with("limit=100") {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["services"].as_array().unwrap().len(), 100);
            assert_eq!(
                (v["matched"].as_u64(), v["omitted"].as_u64()),
                (Some(2000), Some(1900))
            );
        }
    }
    health(&c, &s).await;
    s.terminate();
}
