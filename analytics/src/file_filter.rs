//! Per-file filters: a small summary of each immutable data file that says
//! when the file cannot hold what a query looks for, so the query skips it.
//! Two kinds use this: trace-id filters ([`crate::trace_index`]) and log
//! text filters ([`crate::text_index`]).
//!
//! A filter is built once per live file (files never change), kept by the
//! store as a derived file of the filter's kind (under
//! `<data>/rollups/<kind>/<same path as the data file>`, checksummed,
//! removed with its file) and in a memory cache bounded by bytes. A lookup
//! answers a snapshot of the files whose filter may match, plus every file
//! that has no filter yet (just flushed: never skipped, so nothing is
//! missed) and the rows still in memory.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use store::files::FileMeta;
use store::{Snapshot, Store, Table};

use crate::cache::{FileCache, Weigh};
use crate::red::RedError;
use crate::red::register;

/// A Bloom filter of `2^n` bits probed by double hashing; what the keys
/// are and how they are hashed is the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    words: Box<[u64]>,
}

/// splitmix64's finaliser: keys that are not random still spread.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Bloom {
    /// Probes per key.
    const PROBES: u64 = 7;

    /// An empty filter of at least `bits_per_key` bits for each of `keys`
    /// keys (rounded up to a power of two, at least 64).
    pub fn with_capacity(keys: usize, bits_per_key: u64) -> Bloom {
        let bits = (keys as u64 * bits_per_key).max(64).next_power_of_two();
        Bloom {
            words: vec![0u64; (bits / 64) as usize].into_boxed_slice(),
        }
    }

    fn bits(&self, (h1, h2): (u64, u64)) -> impl Iterator<Item = u64> + use<> {
        let m = self.words.len() as u64 * 64 - 1;
        (0..Self::PROBES).map(move |j| h1.wrapping_add(j.wrapping_mul(h2 | 1)) & m)
    }

    /// Adds the key with hashes `h`.
    pub fn insert(&mut self, h: (u64, u64)) {
        for bit in self.bits(h) {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// Whether the key with hashes `h` may have been added (never false
    /// for an added key).
    pub fn may_contain(&self, h: (u64, u64)) -> bool {
        self.bits(h)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// `magic`, `version`, word count (u64 LE), words (u64 LE). The store
    /// checksums the file it keeps this in.
    pub fn encode(&self, magic: &[u8; 4], version: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.words.len() * 8 + 13);
        out.extend_from_slice(magic);
        out.push(version);
        out.extend_from_slice(&(self.words.len() as u64).to_le_bytes());
        for w in self.words.iter() {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The inverse of [`Bloom::encode`]; an error names what is wrong, as
    /// a `what` (e.g. "trace filter").
    pub fn decode(b: &[u8], magic: &[u8; 4], version: u8, what: &str) -> Result<Bloom, String> {
        if b.len() < 13 || &b[..4] != magic {
            return Err(format!("not a {what} (bad magic or too short)"));
        }
        if b[4] != version {
            return Err(format!("unknown {what} version {}", b[4]));
        }
        let n = u64::from_le_bytes(b[5..13].try_into().expect("8 bytes")) as usize;
        let body = &b[13..];
        if !n.is_power_of_two() || body.len() != n.saturating_mul(8) {
            return Err(format!("{what} of {n} words has {} bytes", body.len()));
        }
        Ok(Bloom {
            words: body
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        })
    }
}

/// One kind of per-file filter.
pub trait FileFilter: Weigh + Send + Sync + Sized + 'static {
    /// The store's derived-file kind (`traces-v1`).
    const KIND: &'static str;
    /// The tables whose files get one.
    const TABLES: &'static [Table];
    /// What one is called in messages ("trace filter").
    const WHAT: &'static str;
    /// The query over one file (registered as `f`) whose rows build it.
    const SOURCE_SQL: &'static str;
    /// Builds the filter from the rows of [`FileFilter::SOURCE_SQL`].
    fn from_batches(batches: &[RecordBatch]) -> Self;
    /// The bytes kept at rest.
    fn encode(&self) -> Vec<u8>;
    /// The inverse of `encode`.
    fn decode(b: &[u8]) -> Result<Self, String>;
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct FilterMetrics {
    /// Lookups.
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

/// The filters of one kind over one store's files.
pub struct FilterIndex<F> {
    pub(crate) store: Store,
    budget: usize,
    cache: FileCache<F>,
    /// Counters.
    pub metrics: FilterMetrics,
}

impl<F> std::fmt::Debug for FilterIndex<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterIndex")
            .field("budget", &self.budget)
            .finish()
    }
}

impl<F: FileFilter> FilterIndex<F> {
    /// An index over `store` with a memory cache of `budget` bytes.
    pub fn new(store: Store, budget: usize) -> FilterIndex<F> {
        FilterIndex {
            store,
            budget,
            cache: FileCache::new(budget),
            metrics: FilterMetrics::default(),
        }
    }

    /// Bytes held by the memory cache.
    pub fn cache_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// The filter of a live file from memory or from the store; `None`
    /// when it has none yet, or when it was damaged or did not decode (the
    /// store then moved it to quarantine, and maintenance builds it again).
    pub async fn load(&self, data_path: &Path, meta: &FileMeta) -> Option<Arc<F>> {
        if let Some(f) = self.cache.get(data_path) {
            return Some(f);
        }
        let problem = match self.store.read_derived(F::KIND, &meta.path).await {
            Ok(None) => return None,
            Ok(Some(bytes)) => match F::decode(&bytes) {
                Ok(f) => {
                    let f = Arc::new(f);
                    self.cache.insert(data_path.to_path_buf(), f.clone());
                    return Some(f);
                }
                Err(e) => {
                    if let Err(e2) = self.store.reject_derived(F::KIND, &meta.path, &e).await {
                        tracing::warn!(error = %e2, what = F::WHAT, "could not quarantine a filter");
                    }
                    e
                }
            },
            Err(e) => e.to_string(),
        };
        self.metrics.unreadable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(file = %meta.path, error = %problem, what = F::WHAT, "unreadable filter; it will be rebuilt");
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
            .sql(F::SOURCE_SQL)
            .await
            .map_err(|e| RedError::Query(e.to_string()))?
            .collect()
            .await
            .map_err(|e| RedError::Query(e.to_string()))?;
        let filter = F::from_batches(&batches);
        if !self.store.is_read_only() {
            self.store
                .write_derived(F::KIND, &meta.path, filter.encode())
                .await
                .map_err(|e| RedError::Query(format!("saving a {}: {e}", F::WHAT)))?;
        }
        self.metrics.built.fetch_add(1, Ordering::Relaxed);
        self.cache.insert(data_path.to_path_buf(), Arc::new(filter));
        Ok(())
    }

    /// Builds filters for live files that have none (the store removes
    /// those of files that are gone). Returns the number built.
    pub async fn maintain(&self) -> Result<u64, RedError> {
        let mut built = 0;
        let mut live = std::collections::HashSet::new();
        for &table in F::TABLES {
            let snap = self.store.snapshot(table);
            for (path, meta) in &snap.files {
                live.insert(path.clone());
                if self.cache.get(path).is_none() && !self.store.has_derived(F::KIND, &meta.path) {
                    self.build(table, path, meta).await?;
                    built += 1;
                }
            }
        }
        self.cache.retain_live(&live.iter().collect());
        Ok(built)
    }

    /// A snapshot of `table` with only the files whose filter passes
    /// `may_match` (and those without a filter) and every row still in
    /// memory.
    pub async fn candidates(&self, table: Table, may_match: impl Fn(&F) -> bool) -> Snapshot {
        let snap = self.store.snapshot(table);
        let mut files = Vec::new();
        let mut skipped = 0;
        for (path, meta) in snap.files {
            match self.load(&path, &meta).await {
                Some(f) if !may_match(&f) => skipped += 1,
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

    /// Reports the counters and the cache's bytes to `/metrics` as
    /// `<prefix>_lookups_total` ... `<prefix>_cache_bytes`; `subject`
    /// names what a lookup looks for in the help texts.
    pub fn collect_metrics(
        &self,
        out: &mut exposition::Out<'_>,
        prefix: &str,
        subject: &str,
    ) -> std::fmt::Result {
        let m = &self.metrics;
        let names = [
            "lookups_total",
            "files_skipped_total",
            "files_read_total",
            "built_total",
            "unreadable_total",
        ]
        .map(|n| format!("{prefix}_{n}"));
        let helps = [
            format!("Lookups of {subject}."),
            format!("Files a lookup of {subject} skipped by their {}.", F::WHAT),
            format!("Files a lookup of {subject} had to read."),
            format!("{}s built from data files.", capitalised(F::WHAT)),
            format!(
                "{} files that could not be read and were rebuilt.",
                capitalised(F::WHAT)
            ),
        ];
        let values = [
            &m.lookups,
            &m.files_skipped,
            &m.files_read,
            &m.built,
            &m.unreadable,
        ];
        let counters: Vec<(&str, &str, &AtomicU64)> = names
            .iter()
            .zip(&helps)
            .zip(values)
            .map(|((n, h), v)| (n.as_str(), h.as_str(), v))
            .collect();
        crate::cache::collect_counters(out, &counters)?;
        out.gauge(
            &format!("{prefix}_cache_bytes"),
            &format!("Bytes of {}s held in memory.", F::WHAT),
            self.cache_bytes() as f64,
        )
    }
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}
