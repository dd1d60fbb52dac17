//! Burnwatch's storage engine.
//!
//! The store owns the data: the Arrow schemas of the `spans`, `logs` and
//! `metric_points` tables ([`schema`]), typed builders that producers append
//! records to ([`rows`]), durability ([`wal`]: every write is acknowledged only
//! once it is in an fsync'd write-ahead log, with concurrent writers sharing one
//! fsync), Parquet files partitioned by hour and the manifest that names the
//! live ones ([`files`]), and the [`Store`] that ties them together: buffers,
//! flushes, compaction, retention, backpressure, and the derived files
//! (rollups, filters) other crates compute and the store keeps, checks and
//! removes ([`engine`]). [`remote`] keeps files and manifest versions in a
//! bucket (`storage.url`) beside the local copy. [`error`] is the store's
//! error type; `fsutil` holds the durable write helpers.
//! [`query`] exposes consistent snapshots as DataFusion tables and [`sql`]
//! runs read-only queries over them with row, time and memory limits.
//! `synth` (feature `testkit`) makes synthetic rows for tests and benchmarks.
//!
//! Data flow:
//!
//! ```text
//! write(table, batch) -> WAL thread (group commit, fsync) -> in-memory buffer -> ack
//! flusher: roll WAL -> Parquet per hour partition (tmp, fsync, rename, dir fsync)
//!          [-> upload to the bucket -> manifest version, create-if-absent]
//!          -> manifest (atomic replace) -> drop buffered rows -> delete old segments
//! readers: snapshot = manifest files + buffered rows (never both for one row)
//! ```

pub mod cache;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod files;
pub mod flight;
mod fsutil;
mod gather;
#[cfg(feature = "sql")]
pub mod query;
pub mod remote;
pub mod rows;
pub mod schema;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "testkit")]
pub mod synth;
mod wal;

pub use engine::{
    Job, RetentionConfig, Snapshot, Store, StoreConfig, StoreMetrics, StoreRole, StoreStats, now_ns,
};
pub use error::{Error, Result};
pub use remote::StorageConfig;
pub use schema::Table;
