//! The real binary: `burnwatch serve` on ephemeral ports takes OTLP over HTTP,
//! serves /metrics, /healthz and /readyz, and on SIGTERM flushes everything
//! to Parquet so the next start replays nothing.

mod common;

use std::process::Command;
use std::time::Duration;

use prost::Message;

/// `n` spans of service `web` (the same ids on every call).
fn request(n: u64) -> Vec<u8> {
    common::trace_request(0, n, "web", 8).encode_to_vec()
}

/// Starts `burnwatch serve` on ephemeral ports with `args`.
fn serve(args: &[&std::ffi::OsStr]) -> common::ServeProcess {
    common::start_serve(args, std::process::Stdio::inherit())
}

/// SIGTERM; the exit must be clean.
async fn terminate(p: common::ServeProcess) {
    tokio::task::spawn_blocking(move || p.terminate())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ingests_reports_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let p = serve(&["--data-dir".as_ref(), dir.path().as_os_str()]);
    let (api, otlp) = (p.api.clone(), p.otlp_http.clone());

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    assert_eq!(
        http.get(format!("http://{api}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("http://{api}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for _ in 0..3 {
        let r = http
            .post(format!("http://{otlp}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(request(100))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let m = http
        .get(format!("http://{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("burnwatch_otlp_accepted_items_total{signal=\"traces\",item=\"spans\",transport=\"http\"} 300"), "{m}");
    assert!(
        m.contains("burnwatch_store_rows_written_total{table=\"spans\"} 300"),
        "{m}"
    );
    assert!(
        m.contains("# TYPE burnwatch_otlp_request_duration_seconds histogram"),
        "{m}"
    );

    // `burnwatch query`, against the running server and against its data
    // directory directly (read-only, while the server runs).
    let exe = env!("CARGO_BIN_EXE_burnwatch");
    let sql = "SELECT service_name, count(*) AS n FROM spans GROUP BY service_name";
    let api_url = format!("http://{api}");
    let data_dir = dir.path().to_str().unwrap().to_string();
    let outputs = tokio::task::spawn_blocking(move || {
        let by_url = Command::new(exe)
            .args(["query", "--url", &api_url, "--format", "csv", sql])
            .output()
            .unwrap();
        let by_dir = Command::new(exe)
            .args(["query", "--data-dir", &data_dir, sql])
            .output()
            .unwrap();
        let json = Command::new(exe)
            .args([
                "query",
                "--data-dir",
                &data_dir,
                "--format",
                "json",
                "SELECT count(*) AS n FROM logs",
            ])
            .output()
            .unwrap();
        let denied = Command::new(exe)
            .args(["query", "--url", &api_url, "DROP TABLE spans"])
            .output()
            .unwrap();
        (by_url, by_dir, json, denied)
    })
    .await
    .unwrap();
    let (by_url, by_dir, json, denied) = outputs;
    assert!(
        by_url.status.success(),
        "{}",
        String::from_utf8_lossy(&by_url.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&by_url.stdout),
        "service_name,n\nweb,300\n"
    );
    assert!(
        by_dir.status.success(),
        "{}",
        String::from_utf8_lossy(&by_dir.stderr)
    );
    let table = String::from_utf8_lossy(&by_dir.stdout);
    assert!(table.contains("| web          | 300 |"), "{table}");
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["rows"][0]["n"], 0);
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("only queries are allowed"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );

    terminate(p).await;

    // Everything is in Parquet: the next start replays nothing.
    let store = store::Store::open(testkit::store_config(dir.path()))
        .await
        .unwrap();
    let st = store.stats();
    assert_eq!(st.file_rows[0], 300);
    assert_eq!(st.buffered_rows, [0, 0, 0]);
}

/// `burnwatch token new` prints a token and its config entry; a server
/// configured with them lets the ingest token send telemetry and nothing
/// else, the viewer token read and nothing else, and nobody in without a
/// token. A configuration where no token may ingest is refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_api_tokens_checks_every_caller() {
    let exe = env!("CARGO_BIN_EXE_burnwatch");
    let dir = tempfile::tempdir().unwrap();
    let new_token = |role: &str| {
        let out = Command::new(exe)
            .args(["token", "new", "--role", role, "--name", role])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let token = text
            .lines()
            .next()
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .to_string();
        let entry = text[text.find("[[auth.tokens]]").unwrap()..].to_string();
        assert!(!entry.contains(&token), "the config holds only the digest");
        (token, entry)
    };
    let (ingest, ingest_entry) = new_token("ingest");
    let (viewer, viewer_entry) = new_token("viewer");
    let viewer_only = dir.path().join("viewer-only.toml");
    std::fs::write(&viewer_only, &viewer_entry).unwrap();
    let refused = Command::new(exe)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
        ])
        .args(["--otlp-http-addr", "127.0.0.1:0", "--config"])
        .arg(&viewer_only)
        .arg("--data-dir")
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no token has the ingest or admin role"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let config = dir.path().join("auth.toml");
    std::fs::write(&config, format!("{ingest_entry}\n{viewer_entry}")).unwrap();
    let data = dir.path().join("data");
    let p = serve(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let (api, otlp) = (p.api.clone(), p.otlp_http.clone());
    let http = reqwest::Client::new();
    let ingest_with = |token: Option<&str>| {
        let mut r = http
            .post(format!("http://{otlp}/v1/traces"))
            .header("content-type", "application/x-protobuf")
            .body(request(10));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(ingest_with(None).await, 401);
    assert_eq!(ingest_with(Some(&viewer)).await, 401);
    assert_eq!(ingest_with(Some(&ingest)).await, 200);
    let read_with = |token: Option<&str>| {
        let mut r = http.get(format!("http://{api}/api/v1/red/services"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(read_with(None).await, 401);
    assert_eq!(read_with(Some(&ingest)).await, 403);
    assert_eq!(read_with(Some(&viewer)).await, 200);
    // The CLI client passes its token.
    let api_url = format!("http://{api}");
    let cli_token = viewer.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .args(["query", "--url", &api_url, "--format", "csv"])
            .arg("SELECT count(*) AS n FROM spans")
            .env("BURNWATCH_TOKEN", &cli_token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n10\n");

    // A dashboard session outlives a restart; signing out ends it for good.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser
        .post(format!("http://{api}/login"))
        .form(&[("token", viewer.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    let with_cookie = |api: String| {
        let r = browser
            .get(format!("http://{api}/api/v1/red/services"))
            .header("cookie", &cookie);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(with_cookie(api.clone()).await, 200);
    let restart = |p: common::ServeProcess| async {
        terminate(p).await;
        serve(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ])
    };
    let p = restart(p).await;
    assert_eq!(
        with_cookie(p.api.clone()).await,
        200,
        "signed out by a restart"
    );
    let r = browser
        .post(format!("http://{}/logout", p.api))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(with_cookie(p.api.clone()).await, 401);
    let p = restart(p).await;
    assert_eq!(
        with_cookie(p.api.clone()).await,
        401,
        "a closed session came back"
    );

    terminate(p).await;
}

/// `/metrics` as a set of `sample{label keys} type` lines: what a scraper
/// stores (names, label names, types), not how the text spells families.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut types = std::collections::HashMap::new();
    let mut out = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (family, kind) = rest.split_once(' ').unwrap();
            types.insert(family.to_string(), kind.to_string());
        } else if !line.is_empty() && !line.starts_with('#') {
            samples.push(line);
        }
    }
    for line in samples {
        let end = line.find(['{', ' ']).unwrap();
        let name = &line[..end];
        let mut keys: Vec<&str> = Vec::new();
        if line[end..].starts_with('{') {
            let labels = &line[end + 1..line.rfind('}').unwrap()];
            // Keys are what precedes `="`; values may hold anything escaped.
            for part in labels.split("\",") {
                keys.push(part.split("=\"").next().unwrap());
            }
        }
        keys.sort();
        let kind = std::iter::once(name)
            .chain(
                ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .filter_map(|s| name.strip_suffix(s)),
            )
            .find_map(|f| types.get(f))
            .unwrap_or_else(|| panic!("{name} has no TYPE"));
        out.insert(format!("{name}{{{}}} {kind}", keys.join(",")));
    }
    out
}

/// Every metric keeps its name, label names and type across changes to
/// how the exposition is written (`tests/golden/metric-names.txt` was taken
/// from the hand-written text format); the answer is OpenMetrics text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_keep_their_names_labels_and_types() {
    let dir = tempfile::tempdir().unwrap();
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/alert-rules");
    let p = serve(&[
        "--data-dir".as_ref(),
        dir.path().as_os_str(),
        "--rules-dir".as_ref(),
        rules.as_ref(),
        "--slo-interval".as_ref(),
        "1".as_ref(),
    ]);
    let http = reqwest::Client::new();
    let mut text = String::new();
    for _ in 0..100 {
        let r = http
            .get(format!("http://{}/metrics", p.api))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["content-type"],
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        text = r.text().await.unwrap();
        if text.contains("burnwatch_slo_alert_state{") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
    let got = metric_names(&text);
    let golden = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/metric-names.txt"
    ))
    .unwrap();
    let want: std::collections::BTreeSet<String> = golden.lines().map(str::to_string).collect();
    let new: Vec<&String> = got.difference(&want).collect();
    assert!(new.is_empty(), "not in the golden list: {new:?}\n{text}");
    let missing: Vec<&String> = want.difference(&got).collect();
    assert!(missing.is_empty(), "missing: {missing:?}\n{text}");
    terminate(p).await;
}
