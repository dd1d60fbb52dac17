//! Durable write throughput of the store, bytes per span at rest, and the
//! disk's fsync latency, measured in one run. With `--storage-url`, every
//! configuration also runs with the bucket (files and manifest versions
//! uploaded before the WAL lets go), alternating with the local runs, and
//! the bucket's requests and bytes per flushed file and per span are shown.
//!
//! `cargo run --release -p burnwatch-bench --bin store-bench -- [--spans N] [--runs R] [--storage-url s3://bucket/prefix]`
//! (endpoint and credentials from the AWS_* variables)

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use arrow::array::RecordBatch;
use burnwatch_bench::{median, percentile};
use clap::Parser;
use store::{Store, StoreConfig, Table};

// jemalloc: less fragmentation than glibc malloc across the runtime's
// threads, so resident memory tracks live data.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Spans written per run.
    #[arg(long, default_value_t = 1_000_000)]
    spans: usize,
    /// Runs per configuration (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Directory on the disk to measure (default: ./target/bench-data).
    #[arg(long, default_value = "target/bench-data")]
    dir: std::path::PathBuf,
    /// Also run every configuration with this bucket (a new prefix per run).
    #[arg(long)]
    storage_url: Option<String>,
}

fn fsync_latency(dir: &std::path::Path) -> Result<(f64, f64)> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = vec![7u8; 4096];
    let mut lat = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((median(&mut lat.clone()), percentile(&mut lat, 0.99)))
}

struct RunResult {
    acked_per_s: f64,
    durable_per_s: f64,
    bytes_per_span_flushed: f64,
    bytes_per_span_compacted: f64,
    fsyncs: u64,
    files_flushed: u64,
    bucket: store::remote::CountsSnapshot,
}

async fn run(
    dir: &std::path::Path,
    batches: Arc<Vec<RecordBatch>>,
    writers: usize,
    bucket: Option<&str>,
) -> Result<RunResult> {
    let data = tempfile::tempdir_in(dir)?;
    let storage = match bucket {
        Some(url) => store::StorageConfig {
            // A fresh prefix per run: nothing from an earlier run is adopted.
            url: Some(format!(
                "{}/run-{}",
                url.trim_end_matches('/'),
                uuid::Uuid::new_v4().simple()
            )),
            node_id: Some("bench".into()),
            ..Default::default()
        },
        None => Default::default(),
    };
    let store = Store::open(StoreConfig {
        data_dir: data.path().to_path_buf(),
        max_buffer_bytes: 1 << 30,
        flush_bytes: 128 << 20,
        storage,
        ..Default::default()
    })
    .await?;
    let before = bucket_counts(&store);
    let token = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    store.spawn_background(token.clone(), &tracker).await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let batches = batches.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < batches.len() {
                loop {
                    match store.write(Table::Spans, batches[i].clone()).await {
                        Ok(_) => break,
                        Err(e) if e.is_retryable() => {
                            tokio::time::sleep(Duration::from_millis(2)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                i += writers;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let acked = started.elapsed();
    store.flush().await?;
    let durable = started.elapsed();
    let fsyncs = store
        .metrics()
        .wal_syncs
        .load(std::sync::atomic::Ordering::Relaxed);
    let files_flushed = store
        .metrics()
        .files_flushed
        .load(std::sync::atomic::Ordering::Relaxed);
    let flushed_counts = bucket_counts(&store) - before;
    let st = store.stats();
    let flushed_bytes = st.file_bytes[0] as f64 / st.file_rows[0] as f64;
    store
        .compact(store::now_ns() + 10 * 3_600_000_000_000)
        .await?;
    let st = store.stats();
    let compacted_bytes = st.file_bytes[0] as f64 / st.file_rows[0] as f64;
    token.cancel();
    tracker.close();
    tracker.wait().await;
    store.close().await?;
    Ok(RunResult {
        acked_per_s: rows as f64 / acked.as_secs_f64(),
        durable_per_s: rows as f64 / durable.as_secs_f64(),
        bytes_per_span_flushed: flushed_bytes,
        bytes_per_span_compacted: compacted_bytes,
        fsyncs,
        files_flushed,
        bucket: flushed_counts,
    })
}

fn bucket_counts(store: &Store) -> store::remote::CountsSnapshot {
    store
        .remote()
        .map(|r| r.counts().snapshot())
        .unwrap_or_default()
}

/// Parquet flush alone: every row buffered first, then one timed flush.
async fn flush_only(dir: &std::path::Path, batches: Arc<Vec<RecordBatch>>) -> Result<f64> {
    let data = tempfile::tempdir_in(dir)?;
    let store = Store::open(StoreConfig {
        data_dir: data.path().to_path_buf(),
        max_buffer_bytes: 4 << 30,
        flush_bytes: usize::MAX,
        flush_interval_secs: 1e9,
        ..Default::default()
    })
    .await?;
    for b in batches.iter() {
        store.write(Table::Spans, b.clone()).await?;
    }
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let t = Instant::now();
    store.flush().await?;
    let rate = rows as f64 / t.elapsed().as_secs_f64();
    store.close().await?;
    Ok(rate)
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!("generating {} spans ...", args.spans);
    let batches = Arc::new(burnwatch_bench::span_batches(args.spans, 42));
    let raw: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
    println!(
        "in-memory Arrow size: {:.0} bytes/span",
        raw as f64 / args.spans as f64
    );
    let (p50, p99) = fsync_latency(&args.dir)?;
    println!("fsync (4 KiB write + fdatasync): p50 {p50:.3} ms, p99 {p99:.3} ms");
    let mut f: Vec<f64> = (0..args.runs)
        .map(|_| rt.block_on(flush_only(&args.dir, batches.clone())))
        .collect::<Result<_>>()?;
    println!(
        "Parquet flush alone (all rows buffered, one flush, one core): {:.0} spans/s (median)\n",
        median(&mut f)
    );
    println!(
        "| storage | writer tasks | acked spans/s (median) | durable spans/s (median) | fsyncs per run | bytes/span flushed | bytes/span compacted | PUTs per flushed file | bytes uploaded per span |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut kinds: Vec<Option<&str>> = vec![None];
    if let Some(u) = args.storage_url.as_deref() {
        kinds.push(Some(u));
    }
    let rows_per_run: usize = batches.iter().map(|b| b.num_rows()).sum();
    for writers in [1, 2, 8] {
        // Local and bucket runs alternate, so drift in the machine's speed
        // falls on both.
        let mut acked = vec![Vec::new(); kinds.len()];
        let mut durable = vec![Vec::new(); kinds.len()];
        let mut last: Vec<Option<RunResult>> = (0..kinds.len()).map(|_| None).collect();
        for _ in 0..args.runs {
            for (k, kind) in kinds.iter().enumerate() {
                let r = rt.block_on(run(&args.dir, batches.clone(), writers, *kind))?;
                acked[k].push(r.acked_per_s);
                durable[k].push(r.durable_per_s);
                last[k] = Some(r);
            }
        }
        for (k, kind) in kinds.iter().enumerate() {
            let r = last[k].take().expect("at least one run");
            let (puts, up) = match kind {
                Some(_) => (
                    format!(
                        "{:.2}",
                        r.bucket.puts as f64 / r.files_flushed.max(1) as f64
                    ),
                    format!("{:.1}", r.bucket.bytes_up as f64 / rows_per_run as f64),
                ),
                None => ("-".into(), "-".into()),
            };
            println!(
                "| {} | {writers} | {:.0} | {:.0} | {} | {:.1} | {:.1} | {puts} | {up} |",
                if kind.is_some() { "bucket" } else { "local" },
                median(&mut acked[k]),
                median(&mut durable[k]),
                r.fsyncs,
                r.bytes_per_span_flushed,
                r.bytes_per_span_compacted
            );
        }
    }
    let (p50b, p99b) = fsync_latency(&args.dir)?;
    println!("\nfsync after the runs: p50 {p50b:.3} ms, p99 {p99b:.3} ms");
    Ok(())
}
