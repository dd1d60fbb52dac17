//! The whole cluster topology on loopback with real processes, started by
//! `scripts/cluster.sh start` as a user would (moto's S3 server, a
//! throwaway PostgreSQL, two ingest nodes, a compactor, a Ballista scheduler
//! and two executors, two query nodes sharing the state, the demo shop with
//! its services spread over the two ingest nodes):
//!
//! - both query nodes show the same services and the same trace;
//! - a payments outage opens exactly one incident (the same on both nodes)
//!   and sends exactly one page;
//! - killing the evaluating query node moves evaluation to the other within
//!   2 evaluation intervals, without a second page;
//! - SQL through Ballista (the query nodes' engine) equals the local engine
//!   (`burnwatch query` over the same bucket).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{EXE, chaos_payments, wait};

fn env_file(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(dir.join("cluster.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get(http: &reqwest::blocking::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null)
}

fn evaluator(http: &reqwest::blocking::Client, api: &str) -> Option<u8> {
    let text = http
        .get(format!("{api}/metrics"))
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with("burnwatch_slo_evaluator "))
        .map(|l| u8::from(l.ends_with(" 1")))
}

fn pages(got: &testkit::webhook::Received) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .filter(|p| {
            p["status"] == "firing"
                && p["alerts"][0]["labels"]["slo"] == "payments-availability"
                && p["alerts"][0]["labels"]["severity"] == "page"
        })
        .count()
}

/// Stops the cluster when the test ends, passed or not.
struct Cluster(std::path::PathBuf);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("scripts/cluster.sh")
            .arg("stop")
            .arg(&self.0)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status();
    }
}

#[test]
fn the_cluster_topology_serves_alerts_once_and_fails_over() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("alert-rules");
    for f in std::fs::read_dir(&shipped).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&p, rules.join(p.file_name().unwrap())).unwrap();
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (hook, got) = rt.block_on(testkit::webhook::receiver());
    let cdir = dir.path().join("cluster");
    let _cluster = Cluster(cdir.clone());
    let started = Instant::now();
    let status = Command::new("scripts/cluster.sh")
        .arg("start")
        .arg(&cdir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("BURNWATCH", EXE)
        .env("BURNWATCH_RULES_DIR", &rules)
        .env("BURNWATCH_ALERT_WEBHOOKS", &hook)
        .env("BURNWATCH_GROUP_WAIT", "1")
        .env("BURNWATCH_GROUP_INTERVAL", "2")
        .env("BURNWATCH_SLO_INTERVAL", "2")
        .env("OTEL_BSP_SCHEDULE_DELAY", "300")
        .env(
            "BURNWATCH_SHOP_ARGS",
            "--rps 30 --users 10 --mix browse=30,product=10,checkout=60",
        )
        .status()
        .unwrap();
    if !status.success() {
        // The logs live in the temporary directory: print their ends first.
        if let Ok(entries) = std::fs::read_dir(cdir.join("logs")) {
            for e in entries.flatten() {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("--- {} (last lines)", e.path().display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        panic!("scripts/cluster.sh start failed");
    }
    println!("cluster started in {:?}", started.elapsed());
    let env = env_file(&cdir);
    let (q1, q2) = (env["QUERY_1"].clone(), env["QUERY_2"].clone());
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // The same services on both query nodes (telemetry through two ingest nodes).
    let services = |api: &str| -> Option<Vec<String>> {
        let v = get(&http, &format!("{api}/api/v1/red/services"));
        let mut names: Vec<String> = v["services"]
            .as_array()?
            .iter()
            .filter_map(|s| s["service"].as_str().map(str::to_string))
            .collect();
        names.sort();
        Some(names)
    };
    let (names, _) = wait(
        "every shop service on both nodes",
        Duration::from_secs(120),
        || {
            let (a, b) = (services(&q1)?, services(&q2)?);
            (a.len() >= 8 && a == b).then_some(a)
        },
    );
    println!("services on both query nodes: {names:?}");
    // The same trace on both.
    let v = get(
        &http,
        &format!("{q1}/api/v1/traces?service=gateway&limit=1"),
    );
    let trace = v["traces"][0]["trace_id"].as_str().unwrap().to_string();
    wait(
        "the same trace on both nodes",
        Duration::from_secs(20),
        || {
            let a = get(&http, &format!("{q1}/api/v1/traces/{trace}"));
            let b = get(&http, &format!("{q2}/api/v1/traces/{trace}"));
            let n = a["spans"].as_array()?.len();
            (n > 1 && b["spans"].as_array()?.len() == n).then_some(())
        },
    );

    // A payments outage: one incident, one page, the same on both nodes.
    chaos_payments(Path::new(&env["SHOP_DATA_DIR"]), &["--outage"]);
    let (incident, took) = wait("payments page incident", Duration::from_secs(90), || {
        let v = get(&http, &format!("{q1}/api/v1/incidents"));
        v["incidents"]
            .as_array()?
            .iter()
            .find(|i| i["slo"] == "payments-availability" && i["severity"] == "page")
            .cloned()
    });
    println!("payments page incident after {took:?}");
    wait("the page", Duration::from_secs(20), || {
        (pages(&got) >= 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(pages(&got), 1, "{:#?}", got.lock().unwrap());
    let list = |api: &str| get(&http, &format!("{api}/api/v1/incidents"))["incidents"].clone();
    assert_eq!(list(&q1), list(&q2), "both nodes show the same incidents");

    // The evaluating node dies: the other takes over, no second page.
    let (e1, e2) = (
        evaluator(&http, &q1).unwrap(),
        evaluator(&http, &q2).unwrap(),
    );
    assert_eq!(e1 + e2, 1, "exactly one evaluator");
    let (dead, alive) = if e1 == 1 {
        ("PID_QUERY_1", &q2)
    } else {
        ("PID_QUERY_2", &q1)
    };
    let killed = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-KILL", &env[dead]])
            .status()
            .unwrap()
            .success()
    );
    wait("takeover", Duration::from_secs(10), || {
        (evaluator(&http, alive)? == 1).then_some(())
    });
    let takeover = killed.elapsed();
    println!("evaluation moved after {takeover:?}");
    assert!(
        takeover <= Duration::from_secs(4) + Duration::from_millis(500),
        "takeover after {takeover:?}: more than 2 evaluation intervals (2 s each)"
    );
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(pages(&got), 1, "{:#?}", got.lock().unwrap());
    let after = list(alive);
    assert_eq!(
        after
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["slo"] == "payments-availability" && i["state"] != "resolved")
            .count(),
        1,
        "{after}"
    );
    let open = after
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["slo"] == "payments-availability" && i["state"] != "resolved")
        .unwrap();
    assert_eq!(
        open["id"], incident["id"],
        "the same incident, not a new one"
    );

    // SQL through Ballista equals the local engine over the same bucket, on
    // a window long flushed.
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 10_000_000_000;
    let sql = format!(
        "SELECT service_name, count(*) AS n, sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors \
         FROM spans WHERE end_time < to_timestamp_nanos({end}) GROUP BY 1 ORDER BY 1"
    );
    let mut same = false;
    for _ in 0..5 {
        let dist: Value = http
            .post(format!("{alive}/api/v1/query"))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let out = Command::new(EXE)
            .args([
                "query",
                "--storage-url",
                &env["STORAGE_URL"],
                "--format",
                "json",
                &sql,
            ])
            .env("AWS_ENDPOINT_URL", &env["S3_ENDPOINT"])
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "burnwatch")
            .env("AWS_SECRET_ACCESS_KEY", "burnwatch")
            .env("AWS_REGION", "us-east-1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let local: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(dist["row_count"].as_u64().unwrap_or(0) >= 8, "{dist}");
        if dist["rows"] == local["rows"] {
            same = true;
            break;
        }
        // A flush or compaction landed between the two reads: again.
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(same, "Ballista and the local engine disagree on {sql}");
}
