//! Parquet files: the manifest that says which files are live, partitioning by
//! hour, sorting, writing (temp name, fsync, rename, directory fsync) and the
//! streaming k-way merge used by compaction.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::compute::{
    SortColumn, concat_batches, interleave_record_batch, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::TimestampNanosecondType;
use arrow::row::{RowConverter, Rows, SortField};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{create_dir_durable, sync_dir, write_atomic};
use crate::schema::Table;

/// Nanoseconds in an hour.
pub const HOUR_NS: i64 = 3_600_000_000_000;

/// Hours since the epoch of a timestamp.
pub fn hour_of(ns: i64) -> i64 {
    ns.div_euclid(HOUR_NS)
}

/// One live Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Path relative to the data directory, `/`-separated.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// Partition: hours since the Unix epoch.
    pub hour: i64,
    /// Smallest value of the table's time column, ns.
    pub min_time_ns: i64,
    /// Largest value of the table's time column, ns.
    pub max_time_ns: i64,
}

/// The list of live files and the highest LSN they hold.
///
/// The manifest is the single source of truth: a Parquet file that is not in
/// it is not part of the table (it is left over from an interrupted flush or
/// compaction and is removed at start-up). It is replaced atomically.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Every WAL record with LSN <= this is in the live files.
    pub flushed_lsn: u64,
    /// Next id for a file name.
    pub next_file_id: u64,
    /// Live files per table name.
    pub tables: BTreeMap<String, Vec<FileMeta>>,
}

const MANIFEST: &str = "manifest.json";

impl Manifest {
    /// Loads the manifest, or `None` for a new data directory.
    pub fn load(data_dir: &Path) -> Result<Option<Manifest>> {
        let path = data_dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    path,
                    reason: format!("manifest does not parse: {e}"),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Replaces the manifest on disk atomically.
    pub fn persist(&self, data_dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&data_dir.join(MANIFEST), &bytes)
    }

    /// Live files of a table.
    pub fn files(&self, table: Table) -> &[FileMeta] {
        self.tables
            .get(table.name())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub(crate) fn files_mut(&mut self, table: Table) -> &mut Vec<FileMeta> {
        self.tables.entry(table.name().to_string()).or_default()
    }

    pub(crate) fn take_file_id(&mut self) -> u64 {
        self.next_file_id += 1;
        self.next_file_id
    }
}

/// `<table>/date=YYYY-MM-DD/hour=HH`.
pub fn partition_dir(table: Table, hour: i64) -> String {
    let secs = hour * 3600;
    let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    format!("{}/{}", table.name(), dt.format("date=%Y-%m-%d/hour=%H"))
}

/// Parquet writer settings for a table.
pub(crate) fn writer_props(table: Table, row_group_rows: usize) -> WriterProperties {
    let schema = table.schema();
    let sorting = table
        .sort_columns()
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .map(|i| SortingColumn {
            column_idx: i as i32,
            descending: false,
            nulls_first: false,
        })
        .collect();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_sorting_columns(Some(sorting))
        .set_created_by(format!("burnwatch {}", env!("CARGO_PKG_VERSION")));
    for col in table.bloom_filter_columns() {
        let path = ColumnPath::from(*col);
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, row_group_rows as u64);
    }
    b.build()
}

/// Splits a batch into one batch per hour partition of the time column.
pub(crate) fn split_by_hour(table: Table, batch: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>> {
    let col = batch
        .column_by_name(table.time_column())
        .ok_or_else(|| Error::Internal(format!("{table} batch has no time column")))?;
    let times = col
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| Error::Internal(format!("{table} time column is not ns timestamps")))?;
    let mut groups: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    for (i, t) in times.values().iter().enumerate() {
        groups.entry(hour_of(*t)).or_default().push(i as u32);
    }
    if groups.len() == 1 {
        let hour = *groups.keys().next().unwrap_or(&0);
        return Ok(vec![(hour, batch.clone())]);
    }
    groups
        .into_iter()
        .map(|(hour, idx)| Ok((hour, take_record_batch(batch, &UInt32Array::from(idx))?)))
        .collect()
}

/// Sorts a batch by the table's sort columns.
pub(crate) fn sort_batch(table: Table, batch: &RecordBatch) -> Result<RecordBatch> {
    let columns: Vec<SortColumn> = table
        .sort_columns()
        .iter()
        .filter_map(|c| batch.column_by_name(c))
        .map(|c| SortColumn {
            values: c.clone(),
            options: None,
        })
        .collect();
    let idx = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &idx)?)
}

fn time_range(table: Table, batch: &RecordBatch) -> Option<(i64, i64)> {
    let times = batch
        .column_by_name(table.time_column())?
        .as_primitive_opt::<TimestampNanosecondType>()?;
    let min = arrow::compute::min(times)?;
    let max = arrow::compute::max(times)?;
    Some((min, max))
}

/// Writes batches into one new Parquet file at `rel_path`, durably.
pub(crate) fn write_file(
    data_dir: &Path,
    table: Table,
    hour: i64,
    rel_path: &str,
    props: WriterProperties,
    metadata: Vec<(String, String)>,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<FileMeta> {
    let final_path = data_dir.join(rel_path);
    let dir = final_path
        .parent()
        .ok_or_else(|| Error::Internal(format!("bad file path {rel_path}")))?
        .to_path_buf();
    create_dir_durable(&dir)?;
    let name = final_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| -> Result<FileMeta> {
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut writer = ArrowWriter::try_new(file, table.schema(), Some(props))?;
        let mut rows = 0u64;
        let mut range: Option<(i64, i64)> = None;
        for batch in batches {
            let batch = batch?;
            if let Some((lo, hi)) = time_range(table, &batch) {
                range = Some(match range {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
            rows += batch.num_rows() as u64;
            writer.write(&batch)?;
        }
        for (k, v) in metadata {
            writer.append_key_value_metadata(KeyValue::new(k, v));
        }
        let file = writer.into_inner()?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        let bytes = file.metadata().map_err(|e| Error::io(&tmp, e))?.len();
        let (min_time_ns, max_time_ns) = range.unwrap_or((hour * HOUR_NS, hour * HOUR_NS));
        Ok(FileMeta {
            path: rel_path.to_string(),
            rows,
            bytes,
            hour,
            min_time_ns,
            max_time_ns,
        })
    })();
    match result {
        Ok(meta) => {
            std::fs::rename(&tmp, &final_path).map_err(|e| Error::io(&final_path, e))?;
            sync_dir(&dir)?;
            Ok(meta)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Writes a flush: the batches of one table, split by hour, each partition
/// sorted, one file per partition. Files are durable on return but not yet
/// live (the caller adds them to the manifest).
pub(crate) fn write_flush(
    data_dir: &Path,
    table: Table,
    batches: &[RecordBatch],
    row_group_rows: usize,
    lsn: u64,
    mut next_id: impl FnMut() -> u64,
) -> Result<Vec<FileMeta>> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let all = concat_batches(&table.schema(), batches)?;
    let mut out = Vec::new();
    for (hour, part) in split_by_hour(table, &all)? {
        let sorted = sort_batch(table, &part)?;
        let rel = format!(
            "{}/part-{:010}.parquet",
            partition_dir(table, hour),
            next_id()
        );
        let meta = write_file(
            data_dir,
            table,
            hour,
            &rel,
            writer_props(table, row_group_rows),
            vec![("burnwatch.max_lsn".into(), lsn.to_string())],
            std::iter::once(Ok(sorted)),
        );
        match meta {
            Ok(m) => out.push(m),
            Err(e) => {
                // Leave nothing behind from a failed flush.
                for m in &out {
                    let _ = std::fs::remove_file(data_dir.join(&m.path));
                }
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Reads every row of a Parquet file (used by tests and the merge).
pub fn read_file(
    path: &Path,
    batch_size: usize,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .with_batch_size(batch_size)
        .build()?;
    Ok(reader)
}

fn load(
    converter: &RowConverter,
    held: &mut Vec<RecordBatch>,
    table: Table,
    c: &mut Cursor,
) -> Result<()> {
    loop {
        match c.reader.next() {
            None => {
                c.done = true;
                return Ok(());
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(batch)) if batch.num_rows() == 0 => continue,
            Some(Ok(batch)) => {
                let cols: Vec<_> = table
                    .sort_columns()
                    .iter()
                    .filter_map(|n| batch.column_by_name(n).cloned())
                    .collect();
                c.rows = converter.convert_columns(&cols)?;
                c.pos = 0;
                c.len = batch.num_rows();
                c.slot = held.len();
                held.push(batch);
                return Ok(());
            }
        }
    }
}

struct Cursor {
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    slot: usize,
    rows: Rows,
    pos: usize,
    len: usize,
    done: bool,
}

/// Streams the rows of several files, each sorted by the table's sort columns,
/// as one sorted sequence of batches (a k-way merge). Memory: one batch of
/// `batch_size` rows per input plus one output batch.
pub(crate) struct MergeIter {
    table: Table,
    converter: RowConverter,
    cursors: Vec<Cursor>,
    held: Vec<RecordBatch>,
    batch_size: usize,
    failed: bool,
}

impl MergeIter {
    pub(crate) fn new(table: Table, paths: &[PathBuf], batch_size: usize) -> Result<MergeIter> {
        let schema = table.schema();
        let fields = table
            .sort_columns()
            .iter()
            .map(|c| {
                schema
                    .field_with_name(c)
                    .map(|f| SortField::new(f.data_type().clone()))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let converter = RowConverter::new(fields)?;
        let mut it = MergeIter {
            table,
            converter,
            cursors: Vec::new(),
            held: Vec::new(),
            batch_size,
            failed: false,
        };
        for p in paths {
            let reader = read_file(p, batch_size)?;
            let mut c = Cursor {
                reader,
                slot: 0,
                rows: it.converter.empty_rows(0, 0),
                pos: 0,
                len: 0,
                done: false,
            };
            load(&it.converter, &mut it.held, table, &mut c)?;
            it.cursors.push(c);
        }
        Ok(it)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(self.batch_size);
        while picks.len() < self.batch_size {
            let mut best: Option<usize> = None;
            for (i, c) in self.cursors.iter().enumerate() {
                if c.done {
                    continue;
                }
                best = match best {
                    None => Some(i),
                    Some(b) => {
                        let cb = &self.cursors[b];
                        if c.rows.row(c.pos) < cb.rows.row(cb.pos) {
                            Some(i)
                        } else {
                            Some(b)
                        }
                    }
                };
            }
            let Some(b) = best else { break };
            let c = &mut self.cursors[b];
            picks.push((c.slot, c.pos));
            c.pos += 1;
            if c.pos == c.len {
                load(&self.converter, &mut self.held, self.table, c)?;
            }
        }
        if picks.is_empty() {
            return Ok(None);
        }
        let refs: Vec<&RecordBatch> = self.held.iter().collect();
        let out = interleave_record_batch(&refs, &picks)?;
        // Keep only the batches cursors still point into.
        let mut keep: Vec<RecordBatch> = Vec::new();
        for c in self.cursors.iter_mut().filter(|c| !c.done) {
            keep.push(self.held[c.slot].clone());
            c.slot = keep.len() - 1;
        }
        self.held = keep;
        Ok(Some(out))
    }
}

impl Iterator for MergeIter {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_batch() {
            Ok(Some(b)) => Some(Ok(b)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Checks that a Parquet file's footer can be read.
pub(crate) fn check_footer(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let b = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(b.metadata().file_metadata().num_rows() as u64)
}
