//! The process's own memory and descriptors for `/metrics`: resident
//! memory and open descriptors under Prometheus's standard names, and the
//! allocator's view (jemalloc's statistics), so that growth in resident
//! memory can be told apart: live allocations (`allocated`), pages the
//! allocator holds for them (`active`), its own bookkeeping (`metadata`),
//! memory it keeps mapped or retained for reuse, and what is resident.

/// Resident memory of this process, bytes (`VmRSS` in `/proc/self/status`).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Open file descriptors of this process (`/proc/self/fd`).
fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// Reports the figures that can be read; none is an error.
pub fn collect(out: &mut exposition::Out<'_>) -> std::fmt::Result {
    if let Some(rss) = resident_bytes() {
        out.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            rss as f64,
        )?;
    }
    if let Some(n) = open_fds() {
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            n as f64,
        )?;
    }
    use tikv_jemalloc_ctl::{epoch, stats};
    // The statistics are a snapshot taken at the last epoch advance.
    if epoch::advance().is_err() {
        return Ok(());
    }
    let figures = [
        ("allocated", stats::allocated::read()),
        ("active", stats::active::read()),
        ("metadata", stats::metadata::read()),
        ("resident", stats::resident::read()),
        ("mapped", stats::mapped::read()),
        ("retained", stats::retained::read()),
    ];
    let series: Vec<([(&str, &str); 1], f64)> = figures
        .iter()
        .filter_map(|(kind, v)| v.as_ref().ok().map(|v| ([("kind", *kind)], *v as f64)))
        .collect();
    out.gauges(
        "burnwatch_allocator_bytes",
        "The memory allocator's statistics (jemalloc): allocated = live allocations, active = pages holding them, metadata = the allocator's own, resident = resident pages it maps, mapped = pages in active extents, retained = virtual memory kept for reuse.",
        series.iter().map(|(l, v)| (&l[..], *v)),
    )
}
