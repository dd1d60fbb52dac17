//! The store's metrics, reported to `/metrics`.

use super::*;

impl Store {
    /// Reports the store's metrics (WAL, buffers, files) to `/metrics`.
    pub fn collect_metrics(&self, out: &mut exposition::Out<'_>) -> std::fmt::Result {
        let m = &self.inner.metrics;
        let st = self.stats();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let counters = [
            (
                "burnwatch_wal_syncs_total",
                "WAL group commits (one fdatasync each).",
                c(&m.wal_syncs),
            ),
            (
                "burnwatch_wal_records_total",
                "Records written to the WAL.",
                c(&m.wal_records),
            ),
            (
                "burnwatch_wal_sync_microseconds_total",
                "Microseconds spent writing and syncing the WAL.",
                c(&m.wal_sync_micros),
            ),
            (
                "burnwatch_store_writes_overloaded_total",
                "Writes refused because the buffers were full.",
                c(&m.writes_overloaded),
            ),
            (
                "burnwatch_store_writes_disk_full_total",
                "Writes refused because the disk was full.",
                c(&m.writes_disk_full),
            ),
            (
                "burnwatch_store_flushes_total",
                "Flushes of buffered rows to Parquet.",
                c(&m.flushes),
            ),
            (
                "burnwatch_store_flush_errors_total",
                "Flushes that failed (rows stay in the WAL and memory).",
                c(&m.flush_errors),
            ),
            (
                "burnwatch_store_files_flushed_total",
                "Parquet files written by flushes.",
                c(&m.files_flushed),
            ),
            (
                "burnwatch_store_compactions_total",
                "Compacted output files written.",
                c(&m.compactions),
            ),
            (
                "burnwatch_store_files_expired_total",
                "Files removed by retention.",
                c(&m.files_expired),
            ),
            (
                "burnwatch_store_wal_corrupt_segments_total",
                "WAL segments with a torn or corrupt tail found at start-up.",
                c(&m.wal_corrupt_segments),
            ),
            (
                "burnwatch_store_files_quarantined_total",
                "Damaged files moved to quarantine.",
                c(&m.files_quarantined),
            ),
            (
                "burnwatch_store_derived_files_written_total",
                "Derived files (rollups, trace-id filters) written.",
                c(&m.derived_written),
            ),
            (
                "burnwatch_store_derived_files_quarantined_total",
                "Derived files found damaged and moved to quarantine (computed again).",
                c(&m.derived_quarantined),
            ),
            (
                "burnwatch_store_derived_files_removed_total",
                "Derived files removed because what they were derived for was removed.",
                c(&m.derived_removed),
            ),
            (
                "burnwatch_store_files_verified_total",
                "Live Parquet files whose checksum the scrub or compaction checked.",
                c(&m.files_verified),
            ),
        ];
        for (name, help, v) in counters {
            out.counter(name, help, v)?;
        }
        let jobs = Job::ALL.map(|j| [("job", j.label())]);
        out.counters(
            "burnwatch_store_ticks_skipped_total",
            "Scheduled runs skipped because the job's last run was still going (compaction slower than its schedule shows here).",
            jobs.iter()
                .zip(&m.ticks_skipped)
                .map(|(labels, n)| (&labels[..], c(n))),
        )?;
        if let Some(remote) = &self.inner.remote {
            let n = remote.counts();
            out.counters(
                "burnwatch_object_store_requests_total",
                "Requests to the bucket (storage.url), by operation.",
                [
                    (&[("op", "put")][..], c(&n.puts) + c(&n.multipart_puts)),
                    (&[("op", "get")][..], c(&n.gets)),
                    (&[("op", "list")][..], c(&n.lists)),
                    (&[("op", "delete")][..], c(&n.deletes)),
                ],
            )?;
            out.counter(
                "burnwatch_object_store_errors_total",
                "Requests to the bucket that failed (each is retried by its caller).",
                c(&n.errors),
            )?;
            out.counters(
                "burnwatch_object_store_bytes_total",
                "Bytes sent to and received from the bucket.",
                [
                    (&[("direction", "up")][..], c(&n.bytes_up)),
                    (&[("direction", "down")][..], c(&n.bytes_down)),
                ],
            )?;
        }
        if let Some(cl) = self.cluster() {
            let m = &cl.metrics;
            for (name, help, v) in [
                (
                    "burnwatch_cluster_refreshes_total",
                    "Refreshes of the query node's view of every node's data.",
                    c(&m.refreshes),
                ),
                (
                    "burnwatch_cluster_refresh_errors_total",
                    "Refreshes that failed (queries kept the previous view).",
                    c(&m.refresh_errors),
                ),
                (
                    "burnwatch_cluster_peer_errors_total",
                    "Requests for an ingest node's live rows that failed or timed out.",
                    c(&m.peer_errors),
                ),
                (
                    "burnwatch_cluster_live_rows_received_total",
                    "Rows not yet in the bucket received from ingest nodes.",
                    c(&m.live_rows_received),
                ),
            ] {
                out.counter(name, help, v)?;
            }
            out.gauge(
                "burnwatch_cluster_missing_nodes",
                "Ingest nodes that did not answer at the last refresh.",
                self.missing_nodes().len() as f64,
            )?;
            out.counters(
                "burnwatch_cache_requests_total",
                "Reads of derived files from the node's cache, by result.",
                [
                    (&[("result", "hit")][..], c(&cl.cache.hits)),
                    (&[("result", "miss")][..], c(&cl.cache.misses)),
                ],
            )?;
            out.gauge(
                "burnwatch_cache_bytes",
                "Bytes of derived files in the node's cache.",
                cl.cache.bytes() as f64,
            )?;
            if let Some(f) = &cl.files {
                out.counters(
                    "burnwatch_file_cache_requests_total",
                    "Reads of data files through the node's file cache: from a local copy, or a whole file fetched from the bucket.",
                    [
                        (&[("result", "hit")][..], c(&f.hits)),
                        (&[("result", "fetched")][..], c(&f.fetched)),
                    ],
                )?;
                out.gauge(
                    "burnwatch_file_cache_bytes",
                    "Bytes of data files in the node's file cache.",
                    f.bytes() as f64,
                )?;
            }
        }
        out.gauge(
            "burnwatch_store_buffered_bytes",
            "Bytes of acknowledged rows in memory.",
            st.buffered_bytes as f64,
        )?;
        // The query engine's cache of Parquet footers and page indexes
        // (bounded by its limit; empty until the first query).
        #[cfg(feature = "sql")]
        {
            let used: usize = self.runtime_cell().get().map_or(0, |runtime| {
                let cache = runtime.cache_manager.get_file_metadata_cache();
                cache.list_entries().values().map(|e| e.size_bytes).sum()
            });
            out.gauge(
                "burnwatch_query_metadata_cache_bytes",
                "Bytes of Parquet footers and page indexes the query engine holds.",
                used as f64,
            )?;
            out.gauge(
                "burnwatch_query_metadata_cache_limit_bytes",
                "Limit of the query engine's Parquet metadata cache.",
                self.metadata_cache_bytes() as f64,
            )?;
        }
        out.gauge(
            "burnwatch_store_buffer_limit_bytes",
            "Buffer limit; writes past it are refused.",
            st.max_buffer_bytes as f64,
        )?;
        let gauges: [(&str, &str, [u64; 3]); 5] = [
            (
                "burnwatch_store_rows_written_total",
                "Rows acknowledged.",
                [
                    c(&m.rows_written[0]),
                    c(&m.rows_written[1]),
                    c(&m.rows_written[2]),
                ],
            ),
            (
                "burnwatch_store_buffered_rows",
                "Rows in memory, not yet in Parquet.",
                st.buffered_rows,
            ),
            ("burnwatch_store_files", "Live Parquet files.", st.files),
            (
                "burnwatch_store_file_bytes",
                "Bytes in live Parquet files.",
                st.file_bytes,
            ),
            (
                "burnwatch_store_file_rows",
                "Rows in live Parquet files.",
                st.file_rows,
            ),
        ];
        let tables: Vec<[(&str, &str); 1]> =
            Table::ALL.iter().map(|t| [("table", t.name())]).collect();
        for (name, help, values) in gauges {
            let series = tables.iter().zip(values);
            if name.ends_with("_total") {
                out.counters(name, help, series.map(|(l, v)| (&l[..], v)))?;
            } else {
                out.gauges(name, help, series.map(|(l, v)| (&l[..], v as f64)))?;
            }
        }
        Ok(())
    }
}
