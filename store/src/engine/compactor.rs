//! The compact role: merges the small files of every node into hourly
//! files and applies retention across the bucket; and, on ingest nodes,
//! letting go of files the compactor replaced.
//!
//! The compactor runs as node id [`COMPACTOR_NODE`], so the node lease is
//! the compaction lease: exactly one process compacts at a time. Its
//! manifest versions list the files it wrote, carry `tombstones` (per node,
//! the paths its files replace or retention removed) and `inputs` (the
//! version of every node it read). An ingest node drops the files
//! tombstoned for it from its own manifest (recording the compactor
//! version it applied in `applied`) and deletes them after the grace
//! period; the compactor forgets a tombstone once the owner no longer lists
//! the file. Readers remove tombstoned paths from the union (see
//! `store::cluster` for how versions are paired so no row counts twice).

use std::collections::{BTreeMap, HashMap};

use super::maintenance::plan_compaction;
use super::*;
use crate::remote::COMPACTOR_NODE;

/// Objects in the bucket that no manifest version named when last looked
/// at, and since when.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    last_sweep: Option<Instant>,
    seen: HashMap<String, Instant>,
}

impl Store {
    /// One cycle of the compactor: retention and compaction over every
    /// node's files, and forgetting tombstones their owners applied.
    /// Returns the number of files replaced or expired.
    pub async fn compact_cluster(&self, now_ns: i64) -> Result<u64> {
        self.writable()?;
        let _one = self.inner.compacting.lock().await;
        let remote = self
            .inner
            .remote
            .clone()
            .ok_or_else(|| Error::Storage("the compact role needs storage.url".into()))?;
        let heads = remote.manifest_heads().await?;
        let mut others: BTreeMap<String, Manifest> = BTreeMap::new();
        for (node, seq) in &heads {
            if node != COMPACTOR_NODE {
                let m = remote.manifest_version(node, *seq).await?;
                // A node in role `all` compacts and expires its own files.
                if m.role == "ingest" {
                    others.insert(node.clone(), m);
                }
            }
        }
        let inputs: BTreeMap<String, u64> =
            others.iter().map(|(n, m)| (n.clone(), m.seq)).collect();
        let mut done = 0;
        done += self.forget_applied_tombstones(&others, &inputs).await?;
        done += self.expire_cluster(&others, &inputs, now_ns).await?;
        for table in Table::ALL {
            done += self
                .compact_cluster_table(table, &others, &inputs, now_ns)
                .await?;
        }
        self.delete_expired_pending(false);
        done += self.sweep_orphans(&remote).await?;
        Ok(done)
    }

    /// Deletes objects of the bucket (Parquet files, derived files) that no
    /// kept manifest version of any node names, once they have gone
    /// unnamed for `delete_grace_secs`: uploads of a flush or compaction
    /// that crashed before its version was written, and files whose owner
    /// dropped them but died before deleting them. Checked again right
    /// before deleting; runs at most every half grace period. Returns the
    /// number deleted.
    async fn sweep_orphans(&self, remote: &crate::remote::Remote) -> Result<u64> {
        let grace = Duration::from_secs(self.inner.config.delete_grace_secs);
        {
            let o = lock(&self.inner.orphans);
            if o.last_sweep.is_some_and(|t| t.elapsed() < grace / 2) {
                return Ok(0);
            }
        }
        let objects = remote.data_objects().await?;
        let named = self.named_objects(remote).await?;
        let now = Instant::now();
        let due: Vec<String> = {
            let mut o = lock(&self.inner.orphans);
            o.last_sweep = Some(now);
            let unnamed: std::collections::HashSet<&String> =
                objects.iter().filter(|p| !named.contains(*p)).collect();
            o.seen.retain(|p, _| unnamed.contains(p));
            for p in unnamed {
                o.seen.entry(p.clone()).or_insert(now);
            }
            o.seen
                .iter()
                .filter(|(_, since)| now.duration_since(**since) >= grace)
                .map(|(p, _)| p.clone())
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        // Named by a version written meanwhile? Then it stays.
        let named = self.named_objects(remote).await?;
        let mut deleted = 0;
        for p in due.iter().filter(|p| !named.contains(*p)) {
            remote.delete(p).await?;
            lock(&self.inner.orphans).seen.remove(p);
            deleted += 1;
        }
        if deleted > 0 {
            tracing::info!(
                objects = deleted,
                "deleted objects no manifest version names"
            );
        }
        Ok(deleted)
    }

    /// Every object a kept manifest version of any node names (its files,
    /// and their derived files), and those of this node's live manifest.
    async fn named_objects(
        &self,
        remote: &crate::remote::Remote,
    ) -> Result<std::collections::HashSet<String>> {
        let mut versions = remote.all_versions().await?;
        versions.push(read(&self.inner.state).manifest.clone());
        let mut named = std::collections::HashSet::new();
        for m in &versions {
            for files in m.tables.values() {
                named.extend(files.iter().map(|f| f.path.clone()));
            }
            for (file, kinds) in &m.derived {
                named.extend(
                    kinds
                        .keys()
                        .map(|k| crate::files::derived_rel_path(k, file)),
                );
            }
        }
        Ok(named)
    }

    /// Every file of `table` the compactor may merge: its own, and the
    /// other nodes' that it has not tombstoned; with each file's owner.
    fn cluster_files(
        &self,
        table: Table,
        others: &BTreeMap<String, Manifest>,
    ) -> (Vec<FileMeta>, HashMap<String, String>) {
        let s = read(&self.inner.state);
        let me = COMPACTOR_NODE.to_string();
        let mut owner = HashMap::new();
        let mut files = Vec::new();
        for f in s.manifest.files(table) {
            owner.insert(f.path.clone(), me.clone());
            files.push(f.clone());
        }
        for (node, m) in others {
            let gone = s.manifest.tombstones.get(node);
            for f in m.files(table) {
                if gone.is_some_and(|g| g.contains(&f.path)) || owner.contains_key(&f.path) {
                    continue;
                }
                owner.insert(f.path.clone(), node.clone());
                files.push(f.clone());
            }
        }
        (files, owner)
    }

    async fn compact_cluster_table(
        &self,
        table: Table,
        others: &BTreeMap<String, Manifest>,
        inputs: &BTreeMap<String, u64>,
        now_ns: i64,
    ) -> Result<u64> {
        let (files, owner) = self.cluster_files(table, others);
        let plans = plan_compaction(&self.inner.config, table, &files, now_ns);
        let mut replaced = 0;
        for group in plans {
            replaced += self
                .merge_cluster_group(table, group, &owner, inputs)
                .await?;
        }
        Ok(replaced)
    }

    async fn merge_cluster_group(
        &self,
        table: Table,
        group: Vec<FileMeta>,
        owner: &HashMap<String, String>,
        inputs: &BTreeMap<String, u64>,
    ) -> Result<u64> {
        let Some(first) = group.first() else {
            return Ok(0);
        };
        let remote = self
            .inner
            .remote
            .clone()
            .ok_or_else(|| Error::Internal("no bucket".into()))?;
        let data_dir = self.inner.data_dir.clone();
        // Other nodes' files are fetched for the merge and removed after.
        let mut fetched = Vec::new();
        let result: Result<u64> = async {
            for f in &group {
                let local = data_dir.join(&f.path);
                if owner.get(&f.path).map(String::as_str) != Some(COMPACTOR_NODE) {
                    if !super::sync::safe_rel_path(&f.path) {
                        return Err(Error::Storage(format!(
                            "node {:?} lists a file outside the data directory: {:?}",
                            owner.get(&f.path),
                            f.path
                        )));
                    }
                    remote.download(&f.path, &local).await?;
                    fetched.push(local);
                }
            }
            let damaged = self.verify(table, &group).await?;
            if let Some((_, f, problem)) = damaged.first() {
                return Err(Error::Corrupt {
                    path: data_dir.join(&f.path),
                    reason: format!("{problem}; not merged"),
                });
            }
            let hour = first.hour;
            let written = self.merge_into_new_file(table, &group).await?;
            let input_rows = written.rows;
            let rel = written.path.clone();
            let _commit = self.inner.commit.lock().await;
            let mut manifest = read(&self.inner.state).manifest.clone();
            let mine: Vec<FileMeta> = group
                .iter()
                .filter(|f| owner.get(&f.path).map(String::as_str) == Some(COMPACTOR_NODE))
                .cloned()
                .collect();
            let files = manifest.files_mut(table);
            if !mine.iter().all(|i| files.contains(i)) {
                let _ = std::fs::remove_file(data_dir.join(&written.path));
                return Ok(0);
            }
            files.retain(|f| !mine.contains(f));
            let output = written.path.clone();
            files.push(written);
            for f in &group {
                if let Some(node) = owner.get(&f.path).filter(|n| *n != COMPACTOR_NODE) {
                    manifest
                        .tombstones
                        .entry(node.clone())
                        .or_default()
                        .push(f.path.clone());
                }
            }
            manifest.compactor = true;
            manifest.inputs = inputs.clone();
            if let Err(e) = self
                .install_manifest(manifest, std::slice::from_ref(&output))
                .await
            {
                let _ = std::fs::remove_file(data_dir.join(&output));
                return Err(e);
            }
            self.schedule_deletes(mine.iter().map(|f| data_dir.join(&f.path)));
            self.inner
                .metrics
                .compactions
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(table = %table, hour, inputs = group.len(), rows = input_rows, output = %rel, "compacted files of the cluster");
            Ok(group.len() as u64)
        }
        .await;
        for p in fetched {
            let _ = std::fs::remove_file(p);
        }
        result
    }

    /// Retention over every node's files: this node's own expired files
    /// leave its manifest; other nodes' are tombstoned.
    async fn expire_cluster(
        &self,
        others: &BTreeMap<String, Manifest>,
        inputs: &BTreeMap<String, u64>,
        now_ns: i64,
    ) -> Result<u64> {
        let _commit = self.inner.commit.lock().await;
        let mut manifest = read(&self.inner.state).manifest.clone();
        let mut own = Vec::new();
        let mut n = 0u64;
        for table in Table::ALL {
            let Some(keep) = self.inner.config.retention_hours.of(table) else {
                continue;
            };
            let cutoff = now_ns - keep.as_nanos() as i64;
            let old = |f: &FileMeta| (f.hour + 1) * HOUR_NS <= cutoff;
            manifest.files_mut(table).retain(|f| {
                if old(f) {
                    own.push(f.clone());
                }
                !old(f)
            });
            for (node, m) in others {
                for f in m.files(table).iter().filter(|f| old(f)) {
                    let t = manifest.tombstones.entry(node.clone()).or_default();
                    if !t.contains(&f.path) {
                        t.push(f.path.clone());
                        n += 1;
                    }
                }
            }
        }
        n += own.len() as u64;
        if n == 0 {
            return Ok(0);
        }
        manifest.compactor = true;
        manifest.inputs = inputs.clone();
        self.install_manifest(manifest, &[]).await?;
        self.inner
            .metrics
            .files_expired
            .fetch_add(n, Ordering::Relaxed);
        tracing::info!(
            files = n,
            "retention removed expired partitions of the cluster"
        );
        self.schedule_deletes(own.iter().map(|f| self.inner.data_dir.join(&f.path)));
        Ok(n)
    }

    /// Drops the tombstones whose owner no longer lists the file (it
    /// applied them, and deletes the file itself after the grace period).
    async fn forget_applied_tombstones(
        &self,
        others: &BTreeMap<String, Manifest>,
        inputs: &BTreeMap<String, u64>,
    ) -> Result<u64> {
        let _commit = self.inner.commit.lock().await;
        let mut manifest = read(&self.inner.state).manifest.clone();
        let mut n = 0;
        for (node, paths) in manifest.tombstones.iter_mut() {
            let Some(m) = others.get(node) else {
                continue;
            };
            let before = paths.len();
            paths.retain(|p| {
                Table::ALL
                    .iter()
                    .any(|t| m.files(*t).iter().any(|f| &f.path == p))
            });
            n += (before - paths.len()) as u64;
        }
        manifest.tombstones.retain(|_, p| !p.is_empty());
        if n == 0 {
            return Ok(0);
        }
        manifest.compactor = true;
        manifest.inputs = inputs.clone();
        self.install_manifest(manifest, &[]).await?;
        Ok(0)
    }

    /// On an ingest node: drops from this node's manifest the files the
    /// compactor's newest version tombstones for it (replaced by its merged
    /// files, or expired), and deletes them after the grace period.
    /// Returns the number of files dropped.
    pub async fn apply_tombstones(&self) -> Result<u64> {
        self.writable()?;
        self.delete_expired_pending(false);
        let Some(remote) = self.inner.remote.clone() else {
            return Ok(0);
        };
        let Some(c) = remote.latest_manifest(COMPACTOR_NODE).await? else {
            return Ok(0);
        };
        let Some(gone) = c.tombstones.get(remote.node_id()) else {
            return Ok(0);
        };
        let _commit = self.inner.commit.lock().await;
        let mut manifest = read(&self.inner.state).manifest.clone();
        let mut dropped = Vec::new();
        for table in Table::ALL {
            manifest.files_mut(table).retain(|f| {
                let g = gone.contains(&f.path);
                if g {
                    dropped.push(f.clone());
                }
                !g
            });
        }
        if dropped.is_empty() {
            return Ok(0);
        }
        manifest.applied.insert(COMPACTOR_NODE.to_string(), c.seq);
        self.install_manifest(manifest, &[]).await?;
        tracing::info!(
            files = dropped.len(),
            compactor_version = c.seq,
            "let go of files the compactor replaced"
        );
        self.schedule_deletes(dropped.iter().map(|f| self.inner.data_dir.join(&f.path)));
        self.delete_expired_pending(false);
        Ok(dropped.len() as u64)
    }
}
