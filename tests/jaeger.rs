//! The Jaeger query API end to end: `burnwatch serve` receives traces from
//! the Python OpenTelemetry SDK (events, a span link, resource attributes,
//! an error, two services in one trace, a 64-bit trace id) and
//! `/jaeger/api/...` gives them back in Jaeger's model, as docs/jaeger.md
//! maps them; searches by tags and durations pick the right traces; bad
//! parameters get Jaeger's error envelope with a 400. The SDK's latency
//! histogram, recorded inside a span, carries an exemplar that
//! `query_exemplars` answers with the span's trace id (the Rust SDK in use,
//! opentelemetry_sdk 0.33, records no exemplars; this proves the path).

mod common;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

const SCRIPT: &str = r#"
import json, random, sys, time
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode, Link
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
import logging

class Ids(RandomIdGenerator):
    """Random ids; the next trace id only 64 bits wide when asked."""
    short = False
    def generate_trace_id(self):
        if Ids.short:
            Ids.short = False
            return random.getrandbits(63) | 1
        return super().generate_trace_id()

endpoint = sys.argv[1] + "/v1/traces"
def provider(service, extra):
    attrs = {"service.name": service}
    attrs.update(extra)
    tp = TracerProvider(resource=Resource.create(attrs), id_generator=Ids())
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return tp

shop = provider("py-shop", {"service.version": "1.2.3", "deployment.environment.name": "test"})
# The SDK's default exemplar filter keeps measurements made in a sampled span.
reader = PeriodicExportingMetricReader(
    OTLPMetricExporter(endpoint=sys.argv[1] + "/v1/metrics"), export_interval_millis=3600000)
meters = MeterProvider(resource=Resource.create({"service.name": "py-shop"}), metric_readers=[reader])
logs = LoggerProvider(resource=Resource.create({"service.name": "py-shop"}))
logs.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=sys.argv[1] + "/v1/logs")))
log = logging.getLogger("shop")
log.addHandler(LoggingHandler(logger_provider=logs))
log.setLevel(logging.INFO)
latency = meters.get_meter("shop.http").create_histogram(
    "http.server.request.duration", unit="s", explicit_bucket_boundaries_advisory=[0.1, 0.25, 0.5, 1.0])
pay = provider("py-pay", {"service.version": "0.9"})
t_shop = shop.get_tracer("shop.http", "2.0")
t_pay = pay.get_tracer("pay.http")
out = {}

def times(span):
    return {"start": span.start_time, "end": span.end_time}

with t_shop.start_as_current_span("GET /checkout", kind=SpanKind.SERVER,
        attributes={"http.route": "/checkout", "http.response.status_code": 500, "user.tier": "gold"}) as root:
    root.add_event("cache.miss", {"cache.key": "cart:7"})
    time.sleep(0.3)
    with t_shop.start_as_current_span("POST /pay", kind=SpanKind.CLIENT,
            attributes={"peer.service": "py-pay"}) as client:
        with t_pay.start_as_current_span("POST /pay", kind=SpanKind.SERVER,
                context=trace.set_span_in_context(client)) as server:
            server.set_status(Status(StatusCode.ERROR, "card declined"))
    root.set_status(Status(StatusCode.ERROR, "payment failed"))
    latency.record(0.31, {"http.route": "/checkout"})
    log.error("payment declined for cart 7")
log.info("checkout page served")
out["checkout"] = {"trace": format(root.context.trace_id, "032x"),
                   "root": format(root.context.span_id, "016x"), **times(root),
                   "client": format(client.context.span_id, "016x"),
                   "server": format(server.context.span_id, "016x")}

with t_shop.start_as_current_span("process order", kind=SpanKind.CONSUMER,
        links=[Link(root.context, {"messaging.batch": "b1"})]) as consumer:
    pass
out["consumer"] = {"trace": format(consumer.context.trace_id, "032x"),
                   "span": format(consumer.context.span_id, "016x")}

Ids.short = True
with t_shop.start_as_current_span("GET /health", kind=SpanKind.SERVER) as health:
    pass
out["health"] = {"trace": format(health.context.trace_id, "032x"), **times(health)}

meters.force_flush(); meters.shutdown(); logs.shutdown()
shop.shutdown(); pay.shutdown()
print(json.dumps(out))
"#;

fn get(c: &reqwest::blocking::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn tag<'a>(tags: &'a Value, key: &str) -> &'a Value {
    tags.as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == key)
        .unwrap_or_else(|| panic!("no tag {key} in {tags}"))
}

fn trace_ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {body}"))
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn jaeger_api_serves_python_sdk_traces() {
    let dir = tempfile::tempdir().unwrap();
    let p = common::start_serve(
        &["--data-dir".as_ref(), dir.path().as_os_str()],
        std::process::Stdio::inherit(),
    );
    let out = Command::new(common::s3::python())
        .args(["-c", SCRIPT, &format!("http://{}", p.otlp_http)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let api = |path: &str| p.api_url(&format!("/jaeger/api{path}"));
    let checkout = ids["checkout"]["trace"].as_str().unwrap();

    // The spans are visible once all five are stored.
    common::wait("five spans visible", Duration::from_secs(20), || {
        let (_, v) = get(&c, &api("/traces?service=py-shop&lookback=2h&limit=20"));
        let spans: usize = v["data"]
            .as_array()
            .map(|a| a.iter().map(|t| t["spans"].as_array().unwrap().len()).sum())
            .unwrap_or(0);
        (spans == 5).then_some(())
    });

    // Services and operations.
    let (s, v) = get(&c, &api("/services"));
    assert_eq!(s, 200);
    assert_eq!(v["data"], serde_json::json!(["py-pay", "py-shop"]), "{v}");
    assert_eq!(v["total"], 2);
    assert!(v["errors"].is_null());
    let (_, v) = get(&c, &api("/services/py-shop/operations"));
    assert_eq!(
        v["data"],
        serde_json::json!(["GET /checkout", "GET /health", "POST /pay", "process order"])
    );
    let (_, v) = get(&c, &api("/operations?service=py-shop&spanKind=server"));
    assert_eq!(
        v["data"],
        serde_json::json!([{"name": "GET /checkout", "spanKind": "server"}, {"name": "GET /health", "spanKind": "server"}])
    );

    // One trace, every field.
    let (s, v) = get(&c, &api(&format!("/traces/{checkout}")));
    assert_eq!(s, 200, "{v}");
    let t = &v["data"][0];
    assert_eq!(t["traceID"], checkout);
    let spans = t["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3);
    let span = |id: &Value| spans.iter().find(|s| s["spanID"] == *id).unwrap();
    let root = span(&ids["checkout"]["root"]);
    let client = span(&ids["checkout"]["client"]);
    let server = span(&ids["checkout"]["server"]);
    assert_eq!(root["operationName"], "GET /checkout");
    assert_eq!(root["references"], serde_json::json!([]));
    let start_ns = ids["checkout"]["start"].as_i64().unwrap();
    let end_ns = ids["checkout"]["end"].as_i64().unwrap();
    assert_eq!(root["startTime"], start_ns / 1000);
    assert_eq!(root["duration"], (end_ns - start_ns) / 1000);
    assert!(root["duration"].as_i64().unwrap() >= 300_000);
    let tags = &root["tags"];
    assert_eq!(tag(tags, "span.kind")["value"], "server");
    assert_eq!(tag(tags, "otel.status_code")["value"], "ERROR");
    assert_eq!(
        tag(tags, "otel.status_description")["value"],
        "payment failed"
    );
    assert_eq!(tag(tags, "error")["type"], "bool");
    assert_eq!(tag(tags, "error")["value"], true);
    assert_eq!(tag(tags, "http.response.status_code")["type"], "int64");
    assert_eq!(tag(tags, "http.response.status_code")["value"], 500);
    assert_eq!(tag(tags, "user.tier")["value"], "gold");
    assert_eq!(tag(tags, "user.tier")["type"], "string");
    assert_eq!(tag(tags, "otel.scope.name")["value"], "shop.http");
    assert_eq!(tag(tags, "otel.scope.version")["value"], "2.0");
    let log = &root["logs"][0];
    assert_eq!(tag(&log["fields"], "event")["value"], "cache.miss");
    assert_eq!(tag(&log["fields"], "cache.key")["value"], "cart:7");
    let log_us = log["timestamp"].as_i64().unwrap();
    assert!(log_us >= start_ns / 1000 && log_us <= end_ns / 1000);
    assert_eq!(
        client["references"],
        serde_json::json!([{"refType": "CHILD_OF", "traceID": checkout, "spanID": ids["checkout"]["root"]}])
    );
    assert_eq!(tag(&client["tags"], "span.kind")["value"], "client");
    assert_eq!(tag(&client["tags"], "peer.service")["value"], "py-pay");
    assert!(
        client["tags"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["key"] != "error")
    );
    assert_eq!(server["references"][0]["spanID"], ids["checkout"]["client"]);
    assert_eq!(
        tag(&server["tags"], "otel.status_description")["value"],
        "card declined"
    );
    // Two processes, from the resources.
    let procs = t["processes"].as_object().unwrap();
    assert_eq!(procs.len(), 2);
    let shop = &procs[root["processID"].as_str().unwrap()];
    assert_eq!(shop["serviceName"], "py-shop");
    assert_eq!(tag(&shop["tags"], "service.version")["value"], "1.2.3");
    assert_eq!(
        tag(&shop["tags"], "deployment.environment.name")["value"],
        "test"
    );
    assert_eq!(
        tag(&shop["tags"], "telemetry.sdk.language")["value"],
        "python"
    );
    assert_eq!(client["processID"], root["processID"]);
    let pay = &procs[server["processID"].as_str().unwrap()];
    assert_eq!(pay["serviceName"], "py-pay");
    assert_eq!(tag(&pay["tags"], "service.version")["value"], "0.9");

    // A link is a FOLLOWS_FROM reference; its attributes a warning.
    let consumer = ids["consumer"]["trace"].as_str().unwrap();
    let (_, v) = get(&c, &api(&format!("/traces/{consumer}")));
    let s = &v["data"][0]["spans"][0];
    assert_eq!(
        s["references"],
        serde_json::json!([{"refType": "FOLLOWS_FROM", "traceID": checkout, "spanID": ids["checkout"]["root"]}])
    );
    let w = s["warnings"][0].as_str().unwrap();
    assert!(w.contains("messaging.batch=b1"), "{w}");
    assert_eq!(tag(&s["tags"], "span.kind")["value"], "consumer");

    // A 64-bit trace id, asked with 16 hex digits (and with 32).
    let health = ids["health"]["trace"].as_str().unwrap();
    assert!(health.starts_with("0000000000000000"));
    for asked in [&health[16..], health] {
        let (s, v) = get(&c, &api(&format!("/traces/{asked}")));
        assert_eq!(s, 200, "{asked}: {v}");
        assert_eq!(v["data"][0]["traceID"], health);
    }

    // Searches: by tags (JSON, logfmt, tag=), durations, operation, window, limit.
    let search = |q: &str| {
        let (s, v) = get(
            &c,
            &api(&format!("/traces?service=py-shop&lookback=2h&{q}")),
        );
        assert_eq!(s, 200, "{q}: {v}");
        trace_ids(&v)
    };
    let mut all = vec![
        checkout.to_string(),
        consumer.to_string(),
        health.to_string(),
    ];
    all.sort();
    assert_eq!(search(""), all);
    assert_eq!(
        search("tags=%7B%22error%22%3A%22true%22%7D"),
        vec![checkout]
    );
    assert_eq!(search("tags=user.tier%3Dgold"), vec![checkout]);
    assert_eq!(search("tag=http.route:/checkout"), vec![checkout]);
    assert_eq!(
        search("tags=%7B%22user.tier%22%3A%22silver%22%7D"),
        Vec::<String>::new()
    );
    assert_eq!(search("minDuration=250ms"), vec![checkout]);
    assert_eq!(
        search("maxDuration=200ms&operation=GET%20%2Fhealth"),
        vec![health]
    );
    assert_eq!(search("operation=process%20order"), vec![consumer]);
    assert_eq!(search("limit=1"), vec![health]);
    let h_start = ids["health"]["start"].as_i64().unwrap() / 1000;
    assert_eq!(
        search(&format!("start={}&end={}", h_start, h_start + 5_000_000)),
        vec![health]
    );
    // The other service's span also finds the whole trace.
    let (_, v) = get(&c, &api("/traces?service=py-pay&lookback=1h"));
    assert_eq!(trace_ids(&v), vec![checkout]);
    assert_eq!(v["data"][0]["spans"].as_array().unwrap().len(), 3);

    // Dependencies: py-shop calls py-pay once.
    let end_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let (s, v) = get(
        &c,
        &api(&format!("/dependencies?endTs={end_ms}&lookback=3600000")),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"][0]["parent"], "py-shop");
    assert_eq!(v["data"][0]["child"], "py-pay");
    assert_eq!(v["data"][0]["callCount"], 1);

    // Exemplars end to end: the Python SDK recorded the latency inside
    // the checkout span; the exemplar on the bucket series names that
    // trace, which the Jaeger API then opens (Grafana's exemplar link).
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let q = "query=http_server_request_duration_seconds_bucket%7Bjob%3D%22py-shop%22%7D";
    let (s, v) = get(
        &c,
        &p.api_url(&format!(
            "/prometheus/api/v1/query_exemplars?{q}&start={}&end={}",
            now_s - 600,
            now_s + 60
        )),
    );
    assert_eq!(s, 200, "{v}");
    let series = v["data"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{v}");
    assert_eq!(series[0]["seriesLabels"]["le"], "0.5");
    let ex = &series[0]["exemplars"][0];
    assert_eq!(ex["labels"]["trace_id"], checkout, "{v}");
    assert_eq!(ex["labels"]["span_id"], ids["checkout"]["root"]);
    assert_eq!(ex["value"], "0.31");
    let (s, v) = get(
        &c,
        &api(&format!(
            "/traces/{}",
            ex["labels"]["trace_id"].as_str().unwrap()
        )),
    );
    assert_eq!(s, 200);
    assert_eq!(v["data"][0]["spans"].as_array().unwrap().len(), 3);

    // Trace to logs: Grafana's Loki query for the trace finds its log (the
    // line filter matches the record's trace id), and only that one.
    let loki = |q: &str| -> (u16, Value, String) {
        let r = c
            .get(p.api_url(&format!("/loki/api/v1/{q}")))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        )
    };
    let enc = |s: &str| serde_urlencoded::to_string([("query", s)]).unwrap();
    let now_ns = now_s as i64 * 1_000_000_000;
    let window = format!(
        "start={}&end={}",
        now_ns - 600_000_000_000,
        now_ns + 60_000_000_000
    );
    let (s, v, _) = loki(&format!(
        "query_range?{}&{window}&limit=100",
        enc(&format!("{{service_name=\"py-shop\"}} |= \"{checkout}\""))
    ));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "streams");
    let streams = v["data"]["result"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{v}");
    assert_eq!(streams[0]["stream"]["service_name"], "py-shop");
    assert_eq!(streams[0]["stream"]["level"], "error");
    assert_eq!(streams[0]["values"].as_array().unwrap().len(), 1);
    assert_eq!(streams[0]["values"][0][1], "payment declined for cart 7");
    let (_, v, _) = loki(&format!(
        "query_range?{}&{window}&direction=forward",
        enc("{service_name=\"py-shop\", level=~\"info|error\"} != \"declined\"")
    ));
    assert_eq!(
        v["data"]["result"][0]["values"][0][1], "checkout page served",
        "{v}"
    );
    let (_, v, _) = loki(&format!(
        "query_range?{}&{window}",
        enc(&format!(
            "{{service_name=\"py-shop\"}} | trace_id=\"{}\"",
            checkout.to_uppercase()
        ))
    ));
    assert_eq!(
        v["data"]["result"][0]["values"].as_array().unwrap().len(),
        1,
        "{v}"
    );
    let (_, v, _) = loki(&format!("label/service_name/values?{window}"));
    assert_eq!(v["data"], serde_json::json!(["py-shop"]));
    let (_, v, _) = loki("labels");
    assert_eq!(v["data"], serde_json::json!(["level", "service_name"]));
    let (s, v, _) = loki(&format!("query?{}", enc("vector(1)+1")));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "2");
    for (q, says) in [
        (
            "count_over_time({service_name=\"py-shop\"}[5m])",
            "not supported",
        ),
        ("{service_name=\"py-shop\"} | json", "not supported"),
        ("{service_name=\"py-shop\"", "expected"),
    ] {
        let (s, _, text) = loki(&format!("query_range?{}&{window}", enc(q)));
        assert_eq!(s, 400, "{q}: {text}");
        assert!(text.contains(says), "{q}: {text}");
    }

    // Errors: Jaeger's envelope and the status code.
    for (q, status, says) in [
        ("/traces?lookback=1h", 400, "'service' is required"),
        (
            "/traces?service=py-shop&minDuration=abc",
            400,
            "minDuration",
        ),
        ("/traces?service=py-shop&tags=%7Bbad", 400, "tags"),
        ("/traces?service=py-shop&limit=many", 400, "limit"),
        (
            "/traces?service=py-shop&minDuration=2s&maxDuration=1s",
            400,
            "maxDuration",
        ),
        ("/traces?service=py-shop&start=20&end=10", 400, "start"),
        ("/traces/not-hex", 400, "hex"),
        (
            "/traces/00000000000000000000000000abcdef",
            404,
            "trace not found",
        ),
        ("/operations", 400, "'service' is required"),
        (
            "/operations?service=py-shop&spanKind=sideways",
            400,
            "spanKind",
        ),
        ("/dependencies?lookback=-5", 400, "lookback"),
    ] {
        let (s, v) = get(&c, &api(q));
        assert_eq!(s, status, "{q}: {v}");
        assert!(v["data"].is_null(), "{q}: {v}");
        assert_eq!(v["errors"][0]["code"], status, "{q}: {v}");
        let msg = v["errors"][0]["msg"].as_str().unwrap();
        assert!(msg.contains(says), "{q}: {msg}");
    }
    p.terminate();
}
