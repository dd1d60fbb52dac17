//! Per-minute RED rollups, so RED over a day (or a month) never rescans raw
//! spans.
//!
//! Every live spans file is immutable, so its rollup is a pure function of
//! the file: per minute of `start_time`, per service and operation (span
//! name), the number of SERVER spans, how many failed (the RED error rule of
//! [`crate::red`]) and a [`Sketch`] of their durations. A rollup is computed
//! once per file, kept by the store as a small Parquet file, a derived file
//! of kind [`ROLLUP_KIND`] (under `<data>/rollups/red-v1/`, same relative
//! path as the data file, checksummed, removed with its file), and in a
//! memory cache bounded by bytes. [`Rollups::run`] computes rollups for new
//! files as flushes and compactions make them.
//!
//! A query takes one snapshot of the spans table and combines, without
//! counting a row twice or missing one:
//! - rollup rows of files for the whole minutes inside the window;
//! - raw rows of those files for the partial minutes at the window's edges;
//! - raw rows still in memory (not yet flushed), for the whole window.
//!
//! Counts are therefore exact; percentiles come from the merged sketches and
//! are within 1% ([`crate::sketch::RELATIVE_ACCURACY`]) of the exact value.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{
    ArrayRef, AsArray, BinaryArray, Int64Array, RecordBatch, StringArray, UInt8Array, UInt64Array,
};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, TimestampNanosecondType, UInt8Type, UInt64Type,
};
use store::files::FileMeta;
use store::{Snapshot, Store, Table};

use crate::red::{
    ERROR, MAX_POINTS, Red, RedError, RedPoint, RedSource, SERIES_QUANTILES, Window, quote,
};

/// Columns of the raw-span scans: service, operation, start, failed (0/1),
/// duration, kind, status, trace and span id.
fn raw_columns() -> String {
    format!(
        "SELECT service_name, name, start_time, CASE WHEN {ERROR} THEN 1 ELSE 0 END AS err, duration_ns, \
         kind, status_code, trace_id, span_id"
    )
}
use crate::cache::{FileCache, Weigh};
use crate::red::register;
use crate::series;
use crate::sketch::Sketch;
use crate::trace_index::TraceIndex;

const MINUTE_NS: i64 = 60_000_000_000;

/// The rollups' kind of derived file in the store.
pub const ROLLUP_KIND: &str = "red-v2";
/// Directory of rollup files, relative to the data directory.
pub const ROLLUP_DIR: &str = "rollups/red-v2";
/// The previous kind (SERVER spans only), removed at the first maintenance.
const OLD_ROLLUP_KIND: &str = "red-v1";

/// Upper bounds (seconds) of the span-metric duration buckets: the
/// OpenTelemetry Collector spanmetrics connector's defaults. Each rollup
/// row counts its spans per bucket (`le` semantics), plus one for +Inf.
pub const SPAN_METRIC_BOUNDS: [f64; 16] = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
];
const BUCKETS: usize = SPAN_METRIC_BOUNDS.len() + 1;

/// The bucket of a duration (ns): the first bound it does not exceed.
pub(crate) fn bucket_of_duration(ns: f64) -> usize {
    let s = ns / 1e9;
    SPAN_METRIC_BOUNDS
        .iter()
        .position(|b| s <= *b)
        .unwrap_or(SPAN_METRIC_BOUNDS.len())
}

/// OTLP span kinds, as stored in a rollup row (OTLP's numbering).
pub const KINDS: [&str; 6] = [
    "UNSPECIFIED",
    "INTERNAL",
    "SERVER",
    "CLIENT",
    "PRODUCER",
    "CONSUMER",
];
const SERVER: u8 = 2;
/// OTLP status codes, as stored in a rollup row.
pub const STATUSES: [&str; 3] = ["UNSET", "OK", "ERROR"];

fn kind_code(k: &str) -> u8 {
    KINDS.iter().position(|x| *x == k).unwrap_or(0) as u8
}

fn status_code(k: &str) -> u8 {
    STATUSES.iter().position(|x| *x == k).unwrap_or(0) as u8
}

/// The latest span of a rollup row in one duration bucket: the exemplar
/// span metrics carry for that bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketExemplar {
    /// Bucket index into [`SPAN_METRIC_BOUNDS`] (the last is +Inf).
    pub bucket: u8,
    /// 32 hex characters.
    pub trace_id: String,
    /// 16 hex characters.
    pub span_id: String,
    /// Span start, ns.
    pub time_ns: i64,
    /// Span duration, ns.
    pub duration_ns: i64,
}

const EXEMPLAR_BYTES: usize = 1 + 32 + 16 + 8 + 8;

fn encode_exemplars(ex: &[BucketExemplar]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(ex.len() * EXEMPLAR_BYTES);
    for e in ex {
        out.push(e.bucket);
        let mut t = [b'0'; 32];
        let tb = e.trace_id.as_bytes();
        t[..tb.len().min(32)].copy_from_slice(&tb[..tb.len().min(32)]);
        out.extend_from_slice(&t);
        let mut sp = [b'0'; 16];
        let sb = e.span_id.as_bytes();
        sp[..sb.len().min(16)].copy_from_slice(&sb[..sb.len().min(16)]);
        out.extend_from_slice(&sp);
        out.extend_from_slice(&e.time_ns.to_le_bytes());
        out.extend_from_slice(&e.duration_ns.to_le_bytes());
    }
    out.into_boxed_slice()
}

fn decode_exemplars(b: &[u8]) -> Result<Vec<BucketExemplar>, String> {
    if !b.len().is_multiple_of(EXEMPLAR_BYTES) {
        return Err("exemplar column has a partial record".into());
    }
    b.chunks_exact(EXEMPLAR_BYTES)
        .map(|c| {
            let text = |r: &[u8]| {
                std::str::from_utf8(r)
                    .map(str::to_string)
                    .map_err(|_| "exemplar id is not text".to_string())
            };
            let i64_at = |o: usize| i64::from_le_bytes(c[o..o + 8].try_into().expect("8 bytes"));
            if c[0] as usize >= BUCKETS {
                return Err(format!("exemplar bucket {} out of range", c[0]));
            }
            Ok(BucketExemplar {
                bucket: c[0],
                trace_id: text(&c[1..33])?,
                span_id: text(&c[33..49])?,
                time_ns: i64_at(49),
                duration_ns: i64_at(57),
            })
        })
        .collect()
}

fn encode_buckets(b: &[u64; BUCKETS]) -> Box<[u8]> {
    b.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn decode_buckets(b: &[u8]) -> Result<[u64; BUCKETS], String> {
    if b.len() != BUCKETS * 8 {
        return Err(format!(
            "bucket column has {} bytes, not {}",
            b.len(),
            BUCKETS * 8
        ));
    }
    let mut out = [0u64; BUCKETS];
    for (i, c) in b.chunks_exact(8).enumerate() {
        out[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    Ok(out)
}

/// Default memory budget of the rollup cache.
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;

/// Default most distinct operations (span names) kept per service in one
/// file's rollup and in one query's raw rows; past it, spans of further
/// operations are counted under [`OTHER_OPERATIONS`]. Span names that
/// carry ids (`GET /users/12345`) would otherwise grow rollups without bound.
pub const DEFAULT_MAX_OPERATIONS_PER_SERVICE: usize = 2000;

/// The operation that spans over the per-service operation limit count under.
pub const OTHER_OPERATIONS: &str = "(other operations)";

/// Most distinct services in one file's rollup and one query's raw rows;
/// spans of further services count under [`OTHER_SERVICES`] (the collector
/// already limits new services per hour, `collector.max_services_per_hour`).
pub const MAX_SERVICES_PER_ROLLUP: usize = 10_000;

/// The service that spans over [`MAX_SERVICES_PER_ROLLUP`] count under.
pub const OTHER_SERVICES: &str = "(other services)";

/// `[rollups]` settings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollupConfig {
    /// Memory budget of the rollup cache, bytes.
    pub cache_bytes: usize,
    /// Most distinct operations per service in a rollup (see
    /// [`DEFAULT_MAX_OPERATIONS_PER_SERVICE`]).
    pub max_operations_per_service: usize,
}

impl Default for RollupConfig {
    fn default() -> Self {
        RollupConfig {
            cache_bytes: DEFAULT_CACHE_BYTES,
            max_operations_per_service: DEFAULT_MAX_OPERATIONS_PER_SERVICE,
        }
    }
}

/// The rollup of one data file.
#[derive(Debug)]
struct FileRollup {
    /// (service, operation) per key index.
    keys: Vec<(Arc<str>, Arc<str>)>,
    rows: Vec<Row>,
    bytes: usize,
    /// Spans counted under [`OTHER_OPERATIONS`] when it was computed.
    folded: u64,
}

#[derive(Debug)]
struct Row {
    minute_ns: i64,
    key: u32,
    kind: u8,
    status: u8,
    requests: u64,
    errors: u64,
    sum_ns: i64,
    buckets: [u64; BUCKETS],
    exemplars: Box<[u8]>,
    sketch: Box<[u8]>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RollupMetrics {
    /// Rollups answered from memory.
    pub cache_hits: AtomicU64,
    /// Rollups read from their file.
    pub loaded: AtomicU64,
    /// Rollups computed from a data file.
    pub computed: AtomicU64,
    /// Rollup files that could not be read and were recomputed.
    pub unreadable: AtomicU64,
    /// Rollup files deleted (by the store) because their data file is gone.
    pub deleted: AtomicU64,
    /// Spans counted under [`OTHER_OPERATIONS`] by the per-service
    /// operation limit.
    pub operations_folded: AtomicU64,
}

/// RED rollups over one store, and the trace-id filters of its files
/// (both derived once per immutable file, maintained by the same task).
pub struct Rollups {
    store: Store,
    budget: usize,
    max_operations: usize,
    cache: FileCache<FileRollup>,
    /// Counters.
    pub metrics: RollupMetrics,
    /// Trace-id filters per spans and logs file.
    pub traces: TraceIndex,
    /// Trigram filters of log bodies per logs file.
    pub texts: crate::text_index::TextIndex,
    /// Spans files that had a rollup at the last maintenance.
    with_rollup: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Whether rollups of [`OLD_ROLLUP_KIND`] were removed.
    old_removed: std::sync::atomic::AtomicBool,
    /// Service-graph edges per minute (settled hours cached).
    pub graph: crate::servicegraph::ServiceGraph,
    /// The service map's edges (per-file extracts, per-hour pairings).
    pub edges: crate::edges::EdgeIndex,
    /// The PromQL catalogue of each metric_points file.
    pub prom_catalog: Arc<crate::prom::CatalogCache>,
}

impl std::fmt::Debug for Rollups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollups")
            .field("budget", &self.budget)
            .finish()
    }
}

/// What a RED query groups by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Group {
    Service,
    Operation,
    Bucket {
        step_ns: i64,
    },
    /// Per minute, service, operation, kind and status, every span kind.
    SpanMetrics,
}

#[derive(Default)]
struct Acc {
    requests: u64,
    errors: u64,
    sketch: Sketch,
    sum_ns: i64,
    buckets: [u64; BUCKETS],
    exemplars: Vec<BucketExemplar>,
}

impl Acc {
    /// Keeps `e` as its bucket's exemplar when it is the latest seen.
    fn exemplar(&mut self, e: BucketExemplar) {
        match self.exemplars.iter_mut().find(|x| x.bucket == e.bucket) {
            Some(x) if x.time_ns <= e.time_ns => *x = e,
            Some(_) => {}
            None => self.exemplars.push(e),
        }
    }
}

/// (minute or bucket, service, operation, kind, status).
type AccKey = (i64, Arc<str>, Arc<str>, u8, u8);

/// One minute of span metrics: spans of one service, operation, kind and
/// status code that started in the minute.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanMetricRow {
    /// Minute start, ns.
    pub minute_ns: i64,
    /// Service.
    pub service: Arc<str>,
    /// Span name.
    pub operation: Arc<str>,
    /// OTLP kind (`SERVER`, ...).
    pub kind: &'static str,
    /// OTLP status code (`UNSET`, `OK`, `ERROR`).
    pub status: &'static str,
    /// Spans.
    pub calls: u64,
    /// Sum of their durations, ns.
    pub sum_ns: i64,
    /// Spans per bucket of [`SPAN_METRIC_BOUNDS`] (not cumulative; the
    /// last is above every bound).
    pub buckets: [u64; SPAN_METRIC_BOUNDS.len() + 1],
    /// The latest span per non-empty bucket.
    pub exemplars: Vec<BucketExemplar>,
}

impl Rollups {
    /// Rollups over `store` with a memory cache of `budget` bytes.
    pub fn new(store: Store, budget: usize) -> Arc<Rollups> {
        Rollups::with_limit(store, budget, DEFAULT_MAX_OPERATIONS_PER_SERVICE)
    }

    /// The same with at most `max_operations` operations per service (at
    /// least 1); see [`DEFAULT_MAX_OPERATIONS_PER_SERVICE`].
    pub fn with_limit(store: Store, budget: usize, max_operations: usize) -> Arc<Rollups> {
        Arc::new(Rollups {
            store: store.clone(),
            budget,
            max_operations: max_operations.max(1),
            cache: FileCache::new(budget),
            metrics: RollupMetrics::default(),
            traces: TraceIndex::new(store.clone(), crate::trace_index::DEFAULT_CACHE_BYTES),
            texts: crate::text_index::TextIndex::new(
                store.clone(),
                crate::text_index::DEFAULT_CACHE_BYTES,
            ),
            with_rollup: Default::default(),
            old_removed: Default::default(),
            graph: Default::default(),
            edges: crate::edges::EdgeIndex::new(store.clone()),
            prom_catalog: Default::default(),
        })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn cached(&self, path: &Path) -> Option<Arc<FileRollup>> {
        self.cache.get(path)
    }

    fn remember(&self, path: PathBuf, r: Arc<FileRollup>) {
        self.cache.insert(path, r);
    }

    /// Bytes held by the memory cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// The rollup of one live data file: from memory, from its rollup file,
    /// or computed (and saved, unless the store is read-only).
    async fn file(&self, data_path: &Path, meta: &FileMeta) -> Result<Arc<FileRollup>, RedError> {
        let meta_path = meta.path.as_str();
        if let Some(r) = self.cached(data_path) {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(r);
        }
        let loaded = match self.store.read_derived(ROLLUP_KIND, meta_path).await {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => {
                let decoded = tokio::task::spawn_blocking(move || read_rollup(bytes))
                    .await
                    .map_err(|e| RedError::Query(format!("rollup task failed: {e}")))?;
                if let Err(e) = &decoded
                    && let Err(e2) = self.store.reject_derived(ROLLUP_KIND, meta_path, e).await
                {
                    tracing::warn!(error = %e2, "could not quarantine a rollup file");
                }
                decoded.map(Some)
            }
            Err(e) => Err(e.to_string()),
        };
        let r = match loaded {
            Ok(Some(r)) => {
                self.metrics.loaded.fetch_add(1, Ordering::Relaxed);
                r
            }
            other => {
                if let Err(e) = other {
                    self.metrics.unreadable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(file = %meta_path, error = %e, "unreadable rollup file; recomputing it");
                }
                let r = compute(&self.store, data_path, meta, self.max_operations).await?;
                self.metrics.computed.fetch_add(1, Ordering::Relaxed);
                if r.folded > 0 {
                    self.metrics
                        .operations_folded
                        .fetch_add(r.folded, Ordering::Relaxed);
                    tracing::warn!(
                        file = %meta_path,
                        spans = r.folded,
                        limit = self.max_operations,
                        "a service has more distinct operations (span names) than the rollup limit; \
                         the rest are counted as \"{OTHER_OPERATIONS}\" (raise rollups.max_operations_per_service, \
                         or keep ids out of span names)"
                    );
                }
                if !self.store.is_read_only() {
                    let batch = to_batch(&r);
                    let encoded = tokio::task::spawn_blocking(move || encode_rollup(&batch))
                        .await
                        .map_err(|e| RedError::Query(format!("rollup task failed: {e}")))?;
                    let saved = match encoded {
                        Ok(bytes) => self
                            .store
                            .write_derived(ROLLUP_KIND, meta_path, bytes)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = saved {
                        tracing::warn!(file = %meta_path, error = %e, "could not save a rollup file");
                    }
                }
                r
            }
        };
        let r = Arc::new(r);
        self.remember(data_path.to_path_buf(), r.clone());
        Ok(r)
    }

    /// Computes rollups (and trace-id and log text filters) for live files that have none
    /// yet (the store removes those of files that are gone). Returns the
    /// number of rollups computed.
    pub async fn maintain(&self) -> Result<u64, RedError> {
        self.traces.maintain().await?;
        self.texts.maintain().await?;
        if !self.store.is_read_only()
            && !self.old_removed.swap(true, Ordering::Relaxed)
            && let Err(e) = self.store.remove_derived(OLD_ROLLUP_KIND, |_| false).await
        {
            tracing::warn!(error = %e, "could not remove rollups of the previous format");
        }
        let snap = self.store.snapshot(Table::Spans);
        let before = self.metrics.computed.load(Ordering::Relaxed);
        for (path, meta) in &snap.files {
            if self.cached(path).is_none() && !self.store.has_derived(ROLLUP_KIND, &meta.path) {
                self.file(path, meta).await?;
            }
        }
        let now: std::collections::HashSet<String> = snap
            .files
            .iter()
            .filter(|(_, m)| self.store.has_derived(ROLLUP_KIND, &m.path))
            .map(|(_, m)| m.path.clone())
            .collect();
        let live: std::collections::HashSet<&str> =
            snap.files.iter().map(|(_, m)| m.path.as_str()).collect();
        let had = std::mem::replace(
            &mut *self.with_rollup.lock().unwrap_or_else(|e| e.into_inner()),
            now,
        );
        let deleted = had.iter().filter(|p| !live.contains(p.as_str())).count();
        self.metrics
            .deleted
            .fetch_add(deleted as u64, Ordering::Relaxed);
        let live: std::collections::HashSet<&PathBuf> = snap.files.iter().map(|(p, _)| p).collect();
        self.cache.retain_live(&live);
        if let Err(e) = self.edges.maintain().await {
            tracing::warn!(error = %e, "service-map edge maintenance failed");
        }
        Ok(self.metrics.computed.load(Ordering::Relaxed) - before)
    }

    /// Runs [`Rollups::maintain`] every `every` until `shutdown` fires.
    pub async fn run(
        self: Arc<Self>,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if self.store.is_read_only() {
                continue;
            }
            if let Err(e) = self.maintain().await {
                tracing::warn!(error = %e, "rollup maintenance failed");
            }
        }
    }

    /// Reports the rollup counters to `/metrics`.
    pub fn collect_metrics(&self, out: &mut exposition::Out<'_>) -> std::fmt::Result {
        let m = &self.metrics;
        crate::cache::collect_counters(
            out,
            &[
                (
                    "burnwatch_rollup_cache_hits_total",
                    "RED rollups answered from memory.",
                    &m.cache_hits,
                ),
                (
                    "burnwatch_rollup_loaded_total",
                    "RED rollups read from their file.",
                    &m.loaded,
                ),
                (
                    "burnwatch_rollup_computed_total",
                    "RED rollups computed from a spans file.",
                    &m.computed,
                ),
                (
                    "burnwatch_rollup_unreadable_total",
                    "RED rollup files that could not be read and were recomputed.",
                    &m.unreadable,
                ),
                (
                    "burnwatch_rollup_deleted_total",
                    "RED rollup files deleted after their spans file was removed.",
                    &m.deleted,
                ),
                (
                    "burnwatch_rollup_operations_folded_total",
                    "Spans counted under \"(other operations)\" by the per-service operation limit.",
                    &m.operations_folded,
                ),
            ],
        )?;
        out.gauge(
            "burnwatch_rollup_cache_bytes",
            "Bytes of RED rollups held in memory.",
            self.cache_bytes() as f64,
        )?;
        self.traces.report(out)?;
        self.texts.report(out)?;
        self.edges.collect_metrics(out)
    }

    /// RED per service over a window: from SERVER spans, and for services
    /// without any in the window, from their `http.server.request.duration`
    /// histogram ([`series::red_from_histogram`]).
    pub async fn services(&self, w: &Window) -> Result<Vec<Red>, RedError> {
        let acc = self.query(w, None, None, Group::Service).await?;
        let mut out = reds(acc, w, false);
        let have: Vec<String> = out.iter().map(|r| r.service.clone()).collect();
        let f = series::HistogramRed {
            exclude: &have,
            ..Default::default()
        };
        out.extend(series::red_from_histogram(&self.store, w, &f).await?);
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(out)
    }

    /// RED per operation of one service over a window (from the duration
    /// histogram when the service has no SERVER spans in the window).
    pub async fn operations(&self, service: &str, w: &Window) -> Result<Vec<Red>, RedError> {
        let acc = self.query(w, Some(service), None, Group::Operation).await?;
        let out = reds(acc, w, true);
        if !out.is_empty() {
            return Ok(out);
        }
        let f = series::HistogramRed {
            service: Some(service),
            per_operation: true,
            ..Default::default()
        };
        series::red_from_histogram(&self.store, w, &f).await
    }

    /// RED of a service (or one of its operations) as `step_secs` buckets
    /// aligned to `w.from_ns`; every bucket is present. Rollups are used when
    /// the step is whole minutes and the window starts on a minute; otherwise
    /// the series is computed from raw spans (same results).
    pub async fn series(
        &self,
        service: &str,
        operation: Option<&str>,
        w: &Window,
        step_secs: i64,
    ) -> Result<Vec<RedPoint>, RedError> {
        let (step_ns, buckets) = w.buckets(step_secs)?;
        debug_assert!(buckets <= MAX_POINTS);
        let acc = self
            .query(w, Some(service), operation, Group::Bucket { step_ns })
            .await?;
        if acc.is_empty() {
            return series::red_series_from_histogram(
                &self.store,
                service,
                operation,
                w,
                step_secs,
            )
            .await;
        }
        let mut by_bucket: HashMap<i64, Acc> = HashMap::new();
        for ((b, _, _, _, _), a) in acc {
            let e = by_bucket.entry(b).or_default();
            e.requests += a.requests;
            e.errors += a.errors;
            e.sketch.merge(&a.sketch);
        }
        Ok((0..buckets)
            .map(|k| {
                let a = by_bucket.remove(&k).unwrap_or_default();
                crate::red::point(
                    w,
                    w.from_ns + k * step_ns,
                    step_ns,
                    (a.requests, a.errors),
                    SERIES_QUANTILES.map(|q| a.sketch.quantile(q).map(|v| v / 1e6)),
                )
            })
            .collect())
    }

    /// Span metrics per minute, service, operation, kind and status code
    /// for the whole minutes that overlap `w` (every span kind), from the
    /// rollups and raw rows as RED is. Sorted by minute, then key.
    pub async fn span_metrics(&self, w: &Window) -> Result<Vec<SpanMetricRow>, RedError> {
        let from = w.from_ns.div_euclid(MINUTE_NS) * MINUTE_NS;
        let to = (w.to_ns.saturating_add(MINUTE_NS - 1)).div_euclid(MINUTE_NS) * MINUTE_NS;
        let w = Window::new(from, to.max(from + MINUTE_NS))?;
        let acc = self.query(&w, None, None, Group::SpanMetrics).await?;
        let mut out: Vec<SpanMetricRow> = acc
            .into_iter()
            .map(
                |((minute_ns, service, operation, kind, status), a)| SpanMetricRow {
                    minute_ns,
                    service,
                    operation,
                    kind: KINDS[kind as usize % KINDS.len()],
                    status: STATUSES[status as usize % STATUSES.len()],
                    calls: a.requests,
                    sum_ns: a.sum_ns,
                    buckets: a.buckets,
                    exemplars: a.exemplars,
                },
            )
            .collect();
        out.sort_by(|a, b| {
            (a.minute_ns, &a.service, &a.operation, a.kind, a.status).cmp(&(
                b.minute_ns,
                &b.service,
                &b.operation,
                b.kind,
                b.status,
            ))
        });
        Ok(out)
    }

    async fn query(
        &self,
        w: &Window,
        service: Option<&str>,
        operation: Option<&str>,
        group: Group,
    ) -> Result<HashMap<AccKey, Acc>, RedError> {
        let snap = self.store.snapshot(Table::Spans);
        // The part of the window answered from rollups: whole minutes, and
        // for series only when buckets are made of whole minutes.
        let aligned = match group {
            Group::Bucket { step_ns } => step_ns % MINUTE_NS == 0 && w.from_ns % MINUTE_NS == 0,
            _ => true,
        };
        let from_m = w.from_ns.div_euclid(MINUTE_NS) * MINUTE_NS
            + if w.from_ns % MINUTE_NS == 0 {
                0
            } else {
                MINUTE_NS
            };
        let to_m = w.to_ns.div_euclid(MINUTE_NS) * MINUTE_NS;
        let (from_m, to_m) = if aligned && from_m < to_m {
            (from_m, to_m)
        } else {
            (w.to_ns, w.to_ns)
        };
        let bucket_of = |t: i64| -> i64 {
            match group {
                Group::Bucket { step_ns } => (t - w.from_ns) / step_ns,
                _ => 0,
            }
        };
        let empty: Arc<str> = Arc::from("");
        let mut acc: HashMap<AccKey, Acc> = HashMap::new();
        let all_kinds = group == Group::SpanMetrics;
        let key_of = |svc: &Arc<str>, op: &Arc<str>, t: i64, kind: u8, status: u8| -> AccKey {
            match group {
                Group::Service => (0, svc.clone(), empty.clone(), 0, 0),
                Group::Operation => (0, svc.clone(), op.clone(), 0, 0),
                Group::Bucket { .. } => (bucket_of(t), empty.clone(), empty.clone(), 0, 0),
                Group::SpanMetrics => (
                    t.div_euclid(MINUTE_NS) * MINUTE_NS,
                    svc.clone(),
                    op.clone(),
                    kind,
                    status,
                ),
            }
        };

        // Whole minutes from rollups.
        let mut edge_files = Vec::new();
        for (path, meta) in &snap.files {
            if meta.max_time_ns < w.from_ns || meta.min_time_ns >= w.to_ns {
                continue;
            }
            let overlaps_rollup = meta.max_time_ns >= from_m && meta.min_time_ns < to_m;
            let overlaps_edges =
                meta.min_time_ns < from_m.max(w.from_ns) || meta.max_time_ns >= to_m.min(w.to_ns);
            if overlaps_edges {
                edge_files.push((path.clone(), meta.clone()));
            }
            if !overlaps_rollup {
                continue;
            }
            let r = self.file(path, meta).await?;
            let wanted: Vec<bool> = r
                .keys
                .iter()
                .map(|(s, o)| {
                    service.is_none_or(|x| x == &**s) && operation.is_none_or(|x| x == &**o)
                })
                .collect();
            for row in &r.rows {
                if row.minute_ns < from_m
                    || row.minute_ns >= to_m
                    || !wanted[row.key as usize]
                    || (!all_kinds && row.kind != SERVER)
                {
                    continue;
                }
                let (s, o) = &r.keys[row.key as usize];
                let a = acc
                    .entry(key_of(s, o, row.minute_ns, row.kind, row.status))
                    .or_default();
                a.requests += row.requests;
                a.errors += row.errors;
                a.sketch
                    .merge_encoded(&row.sketch)
                    .map_err(|e| RedError::Query(format!("corrupt rollup: {e}")))?;
                if all_kinds {
                    a.sum_ns += row.sum_ns;
                    for (x, y) in a.buckets.iter_mut().zip(row.buckets.iter()) {
                        *x += y;
                    }
                    for e in decode_exemplars(&row.exemplars)
                        .map_err(|e| RedError::Query(format!("corrupt rollup: {e}")))?
                    {
                        a.exemplar(e);
                    }
                }
            }
        }

        // Raw rows: edges of files, and everything in memory.
        let mut filter = String::new();
        if let Some(s) = service {
            filter.push_str(&format!(" AND service_name = {}", quote(s)));
        }
        if let Some(o) = operation {
            filter.push_str(&format!(" AND name = {}", quote(o)));
        }
        let cols = raw_columns();
        let between = |a: i64, b: i64| {
            format!(
                "start_time >= to_timestamp_nanos({a}) AND start_time < to_timestamp_nanos({b})"
            )
        };
        if !all_kinds {
            filter.push_str(" AND kind = 'SERVER'");
        }
        let mut parts = Vec::new();
        let ctx = self.store.session();
        if !edge_files.is_empty() {
            register(
                &ctx,
                "f",
                Snapshot {
                    table: Table::Spans,
                    files: edge_files,
                    batches: vec![],
                },
            )?;
            if from_m < to_m {
                if w.from_ns < from_m {
                    parts.push(format!(
                        "{cols} FROM f WHERE {}{filter}",
                        between(w.from_ns, from_m)
                    ));
                }
                if to_m < w.to_ns {
                    parts.push(format!(
                        "{cols} FROM f WHERE {}{filter}",
                        between(to_m, w.to_ns)
                    ));
                }
            } else {
                parts.push(format!(
                    "{cols} FROM f WHERE {}{filter}",
                    between(w.from_ns, w.to_ns)
                ));
            }
        }
        if !snap.batches.is_empty() {
            register(
                &ctx,
                "m",
                Snapshot {
                    table: Table::Spans,
                    files: vec![],
                    batches: snap.batches,
                },
            )?;
            parts.push(format!(
                "{cols} FROM m WHERE {}{filter}",
                between(w.from_ns, w.to_ns)
            ));
        }
        if parts.is_empty() {
            return Ok(acc);
        }
        let batches = ctx
            .sql(&parts.join(" UNION ALL "))
            .await
            .map_err(|e| RedError::Query(e.to_string()))?
            .collect()
            .await
            .map_err(|e| RedError::Query(e.to_string()))?;
        let mut keys = KeyTable::with_limit(self.max_operations);
        for_each_span(&batches, |x| {
            let k = keys.key(x.service, x.operation);
            let (s, o) = keys.get(k);
            let a = acc
                .entry(key_of(s, o, x.start_ns, x.kind, x.status))
                .or_default();
            a.add(&x, all_kinds);
        })?;
        Ok(acc)
    }
}

fn string_column(b: &RecordBatch, i: usize) -> Result<StringArray, RedError> {
    let c = arrow::compute::cast(b.column(i), &DataType::Utf8)
        .map_err(|e| RedError::Query(e.to_string()))?;
    Ok(c.as_string::<i32>().clone())
}

impl Acc {
    /// Counts one raw span (the span-metric parts only when `all`).
    fn add(&mut self, x: &SpanRow<'_>, all: bool) {
        self.requests += 1;
        self.errors += x.err;
        self.sketch.add(x.duration_ns as f64);
        if all {
            self.sum_ns += x.duration_ns;
            let b = bucket_of_duration(x.duration_ns as f64);
            self.buckets[b] += 1;
            self.exemplar(BucketExemplar {
                bucket: b as u8,
                trace_id: x.trace_id.to_string(),
                span_id: x.span_id.to_string(),
                time_ns: x.start_ns,
                duration_ns: x.duration_ns,
            });
        }
    }
}

fn reds(acc: HashMap<AccKey, Acc>, w: &Window, per_operation: bool) -> Vec<Red> {
    let secs = (w.to_ns - w.from_ns) as f64 / 1e9;
    let mut out: Vec<Red> = acc
        .into_iter()
        .map(|((_, s, o, _, _), a)| {
            let q = |q: f64| a.sketch.quantile(q).map_or(f64::NAN, |v| v / 1e6);
            Red {
                service: s.to_string(),
                operation: per_operation.then(|| o.to_string()),
                requests: a.requests,
                errors: a.errors,
                rate: a.requests as f64 / secs,
                error_ratio: a.errors as f64 / a.requests.max(1) as f64,
                p50_ms: q(0.5),
                p90_ms: q(0.9),
                p95_ms: q(0.95),
                p99_ms: q(0.99),
                source: RedSource::Spans,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.service, &a.operation).cmp(&(&b.service, &b.operation)));
    out
}

/// Computes the rollup of one data file.
async fn compute(
    store: &store::Store,
    data_path: &Path,
    meta: &FileMeta,
    max_operations: usize,
) -> Result<FileRollup, RedError> {
    let file = (data_path.to_path_buf(), meta.clone());
    let ctx = store.session();
    register(
        &ctx,
        "f",
        Snapshot {
            table: Table::Spans,
            files: vec![file],
            batches: vec![],
        },
    )?;
    let sql = format!("{} FROM f", raw_columns());
    let batches = ctx
        .sql(&sql)
        .await
        .map_err(|e| RedError::Query(e.to_string()))?
        .collect()
        .await
        .map_err(|e| RedError::Query(e.to_string()))?;
    tokio::task::spawn_blocking(move || build(&batches, max_operations))
        .await
        .map_err(|e| RedError::Query(format!("rollup task failed: {e}")))?
}

fn build(batches: &[RecordBatch], max_operations: usize) -> Result<FileRollup, RedError> {
    let mut keys = KeyTable::with_limit(max_operations);
    let mut groups: HashMap<(i64, u32, u8, u8), Acc> = HashMap::new();
    for_each_span(batches, |x| {
        let minute = x.start_ns.div_euclid(MINUTE_NS) * MINUTE_NS;
        let key = keys.key(x.service, x.operation);
        groups
            .entry((minute, key, x.kind, x.status))
            .or_default()
            .add(&x, true);
    })?;
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|((minute_ns, key, kind, status), a)| Row {
            minute_ns,
            key,
            kind,
            status,
            requests: a.requests,
            errors: a.errors,
            sum_ns: a.sum_ns,
            buckets: a.buckets,
            exemplars: encode_exemplars(&a.exemplars),
            sketch: a.sketch.encode().into_boxed_slice(),
        })
        .collect();
    rows.sort_by_key(|r| (r.minute_ns, r.key, r.kind, r.status));
    let folded = keys.folded;
    let mut r = with_size(keys.keys, rows);
    r.folded = folded;
    Ok(r)
}

/// (service, operation) pairs numbered in order of first appearance; lookups
/// allocate only for a new pair. Past `limit` operations of a service, new
/// operations map to [`OTHER_OPERATIONS`] (counted in `folded`).
struct KeyTable {
    keys: Vec<(Arc<str>, Arc<str>)>,
    index: HashMap<Arc<str>, HashMap<Arc<str>, u32>>,
    limit: usize,
    service_limit: usize,
    folded: u64,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable {
            service_limit: usize::MAX,
            ..KeyTable::with_limit(usize::MAX)
        }
    }
}

impl KeyTable {
    fn with_limit(limit: usize) -> KeyTable {
        KeyTable {
            keys: Vec::new(),
            index: HashMap::new(),
            limit,
            service_limit: MAX_SERVICES_PER_ROLLUP,
            folded: 0,
        }
    }

    fn key(&mut self, service: &str, operation: &str) -> u32 {
        if !self.index.contains_key(service)
            && self.index.len() >= self.service_limit
            && service != OTHER_SERVICES
        {
            return self.key_unlimited(OTHER_SERVICES, OTHER_OPERATIONS);
        }
        if let Some(ops) = self.index.get(service) {
            if let Some(&k) = ops.get(operation) {
                return k;
            }
            if ops.len() >= self.limit && operation != OTHER_OPERATIONS {
                self.folded += 1;
                return self.key_unlimited(service, OTHER_OPERATIONS);
            }
        }
        self.key_unlimited(service, operation)
    }

    fn key_unlimited(&mut self, service: &str, operation: &str) -> u32 {
        if let Some(&k) = self.index.get(service).and_then(|ops| ops.get(operation)) {
            return k;
        }
        let k = self.keys.len() as u32;
        let pair: (Arc<str>, Arc<str>) = (Arc::from(service), Arc::from(operation));
        self.index
            .entry(pair.0.clone())
            .or_default()
            .insert(pair.1.clone(), k);
        self.keys.push(pair);
        k
    }

    fn get(&self, k: u32) -> (&Arc<str>, &Arc<str>) {
        let (s, o) = &self.keys[k as usize];
        (s, o)
    }
}

/// One row of a [`raw_columns`] scan.
struct SpanRow<'a> {
    service: &'a str,
    operation: &'a str,
    start_ns: i64,
    err: u64,
    duration_ns: i64,
    kind: u8,
    status: u8,
    trace_id: &'a str,
    span_id: &'a str,
}

/// Calls `f` for every row of a [`raw_columns`] scan.
fn for_each_span(batches: &[RecordBatch], mut f: impl FnMut(SpanRow<'_>)) -> Result<(), RedError> {
    for b in batches {
        let svc = string_column(b, 0)?;
        let op = string_column(b, 1)?;
        let t = b.column(2).as_primitive::<TimestampNanosecondType>();
        let err = b.column(3).as_primitive::<Int64Type>();
        let dur = b.column(4).as_primitive::<Int64Type>();
        let kind = string_column(b, 5)?;
        let status = string_column(b, 6)?;
        let tid = string_column(b, 7)?;
        let sid = string_column(b, 8)?;
        for i in 0..b.num_rows() {
            f(SpanRow {
                service: svc.value(i),
                operation: op.value(i),
                start_ns: t.value(i),
                err: err.value(i) as u64,
                duration_ns: dur.value(i),
                kind: kind_code(kind.value(i)),
                status: status_code(status.value(i)),
                trace_id: tid.value(i),
                span_id: sid.value(i),
            });
        }
    }
    Ok(())
}

fn with_size(keys: Vec<(Arc<str>, Arc<str>)>, rows: Vec<Row>) -> FileRollup {
    let bytes = std::mem::size_of::<FileRollup>()
        + keys
            .iter()
            .map(|(s, o)| s.len() + o.len() + 64)
            .sum::<usize>()
        + rows
            .iter()
            .map(|r| std::mem::size_of::<Row>() + r.sketch.len() + r.exemplars.len())
            .sum::<usize>();
    FileRollup {
        keys,
        rows,
        bytes,
        folded: 0,
    }
}

fn rollup_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("minute", DataType::Int64, false),
        Field::new("service_name", DataType::Utf8, false),
        Field::new("operation", DataType::Utf8, false),
        Field::new("kind", DataType::UInt8, false),
        Field::new("status", DataType::UInt8, false),
        Field::new("requests", DataType::UInt64, false),
        Field::new("errors", DataType::UInt64, false),
        Field::new("duration_sum_ns", DataType::Int64, false),
        Field::new("duration_buckets", DataType::Binary, false),
        Field::new("exemplars", DataType::Binary, false),
        Field::new("duration_sketch", DataType::Binary, false),
    ]))
}

fn to_batch(r: &FileRollup) -> RecordBatch {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            r.rows.iter().map(|x| x.minute_ns),
        )),
        Arc::new(StringArray::from_iter_values(
            r.rows.iter().map(|x| &*r.keys[x.key as usize].0),
        )),
        Arc::new(StringArray::from_iter_values(
            r.rows.iter().map(|x| &*r.keys[x.key as usize].1),
        )),
        Arc::new(UInt8Array::from_iter_values(r.rows.iter().map(|x| x.kind))),
        Arc::new(UInt8Array::from_iter_values(
            r.rows.iter().map(|x| x.status),
        )),
        Arc::new(UInt64Array::from_iter_values(
            r.rows.iter().map(|x| x.requests),
        )),
        Arc::new(UInt64Array::from_iter_values(
            r.rows.iter().map(|x| x.errors),
        )),
        Arc::new(Int64Array::from_iter_values(
            r.rows.iter().map(|x| x.sum_ns),
        )),
        Arc::new(BinaryArray::from_iter_values(
            r.rows.iter().map(|x| encode_buckets(&x.buckets)),
        )),
        Arc::new(BinaryArray::from_iter_values(
            r.rows.iter().map(|x| &*x.exemplars),
        )),
        Arc::new(BinaryArray::from_iter_values(
            r.rows.iter().map(|x| &*x.sketch),
        )),
    ];
    // The columns match the schema by construction.
    RecordBatch::try_new(rollup_schema(), cols).expect("rollup batch")
}

/// A rollup as a small Parquet file (zstd).
fn encode_rollup(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props))
        .map_err(|e| e.to_string())?;
    w.write(batch).map_err(|e| e.to_string())?;
    w.into_inner().map_err(|e| e.to_string())
}

fn read_rollup(bytes: Vec<u8>) -> Result<FileRollup, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(bytes),
    )
    .map_err(|e| e.to_string())?
    .build()
    .map_err(|e| e.to_string())?;
    let mut keys = KeyTable::default();
    let mut rows = Vec::new();
    for b in reader {
        let b = b.map_err(|e| e.to_string())?;
        if b.schema().fields() != rollup_schema().fields() {
            return Err("unexpected rollup schema".into());
        }
        let minute = b.column(0).as_primitive::<Int64Type>();
        let svc = b.column(1).as_string::<i32>();
        let op = b.column(2).as_string::<i32>();
        let kind = b.column(3).as_primitive::<UInt8Type>();
        let status = b.column(4).as_primitive::<UInt8Type>();
        let req = b.column(5).as_primitive::<UInt64Type>();
        let err = b.column(6).as_primitive::<UInt64Type>();
        let sum = b.column(7).as_primitive::<Int64Type>();
        let buckets = b.column(8).as_binary::<i32>();
        let ex = b.column(9).as_binary::<i32>();
        let sk = b.column(10).as_binary::<i32>();
        for i in 0..b.num_rows() {
            let key = keys.key(svc.value(i), op.value(i));
            Sketch::decode(sk.value(i))?;
            decode_exemplars(ex.value(i))?;
            rows.push(Row {
                minute_ns: minute.value(i),
                key,
                kind: kind.value(i),
                status: status.value(i),
                requests: req.value(i),
                errors: err.value(i),
                sum_ns: sum.value(i),
                buckets: decode_buckets(buckets.value(i))?,
                exemplars: ex.value(i).into(),
                sketch: sk.value(i).into(),
            });
        }
    }
    Ok(with_size(keys.keys, rows))
}

impl Weigh for FileRollup {
    fn weight(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray, TimestampNanosecondArray};

    /// A raw-span scan batch: one span per `(service, operation, failed)`.
    fn scan(spans: &[(&str, &str, i64)]) -> RecordBatch {
        let n = spans.len();
        RecordBatch::try_from_iter([
            (
                "service_name",
                Arc::new(StringArray::from_iter_values(spans.iter().map(|s| s.0))) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from_iter_values(spans.iter().map(|s| s.1))) as ArrayRef,
            ),
            (
                "start_time",
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    (0..n as i64).map(|i| i * 1_000_000),
                )) as ArrayRef,
            ),
            (
                "err",
                Arc::new(Int64Array::from_iter_values(spans.iter().map(|s| s.2))) as ArrayRef,
            ),
            (
                "duration_ns",
                Arc::new(Int64Array::from_iter_values(std::iter::repeat_n(
                    1_000_000, n,
                ))) as ArrayRef,
            ),
            (
                "kind",
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                    "SERVER", n,
                ))) as ArrayRef,
            ),
            (
                "status_code",
                Arc::new(StringArray::from_iter_values(
                    spans
                        .iter()
                        .map(|s| if s.2 == 1 { "ERROR" } else { "UNSET" }),
                )) as ArrayRef,
            ),
            (
                "trace_id",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("{i:032x}")),
                )) as ArrayRef,
            ),
            (
                "span_id",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("{i:016x}")),
                )) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    #[test]
    fn operations_past_the_limit_fold_into_other_and_counts_are_kept() {
        let ids: Vec<String> = (0..10).map(|i| format!("GET /users/{i}")).collect();
        let mut spans: Vec<(&str, &str, i64)> =
            ids.iter().map(|o| ("api", o.as_str(), 0)).collect();
        spans.push(("api", "GET /users/9", 1));
        spans.push(("api", "GET /users/0", 1));
        spans.push(("db", "SELECT", 0));
        let r = build(&[scan(&spans)], 3).unwrap();
        let ops: Vec<(&str, &str)> = r.keys.iter().map(|(s, o)| (&**s, &**o)).collect();
        assert_eq!(
            ops,
            [
                ("api", "GET /users/0"),
                ("api", "GET /users/1"),
                ("api", "GET /users/2"),
                ("api", OTHER_OPERATIONS),
                ("db", "SELECT"),
            ]
        );
        // Seven spans of api/3..9 (one of them twice) fold; totals are kept.
        assert_eq!(r.folded, 8);
        let total = |svc: &str, f: fn(&Row) -> u64| -> u64 {
            r.rows
                .iter()
                .filter(|x| &*r.keys[x.key as usize].0 == svc)
                .map(f)
                .sum()
        };
        assert_eq!(total("api", |x| x.requests), 12);
        assert_eq!(total("api", |x| x.errors), 2);
        assert_eq!(total("db", |x| x.requests), 1);
        // Each (minute, key, kind, status) is one row.
        let other = r
            .rows
            .iter()
            .filter(|x| &*r.keys[x.key as usize].1 == OTHER_OPERATIONS)
            .map(|x| (x.requests, x.errors))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!(other, (8, 1));
        // Buckets, sums and exemplars: every span took 1 ms (bucket 0).
        assert!(r.rows.iter().all(|x| x.buckets[0] == x.requests
            && x.sum_ns == x.requests as i64 * 1_000_000
            && decode_exemplars(&x.exemplars).unwrap().len() == 1));
        // The file round-trips.
        let back = read_rollup(encode_rollup(&to_batch(&r)).unwrap()).unwrap();
        assert_eq!(back.rows.len(), r.rows.len());
        for (a, b) in back.rows.iter().zip(&r.rows) {
            assert_eq!(
                (
                    a.minute_ns,
                    a.kind,
                    a.status,
                    a.requests,
                    a.errors,
                    a.sum_ns,
                    a.buckets,
                    &a.exemplars
                ),
                (
                    b.minute_ns,
                    b.kind,
                    b.status,
                    b.requests,
                    b.errors,
                    b.sum_ns,
                    b.buckets,
                    &b.exemplars
                )
            );
        }
        // Without a limit nothing folds.
        let all = build(&[scan(&spans)], usize::MAX).unwrap();
        assert_eq!((all.keys.len(), all.folded), (11, 0));
    }

    #[test]
    fn services_past_the_limit_fold_into_other_services() {
        let mut keys = KeyTable::with_limit(10);
        keys.service_limit = 3;
        let a = keys.key("a", "x");
        keys.key("b", "x");
        keys.key("c", "x");
        let d = keys.key("d", "x");
        let e = keys.key("e", "y");
        assert_eq!(d, e, "both count under one key");
        assert_eq!(&*keys.keys[d as usize].0, OTHER_SERVICES);
        assert_eq!(&*keys.keys[d as usize].1, OTHER_OPERATIONS);
        // Known services keep their own keys.
        assert_eq!(keys.key("a", "x"), a);
        assert_eq!(keys.index.len(), 4);
    }
}
