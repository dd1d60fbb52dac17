//! The `Store`: write path (WAL + buffers), flushes, compaction, retention,
//! snapshots for readers, and the background tasks that drive them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::files::{
    FileMeta, HOUR_NS, Manifest, MergeIter, check_footer, partition_dir, write_file, write_flush,
    writer_props,
};
use crate::schema::Table;
use crate::wal::{self, Durable, WalRequest, WalWriter};

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
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
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
            wal_queue: 1024,
            retention_hours: RetentionConfig::default(),
            compaction_schedule: "0 */5 * * * *".into(),
            retention_schedule: "30 17 * * * *".into(),
            scrub_schedule: "0 41 */6 * * *".into(),
            compaction_min_files: 12,
            compaction_small_file_bytes: 32 << 20,
            delete_grace_secs: 600,
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

/// Replays the WAL (records after `flushed_lsn`) into fresh buffers.
fn replay_into_buffers(
    wal_dir: &Path,
    quarantine_dir: &Path,
    flushed_lsn: u64,
    repair: bool,
) -> Result<([Buffer; 3], wal::ReplayStats)> {
    let mut buffers: [Buffer; 3] = Default::default();
    let stats = wal::replay(
        wal_dir,
        quarantine_dir,
        flushed_lsn,
        repair,
        |lsn, table, batch| {
            let bytes = batch.get_array_memory_size();
            let b = &mut buffers[idx(table)];
            b.bytes += bytes;
            b.oldest.get_or_insert_with(Instant::now);
            b.entries.push(Durable {
                lsn,
                table,
                batch,
                bytes,
            });
        },
    )?;
    Ok((buffers, stats))
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
    /// Bytes buffered plus reserved by writes in flight.
    reserved: AtomicUsize,
    flush_wanted: Notify,
    metrics: Arc<StoreMetrics>,
    pending_deletes: Mutex<Vec<(Instant, PathBuf)>>,
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
    /// Opens (or creates) the store in `config.data_dir`: loads the manifest,
    /// removes files left by interrupted flushes or compactions, replays the
    /// WAL and starts the WAL thread. Must be called inside a Tokio runtime.
    pub async fn open(config: StoreConfig) -> Result<Store> {
        let cfg = absolute_data_dir(config)?;
        tokio::task::spawn_blocking(move || Store::open_blocking(cfg))
            .await
            .map_err(|e| Error::Internal(format!("open task failed: {e}")))?
    }

    fn open_blocking(config: StoreConfig) -> Result<Store> {
        crate::fsutil::create_dir_durable(&config.data_dir)?;
        let config = absolute_data_dir(config)?;
        let data_dir = config.data_dir.clone();
        let wal_dir = data_dir.join("wal");
        let quarantine_dir = data_dir.join("quarantine");
        let metrics = Arc::new(StoreMetrics::default());

        let mut manifest = Manifest::load(&data_dir)?.unwrap_or(Manifest {
            version: 1,
            ..Default::default()
        });
        // Live files must exist and have a readable footer.
        for table in Table::ALL {
            let files = manifest.files_mut(table);
            let before = files.len();
            files.retain(|f| {
                let path = data_dir.join(&f.path);
                match check_footer(&path) {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::error!(file = %path.display(), error = %e,
                            "live Parquet file is missing or unreadable; moving it to quarantine. \
                             Its rows are lost from queries");
                        quarantine_file(&quarantine_dir, &path);
                        metrics.files_quarantined.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                }
            });
            if files.len() != before {
                manifest.persist(&data_dir)?;
            }
        }
        remove_orphans(&data_dir, &manifest)?;

        let (buffers, stats) =
            replay_into_buffers(&wal_dir, &quarantine_dir, manifest.flushed_lsn, true)?;
        metrics
            .wal_corrupt_segments
            .store(stats.truncated_segments, Ordering::Relaxed);
        if stats.replayed > 0 || stats.skipped > 0 {
            tracing::info!(
                replayed = stats.replayed,
                skipped = stats.skipped,
                next_lsn = stats.next_lsn,
                "replayed the WAL"
            );
        }
        let reserved: usize = buffers.iter().map(|b| b.bytes).sum();
        let writer = WalWriter::create(&wal_dir, stats.next_lsn)?;
        // Older segments now hold nothing the new one needs beyond what replay buffered.
        let state = Arc::new(RwLock::new(State { manifest, buffers }));

        let (tx, rx) = mpsc::channel(config.wal_queue.max(1));
        let thread_state = state.clone();
        let thread_metrics = metrics.clone();
        let sync_metrics = metrics.clone();
        let handle = std::thread::Builder::new()
            .name("burnwatch-wal".into())
            .spawn(move || {
                wal::run_wal_thread(
                    writer,
                    rx,
                    move |durable| {
                        let mut s = write(&thread_state);
                        for d in durable {
                            thread_metrics.rows_written[idx(d.table)]
                                .fetch_add(d.batch.num_rows() as u64, Ordering::Relaxed);
                            let b = &mut s.buffers[idx(d.table)];
                            b.bytes += d.bytes;
                            b.oldest.get_or_insert_with(Instant::now);
                            b.entries.push(d);
                        }
                    },
                    move |elapsed, records| {
                        sync_metrics.wal_syncs.fetch_add(1, Ordering::Relaxed);
                        sync_metrics
                            .wal_records
                            .fetch_add(records as u64, Ordering::Relaxed);
                        sync_metrics
                            .wal_sync_micros
                            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
                    },
                )
            })
            .map_err(|e| Error::Internal(format!("cannot start the WAL thread: {e}")))?;

        Ok(Store {
            inner: Arc::new(Inner {
                config,
                read_only: false,
                data_dir,
                wal_dir,
                quarantine_dir,
                wal_tx: Mutex::new(Some(tx)),
                wal_thread: Mutex::new(Some(handle)),
                state,
                commit: tokio::sync::Mutex::new(()),
                reserved: AtomicUsize::new(reserved),
                flush_wanted: Notify::new(),
                metrics,
                pending_deletes: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Opens the store for reading only, beside a server that may be running
    /// on the same directory: loads the manifest and replays the WAL into
    /// memory, but changes nothing on disk (no truncation, no clean-up, no
    /// new segment). Writes, flushes, compaction and retention are refused.
    pub async fn open_read_only(config: StoreConfig) -> Result<Store> {
        let config = absolute_data_dir(config)?;
        tokio::task::spawn_blocking(move || {
            let data_dir = config.data_dir.clone();
            if !data_dir.is_dir() {
                return Err(Error::io(
                    &data_dir,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such data directory"),
                ));
            }
            let wal_dir = data_dir.join("wal");
            let quarantine_dir = data_dir.join("quarantine");
            let manifest = Manifest::load(&data_dir)?.unwrap_or_default();
            let (buffers, _) =
                replay_into_buffers(&wal_dir, &quarantine_dir, manifest.flushed_lsn, false)?;
            Ok(Store {
                inner: Arc::new(Inner {
                    config,
                    read_only: true,
                    data_dir,
                    wal_dir,
                    quarantine_dir,
                    wal_tx: Mutex::new(None),
                    wal_thread: Mutex::new(None),
                    state: Arc::new(RwLock::new(State { manifest, buffers })),
                    commit: tokio::sync::Mutex::new(()),
                    reserved: AtomicUsize::new(0),
                    flush_wanted: Notify::new(),
                    metrics: Arc::new(StoreMetrics::default()),
                    pending_deletes: Mutex::new(Vec::new()),
                }),
            })
        })
        .await
        .map_err(|e| Error::Internal(format!("open task failed: {e}")))?
    }

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

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.inner.metrics
    }

    /// Writes a batch. Returns once the rows are in the fsync'd WAL and
    /// visible to readers; the returned value is the batch's LSN.
    ///
    /// Errors: `Overloaded` when buffers are full, `DiskFull` when the WAL
    /// cannot grow, `Closed` during shutdown, `SchemaMismatch` for a batch not
    /// built for `table`. On any error nothing of the batch is stored.
    pub async fn write(&self, table: Table, batch: RecordBatch) -> Result<u64> {
        self.writable()?;
        let schema = table.schema();
        if batch.schema() != schema {
            return Err(Error::SchemaMismatch {
                table: table.name(),
                reason: describe_schema_diff(&schema, &batch.schema()),
            });
        }
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        let bytes = batch.get_array_memory_size();
        let limit = self.inner.config.max_buffer_bytes;
        let reserved = &self.inner.reserved;
        let mut current = reserved.load(Ordering::Relaxed);
        loop {
            if current > 0 && current + bytes > limit {
                self.inner
                    .metrics
                    .writes_overloaded
                    .fetch_add(1, Ordering::Relaxed);
                self.inner.flush_wanted.notify_one();
                return Err(Error::Overloaded {
                    buffered: current,
                    limit,
                    retry_after: Duration::from_secs(1),
                });
            }
            match reserved.compare_exchange_weak(
                current,
                current + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        let release = || {
            reserved.fetch_sub(bytes, Ordering::AcqRel);
        };
        let payload = match wal::encode(&batch) {
            Ok(p) => p,
            Err(e) => {
                release();
                return Err(e);
            }
        };
        let tx = lock(&self.inner.wal_tx).clone();
        let Some(tx) = tx else {
            release();
            return Err(Error::Closed);
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let req = WalRequest::Append {
            table,
            payload,
            batch,
            bytes,
            reply: reply_tx,
        };
        if tx.send(req).await.is_err() {
            release();
            return Err(Error::Closed);
        }
        let result = match reply_rx.await {
            Ok(r) => r,
            Err(_) => Err(Error::Internal("WAL thread stopped".into())),
        };
        match result {
            Ok(lsn) => {
                if read(&self.inner.state).buffers[idx(table)].bytes
                    >= self.inner.config.flush_bytes
                {
                    self.inner.flush_wanted.notify_one();
                }
                Ok(lsn)
            }
            Err(e) => {
                release();
                if matches!(e, Error::DiskFull { .. }) {
                    self.inner
                        .metrics
                        .writes_disk_full
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(e)
            }
        }
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

    async fn roll_wal(&self) -> Result<(u64, u64)> {
        let tx = lock(&self.inner.wal_tx).clone().ok_or(Error::Closed)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(WalRequest::Roll { reply: reply_tx })
            .await
            .map_err(|_| Error::Closed)?;
        reply_rx
            .await
            .map_err(|_| Error::Internal("WAL thread stopped".into()))?
    }

    /// Writes every buffered row to Parquet, makes the files live and deletes
    /// the WAL segments they cover. Returns the number of rows flushed.
    pub async fn flush(&self) -> Result<u64> {
        self.writable()?;
        let _commit = self.inner.commit.lock().await;
        let (last_lsn, open_first) = self.roll_wal().await?;
        let (batches, mut manifest) = {
            let s = read(&self.inner.state);
            let batches: Vec<(Table, Vec<RecordBatch>)> = Table::ALL
                .into_iter()
                .map(|t| {
                    (
                        t,
                        s.buffers[idx(t)]
                            .entries
                            .iter()
                            .filter(|d| d.lsn <= last_lsn)
                            .map(|d| d.batch.clone())
                            .collect(),
                    )
                })
                .collect();
            (batches, s.manifest.clone())
        };
        let rows: u64 = batches
            .iter()
            .flat_map(|(_, b)| b.iter())
            .map(|b| b.num_rows() as u64)
            .sum();
        if last_lsn <= manifest.flushed_lsn {
            return Ok(0);
        }
        let data_dir = self.inner.data_dir.clone();
        let row_group_rows = self.inner.config.row_group_rows;
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || -> Result<Manifest> {
            let mut written: Vec<(Table, FileMeta)> = Vec::new();
            for (table, batches) in &batches {
                let files =
                    write_flush(&data_dir, *table, batches, row_group_rows, last_lsn, || {
                        manifest.take_file_id()
                    });
                match files {
                    Ok(files) => written.extend(files.into_iter().map(|f| (*table, f))),
                    Err(e) => {
                        for (_, f) in &written {
                            let _ = std::fs::remove_file(data_dir.join(&f.path));
                        }
                        return Err(e);
                    }
                }
            }
            let n = written.len();
            for (table, f) in written {
                manifest.files_mut(table).push(f);
            }
            manifest.flushed_lsn = last_lsn;
            manifest.persist(&data_dir)?;
            tracing::debug!(files = n, "flush wrote files");
            Ok(manifest)
        })
        .await
        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))?;
        let manifest = match result {
            Ok(m) => m,
            Err(e) => {
                self.inner
                    .metrics
                    .flush_errors
                    .fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let new_files = {
            let mut s = write(&self.inner.state);
            let before: usize = Table::ALL.iter().map(|t| s.manifest.files(*t).len()).sum();
            s.manifest = manifest;
            let after: usize = Table::ALL.iter().map(|t| s.manifest.files(*t).len()).sum();
            let mut released = 0;
            for b in s.buffers.iter_mut() {
                let keep: Vec<Durable> = b.entries.drain(..).filter(|d| d.lsn > last_lsn).collect();
                b.entries = keep;
                let bytes: usize = b.entries.iter().map(|d| d.bytes).sum();
                released += b.bytes - bytes;
                b.bytes = bytes;
                b.oldest = if b.entries.is_empty() {
                    None
                } else {
                    Some(Instant::now())
                };
            }
            self.inner.reserved.fetch_sub(released, Ordering::AcqRel);
            after.saturating_sub(before)
        };
        let m = &self.inner.metrics;
        m.flushes.fetch_add(1, Ordering::Relaxed);
        m.files_flushed
            .fetch_add(new_files as u64, Ordering::Relaxed);
        let wal_dir = self.inner.wal_dir.clone();
        tokio::task::spawn_blocking(move || {
            wal::delete_flushed_segments(&wal_dir, last_lsn, open_first)
        })
        .await
        .map_err(|e| Error::Internal(format!("segment cleanup failed: {e}")))??;
        tracing::debug!(
            rows,
            last_lsn,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flushed"
        );
        Ok(rows)
    }

    fn should_flush(&self) -> bool {
        let s = read(&self.inner.state);
        let max_age = Duration::from_secs_f64(self.inner.config.flush_interval_secs.max(0.01));
        s.buffers.iter().any(|b| {
            b.bytes >= self.inner.config.flush_bytes
                || b.oldest.is_some_and(|o| o.elapsed() >= max_age)
        })
    }

    /// Merges small files: in closed hours (ended before `now_ns` minus five
    /// minutes) every partition with more than one file becomes one file; in
    /// open hours, small files are merged once there are enough of them.
    /// Returns the number of files replaced.
    pub async fn compact(&self, now_ns: i64) -> Result<u64> {
        self.writable()?;
        let mut replaced = 0;
        for table in Table::ALL {
            let plans = {
                let s = read(&self.inner.state);
                plan_compaction(&self.inner.config, table, s.manifest.files(table), now_ns)
            };
            for inputs in plans {
                replaced += self.compact_one(table, inputs).await?;
            }
        }
        self.delete_expired_pending(false);
        Ok(replaced)
    }

    async fn compact_one(&self, table: Table, inputs: Vec<FileMeta>) -> Result<u64> {
        let Some(first) = inputs.first() else {
            return Ok(0);
        };
        // A damaged input must not be merged into a new file with a fresh
        // checksum: check them first; damaged ones go to quarantine.
        let damaged = self.verify(table, &inputs).await?;
        if !damaged.is_empty() {
            self.quarantine_live(damaged).await?;
            return Ok(0);
        }
        let hour = first.hour;
        let id = {
            let _commit = self.inner.commit.lock().await;
            let mut s = write(&self.inner.state);
            s.manifest.take_file_id()
        };
        let rel = format!("{}/compact-{:010}.parquet", partition_dir(table, hour), id);
        let data_dir = self.inner.data_dir.clone();
        let row_group_rows = self.inner.config.row_group_rows;
        let paths: Vec<PathBuf> = inputs.iter().map(|f| data_dir.join(&f.path)).collect();
        let rel2 = rel.clone();
        let written = tokio::task::spawn_blocking(move || -> Result<FileMeta> {
            let merge = MergeIter::new(table, &paths, 8192)?;
            write_file(
                &data_dir,
                table,
                hour,
                &rel2,
                writer_props(table, row_group_rows, crate::files::COMPACT_ZSTD_LEVEL),
                vec![],
                merge,
            )
        })
        .await
        .map_err(|e| Error::Internal(format!("compaction task failed: {e}")))??;
        let input_rows: u64 = inputs.iter().map(|f| f.rows).sum();
        if written.rows != input_rows {
            let _ = std::fs::remove_file(self.inner.data_dir.join(&written.path));
            return Err(Error::Internal(format!(
                "compaction of {table} hour {hour} produced {} rows from {input_rows}",
                written.rows
            )));
        }
        // Swap atomically: the manifest names either the inputs or the output.
        let _commit = self.inner.commit.lock().await;
        let mut manifest = read(&self.inner.state).manifest.clone();
        let files = manifest.files_mut(table);
        if !inputs.iter().all(|i| files.contains(i)) {
            // Retention removed an input meanwhile; drop this result.
            let _ = std::fs::remove_file(self.inner.data_dir.join(&written.path));
            return Ok(0);
        }
        files.retain(|f| !inputs.contains(f));
        files.push(written);
        self.install_manifest(manifest).await?;
        self.schedule_deletes(inputs.iter().map(|f| self.inner.data_dir.join(&f.path)));
        self.inner
            .metrics
            .compactions
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(table = %table, hour, inputs = inputs.len(), rows = input_rows, output = %rel, "compacted");
        Ok(inputs.len() as u64)
    }

    /// Removes whole partitions older than each table's retention. Returns the
    /// number of files removed from the table.
    pub async fn apply_retention(&self, now_ns: i64) -> Result<u64> {
        self.writable()?;
        let _commit = self.inner.commit.lock().await;
        let mut manifest = read(&self.inner.state).manifest.clone();
        let mut expired = Vec::new();
        for table in Table::ALL {
            let Some(keep) = self.inner.config.retention_hours.of(table) else {
                continue;
            };
            let cutoff = now_ns - keep.as_nanos() as i64;
            let files = manifest.files_mut(table);
            // A partition goes once its whole hour is older than the cutoff.
            files.retain(|f| {
                let old = (f.hour + 1) * HOUR_NS <= cutoff;
                if old {
                    expired.push(f.clone());
                }
                !old
            });
        }
        if expired.is_empty() {
            return Ok(0);
        }
        self.install_manifest(manifest).await?;
        let n = expired.len() as u64;
        self.inner
            .metrics
            .files_expired
            .fetch_add(n, Ordering::Relaxed);
        tracing::info!(files = n, "retention removed expired partitions");
        self.schedule_deletes(expired.iter().map(|f| self.inner.data_dir.join(&f.path)));
        self.delete_expired_pending(false);
        Ok(n)
    }

    /// Writes `manifest` durably, then makes it the live one. The caller
    /// holds the commit lock.
    async fn install_manifest(&self, manifest: Manifest) -> Result<()> {
        let data_dir = self.inner.data_dir.clone();
        let m2 = manifest.clone();
        tokio::task::spawn_blocking(move || m2.persist(&data_dir))
            .await
            .map_err(|e| Error::Internal(format!("manifest task failed: {e}")))??;
        write(&self.inner.state).manifest = manifest;
        Ok(())
    }

    /// Checks the checksums of `files` (those that have one). Returns the
    /// damaged ones with what is wrong; a file that is gone (replaced
    /// meanwhile) is not damaged.
    async fn verify(
        &self,
        table: Table,
        files: &[FileMeta],
    ) -> Result<Vec<(Table, FileMeta, String)>> {
        let data_dir = self.inner.data_dir.clone();
        let files: Vec<FileMeta> = files
            .iter()
            .filter(|f| f.crc32.is_some())
            .cloned()
            .collect();
        let metrics = self.inner.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let mut damaged = Vec::new();
            for f in files {
                let path = data_dir.join(&f.path);
                let want = f.crc32.unwrap_or_default();
                let problem = match crate::files::file_crc32(&path) {
                    Ok(got) if got == want => None,
                    Ok(got) => Some(format!(
                        "checksum {got:08x} does not match {want:08x} recorded when it was written"
                    )),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => Some(format!("cannot be read: {e}")),
                };
                metrics.files_verified.fetch_add(1, Ordering::Relaxed);
                if let Some(p) = problem {
                    damaged.push((table, f, p));
                }
            }
            damaged
        })
        .await
        .map_err(|e| Error::Internal(format!("verify task failed: {e}")))
    }

    /// Removes damaged live files from their tables (one manifest update)
    /// and moves them to quarantine. Returns how many were moved.
    async fn quarantine_live(&self, damaged: Vec<(Table, FileMeta, String)>) -> Result<u64> {
        let _commit = self.inner.commit.lock().await;
        let mut manifest = read(&self.inner.state).manifest.clone();
        let mut moved = Vec::new();
        for (table, f, problem) in damaged {
            let files = manifest.files_mut(table);
            let before = files.len();
            files.retain(|x| *x != f);
            if files.len() < before {
                moved.push((table, f, problem));
            }
        }
        if moved.is_empty() {
            return Ok(0);
        }
        self.install_manifest(manifest).await?;
        for (table, f, problem) in &moved {
            let path = self.inner.data_dir.join(&f.path);
            tracing::error!(
                table = %table,
                file = %path.display(),
                rows = f.rows,
                problem = %problem,
                quarantine = %self.inner.quarantine_dir.display(),
                "live Parquet file is damaged; moving it to quarantine. Its rows are lost from queries"
            );
            quarantine_file(&self.inner.quarantine_dir, &path);
            self.inner
                .metrics
                .files_quarantined
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(moved.len() as u64)
    }

    /// Checks every live file's checksum; damaged files leave the table and
    /// go to quarantine (logged and counted). Returns how many were moved.
    pub async fn scrub(&self) -> Result<u64> {
        self.writable()?;
        let mut damaged = Vec::new();
        for table in Table::ALL {
            let files = read(&self.inner.state).manifest.files(table).to_vec();
            damaged.extend(self.verify(table, &files).await?);
        }
        if damaged.is_empty() {
            return Ok(0);
        }
        self.quarantine_live(damaged).await
    }

    fn schedule_deletes(&self, paths: impl Iterator<Item = PathBuf>) {
        let at = Instant::now() + Duration::from_secs(self.inner.config.delete_grace_secs);
        lock(&self.inner.pending_deletes).extend(paths.map(|p| (at, p)));
    }

    /// Deletes replaced files whose grace period is over (all of them when
    /// `all`), and empty partition directories.
    fn delete_expired_pending(&self, all: bool) {
        let now = Instant::now();
        let due: Vec<PathBuf> = {
            let mut pending = lock(&self.inner.pending_deletes);
            let (due, keep): (Vec<_>, Vec<_>) =
                pending.drain(..).partition(|(at, _)| all || *at <= now);
            *pending = keep;
            due.into_iter().map(|(_, p)| p).collect()
        };
        for p in due {
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %p.display(), error = %e, "could not delete a replaced file");
            }
            // Remove the hour and date directories once empty.
            let mut dir = p.parent().map(Path::to_path_buf);
            for _ in 0..2 {
                match dir {
                    Some(d) if std::fs::remove_dir(&d).is_ok() => {
                        dir = d.parent().map(Path::to_path_buf)
                    }
                    _ => break,
                }
            }
        }
    }

    /// Starts the background tasks: the flusher, and compaction and retention
    /// on their cron schedules. They stop when `shutdown` is cancelled; the
    /// flusher flushes once more on the way out.
    pub async fn spawn_background(
        &self,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<()> {
        let store = self.clone();
        let token = shutdown.clone();
        tracker.spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = store.inner.flush_wanted.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                if store.should_flush() {
                    match store.flush().await {
                        Ok(_) => backoff = Duration::from_millis(100),
                        Err(e) => {
                            tracing::warn!(error = %e, "flush failed; rows stay in the WAL and memory, will retry");
                            tokio::select! {
                                _ = token.cancelled() => break,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            }
        });

        let scheduler = tokio_cron_scheduler::JobScheduler::new()
            .await
            .map_err(|e| Error::Internal(format!("scheduler: {e}")))?;
        let compaction = cron_job(
            &self.inner.config.compaction_schedule,
            "compaction",
            self.clone(),
            |s| async move { s.compact(now_ns()).await },
        )?;
        let retention = cron_job(
            &self.inner.config.retention_schedule,
            "retention",
            self.clone(),
            |s| async move { s.apply_retention(now_ns()).await },
        )?;
        let scrub = cron_job(
            &self.inner.config.scrub_schedule,
            "scrub",
            self.clone(),
            |s| async move { s.scrub().await },
        )?;
        for job in [compaction, retention, scrub] {
            scheduler
                .add(job)
                .await
                .map_err(|e| Error::Internal(format!("scheduler: {e}")))?;
        }
        scheduler
            .start()
            .await
            .map_err(|e| Error::Internal(format!("scheduler: {e}")))?;
        // One scrub a minute after start, so damage done while the server
        // was down is found without waiting for the schedule.
        let (store, token) = (self.clone(), shutdown.clone());
        tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(60)) => {
                    if let Err(e) = store.scrub().await {
                        tracing::warn!(error = %e, "scrub failed; it runs again on its schedule");
                    }
                }
            }
        });
        tracker.spawn(async move {
            shutdown.cancelled().await;
            let mut scheduler = scheduler;
            let _ = scheduler.shutdown().await;
        });
        Ok(())
    }

    /// Stops accepting writes, waits for the WAL thread, flushes everything
    /// buffered to Parquet and deletes replaced files.
    pub async fn close(&self) -> Result<()> {
        if self.inner.read_only {
            return Ok(());
        }
        let flushed = self.flush().await;
        let tx = lock(&self.inner.wal_tx).take();
        drop(tx);
        let handle = lock(&self.inner.wal_thread).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        self.delete_expired_pending(true);
        flushed.map(|_| ())
    }

    /// Where damaged files are moved.
    pub fn quarantine_dir(&self) -> &Path {
        &self.inner.quarantine_dir
    }
}

/// A cron job running `run` on the store; failures are logged and retried
/// at the next tick.
/// File paths handed to the query engine must be absolute and free of `.`
/// and `..` (a relative `./data` would become an object-store path that does
/// not exist). A directory that does not exist yet is made absolute
/// lexically; `open` creates it and canonicalises again.
fn absolute_data_dir(mut config: StoreConfig) -> Result<StoreConfig> {
    config.data_dir = match std::fs::canonicalize(&config.data_dir) {
        Ok(p) => p,
        Err(_) => {
            std::path::absolute(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?
        }
    };
    Ok(config)
}

fn cron_job<F, Fut>(
    schedule: &str,
    what: &'static str,
    store: Store,
    run: F,
) -> Result<tokio_cron_scheduler::Job>
where
    F: Fn(Store) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send + 'static,
{
    tokio_cron_scheduler::Job::new_async(schedule, move |_id, _l| {
        let fut = run(store.clone());
        Box::pin(async move {
            if let Err(e) = fut.await {
                tracing::warn!(error = %e, "{what} failed; will retry on schedule");
            }
        })
    })
    .map_err(|e| Error::Internal(format!("bad {what}_schedule {schedule:?}: {e}")))
}

fn describe_schema_diff(want: &arrow::datatypes::Schema, got: &arrow::datatypes::Schema) -> String {
    if want.fields().len() != got.fields().len() {
        return format!(
            "expected {} columns, got {}",
            want.fields().len(),
            got.fields().len()
        );
    }
    for (w, g) in want.fields().iter().zip(got.fields()) {
        if w != g {
            return format!("column {:?}: expected {w:?}, got {g:?}", w.name());
        }
    }
    "schema metadata differs".into()
}

fn plan_compaction(
    config: &StoreConfig,
    table: Table,
    files: &[FileMeta],
    now_ns: i64,
) -> Vec<Vec<FileMeta>> {
    let mut by_hour: std::collections::BTreeMap<i64, Vec<FileMeta>> = Default::default();
    for f in files {
        by_hour.entry(f.hour).or_default().push(f.clone());
    }
    const MAX_INPUTS: usize = 64;
    let grace = 5 * 60 * 1_000_000_000i64;
    let mut plans = Vec::new();
    for (hour, files) in by_hour {
        let closed = (hour + 1) * HOUR_NS + grace <= now_ns;
        let candidates: Vec<FileMeta> = if closed {
            files
        } else {
            let small: Vec<FileMeta> = files
                .into_iter()
                .filter(|f| f.bytes < config.compaction_small_file_bytes)
                .collect();
            if small.len() < config.compaction_min_files.max(2) {
                continue;
            }
            small
        };
        if candidates.len() < 2 {
            continue;
        }
        for chunk in candidates.chunks(MAX_INPUTS) {
            if chunk.len() >= 2 {
                plans.push(chunk.to_vec());
            }
        }
        let _ = table;
    }
    plans
}

fn quarantine_file(quarantine: &Path, path: &Path) {
    if !path.exists() {
        return;
    }
    let _ = std::fs::create_dir_all(quarantine);
    let name = path
        .to_string_lossy()
        .trim_start_matches('/')
        .replace('/', "__");
    if let Err(e) = std::fs::rename(path, quarantine.join(name)) {
        tracing::error!(file = %path.display(), error = %e, "could not move a damaged file to quarantine");
    }
}

/// Deletes Parquet and temp files under the table directories that the
/// manifest does not name: leftovers of interrupted flushes or compactions.
fn remove_orphans(data_dir: &Path, manifest: &Manifest) -> Result<()> {
    for table in Table::ALL {
        let live: std::collections::HashSet<&str> = manifest
            .files(table)
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        let root = data_dir.join(table.name());
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in rd.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(data_dir)
                    .map(|p| p.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                let name = entry.file_name().to_string_lossy().to_string();
                let ours = name.ends_with(".parquet") || name.ends_with(".tmp");
                if ours && !live.contains(rel.as_str()) {
                    tracing::info!(file = %path.display(), "removing a file left by an interrupted flush or compaction");
                    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                }
            }
        }
    }
    Ok(())
}

impl Store {
    /// Appends the store's Prometheus text exposition (WAL, buffers, files).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let m = &self.inner.metrics;
        let st = self.stats();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "burnwatch_wal_syncs_total",
            "WAL group commits (one fdatasync each).",
            c(&m.wal_syncs),
        );
        counter(
            "burnwatch_wal_records_total",
            "Records written to the WAL.",
            c(&m.wal_records),
        );
        counter(
            "burnwatch_wal_sync_microseconds_total",
            "Microseconds spent writing and syncing the WAL.",
            c(&m.wal_sync_micros),
        );
        counter(
            "burnwatch_store_writes_overloaded_total",
            "Writes refused because the buffers were full.",
            c(&m.writes_overloaded),
        );
        counter(
            "burnwatch_store_writes_disk_full_total",
            "Writes refused because the disk was full.",
            c(&m.writes_disk_full),
        );
        counter(
            "burnwatch_store_flushes_total",
            "Flushes of buffered rows to Parquet.",
            c(&m.flushes),
        );
        counter(
            "burnwatch_store_flush_errors_total",
            "Flushes that failed (rows stay in the WAL and memory).",
            c(&m.flush_errors),
        );
        counter(
            "burnwatch_store_files_flushed_total",
            "Parquet files written by flushes.",
            c(&m.files_flushed),
        );
        counter(
            "burnwatch_store_compactions_total",
            "Compacted output files written.",
            c(&m.compactions),
        );
        counter(
            "burnwatch_store_files_expired_total",
            "Files removed by retention.",
            c(&m.files_expired),
        );
        counter(
            "burnwatch_store_wal_corrupt_segments_total",
            "WAL segments with a torn or corrupt tail found at start-up.",
            c(&m.wal_corrupt_segments),
        );
        counter(
            "burnwatch_store_files_quarantined_total",
            "Damaged files moved to quarantine.",
            c(&m.files_quarantined),
        );
        counter(
            "burnwatch_store_files_verified_total",
            "Live Parquet files whose checksum the scrub or compaction checked.",
            c(&m.files_verified),
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_store_buffered_bytes Bytes of acknowledged rows in memory.\n# TYPE burnwatch_store_buffered_bytes gauge\nburnwatch_store_buffered_bytes {}",
            st.buffered_bytes
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_store_buffer_limit_bytes Buffer limit; writes past it are refused.\n# TYPE burnwatch_store_buffer_limit_bytes gauge\nburnwatch_store_buffer_limit_bytes {}",
            st.max_buffer_bytes
        );
        let gauges: [(&str, &str, [u64; 3]); 5] = [
            (
                "burnwatch_store_rows_written_total",
                "Rows acknowledged.",
                [
                    c(&m.rows_written[0]),
                    c(&m.rows_written[1]),
                    c(&m.rows_written[2]),
                ],
            ),
            (
                "burnwatch_store_buffered_rows",
                "Rows in memory, not yet in Parquet.",
                st.buffered_rows,
            ),
            ("burnwatch_store_files", "Live Parquet files.", st.files),
            (
                "burnwatch_store_file_bytes",
                "Bytes in live Parquet files.",
                st.file_bytes,
            ),
            (
                "burnwatch_store_file_rows",
                "Rows in live Parquet files.",
                st.file_rows,
            ),
        ];
        for (name, help, values) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (t, v) in Table::ALL.iter().zip(values) {
                let _ = writeln!(out, "{name}{{table=\"{}\"}} {v}", t.name());
            }
        }
    }
}
