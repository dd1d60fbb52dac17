//! Opening a store: the manifest, live-file checks, orphan clean-up and WAL replay.

use super::*;

impl Store {
    /// Opens (or creates) the store in `config.data_dir`: loads the manifest,
    /// removes files left by interrupted flushes or compactions, replays the
    /// WAL and starts the WAL thread. Must be called inside a Tokio runtime.
    ///
    /// With a bucket (`config.storage.url`), it first checks that the bucket
    /// answers, takes this node id's lease, and adopts the bucket's newest
    /// manifest version of this node (fetching live files missing locally);
    /// a bucket with nothing for this node gets the local files and a
    /// first version.
    pub async fn open(config: StoreConfig) -> Result<Store> {
        let cfg = absolute_data_dir(config)?;
        let remote = crate::remote::Remote::connect(&cfg.storage)
            .await?
            .map(Arc::new);
        let mut adopted = None;
        if let Some(r) = &remote {
            r.take_lease().await?;
            let dir = cfg.data_dir.clone();
            tokio::task::spawn_blocking(move || crate::fsutil::create_dir_durable(&dir))
                .await
                .map_err(|e| Error::Internal(format!("open task failed: {e}")))??;
            adopted = Some(Store::adopt_remote(&cfg.data_dir, r).await?);
        }
        let r2 = remote.clone();
        let store = tokio::task::spawn_blocking(move || Store::open_blocking(cfg, r2))
            .await
            .map_err(|e| Error::Internal(format!("open task failed: {e}")))??;
        if matches!(adopted, Some(super::sync::Adopted::Nothing)) {
            store.push_all().await?;
        }
        if let Some(r) = &remote {
            // Downloads or uploads above may have taken a while: renew.
            r.take_lease().await?;
        }
        Ok(store)
    }

    pub(super) fn open_blocking(
        config: StoreConfig,
        remote: Option<Arc<crate::remote::Remote>>,
    ) -> Result<Store> {
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
        let pruned = !manifest.prune_derived().is_empty();
        if super::derived::remove_derived_orphans(&data_dir, &mut manifest)? || pruned {
            manifest.persist(&data_dir)?;
        }

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
                compacting: tokio::sync::Mutex::new(()),
                reserved: AtomicUsize::new(reserved),
                flush_wanted: Notify::new(),
                metrics,
                pending_deletes: Mutex::new(Vec::new()),
                orphans: Default::default(),
                derived_dirty: AtomicBool::new(false),
                remote,
                bucket_only: false,
                #[cfg(feature = "sql")]
                runtime: Default::default(),
                cluster: Default::default(),
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
            Ok(Store::read_only_view(
                config,
                data_dir,
                State { manifest, buffers },
                None,
            ))
        })
        .await
        .map_err(|e| Error::Internal(format!("open task failed: {e}")))?
    }
}

impl Store {
    /// Opens a bucket for reading only, with no data directory and no
    /// server: the tables are the union of every node's newest manifest
    /// version, and queries read the Parquet files from the bucket itself.
    /// Rows still in a node's WAL are not in the bucket yet.
    pub async fn open_bucket(storage: &crate::remote::StorageConfig) -> Result<Store> {
        let remote = crate::remote::Remote::connect(storage)
            .await?
            .ok_or_else(|| Error::Storage("no storage.url to read".into()))?;
        let manifest = remote.merged_manifest().await?;
        let state = State {
            manifest,
            buffers: Default::default(),
        };
        Ok(Store::read_only_view(
            StoreConfig {
                storage: storage.clone(),
                ..Default::default()
            },
            PathBuf::from(remote.prefix()),
            state,
            Some(Arc::new(remote)),
        ))
    }

    /// A store that only reads: from `data_dir`'s files, or with `bucket`
    /// from the bucket itself (`data_dir` is then the prefix inside it).
    fn read_only_view(
        config: StoreConfig,
        data_dir: PathBuf,
        state: State,
        bucket: Option<Arc<crate::remote::Remote>>,
    ) -> Store {
        Store {
            inner: Arc::new(Inner {
                config,
                read_only: true,
                wal_dir: data_dir.join("wal"),
                quarantine_dir: data_dir.join("quarantine"),
                data_dir,
                wal_tx: Mutex::new(None),
                wal_thread: Mutex::new(None),
                state: Arc::new(RwLock::new(state)),
                commit: tokio::sync::Mutex::new(()),
                compacting: tokio::sync::Mutex::new(()),
                reserved: AtomicUsize::new(0),
                flush_wanted: Notify::new(),
                metrics: Arc::new(StoreMetrics::default()),
                pending_deletes: Mutex::new(Vec::new()),
                orphans: Default::default(),
                derived_dirty: AtomicBool::new(false),
                bucket_only: bucket.is_some(),
                #[cfg(feature = "sql")]
                runtime: Default::default(),
                cluster: Default::default(),
                remote: bucket,
            }),
        }
    }
}

/// File paths handed to the query engine must be absolute and free of `.`
/// and `..` (a relative `./data` would become an object-store path that does
/// not exist). A directory that does not exist yet is made absolute
/// lexically; `open` creates it and canonicalises again.
pub(super) fn absolute_data_dir(mut config: StoreConfig) -> Result<StoreConfig> {
    config.data_dir = match std::fs::canonicalize(&config.data_dir) {
        Ok(p) => p,
        Err(_) => {
            std::path::absolute(&config.data_dir).map_err(|e| Error::io(&config.data_dir, e))?
        }
    };
    Ok(config)
}

/// Replays the WAL (records after `flushed_lsn`) into fresh buffers.
pub(super) fn replay_into_buffers(
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

/// Deletes Parquet and temp files under the table directories that the
/// manifest does not name: leftovers of interrupted flushes or compactions,
/// and temp files of manifest writes.
pub(super) fn remove_orphans(data_dir: &Path, manifest: &Manifest) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(data_dir) {
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("manifest.json.") && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    for table in Table::ALL {
        let live: std::collections::HashSet<&str> = manifest
            .files(table)
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        let (files, _) = crate::fsutil::walk(&data_dir.join(table.name()), data_dir);
        for (path, rel) in files {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let ours = name.ends_with(".parquet") || name.ends_with(".tmp");
            if ours && !live.contains(rel.as_str()) {
                tracing::info!(file = %path.display(), "removing a file left by an interrupted flush or compaction");
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
    }
    Ok(())
}
