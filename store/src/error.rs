//! The store's error type, grouped by who is at fault.

use std::path::PathBuf;
use std::time::Duration;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- the caller must slow down or wait (retryable) ---
    /// The in-memory buffers are full; retry after the hinted delay.
    #[error("store overloaded: {buffered} bytes buffered (limit {limit}); retry later")]
    Overloaded {
        /// Bytes currently buffered.
        buffered: usize,
        /// The configured limit.
        limit: usize,
        /// How long the caller should wait before retrying.
        retry_after: Duration,
    },
    /// The buffers are full because the bucket (`storage.url`) does not
    /// take the files: flushes fail, so rows wait in the WAL and memory.
    #[error(
        "the bucket {url} does not take files, so {buffered} bytes of acknowledged rows wait in the WAL (limit {limit}); retry later"
    )]
    BucketUnavailable {
        /// The bucket.
        url: String,
        /// Bytes currently buffered.
        buffered: usize,
        /// The configured limit.
        limit: usize,
        /// How long the caller should wait before retrying.
        retry_after: Duration,
    },
    /// The disk is full; nothing from this write was acknowledged.
    #[error("disk full while writing {path}: retry later")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
        /// How long the caller should wait before retrying.
        retry_after: Duration,
    },
    /// The store is shutting down and accepts no more writes.
    #[error("store is shutting down")]
    Closed,
    /// The store was opened read-only.
    #[error("the store is open read-only")]
    ReadOnly,

    // --- the caller sent something wrong ---
    /// A batch whose schema is not the table's.
    #[error("batch for table {table} has the wrong schema: {reason}")]
    SchemaMismatch {
        /// The table written to.
        table: &'static str,
        /// What differs.
        reason: String,
    },

    // --- the environment failed ---
    /// An I/O error other than disk full.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Stored data failed a checksum or could not be decoded.
    #[error("corrupt data in {path}: {reason}")]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Arrow or Parquet encoding failed.
    #[error("encoding error: {0}")]
    Encoding(String),
    /// The bucket (`storage.url`) failed or refused: unreachable, wrong
    /// credentials, missing bucket, a node id in use.
    #[error("object storage: {0}")]
    Storage(String),
    /// Another live process holds this node id's lease.
    #[error("object storage: {0}")]
    LeaseHeld(String),

    // --- a bug ---
    /// An invariant was broken; this is a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long writers are told to wait when the disk is full.
pub(crate) const DISK_FULL_RETRY: Duration = Duration::from_secs(5);

impl Error {
    /// Wraps an I/O error, recognising a full disk.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        let path = path.into();
        if is_disk_full(&source) {
            Error::DiskFull {
                path,
                retry_after: DISK_FULL_RETRY,
            }
        } else {
            Error::Io { path, source }
        }
    }

    /// Whether retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Overloaded { .. }
                | Error::BucketUnavailable { .. }
                | Error::DiskFull { .. }
                | Error::Closed
        )
    }

    /// The delay to suggest to a client, for retryable errors.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Overloaded { retry_after, .. }
            | Error::BucketUnavailable { retry_after, .. }
            | Error::DiskFull { retry_after, .. } => Some(*retry_after),
            Error::Closed => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// Whether an I/O error means "no space left" (or quota exceeded).
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122))
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Encoding(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(e: parquet::errors::ParquetError) -> Self {
        match e {
            parquet::errors::ParquetError::External(inner) => {
                match inner.downcast::<std::io::Error>() {
                    Ok(io) => Error::io("parquet file", *io),
                    Err(other) => Error::Encoding(other.to_string()),
                }
            }
            other => Error::Encoding(other.to_string()),
        }
    }
}
