//! Files derived from live files: RED rollups, trace-id filters, SLI
//! rollups. Whoever computes them hands the bytes to the store, which keeps
//! them under `rollups/<kind>/<file path>` with one atomic write (temp file,
//! fsync, rename, directory fsync), lists them in the manifest beside the
//! file they belong to with their size and CRC-32, checks both on every
//! read and in the scrub (a damaged one goes to quarantine and is computed
//! again by its owner), and removes them with their file (compaction,
//! retention, quarantine).
//!
//! Listing a derived file changes the manifest in memory; it reaches disk
//! with the next manifest write (flush, compaction, retention, close). A
//! derived file written but not yet listed on disk when the process dies is
//! removed at the next start as an orphan and computed again: derived data
//! is never the only copy of anything.
//!
//! With a bucket, a derived file is uploaded before it is listed, and the
//! next manifest version lists it.

use super::*;
use crate::files::{DERIVED_DIR, DerivedMeta, derived_rel_path};
use crate::fsutil::{create_dir_durable, write_atomic};

/// Checks a kind: one or more `/`-separated segments of lowercase letters,
/// digits, `-` and `_` (`red-v1`, `sli-v1/0123abcd`).
fn check_kind(kind: &str) -> Result<()> {
    let ok = !kind.is_empty()
        && kind.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Internal(format!(
            "derived kind {kind:?} is not `/`-separated segments of [a-z0-9_-]"
        )))
    }
}

impl Store {
    /// Where the derived file of `kind` for the live file `file` (a path
    /// relative to the data directory, as in [`FileMeta::path`]) is kept.
    pub fn derived_path(&self, kind: &str, file: &str) -> PathBuf {
        self.inner.data_dir.join(derived_rel_path(kind, file))
    }

    /// Whether a derived file of `kind` is listed for `file`.
    pub fn has_derived(&self, kind: &str, file: &str) -> bool {
        self.derived_meta(kind, file).is_some()
    }

    fn derived_meta(&self, kind: &str, file: &str) -> Option<DerivedMeta> {
        read(&self.inner.state)
            .manifest
            .derived
            .get(file)
            .and_then(|k| k.get(kind))
            .copied()
    }

    /// Keeps `bytes` as the derived file of `kind` for the live file `file`,
    /// replacing any earlier one. Returns `false`, keeping nothing, when
    /// `file` is no longer live (compaction or retention removed it while
    /// the caller computed).
    pub async fn write_derived(&self, kind: &str, file: &str, bytes: Vec<u8>) -> Result<bool> {
        self.writable()?;
        check_kind(kind)?;
        if !read(&self.inner.state).manifest.is_live(file) {
            return Ok(false);
        }
        let meta = DerivedMeta {
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        };
        let path = self.derived_path(kind, file);
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            create_dir_durable(p.parent().expect("a derived path has a parent"))?;
            write_atomic(&p, &bytes)
        })
        .await
        .map_err(|e| Error::Internal(format!("derived write task failed: {e}")))??;
        if let Some(remote) = &self.inner.remote {
            let rel = derived_rel_path(kind, file);
            if let Err(e) = remote.upload(path.clone(), &rel).await {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        }
        let _commit = self.inner.commit.lock().await;
        let mut s = write(&self.inner.state);
        if !s.manifest.is_live(file) {
            drop(s);
            let _ = std::fs::remove_file(&path);
            return Ok(false);
        }
        s.manifest
            .derived
            .entry(file.to_string())
            .or_default()
            .insert(kind.to_string(), meta);
        self.inner.derived_dirty.store(true, Ordering::Release);
        self.inner
            .metrics
            .derived_written
            .fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// The derived file of `kind` for `file`: `None` when there is none;
    /// [`Error::Corrupt`] when its size or checksum is not what was written
    /// (it is then moved to quarantine and unlisted, so the caller computes
    /// it again).
    pub async fn read_derived(&self, kind: &str, file: &str) -> Result<Option<Vec<u8>>> {
        let Some(meta) = self.derived_meta(kind, file) else {
            return Ok(None);
        };
        if let Some(remote) = self.read_from_bucket() {
            return self
                .read_derived_from_bucket(remote, kind, file, meta)
                .await;
        }
        let path = self.derived_path(kind, file);
        let p = path.clone();
        let read_result = tokio::task::spawn_blocking(move || std::fs::read(&p))
            .await
            .map_err(|e| Error::Internal(format!("derived read task failed: {e}")))?;
        let problem = match read_result {
            Ok(bytes) if bytes.len() as u64 != meta.bytes => {
                format!("{} bytes, {} were written", bytes.len(), meta.bytes)
            }
            Ok(bytes) => match crc32fast::hash(&bytes) {
                crc if crc == meta.crc32 => return Ok(Some(bytes)),
                crc => format!(
                    "checksum {crc:08x} does not match {:08x} recorded when it was written",
                    meta.crc32
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => "it is missing".to_string(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        self.quarantine_derived(kind, file, meta, &problem).await?;
        Err(Error::Corrupt {
            path,
            reason: problem,
        })
    }

    /// A derived file of a store that reads from the bucket: from the
    /// node's cache when it holds it, else from the bucket (then cached).
    /// Bytes that do not match what was written are an error and are not
    /// cached; the caller computes the data itself.
    async fn read_derived_from_bucket(
        &self,
        remote: &Arc<crate::remote::Remote>,
        kind: &str,
        file: &str,
        meta: DerivedMeta,
    ) -> Result<Option<Vec<u8>>> {
        let rel = derived_rel_path(kind, file);
        let cache = self.cluster().map(|c| &c.cache);
        let matches = |b: &[u8]| b.len() as u64 == meta.bytes && crc32fast::hash(b) == meta.crc32;
        if let Some(c) = cache
            && let Some(bytes) = c.get(&rel)
        {
            if matches(&bytes) {
                return Ok(Some(bytes));
            }
            c.forget(&rel);
        }
        let Some(bytes) = remote.get_bytes(&rel).await? else {
            return Ok(None);
        };
        if !matches(&bytes) {
            return Err(Error::Corrupt {
                path: PathBuf::from(rel),
                reason: format!(
                    "{} bytes with checksum {:08x} in the bucket; {} bytes with checksum {:08x} were written",
                    bytes.len(),
                    crc32fast::hash(&bytes),
                    meta.bytes,
                    meta.crc32
                ),
            });
        }
        if let Some(c) = cache {
            c.put(&rel, &bytes);
        }
        Ok(Some(bytes.to_vec()))
    }

    /// For the owner of a derived file that it read but cannot use (it does
    /// not decode): moves it to quarantine and unlists it like a damaged
    /// one, so the owner computes it again.
    pub async fn reject_derived(&self, kind: &str, file: &str, problem: &str) -> Result<()> {
        match self.derived_meta(kind, file) {
            Some(meta) => self.quarantine_derived(kind, file, meta, problem).await,
            None => Ok(()),
        }
    }

    /// Unlists a damaged derived file (if it is still the one listed) and
    /// moves it to quarantine. A read-only store only reports it.
    async fn quarantine_derived(
        &self,
        kind: &str,
        file: &str,
        meta: DerivedMeta,
        problem: &str,
    ) -> Result<()> {
        if self.inner.read_only {
            return Ok(());
        }
        let _commit = self.inner.commit.lock().await;
        {
            let mut s = write(&self.inner.state);
            let Some(kinds) = s.manifest.derived.get_mut(file) else {
                return Ok(());
            };
            if kinds.get(kind) != Some(&meta) {
                return Ok(());
            }
            kinds.remove(kind);
            if kinds.is_empty() {
                s.manifest.derived.remove(file);
            }
        }
        self.inner.derived_dirty.store(true, Ordering::Release);
        let path = self.derived_path(kind, file);
        tracing::warn!(
            file = %path.display(),
            problem,
            quarantine = %self.inner.quarantine_dir.display(),
            "derived file is damaged; moving it to quarantine. It will be computed again"
        );
        quarantine_file(&self.inner.quarantine_dir, &path);
        self.inner
            .metrics
            .derived_quarantined
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes every derived file whose kind is under `root` (a kind, or
    /// its first segments: `sli-v1`) and for which `keep(kind)` is false,
    /// e.g. the rollups of an SLI that no longer exists. Returns how many
    /// were removed.
    pub async fn remove_derived(&self, root: &str, keep: impl Fn(&str) -> bool) -> Result<u64> {
        self.writable()?;
        check_kind(root)?;
        let under = |k: &str| k == root || k.strip_prefix(root).is_some_and(|r| r.starts_with('/'));
        let removed: Vec<String> = {
            let _commit = self.inner.commit.lock().await;
            let mut s = write(&self.inner.state);
            let mut removed = Vec::new();
            s.manifest.derived.retain(|file, kinds| {
                kinds.retain(|kind, _| {
                    let go = under(kind) && !keep(kind);
                    if go {
                        removed.push(derived_rel_path(kind, file));
                    }
                    !go
                });
                !kinds.is_empty()
            });
            if !removed.is_empty() {
                self.inner.derived_dirty.store(true, Ordering::Release);
            }
            removed
        };
        let n = removed.len() as u64;
        let data_dir = self.inner.data_dir.clone();
        self.delete_remote(&removed.iter().map(|r| data_dir.join(r)).collect::<Vec<_>>());
        let stop = data_dir
            .join(DERIVED_DIR)
            .join(root.split('/').next().unwrap_or(root));
        tokio::task::spawn_blocking(move || {
            for rel in removed {
                remove_and_prune(&data_dir.join(rel), &stop);
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("derived removal task failed: {e}")))?;
        self.inner
            .metrics
            .derived_removed
            .fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Checks every listed derived file's size and checksum; damaged ones
    /// go to quarantine. Returns how many were moved.
    pub(super) async fn scrub_derived(&self) -> Result<u64> {
        let listed: Vec<(String, String, DerivedMeta)> = read(&self.inner.state)
            .manifest
            .derived
            .iter()
            .flat_map(|(file, kinds)| {
                kinds
                    .iter()
                    .map(move |(kind, meta)| (kind.clone(), file.clone(), *meta))
            })
            .collect();
        let mut moved = 0;
        for (kind, file, _) in listed {
            if let Err(Error::Corrupt { .. }) = self.read_derived(&kind, &file).await {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Writes the manifest if derived files were listed or unlisted since
    /// it was last written.
    pub(super) async fn persist_derived(&self) -> Result<()> {
        if self.inner.read_only || !self.inner.derived_dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        let _commit = self.inner.commit.lock().await;
        let manifest = read(&self.inner.state).manifest.clone();
        self.install_manifest(manifest, &[]).await
    }
}

/// Deletes `path` and then its parent directories while they are empty,
/// up to (not including) `stop`.
fn remove_and_prune(path: &Path, stop: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "could not delete a derived file");
    }
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Deletes files under `<data>/rollups/` that the manifest does not list:
/// derived files written but not listed before the process stopped, temp
/// files, and files of layouts no longer used. Unlists derived files that
/// are missing. Returns whether the listing changed.
pub(super) fn remove_derived_orphans(data_dir: &Path, manifest: &mut Manifest) -> Result<bool> {
    let mut listed = std::collections::HashSet::new();
    let mut missing = Vec::new();
    for (file, kinds) in &manifest.derived {
        for kind in kinds.keys() {
            let rel = derived_rel_path(kind, file);
            if data_dir.join(&rel).is_file() {
                listed.insert(rel);
            } else {
                missing.push((file.clone(), kind.clone()));
            }
        }
    }
    let changed = !missing.is_empty();
    for (file, kind) in missing {
        if let Some(kinds) = manifest.derived.get_mut(&file) {
            kinds.remove(&kind);
            if kinds.is_empty() {
                manifest.derived.remove(&file);
            }
        }
    }
    let (files, dirs) = crate::fsutil::walk(&data_dir.join(DERIVED_DIR), data_dir);
    for (path, rel) in files {
        if !listed.contains(&rel) {
            tracing::debug!(file = %path.display(), "removing an unlisted derived file");
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    // Deepest first, so emptied parents go too.
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
    Ok(changed)
}
