//! PromQL selections over `metric_points` keep each file's series in a
//! cache: a repeated selection, a selection after more rows arrive (in
//! memory, then flushed into a new file) and a narrower selection answer
//! exactly as the series written say, cache or not.

use analytics::prom::PromSource;
use promql::{Labels, MatchOp, Matcher};
use store::rows::{Attr, MetricPointRecord, MetricPointsBuilder, Number, Origin, PointData};
use store::{Store, Table};

const T0: i64 = 1_709_632_800_000_000_000; // 2024-03-05T10:00:00Z
const MIN: i64 = 60_000_000_000;
const HOSTS: [&str; 3] = ["a", "b", "c"];

/// The value of host `h` at minute `m`.
fn value(h: usize, m: i64) -> f64 {
    (h as f64 + 1.0) * 100.0 + m as f64
}

/// Minutes `[from, to)` of a gauge `queue.depth` per host, one point per
/// host and minute.
async fn write(store: &Store, from: i64, to: i64) {
    let res = vec![Attr::new("service.name", "worker")];
    let origin = Origin {
        service_name: "worker",
        resource_attributes: &res,
        scope_name: "test",
        scope_version: "",
    };
    let mut b = MetricPointsBuilder::new();
    for m in from..to {
        for (h, host) in HOSTS.iter().enumerate() {
            b.append(
                &origin,
                &MetricPointRecord {
                    time_ns: T0 + m * MIN,
                    start_time_ns: None,
                    metric_name: "queue.depth",
                    unit: "",
                    description: "",
                    attributes: vec![Attr::new("host", *host)],
                    flags: 0,
                    data: PointData::Gauge(Number::F64(value(h, m))),
                    exemplars: vec![],
                },
            );
        }
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
}

fn name_is(v: &str) -> Matcher {
    Matcher {
        name: "__name__".into(),
        op: MatchOp::Equal,
        value: v.into(),
    }
}

/// `(host, [(ms, value)])` of a selection's series.
fn hosts(series: &[promql::Series]) -> Vec<(String, Vec<(i64, f64)>)> {
    series
        .iter()
        .map(|s| {
            (
                s.labels.get("host").unwrap_or("").to_string(),
                s.samples.clone(),
            )
        })
        .collect()
}

/// What minutes `[from, to]` (inclusive, by ms) hold for `wanted` hosts.
fn expected(wanted: &[usize], from_min: i64, to_min: i64) -> Vec<(String, Vec<(i64, f64)>)> {
    wanted
        .iter()
        .map(|&h| {
            (
                HOSTS[h].to_string(),
                (from_min..=to_min)
                    .map(|m| ((T0 + m * MIN) / 1_000_000, value(h, m)))
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn cached_file_series_answer_as_the_rows_say() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    // Three files of 20 minutes each.
    for k in 0..3 {
        write(&store, k * 20, (k + 1) * 20).await;
        store.flush().await.unwrap();
    }
    let src = PromSource::new(store.clone());
    let ms = |m: i64| (T0 + m * MIN) / 1_000_000;
    let name = [name_is("queue_depth")];

    // A window cutting through the first and last file.
    let first = src.series(&name, ms(5), ms(50), true).await.unwrap();
    assert_eq!(hosts(&first), expected(&[0, 1, 2], 5, 50));
    assert!(
        src.catalog_cache().series_bytes() > 0,
        "the files' series are cached"
    );
    let again = src.series(&name, ms(5), ms(50), true).await.unwrap();
    assert_eq!(again, first, "the cached answer is the same");

    // A narrower window and a regex matcher, from the same cache.
    let re = [
        name_is("queue_depth"),
        Matcher {
            name: "host".into(),
            op: MatchOp::Re,
            value: "a|c".into(),
        },
    ];
    let narrow = src.series(&re, ms(19), ms(21), true).await.unwrap();
    assert_eq!(hosts(&narrow), expected(&[0, 2], 19, 21));
    let labels_only = src.series(&re, ms(0), ms(59), false).await.unwrap();
    assert_eq!(
        labels_only
            .iter()
            .map(|s| s.labels.clone())
            .collect::<Vec<Labels>>(),
        narrow
            .iter()
            .map(|s| s.labels.clone())
            .collect::<Vec<Labels>>()
    );
    assert!(labels_only.iter().all(|s| s.samples.is_empty()));

    // Rows in memory join the cached files; once flushed they come from a
    // new file.
    write(&store, 60, 70).await;
    let with_memory = src.series(&name, ms(0), ms(69), true).await.unwrap();
    assert_eq!(hosts(&with_memory), expected(&[0, 1, 2], 0, 69));
    store.flush().await.unwrap();
    let flushed = src.series(&name, ms(0), ms(69), true).await.unwrap();
    assert_eq!(flushed, with_memory);

    // A rewritten minute (a second sample at the same time) reads as one.
    write(&store, 69, 70).await;
    let dup = src.series(&name, ms(60), ms(69), true).await.unwrap();
    assert_eq!(hosts(&dup), expected(&[0, 1, 2], 60, 69));
    store.close().await.unwrap();
}

/// A file with more samples than the per-file limit is not computed for
/// the cache: the selection reads in one query with its matchers applied,
/// and answers the same.
#[tokio::test]
async fn files_over_the_part_limit_read_in_one_query() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    // Two files of 60 samples (20 minutes of 3 hosts), 75 rows in memory.
    for k in 0..2 {
        write(&store, k * 20, (k + 1) * 20).await;
        store.flush().await.unwrap();
    }
    write(&store, 40, 65).await;
    let ms = |m: i64| (T0 + m * MIN) / 1_000_000;
    let re = [
        name_is("queue_depth"),
        Matcher {
            name: "host".into(),
            op: MatchOp::Re,
            value: "b".into(),
        },
    ];
    let small = PromSource::new(store.clone()).with_part_max_samples(59);
    let got = small.series(&re, ms(5), ms(60), true).await.unwrap();
    assert_eq!(hosts(&got), expected(&[1], 5, 60));
    assert_eq!(
        small.catalog_cache().series_bytes(),
        0,
        "no file was cached"
    );
    // Files within the limit are cached; the rows in memory are over it.
    let medium = PromSource::new(store.clone()).with_part_max_samples(60);
    let got = medium.series(&re, ms(5), ms(60), true).await.unwrap();
    assert_eq!(hosts(&got), expected(&[1], 5, 60));
    assert!(medium.catalog_cache().series_bytes() > 0);
    // With every part within the limit, the same answer from the cache.
    let cached = PromSource::new(store.clone());
    assert_eq!(
        hosts(&cached.series(&re, ms(5), ms(60), true).await.unwrap()),
        expected(&[1], 5, 60)
    );
    store.close().await.unwrap();
}
