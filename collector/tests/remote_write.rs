//! Prometheus remote write 1.0 and 2.0 over real HTTP: what is stored,
//! the answers the protocol calls for, and bad input.

mod common;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use collector::remote_write::proto::{self, v1, v2};
use common::Server;
use prost::Message;

fn label(name: &str, value: &str) -> v1::Label {
    v1::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels.iter().map(|(k, v)| label(k, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| proto::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn snappy(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(b).unwrap()
}

async fn post(
    server: &Server,
    content_type: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut r = reqwest::Client::new()
        .post(server.http_url("/api/v1/write"))
        .header("content-type", content_type)
        .header("content-encoding", "snappy")
        .header("x-prometheus-remote-write-version", "0.1.0");
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.body(body).send().await.unwrap()
}

const V1: &str = "application/x-protobuf";
const V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
const STALE: u64 = 0x7ff0_0000_0000_0002;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_samples_metadata_and_exemplars_are_stored() {
    let server = Server::start().await;
    let t0 = 1_700_000_000_000i64;
    // Metadata first (Prometheus sends it apart from samples).
    let meta = v1::WriteRequest {
        metadata: vec![v1::MetricMetadata {
            r#type: 1,
            metric_family_name: "http_requests".into(),
            help: "Requests served.".into(),
            unit: String::new(),
        }],
        ..Default::default()
    };
    let r = post(&server, V1, snappy(&meta.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 204);
    let mut exemplar_only = series(
        &[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("instance", "a:9090"),
            ("code", "200"),
        ],
        &[],
    );
    exemplar_only.exemplars.push(v1::Exemplar {
        labels: vec![
            label("trace_id", "0af7651916cd43dd8448eb211c80319c"),
            label("user", "x"),
        ],
        value: 0.25,
        timestamp: t0 + 500,
    });
    let req = v1::WriteRequest {
        timeseries: vec![
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", "a:9090"),
                    ("code", "200"),
                ],
                &[(t0, 1.0), (t0 + 1000, 3.0)],
            ),
            series(
                &[
                    ("__name__", "temperature"),
                    ("job", "ns/sensors"),
                    ("instance", "b:1"),
                ],
                &[(t0, f64::NAN), (t0 + 1000, f64::from_bits(STALE))],
            ),
            exemplar_only,
        ],
        ..Default::default()
    };
    let r = post(&server, V1, snappy(&req.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 204, "{:?}", r.text().await);

    let batches = server
        .sql(
            "SELECT metric_name, service_name, metric_type, is_monotonic, description, value, \
             CAST(time AS BIGINT) AS t, attributes['code'] AS code, attributes['job'] AS job, \
             attributes['instance'] AS instance, resource_attributes['service.instance.id'] AS iid, \
             scope_name, flags, cardinality(exemplars) AS ex \
             FROM metric_points ORDER BY metric_name, t, flags",
        )
        .await;
    let b = &batches[0];
    assert_eq!(b.num_rows(), 5);
    let s = |c: &str, i: usize| {
        let col = b.column_by_name(c).unwrap();
        let col = arrow::compute::cast(col, &arrow::datatypes::DataType::Utf8).unwrap();
        let col = col.as_string::<i32>();
        if col.is_null(i) {
            String::new()
        } else {
            col.value(i).to_string()
        }
    };
    let v = |i: usize| {
        b.column_by_name("value")
            .unwrap()
            .as_primitive::<Float64Type>()
            .value(i)
    };
    let t = |i: usize| {
        b.column_by_name("t")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(i)
    };
    // The counter: metadata made it a monotonic cumulative sum with help.
    assert_eq!(s("metric_name", 0), "http_requests_total");
    assert_eq!(s("service_name", 0), "api");
    assert_eq!(s("metric_type", 0), "sum");
    assert_eq!(s("is_monotonic", 0), "true");
    assert_eq!(s("description", 0), "Requests served.");
    assert_eq!((t(0), v(0)), (t0 * 1_000_000, 1.0));
    assert_eq!((t(2), v(2)), ((t0 + 1000) * 1_000_000, 3.0));
    assert_eq!(s("code", 0), "200");
    assert_eq!(s("job", 0), "api");
    assert_eq!(s("instance", 0), "a:9090");
    assert_eq!(s("iid", 0), "a:9090");
    assert_eq!(s("scope_name", 0), collector::remote_write::SCOPE_NAME);
    // The exemplar-only series: a row with no recorded value.
    assert_eq!(s("flags", 1), "1");
    assert_eq!(s("ex", 1), "1");
    assert_eq!(t(1), (t0 + 500) * 1_000_000);
    assert_eq!(s("flags", 2), "0");
    // The gauge: NaN and the stale marker keep their bits.
    assert_eq!(s("metric_name", 3), "temperature");
    assert_eq!(s("metric_type", 3), "gauge");
    assert_eq!(s("service_name", 3), "ns/sensors");
    assert!(v(3).is_nan() && v(3).to_bits() != STALE);
    assert_eq!(v(4).to_bits(), STALE);

    let ex = server
        .sql("SELECT exemplars[1]['trace_id'] AS trace, exemplars[1]['value'] AS v FROM metric_points WHERE flags = 1")
        .await;
    let col = arrow::compute::cast(ex[0].column(0), &arrow::datatypes::DataType::Utf8).unwrap();
    assert_eq!(
        col.as_string::<i32>().value(0),
        "0af7651916cd43dd8448eb211c80319c"
    );
    server.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_symbols_metadata_histograms_and_written_headers() {
    let server = Server::start().await;
    let t0 = 1_700_000_000_000i64;
    let symbols: Vec<String> = [
        "",
        "__name__",
        "rpc_duration_seconds",
        "job",
        "svc",
        "instance",
        "h:1",
        "Latency.",
        "seconds",
        "queue_depth",
        "trace_id",
        "00112233445566778899aabbccddeeff",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let req = v2::Request {
        symbols,
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4, 5, 6],
                histograms: vec![proto::Histogram {
                    count_int: Some(6),
                    sum: 1.5,
                    schema: 0,
                    zero_threshold: 1e-128,
                    zero_count_int: Some(1),
                    // Buckets 1, 2 and (after a gap of one) 4: counts 2, 1, 2.
                    positive_spans: vec![
                        proto::BucketSpan {
                            offset: 1,
                            length: 2,
                        },
                        proto::BucketSpan {
                            offset: 1,
                            length: 1,
                        },
                    ],
                    positive_deltas: vec![2, -1, 1],
                    timestamp: t0,
                    ..Default::default()
                }],
                metadata: Some(v2::Metadata {
                    r#type: 3,
                    help_ref: 7,
                    unit_ref: 8,
                }),
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: vec![1, 9, 3, 4],
                samples: vec![proto::Sample {
                    value: 7.0,
                    timestamp: t0,
                }],
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![10, 11],
                    value: 7.0,
                    timestamp: t0,
                }],
                metadata: Some(v2::Metadata {
                    r#type: 2,
                    help_ref: 0,
                    unit_ref: 0,
                }),
                created_timestamp: 0,
                ..Default::default()
            },
        ],
    };
    let r = post(&server, V2, snappy(&req.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 204);
    let h = |n: &str| r.headers().get(n).unwrap().to_str().unwrap().to_string();
    assert_eq!(h("x-prometheus-remote-write-samples-written"), "1");
    assert_eq!(h("x-prometheus-remote-write-histograms-written"), "1");
    assert_eq!(h("x-prometheus-remote-write-exemplars-written"), "1");
    let b = server
        .sql(
            "SELECT metric_type, unit, description, count, zero_count, scale, positive_offset, \
             array_to_string(positive_bucket_counts, ',') AS pos FROM metric_points \
             WHERE metric_name = 'rpc_duration_seconds'",
        )
        .await;
    let text = arrow::util::pretty::pretty_format_batches(&b)
        .unwrap()
        .to_string();
    assert!(text.contains("exponential_histogram"), "{text}");
    assert!(text.contains("| 0,    ") || text.contains("| 0 "), "{text}");
    assert!(text.contains("2,1,0,2"), "{text}");
    assert!(text.contains("Latency."), "{text}");
    server.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_answers_and_nothing_is_half_stored() {
    let server = Server::start().await;
    let good = v1::WriteRequest {
        timeseries: vec![series(
            &[("__name__", "up"), ("job", "j")],
            &[(1_700_000_000_000, 1.0)],
        )],
        ..Default::default()
    };
    // Not snappy.
    let r = post(&server, V1, b"\xff\xff\xff\xff\xff\xff\x00".to_vec(), &[]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("snappy"));
    // Snappy, but not a WriteRequest.
    let r = post(&server, V1, snappy(b"\x0a\xff\xff\xff"), &[]).await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("invalid prometheus.WriteRequest")
    );
    // A series without a name: the whole request is refused.
    let mut bad = good.clone();
    bad.timeseries
        .push(series(&[("job", "j")], &[(1_700_000_000_000, 2.0)]));
    let r = post(&server, V1, snappy(&bad.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no metric name"));
    // Duplicate label names.
    let dup = v1::WriteRequest {
        timeseries: vec![series(
            &[("__name__", "up"), ("a", "1"), ("a", "2")],
            &[(1, 1.0)],
        )],
        ..Default::default()
    };
    let r = post(&server, V1, snappy(&dup.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("duplicate label name"));
    // A broken symbol reference (2.0).
    let v2bad = v2::Request {
        symbols: vec!["".into(), "__name__".into()],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 9],
            ..Default::default()
        }],
    };
    let r = post(&server, V2, snappy(&v2bad.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("symbol reference 9"));
    // Unknown content type and encoding.
    let r = post(
        &server,
        "application/json",
        snappy(&good.encode_to_vec()),
        &[],
    )
    .await;
    assert_eq!(r.status(), 415);
    let r = post(
        &server,
        "application/x-protobuf;proto=foo.Bar",
        snappy(&good.encode_to_vec()),
        &[],
    )
    .await;
    assert_eq!(r.status(), 415);
    let r = reqwest::Client::new()
        .post(server.http_url("/api/v1/write"))
        .header("content-type", V1)
        .header("content-encoding", "gzip")
        .body(good.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    // Nothing of the refused requests was stored.
    let n = server.sql("SELECT count(*) FROM metric_points").await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 0);
    // Out-of-order and duplicate samples are stored as sent.
    let ooo = v1::WriteRequest {
        timeseries: vec![series(
            &[("__name__", "up"), ("job", "j")],
            &[(2000, 1.0), (1000, 2.0), (1000, 2.0)],
        )],
        ..Default::default()
    };
    let r = post(&server, V1, snappy(&ooo.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 204);
    let n = server.sql("SELECT count(*) FROM metric_points").await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 3);
    server.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_past_the_hourly_limit_are_refused_and_the_rest_stored() {
    let server = Server::start_with(|_, cc| cc.max_series_per_hour = 60_000).await;
    // 100k distinct series in one request.
    let t = store::now_ns() / 1_000_000;
    let req = v1::WriteRequest {
        timeseries: (0..100_000)
            .map(|i| {
                series(
                    &[("__name__", "wide"), ("job", "j"), ("id", &i.to_string())],
                    &[(t, i as f64)],
                )
            })
            .collect(),
        ..Default::default()
    };
    let r = post(&server, V1, snappy(&req.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()
            .get("x-prometheus-remote-write-samples-written")
            .unwrap(),
        "60000"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("40000 series"), "{text}");
    assert!(text.contains("max_series_per_hour"), "{text}");
    let n = server.sql("SELECT count(*) FROM metric_points").await;
    assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 60_000);
    // A series already seen this hour is still accepted.
    let again = v1::WriteRequest {
        timeseries: vec![series(
            &[("__name__", "wide"), ("job", "j"), ("id", "7")],
            &[(t + 1000, 1.0)],
        )],
        ..Default::default()
    };
    let r = post(&server, V1, snappy(&again.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 204);
    server.token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_size_limits_apply() {
    let server = Server::start_with(|_, cc| {
        cc.auth_tokens = vec!["s3cret".into()];
        cc.max_body_bytes = 4096;
    })
    .await;
    let req = v1::WriteRequest {
        timeseries: vec![series(&[("__name__", "up"), ("job", "j")], &[(1000, 1.0)])],
        ..Default::default()
    };
    let r = post(&server, V1, snappy(&req.encode_to_vec()), &[]).await;
    assert_eq!(r.status(), 401);
    let r = post(
        &server,
        V1,
        snappy(&req.encode_to_vec()),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(r.status(), 204);
    // Small on the wire, large once decompressed.
    let big = vec![0u8; 1 << 20];
    let r = post(
        &server,
        V1,
        snappy(&big),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(r.status(), 413);
    server.token.cancel();
}
