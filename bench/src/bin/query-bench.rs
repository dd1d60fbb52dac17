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

use std::borrow::Cow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use burnwatch_bench::median;
use clap::Parser;
use slo_engine::evaluate::evaluate;
use slo_engine::red::{self, Window};
use slo_engine::rollup::Rollups;
use slo_engine::sli::SliCounter;
use store::rows::{
    Attr, LogRecord, LogsBuilder, Origin, SpanKind, SpanRecord, SpansBuilder, StatusCode,
};
use store::synth::Rng;
use store::{Store, StoreConfig, Table};

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
    /// Python with DuckDB for the comparison.
    #[arg(long, env = "BURNWATCH_PYTHON", default_value = "python3")]
    python: String,
}

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;

/// A server operation and the calls it makes.
struct Call {
    service: &'static str,
    method: &'static str,
    route: &'static str,
    db: Option<&'static str>,
    calls: &'static [Call],
}

const STOCK: Call = Call {
    service: "inventory",
    method: "GET",
    route: "/stock/{id}",
    db: Some("SELECT stock"),
    calls: &[],
};
const PRODUCT: Call = Call {
    service: "catalog",
    method: "GET",
    route: "/products/{id}",
    db: Some("SELECT products"),
    calls: &[STOCK],
};
const LIST: Call = Call {
    service: "catalog",
    method: "GET",
    route: "/products",
    db: Some("SELECT products"),
    calls: &[],
};
const RESERVE: Call = Call {
    service: "inventory",
    method: "POST",
    route: "/reservations",
    db: Some("UPDATE stock"),
    calls: &[],
};
const CHARGE: Call = Call {
    service: "payments",
    method: "POST",
    route: "/charges",
    db: Some("INSERT charges"),
    calls: &[],
};
const CART_ADD: Call = Call {
    service: "cart",
    method: "POST",
    route: "/carts/{id}/items",
    db: Some("INSERT cart_items"),
    calls: &[PRODUCT],
};
const ORDER: Call = Call {
    service: "orders",
    method: "POST",
    route: "/orders",
    db: Some("INSERT orders"),
    calls: &[RESERVE, CHARGE],
};
const LOGIN: Call = Call {
    service: "users",
    method: "POST",
    route: "/sessions",
    db: Some("SELECT users"),
    calls: &[],
};

/// Gateway journeys with their share of traffic (percent).
const JOURNEYS: &[(u64, Call)] = &[
    (
        35,
        Call {
            service: "gateway",
            method: "GET",
            route: "/api/products",
            db: None,
            calls: &[LIST],
        },
    ),
    (
        30,
        Call {
            service: "gateway",
            method: "GET",
            route: "/api/products/{id}",
            db: None,
            calls: &[PRODUCT],
        },
    ),
    (
        15,
        Call {
            service: "gateway",
            method: "POST",
            route: "/api/cart/items",
            db: None,
            calls: &[CART_ADD],
        },
    ),
    (
        10,
        Call {
            service: "gateway",
            method: "POST",
            route: "/api/checkout",
            db: None,
            calls: &[ORDER],
        },
    ),
    (
        10,
        Call {
            service: "gateway",
            method: "POST",
            route: "/api/login",
            db: None,
            calls: &[LOGIN],
        },
    ),
];

struct Gen<'a> {
    rng: Rng,
    spans: &'a mut SpansBuilder,
    logs: &'a mut LogsBuilder,
    resources: std::collections::HashMap<&'static str, Vec<Attr<'static>>>,
    next_span: u64,
}

impl Gen<'_> {
    fn span_id(&mut self) -> [u8; 8] {
        self.next_span += 1;
        (self.next_span ^ self.rng.next_u64() << 32).to_be_bytes()
    }

    /// Appends the server span of `call` (and its children) starting at
    /// `start`; returns (end, failed).
    fn server(
        &mut self,
        call: &Call,
        trace: [u8; 16],
        parent: Option<[u8; 8]>,
        start: i64,
    ) -> (i64, bool) {
        let id = self.span_id();
        let mut t = start + 100_000 + self.rng.below(400_000) as i64;
        let mut failed = self.rng.below(1000) < 4;
        if let Some(stmt) = call.db {
            let d = 200_000 + self.rng.below(3_000_000) as i64;
            let db_id = self.span_id();
            let attrs = vec![
                Attr::new("db.system.name", "sqlite"),
                Attr::new("db.query.text", stmt),
            ];
            self.push(
                call.service,
                trace,
                db_id,
                Some(id),
                stmt,
                SpanKind::Client,
                t,
                t + d,
                false,
                attrs,
            );
            t += d;
        }
        for c in call.calls {
            let client = self.span_id();
            let (end, child_failed) = self.server(c, trace, Some(client), t + 50_000);
            let end = end + 50_000;
            let code = if child_failed { "503" } else { "200" };
            let attrs = vec![
                Attr::new("http.request.method", c.method),
                Attr::new("peer.service", c.service),
                Attr::new("server.address", c.service),
                Attr::new("http.response.status_code", code),
            ];
            self.push(
                call.service,
                trace,
                client,
                Some(id),
                c.method,
                SpanKind::Client,
                t,
                end,
                child_failed,
                attrs,
            );
            failed |= child_failed;
            t = end;
        }
        // A heavy tail: 1% of requests wait 100-1000 ms more.
        let own = if self.rng.below(100) == 0 {
            100_000_000 + self.rng.below(900_000_000) as i64
        } else {
            500_000 + self.rng.below(20_000_000) as i64
        };
        let end = t + own;
        let code = if failed {
            "503"
        } else if call.method == "POST" {
            "201"
        } else {
            "200"
        };
        let attrs = vec![
            Attr::new("http.request.method", call.method),
            Attr::new("http.route", call.route),
            Attr::new("http.response.status_code", code),
            Attr::new("server.address", call.service),
            Attr::new("url.scheme", "http"),
        ];
        let name = format!("{} {}", call.method, call.route);
        self.push(
            call.service,
            trace,
            id,
            parent,
            &name,
            SpanKind::Server,
            start,
            end,
            failed,
            attrs,
        );
        if parent.is_none() || failed {
            let origin = Origin {
                service_name: call.service,
                resource_attributes: &self.resources[call.service],
                scope_name: "shop",
                scope_version: "",
            };
            let body = if failed {
                format!(
                    "{name} failed: upstream timeout after {} ms",
                    (end - start) / 1_000_000
                )
            } else {
                format!("{name} {code} in {} ms", (end - start) / 1_000_000)
            };
            self.logs.append(
                &origin,
                &LogRecord {
                    time_ns: end,
                    observed_time_ns: end,
                    severity_number: if failed { 17 } else { 9 },
                    severity_text: if failed { "ERROR" } else { "INFO" },
                    body: Some(Cow::Owned(body)),
                    trace_id: Some(trace),
                    span_id: Some(id),
                    flags: 1,
                    event_name: "",
                    attributes: vec![Attr::new("http.route", call.route)],
                    dropped_attributes_count: 0,
                },
            );
        }
        (end, failed)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        service: &'static str,
        trace: [u8; 16],
        id: [u8; 8],
        parent: Option<[u8; 8]>,
        name: &str,
        kind: SpanKind,
        start: i64,
        end: i64,
        failed: bool,
        attributes: Vec<Attr<'_>>,
    ) {
        self.spans.append(
            &Origin {
                service_name: service,
                resource_attributes: &self.resources[service],
                scope_name: "shop",
                scope_version: "",
            },
            &SpanRecord {
                trace_id: trace,
                span_id: id,
                parent_span_id: parent,
                trace_state: "",
                flags: 1,
                name,
                kind,
                start_time_ns: start,
                end_time_ns: end,
                status_code: if failed {
                    StatusCode::Error
                } else {
                    StatusCode::Unset
                },
                status_message: if failed { "upstream timeout" } else { "" },
                attributes,
                dropped_attributes_count: 0,
                events: vec![],
                dropped_events_count: 0,
                links: vec![],
                dropped_links_count: 0,
            },
        );
    }
}

fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    }
}

/// Writes the dataset; returns (end of the data, one trace id, spans, logs).
async fn generate(args: &Args) -> anyhow::Result<Meta> {
    let _ = std::fs::remove_dir_all(&args.data_dir);
    let store = Store::open(store_config(&args.data_dir)).await?;
    let end = store::now_ns() / 60_000_000_000 * 60_000_000_000;
    let start = end - DAY;
    // The journeys average 6.4 spans per trace.
    let traces = args.spans * 10 / 64;
    let gap = DAY / traces.max(1) as i64;
    let mut rng = Rng::new(17);
    let resources = [
        "gateway",
        "catalog",
        "inventory",
        "cart",
        "orders",
        "payments",
        "users",
    ]
    .into_iter()
    .map(|s| {
        (
            s,
            vec![
                Attr::new("service.name", s),
                Attr::new("service.version", "1.4.2"),
                Attr::new("deployment.environment.name", "production"),
            ],
        )
    })
    .collect();
    let mut spans = SpansBuilder::new();
    let mut logs = LogsBuilder::new();
    let mut g = Gen {
        rng: Rng::new(99),
        spans: &mut spans,
        logs: &mut logs,
        resources,
        next_span: 0,
    };
    let (mut n_spans, mut n_logs, mut since_flush) = (0u64, 0u64, 0u64);
    let mut sample_trace = String::new();
    let started = Instant::now();
    let mut k = 0i64;
    while (n_spans + g.spans.len() as u64) < args.spans {
        let t = start + k * gap + rng.below(gap.max(1) as u64) as i64;
        k += 1;
        if t >= end - 2_000_000_000 {
            break;
        }
        let trace = (rng.next_u64() as u128 | (rng.next_u64() as u128) << 64).to_be_bytes();
        let mut pick = rng.below(100);
        let journey = JOURNEYS
            .iter()
            .find(|(share, _)| {
                if pick < *share {
                    true
                } else {
                    pick -= share;
                    false
                }
            })
            .map_or(&JOURNEYS[0].1, |(_, c)| c);
        g.server(journey, trace, None, t);
        if k as u64 == traces / 2 {
            sample_trace = trace.iter().map(|b| format!("{b:02x}")).collect();
        }
        if g.spans.len() >= 16_384 {
            let b = std::mem::take(g.spans).finish();
            n_spans += b.num_rows() as u64;
            since_flush += b.num_rows() as u64;
            store.write(Table::Spans, b).await?;
            let l = std::mem::take(g.logs).finish();
            n_logs += l.num_rows() as u64;
            store.write(Table::Logs, l).await?;
            if since_flush >= 500_000 {
                store.flush().await?;
                since_flush = 0;
                eprint!(
                    "\r{n_spans} spans, {n_logs} logs, {:.0} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    let b = std::mem::take(g.spans).finish();
    n_spans += b.num_rows() as u64;
    store.write(Table::Spans, b).await?;
    let l = std::mem::take(g.logs).finish();
    n_logs += l.num_rows() as u64;
    store.write(Table::Logs, l).await?;
    store.flush().await?;
    eprintln!(
        "\r{n_spans} spans, {n_logs} logs written in {:.0} s; compacting ...",
        started.elapsed().as_secs_f64()
    );
    let c = Instant::now();
    store.compact(end + HOUR).await?;
    eprintln!("compacted in {:.0} s", c.elapsed().as_secs_f64());
    store.close().await?;
    let meta = Meta {
        end,
        trace: sample_trace,
        spans: n_spans,
        logs: n_logs,
    };
    std::fs::write(
        args.data_dir.join("bench-meta.txt"),
        format!("{} {} {} {}\n", meta.end, meta.trace, meta.spans, meta.logs),
    )?;
    Ok(meta)
}

struct Meta {
    end: i64,
    trace: String,
    spans: u64,
    logs: u64,
}

fn load_meta(dir: &Path) -> Option<Meta> {
    let s = std::fs::read_to_string(dir.join("bench-meta.txt")).ok()?;
    let f: Vec<&str> = s.split_whitespace().collect();
    Some(Meta {
        end: f.first()?.parse().ok()?,
        trace: f.get(1)?.to_string(),
        spans: f.get(2)?.parse().ok()?,
        logs: f.get(3)?.parse().ok()?,
    })
}

/// Runs `f` once to warm up, then `runs` times; returns (first, median) ms.
async fn time<F, Fut, T>(runs: usize, mut f: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let t = Instant::now();
    f().await?;
    let first = t.elapsed().as_secs_f64() * 1e3;
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f().await?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok((first, median(&mut v)))
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
    let meta = match load_meta(&args.data_dir) {
        Some(m) if !args.regenerate && m.spans.abs_diff(args.spans) < 1000 => m,
        _ => generate(&args).await?,
    };
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
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
    let rollups = Rollups::new(store.clone(), slo_engine::rollup::DEFAULT_CACHE_BYTES);
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
    let trace = meta.trace.clone();
    let n = web::explore::trace(&r.traces, &trace).await?["spans"]
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
            Ok(web::explore::trace(&r.traces, &trace).await?)
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
    let search = web::explore::TraceSearch {
        service: Some("payments".into()),
        status: Some("error".into()),
        limit: Some(20),
        ..Default::default()
    };
    row(
        "trace search: payments errors, last 1 h, 20 newest",
        time(args.runs, || async {
            Ok(web::explore::search_traces(s, &search, &[], hour.from_ns, hour.to_ns).await?)
        })
        .await?,
        "",
    );
    let logs = web::explore::LogSearch {
        q: Some("timeout".into()),
        limit: Some(100),
        ..Default::default()
    };
    row(
        "log search: \"timeout\", last 1 h, 100 newest",
        time(args.runs, || async {
            Ok(web::explore::search_logs(s, &logs, &[], hour.from_ns, hour.to_ns).await?)
        })
        .await?,
        "",
    );
    row(
        "log search: \"timeout\", 24 h, 100 newest",
        time(args.runs, || async {
            Ok(web::explore::search_logs(s, &logs, &[], day.from_ns, day.to_ns).await?)
        })
        .await?,
        "",
    );

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
    Ok(())
}
