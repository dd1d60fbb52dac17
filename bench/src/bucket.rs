//! Queries through a bucket: the dataset uploaded to `storage.url` and read
//! the way a query node reads it (`Store::open_cluster`: Parquet from the
//! bucket, footers and page indexes in the metadata cache, derived files in
//! a disk cache), against the same dataset on local disk, in one run.

use std::path::Path;
use std::time::Instant;

use analytics::red::Window;
use analytics::rollup::Rollups;
use store::Store;

use crate::dataset::store_config;

/// Object-store requests made while `f` ran.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requests {
    /// GETs (whole objects and ranges).
    pub gets: u64,
    /// LISTs.
    pub lists: u64,
    /// PUTs.
    pub puts: u64,
}

fn requests(store: &Store) -> Requests {
    store
        .remote()
        .map(|r| {
            let c = r.counts().snapshot();
            Requests {
                gets: c.gets,
                lists: c.lists,
                puts: c.puts,
            }
        })
        .unwrap_or_default()
}

/// Hard-links the dataset's files into `to` (the manifest is copied), so
/// it can be uploaded under a fresh lineage without touching the dataset.
pub fn link_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let (src, dst) = (entry.path(), to.join(&name));
        let ty = entry.file_type()?;
        if ty.is_dir() {
            if name == "wal" || name == "quarantine" {
                continue;
            }
            std::fs::create_dir_all(&dst)?;
            link_copy(&src, &dst)?;
        } else if name == "manifest.json" || name.to_string_lossy().ends_with(".json") {
            std::fs::copy(&src, &dst)?;
        } else {
            std::fs::hard_link(&src, &dst).or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))?;
        }
    }
    Ok(())
}

/// Uploads the dataset in `data_dir` (with its rollups and trace-id
/// filters, computed first) to the bucket of `storage` as node `bench`.
/// Returns the upload time and the local copy uploaded (its `data`
/// directory has the same files and derived files as the bucket).
pub async fn upload(
    data_dir: &Path,
    storage: &store::StorageConfig,
) -> anyhow::Result<(f64, tempfile::TempDir)> {
    let tmp = tempfile::tempdir_in(data_dir.parent().unwrap_or(data_dir))?;
    let copy = tmp.path().join("data");
    std::fs::create_dir_all(&copy)?;
    link_copy(data_dir, &copy)?;
    // Derived files first, so the bucket gets them as a node would.
    let local = Store::open(store_config(&copy)).await?;
    let rollups = Rollups::new(local.clone(), analytics::rollup::DEFAULT_CACHE_BYTES);
    rollups.maintain().await?;
    rollups.traces.maintain().await?;
    local.close().await?;
    drop(rollups);
    drop(local);
    let t = Instant::now();
    let mut cfg = store_config(&copy);
    cfg.storage = storage.clone();
    let s = Store::open(cfg).await?;
    let secs = t.elapsed().as_secs_f64();
    s.close().await?;
    Ok((secs, tmp))
}

/// One measured query: cold (first run on a fresh store) and warm (median
/// of `runs` more), with the object-store requests of each.
pub struct Measured {
    /// First run, ms.
    pub cold_ms: f64,
    /// Median of the next runs, ms.
    pub warm_ms: f64,
    /// Requests of the first run.
    pub cold: Requests,
    /// Requests per run after it (mean).
    pub warm: Requests,
}

/// Runs `q` once on a fresh store (cold), then `runs` more times (warm).
pub async fn measure<F, Fut>(store: &Store, runs: usize, mut q: F) -> anyhow::Result<Measured>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let before = requests(store);
    let t = Instant::now();
    q().await?;
    let cold_ms = t.elapsed().as_secs_f64() * 1e3;
    let after_cold = requests(store);
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        q().await?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let end = requests(store);
    times.sort_by(f64::total_cmp);
    let n = runs.max(1) as u64;
    Ok(Measured {
        cold_ms,
        warm_ms: times.get(times.len() / 2).copied().unwrap_or(cold_ms),
        cold: Requests {
            gets: after_cold.gets - before.gets,
            lists: after_cold.lists - before.lists,
            puts: after_cold.puts - before.puts,
        },
        warm: Requests {
            gets: (end.gets - after_cold.gets) / n,
            lists: (end.lists - after_cold.lists) / n,
            puts: (end.puts - after_cold.puts) / n,
        },
    })
}

/// A query node's store over the bucket (no ingest peers), with its
/// caches in `cache_dir`.
pub async fn query_node(storage: &store::StorageConfig, cache_dir: &Path) -> anyhow::Result<Store> {
    let opts = store::cluster::ClusterOptions {
        ingest_peers: Vec::new(),
        refresh: std::time::Duration::from_secs(3600),
        peer_timeout: std::time::Duration::from_secs(1),
        cache_dir: cache_dir.to_path_buf(),
    };
    Ok(Store::open_cluster(storage, opts).await?)
}

/// The windows measured.
pub fn windows(end: i64) -> anyhow::Result<(Window, Window)> {
    Ok((
        Window::new(end - crate::dataset::HOUR, end)?,
        Window::new(end - crate::dataset::DAY, end)?,
    ))
}
