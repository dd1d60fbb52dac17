//! The benchmarks' dataset: demo-like traffic over 24 hours (4 to 10
//! spans per trace, logs for some spans), written through the store,
//! flushed and compacted, so that queries and pages run over realistic
//! Parquet files. Generated once per data directory and reused.

use std::borrow::Cow;
use std::future::Future;
use std::path::Path;
use std::time::Instant;

use store::rows::{
    Attr, LogRecord, LogsBuilder, Origin, SpanKind, SpanRecord, SpansBuilder, StatusCode,
};
use store::{Store, StoreConfig, Table};
use testkit::synth::Rng;

use crate::median;

/// An hour, ns.
pub const HOUR: i64 = 3_600_000_000_000;
/// A day, ns.
pub const DAY: i64 = 24 * HOUR;

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

/// Each service's resource attributes.
fn resources_of(
    services: &[&'static str],
) -> std::collections::HashMap<&'static str, Vec<Attr<'static>>> {
    services
        .iter()
        .map(|&s| {
            (
                s,
                vec![
                    Attr::new("service.name", s),
                    Attr::new("service.version", "1.4.2"),
                    Attr::new("deployment.environment.name", "production"),
                ],
            )
        })
        .collect()
}

/// The store settings of the dataset: the store's defaults; `BURNWATCH_BENCH_SPANS_ROW_GROUP_ROWS` sets
/// `spans_compact_row_group_rows` (to compare file layouts).
pub fn store_config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    if let Some(n) = std::env::var("BURNWATCH_BENCH_SPANS_ROW_GROUP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        c.spans_compact_row_group_rows = n;
    }
    c
}

/// Writes the dataset; returns (end of the data, one trace id, spans, logs).
pub async fn generate(data_dir: &Path, n_spans_wanted: u64) -> anyhow::Result<Meta> {
    let _ = std::fs::remove_dir_all(data_dir);
    let store = Store::open(store_config(data_dir)).await?;
    let end = store::now_ns() / 60_000_000_000 * 60_000_000_000;
    let start = end - DAY;
    // The journeys average 6.4 spans per trace.
    let traces = n_spans_wanted * 10 / 64;
    let gap = DAY / traces.max(1) as i64;
    let mut rng = Rng::new(17);
    let resources = resources_of(&[
        "gateway",
        "catalog",
        "inventory",
        "cart",
        "orders",
        "payments",
        "users",
    ]);
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
    while (n_spans + g.spans.len() as u64) < n_spans_wanted {
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
        data_dir.join("bench-meta.txt"),
        format!("{} {} {} {}\n", meta.end, meta.trace, meta.spans, meta.logs),
    )?;
    Ok(meta)
}

/// What a generated dataset holds.
#[derive(Debug, Clone)]
pub struct Meta {
    /// End of the data, ns (on a minute).
    pub end: i64,
    /// A trace id from the middle of the day.
    pub trace: String,
    /// Spans written.
    pub spans: u64,
    /// Log records written.
    pub logs: u64,
}

/// The dataset in `dir`, if one was generated there.
pub fn load_meta(dir: &Path) -> Option<Meta> {
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
pub async fn time<F, Fut, T>(runs: usize, mut f: F) -> anyhow::Result<(f64, f64)>
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

/// The dataset in `data_dir` with about `spans` spans (within 0.1%): the existing one,
/// or (when absent, of another size, or with `regenerate`) a new one.
pub async fn load_or_generate(
    data_dir: &Path,
    spans: u64,
    regenerate: bool,
) -> anyhow::Result<Meta> {
    match load_meta(data_dir) {
        // The generator ends a little short of the count asked for
        // (9,997,261 for 10M): a dataset within 0.1% of it is reused.
        Some(m) if !regenerate && m.spans.abs_diff(spans) * 1000 <= spans => Ok(m),
        _ => generate(data_dir, spans).await,
    }
}

/// A rare log line of the week-of-logs dataset: written three times, on
/// its first day only.
pub const RARE_LOG_TEXT: &str = "settlement batch rejected by card processor";

/// Log records only, `days` days ending at `end` (ns), about `per_day`
/// per day, shaped as the main dataset's logs (one line per finished
/// request: `GET /route 200 in N ms`, and for about 2% of them an ERROR
/// `... failed: upstream timeout after N ms`), plus [`RARE_LOG_TEXT`] three
/// times on the first day. Kept in `dir` (with `bench-logs-meta.txt`) and
/// reused when it matches.
pub async fn load_or_generate_log_week(
    dir: &Path,
    end: i64,
    days: i64,
    per_day: u64,
) -> anyhow::Result<u64> {
    let want = format!("{end} {days} {per_day}");
    let meta = dir.join("bench-logs-meta.txt");
    if let Ok(s) = std::fs::read_to_string(&meta)
        && let Some((head, n)) = s.trim().rsplit_once(' ')
        && head == want
    {
        return Ok(n.parse()?);
    }
    let _ = std::fs::remove_dir_all(dir);
    let store = Store::open(store_config(dir)).await?;
    let start = end - days * DAY;
    let total = per_day * days as u64;
    let gap = (days * DAY) / total.max(1) as i64;
    let mut rng = Rng::new(7);
    let services = [
        "gateway",
        "catalog",
        "inventory",
        "cart",
        "orders",
        "payments",
    ];
    let routes = [
        "/api/products",
        "/api/cart",
        "/checkout",
        "/stock/{id}",
        "/pay",
        "/orders",
    ];
    let resources = resources_of(&services);
    let started = Instant::now();
    let mut logs = LogsBuilder::new();
    let (mut written, mut since_flush) = (0u64, 0u64);
    for k in 0..total {
        let t = start + k as i64 * gap + rng.below(gap.max(1) as u64) as i64;
        let i = rng.below(services.len() as u64) as usize;
        let (service, route) = (services[i], routes[i]);
        let failed = rng.below(50) == 0;
        let ms = 1 + rng.below(400);
        let rare = k < 3 && days > 1;
        let body = if rare {
            format!("{RARE_LOG_TEXT} (batch {k})")
        } else if failed {
            format!("GET {route} failed: upstream timeout after {ms} ms")
        } else {
            format!("GET {route} 200 in {ms} ms")
        };
        let trace = (rng.next_u64() as u128 | (rng.next_u64() as u128) << 64).to_be_bytes();
        logs.append(
            &Origin {
                service_name: service,
                resource_attributes: &resources[service],
                scope_name: "shop",
                scope_version: "",
            },
            &LogRecord {
                time_ns: t,
                observed_time_ns: t,
                severity_number: if failed || rare { 17 } else { 9 },
                severity_text: if failed || rare { "ERROR" } else { "INFO" },
                body: Some(Cow::Owned(body)),
                trace_id: Some(trace),
                span_id: Some(rng.next_u64().to_be_bytes()),
                flags: 1,
                event_name: "",
                attributes: vec![Attr::new("http.route", route)],
                dropped_attributes_count: 0,
            },
        );
        if logs.len() >= 16_384 {
            let b = std::mem::take(&mut logs).finish();
            written += b.num_rows() as u64;
            since_flush += b.num_rows() as u64;
            store.write(Table::Logs, b).await?;
            if since_flush >= 1_000_000 {
                store.flush().await?;
                since_flush = 0;
                eprint!("\r{written} logs, {:.0} s", started.elapsed().as_secs_f64());
            }
        }
    }
    let b = logs.finish();
    written += b.num_rows() as u64;
    store.write(Table::Logs, b).await?;
    store.flush().await?;
    eprintln!(
        "\r{written} logs over {days} days written in {:.0} s; compacting ...",
        started.elapsed().as_secs_f64()
    );
    store.compact(end + HOUR).await?;
    store.close().await?;
    std::fs::write(&meta, format!("{want} {written}\n"))?;
    Ok(written)
}
