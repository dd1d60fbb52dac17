//! Rows not yet in the bucket, for the cluster: an ingest node hands out
//! its buffered rows (with the manifest version they are relative to), and
//! a query node installs the view it assembled from every node.

use super::*;

/// A node's acknowledged rows of one table that no manifest version names
/// yet, relative to manifest version `seq`: together with the files of
/// that version they are every acknowledged row of the table, each once.
#[derive(Debug, Clone)]
pub struct LiveRows {
    /// The node id (empty without a bucket).
    pub node: String,
    /// The manifest version the rows are relative to (0: none yet).
    pub seq: u64,
    /// Every row with an LSN up to this one is in that version's files.
    pub flushed_lsn: u64,
    /// Buffered batches with an LSN above the one asked for, in LSN order.
    pub entries: Vec<(u64, RecordBatch)>,
}

impl Store {
    /// The rows of `table` still buffered with an LSN above `after_lsn`,
    /// read together with the manifest version they complete.
    pub fn live_rows(&self, table: Table, after_lsn: u64) -> LiveRows {
        let s = read(&self.inner.state);
        LiveRows {
            node: self
                .inner
                .remote
                .as_ref()
                .map(|r| r.node_id().to_string())
                .unwrap_or_default(),
            seq: s.manifest.seq,
            flushed_lsn: s.manifest.flushed_lsn,
            entries: s.buffers[idx(table)]
                .entries
                .iter()
                .filter(|d| d.lsn > after_lsn)
                .map(|d| (d.lsn, d.batch.clone()))
                .collect(),
        }
    }

    /// For a store that reads a bucket: replaces what queries see by
    /// `manifest` (files of every node) plus `live` rows per table.
    pub(crate) fn install_view(&self, manifest: Manifest, live: [Vec<(u64, RecordBatch)>; 3]) {
        let mut buffers: [Buffer; 3] = Default::default();
        for (i, entries) in live.into_iter().enumerate() {
            let table = Table::ALL[i];
            for (lsn, batch) in entries {
                let bytes = batch.get_array_memory_size();
                buffers[i].bytes += bytes;
                buffers[i].entries.push(Durable {
                    lsn,
                    table,
                    batch,
                    bytes,
                });
            }
        }
        let mut s = write(&self.inner.state);
        s.manifest = manifest;
        s.buffers = buffers;
    }

    /// The cluster view this store keeps current, for a query node.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.inner.cluster.get()
    }

    pub(crate) fn set_cluster(&self, cluster: Arc<crate::cluster::Cluster>) {
        let _ = self.inner.cluster.set(cluster);
    }
}
