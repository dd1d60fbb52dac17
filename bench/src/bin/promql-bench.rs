//! Prometheus compatibility against a real Prometheus 2.42, in one run:
//!
//! 1. Remote-write ingest: `POST /api/v1/write` (remote write 1.0, snappy
//!    `prometheus.WriteRequest`) on a collector and store started in this
//!    process, and the same bodies posted to Prometheus's remote-write
//!    receiver. Request bodies are built before timing; each request shape
//!    runs on a fresh server, several times.
//! 2. PromQL range queries over `--series` counters and `--series` classic
//!    histogram bucket series (`--hours` of samples at a 60 s interval),
//!    written to a fresh Burnwatch and a fresh Prometheus through the same
//!    remote-write bodies, then queried on both HTTP APIs: medians, the
//!    ratio, and whether the two answers agree.
//!
//! `cargo run --release -p burnwatch-bench --bin promql-bench -- [--series N] [--hours H] [--senders S] [--runs R]`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use burnwatch_bench::{cpu_time, median, peak_rss_bytes};
use bytes::Bytes;
use clap::Parser;
use collector::remote_write::proto::Sample;
use collector::remote_write::proto::v1::{Label, TimeSeries, WriteRequest};
use collector::{Collector, CollectorConfig, CollectorMetrics};
use prost::Message;
use serde_json::Value;
use store::{Store, StoreConfig, Table};
use testkit::synth::Rng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

// jemalloc, as the server binary uses.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Counter series (`x_total`); as many `y_bucket` series (a tenth as
    /// many histograms of 10 buckets) for the PromQL part.
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Hours of history (one sample per series and minute) for the PromQL part.
    #[arg(long, default_value_t = 24)]
    hours: u64,
    /// Concurrent remote-write senders (as Prometheus's shards).
    #[arg(long, default_value_t = 4)]
    senders: usize,
    /// Timed runs of each query (after one warm-up).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// The Prometheus binary.
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus: PathBuf,
    /// Measure Burnwatch alone.
    #[arg(long)]
    skip_prometheus: bool,
    /// Samples per remote-write throughput phase (each request shape);
    /// the default is about four times what the store buffers in memory,
    /// so the phase measures the sustained rate.
    #[arg(long, default_value_t = 9_600_000)]
    rw_samples: usize,
    /// Repetitions of each throughput phase (each on fresh servers).
    #[arg(long, default_value_t = 3)]
    rw_runs: usize,
    /// Directory for data (on the disk to measure); emptied at the end.
    #[arg(long, default_value = "/var/tmp/burnwatch-promql-bench")]
    dir: PathBuf,
}

/// Samples per request Prometheus 2.42 sends at most (`max_samples_per_send`).
const MAX_SAMPLES_PER_SEND: usize = 2000;

const BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0];
const LE: [&str; 10] = [
    "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "25", "50", "+Inf",
];

const Q_RATE: &str = "sum by (job) (rate(x_total[5m]))";
const Q_QUANTILE: &str = "histogram_quantile(0.9, sum by (le) (rate(y_bucket[5m])))";

// ---------------------------------------------------------------- servers

/// Store, collector (remote write on its HTTP listener) and the web API,
/// in this process, on a fresh data directory.
struct Burnwatch {
    store: Store,
    write_url: String,
    web_url: String,
    token: CancellationToken,
    tracker: TaskTracker,
    store_token: CancellationToken,
    store_tracker: TaskTracker,
    _dir: tempfile::TempDir,
}

impl Burnwatch {
    async fn start(parent: &Path) -> Result<Burnwatch> {
        let dir = tempfile::tempdir_in(parent)?;
        let store = Store::open(StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .await?;
        // The store's background jobs (flusher, compaction, scrub) on their
        // own token, so they can be stopped before queries are timed.
        let store_token = CancellationToken::new();
        let store_tracker = TaskTracker::new();
        store
            .spawn_background(store_token.clone(), &store_tracker)
            .await?;
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let web_addr = listener.local_addr()?;
        let app = web::app(web::WebState::new(store.clone()));
        let t = token.clone();
        tracker.spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(t.cancelled_owned())
                .await
            {
                eprintln!("web server: {e}");
            }
        });
        Ok(Burnwatch {
            store,
            write_url: format!("http://{}/api/v1/write", collector.http_addr),
            web_url: format!("http://{web_addr}/prometheus"),
            token,
            tracker,
            store_token,
            store_tracker,
            _dir: dir,
        })
    }

    /// Stops the flusher and the cron jobs (the flusher flushes once more).
    async fn stop_background(&self) {
        self.store_token.cancel();
        self.store_tracker.close();
        self.store_tracker.wait().await;
    }

    async fn shutdown(self) -> Result<()> {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.stop_background().await;
        self.store.close().await?;
        Ok(())
    }
}

/// A Prometheus process on a fresh TSDB directory; killed when dropped
/// (also on panic).
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Prometheus {
    async fn start(bin: &Path, parent: &Path, client: &reqwest::Client) -> Result<Prometheus> {
        let dir = tempfile::tempdir_in(parent)?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            "global:\n  scrape_interval: 60s\n  evaluation_interval: 60s\nscrape_configs: []\n",
        )?;
        let port = free_port()?;
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = p.child.try_wait()? {
                bail!("prometheus exited ({status}):\n{}", p.log_tail());
            }
            if let Ok(r) = client.get(format!("{}/-/ready", p.url)).send().await
                && r.status().is_success()
            {
                return Ok(p);
            }
            if Instant::now() > deadline {
                bail!("prometheus not ready after 60 s:\n{}", p.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Lines of its log that report rejected samples.
    fn rejected_log_lines(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("prometheus.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Out of order sample") || l.contains("Error appending"))
            .count()
    }
}

// ---------------------------------------------------------------- requests

fn label(name: &str, value: &str) -> Label {
    Label {
        name: name.into(),
        value: value.into(),
    }
}

/// A snappy-compressed remote-write 1.0 body.
fn body(timeseries: Vec<TimeSeries>) -> Bytes {
    let plain = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    }
    .encode_to_vec();
    Bytes::from(
        snap::raw::Encoder::new()
            .compress_vec(&plain)
            .expect("snappy"),
    )
}

/// A request body and the samples it carries.
type Body = (Bytes, usize);

#[derive(Clone, Copy)]
struct Shape {
    name: &'static str,
    series_per_request: usize,
    samples_per_series: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "2000 series x 1 sample",
        series_per_request: 2000,
        samples_per_series: 1,
    },
    Shape {
        name: "500 series x 10 samples",
        series_per_request: 500,
        samples_per_series: 10,
    },
];

const METRIC_NAMES: [&str; 10] = [
    "http_requests_total",
    "http_request_duration_seconds_count",
    "process_cpu_seconds_total",
    "node_network_receive_bytes_total",
    "go_gc_duration_seconds_count",
    "rpc_calls_total",
    "db_queries_total",
    "cache_hits_total",
    "kafka_messages_total",
    "grpc_server_handled_total",
];

/// Throughput bodies, per sender: each sender owns its own series (as a
/// Prometheus shard does) and sends them in time order; all samples lie
/// in the 50 minutes before `end_ms`.
fn throughput_bodies(shape: Shape, senders: usize, total: usize, end_ms: i64) -> Vec<Vec<Body>> {
    let per_request = shape.series_per_request * shape.samples_per_series;
    let requests = (total / (senders * per_request)).max(1);
    let points = (requests * shape.samples_per_series) as i64;
    let spacing = (3_000_000 / points).max(1);
    let t0 = end_ms - spacing * points;
    (0..senders)
        .map(|s| {
            let labels: Vec<Vec<Label>> = (0..shape.series_per_request)
                .map(|j| {
                    vec![
                        label("__name__", METRIC_NAMES[j % 10]),
                        label("handler", &format!("/api/v1/endpoint-{}", (j / 10) % 4)),
                        label("instance", &format!("host-{s}-{:03}:9100", j / 40)),
                        label("job", &format!("job-{}", (j / 40) % 10)),
                    ]
                })
                .collect();
            (0..requests)
                .map(|r| {
                    let ts = labels
                        .iter()
                        .enumerate()
                        .map(|(j, l)| TimeSeries {
                            labels: l.clone(),
                            samples: (0..shape.samples_per_series)
                                .map(|k| {
                                    let i = (r * shape.samples_per_series + k) as i64;
                                    Sample {
                                        value: (j * 1000) as f64 + i as f64 * (1 + j % 7) as f64,
                                        timestamp: t0 + (i + 1) * spacing,
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect();
                    (body(ts), per_request)
                })
                .collect()
        })
        .collect()
}

/// The PromQL data set: `hours * 60` minutes; for each minute, every
/// series' sample of that minute (in `MAX_SAMPLES_PER_SEND` chunks), so
/// bodies in order are in time order.
struct History {
    bodies: Vec<Body>,
    samples: usize,
}

fn history(series: usize, hours: u64, end_ms: i64) -> History {
    let minutes = (hours * 60) as i64;
    let mut rng = Rng::new(42);
    // Each target is scraped at its own offset within the minute (as
    // Prometheus spreads scrapes), the last scrape at most 60 s before the end.
    let offset = |i: usize| (i as i64 * 7919) % 60_000;
    let x_labels: Vec<Vec<Label>> = (0..series)
        .map(|i| {
            vec![
                label("__name__", "x_total"),
                label("instance", &format!("inst-{i}")),
                label("job", &format!("job-{}", i % 10)),
            ]
        })
        .collect();
    let mut x_value: Vec<f64> = (0..series).map(|_| rng.below(1_000_000) as f64).collect();
    let histograms = series / 10;
    let y_labels: Vec<Vec<Vec<Label>>> = (0..histograms)
        .map(|h| {
            LE.iter()
                .map(|le| {
                    vec![
                        label("__name__", "y_bucket"),
                        label("instance", &format!("inst-{h}")),
                        label("job", &format!("job-{}", h % 10)),
                        label("le", le),
                    ]
                })
                .collect()
        })
        .collect();
    let mut y_counts: Vec<[u64; 10]> = vec![[0; 10]; histograms];
    let mut bodies = Vec::new();
    let mut samples = 0;
    let mut chunk: Vec<TimeSeries> = Vec::with_capacity(MAX_SAMPLES_PER_SEND);
    let flush = |chunk: &mut Vec<TimeSeries>, bodies: &mut Vec<Body>| {
        if !chunk.is_empty() {
            let n = chunk.len();
            bodies.push((body(std::mem::take(chunk)), n));
        }
    };
    for m in 0..minutes {
        let minute_end = end_ms - (minutes - 1 - m) * 60_000;
        for i in 0..series {
            // Per-series rate 0.5..5.25/s, +-20% per minute; a reset in
            // about one sample of 2000.
            let rate = 0.5 + (i % 20) as f64 * 0.25;
            let inc = (rate * 60.0 * (0.8 + 0.4 * (rng.below(1000) as f64 / 1000.0))).round();
            x_value[i] = if rng.below(2000) == 0 {
                inc
            } else {
                x_value[i] + inc
            };
            chunk.push(TimeSeries {
                labels: x_labels[i].clone(),
                samples: vec![Sample {
                    value: x_value[i],
                    timestamp: minute_end - offset(i),
                }],
                ..Default::default()
            });
            if chunk.len() == MAX_SAMPLES_PER_SEND {
                flush(&mut chunk, &mut bodies);
            }
        }
        for h in 0..histograms {
            // 50..150 observations a minute, log-uniform over 0.03..100 s.
            let n = 50 + rng.below(100);
            let scale = 1.0 + (h % 5) as f64 * 0.5;
            for _ in 0..n {
                let u = rng.below(1_000_000) as f64 / 1_000_000.0;
                let v = 10f64.powf(-1.5 + 3.5 * u) * scale;
                let b = BUCKETS.iter().position(|&le| v <= le).unwrap_or(9);
                // Cumulative: every bucket from b up to +Inf counts it.
                for c in &mut y_counts[h][b..] {
                    *c += 1;
                }
            }
            for (b, l) in y_labels[h].iter().enumerate() {
                chunk.push(TimeSeries {
                    labels: l.clone(),
                    samples: vec![Sample {
                        value: y_counts[h][b] as f64,
                        timestamp: minute_end - offset(h),
                    }],
                    ..Default::default()
                });
                if chunk.len() == MAX_SAMPLES_PER_SEND {
                    flush(&mut chunk, &mut bodies);
                }
            }
        }
        samples += series + histograms * 10;
        // Chunks never span two minutes: time order holds between bodies.
        flush(&mut chunk, &mut bodies);
    }
    History { bodies, samples }
}

// ---------------------------------------------------------------- sending

#[derive(Default, Debug)]
struct SendStats {
    accepted_samples: u64,
    /// 429 / 503 answers (retried after 50 ms).
    refused: u64,
    /// Other non-2xx answers (not retried).
    failed_requests: u64,
    failed_samples: u64,
    first_error: Option<String>,
    first_refusal: Option<String>,
}

impl SendStats {
    fn add(&mut self, o: SendStats) {
        self.accepted_samples += o.accepted_samples;
        self.refused += o.refused;
        self.failed_requests += o.failed_requests;
        self.failed_samples += o.failed_samples;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        if self.first_refusal.is_none() {
            self.first_refusal = o.first_refusal;
        }
    }
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?)
}

/// Posts bodies one after the other, in order.
async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: &[Body],
    progress: Option<&AtomicU64>,
) -> Result<SendStats> {
    let mut st = SendStats::default();
    for (b, n) in bodies {
        loop {
            let r = client
                .post(url)
                .header("content-type", "application/x-protobuf")
                .header("content-encoding", "snappy")
                .header("x-prometheus-remote-write-version", "0.1.0")
                .header("user-agent", "burnwatch-promql-bench")
                .body(b.clone())
                .send()
                .await?;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            match status {
                200..=299 => {
                    st.accepted_samples += *n as u64;
                    if let Some(p) = progress {
                        p.fetch_add(*n as u64, Ordering::Relaxed);
                    }
                    break;
                }
                429 | 503 => {
                    st.refused += 1;
                    if st.first_refusal.is_none() {
                        st.first_refusal = Some(format!("{status}: {}", text.trim()));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    st.failed_requests += 1;
                    st.failed_samples += *n as u64;
                    if st.first_error.is_none() {
                        st.first_error = Some(format!("{status}: {}", text.trim()));
                    }
                    break;
                }
            }
        }
    }
    Ok(st)
}

struct Phase {
    samples_per_s: f64,
    /// Accepted samples/s over the second half of the phase's time, when
    /// the store's buffer is no longer empty.
    second_half_per_s: f64,
    seconds: f64,
    stats: SendStats,
    /// CPU seconds of this process (Burnwatch: server and senders).
    self_cpu: f64,
    /// CPU seconds of the Prometheus process, when measuring it.
    server_cpu: Option<f64>,
}

/// All senders at once, each with its own connection, as fast as they go.
async fn throughput(
    url: &str,
    per_sender: &Arc<Vec<Vec<Body>>>,
    server_pid: Option<&str>,
) -> Result<Phase> {
    let clients = (0..per_sender.len())
        .map(|_| http_client())
        .collect::<Result<Vec<_>>>()?;
    let cpu0 = cpu_time("self");
    let server0 = server_pid.map(cpu_time);
    let started = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let done = CancellationToken::new();
    // (seconds since the start, samples accepted so far), every 50 ms.
    let timeline = {
        let (progress, done) = (progress.clone(), done.clone());
        tokio::spawn(async move {
            let mut points = vec![(0.0, 0u64)];
            loop {
                tokio::select! {
                    _ = done.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
                points.push((
                    started.elapsed().as_secs_f64(),
                    progress.load(Ordering::Relaxed),
                ));
            }
            points
        })
    };
    let mut tasks = Vec::new();
    for (s, client) in clients.into_iter().enumerate() {
        let url = url.to_string();
        let bodies = per_sender.clone();
        let progress = progress.clone();
        tasks.push(tokio::spawn(async move {
            send_all(&client, &url, &bodies[s], Some(&progress)).await
        }));
    }
    let mut stats = SendStats::default();
    for t in tasks {
        stats.add(t.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    done.cancel();
    let timeline = timeline.await?;
    let (t_half, n_half) = timeline
        .iter()
        .copied()
        .find(|(t, _)| *t >= seconds / 2.0)
        .unwrap_or((0.0, 0));
    let second_half_per_s = if seconds > t_half {
        (stats.accepted_samples - n_half) as f64 / (seconds - t_half)
    } else {
        f64::NAN
    };
    let self_cpu = (cpu_time("self") - cpu0).as_secs_f64();
    let server_cpu = server_pid
        .zip(server0)
        .map(|(p, c0)| (cpu_time(p) - c0).as_secs_f64());
    Ok(Phase {
        samples_per_s: stats.accepted_samples as f64 / seconds,
        second_half_per_s,
        seconds,
        stats,
        self_cpu,
        server_cpu,
    })
}

/// One core, no I/O: snappy + protobuf decode, and decode + conversion to
/// Arrow rows, as the remote-write handler does them.
fn ceilings(bodies: &[Body]) -> (f64, f64) {
    let mut decode = Vec::new();
    let mut convert = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut n = 0usize;
        for (b, _) in bodies {
            let plain = collector::remote_write::unsnappy(b, usize::MAX).expect("snappy");
            let d = collector::remote_write::decode(collector::remote_write::Version::V1, &plain)
                .expect("decode");
            if let collector::remote_write::Decoded::V1(r) = d {
                n += r.timeseries.iter().map(|s| s.samples.len()).sum::<usize>();
            }
        }
        decode.push(n as f64 / t.elapsed().as_secs_f64());
        let meta = collector::remote_write::MetadataCache::default();
        let t = Instant::now();
        let mut n = 0usize;
        for (b, _) in bodies {
            let plain = collector::remote_write::unsnappy(b, usize::MAX).expect("snappy");
            let d = collector::remote_write::decode(collector::remote_write::Version::V1, &plain)
                .expect("decode");
            let c = collector::remote_write::convert(&d, &meta, |k| vec![true; k.len()])
                .expect("convert");
            n += c.batch.map_or(0, |b| b.num_rows());
        }
        convert.push(n as f64 / t.elapsed().as_secs_f64());
    }
    (median(&mut decode), median(&mut convert))
}

/// The store alone, rows converted before timing, background jobs off:
/// `Store::write` from `writers` tasks (WAL + fsync, rows buffered, no
/// flush) in samples/s, then one `Store::flush` of all of them to Parquet
/// (rows/s), and the buffered bytes per sample.
async fn store_ceiling(parent: &Path, bodies: &[Body], writers: usize) -> Result<(f64, f64, f64)> {
    let meta = collector::remote_write::MetadataCache::default();
    let batches: Vec<arrow::array::RecordBatch> = bodies
        .iter()
        .filter_map(|(b, _)| {
            let plain = collector::remote_write::unsnappy(b, usize::MAX).ok()?;
            let d = collector::remote_write::decode(collector::remote_write::Version::V1, &plain)
                .ok()?;
            collector::remote_write::convert(&d, &meta, |k| vec![true; k.len()])
                .ok()?
                .batch
        })
        .collect();
    let bw = Burnwatch::start(parent).await?;
    bw.stop_background().await;
    let batches = Arc::new(batches);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = bw.store.clone();
        let batches = batches.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            for b in batches.iter().skip(w).step_by(writers) {
                loop {
                    match store.write(Table::MetricPoints, b.clone()).await {
                        Ok(_) => break,
                        Err(store::Error::Overloaded { .. }) => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        Err(e) => return Err(anyhow!(e)),
                    }
                }
                n += b.num_rows();
            }
            anyhow::Ok(n)
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await??;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let buffered = bw.store.stats().buffered_bytes as f64 / n as f64;
    let t = Instant::now();
    let flushed = bw.store.flush().await?;
    let flush_rate = flushed as f64 / t.elapsed().as_secs_f64();
    bw.shutdown().await?;
    Ok((rate, flush_rate, buffered))
}

// ---------------------------------------------------------------- queries

/// A range-query answer: labels → (unix ms, value) points.
type Matrix = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

fn value_of(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or(f64::NAN),
    }
}

fn parse_matrix(body: &[u8]) -> Result<Matrix> {
    let v: Value = serde_json::from_slice(body)?;
    if v["status"] != "success" {
        bail!("query failed: {v}");
    }
    let mut out = Matrix::new();
    for s in v["data"]["result"].as_array().context("no result")? {
        let labels = s["metric"]
            .as_object()
            .context("no metric")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        let points = s["values"]
            .as_array()
            .context("no values")?
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64,
                    value_of(p[1].as_str().unwrap_or("")),
                )
            })
            .collect();
        out.insert(labels, points);
    }
    Ok(out)
}

struct Agreement {
    series: (usize, usize),
    points: (usize, usize),
    max_rel: f64,
    problem: Option<String>,
}

fn rel_diff(a: f64, b: f64) -> Option<f64> {
    if a.is_nan() || b.is_nan() {
        return (a.is_nan() && b.is_nan()).then_some(0.0);
    }
    if a.is_infinite() || b.is_infinite() {
        return (a == b).then_some(0.0);
    }
    if a == b {
        return Some(0.0);
    }
    Some((a - b).abs() / a.abs().max(b.abs()))
}

fn compare(bw: &Matrix, prom: &Matrix) -> Agreement {
    let points = |m: &Matrix| m.values().map(Vec::len).sum::<usize>();
    let mut a = Agreement {
        series: (bw.len(), prom.len()),
        points: (points(bw), points(prom)),
        max_rel: 0.0,
        problem: None,
    };
    let problem = |p: String, a: &mut Agreement| {
        if a.problem.is_none() {
            a.problem = Some(p);
        }
    };
    for (labels, pp) in prom {
        let Some(bp) = bw.get(labels) else {
            problem(format!("series {labels:?} missing in Burnwatch"), &mut a);
            continue;
        };
        if bp.len() != pp.len() {
            problem(
                format!(
                    "{labels:?}: {} points in Burnwatch, {} in Prometheus",
                    bp.len(),
                    pp.len()
                ),
                &mut a,
            );
        }
        for ((bt, bv), (pt, pv)) in bp.iter().zip(pp) {
            if bt != pt {
                problem(format!("{labels:?}: point at {bt} against {pt}"), &mut a);
                break;
            }
            match rel_diff(*bv, *pv) {
                Some(d) => a.max_rel = a.max_rel.max(d),
                None => {
                    problem(format!("{labels:?} at {bt}: {bv} against {pv}"), &mut a);
                    a.max_rel = f64::INFINITY;
                }
            }
        }
    }
    for labels in bw.keys() {
        if !prom.contains_key(labels) {
            problem(format!("series {labels:?} only in Burnwatch"), &mut a);
        }
    }
    if a.problem.is_none() && a.max_rel > 1e-9 {
        a.problem = Some(format!(
            "largest relative difference {:e} > 1e-9",
            a.max_rel
        ));
    }
    a
}

/// A range query over HTTP: (milliseconds until the whole answer is read, answer).
async fn range_query(
    client: &reqwest::Client,
    base: &str,
    q: &str,
    start_ms: i64,
    end_ms: i64,
) -> Result<(f64, Bytes)> {
    let t = Instant::now();
    let r = client
        .get(format!("{base}/api/v1/query_range"))
        .query(&[
            ("query", q.to_string()),
            ("start", format!("{}", start_ms / 1000)),
            ("end", format!("{}", end_ms / 1000)),
            ("step", "60".to_string()),
        ])
        .send()
        .await?;
    let status = r.status();
    let body = r.bytes().await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if !status.is_success() {
        bail!("{base}: {q}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok((ms, body))
}

/// An instant query's single value (NaN when the answer is empty).
async fn instant_value(client: &reqwest::Client, base: &str, q: &str, at_ms: i64) -> Result<f64> {
    let r = client
        .get(format!("{base}/api/v1/query"))
        .query(&[
            ("query", q.to_string()),
            ("time", format!("{}", at_ms / 1000)),
        ])
        .send()
        .await?;
    let v: Value = r.json().await?;
    Ok(v["data"]["result"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(|s| s["value"][1].as_str())
        .map_or(f64::NAN, value_of))
}

/// Waits until `count(x_total)` and `count(y_bucket)` at the end are as written.
async fn wait_counts(
    client: &reqwest::Client,
    base: &str,
    series: usize,
    at_ms: i64,
) -> Result<f64> {
    let started = Instant::now();
    let want_y = (series / 10 * 10) as f64;
    loop {
        let x = instant_value(client, base, "count(x_total)", at_ms).await?;
        let y = instant_value(client, base, "count(y_bucket)", at_ms).await?;
        if x == series as f64 && (want_y == 0.0 || y == want_y) {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("{base}: count(x_total) = {x}, count(y_bucket) = {y} after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------- main

fn fmt_int(v: f64) -> String {
    let s = format!("{:.0}", v);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn now_ms() -> i64 {
    store::now_ns() / 1_000_000
}

async fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let root = tempfile::tempdir_in(&args.dir)?;
    let client = http_client()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "promql-bench: {cores} cores, --series {} --hours {} --senders {} --runs {} --rw-samples {} --rw-runs {}",
        args.series, args.hours, args.senders, args.runs, args.rw_samples, args.rw_runs
    );
    if !args.skip_prometheus {
        let v = Command::new(&args.prometheus).arg("--version").output()?;
        let v = String::from_utf8_lossy(&v.stdout);
        println!(
            "{}",
            v.lines().next().unwrap_or("prometheus: unknown version")
        );
    }

    // ---- 1. remote-write ingest
    let end = now_ms() / 1000 * 1000;
    let mut shape_bodies = Vec::new();
    for shape in SHAPES {
        let t = Instant::now();
        let b = throughput_bodies(shape, args.senders, args.rw_samples, end);
        let n: usize = b.iter().flatten().map(|(_, n)| n).sum();
        let bytes: usize = b.iter().flatten().map(|(b, _)| b.len()).sum();
        let reqs: usize = b.iter().map(Vec::len).sum();
        println!(
            "bodies, {}: {} requests, {} samples, {:.0} KB snappy per request ({:.1} bytes/sample), built in {:.1} s",
            shape.name,
            reqs,
            fmt_int(n as f64),
            bytes as f64 / reqs as f64 / 1e3,
            bytes as f64 / n as f64,
            t.elapsed().as_secs_f64()
        );
        shape_bodies.push(Arc::new(b));
    }
    let sample: Vec<Body> = shape_bodies[0]
        .iter()
        .flatten()
        .take(300)
        .cloned()
        .collect();
    let (dec, conv) = ceilings(&sample);
    let (store_rate, flush_rate, buffered) =
        store_ceiling(root.path(), &sample, args.senders).await?;
    println!(
        "ceilings ({} samples of shape 1): one core, no I/O: snappy + protobuf decode {} samples/s; \
         + conversion to Arrow rows {} samples/s; Store::write alone ({} writers, WAL fsync, no flush): {} samples/s, \
         {:.0} bytes buffered per sample; Store::flush of those rows to Parquet alone: {} samples/s",
        fmt_int(sample.iter().map(|(_, n)| *n as f64).sum()),
        fmt_int(dec),
        fmt_int(conv),
        args.senders,
        fmt_int(store_rate),
        buffered,
        fmt_int(flush_rate)
    );

    // (server, shape) → runs
    let mut results: BTreeMap<(usize, usize), Vec<Phase>> = BTreeMap::new();
    for rep in 0..args.rw_runs {
        for (si, shape) in SHAPES.iter().enumerate() {
            let bw = Burnwatch::start(root.path()).await?;
            let p = throughput(&bw.write_url, &shape_bodies[si], None).await?;
            bw.shutdown().await?;
            println!(
                "run {} Burnwatch, {}: {} samples/s ({:.2} s; second half {}), process CPU {:.2} s, refused {}, failed {}",
                rep + 1,
                shape.name,
                fmt_int(p.samples_per_s),
                p.seconds,
                fmt_int(p.second_half_per_s),
                p.self_cpu,
                p.stats.refused,
                p.stats.failed_requests
            );
            if let Some(e) = &p.stats.first_error {
                println!("  first error: {e}");
            }
            if let Some(e) = &p.stats.first_refusal {
                println!("  first refusal: {e}");
            }
            results.entry((0, si)).or_default().push(p);
            if !args.skip_prometheus {
                let prom = Prometheus::start(&args.prometheus, root.path(), &client).await?;
                let pid = prom.pid();
                let p = throughput(
                    &format!("{}/api/v1/write", prom.url),
                    &shape_bodies[si],
                    Some(&pid),
                )
                .await?;
                println!(
                    "run {} Prometheus, {}: {} samples/s ({:.2} s; second half {}), Prometheus CPU {:.2} s, senders CPU {:.2} s, refused {}, failed {}, peak RSS {} MiB",
                    rep + 1,
                    shape.name,
                    fmt_int(p.samples_per_s),
                    p.seconds,
                    fmt_int(p.second_half_per_s),
                    p.server_cpu.unwrap_or(0.0),
                    p.self_cpu,
                    p.stats.refused,
                    p.stats.failed_requests,
                    peak_rss_bytes(&pid) / (1 << 20)
                );
                if let Some(e) = &p.stats.first_error {
                    println!("  first error: {e}");
                }
                results.entry((1, si)).or_default().push(p);
                drop(prom);
            }
        }
    }
    drop(shape_bodies);

    // ---- 2. PromQL
    let end = now_ms() / 60_000 * 60_000;
    let start = end - args.hours as i64 * 3_600_000;
    let t = Instant::now();
    let hist = history(args.series, args.hours, end);
    println!(
        "\nhistory: {} samples in {} requests ({} series x {} minutes), built in {:.1} s",
        fmt_int(hist.samples as f64),
        hist.bodies.len(),
        args.series + args.series / 10 * 10,
        args.hours * 60,
        t.elapsed().as_secs_f64()
    );
    let bw = Burnwatch::start(root.path()).await?;
    let prom = if args.skip_prometheus {
        None
    } else {
        Some(Prometheus::start(&args.prometheus, root.path(), &client).await?)
    };
    let bodies = Arc::new(hist.bodies);
    let timed = |url: String, bodies: Arc<Vec<Body>>| async move {
        let c = http_client()?;
        let t = Instant::now();
        let st = send_all(&c, &url, &bodies, None).await?;
        anyhow::Ok((st, t.elapsed().as_secs_f64()))
    };
    let bw_load = timed(bw.write_url.clone(), bodies.clone());
    let prom_load = async {
        match &prom {
            Some(p) => timed(format!("{}/api/v1/write", p.url), bodies.clone())
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let (bw_load, prom_load) = tokio::join!(bw_load, prom_load);
    let (bw_st, bw_s) = bw_load?;
    println!(
        "load (one sender, in time order, both servers at once): Burnwatch {} samples accepted in {:.1} s, {} refused (retried), {} requests failed",
        fmt_int(bw_st.accepted_samples as f64),
        bw_s,
        bw_st.refused,
        bw_st.failed_requests
    );
    if let Some(e) = &bw_st.first_error {
        println!("  Burnwatch first error: {e}");
    }
    if let Some((st, s)) = prom_load? {
        println!(
            "  Prometheus {} samples accepted in {:.1} s, {} refused, {} requests failed ({} samples), {} rejection lines in its log",
            fmt_int(st.accepted_samples as f64),
            s,
            st.refused,
            st.failed_requests,
            fmt_int(st.failed_samples as f64),
            prom.as_ref().map_or(0, Prometheus::rejected_log_lines)
        );
        if let Some(e) = &st.first_error {
            println!("  Prometheus first error: {e}");
        }
    }
    drop(bodies);
    let w = wait_counts(&client, &bw.web_url, args.series, end).await?;
    println!(
        "Burnwatch answers count(x_total) = {} after {w:.1} s",
        args.series
    );
    if let Some(p) = &prom {
        let w = wait_counts(&client, &p.url, args.series, end).await?;
        println!(
            "Prometheus answers count(x_total) = {} after {w:.1} s",
            args.series
        );
        if let Ok(r) = client
            .get(format!("{}/api/v1/status/tsdb", p.url))
            .send()
            .await
            && let Ok(v) = r.json::<Value>().await
        {
            let h = &v["data"]["headStats"];
            let min = h["minTime"].as_i64().unwrap_or(0);
            let max = h["maxTime"].as_i64().unwrap_or(0);
            println!(
                "Prometheus head: {} series, {} chunks, {:.1} h of samples (older ones in compacted blocks)",
                h["numSeries"],
                h["chunkCount"],
                (max - min) as f64 / 3.6e6
            );
        }
    }
    // Background jobs off before timing (no flush, compaction or scrub in
    // the middle of a query), then everything into Parquet, closed hours
    // compacted to one file each, as a server that ran through them has.
    bw.stop_background().await;
    let t = Instant::now();
    let flushed = bw.store.flush().await?;
    let compacted = bw.store.compact(store::now_ns()).await?;
    let mi = Table::ALL
        .iter()
        .position(|t| *t == Table::MetricPoints)
        .unwrap_or(2);
    let stats = bw.store.stats();
    println!(
        "Burnwatch: flush ({} rows) + compaction ({} files replaced) {:.1} s; metric_points: {} Parquet files, {} rows, {:.1} MB ({:.2} bytes/sample), {} rows still in memory",
        fmt_int(flushed as f64),
        compacted,
        t.elapsed().as_secs_f64(),
        stats.files[mi],
        fmt_int(stats.file_rows[mi] as f64),
        stats.file_bytes[mi] as f64 / 1e6,
        stats.file_bytes[mi] as f64 / stats.file_rows[mi].max(1) as f64,
        stats.buffered_rows[mi]
    );

    // Timing breakdown of Burnwatch, in process: the engine alone (no
    // HTTP, no JSON), and reading the selected series alone.
    let source = analytics::prom::PromSource::new(bw.store.clone());
    let engine = promql::Engine::new(promql::EngineOptions::default());
    let mut fetch_ms = Vec::new();
    let mut catalog_ms = Vec::new();
    let mut sql_ms = Vec::new();
    let mut sql_rows = 0;
    let mut engine_ms: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // The statement PromSource::series runs for `x_total` (after its
    // catalog query), as it builds it.
    let sql = format!(
        "SELECT metric_name, metric_type, scope_name = 'prometheus.remote_write' AS rw, service_name, attributes, \
         resource_attributes, CAST(time AS BIGINT) AS t, value, count, sum, bucket_counts, \
         explicit_bounds, quantiles FROM metric_points \
         WHERE metric_name IN ('x_total') AND time >= to_timestamp_nanos({}) AND time <= to_timestamp_nanos({}) AND (flags & 1) = 0",
        (start - 300_000) * 1_000_000,
        end * 1_000_000 + 999_999
    );
    for i in 0..=args.runs.min(3) {
        let t = Instant::now();
        source.catalog(start - 300_000, end).await?;
        if i > 0 {
            catalog_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let t = Instant::now();
        let batches = store::query::collect(&bw.store, &sql).await?;
        if i > 0 {
            sql_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        sql_rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
        drop(batches);
        let t = Instant::now();
        let s = source
            .series(
                &[promql::Matcher {
                    name: "__name__".into(),
                    op: promql::MatchOp::Equal,
                    value: "x_total".into(),
                }],
                start - 300_000,
                end,
                true,
            )
            .await?;
        if i > 0 {
            fetch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        assert_eq!(s.len(), args.series);
        for q in [Q_RATE, Q_QUANTILE] {
            let t = Instant::now();
            engine.range(&source, q, start, end, 60_000).await?;
            if i > 0 {
                engine_ms
                    .entry(q)
                    .or_default()
                    .push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }

    // The timed runs, Burnwatch and Prometheus alternating.
    let queries = [Q_RATE, Q_QUANTILE];
    let mut times: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    let mut answers: BTreeMap<(usize, usize), Bytes> = BTreeMap::new();
    for run in 0..=args.runs {
        for (qi, q) in queries.iter().enumerate() {
            let mut targets = vec![(0, bw.web_url.clone())];
            if let Some(p) = &prom {
                targets.push((1, p.url.clone()));
            }
            for (sys, base) in targets {
                let (ms, body) = range_query(&client, &base, q, start, end).await?;
                if run > 0 {
                    times.entry((sys, qi)).or_default().push(ms);
                }
                answers.insert((sys, qi), body);
            }
        }
    }

    // ---- report
    println!(
        "\n## Remote-write ingest (POST /api/v1/write, {} senders, medians of {} runs, each on a fresh server)\n",
        args.senders, args.rw_runs
    );
    println!(
        "| server | request shape | samples/s | samples/s, second half | samples/s per core ({cores} cores) | CPU s per run | cores busy | samples per CPU-second | refused (429/503) | failed requests |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut bw_rates = Vec::new();
    for ((sys, si), runs) in &mut results {
        let mut rate: Vec<f64> = runs.iter().map(|p| p.samples_per_s).collect();
        let mut cpu: Vec<f64> = runs
            .iter()
            .map(|p| p.self_cpu + p.server_cpu.unwrap_or(0.0))
            .collect();
        let mut busy: Vec<f64> = runs
            .iter()
            .map(|p| (p.self_cpu + p.server_cpu.unwrap_or(0.0)) / p.seconds)
            .collect();
        let mut per_cpu: Vec<f64> = runs
            .iter()
            .map(|p| p.stats.accepted_samples as f64 / (p.self_cpu + p.server_cpu.unwrap_or(0.0)))
            .collect();
        let refused: u64 = runs.iter().map(|p| p.stats.refused).sum();
        let failed: u64 = runs.iter().map(|p| p.stats.failed_requests).sum();
        let r = median(&mut rate);
        let mut half: Vec<f64> = runs.iter().map(|p| p.second_half_per_s).collect();
        if *sys == 0 {
            bw_rates.push(r);
        }
        println!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {} |",
            if *sys == 0 {
                "Burnwatch (server + senders in one process)"
            } else {
                "Prometheus 2.42 (server + senders)"
            },
            SHAPES[*si].name,
            fmt_int(r),
            fmt_int(median(&mut half)),
            fmt_int(r / cores as f64),
            median(&mut cpu),
            median(&mut busy),
            fmt_int(median(&mut per_cpu)),
            refused,
            failed
        );
    }
    let lowest = bw_rates.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "\nremote-write target >= 300,000 samples/s: {} (lowest shape median {})",
        if lowest >= 300_000.0 {
            "met"
        } else {
            "NOT met"
        },
        fmt_int(lowest)
    );

    println!(
        "\n## PromQL range queries ({} + {} series, {} h, step 60 s = {} steps; 1 warm-up + {} timed runs; Burnwatch: all in Parquet, compacted)\n",
        args.series,
        args.series / 10 * 10,
        args.hours,
        (end - start) / 60_000 + 1,
        args.runs
    );
    println!(
        "| query | Burnwatch median ms | Prometheus median ms | Burnwatch / Prometheus | series (BW / Prom) | points (BW / Prom) | max relative difference | answers agree |"
    );
    println!("|---|---:|---:|---:|---|---|---:|---|");
    let mut worst_ratio: f64 = 0.0;
    for (qi, q) in queries.iter().enumerate() {
        let bw_ms = median(times.get_mut(&(0, qi)).map_or(&mut [][..], |v| &mut v[..]));
        let prom_ms = times.get_mut(&(1, qi)).map(|v| median(v));
        let bw_m = parse_matrix(&answers[&(0, qi)])?;
        let (ratio, agree) = match (prom_ms, answers.get(&(1, qi))) {
            (Some(p), Some(body)) => {
                let pm = parse_matrix(body)?;
                (Some(bw_ms / p), Some(compare(&bw_m, &pm)))
            }
            _ => (None, None),
        };
        if let Some(r) = ratio {
            worst_ratio = worst_ratio.max(r);
        }
        println!(
            "| `{q}` | {bw_ms:.1} | {} | {} | {} | {} | {} | {} |",
            prom_ms.map_or("-".into(), |v| format!("{v:.1}")),
            ratio.map_or("-".into(), |v| format!("{v:.2}")),
            agree
                .as_ref()
                .map_or(format!("{} / -", bw_m.len()), |a| format!(
                    "{} / {}",
                    a.series.0, a.series.1
                )),
            agree
                .as_ref()
                .map_or("-".into(), |a| format!("{} / {}", a.points.0, a.points.1)),
            agree
                .as_ref()
                .map_or("-".into(), |a| format!("{:.1e}", a.max_rel)),
            agree.as_ref().map_or("-".into(), |a| match &a.problem {
                None => "yes".to_string(),
                Some(p) => format!("NO: {p}"),
            }),
        );
    }
    println!(
        "\nBurnwatch breakdown (in process, medians of {}): reading the {} x_total series' samples (PromSource::series) {:.1} ms, of which its catalog query {:.1} ms and its sample query alone ({} rows, DataFusion, collected) {:.1} ms; engine alone (no HTTP/JSON): {}",
        fetch_ms.len(),
        args.series,
        median(&mut fetch_ms),
        median(&mut catalog_ms),
        fmt_int(sql_rows as f64),
        median(&mut sql_ms),
        queries
            .iter()
            .map(|q| format!(
                "`{q}` {:.1} ms",
                median(engine_ms.get_mut(q).map_or(&mut [][..], |v| &mut v[..]))
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "answer sizes (bytes, BW / Prom): {}",
        (0..queries.len())
            .map(|qi| format!(
                "{} / {}",
                answers[&(0, qi)].len(),
                answers.get(&(1, qi)).map_or(0, |b| b.len())
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if prom.is_some() {
        println!(
            "PromQL target Burnwatch <= 2x Prometheus: {} (worst ratio {worst_ratio:.2})",
            if worst_ratio <= 2.0 { "met" } else { "NOT met" }
        );
    }
    println!(
        "peak RSS of this process (Burnwatch + senders): {} MiB",
        peak_rss_bytes("self") / (1 << 20)
    );
    drop(prom);
    bw.shutdown().await?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}
