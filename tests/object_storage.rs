//! Parquet on object storage, against a real S3-compatible server (moto in
//! server mode, from PyPI, started by the test on a loopback port):
//!
//! - the server honours the conditional writes the manifest protocol and
//!   the node lease depend on (create-if-absent, update-if-match);
//! - `burnwatch serve --storage-url s3://...` puts Parquet files and
//!   manifest versions in the bucket before the WAL lets go of the rows;
//!   pyarrow reads the bucket and counts the same rows;
//! - a second process with a live node id is refused;
//! - a node that lost its whole data directory starts again from the
//!   bucket with every acknowledged span, exactly once;
//! - SIGKILL during ingest, repeated: nothing lost, nothing doubled;
//! - an unreachable endpoint or a missing bucket stops the start with a
//!   message naming `storage.url`.
//!
//! moto comes from the test virtualenv (`scripts/test.sh` installs
//! `moto[server]`); `BURNWATCH_PYTHON` names its interpreter.

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::s3::{BUCKET, S3, free_port, python};
use common::{ServeProcess, start_serve};
use prost::Message;

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn serve(config: &Path, data: &Path, url: &str, node: &str) -> ServeProcess {
    start_serve(
        &[
            os("--config"),
            config.as_os_str(),
            os("--data-dir"),
            data.as_os_str(),
            os("--storage-url"),
            os(url),
            os("--node-id"),
            os(node),
        ],
        Stdio::inherit(),
    )
}

/// Runs `serve` expecting it to refuse to start; returns its stderr.
fn refused(config: &Path, data: &Path, url: &str, node: &str) -> String {
    let out = Command::new(common::EXE)
        .args(["serve", "--http-addr", "127.0.0.1:0"])
        .args([
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(["--storage-url", url, "--node-id", node])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started but should not have");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn export(c: &reqwest::Client, p: &ServeProcess, first: u64, n: u64) -> u16 {
    c.post(format!("http://{}/v1/traces", p.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(common::trace_request(first, n, "web", 50).encode_to_vec())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Rows of the spans files named by node `node`'s newest manifest version in
/// the bucket, and how many files that is.
fn manifest_rows(s3: &S3, prefix: &str, node: &str) -> (u64, usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = rt.block_on(async {
        let r = store::remote::Remote::connect(&s3.storage(prefix, "reader"))
            .await
            .unwrap()
            .unwrap();
        r.latest_manifest(node).await.unwrap()
    });
    let Some(m) = m else { return (0, 0) };
    let files = m.files(store::Table::Spans);
    (files.iter().map(|f| f.rows).sum(), files.len())
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_server_honours_conditional_writes() {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = s3.storage("cond", "n1");
        let a = store::remote::Remote::connect(&cfg).await.unwrap().unwrap();
        let b = store::remote::Remote::connect(&cfg).await.unwrap().unwrap();
        // Create-if-absent: a manifest version is never overwritten.
        let version_one = || store::files::Manifest {
            version: 1,
            seq: 1,
            ..Default::default()
        };
        let mut m = version_one();
        a.put_manifest(&mut m).await.unwrap();
        assert_eq!(m.seq, 1);
        let err = b
            .put_manifest(&mut version_one())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exists already"), "{err}");
        // Its own version (an attempt whose answer was lost) moves the
        // writer to the next number; the newest version is the manifest.
        let mut again = version_one();
        again.flushed_lsn = 7;
        a.put_manifest(&mut again).await.unwrap();
        assert_eq!(again.seq, 2);
        let newest = b.latest_manifest("n1").await.unwrap().unwrap();
        assert_eq!((newest.seq, newest.flushed_lsn), (2, 7));
        // The server itself: a create over an existing object and an update
        // with an ETag that is no longer current both fail.
        {
            use object_store::{ObjectStoreExt as _, PutMode, PutOptions, UpdateVersion};
            let os = a.object_store();
            let path = object_store::path::Path::from("cond/probe");
            let create = || PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let first = os.put_opts(&path, "1".into(), create()).await.unwrap();
            assert!(matches!(
                os.put_opts(&path, "2".into(), create()).await,
                Err(object_store::Error::AlreadyExists { .. })
            ));
            let update = |e_tag: Option<String>| PutOptions {
                mode: PutMode::Update(UpdateVersion {
                    e_tag,
                    version: None,
                }),
                ..Default::default()
            };
            let second = os
                .put_opts(&path, "3".into(), update(first.e_tag.clone()))
                .await
                .unwrap();
            assert_ne!(second.e_tag, first.e_tag);
            assert!(matches!(
                os.put_opts(&path, "4".into(), update(first.e_tag)).await,
                Err(object_store::Error::Precondition { .. })
            ));
            let now = os.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(&now[..], b"3");
        }
        // The lease, taken by one process, refuses the other; its holder
        // renews it (a conditional update on its own ETag).
        a.take_lease().await.unwrap();
        let err = b.take_lease().await.unwrap_err().to_string();
        assert!(err.contains("is live"), "{err}");
        a.take_lease().await.unwrap();
        // Released, the id is free at once.
        a.release_lease().await;
        b.take_lease().await.unwrap();
    });
}

#[test]
fn a_node_on_a_bucket_keeps_everything_and_restarts_from_it() {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    let data = dir.path().join("data");
    let url = format!("s3://{BUCKET}/cluster");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = reqwest::Client::new();

    let p = serve(&config, &data, &url, "n1");
    for i in 0..3 {
        assert_eq!(rt.block_on(export(&c, &p, i * 100, 100)), 200);
    }
    // Flushed within a second or so: files and a manifest version naming
    // every acknowledged span are in the bucket.
    wait_for(
        "the manifest in the bucket",
        Duration::from_secs(20),
        || manifest_rows(&s3, "cluster", "n1").0 == 300,
    );
    let parquet: Vec<String> = s3
        .keys("cluster/spans/")
        .into_iter()
        .filter(|k| k.ends_with(".parquet"))
        .collect();
    assert!(!parquet.is_empty());
    assert!(
        parquet.iter().all(|k| k.contains("-n1-")),
        "file names carry the node id: {parquet:?}"
    );
    // `burnwatch query --storage-url` reads the bucket itself, with no
    // server, through the same read-only guard.
    let query = |sql: &str| {
        Command::new(common::EXE)
            .args(["query", "--format", "json", "--storage-url", &url, sql])
            .env("AWS_ENDPOINT_URL", &s3.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ALLOW_HTTP", "true")
            .env_remove("BURNWATCH_DATA_DIR")
            .output()
            .unwrap()
    };
    let out = query("SELECT count(*) AS n, count(DISTINCT span_id) AS d FROM spans");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["rows"][0]["n"].as_u64(), v["rows"][0]["d"].as_u64()),
        (Some(300), Some(300))
    );
    let out = query("CREATE TABLE x AS SELECT 1");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("only queries are allowed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The bucket's requests are counted in /metrics.
    let metrics = rt.block_on(async {
        c.get(p.api_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let puts: f64 = metrics
        .lines()
        .find(|l| l.starts_with("burnwatch_object_store_requests_total{op=\"put\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no PUT counter in {metrics}"));
    assert!(
        puts >= 2.0,
        "{puts} PUTs: at least one file and one manifest version"
    );
    assert!(metrics.contains("burnwatch_object_store_bytes_total{direction=\"up\"}"));
    // Another process with the same node id is refused while this one runs.
    let err = refused(&config, &dir.path().join("other"), &url, "n1");
    assert!(err.contains("node id \"n1\" is live"), "{err}");

    // pyarrow, through its own S3 client, reads the bucket's files.
    let script = format!(
        "import pyarrow.fs as fs, pyarrow.parquet as pq, json, urllib.request\n\
         s3 = fs.S3FileSystem(endpoint_override='{ep}', scheme='http', access_key='test', \
         secret_key='test', region='us-east-1')\n\
         keys = sorted(i.path for i in s3.get_file_info(fs.FileSelector('{BUCKET}/cluster/manifests/n1', recursive=True)))\n\
         m = json.loads(s3.open_input_stream(keys[-1]).read())\n\
         print(sum(pq.read_table('{BUCKET}/cluster/' + f['path'], filesystem=s3).num_rows for f in m['tables']['spans']))\n",
        ep = s3.endpoint
    );
    let out = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300");
    p.terminate();

    // The node loses its disk: WAL, files, manifest. Everything it
    // acknowledged comes back from the bucket, once.
    std::fs::remove_dir_all(&data).unwrap();
    let p = serve(&config, &data, &url, "n1");
    let counts = rt.block_on(common::span_counts(&c, &p.api_url("/api/v1/query")));
    assert_eq!(counts, (300, 300));
    assert_eq!(rt.block_on(export(&c, &p, 300, 100)), 200);
    wait_for(
        "the new rows in the bucket",
        Duration::from_secs(20),
        || manifest_rows(&s3, "cluster", "n1").0 == 400,
    );
    let counts = rt.block_on(common::span_counts(&c, &p.api_url("/api/v1/query")));
    assert_eq!(counts, (400, 400));
    p.terminate();
}

#[test]
fn sigkill_during_ingest_loses_and_doubles_nothing() {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    let data = dir.path().join("data");
    let url = format!("s3://{BUCKET}/kill");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = reqwest::Client::new();
    let mut acked = 0u64;
    let mut next = 0u64;
    for round in 0..3 {
        let p = serve(&config, &data, &url, "k1");
        let counts = rt.block_on(common::span_counts(&c, &p.api_url("/api/v1/query")));
        assert_eq!(counts, (acked, acked), "after kill {round}");
        // Exports for a while (flushes and uploads run every half second),
        // then SIGKILL at a moment that falls wherever it falls.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500 + 400 * round) {
            if rt.block_on(export(&c, &p, next, 50)) == 200 {
                acked += 50;
            }
            next += 50;
        }
        // The killed process's lease is still unexpired, but its holder
        // is a dead process on this host: the next start takes it over.
        p.kill();
    }
    let p = serve(&config, &data, &url, "k1");
    let counts = rt.block_on(common::span_counts(&c, &p.api_url("/api/v1/query")));
    assert_eq!(counts, (acked, acked));
    p.terminate();
    assert_eq!(manifest_rows(&s3, "kill", "k1").0, acked);
}

#[test]
fn a_bucket_that_does_not_answer_stops_the_start() {
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    // No such bucket.
    let err = refused(
        &config,
        &dir.path().join("a"),
        "s3://no-such-bucket/x",
        "n1",
    );
    assert!(err.contains("storage.url s3://no-such-bucket/x"), "{err}");
    // Nothing listens at the endpoint.
    let dead = dir.path().join("dead.toml");
    std::fs::write(
        &dead,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace(&s3.endpoint, &format!("http://127.0.0.1:{}", free_port())),
    )
    .unwrap();
    let t = Instant::now();
    let err = refused(
        &dead,
        &dir.path().join("b"),
        &format!("s3://{BUCKET}/x"),
        "n1",
    );
    assert!(err.contains("storage.url"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    // A scheme that is not supported.
    let err = refused(&config, &dir.path().join("c"), "ftp://x/y", "n1");
    assert!(err.contains("unsupported scheme"), "{err}");
}

/// The S3 server frozen (SIGSTOP: connections open, no answers) under
/// load, then resumed: the node keeps acknowledging into its WAL, and once
/// the server answers again every acknowledged span lands in the bucket,
/// once. 12 s here: the requests in flight just wait. With
/// `BURNWATCH_S3_PAUSE_SECS=60` (the long form) they pass the 60 s request
/// limit and fail, the lease (6 s here) goes unrenewed so writes to the
/// bucket stop, and flushes are retried with backoff until it answers.
#[test]
fn a_frozen_bucket_delays_flushes_and_loses_nothing() {
    let pause: u64 = std::env::var("BURNWATCH_S3_PAUSE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    let data = dir.path().join("data");
    let url = format!("s3://{BUCKET}/frozen");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let p = serve(&config, &data, &url, "f1");
    let mut acked = 0u64;
    let mut next = 0u64;
    let mut send = |n: u64| {
        if rt.block_on(export(&c, &p, next, n)) == 200 {
            acked += n;
        }
        next += n;
    };
    send(100);
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &s3.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let t = Instant::now();
    let mut during = 0;
    while t.elapsed() < Duration::from_secs(pause) {
        send(100);
        during += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every export while the bucket was frozen was acknowledged (the
    // buffers are far from full), and queries still answer.
    assert_eq!(
        acked,
        100 * (during + 1),
        "exports refused while the bucket was frozen"
    );
    let counts = rt.block_on(common::span_counts(&c, &p.api_url("/api/v1/query")));
    assert_eq!(counts, (acked, acked));
    signal("-CONT");
    wait_for("every span in the bucket", Duration::from_secs(120), || {
        manifest_rows(&s3, "frozen", "f1").0 == acked
    });
    let counts = rt.block_on(common::span_counts(&c, &p.api_url("/api/v1/query")));
    assert_eq!(counts, (acked, acked));
    p.terminate();
    assert_eq!(manifest_rows(&s3, "frozen", "f1").0, acked);
}

/// The bucket frozen long enough for the buffers to fill: ingest answers
/// 503 with a Retry-After that names the bucket (not 429, which would
/// blame the sender), and once the bucket answers everything acknowledged
/// lands in it.
#[test]
fn a_bucket_down_past_the_buffer_answers_503_and_loses_nothing() {
    let s3 = S3::start();
    s3.create_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let config = s3.config(dir.path());
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("max_buffer_bytes = 3000000\n");
    std::fs::write(&config, toml).unwrap();
    let data = dir.path().join("data");
    let url = format!("s3://{BUCKET}/down");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let p = serve(&config, &data, &url, "d1");
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &s3.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let mut acked = 0u64;
    let mut next = 0u64;
    let t = Instant::now();
    let refusal = loop {
        let r = rt.block_on(async {
            c.post(format!("http://{}/v1/traces", p.otlp_http))
                .header("content-type", "application/x-protobuf")
                .body(common::trace_request(next, 100, "web", 50).encode_to_vec())
                .send()
                .await
        });
        next += 100;
        let r = r.unwrap();
        match r.status().as_u16() {
            200 => acked += 100,
            429 => {}
            503 => break r,
            other => panic!("unexpected status {other}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "never answered 503 with the bucket down"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let retry: u64 = refusal
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!(retry >= 1);
    let body = rt.block_on(refusal.bytes()).unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("the bucket s3://"), "503 body: {text}");
    assert!(acked > 0);
    signal("-CONT");
    wait_for(
        "every acknowledged span in the bucket",
        Duration::from_secs(120),
        || manifest_rows(&s3, "down", "d1").0 == acked,
    );
    let counts = rt.block_on(common::span_counts(&c, &p.api_url("/api/v1/query")));
    assert_eq!(counts, (acked, acked));
    p.terminate();
}
