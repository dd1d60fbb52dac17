//! The store's Prometheus exposition.

use super::*;

impl Store {
    /// Appends the store's Prometheus text exposition (WAL, buffers, files).
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let m = &self.inner.metrics;
        let st = self.stats();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "burnwatch_wal_syncs_total",
            "WAL group commits (one fdatasync each).",
            c(&m.wal_syncs),
        );
        counter(
            "burnwatch_wal_records_total",
            "Records written to the WAL.",
            c(&m.wal_records),
        );
        counter(
            "burnwatch_wal_sync_microseconds_total",
            "Microseconds spent writing and syncing the WAL.",
            c(&m.wal_sync_micros),
        );
        counter(
            "burnwatch_store_writes_overloaded_total",
            "Writes refused because the buffers were full.",
            c(&m.writes_overloaded),
        );
        counter(
            "burnwatch_store_writes_disk_full_total",
            "Writes refused because the disk was full.",
            c(&m.writes_disk_full),
        );
        counter(
            "burnwatch_store_flushes_total",
            "Flushes of buffered rows to Parquet.",
            c(&m.flushes),
        );
        counter(
            "burnwatch_store_flush_errors_total",
            "Flushes that failed (rows stay in the WAL and memory).",
            c(&m.flush_errors),
        );
        counter(
            "burnwatch_store_files_flushed_total",
            "Parquet files written by flushes.",
            c(&m.files_flushed),
        );
        counter(
            "burnwatch_store_compactions_total",
            "Compacted output files written.",
            c(&m.compactions),
        );
        counter(
            "burnwatch_store_files_expired_total",
            "Files removed by retention.",
            c(&m.files_expired),
        );
        counter(
            "burnwatch_store_wal_corrupt_segments_total",
            "WAL segments with a torn or corrupt tail found at start-up.",
            c(&m.wal_corrupt_segments),
        );
        counter(
            "burnwatch_store_files_quarantined_total",
            "Damaged files moved to quarantine.",
            c(&m.files_quarantined),
        );
        counter(
            "burnwatch_store_derived_files_written_total",
            "Derived files (rollups, trace-id filters) written.",
            c(&m.derived_written),
        );
        counter(
            "burnwatch_store_derived_files_quarantined_total",
            "Derived files found damaged and moved to quarantine (computed again).",
            c(&m.derived_quarantined),
        );
        counter(
            "burnwatch_store_derived_files_removed_total",
            "Derived files removed because what they were derived for was removed.",
            c(&m.derived_removed),
        );
        counter(
            "burnwatch_store_files_verified_total",
            "Live Parquet files whose checksum the scrub or compaction checked.",
            c(&m.files_verified),
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_store_buffered_bytes Bytes of acknowledged rows in memory.\n# TYPE burnwatch_store_buffered_bytes gauge\nburnwatch_store_buffered_bytes {}",
            st.buffered_bytes
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_store_buffer_limit_bytes Buffer limit; writes past it are refused.\n# TYPE burnwatch_store_buffer_limit_bytes gauge\nburnwatch_store_buffer_limit_bytes {}",
            st.max_buffer_bytes
        );
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
        for (name, help, values) in gauges {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (t, v) in Table::ALL.iter().zip(values) {
                let _ = writeln!(out, "{name}{{table=\"{}\"}} {v}", t.name());
            }
        }
    }
}
