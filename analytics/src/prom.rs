//! `metric_points` as Prometheus sees it: the series source of the PromQL
//! engine and the catalogue behind the Prometheus HTTP API's `series`,
//! `labels`, `label values` and `metadata` endpoints.
//!
//! Rows written by Prometheus remote write (scope
//! `prometheus.remote_write`) keep their name and labels as sent. OTLP
//! metrics get the names the OpenTelemetry Prometheus-compatibility
//! specification gives them:
//! - the name with characters outside `[a-zA-Z0-9_:]` replaced by `_`
//!   (runs of `_` collapsed), the unit as a suffix (`s` → `_seconds`,
//!   `By` → `_bytes`, `By/s` → `_bytes_per_second`, `1` → `_ratio` for
//!   gauges, `{...}` units dropped) and `_total` for monotonic cumulative
//!   sums;
//! - explicit-bucket histograms as `_bucket` series with `le` (cumulative
//!   counts, `+Inf` the total), `_sum` and `_count`; summaries as the
//!   series with `quantile`, `_sum` and `_count`; exponential histograms as
//!   `_sum` and `_count`;
//! - attribute keys sanitised the same way, `job` from `service.namespace`
//!   and `service.name` (`namespace/name`), `instance` from
//!   `service.instance.id`;
//! - `target_info` (value 1) per resource, with its other resource
//!   attributes as labels, at every time the resource reported a point.
//!
//! Delta sums and histograms have no Prometheus form and are left out.
//! The metric name and the equality matchers on remote-write labels are
//! pushed into the scan (the name prunes row groups: it is the first sort
//! key); everything else is matched on the rows read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, ListArray, MapArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use promql::{Error, Labels, MatchOp, Matcher, Queryable, Selection, Series};
use store::{Snapshot, Store, Table};

use crate::red::quote;

/// The scope of rows written by Prometheus remote write.
pub const REMOTE_WRITE_SCOPE: &str = "prometheus.remote_write";

/// Most raw samples one selection may read.
const MAX_SELECT_SAMPLES: usize = 50_000_000;

/// Most samples of one file's series computed for the per-file cache
/// (about 16 MiB, the largest part the cache keeps). A selection whose
/// file holds more reads in one query instead, with its matchers applied
/// as rows are read, so a narrow selection of a huge metric never holds
/// every series of it.
const PART_MAX_SAMPLES: usize = 1 << 20;

/// How a stored metric appears to Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The stored `metric_name`.
    pub stored: String,
    /// `metric_type` as stored.
    pub metric_type: String,
    /// Written by remote write (name and labels kept as sent).
    pub remote_write: bool,
    /// Monotonic (sums).
    pub monotonic: bool,
    /// `cumulative`, `delta` or `unspecified`.
    pub temporality: String,
    /// Unit as stored.
    pub unit: String,
    /// Description as stored.
    pub help: String,
    /// The Prometheus family name (without `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// The Prometheus type: `counter`, `gauge`, `histogram`, `summary` or
    /// `unknown`.
    pub prom_type: &'static str,
}

impl Family {
    /// Every series name the family yields.
    pub fn series_names(&self) -> Vec<String> {
        if self.remote_write {
            return vec![self.name.clone()];
        }
        match self.metric_type.as_str() {
            "histogram" => vec![
                format!("{}_bucket", self.name),
                format!("{}_sum", self.name),
                format!("{}_count", self.name),
            ],
            "exponential_histogram" => {
                vec![format!("{}_sum", self.name), format!("{}_count", self.name)]
            }
            "summary" => vec![
                self.name.clone(),
                format!("{}_sum", self.name),
                format!("{}_count", self.name),
            ],
            _ => vec![self.name.clone()],
        }
    }

    /// Whether Prometheus can represent it.
    fn representable(&self) -> bool {
        self.remote_write
            || match self.metric_type.as_str() {
                "gauge" | "summary" => true,
                "sum" => !self.monotonic || self.temporality == "cumulative",
                "histogram" | "exponential_histogram" => self.temporality == "cumulative",
                _ => false,
            }
    }
}

/// A metric or label name with characters outside `[a-zA-Z0-9_:]`
/// replaced by `_` and runs of `_` collapsed.
pub fn sanitize(name: &str, colons: bool) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':');
        let c = if ok { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn unit_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_word(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The Prometheus family name of an OTLP metric.
pub fn otlp_name(name: &str, unit: &str, metric_type: &str, monotonic: bool) -> String {
    let mut base = sanitize(name, true);
    let counter = metric_type == "sum" && monotonic;
    if counter && let Some(b) = base.strip_suffix("_total") {
        base = b.to_string();
    }
    // Units in braces are annotations, not units.
    let unit = unit.trim();
    let suffix = if unit.is_empty() || unit.starts_with('{') {
        None
    } else if unit == "1" {
        (metric_type == "gauge").then(|| "ratio".to_string())
    } else if let Some((a, b)) = unit.split_once('/') {
        let a = unit_word(a)
            .map(str::to_string)
            .unwrap_or_else(|| sanitize(a, false));
        let b = per_word(b)
            .map(str::to_string)
            .unwrap_or_else(|| sanitize(b, false));
        Some(if a.is_empty() {
            format!("per_{b}")
        } else {
            format!("{a}_per_{b}")
        })
    } else {
        Some(
            unit_word(unit)
                .map(str::to_string)
                .unwrap_or_else(|| sanitize(unit, false)),
        )
    };
    if let Some(s) = suffix {
        let s = s.trim_matches('_').to_string();
        if !s.is_empty() && !base.ends_with(&format!("_{s}")) {
            base = format!("{base}_{s}");
        }
    }
    if counter {
        base.push_str("_total");
    }
    base
}

/// The Prometheus form of a number in `le` and `quantile` labels.
pub fn format_bound(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v}")
    }
}

fn to_promql(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("reading the store: {e}"))
}

fn ns_range(start_ms: i64, end_ms: i64) -> String {
    format!(
        "time >= to_timestamp_nanos({}) AND time <= to_timestamp_nanos({})",
        start_ms.saturating_mul(1_000_000),
        end_ms.saturating_mul(1_000_000).saturating_add(999_999)
    )
}

/// Reads series for PromQL from the store (and, with rollups, the span
/// metrics of [`crate::spanmetrics`]).
#[derive(Debug, Clone)]
pub struct PromSource {
    store: Store,
    rollups: Option<std::sync::Arc<crate::rollup::Rollups>>,
    catalog: Arc<CatalogCache>,
    part_max_samples: usize,
}

impl PromSource {
    /// A source over `store`.
    pub fn new(store: Store) -> PromSource {
        PromSource {
            catalog: shared_catalog(&store),
            store,
            rollups: None,
            part_max_samples: PART_MAX_SAMPLES,
        }
    }

    /// The same source with another per-file limit (tests make it small).
    #[doc(hidden)]
    pub fn with_part_max_samples(mut self, n: usize) -> PromSource {
        self.part_max_samples = n;
        self
    }

    /// The per-file catalogue and series cache this source reads through.
    pub fn catalog_cache(&self) -> &CatalogCache {
        &self.catalog
    }

    /// A source over the rollups' store that also answers span metrics.
    pub fn with_rollups(rollups: std::sync::Arc<crate::rollup::Rollups>) -> PromSource {
        PromSource {
            store: rollups.store().clone(),
            catalog: rollups.prom_catalog.clone(),
            rollups: Some(rollups),
            part_max_samples: PART_MAX_SAMPLES,
        }
    }

    /// The metrics with points in `[start_ms, end_ms]` as Prometheus
    /// families: the stored ones, and the span metrics when this source has
    /// rollups.
    pub async fn catalog(&self, start_ms: i64, end_ms: i64) -> Result<Vec<Family>, Error> {
        let mut out = self.stored_catalog(start_ms, end_ms).await?;
        if self.rollups.is_some() {
            out.extend(crate::spanmetrics::families());
            out.extend(crate::servicegraph::families());
        }
        Ok(out)
    }

    /// Span-metric rows of the minutes overlapping `[start_ms, end_ms]`.
    async fn span_metric_rows(
        &self,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<crate::rollup::SpanMetricRow>, Error> {
        let Some(r) = &self.rollups else {
            return Ok(Vec::new());
        };
        let w = crate::red::Window::new(
            start_ms.saturating_mul(1_000_000),
            end_ms.saturating_mul(1_000_000).saturating_add(1),
        )
        .map_err(|e| Error::BadData(e.to_string()))?;
        r.span_metrics(&w)
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// The stored metrics with points in `[start_ms, end_ms]`, as
    /// Prometheus families, sorted by stored name.
    async fn stored_catalog(&self, start_ms: i64, end_ms: i64) -> Result<Vec<Family>, Error> {
        let start_ns = start_ms.saturating_mul(1_000_000);
        let end_ns = end_ms.saturating_mul(1_000_000).saturating_add(999_999);
        let snap = self.store.snapshot(Table::MetricPoints);
        let mut merged: BTreeMap<(String, String, bool), CatalogEntry> = BTreeMap::new();
        let mut edges = Vec::new();
        for (path, meta) in &snap.files {
            if meta.max_time_ns < start_ns || meta.min_time_ns > end_ns {
                continue;
            }
            if meta.min_time_ns < start_ns || meta.max_time_ns > end_ns {
                edges.push((path.clone(), meta.clone()));
                continue;
            }
            let key = (meta.path.clone(), meta.rows, meta.crc32);
            let entries = match self.catalog.get(&key) {
                Some(e) => e,
                None => {
                    let one = Snapshot {
                        table: Table::MetricPoints,
                        files: vec![(path.clone(), meta.clone())],
                        batches: vec![],
                    };
                    let e = Arc::new(catalog_entries(
                        &self.catalog_query(one, &catalog_sql("c", "")).await?,
                    )?);
                    self.catalog.put(key, e.clone());
                    e
                }
            };
            for e in entries.iter() {
                merge_entry(&mut merged, e);
            }
        }
        let range = format!(" AND {}", ns_range(start_ms, end_ms));
        let parts = [
            Snapshot {
                table: Table::MetricPoints,
                files: edges,
                batches: vec![],
            },
            Snapshot {
                table: Table::MetricPoints,
                files: vec![],
                batches: snap.batches.clone(),
            },
        ];
        for part in parts {
            if part.files.is_empty() && part.batches.is_empty() {
                continue;
            }
            for e in catalog_entries(&self.catalog_query(part, &catalog_sql("c", &range)).await?)? {
                merge_entry(&mut merged, &e);
            }
        }
        let live: std::collections::HashSet<(&str, u64, Option<u32>)> = snap
            .files
            .iter()
            .map(|(_, m)| (m.path.as_str(), m.rows, m.crc32))
            .collect();
        self.catalog.retain_live(&live);
        Ok(merged.into_values().filter_map(family_of).collect())
    }

    /// Runs a sample query over one part of `metric_points`, registered
    /// as `p`.
    async fn part_query(&self, part: Snapshot, sql: &str) -> Result<Vec<RecordBatch>, Error> {
        self.query_on(part, "p", sql).await
    }

    /// Runs a catalogue query over one part of `metric_points`, registered
    /// as `c`.
    async fn catalog_query(&self, part: Snapshot, sql: &str) -> Result<Vec<RecordBatch>, Error> {
        self.query_on(part, "c", sql).await
    }

    /// Runs `sql` over one part of `metric_points`, registered as `table`.
    async fn query_on(
        &self,
        part: Snapshot,
        table: &str,
        sql: &str,
    ) -> Result<Vec<RecordBatch>, Error> {
        let ctx = self.store.session();
        crate::red::register(&ctx, table, part).map_err(|e| Error::Internal(e.to_string()))?;
        ctx.sql(sql)
            .await
            .map_err(to_promql)?
            .collect()
            .await
            .map_err(to_promql)
    }

    /// The series matching `matchers` in `[start_ms, end_ms]`: labels
    /// only when `with_samples` is false.
    pub async fn series(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        with_samples: bool,
    ) -> Result<Vec<Series>, Error> {
        let mut out = self
            .stored_series(matchers, start_ms, end_ms, with_samples)
            .await?;
        let name_matchers: Vec<&Matcher> =
            matchers.iter().filter(|m| m.name == "__name__").collect();
        if self.rollups.is_some() && crate::spanmetrics::wanted(&name_matchers) {
            let rows = self.span_metric_rows(start_ms, end_ms).await?;
            out.extend(crate::spanmetrics::series(
                &rows,
                matchers,
                start_ms,
                end_ms,
                with_samples,
            ));
        }
        if let Some(r) = &self.rollups
            && crate::servicegraph::wanted(&name_matchers)
        {
            let end_ns = end_ms.saturating_mul(1_000_000).saturating_add(1);
            let mut start_ns = start_ms.saturating_mul(1_000_000);
            if !with_samples {
                // Labels only (series, labels, label values): the edges of
                // the last day of the range are enough.
                start_ns = start_ns.max(end_ns.saturating_sub(24 * 3_600_000_000_000));
            }
            let edges = r
                .graph
                .minutes(&self.store, start_ns, end_ns)
                .await
                .map_err(|e| match e {
                    crate::red::RedError::BadRequest(m) => Error::Execution(m),
                    other => Error::Internal(other.to_string()),
                })?;
            out.extend(crate::servicegraph::series(
                &edges,
                matchers,
                start_ms,
                end_ms,
                with_samples,
            ));
        }
        Ok(out)
    }

    async fn stored_series(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        with_samples: bool,
    ) -> Result<Vec<Series>, Error> {
        let catalog = self.stored_catalog(start_ms, end_ms).await?;
        let name_matchers: Vec<&Matcher> =
            matchers.iter().filter(|m| m.name == "__name__").collect();
        let target_info = name_matchers.iter().all(|m| m.matches("target_info"));
        let families: Vec<&Family> = catalog
            .iter()
            .filter(|f| {
                f.series_names()
                    .iter()
                    .any(|n| name_matchers.iter().all(|m| m.matches(n)))
            })
            .collect();
        let mut wanted: Vec<&str> = families.iter().map(|f| f.stored.as_str()).collect();
        if target_info {
            // Every OTLP family's resources report `target_info`.
            wanted.extend(
                catalog
                    .iter()
                    .filter(|f| !f.remote_write)
                    .map(|f| f.stored.as_str()),
            );
        }
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let only_remote_write = !target_info && families.iter().all(|f| f.remote_write);
        let mut filter = String::new();
        if only_remote_write {
            for m in matchers
                .iter()
                .filter(|m| m.name != "__name__" && m.op == MatchOp::Equal)
            {
                if m.value.is_empty() {
                    continue;
                }
                filter.push_str(&format!(
                    " AND attributes[{}] = {}",
                    quote(&m.name),
                    quote(&m.value)
                ));
            }
        }
        let names: Vec<String> = wanted.iter().map(|n| quote(n)).collect();
        let by_name: HashMap<(&str, &str, bool), &Family> = catalog
            .iter()
            .map(|f| {
                (
                    (f.stored.as_str(), f.metric_type.as_str(), f.remote_write),
                    f,
                )
            })
            .collect();
        // Remote-write series are a name, labels and values: the other
        // columns (resources, histogram and summary parts) are not read.
        let columns = if only_remote_write {
            "attributes, CAST(time AS BIGINT) AS t, value"
        } else {
            "service_name, attributes, resource_attributes, CAST(time AS BIGINT) AS t, value, \
             count, sum, bucket_counts, explicit_bounds, quantiles"
        };
        let shape = Shape {
            by_name: &by_name,
            families: &families,
            target_info,
        };
        let mut out = Collect {
            matchers,
            with_samples,
            series: Vec::new(),
            by_labels: HashMap::new(),
            slots: HashMap::default(),
            total: 0,
            limit: MAX_SELECT_SAMPLES,
        };
        let select = |range: &str, filter: &str| {
            format!(
                "SELECT metric_name, metric_type, scope_name = {rw} AS rw, {columns} FROM p \
                 WHERE metric_name IN ({names}){range} AND (flags & 1) = 0{filter}",
                rw = quote(REMOTE_WRITE_SCOPE),
                names = names.join(", "),
            )
        };
        let range = format!(" AND {}", ns_range(start_ms, end_ms));
        let snap = self.store.snapshot(Table::MetricPoints);
        let mut one_query = !filter.is_empty();
        if !one_query {
            // Each file's series are computed once (files never change) and
            // kept in the shared cache; the rows in memory are read each
            // time. The parts are merged by labels, trimmed to the range.
            let key_shape = shape.key(&names);
            let (start_ns, end_ns) = (
                start_ms.saturating_mul(1_000_000),
                end_ms.saturating_mul(1_000_000).saturating_add(999_999),
            );
            let mut parts: Vec<Arc<PartSeries>> = Vec::new();
            for (path, meta) in &snap.files {
                if meta.max_time_ns < start_ns || meta.min_time_ns > end_ns {
                    continue;
                }
                let key = (
                    (meta.path.clone(), meta.rows, meta.crc32),
                    key_shape.clone(),
                );
                let part = match self.catalog.series_get(&key) {
                    Some(p) => p,
                    None => {
                        let one = Snapshot {
                            table: Table::MetricPoints,
                            files: vec![(path.clone(), meta.clone())],
                            batches: vec![],
                        };
                        let batches = self.part_query(one, &select("", "")).await?;
                        let Some(p) = shape.part(&batches, self.part_max_samples)? else {
                            one_query = true;
                            break;
                        };
                        let p = Arc::new(p);
                        self.catalog.series_put(key, p.clone());
                        p
                    }
                };
                parts.push(part);
            }
            if !one_query && !snap.batches.is_empty() {
                let memory = Snapshot {
                    table: Table::MetricPoints,
                    files: vec![],
                    batches: snap.batches.clone(),
                };
                let batches = self.part_query(memory, &select(&range, "")).await?;
                match shape.part(&batches, self.part_max_samples)? {
                    Some(p) => parts.push(Arc::new(p)),
                    None => one_query = true,
                }
            }
            if !one_query {
                out.merge(&parts, start_ms, end_ms)?;
            }
        }
        if one_query {
            // Equality matchers pushed into the scan, or a file too large
            // to cache: one query, the matchers applied as rows are read.
            let batches = self.part_query(snap, &select(&range, &filter)).await?;
            shape.collect(&batches, &mut out)?;
        }
        let mut series: Vec<Series> = out
            .series
            .into_iter()
            .map(|(labels, mut samples)| {
                // Sorted by time; a timestamp written twice keeps one sample.
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
                Series { labels, samples }
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(series)
    }
}

/// What turns a selection's rows into series, besides its matchers and
/// time range: the families in its window's catalogue, the ones it asked
/// for, and whether `target_info` is wanted.
struct Shape<'a> {
    by_name: &'a HashMap<(&'a str, &'a str, bool), &'a Family>,
    families: &'a [&'a Family],
    target_info: bool,
}

/// One part's series (a file, or the rows in memory): labels and samples
/// in the part's order (not yet sorted or de-duplicated).
type PartSeries = Vec<(Labels, Vec<(i64, f64)>)>;

impl Shape<'_> {
    /// A key that differs whenever the shape would turn the same rows into
    /// other series.
    fn key(&self, names: &[String]) -> String {
        let mut fams: Vec<String> = self
            .by_name
            .values()
            .map(|f| {
                format!(
                    "{}|{}|{}|{}|{}|{}|{}",
                    f.stored,
                    f.metric_type,
                    f.remote_write,
                    f.name,
                    f.prom_type,
                    f.monotonic,
                    self.families.iter().any(|x| std::ptr::eq(*x, *f))
                )
            })
            .collect();
        fams.sort_unstable();
        format!(
            "{}#{}#{}",
            names.join(","),
            self.target_info,
            fams.join(";")
        )
    }

    /// Every series of one part, unfiltered; `None` past `max_samples`.
    fn part(
        &self,
        batches: &[RecordBatch],
        max_samples: usize,
    ) -> Result<Option<PartSeries>, Error> {
        let mut out = Collect {
            matchers: &[],
            with_samples: true,
            series: Vec::new(),
            by_labels: HashMap::new(),
            slots: HashMap::default(),
            total: 0,
            limit: max_samples,
        };
        match self.collect(batches, &mut out) {
            Ok(()) => Ok(Some(out.series)),
            Err(_) if out.total > max_samples => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds the series of `batches` to `out`.
    fn collect(&self, batches: &[RecordBatch], out: &mut Collect<'_>) -> Result<(), Error> {
        let (by_name, families, target_info) = (self.by_name, self.families, self.target_info);
        let hasher = foldhash::quality::RandomState::default();
        let mut last: Option<(usize, &Family)>;
        // Sub-series of one row identity.
        const VALUE: u32 = 0;
        const COUNT: u32 = 1;
        const SUM: u32 = 2;
        const INFO: u32 = 3;
        const BUCKET: u32 = 16;
        for b in batches {
            let rows = Rows::new(b)?;
            last = None;
            for i in 0..b.num_rows() {
                // Rows come sorted by name: the previous row's family is
                // checked first.
                let f = match last {
                    Some((j, f))
                        if rows.names.value(j) == rows.names.value(i)
                            && rows.types.value(j) == rows.types.value(i)
                            && rows.rw(j) == rows.rw(i) =>
                    {
                        f
                    }
                    _ => {
                        let Some(f) =
                            by_name.get(&(rows.names.value(i), rows.types.value(i), rows.rw(i)))
                        else {
                            continue;
                        };
                        last = Some((i, f));
                        f
                    }
                };
                let t = rows.t.value(i).div_euclid(1_000_000);
                let id = rows.identity(&hasher, i, f, !f.remote_write);
                if f.remote_write {
                    let slot = out.slot((id, VALUE), || {
                        let mut pairs = rows.attributes(i, false);
                        pairs.push(("__name__".into(), f.name.clone()));
                        Labels::new(pairs)
                    });
                    out.push(slot, t, rows.f64(&rows.value, i))?;
                    continue;
                }
                let base = || {
                    let mut base = rows.attributes(i, true);
                    rows.job_instance(i, &mut base);
                    base
                };
                if target_info {
                    let slot = out.slot((id, INFO), || {
                        let mut info = rows.resource(i);
                        rows.job_instance(i, &mut info);
                        info.push(("__name__".into(), "target_info".into()));
                        Labels::new(info)
                    });
                    out.push(slot, t, 1.0)?;
                }
                if !families.iter().any(|x| std::ptr::eq(*x, f)) {
                    continue;
                }
                let with = |name: String, extra: Option<(&str, String)>| {
                    let mut l = base();
                    l.push(("__name__".into(), name));
                    if let Some((k, v)) = extra {
                        l.retain(|(x, _)| x != k);
                        l.push((k.to_string(), v));
                    }
                    Labels::new(l)
                };
                match f.metric_type.as_str() {
                    "gauge" | "sum" => {
                        let slot = out.slot((id, VALUE), || with(f.name.clone(), None));
                        out.push(slot, t, rows.f64(&rows.value, i))?;
                    }
                    "histogram" | "exponential_histogram" | "summary" => {
                        let count = rows.count(i);
                        let sum = rows.f64(&rows.sum, i);
                        let slot =
                            out.slot((id, COUNT), || with(format!("{}_count", f.name), None));
                        out.push(slot, t, count)?;
                        if !sum.is_nan() || f.metric_type == "summary" {
                            let slot =
                                out.slot((id, SUM), || with(format!("{}_sum", f.name), None));
                            out.push(slot, t, sum)?;
                        }
                        if f.metric_type == "histogram" {
                            let (bounds, counts) = rows.buckets(i);
                            let mut acc = 0u64;
                            for (j, c) in counts.iter().enumerate() {
                                acc = acc.saturating_add(*c);
                                let le = bounds.get(j).copied().unwrap_or(f64::INFINITY);
                                let slot = out.slot((id, BUCKET + j as u32), || {
                                    with(
                                        format!("{}_bucket", f.name),
                                        Some(("le", format_bound(le))),
                                    )
                                });
                                out.push(slot, t, acc as f64)?;
                            }
                            if counts.is_empty() {
                                let slot = out.slot((id, BUCKET), || {
                                    with(format!("{}_bucket", f.name), Some(("le", "+Inf".into())))
                                });
                                out.push(slot, t, count)?;
                            }
                        } else if f.metric_type == "summary" {
                            for (j, (q, v)) in rows.quantiles(i).into_iter().enumerate() {
                                let slot = out.slot((id, BUCKET + j as u32), || {
                                    with(f.name.clone(), Some(("quantile", format_bound(q))))
                                });
                                out.push(slot, t, v)?;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// One family in one part of `metric_points` (a file, or the rows in
/// memory): what the catalogue query gives per name, type and origin.
#[derive(Debug, Clone)]
struct CatalogEntry {
    stored: String,
    metric_type: String,
    remote_write: bool,
    monotonic: bool,
    temporality: String,
    unit: String,
    help: String,
}

/// The catalogue of each `metric_points` file, computed once per file:
/// files never change once written, so a window's catalogue is the merge
/// of the cached catalogues of the files inside it, and a query only over
/// the files at the window's edges and the rows in memory. The merge is
/// exact: the per-file aggregates (`bool_or`, `max`) fold like the
/// whole-window ones. Entries of files no longer live are dropped at
/// each use, so the cache holds at most the live files' families.
///
/// It also holds each file's series for the selections made of it (one
/// entry per file and [`Shape`]), so that a repeated query decodes no
/// Parquet: at most [`SERIES_CACHE_BYTES`], least recently used first out.
#[derive(Debug, Default)]
pub struct CatalogCache {
    files: std::sync::Mutex<HashMap<FileKey, Arc<Vec<CatalogEntry>>>>,
    series: std::sync::Mutex<SeriesEntries>,
}

/// Most bytes of cached per-file series (labels and samples) per store.
pub const SERIES_CACHE_BYTES: usize = 64 << 20;

/// (file, shape key).
type SeriesKey = (FileKey, String);

#[derive(Debug, Default)]
struct SeriesEntries {
    entries: HashMap<SeriesKey, (Arc<PartSeries>, usize, u64)>,
    bytes: usize,
    tick: u64,
}

/// Bytes a part's series hold, roughly: samples, label strings and the
/// per-series overhead.
fn part_bytes(p: &PartSeries) -> usize {
    p.iter()
        .map(|(l, s)| {
            64 + s.len() * 16
                + l.0
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
        })
        .sum()
}

/// A file: its path, row count and checksum.
type FileKey = (String, u64, Option<u32>);

/// The catalogue cache of the store at a data directory, shared by every
/// source made with [`PromSource::new`] (rules and SLIs make one per
/// evaluation). The entry of each store holds at most its live files'
/// families.
fn shared_catalog(store: &Store) -> Arc<CatalogCache> {
    static CACHES: std::sync::OnceLock<
        std::sync::Mutex<HashMap<std::path::PathBuf, Arc<CatalogCache>>>,
    > = std::sync::OnceLock::new();
    CACHES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(store.data_dir().to_path_buf())
        .or_default()
        .clone()
}

impl CatalogCache {
    fn get(&self, key: &FileKey) -> Option<Arc<Vec<CatalogEntry>>> {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn put(&self, key: FileKey, entries: Arc<Vec<CatalogEntry>>) {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, entries);
    }

    fn retain_live(&self, live: &std::collections::HashSet<(&str, u64, Option<u32>)>) {
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, r, c), _| live.contains(&(p.as_str(), *r, *c)));
        let mut s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        s.entries
            .retain(|((p, r, c), _), _| live.contains(&(p.as_str(), *r, *c)));
        s.bytes = s.entries.values().map(|e| e.1).sum();
    }

    fn series_get(&self, key: &SeriesKey) -> Option<Arc<PartSeries>> {
        let mut s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        s.tick += 1;
        let tick = s.tick;
        s.entries.get_mut(key).map(|e| {
            e.2 = tick;
            e.0.clone()
        })
    }

    fn series_put(&self, key: SeriesKey, part: Arc<PartSeries>) {
        let bytes = part_bytes(&part);
        if bytes > SERIES_CACHE_BYTES / 4 {
            return;
        }
        let mut s = self.series.lock().unwrap_or_else(|e| e.into_inner());
        s.tick += 1;
        let tick = s.tick;
        if let Some(old) = s.entries.insert(key, (part, bytes, tick)) {
            s.bytes -= old.1;
        }
        s.bytes += bytes;
        while s.bytes > SERIES_CACHE_BYTES {
            let Some(oldest) = s
                .entries
                .iter()
                .min_by_key(|(_, e)| e.2)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = s.entries.remove(&oldest) {
                s.bytes -= e.1;
            }
        }
    }

    /// Bytes of per-file series held.
    pub fn series_bytes(&self) -> usize {
        self.series.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }

    /// Files whose catalogue is held.
    pub fn len(&self) -> usize {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no file's catalogue is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The catalogue query over `table`, restricted by `filter`.
fn catalog_sql(table: &str, filter: &str) -> String {
    format!(
        "SELECT metric_name, metric_type, scope_name = {rw} AS rw, \
         coalesce(bool_or(is_monotonic), false) AS mono, coalesce(max(temporality), '') AS temp, \
         coalesce(max(unit), '') AS unit, coalesce(max(description), '') AS help \
         FROM {table} WHERE (flags & 1) = 0{filter} \
         GROUP BY metric_name, metric_type, scope_name = {rw}",
        rw = quote(REMOTE_WRITE_SCOPE),
    )
}

/// The catalogue entries of a query's batches.
fn catalog_entries(batches: &[RecordBatch]) -> Result<Vec<CatalogEntry>, Error> {
    let mut out = Vec::new();
    for b in batches {
        let s = |name: &str| -> Result<StringArray, Error> { strings(b, name) };
        let (names, types, temps, units, helps) = (
            s("metric_name")?,
            s("metric_type")?,
            s("temp")?,
            s("unit")?,
            s("help")?,
        );
        let rw = b
            .column_by_name("rw")
            .and_then(|c| c.as_boolean_opt().cloned());
        let mono = b
            .column_by_name("mono")
            .and_then(|c| c.as_boolean_opt().cloned());
        for i in 0..b.num_rows() {
            out.push(CatalogEntry {
                stored: str_at(&names, i).to_string(),
                metric_type: str_at(&types, i).to_string(),
                remote_write: rw.as_ref().is_some_and(|a| !a.is_null(i) && a.value(i)),
                monotonic: mono.as_ref().is_some_and(|a| !a.is_null(i) && a.value(i)),
                temporality: str_at(&temps, i).to_string(),
                unit: str_at(&units, i).to_string(),
                help: str_at(&helps, i).to_string(),
            });
        }
    }
    Ok(out)
}

/// Folds `e` into `into` as the whole-window aggregates would.
fn merge_entry(into: &mut BTreeMap<(String, String, bool), CatalogEntry>, e: &CatalogEntry) {
    let key = (e.stored.clone(), e.metric_type.clone(), e.remote_write);
    match into.get_mut(&key) {
        None => {
            into.insert(key, e.clone());
        }
        Some(x) => {
            x.monotonic |= e.monotonic;
            for (a, b) in [
                (&mut x.temporality, &e.temporality),
                (&mut x.unit, &e.unit),
                (&mut x.help, &e.help),
            ] {
                if b > a {
                    a.clone_from(b);
                }
            }
        }
    }
}

/// The Prometheus family of a merged catalogue entry, if it has one.
fn family_of(e: CatalogEntry) -> Option<Family> {
    let name = if e.remote_write {
        e.stored.clone()
    } else {
        otlp_name(&e.stored, &e.unit, &e.metric_type, e.monotonic)
    };
    let prom_type = match (e.metric_type.as_str(), e.monotonic) {
        ("sum", true) => "counter",
        ("sum", false) | ("gauge", _) => "gauge",
        ("histogram" | "exponential_histogram", _) => "histogram",
        ("summary", _) => "summary",
        _ => "unknown",
    };
    let f = Family {
        stored: e.stored,
        metric_type: e.metric_type,
        remote_write: e.remote_write,
        monotonic: e.monotonic,
        temporality: e.temporality,
        unit: e.unit,
        help: e.help,
        name,
        prom_type,
    };
    f.representable().then_some(f)
}

/// The series one selection gathers: each row identity's sub-series is
/// given its labels, and checked against the matchers, once.
struct Collect<'m> {
    matchers: &'m [Matcher],
    with_samples: bool,
    series: Vec<(Labels, Vec<(i64, f64)>)>,
    by_labels: HashMap<Labels, usize>,
    /// (row identity, sub-series) -> its series, `None` when filtered out.
    slots: HashMap<(u64, u32), Option<usize>, foldhash::fast::RandomState>,
    total: usize,
    /// Most samples kept before the selection fails.
    limit: usize,
}

impl Collect<'_> {
    fn slot(&mut self, key: (u64, u32), labels: impl FnOnce() -> Labels) -> Option<usize> {
        if let Some(s) = self.slots.get(&key) {
            return *s;
        }
        let labels = labels();
        let slot = self
            .matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
            .then(|| match self.by_labels.get(&labels) {
                Some(i) => *i,
                None => {
                    self.series.push((labels.clone(), Vec::new()));
                    self.by_labels.insert(labels, self.series.len() - 1);
                    self.series.len() - 1
                }
            });
        self.slots.insert(key, slot);
        slot
    }

    /// Adds the series of `parts`, their samples trimmed to
    /// `[start_ms, end_ms]`: each distinct label set is checked against
    /// the matchers once.
    fn merge(
        &mut self,
        parts: &[Arc<PartSeries>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<(), Error> {
        let mut verdicts: HashMap<&Labels, Option<usize>> = HashMap::new();
        for part in parts {
            for (labels, samples) in part.iter() {
                let within: Vec<&(i64, f64)> = if samples.is_sorted_by_key(|s| s.0) {
                    let lo = samples.partition_point(|s| s.0 < start_ms);
                    let hi = samples.partition_point(|s| s.0 <= end_ms);
                    samples[lo..hi.max(lo)].iter().collect()
                } else {
                    samples
                        .iter()
                        .filter(|s| s.0 >= start_ms && s.0 <= end_ms)
                        .collect()
                };
                if within.is_empty() {
                    continue;
                }
                let slot = match verdicts.get(labels) {
                    Some(v) => *v,
                    None => {
                        let matches = self
                            .matchers
                            .iter()
                            .all(|m| m.matches(labels.get(&m.name).unwrap_or("")));
                        let v = matches.then(|| match self.by_labels.get(labels) {
                            Some(i) => *i,
                            None => {
                                self.series.push((labels.clone(), Vec::new()));
                                self.by_labels.insert(labels.clone(), self.series.len() - 1);
                                self.series.len() - 1
                            }
                        });
                        verdicts.insert(labels, v);
                        v
                    }
                };
                let Some(i) = slot else { continue };
                self.total += within.len();
                if self.total > self.limit {
                    return Err(too_many_loaded());
                }
                if self.with_samples {
                    self.series[i].1.extend(within.into_iter().copied());
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, slot: Option<usize>, t: i64, v: f64) -> Result<(), Error> {
        let Some(i) = slot else {
            return Ok(());
        };
        self.total += 1;
        if self.total > self.limit {
            return Err(too_many_loaded());
        }
        if self.with_samples {
            self.series[i].1.push((t, v));
        }
        Ok(())
    }
}

fn too_many_loaded() -> Error {
    Error::Execution(
        "query processing would load too many samples into memory in query execution".into(),
    )
}

/// One exemplar as the Prometheus API returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// `trace_id`, `span_id` and the filtered attributes.
    pub labels: Labels,
    /// The observed value.
    pub value: f64,
    /// Unix ms.
    pub t: i64,
}

impl PromSource {
    /// Exemplars with times in `[start_ms, end_ms]` of the series matching
    /// `matchers`, by series. A histogram's exemplar belongs to the
    /// `_bucket` series whose bucket holds its value.
    pub async fn exemplars(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, Error> {
        let mut synthetic = Vec::new();
        let name_matchers: Vec<&Matcher> =
            matchers.iter().filter(|m| m.name == "__name__").collect();
        if self.rollups.is_some() && crate::spanmetrics::wanted(&name_matchers) {
            let rows = self.span_metric_rows(start_ms, end_ms).await?;
            synthetic = crate::spanmetrics::exemplars(&rows, matchers, start_ms, end_ms);
        }
        let mut stored = self.stored_exemplars(matchers, start_ms, end_ms).await?;
        stored.extend(synthetic);
        Ok(stored)
    }

    async fn stored_exemplars(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(Labels, Vec<Exemplar>)>, Error> {
        const HOUR_MS: i64 = 3_600_000;
        let catalog = self
            .stored_catalog(
                start_ms.saturating_sub(HOUR_MS),
                end_ms.saturating_add(HOUR_MS),
            )
            .await?;
        let name_matchers: Vec<&Matcher> =
            matchers.iter().filter(|m| m.name == "__name__").collect();
        let families: HashMap<(&str, &str, bool), &Family> = catalog
            .iter()
            .filter(|f| {
                f.series_names()
                    .iter()
                    .any(|n| name_matchers.iter().all(|m| m.matches(n)))
            })
            .map(|f| {
                (
                    (f.stored.as_str(), f.metric_type.as_str(), f.remote_write),
                    f,
                )
            })
            .collect();
        if families.is_empty() {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = families.keys().map(|k| quote(k.0)).collect();
        names.sort_unstable();
        names.dedup();
        let sql = format!(
            "SELECT metric_name, metric_type, rw, service_name, attributes, resource_attributes, t, value, count, sum, \
             bucket_counts, explicit_bounds, quantiles, CAST(ex['time'] AS BIGINT) AS et, ex['value'] AS ev, \
             ex['trace_id'] AS tid, ex['span_id'] AS sid FROM (\
             SELECT metric_name, metric_type, scope_name = {rw} AS rw, service_name, attributes, resource_attributes, \
             CAST(time AS BIGINT) AS t, value, count, sum, bucket_counts, explicit_bounds, quantiles, unnest(exemplars) AS ex \
             FROM metric_points WHERE metric_name IN ({names}) AND {range} AND cardinality(exemplars) > 0) \
             WHERE ex['time'] >= to_timestamp_nanos({from}) AND ex['time'] <= to_timestamp_nanos({to})",
            rw = quote(REMOTE_WRITE_SCOPE),
            names = names.join(", "),
            range = ns_range(
                start_ms.saturating_sub(HOUR_MS),
                end_ms.saturating_add(HOUR_MS)
            ),
            from = start_ms.saturating_mul(1_000_000),
            to = end_ms.saturating_mul(1_000_000).saturating_add(999_999),
        );
        let batches = store::query::collect(&self.store, &sql)
            .await
            .map_err(to_promql)?;
        let mut out: BTreeMap<Labels, Vec<Exemplar>> = BTreeMap::new();
        for b in &batches {
            let rows = Rows::new(b)?;
            let et = b
                .column_by_name("et")
                .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned());
            let ev = b
                .column_by_name("ev")
                .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned());
            let (Some(et), Some(ev)) = (et, ev) else {
                return Err(Error::Internal(
                    "exemplar columns have unexpected types".into(),
                ));
            };
            let (tid, sid) = (strings(b, "tid")?, strings(b, "sid")?);
            for i in 0..b.num_rows() {
                let Some(f) = families.get(&(rows.names.value(i), rows.types.value(i), rows.rw(i)))
                else {
                    continue;
                };
                let value = if ev.is_null(i) { f64::NAN } else { ev.value(i) };
                let mut pairs = if f.remote_write {
                    rows.attributes(i, false)
                } else {
                    let mut p = rows.attributes(i, true);
                    rows.job_instance(i, &mut p);
                    p
                };
                let name = if f.remote_write {
                    f.name.clone()
                } else if f.metric_type == "histogram" {
                    let (bounds, _) = rows.buckets(i);
                    let le = bounds
                        .iter()
                        .copied()
                        .find(|b| value <= *b)
                        .unwrap_or(f64::INFINITY);
                    pairs.push(("le".into(), format_bound(le)));
                    format!("{}_bucket", f.name)
                } else {
                    f.name.clone()
                };
                pairs.push(("__name__".into(), name));
                let labels = Labels::new(pairs);
                if !matchers
                    .iter()
                    .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
                {
                    continue;
                }
                let mut ex = Vec::new();
                if !tid.is_null(i) && !tid.value(i).is_empty() {
                    ex.push(("trace_id".to_string(), tid.value(i).to_string()));
                }
                if !sid.is_null(i) && !sid.value(i).is_empty() {
                    ex.push(("span_id".to_string(), sid.value(i).to_string()));
                }
                out.entry(labels).or_default().push(Exemplar {
                    labels: Labels::new(ex),
                    value,
                    t: et.value(i).div_euclid(1_000_000),
                });
            }
        }
        Ok(out.into_iter().collect())
    }
}

#[async_trait::async_trait]
impl Queryable for PromSource {
    async fn select(&self, selection: &Selection) -> Result<Vec<Series>, Error> {
        self.series(
            &selection.matchers,
            selection.start_ms,
            selection.end_ms,
            true,
        )
        .await
    }
}

fn strings(b: &RecordBatch, name: &str) -> Result<StringArray, Error> {
    let c = b
        .column_by_name(name)
        .ok_or_else(|| Error::Internal(format!("column {name} missing")))?;
    let c = arrow::compute::cast(c, &DataType::Utf8).map_err(to_promql)?;
    Ok(c.as_string::<i32>().clone())
}

fn str_at(a: &StringArray, i: usize) -> &str {
    if a.is_null(i) { "" } else { a.value(i) }
}

/// The columns of one batch of points.
struct Rows {
    names: StringArray,
    types: StringArray,
    rw: arrow::array::BooleanArray,
    service: StringArray,
    attributes: MapArray,
    resource: MapArray,
    t: arrow::array::Int64Array,
    value: arrow::array::Float64Array,
    count: arrow::array::UInt64Array,
    sum: arrow::array::Float64Array,
    bucket_counts: ListArray,
    explicit_bounds: ListArray,
    quantiles: ListArray,
}

impl Rows {
    fn new(b: &RecordBatch) -> Result<Rows, Error> {
        // Columns a selection of remote-write series does not read come
        // as nulls of the table's type.
        let schema = Table::MetricPoints.schema();
        let col = |n: &str| -> Result<arrow::array::ArrayRef, Error> {
            if let Some(c) = b.column_by_name(n) {
                return Ok(c.clone());
            }
            schema
                .field_with_name(n)
                .map(|f| arrow::array::new_null_array(f.data_type(), b.num_rows()))
                .map_err(|_| Error::Internal(format!("column {n} missing")))
        };
        let bad = |n: &str| Error::Internal(format!("column {n} has an unexpected type"));
        Ok(Rows {
            names: strings(b, "metric_name")?,
            types: strings(b, "metric_type")?,
            rw: col("rw")?
                .as_boolean_opt()
                .cloned()
                .ok_or_else(|| bad("rw"))?,
            service: match b.column_by_name("service_name") {
                Some(_) => strings(b, "service_name")?,
                None => StringArray::new_null(b.num_rows()),
            },
            attributes: col("attributes")?
                .as_map_opt()
                .cloned()
                .ok_or_else(|| bad("attributes"))?,
            resource: col("resource_attributes")?
                .as_map_opt()
                .cloned()
                .ok_or_else(|| bad("resource_attributes"))?,
            t: col("t")?
                .as_primitive_opt::<Int64Type>()
                .cloned()
                .ok_or_else(|| bad("t"))?,
            value: col("value")?
                .as_primitive_opt::<Float64Type>()
                .cloned()
                .ok_or_else(|| bad("value"))?,
            count: col("count")?
                .as_primitive_opt::<UInt64Type>()
                .cloned()
                .ok_or_else(|| bad("count"))?,
            sum: col("sum")?
                .as_primitive_opt::<Float64Type>()
                .cloned()
                .ok_or_else(|| bad("sum"))?,
            bucket_counts: col("bucket_counts")?
                .as_list_opt::<i32>()
                .cloned()
                .ok_or_else(|| bad("bucket_counts"))?,
            explicit_bounds: col("explicit_bounds")?
                .as_list_opt::<i32>()
                .cloned()
                .ok_or_else(|| bad("explicit_bounds"))?,
            quantiles: col("quantiles")?
                .as_list_opt::<i32>()
                .cloned()
                .ok_or_else(|| bad("quantiles"))?,
        })
    }

    fn rw(&self, i: usize) -> bool {
        !self.rw.is_null(i) && self.rw.value(i)
    }

    /// A hash of what makes a row's series: its family, its attributes,
    /// the resource (OTLP rows) and its bucket bounds or quantiles.
    fn identity(
        &self,
        hasher: &foldhash::quality::RandomState,
        i: usize,
        f: &Family,
        otlp: bool,
    ) -> u64 {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = hasher.build_hasher();
        (f as *const Family as usize).hash(&mut h);
        let entries = |m: &MapArray, h: &mut foldhash::quality::FoldHasher| {
            if m.is_null(i) {
                return;
            }
            let offsets = m.value_offsets();
            let (a, b) = (offsets[i] as usize, offsets[i + 1] as usize);
            if let (Some(k), Some(v)) = (
                m.keys().as_string_opt::<i32>(),
                m.values().as_string_opt::<i32>(),
            ) {
                for j in a..b {
                    k.value(j).hash(h);
                    if v.is_null(j) {
                        "\u{0}null".hash(h)
                    } else {
                        v.value(j).hash(h)
                    }
                }
            }
            (b - a).hash(h);
        };
        entries(&self.attributes, &mut h);
        if otlp {
            entries(&self.resource, &mut h);
            str_at(&self.service, i).hash(&mut h);
            if f.metric_type == "histogram" {
                for b in self.buckets(i).0 {
                    b.to_bits().hash(&mut h);
                }
            } else if f.metric_type == "summary" {
                for (q, _) in self.quantiles(i) {
                    q.to_bits().hash(&mut h);
                }
            }
        }
        h.finish()
    }

    fn f64(&self, a: &arrow::array::Float64Array, i: usize) -> f64 {
        if a.is_null(i) { f64::NAN } else { a.value(i) }
    }

    fn count(&self, i: usize) -> f64 {
        if self.count.is_null(i) {
            f64::NAN
        } else {
            self.count.value(i) as f64
        }
    }

    fn map_pairs(m: &MapArray, i: usize) -> Vec<(String, String)> {
        if m.is_null(i) {
            return Vec::new();
        }
        let e = m.value(i);
        let (Some(k), Some(v)) = (
            e.column(0).as_string_opt::<i32>(),
            e.column(1).as_string_opt::<i32>(),
        ) else {
            return Vec::new();
        };
        (0..e.len())
            .filter(|&j| !v.is_null(j))
            .map(|j| (k.value(j).to_string(), v.value(j).to_string()))
            .collect()
    }

    /// Point attributes; sanitised keys (OTLP) or as stored (remote write).
    fn attributes(&self, i: usize, sanitise: bool) -> Vec<(String, String)> {
        let mut pairs = Self::map_pairs(&self.attributes, i);
        if sanitise {
            let mut merged: BTreeMap<String, String> = BTreeMap::new();
            for (k, v) in pairs {
                let k = label_name(&k);
                if k == "job" || k == "instance" || k == "__name__" {
                    continue;
                }
                // Keys that sanitise alike are joined with `;`, sorted.
                merged
                    .entry(k)
                    .and_modify(|old| {
                        let mut parts: Vec<&str> =
                            old.split(';').chain(std::iter::once(v.as_str())).collect();
                        parts.sort_unstable();
                        *old = parts.join(";");
                    })
                    .or_insert(v);
            }
            pairs = merged.into_iter().collect();
        }
        pairs
    }

    /// Resource attributes other than the ones `job` and `instance` come from.
    fn resource(&self, i: usize) -> Vec<(String, String)> {
        Self::map_pairs(&self.resource, i)
            .into_iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .map(|(k, v)| (label_name(&k), v))
            .filter(|(k, _)| k != "job" && k != "instance")
            .collect()
    }

    fn job_instance(&self, i: usize, out: &mut Vec<(String, String)>) {
        let res = Self::map_pairs(&self.resource, i);
        let get = |k: &str| res.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        let service = get("service.name").unwrap_or_else(|| str_at(&self.service, i));
        let job = match get("service.namespace") {
            Some(ns) if !ns.is_empty() => format!("{ns}/{service}"),
            _ => service.to_string(),
        };
        out.push(("job".into(), job));
        if let Some(inst) = get("service.instance.id") {
            out.push(("instance".into(), inst.to_string()));
        }
    }

    fn buckets(&self, i: usize) -> (Vec<f64>, Vec<u64>) {
        let bounds = if self.explicit_bounds.is_null(i) {
            Vec::new()
        } else {
            let a = self.explicit_bounds.value(i);
            a.as_primitive_opt::<Float64Type>()
                .map(|p| p.values().to_vec())
                .unwrap_or_default()
        };
        let counts = if self.bucket_counts.is_null(i) {
            Vec::new()
        } else {
            let a = self.bucket_counts.value(i);
            a.as_primitive_opt::<UInt64Type>()
                .map(|p| p.values().to_vec())
                .unwrap_or_default()
        };
        (bounds, counts)
    }

    fn quantiles(&self, i: usize) -> Vec<(f64, f64)> {
        if self.quantiles.is_null(i) {
            return Vec::new();
        }
        let a = self.quantiles.value(i);
        let Some(s) = a.as_struct_opt() else {
            return Vec::new();
        };
        let (Some(q), Some(v)) = (
            s.column(0).as_primitive_opt::<Float64Type>(),
            s.column(1).as_primitive_opt::<Float64Type>(),
        ) else {
            return Vec::new();
        };
        (0..s.len()).map(|j| (q.value(j), v.value(j))).collect()
    }
}

/// A label name for an attribute key: invalid characters as `_`, a
/// leading digit prefixed with `key_`.
pub fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "key_");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_names_follow_the_compatibility_spec() {
        assert_eq!(
            otlp_name("http.server.request.duration", "s", "histogram", false),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            otlp_name("http.server.requests", "{request}", "sum", true),
            "http_server_requests_total"
        );
        assert_eq!(otlp_name("jobs_total", "", "sum", true), "jobs_total");
        assert_eq!(
            otlp_name("cpu.utilization", "1", "gauge", false),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            otlp_name("net.io", "By/s", "gauge", false),
            "net_io_bytes_per_second"
        );
        assert_eq!(otlp_name("queue.size", "", "sum", false), "queue_size");
        assert_eq!(
            otlp_name("latency_seconds", "s", "gauge", false),
            "latency_seconds"
        );
        assert_eq!(otlp_name("2xx..count", "", "gauge", false), "_2xx_count");
        assert_eq!(label_name("http.request.method"), "http_request_method");
        assert_eq!(label_name("1a"), "key_1a");
        assert_eq!(format_bound(0.005), "0.005");
        assert_eq!(format_bound(1.0), "1");
        assert_eq!(format_bound(f64::INFINITY), "+Inf");
    }
}
