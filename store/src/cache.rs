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
        let mut ix = self.index.lock().unwrap_or_else(|p| p.into_inner());
        ix.clock += 1;
        let now = ix.clock;
        if let Some((old, _)) = ix.entries.insert(rel.to_string(), (len, now)) {
            ix.total -= old;
        }
        ix.total += len;
        while ix.total > self.cap {
            let Some(victim) = ix
                .entries
                .iter()
                .filter(|(k, _)| k.as_str() != rel)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((b, _)) = ix.entries.remove(&victim) {
                ix.total -= b;
                let _ = std::fs::remove_file(self.file(&victim));
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
