//! Helpers shared by Burnwatch's tests; a dev-dependency of the crates
//! that need them, never part of the product.
//!
//! - [`store_config`], [`temp_store`]: a store in a temporary directory,
//!   with replaced files deleted at once (no grace period).
//! - [`webhook`]: a webhook receiver on a real socket that keeps every
//!   JSON payload, and a wait for them to arrive.
//! - [`serve`]: a router on a loopback port.
//! - [`otlp`]: OTLP export requests and attributes.
//! - [`files_under`]: every file below a directory, for tests of what is
//!   on disk.
//! - `synth` (re-exported from the store's `testkit` feature): synthetic
//!   spans, logs and metric points.

use std::path::{Path, PathBuf};

pub use store::synth;
use store::{Store, StoreConfig};

pub mod otlp;
pub mod webhook;

/// Store settings for tests: data under `dir`, replaced files deleted at
/// once, everything else the default.
pub fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        delete_grace_secs: 0,
        ..Default::default()
    }
}

/// A store opened with [`store_config`] in a new temporary directory, which
/// lives as long as the returned guard.
pub async fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(store_config(dir.path()))
        .await
        .expect("a store in a temporary directory");
    (dir, store)
}

/// Every file below `dir` (none if it does not exist), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Serves `router` on a new loopback port in a background task; returns
/// its base URL (`http://127.0.0.1:PORT`).
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serving") });
    base
}
