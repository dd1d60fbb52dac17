//! End-to-end OTLP ingest: N concurrent clients send realistic spans
//! (batches of 512, ten attributes each) over gRPC or HTTP/protobuf to a
//! collector and store running in the same process on this machine, so load
//! generator and server share the CPUs. Also measures the ceilings in the same
//! run: protobuf decode alone, and decode + Arrow conversion without I/O.
//!
//! `cargo run --release -p burnwatch-bench --bin otlp-bench -- [--seconds S] [--clients N]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use burnwatch_bench::{cpu_time, median, peak_rss_bytes, percentile, trace_request};
use clap::Parser;
use collector::{Collector, CollectorConfig, CollectorMetrics};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use store::{Store, StoreConfig};
use testkit::synth::Rng;

// jemalloc: less fragmentation than glibc malloc across the runtime's
// threads, so resident memory tracks live data.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Seconds per load phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Directory on the disk to measure.
    #[arg(long, default_value = "target/bench-data")]
    dir: std::path::PathBuf,
    /// Internal: run only the server (store + collector) and print its addresses.
    #[arg(long, hide = true)]
    serve_child: bool,
}

const BATCH: usize = 512;

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Grpc,
    Http,
}

struct Phase {
    accepted_spans_per_s: f64,
    refused: u64,
    p50_ms: f64,
    p99_ms: f64,
    /// CPU cores used by the load generator (this process).
    client_cpu: f64,
    /// CPU cores used by the server process.
    server_cpu: f64,
}

fn requests(n: usize) -> Vec<ExportTraceServiceRequest> {
    let mut rng = Rng::new(7);
    let base = 1_763_700_000_000_000_000u64;
    (0..n)
        .map(|_| trace_request(&mut rng, BATCH, base))
        .collect()
}

/// Runs one load phase.
/// `rate` is the target spans/s over all clients (None: as fast as possible).
#[allow(clippy::too_many_arguments)]
async fn phase(
    transport: Transport,
    addr: (String, String),
    reqs: Arc<Vec<ExportTraceServiceRequest>>,
    bodies: Arc<Vec<bytes::Bytes>>,
    clients: usize,
    seconds: u64,
    rate: Option<f64>,
    server_pid: &str,
) -> Result<Phase> {
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let cpu0 = cpu_time("self");
    let server_cpu0 = cpu_time(server_pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (grpc, http) = addr.clone();
        let reqs = reqs.clone();
        let bodies = bodies.clone();
        let accepted = accepted.clone();
        let refused = refused.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let interval = rate.map(|r| Duration::from_secs_f64(clients as f64 * BATCH as f64 / r));
            let mut next = Instant::now()
                + interval
                    .map(|i| i.mul_f64(c as f64 / clients as f64))
                    .unwrap_or_default();
            let mut g = if transport == Transport::Grpc {
                Some(TraceServiceClient::connect(grpc).await.expect("connect"))
            } else {
                None
            };
            let http_client = reqwest::Client::new();
            let mut i = c;
            while Instant::now() < deadline {
                if let Some(iv) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += iv;
                }
                let t = Instant::now();
                let ok = match &mut g {
                    Some(g) => match g.export(reqs[i % reqs.len()].clone()).await {
                        Ok(_) => true,
                        Err(s)
                            if matches!(
                                s.code(),
                                tonic::Code::ResourceExhausted | tonic::Code::Unavailable
                            ) =>
                        {
                            false
                        }
                        Err(s) => panic!("{s}"),
                    },
                    None => {
                        let r = http_client
                            .post(&http)
                            .header("content-type", "application/x-protobuf")
                            .body(bodies[i % bodies.len()].clone())
                            .send()
                            .await
                            .expect("http");
                        match r.status().as_u16() {
                            200 => true,
                            429 | 503 => false,
                            s => panic!("status {s}"),
                        }
                    }
                };
                if ok {
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    accepted.fetch_add(BATCH as u64, Ordering::Relaxed);
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                i += clients;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_time("self") - cpu0).as_secs_f64();
    let server_cpu = (cpu_time(server_pid) - server_cpu0).as_secs_f64();
    Ok(Phase {
        accepted_spans_per_s: accepted.load(Ordering::Relaxed) as f64 / elapsed,
        refused: refused.load(Ordering::Relaxed),
        p50_ms: percentile(&mut lat.clone(), 0.5),
        p99_ms: percentile(&mut lat, 0.99),
        client_cpu: cpu / elapsed,
        server_cpu: server_cpu / elapsed,
    })
}

fn ceilings(reqs: &[ExportTraceServiceRequest], bodies: &[bytes::Bytes]) -> (f64, f64) {
    let mut decode = Vec::new();
    let mut convert = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut n = 0;
        for b in bodies {
            let r = ExportTraceServiceRequest::decode(b.clone()).expect("decode");
            n += r.resource_spans[0].scope_spans[0].spans.len();
        }
        decode.push(n as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut n = 0u64;
        for b in bodies {
            let r = ExportTraceServiceRequest::decode(b.clone()).expect("decode");
            n += collector::convert::spans(&r, &collector::convert::ConvertOptions::default())
                .accepted;
        }
        convert.push(n as f64 / t.elapsed().as_secs_f64());
    }
    let _ = reqs;
    (median(&mut decode), median(&mut convert))
}

/// The server side: store and collector with default settings, until stdin closes.
fn serve_child(args: &Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let data = tempfile::tempdir_in(&args.dir)?;
        let store = Store::open(StoreConfig {
            data_dir: data.path().to_path_buf(),
            ..Default::default()
        })
        .await?;
        let token = tokio_util::sync::CancellationToken::new();
        let tracker = tokio_util::task::TaskTracker::new();
        store.spawn_background(token.clone(), &tracker).await?;
        let collector = Collector::start(
            CollectorConfig {
                grpc_addr: "127.0.0.1:0".parse()?,
                http_addr: "127.0.0.1:0".parse()?,
                ..Default::default()
            },
            store.clone(),
            Arc::new(CollectorMetrics::default()),
            token.clone(),
            &tracker,
        )
        .await?;
        println!("READY {} {}", collector.grpc_addr, collector.http_addr);
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        })
        .await?;
        token.cancel();
        tracker.close();
        tracker.wait().await;
        store.close().await?;
        anyhow::Ok(())
    })
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    if args.serve_child {
        return serve_child(&args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let reqs = Arc::new(requests(200));
    let bodies: Arc<Vec<bytes::Bytes>> = Arc::new(
        reqs.iter()
            .map(|r| bytes::Bytes::from(r.encode_to_vec()))
            .collect(),
    );
    let avg_body = bodies.iter().map(|b| b.len()).sum::<usize>() / bodies.len();
    println!(
        "request: {BATCH} spans, {avg_body} bytes protobuf ({:.0} bytes/span)",
        avg_body as f64 / BATCH as f64
    );
    let (dec, conv) = ceilings(&reqs, &bodies);
    println!(
        "ceiling, one core: protobuf decode {dec:.0} spans/s; decode + Arrow conversion {conv:.0} spans/s\n"
    );

    // The server runs in its own process (this binary with --serve-child) so
    // its CPU and memory are measured apart from the load generator's.
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--serve-child")
        .arg("--dir")
        .arg(&args.dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let server_pid = child.id().to_string();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )?;
    let mut parts = line.split_whitespace().skip(1);
    let addr = (
        format!("http://{}", parts.next().expect("grpc address")),
        format!("http://{}/v1/traces", parts.next().expect("http address")),
    );
    rt.block_on(async {
        println!("| transport | load | clients | accepted spans/s | refused requests | ack p50 ms | ack p99 ms | server CPU (cores) | load generator CPU (cores) | server peak RSS MiB | load generator peak RSS MiB |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (transport, name) in [(Transport::Grpc, "gRPC"), (Transport::Http, "HTTP/protobuf")] {
            let max = phase(transport, addr.clone(), reqs.clone(), bodies.clone(), args.clients, args.seconds, None, &server_pid).await?;
            let row = |label: String, clients: usize, p: &Phase| {
                println!(
                    "| {name} | {label} | {clients} | {:.0} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.0} | {:.0} |",
                    p.accepted_spans_per_s,
                    p.refused,
                    p.p50_ms,
                    p.p99_ms,
                    p.server_cpu,
                    p.client_cpu,
                    peak_rss_bytes(&server_pid) as f64 / 1048576.0,
                    peak_rss_bytes("self") as f64 / 1048576.0,
                )
            };
            row("max".into(), args.clients, &max);
            let half_rate = max.accepted_spans_per_s / 2.0;
            let half = phase(transport, addr.clone(), reqs.clone(), bodies.clone(), args.clients, args.seconds, Some(half_rate), &server_pid).await?;
            row(format!("half of max ({half_rate:.0}/s offered)"), args.clients, &half);
            let over_rate = max.accepted_spans_per_s * 2.0;
            let over = phase(transport, addr.clone(), reqs.clone(), bodies.clone(), args.clients * 4, args.seconds, Some(over_rate), &server_pid).await?;
            row(format!("twice max ({over_rate:.0}/s offered)"), args.clients * 4, &over);
        }
        anyhow::Ok(())
    })?;
    drop(child.stdin.take()); // the server stops when its stdin closes
    child.wait()?;
    Ok(())
}
