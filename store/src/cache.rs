//! A size-capped cache on local disk of small objects read from the bucket
//! (derived files: rollups, trace-id filters), for nodes that read from the
//! bucket. Least recently used entries go first when it is over its cap.
//! It starts empty: everything in it can be read again from the bucket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The cache. Entries are keyed by their path relative to the bucket prefix.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    cap: u64,
    index: Mutex<Index>,
    /// Reads answered from the cache.
    pub hits: AtomicU64,
    /// Reads that went to the bucket.
    pub misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Index {
    /// Bytes and last use of every entry.
    entries: HashMap<String, (u64, u64)>,
    total: u64,
    clock: u64,
}

impl DiskCache {
    /// A cache in `dir` (emptied first) holding at most `cap` bytes.
    pub fn new(dir: PathBuf, cap: u64) -> std::io::Result<DiskCache> {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&dir)?;
        Ok(DiskCache {
            dir,
            cap,
            index: Mutex::new(Index::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.index.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// The cached bytes of `rel`, if present.
    pub fn get(&self, rel: &str) -> Option<Vec<u8>> {
        {
            let mut ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
            ix.clock += 1;
            let now = ix.clock;
            match ix.entries.get_mut(rel) {
                Some(e) => e.1 = now,
                None => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
        }
        match std::fs::read(self.file(rel)) {
            Ok(b) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(b)
            }
            Err(_) => {
                self.forget(rel);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Drops `rel` (e.g. its bytes did not match the checksum).
    pub fn forget(&self, rel: &str) {
        let mut ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bytes, _)) = ix.entries.remove(rel) {
            ix.total -= bytes;
            let _ = std::fs::remove_file(self.file(rel));
        }
    }

    /// Keeps `bytes` as `rel`, evicting the least recently used entries
    /// past the cap. An entry larger than the whole cap is not kept.
    pub fn put(&self, rel: &str, bytes: &[u8]) {
        let len = bytes.len() as u64;
        if len > self.cap {
            return;
        }
        let path = self.file(rel);
        if !write_file(&path, bytes) {
            return;
        }
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rel, len, self.cap, &self.dir);
    }
}

impl Index {
    /// Records `key` (`len` bytes, its file under `dir`) as just used, then
    /// removes the least recently used other entries and their files while
    /// over `cap`.
    fn insert(&mut self, key: &str, len: u64, cap: u64, dir: &Path) {
        self.clock += 1;
        let now = self.clock;
        if let Some((old, _)) = self.entries.insert(key.to_string(), (len, now)) {
            self.total -= old;
        }
        self.total += len;
        while self.total > cap {
            let Some(victim) = self
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != key)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((b, _)) = self.entries.remove(&victim) {
                self.total -= b;
                let _ = std::fs::remove_file(dir.join(&victim));
            }
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let tmp = path.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
    if std::fs::write(&tmp, bytes).is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_data_file_is_fetched_once_and_then_read_locally() {
        use object_store::{ObjectStore, ObjectStoreExt as _};
        let bucket_dir = tempfile::tempdir().unwrap();
        let counts = std::sync::Arc::new(crate::remote::Counts::default());
        let bucket: std::sync::Arc<dyn ObjectStore> =
            std::sync::Arc::new(crate::remote::counted::Counted::new(
                std::sync::Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(bucket_dir.path())
                        .unwrap(),
                ),
                counts.clone(),
            ));
        let a = object_store::path::Path::from("p/spans/a.parquet");
        let b = object_store::path::Path::from("p/spans/b.parquet");
        let m = object_store::path::Path::from("p/manifests/n/1.json");
        bucket.put(&a, vec![1u8; 60].into()).await.unwrap();
        bucket.put(&b, vec![2u8; 60].into()).await.unwrap();
        bucket.put(&m, vec![3u8; 10].into()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::new(bucket.clone(), dir.path().join("files"), 100).unwrap();
        let gets = || counts.snapshot().gets;
        let before = gets();
        let r = cache.get_ranges(&a, &[0..4, 50..60]).await.unwrap();
        assert_eq!((r[0].len(), r[1].len()), (4, 10));
        assert_eq!(gets() - before, 1, "one GET of the whole file");
        let r = cache.get_range(&a, 10..20).await.unwrap();
        assert_eq!(&r[..], &[1u8; 10]);
        assert_eq!(gets() - before, 1, "then read locally");
        assert_eq!(cache.bytes(), 60);
        // Over the cap, the least recently used file goes.
        cache.get_range(&b, 0..1).await.unwrap();
        assert_eq!(cache.bytes(), 60);
        assert!(!dir.path().join("files/p/spans/a.parquet").exists());
        // Not a data file: always the bucket.
        cache.get_range(&m, 0..1).await.unwrap();
        cache.get_range(&m, 0..1).await.unwrap();
        assert_eq!(gets() - before, 4);
    }

    #[test]
    fn keeps_recently_used_entries_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::new(dir.path().join("cache"), 100).unwrap();
        c.put("a/1", &[1; 40]);
        c.put("a/2", &[2; 40]);
        assert_eq!(c.get("a/1").unwrap(), vec![1; 40]);
        c.put("a/3", &[3; 40]);
        // a/2 was used least recently and goes first.
        assert!(c.get("a/2").is_none());
        assert_eq!(c.get("a/1").unwrap(), vec![1; 40]);
        assert_eq!(c.get("a/3").unwrap(), vec![3; 40]);
        assert_eq!(c.bytes(), 80);
        assert!(!dir.path().join("cache/a/2").exists());
        c.put("big", &[0; 101]);
        assert!(c.get("big").is_none());
        assert_eq!(c.hits.load(Ordering::Relaxed), 3);
    }
}

/// An object store over the bucket that keeps whole Parquet files on local
/// disk once a query reads them (size-capped, least recently used out
/// first): a cold read fetches the file with one GET, warm reads go to the
/// local copy. Everything else passes through. Files in the bucket never
/// change (names are unique), so a copy never goes stale.
#[derive(Debug)]
pub struct FileCache {
    inner: std::sync::Arc<dyn object_store::ObjectStore>,
    local: object_store::local::LocalFileSystem,
    dir: PathBuf,
    cap: u64,
    index: Mutex<Index>,
    fetching: Mutex<std::collections::HashSet<String>>,
    /// Reads answered from a local copy.
    pub hits: AtomicU64,
    /// Files fetched whole from the bucket.
    pub fetched: AtomicU64,
}

impl std::fmt::Display for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileCache({}, {})", self.inner, self.dir.display())
    }
}

impl FileCache {
    /// A cache of at most `cap` bytes in `dir` (emptied first) over `inner`.
    pub fn new(
        inner: std::sync::Arc<dyn object_store::ObjectStore>,
        dir: PathBuf,
        cap: u64,
    ) -> std::io::Result<FileCache> {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&dir)?;
        let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(std::io::Error::other)?;
        Ok(FileCache {
            inner,
            local,
            dir,
            cap,
            index: Mutex::new(Index::default()),
            fetching: Mutex::new(Default::default()),
            hits: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
        })
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.index.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    fn touch(&self, key: &str) -> bool {
        let mut ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
        ix.clock += 1;
        let now = ix.clock;
        match ix.entries.get_mut(key) {
            Some(e) => {
                e.1 = now;
                true
            }
            None => false,
        }
    }

    fn forget(&self, key: &str) {
        let mut ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((b, _)) = ix.entries.remove(key) {
            ix.total -= b;
            let _ = std::fs::remove_file(self.dir.join(key));
        }
    }

    /// Only data files: derived files have their own cache, manifests and
    /// leases change.
    fn wanted(key: &str) -> bool {
        key.ends_with(".parquet")
            && !key.contains(&format!("/{}/", crate::files::DERIVED_DIR))
            && !key.starts_with(&format!("{}/", crate::files::DERIVED_DIR))
    }

    /// Fetches `location` whole into the cache. `false` when it is not
    /// kept (too large, being fetched by another reader, or the fetch
    /// failed): the caller reads the bucket.
    async fn fetch(&self, location: &object_store::path::Path) -> bool {
        use futures::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let key = location.as_ref().to_string();
        if !self
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone())
        {
            return false;
        }
        let target = self.dir.join(&key);
        let tmp = target.with_extension(format!("{}.tmp", uuid::Uuid::new_v4().simple()));
        let result: std::result::Result<u64, String> = async {
            let got = self
                .inner
                .get_opts(location, Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let size = got.meta.size;
            if size > self.cap {
                return Err("larger than the cache".into());
            }
            if let Some(d) = target.parent() {
                tokio::fs::create_dir_all(d)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| e.to_string())?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| e.to_string())?;
                f.write_all(&chunk).await.map_err(|e| e.to_string())?;
            }
            f.flush().await.map_err(|e| e.to_string())?;
            tokio::fs::rename(&tmp, &target)
                .await
                .map_err(|e| e.to_string())?;
            Ok(size)
        }
        .await;
        self.fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        match result {
            Ok(size) => {
                self.fetched.fetch_add(1, Ordering::Relaxed);
                // A reader that has an evicted file open keeps reading it.
                self.index
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(&key, size, self.cap, &self.dir);
                true
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                tracing::debug!(file = %key, error = %e, "not cached");
                false
            }
        }
    }

    /// Whether `location` can be read from the local copy (fetching it
    /// first when it is a data file not cached yet).
    async fn local_copy(&self, location: &object_store::path::Path) -> bool {
        let key = location.as_ref();
        if self.touch(key) {
            return true;
        }
        Self::wanted(key) && self.fetch(location).await
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for FileCache {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        if self.local_copy(location).await {
            match self.local.get_opts(location, options.clone()).await {
                Ok(r) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(r);
                }
                Err(_) => self.forget(location.as_ref()),
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &object_store::path::Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        if self.local_copy(location).await {
            match self.local.get_ranges(location, ranges).await {
                Ok(r) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(r);
                }
                Err(_) => self.forget(location.as_ref()),
            }
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
