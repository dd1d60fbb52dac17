//! Query benchmark: demo-like traffic over 24 hours (10M spans by default,
//! 4 to 10 spans per trace, 1.25M logs),
//! then RED per service (1 h and 24 h, from rollups and from raw spans), a
//! RED time series per operation (1-minute step over 24 h), trace by id,
//! trace search and log search, each as a median of several runs; and the
//! same RED queries run by DuckDB over the same Parquet files in the same run.
//!
//! ```sh
//! cargo build --release -p burnwatch-bench
//! ./target/release/query-bench --spans 10000000 --runs 7 --data-dir /var/tmp/bw-query
//! ```
//! The data directory is kept; a second run with the same `--data-dir` and
//! `--spans` reuses it (`--regenerate` forces a new dataset).
//!
//! With `--storage-url s3://bucket/prefix` (endpoint and credentials from
//! the AWS_* variables), the dataset is also uploaded to the bucket and the
//! RED and trace-by-id queries run both on local disk and as a query node
//! reads the bucket, cold (a fresh store and caches) and warm, with the
//! object-store requests of each.

use std::path::{Path, PathBuf};
use std::time::Instant;

use analytics::red::{self, Window};
use analytics::rollup::Rollups;
use anyhow::Context;
use burnwatch_bench::dataset::{DAY, HOUR, load_or_generate, store_config, time};
use clap::Parser;
use slo_engine::evaluate::evaluate;
use slo_engine::sli::SliCounter;
use store::Store;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Spans to generate (6.4 per trace on average).
    #[arg(long, default_value_t = 10_000_000)]
    spans: u64,
    /// Timed runs per query (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Where the dataset lives (kept between runs).
    #[arg(long, default_value = "target/bench-query")]
    data_dir: PathBuf,
    /// Generate a new dataset even if one exists.
    #[arg(long)]
    regenerate: bool,
    /// Also measure the queries through this bucket (`s3://...` or
    /// `file:///...`), against local disk in the same run.
    #[arg(long)]
    storage_url: Option<String>,
    /// Python with DuckDB for the comparison.
    #[arg(long, env = "BURNWATCH_PYTHON", default_value = "python3")]
    python: String,
}

fn duckdb(args: &Args, files: &Path, windows: &[(i64, i64)]) -> anyhow::Result<Vec<f64>> {
    let w: Vec<String> = windows
        .iter()
        .map(|(a, b)| format!("({}, {})", a / 1000, b / 1000))
        .collect();
    let script = format!(
        r#"
import duckdb, statistics, time, json
con = duckdb.connect()
con.execute("SET threads TO 2")
out = []
for (a, b) in [{windows}]:
    q = f"""SELECT service_name, count(*) AS requests,
       sum(CASE WHEN status_code = 'ERROR' OR coalesce(http_response_status_code, 0) >= 500 THEN 1 ELSE 0 END) AS errors,
       quantile_cont(duration_ns, [0.5, 0.9, 0.95, 0.99]) AS p
       FROM read_parquet('{root}/spans/**/*.parquet')
       WHERE kind = 'SERVER' AND start_time >= make_timestamp({{a}}) AND start_time < make_timestamp({{b}})
       GROUP BY 1 ORDER BY 1"""
    con.execute(q).fetchall()
    ts = []
    for _ in range({runs}):
        t = time.perf_counter(); rows = con.execute(q).fetchall(); ts.append((time.perf_counter() - t) * 1e3)
    out.append(statistics.median(ts))
print(json.dumps(out))
"#,
        windows = w.join(", "),
        root = files.display(),
        runs = args.runs,
    );
    let out = std::process::Command::new(&args.python)
        .args(["-c", &script])
        .output()
        .context("running python")?;
    anyhow::ensure!(
        out.status.success(),
        "DuckDB failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn row(name: &str, (first, med): (f64, f64), note: &str) {
    println!("| {name} | {med:.1} | {first:.1} | {note} |");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let meta = load_or_generate(&args.data_dir, args.spans, args.regenerate).await?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    if let Some(url) = &args.storage_url {
        return through_bucket(&args, url, &data_dir, &meta).await;
    }
    let store = Store::open_read_only(store_config(&data_dir)).await?;
    let stats = store.stats();
    println!(
        "dataset: {} spans, {} logs over 24 h in {}, {:?}",
        meta.spans,
        meta.logs,
        data_dir.display(),
        stats
    );
    let end = meta.end - 7_300_000_000; // not on a minute boundary
    let hour = Window::new(end - HOUR, end)?;
    let day = Window::new(end - DAY, end)?;

    // Rollups: computed (or read) once, as the server does in the background.
    let rollups = Rollups::new(store.clone(), analytics::rollup::DEFAULT_CACHE_BYTES);
    let t = Instant::now();
    for w in [&day] {
        rollups.services(w).await?;
    }
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "rollups ready in {build_ms:.0} ms ({} computed, {} loaded from files, {} bytes cached)",
        rollups
            .metrics
            .computed
            .load(std::sync::atomic::Ordering::Relaxed),
        rollups
            .metrics
            .loaded
            .load(std::sync::atomic::Ordering::Relaxed),
        rollups.cache_bytes()
    );
    let t = Instant::now();
    let built = rollups.traces.maintain().await?;
    println!(
        "trace-id filters ready in {:.0} ms ({built} built, {} bytes cached)",
        t.elapsed().as_secs_f64() * 1e3,
        rollups.traces.cache_bytes()
    );

    let duck = duckdb(
        &args,
        &data_dir,
        &[(hour.from_ns, hour.to_ns), (day.from_ns, day.to_ns)],
    );
    println!("\n| query | median ms | first run ms | note |\n|---|---:|---:|---|");
    let r = &rollups;
    let s = &store;
    row(
        "RED per service, 1 h (rollups + raw edges)",
        time(args.runs, || async { Ok(r.services(&hour).await?) }).await?,
        "",
    );
    row(
        "RED per service, 1 h (raw spans, exact percentiles)",
        time(args.runs, || async { Ok(red::services(s, &hour).await?) }).await?,
        "",
    );
    match &duck {
        Ok(d) => println!(
            "| RED per service, 1 h (DuckDB, same files) | {:.1} | | |",
            d[0]
        ),
        Err(e) => println!("| RED per service, 1 h (DuckDB) | | | not run: {e} |"),
    }
    row(
        "RED per service, 24 h (rollups + raw edges)",
        time(args.runs, || async { Ok(r.services(&day).await?) }).await?,
        "",
    );
    row(
        "RED per service, 24 h (raw spans, exact percentiles)",
        time(args.runs.min(3), || async {
            Ok(red::services(s, &day).await?)
        })
        .await?,
        "",
    );
    if let Ok(d) = &duck {
        println!(
            "| RED per service, 24 h (DuckDB, same files) | {:.1} | | |",
            d[1]
        );
    }
    let day_m = Window::new((end - DAY) / 60_000_000_000 * 60_000_000_000, end)?;
    let op = "POST /api/checkout";
    row(
        "RED series of one operation, 1-min step over 24 h (rollups)",
        time(args.runs, || async {
            Ok(r.series("gateway", Some(op), &day_m, 60).await?)
        })
        .await?,
        "1440 points",
    );
    row(
        "RED series of one operation, 1-min step over 24 h (raw spans)",
        time(args.runs.min(3), || async {
            Ok(red::series(s, "gateway", Some(op), &day_m, 60).await?)
        })
        .await?,
        "1440 points",
    );
    // Span metrics and service-graph metrics through the PromQL engine, as
    // Grafana asks for them (24 h, 1-minute steps).
    let engine = promql::Engine::new(promql::EngineOptions::default());
    let source = analytics::prom::PromSource::with_rollups(rollups.clone());
    let (day_start_ms, day_end_ms) = (day_m.from_ns / 1_000_000, day_m.to_ns / 1_000_000);
    for (name, q, note) in [
        (
            "span metrics: sum by (service) (rate(calls[5m])), 24 h, 1-min steps",
            "sum by (service) (rate(traces_spanmetrics_calls_total{span_kind=\"SPAN_KIND_SERVER\"}[5m]))",
            "from the rollups",
        ),
        (
            "span metrics: p95 by service (histogram_quantile), 24 h, 1-min steps",
            "histogram_quantile(0.95, sum by (service, le) (rate(traces_spanmetrics_duration_seconds_bucket{span_kind=\"SPAN_KIND_SERVER\"}[5m])))",
            "from the rollups",
        ),
        (
            "service graph: sum by (client, server) (rate(request_total[5m])), 24 h, 1-min steps",
            "sum by (client, server) (rate(traces_service_graph_request_total[5m]))",
            "first run joins 25 hours of spans; later runs: settled hours cached",
        ),
    ] {
        let (e, src) = (&engine, &source);
        row(
            name,
            time(args.runs, || async {
                Ok(e.range(src, q, day_start_ms, day_end_ms, 60_000).await?)
            })
            .await?,
            note,
        );
    }
    let jq = analytics::jaeger::TraceQuery {
        service: Some("payments".into()),
        tags: vec![("error".into(), "true".into())],
        start_ns: hour.from_ns,
        end_ns: hour.to_ns,
        limit: 20,
        ..Default::default()
    };
    for (label, index) in [
        ("Parquet statistics and bloom filters", None),
        ("trace-id filters", Some(&r.traces)),
    ] {
        row(
            &format!(
                "Jaeger API search: payments, error=true, last hour, 20 traces (whole traces; {label})"
            ),
            time(args.runs, || async {
                Ok(analytics::jaeger::find_traces(s, index, &jq).await?)
            })
            .await?,
            "",
        );
    }
    let trace = meta.trace.clone();
    let n = analytics::search::trace(&r.traces, &trace).await?["spans"]
        .as_array()
        .map_or(0, |a| a.len());
    let skipped = r
        .traces
        .metrics
        .files_skipped
        .load(std::sync::atomic::Ordering::Relaxed);
    row(
        "trace by id (all 24 h, trace-id filters)",
        time(args.runs, || async {
            Ok(analytics::search::trace(&r.traces, &trace).await?)
        })
        .await?,
        &format!("{n} spans; {skipped} of the files skipped"),
    );
    // Baseline: the same lookups over every file (Parquet bloom filters only).
    let spans_sql =
        format!("SELECT * FROM spans WHERE trace_id = '{trace}' ORDER BY start_time, span_id");
    let logs_sql = format!("SELECT * FROM logs WHERE trace_id = '{trace}' ORDER BY time");
    row(
        "trace by id (all 24 h, every file, Parquet bloom filters only)",
        time(args.runs, || async {
            let (a, b) = tokio::join!(
                store::query::collect(s, &spans_sql),
                store::query::collect(s, &logs_sql)
            );
            Ok((a?, b?))
        })
        .await?,
        "baseline",
    );
    let search = analytics::search::TraceSearch {
        service: Some("payments".into()),
        status: Some("error".into()),
        limit: Some(20),
        ..Default::default()
    };
    for (label, index) in [
        ("Parquet statistics and bloom filters", None),
        ("trace-id filters", Some(&rollups.traces)),
    ] {
        row(
            &format!("trace search: payments errors, last 1 h, 20 newest ({label})"),
            time(args.runs, || async {
                Ok(analytics::search::search_traces(
                    s,
                    index,
                    &search,
                    &[],
                    hour.from_ns,
                    hour.to_ns,
                )
                .await?)
            })
            .await?,
            "",
        );
    }
    let logs = analytics::search::LogSearch {
        q: Some("timeout".into()),
        limit: Some(100),
        ..Default::default()
    };
    row(
        "log search: \"timeout\", last 1 h, 100 newest",
        time(args.runs, || async {
            Ok(
                analytics::search::search_logs(s, None, &logs, &[], hour.from_ns, hour.to_ns)
                    .await?,
            )
        })
        .await?,
        "",
    );
    row(
        "log search: \"timeout\", 24 h, 100 newest",
        time(args.runs, || async {
            Ok(analytics::search::search_logs(s, None, &logs, &[], day.from_ns, day.to_ns).await?)
        })
        .await?,
        "",
    );

    // A week of logs (the day's volume every day), in a store of its own.
    let week_dir = data_dir.with_file_name(format!(
        "{}-logs-week",
        data_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("data")
    ));
    let t = Instant::now();
    let week_logs =
        burnwatch_bench::dataset::load_or_generate_log_week(&week_dir, meta.end, 7, meta.logs)
            .await?;
    println!(
        "week of logs: {week_logs} records over 7 days in {} ({:.0} s to open or generate)",
        week_dir.display(),
        t.elapsed().as_secs_f64()
    );
    let week_store = Store::open_read_only(store_config(&week_dir)).await?;
    let w = &week_store;
    let week = Window::new(end - 7 * DAY, end)?;
    let rare = analytics::search::LogSearch {
        q: Some(burnwatch_bench::dataset::RARE_LOG_TEXT.into()),
        limit: Some(100),
        ..Default::default()
    };
    let texts = analytics::text_index::TextIndex::new(week_store.clone(), 1 << 30);
    let t = Instant::now();
    let built = texts.maintain().await?;
    let data_bytes: u64 = week_store
        .file_metas(store::Table::Logs)
        .iter()
        .map(|f| f.bytes)
        .sum();
    println!(
        "log text filters: {built} built in {:.0} ms, {} bytes for {} bytes of logs files ({:.1} MB per GB)",
        t.elapsed().as_secs_f64() * 1e3,
        texts.cache_bytes(),
        data_bytes,
        texts.cache_bytes() as f64 / data_bytes.max(1) as f64 * 1e3
    );
    for (label, index) in [("scan", None), ("text index", Some(&texts))] {
        row(
            &format!("log search: \"timeout\", 7 d, 100 newest ({label})"),
            time(args.runs, || async {
                Ok(
                    analytics::search::search_logs(w, index, &logs, &[], week.from_ns, week.to_ns)
                        .await?,
                )
            })
            .await?,
            "",
        );
        let found =
            analytics::search::search_logs(w, index, &rare, &[], week.from_ns, week.to_ns).await?;
        row(
            &format!(
                "log search: a rare text (3 records, 6-7 days old), 7 d, {} found ({label})",
                found["logs"].as_array().map_or(0, |a| a.len())
            ),
            time(args.runs, || async {
                Ok(
                    analytics::search::search_logs(w, index, &rare, &[], week.from_ns, week.to_ns)
                        .await?,
                )
            })
            .await?,
            "",
        );
    }
    week_store.close().await?;

    // SLO status: the shipped checkout SLO (30-day window; the data is 24 h).
    let slos = slo_engine::openslo::load_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../alert-rules"),
    )?;
    let slo = slos
        .iter()
        .find(|x| x.name == "checkout-availability")
        .context("the shipped checkout-availability SLO")?;
    let counter = SliCounter::new(store.clone(), slo_engine::sli::DEFAULT_CACHE_BYTES);
    let t = Instant::now();
    let status = evaluate(&counter, slo, end).await?;
    let cold_ms = t.elapsed().as_secs_f64() * 1e3;
    let computed = counter
        .metrics
        .computed
        .load(std::sync::atomic::Ordering::Relaxed);
    row(
        "SLO status, checkout-availability: 30 d + 8 tier windows (SLI rollups + raw edges)",
        time(args.runs, || async {
            Ok(evaluate(&counter, slo, end).await?)
        })
        .await?,
        &format!(
            "{} events, {} bad; before timing, the first evaluation computed {computed} SLI rollups in {cold_ms:.0} ms",
            status.total, status.bad
        ),
    );
    // Baseline: one scan of the raw spans, a CASE per window (exact too).
    let (total, bad) = slo.sli.source.span_predicates().context("a span SLI")?;
    let mut lengths: Vec<i64> = vec![30 * DAY];
    for t in &slo.tiers {
        lengths.push(t.long.as_nanos() as i64);
        lengths.push(t.short.as_nanos() as i64);
    }
    let cols: Vec<String> = lengths
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "sum(CASE WHEN start_time >= to_timestamp_nanos({a}) THEN 1 ELSE 0 END) AS t{i}, \
                 sum(CASE WHEN start_time >= to_timestamp_nanos({a}) AND ({bad}) THEN 1 ELSE 0 END) AS b{i}",
                a = end - l
            )
        })
        .collect();
    let raw_sql = format!(
        "SELECT {} FROM spans WHERE ({total}) AND start_time >= to_timestamp_nanos({}) AND start_time < to_timestamp_nanos({end})",
        cols.join(", "),
        end - 30 * DAY
    );
    row(
        "SLO status windows from raw spans (one scan, a CASE per window)",
        time(args.runs.min(3), || async {
            Ok(store::query::collect(s, &raw_sql).await?)
        })
        .await?,
        "baseline",
    );

    // A grouped SLO: every SERVER span with a route, one instance per
    // (service, route), all counted in one pass; against evaluating each
    // instance on its own (its own filter and rollups, warmed first).
    let grouped = slo_engine::openslo::load_str(
        Path::new("grouped.yaml"),
        "apiVersion: openslo/v1\nkind: SLO\nmetadata: {name: routes}\nspec:\n  service: shop\n  \
         groupBy: [service.name, http.route]\n  indicator:\n    metadata: {name: route-errors}\n    spec:\n      \
         ratioMetric:\n        bad: {metricSource: {type: burnwatch, spec: {where: \"http_route IS NOT NULL\", errors: true}}}\n        \
         total: {metricSource: {type: burnwatch, spec: {where: \"http_route IS NOT NULL\"}}}\n  \
         timeWindow: [{duration: 30d, isRolling: true}]\n  objectives: [{target: 0.999}]\n",
    )?
    .remove(0);
    let t = Instant::now();
    let g = slo_engine::evaluate::evaluate_group(&counter, &grouped, end, &[], 500).await?;
    let cold_ms = t.elapsed().as_secs_f64() * 1e3;
    let events: u64 = g.instances.iter().map(|s| s.total).sum();
    row(
        "grouped SLO (service.name, http.route), every instance in one pass",
        time(args.runs, || async {
            Ok(slo_engine::evaluate::evaluate_group(&counter, &grouped, end, &[], 500).await?)
        })
        .await?,
        &format!(
            "{} instances, {events} events; the first evaluation (computing the grouped rollups) took {cold_ms:.0} ms",
            g.instances.len()
        ),
    );
    let alone: Vec<slo_engine::openslo::Slo> = g
        .instances
        .iter()
        .map(|s| grouped.instance_for(s))
        .collect();
    for d in &alone {
        evaluate(&counter, d, end).await?;
    }
    row(
        "the same instances evaluated one by one (each its own rollups, warm)",
        time(args.runs.min(3), || async {
            for d in &alone {
                evaluate(&counter, d, end).await?;
            }
            Ok(())
        })
        .await?,
        "baseline",
    );
    Ok(())
}

/// Local disk against a query node reading the bucket, in one run.
async fn through_bucket(
    args: &Args,
    url: &str,
    data_dir: &Path,
    meta: &burnwatch_bench::dataset::Meta,
) -> anyhow::Result<()> {
    use burnwatch_bench::bucket::{Measured, measure, query_node, upload, windows};
    let storage = store::StorageConfig {
        url: Some(url.to_string()),
        node_id: Some("bench".into()),
        ..Default::default()
    };
    let (secs, copy) = upload(data_dir, &storage).await?;
    let data_dir = copy.path().join("data");
    let data_dir = data_dir.as_path();
    println!(
        "dataset: {} spans, {} logs; uploaded to {url} with its rollups and trace-id filters in {secs:.1} s",
        meta.spans, meta.logs
    );
    let end = meta.end - 7_300_000_000;
    let (hour, day) = windows(end)?;
    let trace = meta.trace.clone();
    let cache = tempfile::tempdir()?;
    let mut rows: Vec<(String, Measured, Measured, String)> = Vec::new();
    // Each query gets fresh stores, so its first run is cold on both sides.
    for name in [
        "RED per service, 1 h",
        "RED per service, 24 h",
        "trace by id, 24 h",
    ] {
        let local = Store::open_read_only(store_config(data_dir)).await?;
        let lr = Rollups::new(local.clone(), analytics::rollup::DEFAULT_CACHE_BYTES);
        let _ = std::fs::remove_dir_all(cache.path().join("q"));
        let remote = query_node(&storage, &cache.path().join("q")).await?;
        let rr = Rollups::new(remote.clone(), analytics::rollup::DEFAULT_CACHE_BYTES);
        let files: usize = [store::Table::Spans, store::Table::Logs]
            .iter()
            .map(|t| remote.snapshot(*t).files.len())
            .sum();
        let derived_gets = || {
            remote
                .cluster()
                .map(|c| c.cache.misses.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(0)
        };
        let skipped = || {
            rr.traces
                .metrics
                .files_skipped
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let (l, r, note) = match name {
            "RED per service, 1 h" => (
                measure(&local, args.runs, || async {
                    Ok(lr.services(&hour).await.map(|_| ())?)
                })
                .await?,
                measure(&remote, args.runs, || async {
                    Ok(rr.services(&hour).await.map(|_| ())?)
                })
                .await?,
                String::new(),
            ),
            "RED per service, 24 h" => (
                measure(&local, args.runs, || async {
                    Ok(lr.services(&day).await.map(|_| ())?)
                })
                .await?,
                measure(&remote, args.runs, || async {
                    Ok(rr.services(&day).await.map(|_| ())?)
                })
                .await?,
                String::new(),
            ),
            _ => {
                let l = measure(&local, args.runs, || async {
                    Ok(analytics::search::trace(&lr.traces, &trace)
                        .await
                        .map(|_| ())?)
                })
                .await?;
                let before = skipped();
                let derived_before = derived_gets();
                let r = measure(&remote, 0, || async {
                    Ok(analytics::search::trace(&rr.traces, &trace)
                        .await
                        .map(|_| ())?)
                })
                .await?;
                let read = files.saturating_sub((skipped() - before) as usize).max(1);
                let filters = derived_gets() - derived_before;
                let warm = measure(&remote, args.runs, || async {
                    Ok(analytics::search::trace(&rr.traces, &trace)
                        .await
                        .map(|_| ())?)
                })
                .await?;
                let r = Measured {
                    warm_ms: warm.warm_ms,
                    warm: warm.warm,
                    ..r
                };
                let note = format!(
                    "{files} files; cold: {filters} GETs of trace-id filters, which leave {read} files to read: {:.1} GETs per file read",
                    r.cold.gets.saturating_sub(filters) as f64 / read as f64
                );
                (l, r, note)
            }
        };
        rows.push((name.to_string(), l, r, note));
    }
    println!(
        "\n| query | local cold ms | local warm ms | bucket cold ms | bucket warm ms | bucket/local warm | GETs cold | GETs warm | LISTs cold | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for (name, l, r, note) in rows {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} | {} | {} | {note} |",
            l.cold_ms,
            l.warm_ms,
            r.cold_ms,
            r.warm_ms,
            r.warm_ms / l.warm_ms.max(1e-9),
            r.cold.gets,
            r.warm.gets,
            r.cold.lists
        );
    }
    Ok(())
}
