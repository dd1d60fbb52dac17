//! Counting an SLI's events (total and bad) over time windows, exactly.
//!
//! Span and log SLIs use per-minute rollups per immutable data file, like the
//! RED rollups: for each live file, the number of rows matching the SLI's
//! total predicate and the number of those that are bad, per minute of the
//! row's time. A rollup is computed once per (SLI, file), kept in a memory
//! cache bounded by bytes and by the store as a derived file of kind
//! `sli-v1/<sli>` (under `<data>/rollups/sli-v1/<sli>/`, checksummed,
//! removed with its data file).
//! A count over `[from, to)` combines, without counting a row twice:
//! - rollup minutes of files, for minutes no window boundary falls inside;
//! - raw rows of files, for the minutes a boundary falls inside (*edges*);
//! - raw rows still in memory (not yet flushed), for the whole range.
//!
//! Metric SLIs count counter increases (resets and delta temporality
//! handled) or histogram observations at their points' times; SQL SLIs sum
//! the `value` column of the user's query by its `time` column. Both are
//! read from the store at each evaluation (metric points are few).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::prelude::SessionContext;
use store::files::FileMeta;
use store::sql::{QueryError, QueryLimits};
use store::{Snapshot, Store, Table};

use analytics::cache::{FileCache, Weigh};

/// One minute, ns.
pub const MINUTE_NS: i64 = 60_000_000_000;

/// The SLI rollups' kind of derived file in the store (one kind per SLI
/// below it: `sli-v1/<fingerprint>`).
pub const SLI_ROLLUP_KIND: &str = "sli-v1";
/// Directory of SLI rollup files, relative to the data directory.
pub const SLI_ROLLUP_DIR: &str = "rollups/sli-v1";

/// Default memory budget of the SLI rollup cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// Points of one metric, with a filter.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSelector {
    /// `metric_name`.
    pub metric: String,
    /// SQL conditions over `metric_points`, each starting with ` AND `.
    pub filter: String,
}

/// Where an SLI's events come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SliSource {
    /// Rows of spans or logs: every row matching `total` is an event, those
    /// also matching `bad` are bad.
    Rows {
        /// Spans or logs.
        table: Table,
        /// SQL predicate selecting the events.
        total: String,
        /// SQL predicate selecting the bad ones among them.
        bad: String,
    },
    /// Increases of two counters: all events, and the good or bad ones.
    Counters {
        /// All events.
        total: MetricSelector,
        /// Good (`other_is_good`) or bad events.
        other: MetricSelector,
        /// Whether `other` counts good events.
        other_is_good: bool,
    },
    /// Observations of an explicit-bucket histogram; good ones are in
    /// buckets whose upper bound is below (`lt`) or at most (`lte`) `bound`.
    Histogram {
        /// The histogram.
        metric: MetricSelector,
        /// The bound, in the histogram's unit.
        bound: f64,
        /// `lte` rather than `lt`.
        inclusive: bool,
    },
    /// Two PromQL queries evaluated at one-minute steps: counters whose
    /// increases are the events (`counter`), or the events of the minute
    /// before each step.
    Promql {
        /// All events.
        total: String,
        /// Good or bad events.
        other: String,
        /// Whether `other` counts good events.
        other_is_good: bool,
        /// The queries return cumulative counters.
        counter: bool,
    },
    /// Two queries returning `time` and `value` columns.
    Sql {
        /// All events.
        total: String,
        /// Good or bad events.
        other: String,
        /// Whether `other` counts good events.
        other_is_good: bool,
    },
}

impl SliSource {
    /// The spans predicates (total, bad) of a span SLI.
    pub fn span_predicates(&self) -> Option<(&str, &str)> {
        match self {
            SliSource::Rows {
                table: Table::Spans,
                total,
                bad,
            } => Some((total, bad)),
            _ => None,
        }
    }

    /// A stable 64-bit fingerprint of a row source (FNV-1a), naming its
    /// rollup directory.
    fn fingerprint(table: Table, total: &str, bad: &str, group: &[String]) -> u64 {
        let mut text = format!("{}\u{0}{total}\u{0}{bad}", table.name());
        if !group.is_empty() {
            text.push_str("\u{0}group\u{0}");
            text.push_str(&group.join("\u{0}"));
        }
        let mut h: u64 = 0xcbf29ce484222325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    }
}

fn time_column(table: Table) -> &'static str {
    match table {
        Table::Spans => "start_time",
        _ => "time",
    }
}

/// PromQL SLI minutes ending longer ago than this are cached (later
/// samples for them are not expected).
pub const PROMQL_SETTLE_NS: i64 = 5 * MINUTE_NS;

/// Cached events per minute of one PromQL SLI query over `[from, until)`.
#[derive(Debug, Default)]
struct PromqlMinutes {
    from: i64,
    until: i64,
    minutes: BTreeMap<i64, f64>,
}

/// Most steps one PromQL range evaluation takes (Prometheus's limit is
/// 11,000 points per series).
const PROMQL_CHUNK_STEPS: i64 = 10_000;

/// Events per minute of a PromQL query over `[from, to)` (ns): the query
/// is evaluated at every minute boundary; the value at minute end `m`
/// (summed over series) is the events of the minute starting `m - 1 min`,
/// or, for counters, each series' increase since the step before (a drop
/// is a reset: the new value counts from zero).
async fn promql_minutes(
    store: &Store,
    query: &str,
    from: i64,
    to: i64,
    counter: bool,
) -> Result<BTreeMap<i64, f64>, QueryError> {
    let first = from.div_euclid(MINUTE_NS) * MINUTE_NS;
    // Counters need the step before the first minute as a baseline.
    let start = first + MINUTE_NS - if counter { MINUTE_NS } else { 0 };
    let end = to.div_euclid(MINUTE_NS) * MINUTE_NS;
    let mut out = BTreeMap::new();
    if end < start {
        return Ok(out);
    }
    let engine = promql::Engine::new(promql::EngineOptions::default());
    let source = analytics::prom::PromSource::new(store.clone());
    // Each series' last (step, value), across chunks, for counters.
    let mut prev: HashMap<promql::Labels, (i64, f64)> = HashMap::new();
    let mut chunk_start = start;
    while chunk_start <= end {
        let chunk_end = end.min(chunk_start + (PROMQL_CHUNK_STEPS - 1) * MINUTE_NS);
        let value = engine
            .range(
                &source,
                query,
                chunk_start / 1_000_000,
                chunk_end / 1_000_000,
                MINUTE_NS / 1_000_000,
            )
            .await
            .map_err(|e| QueryError::Execution(format!("PromQL {query:?}: {e}")))?;
        let promql::Value::Matrix(series) = value else {
            return Err(QueryError::Execution(format!(
                "PromQL {query:?}: not a range result"
            )));
        };
        for s in series {
            for (t_ms, v) in s.samples {
                let t = t_ms * 1_000_000;
                let events = if counter {
                    let last = prev.insert(s.labels.clone(), (t, v));
                    match last {
                        Some((pt, pv)) if pt == t - MINUTE_NS => {
                            if v < pv {
                                v
                            } else {
                                v - pv
                            }
                        }
                        _ => continue,
                    }
                } else {
                    v
                };
                let minute = t - MINUTE_NS;
                if minute >= from && minute < to && events.is_finite() {
                    *out.entry(minute).or_insert(0.0) += events;
                }
            }
        }
        chunk_start = chunk_end + MINUTE_NS;
    }
    Ok(out)
}

/// Event weights summed per minute, plus events kept one by one.
#[derive(Debug, Default, Clone)]
struct Gathered {
    /// Minute start -> (total, other), for minutes no boundary falls inside.
    minutes: BTreeMap<i64, (f64, f64)>,
    /// (time, total, other) of single events.
    raw: Vec<(i64, f64, f64)>,
    /// `other` counts good events (bad = total - good).
    other_is_good: bool,
}

fn rounded(total: f64, other: f64, other_is_good: bool) -> (u64, u64) {
    let t = total.max(0.0).round() as u64;
    let o = other.max(0.0).round() as u64;
    if other_is_good {
        (t, t.saturating_sub(o))
    } else {
        (t, o.min(t))
    }
}

impl Gathered {
    fn add_minute(&mut self, m: i64, t: f64, o: f64) {
        let e = self.minutes.entry(m).or_default();
        e.0 += t;
        e.1 += o;
    }

    /// (total, bad) over `[from, to)`.
    fn window(&self, from: i64, to: i64) -> (u64, u64) {
        let (mut t, mut o) = (0.0, 0.0);
        // Whole minutes inside: starts in [from, to - 1 min]; none in a
        // window shorter than a minute.
        let last = to.saturating_sub(MINUTE_NS - 1);
        if from < last {
            for (_, (a, b)) in self.minutes.range(from..last) {
                t += a;
                o += b;
            }
        }
        for &(time, a, b) in &self.raw {
            if time >= from && time < to {
                t += a;
                o += b;
            }
        }
        rounded(t, o, self.other_is_good)
    }

    /// The time of the first event in `[from, to)`: the start of the first
    /// whole minute with events, or a single event's time.
    fn first(&self, from: i64, to: i64) -> Option<i64> {
        let minute = self
            .minutes
            .range(from..to.max(from))
            .find(|(_, (a, _))| *a > 0.0)
            .map(|(m, _)| *m);
        let single = self
            .raw
            .iter()
            .filter(|(time, a, _)| *time >= from && *time < to && *a > 0.0)
            .map(|(time, _, _)| *time)
            .min();
        match (minute, single) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// (total, bad) per minute of `[from, to)` (minute starts).
    fn per_minute(&self, from: i64, to: i64) -> BTreeMap<i64, (u64, u64)> {
        let mut sums: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
        for (m, (a, b)) in self.minutes.range(from..to.max(from)) {
            let e = sums.entry(*m).or_default();
            e.0 += a;
            e.1 += b;
        }
        for &(time, a, b) in &self.raw {
            if time >= from && time < to {
                let e = sums
                    .entry(time.div_euclid(MINUTE_NS) * MINUTE_NS)
                    .or_default();
                e.0 += a;
                e.1 += b;
            }
        }
        sums.into_iter()
            .map(|(m, (a, b))| (m, rounded(a, b, self.other_is_good)))
            .collect()
    }
}

/// Where gathered events go: whole minutes (rollups, grouped SQL) and
/// single events (edge minutes).
trait Acc: Clone {
    fn minute(&mut self, m: i64, t: f64, o: f64);
    fn raw(&mut self, time: i64, t: f64, o: f64);
}

impl Acc for Gathered {
    fn minute(&mut self, m: i64, t: f64, o: f64) {
        self.add_minute(m, t, o);
    }
    fn raw(&mut self, time: i64, t: f64, o: f64) {
        self.raw.push((time, t, o));
    }
}

/// Events per group of a grouped SLI (the key is the group's attribute
/// values; an ungrouped SLI has one group, the empty key).
#[derive(Debug)]
struct Groups<A> {
    by: HashMap<Vec<String>, A>,
    /// What a new group starts as.
    proto: A,
    /// At most this many groups are kept: the events of others are left out.
    max: usize,
    /// Some group was left out (or a file's rollup kept only its largest).
    saturated: bool,
}

impl<A: Acc> Groups<A> {
    fn new(max: usize, proto: A) -> Groups<A> {
        Groups {
            by: HashMap::new(),
            proto,
            max,
            saturated: false,
        }
    }

    fn group(&mut self, key: &[String]) -> Option<&mut A> {
        if !self.by.contains_key(key) {
            if self.by.len() >= self.max {
                self.saturated = true;
                return None;
            }
            self.by.insert(key.to_vec(), self.proto.clone());
        }
        self.by.get_mut(key)
    }

    fn add_minute(&mut self, key: &[String], m: i64, t: f64, o: f64) {
        if let Some(g) = self.group(key) {
            g.minute(m, t, o);
        }
    }

    fn add_raw(&mut self, key: &[String], time: i64, t: f64, o: f64) {
        if let Some(g) = self.group(key) {
            g.raw(time, t, o);
        }
    }
}

impl Groups<Gathered> {
    /// The one group of an ungrouped SLI.
    fn single(mut self) -> Gathered {
        self.by.remove(&Vec::new()).unwrap_or_default()
    }
}

/// One group's events summed per segment between consecutive boundaries
/// (16 bytes a segment, allocated on its first event): any window whose
/// ends are boundaries is a sum of whole segments, so a group costs the
/// same whatever the window's length.
#[derive(Debug, Clone)]
struct Segments {
    bounds: Arc<Vec<i64>>,
    first_after: i64,
    sums: Vec<(f64, f64)>,
    first: Option<i64>,
}

impl Acc for Segments {
    fn minute(&mut self, m: i64, t: f64, o: f64) {
        self.add(m, t, o);
    }
    fn raw(&mut self, time: i64, t: f64, o: f64) {
        self.add(time, t, o);
    }
}

impl Segments {
    fn add(&mut self, at: i64, t: f64, o: f64) {
        let i = self.bounds.partition_point(|b| *b <= at);
        if i == 0 || i >= self.bounds.len() {
            return;
        }
        if self.sums.is_empty() {
            self.sums = vec![(0.0, 0.0); self.bounds.len() - 1];
        }
        let s = &mut self.sums[i - 1];
        s.0 += t;
        s.1 += o;
        if t > 0.0 && at >= self.first_after && self.first.is_none_or(|f| at < f) {
            self.first = Some(at);
        }
    }
}

/// The events of one group of a grouped SLI (see
/// [`SliCounter::grouped_events`]).
#[derive(Debug)]
pub struct GroupEvents(Segments);

impl GroupEvents {
    /// (total, bad) over `[from, to)`, both among the bounds given to
    /// [`SliCounter::grouped_events`].
    pub fn window(&self, from: i64, to: i64) -> (u64, u64) {
        let b = &self.0.bounds;
        debug_assert!(b.binary_search(&from).is_ok() && b.binary_search(&to).is_ok());
        let (mut t, mut o) = (0.0, 0.0);
        for (i, (a, c)) in self.0.sums.iter().enumerate() {
            if b[i] >= from && b[i + 1] <= to {
                t += a;
                o += c;
            }
        }
        rounded(t, o, false)
    }

    /// The first event at or after the `first_after` given to
    /// [`SliCounter::grouped_events`] (the start of a whole minute, or a
    /// single event's time at the edges).
    pub fn first(&self) -> Option<i64> {
        self.0.first
    }

    /// (total, bad) per segment with events, keyed by the segment's start.
    pub fn per_segment(&self) -> BTreeMap<i64, (u64, u64)> {
        self.0
            .sums
            .iter()
            .enumerate()
            .filter(|(_, (t, _))| *t > 0.0)
            .map(|(i, (t, o))| (self.0.bounds[i], rounded(*t, *o, false)))
            .collect()
    }
}

/// Most groups one file's rollup of a grouped SLI keeps (its largest by
/// events); a file with more marks the SLI's groups as saturated.
pub const FILE_GROUPS: usize = 10_000;

/// The rollup of one (SLI, file): the groups' keys (one empty key for an
/// ungrouped SLI) and (group, minute, total, bad), sorted by minute.
#[derive(Debug)]
struct MinuteRollup {
    keys: Vec<Vec<String>>,
    rows: Vec<(u32, i64, u64, u64)>,
    /// Groups of the file beyond [`FILE_GROUPS`], left out.
    dropped_keys: u64,
}

impl Weigh for MinuteRollup {
    fn weight(&self) -> usize {
        let keys: usize = self
            .keys
            .iter()
            .flatten()
            .map(|k| k.len() + std::mem::size_of::<String>())
            .sum();
        64 + keys + self.keys.len() * 24 + self.rows.len() * 32
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct SliMetrics {
    /// Rollups answered from memory.
    pub cache_hits: AtomicU64,
    /// Rollups read from their file.
    pub loaded: AtomicU64,
    /// Rollups computed from a data file.
    pub computed: AtomicU64,
    /// Rollup files that could not be read (and were recomputed).
    pub unreadable: AtomicU64,
}

/// Counts SLI events over one store.
pub struct SliCounter {
    store: Store,
    cache: FileCache<MinuteRollup>,
    /// Events per minute of PromQL SLIs, for minutes old enough not to
    /// change, by (query, counter).
    promql: std::sync::Mutex<HashMap<(String, bool), PromqlMinutes>>,
    /// Counters.
    pub metrics: SliMetrics,
}

impl std::fmt::Debug for SliCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliCounter").finish_non_exhaustive()
    }
}

fn query_error(e: impl std::fmt::Display) -> QueryError {
    QueryError::Execution(e.to_string())
}

const MAGIC: &[u8; 8] = b"BWSLI02\n";
const GROUPED_MAGIC: &[u8; 8] = b"BWSLG01\n";

fn encode(r: &MinuteRollup) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + r.rows.len() * 28);
    if r.keys.len() == 1 && r.keys[0].is_empty() && r.dropped_keys == 0 {
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(r.rows.len() as u64).to_le_bytes());
        for (_, m, t, b) in &r.rows {
            out.extend_from_slice(&m.to_le_bytes());
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&b.to_le_bytes());
        }
        return out;
    }
    out.extend_from_slice(GROUPED_MAGIC);
    out.extend_from_slice(&r.dropped_keys.to_le_bytes());
    out.extend_from_slice(&(r.keys.len() as u64).to_le_bytes());
    for key in &r.keys {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        for v in key {
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
    out.extend_from_slice(&(r.rows.len() as u64).to_le_bytes());
    for (k, m, t, b) in &r.rows {
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(&m.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
    out
}

/// Reads little-endian words off a byte slice, refusing truncation.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

fn decode(bytes: &[u8]) -> Result<MinuteRollup, String> {
    if bytes.len() < 16 {
        return Err("not an SLI rollup file of this version".into());
    }
    let mut r = Reader(&bytes[8..]);
    if &bytes[..8] == MAGIC {
        let n = r.u64()? as usize;
        if r.0.len() != n.saturating_mul(24) {
            return Err("truncated".into());
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            rows.push((0, r.u64()? as i64, r.u64()?, r.u64()?));
        }
        return Ok(MinuteRollup {
            keys: vec![Vec::new()],
            rows,
            dropped_keys: 0,
        });
    }
    if &bytes[..8] != GROUPED_MAGIC {
        return Err("not an SLI rollup file of this version".into());
    }
    let dropped_keys = r.u64()?;
    let nkeys = r.u64()? as usize;
    if nkeys > bytes.len() {
        return Err("truncated".into());
    }
    let mut keys = Vec::with_capacity(nkeys);
    for _ in 0..nkeys {
        let parts = r.u32()? as usize;
        if parts > crate::openslo::MAX_GROUP_BY {
            return Err("a key with too many attributes".into());
        }
        let mut key = Vec::with_capacity(parts);
        for _ in 0..parts {
            let len = r.u32()? as usize;
            let text = std::str::from_utf8(r.take(len)?).map_err(|_| "a key that is not UTF-8")?;
            key.push(text.to_string());
        }
        keys.push(key);
    }
    let n = r.u64()? as usize;
    if r.0.len() != n.saturating_mul(28) {
        return Err("truncated".into());
    }
    let mut rows = Vec::with_capacity(n);
    for _ in 0..n {
        let k = r.u32()?;
        if k as usize >= keys.len() {
            return Err("a row of a key that is not there".into());
        }
        rows.push((k, r.u64()? as i64, r.u64()?, r.u64()?));
    }
    Ok(MinuteRollup {
        keys,
        rows,
        dropped_keys,
    })
}

impl SliCounter {
    /// A counter over `store` with a rollup cache of `budget` bytes.
    pub fn new(store: Store, budget: usize) -> Arc<SliCounter> {
        Arc::new(SliCounter {
            store,
            cache: FileCache::new(budget),
            promql: std::sync::Mutex::new(HashMap::new()),
            metrics: SliMetrics::default(),
        })
    }

    /// Events per minute of a PromQL SLI query over `[from, to)`: closed
    /// minutes (ended over [`PROMQL_SETTLE_NS`] ago) come from memory once
    /// computed; the rest is evaluated.
    async fn promql_minutes(
        &self,
        query: &str,
        from: i64,
        to: i64,
        counter: bool,
    ) -> Result<BTreeMap<i64, f64>, QueryError> {
        let key = (query.to_string(), counter);
        let settled = (store::now_ns() - PROMQL_SETTLE_NS).div_euclid(MINUTE_NS) * MINUTE_NS;
        let (mut known, computed_until) = {
            let cache = self.promql.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(&key) {
                Some(c) if c.from <= from => (
                    c.minutes
                        .range(from..to)
                        .map(|(m, v)| (*m, *v))
                        .collect::<BTreeMap<_, _>>(),
                    c.until.max(from),
                ),
                _ => (BTreeMap::new(), from),
            }
        };
        if computed_until < to {
            let fresh = promql_minutes(&self.store, query, computed_until, to, counter).await?;
            known.extend(fresh);
        }
        let until = settled.min(to).max(from);
        let mut cache = self.promql.lock().unwrap_or_else(|e| e.into_inner());
        let keep: BTreeMap<i64, f64> = known.range(from..until).map(|(m, v)| (*m, *v)).collect();
        cache.insert(
            key,
            PromqlMinutes {
                from,
                until,
                minutes: keep,
            },
        );
        Ok(known)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn kind(fp: u64) -> String {
        format!("{SLI_ROLLUP_KIND}/{fp:016x}")
    }

    /// The rollup of one (SLI, file): memory, file, or computed and saved.
    async fn file_rollup(
        &self,
        table: Table,
        total: &str,
        bad: &str,
        group: &[String],
        data_path: &Path,
        meta: &FileMeta,
    ) -> Result<Arc<MinuteRollup>, QueryError> {
        let kind = Self::kind(SliSource::fingerprint(table, total, bad, group));
        let path = self.store.derived_path(&kind, &meta.path);
        if let Some(r) = self.cache.get(&path) {
            self.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(r);
        }
        let read = match self.store.read_derived(&kind, &meta.path).await {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => {
                let decoded = decode(&bytes);
                if let Err(e) = &decoded
                    && let Err(e2) = self.store.reject_derived(&kind, &meta.path, e).await
                {
                    tracing::warn!(error = %e2, "could not quarantine an SLI rollup");
                }
                decoded.map(Some)
            }
            Err(e) => Err(e.to_string()),
        };
        let rollup = match read {
            Ok(Some(rollup)) => {
                self.metrics.loaded.fetch_add(1, Ordering::Relaxed);
                rollup
            }
            other => {
                if let Err(e) = other {
                    self.metrics.unreadable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %path.display(), error = %e, "unreadable SLI rollup; recomputing it");
                }
                let rollup =
                    compute(&self.store, table, total, bad, group, data_path, meta).await?;
                self.metrics.computed.fetch_add(1, Ordering::Relaxed);
                if !self.store.is_read_only() {
                    let saved = self
                        .store
                        .write_derived(&kind, &meta.path, encode(&rollup))
                        .await;
                    if let Err(e) = saved {
                        tracing::warn!(path = %path.display(), error = %e, "could not save an SLI rollup");
                    }
                }
                rollup
            }
        };
        let r = Arc::new(rollup);
        self.cache.insert(path, r.clone());
        Ok(r)
    }

    /// Deletes rollups of SLIs not in `sources` (an SLO was changed or
    /// removed); the store removes those of files that are gone. Returns
    /// the files deleted.
    /// A grouped SLO's rollups are kept by its source and `group_by`
    /// expressions.
    pub async fn sweep(&self, sources: &[(&SliSource, Vec<String>)]) -> u64 {
        let keep: HashSet<String> = sources
            .iter()
            .filter_map(|(s, group)| match s {
                SliSource::Rows { table, total, bad } => Some(Self::kind(SliSource::fingerprint(
                    *table, total, bad, group,
                ))),
                _ => None,
            })
            .collect();
        let root = self.store.data_dir().join(SLI_ROLLUP_DIR);
        let data = self.store.data_dir().to_path_buf();
        let live: HashSet<PathBuf> = Table::ALL
            .iter()
            .flat_map(|t| self.store.snapshot(*t).files.into_iter().map(|(p, _)| p))
            .collect();
        self.cache.retain(|p| {
            p.strip_prefix(&root)
                .ok()
                .and_then(|rel| {
                    let mut c = rel.components();
                    let fp = c.next()?.as_os_str().to_str()?;
                    Some(
                        keep.contains(&format!("{SLI_ROLLUP_KIND}/{fp}"))
                            && live.contains(&data.join(c.as_path())),
                    )
                })
                .unwrap_or(false)
        });
        match self
            .store
            .remove_derived(SLI_ROLLUP_KIND, |kind| keep.contains(kind))
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "could not remove stale SLI rollups");
                0
            }
        }
    }

    /// Bytes held by the memory cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// (total, bad) of `source` over each `[from, to)` window.
    pub async fn windows(
        &self,
        source: &SliSource,
        windows: &[(i64, i64)],
    ) -> Result<Vec<(u64, u64)>, QueryError> {
        Ok(self.windows_and_first(source, windows).await?.0)
    }

    /// [`SliCounter::windows`], and the time of the first event in the
    /// first window (how much of it holds data).
    pub async fn windows_and_first(
        &self,
        source: &SliSource,
        windows: &[(i64, i64)],
    ) -> Result<(Vec<(u64, u64)>, Option<i64>), QueryError> {
        let Some(from) = windows.iter().map(|w| w.0).min() else {
            return Ok((Vec::new(), None));
        };
        let to = windows.iter().map(|w| w.1).max().unwrap_or(from);
        let edges = edge_minutes(windows.iter().flat_map(|&(a, b)| [a, b]));
        let g = self.gather(source, from, to, &edges).await?;
        let first = g.first(windows[0].0, windows[0].1);
        Ok((
            windows.iter().map(|&(a, b)| g.window(a, b)).collect(),
            first,
        ))
    }

    /// (total, bad) per minute over `[from, to)`, keyed by minute start;
    /// minutes without events are absent. Partial first and last minutes
    /// count only their part inside the range.
    pub async fn minutes(
        &self,
        source: &SliSource,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<i64, (u64, u64)>, QueryError> {
        let edges = edge_minutes([from, to]);
        let g = self.gather(source, from, to, &edges).await?;
        Ok(g.per_minute(from.div_euclid(MINUTE_NS) * MINUTE_NS, to))
    }

    /// The events of a span or log SLI per group of `group` (SQL
    /// expressions over its rows), summed per segment between consecutive
    /// `bounds` (sorted, distinct, at least two), so any window whose ends
    /// are bounds counts exactly; and each group's first event at or after
    /// `first_after`. At most `max_groups` groups, the first met in time
    /// order (the flag says others were left out). Sorted by key.
    pub async fn grouped_events(
        &self,
        source: &SliSource,
        group: &[String],
        bounds: Vec<i64>,
        first_after: i64,
        max_groups: usize,
    ) -> Result<(Vec<(Vec<String>, GroupEvents)>, bool), QueryError> {
        let SliSource::Rows { table, total, bad } = source else {
            return Err(QueryError::Execution(
                "only span and log SLIs can be grouped".into(),
            ));
        };
        let (Some(&from), Some(&to)) = (bounds.first(), bounds.last()) else {
            return Ok((Vec::new(), false));
        };
        let edges = edge_minutes(bounds.iter().copied());
        let proto = Segments {
            bounds: Arc::new(bounds),
            first_after,
            sums: Vec::new(),
            first: None,
        };
        let mut g = Groups::new(max_groups, proto);
        self.gather_rows(*table, total, bad, group, from, to, &edges, &mut g)
            .await?;
        let mut out: Vec<(Vec<String>, GroupEvents)> =
            g.by.into_iter().map(|(k, g)| (k, GroupEvents(g))).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((out, g.saturated))
    }

    async fn gather(
        &self,
        source: &SliSource,
        from: i64,
        to: i64,
        edges: &BTreeSet<i64>,
    ) -> Result<Gathered, QueryError> {
        match source {
            SliSource::Rows { table, total, bad } => {
                let mut g = Groups::new(1, Gathered::default());
                self.gather_rows(*table, total, bad, &[], from, to, edges, &mut g)
                    .await?;
                Ok(g.single())
            }
            SliSource::Counters {
                total,
                other,
                other_is_good,
            } => {
                let mut g = Gathered {
                    other_is_good: *other_is_good,
                    ..Default::default()
                };
                analytics::series::counter_increases(
                    &self.store,
                    &total.metric,
                    &total.filter,
                    from,
                    to,
                    |t, inc| g.raw.push((t, inc, 0.0)),
                )
                .await
                .map_err(query_error)?;
                analytics::series::counter_increases(
                    &self.store,
                    &other.metric,
                    &other.filter,
                    from,
                    to,
                    |t, inc| g.raw.push((t, 0.0, inc)),
                )
                .await
                .map_err(query_error)?;
                Ok(g)
            }
            SliSource::Histogram {
                metric,
                bound,
                inclusive,
            } => {
                let mut g = Gathered {
                    other_is_good: true,
                    ..Default::default()
                };
                analytics::series::histogram_point_increases(
                    &self.store,
                    &metric.metric,
                    &metric.filter,
                    from,
                    to,
                    |t, bounds, counts| {
                        let total: u64 = counts.iter().sum();
                        // Bucket i holds values up to bounds[i]; the last is unbounded.
                        let good: u64 = counts
                            .iter()
                            .zip(bounds)
                            .filter(|(_, b)| {
                                if *inclusive {
                                    **b <= *bound
                                } else {
                                    **b < *bound
                                }
                            })
                            .map(|(c, _)| *c)
                            .sum();
                        g.raw.push((t, total as f64, good as f64));
                    },
                )
                .await
                .map_err(query_error)?;
                Ok(g)
            }
            SliSource::Promql {
                total,
                other,
                other_is_good,
                counter,
            } => {
                let mut g = Gathered {
                    other_is_good: *other_is_good,
                    ..Default::default()
                };
                for (query, is_total) in [(total, true), (other, false)] {
                    for (minute, events) in self.promql_minutes(query, from, to, *counter).await? {
                        if is_total {
                            g.add_minute(minute, events, 0.0);
                        } else {
                            g.add_minute(minute, 0.0, events);
                        }
                    }
                }
                Ok(g)
            }
            SliSource::Sql {
                total,
                other,
                other_is_good,
            } => {
                let range = |sql: &str| {
                    format!(
                        "SELECT CAST(time AS BIGINT) AS t, CAST(value AS DOUBLE) AS v FROM ({sql}) AS q \
                         WHERE time >= to_timestamp_nanos({from}) AND time < to_timestamp_nanos({to})"
                    )
                };
                let x = format!(
                    "SELECT t, v AS tw, 0.0 AS ow FROM ({}) AS a UNION ALL SELECT t, 0.0 AS tw, v AS ow FROM ({}) AS b",
                    range(total),
                    range(other)
                );
                let g = Gathered {
                    other_is_good: *other_is_good,
                    ..Default::default()
                };
                let (grouped, raw) = split(&x, edges, 0);
                let mut groups = Groups::new(1, Gathered::default());
                groups.by.insert(Vec::new(), g);
                absorb_minutes(&run_store(&self.store, &grouped).await?, &mut groups)?;
                if let Some(raw) = raw {
                    for b in run_store(&self.store, &raw).await? {
                        push_raw(&b, &mut groups)?;
                    }
                }
                Ok(groups.single())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn gather_rows<A: Acc + Send>(
        &self,
        table: Table,
        total: &str,
        bad: &str,
        group: &[String],
        from: i64,
        to: i64,
        edges: &BTreeSet<i64>,
        g: &mut Groups<A>,
    ) -> Result<(), QueryError> {
        let snap = self.store.snapshot(table);
        let mut edge_files = Vec::new();
        let last_whole = to.saturating_sub(MINUTE_NS - 1);
        for (path, meta) in &snap.files {
            if meta.max_time_ns < from || meta.min_time_ns >= to {
                continue;
            }
            let lo = meta.min_time_ns.div_euclid(MINUTE_NS) * MINUTE_NS;
            if edges.range(lo..=meta.max_time_ns).next().is_some() {
                edge_files.push((path.clone(), meta.clone()));
            }
            // Does the file hold any whole minute of the range that is not an edge?
            let first = lo.max(from);
            if first >= last_whole {
                continue;
            }
            let r = self
                .file_rollup(table, total, bad, group, path, meta)
                .await?;
            if r.dropped_keys > 0 {
                g.saturated = true;
            }
            let start = r.rows.partition_point(|row| row.1 < from);
            for &(k, m, t, b) in &r.rows[start..] {
                if m >= last_whole {
                    break;
                }
                if !edges.contains(&m) {
                    g.add_minute(&r.keys[k as usize], m, t as f64, b as f64);
                }
            }
        }
        let time = time_column(table);
        let keys: String = group
            .iter()
            .enumerate()
            .map(|(i, e)| format!(", CAST({e} AS VARCHAR) AS k{i}"))
            .collect();
        let x = |src: &str, only_edges: bool| {
            let mut w = format!(
                "({total}) AND {time} >= to_timestamp_nanos({from}) AND {time} < to_timestamp_nanos({to})"
            );
            if only_edges {
                w.push_str(&format!(" AND ({})", edge_predicate(time, edges)));
            }
            format!(
                "SELECT CAST({time} AS BIGINT) AS t, CAST(1 AS DOUBLE) AS tw, \
                 CAST(CASE WHEN ({bad}) THEN 1 ELSE 0 END AS DOUBLE) AS ow{keys} FROM {src} WHERE {w}"
            )
        };
        let ctx = self.store.session();
        if !edge_files.is_empty() {
            analytics::red::register(
                &ctx,
                "f",
                Snapshot {
                    table,
                    files: edge_files,
                    batches: vec![],
                },
            )
            .map_err(query_error)?;
            // Edge minutes only: the others came from rollups.
            for b in run_ctx(&ctx, &x("f", true)).await? {
                push_raw(&b, g)?;
            }
        }
        if !snap.batches.is_empty() {
            analytics::red::register(
                &ctx,
                "m",
                Snapshot {
                    table,
                    files: vec![],
                    batches: snap.batches,
                },
            )
            .map_err(query_error)?;
            let (grouped, raw) = split(&x("m", false), edges, group.len());
            absorb_minutes(&run_ctx(&ctx, &grouped).await?, g)?;
            if let Some(raw) = raw {
                for b in run_ctx(&ctx, &raw).await? {
                    push_raw(&b, g)?;
                }
            }
        }
        Ok(())
    }
}

/// The minutes that window ends fall inside (not on a minute start): their
/// rows are read one by one, the other minutes come from rollups.
fn edge_minutes(ends: impl IntoIterator<Item = i64>) -> BTreeSet<i64> {
    ends.into_iter()
        .filter(|t| t.rem_euclid(MINUTE_NS) != 0)
        .map(|t| t.div_euclid(MINUTE_NS) * MINUTE_NS)
        .collect()
}

/// Past this many edge minutes, a predicate is one flat `IN` list on the
/// minute instead of a chain of ranges (a long `OR` chain nests deeply in
/// the SQL planner).
const FLAT_EDGES: usize = 32;

fn minute_list(edges: &BTreeSet<i64>) -> String {
    edges
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `time` inside one of the edge minutes.
fn edge_predicate(time: &str, edges: &BTreeSet<i64>) -> String {
    if edges.is_empty() {
        return "false".into();
    }
    if edges.len() > FLAT_EDGES {
        let (lo, hi) = (
            edges.first().copied().unwrap_or_default(),
            edges.last().copied().unwrap_or_default() + MINUTE_NS,
        );
        return format!(
            "({time} >= to_timestamp_nanos({lo}) AND {time} < to_timestamp_nanos({hi}) \
             AND (CAST({time} AS BIGINT) / {MINUTE_NS}) * {MINUTE_NS} IN ({}))",
            minute_list(edges)
        );
    }
    edges
        .iter()
        .map(|m| {
            format!(
                "({time} >= to_timestamp_nanos({m}) AND {time} < to_timestamp_nanos({}))",
                m + MINUTE_NS
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The two queries over `x` (columns `t` ns, `tw`, `ow`): summed per
/// minute outside the edges, and row by row inside them (if any).
fn split(x: &str, edges: &BTreeSet<i64>, keys: usize) -> (String, Option<String>) {
    let key_cols: String = (0..keys).map(|i| format!(", k{i}")).collect();
    // Grouped by position: the minute, then the keys (columns 4 on).
    let group_cols: String = (0..keys).map(|i| format!(", {}", i + 4)).collect();
    let in_edge = if edges.is_empty() {
        "false".to_string()
    } else if edges.len() > FLAT_EDGES {
        format!(
            "(t / {MINUTE_NS}) * {MINUTE_NS} IN ({})",
            minute_list(edges)
        )
    } else {
        edges
            .iter()
            .map(|m| format!("(t >= {m} AND t < {})", m + MINUTE_NS))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let grouped = format!(
        "SELECT (t / {MINUTE_NS}) * {MINUTE_NS} AS m, sum(tw) AS tw, sum(ow) AS ow{key_cols} FROM ({x}) AS x \
         WHERE NOT ({in_edge}) GROUP BY 1{group_cols}"
    );
    let raw = (!edges.is_empty())
        .then(|| format!("SELECT t, tw, ow{key_cols} FROM ({x}) AS x WHERE {in_edge}"));
    (grouped, raw)
}

/// The group key columns (3 onwards) of a batch, as strings (NULL: `''`).
fn key_columns(b: &RecordBatch) -> Result<Vec<arrow::array::StringArray>, QueryError> {
    (3..b.num_columns())
        .map(|i| {
            let c = arrow::compute::cast(b.column(i), &DataType::Utf8).map_err(query_error)?;
            Ok(c.as_string::<i32>().clone())
        })
        .collect()
}

fn key_of(cols: &[arrow::array::StringArray], i: usize, key: &mut Vec<String>) {
    key.clear();
    key.extend(
        cols.iter()
            .map(|c| if c.is_null(i) { "" } else { c.value(i) }.to_string()),
    );
}

fn absorb_minutes<A: Acc>(batches: &[RecordBatch], g: &mut Groups<A>) -> Result<(), QueryError> {
    let mut key = Vec::new();
    for b in batches {
        let (m, t, o) = (ints(b, 0)?, floats(b, 1)?, floats(b, 2)?);
        let cols = key_columns(b)?;
        for i in 0..b.num_rows() {
            key_of(&cols, i, &mut key);
            g.add_minute(&key, m.value(i), t.value(i), o.value(i));
        }
    }
    Ok(())
}

async fn run_ctx(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    ctx.sql(sql)
        .await
        .map_err(query_error)?
        .collect()
        .await
        .map_err(query_error)
}

async fn run_store(store: &Store, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let limits = QueryLimits {
        max_rows: 10_000_000,
        timeout_secs: 120.0,
        ..QueryLimits::default()
    };
    Ok(store::sql::run(store, sql, &limits).await?.batches)
}

fn ints(b: &RecordBatch, i: usize) -> Result<arrow::array::Int64Array, QueryError> {
    let c = arrow::compute::cast(b.column(i), &DataType::Int64).map_err(query_error)?;
    Ok(c.as_primitive::<Int64Type>().clone())
}

fn floats(b: &RecordBatch, i: usize) -> Result<arrow::array::Float64Array, QueryError> {
    let c = arrow::compute::cast(b.column(i), &DataType::Float64).map_err(query_error)?;
    let a = c.as_primitive::<Float64Type>();
    // NULL sums (no rows) count as zero.
    Ok(a.iter().map(|v| Some(v.unwrap_or(0.0))).collect())
}

fn push_raw<A: Acc>(b: &RecordBatch, g: &mut Groups<A>) -> Result<(), QueryError> {
    let (t, tw, ow) = (ints(b, 0)?, floats(b, 1)?, floats(b, 2)?);
    let cols = key_columns(b)?;
    let mut key = Vec::new();
    for i in 0..b.num_rows() {
        if !t.is_null(i) {
            key_of(&cols, i, &mut key);
            g.add_raw(&key, t.value(i), tw.value(i), ow.value(i));
        }
    }
    Ok(())
}

/// Computes the per-minute rollup of one file (per group of `group`).
async fn compute(
    store: &store::Store,
    table: Table,
    total: &str,
    bad: &str,
    group: &[String],
    data_path: &Path,
    meta: &FileMeta,
) -> Result<MinuteRollup, QueryError> {
    let ctx = store.session();
    analytics::red::register(
        &ctx,
        "f",
        Snapshot {
            table,
            files: vec![(data_path.to_path_buf(), meta.clone())],
            batches: vec![],
        },
    )
    .map_err(query_error)?;
    let time = time_column(table);
    let keys: String = group
        .iter()
        .enumerate()
        .map(|(i, e)| format!(", CAST({e} AS VARCHAR) AS k{i}"))
        .collect();
    let group_cols: String = (0..group.len()).map(|i| format!(", {}", i + 4)).collect();
    let sql = format!(
        "SELECT (CAST({time} AS BIGINT) / {MINUTE_NS}) * {MINUTE_NS} AS m, count(*) AS t, \
         sum(CASE WHEN ({bad}) THEN 1 ELSE 0 END) AS b{keys} FROM f WHERE ({total}) \
         GROUP BY 1{group_cols} ORDER BY 1"
    );
    let batches = run_ctx(&ctx, &sql).await?;
    let mut index: HashMap<Vec<String>, u32> = HashMap::new();
    let mut keys: Vec<Vec<String>> = Vec::new();
    let mut events: Vec<u64> = Vec::new();
    let mut rows = Vec::new();
    let mut key = Vec::new();
    for b in &batches {
        let (m, t, e) = (ints(b, 0)?, ints(b, 1)?, ints(b, 2)?);
        let cols = key_columns(b)?;
        for i in 0..b.num_rows() {
            let bad = if e.is_null(i) {
                0
            } else {
                e.value(i).max(0) as u64
            };
            key_of(&cols, i, &mut key);
            let k = match index.get(&key) {
                Some(k) => *k,
                None => {
                    let k = keys.len() as u32;
                    index.insert(key.clone(), k);
                    keys.push(key.clone());
                    events.push(0);
                    k
                }
            };
            let total = t.value(i).max(0) as u64;
            events[k as usize] += total;
            rows.push((k, m.value(i), total, bad));
        }
    }
    if keys.is_empty() && group.is_empty() {
        keys.push(Vec::new());
    }
    let mut dropped_keys = 0;
    if keys.len() > FILE_GROUPS {
        // Keep the largest groups; renumber them.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|a, b| events[*b].cmp(&events[*a]).then(keys[*a].cmp(&keys[*b])));
        let mut renumber = vec![u32::MAX; keys.len()];
        for (new, old) in order.iter().take(FILE_GROUPS).enumerate() {
            renumber[*old] = new as u32;
        }
        dropped_keys = (keys.len() - FILE_GROUPS) as u64;
        let kept: Vec<Vec<String>> = order
            .iter()
            .take(FILE_GROUPS)
            .map(|o| std::mem::take(&mut keys[*o]))
            .collect();
        rows = rows
            .into_iter()
            .filter(|r| renumber[r.0 as usize] != u32::MAX)
            .map(|(k, m, t, b)| (renumber[k as usize], m, t, b))
            .collect();
        keys = kept;
    }
    Ok(MinuteRollup {
        keys,
        rows,
        dropped_keys,
    })
}

/// Deletes rollup files whose SLI is not kept or whose data file is gone.
#[cfg(test)]
mod tests {
    use super::*;

    /// Damage at rest is the store's to find (it checksums every derived
    /// file: `store/tests/derived.rs`); decoding refuses what is not a
    /// rollup of this version.
    #[test]
    fn rollup_files_round_trip_and_foreign_bytes_are_refused() {
        let single = MinuteRollup {
            keys: vec![Vec::new()],
            rows: vec![(0, 60_000_000_000, 10, 1), (0, 120_000_000_000, 7, 0)],
            dropped_keys: 0,
        };
        let bytes = encode(&single);
        assert_eq!(&bytes[..8], MAGIC);
        let back = decode(&bytes).unwrap();
        assert_eq!((back.keys, back.rows), (single.keys, single.rows));
        assert!(decode(&bytes[..bytes.len() - 3]).is_err());
        let mut old = bytes.clone();
        old[6] = b'1';
        assert!(decode(&old).unwrap_err().contains("version"));

        let grouped = MinuteRollup {
            keys: vec![
                vec!["/cart".into(), "gold".into()],
                vec!["".into(), "é".into()],
            ],
            rows: vec![(1, 60_000_000_000, 3, 1), (0, 60_000_000_000, 5, 0)],
            dropped_keys: 7,
        };
        let bytes = encode(&grouped);
        assert_eq!(&bytes[..8], GROUPED_MAGIC);
        let back = decode(&bytes).unwrap();
        assert_eq!(back.keys, grouped.keys);
        assert_eq!(back.rows, grouped.rows);
        assert_eq!(back.dropped_keys, 7);
        for cut in [9, 20, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn groups_past_the_limit_are_left_out_and_reported() {
        let mut g = Groups::new(2, Gathered::default());
        g.add_minute(&["a".into()], 0, 1.0, 0.0);
        g.add_raw(&["b".into()], 5, 1.0, 1.0);
        assert!(!g.saturated);
        g.add_minute(&["c".into()], 0, 4.0, 4.0);
        assert!(g.saturated);
        g.add_minute(&["a".into()], MINUTE_NS, 2.0, 1.0);
        assert_eq!(g.by.len(), 2);
        assert_eq!(
            g.by[&vec!["a".to_string()]].window(0, 2 * MINUTE_NS),
            (3, 1)
        );
    }

    #[test]
    fn segments_sum_whole_segments_and_keep_the_first_event() {
        let bounds = vec![0, MINUTE_NS, 5 * MINUTE_NS + 7, 10 * MINUTE_NS];
        let mut s = Segments {
            bounds: Arc::new(bounds),
            first_after: MINUTE_NS,
            sums: Vec::new(),
            first: None,
        };
        s.minute(0, 3.0, 1.0);
        s.minute(2 * MINUTE_NS, 4.0, 0.0);
        s.raw(5 * MINUTE_NS + 6, 1.0, 1.0);
        s.raw(5 * MINUTE_NS + 7, 1.0, 0.0);
        s.raw(10 * MINUTE_NS, 9.0, 9.0); // at the last bound: left out
        s.raw(-1, 9.0, 9.0);
        let e = GroupEvents(s);
        assert_eq!(e.window(0, 10 * MINUTE_NS), (9, 2));
        assert_eq!(e.window(MINUTE_NS, 5 * MINUTE_NS + 7), (5, 1));
        assert_eq!(e.window(5 * MINUTE_NS + 7, 10 * MINUTE_NS), (1, 0));
        assert_eq!(e.first(), Some(2 * MINUTE_NS));
        assert_eq!(
            e.per_segment().into_iter().collect::<Vec<_>>(),
            [
                (0, (3, 1)),
                (MINUTE_NS, (5, 1)),
                (5 * MINUTE_NS + 7, (1, 0))
            ]
        );
    }

    #[test]
    fn windows_count_whole_minutes_and_edge_events_once() {
        let mut g = Gathered::default();
        g.add_minute(0, 10.0, 1.0);
        g.add_minute(MINUTE_NS, 20.0, 2.0);
        g.raw.push((2 * MINUTE_NS + 5, 1.0, 1.0));
        g.raw.push((2 * MINUTE_NS + 30_000_000_000, 1.0, 0.0));
        assert_eq!(g.window(0, 3 * MINUTE_NS), (32, 4));
        assert_eq!(g.window(MINUTE_NS, 2 * MINUTE_NS + 10), (21, 3));
        // A minute only partly inside the window is not taken from `minutes`.
        assert_eq!(g.window(0, MINUTE_NS + 1), (10, 1));
        // Windows shorter than a minute hold raw events only.
        assert_eq!(
            g.window(2 * MINUTE_NS, 2 * MINUTE_NS + 15_000_000_000),
            (1, 1)
        );
        assert_eq!(g.window(MINUTE_NS + 10, MINUTE_NS + 20), (0, 0));
        assert_eq!(g.per_minute(MINUTE_NS, MINUTE_NS), BTreeMap::new());
        let per = g.per_minute(0, 3 * MINUTE_NS);
        assert_eq!(per[&(2 * MINUTE_NS)], (2, 1));
        g.other_is_good = true;
        assert_eq!(g.window(0, MINUTE_NS), (10, 9));
    }
}
