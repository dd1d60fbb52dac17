//! Dashboard benchmark: every page rendered by the server over the query
//! benchmark's dataset (10M spans over 24 hours by default), with the
//! shop's SLOs evaluated: server time per page (median of several runs,
//! through the real router, rollups and trace-id filters warm as in a
//! running server), the HTML's size raw and gzip'd as sent, and the first
//! page's total weight with the browser bundle (JS and wasm, gzip'd).
//!
//! ```sh
//! cargo build --release -p burnwatch-bench
//! ./target/release/ui-bench --spans 10000000 --runs 7 --data-dir /var/tmp/bw-query
//! ```

use std::path::PathBuf;
use std::time::Instant;

use analytics::rollup::Rollups;
use anyhow::Context;
use axum::body::Body;
use axum::http::{Request, header};
use burnwatch_bench::dataset::{HOUR, load_or_generate, store_config};
use burnwatch_bench::median;
use clap::Parser;
use store::Store;
use tower::ServiceExt;
use web::{WebState, app};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
struct Args {
    /// Spans in the dataset (generated if the data directory has none).
    #[arg(long, default_value_t = 10_000_000)]
    spans: u64,
    /// Timed renders per page (the median is reported).
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Where the dataset lives (shared with query-bench).
    #[arg(long, default_value = "target/bench-query")]
    data_dir: PathBuf,
    /// Generate a new dataset even if one exists.
    #[arg(long)]
    regenerate: bool,
    /// SLO files to evaluate.
    #[arg(long, default_value = "alert-rules")]
    rules_dir: PathBuf,
    /// Stop after the service-map table (no pages).
    #[arg(long)]
    edges_only: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let meta = load_or_generate(&args.data_dir, args.spans, args.regenerate).await?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let store = Store::open_read_only(store_config(&data_dir)).await?;
    println!(
        "dataset: {} spans, {} logs over 24 h in {}",
        meta.spans,
        meta.logs,
        data_dir.display()
    );
    let rollups = Rollups::new(store.clone(), analytics::rollup::DEFAULT_CACHE_BYTES);
    let t = Instant::now();
    let end = meta.end;
    rollups
        .services(&analytics::red::Window::new(end - 24 * HOUR, end)?)
        .await?;
    rollups.traces.maintain().await?;
    println!(
        "rollups and trace-id filters ready in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let paired = rollups.edges.maintain().await?;
    println!(
        "service-map edges: {paired} hours paired in {:.0} ms; {:.1} MiB of extracts ({} files) and {:.1} MiB of hours in memory",
        t.elapsed().as_secs_f64() * 1e3,
        rollups.edges.extract_bytes() as f64 / 1048576.0,
        rollups
            .edges
            .metrics
            .extracts_computed
            .load(std::sync::atomic::Ordering::Relaxed),
        (rollups.edges.cache_bytes() - rollups.edges.extract_bytes()) as f64 / 1048576.0
    );
    edge_baselines(&store, &rollups, end, args.runs).await?;
    if args.edges_only {
        return Ok(());
    }
    let state_dir = tempfile::tempdir()?;
    let slos = slo_engine::openslo::load_dir(&args.rules_dir)
        .with_context(|| format!("loading SLOs from {}", args.rules_dir.display()))?;
    let engine = slo_engine::engine::SloEngine::open(
        store.clone(),
        slos,
        Default::default(),
        state_dir.path(),
    )?;
    let t = Instant::now();
    let statuses = engine.evaluate_at(end).await;
    println!(
        "{} SLOs evaluated in {:.0} ms; {} incidents",
        statuses.len(),
        t.elapsed().as_secs_f64() * 1e3,
        engine.incidents(100)?.len()
    );
    let state = WebState {
        rollups,
        slo: Some(engine),
        ..WebState::new(store)
    };
    let router = app(state);
    let to = slo_engine::notify::rfc3339(end);
    let view = format!("range=1h&refresh=0&to={to}");
    let slo = statuses
        .first()
        .map(|s| s.name.clone())
        .unwrap_or_else(|| "checkout-availability".into());
    let pages: Vec<(&str, String)> = vec![
        ("overview", format!("/?{view}")),
        ("overview, 24 h", format!("/?range=24h&refresh=0&to={to}")),
        ("service (gateway)", format!("/services/gateway?{view}")),
        ("service (payments)", format!("/services/payments?{view}")),
        ("service map", format!("/service-map?{view}")),
        (
            "service (gateway), 24 h",
            format!("/services/gateway?range=24h&refresh=0&to={to}"),
        ),
        (
            "service map, 24 h",
            format!("/service-map?range=24h&refresh=0&to={to}"),
        ),
        (
            "traces: errors of checkout",
            format!("/traces?{view}&service=orders&status=error"),
        ),
        ("trace waterfall", format!("/traces/{}?{view}", meta.trace)),
        ("logs: errors", format!("/logs?{view}&severity=ERROR")),
        ("metrics", format!("/explore/metrics?{view}")),
        ("SLO list", format!("/slos?{view}")),
        ("SLO page", format!("/slos/{slo}?{view}")),
        ("incidents", format!("/incidents?{view}")),
        ("silences", format!("/silences?{view}")),
        // Baselines in the same run: the JSON the overview, service page
        // and service map are built from.
        (
            "baseline: GET /api/v1/red/services",
            format!(
                "/api/v1/red/services?from={}&to={to}",
                slo_engine::notify::rfc3339(end - HOUR)
            ),
        ),
        (
            "baseline: GET /api/v1/red/series (gateway)",
            format!(
                "/api/v1/red/series?service=gateway&from={}&to={to}&step=60",
                slo_engine::notify::rfc3339(end - HOUR)
            ),
        ),
        (
            "baseline: GET /api/v1/service-map",
            format!(
                "/api/v1/service-map?from={}&to={to}",
                slo_engine::notify::rfc3339(end - HOUR)
            ),
        ),
        (
            "baseline: GET /api/v1/service-map, 24 h",
            format!(
                "/api/v1/service-map?from={}&to={to}",
                slo_engine::notify::rfc3339(end - 24 * HOUR)
            ),
        ),
        (
            "baseline: GET /api/v1/traces (gateway errors)",
            format!(
                "/api/v1/traces?service=gateway&status=error&limit=10&from={}&to={to}",
                slo_engine::notify::rfc3339(end - HOUR)
            ),
        ),
        (
            "baseline: GET /api/v1/traces (gateway slowest)",
            format!(
                "/api/v1/traces?service=gateway&order=duration&limit=10&from={}&to={to}",
                slo_engine::notify::rfc3339(end - HOUR)
            ),
        ),
        (
            "query: requests per service",
            format!(
                "/query?{view}&sql=SELECT+service_name%2C+count(*)+FROM+spans+WHERE+start_time+%3E%3D+%24from+AND+start_time+%3C+%24to+GROUP+BY+1"
            ),
        ),
    ];
    let (js, wasm) = web::ui::assets::compressed_sizes();
    println!("\nbrowser bundle (gzip): {js} B JS + {wasm} B wasm\n");
    println!(
        "| page | status | median ms | first ms | HTML B | HTML gzip B | first load gzip B (with bundle) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, uri) in pages {
        let mut times = Vec::with_capacity(args.runs);
        let mut first = 0.0;
        let (mut status, mut body) = (0, Vec::new());
        for run in 0..=args.runs {
            let t = Instant::now();
            let resp = router
                .clone()
                .oneshot(Request::get(&uri).body(Body::empty())?)
                .await?;
            status = resp.status().as_u16();
            body = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await?
                .to_vec();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if run == 0 {
                first = ms;
            } else {
                times.push(ms);
            }
        }
        // What a browser gets: the same page, gzip'd by the server.
        let resp = router
            .clone()
            .oneshot(
                Request::get(&uri)
                    .header(header::ACCEPT_ENCODING, "gzip")
                    .body(Body::empty())?,
            )
            .await?;
        anyhow::ensure!(
            resp.headers().get(header::CONTENT_ENCODING).is_some(),
            "{uri} was not compressed"
        );
        let sent = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await?
            .len();
        println!(
            "| {name} | {status} | {:.1} | {first:.1} | {} | {sent} | {} |",
            median(&mut times),
            body.len(),
            sent + js + wasm
        );
    }
    Ok(())
}

/// The service map's edges three ways over the last hour and day: the SQL
/// join over raw spans (the reference, and how the server did it before
/// the extracts), the server's index warm, and an index that keeps no
/// paired hours (each query pairs its hours from warm extracts: the cost
/// when the newest hours keep changing, as in a live server).
async fn edge_baselines(
    store: &Store,
    rollups: &Rollups,
    end: i64,
    runs: usize,
) -> anyhow::Result<()> {
    use analytics::edges::EdgeIndex;
    use analytics::red::{Window, service_map};
    let uncached = EdgeIndex::with_budgets(
        store.clone(),
        analytics::edges::DEFAULT_EXTRACT_CACHE_BYTES,
        0,
    );
    println!(
        "\n| service-map edges | window | median ms | first ms | edges | per timed run: hours paired, ms pairing, files extracted, ms extracting |"
    );
    println!("|---|---|---:|---:|---:|---|");
    let m = &uncached.metrics;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    for (label, hours) in [("1 h", 1), ("24 h", 24)] {
        let w = Window::new(end - hours * HOUR, end)?;
        for how in [
            "SQL join over raw spans",
            "index (warm)",
            "index, re-pairing every hour",
        ] {
            let mut times = Vec::with_capacity(runs);
            let (mut first, mut edges) = (0.0, 0);
            let mut before = [0; 4];
            for run in 0..=runs {
                if run == 1 {
                    before = [
                        &m.hours_computed,
                        &m.pair_ns,
                        &m.extracts_computed,
                        &m.extract_ns,
                    ]
                    .map(load);
                }
                let t = Instant::now();
                edges = match how {
                    "SQL join over raw spans" => service_map(store, &w).await?.len(),
                    "index (warm)" => rollups.edges.service_map(&w, None).await?.len(),
                    _ => uncached.service_map(&w, None).await?.len(),
                };
                let ms = t.elapsed().as_secs_f64() * 1e3;
                if run == 0 {
                    first = ms;
                } else {
                    times.push(ms);
                }
            }
            let work = if how.starts_with("index, re-pairing") {
                let now = [
                    &m.hours_computed,
                    &m.pair_ns,
                    &m.extracts_computed,
                    &m.extract_ns,
                ]
                .map(load);
                let per = |i: usize| (now[i] - before[i]) as f64 / runs as f64;
                format!(
                    "{:.1}, {:.1}, {:.1}, {:.1}",
                    per(0),
                    per(1) / 1e6,
                    per(2),
                    per(3) / 1e6
                )
            } else {
                String::new()
            };
            println!(
                "| {how} | {label} | {:.1} | {first:.1} | {edges} | {work} |",
                median(&mut times)
            );
        }
    }
    Ok(())
}
