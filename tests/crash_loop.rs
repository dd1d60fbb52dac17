//! Crash loop through the real binary: `burnwatch serve` under OTLP/HTTP load
//! is killed with SIGKILL at random moments, 20 times. After every restart,
//! each acknowledged request's spans are present exactly once, and no request
//! is half-visible.

mod common;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use prost::Message;

const SPANS_PER_REQUEST: u64 = 50;

/// Request `id`: spans whose span ids are `id * 1000 + i + 1`.
fn request(id: u64) -> Vec<u8> {
    common::trace_request(id * 1000, SPANS_PER_REQUEST, "crashy", 8).encode_to_vec()
}

fn start(dir: &std::path::Path) -> common::ServeProcess {
    common::start_serve(
        &[
            OsStr::new("--data-dir"),
            dir.as_os_str(),
            OsStr::new("--config"),
            dir.join("burnwatch.toml").as_os_str(),
            OsStr::new("--log"),
            OsStr::new("error"),
        ],
        Stdio::null(),
    )
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
        let server = start(dir.path());
        let url = format!("http://{}/v1/traces", server.otlp_http);
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
        server.kill(); // SIGKILL
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
    }

    let store = store::Store::open(testkit::store_config(dir.path()))
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
