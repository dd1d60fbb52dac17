//! An object store that counts what it is asked for: requests by kind and
//! bytes up and down, for `/metrics` and the benchmarks.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Requests and bytes, since start.
#[derive(Debug, Default)]
pub struct Counts {
    /// PUT requests (single-part uploads and conditional writes).
    pub puts: AtomicU64,
    /// Multipart uploads started.
    pub multipart_puts: AtomicU64,
    /// GET requests (whole objects, ranges, heads).
    pub gets: AtomicU64,
    /// Ranged reads asked for through `get_ranges` (each may be one GET).
    pub ranges: AtomicU64,
    /// LIST requests.
    pub lists: AtomicU64,
    /// Objects deleted.
    pub deletes: AtomicU64,
    /// Bytes sent in PUTs.
    pub bytes_up: AtomicU64,
    /// Bytes received by GETs.
    pub bytes_down: AtomicU64,
    /// Requests that failed.
    pub errors: AtomicU64,
}

impl Counts {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of every counter: (puts, gets, lists, deletes, bytes up, bytes down).
    pub fn snapshot(&self) -> CountsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountsSnapshot {
            puts: g(&self.puts) + g(&self.multipart_puts),
            gets: g(&self.gets),
            lists: g(&self.lists),
            deletes: g(&self.deletes),
            bytes_up: g(&self.bytes_up),
            bytes_down: g(&self.bytes_down),
            errors: g(&self.errors),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountsSnapshot {
    /// PUTs, single and multipart.
    pub puts: u64,
    /// GETs.
    pub gets: u64,
    /// LISTs.
    pub lists: u64,
    /// Deletes.
    pub deletes: u64,
    /// Bytes uploaded.
    pub bytes_up: u64,
    /// Bytes downloaded.
    pub bytes_down: u64,
    /// Failed requests.
    pub errors: u64,
}

impl std::ops::Sub for CountsSnapshot {
    type Output = CountsSnapshot;
    fn sub(self, o: CountsSnapshot) -> CountsSnapshot {
        CountsSnapshot {
            puts: self.puts - o.puts,
            gets: self.gets - o.gets,
            lists: self.lists - o.lists,
            deletes: self.deletes - o.deletes,
            bytes_up: self.bytes_up - o.bytes_up,
            bytes_down: self.bytes_down - o.bytes_down,
            errors: self.errors - o.errors,
        }
    }
}

/// `inner`, counted.
#[derive(Debug)]
pub struct Counted {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<Counts>,
}

impl Counted {
    /// Wraps `inner`; the counts go to `counts`.
    pub fn new(inner: Arc<dyn ObjectStore>, counts: Arc<Counts>) -> Self {
        Counted { inner, counts }
    }

    fn count<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            Counts::add(&self.counts.errors, 1);
        }
        r
    }
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Counted {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        Counts::add(&self.counts.puts, 1);
        Counts::add(&self.counts.bytes_up, payload.content_length() as u64);
        let r = self.inner.put_opts(location, payload, opts).await;
        self.count(r)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Counts::add(&self.counts.multipart_puts, 1);
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.count(r)
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        Counts::add(&self.counts.gets, 1);
        let r = self.inner.get_opts(location, options).await;
        if let Ok(g) = &r {
            Counts::add(&self.counts.bytes_down, g.range.end - g.range.start);
        }
        self.count(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        Counts::add(&self.counts.ranges, ranges.len() as u64);
        // The inner store coalesces nearby ranges into fewer GETs; each of
        // those goes through its `get_opts`, which is not this one, so the
        // GETs are counted here as the coalesced requests it makes.
        let r = object_store::coalesce_ranges(
            ranges,
            |range| async move {
                Counts::add(&self.counts.gets, 1);
                let b = self.inner.get_range(location, range).await?;
                Counts::add(&self.counts.bytes_down, b.len() as u64);
                Ok::<_, object_store::Error>(b)
            },
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await;
        self.count(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counts = self.counts.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |r| {
                Counts::add(
                    if r.is_ok() {
                        &counts.deletes
                    } else {
                        &counts.errors
                    },
                    1,
                )
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        Counts::add(&self.counts.lists, 1);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        Counts::add(&self.counts.lists, 1);
        let r = self.inner.list_with_delimiter(prefix).await;
        self.count(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        Counts::add(&self.counts.puts, 1);
        let r = self.inner.copy_opts(from, to, options).await;
        self.count(r)
    }
}
