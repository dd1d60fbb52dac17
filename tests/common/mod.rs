//! Shared by the demo tests: start `burnwatch demo` on free ports and drive
//! its chaos command; start `burnwatch serve` the same way.

#![allow(dead_code)]

pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_burnwatch");

/// A running `burnwatch demo`; killed when dropped, so a failed assertion
/// never leaves it (or, through it, its services) running.
pub struct DemoProcess {
    /// The demo process.
    pub child: Child,
    /// Base URL of its HTTP API (`http://127.0.0.1:port`).
    pub api: String,
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `burnwatch demo` on ephemeral ports with its data in `data_dir`,
/// plus `args` and `envs`; returns once it prints the dashboard URL, then
/// keeps echoing its output.
pub fn start_demo(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> DemoProcess {
    let mut child = Command::new(EXE)
        .args([
            "demo",
            "--http-addr",
            "127.0.0.1:0",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--shop-port-base",
            "0",
        ])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("BURNWATCH_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let api = loop {
        let line = lines
            .next()
            .expect("demo exited before it was ready")
            .unwrap();
        println!("{line}");
        if let Some(rest) = line.strip_prefix("burnwatch demo: dashboard ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });
    DemoProcess { child, api }
}

/// `burnwatch demo chaos payments <args> --data-dir <data_dir>`; must succeed.
pub fn chaos_payments(data_dir: &Path, args: &[&str]) {
    let out = Command::new(EXE)
        .args(["demo", "chaos", "payments"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chaos {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `burnwatch serve`; killed when dropped.
pub struct ServeProcess {
    /// The serve process.
    pub child: Child,
    /// HTTP API address (`host:port`) and its scheme (`http` or `https`).
    pub api: String,
    /// `http` or `https`.
    pub api_scheme: String,
    /// OTLP/gRPC address.
    pub grpc: String,
    /// OTLP/HTTP address.
    pub otlp_http: String,
    /// Arrow Flight address of an ingest node.
    pub flight: Option<String>,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl ServeProcess {
    /// `scheme://api` + `path`.
    pub fn api_url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.api_scheme, self.api)
    }

    /// Sends SIGTERM and waits for the exit; panics unless it is clean.
    pub fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "burnwatch exited with {exit}");
    }

    /// Sends SIGKILL and waits.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `burnwatch serve` on ephemeral loopback ports with `args`,
/// returning once it prints its addresses. Its log goes to `stderr`.
pub fn start_serve(args: &[&std::ffi::OsStr], stderr: Stdio) -> ServeProcess {
    let mut child = Command::new(EXE)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        .env_remove("BURNWATCH_LOG")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "burnwatch: HTTP API on S://A, OTLP gRPC on B, OTLP HTTP on S://C[, Arrow Flight (live rows) on D]"
    // or, for query and compact nodes, "burnwatch: R node, HTTP API on S://A, reading U"
    let parts: Vec<&str> = line
        .trim()
        .split(", ")
        .map(|p| p.rsplit(" on ").next().unwrap())
        .collect();
    if line.contains(" node, HTTP API on ") {
        let (api_scheme, api) = parts[1].split_once("://").expect("API URL");
        return ServeProcess {
            child,
            api: api.to_string(),
            api_scheme: api_scheme.to_string(),
            grpc: String::new(),
            otlp_http: String::new(),
            flight: None,
        };
    }
    assert!(parts.len() >= 3, "unexpected first line: {line:?}");
    let (api_scheme, api) = parts[0].split_once("://").expect("API URL");
    let otlp_http = parts[2].rsplit("://").next().unwrap();
    ServeProcess {
        child,
        api: api.to_string(),
        api_scheme: api_scheme.to_string(),
        grpc: parts[1].to_string(),
        otlp_http: otlp_http.to_string(),
        flight: parts.get(3).map(|s| s.to_string()),
    }
}

pub use testkit::otlp::kv;

/// The start of the hour six hours before this test process first asked:
/// recent enough that the hourly retention job never removes test spans
/// while a test runs, and the same for every request of the process.
fn base_ns() -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (now / 3600 - 6) * 3600 * 1_000_000_000
    })
}

/// `n` SERVER spans of `service` with ids `first..first + n` (unique
/// across requests), 1 µs apart from [`base_ns`], each with an attribute
/// `payload` of `payload_bytes` bytes.
pub fn trace_request(
    first: u64,
    n: u64,
    service: &str,
    payload_bytes: usize,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::trace::v1::Span;
    let spans = (first..first + n)
        .map(|i| Span {
            trace_id: (u128::from(i) << 8 | 1).to_be_bytes().to_vec(),
            span_id: (i + 1).to_be_bytes().to_vec(),
            name: "GET /".into(),
            kind: 2,
            start_time_unix_nano: base_ns() + i * 1000,
            end_time_unix_nano: base_ns() + 2_000_000 + i * 1000,
            attributes: vec![kv("payload", &format!("{i:0>payload_bytes$}"))],
            ..Default::default()
        })
        .collect();
    testkit::otlp::spans_request(vec![kv("service.name", service)], spans)
}

/// The value of the unlabelled sample `name` in the `/metrics` answer at
/// `metrics_url`.
pub async fn metric_value(c: &reqwest::Client, metrics_url: &str, name: &str) -> Option<f64> {
    let text = c.get(metrics_url).send().await.ok()?.text().await.ok()?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// `(count(*), count(DISTINCT span_id))` of spans through `POST /api/v1/query`.
pub async fn span_counts(c: &reqwest::Client, query_url: &str) -> (u64, u64) {
    let r = c
        .post(query_url)
        .json(&serde_json::json!({
            "sql": "SELECT count(*) AS n, count(DISTINCT span_id) AS d FROM spans"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the query API must keep answering");
    let v: serde_json::Value = r.json().await.unwrap();
    (
        v["rows"][0]["n"].as_u64().unwrap(),
        v["rows"][0]["d"].as_u64().unwrap(),
    )
}

/// Polls `f` every 100 ms until it returns a value (and how long that
/// took); panics naming `what` past `limit`.
pub fn wait<T>(
    what: &str,
    limit: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> (T, std::time::Duration) {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
