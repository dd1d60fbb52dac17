//! A second, independent client: the Python OpenTelemetry SDK's OTLP
//! exporters (HTTP/protobuf and gRPC), installed into the test virtualenv by
//! `scripts/test.sh` (`BURNWATCH_PYTHON`).

mod common;

use std::process::Command;

use common::Server;

const SCRIPT: &str = r#"
import sys, time
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
import logging

transport, endpoint = sys.argv[1], sys.argv[2]
if transport == "http":
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    se = OTLPSpanExporter(endpoint=endpoint + "/v1/traces")
    le = OTLPLogExporter(endpoint=endpoint + "/v1/logs")
    me = OTLPMetricExporter(endpoint=endpoint + "/v1/metrics")
else:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    se = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    le = OTLPLogExporter(endpoint=endpoint, insecure=True)
    me = OTLPMetricExporter(endpoint=endpoint, insecure=True)

res = Resource.create({"service.name": "py-" + transport})
tp = TracerProvider(resource=res)
tp.add_span_processor(SimpleSpanProcessor(se))
tracer = tp.get_tracer("py.tests", "9.9")
with tracer.start_as_current_span("GET /items", kind=SpanKind.SERVER,
        attributes={"http.route": "/items", "http.response.status_code": 500}) as span:
    span.add_event("cache.miss", {"key": "items"})
    span.set_status(Status(StatusCode.ERROR, "db down"))
    with tracer.start_as_current_span("SELECT items", kind=SpanKind.CLIENT, attributes={"db.system": "sqlite"}):
        pass

lp = LoggerProvider(resource=res)
lp.add_log_record_processor(SimpleLogRecordProcessor(le))
from opentelemetry.sdk._logs import LoggingHandler
log = logging.getLogger("py.logs")
log.addHandler(LoggingHandler(logger_provider=lp))
log.setLevel(logging.INFO)
with tracer.start_as_current_span("job"):
    log.warning("disk almost full")

reader = PeriodicExportingMetricReader(me, export_interval_millis=3600000)
mp = MeterProvider(resource=res, metric_readers=[reader])
c = mp.get_meter("py.metrics").create_counter("jobs.done")
c.add(5, {"queue": "emails"})
mp.force_flush()
tp.shutdown(); lp.shutdown(); mp.shutdown()
print("sent")
"#;

async fn run(transport: &str) {
    let python = std::env::var("BURNWATCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let server = Server::start().await;
    let endpoint = if transport == "http" {
        server.http_url("")
    } else {
        server.grpc_url()
    };
    let t = transport.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .args(["-c", SCRIPT, &t, &endpoint])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {python}: {e}; scripts/test.sh sets BURNWATCH_PYTHON")
            })
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "Python SDK client failed (needs opentelemetry-sdk and the OTLP exporters; scripts/test.sh installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svc = format!("py-{transport}");
    let spans = server
        .text(&format!(
            "SELECT name, kind, status_code, status_message, http_route, http_response_status_code AS code, db_system, scope_name, scope_version \
             FROM spans WHERE service_name = '{svc}' ORDER BY name"
        ))
        .await;
    let want = "\
+--------------+----------+-------------+----------------+------------+------+-----------+------------+---------------+
| name         | kind     | status_code | status_message | http_route | code | db_system | scope_name | scope_version |
+--------------+----------+-------------+----------------+------------+------+-----------+------------+---------------+
| GET /items   | SERVER   | ERROR       | db down        | /items     | 500  |           | py.tests   | 9.9           |
| SELECT items | CLIENT   | UNSET       |                |            |      | sqlite    | py.tests   | 9.9           |
| job          | INTERNAL | UNSET       |                |            |      |           | py.tests   | 9.9           |
+--------------+----------+-------------+----------------+------------+------+-----------+------------+---------------+";
    assert_eq!(spans, want);
    let parent = server
        .text("SELECT count(*) AS n FROM spans c JOIN spans p ON c.parent_span_id = p.span_id AND c.trace_id = p.trace_id WHERE c.name = 'SELECT items' AND p.name = 'GET /items'")
        .await;
    assert!(parent.contains("| 1 |"), "{parent}");
    let logs = server
        .text(&format!("SELECT body, severity_text, trace_id IS NOT NULL AS traced FROM logs WHERE service_name = '{svc}'"))
        .await;
    assert!(
        logs.contains("| disk almost full | WARN") && logs.contains("| true   |"),
        "{logs}"
    );
    let m = server
        .text(&format!("SELECT metric_name, value_int, is_monotonic, attributes['queue'] AS q FROM metric_points WHERE service_name = '{svc}'"))
        .await;
    assert!(
        m.contains("| jobs.done   | 5         | true         | emails |"),
        "{m}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http_protobuf() {
    run("http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc() {
    run("grpc").await;
}
