//! DataFusion tables over the store.
//!
//! [`session_context`] registers `spans`, `logs` and `metric_points`. Each scan
//! takes a [`Snapshot`](crate::Snapshot) of the table, so a query sees every
//! acknowledged row exactly once: rows in live Parquet files plus rows still in
//! memory. Files whose time range cannot match the query's filters on the
//! table's time column are skipped before any I/O; the remaining filters go to
//! the Parquet reader for row-group, page-index and bloom-filter pruning.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::error::Result as DfResult;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::engine::{Snapshot, Store};
use crate::files::FileMeta;
use crate::schema::Table;

/// A table of the store, as DataFusion sees it.
pub struct StoreTable {
    source: Source,
    table: Table,
}

/// Bytes of Parquet footers and page indexes a store keeps cached for its
/// queries (DataFusion's file metadata cache, shared by every session of
/// [`Store::session`]).
pub const METADATA_CACHE_BYTES: usize = 64 << 20;

impl Store {
    /// The query engine's state shared by every session over this store:
    /// where files are read from (the bucket itself, for a store that reads
    /// from one, registered as the file system) and the cache of Parquet
    /// footers and page indexes, so a warm query does not read them again.
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        self.runtime_cell()
            .get_or_init(|| {
                let cache = CacheManagerConfig::default()
                    .with_metadata_cache_limit(self.metadata_cache_bytes());
                let runtime = RuntimeEnvBuilder::new()
                    .with_cache_manager(cache)
                    .build_arc()
                    .unwrap_or_else(|_| Arc::new(RuntimeEnv::default()));
                if let Some(remote) = self.read_from_bucket()
                    && let Ok(url) = url::Url::parse("file:///")
                {
                    let files: Arc<dyn object_store::ObjectStore> =
                        match self.cluster().and_then(|c| c.files.clone()) {
                            Some(cache) => cache,
                            None => remote.object_store(),
                        };
                    runtime.register_object_store(&url, files);
                }
                runtime
            })
            .clone()
    }

    /// A session with the store's shared [`runtime`](Self::runtime) and no
    /// tables registered.
    pub fn session(&self) -> SessionContext {
        SessionContext::new_with_config_rt(session_config(), self.runtime())
    }

    /// A runtime like [`runtime`](Self::runtime) (same files, same metadata
    /// cache) whose queries may hold at most `bytes` of memory.
    pub fn runtime_with_memory_limit(&self, bytes: usize) -> DfResult<Arc<RuntimeEnv>> {
        let shared = self.runtime();
        RuntimeEnvBuilder::new()
            .with_memory_limit(bytes, 1.0)
            .with_object_store_registry(shared.object_store_registry.clone())
            .with_cache_manager(
                CacheManagerConfig::default()
                    .with_file_metadata_cache(Some(shared.cache_manager.get_file_metadata_cache()))
                    .with_metadata_cache_limit(self.metadata_cache_bytes()),
            )
            .build_arc()
    }
}

enum Source {
    /// Takes a fresh snapshot at every scan.
    Live(Store),
    /// Always scans the same rows.
    Fixed(Snapshot),
}

impl fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreTable({})", self.table)
    }
}

impl StoreTable {
    /// The provider for one table.
    pub fn new(store: Store, table: Table) -> Self {
        StoreTable {
            source: Source::Live(store),
            table,
        }
    }

    /// A provider over exactly the rows of `snapshot` (or a subset of it), for
    /// queries that must agree with other reads of the same snapshot.
    pub fn fixed(snapshot: Snapshot) -> Self {
        StoreTable {
            table: snapshot.table,
            source: Source::Fixed(snapshot),
        }
    }
}

/// Session settings for queries over the store: filter pushdown into the
/// Parquet reader, page index and bloom filters on.
pub fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        );
    let opts = config.options_mut();
    opts.execution.parquet.pushdown_filters = true;
    opts.execution.parquet.reorder_filters = true;
    opts.execution.parquet.enable_page_index = true;
    opts.execution.parquet.bloom_filter_on_read = true;
    config
}

/// A `SessionContext` with `spans`, `logs` and `metric_points` registered.
pub fn session_context(store: &Store) -> SessionContext {
    let ctx = store.session();
    for table in Table::ALL {
        // Registering into the default in-memory catalog cannot fail for new names.
        let _ = ctx.register_table(
            table.name(),
            Arc::new(StoreTable::new(store.clone(), table)),
        );
    }
    ctx
}

/// Runs trusted SQL (built by Burnwatch itself, not by users) over the store.
/// User SQL goes through [`crate::sql::run`], which guards and limits it.
pub async fn collect(store: &Store, sql: &str) -> DfResult<Vec<arrow::array::RecordBatch>> {
    session_context(store).sql(sql).await?.collect().await
}

/// The objects in the bucket a scan of `table` with `filters` reads, as
/// URLs (`s3://bucket/prefix/<node>/<table>/date=.../hour=.../<file>.parquet`
/// or `file:///...`): exactly the files of the store's current view (never
/// one a compaction replaced and not yet deleted), pruned to the hours the
/// filters' time bounds allow. `None` without a bucket. Rows not yet
/// flushed to the bucket are not among them.
pub fn bucket_file_urls(store: &Store, table: Table, filters: &[Expr]) -> Option<Vec<String>> {
    let remote = store.remote()?;
    let base = remote.url().trim_end_matches('/').to_string();
    let (lo, hi) = time_bounds(table.time_column(), filters);
    let files: Vec<(std::path::PathBuf, FileMeta)> = store
        .file_metas(table)
        .into_iter()
        .map(|f| (std::path::PathBuf::from(&f.path), f))
        .collect();
    Some(
        prune_files(&files, lo, hi)
            .map(|(_, f)| format!("{base}/{}", f.path))
            .collect(),
    )
}

/// Bounds `[lo, hi]` (ns, inclusive) on a time column implied by the filters.
pub(crate) fn time_bounds(column: &str, filters: &[Expr]) -> (i64, i64) {
    let mut lo = i64::MIN;
    let mut hi = i64::MAX;
    for f in filters {
        collect_bounds(column, f, &mut lo, &mut hi);
    }
    (lo, hi)
}

fn scalar_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn column_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        Expr::TryCast(c) => column_name(&c.expr),
        _ => None,
    }
}

fn literal_ns(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => scalar_ns(v),
        Expr::Cast(c) => literal_ns(&c.expr),
        _ => None,
    }
}

fn collect_bounds(column: &str, e: &Expr, lo: &mut i64, hi: &mut i64) {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            if *op == Operator::And {
                collect_bounds(column, left, lo, hi);
                collect_bounds(column, right, lo, hi);
                return;
            }
            let (op, v) = if column_name(left) == Some(column) {
                match literal_ns(right) {
                    Some(v) => (*op, v),
                    None => return,
                }
            } else if column_name(right) == Some(column) {
                match (literal_ns(left), op.swap()) {
                    (Some(v), Some(op)) => (op, v),
                    _ => return,
                }
            } else {
                return;
            };
            match op {
                Operator::Gt | Operator::GtEq => *lo = (*lo).max(v),
                Operator::Lt | Operator::LtEq => *hi = (*hi).min(v),
                Operator::Eq => {
                    *lo = (*lo).max(v);
                    *hi = (*hi).min(v);
                }
                _ => {}
            }
        }
        Expr::Between(b) if !b.negated && column_name(&b.expr) == Some(column) => {
            if let (Some(l), Some(h)) = (literal_ns(&b.low), literal_ns(&b.high)) {
                *lo = (*lo).max(l);
                *hi = (*hi).min(h);
            }
        }
        _ => {}
    }
}

/// Files of the snapshot whose time range overlaps `[lo, hi]`.
pub(crate) fn prune_files(
    files: &[(std::path::PathBuf, FileMeta)],
    lo: i64,
    hi: i64,
) -> impl Iterator<Item = &(std::path::PathBuf, FileMeta)> {
    files
        .iter()
        .filter(move |(_, f)| f.max_time_ns >= lo && f.min_time_ns <= hi)
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.table.schema();
        let snapshot = match &self.source {
            Source::Live(store) => store.snapshot(self.table),
            Source::Fixed(snapshot) => snapshot.clone(),
        };
        let (lo, hi) = time_bounds(self.table.time_column(), filters);
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();

        let files: Vec<PartitionedFile> = prune_files(&snapshot.files, lo, hi)
            .map(|(path, meta)| {
                PartitionedFile::new(path.to_string_lossy().to_string(), meta.bytes)
            })
            .collect();
        if !files.is_empty() {
            let parts = state.config().target_partitions().max(1);
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); parts.min(files.len())];
            let n = groups.len();
            for (i, f) in files.into_iter().enumerate() {
                groups[i % n].push(f);
            }
            let format =
                ParquetFormat::default().with_options(state.table_options().parquet.clone());
            // Filters reach the Parquet reader through DataFusion's physical
            // filter pushdown (the provider answers `Inexact`), which prunes
            // row groups, pages and bloom filters.
            let source = datafusion::datasource::physical_plan::ParquetSource::new(schema.clone())
                .with_table_parquet_options(state.table_options().parquet.clone());
            let config =
                FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                    .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                    .with_projection_indices(projection.cloned())?
                    .with_limit(limit)
                    .build();
            inputs.push(format.create_physical_plan(state, config).await?);
        }
        if !snapshot.batches.is_empty() {
            inputs.push(MemorySourceConfig::try_new_exec(
                &[snapshot.batches],
                schema.clone(),
                projection.cloned(),
            )?);
        }
        if inputs.is_empty() {
            let projected = match projection {
                Some(p) => Arc::new(schema.project(p)?),
                None => schema,
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        UnionExec::try_new(inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn time_bounds_from_filters() {
        let t = |v: i64| {
            lit(ScalarValue::TimestampNanosecond(
                Some(v),
                Some("UTC".into()),
            ))
        };
        let filters = vec![
            col("start_time").gt_eq(t(100)),
            t(500).gt(col("start_time")),
            col("service_name").eq(lit("a")),
        ];
        assert_eq!(time_bounds("start_time", &filters), (100, 500));
        assert_eq!(time_bounds("time", &filters), (i64::MIN, i64::MAX));
        let between = vec![col("time").between(t(7), t(9))];
        assert_eq!(time_bounds("time", &between), (7, 9));
    }
}
