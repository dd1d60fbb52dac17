//! The store on a bucket, with a `file://` URL (the same code path as S3
//! through `object_store`; the S3 protocol itself is tested against a real
//! S3-compatible server in the binary's `tests/object_storage.rs`).

use std::path::Path;

use store::files::{HOUR_NS, Manifest};
use store::{Store, StoreConfig, Table, synth};
use testkit::files_under;

const BASE: i64 = 1_709_632_800_000_000_000;

fn config(data: &Path, bucket: &Path, node: &str) -> StoreConfig {
    StoreConfig {
        storage: store::StorageConfig {
            url: Some(format!("file://{}", bucket.display())),
            node_id: Some(node.into()),
            ..Default::default()
        },
        ..testkit::store_config(data)
    }
}

fn objects(bucket: &Path, under: &str) -> Vec<String> {
    files_under(&bucket.join(under))
        .iter()
        .map(|p| {
            p.strip_prefix(bucket)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

async fn count(store: &Store) -> i64 {
    let b = store::query::collect(store, "SELECT count(*) FROM spans")
        .await
        .unwrap();
    b[0].column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_manifest_versions_go_to_the_bucket_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket) = (dir.path().join("data"), dir.path().join("bucket"));
    let store = Store::open(config(&data, &bucket, "Node A")).await.unwrap();
    store
        .write(Table::Spans, synth::spans(1, 300, BASE, HOUR_NS))
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
        .write(Table::Spans, synth::spans(2, 200, BASE + HOUR_NS, HOUR_NS))
        .await
        .unwrap();
    store.flush().await.unwrap();
    // Every live file is in the bucket under its own path, named for the node.
    let parquet = objects(&bucket, "spans");
    let live: Vec<String> = Manifest::load(&data)
        .unwrap()
        .unwrap()
        .files(Table::Spans)
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(parquet.len(), live.len());
    for p in &live {
        assert!(parquet.contains(p), "{p} not in {parquet:?}");
        assert!(p.contains("/part-node-a-"), "{p}");
    }
    // One version at open (the empty store) and one per flush.
    let versions = objects(&bucket, "manifests/node-a");
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert!(
        versions
            .last()
            .unwrap()
            .ends_with("00000000000000000003.json")
    );
    let local = Manifest::load(&data).unwrap().unwrap();
    assert_eq!(local.seq, 3);
    // Derived files go up before they are listed.
    assert!(
        store
            .write_derived("red-v1", &live[0], b"x".to_vec())
            .await
            .unwrap()
    );
    assert_eq!(objects(&bucket, "rollups").len(), 1);
    store.close().await.unwrap();
    assert!(
        objects(&bucket, "nodes").is_empty(),
        "a clean close gives the lease back"
    );

    // The data directory is lost: the bucket's newest version comes back,
    // files and derived files included.
    std::fs::remove_dir_all(&data).unwrap();
    let store = Store::open(config(&data, &bucket, "node-a")).await.unwrap();
    assert_eq!(count(&store).await, 500);
    assert_eq!(
        store.read_derived("red-v1", &live[0]).await.unwrap(),
        Some(b"x".to_vec())
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_moves_onto_a_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket) = (dir.path().join("data"), dir.path().join("bucket"));
    let store = Store::open(testkit::store_config(&data)).await.unwrap();
    store
        .write(Table::Spans, synth::spans(1, 100, BASE, HOUR_NS))
        .await
        .unwrap();
    store.close().await.unwrap();
    // Reopened with a bucket that holds nothing for this node: the live
    // files go up and a first version names them.
    let store = Store::open(config(&data, &bucket, "n1")).await.unwrap();
    assert_eq!(objects(&bucket, "spans").len(), 1);
    assert_eq!(objects(&bucket, "manifests/n1").len(), 1);
    store.close().await.unwrap();
    std::fs::remove_dir_all(&data).unwrap();
    let store = Store::open(config(&data, &bucket, "n1")).await.unwrap();
    assert_eq!(count(&store).await, 100);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_id_is_refused_and_a_newer_local_manifest_too() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let a = Store::open(config(&dir.path().join("a"), &bucket, "n1"))
        .await
        .unwrap();
    let err = Store::open(config(&dir.path().join("b"), &bucket, "n1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("node id \"n1\" is live"), "{err}");
    a.close().await.unwrap();
    // A data directory written to another bucket is not mixed into this one.
    let other = dir.path().join("other-bucket");
    let s = Store::open(config(&dir.path().join("a"), &other, "n1"))
        .await
        .unwrap();
    s.write(Table::Spans, synth::spans(1, 10, BASE, HOUR_NS))
        .await
        .unwrap();
    s.flush().await.unwrap();
    s.close().await.unwrap();
    let err = Store::open(config(&dir.path().join("a"), &bucket, "n1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("newer than the newest"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_with_data_never_joins_another_directorys_node_id() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    // Machine A runs as n1 on the bucket.
    let a = Store::open(config(&dir.path().join("a"), &bucket, "n1"))
        .await
        .unwrap();
    a.write(Table::Spans, synth::spans(1, 10, BASE, HOUR_NS))
        .await
        .unwrap();
    a.close().await.unwrap();
    // Machine B has its own data, never in a bucket, and the same node id:
    // refused, and its files stay.
    let b_dir = dir.path().join("b");
    let b = Store::open(testkit::store_config(&b_dir)).await.unwrap();
    b.write(Table::Spans, synth::spans(2, 20, BASE, HOUR_NS))
        .await
        .unwrap();
    b.close().await.unwrap();
    let err = Store::open(config(&b_dir, &bucket, "n1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("never written to this bucket"), "{err}");
    let b = Store::open(testkit::store_config(&b_dir)).await.unwrap();
    assert_eq!(count(&b).await, 20);
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_local_copy_is_replaced_by_the_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket) = (dir.path().join("data"), dir.path().join("bucket"));
    let store = Store::open(config(&data, &bucket, "n1")).await.unwrap();
    store
        .write(Table::Spans, synth::spans(1, 100, BASE, HOUR_NS))
        .await
        .unwrap();
    store.close().await.unwrap();
    // Same size, footer overwritten: without the bucket this file would
    // go to quarantine and its rows out of the table.
    let live = Manifest::load(&data).unwrap().unwrap().files(Table::Spans)[0]
        .path
        .clone();
    let path = data.join(&live);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 8..].copy_from_slice(b"garbage!");
    std::fs::write(&path, &bytes).unwrap();
    let store = Store::open(config(&data, &bucket, "n1")).await.unwrap();
    assert_eq!(count(&store).await, 100);
    assert!(files_under(&data.join("quarantine")).is_empty());
    store.close().await.unwrap();
}
