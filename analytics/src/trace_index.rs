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

use arrow::array::{Array, AsArray, RecordBatch};
use datafusion::prelude::SessionContext;
use store::Table;

use crate::cache::Weigh;
use crate::file_filter::{Bloom, FileFilter, FilterIndex, mix};
use crate::red::RedError;
use crate::red::register;

/// The filters' kind of derived file in the store.
pub const TRACE_INDEX_KIND: &str = "traces-v1";
/// Directory of the filters, relative to the data directory.
pub const TRACE_INDEX_DIR: &str = "rollups/traces-v1";

/// Default memory budget of the filter cache.
pub const DEFAULT_CACHE_BYTES: usize = 128 << 20;

const BITS_PER_KEY: u64 = 10;
const MAGIC: &[u8; 4] = b"BWTF";
const VERSION: u8 = 2;

/// A Bloom filter of trace ids (`2^n` bits, double hashing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceFilter {
    bloom: Bloom,
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
        TraceFilter {
            bloom: Bloom::with_capacity(keys, BITS_PER_KEY),
        }
    }

    /// Adds a trace id (ignored unless it is 32 hex characters).
    pub fn insert(&mut self, trace_id: &str) {
        if let Some(h) = hashes(trace_id) {
            self.bloom.insert(h);
        }
    }

    /// Whether the id may have been added (never false for an added id).
    pub fn may_contain(&self, trace_id: &str) -> bool {
        hashes(trace_id).is_none_or(|h| self.bloom.may_contain(h))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bloom.bytes()
    }

    /// `BWTF`, version, word count, words (little endian). The store
    /// checksums the file it keeps this in.
    pub fn encode(&self) -> Vec<u8> {
        self.bloom.encode(MAGIC, VERSION)
    }

    /// The inverse of [`TraceFilter::encode`]; an error names what is wrong.
    pub fn decode(b: &[u8]) -> Result<TraceFilter, String> {
        Bloom::decode(b, MAGIC, VERSION, "trace filter").map(|bloom| TraceFilter { bloom })
    }
}

impl Weigh for TraceFilter {
    fn weight(&self) -> usize {
        self.bytes()
    }
}

/// The tables with a `trace_id` column.
pub const INDEXED: [Table; 2] = [Table::Spans, Table::Logs];

impl FileFilter for TraceFilter {
    const KIND: &'static str = TRACE_INDEX_KIND;
    const TABLES: &'static [Table] = &INDEXED;
    const WHAT: &'static str = "trace filter";
    const SOURCE_SQL: &'static str = "SELECT trace_id FROM f WHERE trace_id IS NOT NULL";

    fn from_batches(batches: &[RecordBatch]) -> TraceFilter {
        filter_of(batches)
    }

    fn encode(&self) -> Vec<u8> {
        TraceFilter::encode(self)
    }

    fn decode(b: &[u8]) -> Result<TraceFilter, String> {
        TraceFilter::decode(b)
    }
}

/// Trace-id filters over one store's spans and logs files.
pub type TraceIndex = FilterIndex<TraceFilter>;

impl FilterIndex<TraceFilter> {
    /// A session whose `spans` and `logs` tables hold only what may belong
    /// to `trace_id` (the files whose filter may hold it, those without a
    /// filter, and the rows in memory).
    pub async fn session_for(&self, trace_id: &str) -> Result<SessionContext, RedError> {
        self.metrics
            .lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ctx = self.store.session();
        for table in INDEXED {
            register(
                &ctx,
                table.name(),
                self.candidates(table, |f| f.may_contain(trace_id)).await,
            )?;
        }
        Ok(ctx)
    }

    /// Runs `sql` with its `spans` table holding only the files whose
    /// filter may hold one of `ids` (and those without a filter, and the
    /// rows in memory).
    pub async fn query_spans_of(
        &self,
        ids: &[&str],
        sql: &str,
    ) -> Result<Vec<RecordBatch>, RedError> {
        let snap = self
            .candidates(Table::Spans, |f| ids.iter().any(|id| f.may_contain(id)))
            .await;
        let ctx = self.store.session();
        register(&ctx, "spans", snap)?;
        ctx.sql(sql)
            .await
            .map_err(|e| RedError::Query(e.to_string()))?
            .collect()
            .await
            .map_err(|e| RedError::Query(e.to_string()))
    }

    /// Reports the index counters to `/metrics`.
    pub fn report(&self, out: &mut exposition::Out<'_>) -> std::fmt::Result {
        self.collect_metrics(out, "burnwatch_trace_index", "a trace by id")
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
