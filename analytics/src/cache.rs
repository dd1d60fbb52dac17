//! A memory cache of per-file derived data (RED rollups, trace-id filters),
//! keyed by the data file's path, bounded by bytes, evicting the least
//! recently used entry first (the newest entry always stays).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Reports `counters` (name, help, value) to `/metrics`.
pub fn collect_counters(
    out: &mut exposition::Out<'_>,
    counters: &[(&str, &str, &std::sync::atomic::AtomicU64)],
) -> std::fmt::Result {
    for (name, help, v) in counters {
        out.counter(name, help, v.load(std::sync::atomic::Ordering::Relaxed))?;
    }
    Ok(())
}

/// Something whose memory the cache counts.
pub trait Weigh {
    /// Bytes held.
    fn weight(&self) -> usize;
}

struct Inner<V> {
    entries: HashMap<PathBuf, (Arc<V>, u64)>,
    bytes: usize,
    tick: u64,
}

/// The cache; safe to share between tasks.
pub struct FileCache<V> {
    budget: usize,
    inner: Mutex<Inner<V>>,
}

impl<V: Weigh> FileCache<V> {
    /// An empty cache of at most `budget` bytes.
    pub fn new(budget: usize) -> FileCache<V> {
        FileCache {
            budget,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                bytes: 0,
                tick: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `path`, marked as just used.
    pub fn get(&self, path: &Path) -> Option<Arc<V>> {
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        c.entries.get_mut(path).map(|e| {
            e.1 = tick;
            e.0.clone()
        })
    }

    /// Adds (or replaces) the entry of `path`, then evicts the least
    /// recently used others while over budget.
    pub fn insert(&self, path: PathBuf, value: Arc<V>) {
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        let bytes = value.weight();
        if let Some((old, _)) = c.entries.insert(path, (value, tick)) {
            c.bytes -= old.weight();
        }
        c.bytes += bytes;
        while c.bytes > self.budget && c.entries.len() > 1 {
            let Some(oldest) = c
                .entries
                .iter()
                .filter(|(_, (_, t))| *t != tick)
                .min_by_key(|(_, (_, t))| *t)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some((old, _)) = c.entries.remove(&oldest) {
                c.bytes -= old.weight();
            }
        }
    }

    /// Drops the entries of files not in `live`.
    pub fn retain_live(&self, live: &HashSet<&PathBuf>) {
        let mut c = self.lock();
        let gone: Vec<PathBuf> = c
            .entries
            .keys()
            .filter(|p| !live.contains(p))
            .cloned()
            .collect();
        for p in gone {
            if let Some((old, _)) = c.entries.remove(&p) {
                c.bytes -= old.weight();
            }
        }
    }

    /// Keeps only the entries whose path satisfies `keep`.
    pub fn retain(&self, keep: impl Fn(&Path) -> bool) {
        let mut c = self.lock();
        let gone: Vec<PathBuf> = c.entries.keys().filter(|p| !keep(p)).cloned().collect();
        for p in gone {
            if let Some((old, _)) = c.entries.remove(&p) {
                c.bytes -= old.weight();
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct B(usize);
    impl Weigh for B {
        fn weight(&self) -> usize {
            self.0
        }
    }

    #[test]
    fn evicts_the_least_recently_used_over_budget() {
        let c = FileCache::new(10);
        c.insert("a".into(), Arc::new(B(4)));
        c.insert("b".into(), Arc::new(B(4)));
        assert!(c.get(Path::new("a")).is_some()); // a is now newer than b
        c.insert("c".into(), Arc::new(B(4)));
        assert!(c.get(Path::new("b")).is_none());
        assert_eq!(c.bytes(), 8);
        // One entry larger than the budget stays on its own.
        c.insert("d".into(), Arc::new(B(50)));
        assert_eq!(c.bytes(), 50);
        let d = PathBuf::from("d");
        c.retain_live(&[&d].into_iter().collect());
        assert_eq!(c.bytes(), 50);
        c.retain_live(&HashSet::new());
        assert_eq!(c.bytes(), 0);
    }
}
