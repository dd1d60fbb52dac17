//! The metric catalogue and counter rates (cumulative with a reset, delta).

use slo_engine::metrics;
use slo_engine::red::Window;
use store::rows::{
    Attr, MetricPointRecord, MetricPointsBuilder, Number, Origin, PointData, Temporality,
};
use store::{Store, StoreConfig, Table};

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
    let store = Store::open(StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
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
    let list = metrics::list(&store, &Window::new(T0 - 60 * SEC, T0 + 600 * SEC).unwrap())
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
    let r = metrics::counter_rate(&store, "requests", &w, 60)
        .await
        .unwrap();
    // Bucket 0: /a +10 (first points only set baselines). Bucket 1: /a +5 after
    // the reset and +10, /b +30.
    assert_eq!(
        r.iter().map(|p| p.increase).collect::<Vec<_>>(),
        vec![10.0, 45.0]
    );
    assert_eq!(r[1].rate, 0.75);
    let d = metrics::counter_rate(&store, "jobs", &w, 60).await.unwrap();
    assert_eq!(
        d.iter().map(|p| p.increase).collect::<Vec<_>>(),
        vec![3.0, 4.0]
    );
    // A window starting mid-way still has a baseline from the step before it.
    let later = metrics::counter_rate(
        &store,
        "requests",
        &Window::new(T0 + 60 * SEC, T0 + 120 * SEC).unwrap(),
        60,
    )
    .await
    .unwrap();
    assert_eq!(later[0].increase, 45.0);
    assert!(
        metrics::counter_rate(&store, "requests", &w, 0)
            .await
            .is_err()
    );
}

#[test]
fn bucket_quantiles_interpolate_like_prometheus() {
    let bounds = [10.0, 20.0, 50.0];
    let counts = [2, 4, 4, 0];
    assert_eq!(metrics::bucket_quantile(0.5, &bounds, &counts), Some(17.5));
    assert_eq!(metrics::bucket_quantile(0.9, &bounds, &counts), Some(42.5));
    assert_eq!(metrics::bucket_quantile(0.1, &bounds, &counts), Some(5.0));
    assert_eq!(
        metrics::bucket_quantile(0.99, &bounds, &[0, 0, 0, 3]),
        Some(50.0)
    );
    assert_eq!(metrics::bucket_quantile(0.5, &bounds, &[0, 0, 0, 0]), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histogram_quantiles_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
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
    let p50 = metrics::histogram_quantile(&store, "latency", 0.5, &w, 60)
        .await
        .unwrap();
    assert_eq!(
        p50.iter().map(|p| p.count).collect::<Vec<_>>(),
        vec![10, 3, 0]
    );
    assert_eq!(p50[0].value, Some(17.5));
    // Minute 2: [0, 0, 1, 2]: rank 1.5 falls in the overflow bucket -> highest bound.
    assert_eq!(p50[1].value, Some(50.0));
    assert_eq!(p50[2].value, None);
    assert!(
        metrics::histogram_quantile(&store, "latency", 1.5, &w, 60)
            .await
            .is_err()
    );
}
