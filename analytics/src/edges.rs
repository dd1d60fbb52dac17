//! The service map's edges from per-file extracts, so the map over an hour
//! or a day never joins raw spans in SQL.
//!
//! An edge is one of (see [`crate::red::edge_rows_sql`], the same rules in
//! SQL, which the tests hold this module to):
//! - `call` / `message`: a SERVER or CONSUMER span whose parent is a CLIENT
//!   (`call`) or PRODUCER (`message`) span of another service;
//! - `message`: a CONSUMER span with a span link to a PRODUCER span of
//!   another service (other than its parent);
//! - `unobserved`: a CLIENT span whose `peer.service` names another service
//!   that sent no SERVER or CONSUMER span from the window's start to an
//!   hour after its end.
//!
//! The two spans of a pair must start within [`PAIR_SLACK_NS`] of each
//! other; a call belongs to the window of the callee span's start (the
//! CLIENT span's for `unobserved`).
//!
//! How it is computed:
//! - **Extracts.** Every live spans file is immutable, so what the map
//!   needs of it is extracted once and kept in a byte-bounded memory cache:
//!   its CLIENT/PRODUCER spans (ids parsed to integers, service, start,
//!   duration), its SERVER/CONSUMER spans (parent id, links, service,
//!   start, duration, the RED error rule) and its CLIENT spans naming a
//!   `peer.service`. Rows still in memory are extracted per query.
//! - **Hours.** The calls whose callee starts in hour `h` depend only on
//!   spans starting in `[h - 1h, h + 2h)`. They are paired by a hash join
//!   of those extracts and kept twice: per edge for the whole hour (count,
//!   errors, a duration [`Sketch`]), and as one row per call sorted by
//!   time (for the hours a window cuts). Both are cached under a
//!   fingerprint of the files the hour depends on, so a flush, a
//!   compaction, a late span or a deletion in those hours recomputes it;
//!   an hour that depends on rows still in memory is computed per query.
//! - **A window** adds the whole-hour figures of the hours inside it and
//!   the calls of the hours it cuts that start inside it: counts are exact
//!   at the window's edges; percentiles come from the merged sketches
//!   (within 1%, [`crate::sketch::RELATIVE_ACCURACY`]).

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use store::files::FileMeta;
use store::{Snapshot, Store, Table};

use crate::cache::{FileCache, Weigh};
use crate::red::{Edge, RedError, Window, register};
use crate::sketch::Sketch;

const MINUTE_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 3_600_000_000_000;

/// How far apart the starts of a caller and a callee span may be to pair.
pub const PAIR_SLACK_NS: i64 = HOUR_NS;

/// Default memory budget of the per-file extracts.
pub const DEFAULT_EXTRACT_CACHE_BYTES: usize = 128 << 20;

/// Default memory budget of the per-hour results (whole-hour figures and
/// per-call rows, half each).
pub const DEFAULT_HOUR_CACHE_BYTES: usize = 128 << 20;

/// How many hours back from the newest span the background task keeps
/// computed, so the dashboard's windows up to a day find them ready.
pub const WARM_HOURS: i64 = 25;

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// A span's identity: trace id and span id as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpanKey {
    /// The trace id's two halves (not a `u128`, whose 16-byte alignment
    /// would pad every extracted row).
    trace: [u64; 2],
    span: u64,
}

impl std::hash::Hash for SpanKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Three words, not a length-prefixed byte slice.
        state.write_u64(self.trace[0]);
        state.write_u64(self.trace[1]);
        state.write_u64(self.span);
    }
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn text_hash(s: &str, seed: u64) -> u64 {
    foldhash::quality::FixedState::with_seed(seed).hash_one(s)
}

/// A trace id as the 128-bit number its 32 lowercase hex digits spell
/// (what the collector writes), in two halves; any other text as a 128-bit
/// hash of it.
fn trace_key(s: &str) -> [u64; 2] {
    if lower_hex(s, 32)
        && let (Ok(hi), Ok(lo)) = (
            u64::from_str_radix(&s[..16], 16),
            u64::from_str_radix(&s[16..], 16),
        )
    {
        return [hi, lo];
    }
    [text_hash(s, 0x5eed_0001), text_hash(s, 0x5eed_0002)]
}

/// A span id as the 64-bit number its 16 lowercase hex digits spell; any
/// other text as a 64-bit hash of it.
fn span_key(s: &str) -> u64 {
    if lower_hex(s, 16)
        && let Ok(v) = u64::from_str_radix(s, 16)
    {
        return v;
    }
    text_hash(s, 0x5eed_0003)
}

#[derive(Debug, Clone, Copy)]
struct Caller {
    key: SpanKey,
    svc: u32,
    producer: bool,
    start: i64,
}

#[derive(Debug, Clone, Copy)]
struct Callee {
    trace: [u64; 2],
    parent: Option<u64>,
    svc: u32,
    consumer: bool,
    err: bool,
    start: i64,
    dur: i64,
    /// Range of this span's links in [`Extract::links`].
    links: (u32, u32),
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    svc: u32,
    peer: u32,
    err: bool,
    start: i64,
    dur: i64,
}

/// What the service map needs of one spans file (or of the rows in memory).
#[derive(Debug, Default)]
pub struct Extract {
    names: Vec<Arc<str>>,
    callers: Vec<Caller>,
    callees: Vec<Callee>,
    links: Vec<SpanKey>,
    peers: Vec<Peer>,
    min_ns: i64,
    max_ns: i64,
}

impl Weigh for Extract {
    fn weight(&self) -> usize {
        std::mem::size_of::<Extract>()
            + self.names.iter().map(|n| n.len() + 32).sum::<usize>()
            + self.callers.capacity() * std::mem::size_of::<Caller>()
            + self.callees.capacity() * std::mem::size_of::<Callee>()
            + self.links.capacity() * std::mem::size_of::<SpanKey>()
            + self.peers.capacity() * std::mem::size_of::<Peer>()
    }
}

/// The extraction scan: one row per span that can be an end of an edge.
const EXTRACT_SQL: &str = "SELECT trace_id, span_id, parent_span_id, service_name, kind, \
     arrow_cast(start_time, 'Int64') AS t, duration_ns, \
     CASE WHEN (status_code = 'ERROR' OR coalesce(http_response_status_code, 0) >= 500) THEN 1 ELSE 0 END AS err, \
     peer_service, links \
     FROM f WHERE kind IN ('SERVER', 'CONSUMER', 'CLIENT', 'PRODUCER')";

fn query_err(e: impl std::fmt::Display) -> RedError {
    RedError::Query(e.to_string())
}

/// Extracts `snap` (one file, or the rows in memory).
async fn extract(store: &Store, snap: Snapshot) -> Result<Extract, RedError> {
    let ctx = store.session();
    register(&ctx, "f", snap)?;
    let batches = ctx
        .sql(EXTRACT_SQL)
        .await
        .map_err(query_err)?
        .collect()
        .await
        .map_err(query_err)?;
    tokio::task::spawn_blocking(move || build_extract(&batches))
        .await
        .map_err(|e| RedError::Query(format!("edge extract task failed: {e}")))?
}

fn build_extract(batches: &[RecordBatch]) -> Result<Extract, RedError> {
    let mut x = Extract {
        min_ns: i64::MAX,
        max_ns: i64::MIN,
        ..Default::default()
    };
    let mut ids: HashMap<Arc<str>, u32> = HashMap::new();
    let mut intern = |names: &mut Vec<Arc<str>>, s: &str| -> u32 {
        if let Some(&i) = ids.get(s) {
            return i;
        }
        let a: Arc<str> = Arc::from(s);
        let i = names.len() as u32;
        names.push(a.clone());
        ids.insert(a, i);
        i
    };
    for b in batches {
        let text = |i: usize| arrow::compute::cast(b.column(i), &DataType::Utf8).map_err(query_err);
        let int = |i: usize| arrow::compute::cast(b.column(i), &DataType::Int64).map_err(query_err);
        let (tid, sid, pid, svc, kind) = (text(0)?, text(1)?, text(2)?, text(3)?, text(4)?);
        let (tid, sid, pid, svc, kind) = (
            tid.as_string::<i32>(),
            sid.as_string::<i32>(),
            pid.as_string::<i32>(),
            svc.as_string::<i32>(),
            kind.as_string::<i32>(),
        );
        let (t, dur, err) = (int(5)?, int(6)?, int(7)?);
        let (t, dur, err) = (
            t.as_primitive::<Int64Type>(),
            dur.as_primitive::<Int64Type>(),
            err.as_primitive::<Int64Type>(),
        );
        let peer = text(8)?;
        let peer = peer.as_string::<i32>();
        let links = b
            .column(9)
            .as_list_opt::<i32>()
            .ok_or_else(|| RedError::Query("links is not a list column".into()))?;
        let link_ids = links.values().as_struct_opt().and_then(|s| {
            Some((
                arrow::compute::cast(s.column_by_name("trace_id")?, &DataType::Utf8).ok()?,
                arrow::compute::cast(s.column_by_name("span_id")?, &DataType::Utf8).ok()?,
            ))
        });
        for i in 0..b.num_rows() {
            let start = t.value(i);
            x.min_ns = x.min_ns.min(start);
            x.max_ns = x.max_ns.max(start);
            let service = intern(&mut x.names, svc.value(i));
            let failed = !err.is_null(i) && err.value(i) != 0;
            match kind.value(i) {
                k @ ("CLIENT" | "PRODUCER") => {
                    x.callers.push(Caller {
                        key: SpanKey {
                            trace: trace_key(tid.value(i)),
                            span: span_key(sid.value(i)),
                        },
                        svc: service,
                        producer: k == "PRODUCER",
                        start,
                    });
                    if k == "CLIENT" && !peer.is_null(i) {
                        let p = peer.value(i);
                        if !p.is_empty() && p != svc.value(i) {
                            x.peers.push(Peer {
                                svc: service,
                                peer: intern(&mut x.names, p),
                                err: failed,
                                start,
                                dur: dur.value(i),
                            });
                        }
                    }
                }
                k => {
                    let consumer = k == "CONSUMER";
                    let first = x.links.len() as u32;
                    if consumer
                        && !links.is_null(i)
                        && let Some((lt, ls)) = &link_ids
                    {
                        let (lt, ls) = (lt.as_string::<i32>(), ls.as_string::<i32>());
                        let offsets = links.value_offsets();
                        for j in offsets[i] as usize..offsets[i + 1] as usize {
                            if lt.is_valid(j) && ls.is_valid(j) {
                                x.links.push(SpanKey {
                                    trace: trace_key(lt.value(j)),
                                    span: span_key(ls.value(j)),
                                });
                            }
                        }
                    }
                    x.callees.push(Callee {
                        trace: trace_key(tid.value(i)),
                        parent: (!pid.is_null(i)).then(|| span_key(pid.value(i))),
                        svc: service,
                        consumer,
                        err: failed,
                        start,
                        dur: dur.value(i),
                        links: (first, x.links.len() as u32),
                    });
                }
            }
        }
    }
    x.callers.shrink_to_fit();
    x.callees.shrink_to_fit();
    x.links.shrink_to_fit();
    x.peers.shrink_to_fit();
    Ok(x)
}

/// Which kind of evidence an edge rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Call,
    Message,
    Unobserved,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Message => "message",
            Kind::Unobserved => "unobserved",
        }
    }
}

/// Calls of one edge: count, failures and callee durations.
#[derive(Debug, Clone, Default)]
struct Agg {
    calls: u64,
    errors: u64,
    durations: Sketch,
}

impl Agg {
    fn add(&mut self, err: bool, dur: i64) {
        self.calls += 1;
        self.errors += u64::from(err);
        self.durations.add(dur as f64);
    }

    fn merge(&mut self, o: &Agg) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.durations.merge(&o.durations);
    }
}

/// One call: its edge (an index into [`HourEdges::edges`]), the callee's
/// start and duration, and whether it failed.
#[derive(Debug, Clone, Copy)]
struct Call {
    edge: u32,
    err: bool,
    t: i64,
    d: i64,
}

type EdgeKey = (Arc<str>, Arc<str>, Kind);

/// The calls whose callee started in one hour, per edge.
#[derive(Debug)]
struct HourEdges {
    fingerprint: u64,
    edges: Vec<EdgeKey>,
    whole: Vec<Agg>,
    /// Per service and minute with SERVER or CONSUMER spans: the first and
    /// last such start (for the `unobserved` rule).
    servers: Vec<(Arc<str>, i64, i64)>,
}

impl Weigh for HourEdges {
    fn weight(&self) -> usize {
        std::mem::size_of::<HourEdges>()
            + self.edges.len() * std::mem::size_of::<EdgeKey>()
            + self
                .whole
                .iter()
                .map(|a| std::mem::size_of::<Agg>() + a.durations.heap_bytes())
                .sum::<usize>()
            + self.servers.len() * std::mem::size_of::<(Arc<str>, i64, i64)>()
    }
}

/// The same hour's calls one by one, sorted by start.
#[derive(Debug)]
struct HourCalls {
    fingerprint: u64,
    calls: Vec<Call>,
}

impl Weigh for HourCalls {
    fn weight(&self) -> usize {
        std::mem::size_of::<HourCalls>() + self.calls.capacity() * std::mem::size_of::<Call>()
    }
}

/// Pairs the spans of `extracts` into the calls whose callee starts in
/// `[h, h + 1h)`.
fn join_hour(h: i64, extracts: &[Arc<Extract>], fingerprint: u64) -> (HourEdges, HourCalls) {
    let (lo, hi) = (h - PAIR_SLACK_NS, h + HOUR_NS + PAIR_SLACK_NS);
    let (from, to) = (h, h + HOUR_NS);
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut name_ids: HashMap<Arc<str>, u32> = HashMap::new();
    let local: Vec<Vec<u32>> = extracts
        .iter()
        .map(|x| {
            x.names
                .iter()
                .map(|n| {
                    *name_ids.entry(n.clone()).or_insert_with(|| {
                        names.push(n.clone());
                        names.len() as u32 - 1
                    })
                })
                .collect()
        })
        .collect();

    // A partitioned hash join: both sides are first split by a hash of the
    // id into PARTS runs (sequential writes), then each run is joined with
    // a table small enough to stay in cache. One table over every caller
    // of three hours spends most of its time waiting on cache misses.
    const PARTS: usize = 64;
    let part = |k: &SpanKey| (k.span.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize;
    // A caller of the join, and one side looking for one (the callee's
    // parent id, or one of a CONSUMER's links).
    struct Ref {
        key: SpanKey,
        svc: u32,
        producer: bool,
        start: i64,
    }
    struct Probe {
        key: SpanKey,
        svc: u32,
        link: bool,
        err: bool,
        t: i64,
        d: i64,
    }
    let in_range = |c: &&Caller| c.start >= lo && c.start < hi;
    // Runs sized for an even split (plus a margin), so they rarely grow.
    let per_run = |n: usize| n / PARTS + n / (PARTS * 4) + 16;
    let n_callers: usize = extracts.iter().map(|x| x.callers.len()).sum();
    let n_callees: usize = extracts.iter().map(|x| x.callees.len()).sum();
    let mut refs: Vec<Vec<Ref>> = (0..PARTS)
        .map(|_| Vec::with_capacity(per_run(n_callers)))
        .collect();
    for (x, m) in extracts.iter().zip(&local) {
        for c in x.callers.iter().filter(in_range) {
            refs[part(&c.key)].push(Ref {
                key: c.key,
                svc: m[c.svc as usize],
                producer: c.producer,
                start: c.start,
            });
        }
    }
    let mut probes: Vec<Vec<Probe>> = (0..PARTS)
        .map(|_| Vec::with_capacity(per_run(n_callees / 3)))
        .collect();
    let mut servers: HashMap<(u32, i64), (i64, i64)> = HashMap::new();
    let mut edge_ids: HashMap<(u32, u32, Kind), u32> = HashMap::new();
    let mut edges: Vec<(u32, u32, Kind)> = Vec::new();
    let mut calls: Vec<Call> = Vec::with_capacity(n_callees / 3);
    let mut push = |caller: u32, callee: u32, kind: Kind, err: bool, t: i64, d: i64| {
        let edge = *edge_ids.entry((caller, callee, kind)).or_insert_with(|| {
            edges.push((caller, callee, kind));
            edges.len() as u32 - 1
        });
        calls.push(Call { edge, err, t, d });
    };
    for (x, m) in extracts.iter().zip(&local) {
        for s in x.callees.iter().filter(|s| s.start >= from && s.start < to) {
            let svc = m[s.svc as usize];
            let minute = s.start.div_euclid(MINUTE_NS);
            let e = servers.entry((svc, minute)).or_insert((s.start, s.start));
            e.0 = e.0.min(s.start);
            e.1 = e.1.max(s.start);
            let probe = |key: SpanKey, link: bool| Probe {
                key,
                svc,
                link,
                err: s.err,
                t: s.start,
                d: s.dur,
            };
            if let Some(parent) = s.parent {
                let key = SpanKey {
                    trace: s.trace,
                    span: parent,
                };
                probes[part(&key)].push(probe(key, false));
            }
            if s.consumer {
                for link in &x.links[s.links.0 as usize..s.links.1 as usize] {
                    // The link to the parent is the parent edge, counted above.
                    if Some(link.span) != s.parent {
                        probes[part(link)].push(probe(*link, true));
                    }
                }
            }
        }
        for p in x.peers.iter().filter(|p| p.start >= from && p.start < to) {
            push(
                m[p.svc as usize],
                m[p.peer as usize],
                Kind::Unobserved,
                p.err,
                p.start,
                p.dur,
            );
        }
    }
    // Per run: callers by id, duplicates of one id chained through `next`.
    const END: u32 = u32::MAX;
    let mut heads: FastMap<SpanKey, u32> = FastMap::default();
    let mut next: Vec<u32> = Vec::new();
    for (refs, probes) in refs.iter().zip(&probes) {
        heads.clear();
        next.clear();
        for (i, r) in refs.iter().enumerate() {
            next.push(heads.insert(r.key, i as u32).unwrap_or(END));
        }
        for p in probes {
            let mut at = heads.get(&p.key).copied().unwrap_or(END);
            while at != END {
                let r = &refs[at as usize];
                if r.svc != p.svc
                    && (r.producer || !p.link)
                    && r.start >= p.t - PAIR_SLACK_NS
                    && r.start < p.t + PAIR_SLACK_NS
                {
                    let kind = if r.producer {
                        Kind::Message
                    } else {
                        Kind::Call
                    };
                    push(r.svc, p.svc, kind, p.err, p.t, p.d);
                }
                at = next[at as usize];
            }
        }
    }
    calls.sort_unstable_by_key(|c| c.t);
    calls.shrink_to_fit();
    let mut whole = vec![Agg::default(); edges.len()];
    for c in &calls {
        whole[c.edge as usize].add(c.err, c.d);
    }
    let name = |i: u32| names[i as usize].clone();
    let hour = HourEdges {
        fingerprint,
        edges: edges
            .iter()
            .map(|&(a, b, k)| (name(a), name(b), k))
            .collect(),
        whole,
        servers: servers
            .into_iter()
            .map(|((svc, _), (first, last))| (name(svc), first, last))
            .collect(),
    };
    (hour, HourCalls { fingerprint, calls })
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct EdgeMetrics {
    /// Files extracted.
    pub extracts_computed: AtomicU64,
    /// Hours paired (on a cache miss, or because they depend on rows in memory).
    pub hours_computed: AtomicU64,
    /// Hours found in the cache.
    pub hours_cached: AtomicU64,
    /// Time spent extracting files, ns.
    pub extract_ns: AtomicU64,
    /// Time spent pairing hours, ns.
    pub pair_ns: AtomicU64,
}

/// Service-map edges over one store.
pub struct EdgeIndex {
    store: Store,
    extracts: FileCache<Extract>,
    hours: FileCache<HourEdges>,
    calls: FileCache<HourCalls>,
    /// Counters.
    pub metrics: EdgeMetrics,
    /// Per hour the maintenance task has seen change: the fingerprint of
    /// its files and since when it has had it (ns).
    stable: std::sync::Mutex<HashMap<i64, (u64, i64)>>,
}

impl std::fmt::Debug for EdgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeIndex")
            .field("extract_bytes", &self.extracts.bytes())
            .field("hour_bytes", &(self.hours.bytes() + self.calls.bytes()))
            .finish()
    }
}

fn hour_path(h: i64) -> PathBuf {
    PathBuf::from(h.to_string())
}

/// The files of `snap` holding spans that start in `[lo, hi)`.
fn files_in(snap: &Snapshot, lo: i64, hi: i64) -> impl Iterator<Item = &(PathBuf, FileMeta)> {
    snap.files
        .iter()
        .filter(move |(_, m)| m.max_time_ns >= lo && m.min_time_ns < hi)
}

/// A hash of the files one hour depends on (their paths and row counts).
fn fingerprint<'a>(files: impl Iterator<Item = &'a (PathBuf, FileMeta)>) -> u64 {
    let mut parts: Vec<(&str, u64)> = files.map(|(_, m)| (m.path.as_str(), m.rows)).collect();
    parts.sort_unstable();
    foldhash::quality::FixedState::with_seed(0x5eed_0004).hash_one(&parts)
}

impl EdgeIndex {
    /// An index over `store` with the default memory budgets.
    pub fn new(store: Store) -> EdgeIndex {
        EdgeIndex::with_budgets(store, DEFAULT_EXTRACT_CACHE_BYTES, DEFAULT_HOUR_CACHE_BYTES)
    }

    /// An index with `extract_bytes` for file extracts and `hour_bytes`
    /// for computed hours.
    pub fn with_budgets(store: Store, extract_bytes: usize, hour_bytes: usize) -> EdgeIndex {
        EdgeIndex {
            store,
            extracts: FileCache::new(extract_bytes),
            hours: FileCache::new(hour_bytes / 2),
            calls: FileCache::new(hour_bytes / 2),
            metrics: EdgeMetrics::default(),
            stable: Default::default(),
        }
    }

    /// Bytes held by file extracts.
    pub fn extract_bytes(&self) -> usize {
        self.extracts.bytes()
    }

    /// Bytes held in memory (extracts and hours).
    pub fn cache_bytes(&self) -> usize {
        self.extracts.bytes() + self.hours.bytes() + self.calls.bytes()
    }

    async fn file_extract(&self, path: &Path, meta: &FileMeta) -> Result<Arc<Extract>, RedError> {
        if let Some(x) = self.extracts.get(path) {
            return Ok(x);
        }
        let snap = Snapshot {
            table: Table::Spans,
            files: vec![(path.to_path_buf(), meta.clone())],
            batches: vec![],
        };
        let t = std::time::Instant::now();
        let x = Arc::new(extract(&self.store, snap).await?);
        self.metrics
            .extract_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.metrics
            .extracts_computed
            .fetch_add(1, Ordering::Relaxed);
        self.extracts.insert(path.to_path_buf(), x.clone());
        Ok(x)
    }

    /// The calls of hour `h` (its whole-hour figures, and its calls one by
    /// one when `calls` is asked for).
    async fn hour(
        &self,
        snap: &Snapshot,
        memory: Option<&Arc<Extract>>,
        h: i64,
        want_calls: bool,
    ) -> Result<(Arc<HourEdges>, Option<Arc<HourCalls>>), RedError> {
        let (lo, hi) = (h - PAIR_SLACK_NS, h + HOUR_NS + PAIR_SLACK_NS);
        let files: Vec<&(PathBuf, FileMeta)> = files_in(snap, lo, hi).collect();
        let memory = memory.filter(|x| x.max_ns >= lo && x.min_ns < hi);
        let fp = fingerprint(files.iter().copied());
        let key = hour_path(h);
        if memory.is_none()
            && let Some(edges) = self.hours.get(&key)
            && edges.fingerprint == fp
        {
            if !want_calls {
                self.metrics.hours_cached.fetch_add(1, Ordering::Relaxed);
                return Ok((edges, None));
            }
            if let Some(calls) = self.calls.get(&key)
                && calls.fingerprint == fp
            {
                self.metrics.hours_cached.fetch_add(1, Ordering::Relaxed);
                return Ok((edges, Some(calls)));
            }
        }
        let mut extracts = Vec::with_capacity(files.len() + 1);
        for (path, meta) in files {
            extracts.push(self.file_extract(path, meta).await?);
        }
        let cacheable = memory.is_none();
        extracts.extend(memory.cloned());
        let t = std::time::Instant::now();
        let (edges, calls) = tokio::task::spawn_blocking(move || join_hour(h, &extracts, fp))
            .await
            .map_err(|e| RedError::Query(format!("edge join task failed: {e}")))?;
        self.metrics
            .pair_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.metrics.hours_computed.fetch_add(1, Ordering::Relaxed);
        let (edges, calls) = (Arc::new(edges), Arc::new(calls));
        if cacheable {
            self.hours.insert(key.clone(), edges.clone());
            self.calls.insert(key, calls.clone());
        }
        Ok((edges, Some(calls)))
    }

    /// Caller -> callee edges with RED per edge over `w`, of every service
    /// or of the edges `service` takes part in (as caller or callee),
    /// sorted by caller, callee and kind.
    pub async fn service_map(
        &self,
        w: &Window,
        service: Option<&str>,
    ) -> Result<Vec<Edge>, RedError> {
        let snap = self.store.snapshot(Table::Spans);
        let memory = if snap.batches.is_empty() {
            None
        } else {
            let rows = Snapshot {
                table: Table::Spans,
                files: vec![],
                batches: snap.batches.clone(),
            };
            Some(Arc::new(extract(&self.store, rows).await?))
        };
        let has_spans = |h: i64| {
            files_in(&snap, h, h + HOUR_NS).next().is_some()
                || memory
                    .as_ref()
                    .is_some_and(|x| x.max_ns >= h && x.min_ns < h + HOUR_NS)
        };
        // Hours before the first span hold nothing: a window reaching far
        // back does not walk them.
        let first_span = snap
            .files
            .iter()
            .map(|(_, m)| m.min_time_ns)
            .chain(memory.as_ref().map(|x| x.min_ns))
            .min()
            .unwrap_or(i64::MAX);
        // Servers seen in [from, to + slack) decide the `unobserved` edges.
        let seen_to = w.to_ns.saturating_add(PAIR_SLACK_NS);
        let mut acc: HashMap<EdgeKey, Agg> = HashMap::new();
        let mut servers: HashSet<Arc<str>> = HashSet::new();
        let mut h = w.from_ns.max(first_span).div_euclid(HOUR_NS) * HOUR_NS;
        while h < seen_to {
            if has_spans(h) {
                let in_window = h < w.to_ns;
                let whole = w.from_ns <= h && h + HOUR_NS <= w.to_ns;
                let (edges, calls) = self
                    .hour(&snap, memory.as_ref(), h, in_window && !whole)
                    .await?;
                for (svc, first, last) in &edges.servers {
                    if *last >= w.from_ns && *first < seen_to {
                        servers.insert(svc.clone());
                    }
                }
                if whole {
                    for (k, a) in edges.edges.iter().zip(&edges.whole) {
                        acc.entry(k.clone()).or_default().merge(a);
                    }
                } else if let Some(calls) = calls.filter(|_| in_window) {
                    let c = &calls.calls;
                    let begin = c.partition_point(|c| c.t < w.from_ns);
                    let end = c.partition_point(|c| c.t < w.to_ns);
                    let mut part = vec![Agg::default(); edges.edges.len()];
                    for call in &c[begin..end] {
                        part[call.edge as usize].add(call.err, call.d);
                    }
                    for (k, a) in edges.edges.iter().zip(&part) {
                        if a.calls > 0 {
                            acc.entry(k.clone()).or_default().merge(a);
                        }
                    }
                }
            }
            h += HOUR_NS;
        }
        let seconds = (w.to_ns - w.from_ns) as f64 / 1e9;
        let mut out: Vec<Edge> = acc
            .into_iter()
            .filter(|((_, callee, kind), _)| *kind != Kind::Unobserved || !servers.contains(callee))
            .filter(|((caller, callee, _), _)| {
                service.is_none_or(|x| &**caller == x || &**callee == x)
            })
            .map(|((caller, callee, kind), a)| {
                let q = |q: f64| a.durations.quantile(q).map_or(f64::NAN, |v| v / 1e6);
                Edge {
                    caller: caller.to_string(),
                    callee: callee.to_string(),
                    kind: kind.as_str().to_string(),
                    calls: a.calls,
                    errors: a.errors,
                    rate: a.calls as f64 / seconds,
                    error_ratio: a.errors as f64 / a.calls.max(1) as f64,
                    p50_ms: q(0.5),
                    p95_ms: q(0.95),
                    p99_ms: q(0.99),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.caller, &a.callee, &a.kind).cmp(&(&b.caller, &b.callee, &b.kind)));
        Ok(out)
    }

    /// Keeps the settled hours among the last [`WARM_HOURS`] of spans
    /// computed (those whose spans and pairs ended, and whose files last
    /// changed, more than [`crate::servicegraph::SETTLE_NS`] ago) and drops
    /// extracts of files that are gone. Returns the hours computed.
    pub async fn maintain(&self) -> Result<u64, RedError> {
        let snap = self.store.snapshot(Table::Spans);
        let live: HashSet<&PathBuf> = snap.files.iter().map(|(p, _)| p).collect();
        self.extracts.retain_live(&live);
        let Some(newest) = snap.files.iter().map(|(_, m)| m.max_time_ns).max() else {
            return Ok(0);
        };
        let before = self.metrics.hours_computed.load(Ordering::Relaxed);
        let last = newest.div_euclid(HOUR_NS);
        // Only settled hours: the newest ones change with every flush, and
        // pairing them every few seconds would cost CPU and working memory
        // for queries that may never come (they are paired on demand).
        // Nor an hour whose files changed within SETTLE_NS (late or
        // backfilled spans keep arriving): it is paired once they stop.
        let now = store::now_ns();
        let settled = now - crate::servicegraph::SETTLE_NS;
        let first = last - WARM_HOURS + 1;
        self.stable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|h, _| *h >= first * HOUR_NS);
        for hour in first..=last {
            let h = hour * HOUR_NS;
            if h + HOUR_NS + PAIR_SLACK_NS > settled {
                continue;
            }
            if files_in(&snap, h, h + HOUR_NS).next().is_none() {
                continue;
            }
            let fp = fingerprint(files_in(
                &snap,
                h - PAIR_SLACK_NS,
                h + HOUR_NS + PAIR_SLACK_NS,
            ));
            if self
                .hours
                .get(&hour_path(h))
                .is_some_and(|e| e.fingerprint == fp)
            {
                continue;
            }
            let since = {
                let mut stable = self.stable.lock().unwrap_or_else(|e| e.into_inner());
                let e = stable.entry(h).or_insert((fp, now));
                if e.0 != fp {
                    *e = (fp, now);
                }
                e.1
            };
            if since <= settled {
                // Rows in memory are left out: they are extracted per query.
                self.hour(&snap, None, h, false).await?;
            }
        }
        Ok(self.metrics.hours_computed.load(Ordering::Relaxed) - before)
    }

    /// Reports the counters and cache sizes to `/metrics`.
    pub fn collect_metrics(&self, out: &mut exposition::Out<'_>) -> std::fmt::Result {
        let m = &self.metrics;
        crate::cache::collect_counters(
            out,
            &[
                (
                    "burnwatch_edge_extracts_computed_total",
                    "Spans files extracted for the service map.",
                    &m.extracts_computed,
                ),
                (
                    "burnwatch_edge_hours_computed_total",
                    "Hours of service-map calls paired (cache misses and hours with rows in memory).",
                    &m.hours_computed,
                ),
                (
                    "burnwatch_edge_hours_cached_total",
                    "Hours of service-map calls found in the cache.",
                    &m.hours_cached,
                ),
            ],
        )?;
        out.gauge(
            "burnwatch_edge_cache_bytes",
            "Bytes held by the service map's extracts and hours.",
            self.cache_bytes() as f64,
        )
    }
}
