//! Log search: newest first over growing slices of the range, and the
//! per-file log text filters, checked against one plain SQL query over the
//! same store.

use std::borrow::Cow;

use analytics::search::{LogSearch, search_logs};
use analytics::text_index::TextIndex;
use store::rows::{Attr, LogRecord, LogsBuilder, Origin};
use store::{Store, Table};

const T0: i64 = 1_709_632_800_000_000_000; // 2024-03-05T10:00:00Z
const MIN: i64 = 60_000_000_000;
const HOUR: i64 = 60 * MIN;
/// Hours of logs, one file each.
const HOURS: i64 = 30;
const RARE: &str = "Settlement batch REJECTED by card processor";

fn body(h: i64, i: i64) -> String {
    if h == 3 && i < 2 {
        format!("{RARE} (batch {i})")
    } else if i % 7 == 0 {
        format!("GET /cart failed: upstream timeout after {} ms", 100 + i)
    } else {
        format!("GET /products 200 in {} ms", i)
    }
}

/// Appends one record of the service `shop` at `t`.
fn append(logs: &mut LogsBuilder, t: i64, severity: (i32, &str), body: String) {
    let resource = vec![Attr::new("service.name", "shop")];
    logs.append(
        &Origin {
            service_name: "shop",
            resource_attributes: &resource,
            scope_name: "test",
            scope_version: "",
        },
        &LogRecord {
            time_ns: t,
            observed_time_ns: t,
            severity_number: severity.0,
            severity_text: severity.1,
            body: Some(Cow::Owned(body)),
            trace_id: None,
            span_id: None,
            flags: 0,
            event_name: "",
            attributes: vec![],
            dropped_attributes_count: 0,
        },
    );
}

fn write_hour(logs: &mut LogsBuilder, h: i64) {
    // 60 records an hour, at distinct times.
    for i in 0..60 {
        let t = T0 + h * HOUR + i * MIN + h * 1000 + i;
        append(logs, t, (9, "INFO"), body(h, i));
    }
}

/// A store with `HOURS` hours of logs, one file per hour, and one more hour
/// (with the rare text once more) only in memory.
async fn store(dir: &std::path::Path) -> Store {
    let store = Store::open(testkit::store_config(dir)).await.unwrap();
    for h in 0..HOURS {
        let mut logs = LogsBuilder::new();
        write_hour(&mut logs, h);
        store.write(Table::Logs, logs.finish()).await.unwrap();
        store.flush().await.unwrap();
    }
    store
}

async fn unflushed_hour(store: &Store) {
    let mut logs = LogsBuilder::new();
    write_hour(&mut logs, HOURS);
    append(
        &mut logs,
        T0 + HOURS * HOUR + 30 * MIN + 17,
        (17, "ERROR"),
        "settlement batch rejected by card processor (late)".into(),
    );
    store.write(Table::Logs, logs.finish()).await.unwrap();
}

/// `(time, body)` of a search result.
fn rows(v: &serde_json::Value) -> Vec<(String, String)> {
    v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["time"].as_str().unwrap().to_string(),
                r["body"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The same search as one SQL query over the whole range.
async fn expected(
    store: &Store,
    q: &str,
    limit: usize,
    from: i64,
    to: i64,
) -> Vec<(String, String)> {
    let pattern = format!("%{q}%");
    let sql = format!(
        "SELECT time, body FROM logs WHERE time >= to_timestamp_nanos({from}) AND time < to_timestamp_nanos({to}) \
         AND body ILIKE '{pattern}' ORDER BY time DESC LIMIT {limit}"
    );
    let batches = store::query::collect(store, &sql).await.unwrap();
    rows(&serde_json::json!({ "logs": analytics::search::to_json(&batches).unwrap() }))
}

#[tokio::test]
async fn newest_first_slices_and_text_filters_answer_as_one_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let index = TextIndex::new(store.clone(), 1 << 20);
    assert_eq!(
        index.maintain().await.unwrap(),
        HOURS as u64,
        "one filter per file"
    );
    unflushed_hour(&store).await;
    let (from, to) = (T0, T0 + (HOURS + 1) * HOUR);
    for (q, limit) in [
        ("timeout", 5),   // found in the first slice
        ("timeout", 200), // needs several slices
        ("products 200 in 3", 40),
        (RARE, 100), // two records 27 hours back, one in memory
        ("rejected by card", 1),
        ("no such text", 10),
        ("ms", 7), // too short for trigrams: every file is read
    ] {
        let want = expected(&store, q, limit, from, to).await;
        for index in [None, Some(&index)] {
            let f = LogSearch {
                q: Some(q.into()),
                limit: Some(limit),
                ..Default::default()
            };
            let got = rows(&search_logs(&store, index, &f, &[], from, to).await.unwrap());
            assert_eq!(got, want, "{q:?}, limit {limit}, index {}", index.is_some());
        }
    }
    let rare = expected(&store, RARE, 100, from, to).await;
    assert_eq!(rare.len(), 3, "{rare:?}");
    assert!(
        rare[0].1.ends_with("(late)"),
        "the record in memory comes first"
    );

    // The rare text skipped every file but the one that holds it.
    let before = index
        .metrics
        .files_skipped
        .load(std::sync::atomic::Ordering::Relaxed);
    let read_before = index
        .metrics
        .files_read
        .load(std::sync::atomic::Ordering::Relaxed);
    let f = LogSearch {
        q: Some("card processor".into()),
        ..Default::default()
    };
    let got = rows(
        &search_logs(&store, Some(&index), &f, &[], from, to)
            .await
            .unwrap(),
    );
    assert_eq!(got.len(), 3);
    let skipped = index
        .metrics
        .files_skipped
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    let read = index
        .metrics
        .files_read
        .load(std::sync::atomic::Ordering::Relaxed)
        - read_before;
    assert_eq!((skipped, read), (HOURS as u64 - 1, 1));
    store.close().await.unwrap();
}

/// The Loki API's log queries read in slices too: newest (or, forward,
/// oldest) first, the same lines as one query over the range.
#[tokio::test]
async fn loki_queries_read_in_slices_as_one_query() {
    use analytics::loki::{LogQuery, query};
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    unflushed_hour(&store).await;
    let (from, to) = (T0 + 2 * HOUR + 17, T0 + (HOURS + 1) * HOUR);
    for (q, text, limit) in [
        (r#"{service_name="shop"} |= "timeout""#, "timeout", 5),
        (r#"{service_name="shop"} |= "timeout""#, "timeout", 300),
        (r#"{service_name="shop"} |= "REJECTED""#, "REJECTED", 10),
    ] {
        let lq = LogQuery::parse(q).unwrap();
        for forward in [false, true] {
            let dir = if forward { "ASC" } else { "DESC" };
            let sql = format!(
                "SELECT arrow_cast(time, 'Int64') AS t, body FROM logs \
                 WHERE time >= to_timestamp_nanos({from}) AND time <= to_timestamp_nanos({to}) \
                 AND strpos(body, '{text}') > 0 ORDER BY time {dir} LIMIT {limit}"
            );
            let batches = store::query::collect(&store, &sql).await.unwrap();
            let mut want: Vec<(i64, String)> = Vec::new();
            for b in &batches {
                use arrow::array::AsArray;
                let t = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
                let body = b.column(1).as_string::<i32>();
                for i in 0..b.num_rows() {
                    want.push((t.value(i), body.value(i).to_string()));
                }
            }
            let streams = query(&store, &lq, from, to, limit, forward).await.unwrap();
            for s in &streams {
                let times: Vec<i64> = s.values.iter().map(|v| v.0).collect();
                let mut sorted = times.clone();
                sorted.sort_unstable();
                if !forward {
                    sorted.reverse();
                }
                assert_eq!(times, sorted, "{q}: a stream in the answer's direction");
            }
            let mut got: Vec<(i64, String)> = streams.into_iter().flat_map(|s| s.values).collect();
            got.sort();
            want.sort();
            assert!(!want.is_empty(), "{q}");
            assert_eq!(got, want, "{q}, limit {limit}, forward {forward}");
        }
    }
    store.close().await.unwrap();
}
