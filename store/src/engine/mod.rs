//! The `Store`: write path (WAL + buffers), flushes, compaction, retention,
//! snapshots for readers, and the background tasks that drive them.
//!
//! - `open`: opening a store (manifest, live-file checks, orphans, WAL replay);
//! - `write`: the write path (schema check, backpressure, WAL append);
//! - `flush`: buffered rows to Parquet and the manifest;
//! - `maintenance`: compaction, retention, scrub, quarantine, deferred deletes;
//! - `derived`: files derived from live files (rollups, filters), kept and
//!   checked by the store beside the file they belong to;
//! - `background`: the flusher and the cron jobs, and closing;
//! - `metrics`: the Prometheus exposition;
//! - `sync`: the bucket side (`storage.url`): adopting the bucket's manifest
//!   at open, uploads before each manifest version, remote deletes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::files::{
    FileMeta, HOUR_NS, Manifest, check_footer, partition_dir, write_flush, writer_props,
};
use crate::schema::Table;
use crate::wal::{self, Durable, WalRequest, WalWriter};

mod background;
mod compactor;
mod derived;
mod flush;
mod live;
pub use live::LiveRows;
mod maintenance;
mod metrics;
mod open;
mod sync;
mod write;

use maintenance::quarantine_file;

/// Store settings. Every field has a default; see `docs/configuration.md`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Root of all data: WAL, Parquet files, manifest, quarantine. Set from
    /// the top-level `data_dir` / `--data-dir`, not from the `[store]` table.
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// Most bytes of acknowledged rows held in memory (not yet in Parquet)
    /// plus writes in flight. Writers past it get `Error::Overloaded`.
    pub max_buffer_bytes: usize,
    /// Flush when this many bytes are buffered.
    pub flush_bytes: usize,
    /// Flush when the oldest buffered row is this old (seconds).
    pub flush_interval_secs: f64,
    /// Rows per Parquet row group of flushed files and of compacted logs
    /// and metric points.
    pub row_group_rows: usize,
    /// Most rows per Parquet row group of compacted spans files. A row
    /// group has one dictionary per column, so large ones let every span of
    /// a trace (across services) share one `trace_id` entry. Logs and
    /// metric points were not measured with larger row groups and keep
    /// `row_group_rows`.
    pub spans_compact_row_group_rows: usize,
    /// Capacity of the queue in front of the WAL thread (requests).
    pub wal_queue: usize,
    /// Retention per table in hours (0 keeps forever).
    pub retention_hours: RetentionConfig,
    /// Cron expression (with seconds) for compaction.
    pub compaction_schedule: String,
    /// Cron expression (with seconds) for retention.
    pub retention_schedule: String,
    /// Cron expression (with seconds) of the scrub, which checks every live
    /// file's checksum and quarantines files whose bytes changed. It also
    /// runs once a minute after start.
    pub scrub_schedule: String,
    /// In the open hour, merge small files once there are this many.
    pub compaction_min_files: usize,
    /// Files at least this large are not merged again in the open hour.
    pub compaction_small_file_bytes: u64,
    /// Files replaced by compaction or retention are deleted after this many
    /// seconds, so queries that started before still read them.
    pub delete_grace_secs: u64,
    /// The bucket beside the data directory, if any. Set from the top-level
    /// `[storage]` table, `--storage-url` and `--node-id`.
    #[serde(skip)]
    pub storage: crate::remote::StorageConfig,
    /// What the background jobs maintain (set by `serve --role`).
    #[serde(skip)]
    pub role: StoreRole,
}

/// What a store's background jobs maintain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StoreRole {
    /// Its own files: compaction and retention (one process, or one node
    /// alone on a bucket).
    #[default]
    Single,
    /// An ingest node of a cluster: the compactor merges and expires its
    /// files; on the compaction schedule it lets go of those replaced.
    Ingest,
    /// The compactor (node id `compactor`): on the compaction schedule it
    /// merges and expires every node's files.
    Compactor,
}

/// Retention per table, in hours; 0 keeps data forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Spans (default 7 days).
    pub spans: u64,
    /// Logs (default 7 days).
    pub logs: u64,
    /// Metric points (default 30 days).
    pub metric_points: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            spans: 7 * 24,
            logs: 7 * 24,
            metric_points: 30 * 24,
        }
    }
}

impl RetentionConfig {
    /// Retention of a table; `None` keeps forever.
    pub fn of(&self, table: Table) -> Option<Duration> {
        let h = match table {
            Table::Spans => self.spans,
            Table::Logs => self.logs,
            Table::MetricPoints => self.metric_points,
        };
        (h > 0).then(|| Duration::from_secs(h * 3600))
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./data"),
            max_buffer_bytes: 512 << 20,
            flush_bytes: 64 << 20,
            flush_interval_secs: 5.0,
            row_group_rows: 64 * 1024,
            spans_compact_row_group_rows: 1 << 20,
            wal_queue: 1024,
            retention_hours: RetentionConfig::default(),
            compaction_schedule: "0 */5 * * * *".into(),
            retention_schedule: "30 17 * * * *".into(),
            scrub_schedule: "0 41 */6 * * *".into(),
            compaction_min_files: 12,
            compaction_small_file_bytes: 32 << 20,
            delete_grace_secs: 600,
            storage: Default::default(),
            role: StoreRole::Single,
        }
    }
}

/// A consistent view of one table: live files plus rows not yet flushed.
/// No row is in both.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The table.
    pub table: Table,
    /// Live Parquet files, with absolute paths.
    pub files: Vec<(PathBuf, FileMeta)>,
    /// Acknowledged rows still in memory.
    pub batches: Vec<RecordBatch>,
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Default)]
pub struct StoreMetrics {
    /// Rows acknowledged, per table (spans, logs, metric_points).
    pub rows_written: [AtomicU64; 3],
    /// Writes refused because the buffers were full.
    pub writes_overloaded: AtomicU64,
    /// Writes that failed on a full disk.
    pub writes_disk_full: AtomicU64,
    /// WAL group commits (fsyncs).
    pub wal_syncs: AtomicU64,
    /// Records written to the WAL.
    pub wal_records: AtomicU64,
    /// Total time spent in WAL write+fsync, microseconds.
    pub wal_sync_micros: AtomicU64,
    /// Flushes completed.
    pub flushes: AtomicU64,
    /// Flushes that failed (data stays in the WAL and buffers).
    pub flush_errors: AtomicU64,
    /// Parquet files written by flushes.
    pub files_flushed: AtomicU64,
    /// Compactions completed (one per output file).
    pub compactions: AtomicU64,
    /// Files removed by retention.
    pub files_expired: AtomicU64,
    /// WAL segments with a torn or corrupt tail found at start-up.
    pub wal_corrupt_segments: AtomicU64,
    /// Files moved to quarantine.
    pub files_quarantined: AtomicU64,
    /// Live files whose checksum the scrub or compaction verified.
    pub files_verified: AtomicU64,
    /// Derived files (rollups, filters) written.
    pub derived_written: AtomicU64,
    /// Derived files found damaged and moved to quarantine.
    pub derived_quarantined: AtomicU64,
    /// Derived files removed because their kind is no longer wanted.
    pub derived_removed: AtomicU64,
    /// Cron ticks skipped because the job's last run was still going, per
    /// [`Job`].
    pub ticks_skipped: [AtomicU64; Job::ALL.len()],
}

/// The store's scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Local compaction (role `all`).
    Compaction,
    /// Cluster compaction (role `compact`).
    ClusterCompaction,
    /// Letting go of files the compactor merged (role `ingest`).
    Tombstones,
    /// Retention (role `all`).
    Retention,
    /// The checksum scrub.
    Scrub,
}

impl Job {
    /// Every job, in the order of [`StoreMetrics::ticks_skipped`].
    pub const ALL: [Job; 5] = [
        Job::Compaction,
        Job::ClusterCompaction,
        Job::Tombstones,
        Job::Retention,
        Job::Scrub,
    ];

    /// The `job` label of its metrics.
    pub fn label(self) -> &'static str {
        match self {
            Job::Compaction => "compaction",
            Job::ClusterCompaction => "cluster_compaction",
            Job::Tombstones => "tombstones",
            Job::Retention => "retention",
            Job::Scrub => "scrub",
        }
    }

    /// What it does, for logs.
    pub fn what(self) -> &'static str {
        match self {
            Job::Compaction => "compaction",
            Job::ClusterCompaction => "cluster compaction",
            Job::Tombstones => "letting go of compacted files",
            Job::Retention => "retention",
            Job::Scrub => "scrub",
        }
    }
}

/// A point-in-time summary of the store.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStats {
    /// Bytes of rows buffered in memory and in flight.
    pub buffered_bytes: usize,
    /// The buffer limit.
    pub max_buffer_bytes: usize,
    /// Rows buffered in memory per table.
    pub buffered_rows: [u64; 3],
    /// Live files per table.
    pub files: [u64; 3],
    /// Bytes on disk per table.
    pub file_bytes: [u64; 3],
    /// Rows in files per table.
    pub file_rows: [u64; 3],
    /// Highest LSN durable in Parquet.
    pub flushed_lsn: u64,
}

#[derive(Default)]
struct Buffer {
    entries: Vec<Durable>,
    bytes: usize,
    oldest: Option<Instant>,
}

struct State {
    manifest: Manifest,
    buffers: [Buffer; 3],
}

/// The position of `table` in per-table arrays ([`Table::ALL`] order).
pub(crate) fn table_index(table: Table) -> usize {
    idx(table)
}

fn idx(table: Table) -> usize {
    match table {
        Table::Spans => 0,
        Table::Logs => 1,
        Table::MetricPoints => 2,
    }
}

struct Inner {
    config: StoreConfig,
    read_only: bool,
    data_dir: PathBuf,
    wal_dir: PathBuf,
    quarantine_dir: PathBuf,
    wal_tx: Mutex<Option<mpsc::Sender<WalRequest>>>,
    wal_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    state: Arc<RwLock<State>>,
    /// Serialises manifest changes (flush, compaction, retention).
    commit: tokio::sync::Mutex<()>,
    /// Held for a whole compaction (local or cluster): one at a time, so a
    /// merge slower than the schedule is never started twice over the same
    /// inputs.
    compacting: tokio::sync::Mutex<()>,
    /// Bytes buffered plus reserved by writes in flight.
    reserved: AtomicUsize,
    flush_wanted: Notify,
    metrics: Arc<StoreMetrics>,
    pending_deletes: Mutex<Vec<(Instant, PathBuf)>>,
    /// The compactor's sweep of objects no manifest version names.
    orphans: Mutex<compactor::Orphans>,
    /// Derived files were listed or unlisted since the manifest was last
    /// written.
    derived_dirty: AtomicBool,
    /// The bucket that holds the files and manifest versions, if any.
    remote: Option<Arc<crate::remote::Remote>>,
    /// Opened with [`Store::open_bucket`]: files are read from the bucket
    /// itself, `data_dir` is the prefix inside it.
    bucket_only: bool,
    /// The query engine's shared state (see [`Store::runtime`]).
    #[cfg(feature = "sql")]
    runtime: std::sync::OnceLock<Arc<datafusion::execution::runtime_env::RuntimeEnv>>,
    /// For a query node: the view of every node it keeps current.
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

/// The storage engine. Cheap to clone; all clones share one store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read(s: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    s.read().unwrap_or_else(|p| p.into_inner())
}

fn write(s: &RwLock<State>) -> std::sync::RwLockWriteGuard<'_, State> {
    s.write().unwrap_or_else(|p| p.into_inner())
}

/// Wall-clock now in ns since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Whether the store was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    fn writable(&self) -> Result<()> {
        if self.inner.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The bucket beside the data directory, if one is configured.
    pub fn remote(&self) -> Option<&Arc<crate::remote::Remote>> {
        self.inner.remote.as_ref()
    }

    /// Part of every new file name: `<node id>-<process token>-` with a
    /// bucket (names must be unique across processes), empty without.
    fn file_tag(&self) -> String {
        self.inner
            .remote
            .as_ref()
            .map(|r| format!("{}-", r.file_tag()))
            .unwrap_or_default()
    }

    /// The bucket files are read from directly, for stores opened with
    /// [`Store::open_bucket`]; `None` when they are read from local disk.
    pub fn read_from_bucket(&self) -> Option<&Arc<crate::remote::Remote>> {
        self.inner
            .remote
            .as_ref()
            .filter(|_| self.inner.bucket_only)
    }

    /// Where [`Store::runtime`] keeps the shared query-engine state.
    #[cfg(feature = "sql")]
    pub(crate) fn runtime_cell(
        &self,
    ) -> &std::sync::OnceLock<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
        &self.inner.runtime
    }

    /// Bytes of Parquet metadata the query engine keeps cached.
    #[cfg(feature = "sql")]
    pub(crate) fn metadata_cache_bytes(&self) -> usize {
        self.inner
            .config
            .storage
            .metadata_cache_bytes
            .map(|b| b as usize)
            .unwrap_or(crate::query::METADATA_CACHE_BYTES)
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// The table's live files (paths relative to the data directory, which
    /// are also their keys under the bucket's prefix).
    pub fn file_metas(&self, table: Table) -> Vec<FileMeta> {
        read(&self.inner.state).manifest.files(table).to_vec()
    }

    /// A consistent view of a table for a query.
    pub fn snapshot(&self, table: Table) -> Snapshot {
        let s = read(&self.inner.state);
        Snapshot {
            table,
            files: s
                .manifest
                .files(table)
                .iter()
                .map(|f| (self.inner.data_dir.join(&f.path), f.clone()))
                .collect(),
            batches: s.buffers[idx(table)]
                .entries
                .iter()
                .map(|d| d.batch.clone())
                .collect(),
        }
    }

    /// A summary for `/metrics` and `/readyz`.
    pub fn stats(&self) -> StoreStats {
        let s = read(&self.inner.state);
        let mut st = StoreStats {
            buffered_bytes: self.inner.reserved.load(Ordering::Relaxed),
            max_buffer_bytes: self.inner.config.max_buffer_bytes,
            buffered_rows: [0; 3],
            files: [0; 3],
            file_bytes: [0; 3],
            file_rows: [0; 3],
            flushed_lsn: s.manifest.flushed_lsn,
        };
        for t in Table::ALL {
            let i = idx(t);
            st.buffered_rows[i] = s.buffers[i]
                .entries
                .iter()
                .map(|d| d.batch.num_rows() as u64)
                .sum();
            let files = s.manifest.files(t);
            st.files[i] = files.len() as u64;
            st.file_bytes[i] = files.iter().map(|f| f.bytes).sum();
            st.file_rows[i] = files.iter().map(|f| f.rows).sum();
        }
        st
    }

    /// Where damaged files are moved.
    pub fn quarantine_dir(&self) -> &Path {
        &self.inner.quarantine_dir
    }
}
