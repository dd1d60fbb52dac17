//! Background scheduling: the flusher and the compaction, retention and scrub cron jobs; closing.

use super::*;

impl Store {
    /// Starts the background tasks: the flusher, and compaction and retention
    /// on their cron schedules. They stop when `shutdown` is cancelled; the
    /// flusher flushes once more on the way out.
    pub async fn spawn_background(
        &self,
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<()> {
        if self.inner.read_only {
            // A query node only keeps its view of the cluster current.
            if let Some(cluster) = self.cluster() {
                tracker.spawn(cluster.clone().run(self.clone(), shutdown));
            }
            return Ok(());
        }
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
        let schedule = &self.inner.config.compaction_schedule;
        let mut jobs = vec![match self.inner.config.role {
            StoreRole::Single => {
                cron_job(schedule, Job::Compaction, self.clone(), |s| async move {
                    s.compact(now_ns()).await
                })?
            }
            StoreRole::Ingest => {
                cron_job(schedule, Job::Tombstones, self.clone(), |s| async move {
                    s.apply_tombstones().await
                })?
            }
            StoreRole::Compactor => cron_job(
                schedule,
                Job::ClusterCompaction,
                self.clone(),
                |s| async move { s.compact_cluster(now_ns()).await },
            )?,
        }];
        if self.inner.config.role == StoreRole::Single {
            jobs.push(cron_job(
                &self.inner.config.retention_schedule,
                Job::Retention,
                self.clone(),
                |s| async move { s.apply_retention(now_ns()).await },
            )?);
        }
        jobs.push(cron_job(
            &self.inner.config.scrub_schedule,
            Job::Scrub,
            self.clone(),
            |s| async move { s.scrub().await },
        )?);
        for job in jobs {
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
        self.spawn_lease_renewal(shutdown.clone(), tracker);
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
        if let Err(e) = self.persist_derived().await {
            tracing::warn!(error = %e, "could not write the manifest listing derived files");
        }
        let tx = lock(&self.inner.wal_tx).take();
        drop(tx);
        let handle = lock(&self.inner.wal_thread).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        self.delete_expired_pending(true);
        if let Some(remote) = &self.inner.remote {
            // Only after a clean flush: with rows left in the WAL, the lease
            // keeps the id until it runs out.
            if flushed.is_ok() {
                remote.release_lease().await;
            }
        }
        flushed.map(|_| ())
    }
}

/// A cron job running `run` on the store; failures are logged and retried
/// at the next tick. A tick that comes while the job's previous run is
/// still going is skipped (and logged), so slow runs never pile up.
pub(super) fn cron_job<F, Fut>(
    schedule: &str,
    job: Job,
    store: Store,
    run: F,
) -> Result<tokio_cron_scheduler::Job>
where
    F: Fn(Store) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64>> + Send + 'static,
{
    let running = Arc::new(AtomicBool::new(false));
    let what = job.what();
    tokio_cron_scheduler::Job::new_async(schedule, move |_id, _l| {
        let Some(claimed) = Running::claim(&running) else {
            store.inner.metrics.ticks_skipped[job as usize].fetch_add(1, Ordering::Relaxed);
            tracing::info!("{what} still running from an earlier tick; this tick skipped");
            return Box::pin(async {});
        };
        let fut = run(store.clone());
        Box::pin(async move {
            let _claimed = claimed;
            if let Err(e) = fut.await {
                tracing::warn!(error = %e, "{what} failed; will retry on schedule");
            }
        })
    })
    .map_err(|e| Error::Internal(format!("bad {what}_schedule {schedule:?}: {e}")))
}

/// A cron job's run in progress; dropping it (done, failed or cancelled)
/// lets the next tick run.
struct Running(Arc<AtomicBool>);

impl Running {
    fn claim(flag: &Arc<AtomicBool>) -> Option<Running> {
        (!flag.swap(true, Ordering::AcqRel)).then(|| Running(flag.clone()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job slower than its schedule never runs twice at once: the ticks
    /// that come while it runs are skipped.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tick_during_a_run_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        })
        .await
        .unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        let job = {
            let (running, most, runs) = (running.clone(), most.clone(), runs.clone());
            cron_job("* * * * * *", Job::Scrub, store.clone(), move |_s| {
                let (running, most, runs) = (running.clone(), most.clone(), runs.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(0)
                }
            })
            .unwrap()
        };
        let mut scheduler = tokio_cron_scheduler::JobScheduler::new().await.unwrap();
        scheduler.add(job).await.unwrap();
        scheduler.start().await.unwrap();
        tokio::time::sleep(Duration::from_millis(6500)).await;
        scheduler.shutdown().await.unwrap();
        let runs = runs.load(Ordering::SeqCst);
        // Six or seven ticks; a run takes 2.5 s, so at most three started.
        assert!((1..=3).contains(&runs), "{runs} runs started");
        assert_eq!(most.load(Ordering::SeqCst), 1, "runs overlapped");
        let skipped = store.metrics().ticks_skipped[Job::Scrub as usize].load(Ordering::SeqCst);
        assert!(skipped >= 2, "{skipped} ticks counted as skipped");
        store.close().await.unwrap();
    }
}
