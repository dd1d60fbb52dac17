//! The bucket side of the store (`storage.url`, see [`crate::remote`]):
//! adopting the bucket's manifest at open, uploads before every manifest
//! version, and deletes of replaced objects.
//!
//! The local data directory keeps a copy of every live file and derived
//! file; the bucket holds the durable one. Every manifest change goes
//! through [`Store::commit_manifest`]: new files are uploaded, then the
//! next manifest version is created in the bucket, then the local manifest
//! is replaced. Only after that does a flush let WAL segments go.

use super::*;
use crate::remote::Remote;

/// What the bucket held for this node at open.
pub(super) enum Adopted {
    /// No manifest version yet: the local state is uploaded after open.
    Nothing,
    /// The local manifest is the bucket's newest version (adopted or
    /// already equal), and every live file is on local disk.
    InSync,
}

/// A `/`-separated relative path with no `..`, `.` or empty segment.
pub(super) fn safe_rel_path(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with('/')
        && !rel.contains('\\')
        && rel
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

impl Store {
    /// Before the local open: makes the local manifest the bucket's newest
    /// version of this node and fetches every live file and derived file
    /// missing locally (a new or wiped data directory, a lost file). The
    /// WAL replay that follows then skips what that version already holds.
    pub(super) async fn adopt_remote(data_dir: &Path, remote: &Remote) -> Result<Adopted> {
        let dir = data_dir.to_path_buf();
        let local = tokio::task::spawn_blocking(move || Manifest::load(&dir))
            .await
            .map_err(|e| Error::Internal(format!("open task failed: {e}")))??;
        let Some(theirs) = remote.latest_manifest(remote.node_id()).await? else {
            return Ok(Adopted::Nothing);
        };
        if let Some(l) = &local {
            let has_data = l.flushed_lsn > 0 || Table::ALL.iter().any(|t| !l.files(*t).is_empty());
            let refuse = |why: &str| {
                Err(Error::Storage(format!(
                    "{why}, and {} already holds data of node id {:?}: adopting it would drop \
                     this directory's files. Start this directory with another --node-id",
                    remote.url(),
                    remote.node_id()
                )))
            };
            if l.lineage.is_empty() && has_data {
                return refuse(&format!(
                    "{} holds data that was never written to this bucket",
                    data_dir.display()
                ));
            }
            if !l.lineage.is_empty() && l.lineage != theirs.lineage {
                return refuse(&format!(
                    "{} was written to a different history of this node id",
                    data_dir.display()
                ));
            }
        }
        let local_seq = local.as_ref().map_or(0, |m| m.seq);
        if local_seq > theirs.seq {
            return Err(Error::Storage(format!(
                "the local manifest ({}) is version {local_seq}, newer than the newest in {} \
                 for node {:?} ({}): this data directory was not written to this bucket \
                 and prefix",
                data_dir.display(),
                remote.url(),
                remote.node_id(),
                theirs.seq
            )));
        }
        let mut fetched = 0;
        // (relative path, size, whether it is a Parquet data file)
        let mut wanted: Vec<(String, u64, bool)> = Table::ALL
            .iter()
            .flat_map(|t| {
                theirs
                    .files(*t)
                    .iter()
                    .map(|f| (f.path.clone(), f.bytes, true))
            })
            .collect();
        for (file, kinds) in &theirs.derived {
            for (kind, meta) in kinds {
                wanted.push((
                    crate::files::derived_rel_path(kind, file),
                    meta.bytes,
                    false,
                ));
            }
        }
        for (rel, bytes, parquet) in wanted {
            // Paths come from the bucket: they must stay inside the data
            // directory whatever a manifest there says.
            if !safe_rel_path(&rel) {
                return Err(Error::Storage(format!(
                    "the manifest in {} names {rel:?}, which is not a relative path inside \
                     the data directory",
                    remote.url()
                )));
            }
            let path = data_dir.join(&rel);
            let have = std::fs::metadata(&path).map(|m| m.len()).ok();
            // A local copy of the right size whose footer does not read is
            // damaged: the bucket's copy replaces it (rather than the open
            // quarantining it and the next version dropping its rows).
            let damaged = parquet && have == Some(bytes) && {
                let p = path.clone();
                tokio::task::spawn_blocking(move || check_footer(&p).is_err())
                    .await
                    .unwrap_or(true)
            };
            if have != Some(bytes) || damaged {
                if damaged {
                    tracing::warn!(file = %path.display(),
                        "local copy of a live file is damaged; fetching the bucket's copy");
                }
                remote.download(&rel, &path).await?;
                fetched += 1;
            }
        }
        if local_seq < theirs.seq {
            let dir = data_dir.to_path_buf();
            let m = theirs.clone();
            tokio::task::spawn_blocking(move || m.persist(&dir))
                .await
                .map_err(|e| Error::Internal(format!("open task failed: {e}")))??;
            tracing::info!(
                version = theirs.seq,
                files_fetched = fetched,
                bucket = remote.url(),
                "adopted the bucket's manifest"
            );
        } else if fetched > 0 {
            tracing::info!(
                files_fetched = fetched,
                bucket = remote.url(),
                "fetched live files missing on local disk"
            );
        }
        Ok(Adopted::InSync)
    }

    /// After the local open, when the bucket had nothing for this node:
    /// uploads every live file and derived file and writes the first
    /// manifest version (a data directory moving onto a bucket).
    pub(super) async fn push_all(&self) -> Result<()> {
        let _commit = self.inner.commit.lock().await;
        let mut manifest = read(&self.inner.state).manifest.clone();
        let mut files: Vec<String> = Table::ALL
            .iter()
            .flat_map(|t| manifest.files(*t).iter().map(|f| f.path.clone()))
            .collect();
        for (file, kinds) in &manifest.derived {
            files.extend(
                kinds
                    .keys()
                    .map(|kind| crate::files::derived_rel_path(kind, file)),
            );
        }
        self.commit_manifest(&mut manifest, &files).await?;
        write(&self.inner.state).manifest = manifest;
        Ok(())
    }

    /// Makes `manifest` durable. With a bucket: uploads `new_files`
    /// (relative paths), then creates the next manifest version there;
    /// then, in every case, replaces the local manifest. The caller holds
    /// the commit lock.
    pub(super) async fn commit_manifest(
        &self,
        manifest: &mut Manifest,
        new_files: &[String],
    ) -> Result<()> {
        let Some(remote) = self.inner.remote.clone() else {
            return self.persist_local(manifest.clone()).await;
        };
        use futures::{StreamExt as _, TryStreamExt as _};
        let uploads: Vec<_> = new_files
            .iter()
            .map(|rel| {
                let (remote, rel) = (remote.clone(), rel.clone());
                let local = self.inner.data_dir.join(&rel);
                async move { remote.upload(local, &rel).await }
            })
            .collect();
        futures::stream::iter(uploads)
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await?;
        if manifest.lineage.is_empty() {
            manifest.lineage = uuid::Uuid::new_v4().simple().to_string();
        }
        manifest.seq += 1;
        manifest.role = match self.inner.config.role {
            StoreRole::Ingest => "ingest".into(),
            StoreRole::Single | StoreRole::Compactor => String::new(),
        };
        if let Err(e) = remote.put_manifest(manifest).await {
            // The version may exist even so (its answer lost): its number
            // and the names of the files it may list are never used again.
            self.note_failed_commit(manifest);
            return Err(e);
        }
        // The version is durable in the bucket: it is the node's manifest
        // now, whether or not the local copy can be written (the next start
        // adopts the bucket's newest version).
        if let Err(e) = self.persist_local(manifest.clone()).await {
            tracing::error!(error = %e, version = manifest.seq,
                "cannot write the local manifest; the bucket holds this version");
        }
        Ok(())
    }

    async fn persist_local(&self, m: Manifest) -> Result<()> {
        let data_dir = self.inner.data_dir.clone();
        tokio::task::spawn_blocking(move || m.persist(&data_dir))
            .await
            .map_err(|e| Error::Internal(format!("manifest task failed: {e}")))?
    }

    /// After a commit that may or may not have reached the bucket: the
    /// live manifest's version number and file ids move past it.
    fn note_failed_commit(&self, attempted: &Manifest) {
        let mut s = write(&self.inner.state);
        s.manifest.seq = s.manifest.seq.max(attempted.seq);
        s.manifest.next_file_id = s.manifest.next_file_id.max(attempted.next_file_id);
    }

    /// Deletes the bucket's copies of files that left the manifest (after
    /// their grace period), in the background.
    pub(super) fn delete_remote(&self, paths: &[PathBuf]) {
        let Some(remote) = self.inner.remote.clone() else {
            return;
        };
        let rels: Vec<String> = paths
            .iter()
            .filter_map(|p| p.strip_prefix(&self.inner.data_dir).ok())
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .collect();
        if rels.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            for rel in rels {
                if let Err(e) = remote.delete(&rel).await {
                    tracing::warn!(file = rel, error = %e, "cannot delete a replaced file in the bucket");
                }
            }
        });
    }

    /// Keeps this node's lease in the bucket while the store runs.
    pub(super) fn spawn_lease_renewal(&self, shutdown: CancellationToken, tracker: &TaskTracker) {
        let Some(remote) = self.inner.remote.clone() else {
            return;
        };
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(remote.renew_every()) => {}
                }
                match tokio::time::timeout(remote.renew_every(), remote.take_lease()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "cannot renew this node's lease in the bucket")
                    }
                    Err(_) => tracing::error!(
                        "renewing this node's lease in the bucket timed out; writes stop \
                         once it is older than lease_secs"
                    ),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::safe_rel_path;

    #[test]
    fn paths_from_the_bucket_stay_inside_the_data_directory() {
        assert!(safe_rel_path(
            "spans/date=2026-12-06/hour=10/part-n1-abc-0000000001.parquet"
        ));
        assert!(safe_rel_path("rollups/sli-v1/00ff/spans/x.parquet"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "spans/../../x",
            "a//b",
            "./a",
            "a\\b",
        ] {
            assert!(!safe_rel_path(bad), "{bad}");
        }
    }
}
