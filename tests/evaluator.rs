//! Two query nodes sharing one PostgreSQL state database (a throwaway
//! server) over one bucket (moto's S3 server) with one ingest node, real
//! processes:
//!
//! - exactly one of them evaluates (holds the evaluator lease); both show
//!   the same incidents, and an acknowledgement made on one shows on the
//!   other;
//! - an outage (a quarter of `web`'s requests fail) opens exactly one
//!   incident and sends exactly one page;
//! - killing the evaluating node (SIGKILL: no lease release) moves
//!   evaluation to the other within 2 evaluation intervals (1 s each),
//!   without a second page and without a second incident;
//! - a node restarted into the cluster follows (does not evaluate);
//! - when the outage ends, the incident resolves and the resolved
//!   notification goes out once.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::s3::{BUCKET, S3};
use common::{ServeProcess, start_serve, wait};
use prost::Message;
use serde_json::Value;

const SLO: &str = r#"
apiVersion: openslo/v1
kind: AlertPolicy
metadata: {name: fast}
spec:
  conditions:
    - spec:
        severity: page
        condition: {kind: burnrate, op: gte, threshold: 14.4, lookbackWindow: 2m, alertAfter: 5s}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: web-availability}
spec:
  service: web
  indicator:
    metadata: {name: web-errors}
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource: {type: burnwatch, spec: {service: web, errors: true}}
        total:
          metricSource: {type: burnwatch, spec: {service: web}}
  timeWindow: [{duration: 1h, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.99}]
  alertPolicies: [{alertPolicyRef: fast}]
"#;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn query_node(
    config: &Path,
    data: &Path,
    id: &str,
    rules: &Path,
    state: &str,
    hook: &str,
) -> ServeProcess {
    start_serve(
        &[
            os("--config"),
            config.as_os_str(),
            os("--data-dir"),
            data.as_os_str(),
            os("--storage-url"),
            os(&format!("s3://{BUCKET}/eval")),
            os("--node-id"),
            os(id),
            os("--role"),
            os("query"),
            os("--rules-dir"),
            rules.as_os_str(),
            os("--slo-interval"),
            os("1"),
            os("--state-url"),
            os(state),
            os("--alert-webhook"),
            os(hook),
            os("--group-wait"),
            os("0"),
            os("--group-interval"),
            os("1"),
        ],
        Stdio::inherit(),
    )
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `n` SERVER spans of `web` ending now; the first `bad` of them failed.
fn spans(seq: u64, n: u64, bad: u64) -> Vec<u8> {
    use opentelemetry_proto::tonic::trace::v1::{Span, Status};
    let end = now_ns();
    let spans = (0..n)
        .map(|i| {
            let id = seq * 1000 + i;
            Span {
                trace_id: (u128::from(id) << 8 | 7).to_be_bytes().to_vec(),
                span_id: (id + 1).to_be_bytes().to_vec(),
                name: "GET /pay".into(),
                kind: 2,
                start_time_unix_nano: end - 3_000_000,
                end_time_unix_nano: end,
                status: (i < bad).then(|| Status {
                    code: 2,
                    message: "boom".into(),
                }),
                ..Default::default()
            }
        })
        .collect();
    testkit::otlp::spans_request(vec![common::kv("service.name", "web")], spans).encode_to_vec()
}

fn get(http: &reqwest::blocking::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null)
}

/// 1 when `/metrics` of `p` says it evaluates, 0 when not, None if it does
/// not answer.
fn evaluator(http: &reqwest::blocking::Client, p: &ServeProcess) -> Option<u8> {
    let text = http.get(p.api_url("/metrics")).send().ok()?.text().ok()?;
    text.lines()
        .find(|l| l.starts_with("burnwatch_slo_evaluator "))
        .map(|l| u8::from(l.ends_with(" 1")))
}

fn count(got: &testkit::webhook::Received, status: &str) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == status && p["alerts"][0]["labels"]["slo"] == "web-availability")
        .count()
}

#[test]
fn one_evaluator_takes_over_without_paging_again() {
    let pg = statedb::testing::TestPostgres::start().unwrap();
    let state = pg.database("burnwatch").unwrap();
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("[cluster]\nrefresh_secs = 0.25\n");
    std::fs::write(&config, toml).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("slo.yaml"), SLO).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (hook, got) = rt.block_on(testkit::webhook::receiver());

    let ingest = start_serve(
        &[
            os("--config"),
            config.as_os_str(),
            os("--data-dir"),
            dir.path().join("i").as_os_str(),
            os("--storage-url"),
            os(&format!("s3://{BUCKET}/eval")),
            os("--node-id"),
            os("i"),
            os("--role"),
            os("ingest"),
            os("--flight-addr"),
            os("127.0.0.1:0"),
        ],
        Stdio::inherit(),
    );
    let q1 = query_node(&config, &dir.path().join("q1"), "q1", &rules, &state, &hook);
    let q2 = query_node(&config, &dir.path().join("q2"), "q2", &rules, &state, &hook);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // Exactly one evaluates.
    let (roles, _) = wait("one evaluator", Duration::from_secs(20), || {
        let r = (evaluator(&http, &q1)?, evaluator(&http, &q2)?);
        (r.0 + r.1 == 1).then_some(r)
    });
    println!("evaluator: q1={} q2={}", roles.0, roles.1);

    // Traffic: 40 spans every 200 ms, 10 of them failed (burn 25 > 14.4).
    let failing = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (failing, stop) = (failing.clone(), stop.clone());
        let url = format!("http://{}/v1/traces", ingest.otlp_http);
        std::thread::spawn(move || {
            let http = reqwest::blocking::Client::new();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let bad = if failing.load(Ordering::Relaxed) {
                    10
                } else {
                    0
                };
                let r = http
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(spans(seq, 40, bad))
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    // One incident, one page, the same on both nodes.
    let (incident, took) = wait("page incident", Duration::from_secs(40), || {
        let v = get(&http, &q1.api_url("/api/v1/incidents"));
        v["incidents"].as_array()?.first().cloned()
    });
    println!("incident opened after {took:?}");
    wait("page notification", Duration::from_secs(10), || {
        (count(&got, "firing") >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(count(&got, "firing"), 1, "{:#?}", got.lock().unwrap());
    let id = incident["id"].as_i64().unwrap();
    let on = |p: &ServeProcess| get(&http, &p.api_url("/api/v1/incidents"))["incidents"].clone();
    assert_eq!(on(&q1).as_array().unwrap().len(), 1);
    assert_eq!(on(&q1), on(&q2), "both nodes show the same incidents");

    // Acknowledged on the node that does not evaluate; seen on the other.
    let (evaluating, following) = if roles.0 == 1 { (q1, q2) } else { (q2, q1) };
    let r = http
        .post(following.api_url(&format!("/api/v1/incidents/{id}/ack")))
        .json(&serde_json::json!({"by": "alice"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "ack: {}", r.status());
    let shown = on(&evaluating)[0].clone();
    assert_eq!(shown["id"], id);
    assert_eq!(shown["state"], "acknowledged", "{shown}");

    // The evaluator dies without releasing its lease: the other takes over
    // within 2 evaluation intervals.
    let killed_at = Instant::now();
    evaluating.kill();
    let (_, takeover) = wait("takeover", Duration::from_secs(10), || {
        (evaluator(&http, &following)? == 1).then_some(())
    });
    let takeover = killed_at
        .elapsed()
        .min(takeover + Duration::from_millis(50));
    println!("takeover after {takeover:?}");
    assert!(
        takeover <= Duration::from_secs(2),
        "evaluation moved after {takeover:?}, more than 2 evaluation intervals"
    );
    // More rounds during the outage on the new evaluator: no second page,
    // no second incident.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&got, "firing"), 1, "{:#?}", got.lock().unwrap());
    let list = on(&following);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["state"], "acknowledged");

    // A node started again joins as a follower.
    let again = query_node(&config, &dir.path().join("q3"), "q3", &rules, &state, &hook);
    wait("the new node answers", Duration::from_secs(20), || {
        evaluator(&http, &again)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(evaluator(&http, &again), Some(0));
    assert_eq!(evaluator(&http, &following), Some(1));

    // The outage ends: the incident resolves (on the evaluator), once.
    failing.store(false, Ordering::Relaxed);
    let (_, resolved) = wait("resolution", Duration::from_secs(60), || {
        (on(&again)[0]["state"] == "resolved").then_some(())
    });
    println!("resolved {resolved:?} after the outage ended");
    wait("resolved notification", Duration::from_secs(10), || {
        (count(&got, "resolved") >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(&got, "resolved"), 1, "{:#?}", got.lock().unwrap());
    assert_eq!(count(&got, "firing"), 1);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    drop(ingest);
}
