//! Shared test harness: a store plus both receivers on ephemeral loopback ports.

#![allow(dead_code)]

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use collector::{Collector, CollectorConfig, CollectorMetrics};
use store::{Store, StoreConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Server {
    pub store: Store,
    pub collector: Collector,
    pub token: CancellationToken,
    pub tracker: TaskTracker,
    pub metrics: Arc<CollectorMetrics>,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_, _| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut StoreConfig, &mut CollectorConfig)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut sc = StoreConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let mut cc = CollectorConfig {
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        tweak(&mut sc, &mut cc);
        let store = Store::open(sc).await.unwrap();
        let token = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = Arc::new(CollectorMetrics::default());
        let collector =
            Collector::start(cc, store.clone(), metrics.clone(), token.clone(), &tracker)
                .await
                .unwrap();
        Server {
            store,
            collector,
            token,
            tracker,
            metrics,
            dir,
        }
    }

    /// The receivers' `/metrics` text.
    pub fn metrics_text(&self) -> String {
        let m = self.metrics.clone();
        exposition::encode(&[Arc::new(move |o: &mut exposition::Out<'_>| m.collect(o))])
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.collector.http_addr)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.collector.grpc_addr)
    }

    pub async fn sql(&self, q: &str) -> Vec<RecordBatch> {
        store::query::session_context(&self.store)
            .sql(q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .collect()
            .await
            .unwrap()
    }

    pub async fn text(&self, q: &str) -> String {
        pretty_format_batches(&self.sql(q).await)
            .unwrap()
            .to_string()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let b = self.sql(&format!("SELECT count(*) FROM {table}")).await;
        b[0].column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    }

    pub async fn stop(self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.store.close().await.unwrap();
    }
}
