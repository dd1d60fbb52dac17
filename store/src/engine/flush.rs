//! Flushes: buffered rows to Parquet, the manifest, and WAL segment clean-up.

use super::*;

impl Store {
    pub(super) async fn roll_wal(&self) -> Result<(u64, u64)> {
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
            if self.inner.derived_dirty.load(Ordering::Acquire) {
                self.install_manifest(manifest, &[]).await?;
            }
            return Ok(0);
        }
        self.inner.derived_dirty.store(false, Ordering::Release);
        let data_dir = self.inner.data_dir.clone();
        let row_group_rows = self.inner.config.row_group_rows;
        let tag = self.file_tag();
        let started = Instant::now();
        let written = tokio::task::spawn_blocking(move || -> Result<(Manifest, Vec<String>)> {
            let mut written: Vec<(Table, FileMeta)> = Vec::new();
            for (table, batches) in &batches {
                let files = write_flush(
                    &data_dir,
                    *table,
                    batches,
                    row_group_rows,
                    last_lsn,
                    &tag,
                    || manifest.take_file_id(),
                );
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
            let paths = written.iter().map(|(_, f)| f.path.clone()).collect();
            for (table, f) in written {
                manifest.files_mut(table).push(f);
            }
            manifest.flushed_lsn = last_lsn;
            Ok((manifest, paths))
        })
        .await
        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))?;
        // With a bucket, the files go up and a manifest version names them
        // before the local manifest changes; the WAL lets go only after.
        let result = match written {
            Ok((mut manifest, paths)) => match self.commit_manifest(&mut manifest, &paths).await {
                Ok(()) => {
                    tracing::debug!(files = paths.len(), "flush wrote files");
                    Ok(manifest)
                }
                Err(e) => {
                    for p in &paths {
                        let _ = std::fs::remove_file(self.inner.data_dir.join(p));
                    }
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        if let Some(r) = &self.inner.remote {
            match &result {
                Ok(_) => r.note_flush(true),
                Err(Error::Storage(_)) => r.note_flush(false),
                Err(_) => {}
            }
        }
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

    pub(super) fn should_flush(&self) -> bool {
        let s = read(&self.inner.state);
        let max_age = Duration::from_secs_f64(self.inner.config.flush_interval_secs.max(0.01));
        s.buffers.iter().any(|b| {
            b.bytes >= self.inner.config.flush_bytes
                || b.oldest.is_some_and(|o| o.elapsed() >= max_age)
        })
    }
}
