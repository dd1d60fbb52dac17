//! The real binary under hostile conditions: a full filesystem, damaged
//! files at start-up, TLS on every listener.

mod common;

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServeProcess, start_serve};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic_types::StatusExt;

fn request(first: u64, n: u64) -> ExportTraceServiceRequest {
    common::trace_request(first, n, "web", 200)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn export(
    c: &reqwest::Client,
    p: &ServeProcess,
    req: &ExportTraceServiceRequest,
) -> reqwest::Response {
    c.post(format!("http://{}/v1/traces", p.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap()
}

async fn counts(c: &reqwest::Client, p: &ServeProcess) -> (u64, u64) {
    common::span_counts(c, &p.api_url("/api/v1/query")).await
}

async fn metric(c: &reqwest::Client, p: &ServeProcess, name: &str) -> f64 {
    let text = c
        .get(p.api_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Unmounts when dropped, so a failed assertion leaves no mount behind.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A real full filesystem under the running server: a 24 MiB tmpfs mounted
/// by the test, mostly taken by a ballast file. Ingest gets 503 with
/// Retry-After (HTTP) and UNAVAILABLE with RetryInfo (gRPC) once space runs
/// out; queries keep answering with every acknowledged span; freeing space
/// lets ingest resume by itself; a restart finds every acknowledged span
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_ingest_keeps_serving_and_resumes() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(
        ok.success(),
        "mount -t tmpfs failed although running as root"
    );
    let _mount = Mount(mnt.path().to_path_buf());
    let ballast = mnt.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 18 << 20]).unwrap();
    let data = mnt.path().join("data");
    let p = start_serve(
        &[
            OsStr::new("--data-dir"),
            data.as_os_str(),
            OsStr::new("--rules-dir"),
            OsStr::new("alert-rules"),
        ],
        Stdio::inherit(),
    );
    let c = http();

    let mut acked = 0u64;
    let mut next = 0u64;
    let mut refused = None;
    for _ in 0..2000 {
        let req = request(next, 500);
        let r = export(&c, &p, &req).await;
        match r.status().as_u16() {
            200 => {
                acked += 500;
                next += 500;
            }
            503 => {
                refused = Some(r);
                break;
            }
            s => panic!("unexpected status {s}: {}", r.text().await.unwrap()),
        }
    }
    let r = refused.expect("the filesystem never filled up");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    let status = tonic_types::Status::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, tonic::Code::Unavailable as i32);
    assert!(
        status.message.contains("storage is full"),
        "{}",
        status.message
    );
    assert!(acked > 0, "nothing was accepted before the disk filled");

    // gRPC says UNAVAILABLE with a RetryInfo detail.
    let mut grpc = TraceServiceClient::connect(format!("http://{}", p.grpc))
        .await
        .unwrap();
    let err = grpc.export(request(next, 500)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.get_details_retry_info().is_some(), "{err:?}");

    // Reads still work and show exactly what was acknowledged.
    assert_eq!(counts(&c, &p).await, (acked, acked));
    assert!(metric(&c, &p, "burnwatch_store_writes_disk_full_total").await >= 2.0);
    let page = c.get(p.api_url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the dashboard must keep answering");

    // Space comes back: the same request goes through without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = export(&c, &p, &request(next, 500)).await;
        if r.status() == 200 {
            acked += 500;
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "ingest did not resume");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(counts(&c, &p).await, (acked, acked));
    p.terminate();

    let p = start_serve(
        &[
            OsStr::new("--data-dir"),
            data.as_os_str(),
            OsStr::new("--rules-dir"),
            OsStr::new("alert-rules"),
        ],
        Stdio::inherit(),
    );
    assert_eq!(counts(&c, &p).await, (acked, acked));
    p.terminate();
}

/// Damaged files at start-up: a truncated Parquet file and a WAL segment
/// with flipped bytes are moved to quarantine with a log line and
/// `/metrics` counters; the server starts and serves the rest, and the
/// next start is clean (no crash loop).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_quarantined_and_the_server_keeps_starting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let args = |cfg: &std::path::Path| {
        vec![
            OsStr::new("--data-dir").to_os_string(),
            data.as_os_str().to_os_string(),
            OsStr::new("--config").to_os_string(),
            cfg.as_os_str().to_os_string(),
        ]
    };
    let start = |cfg: &std::path::Path, stderr: Stdio| {
        let a = args(cfg);
        let a: Vec<&OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        start_serve(&a, stderr)
    };
    // No flush but the final one: the last writes stay in the WAL.
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        "log = \"warn\"\n[slo]\nrules_dir = \"/nonexistent\"\n[store]\nflush_interval_secs = 3600\n",
    )
    .unwrap();
    let c = http();

    // Two hours of spans flushed to Parquet (two files) by a clean stop.
    let p = start(&cfg, Stdio::inherit());
    let mut early = request(0, 300);
    let late = three_hours_later(request(300, 300));
    for s in &mut early.resource_spans[0].scope_spans[0].spans {
        s.name = "early".into();
    }
    assert_eq!(export(&c, &p, &early).await.status(), 200);
    assert_eq!(export(&c, &p, &late).await.status(), 200);
    p.terminate();
    // Then three requests only in the WAL: killed before any flush.
    let p = start(&cfg, Stdio::inherit());
    for i in 0..3 {
        assert_eq!(
            export(&c, &p, &request(1000 + i * 100, 100)).await.status(),
            200
        );
    }
    p.kill();

    let parquet = parquet_files(&data);
    assert_eq!(parquet.len(), 2, "{parquet:?}");
    // Damage the file of the early hour (partitions sort by date and hour):
    // cut it in half.
    let mut parquet = parquet;
    parquet.sort();
    let victim = parquet[0].clone();
    let len = std::fs::metadata(&victim).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // Flip bytes in the middle of the newest WAL segment.
    let mut wal: Vec<_> = walk(&data.join("wal"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "wal"))
        .collect();
    wal.sort();
    let seg = wal.last().expect("no WAL segment").clone();
    let mut bytes = std::fs::read(&seg).unwrap();
    assert!(bytes.len() > 1000, "WAL segment of {} bytes", bytes.len());
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xA5;
    }
    std::fs::write(&seg, &bytes).unwrap();

    let log_file = std::fs::File::create(&log).unwrap();
    let p = start(&cfg, Stdio::from(log_file));
    let ready = c.get(p.api_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        metric(&c, &p, "burnwatch_store_wal_corrupt_segments_total").await,
        1.0
    );
    assert!(metric(&c, &p, "burnwatch_store_files_quarantined_total").await >= 1.0);
    let (n, d) = counts(&c, &p).await;
    assert_eq!(n, d, "a row is visible twice");
    // The late hour survives; the damaged early file is gone; the WAL kept
    // what precedes the damage (at least the first request).
    assert!((400..600).contains(&n), "{n} spans after the damage");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("quarantine"), "no log line: {logged}");
    assert!(!victim.exists());
    let quarantined = std::fs::read_dir(data.join("quarantine")).unwrap().count();
    assert!(quarantined >= 2, "{quarantined} files in quarantine");
    // Still ingesting.
    assert_eq!(export(&c, &p, &request(5000, 10)).await.status(), 200);
    p.terminate();

    // The next start is clean: nothing new is damaged.
    let p = start(&cfg, Stdio::inherit());
    assert_eq!(
        metric(&c, &p, "burnwatch_store_files_quarantined_total").await,
        0.0
    );
    assert_eq!(counts(&c, &p).await, (n + 10, n + 10));
    p.terminate();
}

/// A bit flipped at rest while the server runs: the scrub finds it by
/// checksum, quarantines the file with a log line and a counter, and the
/// server keeps serving and ingesting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bit_flip_at_rest_is_found_by_the_scrub_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("b.toml");
    // Flush at once; scrub every 2 seconds.
    std::fs::write(
        &cfg,
        "[slo]\nrules_dir = \"/nonexistent\"\n[store]\nflush_interval_secs = 0.1\nscrub_schedule = \"*/2 * * * * *\"\n",
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let p = start_serve(
        &[
            OsStr::new("--data-dir"),
            data.as_os_str(),
            OsStr::new("--config"),
            cfg.as_os_str(),
        ],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let c = http();
    let late = three_hours_later(request(1000, 100));
    assert_eq!(export(&c, &p, &request(0, 100)).await.status(), 200);
    assert_eq!(export(&c, &p, &late).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let files = loop {
        let mut f = parquet_files(&data.join("spans"));
        if f.len() == 2 {
            f.sort();
            break f;
        }
        assert!(Instant::now() < deadline, "no Parquet files: {f:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x04;
    std::fs::write(&files[0], bytes).unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&c, &p, "burnwatch_store_files_quarantined_total").await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the scrub did not find the flipped bit"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!files[0].exists());
    assert_eq!(counts(&c, &p).await, (100, 100));
    assert_eq!(export(&c, &p, &request(2000, 10)).await.status(), 200);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("live Parquet file is damaged") && logged.contains("does not match"),
        "{logged}"
    );
    p.terminate();
}

/// The request with every span moved three hours later (another partition).
fn three_hours_later(mut req: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    for s in &mut req.resource_spans[0].scope_spans[0].spans {
        s.start_time_unix_nano += 3 * 3600 * 1_000_000_000;
        s.end_time_unix_nano += 3 * 3600 * 1_000_000_000;
    }
    req
}

/// The Parquet files under `dir`, outside quarantine.
fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "quarantine") {
                continue;
            }
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// TLS on all three listeners from one certificate: the API and dashboard
/// answer over HTTPS only, OTLP works over HTTPS and gRPC with TLS, and a
/// dashboard session cookie is `Secure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_every_listener() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();
    let viewer = "viewer-token-0123456789";
    let ingest = "ingest-token-0123456789";
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        format!(
            "[slo]\nrules_dir = \"/nonexistent\"\n\
             [[auth.tokens]]\nname = \"v\"\nrole = \"viewer\"\nsha256 = \"{}\"\n\
             [[auth.tokens]]\nname = \"i\"\nrole = \"ingest\"\nsha256 = \"{}\"\n",
            web::auth::sha256_hex(viewer),
            web::auth::sha256_hex(ingest)
        ),
    )
    .unwrap();
    let p = start_serve(
        &[
            OsStr::new("--data-dir"),
            dir.path().join("data").as_os_str(),
            OsStr::new("--config"),
            cfg.as_os_str(),
            OsStr::new("--tls-cert"),
            cert_file.as_os_str(),
            OsStr::new("--tls-key"),
            key_file.as_os_str(),
        ],
        Stdio::inherit(),
    );
    assert_eq!(p.api_scheme, "https");
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap();
    let tls = reqwest::Client::builder()
        .add_root_certificate(root)
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let port = |a: &str| a.rsplit(':').next().unwrap().to_string();
    let api = format!("https://localhost:{}", port(&p.api));

    assert_eq!(
        tls.get(format!("{api}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Plain HTTP to the TLS port gets no answer.
    assert!(
        http()
            .get(format!("http://{}/healthz", p.api))
            .send()
            .await
            .is_err()
    );

    // OTLP/HTTP over TLS with the ingest token.
    let r = tls
        .post(format!(
            "https://localhost:{}/v1/traces",
            port(&p.otlp_http)
        ))
        .bearer_auth(ingest)
        .header("content-type", "application/x-protobuf")
        .body(request(0, 10).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // OTLP/gRPC over TLS.
    let channel =
        tonic::transport::Channel::from_shared(format!("https://localhost:{}", port(&p.grpc)))
            .unwrap()
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(cert.cert.pem()))
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut req = tonic::Request::new(request(10, 10));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {ingest}").parse().unwrap());
    TraceServiceClient::new(channel).export(req).await.unwrap();

    // The API over TLS with the viewer token.
    let r = tls
        .post(format!("{api}/api/v1/query"))
        .bearer_auth(viewer)
        .json(&serde_json::json!({"sql": "SELECT count(*) AS n FROM spans"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["rows"][0]["n"], 20);
    // Sign in: the session cookie is Secure, HttpOnly, SameSite=Strict.
    let r = tls
        .post(format!("{api}/login"))
        .form(&[("token", viewer), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    for part in ["; Secure", "; HttpOnly", "; SameSite=Strict"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    p.terminate();
}

/// The HTTP API port closes connections that send no request head in time
/// and counts them; SIGTERM does not wait for such a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_to_the_api_are_closed_and_do_not_hold_shutdown() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        "[slo]\nrules_dir = \"/nonexistent\"\n[connections]\nheader_timeout_ms = 4000\nmax_connections = 64\n",
    )
    .unwrap();
    let p = start_serve(
        &[
            OsStr::new("--data-dir"),
            dir.path().join("data").as_os_str(),
            OsStr::new("--config"),
            cfg.as_os_str(),
        ],
        Stdio::inherit(),
    );
    let mut silent = tokio::net::TcpStream::connect(&p.api).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the silent connection is still open after 10 s")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() >= Duration::from_millis(3900));
    let c = http();
    let timeouts = metric(
        &c,
        &p,
        "burnwatch_connections_header_timeouts_total{listener=\"http\"}",
    )
    .await;
    assert_eq!(timeouts, 1.0);

    // Open, silent connections on all three ports: shutdown closes them
    // instead of waiting out their 4 s header timeout.
    let _held = [
        tokio::net::TcpStream::connect(&p.api).await.unwrap(),
        tokio::net::TcpStream::connect(&p.otlp_http).await.unwrap(),
        tokio::net::TcpStream::connect(&p.grpc).await.unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    p.terminate();
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// One client address cannot take a listener's whole cap: past
/// `max_per_client` its new connections are closed at once and counted.
/// Connections without requests for `idle_timeout_ms` are closed: an
/// HTTP keep-alive connection after its last answer, a gRPC connection
/// that sent its preface and then only silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_client_caps_and_idle_connections_are_enforced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        "[slo]\nrules_dir = \"/nonexistent\"\n[connections]\nheader_timeout_ms = 20000\nmax_per_client = 3\nidle_timeout_ms = 3000\n",
    )
    .unwrap();
    let p = start_serve(
        &[
            OsStr::new("--data-dir"),
            dir.path().join("data").as_os_str(),
            OsStr::new("--config"),
            cfg.as_os_str(),
        ],
        Stdio::inherit(),
    );
    // Reads until the server closes the connection (or 10 s pass).
    async fn until_closed(s: &mut tokio::net::TcpStream) -> Duration {
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => panic!("the connection is still open after 10 s"),
            }
        }
    }

    // Three connections from 127.0.0.1 are held; the fourth is closed at once.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(&p.api).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = tokio::net::TcpStream::connect(&p.api).await.unwrap();
    let closed = until_closed(&mut fourth).await;
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = http();
    let refused = metric(
        &c,
        &p,
        "burnwatch_connections_per_client_refused_total{listener=\"http\"}",
    )
    .await;
    assert_eq!(refused, 1.0);

    // An HTTP/1 keep-alive connection: one request, then idle until the
    // idle timeout (3 s) closes it, well before the 20 s header timeout.
    let mut keep = tokio::net::TcpStream::connect(&p.api).await.unwrap();
    keep.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let closed = until_closed(&mut keep).await;
    assert!(
        closed >= Duration::from_millis(2900) && closed < Duration::from_secs(8),
        "closed after {closed:?}"
    );

    // A gRPC connection: the HTTP/2 preface and SETTINGS, then silence.
    let mut grpc = tokio::net::TcpStream::connect(&p.grpc).await.unwrap();
    grpc.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let closed = until_closed(&mut grpc).await;
    assert!(
        closed >= Duration::from_millis(2500) && closed < Duration::from_secs(8),
        "closed after {closed:?}"
    );
    let c = http();
    for listener in ["http", "otlp_grpc"] {
        let idle = metric(
            &c,
            &p,
            &format!("burnwatch_connections_idle_closed_total{{listener=\"{listener}\"}}"),
        )
        .await;
        assert!(idle >= 1.0, "{listener}: {idle}");
    }
    p.terminate();
}
