//! End to end with the real Rust OpenTelemetry SDK and `opentelemetry-otlp`
//! exporters, over gRPC and over HTTP/protobuf, through real sockets. SQL on
//! the store must return exactly what the SDK sent.

mod common;

use std::time::{Duration, SystemTime};

use common::Server;
use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, PeriodicReader, SdkMeterProvider, Stream,
};
use opentelemetry_sdk::trace::SdkTracerProvider;

const START: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

#[derive(Clone, Copy)]
enum Transport {
    Grpc,
    HttpProtobuf,
}

fn resource() -> Resource {
    Resource::builder()
        .with_service_name("checkout")
        .with_attribute(KeyValue::new("deployment.environment.name", "test"))
        .build()
}

async fn send_all(server: &Server, transport: Transport) {
    let (span_exp, metric_exp, log_exp) = match transport {
        Transport::Grpc => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(server.grpc_url())
                .build()
                .unwrap(),
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(server.grpc_url())
                .build()
                .unwrap(),
            opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_endpoint(server.grpc_url())
                .build()
                .unwrap(),
        ),
        Transport::HttpProtobuf => (
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(server.http_url("/v1/traces"))
                .build()
                .unwrap(),
            opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(server.http_url("/v1/metrics"))
                .build()
                .unwrap(),
            opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(server.http_url("/v1/logs"))
                .build()
                .unwrap(),
        ),
    };

    // Traces: a server span with a client child, events, a link, error status.
    let tp = SdkTracerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(span_exp)
        .build();
    let tracer = tp.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("shop.checkout")
            .with_version("1.2.3")
            .build(),
    );
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(START);
    let linked = SpanContext::new(
        TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap(),
        SpanId::from_hex("eee19b7ec3c1b174").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    let mut root = tracer
        .span_builder("POST /api/checkout")
        .with_kind(SpanKind::Server)
        .with_start_time(t0)
        .with_attributes([
            KeyValue::new("http.request.method", "POST"),
            KeyValue::new("http.route", "/api/checkout"),
            KeyValue::new("http.response.status_code", 502_i64),
            KeyValue::new("app.retry", true),
            KeyValue::new("app.ratio", 0.25_f64),
        ])
        .with_links(vec![Link::new(
            linked,
            vec![KeyValue::new("link.reason", "batch")],
            0,
        )])
        .start(&tracer);
    root.add_event_with_timestamp(
        "payment.retry",
        t0 + Duration::from_millis(5),
        vec![KeyValue::new("attempt", 2_i64)],
    );
    let cx = {
        use opentelemetry::trace::TraceContextExt as _;
        Context::current_with_span(root)
    };
    let mut child = tracer
        .span_builder("POST /charge")
        .with_kind(SpanKind::Client)
        .with_start_time(t0 + Duration::from_millis(10))
        .with_attributes([
            KeyValue::new("peer.service", "payments"),
            KeyValue::new("server.port", 9106_i64),
        ])
        .start_with_context(&tracer, &cx);
    child.set_status(Status::error("card declined"));
    child.end_with_timestamp(t0 + Duration::from_millis(200));
    {
        use opentelemetry::trace::TraceContextExt as _;
        let span = cx.span();
        span.set_status(Status::error("upstream failed"));
        span.end_with_timestamp(t0 + Duration::from_millis(250));
    }

    // Metrics: monotonic sum, up-down sum, gauge, explicit and exponential histograms.
    let reader = PeriodicReader::builder(metric_exp)
        .with_interval(Duration::from_secs(3600))
        .build();
    let mp = SdkMeterProvider::builder()
        .with_resource(resource())
        .with_reader(reader)
        .with_view(|i: &Instrument| {
            (i.name() == "rpc.latency").then(|| {
                Stream::builder()
                    .with_aggregation(Aggregation::Base2ExponentialHistogram {
                        max_size: 160,
                        max_scale: 20,
                        record_min_max: true,
                    })
                    .build()
                    .unwrap()
            })
        })
        .build();
    let meter = mp.meter("shop.metrics");
    let route = [KeyValue::new("http.route", "/api/checkout")];
    meter.u64_counter("orders.placed").build().add(3, &route);
    meter
        .i64_up_down_counter("cart.items")
        .build()
        .add(-2, &route);
    meter.f64_gauge("queue.depth").build().record(7.5, &route);
    let h = meter
        .f64_histogram("http.server.request.duration")
        .with_unit("s")
        .build();
    for v in [0.004, 0.02, 0.3, 1.5] {
        h.record(v, &route);
    }
    let e = meter.f64_histogram("rpc.latency").with_unit("ms").build();
    for v in [1.0, 2.0, 4.0] {
        e.record(v, &[]);
    }

    // Logs: one record inside the trace, one structured.
    let lp = SdkLoggerProvider::builder()
        .with_resource(resource())
        .with_batch_exporter(log_exp)
        .build();
    let logger = lp.logger("shop.logs");
    let mut rec = logger.create_log_record();
    rec.set_event_name("checkout.failed");
    rec.set_timestamp(t0 + Duration::from_millis(100));
    rec.set_observed_timestamp(t0 + Duration::from_millis(101));
    rec.set_severity_number(Severity::Error);
    rec.set_severity_text("ERROR");
    rec.set_body("payment declined".into());
    rec.add_attribute("order.id", 42_i64);
    rec.set_trace_context(
        TraceId::from_hex("5b8efff798038103d269b633813fc60c").unwrap(),
        SpanId::from_hex("eee19b7ec3c1b174").unwrap(),
        Some(TraceFlags::SAMPLED),
    );
    logger.emit(rec);

    // Flushing blocks on the exporters: off the async workers.
    tokio::task::spawn_blocking(move || {
        // Shutdown exports what is pending exactly once (a force_flush before
        // it would export the cumulative metrics a second time).
        tp.shutdown().unwrap();
        mp.shutdown().unwrap();
        lp.shutdown().unwrap();
    })
    .await
    .unwrap();
}

async fn check(server: &Server) {
    // Spans: exact times, kinds, statuses, promoted and map attributes, parentage.
    let spans = server
        .text(
            "SELECT service_name, name, kind, start_time, end_time, duration_ns, status_code, status_message, \
             scope_name, scope_version, http_route, http_request_method, http_response_status_code, peer_service, server_port, \
             attributes['app.retry'] AS retry, attributes['app.ratio'] AS ratio, \
             resource_attributes['deployment.environment.name'] AS env \
             FROM spans ORDER BY start_time",
        )
        .await;
    let want = "\
+--------------+--------------------+--------+--------------------------+--------------------------+-------------+-------------+-----------------+---------------+---------------+---------------+---------------------+---------------------------+--------------+-------------+-------+-------+------+
| service_name | name               | kind   | start_time               | end_time                 | duration_ns | status_code | status_message  | scope_name    | scope_version | http_route    | http_request_method | http_response_status_code | peer_service | server_port | retry | ratio | env  |
+--------------+--------------------+--------+--------------------------+--------------------------+-------------+-------------+-----------------+---------------+---------------+---------------+---------------------+---------------------------+--------------+-------------+-------+-------+------+
| checkout     | POST /api/checkout | SERVER | 2023-11-14T22:13:20Z     | 2023-11-14T22:13:20.250Z | 250000000   | ERROR       | upstream failed | shop.checkout | 1.2.3         | /api/checkout | POST                | 502                       |              |             | true  | 0.25  | test |
| checkout     | POST /charge       | CLIENT | 2023-11-14T22:13:20.010Z | 2023-11-14T22:13:20.200Z | 190000000   | ERROR       | card declined   | shop.checkout | 1.2.3         |               |                     |                           | payments     | 9106        |       |       | test |
+--------------+--------------------+--------+--------------------------+--------------------------+-------------+-------------+-----------------+---------------+---------------+---------------+---------------------+---------------------------+--------------+-------------+-------+-------+------+";
    assert_eq!(spans, want);
    // Same trace, the child's parent is the root; ids are lowercase hex.
    let rel = server
        .text(
            "SELECT count(DISTINCT s.trace_id) AS traces, count(*) AS pairs FROM spans c JOIN spans s \
             ON c.parent_span_id = s.span_id AND c.trace_id = s.trace_id WHERE length(s.trace_id) = 32 AND s.trace_id = lower(s.trace_id)",
        )
        .await;
    assert!(rel.contains("| 1      | 1     |"), "{rel}");
    let ev = server
        .text(
            "SELECT e['name'] AS name, e['time'] AS time, e['attributes']['attempt'] AS attempt \
             FROM (SELECT unnest(events) AS e FROM spans)",
        )
        .await;
    assert!(
        ev.contains("| payment.retry | 2023-11-14T22:13:20.005Z | 2       |"),
        "{ev}"
    );
    let links = server
        .text("SELECT l['trace_id'] AS t, l['span_id'] AS s, l['attributes']['link.reason'] AS r FROM (SELECT unnest(links) AS l FROM spans)")
        .await;
    assert!(
        links.contains("| 5b8efff798038103d269b633813fc60c | eee19b7ec3c1b174 | batch |"),
        "{links}"
    );

    // Metrics: every type the SDK produces, with exact values and buckets.
    let m = server
        .text(
            "SELECT metric_name, metric_type, unit, value, value_int, is_monotonic, temporality, count, sum, min, max, \
             bucket_counts[6] AS b6, explicit_bounds[6] AS e6, scale IS NOT NULL AS has_scale, zero_count, \
             attributes['http.route'] AS route FROM metric_points ORDER BY metric_name",
        )
        .await;
    let want = "\
+------------------------------+-----------------------+------+-------+-----------+--------------+-------------+-------+-------+-------+-----+----+------+-----------+------------+---------------+
| metric_name                  | metric_type           | unit | value | value_int | is_monotonic | temporality | count | sum   | min   | max | b6 | e6   | has_scale | zero_count | route         |
+------------------------------+-----------------------+------+-------+-----------+--------------+-------------+-------+-------+-------+-----+----+------+-----------+------------+---------------+
| cart.items                   | sum                   |      | -2.0  | -2        | false        | cumulative  |       |       |       |     |    |      | false     |            | /api/checkout |
| http.server.request.duration | histogram             | s    |       |           |              | cumulative  | 4     | 1.824 | 0.004 | 1.5 | 0  | 75.0 | false     |            | /api/checkout |
| orders.placed                | sum                   |      | 3.0   | 3         | true         | cumulative  |       |       |       |     |    |      | false     |            | /api/checkout |
| queue.depth                  | gauge                 |      | 7.5   |           |              |             |       |       |       |     |    |      | false     |            | /api/checkout |
| rpc.latency                  | exponential_histogram | ms   |       |           |              | cumulative  | 3     | 7.0   | 1.0   | 4.0 |    |      | true      | 0          |               |
+------------------------------+-----------------------+------+-------+-----------+--------------+-------------+-------+-------+-------+-----+----+------+-----------+------------+---------------+";
    assert_eq!(m, want);
    let buckets = server
        .text("SELECT bucket_counts, explicit_bounds FROM metric_points WHERE metric_name = 'http.server.request.duration'")
        .await;
    assert!(buckets.contains("| [0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] | [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0] |"), "{buckets}");
    let exp = server
        .text("SELECT sum(x) AS n FROM (SELECT unnest(positive_bucket_counts) AS x FROM metric_points WHERE metric_name = 'rpc.latency')")
        .await;
    assert!(exp.contains("| 3 |"), "{exp}");

    // Logs.
    let logs = server
        .text(
            "SELECT service_name, time, observed_time, severity_number, severity_text, body, trace_id, span_id, flags, event_name, \
             attributes['order.id'] AS order_id, scope_name FROM logs",
        )
        .await;
    assert!(
        logs.contains("| checkout     | 2023-11-14T22:13:20.100Z | 2023-11-14T22:13:20.101Z | 17              | ERROR         | payment declined | 5b8efff798038103d269b633813fc60c | eee19b7ec3c1b174 | 1     | checkout.failed | 42       | shop.logs  |"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_over_grpc_arrives_exactly() {
    let server = Server::start().await;
    send_all(&server, Transport::Grpc).await;
    check(&server).await;
    // And again from Parquet after a flush.
    server.store.flush().await.unwrap();
    check(&server).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_over_http_protobuf_arrives_exactly() {
    let server = Server::start().await;
    send_all(&server, Transport::HttpProtobuf).await;
    check(&server).await;
    server.store.flush().await.unwrap();
    check(&server).await;
    server.stop().await;
}
