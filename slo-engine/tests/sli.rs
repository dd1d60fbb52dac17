//! SLI counting: span counts from per-minute rollups equal a raw count at
//! any window edges (and survive a restart as rollup files); Timeslices;
//! calendar windows; log, counter, histogram and SQL SLIs.

use std::path::Path;

use slo_engine::evaluate::evaluate;
use slo_engine::openslo::{Slo, load_dir};
use slo_engine::sli::{SliCounter, SliSource};
use store::rows::{
    Attr, MetricPointRecord, MetricPointsBuilder, Number, Origin, PointData, Temporality,
};
use store::sql::QueryLimits;
use store::{Store, Table};

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 3600 * SEC;
/// 2024-03-01T00:00:00Z.
const MARCH: i64 = 1_709_251_200 * SEC;
const T0: i64 = MARCH + 4 * 24 * HOUR + 10 * HOUR; // 2024-03-05T10:00:00Z

fn slo(dir: &Path, indicator: &str, window: &str, rest: &str) -> Slo {
    let text = format!(
        r#"
apiVersion: openslo/v1
kind: SLO
metadata: {{name: s}}
spec:
  service: shop
  minEvents: 1
  indicator:
    metadata: {{name: i}}
    spec:
{indicator}
  timeWindow: [{window}]
{rest}
"#
    );
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("slo.yaml"), text).unwrap();
    load_dir(&rules).unwrap().remove(0)
}

const CHECKOUT_RATIO: &str = r#"      ratioMetric:
        bad: {metricSource: {type: burnwatch, spec: {service: gateway, route: /api/checkout, errors: true}}}
        total: {metricSource: {type: burnwatch, spec: {service: gateway, route: /api/checkout}}}"#;
const ROLLING_30D: &str = "{duration: 30d, isRolling: true}";
const OCCURRENCES: &str = "  objectives: [{target: 0.999}]";

async fn open(dir: &Path) -> Store {
    Store::open(testkit::store_config(&dir.join("data")))
        .await
        .unwrap()
}

/// One checkout request per second in [from, to), bad when `bad(t)`.
async fn traffic(store: &Store, from: i64, to: i64, bad: impl Fn(i64) -> bool) {
    let times: Vec<(i64, bool)> = (0..)
        .map(|i| from + i * SEC)
        .take_while(|t| *t < to)
        .map(|t| (t, bad(t)))
        .collect();
    for chunk in times.chunks(20_000) {
        let batch = store::synth::http_requests("gateway", "POST", "/api/checkout", chunk);
        store.write(Table::Spans, batch).await.unwrap();
    }
}

async fn raw_count(store: &Store, source: &SliSource, from: i64, to: i64) -> (u64, u64) {
    let (total, bad) = source.span_predicates().unwrap();
    let sql = format!(
        "SELECT count(*), sum(CASE WHEN ({bad}) THEN 1 ELSE 0 END) FROM spans WHERE ({total}) \
         AND start_time >= to_timestamp_nanos({from}) AND start_time < to_timestamp_nanos({to})"
    );
    let r = store::sql::run(store, &sql, &QueryLimits::default())
        .await
        .unwrap();
    let b = &r.batches[0];
    let n = |i: usize| {
        let c = arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Int64).unwrap();
        let a = c
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        if arrow::array::Array::is_null(a, 0) {
            0
        } else {
            a.value(0) as u64
        }
    };
    (n(0), n(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_counts_from_rollups_equal_a_raw_count_at_any_edges() {
    let dir = tempfile::tempdir().unwrap();
    let def = slo(dir.path(), CHECKOUT_RATIO, ROLLING_30D, OCCURRENCES);
    let store = open(dir.path()).await;
    // Three flushed hours (bad every 7th second, and all of minute 95),
    // then 10 minutes still in memory.
    let bad = |t: i64| (t / SEC) % 7 == 0 || (t - (T0 - 3 * HOUR)) / MIN == 95;
    for h in 0..3 {
        let from = T0 - 3 * HOUR + h * HOUR;
        traffic(&store, from, from + HOUR, bad).await;
        store.flush().await.unwrap();
    }
    traffic(&store, T0, T0 + 10 * MIN, bad).await;
    assert!(!store.snapshot(Table::Spans).batches.is_empty());

    let counter = SliCounter::new(store.clone(), 1 << 20);
    let src = &def.sli.source;
    let ats = [
        T0 + 10 * MIN,
        T0 + 7 * MIN + 17 * SEC + 300_000_000,
        T0 - 30 * MIN - 59 * SEC,
        T0 - 2 * HOUR + 1,
    ];
    let lengths = [
        5 * MIN,
        HOUR + 30 * SEC,
        2 * HOUR + 17 * SEC,
        30 * 24 * HOUR,
    ];
    for at in ats {
        let windows: Vec<(i64, i64)> = lengths.iter().map(|l| (at - l, at)).collect();
        let got = counter.windows(src, &windows).await.unwrap();
        for (w, g) in windows.iter().zip(&got) {
            assert_eq!(*g, raw_count(&store, src, w.0, w.1).await, "window {w:?}");
        }
    }
    assert!(
        counter
            .metrics
            .computed
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3,
        "one rollup per flushed file"
    );
    let whole = counter
        .windows(src, &[(T0 - 3 * HOUR, T0 + 10 * MIN)])
        .await
        .unwrap()[0];
    assert_eq!(whole.0, 3 * 3600 + 600);

    // The rollups were saved: a new counter (a restart) reads them instead
    // of rescanning the data files, with the same counts.
    let rollups = dir
        .path()
        .join("data")
        .join(slo_engine::sli::SLI_ROLLUP_DIR);
    assert!(rollups.is_dir());
    let again = SliCounter::new(store.clone(), 1 << 20);
    let w = [(T0 - 3 * HOUR + 13 * SEC, T0 + 5 * MIN)];
    assert_eq!(
        again.windows(src, &w).await.unwrap()[0],
        raw_count(&store, src, w[0].0, w[0].1).await
    );
    assert_eq!(
        again
            .metrics
            .computed
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(
        again
            .metrics
            .loaded
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );

    // An SLO that changed leaves its old rollups behind: the sweep deletes them.
    let other = SliSource::Rows {
        table: Table::Spans,
        total: "service_name = 'gateway'".into(),
        bad: "false".into(),
    };
    assert!(again.sweep(&[(&other, Vec::new())]).await >= 1);
    assert_eq!(std::fs::read_dir(&rollups).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeslices_count_bad_minutes_not_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let def = slo(
        dir.path(),
        CHECKOUT_RATIO,
        "{duration: 1d, isRolling: true}",
        "  budgetingMethod: Timeslices\n  objectives: [{target: 0.9, timeSliceTarget: 0.95, timeSliceWindow: 1m}]",
    );
    let store = open(dir.path()).await;
    // One request per second for an hour. Minutes 10..15 lose 6 of 60
    // requests (90% good: bad slices); minute 20 loses 2 (96.7%: good).
    let bad = |t: i64| {
        let m = (t - T0) / MIN;
        let s = (t - T0) / SEC % 60;
        ((10..15).contains(&m) && s < 6) || (m == 20 && s < 2)
    };
    traffic(&store, T0, T0 + HOUR, bad).await;
    store.flush().await.unwrap();
    let counter = SliCounter::new(store.clone(), 1 << 20);
    // Half a minute into the next slice: only whole slices count.
    let s = evaluate(&counter, &def, T0 + HOUR + 30 * SEC)
        .await
        .unwrap();
    assert_eq!(s.budgeting, "Timeslices");
    assert_eq!((s.total, s.bad), (60, 5));
    assert!((s.sli.unwrap() - 55.0 / 60.0).abs() < 1e-12);
    // The last hour, [T0 + 30 s, T0 + 1 h 30 s), holds 59 whole slices,
    // 5 of them bad, at a 10% budget: burn 0.847.
    let hour = s.windows.iter().find(|w| w.window_secs == 3600).unwrap();
    assert_eq!((hour.total, hour.bad), (59, 5));
    assert!((hour.burn_rate.unwrap() - (5.0 / 59.0) / 0.1).abs() < 1e-9);
    // The last 5 minutes (4 whole slices) were fine.
    let five = s.windows.iter().find(|w| w.window_secs == 300).unwrap();
    assert_eq!((five.total, five.bad), (4, 0));
    // The burn-down counts slices too.
    let burn = slo_engine::evaluate::burndown(&counter, &def, s.at_ns, 10)
        .await
        .unwrap();
    assert_eq!(burn.last().map(|p| (p.total, p.bad)), Some((60, 5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calendar_month_counts_from_local_midnight_on_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let def = slo(
        dir.path(),
        CHECKOUT_RATIO,
        "{duration: 1M, isRolling: false, calendar: {startTime: \"2024-01-01 00:00:00\", timeZone: UTC}}",
        OCCURRENCES,
    );
    let store = open(dir.path()).await;
    // An hour of failures on 29 February, then an hour of good traffic.
    traffic(&store, MARCH - HOUR, MARCH + HOUR, |t| t < MARCH).await;
    let counter = SliCounter::new(store.clone(), 1 << 20);
    let s = evaluate(&counter, &def, MARCH + HOUR).await.unwrap();
    assert_eq!(s.window_from_ns, MARCH);
    assert_eq!(
        (s.total, s.bad),
        (3600, 0),
        "February is not in March's budget"
    );
    assert_eq!(s.period_secs, 31 * 86400);
    assert_eq!(s.window, "calendar 1M (UTC)");
    // The fast-burn tier still looks at the last rolling hour... which is
    // clean; two hours back it sees February's failures.
    let page = &s.tiers[0];
    assert_eq!(page.long_burn, Some(0.0));
    let earlier = evaluate(&counter, &def, MARCH + 30 * MIN).await.unwrap();
    assert!(earlier.tiers[0].long_burn.unwrap() > 14.4);
    assert_eq!((earlier.total, earlier.bad), (1800, 0));

    // A month in another time zone starts at that zone's midnight.
    let tokyo = slo(
        dir.path(),
        CHECKOUT_RATIO,
        "{duration: 1M, isRolling: false, calendar: {startTime: \"2024-01-01 00:00:00\", timeZone: Asia/Tokyo}}",
        OCCURRENCES,
    );
    let s = evaluate(&counter, &tokyo, MARCH + HOUR).await.unwrap();
    assert_eq!(s.window_from_ns, MARCH - 9 * HOUR);
    assert_eq!((s.total, s.bad), (7200, 3600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_slis_count_records() {
    let dir = tempfile::tempdir().unwrap();
    let def = slo(
        dir.path(),
        r#"      ratioMetric:
        bad: {metricSource: {type: burnwatch, spec: {table: logs, service: orders, minSeverity: ERROR}}}
        total: {metricSource: {type: burnwatch, spec: {table: logs, service: orders, contains: processed}}}"#,
        ROLLING_30D,
        OCCURRENCES,
    );
    let store = open(dir.path()).await;
    // 2000 records one per ms, every tenth an ERROR; half flushed.
    store
        .write(Table::Logs, store::synth::logs(1, 1000, T0))
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
        .write(Table::Logs, store::synth::logs(2, 1000, T0 + SEC))
        .await
        .unwrap();
    let counter = SliCounter::new(store.clone(), 1 << 20);
    let s = evaluate(&counter, &def, T0 + MIN).await.unwrap();
    assert_eq!((s.total, s.bad), (2000, 200));
    assert!((s.windows[0].burn_rate.unwrap() - 100.0).abs() < 1e-9);
}

fn metric_point<'a>(name: &'a str, at: i64, data: PointData<'a>) -> MetricPointRecord<'a> {
    MetricPointRecord {
        time_ns: at,
        start_time_ns: Some(T0 - HOUR),
        metric_name: name,
        unit: "1",
        description: "",
        attributes: vec![Attr::new("region", "eu")],
        flags: 0,
        data,
        exemplars: vec![],
    }
}

async fn write_points(store: &Store, points: Vec<MetricPointRecord<'_>>) {
    let res = vec![Attr::new("service.name", "payments")];
    let origin = Origin {
        service_name: "payments",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let mut b = MetricPointsBuilder::new();
    for p in &points {
        b.append(&origin, p);
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_slis_handle_resets_and_delta_temporality() {
    let dir = tempfile::tempdir().unwrap();
    let def = slo(
        dir.path(),
        r#"      ratioMetric:
        bad: {metricSource: {type: burnwatch, spec: {table: metrics, metric: charges.failed, service: payments}}}
        total: {metricSource: {type: burnwatch, spec: {table: metrics, metric: charges, attributes: {region: eu}}}}"#,
        ROLLING_30D,
        OCCURRENCES,
    );
    let store = open(dir.path()).await;
    let sum = |v: f64, t| PointData::Sum {
        value: Number::F64(v),
        is_monotonic: true,
        temporality: t,
    };
    let c = Temporality::Cumulative;
    write_points(
        &store,
        vec![
            // Cumulative: baseline 10, +10, reset to 5 (+5), +10: 25 charges.
            metric_point("charges", T0, sum(10.0, c)),
            metric_point("charges", T0 + 30 * SEC, sum(20.0, c)),
            metric_point("charges", T0 + 60 * SEC, sum(5.0, c)),
            metric_point("charges", T0 + 90 * SEC, sum(15.0, c)),
            // Delta: 1 + 2 failures.
            metric_point("charges.failed", T0 + 5 * SEC, sum(1.0, Temporality::Delta)),
            metric_point(
                "charges.failed",
                T0 + 65 * SEC,
                sum(2.0, Temporality::Delta),
            ),
        ],
    )
    .await;
    let counter = SliCounter::new(store.clone(), 1 << 20);
    let s = evaluate(&counter, &def, T0 + 120 * SEC).await.unwrap();
    assert_eq!((s.total, s.bad), (25, 3));
    // Only what happened inside a window counts: from T0 + 45 s, the reset
    // (+5) and the last increase (+10), and the second failure batch.
    let got = counter
        .windows(&def.sli.source, &[(T0 + 45 * SEC, T0 + 120 * SEC)])
        .await
        .unwrap();
    assert_eq!(got[0], (15, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_slis_count_observations_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let indicator = r#"      thresholdMetric:
        metricSource: {type: burnwatch, spec: {table: metrics, metric: charge.duration, service: payments}}"#;
    let lte = slo(
        dir.path(),
        indicator,
        ROLLING_30D,
        "  objectives: [{target: 0.9, op: lte, value: 0.25}]",
    );
    let lt = slo(
        dir.path(),
        indicator,
        ROLLING_30D,
        "  objectives: [{target: 0.9, op: lt, value: 0.25}]",
    );
    let store = open(dir.path()).await;
    let hist = |counts: &'static [u64]| PointData::Histogram {
        temporality: Temporality::Delta,
        count: counts.iter().sum(),
        sum: None,
        min: None,
        max: None,
        bucket_counts: counts,
        explicit_bounds: &[0.1, 0.25, 0.5, 1.0],
    };
    write_points(
        &store,
        vec![
            metric_point("charge.duration", T0, hist(&[5, 3, 1, 1, 0])),
            metric_point("charge.duration", T0 + 30 * SEC, hist(&[2, 2, 2, 2, 2])),
        ],
    )
    .await;
    let counter = SliCounter::new(store.clone(), 1 << 20);
    // <= 0.25 s: buckets up to 0.1 and 0.25 are good: 8 + 4 of 20.
    let s = evaluate(&counter, &lte, T0 + MIN).await.unwrap();
    assert_eq!((s.total, s.bad), (20, 8));
    // < 0.25 s: only the bucket up to 0.1 is surely below: 5 + 2 of 20.
    let s = evaluate(&counter, &lt, T0 + MIN).await.unwrap();
    assert_eq!((s.total, s.bad), (20, 13));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_slis_agree_with_the_structured_filter() {
    let dir = tempfile::tempdir().unwrap();
    let structured = slo(dir.path(), CHECKOUT_RATIO, ROLLING_30D, OCCURRENCES);
    let sql = slo(
        dir.path(),
        r#"      ratioMetric:
        good: {metricSource: {type: burnwatch, spec: {sql: "SELECT start_time AS time, 1 AS value FROM spans WHERE service_name = 'gateway' AND kind = 'SERVER' AND status_code <> 'ERROR' AND http_response_status_code < 500"}}}
        total: {metricSource: {type: burnwatch, spec: {sql: "SELECT start_time AS time, 1 AS value FROM spans WHERE service_name = 'gateway' AND kind = 'SERVER'"}}}"#,
        ROLLING_30D,
        OCCURRENCES,
    );
    let store = open(dir.path()).await;
    traffic(&store, T0 - HOUR, T0, |t| (t / SEC) % 11 == 0).await;
    store.flush().await.unwrap();
    traffic(&store, T0, T0 + 5 * MIN, |t| (t / SEC) % 3 == 0).await;
    let counter = SliCounter::new(store.clone(), 1 << 20);
    let at = T0 + 4 * MIN + 7 * SEC;
    let a = evaluate(&counter, &structured, at).await.unwrap();
    let b = evaluate(&counter, &sql, at).await.unwrap();
    assert!(a.total > 3000 && a.bad > 300, "{a:?}");
    assert_eq!(a.windows, b.windows);
}

/// Prometheus counters as remote write stores them: `http_requests_total`
/// with `code` 200 (45 per 15 s) and 500 (15 per 15 s) for two hours from
/// `start`, both reset to zero after the first hour.
async fn prometheus_counters(store: &Store, start: i64) {
    let res = vec![Attr::new("service.name", "api")];
    let origin = Origin {
        service_name: "api",
        resource_attributes: &res,
        scope_name: analytics::prom::REMOTE_WRITE_SCOPE,
        scope_version: "1.0",
    };
    let mut b = MetricPointsBuilder::new();
    for k in 0..480i64 {
        for (code, per) in [("200", 45.0), ("500", 15.0)] {
            b.append(
                &origin,
                &MetricPointRecord {
                    time_ns: start + k * 15 * SEC,
                    start_time_ns: None,
                    metric_name: "http_requests_total",
                    unit: "",
                    description: "",
                    attributes: vec![
                        Attr::new("code", code),
                        Attr::new("instance", "a:80"),
                        Attr::new("job", "api"),
                    ],
                    flags: 0,
                    data: PointData::Sum {
                        value: Number::F64(per * (k % 240) as f64),
                        is_monotonic: true,
                        temporality: Temporality::Cumulative,
                    },
                    exemplars: vec![],
                },
            );
        }
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_slis_count_counter_increases_and_per_minute_queries() {
    let dir = tempfile::tempdir().unwrap();
    let counters = slo(
        dir.path(),
        r#"      ratioMetric:
        counter: true
        good: {metricSource: {type: Prometheus, spec: {query: 'http_requests_total{job="api",code="200"}'}}}
        total: {metricSource: {type: Prometheus, spec: {query: 'http_requests_total{job="api"}'}}}"#,
        ROLLING_30D,
        OCCURRENCES,
    );
    let per_minute = slo(
        dir.path(),
        r#"      ratioMetric:
        bad: {metricSource: {type: prometheus, spec: {query: 'sum(increase(http_requests_total{code=~"5.."}[1m]))'}}}
        total: {metricSource: {type: prometheus, spec: {query: 'sum(increase(http_requests_total[1m]))'}}}"#,
        ROLLING_30D,
        OCCURRENCES,
    );
    let store = open(dir.path()).await;
    let start = T0 - 2 * HOUR;
    prometheus_counters(&store, start).await;
    store.flush().await.unwrap();
    let counter = SliCounter::new(store.clone(), 1 << 20);
    // Minute steps see each series at 180 (200) or 60 (500) per minute;
    // the reset step counts the new value (0), the last step the 3
    // samples after the step before it: 118 * 180 + 135 and a third of it.
    let s = evaluate(&counter, &counters, T0 + 10 * MIN).await.unwrap();
    assert_eq!((s.total, s.bad), (21_375 + 7_125, 7_125), "{s:?}");
    // Asked again (minutes from memory), the same.
    let again = evaluate(&counter, &counters, T0 + 10 * MIN).await.unwrap();
    assert_eq!((again.total, again.bad), (s.total, s.bad));
    // increase() over each minute extrapolates; the ratio holds.
    let p = evaluate(&counter, &per_minute, T0 + 10 * MIN)
        .await
        .unwrap();
    assert!(p.total > 25_000, "{p:?}");
    let ratio = p.bad as f64 / p.total as f64;
    assert!((ratio - 0.25).abs() < 0.005, "{p:?}");
    // A Prometheus source beside a burnwatch one is refused.
    let rules = dir.path().join("mixed");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("slo.yaml"),
        r#"
apiVersion: openslo/v1
kind: SLO
metadata: {name: m}
spec:
  service: shop
  indicator:
    metadata: {name: i}
    spec:
      ratioMetric:
        bad: {metricSource: {type: Prometheus, spec: {query: 'sum(x'}}}
        total: {metricSource: {type: burnwatch, spec: {service: gateway}}}
  timeWindow: [{duration: 30d, isRolling: true}]
  objectives: [{target: 0.99}]
"#,
    )
    .unwrap();
    let e = load_dir(&rules).unwrap_err();
    assert!(e.to_string().contains("invalid PromQL"), "{e}");
}
