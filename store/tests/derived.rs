//! Derived files (rollups, filters) kept by the store: one atomic write,
//! listed in the manifest beside their data file, checked on every read and
//! by the scrub, quarantined when damaged, removed with their data file by
//! compaction and retention, and orphans cleaned at start-up.

use std::path::Path;
use std::sync::atomic::Ordering;

use store::files::{HOUR_NS, Manifest};
use store::{Error, Store, StoreConfig, Table, synth};

/// 2024-03-05T10:00:00Z
const BASE: i64 = 1_709_632_800_000_000_000;

use testkit::{files_under, store_config as config};

/// A store with `n` flushed spans files in the hour at `BASE`.
async fn store_with_files(dir: &Path, n: u64) -> (Store, Vec<String>) {
    let store = Store::open(config(dir)).await.unwrap();
    for seed in 0..n {
        store
            .write(Table::Spans, synth::spans(seed, 50, BASE, HOUR_NS - 1))
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let files = store
        .snapshot(Table::Spans)
        .files
        .into_iter()
        .map(|(_, m)| m.path)
        .collect();
    (store, files)
}

fn listed(dir: &Path) -> Manifest {
    Manifest::load(dir).unwrap().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_files_round_trip_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, files) = store_with_files(dir.path(), 2).await;
    assert!(
        store
            .read_derived("red-v1", &files[0])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .write_derived("red-v1", &files[0], b"rollup".to_vec())
            .await
            .unwrap()
    );
    assert!(
        store
            .write_derived("sli-v1/00ff", &files[0], b"sli".to_vec())
            .await
            .unwrap()
    );
    assert!(store.has_derived("red-v1", &files[0]));
    assert!(!store.has_derived("red-v1", &files[1]));
    assert_eq!(
        store.read_derived("red-v1", &files[0]).await.unwrap(),
        Some(b"rollup".to_vec())
    );
    let path = store.derived_path("red-v1", &files[0]);
    assert_eq!(
        path,
        dir.path().join("rollups/red-v1").join(&files[0]),
        "kept beside the data file's path"
    );
    // Replacing one keeps the new bytes and checksum.
    store
        .write_derived("red-v1", &files[0], b"rollup, again".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.read_derived("red-v1", &files[0]).await.unwrap(),
        Some(b"rollup, again".to_vec())
    );
    store.close().await.unwrap();
    // The manifest lists them beside their data file, with size and CRC.
    let m = listed(dir.path());
    let kinds = &m.derived[&files[0]];
    assert_eq!(kinds.len(), 2);
    assert_eq!(kinds["red-v1"].bytes, 13);
    assert_eq!(kinds["red-v1"].crc32, crc32fast::hash(b"rollup, again"));
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(
        store.read_derived("sli-v1/00ff", &files[0]).await.unwrap(),
        Some(b"sli".to_vec())
    );
    // No temp file is left anywhere.
    let all = files_under(dir.path());
    assert!(
        all.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "{all:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_derived_files_go_to_quarantine_and_can_be_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, files) = store_with_files(dir.path(), 2).await;
    for f in &files {
        store
            .write_derived("traces-v1", f, vec![7u8; 64])
            .await
            .unwrap();
    }
    // One byte flipped: the checksum finds it.
    let victim = store.derived_path("traces-v1", &files[0]);
    let mut b = std::fs::read(&victim).unwrap();
    b[10] ^= 1;
    std::fs::write(&victim, b).unwrap();
    let err = store
        .read_derived("traces-v1", &files[0])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("checksum")),
        "{err}"
    );
    assert!(!victim.exists());
    assert!(!store.has_derived("traces-v1", &files[0]));
    assert_eq!(
        std::fs::read_dir(store.quarantine_dir()).unwrap().count(),
        1
    );
    assert_eq!(
        store.metrics().derived_quarantined.load(Ordering::Relaxed),
        1
    );
    // Its owner computes it again.
    assert!(
        store
            .read_derived("traces-v1", &files[0])
            .await
            .unwrap()
            .is_none()
    );
    store
        .write_derived("traces-v1", &files[0], vec![7u8; 64])
        .await
        .unwrap();
    assert!(
        store
            .read_derived("traces-v1", &files[0])
            .await
            .unwrap()
            .is_some()
    );

    // Cut short: the size finds it. The scrub checks every derived file.
    let victim = store.derived_path("traces-v1", &files[1]);
    std::fs::write(&victim, [7u8; 10]).unwrap();
    assert_eq!(store.scrub().await.unwrap(), 1);
    assert!(!store.has_derived("traces-v1", &files[1]));
    assert!(store.has_derived("traces-v1", &files[0]));
    assert_eq!(
        store.metrics().derived_quarantined.load(Ordering::Relaxed),
        2
    );
    // An owner that cannot decode what it reads rejects it the same way.
    store
        .reject_derived("traces-v1", &files[0], "unknown version")
        .await
        .unwrap();
    assert!(!store.has_derived("traces-v1", &files[0]));
    assert_eq!(
        std::fs::read_dir(store.quarantine_dir()).unwrap().count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn derived_files_leave_with_their_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, files) = store_with_files(dir.path(), 3).await;
    for f in &files {
        store
            .write_derived("red-v1", f, b"r".to_vec())
            .await
            .unwrap();
        store
            .write_derived("traces-v1", f, b"t".to_vec())
            .await
            .unwrap();
    }
    // Compaction replaces the three files with one: their derived files go.
    assert_eq!(store.compact(BASE + 10 * HOUR_NS).await.unwrap(), 3);
    for f in &files {
        assert!(!store.has_derived("red-v1", f));
        assert!(!store.derived_path("red-v1", f).exists());
        assert!(!store.derived_path("traces-v1", f).exists());
    }
    assert!(listed(dir.path()).derived.is_empty());
    assert!(
        files_under(&dir.path().join("rollups")).is_empty(),
        "empty partition directories go too"
    );
    // Writing for a file that is no longer live keeps nothing.
    assert!(
        !store
            .write_derived("red-v1", &files[0], b"late".to_vec())
            .await
            .unwrap()
    );
    assert!(!store.derived_path("red-v1", &files[0]).exists());
    // Retention takes the compacted file's derived files with it.
    let out = store.snapshot(Table::Spans).files[0].1.path.clone();
    store
        .write_derived("red-v1", &out, b"r".to_vec())
        .await
        .unwrap();
    let cfg = StoreConfig {
        retention_hours: store::RetentionConfig {
            spans: 1,
            logs: 0,
            metric_points: 0,
        },
        ..config(dir.path())
    };
    store.close().await.unwrap();
    let store = Store::open(cfg).await.unwrap();
    assert!(store.has_derived("red-v1", &out));
    assert_eq!(store.apply_retention(BASE + 10 * HOUR_NS).await.unwrap(), 1);
    assert!(!store.has_derived("red-v1", &out));
    assert!(!store.derived_path("red-v1", &out).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlisted_derived_files_are_removed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (store, files) = store_with_files(dir.path(), 1).await;
    store
        .write_derived("red-v1", &files[0], b"listed".to_vec())
        .await
        .unwrap();
    store.close().await.unwrap();
    // What a crash leaves: a derived file written but never listed, a temp
    // file, one for a data file that is gone, a manifest temp file.
    let stray = [
        dir.path().join("rollups/traces-v1").join(&files[0]),
        dir.path()
            .join("rollups/red-v1")
            .join(format!("{}.3.tmp", files[0])),
        dir.path()
            .join("rollups/red-v1/spans/date=2024-03-05/hour=09/flush-0000000001.parquet"),
        dir.path().join("manifest.json.7.tmp"),
    ];
    for p in &stray {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }
    let store = Store::open(config(dir.path())).await.unwrap();
    for p in &stray {
        assert!(!p.exists(), "{p:?} should be removed");
    }
    assert!(!dir.path().join("rollups/traces-v1").exists());
    assert_eq!(
        store.read_derived("red-v1", &files[0]).await.unwrap(),
        Some(b"listed".to_vec())
    );
    // A listed file that went missing is unlisted, not an error.
    std::fs::remove_file(store.derived_path("red-v1", &files[0])).unwrap();
    store.close().await.unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert!(!store.has_derived("red-v1", &files[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_no_longer_wanted_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, files) = store_with_files(dir.path(), 2).await;
    for f in &files {
        for kind in ["sli-v1/aa", "sli-v1/bb", "red-v1"] {
            store.write_derived(kind, f, b"x".to_vec()).await.unwrap();
        }
    }
    let removed = store
        .remove_derived("sli-v1", |kind| kind == "sli-v1/bb")
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(store.metrics().derived_removed.load(Ordering::Relaxed), 2);
    for f in &files {
        assert!(!store.has_derived("sli-v1/aa", f));
        assert!(store.has_derived("sli-v1/bb", f));
        assert!(store.has_derived("red-v1", f));
    }
    assert!(!dir.path().join("rollups/sli-v1/aa").exists());
    assert!(dir.path().join("rollups/sli-v1/bb").exists());
    // `sli-v1` is a root: `sli-v10` is not under it.
    store
        .write_derived("sli-v10", &files[0], b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(store.remove_derived("sli-v1", |_| false).await.unwrap(), 2);
    assert!(store.has_derived("sli-v10", &files[0]));
    assert!(dir.path().join("rollups/sli-v1").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kinds_and_read_only_stores_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, files) = store_with_files(dir.path(), 1).await;
    for kind in ["", "../x", "Red", "a//b", "a/", "red v1"] {
        let err = store
            .write_derived(kind, &files[0], b"x".to_vec())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("derived kind"), "{kind:?}: {err}");
    }
    store
        .write_derived("red-v1", &files[0], b"x".to_vec())
        .await
        .unwrap();
    store.close().await.unwrap();
    let ro = Store::open_read_only(config(dir.path())).await.unwrap();
    assert_eq!(
        ro.read_derived("red-v1", &files[0]).await.unwrap(),
        Some(b"x".to_vec())
    );
    assert!(matches!(
        ro.write_derived("red-v1", &files[0], b"y".to_vec()).await,
        Err(Error::ReadOnly)
    ));
}
