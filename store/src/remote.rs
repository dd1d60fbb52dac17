//! The bucket: where Parquet files, their derived files and the manifest
//! live when `storage.url` names an object store (`s3://bucket/prefix`, or
//! `file:///abs/path` for a shared file system). The WAL never leaves the
//! node's `--data-dir`, which also keeps a copy of every live file the node
//! reads or wrote (the local cache).
//!
//! Layout under the URL's prefix:
//!
//! - `<table>/date=YYYY-MM-DD/hour=HH/<name>.parquet`: the same relative
//!   paths as on local disk; names carry the node id, so nodes never write
//!   the same object;
//! - `rollups/<kind>/<file path>`: derived files;
//! - `manifests/<node id>/<seq, 20 digits>.json`: the node's manifest
//!   versions. A version is written with create-if-absent and never
//!   overwritten; the newest is the node's current manifest;
//! - `nodes/<node id>.lease`: who runs as that node id, until when. Taken
//!   and renewed with conditional writes, so a second process with a live
//!   node id is refused.
//!
//! Order of a commit: the new files are uploaded, then the manifest
//! version that names them is created, then the local manifest is replaced,
//! and only then do WAL segments go. A crash at any point leaves either the
//! old version (the upload is an orphan, redone from the WAL) or the new one
//! (found at the next start, which adopts it before replaying the WAL).

use std::collections::BTreeMap;
use std::path::Path as LocalPath;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;
use object_store::ClientConfigKey;
use object_store::aws::AmazonS3ConfigKey;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::Manifest;

pub mod counted;

pub use counted::{Counts, CountsSnapshot};

/// Where the store's files live beyond the WAL. Set from the top-level
/// `[storage]` table, `--storage-url` and `--node-id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `s3://bucket/prefix` or `file:///abs/path`; unset keeps everything
    /// in the data directory.
    pub url: Option<String>,
    /// S3 endpoint, for S3-compatible stores [default: `AWS_ENDPOINT_URL`].
    pub endpoint: Option<String>,
    /// Region [default: `AWS_REGION`, else `us-east-1`].
    pub region: Option<String>,
    /// Access key id [default: `AWS_ACCESS_KEY_ID`].
    pub access_key_id: Option<String>,
    /// Secret access key [default: `AWS_SECRET_ACCESS_KEY`].
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints [default: `AWS_ALLOW_HTTP`, else false].
    pub allow_http: Option<bool>,
    /// This node's id in the bucket [default: the host name].
    pub node_id: Option<String>,
    /// Seconds a node's lease lasts without renewal.
    pub lease_secs: Option<u64>,
    /// Bytes of Parquet footers and page indexes kept in memory for
    /// queries [default: 64 MiB].
    pub metadata_cache_bytes: Option<u64>,
    /// Bytes of derived files (rollups, trace-id filters) a node that reads
    /// from the bucket keeps on its local disk [default: 1 GiB].
    pub cache_bytes: Option<u64>,
    /// Bytes of whole Parquet files a query node keeps on its local disk
    /// once read, so warm queries do not go to the bucket [default: 4 GiB;
    /// 0 turns it off].
    pub file_cache_bytes: Option<u64>,
    /// Where query nodes reach this node's rows not yet in the bucket (the
    /// ingest role's Arrow Flight service), written into its lease. Set by
    /// `serve` from `cluster.flight_addr` / `cluster.advertise_url`.
    #[serde(skip)]
    pub advertise_url: Option<String>,
}

/// The node id of the compact role: its lease is the compaction lease, so
/// exactly one compactor acts at a time.
pub const COMPACTOR_NODE: &str = "compactor";

/// How long a lease lasts unless renewed [default].
pub const DEFAULT_LEASE_SECS: u64 = 30;
/// Files up to this size go up in one PUT; larger ones as a multipart
/// upload of parts this size.
const UPLOAD_PART_BYTES: usize = 10 << 20;
/// Manifest versions kept per node; older ones are deleted.
const KEEP_MANIFESTS: usize = 8;

/// A connected bucket, for one node id.
#[derive(Debug)]
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    node_id: String,
    lease_secs: u64,
    /// This process's lease token.
    owner: String,
    lease: tokio::sync::Mutex<Option<object_store::UpdateVersion>>,
    /// When the lease was last taken or renewed (ms since the epoch).
    renewed_at_ms: std::sync::atomic::AtomicI64,
    /// Another process took the lease: nothing more may be written.
    lost: std::sync::atomic::AtomicBool,
    /// Since when (ms since the epoch) flushes to the bucket have failed;
    /// 0 while they succeed.
    failing_since_ms: std::sync::atomic::AtomicI64,
    counts: Arc<Counts>,
    /// Written into the lease: where this node's live rows are served.
    advertise_url: Option<String>,
}

/// The lease object's body.
#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    owner: String,
    host: String,
    pid: u32,
    expires_at_ms: i64,
    /// The kernel boot and PID namespace the pid belongs to: a pid is only
    /// judged (alive or not) by a process that shares both.
    #[serde(default)]
    pid_scope: String,
    /// Where the node serves its rows not yet in the bucket (Arrow Flight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    advertise_url: Option<String>,
}

/// This process's boot id and PID namespace, or empty where unknown.
fn pid_scope() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if boot.trim().is_empty() || ns.is_empty() {
        String::new()
    } else {
        format!("{}/{ns}", boot.trim())
    }
}

fn now_ms() -> i64 {
    crate::engine::now_ns() / 1_000_000
}

/// The union of manifest versions of different nodes, without the files
/// any of them tombstones.
pub fn merge_versions<'a>(versions: impl Iterator<Item = &'a Manifest> + Clone) -> Manifest {
    let gone: std::collections::HashSet<&str> = versions
        .clone()
        .flat_map(|m| m.tombstones.values().flatten().map(String::as_str))
        .collect();
    let mut merged = Manifest {
        version: 1,
        ..Default::default()
    };
    for m in versions {
        for (table, files) in &m.tables {
            let into = merged.tables.entry(table.clone()).or_default();
            for f in files {
                if !gone.contains(f.path.as_str()) && !into.iter().any(|g| g.path == f.path) {
                    into.push(f.clone());
                    if let Some(d) = m.derived.get(&f.path) {
                        merged.derived.insert(f.path.clone(), d.clone());
                    }
                }
            }
        }
    }
    merged
}

/// A node id fit for object names: `[a-z0-9-]`, other characters become `-`.
pub fn sanitize_node_id(id: &str) -> String {
    let s: String = id
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "node".into() } else { s }
}

/// The host name, for the default node id.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "node".into())
}

impl StorageConfig {
    /// The node id: the configured one or the host name, sanitised.
    pub fn node_id(&self) -> String {
        sanitize_node_id(self.node_id.as_deref().unwrap_or(&host_name()))
    }
}

fn bad(url: &str, reason: impl std::fmt::Display) -> Error {
    Error::Storage(format!("storage.url {url}: {reason}"))
}

impl Remote {
    /// Builds the object store for `cfg.url` and checks that it answers
    /// (one LIST). `None` when no URL is set.
    pub async fn connect(cfg: &StorageConfig) -> Result<Option<Remote>> {
        let Some(url) = cfg.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let parsed = url::Url::parse(url).map_err(|e| bad(url, format!("not a URL: {e}")))?;
        let prefix = Path::from(parsed.path().trim_matches('/'));
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad(url, "no bucket name (expected s3://bucket/prefix)"))?;
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(20),
                        ..Default::default()
                    })
                    // Not `with_client_options`: that would drop what
                    // `from_env` read (AWS_ALLOW_HTTP among others).
                    .with_config(
                        AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                        "5s",
                    )
                    .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "60s");
                if std::env::var_os("AWS_REGION").is_none() && cfg.region.is_none() {
                    b = b.with_region("us-east-1");
                }
                if let Some(v) = &cfg.endpoint {
                    b = b.with_endpoint(v);
                }
                if let Some(v) = &cfg.region {
                    b = b.with_region(v);
                }
                if let Some(v) = &cfg.access_key_id {
                    b = b.with_access_key_id(v);
                }
                if let Some(v) = &cfg.secret_access_key {
                    b = b.with_secret_access_key(v);
                }
                if let Some(v) = cfg.allow_http {
                    b = b.with_allow_http(v);
                }
                Arc::new(b.build().map_err(|e| bad(url, e))?)
            }
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| bad(url, "expected file:///absolute/path"))?;
                std::fs::create_dir_all(&dir).map_err(|e| bad(url, e))?;
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&dir)
                        .map_err(|e| bad(url, e))?,
                )
            }
            other => {
                return Err(bad(
                    url,
                    format!("unsupported scheme {other:?} (use s3:// or file://)"),
                ));
            }
        };
        let counts = Arc::new(Counts::default());
        let store: Arc<dyn ObjectStore> = Arc::new(counted::Counted::new(store, counts.clone()));
        let remote = Remote {
            counts,
            store,
            prefix: if matches!(parsed.scheme(), "file") {
                Path::default()
            } else {
                prefix
            },
            url: url.to_string(),
            node_id: cfg.node_id(),
            lease_secs: cfg.lease_secs.unwrap_or(DEFAULT_LEASE_SECS).max(3),
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            lease: tokio::sync::Mutex::new(None),
            renewed_at_ms: std::sync::atomic::AtomicI64::new(0),
            failing_since_ms: std::sync::atomic::AtomicI64::new(0),
            lost: std::sync::atomic::AtomicBool::new(false),
            advertise_url: cfg.advertise_url.clone(),
        };
        // One request that needs the bucket and the credentials.
        remote
            .store
            .list_with_delimiter(Some(&remote.path("manifests")))
            .await
            .map_err(|e| {
                bad(
                    url,
                    format!(
                        "the bucket does not answer ({}); check the bucket name, \
                         the endpoint (storage.endpoint / AWS_ENDPOINT_URL) and the \
                         credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
                        short(&e)
                    ),
                )
            })?;
        Ok(Some(remote))
    }

    /// Requests and bytes to and from the bucket since start.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// What this process puts in its file names: the node id and a short
    /// token of this process, so two processes never write one object name
    /// (not even one that lost its lease and does not know it yet).
    pub fn file_tag(&self) -> String {
        format!("{}-{}", self.node_id, &self.owner[self.owner.len() - 6..])
    }

    /// This process's lease token (written into its manifest versions).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The object store, for readers that go to the bucket directly.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn err(&self, what: &str, e: object_store::Error) -> Error {
        Error::Storage(format!("{what} in {}: {}", self.url, short(&e)))
    }

    /// Uploads the local file `local` as `rel`, streaming it (multipart
    /// past 10 MiB, so neither memory nor one request's time limit grows
    /// with the file).
    pub async fn upload(&self, local: std::path::PathBuf, rel: &str) -> Result<()> {
        use tokio::io::AsyncWriteExt as _;
        self.check_fenced()?;
        let mut file = tokio::fs::File::open(&local)
            .await
            .map_err(|e| Error::io(&local, e))?;
        let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let mut w = object_store::buffered::BufWriter::with_capacity(
            self.store.clone(),
            self.path(rel),
            UPLOAD_PART_BYTES,
        );
        let done = match tokio::io::copy(&mut file, &mut w).await {
            // A writer whose shutdown failed is finished: it cannot be
            // aborted (a multipart upload it began is left to the bucket's
            // clean-up of incomplete uploads).
            Ok(_) => w.shutdown().await,
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        };
        if let Err(e) = done {
            Counts::add(&self.counts.errors, 1);
            return Err(Error::Storage(format!(
                "cannot upload {rel} to {}: {e}",
                self.url
            )));
        }
        if len >= UPLOAD_PART_BYTES as u64 {
            // Sent as a multipart upload, whose parts the counting layer
            // does not see.
            Counts::add(&self.counts.bytes_up, len);
        }
        Ok(())
    }

    /// Downloads `rel` into the local file `local`, streaming it to a
    /// temporary file that is fsync'd and renamed into place.
    pub async fn download(&self, rel: &str, local: &LocalPath) -> Result<()> {
        use futures::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let dir = local
            .parent()
            .ok_or_else(|| Error::Internal(format!("{} has no parent", local.display())))?
            .to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io(&dir, e))?;
        let tmp = local.with_extension(format!("download-{}.tmp", uuid::Uuid::new_v4().simple()));
        let result: Result<()> = async {
            let mut stream = self
                .store
                .get(&self.path(rel))
                .await
                .map_err(|e| self.err(&format!("cannot read {rel}"), e))?
                .into_stream();
            let mut f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| Error::io(&tmp, e))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.err(&format!("cannot read {rel}"), e))?;
                f.write_all(&chunk).await.map_err(|e| Error::io(&tmp, e))?;
            }
            f.sync_all().await.map_err(|e| Error::io(&tmp, e))?;
            tokio::fs::rename(&tmp, local)
                .await
                .map_err(|e| Error::io(local, e))?;
            let d = dir.clone();
            tokio::task::spawn_blocking(move || crate::fsutil::sync_dir(&d))
                .await
                .map_err(|e| Error::Internal(format!("download task failed: {e}")))?
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    /// Records whether the last flush to the bucket succeeded.
    pub fn note_flush(&self, ok: bool) {
        use std::sync::atomic::Ordering;
        if ok {
            self.failing_since_ms.store(0, Ordering::Release);
        } else {
            let _ = self.failing_since_ms.compare_exchange(
                0,
                now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }

    /// Whether the bucket is failing now: the last flush to it failed, or
    /// the lease has gone unrenewed for two renewal periods (requests hang).
    pub fn is_failing(&self) -> bool {
        use std::sync::atomic::Ordering;
        let renewed = self.renewed_at_ms.load(Ordering::Acquire);
        let overdue = renewed > 0 && now_ms() - renewed > 2 * self.renew_every().as_millis() as i64;
        overdue || self.failing_since_ms.load(Ordering::Acquire) > 0
    }

    /// The whole object `rel`; `None` when it does not exist.
    pub async fn get_bytes(&self, rel: &str) -> Result<Option<bytes::Bytes>> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.err(&format!("cannot read {rel}"), e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(&format!("cannot read {rel}"), e)),
        }
    }

    /// Deletes `rel` (already gone is fine).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(&format!("cannot delete {rel}"), e)),
        }
    }

    fn manifest_dir(&self, node: &str) -> Path {
        self.path(&format!("manifests/{node}"))
    }

    /// Creates the next manifest version of this node: `m.seq` is set to
    /// it. A version is never overwritten. When `m.seq` exists already and
    /// this process wrote it (an earlier attempt whose answer was lost, so
    /// the caller took it for failed), the next number is used: the newest
    /// version is the node's manifest, so the earlier one no longer counts.
    /// A version another process wrote means two processes run as this node
    /// id: refused.
    pub async fn put_manifest(&self, m: &mut Manifest) -> Result<()> {
        self.check_fenced()?;
        m.writer = self.owner.clone();
        for _ in 0..8 {
            let body = serde_json::to_vec(&*m).map_err(|e| Error::Internal(e.to_string()))?;
            let path = self
                .manifest_dir(&self.node_id)
                .join(format!("{:020}.json", m.seq));
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            match self.store.put_opts(&path, body.into(), opts).await {
                Ok(_) => {
                    self.delete_old_manifests(m.seq).await;
                    return Ok(());
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    let theirs = self.get_manifest(&path).await?;
                    if theirs.writer != self.owner {
                        return Err(Error::Storage(format!(
                            "manifest version {} of node {:?} exists already in {}: another \
                             process writes as this node id",
                            m.seq, self.node_id, self.url
                        )));
                    }
                    m.seq += 1;
                }
                Err(e) => return Err(self.err("cannot write the manifest", e)),
            }
        }
        Err(Error::Storage(format!(
            "cannot write a manifest version of node {:?} in {}: every number tried exists",
            self.node_id, self.url
        )))
    }

    async fn get_manifest(&self, path: &Path) -> Result<Manifest> {
        let bytes = self
            .store
            .get(path)
            .await
            .map_err(|e| self.err("cannot read the manifest", e))?
            .bytes()
            .await
            .map_err(|e| self.err("cannot read the manifest", e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::Storage(format!(
                "manifest {path} in {} does not parse: {e}",
                self.url
            ))
        })
    }

    async fn delete_old_manifests(&self, seq: u64) {
        if seq > KEEP_MANIFESTS as u64 {
            let old = self
                .manifest_dir(&self.node_id)
                .join(format!("{:020}.json", seq - KEEP_MANIFESTS as u64));
            if let Err(e) = self.store.delete(&old).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                tracing::warn!(error = %short(&e), "cannot delete an old manifest version");
            }
        }
    }

    /// Every object under `dir` (recursively); `what` names them in errors.
    async fn list_all(&self, dir: &Path, what: &str) -> Result<Vec<object_store::ObjectMeta>> {
        self.store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| self.err(&format!("cannot list {what}"), e))
    }

    /// Every object under the table directories and the derived-file
    /// directory, as paths relative to the prefix.
    pub async fn data_objects(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let dirs = crate::schema::Table::ALL
            .iter()
            .map(|t| t.name())
            .chain([crate::files::DERIVED_DIR]);
        for dir in dirs {
            let list = self.list_all(&self.path(dir), "the files").await?;
            out.extend(list.into_iter().map(|o| self.rel_of(&o.location)));
        }
        Ok(out)
    }

    /// Every manifest version kept in the bucket, of every node.
    pub async fn all_versions(&self) -> Result<Vec<Manifest>> {
        let list = self
            .list_all(&self.path("manifests"), "the manifests")
            .await?;
        let mut out = Vec::new();
        for o in list
            .iter()
            .filter(|o| o.location.as_ref().ends_with(".json"))
        {
            match self.get_manifest(&o.location).await {
                Ok(m) => out.push(m),
                // Deleted since the listing: a newer version exists.
                Err(_) if self.store.head(&o.location).await.is_err() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `p` relative to the prefix.
    fn rel_of(&self, p: &Path) -> String {
        let full = p.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(prefix)
                .map(|r| r.trim_start_matches('/').to_string())
                .unwrap_or_else(|| full.to_string())
        }
    }

    /// The newest manifest version of `node`, if it has any.
    pub async fn latest_manifest(&self, node: &str) -> Result<Option<Manifest>> {
        let dir = self.manifest_dir(node);
        let list = self.list_all(&dir, "the manifests").await?;
        let Some(newest) = list
            .iter()
            .filter(|o| o.location.as_ref().ends_with(".json"))
            .max_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()))
        else {
            return Ok(None);
        };
        self.get_manifest(&newest.location).await.map(Some)
    }

    /// The newest manifest version number of every node, from one listing.
    pub async fn manifest_heads(&self) -> Result<BTreeMap<String, u64>> {
        let list = self
            .list_all(&self.path("manifests"), "the manifests")
            .await?;
        let mut heads = BTreeMap::new();
        for o in list {
            let parts: Vec<&str> = o.location.as_ref().rsplitn(3, '/').collect();
            let (Some(file), Some(node)) = (parts.first(), parts.get(1)) else {
                continue;
            };
            let Some(seq) = file
                .strip_suffix(".json")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let head = heads.entry(node.to_string()).or_insert(seq);
            *head = (*head).max(seq);
        }
        Ok(heads)
    }

    /// Version `seq` of `node`'s manifest.
    pub async fn manifest_version(&self, node: &str, seq: u64) -> Result<Manifest> {
        let path = self.manifest_dir(node).join(format!("{seq:020}.json"));
        self.get_manifest(&path).await
    }

    /// Nodes whose lease is unexpired and that advertise where they serve
    /// their live rows: `(node id, URL)`.
    pub async fn advertised_nodes(&self) -> Result<Vec<(String, String)>> {
        let list = self
            .list_all(&self.path("nodes"), "the node leases")
            .await?;
        let mut out = Vec::new();
        for o in list {
            let Some(node) = o
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".lease"))
                .map(str::to_string)
            else {
                continue;
            };
            let bytes = match self.store.get(&o.location).await {
                Ok(r) => r.bytes().await.ok(),
                Err(_) => None,
            };
            let Some(lease) = bytes.and_then(|b| serde_json::from_slice::<Lease>(&b).ok()) else {
                continue;
            };
            if lease.expires_at_ms > now_ms()
                && let Some(url) = lease.advertise_url
            {
                out.push((node, url));
            }
        }
        Ok(out)
    }

    /// The union of every node's newest manifest version: what a reader of
    /// the whole bucket sees, from one listing. Paths are relative to the
    /// prefix. The compactor's version is merged last, and the files it
    /// tombstones are left out (a version that applied its tombstones was
    /// written after them, so the same listing has them).
    pub async fn merged_manifest(&self) -> Result<Manifest> {
        let mut heads: Vec<(String, u64)> = self.manifest_heads().await?.into_iter().collect();
        heads.sort_by_key(|(n, _)| n == COMPACTOR_NODE);
        let mut versions = Vec::new();
        for (node, seq) in heads {
            versions.push(self.manifest_version(&node, seq).await?);
        }
        Ok(merge_versions(versions.iter()))
    }

    /// The prefix inside the bucket (`""` for none).
    pub fn prefix(&self) -> &str {
        self.prefix.as_ref()
    }

    fn lease_path(&self) -> Path {
        self.path(&format!("nodes/{}.lease", self.node_id))
    }

    /// Takes this node id's lease, or renews it. Refused while another
    /// process holds it unexpired.
    pub async fn take_lease(&self) -> Result<()> {
        let path = self.lease_path();
        let mut held = self.lease.lock().await;
        let current = match self.store.get(&path).await {
            Ok(r) => {
                let version = object_store::UpdateVersion {
                    e_tag: r.meta.e_tag.clone(),
                    version: r.meta.version.clone(),
                };
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| self.err("cannot read the node lease", e))?;
                let lease: Option<Lease> = serde_json::from_slice(&bytes).ok();
                Some((version, lease))
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(self.err("cannot read the node lease", e)),
        };
        if held.is_some()
            && let Some((_, Some(l))) = &current
            && l.owner != self.owner
        {
            // We held it, and someone else has it now: fenced for good.
            self.lost.store(true, std::sync::atomic::Ordering::Release);
            return Err(Error::Storage(format!(
                "lost this node's lease in {} to process {} on host {:?}: this process \
                 writes nothing more to the bucket",
                self.url, l.pid, l.host
            )));
        }
        if let Some((_, Some(l))) = &current
            && l.owner != self.owner
            && l.expires_at_ms > now_ms()
            && !holder_is_dead(l)
        {
            return Err(Error::LeaseHeld(format!(
                "node id {:?} is live in {}: process {} on host {:?} holds its lease for \
                 {} s more; give this process another --node-id, or stop the other one",
                self.node_id,
                self.url,
                l.pid,
                l.host,
                (l.expires_at_ms - now_ms()) / 1000 + 1
            )));
        }
        let body = serde_json::to_vec(&Lease {
            owner: self.owner.clone(),
            host: host_name(),
            pid: std::process::id(),
            expires_at_ms: now_ms() + self.lease_secs as i64 * 1000,
            pid_scope: pid_scope(),
            advertise_url: self.advertise_url.clone(),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        let mode = match current {
            Some((v, _)) => PutMode::Update(v),
            None => PutMode::Create,
        };
        let payload = PutPayload::from(body);
        let mut put = self
            .store
            .put_opts(
                &path,
                payload.clone(),
                PutOptions {
                    mode: mode.clone(),
                    ..Default::default()
                },
            )
            .await;
        if matches!(mode, PutMode::Update(_))
            && matches!(put, Err(object_store::Error::NotImplemented { .. }))
        {
            // A file system (file://) has no conditional update: the check
            // above is all there is.
            put = self.store.put(&path, payload).await;
        }
        match put {
            Ok(r) => {
                *held = Some(object_store::UpdateVersion {
                    e_tag: r.e_tag,
                    version: r.version,
                });
                self.renewed_at_ms
                    .store(now_ms(), std::sync::atomic::Ordering::Release);
                Ok(())
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Err(Error::LeaseHeld(format!(
                "node id {:?} is live in {}: another process took its lease at the same \
                 time; give this process another --node-id",
                self.node_id, self.url
            ))),
            Err(e) => Err(self.err("cannot write the node lease", e)),
        }
    }

    /// Seconds between lease renewals.
    pub fn renew_every(&self) -> Duration {
        Duration::from_secs(self.lease_secs / 3).max(Duration::from_secs(1))
    }

    /// Gives the lease up (at a clean close), so the node id can start
    /// again at once; only if it is still this process's.
    pub async fn release_lease(&self) {
        let held = self.lease.lock().await.take();
        if held.is_none() || self.lost.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let path = self.lease_path();
        let ours = match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<Lease>(&b).ok())
                .is_some_and(|l| l.owner == self.owner),
            Err(_) => false,
        };
        if ours && let Err(e) = self.store.delete(&path).await {
            tracing::warn!(error = %short(&e), "cannot release the node lease");
        }
    }

    /// Refuses writes once the lease is lost, or when it was not renewed
    /// for a whole lease period (another process may hold it by now).
    pub fn check_fenced(&self) -> Result<()> {
        use std::sync::atomic::Ordering;
        if self.lost.load(Ordering::Acquire) {
            return Err(Error::Storage(format!(
                "this process lost node {:?}'s lease in {}: it writes nothing more",
                self.node_id, self.url
            )));
        }
        let renewed = self.renewed_at_ms.load(Ordering::Acquire);
        if renewed > 0 && now_ms() - renewed > self.lease_secs as i64 * 1000 {
            return Err(Error::Storage(format!(
                "node {:?}'s lease in {} was not renewed for {} s (the bucket does not \
                 answer): writes wait until it is",
                self.node_id,
                self.url,
                (now_ms() - renewed) / 1000
            )));
        }
        Ok(())
    }
}

/// Whether the lease's holder was a process on this host that is gone (a
/// restart after a crash need not wait for the lease to run out).
fn holder_is_dead(l: &Lease) -> bool {
    cfg!(target_os = "linux")
        && !l.pid_scope.is_empty()
        && l.pid_scope == pid_scope()
        && l.host == host_name()
        && l.pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{}", l.pid)).exists()
}

/// The first line of an object-store error, without the long chain.
fn short(e: &object_store::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) && depth < 3 {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
        depth += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_fit_for_object_names() {
        assert_eq!(
            sanitize_node_id("Ingest_1.example.com"),
            "ingest-1-example-com"
        );
        assert_eq!(sanitize_node_id("  "), "node");
        assert_eq!(sanitize_node_id("a/../b"), "a----b");
    }
}
