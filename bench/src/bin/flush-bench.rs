//! CPU time of one flush: sorting a buffer of spans into hour partitions
//! and writing them as Parquet files, as the store's flush does, against
//! the row-wise writer it replaced (every column of 16k sorted rows
//! gathered at once with Arrow's `interleave_record_batch`, then encoded),
//! alternating in one run. The rows are realistic span batches (512 spans
//! per request, the services interleaved), converted from OTLP as the
//! collector does.
//!
//! `cargo run --release -p burnwatch-bench --bin flush-bench -- [--spans N] [--runs R]`

use std::time::Instant;

use anyhow::Result;
use arrow::array::RecordBatch;
use arrow::compute::interleave_record_batch;
use burnwatch_bench::median;
use clap::Parser;
use parquet::arrow::ArrowWriter;
use store::Table;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Spans per flush.
    #[arg(long, default_value_t = 262_144)]
    spans: usize,
    /// Runs of each writer (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Directory the files are written in (default: ./target/bench-data).
    #[arg(long, default_value = "target/bench-data")]
    dir: std::path::PathBuf,
}

const ROW_GROUP_ROWS: usize = 64 * 1024;

/// The row-wise writer: 16k sorted rows of every column gathered at once,
/// then encoded.
fn row_wise(dir: &std::path::Path, batches: &[RecordBatch]) -> Result<u64> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    let mut bytes = 0;
    for (hour, order) in store::files::partition_sorted(Table::Spans, batches)? {
        let path = dir.join(format!("row-wise-{hour}.parquet"));
        let file = std::fs::File::create(&path)?;
        let props = store::files::writer_props(
            Table::Spans,
            ROW_GROUP_ROWS,
            store::files::FLUSH_ZSTD_LEVEL,
        );
        let mut w = ArrowWriter::try_new(file, Table::Spans.schema(), Some(props))?;
        for chunk in order.chunks(16 * 1024) {
            w.write(&interleave_record_batch(&refs, chunk)?)?;
        }
        let file = w.into_inner()?;
        file.sync_all()?;
        bytes += file.metadata()?.len();
        std::fs::remove_file(&path)?;
    }
    Ok(bytes)
}

/// The store's flush writer.
fn store_flush(dir: &std::path::Path, batches: &[RecordBatch]) -> Result<u64> {
    let mut id = 0;
    let files =
        store::files::write_flush(dir, Table::Spans, batches, ROW_GROUP_ROWS, 1, "", || {
            id += 1;
            id
        })?;
    let mut bytes = 0;
    for f in files {
        bytes += f.bytes;
        std::fs::remove_file(dir.join(&f.path))?;
    }
    Ok(bytes)
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let dir = tempfile::tempdir_in(&args.dir)?;
    let input = burnwatch_bench::span_batches(args.spans, 7);
    let spans: usize = input.iter().map(|b| b.num_rows()).sum();
    println!(
        "flush of {spans} spans in {} batches, {} runs each, alternating",
        input.len(),
        args.runs
    );
    let (mut old, mut new) = (Vec::new(), Vec::new());
    let (mut old_bytes, mut new_bytes) = (0, 0);
    for _ in 0..args.runs {
        let t = Instant::now();
        old_bytes = row_wise(dir.path(), &input)?;
        old.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        new_bytes = store_flush(dir.path(), &input)?;
        new.push(t.elapsed().as_secs_f64());
    }
    let show = |name: &str, times: &mut Vec<f64>, bytes: u64| {
        let m = median(times);
        println!(
            "{name:<28} median {:7.1} ms  ({:5.2} µs/span, {:7.0}k spans/s on one core)  {:5.1} bytes/span",
            m * 1e3,
            m * 1e6 / spans as f64,
            spans as f64 / m / 1e3,
            bytes as f64 / spans as f64,
        );
        m
    };
    let a = show("row-wise (before)", &mut old, old_bytes);
    let b = show("column-wise (store flush)", &mut new, new_bytes);
    println!(
        "store flush takes {:.0}% of the row-wise time",
        b / a * 100.0
    );
    Ok(())
}
