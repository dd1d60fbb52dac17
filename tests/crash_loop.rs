//! Crash loop through the real binary: `burnwatch serve` under OTLP/HTTP load
//! is killed with SIGKILL at random moments, 20 times. After every restart,
//! each acknowledged request's spans are present exactly once, and no request
//! is half-visible.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const SPANS_PER_REQUEST: u64 = 50;

/// Request `id`: spans whose span ids are `id * 1000 + i + 1`.
fn request(id: u64) -> Vec<u8> {
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| Span {
            trace_id: ((id as u128) << 64 | 1).to_be_bytes().to_vec(),
            span_id: (id * 1000 + i + 1).to_be_bytes().to_vec(),
            name: "GET /crash".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + id * 1_000_000 + i,
            end_time_unix_nano: 1_700_000_000_000_500_000 + id * 1_000_000 + i,
            attributes: vec![KeyValue {
                key: "http.route".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("/crash".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("crashy".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_burnwatch"))
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(dir.join("burnwatch.toml"))
        .env("BURNWATCH_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let otlp = line.rsplit("http://").next().unwrap().trim().to_string();
    assert!(otlp.starts_with("127.0.0.1:"), "{line}");
    (child, otlp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_20_times_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Flush often (every 100 ms) so that kills also hit flushes.
    std::fs::write(
        dir.path().join("burnwatch.toml"),
        "[store]\nflush_interval_secs = 0.1\n",
    )
    .unwrap();
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut next_id = 1u64;
    let mut seed = 0x2545_F491u64 ^ std::process::id() as u64;
    for round in 0..20 {
        let (mut child, otlp) = start(dir.path());
        let url = format!("http://{otlp}/v1/traces");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..4u64 {
            let url = url.clone();
            let acked = acked.clone();
            let stop = stop.clone();
            let first = next_id + c * 100_000;
            clients.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                let mut id = first;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = http
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(request(id))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => {
                            acked.lock().unwrap().insert(id);
                        }
                        Ok(r) if r.status() == 429 || r.status() == 503 => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server died
                    }
                    id += 1;
                }
            }));
        }
        next_id += 4 * 100_000;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let before = acked.lock().unwrap().len();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().len() == before {
            assert!(
                Instant::now() < deadline,
                "round {round}: nothing acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100 + seed % 900)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
    }

    let store = store::Store::open(store::StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .await
    .unwrap();
    let batches = store::query::session_context(&store)
        .sql("SELECT span_id FROM spans")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut seen = HashSet::new();
    let mut per_request: HashMap<u64, u64> = HashMap::new();
    for b in &batches {
        let col = b.column(0).as_string::<i32>();
        for i in 0..b.num_rows() {
            let id = u64::from_str_radix(col.value(i), 16).unwrap();
            assert!(seen.insert(id), "span {id} stored twice");
            *per_request.entry((id - 1) / 1000).or_default() += 1;
        }
    }
    let acked = acked.lock().unwrap();
    for id in acked.iter() {
        assert_eq!(
            per_request.get(id),
            Some(&SPANS_PER_REQUEST),
            "acknowledged request {id} lost or partial"
        );
    }
    for (id, n) in &per_request {
        assert_eq!(*n, SPANS_PER_REQUEST, "request {id} is half-visible");
    }
    eprintln!(
        "crash loop: 20 kills, {} requests acknowledged, {} stored",
        acked.len(),
        per_request.len()
    );
}
