//! Distributed SQL against the local engine on the same bucket.
//!
//! Generates (or reuses) the query benchmark's dataset (`--spans`, a day of
//! the demo shop's journeys with their logs), uploads it to a `file://`
//! bucket, and times, in one run, each query on:
//! - the local engine of a query node over the bucket (`store::sql::run`:
//!   one thread per query);
//! - a Ballista cluster (this process's scheduler, executors in child
//!   processes of this binary) with one executor, then with two.
//!
//! Queries: per-operation p99 by hour over the 24 h, a spans-logs join, and
//! a trivial query over one minute of data (the planning and dispatch
//! overhead). Cold is the first run, warm the median of `--runs` more.
//!
//! `cargo run --release -p burnwatch-bench --bin ballista-bench -- --spans 2000000`

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use burnwatch_bench::dataset::{self, DAY};
use clap::Parser;
use store::sql::{QueryLimits, RemoteEngine as _};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
struct Args {
    /// Where the dataset is generated (and reused from).
    #[arg(long, default_value = "/tmp/burnwatch-bench/ballista-data")]
    data_dir: PathBuf,
    /// Spans in the dataset.
    #[arg(long, default_value_t = 2_000_000)]
    spans: u64,
    /// Generate the dataset again even if one of that size exists.
    #[arg(long)]
    regenerate: bool,
    /// Warm runs per query (after one cold run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Tasks each executor runs at once.
    #[arg(long, default_value_t = 2)]
    concurrent_tasks: usize,
    /// Internal: run an executor for the scheduler on this port.
    #[arg(long, hide = true)]
    executor_for: Option<u16>,
    /// Internal: the executor's ports (Flight, gRPC) and work directory.
    #[arg(long, hide = true, num_args = 2)]
    executor_ports: Vec<u16>,
    #[arg(long, hide = true)]
    executor_dir: Option<PathBuf>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A query's name, (cold, warm) ms on local / 1 executor / 2 executors, rows.
type Row = (String, [(f64, f64); 3], usize);

struct Executor(Child);

impl Drop for Executor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_executor(scheduler_port: u16, dir: &Path, tasks: usize) -> anyhow::Result<Executor> {
    Ok(Executor(
        Command::new(std::env::current_exe()?)
            .arg("--executor-for")
            .arg(scheduler_port.to_string())
            .arg("--executor-ports")
            .arg(free_port().to_string())
            .arg(free_port().to_string())
            .arg("--executor-dir")
            .arg(dir)
            .arg("--concurrent-tasks")
            .arg(tasks.to_string())
            .stdout(Stdio::null())
            .spawn()?,
    ))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    if let Some(port) = args.executor_for {
        let e = distributed::ExecutorArgs {
            bind_host: "127.0.0.1".into(),
            bind_port: args.executor_ports[0],
            bind_grpc_port: args.executor_ports[1],
            external_host: None,
            scheduler_host: "127.0.0.1".into(),
            scheduler_port: port,
            concurrent_tasks: Some(args.concurrent_tasks),
            work_dir: None,
            memory_limit: None,
            scheduling_policy: distributed::Policy::PushStaged,
        };
        let dir = args.executor_dir.clone().context("--executor-dir")?;
        return rt
            .block_on(distributed::run_executor(&e, None, dir))
            .map_err(anyhow::Error::msg);
    }
    rt.block_on(bench(args))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let meta = dataset::load_or_generate(&args.data_dir, args.spans, args.regenerate).await?;
    let root = args
        .data_dir
        .parent()
        .unwrap_or(&args.data_dir)
        .to_path_buf();
    let bucket = root.join("ballista-bucket");
    let _ = std::fs::remove_dir_all(&bucket);
    std::fs::create_dir_all(&bucket)?;
    let storage = store::StorageConfig {
        url: Some(format!("file://{}", bucket.canonicalize()?.display())),
        node_id: Some("bench".into()),
        ..Default::default()
    };
    let (_, _copy) = burnwatch_bench::bucket::upload(&args.data_dir, &storage).await?;
    let cache = tempfile::tempdir_in(&root)?;
    let store = burnwatch_bench::bucket::query_node(&storage, cache.path()).await?;
    let limits = QueryLimits {
        max_rows: 1_000_000,
        timeout_secs: 600.0,
        memory_bytes: 4 << 30,
        max_result_bytes: 1 << 30,
        ..Default::default()
    };

    // The scheduler in this process.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sched = distributed::SchedulerArgs {
        bind_host: "127.0.0.1".into(),
        bind_port: 0,
        external_host: None,
        scheduling_policy: distributed::Policy::PushStaged,
    };
    tokio::spawn(async move {
        let r = distributed::run_scheduler(
            &sched,
            None,
            |addr| {
                let _ = tx.send(addr);
            },
            std::future::pending(),
        )
        .await;
        if let Err(e) = r {
            eprintln!("scheduler: {e}");
        }
    });
    let addr = rx.await.context("the scheduler did not start")?;
    let work = tempfile::tempdir_in(&root)?;
    let first = spawn_executor(addr.port(), &work.path().join("e1"), args.concurrent_tasks)?;
    let engine = distributed::BallistaEngine::new(
        &format!("df://{addr}"),
        store.remote().map(|r| r.as_ref()),
    )
    .map_err(anyhow::Error::msg)?;

    let end = meta.end;
    let minute = end - 60_000_000_000;
    let queries = [
        (
            "p99 per operation by hour, 24 h",
            format!(
                "SELECT date_trunc('hour', start_time) AS hour, service_name, name, count(*) AS n, \
                 approx_percentile_cont(duration_ns, 0.99) AS p99 FROM spans \
                 WHERE start_time >= to_timestamp_nanos({}) GROUP BY 1, 2, 3",
                end - DAY
            ),
        ),
        (
            "spans-logs join, 24 h",
            "SELECT s.service_name, l.severity_text, count(*) AS n, avg(s.duration_ns) AS mean_ns \
             FROM spans s JOIN logs l ON s.trace_id = l.trace_id AND s.span_id = l.span_id \
             GROUP BY 1, 2"
                .to_string(),
        ),
        (
            "trivial: count of the last minute",
            format!(
                "SELECT count(*) AS n FROM spans WHERE start_time >= to_timestamp_nanos({minute})"
            ),
        ),
    ];
    // Ready once one query runs through the cluster.
    for _ in 0..100 {
        if engine.run(&store, &queries[2].1, &limits).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "dataset: {} spans, {} logs over 24 h; {} warm runs per query; executors run {} tasks at once",
        meta.spans, meta.logs, args.runs, args.concurrent_tasks
    );
    let mut rows: Vec<Row> = Vec::new();
    for (name, sql) in &queries {
        let local = dataset::time(args.runs, || async {
            Ok(store::sql::run(&store, sql, &limits).await?.num_rows())
        })
        .await?;
        let one = dataset::time(args.runs, || async {
            Ok(engine.run(&store, sql, &limits).await?.num_rows())
        })
        .await?;
        let n = store::sql::run(&store, sql, &limits).await?.num_rows();
        let b = engine.run(&store, sql, &limits).await?.num_rows();
        anyhow::ensure!(n == b, "{name}: {n} rows locally, {b} through Ballista");
        rows.push((name.to_string(), [local, one, (0.0, 0.0)], n));
    }
    let second = spawn_executor(addr.port(), &work.path().join("e2"), args.concurrent_tasks)?;
    // Let the second executor register (and a query warm it up).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, (_, sql)) in queries.iter().enumerate() {
        rows[i].1[2] = dataset::time(args.runs, || async {
            Ok(engine.run(&store, sql, &limits).await?.num_rows())
        })
        .await?;
    }
    println!(
        "{:<36} {:>6} | {:>10} {:>10} | {:>10} {:>10} | {:>10} {:>10}",
        "query", "rows", "local cold", "warm ms", "1 ex cold", "warm ms", "2 ex cold", "warm ms"
    );
    for (name, t, n) in &rows {
        println!(
            "{name:<36} {n:>6} | {:>10.0} {:>10.0} | {:>10.0} {:>10.0} | {:>10.0} {:>10.0}",
            t[0].0, t[0].1, t[1].0, t[1].1, t[2].0, t[2].1
        );
    }
    drop(second);
    drop(first);
    Ok(())
}
