//! Parquet files: the manifest that says which files are live, partitioning by
//! hour, sorting, writing (temp name, fsync, rename, directory fsync) and the
//! streaming k-way merge used by compaction.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::interleave_record_batch;
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

/// zstd level of files written by flushes (fast: flushes are on the ingest path).
pub const FLUSH_ZSTD_LEVEL: i32 = 1;
/// zstd level of files written by compaction (denser: data at rest).
pub const COMPACT_ZSTD_LEVEL: i32 = 6;

/// Most bytes of a spans file's `trace_id` dictionary page: about 450k
/// trace ids (36 bytes each), so a large row group's ids share one
/// dictionary instead of falling back to plain values part way (the
/// default limit is 1 MiB).
const TRACE_ID_DICTIONARY_LIMIT: usize = 16 << 20;

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
    /// CRC-32 of the whole file as written; the scrub and compaction check
    /// it, so a bit flip at rest is found. Absent in manifests written
    /// before checksums existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
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
    /// Sequence number of this manifest version in the bucket (0 while the
    /// store has no bucket); each version written there gets the next one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// Which process wrote this version to the bucket (its lease token).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub writer: String,
    /// Which data directory's history this is: set when the first version
    /// goes to a bucket and kept from then on, so a data directory is never
    /// mixed with another one's versions under the same node id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub lineage: String,
    /// Every WAL record with LSN <= this is in the live files.
    pub flushed_lsn: u64,
    /// Next id for a file name.
    pub next_file_id: u64,
    /// Live files per table name.
    pub tables: BTreeMap<String, Vec<FileMeta>>,
    /// Files derived from live files (RED rollups, trace-id filters, SLI
    /// rollups): per live file path, per kind. They are kept under
    /// `rollups/<kind>/<file path>` and leave with the file they belong to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub derived: BTreeMap<String, BTreeMap<String, DerivedMeta>>,
    /// Written by the compactor (node id `compactor`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compactor: bool,
    /// `ingest` when the writer runs in the ingest role: only such a node's
    /// files are compacted and expired by the compactor (a node in role
    /// `all` maintains its own).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Compactor: per node id, paths of that node's files that this
    /// version's files replace (or that retention removed). Readers leave
    /// them out; the owner drops them from its own manifest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tombstones: BTreeMap<String, Vec<String>>,
    /// Compactor: the manifest version of every node it read for this
    /// version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, u64>,
    /// Other nodes: the newest compactor version whose tombstones this
    /// version applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, u64>,
}

/// One derived file, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DerivedMeta {
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32 of the whole file; checked on every read and by the scrub.
    pub crc32: u32,
}

const MANIFEST: &str = "manifest.json";

fn is_zero(n: &u64) -> bool {
    *n == 0
}

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

    /// Whether `path` is a live file of any table.
    pub fn is_live(&self, path: &str) -> bool {
        self.tables
            .values()
            .any(|files| files.iter().any(|f| f.path == path))
    }

    /// Drops the derived files of files that are no longer live; returns
    /// their paths relative to the data directory.
    pub(crate) fn prune_derived(&mut self) -> Vec<String> {
        let live: std::collections::HashSet<&str> = self
            .tables
            .values()
            .flatten()
            .map(|f| f.path.as_str())
            .collect();
        let gone: Vec<String> = self
            .derived
            .keys()
            .filter(|p| !live.contains(p.as_str()))
            .cloned()
            .collect();
        let mut paths = Vec::new();
        for file in gone {
            if let Some(kinds) = self.derived.remove(&file) {
                paths.extend(kinds.into_keys().map(|k| derived_rel_path(&k, &file)));
            }
        }
        paths
    }

    pub(crate) fn take_file_id(&mut self) -> u64 {
        self.next_file_id += 1;
        self.next_file_id
    }
}

/// Directory of derived files, relative to the data directory.
pub const DERIVED_DIR: &str = "rollups";

/// `rollups/<kind>/<file path>`: where the derived file of `kind` for the
/// live file `file` is kept, relative to the data directory.
pub fn derived_rel_path(kind: &str, file: &str) -> String {
    format!("{DERIVED_DIR}/{kind}/{file}")
}

/// `<table>/date=YYYY-MM-DD/hour=HH`.
pub fn partition_dir(table: Table, hour: i64) -> String {
    let secs = hour * 3600;
    let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default();
    format!("{}/{}", table.name(), dt.format("date=%Y-%m-%d/hour=%H"))
}

/// Parquet writer settings for a table. `zstd_level` trades flush speed for
/// size: flushes use a fast level, compaction a denser one.
pub fn writer_props(table: Table, row_group_rows: usize, zstd_level: i32) -> WriterProperties {
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
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(zstd_level).unwrap_or_default(),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_sorting_columns(Some(sorting))
        .set_created_by(format!("burnwatch {}", env!("CARGO_PKG_VERSION")));
    // Timestamps and durations: delta encoding instead of dictionaries.
    for (name, field) in schema.fields().iter().map(|f| (f.name(), f)) {
        if matches!(field.data_type(), arrow::datatypes::DataType::Timestamp(..))
            || name == "duration_ns"
        {
            let path = ColumnPath::from(name.as_str());
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, parquet::basic::Encoding::DELTA_BINARY_PACKED);
        }
    }
    // Spans only: a log record's trace id is nearly unique in its row
    // group, where a dictionary costs more than plain values.
    if table == Table::Spans {
        b = b.set_column_dictionary_page_size_limit(
            ColumnPath::from("trace_id"),
            TRACE_ID_DICTIONARY_LIMIT,
        );
    }
    // Unique per row: a dictionary only costs time.
    for name in ["span_id", "parent_span_id"] {
        if schema.index_of(name).is_ok() {
            b = b.set_column_dictionary_enabled(ColumnPath::from(name), false);
        }
    }
    for col in table.bloom_filter_columns() {
        let path = ColumnPath::from(*col);
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, row_group_rows as u64);
    }
    b.build()
}

fn time_range(table: Table, batch: &RecordBatch) -> Option<(i64, i64)> {
    let times = batch
        .column_by_name(table.time_column())?
        .as_primitive_opt::<TimestampNanosecondType>()?;
    let min = arrow::compute::min(times)?;
    let max = arrow::compute::max(times)?;
    Some((min, max))
}

/// A writer that computes the CRC-32 of everything written through it.
pub(crate) struct Crc32Writer<W> {
    inner: W,
    hasher: crc32fast::Hasher,
}

impl<W: std::io::Write> std::io::Write for Crc32Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The CRC-32 of a whole file, read in 1 MiB chunks.
pub(crate) fn file_crc32(path: &Path) -> std::io::Result<u32> {
    use std::io::Read as _;
    let mut f = File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

/// The file being written: Arrow's writer over a checksumming file.
pub(crate) type FileWriter = ArrowWriter<Crc32Writer<File>>;

/// What writing the rows of a file returns: the underlying writer (the file
/// is finished), the rows written and their time range.
pub(crate) type Written = (Crc32Writer<File>, u64, Option<(i64, i64)>);

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
    write_file_with(
        data_dir,
        table,
        hour,
        rel_path,
        props,
        metadata,
        |mut writer| {
            let mut rows = 0u64;
            let mut range: Option<(i64, i64)> = None;
            for batch in batches {
                let batch = batch?;
                range = widen(range, time_range(table, &batch));
                rows += batch.num_rows() as u64;
                writer.write(&batch)?;
            }
            Ok((writer.into_inner()?, rows, range))
        },
    )
}

fn widen(range: Option<(i64, i64)>, more: Option<(i64, i64)>) -> Option<(i64, i64)> {
    match (range, more) {
        (Some((a, b)), Some((lo, hi))) => Some((a.min(lo), b.max(hi))),
        (r, None) => r,
        (None, m) => m,
    }
}

/// Writes one new Parquet file at `rel_path`, durably: `rows` writes the
/// rows through the writer it is given and finishes the file. The file is
/// written under a temporary name, synced, renamed and its directory
/// synced; nothing is left behind on error.
pub(crate) fn write_file_with(
    data_dir: &Path,
    table: Table,
    hour: i64,
    rel_path: &str,
    props: WriterProperties,
    metadata: Vec<(String, String)>,
    rows: impl FnOnce(FileWriter) -> Result<Written>,
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
        let file = Crc32Writer {
            inner: file,
            hasher: crc32fast::Hasher::new(),
        };
        let mut writer = ArrowWriter::try_new(file, table.schema(), Some(props))?;
        for (k, v) in metadata {
            writer.append_key_value_metadata(KeyValue::new(k, v));
        }
        let (
            Crc32Writer {
                inner: file,
                hasher,
            },
            rows,
            range,
        ) = rows(writer)?;
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
            crc32: Some(hasher.finalize()),
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

/// Writes the rows at `order` (`(batch, row)` positions in `batches`) as
/// row groups of `row_group_rows`, one column at a time: each column of a
/// row group is gathered [`FLUSH_CHUNK_ROWS`] rows at a time and encoded
/// before the next is gathered, so the writer holds one chunk of one column
/// beside the row group's encoded pages.
fn write_gathered(
    writer: FileWriter,
    table: Table,
    batches: &[&RecordBatch],
    order: &[(usize, usize)],
    row_group_rows: usize,
) -> Result<Written> {
    use parquet::arrow::arrow_writer::compute_leaves;
    let schema = table.schema();
    let time_col = schema.index_of(table.time_column())?;
    let (mut file, factory) = writer.into_serialized_writer()?;
    let mut range = None;
    for (group, rows) in order.chunks(row_group_rows.max(1)).enumerate() {
        let mut writers = factory.create_column_writers(group)?.into_iter();
        let mut chunks = Vec::new();
        for (i, field) in schema.fields().iter().enumerate() {
            let mut leaf_writers = Vec::new();
            for part in rows.chunks(FLUSH_CHUNK_ROWS) {
                let column = crate::gather::gather_column(batches, i, part)?;
                if i == time_col {
                    let times = column
                        .as_primitive_opt::<TimestampNanosecondType>()
                        .ok_or_else(|| Error::Internal(format!("{table} time column type")))?;
                    if let (Some(lo), Some(hi)) =
                        (arrow::compute::min(times), arrow::compute::max(times))
                    {
                        range = widen(range, Some((lo, hi)));
                    }
                }
                let leaves = compute_leaves(field, &column)?;
                if leaf_writers.is_empty() {
                    leaf_writers = writers.by_ref().take(leaves.len()).collect();
                }
                if leaf_writers.len() != leaves.len() {
                    return Err(Error::Internal(format!(
                        "{table}.{}: {} column writers for {} leaves",
                        field.name(),
                        leaf_writers.len(),
                        leaves.len()
                    )));
                }
                for (w, leaf) in leaf_writers.iter_mut().zip(&leaves) {
                    w.write(leaf)?;
                }
            }
            for w in leaf_writers {
                chunks.push(w.close()?);
            }
        }
        let mut row_group = file.next_row_group()?;
        for c in chunks {
            c.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
    }
    Ok((file.into_inner()?, order.len() as u64, range))
}

/// Writes a flush: the batches of one table, split by hour, each partition
/// sorted, one file per partition. Files are durable on return but not yet
/// live (the caller adds them to the manifest).
pub fn write_flush(
    data_dir: &Path,
    table: Table,
    batches: &[RecordBatch],
    row_group_rows: usize,
    lsn: u64,
    tag: &str,
    mut next_id: impl FnMut() -> u64,
) -> Result<Vec<FileMeta>> {
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    for (hour, order) in partition_sorted(table, batches)? {
        let rel = format!(
            "{}/part-{tag}{:010}.parquet",
            partition_dir(table, hour),
            next_id()
        );
        // Sorted rows are gathered a column chunk at a time as they are
        // encoded, so a flush holds one chunk of copies beside its input,
        // not a second copy of it all.
        let meta = write_file_with(
            data_dir,
            table,
            hour,
            &rel,
            writer_props(table, row_group_rows, FLUSH_ZSTD_LEVEL),
            vec![("burnwatch.max_lsn".into(), lsn.to_string())],
            |w| write_gathered(w, table, &refs, &order, row_group_rows),
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

/// Sort keys of a column, in the order Arrow sorts it ascending with nulls
/// first: strings as their rank among the column's distinct values (by
/// bytes), nulls as 0; integers and timestamps as themselves, nulls as
/// `i64::MIN`.
fn sort_ranks(col: &arrow::array::ArrayRef) -> Result<Vec<i64>> {
    use arrow::array::Array;
    use arrow::datatypes::DataType;
    let n = col.len();
    match col.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _) => {
            let text = arrow::compute::cast(col, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let mut distinct: std::collections::HashMap<&str, i64, foldhash::fast::RandomState> =
                Default::default();
            for v in text.iter().flatten() {
                distinct.entry(v).or_insert(0);
            }
            let mut sorted: Vec<&str> = distinct.keys().copied().collect();
            sorted.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for (r, v) in sorted.iter().enumerate() {
                distinct.insert(v, r as i64 + 1);
            }
            Ok((0..n)
                .map(|i| {
                    if text.is_null(i) {
                        0
                    } else {
                        distinct.get(text.value(i)).copied().unwrap_or(0)
                    }
                })
                .collect())
        }
        _ => {
            let ints = arrow::compute::cast(col, &DataType::Int64)?;
            let ints = ints
                .as_primitive_opt::<arrow::datatypes::Int64Type>()
                .ok_or_else(|| Error::Internal("sort column is not an integer".into()))?;
            Ok((0..n)
                .map(|i| {
                    if ints.is_null(i) {
                        i64::MIN
                    } else {
                        ints.value(i)
                    }
                })
                .collect())
        }
    }
}

/// Rows of a flush column gathered at a time.
const FLUSH_CHUNK_ROWS: usize = 16 * 1024;

/// An hour partition's rows in order, as `(batch, row)` positions.
pub type SortedPartition = (i64, Vec<(usize, usize)>);

/// Splits rows of many batches into hour partitions, each in the order of
/// the table's sort columns, as `(batch, row)` positions in `batches`: only
/// the sort columns are concatenated to compute the order, and the caller
/// gathers rows straight from the input batches
/// ([`interleave_record_batch`]), copying each once.
pub fn partition_sorted(table: Table, batches: &[RecordBatch]) -> Result<Vec<SortedPartition>> {
    use arrow::array::{Array, ArrayRef, Int64Array};
    let concat_col = |name: &str| -> Result<ArrayRef> {
        let parts: Vec<&dyn Array> = batches
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .map(|c| c.as_ref())
                    .ok_or_else(|| Error::Internal(format!("{table} batch has no {name} column")))
            })
            .collect::<Result<_>>()?;
        Ok(arrow::compute::concat(&parts)?)
    };
    let time = concat_col(table.time_column())?;
    let times = time
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| Error::Internal(format!("{table} time column is not ns timestamps")))?;
    let hours: ArrayRef = std::sync::Arc::new(Int64Array::from_iter_values(
        times.values().iter().map(|t| hour_of(*t)),
    ));
    // The order: by hour, then the sort columns (ascending, nulls first,
    // strings by bytes), then arrival. Strings are compared as their
    // ranks among the column's distinct values, so sorting compares
    // integers only.
    let hour_values = hours
        .as_primitive_opt::<arrow::datatypes::Int64Type>()
        .ok_or_else(|| Error::Internal("hour column".into()))?;
    let sort_columns = table.sort_columns();
    if sort_columns.len() > 3 {
        return Err(Error::Internal(format!("{table}: too many sort columns")));
    }
    let mut ranks: Vec<Vec<i64>> = Vec::with_capacity(sort_columns.len());
    for name in sort_columns {
        ranks.push(sort_ranks(&concat_col(name)?)?);
    }
    let mut keyed: Vec<([i64; 4], u32)> = (0..hour_values.len())
        .map(|i| {
            let mut k = [0i64; 4];
            k[0] = hour_values.value(i);
            for (j, r) in ranks.iter().enumerate() {
                k[j + 1] = r[i];
            }
            (k, i as u32)
        })
        .collect();
    drop(ranks);
    keyed.sort_unstable();
    let order = arrow::array::UInt32Array::from_iter_values(keyed.into_iter().map(|(_, i)| i));
    // Global row index -> (batch, row).
    let mut starts = Vec::with_capacity(batches.len());
    let mut total = 0usize;
    for b in batches {
        starts.push(total);
        total += b.num_rows();
    }
    let locate = |g: usize| -> (usize, usize) {
        let b = starts.partition_point(|s| *s <= g) - 1;
        (b, g - starts[b])
    };
    let hours = hour_values;
    let mut out = Vec::new();
    let mut run: Vec<(usize, usize)> = Vec::new();
    let mut current: Option<i64> = None;
    for g in order.values().iter().map(|i| *i as usize) {
        let h = hours.value(g);
        if let Some(c) = current.filter(|c| *c != h) {
            out.push((c, std::mem::take(&mut run)));
        }
        current = Some(h);
        run.push(locate(g));
    }
    if let Some(h) = current {
        out.push((h, run));
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

/// Rows a merge holds decoded across all its inputs: each input is read
/// [`merge_read_rows`] rows at a time. A decoded span with its attributes
/// takes about 1.4 KB, so 32k rows are about 44 MiB whatever the number of
/// inputs (at 8192 rows per input, 64 inputs held 700 MiB).
pub const MERGE_HELD_ROWS: usize = 32 * 1024;

/// Rows of each output batch of a merge.
pub const MERGE_OUTPUT_ROWS: usize = 8192;

/// Rows read at a time from each of `inputs` inputs of a merge: an even
/// share of [`MERGE_HELD_ROWS`], between 256 and 8192.
pub fn merge_read_rows(inputs: usize) -> usize {
    (MERGE_HELD_ROWS / inputs.max(1)).clamp(256, 8192)
}

/// Merges `inputs` (files of one table and hour, each sorted) into one new
/// sorted file at `rel_path`, reading each input `read_rows` rows at a time
/// (the store uses [`merge_read_rows`]).
pub fn merge_files(
    data_dir: &Path,
    table: Table,
    hour: i64,
    rel_path: &str,
    props: WriterProperties,
    inputs: &[PathBuf],
    read_rows: usize,
) -> Result<FileMeta> {
    let merge = MergeIter::new(table, inputs, read_rows)?;
    write_file(data_dir, table, hour, rel_path, props, vec![], merge)
}

/// Streams the rows of several files, each sorted by the table's sort columns,
/// as one sorted sequence of batches (a k-way merge). Memory: one batch of
/// `read_rows` rows per input plus one output batch of [`MERGE_OUTPUT_ROWS`]
/// rows (and the batches it was gathered from).
pub(crate) struct MergeIter {
    table: Table,
    converter: RowConverter,
    cursors: Vec<Cursor>,
    held: Vec<RecordBatch>,
    failed: bool,
}

impl MergeIter {
    pub(crate) fn new(table: Table, paths: &[PathBuf], read_rows: usize) -> Result<MergeIter> {
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
            failed: false,
        };
        for p in paths {
            let reader = read_file(p, read_rows)?;
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
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(MERGE_OUTPUT_ROWS);
        while picks.len() < MERGE_OUTPUT_ROWS {
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

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;

    /// Each partition comes out in the order Arrow sorts its sort columns
    /// (checked with Arrow's row format), hours ascending, no row lost.
    fn check_sorted(table: Table, batches: &[RecordBatch]) {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let parts: Vec<(i64, RecordBatch)> = partition_sorted(table, batches)
            .unwrap()
            .into_iter()
            .map(|(h, order)| (h, interleave_record_batch(&refs, &order).unwrap()))
            .collect();
        assert!(parts.windows(2).all(|w| w[0].0 < w[1].0), "hours ascending");
        assert_eq!(parts.iter().map(|(_, b)| b.num_rows()).sum::<usize>(), rows);
        for (_, b) in &parts {
            let cols: Vec<arrow::array::ArrayRef> = table
                .sort_columns()
                .iter()
                .map(|n| b.column_by_name(n).unwrap().clone())
                .collect();
            let conv = RowConverter::new(
                cols.iter()
                    .map(|c| SortField::new(c.data_type().clone()))
                    .collect(),
            )
            .unwrap();
            let r: Rows = conv.convert_columns(&cols).unwrap();
            for i in 1..r.num_rows() {
                assert!(r.row(i - 1) <= r.row(i), "row {i} out of order");
            }
        }
    }

    /// A flush's files hold exactly the rows of their hour in sort order
    /// (gathered column by column), in row groups of the configured size,
    /// with the time range, bloom filters and page index of every file.
    const SEC: i64 = 1_000_000_000;
    const T0: i64 = 1_709_632_800 * SEC;

    /// One batch of `n` requests per service, over two hours, out of order;
    /// every `fail_every`th request fails.
    fn interleaved_spans(services: &[&str], n: i64, fail_every: i64) -> Vec<RecordBatch> {
        services
            .iter()
            .enumerate()
            .map(|(k, svc)| {
                let times: Vec<(i64, bool)> = (0..n)
                    .map(|i| {
                        let t = T0 + (i * 7919 + k as i64 * 13) % 7200 * SEC;
                        (t, i % fail_every == 0)
                    })
                    .collect();
                crate::synth::http_requests(svc, "GET", "/x", &times)
            })
            .collect()
    }

    #[test]
    fn flush_files_hold_sorted_rows_with_filters_and_page_index() {
        let spans = interleaved_spans(&["payments", "gateway", "catalog", "gateway"], 700, 5);
        let dir = tempfile::tempdir().unwrap();
        let mut id = 0;
        let files = write_flush(dir.path(), Table::Spans, &spans, 300, 7, "", || {
            id += 1;
            id
        })
        .unwrap();
        assert_eq!(files.len(), 2, "two hours");
        let refs: Vec<&RecordBatch> = spans.iter().collect();
        let want: Vec<RecordBatch> = partition_sorted(Table::Spans, &spans)
            .unwrap()
            .into_iter()
            .map(|(_, order)| interleave_record_batch(&refs, &order).unwrap())
            .collect();
        for (meta, want) in files.iter().zip(&want) {
            let path = dir.path().join(&meta.path);
            let got: Vec<RecordBatch> = read_file(&path, 100_000)
                .unwrap()
                .collect::<std::result::Result<_, _>>()
                .unwrap();
            let got = arrow::compute::concat_batches(&Table::Spans.schema(), &got).unwrap();
            assert_eq!(&got, want, "{} holds its hour's rows in order", meta.path);
            assert_eq!(meta.rows as usize, want.num_rows());
            assert_eq!(
                (meta.min_time_ns, meta.max_time_ns),
                time_range(Table::Spans, want).unwrap()
            );
            let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
                File::open(&path).unwrap(),
                parquet::arrow::arrow_reader::ArrowReaderOptions::new()
                    .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required),
            )
            .unwrap();
            let md = reader.metadata();
            assert!(md.num_row_groups() >= 2);
            assert!(md.row_groups().iter().all(|g| g.num_rows() <= 300));
            assert!(md.offset_index().is_some(), "page index");
            let trace = Table::Spans.schema().index_of("trace_id").unwrap();
            assert!(
                md.row_group(0)
                    .column(trace)
                    .bloom_filter_offset()
                    .is_some(),
                "trace_id bloom filter"
            );
            let lsn = md
                .file_metadata()
                .key_value_metadata()
                .and_then(|kv| kv.iter().find(|k| k.key == "burnwatch.max_lsn").cloned());
            assert_eq!(lsn.and_then(|k| k.value).as_deref(), Some("7"));
        }
    }

    #[test]
    fn flush_order_is_arrows_sort_order() {
        let t0 = T0;
        // Metric points of many minutes over three hours, out of order.
        let mut points: Vec<RecordBatch> = (0..180)
            .map(|m| crate::synth::metric_points(t0 + ((m * 37) % 180) * 60 * SEC))
            .collect();
        points.reverse();
        check_sorted(Table::MetricPoints, &points);
        // Spans of several services, interleaved in time.
        let spans = interleaved_spans(&["payments", "gateway", "catalog", "a", "gateway"], 500, 3);
        check_sorted(Table::Spans, &spans);
    }
}
