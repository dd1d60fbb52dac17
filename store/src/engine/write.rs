//! The write path: schema check, buffer reservation and backpressure, WAL append.

use super::*;

impl Store {
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
                if let Some(r) = self.inner.remote.as_ref().filter(|r| r.is_failing()) {
                    return Err(Error::BucketUnavailable {
                        url: r.url().to_string(),
                        buffered: current,
                        limit,
                        retry_after: Duration::from_secs(5),
                    });
                }
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
}

pub(super) fn describe_schema_diff(
    want: &arrow::datatypes::Schema,
    got: &arrow::datatypes::Schema,
) -> String {
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
