//! Maintenance of live files: compaction, retention, checksum verification, scrub and quarantine, and deferred deletes.

use super::*;

impl Store {
    /// Merges small files: in closed hours (ended before `now_ns` minus five
    /// minutes) every partition with more than one file becomes one file; in
    /// open hours, small files are merged once there are enough of them.
    /// Returns the number of files replaced. Compactions run one at a time:
    /// a second call waits for the first.
    pub async fn compact(&self, now_ns: i64) -> Result<u64> {
        self.writable()?;
        let _one = self.inner.compacting.lock().await;
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

    pub(super) async fn compact_one(&self, table: Table, inputs: Vec<FileMeta>) -> Result<u64> {
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
        let written = self.merge_into_new_file(table, &inputs).await?;
        let input_rows = written.rows;
        let rel = written.path.clone();
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
        let output = written.path.clone();
        files.push(written);
        if let Err(e) = self
            .install_manifest(manifest, std::slice::from_ref(&output))
            .await
        {
            let _ = std::fs::remove_file(self.inner.data_dir.join(&output));
            return Err(e);
        }
        self.schedule_deletes(inputs.iter().map(|f| self.inner.data_dir.join(&f.path)));
        self.inner
            .metrics
            .compactions
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(table = %table, hour, inputs = inputs.len(), rows = input_rows, output = %rel, "compacted");
        Ok(inputs.len() as u64)
    }

    /// Merges `inputs` (local files of one table and hour, in the data
    /// directory) into a new `compact-` file there, checking that it holds
    /// exactly their rows. The file is not live yet.
    pub(super) async fn merge_into_new_file(
        &self,
        table: Table,
        inputs: &[FileMeta],
    ) -> Result<FileMeta> {
        let hour = inputs.first().map(|f| f.hour).unwrap_or_default();
        let id = {
            let _commit = self.inner.commit.lock().await;
            write(&self.inner.state).manifest.take_file_id()
        };
        let rel = format!(
            "{}/compact-{}{id:010}.parquet",
            partition_dir(table, hour),
            self.file_tag()
        );
        let data_dir = self.inner.data_dir.clone();
        // Spans: one row group for up to `spans_compact_row_group_rows`
        // rows; the bloom filters are sized for the rows the file will hold.
        let input_rows: u64 = inputs.iter().map(|f| f.rows).sum();
        let config = &self.inner.config;
        let row_group_rows = match table {
            Table::Spans => config.spans_compact_row_group_rows,
            Table::Logs | Table::MetricPoints => config.row_group_rows,
        }
        .min(usize::try_from(input_rows).unwrap_or(usize::MAX))
        .max(1);
        let paths: Vec<PathBuf> = inputs.iter().map(|f| data_dir.join(&f.path)).collect();
        let dd = data_dir.clone();
        let written = tokio::task::spawn_blocking(move || -> Result<FileMeta> {
            crate::files::merge_files(
                &dd,
                table,
                hour,
                &rel,
                writer_props(table, row_group_rows, crate::files::COMPACT_ZSTD_LEVEL),
                &paths,
                crate::files::merge_read_rows(paths.len()),
            )
        })
        .await
        .map_err(|e| Error::Internal(format!("compaction task failed: {e}")))??;
        if written.rows != input_rows {
            let _ = std::fs::remove_file(data_dir.join(&written.path));
            return Err(Error::Internal(format!(
                "compaction of {table} hour {hour} produced {} rows from {input_rows}",
                written.rows
            )));
        }
        Ok(written)
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
        self.install_manifest(manifest, &[]).await?;
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
    /// holds the commit lock. Derived files of files no longer live leave
    /// with them.
    /// `new_files` (relative paths) are uploaded first when there is a
    /// bucket.
    pub(super) async fn install_manifest(
        &self,
        mut manifest: Manifest,
        new_files: &[String],
    ) -> Result<()> {
        let gone = manifest.prune_derived();
        self.inner.derived_dirty.store(false, Ordering::Release);
        self.commit_manifest(&mut manifest, new_files).await?;
        write(&self.inner.state).manifest = manifest;
        self.schedule_deletes(gone.into_iter().map(|p| self.inner.data_dir.join(p)));
        Ok(())
    }

    /// Checks the checksums of `files` (those that have one). Returns the
    /// damaged ones with what is wrong; a file that is gone (replaced
    /// meanwhile) is not damaged.
    pub(super) async fn verify(
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
    pub(super) async fn quarantine_live(
        &self,
        damaged: Vec<(Table, FileMeta, String)>,
    ) -> Result<u64> {
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
        self.install_manifest(manifest, &[]).await?;
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

    /// Checks every live file's checksum, and every derived file's; damaged
    /// files leave the table and go to quarantine (logged and counted).
    /// Returns how many were moved.
    pub async fn scrub(&self) -> Result<u64> {
        self.writable()?;
        let mut damaged = Vec::new();
        for table in Table::ALL {
            let files = read(&self.inner.state).manifest.files(table).to_vec();
            damaged.extend(self.verify(table, &files).await?);
        }
        let mut moved = 0;
        if !damaged.is_empty() {
            moved += self.quarantine_live(damaged).await?;
        }
        moved += self.scrub_derived().await?;
        self.persist_derived().await?;
        Ok(moved)
    }

    pub(super) fn schedule_deletes(&self, paths: impl Iterator<Item = PathBuf>) {
        let at = Instant::now() + Duration::from_secs(self.inner.config.delete_grace_secs);
        lock(&self.inner.pending_deletes).extend(paths.map(|p| (at, p)));
    }

    /// Deletes replaced files whose grace period is over (all of them when
    /// `all`), and empty partition directories.
    pub(super) fn delete_expired_pending(&self, all: bool) {
        let now = Instant::now();
        let due: Vec<PathBuf> = {
            let mut pending = lock(&self.inner.pending_deletes);
            let (due, keep): (Vec<_>, Vec<_>) =
                pending.drain(..).partition(|(at, _)| all || *at <= now);
            *pending = keep;
            due.into_iter().map(|(_, p)| p).collect()
        };
        self.delete_remote(&due);
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
}

pub(super) fn plan_compaction(
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

/// Moves `path` into `quarantine` under a name made of its whole path.
pub(super) fn quarantine_file(quarantine: &Path, path: &Path) {
    if !path.exists() {
        return;
    }
    let _ = std::fs::create_dir_all(quarantine);
    let name = path
        .to_string_lossy()
        .trim_start_matches('/')
        .replace('/', "__");
    // A path quarantined before (a derived file damaged twice) keeps both.
    let mut target = quarantine.join(&name);
    let mut n = 1;
    while target.exists() {
        target = quarantine.join(format!("{name}.{n}"));
        n += 1;
    }
    if let Err(e) = std::fs::rename(path, target) {
        tracing::error!(file = %path.display(), error = %e, "could not move a damaged file to quarantine");
    }
}
