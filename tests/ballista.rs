//! Distributed SQL on a Ballista cluster of real processes over one bucket
//! (moto's S3 server): `burnwatch ballista scheduler`, two `burnwatch
//! ballista executor`s, and two query nodes over the same bucket, one with
//! the local engine and one with `--query-engine ballista`.
//!
//! - golden queries (aggregates, a join of spans with logs, window
//!   functions, `unnest(events)`, a time-bounded scan) answer the same rows
//!   both ways, and the CLI's `burnwatch query --engine ballista` agrees;
//! - the read-only guard refuses DDL, COPY and file-reading functions
//!   through the distributed path, and the row limit truncates alike;
//! - a query past the time limit answers 408 and is cancelled on the
//!   executors: their CPU time stops growing once the API answered;
//! - with the scheduler unreachable, the API answers 503 naming it (the
//!   local engine is not used instead).

mod common;

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::s3::{BUCKET, S3, free_port};
use common::{EXE, ServeProcess, kv, start_serve};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span::Event};
use prost::Message;
use serde_json::Value;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field, stime the 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `n` traces of three spans each (gateway -> orders -> db), one in seven
/// failed, each span with two events; a log line per span with its ids.
fn telemetry(n: u64, base: u64) -> (Vec<Vec<u8>>, Vec<u8>) {
    let services = ["gateway", "orders", "db"];
    let mut traces = Vec::new();
    let mut logs = Vec::new();
    for (k, service) in services.iter().enumerate() {
        let spans: Vec<Span> = (0..n)
            .map(|i| {
                let trace_id = (u128::from(i) << 16 | 0xbeef).to_be_bytes().to_vec();
                let span_id = (i * 10 + k as u64 + 1).to_be_bytes().to_vec();
                let start = base + i * 1_000_000 + k as u64 * 1000;
                let failed = i % 7 == 0 && k == 2;
                Span {
                    trace_id,
                    span_id,
                    parent_span_id: if k == 0 {
                        Vec::new()
                    } else {
                        (i * 10 + k as u64).to_be_bytes().to_vec()
                    },
                    name: format!("{service} op{}", i % 4),
                    kind: if k == 0 { 2 } else { 3 },
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 1_000 * (1 + (i * 37 + k as u64 * 11) % 500),
                    attributes: vec![kv("http.route", &format!("/r{}", i % 3))],
                    events: vec![
                        Event {
                            time_unix_nano: start + 10,
                            name: "enqueued".into(),
                            ..Default::default()
                        },
                        Event {
                            time_unix_nano: start + 20,
                            name: if failed { "exception" } else { "done" }.into(),
                            ..Default::default()
                        },
                    ],
                    status: failed.then(|| Status {
                        code: 2,
                        message: "boom".into(),
                    }),
                    ..Default::default()
                }
            })
            .collect();
        let records: Vec<LogRecord> = spans
            .iter()
            .map(|s| LogRecord {
                time_unix_nano: s.start_time_unix_nano + 5,
                severity_number: if s.status.is_some() { 17 } else { 9 },
                severity_text: if s.status.is_some() { "ERROR" } else { "INFO" }.into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!("handled {}", s.name))),
                }),
                trace_id: s.trace_id.clone(),
                span_id: s.span_id.clone(),
                ..Default::default()
            })
            .collect();
        traces.push(
            testkit::otlp::spans_request(vec![kv("service.name", service)], spans).encode_to_vec(),
        );
        logs.push(ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    let logs = ExportLogsServiceRequest {
        resource_logs: logs,
    }
    .encode_to_vec();
    (traces, logs)
}

fn query_node(config: &Path, data: &Path, id: &str, extra: &[&OsStr]) -> ServeProcess {
    let mut args: Vec<&OsStr> = vec![
        os("--config"),
        config.as_os_str(),
        os("--data-dir"),
        data.as_os_str(),
        os("--storage-url"),
        os("s3://bw-test/ballista"),
        os("--node-id"),
        os(id),
        os("--role"),
        os("query"),
    ];
    args.extend_from_slice(extra);
    start_serve(&args, Stdio::inherit())
}

fn post(http: &reqwest::blocking::Client, node: &ServeProcess, body: Value) -> (u16, Value, bool) {
    let r = http
        .post(node.api_url("/api/v1/query"))
        .json(&body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let truncated = r.headers().get("x-burnwatch-truncated").is_some();
    (status, r.json().unwrap_or(Value::Null), truncated)
}

const GOLDEN: &[&str] = &[
    // Aggregates.
    "SELECT service_name, count(*) AS n, sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors, \
     avg(duration_ns) AS mean_ns, max(duration_ns) AS max_ns, approx_distinct(trace_id) AS traces \
     FROM spans GROUP BY service_name ORDER BY service_name",
    // Per-operation p99 by hour (the distributed benchmark's shape).
    "SELECT date_trunc('hour', start_time) AS hour, service_name, name, count(*) AS n, \
     percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ns) AS p99 \
     FROM spans GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    // A join of spans with logs.
    "SELECT s.service_name, l.severity_text, count(*) AS n, sum(s.duration_ns) AS total_ns \
     FROM spans s JOIN logs l ON s.trace_id = l.trace_id AND s.span_id = l.span_id \
     GROUP BY 1, 2 ORDER BY 1, 2",
    // Window functions.
    "SELECT service_name, name, duration_ns, \
     row_number() OVER (PARTITION BY service_name ORDER BY duration_ns DESC, span_id) AS rank, \
     sum(duration_ns) OVER (PARTITION BY service_name) AS service_total \
     FROM spans QUALIFY rank <= 3 ORDER BY service_name, rank",
    // unnest(events).
    "SELECT e.name AS event, count(*) AS n FROM (SELECT unnest(events) AS e FROM spans) GROUP BY 1 ORDER BY 1",
    // A time-bounded scan with a subquery.
    "SELECT count(*) AS n FROM spans WHERE start_time >= (SELECT min(start_time) FROM spans) + INTERVAL '100 milliseconds' \
     AND trace_id IN (SELECT trace_id FROM logs WHERE severity_text = 'ERROR')",
];

#[test]
fn ballista_answers_like_the_local_engine_and_cancels_on_time() {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // Telemetry through a node of its own, flushed to the bucket on exit.
    let writer = start_serve(
        &[
            os("--config"),
            config.as_os_str(),
            os("--data-dir"),
            dir.path().join("w").as_os_str(),
            os("--storage-url"),
            os("s3://bw-test/ballista"),
            os("--node-id"),
            os("w"),
        ],
        Stdio::inherit(),
    );
    let (traces, logs) = telemetry(400, now_ns() - 3_600_000_000_000);
    for body in traces {
        let r = http
            .post(format!("http://{}/v1/traces", writer.otlp_http))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = http
        .post(format!("http://{}/v1/logs", writer.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(logs)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    writer.terminate();

    // The cluster: a scheduler and two executors.
    let mut scheduler = Proc(
        Command::new(EXE)
            .args([
                "ballista",
                "scheduler",
                "--log",
                "warn",
                "--bind-port",
                "0",
                "--config",
            ])
            .arg(&config)
            .args(["--storage-url", "s3://bw-test/ballista"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(scheduler.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("df://127.0.0.1:"), "{line}");
    let scheduler_port = url.rsplit(':').next().unwrap().to_string();
    let executors: Vec<Proc> = (0..2)
        .map(|i| {
            Proc(
                Command::new(EXE)
                    .args(["ballista", "executor", "--log", "warn", "--config"])
                    .arg(&config)
                    .args(["--storage-url", "s3://bw-test/ballista", "--data-dir"])
                    .arg(dir.path().join(format!("e{i}")))
                    .args(["--bind-port", &free_port().to_string()])
                    .args(["--bind-grpc-port", &free_port().to_string()])
                    .args(["--scheduler-port", &scheduler_port])
                    .args(["--concurrent-tasks", "2"])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();

    let local = query_node(&config, &dir.path().join("l"), "l", &[]);
    let limited = dir.path().join("limited.toml");
    std::fs::write(
        &limited,
        std::fs::read_to_string(&config).unwrap() + "[query]\ntimeout_secs = 3.0\n",
    )
    .unwrap();
    let dist = query_node(
        &limited,
        &dir.path().join("d"),
        "d",
        &[
            os("--query-engine"),
            os("ballista"),
            os("--ballista-url"),
            os(&url),
        ],
    );

    // Ready: both see every span, the distributed one through executors.
    let count = |node: &ServeProcess| {
        let (status, v, _) = post(
            &http,
            node,
            serde_json::json!({"sql": "SELECT count(*) AS n FROM spans"}),
        );
        (status == 200)
            .then(|| v["rows"][0]["n"].as_u64())
            .flatten()
    };
    let t = Instant::now();
    while count(&local) != Some(1200) || count(&dist) != Some(1200) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "not ready: {:?} {:?}",
            count(&local),
            count(&dist)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Golden queries: the same rows both ways.
    for sql in GOLDEN {
        let (s1, a, _) = post(&http, &local, serde_json::json!({"sql": sql}));
        let (s2, b, _) = post(&http, &dist, serde_json::json!({"sql": sql}));
        assert_eq!((s1, s2), (200, 200), "{sql}\nlocal: {a}\nballista: {b}");
        assert!(a["row_count"].as_u64().unwrap() > 0, "{sql}: no rows");
        assert_eq!(a["rows"], b["rows"], "{sql}");
        assert_eq!(a["columns"], b["columns"], "{sql}");
    }
    println!("{} golden queries agree", GOLDEN.len());

    // The CLI through the cluster agrees too.
    let out = Command::new(EXE)
        .args([
            "query",
            "--storage-url",
            "s3://bw-test/ballista",
            "--engine",
            "ballista",
            "--ballista-url",
            &url,
            "--format",
            "json",
        ])
        .arg(GOLDEN[0])
        .env("AWS_ENDPOINT_URL", &s3.endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, a, _) = post(&http, &local, serde_json::json!({"sql": GOLDEN[0]}));
    assert_eq!(cli["rows"], a["rows"]);

    // The guard holds on the distributed path.
    for bad in [
        "CREATE TABLE t AS SELECT 1",
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 's3://bw-test/'",
        "COPY spans TO '/tmp/x.parquet'",
        "SELECT * FROM read_parquet('s3://bw-test/ballista')",
        "SELECT * FROM 's3://bw-test/ballista/w/spans'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let (status, v, _) = post(&http, &dist, serde_json::json!({"sql": bad}));
        assert_eq!(status, 400, "{bad}: {v}");
        assert_eq!(v["error"]["code"], "not_allowed", "{bad}: {v}");
    }
    // The row limit truncates alike.
    let limited_rows =
        serde_json::json!({"sql": "SELECT span_id FROM spans ORDER BY span_id", "max_rows": 7});
    let (_, a, ta) = post(&http, &local, limited_rows.clone());
    let (_, b, tb) = post(&http, &dist, limited_rows);
    assert!(ta && tb);
    assert_eq!(a["rows"], b["rows"]);
    assert_eq!(b["row_count"], 7);

    // Past the time limit: 408, and the executors stop working.
    let heavy = "SELECT sum(a.duration_ns % 7 + b.duration_ns % 5 + c.duration_ns % 3) AS x FROM spans a, spans b, spans c";
    let before: u64 = executors.iter().map(|e| cpu_ticks(e.0.id())).sum();
    let t = Instant::now();
    let (status, v, _) = post(&http, &dist, serde_json::json!({"sql": heavy}));
    let answered = t.elapsed();
    assert_eq!(status, 408, "{v}");
    assert_eq!(v["error"]["code"], "query_timeout");
    let at_answer: u64 = executors.iter().map(|e| cpu_ticks(e.0.id())).sum();
    assert!(
        at_answer > before + 100,
        "the executors did work: {before} -> {at_answer} ticks"
    );
    std::thread::sleep(Duration::from_millis(500));
    let settled: u64 = executors.iter().map(|e| cpu_ticks(e.0.id())).sum();
    std::thread::sleep(Duration::from_secs(2));
    let after: u64 = executors.iter().map(|e| cpu_ticks(e.0.id())).sum();
    println!(
        "timeout answered after {answered:?}; executor CPU ticks: {before} before, {at_answer} at the answer, {settled} 0.5 s later, {after} 2.5 s later"
    );
    assert!(
        after - settled <= 20,
        "the executors kept working after the query was cancelled: {settled} -> {after} ticks in 2 s"
    );
    // The cluster still answers.
    assert_eq!(count(&dist), Some(1200));

    // The scheduler gone: 503 naming it, not a silent local answer.
    let dead = format!("df://127.0.0.1:{}", free_port());
    let orphan = query_node(
        &config,
        &dir.path().join("o"),
        "o",
        &[
            os("--query-engine"),
            os("ballista"),
            os("--ballista-url"),
            os(&dead),
        ],
    );
    let (status, v, _) = post(
        &http,
        &orphan,
        serde_json::json!({"sql": "SELECT count(*) FROM spans"}),
    );
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "engine_unavailable");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&dead),
        "{v}"
    );
    drop(scheduler);
    let (status, v, _) = post(
        &http,
        &dist,
        serde_json::json!({"sql": "SELECT count(*) FROM spans"}),
    );
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&url),
        "{v}"
    );
    drop(executors);
}
