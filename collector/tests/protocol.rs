//! The OTLP wire protocol by hand: JSON from the specification's examples,
//! compression, every error status with its body, partial success, auth,
//! backpressure with retries, concurrent clients.

mod common;

use std::io::Write;
use std::time::Duration;

use common::Server;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use testkit::otlp::{kv, spans_request};
use tonic_types::StatusExt;

const PB: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The trace example of the OTLP specification (opentelemetry-proto examples/trace.json).
const TRACE_JSON: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
                "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [
          {"key": "my.span.attr", "value": {"stringValue": "some value"}},
          {"key": "http.response.status_code", "value": {"intValue": "200"}},
          {"key": "big.int", "value": {"intValue": 9007199254740993}},
          {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": "2"}]}}}
        ],
        "events": [{"timeUnixNano": "1544712660500000000", "name": "cache miss", "attributes": []}],
        "status": {"code": 2, "message": "boom"},
        "someFutureField": {"ignored": true}
      }]
    }]
  }]
}"#;

const METRICS_JSON: &str = r#"{
  "resourceMetrics": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeMetrics": [{
      "scope": {"name": "my.library", "version": "1.0.0"},
      "metrics": [
        {"name": "my.counter", "unit": "1", "description": "I am a Counter",
         "sum": {"aggregationTemporality": 1, "isMonotonic": true,
                 "dataPoints": [{"asDouble": 5, "startTimeUnixNano": "1544712660300000000", "timeUnixNano": "1544712660300000000",
                                 "attributes": [{"key": "my.counter.attr", "value": {"stringValue": "some value"}}]}]}},
        {"name": "my.gauge", "unit": "1", "gauge": {"dataPoints": [{"asInt": "10", "timeUnixNano": 1544712660300000000}]}},
        {"name": "my.histogram", "unit": "1",
         "histogram": {"aggregationTemporality": 1,
                       "dataPoints": [{"startTimeUnixNano": "1544712660300000000", "timeUnixNano": "1544712660300000000",
                                       "count": 2, "sum": 2, "bucketCounts": [1, 1], "explicitBounds": [1], "min": 0, "max": 2}]}},
        {"name": "my.broken"}
      ]
    }]
  }]
}"#;

const LOGS_JSON: &str = r#"{
  "resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeLogs": [{
      "scope": {"name": "my.library", "version": "1.0.0"},
      "logRecords": [
        {"timeUnixNano": "1544712660300000000", "observedTimeUnixNano": "1544712660300000000",
         "severityNumber": 10, "severityText": "Information", "traceId": "5B8EFFF798038103D269B633813FC60C",
         "spanId": "EEE19B7EC3C1B174", "body": {"stringValue": "Example log record"},
         "attributes": [{"key": "string.attribute", "value": {"stringValue": "some string"}}]},
        {"timeUnixNano": "1544712660400000000", "body": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": true}}]}}}
      ]
    }]
  }]
}"#;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post(
    server: &Server,
    path: &str,
    ct: &str,
    enc: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut r = client()
        .post(server.http_url(path))
        .header("content-type", ct)
        .body(body);
    if let Some(e) = enc {
        r = r.header("content-encoding", e);
    }
    r.send().await.unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A request of `n` valid spans; span `i` has id `i + 1` and trace `seed`.
fn trace_request(seed: u64, n: u64) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: ((seed as u128) << 64 | 1).to_be_bytes().to_vec(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: format!("op-{i}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i,
            end_time_unix_nano: 1_700_000_000_001_000_000 + i,
            attributes: vec![kv("http.route", "/x")],
            ..Default::default()
        })
        .collect();
    spans_request(vec![kv("service.name", "svc")], spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_examples_from_the_spec() {
    let server = Server::start().await;
    let r = post(&server, "/v1/traces", JSON, None, TRACE_JSON.into()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], JSON);
    assert_eq!(r.text().await.unwrap(), "{}");
    let spans = server
        .text(
            "SELECT trace_id, span_id, parent_span_id, kind, status_code, http_response_status_code AS code, \
             attributes['big.int'] AS big, attributes['list'] AS list, scope_name FROM spans",
        )
        .await;
    assert!(
        spans.contains("| 5b8efff798038103d269b633813fc60c | eee19b7ec3c1b174 | eee19b7ec3c1b173 | SERVER | ERROR       | 200  | 9007199254740993 | [\"a\",2] | my.library |"),
        "{spans}"
    );

    // One metric has no data: the rest is stored, the broken one reported.
    let r = post(&server, "/v1/metrics", JSON, None, METRICS_JSON.into()).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["partialSuccess"]["rejectedDataPoints"], "1", "{body}");
    let msg = body["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("my.broken") && msg.contains("no data"),
        "{msg}"
    );
    let m = server
        .text("SELECT metric_name, metric_type, value, value_int, temporality, bucket_counts FROM metric_points ORDER BY metric_name")
        .await;
    assert!(
        m.contains(
            "| my.counter   | sum         | 5.0   |           | delta       |               |"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "| my.gauge     | gauge       | 10.0  | 10        |             |               |"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "| my.histogram | histogram   |       |           | delta       | [1, 1]        |"
        ),
        "{m}"
    );

    // proto3 JSON lets numbers be strings: doubles (with NaN and the
    // infinities) and 32-bit integers too. None of them is "no value".
    let strings = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"strings"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"s.gauge","gauge":{"dataPoints":[
          {"asDouble":"1.5","timeUnixNano":"1544712660300000000"},
          {"asDouble":"NaN","timeUnixNano":"1544712660400000000"},
          {"asDouble":"Infinity","timeUnixNano":"1544712660500000000","flags":"0"}]}},
        {"name":"s.hist","histogram":{"aggregationTemporality":"2","dataPoints":[
          {"timeUnixNano":"1544712660300000000","count":"2","sum":"2.5","min":"0.5","max":"2",
           "bucketCounts":["1","1"],"explicitBounds":["1.0"]}]}}]}]}]}"#;
    let r = post(&server, "/v1/metrics", JSON, None, strings.into()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");
    let m = server
        .text(
            "SELECT metric_name, value, temporality, sum, explicit_bounds FROM metric_points \
             WHERE service_name = 'strings' ORDER BY time, metric_name",
        )
        .await;
    for row in [
        "| s.gauge     | 1.5   |             |     |",
        "| s.hist      |       | cumulative  | 2.5 | [1.0]",
        "| s.gauge     | NaN   |",
        "| s.gauge     | inf   |",
    ] {
        assert!(m.contains(row), "{row}\n{m}");
    }

    let r = post(&server, "/v1/logs", JSON, None, LOGS_JSON.into()).await;
    assert_eq!(r.status(), 200);
    let logs = server
        .text("SELECT severity_number, body, trace_id, span_id FROM logs ORDER BY time")
        .await;
    assert!(logs.contains("| 10              | Example log record | 5b8efff798038103d269b633813fc60c | eee19b7ec3c1b174 |"), "{logs}");
    assert!(
        logs.contains("| 0               | {\"k\":true}         |"),
        "{logs}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_bodies() {
    let server = Server::start().await;
    let body = trace_request(1, 10).encode_to_vec();
    let r = post(&server, "/v1/traces", PB, Some("gzip"), gzip(&body)).await;
    assert_eq!(r.status(), 200);
    let z = zstd::encode_all(&trace_request(2, 10).encode_to_vec()[..], 3).unwrap();
    let r = post(&server, "/v1/traces", PB, Some("zstd"), z).await;
    assert_eq!(r.status(), 200);
    let mut d = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    d.write_all(&trace_request(3, 10).encode_to_vec()).unwrap();
    let r = post(
        &server,
        "/v1/traces",
        PB,
        Some("deflate"),
        d.finish().unwrap(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post(
        &server,
        "/v1/traces",
        JSON,
        Some("gzip"),
        gzip(TRACE_JSON.as_bytes()),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(server.count("spans").await, 31);

    // gRPC with gzip and zstd.
    for enc in [
        tonic::codec::CompressionEncoding::Gzip,
        tonic::codec::CompressionEncoding::Zstd,
    ] {
        let mut c = TraceServiceClient::connect(server.grpc_url())
            .await
            .unwrap()
            .send_compressed(enc);
        let resp = c.export(trace_request(4, 5)).await.unwrap().into_inner();
        assert_eq!(resp.partial_success, None);
    }
    assert_eq!(server.count("spans").await, 41);

    // A gzip body of two members (RFC 1952 2.2; some clients and proxies
    // send them) and a zstd body of two frames: every member is stored.
    let mut two = gzip(&trace_request(5, 7).encode_to_vec());
    two.extend(gzip(&trace_request(6, 3).encode_to_vec()));
    let r = post(&server, "/v1/traces", PB, Some("gzip"), two).await;
    assert_eq!(r.status(), 200);
    assert_eq!(server.count("spans").await, 51);
    let mut frames = zstd::encode_all(&trace_request(7, 4).encode_to_vec()[..], 3).unwrap();
    frames.extend(zstd::encode_all(&trace_request(8, 2).encode_to_vec()[..], 3).unwrap());
    let r = post(&server, "/v1/traces", PB, Some("zstd"), frames).await;
    assert_eq!(r.status(), 200);
    assert_eq!(server.count("spans").await, 57);
    // Bytes after the compressed data are refused, not dropped.
    let mut tail = gzip(&trace_request(9, 5).encode_to_vec());
    tail.extend_from_slice(b"trailing bytes");
    let r = post(&server, "/v1/traces", PB, Some("gzip"), tail).await;
    assert_eq!(r.status(), 400);
    let msg = status_of(&r.bytes().await.unwrap()).message;
    assert!(msg.contains("gzip"), "{msg}");
    let mut d = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    d.write_all(&trace_request(10, 5).encode_to_vec()).unwrap();
    let mut tail = d.finish().unwrap();
    tail.extend_from_slice(&[0u8; 9]);
    let r = post(&server, "/v1/traces", PB, Some("deflate"), tail).await;
    assert_eq!(r.status(), 400);
    let msg = status_of(&r.bytes().await.unwrap()).message;
    assert!(msg.contains("9 bytes after its compressed data"), "{msg}");
    assert_eq!(server.count("spans").await, 57);
    server.stop().await;
}

fn status_of(body: &[u8]) -> tonic_types::Status {
    tonic_types::Status::decode(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_statuses_and_bodies() {
    let server = Server::start_with(|_, c| c.max_body_bytes = 64 * 1024).await;

    // 400: undecodable protobuf, answered with a protobuf google.rpc.Status.
    let r = post(
        &server,
        "/v1/traces",
        PB,
        None,
        vec![0xff, 0xff, 0xff, 0x01],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], PB);
    let st = status_of(&r.bytes().await.unwrap());
    assert_eq!(st.code, 3);
    assert!(st.message.contains("invalid protobuf"), "{}", st.message);

    // 400: bad JSON, answered in JSON, naming the problem.
    let r = post(
        &server,
        "/v1/logs",
        JSON,
        None,
        b"{\"resourceLogs\": [".to_vec(),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 3);
    assert!(
        v["message"].as_str().unwrap().contains("invalid OTLP JSON"),
        "{v}"
    );

    // 405, 404, 415.
    let r = client()
        .get(server.http_url("/v1/traces"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = post(&server, "/v1/spans", PB, None, vec![]).await;
    assert_eq!(r.status(), 404);
    let r = post(&server, "/v1/traces", "text/plain", None, b"hello".to_vec()).await;
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("text/plain"));
    let r = post(&server, "/v1/traces", PB, Some("br"), vec![1, 2, 3]).await;
    assert_eq!(r.status(), 415);

    // 413: over the limit as sent, and a gzip bomb over the limit once inflated.
    let big = trace_request(1, 3000).encode_to_vec();
    assert!(big.len() > 64 * 1024);
    let r = post(&server, "/v1/traces", PB, None, big).await;
    assert_eq!(r.status(), 413);
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 50 << 20]).unwrap();
        e.finish().unwrap()
    };
    assert!(bomb.len() < 64 * 1024, "bomb is {} bytes", bomb.len());
    let r = post(&server, "/v1/traces", PB, Some("gzip"), bomb).await;
    assert_eq!(r.status(), 413);
    assert!(
        status_of(&r.bytes().await.unwrap())
            .message
            .contains("decompressed")
    );
    // Chunked (no Content-Length) bodies over the limit too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![0u8; 4096])).collect();
    let sent = client()
        .post(server.http_url("/v1/traces"))
        .header("content-type", PB)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    match sent {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server answers 413 as soon as the limit is passed and closes the
        // connection; a client still writing the body can see the close first.
        Err(e) => {
            let chain = format!("{e:?}");
            assert!(
                chain.contains("BodyWrite")
                    || chain.contains("BrokenPipe")
                    || chain.contains("ConnectionReset"),
                "unexpected error: {chain}"
            );
        }
    }

    // gRPC: a message over the limit is refused; nothing was stored by any of this.
    let mut c = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    // RESOURCE_EXHAUSTED without a retry hint: exporters drop the batch
    // instead of retrying it forever (OUT_OF_RANGE would be retried).
    let err = c.export(trace_request(1, 3000)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.message().contains("limit of 65536 bytes"), "{err}");
    assert!(err.get_details_retry_info().is_none(), "{err}");
    // The same once inflated past the limit.
    let mut c = c.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let mut big = trace_request(2, 1);
    big.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(200_000);
    let err = c.export(big).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    assert!(err.get_details_retry_info().is_none(), "{err}");
    assert_eq!(server.count("spans").await, 0);

    let metrics = server.metrics_text();
    assert!(metrics.contains("burnwatch_otlp_bad_requests_total{signal=\"traces\",item=\"spans\",transport=\"http\"} 6"), "{metrics}");
    assert!(metrics.contains("burnwatch_otlp_bad_requests_total{signal=\"traces\",item=\"spans\",transport=\"grpc\"} 2"), "{metrics}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_keeps_the_valid_records() {
    let server = Server::start().await;
    let mut req = trace_request(9, 5);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans[1].trace_id = vec![1, 2, 3, 4];
    spans[3].span_id = vec![0; 8];
    spans[4].end_time_unix_nano = spans[4].start_time_unix_nano - 1_000_000_000;

    let r = post(&server, "/v1/traces", PB, None, req.encode_to_vec()).await;
    assert_eq!(r.status(), 200);
    let resp = ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap();
    let ps = resp.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 3);
    assert!(
        ps.error_message.contains("trace_id must be 16 bytes"),
        "{}",
        ps.error_message
    );
    assert!(
        ps.error_message.contains("span_id must be 8 bytes"),
        "{}",
        ps.error_message
    );
    assert!(
        ps.error_message.contains("before it starts"),
        "{}",
        ps.error_message
    );
    assert_eq!(
        server
            .text("SELECT name FROM spans ORDER BY name")
            .await
            .matches("op-")
            .count(),
        2
    );

    // Same over gRPC.
    let mut c = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let resp = c.export(req).await.unwrap().into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 3);
    assert_eq!(server.count("spans").await, 4);
    server.stop().await;
}

/// Over-long and too many attributes: the span is kept, the limits are
/// applied and counted, and the sender is told in `partialSuccess` with zero
/// rejected spans (a warning, as the OTLP spec allows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_limits_keep_the_item_and_warn() {
    let server = Server::start_with(|_, c| {
        c.max_attributes = 8;
        c.max_attribute_value_bytes = 100;
    })
    .await;
    let mut req = trace_request(11, 1);
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    span.dropped_attributes_count = 2;
    span.attributes = (0..20).map(|i| kv(&format!("k{i:02}"), "v")).collect();
    span.attributes[0] = kv("db.statement", &"x".repeat(5000));

    let r = post(&server, "/v1/traces", JSON, None, {
        // The JSON encoding too: the warning is `partialSuccess` with
        // `rejectedSpans` "0".
        let pb = req.encode_to_vec();
        let decoded = ExportTraceServiceRequest::decode(&pb[..]).unwrap();
        serde_json::to_vec(&decoded).unwrap()
    })
    .await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let ps = &body["partialSuccess"];
    assert_eq!(ps["rejectedSpans"], "0", "{body}");
    let msg = ps["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("12 attributes dropped over the limit of 8")
            && msg.contains("1 texts cut")
            && msg.contains("to 100 bytes (collector.max_attribute_value_bytes)"),
        "{msg}"
    );
    let stored = server
        .text(
            "SELECT cardinality(attributes) AS n, dropped_attributes_count AS d, \
             length(attributes['db.statement']) AS len FROM spans",
        )
        .await;
    assert!(stored.contains("| 8 | 14 | 100 |"), "{stored}");

    // gRPC: the same warning.
    let mut c = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let mut again = req.clone();
    again.resource_spans[0].scope_spans[0].spans[0].span_id = 99u64.to_be_bytes().to_vec();
    let ps = c
        .export(again)
        .await
        .unwrap()
        .into_inner()
        .partial_success
        .unwrap();
    assert_eq!(ps.rejected_spans, 0);
    assert!(
        ps.error_message.contains("collector.max_attributes"),
        "{}",
        ps.error_message
    );
    assert_eq!(server.count("spans").await, 2);
    let metrics = server.metrics_text();
    assert!(
        metrics.contains(
            "burnwatch_otlp_attributes_dropped_total{signal=\"traces\",item=\"spans\",transport=\"http\"} 12"
        ),
        "{metrics}"
    );
    server.stop().await;
}

/// A sender that trickles its body (slowloris) gets 408 once the body
/// timeout passes and frees its request slot: with one slot, a normal
/// request waiting behind it still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_times_out_and_frees_its_slot() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_with(|_, c| {
        c.max_concurrent_requests = 1;
        c.body_timeout_ms = 300;
        c.queue_timeout_ms = 5000;
    })
    .await;
    let mut slow = tokio::net::TcpStream::connect(server.collector.http_addr)
        .await
        .unwrap();
    slow.write_all(
        b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\ncontent-length: 1000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Waits for the slot the slow sender holds, then gets it.
    let started = std::time::Instant::now();
    let r = post(
        &server,
        "/v1/traces",
        PB,
        None,
        trace_request(21, 3).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("collector.body_timeout_ms"), "{answer}");
    assert_eq!(server.count("spans").await, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_auth() {
    let server = Server::start_with(|_, c| c.auth_tokens = vec!["s3cret".into()]).await;
    let body = trace_request(1, 2).encode_to_vec();
    let r = post(&server, "/v1/traces", PB, None, body.clone()).await;
    assert_eq!(r.status(), 401);
    let r = client()
        .post(server.http_url("/v1/traces"))
        .header("content-type", PB)
        .header("authorization", "Bearer wrong")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(server.http_url("/v1/traces"))
        .header("content-type", PB)
        .header("authorization", "Bearer s3cret")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let mut c = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let err = c.export(trace_request(2, 2)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let mut req = tonic::Request::new(trace_request(2, 2));
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    c.export(req).await.unwrap();
    assert_eq!(server.count("spans").await, 4);
    server.stop().await;

    // Tokens configured by their SHA-256 only (the [auth] tokens that may ingest).
    let digest = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"; // sha256("secret")
    let server = Server::start_with(|_, c| c.auth_sha256 = vec![digest.into()]).await;
    let send = |token: &'static str| {
        let req = client()
            .post(server.http_url("/v1/traces"))
            .header("content-type", PB)
            .header("authorization", format!("Bearer {token}"))
            .body(trace_request(3, 2).encode_to_vec());
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(send("s3cret").await, 401);
    assert_eq!(send(digest).await, 401, "the digest itself is not a token");
    assert_eq!(send("secret").await, 200);
    assert_eq!(server.count("spans").await, 2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_then_retry_stores_everything_once() {
    // Buffers that hold about one request: the second is refused until a flush.
    let server = Server::start_with(|s, _| {
        s.max_buffer_bytes = 64 * 1024;
        s.flush_interval_secs = 3600.0;
        s.flush_bytes = usize::MAX;
    })
    .await;
    let r = post(
        &server,
        "/v1/traces",
        PB,
        None,
        trace_request(1, 200).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post(
        &server,
        "/v1/traces",
        PB,
        None,
        trace_request(2, 200).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(status_of(&r.bytes().await.unwrap()).code, 8);

    let mut c = TraceServiceClient::connect(server.grpc_url())
        .await
        .unwrap();
    let err = c.export(trace_request(3, 200)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(
        err.get_details_retry_info()
            .and_then(|r| r.retry_delay)
            .is_some(),
        "RetryInfo missing"
    );

    // The client retries after space frees up: each batch is stored once.
    server.store.flush().await.unwrap();
    let r = post(
        &server,
        "/v1/traces",
        PB,
        None,
        trace_request(2, 200).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    server.store.flush().await.unwrap();
    c.export(trace_request(3, 200)).await.unwrap();
    assert_eq!(server.count("spans").await, 600);
    let d = server
        .text("SELECT count(DISTINCT trace_id || span_id) AS n FROM spans")
        .await;
    assert!(d.contains("| 600 |"), "{d}");
    let s = server.metrics_text();
    assert!(s.contains("burnwatch_otlp_refused_requests_total{signal=\"traces\",item=\"spans\",transport=\"http\"} 1"), "{s}");
    assert!(s.contains("burnwatch_otlp_refused_requests_total{signal=\"traces\",item=\"spans\",transport=\"grpc\"} 1"), "{s}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_exporter_retries_after_resource_exhausted() {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::WithExportConfig;
    let server = Server::start_with(|s, _| {
        s.max_buffer_bytes = 32 * 1024;
        s.flush_interval_secs = 3600.0;
        s.flush_bytes = usize::MAX;
    })
    .await;
    // Fill the buffer so the exporter's first attempt is refused.
    let r = post(
        &server,
        "/v1/traces",
        PB,
        None,
        trace_request(1, 200).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(server.grpc_url())
        .build()
        .unwrap();
    let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let tracer = tp.tracer("retry");
    let store = server.store.clone();
    let flusher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.flush().await.unwrap();
    });
    tokio::task::spawn_blocking(move || {
        tracer.in_span("retried", |_| {});
        tp.shutdown().unwrap();
    })
    .await
    .unwrap();
    flusher.await.unwrap();
    let n = server
        .text("SELECT count(*) AS n FROM spans WHERE name = 'retried'")
        .await;
    assert!(n.contains("| 1 |"), "{n}");
    let s = server.metrics_text();
    assert!(!s.contains("burnwatch_otlp_refused_requests_total{signal=\"traces\",item=\"spans\",transport=\"grpc\"} 0"), "the exporter was never refused: {s}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients() {
    let server = Server::start().await;
    let url = server.http_url("/v1/traces");
    let grpc = server.grpc_url();
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let url = url.clone();
        let grpc = grpc.clone();
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut g = TraceServiceClient::connect(grpc).await.unwrap();
            for i in 0..10u64 {
                let req = trace_request(w * 100 + i + 1, 50);
                if i % 2 == 0 {
                    let r = http
                        .post(&url)
                        .header("content-type", PB)
                        .body(req.encode_to_vec())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                } else {
                    g.export(req).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(server.count("spans").await, 8 * 10 * 50);
    server.stop().await;
}

/// Reads until the server closes `s`; panics if it is still open after
/// `limit`. Returns how long that took and what the server sent.
async fn until_closed(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> (Duration, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the connection is still open after {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_slow_clients_are_cut_off_and_the_connection_cap_holds() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let server = Server::start_with(|_, c| {
        c.connections.max_connections = 2;
        c.connections.header_timeout_ms = 400;
    })
    .await;
    let http = server.collector.http_addr;
    let limit = Duration::from_secs(5);

    // Connects and says nothing: closed after the header timeout.
    let mut silent = TcpStream::connect(http).await.unwrap();
    let (took, _) = until_closed(&mut silent, limit).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");

    // A request head dripped a byte every 40 ms (so the line is never idle)
    // is cut off at the header timeout, long before the head is complete.
    let (mut rd, mut wr) = TcpStream::connect(http).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        for b in b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-protobuf\r\n"
        {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    });
    let (took, _) = until_closed(&mut rd, limit).await;
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "closed after {took:?}; sending the whole head takes 3 s"
    );
    writer.abort();

    // A keep-alive connection: one full request is answered; then the next
    // head must come within the timeout too, and an idle connection closes.
    let mut keep = TcpStream::connect(http).await.unwrap();
    keep.write_all(b"GET /v1/traces HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (took, answer) = until_closed(&mut keep, limit).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");

    // gRPC: a connection that never sends the HTTP/2 preface is closed.
    let mut grpc_silent = TcpStream::connect(server.collector.grpc_addr)
        .await
        .unwrap();
    let (took, _) = until_closed(&mut grpc_silent, limit).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
    assert!(server.collector.grpc_connections.header_timeouts() >= 1);

    // The cap: two silent connections take both slots; an export behind
    // them waits in the accept queue and goes through once the deadline
    // frees a slot.
    let hold = [
        TcpStream::connect(http).await.unwrap(),
        TcpStream::connect(http).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.collector.http_connections.open(), 2);
    let started = std::time::Instant::now();
    let r = post(
        &server,
        "/v1/traces",
        PB,
        None,
        trace_request(31, 4).encode_to_vec(),
    )
    .await;
    assert_eq!(r.status(), 200);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(3),
        "the export behind the cap took {took:?}"
    );
    drop(hold);
    assert!(server.collector.http_connections.at_capacity() >= 1);
    // silent, drip, idle keep-alive, and the two that held the cap.
    assert!(
        server.collector.http_connections.header_timeouts() >= 5,
        "{}",
        server.collector.http_connections.header_timeouts()
    );
    assert_eq!(server.count("spans").await, 4);

    let (grpc, http) = (
        server.collector.grpc_connections.clone(),
        server.collector.http_connections.clone(),
    );
    let text = exposition::encode(&[std::sync::Arc::new(move |o: &mut exposition::Out<'_>| {
        listeners::net::collect_metrics(&[&grpc, &http], o)
    })]);
    assert!(
        text.contains("burnwatch_connections_at_capacity_total{listener=\"otlp_http\"} ")
            && text.contains("# TYPE burnwatch_connections_open gauge"),
        "{text}"
    );
    assert_eq!(
        text.matches("# TYPE burnwatch_connections_open ").count(),
        1
    );
    server.stop().await;
}
