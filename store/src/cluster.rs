//! The query role's view of a bucket that several nodes write: every
//! node's files (from its manifest versions) plus the ingest nodes' rows
//! not yet in the bucket (over Arrow Flight, see [`crate::flight`]), kept
//! current by a refresh loop so that queries never wait on another node.
//!
//! Exactly once: an ingest node answers its live rows of a table together
//! with the manifest version they complete, and the view takes that table's
//! files of that node from exactly that version (versions are immutable).
//! A node that does not answer keeps its last consistent view and is
//! reported missing; a node that serves no live rows (it stopped cleanly,
//! or it only compacts) is read from its newest version.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cache::DiskCache;
use crate::engine::{LiveRows, Store};
use crate::error::{Error, Result};
use crate::files::Manifest;
use crate::remote::{COMPACTOR_NODE, Remote};
use crate::schema::Table;

/// How a query node follows the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Flight URLs of the ingest nodes; empty: those advertised in the
    /// bucket's lease objects.
    pub ingest_peers: Vec<String>,
    /// Time between refreshes (the freshness of the view).
    pub refresh: Duration,
    /// How long an ingest node may take to answer.
    pub peer_timeout: Duration,
    /// Local directory for the caches: derived files, and whole data files.
    pub cache_dir: PathBuf,
}

/// An ingest node that did not answer at the last refresh.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MissingNode {
    /// Its node id, when known.
    pub node: String,
    /// Where it was asked.
    pub url: String,
    /// What went wrong.
    pub error: String,
}

/// Live rows with their LSNs.
type Entries = Vec<(u64, RecordBatch)>;

/// One node as the view holds it, per table: the manifest version the
/// table's files come from and the live rows above it.
#[derive(Default, Clone)]
struct NodeView {
    tables: [(Option<Arc<Manifest>>, Entries); 3],
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// Refreshes completed.
    pub refreshes: AtomicU64,
    /// Refreshes that failed (the bucket did not answer).
    pub refresh_errors: AtomicU64,
    /// Live-row requests that failed or timed out.
    pub peer_errors: AtomicU64,
    /// Live rows received.
    pub live_rows_received: AtomicU64,
}

/// The view a query node keeps of the cluster.
pub struct Cluster {
    remote: Arc<Remote>,
    opts: ClusterOptions,
    nodes: tokio::sync::Mutex<BTreeMap<String, NodeView>>,
    /// Manifest versions fetched, by (node, seq).
    versions: Mutex<HashMap<(String, u64), Arc<Manifest>>>,
    /// Node id answered at each peer URL.
    peer_nodes: Mutex<HashMap<String, String>>,
    missing: Mutex<Vec<MissingNode>>,
    /// The advertised peers and when they were last listed.
    discovered: Mutex<Option<(Instant, Vec<String>)>>,
    /// Derived files read from the bucket.
    pub cache: DiskCache,
    /// Whole data files read from the bucket (none with
    /// `storage.file_cache_bytes = 0`).
    pub files: Option<Arc<crate::cache::FileCache>>,
    /// Counters.
    pub metrics: ClusterMetrics,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("url", &self.remote.url())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How often the advertised peers are listed again.
const DISCOVER_EVERY: Duration = Duration::from_secs(5);

impl Store {
    /// Opens the bucket for a query node: read-only, the union of every
    /// node's files plus the ingest nodes' live rows, refreshed by
    /// [`Cluster::run`] (started by `spawn_background`). Derived files are
    /// cached in `opts.cache_dir`.
    pub async fn open_cluster(
        storage: &crate::remote::StorageConfig,
        opts: ClusterOptions,
    ) -> Result<Store> {
        let store = Store::open_bucket(storage).await?;
        let remote = store
            .remote()
            .cloned()
            .ok_or_else(|| Error::Storage("no storage.url to read".into()))?;
        let cap = storage.cache_bytes.unwrap_or(1 << 30);
        let derived_dir = opts.cache_dir.join("derived");
        let cache =
            DiskCache::new(derived_dir.clone(), cap).map_err(|e| Error::io(&derived_dir, e))?;
        let files_dir = opts.cache_dir.join("files");
        let files = match storage.file_cache_bytes.unwrap_or(4 << 30) {
            0 => None,
            cap => Some(Arc::new(
                crate::cache::FileCache::new(remote.object_store(), files_dir.clone(), cap)
                    .map_err(|e| Error::io(&files_dir, e))?,
            )),
        };
        let cluster = Arc::new(Cluster {
            remote,
            opts,
            nodes: Default::default(),
            versions: Default::default(),
            peer_nodes: Default::default(),
            missing: Default::default(),
            discovered: Default::default(),
            cache,
            files,
            metrics: Default::default(),
        });
        store.set_cluster(cluster.clone());
        cluster.refresh(&store).await?;
        Ok(store)
    }

    /// Ingest nodes that did not answer at the last refresh (their newest
    /// rows may be missing from results). Empty outside a query node.
    pub fn missing_nodes(&self) -> Vec<MissingNode> {
        self.cluster()
            .map(|c| lock(&c.missing).clone())
            .unwrap_or_default()
    }
}

impl Cluster {
    /// Refreshes the view every `refresh` until `token` is cancelled.
    pub async fn run(self: Arc<Self>, store: Store, token: CancellationToken) {
        let mut tick = tokio::time::interval(self.opts.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.refresh(&store).await {
                self.metrics.refresh_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot refresh the cluster view; queries see the previous one");
            }
        }
    }

    async fn peers(&self) -> Vec<String> {
        if !self.opts.ingest_peers.is_empty() {
            return self.opts.ingest_peers.clone();
        }
        if let Some((at, peers)) = lock(&self.discovered).as_ref()
            && at.elapsed() < DISCOVER_EVERY
        {
            return peers.clone();
        }
        match self.remote.advertised_nodes().await {
            Ok(found) => {
                let peers: Vec<String> = found.into_iter().map(|(_, url)| url).collect();
                *lock(&self.discovered) = Some((Instant::now(), peers.clone()));
                peers
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the ingest nodes' leases");
                lock(&self.discovered)
                    .as_ref()
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default()
            }
        }
    }

    async fn version(&self, node: &str, seq: u64) -> Result<Option<Arc<Manifest>>> {
        if seq == 0 {
            return Ok(None);
        }
        let key = (node.to_string(), seq);
        if let Some(m) = lock(&self.versions).get(&key) {
            return Ok(Some(m.clone()));
        }
        let m = Arc::new(self.remote.manifest_version(node, seq).await?);
        lock(&self.versions).insert(key, m.clone());
        Ok(Some(m))
    }

    /// Asks one peer for every table's live rows above what the view holds.
    async fn ask(
        &self,
        url: &str,
        held: &BTreeMap<String, NodeView>,
    ) -> std::result::Result<Vec<LiveRows>, String> {
        let node = lock(&self.peer_nodes).get(url).cloned();
        let mut out = Vec::new();
        for table in Table::ALL {
            let i = crate::engine::table_index(table);
            let after = node
                .as_ref()
                .and_then(|n| held.get(n))
                .and_then(|v| v.tables[i].1.last().map(|(l, _)| *l))
                .unwrap_or(0);
            let rows = crate::flight::fetch(url, table, after, self.opts.peer_timeout).await?;
            out.push(rows);
        }
        if let Some(first) = out.first() {
            lock(&self.peer_nodes).insert(url.to_string(), first.node.clone());
        }
        Ok(out)
    }

    /// Lists manifest versions, asks the ingest nodes for their live rows
    /// and installs the new view.
    pub async fn refresh(&self, store: &Store) -> Result<()> {
        let heads = self.remote.manifest_heads().await?;
        let peers = self.peers().await;
        let mut nodes = self.nodes.lock().await;
        let answers =
            futures::future::join_all(peers.iter().map(|url| self.ask(url, &nodes))).await;
        let mut answered: BTreeMap<String, Vec<LiveRows>> = BTreeMap::new();
        let mut missing = Vec::new();
        for (url, answer) in peers.iter().zip(answers) {
            match answer {
                Ok(rows) => {
                    if let Some(node) = rows.first().map(|r| r.node.clone()) {
                        answered.insert(node, rows);
                    }
                }
                Err(error) => {
                    self.metrics.peer_errors.fetch_add(1, Ordering::Relaxed);
                    let node = lock(&self.peer_nodes).get(url).cloned().unwrap_or_default();
                    missing.push(MissingNode {
                        node,
                        url: url.clone(),
                        error,
                    });
                }
            }
        }
        let missing_ids: Vec<String> = missing.iter().map(|m| m.node.clone()).collect();
        let prev = nodes.clone();
        let mut next: BTreeMap<String, NodeView> = BTreeMap::new();
        let mut ids: Vec<String> = heads.keys().cloned().collect();
        ids.extend(answered.keys().cloned());
        ids.extend(nodes.keys().cloned());
        ids.sort();
        ids.dedup();
        ids.retain(|id| id != COMPACTOR_NODE);
        for id in ids {
            let mut view = nodes.remove(&id).unwrap_or_default();
            if let Some(rows) = answered.remove(&id) {
                for (i, r) in rows.into_iter().enumerate() {
                    let m = self.version(&id, r.seq).await?;
                    let (held_m, held) = &mut view.tables[i];
                    held.retain(|(lsn, _)| *lsn > r.flushed_lsn);
                    let top = held.last().map(|(l, _)| *l).unwrap_or(0);
                    let n: usize = r.entries.iter().map(|(_, b)| b.num_rows()).sum();
                    self.metrics
                        .live_rows_received
                        .fetch_add(n as u64, Ordering::Relaxed);
                    held.extend(r.entries.into_iter().filter(|(l, _)| *l > top));
                    *held_m = m;
                }
            } else if !missing_ids.contains(&id) {
                // Serves no live rows: its newest version is all it has.
                let m = match heads.get(&id) {
                    Some(seq) => self.version(&id, *seq).await?,
                    None => None,
                };
                for t in view.tables.iter_mut() {
                    *t = (m.clone(), Vec::new());
                }
            }
            next.insert(id, view);
        }
        self.choose_compactor_version(&heads, &prev, &mut next)
            .await?;
        // Forget versions no table uses any more.
        {
            let used: std::collections::HashSet<(String, u64)> = next
                .iter()
                .flat_map(|(id, v)| {
                    v.tables
                        .iter()
                        .filter_map(|(m, _)| m.as_ref().map(|m| (id.clone(), m.seq)))
                })
                .collect();
            lock(&self.versions).retain(|k, _| used.contains(k));
        }
        let (manifest, live) = merge(&next);
        *nodes = next;
        drop(nodes);
        store.install_view(manifest, live);
        *lock(&self.missing) = missing;
        self.metrics.refreshes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The union of every node's files per table (without the files the
/// compactor's version tombstones), and the live rows.
fn merge(nodes: &BTreeMap<String, NodeView>) -> (Manifest, [Entries; 3]) {
    let gone: std::collections::HashSet<&str> = nodes
        .get(COMPACTOR_NODE)
        .and_then(|v| v.tables[0].0.as_ref())
        .map(|m| {
            m.tombstones
                .values()
                .flatten()
                .map(String::as_str)
                .collect()
        })
        .unwrap_or_default();
    let mut merged = Manifest {
        version: 1,
        ..Default::default()
    };
    let mut live: [Entries; 3] = Default::default();
    for view in nodes.values() {
        for (i, (m, rows)) in view.tables.iter().enumerate() {
            let table = Table::ALL[i];
            if let Some(m) = m {
                let into = merged.tables.entry(table.name().to_string()).or_default();
                for f in m.files(table) {
                    if gone.contains(f.path.as_str()) || into.iter().any(|g| g.path == f.path) {
                        continue;
                    }
                    into.push(f.clone());
                    if let Some(d) = m.derived.get(&f.path) {
                        merged.derived.insert(f.path.clone(), d.clone());
                    }
                }
            }
            live[i].extend(rows.iter().cloned());
        }
    }
    (merged, live)
}

/// The seq of a part's manifest version (0: none).
fn seq_of(m: &Option<Arc<Manifest>>) -> u64 {
    m.as_ref().map(|m| m.seq).unwrap_or(0)
}

/// The newest compactor version a node's part has applied.
fn applied_of(view: &NodeView) -> u64 {
    view.tables
        .iter()
        .filter_map(|(m, _)| m.as_ref())
        .filter_map(|m| m.applied.get(COMPACTOR_NODE).copied())
        .max()
        .unwrap_or(0)
}

/// Whether compactor version `c` can stand beside the other nodes' parts
/// without a row counting twice or going missing: every node's part is
/// from a version at least as new as the one `c` read. (An older part may
/// hold as live rows, or still list, what `c` merged and no longer
/// tombstones.) Parts built from the same listing always are; a part kept
/// for a node reported missing may not be, and then `c` waits.
fn fits(c: &Manifest, parts: &BTreeMap<String, NodeView>) -> bool {
    c.inputs.iter().all(|(node, read)| match parts.get(node) {
        None => true,
        Some(v) => v.tables.iter().all(|(m, _)| seq_of(m) >= *read),
    })
}

impl Cluster {
    /// Pairs the compactor's version with the other nodes' parts: the
    /// newest version listed, or a newer one some node already applied
    /// (its tombstoned files are gone from that node's part); but a
    /// version that merged files whose rows a node's part still holds as
    /// live rows (a node reported missing keeps an older part) waits, and
    /// so do the parts that applied it.
    async fn choose_compactor_version(
        &self,
        heads: &BTreeMap<String, u64>,
        prev: &BTreeMap<String, NodeView>,
        next: &mut BTreeMap<String, NodeView>,
    ) -> Result<()> {
        let prev_c = prev.get(COMPACTOR_NODE).and_then(|v| v.tables[0].0.clone());
        let needed = next
            .values()
            .map(applied_of)
            .chain(heads.get(COMPACTOR_NODE).copied())
            .max()
            .unwrap_or(0);
        let chosen = match self.version(COMPACTOR_NODE, needed).await? {
            Some(c) if fits(&c, next) => Some(c),
            Some(_) => {
                let held = seq_of(&prev_c);
                for (id, view) in next.iter_mut() {
                    if applied_of(view) > held {
                        *view = prev.get(id).cloned().unwrap_or_default();
                    }
                }
                prev_c
            }
            None => None,
        };
        if let Some(c) = chosen {
            let mut view = NodeView::default();
            for t in view.tables.iter_mut() {
                t.0 = Some(c.clone());
            }
            next.insert(COMPACTOR_NODE.to_string(), view);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::FileMeta;

    fn file(path: &str, rows: u64) -> FileMeta {
        FileMeta {
            path: path.into(),
            rows,
            bytes: 1,
            hour: 0,
            min_time_ns: 0,
            max_time_ns: 0,
            crc32: None,
        }
    }

    fn version(seq: u64, files: &[FileMeta]) -> Arc<Manifest> {
        let mut m = Manifest {
            version: 1,
            seq,
            ..Default::default()
        };
        m.files_mut(Table::Spans).extend(files.iter().cloned());
        Arc::new(m)
    }

    fn part(m: Arc<Manifest>, live_lsns: &[u64]) -> NodeView {
        let batch = RecordBatch::new_empty(Table::Spans.schema());
        let mut v = NodeView::default();
        for t in v.tables.iter_mut() {
            t.0 = Some(m.clone());
        }
        v.tables[0].1 = live_lsns.iter().map(|l| (*l, batch.clone())).collect();
        v
    }

    #[test]
    fn tombstoned_files_leave_the_union_and_live_rows_stay() {
        let mut parts = BTreeMap::new();
        parts.insert(
            "a".to_string(),
            part(
                version(3, &[file("spans/a1", 10), file("spans/a2", 5)]),
                &[7, 8],
            ),
        );
        let mut c = (*version(2, &[file("spans/c1", 10)])).clone();
        c.tombstones.insert("a".into(), vec!["spans/a1".into()]);
        c.inputs.insert("a".into(), 3);
        parts.insert(COMPACTOR_NODE.to_string(), part(Arc::new(c.clone()), &[]));
        let (m, live) = merge(&parts);
        let mut paths: Vec<&str> = m
            .files(Table::Spans)
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        paths.sort();
        assert_eq!(paths, ["spans/a2", "spans/c1"]);
        assert_eq!(live[0].len(), 2);
        // The same through the bucket reader's merge.
        let a = version(3, &[file("spans/a1", 10), file("spans/a2", 5)]);
        let merged = crate::remote::merge_versions([&*a, &c].into_iter());
        assert_eq!(merged.files(Table::Spans).len(), 2);
    }

    #[test]
    fn a_compactor_version_waits_for_parts_older_than_what_it_read() {
        let mut c = Manifest {
            version: 1,
            seq: 4,
            ..Default::default()
        };
        c.inputs.insert("a".into(), 3);
        c.inputs.insert("b".into(), 6);
        let mut parts = BTreeMap::new();
        parts.insert("a".to_string(), part(version(3, &[]), &[9]));
        parts.insert("b".to_string(), part(version(6, &[]), &[]));
        assert!(fits(&c, &parts));
        // b's part is kept from before (b did not answer): older than what
        // the compactor read, so its files may be listed twice.
        parts.insert("b".to_string(), part(version(5, &[]), &[]));
        assert!(!fits(&c, &parts));
        // A node the compactor never read does not matter.
        c.inputs.remove("b");
        assert!(fits(&c, &parts));
        let mut applied = (*version(7, &[])).clone();
        applied.applied.insert(COMPACTOR_NODE.into(), 4);
        assert_eq!(applied_of(&part(Arc::new(applied), &[])), 4);
        assert_eq!(applied_of(&part(version(1, &[]), &[])), 0);
    }
}
