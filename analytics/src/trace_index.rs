//! Trace-id filters per live file, so that a trace by id opens only the
//! files that may hold the trace, however many weeks of files there are.
//!
//! For every live spans and logs file, a Bloom filter of the trace ids in it
//! (10 bits per distinct id, 7 probes: about 1% false positives) is built
//! once (files are immutable), kept by the store as a derived file of kind
//! [`TRACE_INDEX_KIND`] (under `<data>/rollups/traces-v1/<same path as the
//! data file>`, checksummed, removed with its file) and in a memory cache
//! bounded by bytes. A lookup probes the filter of every live
//! file (nanoseconds each) and answers a snapshot of the files that may hold
//! the trace, plus every file that has no filter yet (just flushed: never
//! skipped, so nothing is missed) and the rows still in memory. The Parquet
//! bloom filters then prune row groups inside the remaining files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, AsArray, RecordBatch};
use datafusion::prelude::SessionContext;
use store::files::FileMeta;
use store::{Snapshot, Store, Table};

use crate::cache::{FileCache, Weigh};
use crate::red::RedError;
use crate::red::register;

/// The filters' kind of derived file in the store.
pub const TRACE_INDEX_KIND: &str = "traces-v1";
/// Directory of the filters, relative to the data directory.
pub const TRACE_INDEX_DIR: &str = "rollups/traces-v1";

/// Default memory budget of the filter cache.
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;

const BITS_PER_KEY: u64 = 10;
const PROBES: u32 = 7;
const MAGIC: &[u8; 4] = b"BWTF";
const VERSION: u8 = 2;

/// A Bloom filter of trace ids (`2^n` bits, double hashing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFilter {
    words: Box<[u64]>,
}

fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser: ids that are not random still spread.
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Two hashes of a trace id given as 32 hex characters (any case); `None`
/// for anything else.
fn hashes(trace_id: &str) -> Option<(u64, u64)> {
    if trace_id.len() != 32 {
        return None;
    }
    let hi = u64::from_str_radix(&trace_id[..16], 16).ok()?;
    let lo = u64::from_str_radix(&trace_id[16..], 16).ok()?;
    let h1 = mix(hi ^ mix(lo));
    let h2 = mix(lo.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ hi) | 1;
    Some((h1, h2))
}

impl TraceFilter {
    /// An empty filter sized for `keys` distinct ids.
    pub fn with_capacity(keys: usize) -> TraceFilter {
        let bits = (keys as u64 * BITS_PER_KEY).max(64).next_power_of_two();
        TraceFilter {
            words: vec![0u64; (bits / 64) as usize].into_boxed_slice(),
        }
    }

    fn mask(&self) -> u64 {
        self.words.len() as u64 * 64 - 1
    }

    /// Adds a trace id (ignored unless it is 32 hex characters).
    pub fn insert(&mut self, trace_id: &str) {
        if let Some((h1, h2)) = hashes(trace_id) {
            let m = self.mask();
            for j in 0..PROBES as u64 {
                let bit = h1.wrapping_add(j.wrapping_mul(h2)) & m;
                self.words[(bit / 64) as usize] |= 1 << (bit % 64);
            }
        }
    }

    /// Whether the id may have been added (never false for an added id).
    pub fn may_contain(&self, trace_id: &str) -> bool {
        let Some((h1, h2)) = hashes(trace_id) else {
            return true;
        };
        let m = self.mask();
        (0..PROBES as u64).all(|j| {
            let bit = h1.wrapping_add(j.wrapping_mul(h2)) & m;
            self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// `BWTF`, version, word count, words (little endian). The store
    /// checksums the file it keeps this in.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8 + 13);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(self.words.len() as u64).to_le_bytes());
        for w in self.words.iter() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The inverse of [`TraceFilter::encode`]; an error names what is wrong.
    pub fn decode(b: &[u8]) -> Result<TraceFilter, String> {
        if b.len() < 13 || &b[..4] != MAGIC {
            return Err("not a trace filter (bad magic or too short)".into());
        }
        if b[4] != VERSION {
            return Err(format!("unknown trace filter version {}", b[4]));
        }
        let n = u64::from_le_bytes(b[5..13].try_into().expect("8 bytes")) as usize;
        let body = &b[13..];
        if !n.is_power_of_two() || body.len() != n.saturating_mul(8) {
            return Err(format!(
                "trace filter of {n} words has {} bytes",
                body.len()
            ));
        }
        Ok(TraceFilter {
            words: body
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        })
    }
}

impl Weigh for TraceFilter {
    fn weight(&self) -> usize {
        self.bytes()
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct TraceIndexMetrics {
    /// Lookups of a trace id.
    pub lookups: AtomicU64,
    /// Files skipped by their filter.
    pub files_skipped: AtomicU64,
    /// Files opened because their filter matched (or there was none).
    pub files_read: AtomicU64,
    /// Filters built from a data file.
    pub built: AtomicU64,
    /// Filter files that were damaged or did not decode (rebuilt).
    pub unreadable: AtomicU64,
}

/// Trace-id filters over one store's spans and logs files.
pub struct TraceIndex {
    store: Store,
    budget: usize,
    cache: FileCache<TraceFilter>,
    /// Counters.
    pub metrics: TraceIndexMetrics,
}

impl std::fmt::Debug for TraceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceIndex")
            .field("budget", &self.budget)
            .finish()
    }
}

/// The tables with a `trace_id` column.
pub const INDEXED: [Table; 2] = [Table::Spans, Table::Logs];

impl TraceIndex {
    /// An index over `store` with a memory cache of `budget` bytes.
    pub fn new(store: Store, budget: usize) -> TraceIndex {
        TraceIndex {
            store,
            budget,
            cache: FileCache::new(budget),
            metrics: TraceIndexMetrics::default(),
        }
    }

    fn cached(&self, data_path: &Path) -> Option<Arc<TraceFilter>> {
        self.cache.get(data_path)
    }

    fn remember(&self, data_path: PathBuf, f: Arc<TraceFilter>) {
        self.cache.insert(data_path, f);
    }

    /// Bytes held by the memory cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// The filter of a live file from memory or from the store; `None`
    /// when it has none yet, or when it was damaged or did not decode (the
    /// store then moved it to quarantine, and maintenance builds it again).
    async fn load(&self, data_path: &Path, meta: &FileMeta) -> Option<Arc<TraceFilter>> {
        if let Some(f) = self.cached(data_path) {
            return Some(f);
        }
        let problem = match self.store.read_derived(TRACE_INDEX_KIND, &meta.path).await {
            Ok(None) => return None,
            Ok(Some(bytes)) => match TraceFilter::decode(&bytes) {
                Ok(f) => {
                    let f = Arc::new(f);
                    self.remember(data_path.to_path_buf(), f.clone());
                    return Some(f);
                }
                Err(e) => {
                    if let Err(e2) = self
                        .store
                        .reject_derived(TRACE_INDEX_KIND, &meta.path, &e)
                        .await
                    {
                        tracing::warn!(error = %e2, "could not quarantine a trace filter");
                    }
                    e
                }
            },
            Err(e) => e.to_string(),
        };
        self.metrics.unreadable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(file = %meta.path, error = %problem, "unreadable trace filter; it will be rebuilt");
        None
    }

    /// Builds and saves the filter of one data file.
    async fn build(&self, table: Table, data_path: &Path, meta: &FileMeta) -> Result<(), RedError> {
        let ctx = self.store.session();
        register(
            &ctx,
            "f",
            Snapshot {
                table,
                files: vec![(data_path.to_path_buf(), meta.clone())],
                batches: vec![],
            },
        )?;
        let batches = ctx
            .sql("SELECT trace_id FROM f WHERE trace_id IS NOT NULL")
            .await
            .map_err(|e| RedError::Query(e.to_string()))?
            .collect()
            .await
            .map_err(|e| RedError::Query(e.to_string()))?;
        let filter = filter_of(&batches);
        if !self.store.is_read_only() {
            self.store
                .write_derived(TRACE_INDEX_KIND, &meta.path, filter.encode())
                .await
                .map_err(|e| RedError::Query(format!("saving a trace filter: {e}")))?;
        }
        self.metrics.built.fetch_add(1, Ordering::Relaxed);
        self.remember(data_path.to_path_buf(), Arc::new(filter));
        Ok(())
    }

    /// Builds filters for live files that have none (the store removes
    /// those of files that are gone). Returns the number built.
    pub async fn maintain(&self) -> Result<u64, RedError> {
        let mut built = 0;
        let mut live = std::collections::HashSet::new();
        for table in INDEXED {
            let snap = self.store.snapshot(table);
            for (path, meta) in &snap.files {
                live.insert(path.clone());
                if self.cached(path).is_none()
                    && !self.store.has_derived(TRACE_INDEX_KIND, &meta.path)
                {
                    self.build(table, path, meta).await?;
                    built += 1;
                }
            }
        }
        self.cache.retain_live(&live.iter().collect());
        Ok(built)
    }

    /// A snapshot of `table` with only the files that may hold `trace_id`
    /// (those whose filter matches, and those without a filter) and every
    /// row still in memory.
    pub async fn candidates(&self, table: Table, trace_id: &str) -> Snapshot {
        let snap = self.store.snapshot(table);
        let mut files = Vec::new();
        let mut skipped = 0;
        for (path, meta) in snap.files {
            match self.load(&path, &meta).await {
                Some(f) if !f.may_contain(trace_id) => skipped += 1,
                _ => files.push((path, meta)),
            }
        }
        self.metrics
            .files_skipped
            .fetch_add(skipped, Ordering::Relaxed);
        self.metrics
            .files_read
            .fetch_add(files.len() as u64, Ordering::Relaxed);
        Snapshot {
            table,
            files,
            batches: snap.batches,
        }
    }

    /// A session whose `spans` and `logs` tables hold only what may belong
    /// to `trace_id` (see [`TraceIndex::candidates`]).
    pub async fn session_for(&self, trace_id: &str) -> Result<SessionContext, RedError> {
        self.metrics.lookups.fetch_add(1, Ordering::Relaxed);
        let ctx = self.store.session();
        for table in INDEXED {
            register(&ctx, table.name(), self.candidates(table, trace_id).await)?;
        }
        Ok(ctx)
    }

    /// Reports the index counters to `/metrics`.
    pub fn collect_metrics(&self, out: &mut exposition::Out<'_>) -> std::fmt::Result {
        let m = &self.metrics;
        crate::cache::collect_counters(
            out,
            &[
                (
                    "burnwatch_trace_index_lookups_total",
                    "Trace-by-id lookups.",
                    &m.lookups,
                ),
                (
                    "burnwatch_trace_index_files_skipped_total",
                    "Files a trace lookup skipped by their trace-id filter.",
                    &m.files_skipped,
                ),
                (
                    "burnwatch_trace_index_files_read_total",
                    "Files a trace lookup had to read.",
                    &m.files_read,
                ),
                (
                    "burnwatch_trace_index_built_total",
                    "Trace-id filters built from data files.",
                    &m.built,
                ),
                (
                    "burnwatch_trace_index_unreadable_total",
                    "Trace-id filter files that could not be read and were rebuilt.",
                    &m.unreadable,
                ),
            ],
        )?;
        out.gauge(
            "burnwatch_trace_index_cache_bytes",
            "Bytes of trace-id filters held in memory.",
            self.cache_bytes() as f64,
        )
    }
}

/// The filter of the trace ids in `batches` (one `trace_id` column).
fn filter_of(batches: &[RecordBatch]) -> TraceFilter {
    let mut distinct = std::collections::HashSet::new();
    for b in batches {
        let ids = b.column(0).as_string::<i32>();
        for i in 0..ids.len() {
            if !ids.is_null(i) {
                distinct.insert(ids.value(i));
            }
        }
    }
    let mut f = TraceFilter::with_capacity(distinct.len());
    for id in distinct {
        f.insert(id);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> String {
        format!("{:016x}{:016x}", mix(i), mix(i + 1_000_000))
    }

    #[test]
    fn no_false_negatives_and_about_one_percent_false_positives() {
        let mut f = TraceFilter::with_capacity(10_000);
        for i in 0..10_000 {
            f.insert(&id(i));
        }
        assert!((0..10_000).all(|i| f.may_contain(&id(i))));
        assert!(f.may_contain(&id(42).to_uppercase()));
        let fp = (20_000..120_000).filter(|&i| f.may_contain(&id(i))).count();
        // 2^17 bits for 10k keys (13 per key): about 0.3% expected; at 10
        // bits per key (the least sizing gives) 0.8%.
        assert!(fp < 1_000, "{fp} false positives in 100k");
        // Ids that are not 32 hex characters are never ruled out.
        assert!(f.may_contain("not-an-id"));
    }

    /// Damage to the bytes at rest is the store's to find (it checksums
    /// every derived file: `store/tests/derived.rs`); decoding refuses what
    /// is not a filter of this version.
    #[test]
    fn encoding_round_trips_and_foreign_bytes_are_refused() {
        let mut f = TraceFilter::with_capacity(100);
        f.insert(&id(1));
        let b = f.encode();
        assert_eq!(TraceFilter::decode(&b).unwrap(), f);
        assert!(TraceFilter::decode(&b[..b.len() - 8]).is_err());
        assert!(TraceFilter::decode(b"nope").is_err());
        let mut old = b.clone();
        old[4] = 1;
        assert!(TraceFilter::decode(&old).unwrap_err().contains("version 1"));
    }
}
