//! The Prometheus HTTP API over OTLP metrics: the names, labels and series
//! the OpenTelemetry Prometheus-compatibility specification gives them,
//! through the router (no socket).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use store::rows::{
    Attr, MetricPointRecord, MetricPointsBuilder, Number, Origin, PointData, Temporality,
};
use store::{Store, Table};
use tower::ServiceExt as _;
use web::{WebState, app};

const T0: i64 = 1_709_632_800_000_000_000;
const SEC: i64 = 1_000_000_000;

fn point<'a>(name: &'a str, unit: &'a str, at: i64, data: PointData<'a>) -> MetricPointRecord<'a> {
    MetricPointRecord {
        time_ns: at,
        start_time_ns: Some(T0 - 60 * SEC),
        metric_name: name,
        unit,
        description: "",
        attributes: vec![
            Attr::new("http.route", "/api/checkout"),
            Attr::new("http.request.method", "GET"),
        ],
        flags: 0,
        data,
        exemplars: vec![],
    }
}

async fn state() -> (WebState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let res = vec![
        Attr::new("service.name", "checkout"),
        Attr::new("service.namespace", "shop"),
        Attr::new("service.instance.id", "pod-1"),
        Attr::new("deployment.environment", "prod"),
    ];
    let origin = Origin {
        service_name: "checkout",
        resource_attributes: &res,
        scope_name: "io.opentelemetry.test",
        scope_version: "",
    };
    let bounds = [0.1, 0.5, 1.0];
    let counts = [[3u64, 2, 1, 0], [6, 4, 2, 1]];
    let mut b = MetricPointsBuilder::new();
    for (i, c) in counts.iter().enumerate() {
        let at = T0 + i as i64 * 60 * SEC;
        let hist = PointData::Histogram {
            temporality: Temporality::Cumulative,
            count: c.iter().sum(),
            sum: Some(2.5 * (i + 1) as f64),
            min: None,
            max: None,
            bucket_counts: c,
            explicit_bounds: &bounds,
        };
        b.append(
            &origin,
            &point("http.server.request.duration", "s", at, hist),
        );
        let sum = |v: f64, mono: bool, t: Temporality| PointData::Sum {
            value: Number::F64(v),
            is_monotonic: mono,
            temporality: t,
        };
        let v = 5.0 + 4.0 * i as f64;
        b.append(
            &origin,
            &point(
                "app.orders",
                "{order}",
                at,
                sum(v, true, Temporality::Cumulative),
            ),
        );
        b.append(
            &origin,
            &point("queue.size", "", at, sum(v, false, Temporality::Cumulative)),
        );
        b.append(
            &origin,
            &point("x.delta", "", at, sum(v, true, Temporality::Delta)),
        );
        b.append(
            &origin,
            &point(
                "system.cpu.utilization",
                "1",
                at,
                PointData::Gauge(Number::F64(0.25)),
            ),
        );
    }
    store.write(Table::MetricPoints, b.finish()).await.unwrap();
    (WebState::new(store), dir)
}

async fn get(state: &WebState, uri: &str) -> (StatusCode, Value) {
    let resp = app(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn enc(q: &str) -> String {
    serde_urlencoded::to_string([("query", q)]).unwrap()
}

async fn instant(state: &WebState, q: &str) -> Vec<(Value, f64)> {
    let at = (T0 + 60 * SEC) / SEC;
    let (status, v) = get(
        state,
        &format!("/prometheus/api/v1/query?{}&time={at}", enc(q)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{q}: {v}");
    assert_eq!(v["status"], "success");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"].clone(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_metrics_get_their_prometheus_names_and_labels() {
    let (state, _dir) = state().await;
    let buckets = instant(&state, "http_server_request_duration_seconds_bucket").await;
    let by_le: Vec<(String, f64)> = buckets
        .iter()
        .map(|(m, v)| (m["le"].as_str().unwrap().to_string(), *v))
        .collect();
    assert_eq!(
        by_le,
        vec![
            ("+Inf".into(), 13.0),
            ("0.1".into(), 6.0),
            ("0.5".into(), 10.0),
            ("1".into(), 12.0)
        ]
    );
    let m = &buckets[0].0;
    assert_eq!(m["job"], "shop/checkout");
    assert_eq!(m["instance"], "pod-1");
    assert_eq!(m["http_route"], "/api/checkout");
    assert_eq!(m["http_request_method"], "GET");
    assert_eq!(
        instant(&state, "http_server_request_duration_seconds_count").await[0].1,
        13.0
    );
    assert_eq!(
        instant(&state, "http_server_request_duration_seconds_sum").await[0].1,
        5.0
    );
    assert_eq!(instant(&state, "app_orders_total").await[0].1, 9.0);
    assert_eq!(
        instant(&state, "increase(app_orders_total[2m])").await[0].1,
        8.0
    );
    assert_eq!(instant(&state, "queue_size").await[0].1, 9.0);
    assert_eq!(
        instant(&state, "system_cpu_utilization_ratio").await[0].1,
        0.25
    );
    // Delta sums have no Prometheus form.
    assert!(instant(&state, "x_delta_total").await.is_empty());
    assert!(
        instant(&state, "{__name__=~\"x_delta.*\"}")
            .await
            .is_empty()
    );
    // The median falls in the (0.1, 0.5] bucket: 0.1 + 0.4 * (6.5 - 6) / 4.
    let q = instant(
        &state,
        "histogram_quantile(0.5, http_server_request_duration_seconds_bucket)",
    )
    .await;
    assert!((q[0].1 - 0.15).abs() < 1e-12, "{q:?}");
    // target_info carries the other resource attributes.
    let info = instant(&state, "target_info").await;
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].0["deployment_environment"], "prod");
    assert_eq!(info[0].0["job"], "shop/checkout");
    assert_eq!(info[0].1, 1.0);

    let (s, v) = get(&state, "/prometheus/api/v1/label/__name__/values").await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for n in [
        "app_orders_total",
        "http_server_request_duration_seconds_bucket",
        "http_server_request_duration_seconds_count",
        "queue_size",
        "system_cpu_utilization_ratio",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    assert!(!names.iter().any(|n| n.starts_with("x_delta")), "{names:?}");
    let (_, v) = get(&state, "/prometheus/api/v1/metadata").await;
    assert_eq!(v["data"]["app_orders_total"][0]["type"], "counter");
    assert_eq!(
        v["data"]["http_server_request_duration_seconds"][0]["type"],
        "histogram"
    );
    let (_, v) = get(
        &state,
        &format!(
            "/prometheus/api/v1/series?{}",
            serde_urlencoded::to_string([("match[]", "app_orders_total")]).unwrap()
        ),
    )
    .await;
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["__name__"], "app_orders_total");
    let (_, v) = get(&state, "/prometheus/api/v1/labels").await;
    let labels = v["data"].as_array().unwrap();
    assert!(
        labels.iter().any(|l| l == "http_route") && labels.iter().any(|l| l == "le"),
        "{labels:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_prometheus_shapes() {
    let (state, _dir) = state().await;
    for (uri, status, kind) in [
        (
            format!("/prometheus/api/v1/query?{}", enc("sum(")),
            400,
            "bad_data",
        ),
        ("/prometheus/api/v1/query".to_string(), 400, "bad_data"),
        (
            format!("/prometheus/api/v1/query?{}&time=yesterday", enc("up")),
            400,
            "bad_data",
        ),
        (
            format!(
                "/prometheus/api/v1/query_range?{}&start=1&end=100&step=0",
                enc("up")
            ),
            400,
            "bad_data",
        ),
        (
            format!(
                "/prometheus/api/v1/query_range?{}&start=0&end=100000&step=1",
                enc("up")
            ),
            400,
            "bad_data",
        ),
        (
            format!(
                "/prometheus/api/v1/query_range?{}&start=1&end=100&step=1",
                enc("x[5m]")
            ),
            400,
            "bad_data",
        ),
        ("/prometheus/api/v1/series".to_string(), 400, "bad_data"),
        (
            format!(
                "/prometheus/api/v1/query?time={}&{}",
                T0 / SEC + 60,
                enc(
                    "{__name__=~\"app_orders_total|queue_size\"} + on(job) {__name__=~\"app_orders_total|queue_size\"}"
                )
            ),
            422,
            "execution",
        ),
    ] {
        let (s, v) = get(&state, &uri).await;
        assert_eq!(s.as_u16(), status, "{uri}: {v}");
        assert_eq!(v["status"], "error", "{uri}");
        assert_eq!(v["errorType"], kind, "{uri}: {v}");
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    let (s, v) = get(&state, "/prometheus/api/v1/status/buildinfo").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["version"], "2.42.0");
}
