//! Memory and time of one compaction merge: flushed spans files of one hour
//! (written by the store's flush) merged into one file as compaction does,
//! with the settings compared in one run, alternating. The heap is sampled
//! every millisecond from jemalloc's statistics while the merge runs
//! (`allocated`: live allocations; `resident`: the allocator's resident
//! pages); the figures are the peaks above what was held before it started.
//!
//! `cargo run --release -p burnwatch-bench --bin compact-bench -- [--files N] [--spans-per-file S] [--runs R]`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use burnwatch_bench::median;
use clap::Parser;
use store::Table;
use store::files::{COMPACT_ZSTD_LEVEL, merge_files, merge_read_rows, write_flush, writer_props};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Flushed files merged.
    #[arg(long, default_value_t = 24)]
    files: usize,
    /// Spans per flushed file.
    #[arg(long, default_value_t = 32_768)]
    spans_per_file: usize,
    /// Runs of each setting (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Narrow spans instead of realistic ones: one span per trace, one
    /// 16-byte attribute, 1 µs apart (as the overload test sends).
    #[arg(long)]
    narrow: bool,
    /// Directory the files are written in (default: ./target/bench-data).
    #[arg(long, default_value = "target/bench-data")]
    dir: PathBuf,
}

/// One setting under test.
struct Setting {
    name: String,
    read_rows: usize,
    row_group_rows: usize,
}

struct Run {
    secs: f64,
    peak_allocated: u64,
    peak_resident: u64,
    bytes_per_span: f64,
}

fn heap() -> (u64, u64) {
    use tikv_jemalloc_ctl::{epoch, stats};
    let _ = epoch::advance();
    (
        stats::allocated::read().unwrap_or(0) as u64,
        stats::resident::read().unwrap_or(0) as u64,
    )
}

fn run(dir: &Path, inputs: &[PathBuf], hour: i64, rows: u64, setting: &Setting) -> Result<Run> {
    let (base_allocated, base_resident) = heap();
    let stop = Arc::new(AtomicBool::new(false));
    let peaks = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let sampler = {
        let (stop, peaks) = (stop.clone(), peaks.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let (a, r) = heap();
                peaks[0].fetch_max(a, Ordering::Relaxed);
                peaks[1].fetch_max(r, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let t = Instant::now();
    let written = merge_files(
        dir,
        Table::Spans,
        hour,
        "merged.parquet",
        writer_props(
            Table::Spans,
            setting.row_group_rows.min(rows as usize),
            COMPACT_ZSTD_LEVEL,
        ),
        inputs,
        setting.read_rows,
    );
    let secs = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let written = written?;
    anyhow::ensure!(
        written.rows == rows,
        "merged {} rows of {rows}",
        written.rows
    );
    std::fs::remove_file(dir.join(&written.path))?;
    // Let the merge's freed pages go back before the next baseline.
    std::thread::sleep(Duration::from_millis(1500));
    Ok(Run {
        secs,
        peak_allocated: peaks[0]
            .load(Ordering::Relaxed)
            .saturating_sub(base_allocated),
        peak_resident: peaks[1]
            .load(Ordering::Relaxed)
            .saturating_sub(base_resident),
        bytes_per_span: written.bytes as f64 / rows as f64,
    })
}

/// Spans `first..first + n` in requests of 1000: one span per trace, one
/// 16-byte attribute, 1 µs apart.
fn narrow_batches(first: u64, n: u64) -> Vec<arrow::array::RecordBatch> {
    use opentelemetry_proto::tonic::trace::v1::Span;
    use testkit::otlp::{kv, spans_request};
    let base = 1_763_700_000_000_000_000u64;
    (first..first + n)
        .step_by(1000)
        .map(|from| {
            let spans = (from..(from + 1000).min(first + n))
                .map(|i| Span {
                    trace_id: (u128::from(i) << 8 | 1).to_be_bytes().to_vec(),
                    span_id: (i + 1).to_be_bytes().to_vec(),
                    name: "GET /".into(),
                    kind: 2,
                    start_time_unix_nano: base + i * 1000,
                    end_time_unix_nano: base + 2_000_000 + i * 1000,
                    attributes: vec![kv("payload", &format!("{i:0>16}"))],
                    ..Default::default()
                })
                .collect();
            let req = spans_request(vec![kv("service.name", "items")], spans);
            collector::convert::spans(&req, &collector::convert::ConvertOptions::default())
                .batch
                .expect("valid spans")
        })
        .collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let dir = tempfile::tempdir_in(&args.dir)?;
    let mut inputs = Vec::new();
    let (mut rows, mut hour, mut id, mut decoded) = (0u64, 0i64, 0u64, 0usize);
    for i in 0..args.files {
        let batches = if args.narrow {
            narrow_batches((i * args.spans_per_file) as u64, args.spans_per_file as u64)
        } else {
            burnwatch_bench::span_batches(args.spans_per_file, 100 + i as u64)
        };
        decoded += batches
            .iter()
            .map(|b| b.get_array_memory_size())
            .sum::<usize>();
        for f in write_flush(dir.path(), Table::Spans, &batches, 64 * 1024, 1, "", || {
            id += 1;
            id
        })? {
            rows += f.rows;
            hour = f.hour;
            inputs.push(dir.path().join(&f.path));
        }
    }
    anyhow::ensure!(
        inputs.len() == args.files,
        "the spans span more than one hour"
    );
    let store_rule = merge_read_rows(inputs.len());
    let settings = [
        Setting {
            name: "8192 rows per input (before), 1M-row row groups".into(),
            read_rows: 8192,
            row_group_rows: 1 << 20,
        },
        Setting {
            name: format!("{store_rule} rows per input (store), 1M-row row groups"),
            read_rows: store_rule,
            row_group_rows: 1 << 20,
        },
        Setting {
            name: format!("{store_rule} rows per input (store), 64k-row row groups"),
            read_rows: store_rule,
            row_group_rows: 64 * 1024,
        },
    ];
    println!(
        "merge of {} flushed files, {rows} spans ({:.0} bytes/span decoded); {} runs per setting, alternating",
        inputs.len(),
        decoded as f64 / rows as f64,
        args.runs
    );
    let mut results: Vec<Vec<Run>> = settings.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.runs {
        for (s, out) in settings.iter().zip(results.iter_mut()) {
            out.push(run(dir.path(), &inputs, hour, rows, s)?);
        }
    }
    println!(
        "| setting | time, ms | µs/span | peak heap (allocated), MiB | peak allocator resident, MiB | bytes/span |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    const MIB: f64 = (1 << 20) as f64;
    for (s, runs) in settings.iter().zip(results) {
        let mut secs: Vec<f64> = runs.iter().map(|r| r.secs).collect();
        let mut alloc: Vec<f64> = runs.iter().map(|r| r.peak_allocated as f64).collect();
        let mut res: Vec<f64> = runs.iter().map(|r| r.peak_resident as f64).collect();
        let m = median(&mut secs);
        println!(
            "| {} | {:.0} | {:.2} | {:.1} | {:.1} | {:.2} |",
            s.name,
            m * 1e3,
            m * 1e6 / rows as f64,
            median(&mut alloc) / MIB,
            median(&mut res) / MIB,
            runs[0].bytes_per_span,
        );
    }
    Ok(())
}
