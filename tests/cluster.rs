//! A cluster on one bucket (moto's S3 server on loopback): two ingest
//! nodes and a query node, real processes.
//!
//! - Every span acknowledged by either ingest node is visible through the
//!   query node within 2 s of its acknowledgement (the ingest nodes' rows
//!   not yet in the bucket arrive over Arrow Flight), exactly once, while
//!   the ingest nodes flush files and write manifest versions;
//! - RED through the query node equals a single-node run over the same
//!   input;
//! - an ingest node that stops answering (SIGSTOP) is named in the query
//!   node's answers (`missing_nodes` in JSON, a header, a page banner), and
//!   queries do not hang; once it answers again, nothing is missing;
//! - two compactors started together: one acts, the other waits; every
//!   node's files of the hour become one file, the ingest nodes let go of
//!   theirs, and through the query node every span stays visible exactly
//!   once all along; RED still equals the single node's; objects no
//!   manifest version names are swept after the grace period;
//! - SLO status through the query node equals the single node's;
//! - with the bucket frozen, the query node answers from its caches;
//! - a query node given `--ingest-peers` sees the same as one that finds
//!   the ingest nodes through their leases;
//! - the compactor applies retention to every node's files.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::s3::{BUCKET, S3};
use common::{ServeProcess, start_serve};
use prost::Message;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn node(config: &Path, data: &Path, url: &str, id: &str, role: &str, rules: &Path) -> ServeProcess {
    start_serve(
        &[
            os("--config"),
            config.as_os_str(),
            os("--data-dir"),
            data.as_os_str(),
            os("--storage-url"),
            os(url),
            os("--node-id"),
            os(id),
            os("--role"),
            os(role),
            os("--flight-addr"),
            os("127.0.0.1:0"),
            os("--rules-dir"),
            rules.as_os_str(),
            os("--slo-interval"),
            os("1"),
        ],
        Stdio::inherit(),
    )
}

/// One SLO over the test spans: service `web`, bad when the span id ends in
/// 0 to 3 (a quarter of them).
const SLO: &str = "apiVersion: openslo/v1
kind: SLO
metadata:
  name: web-availability
spec:
  service: web
  indicator:
    metadata:
      name: web-errors
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource:
            type: burnwatch
            spec: {service: web, kind: SERVER, where: \"right(span_id, 1) IN ('0', '1', '2', '3')\"}
        total:
          metricSource:
            type: burnwatch
            spec: {service: web, kind: SERVER}
  timeWindow:
    - duration: 1d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.99
";

/// `(total, bad)` of the SLO through `/api/v1/slos`, once evaluated.
async fn slo(c: &reqwest::Client, p: &ServeProcess) -> Option<(u64, u64)> {
    let v: serde_json::Value = c
        .get(p.api_url("/api/v1/slos"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let s = v["slos"].as_array()?.first()?.clone();
    Some((s["total"].as_u64()?, s["bad"].as_u64()?))
}

async fn export(c: &reqwest::Client, p: &ServeProcess, first: u64, n: u64, service: &str) {
    let r = c
        .post(format!("http://{}/v1/traces", p.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(common::trace_request(first, n, service, 50).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

async fn sql(c: &reqwest::Client, p: &ServeProcess, sql: &str) -> reqwest::Response {
    c.post(p.api_url("/api/v1/query"))
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .unwrap()
}

fn signal(p: &ServeProcess, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &p.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// RED per service through the API, keyed by service, as
/// `(requests, errors, p50 ms)`.
async fn red(c: &reqwest::Client, p: &ServeProcess, from: u64) -> Vec<(String, u64, u64, f64)> {
    let v: serde_json::Value = c
        .get(p.api_url(&format!("/api/v1/red/services?from={from}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rows: Vec<(String, u64, u64, f64)> = v["services"]
        .as_array()
        .unwrap_or_else(|| panic!("no services in {v}"))
        .iter()
        .map(|s| {
            (
                s["service"].as_str().unwrap().to_string(),
                s["requests"].as_u64().unwrap(),
                s["errors"].as_u64().unwrap(),
                s["p50_ms"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[test]
fn two_ingest_nodes_and_a_query_node_see_every_span_once() {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    // Flushes every 2 s, so files and manifest versions appear while the
    // query node reads; the query node refreshes every 250 ms.
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml = toml.replace(
        "flush_interval_secs = 0.5",
        "flush_interval_secs = 2.0\ncompaction_schedule = \"*/2 * * * * *\"",
    );
    toml.push_str(
        "delete_grace_secs = 2\n[cluster]\nrefresh_secs = 0.25\npeer_timeout_secs = 0.5\n",
    );
    std::fs::write(&config, toml).unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("slo.yaml"), SLO).unwrap();
    let url = format!("s3://{BUCKET}/cluster");
    let a = node(&config, &dir.path().join("a"), &url, "a", "ingest", &rules);
    let b = node(&config, &dir.path().join("b"), &url, "b", "ingest", &rules);
    assert!(a.flight.is_some() && b.flight.is_some());
    let q = node(&config, &dir.path().join("q"), &url, "q", "query", &rules);
    // A second query node that is given the ingest nodes instead of
    // finding them through their leases.
    let q2 = {
        let peers = format!(
            "http://{},http://{}",
            a.flight.as_deref().unwrap(),
            b.flight.as_deref().unwrap()
        );
        start_serve(
            &[
                os("--config"),
                config.as_os_str(),
                os("--data-dir"),
                dir.path().join("q2").as_os_str(),
                os("--storage-url"),
                os(&url),
                os("--node-id"),
                os("q2"),
                os("--role"),
                os("query"),
                os("--ingest-peers"),
                os(&peers),
                os("--rules-dir"),
                rules.as_os_str(),
            ],
            Stdio::inherit(),
        )
    };
    let single = start_serve(
        &[
            os("--data-dir"),
            dir.path().join("single").as_os_str(),
            os("--rules-dir"),
            rules.as_os_str(),
            os("--slo-interval"),
            os("1"),
        ],
        Stdio::inherit(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = reqwest::Client::new();

    let mut total = 0u64;
    let mut latencies = Vec::new();
    rt.block_on(async {
        for round in 0..12u64 {
            let first = round * 100;
            export(&c, &a, first, 50, "web").await;
            export(&c, &b, first + 50, 50, "api").await;
            export(&c, &single, first, 50, "web").await;
            export(&c, &single, first + 50, 50, "api").await;
            let acked = Instant::now();
            total += 100;
            loop {
                let (n, d) = common::span_counts(&c, &q.api_url("/api/v1/query")).await;
                assert_eq!(n, d, "a span seen twice through the query node");
                assert!(n <= total, "{n} spans seen, {total} sent");
                if n == total {
                    break;
                }
                assert!(
                    acked.elapsed() < Duration::from_secs(10),
                    "{n} of {total} spans visible after 10 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            latencies.push(acked.elapsed());
            // The node with static peers sees the same, soon.
            let t = Instant::now();
            while common::span_counts(&c, &q2.api_url("/api/v1/query")).await != (total, total) {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "the query node with --ingest-peers lags"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    eprintln!(
        "visible through the query node after: median {median:?}, max {:?}",
        latencies.last().unwrap()
    );
    assert!(
        median <= Duration::from_secs(2),
        "acknowledged spans visible cluster-wide after {median:?} (median)"
    );

    // Everything reaches the bucket; the view stays exact across flushes.
    let from = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        now - 12 * 3600 * 1_000_000_000
    };
    rt.block_on(async {
        let t = Instant::now();
        loop {
            let r = sql(&c, &q, "SELECT count(*) AS n FROM spans").await;
            assert_eq!(r.status(), 200);
            let metrics = c
                .get(q.api_url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                metrics.contains("burnwatch_cluster_refreshes_total"),
                "query node metrics: {metrics}"
            );
            let live: f64 = metrics
                .lines()
                .find(|l| l.starts_with("burnwatch_cluster_live_rows_received_total"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap();
            assert!(live > 0.0, "no live rows came over Arrow Flight");
            let ma = a_b_flushed(&s3).await;
            if ma == total {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{ma} of {total} spans in the bucket"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(
            common::span_counts(&c, &q.api_url("/api/v1/query")).await,
            (total, total)
        );
        // RED through the query node equals the single node's.
        let (rq, rs) = (red(&c, &q, from).await, red(&c, &single, from).await);
        assert_eq!(rq.len(), 2, "{rq:?}");
        assert_eq!(rq, rs, "RED through the query node differs from one node's");
        // SLO status too, once both evaluated every span of `web`.
        let web = total / 2;
        let t = Instant::now();
        let (sq, ss) = loop {
            let (sq, ss) = (slo(&c, &q).await, slo(&c, &single).await);
            if sq.is_some_and(|s| s.0 == web) && ss.is_some_and(|s| s.0 == web) {
                break (sq.unwrap(), ss.unwrap());
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "SLO not evaluated over every span: query node {sq:?}, single node {ss:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert!(sq.1 > 0, "the SLO counts bad events: {sq:?}");
        assert_eq!(
            sq, ss,
            "SLO status through the query node differs from one node's"
        );
    });

    // An ingest node stops answering: the query node says so, and does not hang.
    signal(&b, "-STOP");
    rt.block_on(async {
        let t = Instant::now();
        loop {
            let started = Instant::now();
            let r = sql(&c, &q, "SELECT count(*) AS n FROM spans").await;
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "a query took {:?} with an ingest node frozen",
                started.elapsed()
            );
            let header = r
                .headers()
                .get("burnwatch-missing-nodes")
                .map(|v| v.to_str().unwrap().to_string());
            let v: serde_json::Value = r.json().await.unwrap();
            if let Some(m) = v["missing_nodes"].as_array() {
                assert_eq!(m.len(), 1, "{v}");
                assert_eq!(m[0]["node"], "b", "{v}");
                assert!(m[0]["error"].as_str().unwrap().contains("no answer"), "{v}");
                assert_eq!(header.as_deref(), Some("b"));
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "node b never reported missing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = c
            .get(q.api_url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("class=\"missing-nodes\""),
            "no banner on the page"
        );
        assert!(page.contains("<b>b</b>"), "the banner names the node");
        // Node a keeps being read while b is away.
        export(&c, &a, 5000, 10, "web").await;
        export(&c, &single, 5000, 10, "web").await;
        total += 10;
        let t = Instant::now();
        while common::span_counts(&c, &q.api_url("/api/v1/query")).await.0 != total {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "node a's new spans not visible"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    signal(&b, "-CONT");
    rt.block_on(async {
        let t = Instant::now();
        loop {
            let r = sql(&c, &q, "SELECT count(*) AS n FROM spans").await;
            let missing = r.headers().get("burnwatch-missing-nodes").is_some();
            let v: serde_json::Value = r.json().await.unwrap();
            if !missing && v.get("missing_nodes").is_none() {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "node b still missing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            common::span_counts(&c, &q.api_url("/api/v1/query")).await,
            (total, total)
        );
    });

    // Two compactors start together: one acts, the other waits. Every
    // node's files of the hour become one file; through the query node
    // every span stays visible exactly once, all along.
    let compactor = |name: &str| {
        std::process::Command::new(common::EXE)
            .args(["serve", "--http-addr", "127.0.0.1:0", "--role", "compact"])
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join(name))
            .args(["--storage-url", &url])
            .arg("--rules-dir")
            .arg(dir.path().join("no-rules"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join(format!("{name}.log"))).unwrap())
            .spawn()
            .map(Proc)
            .unwrap()
    };
    // Objects no manifest version names (an upload whose version was never
    // written) are swept by the compactor after the grace period; files the
    // compactor replaced are deleted by their owners after it.
    let ghosts = [
        "cluster/spans/date=2020-01-01/hour=00/part-ghost-1.parquet",
        "cluster/rollups/red-v1/spans/date=2020-01-01/hour=00/part-ghost-1.parquet",
    ];
    rt.block_on(async {
        use object_store::ObjectStoreExt as _;
        let r = store::remote::Remote::connect(&s3.storage("cluster", "reader"))
            .await
            .unwrap()
            .unwrap();
        for g in ghosts {
            r.object_store()
                .put(&object_store::path::Path::from(g), "orphan".into())
                .await
                .unwrap();
        }
    });
    let mut c1 = compactor("c1");
    let mut c2 = compactor("c2");
    rt.block_on(async {
        let t = Instant::now();
        loop {
            assert_eq!(
                common::span_counts(&c, &q.api_url("/api/v1/query")).await,
                (total, total),
                "every span exactly once while the cluster compacts"
            );
            let (compacted, leftover) = compacted(&s3).await;
            if compacted == total && leftover == 0 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "not compacted: {compacted} spans in the compactor's files, {leftover} files left on the ingest nodes"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            common::span_counts(&c, &q.api_url("/api/v1/query")).await,
            (total, total)
        );
        let (rq, rs) = (red(&c, &q, from).await, red(&c, &single, from).await);
        assert_eq!(rq, rs, "RED after compaction differs from one node's");
    });
    let t = Instant::now();
    loop {
        // The replaced files go too, after the grace period.
        let keys = s3.keys("cluster/");
        let replaced = keys
            .iter()
            .any(|k| k.starts_with("cluster/spans/") && k.contains("/part-"));
        if !replaced && !ghosts.iter().any(|g| keys.iter().any(|k| k == g)) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "orphans or replaced files not deleted: {keys:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    rt.block_on(async {
        assert_eq!(
            common::span_counts(&c, &q.api_url("/api/v1/query")).await,
            (total, total),
            "the sweep removed only orphans"
        );
    });
    // Exactly one compactor acted: the other is still waiting, without a
    // port. Killed, the active one's lease is free and the standby takes
    // over.
    assert!(c1.try_wait().unwrap().is_none() && c2.try_wait().unwrap().is_none());
    let (mut active, mut standby, standby_log) = if first_line(&mut c1).is_some() {
        (c1, c2, dir.path().join("c2.log"))
    } else {
        (c2, c1, dir.path().join("c1.log"))
    };
    let log = std::fs::read_to_string(&standby_log).unwrap();
    assert!(log.contains("waiting as a standby"), "standby log: {log}");
    assert!(first_line(&mut standby).is_none(), "both compactors serve");
    active.kill().unwrap();
    active.wait().unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string(&standby_log)
        .unwrap()
        .contains("this node is the active compactor")
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the standby never took over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = standby.kill();
    let _ = standby.wait();
    // The bucket stops answering: the query node answers from its view and
    // caches (every file was read above), at once.
    let moto = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &s3.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    moto("-STOP");
    rt.block_on(async {
        let t = Instant::now();
        assert_eq!(
            common::span_counts(&c, &q.api_url("/api/v1/query")).await,
            (total, total)
        );
        let r = red(&c, &q, from).await;
        assert_eq!(r.len(), 2);
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "queries took {:?} with the bucket frozen",
            t.elapsed()
        );
    });
    moto("-CONT");
    for p in [q, q2, a, b, single] {
        p.terminate();
    }
}

/// The compactor applies retention to every ingest node's files: an
/// ingest node's expired spans leave the bucket's view at once
/// (tombstoned), then the node's own manifest, then the bucket. A node in
/// role `all` on the same bucket keeps its own (it maintains them itself).
#[test]
fn the_compactor_expires_every_nodes_old_partitions() {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    // The test spans are six hours old: a retention of one hour expires them.
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(
        "compaction_schedule = \"*/1 * * * * *\"\ndelete_grace_secs = 1\n\
         [store.retention_hours]\nspans = 1\n",
    );
    std::fs::write(&config, toml).unwrap();
    let url = format!("s3://{BUCKET}/retention");
    let rules = dir.path().join("no-rules");
    let a = node(&config, &dir.path().join("a"), &url, "a", "ingest", &rules);
    // A node in role `all` on the same bucket maintains its own files: the
    // compactor leaves them alone.
    let s = node(&config, &dir.path().join("s"), &url, "s", "all", &rules);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = reqwest::Client::new();
    rt.block_on(export(&c, &a, 0, 100, "web"));
    rt.block_on(export(&c, &s, 1000, 40, "web"));
    let spans_in_bucket = || {
        rt.block_on(async {
            let r = store::remote::Remote::connect(&s3.storage("retention", "reader"))
                .await
                .unwrap()
                .unwrap();
            let m = r.merged_manifest().await.unwrap();
            let a = r.latest_manifest("a").await.unwrap();
            (
                m.files(store::Table::Spans)
                    .iter()
                    .map(|f| f.rows)
                    .sum::<u64>(),
                a.map(|m| m.files(store::Table::Spans).len()).unwrap_or(0),
            )
        })
    };
    let t = Instant::now();
    while spans_in_bucket().0 != 140 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the spans never reached the bucket"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut compactor = std::process::Command::new(common::EXE)
        .args(["serve", "--http-addr", "127.0.0.1:0", "--role", "compact"])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("c"))
        .args(["--storage-url", &url])
        .arg("--rules-dir")
        .arg(&rules)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map(Proc)
        .unwrap();
    let t = Instant::now();
    loop {
        let (rows, a_files) = spans_in_bucket();
        let left = s3
            .keys("retention/spans/")
            .into_iter()
            .filter(|k| k.ends_with(".parquet") && !k.contains("/part-s-"))
            .count();
        if rows == 40 && a_files == 0 && left == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "not expired: {rows} rows in the view, {a_files} files in a's manifest, {left} objects"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = compactor.kill();
    let _ = compactor.wait();
    a.terminate();
    s.terminate();
}

/// A child process killed when dropped, so a failed assertion never leaves
/// a compactor running.
struct Proc(std::process::Child);

impl std::ops::Deref for Proc {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first stdout line of a compactor, if it printed one within 2 s
/// (only the active one does: it serves once it holds the lease).
fn first_line(child: &mut std::process::Child) -> Option<String> {
    use std::io::BufRead as _;
    let out = child.stdout.take()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(2))
        .ok()
        .filter(|l| !l.is_empty())
}

/// Spans in the compactor's newest version's files, and spans files still
/// in the ingest nodes' newest versions.
async fn compacted(s3: &S3) -> (u64, usize) {
    let r = store::remote::Remote::connect(&s3.storage("cluster", "reader"))
        .await
        .unwrap()
        .unwrap();
    let rows = match r.latest_manifest("compactor").await.unwrap() {
        Some(m) => m.files(store::Table::Spans).iter().map(|f| f.rows).sum(),
        None => 0,
    };
    let mut left = 0;
    for node in ["a", "b"] {
        if let Some(m) = r.latest_manifest(node).await.unwrap() {
            left += m.files(store::Table::Spans).len();
        }
    }
    (rows, left)
}

/// Spans named by the newest manifest versions of nodes `a` and `b`.
async fn a_b_flushed(s3: &S3) -> u64 {
    let r = store::remote::Remote::connect(&s3.storage("cluster", "reader"))
        .await
        .unwrap()
        .unwrap();
    let mut n = 0;
    for node in ["a", "b"] {
        if let Some(m) = r.latest_manifest(node).await.unwrap() {
            n += m
                .files(store::Table::Spans)
                .iter()
                .map(|f| f.rows)
                .sum::<u64>();
        }
    }
    n
}
