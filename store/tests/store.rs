//! End-to-end tests of the store on real files: round trips through the WAL,
//! memory and Parquet, restarts, crashes, compaction, retention, backpressure
//! and an external Parquet reader.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, RecordBatch};
use arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use store::files::HOUR_NS;
use store::query::session_context;
use store::{Error, Store, StoreConfig, Table, synth};

/// 2024-03-05T10:00:00Z
const BASE: i64 = 1_709_632_800_000_000_000;

use testkit::store_config as config;

async fn sql(store: &Store, q: &str) -> Vec<RecordBatch> {
    session_context(store)
        .sql(q)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()
}

async fn text(store: &Store, q: &str) -> String {
    pretty_format_batches(&sql(store, q).await)
        .unwrap()
        .to_string()
}

async fn count(store: &Store, table: &str) -> i64 {
    let b = sql(store, &format!("SELECT count(*) AS n FROM {table}")).await;
    b[0].column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

/// The same query over plain in-memory copies of what was written.
async fn expected(inputs: &[(Table, Vec<RecordBatch>)], q: &str) -> String {
    let ctx = SessionContext::new();
    for (t, batches) in inputs {
        let mem = MemTable::try_new(t.schema(), vec![batches.clone()]).unwrap();
        ctx.register_table(t.name(), Arc::new(mem)).unwrap();
    }
    let out = ctx.sql(q).await.unwrap().collect().await.unwrap();
    pretty_format_batches(&out).unwrap().to_string()
}

const QUERIES: &[&str] = &[
    "SELECT * FROM spans ORDER BY span_id",
    "SELECT * FROM logs ORDER BY time, body",
    "SELECT * FROM metric_points ORDER BY metric_name, time",
    "SELECT service_name, count(*) AS n, sum(duration_ns) AS d FROM spans GROUP BY service_name ORDER BY service_name",
    "SELECT attributes['http.route'] AS route, http_route, count(*) AS n FROM spans GROUP BY 1, 2 ORDER BY 1",
    "SELECT span_id, e['name'] AS event, e['attributes']['exception.type'] AS ty FROM (SELECT span_id, unnest(events) AS e FROM spans) ORDER BY span_id",
    "SELECT span_id, l['trace_id'] AS linked FROM (SELECT span_id, unnest(links) AS l FROM spans) ORDER BY span_id",
    "SELECT metric_type, value, value_int, bucket_counts, explicit_bounds, positive_bucket_counts, quantiles, exemplars FROM metric_points ORDER BY metric_type, time",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_every_table_through_memory_parquet_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    // Spans spread over three hours, so the flush writes several partitions.
    let spans = vec![
        synth::spans(1, 700, BASE, 3 * HOUR_NS),
        synth::spans(2, 300, BASE, HOUR_NS),
    ];
    let logs = vec![synth::logs(1, 500, BASE)];
    let points = vec![
        synth::metric_points(BASE),
        synth::metric_points(BASE + HOUR_NS),
    ];
    let inputs = vec![
        (Table::Spans, spans.clone()),
        (Table::Logs, logs.clone()),
        (Table::MetricPoints, points.clone()),
    ];
    for (table, batches) in &inputs {
        for b in batches {
            store.write(*table, b.clone()).await.unwrap();
        }
    }

    // 1. From memory.
    for q in QUERIES {
        assert_eq!(
            text(&store, q).await,
            expected(&inputs, q).await,
            "memory: {q}"
        );
    }
    // 2. From Parquet.
    let flushed = store.flush().await.unwrap();
    assert_eq!(flushed, 1000 + 500 + 10);
    let stats = store.stats();
    assert_eq!(stats.buffered_rows, [0, 0, 0]);
    assert_eq!(stats.file_rows, [1000, 500, 10]);
    assert!(
        stats.files[0] >= 3,
        "spans cross three hours: {:?}",
        stats.files
    );
    for q in QUERIES {
        assert_eq!(
            text(&store, q).await,
            expected(&inputs, q).await,
            "parquet: {q}"
        );
    }
    // 3. After a restart.
    store.close().await.unwrap();
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    for q in QUERIES {
        assert_eq!(
            text(&store, q).await,
            expected(&inputs, q).await,
            "restart: {q}"
        );
    }

    // Partition layout on disk.
    let hour_dir = dir.path().join("spans/date=2024-03-05/hour=10");
    assert!(hour_dir.is_dir(), "{hour_dir:?}");
    let metric_types = text(
        &store,
        "SELECT DISTINCT metric_type FROM metric_points ORDER BY 1",
    )
    .await;
    for t in [
        "exponential_histogram",
        "gauge",
        "histogram",
        "sum",
        "summary",
    ] {
        assert!(metric_types.contains(t), "{metric_types}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_sorted_and_ids_are_lowercase_hex() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    store
        .write(Table::Spans, synth::spans(3, 2000, BASE, HOUR_NS / 2))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let snap = store.snapshot(Table::Spans);
    assert_eq!(snap.files.len(), 1);
    let reader = store::files::read_file(&snap.files[0].0, 100_000).unwrap();
    let mut prev: Option<(String, i64)> = None;
    for batch in reader {
        let batch = batch.unwrap();
        let svc = batch
            .column_by_name("service_name")
            .unwrap()
            .as_string::<i32>();
        let start = batch
            .column_by_name("start_time")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        let ids = batch.column_by_name("trace_id").unwrap().as_string::<i32>();
        for i in 0..batch.num_rows() {
            let key = (svc.value(i).to_string(), start.value(i));
            if let Some(p) = &prev {
                assert!(*p <= key, "not sorted: {p:?} then {key:?}");
            }
            prev = Some(key);
            let id = ids.value(i);
            assert_eq!(id.len(), 32);
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{id}"
            );
        }
    }
    // A trace looked up by id returns exactly its spans.
    let one = sql(&store, "SELECT trace_id FROM spans LIMIT 1").await;
    let tid = one[0].column(0).as_string::<i32>().value(0).to_string();
    let n = sql(
        &store,
        &format!("SELECT count(*) FROM spans WHERE trace_id = '{tid}'"),
    )
    .await;
    assert_eq!(
        n[0].column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        8
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_flush_replays_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store
            .write(Table::Spans, synth::spans(1, 100, BASE, HOUR_NS))
            .await
            .unwrap();
        store.flush().await.unwrap();
        store
            .write(Table::Spans, synth::spans(2, 50, BASE, HOUR_NS))
            .await
            .unwrap();
        store
            .write(Table::Logs, synth::logs(2, 20, BASE))
            .await
            .unwrap();
        // Dropped without close: like a crash after the acknowledgement.
    }
    for _ in 0..2 {
        let store = Store::open(config(dir.path())).await.unwrap();
        assert_eq!(count(&store, "spans").await, 150);
        assert_eq!(count(&store, "logs").await, 20);
        assert_eq!(store.stats().buffered_rows, [50, 20, 0]);
    }
    let store = Store::open(config(dir.path())).await.unwrap();
    store.flush().await.unwrap();
    store.close().await.unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(count(&store, "spans").await, 150);
    assert_eq!(store.stats().buffered_rows, [0, 0, 0]);
    // Only the open segment is left.
    assert_eq!(
        std::fs::read_dir(dir.path().join("wal")).unwrap().count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let err = store
        .write(Table::Logs, synth::spans(1, 1, BASE, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::SchemaMismatch { table: "logs", .. }),
        "{err}"
    );
    assert_eq!(count(&store, "logs").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffers_refuse_writes_until_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let one = synth::spans(1, 100, BASE, HOUR_NS);
    let cfg = StoreConfig {
        max_buffer_bytes: one.get_array_memory_size() * 3 / 2,
        ..config(dir.path())
    };
    let store = Store::open(cfg).await.unwrap();
    store.write(Table::Spans, one.clone()).await.unwrap();
    let err = store
        .write(Table::Spans, synth::spans(2, 100, BASE, HOUR_NS))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Overloaded { .. }), "{err}");
    assert!(err.is_retryable() && err.retry_after().is_some());
    assert_eq!(
        store
            .metrics()
            .writes_overloaded
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Refused rows are not stored.
    assert_eq!(count(&store, "spans").await, 100);
    store.flush().await.unwrap();
    store
        .write(Table::Spans, synth::spans(2, 100, BASE, HOUR_NS))
        .await
        .unwrap();
    assert_eq!(count(&store, "spans").await, 200);
    assert!(store.stats().buffered_bytes <= store.config().max_buffer_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let batch = synth::spans(1, 10, BASE, HOUR_NS);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                store.write(Table::Spans, batch.clone()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = store.metrics();
    let syncs = m.wal_syncs.load(std::sync::atomic::Ordering::Relaxed);
    let records = m.wal_records.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(records, 320);
    assert!(
        syncs < records,
        "group commit: {syncs} fsyncs for {records} records"
    );
    assert_eq!(count(&store, "spans").await, 3200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_row_once_and_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let mut spans = Vec::new();
    for seed in 0..6 {
        let b = synth::spans(seed, 300, BASE, HOUR_NS - 1);
        spans.push(b.clone());
        store.write(Table::Spans, b).await.unwrap();
        store
            .write(Table::Logs, synth::logs(seed, 10, BASE))
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let q = "SELECT * FROM spans ORDER BY span_id";
    let before = text(&store, q).await;
    let logs_before = text(&store, "SELECT * FROM logs ORDER BY time, body").await;
    assert_eq!(store.stats().files[0], 6);

    // The hour is still open (now = inside it): 6 small files < min_files (12): nothing happens.
    assert_eq!(store.compact(BASE + HOUR_NS / 2).await.unwrap(), 0);
    // The hour closed long ago: merge.
    let now = BASE + 10 * HOUR_NS;
    assert_eq!(store.compact(now).await.unwrap(), 12);
    let stats = store.stats();
    assert_eq!(stats.files, [1, 1, 0]);
    assert_eq!(stats.file_rows, [1800, 60, 0]);
    assert_eq!(text(&store, q).await, before);
    assert_eq!(
        text(&store, "SELECT * FROM logs ORDER BY time, body").await,
        logs_before
    );
    assert_eq!(before, expected(&[(Table::Spans, spans)], q).await);

    // Replaced files are gone from disk (grace 0), the output is globally sorted.
    let part = dir.path().join("spans/date=2024-03-05/hour=10");
    let names: Vec<String> = std::fs::read_dir(&part)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("compact-"), "{names:?}");
    let mut prev: Option<(String, i64)> = None;
    for batch in store::files::read_file(&part.join(&names[0]), 500).unwrap() {
        let batch = batch.unwrap();
        let svc = batch
            .column_by_name("service_name")
            .unwrap()
            .as_string::<i32>();
        let st = batch
            .column_by_name("start_time")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampNanosecondType>();
        for i in 0..batch.num_rows() {
            let key = (svc.value(i).to_string(), st.value(i));
            assert!(prev.as_ref().is_none_or(|p| *p <= key));
            prev = Some(key);
        }
    }
    // One row group (1800 rows, under compact_row_group_rows): every
    // trace id of the hour in one dictionary, bloom filters sized for it.
    let md = row_groups(&part.join(&names[0]));
    assert_eq!(md.num_row_groups(), 1);
    let trace = Table::Spans.schema().index_of("trace_id").unwrap();
    let chunk = md.row_group(0).column(trace);
    assert!(
        chunk.dictionary_page_offset().is_some(),
        "trace_id dictionary"
    );
    assert!(
        chunk.bloom_filter_offset().is_some(),
        "trace_id bloom filter"
    );
    // Nothing left to do.
    assert_eq!(store.compact(now).await.unwrap(), 0);
    store.close().await.unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(text(&store, q).await, before);
}

fn row_groups(path: &Path) -> Arc<parquet::file::metadata::ParquetMetaData> {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .metadata()
        .clone()
}

/// Compacted spans files hold row groups of `spans_compact_row_group_rows`
/// (flushed files and compacted logs of `row_group_rows`), and read back
/// every row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_row_groups_follow_their_own_setting() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        row_group_rows: 200,
        spans_compact_row_group_rows: 500,
        ..config(dir.path())
    };
    let store = Store::open(cfg).await.unwrap();
    for seed in 0..3 {
        store
            .write(Table::Spans, synth::spans(seed, 600, BASE, HOUR_NS - 1))
            .await
            .unwrap();
        store
            .write(Table::Logs, synth::logs(seed, 300, BASE))
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let part = dir.path().join("spans/date=2024-03-05/hour=10");
    let files = |prefix: &str| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&part)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect()
    };
    for f in files("part-") {
        assert_eq!(row_groups(&f).num_row_groups(), 3, "{f:?}: 600 rows by 200");
    }
    assert_eq!(store.compact(BASE + 10 * HOUR_NS).await.unwrap(), 6);
    let logs = std::fs::read_dir(dir.path().join("logs/date=2024-03-05/hour=10"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(logs.len(), 1);
    let sizes: Vec<i64> = row_groups(&logs[0])
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(sizes, [200, 200, 200, 200, 100], "logs keep row_group_rows");
    let out = files("compact-");
    assert_eq!(out.len(), 1);
    let md = row_groups(&out[0]);
    let sizes: Vec<i64> = md.row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(sizes, [500, 500, 500, 300]);
    assert_eq!(count(&store, "spans").await, 1800);
    assert_eq!(count(&store, "logs").await, 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_left_by_an_interrupted_compaction_are_ignored_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        for seed in 0..3 {
            store
                .write(Table::Spans, synth::spans(seed, 100, BASE, HOUR_NS - 1))
                .await
                .unwrap();
            store.flush().await.unwrap();
        }
        store.close().await.unwrap();
    }
    // A crash after the merged file was renamed into place but before the
    // manifest named it: the merged file holds copies of all rows.
    let part = dir.path().join("spans/date=2024-03-05/hour=10");
    let live: Vec<_> = std::fs::read_dir(&part)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    std::fs::copy(&live[0], part.join("compact-0000000099.parquet")).unwrap();
    std::fs::write(part.join(".compact-0000000100.parquet.tmp"), b"partial").unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(count(&store, "spans").await, 300);
    assert_eq!(std::fs::read_dir(&part).unwrap().count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_only_old_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        retention_hours: store::RetentionConfig {
            spans: 24,
            logs: 0,
            metric_points: 48,
        },
        ..config(dir.path())
    };
    let store = Store::open(cfg).await.unwrap();
    let now = BASE + 100 * HOUR_NS;
    store
        .write(Table::Spans, synth::spans(1, 50, now - 30 * HOUR_NS, 1000))
        .await
        .unwrap();
    store
        .write(Table::Spans, synth::spans(2, 70, now - 20 * HOUR_NS, 1000))
        .await
        .unwrap();
    store
        .write(Table::Logs, synth::logs(1, 5, now - 90 * HOUR_NS))
        .await
        .unwrap();
    store
        .write(
            Table::MetricPoints,
            synth::metric_points(now - 30 * HOUR_NS),
        )
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.apply_retention(now).await.unwrap(), 1);
    assert_eq!(count(&store, "spans").await, 70);
    assert_eq!(count(&store, "logs").await, 5, "logs keep forever");
    assert_eq!(count(&store, "metric_points").await, 5);
    let old = dir.path().join(store::files::partition_dir(
        Table::Spans,
        store::files::hour_of(now - 30 * HOUR_NS),
    ));
    assert!(!old.exists(), "{old:?} should be deleted");
    assert_eq!(store.apply_retention(now).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_flusher_moves_rows_to_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        flush_interval_secs: 0.2,
        ..config(dir.path())
    };
    let store = Store::open(cfg).await.unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    store
        .spawn_background(token.clone(), &tracker)
        .await
        .unwrap();
    store
        .write(Table::Logs, synth::logs(1, 10, BASE))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().file_rows[1] < 10 {
        assert!(Instant::now() < deadline, "not flushed in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    tracker.close();
    tracker.wait().await;
    store.close().await.unwrap();
}

/// The crash-test child: writes numbered batches from several tasks, with
/// frequent flushes and compactions, printing `ACK <n>` after each
/// acknowledged write, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_test_kill_9_loses_and_duplicates_nothing"]
async fn crash_child() {
    use std::io::Write;
    let Ok(dir) = std::env::var("BURNWATCH_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("BURNWATCH_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let cfg = StoreConfig {
        flush_bytes: 256 << 10,
        flush_interval_secs: 0.05,
        compaction_min_files: 3,
        compaction_small_file_bytes: 1 << 30,
        compaction_schedule: "* * * * * *".into(),
        ..config(Path::new(&dir))
    };
    let store = Store::open(cfg).await.unwrap();
    let token = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    store
        .spawn_background(token.clone(), &tracker)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut k = start + w;
            loop {
                let batch = synth::spans(k, 200, BASE, HOUR_NS - 1);
                match store.write(Table::Spans, batch).await {
                    Ok(_) => {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ACK {k}").unwrap();
                        out.flush().unwrap();
                    }
                    Err(e) if e.is_retryable() => {
                        tokio::time::sleep(Duration::from_millis(5)).await
                    }
                    Err(e) => panic!("{e}"),
                }
                k += 4;
            }
        }));
    }
    // Compact the hour as if it were closed, over and over.
    let s = store.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let _ = s.compact(BASE + 10 * HOUR_NS).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }));
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn crash_test_kill_9_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let mut rng = synth::Rng::new(std::process::id() as u64);
    const ROUNDS: u64 = 8;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("BURNWATCH_CRASH_DIR", dir.path())
            .env("BURNWATCH_CRASH_START", (round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The test harness may print its own text before the first ACK.
                if let Some(at) = line.find("ACK ") {
                    let _ = tx.send(line[at + 4..].trim().parse::<u64>().unwrap());
                }
            }
        });
        // Once it is acknowledging, let it run a random while, then SIGKILL it.
        let first = rx.recv_timeout(Duration::from_secs(60));
        assert!(
            first.is_ok(),
            "round {round}: child acknowledged nothing in 60 s"
        );
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        let got: Vec<u64> = first.into_iter().chain(rx.try_iter()).collect();
        acked.extend(got);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(config(dir.path())).await.unwrap();
        let batches = sql(&store, "SELECT span_id FROM spans").await;
        let mut per_batch: HashMap<u64, usize> = HashMap::new();
        let mut ids = std::collections::HashSet::new();
        for b in &batches {
            let col = b.column(0).as_string::<i32>();
            for i in 0..b.num_rows() {
                let id = col.value(i);
                assert!(ids.insert(id.to_string()), "span {id} stored twice");
                let seed = u64::from_str_radix(&id[..8], 16).unwrap();
                *per_batch.entry(seed).or_default() += 1;
            }
        }
        for k in &acked {
            let seed = *k as u32 as u64;
            assert_eq!(
                per_batch.get(&seed),
                Some(&200),
                "acknowledged batch {k} missing or partial"
            );
        }
        for (seed, n) in &per_batch {
            assert_eq!(*n, 200, "batch {seed} is half-visible");
        }
        eprintln!(
            "crash test: {ROUNDS} kills, {} acknowledged batches, {} stored",
            acked.len(),
            per_batch.len()
        );
    });
}

/// Files read by an independent reader (pyarrow and DuckDB) give the same
/// counts as SQL through DataFusion. `.ci/run` installs both into a venv and
/// sets `BURNWATCH_PYTHON`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_readers_agree() {
    let python = std::env::var("BURNWATCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    store
        .write(Table::Spans, synth::spans(1, 1500, BASE, 2 * HOUR_NS))
        .await
        .unwrap();
    store
        .write(Table::Logs, synth::logs(1, 250, BASE))
        .await
        .unwrap();
    store
        .write(Table::MetricPoints, synth::metric_points(BASE))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let errors = sql(
        &store,
        "SELECT count(*) FROM spans WHERE status_code = 'ERROR'",
    )
    .await;
    let errors = errors[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    let script = r#"
import sys, glob, json
import pyarrow.parquet as pq, duckdb
root = sys.argv[1]
out = {}
for t in ["spans", "logs", "metric_points"]:
    files = sorted(glob.glob(f"{root}/{t}/**/*.parquet", recursive=True))
    out[t] = sum(pq.read_table(f).num_rows for f in files)
    out["duck_" + t] = duckdb.sql(f"SELECT count(*) FROM read_parquet('{root}/{t}/**/*.parquet')").fetchall()[0][0]
out["duck_errors"] = duckdb.sql(f"SELECT count(*) FROM read_parquet('{root}/spans/**/*.parquet') WHERE status_code = 'ERROR'").fetchall()[0][0]
print(json.dumps(out))
"#;
    let output = Command::new(&python)
        .args(["-c", script, dir.path().to_str().unwrap()])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {python}: {e}; set BURNWATCH_PYTHON to a Python with pyarrow and duckdb"
            )
        });
    assert!(
        output.status.success(),
        "{python} failed (needs pyarrow and duckdb; .ci/run installs them): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for (t, n) in [("spans", 1500), ("logs", 250), ("metric_points", 5)] {
        assert_eq!(got[t], n, "pyarrow {t}: {got}");
        assert_eq!(got[format!("duck_{t}")], n, "duckdb {t}: {got}");
        assert_eq!(count(&store, t).await, n);
    }
    assert_eq!(got["duck_errors"], errors);
}

/// A real full filesystem: a small tmpfs mounted by the test (needs root, as
/// CI has). Writes fail with `DiskFull` once space runs out, nothing
/// acknowledged is lost, and writing resumes by itself once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_writes_and_recovers() {
    let mount = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(mount.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED disk_full_refuses_writes_and_recovers: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mount.path().to_path_buf());
    // Ballast to free later.
    let ballast = mount.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 3 << 20]).unwrap();
    let data = mount.path().join("data");
    let cfg = StoreConfig {
        flush_interval_secs: 3600.0,
        flush_bytes: usize::MAX,
        ..config(&data)
    };
    let store = Store::open(cfg.clone()).await.unwrap();
    let mut acked = 0usize;
    let mut full = None;
    for seed in 0..400 {
        match store
            .write(Table::Spans, synth::spans(seed, 200, BASE, HOUR_NS - 1))
            .await
        {
            Ok(_) => acked += 200,
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let err = full.expect("the 8 MiB filesystem never filled up");
    assert!(matches!(err, Error::DiskFull { .. }), "{err}");
    assert!(err.is_retryable() && err.retry_after().is_some());
    assert!(acked > 0);
    // Reads keep working and show every acknowledged row.
    assert_eq!(count(&store, "spans").await as usize, acked);
    // A flush cannot write Parquet now either: it fails, nothing is lost.
    assert!(store.flush().await.is_err());
    assert_eq!(count(&store, "spans").await as usize, acked);

    // Space comes back: writes and flushes resume without a restart.
    std::fs::remove_file(&ballast).unwrap();
    store
        .write(Table::Spans, synth::spans(1000, 200, BASE, HOUR_NS - 1))
        .await
        .unwrap();
    acked += 200;
    store.flush().await.unwrap();
    assert_eq!(count(&store, "spans").await as usize, acked);
    store.close().await.unwrap();
    drop(store);
    let store = Store::open(cfg).await.unwrap();
    assert_eq!(count(&store, "spans").await as usize, acked);
    let d = text(&store, "SELECT count(DISTINCT span_id) AS n FROM spans").await;
    assert!(d.contains(&format!("| {acked} |")), "{d}");
}

/// A live Parquet file whose footer is damaged is moved to quarantine at
/// start-up with a counter; the store opens and serves the other files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_parquet_file_is_quarantined_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).await.unwrap();
        store
            .write(Table::Spans, synth::spans(1, 100, BASE, 10))
            .await
            .unwrap();
        store
            .write(Table::Spans, synth::spans(2, 100, BASE + 2 * HOUR_NS, 10))
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let snap_dir = dir.path().join(store::files::partition_dir(
        Table::Spans,
        store::files::hour_of(BASE),
    ));
    let file = std::fs::read_dir(&snap_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(count(&store, "spans").await, 100);
    assert_eq!(
        store
            .metrics()
            .files_quarantined
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(!file.exists());
    assert_eq!(
        std::fs::read_dir(store.quarantine_dir()).unwrap().count(),
        1
    );
    // The next start finds a consistent store.
    drop(store);
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(count(&store, "spans").await, 100);
    assert_eq!(
        store
            .metrics()
            .files_quarantined
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

/// A bit flip at rest in a live Parquet file (which its footer check cannot
/// see) is found by the scrub through the checksum recorded when the file
/// was written: the file leaves the table and goes to quarantine, the rest
/// is served. Compaction checks its inputs the same way and never merges a
/// damaged file into a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_flips_are_found_by_the_scrub_and_by_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).await.unwrap();
    let flip = |path: &Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        std::fs::write(path, bytes).unwrap();
    };
    let live = |store: &Store| -> Vec<std::path::PathBuf> {
        store
            .snapshot(Table::Spans)
            .files
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    };
    for seed in 0..3 {
        store
            .write(
                Table::Spans,
                synth::spans(seed, 100, BASE + seed as i64 * 2 * HOUR_NS, 10),
            )
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let files = live(&store);
    assert_eq!(files.len(), 3);
    assert!(
        store
            .snapshot(Table::Spans)
            .files
            .iter()
            .all(|(_, m)| m.crc32.is_some())
    );
    assert_eq!(store.scrub().await.unwrap(), 0);
    flip(&files[1]);
    assert_eq!(store.scrub().await.unwrap(), 1);
    assert_eq!(count(&store, "spans").await, 200);
    assert!(!files[1].exists());
    let m = store.metrics();
    assert_eq!(
        m.files_quarantined
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        m.files_verified.load(std::sync::atomic::Ordering::Relaxed),
        3 + 3
    );
    assert_eq!(
        std::fs::read_dir(store.quarantine_dir()).unwrap().count(),
        1
    );
    assert_eq!(store.scrub().await.unwrap(), 0);

    // Compaction: many small files of one hour, one of them damaged.
    let hour = BASE + 10 * HOUR_NS;
    for seed in 10..14 {
        store
            .write(Table::Spans, synth::spans(seed, 50, hour, 10))
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let in_hour: Vec<_> = live(&store)
        .into_iter()
        .filter(|p| !files.contains(p))
        .collect();
    assert_eq!(in_hour.len(), 4);
    flip(&in_hour[2]);
    // The hour closed long ago: its four files are one compaction.
    let compacted = store.compact(hour + 10 * HOUR_NS).await.unwrap();
    assert_eq!(compacted, 0, "a damaged input must stop the merge");
    assert!(!in_hour[2].exists());
    assert_eq!(count(&store, "spans").await, 200 + 150);
    assert_eq!(
        m.files_quarantined
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    store.close().await.unwrap();
    drop(store);
    // The manifest on disk agrees.
    let store = Store::open(config(dir.path())).await.unwrap();
    assert_eq!(count(&store, "spans").await, 350);
}

/// Time filters skip whole files; trace-id lookups skip row groups by bloom
/// filter and statistics, so they read a bounded amount of data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_and_trace_lookups_prune() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        row_group_rows: 1000,
        ..config(dir.path())
    };
    let store = Store::open(cfg).await.unwrap();
    for h in 0..3 {
        store
            .write(
                Table::Spans,
                synth::spans(h as u64 + 10, 5000, BASE + h * HOUR_NS, HOUR_NS - 1),
            )
            .await
            .unwrap();
    }
    store.flush().await.unwrap();
    assert_eq!(store.stats().files[0], 3);

    let plan = |q: String| {
        let store = store.clone();
        async move {
            let batches = sql(&store, &format!("EXPLAIN ANALYZE {q}")).await;
            pretty_format_batches(&batches).unwrap().to_string()
        }
    };
    // Only the last hour's file is opened.
    let q = format!(
        "SELECT count(*) FROM spans WHERE start_time >= to_timestamp_nanos({})",
        BASE + 2 * HOUR_NS
    );
    let p = plan(q.clone()).await;
    assert!(p.contains("file_groups={1 group"), "{p}");
    let n = sql(&store, &q).await;
    assert_eq!(
        n[0].column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        5000
    );

    // A trace id: 15 row groups in all (3 files of 5).
    let one = sql(
        &store,
        "SELECT trace_id FROM spans WHERE service_name = 'orders' LIMIT 1",
    )
    .await;
    let tid = one[0].column(0).as_string::<i32>().value(0).to_string();
    let p = plan(format!("SELECT * FROM spans WHERE trace_id = '{tid}'")).await;
    // "row_groups_pruned_bloom_filter=15 total → 4 matched": the trace's 8
    // spans lie in at most 8 row groups; the filters rule out the rest.
    let metric = p
        .split("row_groups_pruned_bloom_filter=")
        .nth(1)
        .unwrap_or_else(|| panic!("no bloom filter metric: {p}"));
    let numbers: Vec<u64> = metric
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
        .take(2)
        .map(|t| t.parse().unwrap())
        .collect();
    let (total, matched) = (numbers[0], numbers[1]);
    assert_eq!(total, 15, "{metric}");
    assert!(
        matched <= 8,
        "bloom filters kept {matched} of {total} row groups"
    );
    let rows = sql(
        &store,
        &format!("SELECT count(*) FROM spans WHERE trace_id = '{tid}'"),
    )
    .await;
    assert_eq!(
        rows[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        8
    );
}

/// `dir` as a path relative to the current directory, starting with `./`
/// (the shape of the default `./data`).
fn relative_to_cwd(dir: &Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let common = cwd
        .components()
        .zip(dir.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut rel = std::path::PathBuf::from(".");
    for _ in cwd.components().skip(common) {
        rel.push("..");
    }
    for c in dir.components().skip(common) {
        rel.push(c);
    }
    rel
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_data_dir_works_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let rel = relative_to_cwd(dir.path());
    assert!(
        rel.is_relative() && rel.starts_with("."),
        "{}",
        rel.display()
    );
    let store = Store::open(config(&rel)).await.unwrap();
    store
        .write(Table::Spans, synth::spans(1, 100, BASE, HOUR_NS))
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(count(&store, "spans").await, 100);
    store.close().await.unwrap();
    let ro = Store::open_read_only(config(&rel)).await.unwrap();
    assert_eq!(count(&ro, "spans").await, 100);
}
