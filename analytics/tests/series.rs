//! The metric catalogue, counter rates (cumulative with a reset, delta),
//! gauges, histogram quantiles and averages, grouping by attributes, and
//! RED from the `http.server.request.duration` histogram: golden figures
//! worked out by hand in the comments.

use analytics::red::Window;
use analytics::series;
use store::rows::{
    Attr, MetricPointRecord, MetricPointsBuilder, Number, Origin, PointData, Temporality,
};
use store::{Store, Table};

const T0: i64 = 1_709_632_800_000_000_000;
const SEC: i64 = 1_000_000_000;

fn point<'a>(
    name: &'a str,
    at_s: i64,
    route: &'a str,
    data: PointData<'a>,
) -> MetricPointRecord<'a> {
    MetricPointRecord {
        time_ns: T0 + at_s * SEC,
        start_time_ns: Some(T0 - 3600 * SEC),
        metric_name: name,
        unit: "1",
        description: "",
        attributes: if route.is_empty() {
            vec![]
        } else {
            vec![Attr::new("route", route)]
        },
        flags: 0,
        data,
        exemplars: vec![],
    }
}

fn sum(v: f64, t: Temporality) -> PointData<'static> {
    PointData::Sum {
        value: Number::F64(v),
        is_monotonic: true,
        temporality: t,
    }
}

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let res = vec![Attr::new("service.name", "api")];
    let origin = Origin {
        service_name: "api",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let mut b = MetricPointsBuilder::new();
    let c = Temporality::Cumulative;
    for p in [
        point("requests", 0, "/a", sum(10.0, c)),
        point("requests", 30, "/a", sum(20.0, c)),
        point("requests", 60, "/a", sum(5.0, c)), // reset
        point("requests", 90, "/a", sum(15.0, c)),
        point("requests", 10, "/b", sum(100.0, c)),
        point("requests", 70, "/b", sum(130.0, c)),
        point("jobs", 5, "", sum(3.0, Temporality::Delta)),
        point("jobs", 65, "", sum(4.0, Temporality::Delta)),
        point("queue", 5, "", PointData::Gauge(Number::I64(7))),
    ] {
        b.append(&origin, &p);
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
    (store, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_lists_names_types_and_keys() {
    let (store, _d) = store().await;
    let list = series::list(&store, &Window::new(T0 - 60 * SEC, T0 + 600 * SEC).unwrap())
        .await
        .unwrap();
    let summary: Vec<(String, String, Vec<String>, u64)> = list
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.metric_type.clone(),
                m.attribute_keys.clone(),
                m.points,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("jobs".into(), "sum".into(), vec![], 2),
            ("queue".into(), "gauge".into(), vec![], 1),
            (
                "requests".into(),
                "sum".into(),
                vec!["route".to_string()],
                6
            ),
        ]
    );
    assert_eq!(list[2].services, vec!["api".to_string()]);
    assert_eq!(list[2].unit.as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_rates_handle_resets_and_delta_temporality() {
    let (store, _d) = store().await;
    let w = Window::new(T0, T0 + 120 * SEC).unwrap();
    let r = only(
        series::counter_rate(&store, "requests", &w, 60, &[])
            .await
            .unwrap(),
    );
    // Bucket 0: /a +10 (first points only set baselines). Bucket 1: /a +5 after
    // the reset and +10, /b +30.
    assert_eq!(
        r.iter().map(|p| p.increase).collect::<Vec<_>>(),
        vec![10.0, 45.0]
    );
    assert_eq!(r[1].rate, 0.75);
    let d = only(
        series::counter_rate(&store, "jobs", &w, 60, &[])
            .await
            .unwrap(),
    );
    assert_eq!(
        d.iter().map(|p| p.increase).collect::<Vec<_>>(),
        vec![3.0, 4.0]
    );
    // A window starting mid-way still has a baseline from the step before it.
    let later = only(
        series::counter_rate(
            &store,
            "requests",
            &Window::new(T0 + 60 * SEC, T0 + 120 * SEC).unwrap(),
            60,
            &[],
        )
        .await
        .unwrap(),
    );
    assert_eq!(later[0].increase, 45.0);
    assert!(
        series::counter_rate(&store, "requests", &w, 0, &[])
            .await
            .is_err()
    );
    // Grouped by route: /a 10 then 15 (5 after the reset, then 10); /b 0 then 30.
    let by_route = series::counter_rate(&store, "requests", &w, 60, &["route".into()])
        .await
        .unwrap();
    let got: Vec<(String, Vec<f64>)> = by_route
        .iter()
        .map(|s| {
            (
                s.labels["route"].clone(),
                s.points.iter().map(|p| p.increase).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("/a".into(), vec![10.0, 15.0]),
            ("/b".into(), vec![0.0, 30.0])
        ]
    );
    // By service: one group; an unknown metric: one empty ungrouped series.
    let by_service = series::counter_rate(&store, "requests", &w, 60, &["service.name".into()])
        .await
        .unwrap();
    assert_eq!(by_service.len(), 1);
    assert_eq!(by_service[0].labels["service.name"], "api");
    let none = only(
        series::counter_rate(&store, "no.such.metric", &w, 60, &[])
            .await
            .unwrap(),
    );
    assert_eq!(none.iter().map(|p| p.increase).sum::<f64>(), 0.0);
    // Too many group keys is refused.
    let nine: Vec<String> = (0..9).map(|i| format!("k{i}")).collect();
    assert!(
        series::counter_rate(&store, "requests", &w, 60, &nine)
            .await
            .is_err()
    );
}

/// The points of the one series of an ungrouped query.
fn only<P: std::fmt::Debug>(mut s: Vec<series::Series<P>>) -> Vec<P> {
    assert_eq!(s.len(), 1, "{s:?}");
    assert!(s[0].labels.is_empty());
    s.remove(0).points
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_average_min_max_and_last_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let res = vec![Attr::new("service.name", "api")];
    let origin = Origin {
        service_name: "api",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let g = |v: f64| PointData::Gauge(Number::F64(v));
    let mut b = MetricPointsBuilder::new();
    for p in [
        // Two queues sampled in minute 0; only /a in minute 1 (an integer gauge).
        point("queue.depth", 0, "/a", g(4.0)),
        point("queue.depth", 30, "/a", g(8.0)),
        point("queue.depth", 10, "/b", g(1.0)),
        point("queue.depth", 70, "/a", PointData::Gauge(Number::I64(2))),
    ] {
        b.append(&origin, &p);
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
    let w = Window::new(T0, T0 + 180 * SEC).unwrap();
    let all = only(
        series::gauge(&store, "queue.depth", &w, 60, &[])
            .await
            .unwrap(),
    );
    let summary: Vec<_> = all
        .iter()
        .map(|p| (p.samples, p.avg, p.min, p.max, p.last))
        .collect();
    assert_eq!(
        summary,
        vec![
            // avg (4+8+1)/3, last = /a's last (8) + /b's last (1).
            (3, Some(13.0 / 3.0), Some(1.0), Some(8.0), Some(9.0)),
            (1, Some(2.0), Some(2.0), Some(2.0), Some(2.0)),
            (0, None, None, None, None),
        ]
    );
    let by_route = series::gauge(&store, "queue.depth", &w, 60, &["route".into()])
        .await
        .unwrap();
    assert_eq!(by_route.len(), 2);
    assert_eq!(by_route[0].labels["route"], "/a");
    assert_eq!(by_route[0].points[0].avg, Some(6.0));
    assert_eq!(by_route[1].points[0].last, Some(1.0));
    assert_eq!(by_route[1].points[1].samples, 0);
}

#[test]
fn bucket_quantiles_interpolate_like_prometheus() {
    let bounds = [10.0, 20.0, 50.0];
    let counts = [2, 4, 4, 0];
    assert_eq!(series::bucket_quantile(0.5, &bounds, &counts), Some(17.5));
    assert_eq!(series::bucket_quantile(0.9, &bounds, &counts), Some(42.5));
    assert_eq!(series::bucket_quantile(0.1, &bounds, &counts), Some(5.0));
    assert_eq!(
        series::bucket_quantile(0.99, &bounds, &[0, 0, 0, 3]),
        Some(50.0)
    );
    assert_eq!(series::bucket_quantile(0.5, &bounds, &[0, 0, 0, 0]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_quantiles_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let res = vec![Attr::new("service.name", "api")];
    let origin = Origin {
        service_name: "api",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let bounds = [10.0, 20.0, 50.0];
    let h = |counts: &'static [u64], t: Temporality| PointData::Histogram {
        temporality: t,
        count: counts.iter().sum(),
        sum: None,
        min: None,
        max: None,
        bucket_counts: counts,
        explicit_bounds: &bounds,
    };
    let mut b = MetricPointsBuilder::new();
    let c = Temporality::Cumulative;
    for p in [
        // Cumulative series: baseline at 0 s, +[2,4,4,0] by 30 s, reset at 70 s to [0,0,1,0].
        point("latency", 0, "/a", h(&[1, 1, 1, 0], c)),
        point("latency", 30, "/a", h(&[3, 5, 5, 0], c)),
        point("latency", 70, "/a", h(&[0, 0, 1, 0], c)),
        // A delta series adds [0, 0, 0, 2] in the second minute.
        point("latency", 80, "/b", h(&[0, 0, 0, 2], Temporality::Delta)),
    ] {
        b.append(&origin, &p);
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
    let w = Window::new(T0, T0 + 180 * SEC).unwrap();
    let p50 = only(
        series::histogram(&store, "latency", 0.5, &w, 60, &[])
            .await
            .unwrap(),
    );
    assert_eq!(
        p50.iter().map(|p| p.count).collect::<Vec<_>>(),
        vec![10, 3, 0]
    );
    assert_eq!(p50[0].value, Some(17.5));
    // Minute 2: [0, 0, 1, 2]: rank 1.5 falls in the overflow bucket -> highest bound.
    assert_eq!(p50[1].value, Some(50.0));
    assert_eq!(p50[2].value, None);
    assert!(
        series::histogram(&store, "latency", 1.5, &w, 60, &[])
            .await
            .is_err()
    );
    // Grouped: /a alone in minute 0; /b alone has the overflow bucket in minute 1.
    let by_route = series::histogram(&store, "latency", 0.5, &w, 60, &["route".into()])
        .await
        .unwrap();
    assert_eq!(by_route.len(), 2);
    assert_eq!(by_route[0].points[0].value, Some(17.5));
    assert_eq!(by_route[0].points[1].count, 1); // the reset: [0, 0, 1, 0]
    assert_eq!(by_route[1].points[1].count, 2);
    assert_eq!(by_route[1].points[0].count, 0);
    // The heatmap: the same increases per minute and bucket, every series.
    let h = series::heatmap(&store, "latency", &w, 60).await.unwrap();
    assert_eq!(h.bounds, bounds);
    assert_eq!(h.times_ns, vec![T0, T0 + 60 * SEC, T0 + 120 * SEC]);
    assert_eq!(
        h.counts,
        vec![vec![2, 4, 4, 0], vec![0, 0, 1, 2], vec![0, 0, 0, 0]]
    );
    assert_eq!(h.skipped_points, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_averages_from_sums() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let res = vec![Attr::new("service.name", "api")];
    let origin = Origin {
        service_name: "api",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let bounds = [10.0, 20.0];
    let h = |counts: &'static [u64], sum: f64, t: Temporality| PointData::Histogram {
        temporality: t,
        count: counts.iter().sum(),
        sum: Some(sum),
        min: None,
        max: None,
        bucket_counts: counts,
        explicit_bounds: &bounds,
    };
    let c = Temporality::Cumulative;
    let mut b = MetricPointsBuilder::new();
    for p in [
        // Baseline 2 observations summing 10; +3 observations summing 45 by 30 s.
        point("latency", 0, "/a", h(&[2, 0, 0], 10.0, c)),
        point("latency", 30, "/a", h(&[3, 2, 0], 55.0, c)),
        // Reset in minute 1: 1 observation of 25.
        point("latency", 70, "/a", h(&[0, 0, 1], 25.0, c)),
        // A delta point in minute 1: 1 observation of 5.
        point("latency", 80, "/b", h(&[1, 0, 0], 5.0, Temporality::Delta)),
    ] {
        b.append(&origin, &p);
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
    let w = Window::new(T0, T0 + 120 * SEC).unwrap();
    let pts = only(
        series::histogram(&store, "latency", 0.5, &w, 60, &[])
            .await
            .unwrap(),
    );
    let got: Vec<_> = pts.iter().map(|p| (p.count, p.sum, p.average)).collect();
    assert_eq!(
        got,
        vec![(3, Some(45.0), Some(15.0)), (2, Some(30.0), Some(15.0))]
    );
}

/// RED for a service that sends the duration histogram but no spans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_from_the_duration_histogram_when_spans_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let res = vec![Attr::new("service.name", "legacy")];
    let origin = Origin {
        service_name: "legacy",
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let bounds = [0.1, 0.5, 1.0];
    let point = |at_s: i64, route: &'static str, code: &'static str, counts: &'static [u64]| {
        MetricPointRecord {
            time_ns: T0 + at_s * SEC,
            start_time_ns: Some(T0 - 3600 * SEC),
            metric_name: series::HTTP_SERVER_DURATION,
            unit: "s",
            description: "",
            attributes: vec![
                Attr::new("http.request.method", "GET"),
                Attr::new("http.route", route),
                Attr::new("http.response.status_code", code),
            ],
            flags: 0,
            data: PointData::Histogram {
                temporality: Temporality::Cumulative,
                count: counts.iter().sum(),
                sum: None,
                min: None,
                max: None,
                bucket_counts: counts,
                explicit_bounds: &bounds,
            },
            exemplars: vec![],
        }
    };
    let mut b = MetricPointsBuilder::new();
    for p in [
        // /items 200: baseline [10, 0, 0, 0], then +[60, 20, 0, 0] by 60 s and +[0, 0, 10, 0] by 120 s.
        point(-30, "/items", "200", &[10, 0, 0, 0]),
        point(60, "/items", "200", &[70, 20, 0, 0]),
        point(120, "/items", "200", &[70, 20, 10, 0]),
        // /items 503: baseline [0, 0, 0, 0], then +[0, 0, 0, 10] by 60 s.
        point(-30, "/items", "503", &[0, 0, 0, 0]),
        point(60, "/items", "503", &[0, 0, 0, 10]),
        // /health 200: +[100, 0, 0, 0].
        point(-30, "/health", "200", &[0, 0, 0, 0]),
        point(90, "/health", "200", &[100, 0, 0, 0]),
    ] {
        b.append(&origin, &p);
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
    let rollups = analytics::rollup::Rollups::new(store.clone(), 1 << 20);
    let w = Window::new(T0, T0 + 180 * SEC).unwrap();
    let svc = rollups.services(&w).await.unwrap();
    assert_eq!(svc.len(), 1, "{svc:?}");
    let r = &svc[0];
    // 80 + 10 (/items 200) + 10 (/items 503) + 100 (/health) = 200 requests, 10 of them 5xx.
    assert_eq!(
        (r.service.as_str(), r.requests, r.errors, r.source),
        ("legacy", 200, 10, analytics::red::RedSource::Histogram)
    );
    // Merged buckets [160, 20, 10, 10]: rank 100 lies in the first bucket
    // (0..0.1 s): 0.1 * 100 / 160 s = 62.5 ms; p99 (rank 198) in overflow -> 1 s.
    assert!((r.p50_ms - 62.5).abs() < 1e-9, "{r:?}");
    assert!((r.p99_ms - 1000.0).abs() < 1e-9, "{r:?}");
    assert!((r.error_ratio - 10.0 / 200.0).abs() < 1e-12);
    let ops = rollups.operations("legacy", &w).await.unwrap();
    let got: Vec<_> = ops
        .iter()
        .map(|o| (o.operation.clone().unwrap(), o.requests, o.errors))
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET /health".to_string(), 100, 0),
            ("GET /items".to_string(), 100, 10)
        ]
    );
    let series = rollups
        .series("legacy", Some("GET /items"), &w, 60)
        .await
        .unwrap();
    assert_eq!(
        series
            .iter()
            .map(|p| (p.requests, p.errors))
            .collect::<Vec<_>>(),
        vec![(0, 0), (90, 10), (10, 0)]
    );
    // Bucket 2 holds [0, 0, 10, 0]: its median is 0.5 + 0.5 * 5/10 s = 750 ms.
    assert!((series[2].p50_ms.unwrap() - 750.0).abs() < 1e-9);
    // Spans win: once the service sends SERVER spans, RED comes from them.
    let spans = store::synth::http_requests("legacy", "GET", "/items", &[(T0 + 5 * SEC, false)]);
    store.write(Table::Spans, spans).await.unwrap();
    let svc = rollups.services(&w).await.unwrap();
    assert_eq!(
        (svc[0].requests, svc[0].source),
        (1, analytics::red::RedSource::Spans)
    );
}
