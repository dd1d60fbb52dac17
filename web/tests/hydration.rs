//! The dashboard's islands in a real headless Chromium driven over
//! WebDriver (Debian's `chromedriver`): pages hydrate without console
//! errors, a table sorts when its header is clicked, the auto-refresh
//! countdown pauses, and the on-call path works by clicking: overview ->
//! the open page incident -> acknowledge it -> its example failing trace
//! -> the trace's logs; and a log search leads back to the trace; from the
//! incident, a silence is created and expired, and the incident resolved,
//! all by clicking; the overview leads to a service page, the service map
//! to another service.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use store::{Store, Table};
use web::{WebState, app};

const SEC: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn find(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| {
        Command::new(n)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| n.to_string())
    })
}

struct Driver {
    child: Child,
    http: reqwest::Client,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session in headless Chromium.
struct Session {
    driver: Driver,
    id: String,
}

impl Session {
    async fn start() -> Session {
        let chromium = find(&["chromium", "chromium-browser", "google-chrome"])
            .expect("no Chromium: install Debian's chromium (./scripts/test.sh does)");
        let chromium = String::from_utf8(
            Command::new("sh")
                .args(["-c", &format!("command -v {chromium}")])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        let chromedriver = find(&["chromedriver"])
            .expect("no chromedriver: install Debian's chromium-driver (./scripts/test.sh does)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver {
            child,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("bw-chromium-{port}"));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1300,1100",
                         format!("--user-data-dir={}", profile.display())]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let r: Value = driver
            .http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Session { driver, id }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.driver.url, self.id);
        let mut req = self.driver.http.request(method.clone(), url);
        if method != reqwest::Method::GET {
            req = req.json(&body);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        assert!(
            r["value"].get("error").is_none(),
            "WebDriver {path}: {}",
            r["value"]
        );
        r["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            json!({}),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Waits until `script` returns something truthy.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.js(script).await;
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "{what}: not within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn hydrated(&self) {
        self.wait_for(
            "hydration",
            "return document.documentElement.dataset.hydrated === 'true'",
        )
        .await;
    }

    /// Console messages at level SEVERE since the last call.
    async fn console_errors(&self) -> Vec<String> {
        let logs = self
            .call(reqwest::Method::POST, "/se/log", json!({"type": "browser"}))
            .await;
        logs.as_array()
            .into_iter()
            .flatten()
            .filter(|l| l["level"] == "SEVERE")
            .map(|l| l["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn screenshot(&self, name: &str) {
        let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let png = self
            .call(reqwest::Method::GET, "/screenshot", json!(null))
            .await;
        let bytes = base64_decode(png.as_str().unwrap());
        assert!(bytes.len() > 10_000, "empty screenshot");
        std::fs::write(shots.join(format!("{name}.png")), bytes).unwrap();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            _ => 63,
        }
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// Requests for three services over the last hour; gateway checkouts fail
/// for the last ten minutes.
async fn traffic(store: &Store, now: i64) {
    let checkouts: Vec<(i64, bool)> = (0..3600i64)
        .map(|i| (now - 3600 * SEC + i * SEC, i >= 3000))
        .collect();
    store
        .write(
            Table::Spans,
            store::synth::http_requests("gateway", "POST", "/api/checkout", &checkouts),
        )
        .await
        .unwrap();
    // Every tenth checkout charges a card with payments (and fails with it).
    let charges: Vec<(i64, bool)> = checkouts.iter().copied().step_by(10).collect();
    store
        .write(
            Table::Spans,
            store::synth::calls("gateway", "payments", "/charge", &charges),
        )
        .await
        .unwrap();
    for (svc, every) in [("catalog", 2), ("payments", 5)] {
        let t: Vec<(i64, bool)> = (0..3600 / every)
            .map(|i| (now - 3600 * SEC + i * every * SEC, false))
            .collect();
        store
            .write(
                Table::Spans,
                store::synth::http_requests(svc, "GET", "/x", &t),
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn islands_hydrate_and_the_on_call_path_works_by_clicking() {
    assert!(
        web::ui::assets::enabled(),
        "this build has no browser bundle (BURNWATCH_SKIP_WASM was set)"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    let now = now_ns();
    traffic(&store, now).await;
    let rules = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../alert-rules");
    let engine = slo_engine::engine::SloEngine::open(
        store.clone(),
        slo_engine::openslo::load_dir(&rules).unwrap(),
        Default::default(),
        &dir.path().join("state"),
    )
    .unwrap();
    engine.evaluate_at(now).await;
    // The newest example failing trace of the incident logged an error.
    let incident = engine.incidents(1).unwrap().remove(0);
    let trace_id = incident
        .timeline
        .iter()
        .find(|t| t.event == "evidence")
        .and_then(|t| {
            t.detail["traces"][0]["trace_id"]
                .as_str()
                .map(str::to_string)
        })
        .expect("the incident's evidence names a failing trace");
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap();
    }
    let mut logs = store::rows::LogsBuilder::new();
    let res = vec![store::rows::Attr::new("service.name", "gateway")];
    logs.append(
        &store::rows::Origin {
            service_name: "gateway",
            resource_attributes: &res,
            scope_name: "gateway",
            scope_version: "",
        },
        &store::rows::LogRecord {
            time_ns: now - 5 * SEC,
            observed_time_ns: now - 5 * SEC,
            severity_number: 17,
            severity_text: "ERROR",
            body: Some(std::borrow::Cow::Borrowed(
                "charge failed: payments unavailable",
            )),
            trace_id: Some(id),
            span_id: None,
            flags: 0,
            event_name: "",
            attributes: vec![],
            dropped_attributes_count: 0,
        },
    );
    store.write(Table::Logs, logs.finish()).await.unwrap();
    let state = WebState {
        slo: Some(engine),
        ..WebState::new(store)
    };
    let base = testkit::serve(app(state)).await;

    let s = Session::start().await;
    s.go(&format!("{base}/?range=1h&refresh=30")).await;
    s.hydrated().await;
    assert_eq!(s.console_errors().await, Vec::<String>::new());
    s.screenshot("hydrated-overview").await;

    // Sorting: by request rate, ascending, then descending.
    let order = "return [...document.querySelectorAll('#services-table tbody tr td:first-child')].map(td => td.textContent)";
    assert_eq!(s.js(order).await, json!(["catalog", "gateway", "payments"]));
    s.click("#services-table th:nth-child(2)").await;
    assert_eq!(s.js(order).await, json!(["payments", "catalog", "gateway"]));
    s.click("#services-table th:nth-child(2)").await;
    assert_eq!(s.js(order).await, json!(["gateway", "catalog", "payments"]));
    let mark = s
        .js("return document.querySelector('#services-table th:nth-child(2)').textContent")
        .await;
    assert_eq!(mark, json!("req/s (5m) ▼"));

    // The countdown runs, and pauses on click.
    s.wait_for(
        "countdown",
        "return !document.querySelector('.auto-refresh .countdown').textContent.includes('30 s')",
    )
    .await;
    s.click(".auto-refresh .pause").await;
    assert_eq!(
        s.js("return document.querySelector('.auto-refresh').textContent")
            .await,
        json!("auto-refresh paused resume")
    );

    // On call: the open page incident, from the overview, by clicking.
    s.click("#open-incidents td a").await;
    s.wait_for(
        "the incident's page",
        "return location.pathname === '/incidents/1' && document.documentElement.dataset.hydrated === 'true'",
    )
    .await;
    assert_eq!(s.console_errors().await, Vec::<String>::new());
    s.type_into("input.ack-name", "alice").await;
    s.click("button.ack-button").await;
    s.wait_for(
        "acknowledged after reload",
        "return document.body.textContent.includes('acknowledged by alice')",
    )
    .await;
    s.hydrated().await;
    s.screenshot("acknowledged-incident").await;
    // The example failing trace the incident links to.
    let trace = s
        .js("return document.querySelector('a.trace-link').getAttribute('href')")
        .await;
    assert!(trace.as_str().unwrap().starts_with("/traces/"), "{trace}");
    s.click("a.trace-link").await;
    s.wait_for(
        "the trace page",
        "return location.pathname.startsWith('/traces/') && document.querySelector('.waterfall')",
    )
    .await;
    // Its waterfall holds the failing span; a click opens the span's details.
    assert_eq!(
        s.js("return document.querySelectorAll('.waterfall details.span.failed').length > 0")
            .await,
        json!(true)
    );
    s.click(".waterfall details.span summary").await;
    assert_eq!(
        s.js("return document.querySelector('.waterfall details.span').open")
            .await,
        json!(true)
    );
    let detail = s
        .js("return document.querySelector('.waterfall details.span .span-detail').textContent")
        .await;
    assert!(detail.as_str().unwrap().contains("http.route"), "{detail}");
    // And the trace's logs, which the newest failing trace has.
    assert!(trace.as_str().unwrap().contains(&trace_id), "{trace}");
    let logs = s
        .js("return document.querySelector('#trace-logs').textContent")
        .await;
    assert!(
        logs.as_str()
            .unwrap()
            .contains("charge failed: payments unavailable"),
        "{logs}"
    );
    assert_eq!(s.console_errors().await, Vec::<String>::new());
    s.screenshot("trace").await;

    // Logs: the error record, found by severity and text, links to its trace.
    s.go(&format!("{base}/logs?range=1h&severity=ERROR&q=payments"))
        .await;
    s.hydrated().await;
    let rows = s
        .js("return document.querySelectorAll('#log-results tr').length")
        .await;
    assert_eq!(rows, json!(2), "a header and one record");
    s.click("#log-results a.trace-link").await;
    s.wait_for(
        "the trace from its log",
        &format!("return location.pathname === '/traces/{trace_id}'"),
    )
    .await;
    // From the incident: silence its notifications, by clicking.
    s.go(&format!("{base}/incidents?range=1h&refresh=0")).await;
    s.hydrated().await;
    s.click("a.silence-link").await;
    s.wait_for(
        "the silence form",
        "return location.pathname === '/silences' && document.querySelector('input[name=matchers]')",
    )
    .await;
    assert_eq!(
        s.js("return document.querySelector('input[name=matchers]').value")
            .await,
        json!("slo=\"checkout-availability\"")
    );
    s.type_into("input[name=created_by]", "alice").await;
    s.type_into("input[name=comment]", "fix is deploying").await;
    s.click("button.create-silence").await;
    s.wait_for(
        "the new silence, active",
        "return document.querySelector('#silence-list tr.created .badge.active')",
    )
    .await;
    s.screenshot("silences").await;
    s.click("#silence-list tr.created button.expire-button")
        .await;
    s.wait_for(
        "the silence, expired",
        "return document.querySelector('#silence-list .badge.expired') && !document.querySelector('#silence-list button.expire-button')",
    )
    .await;
    // A form without a reason is refused in place.
    s.type_into("input[name=matchers]", "service=\"payments\"")
        .await;
    s.type_into("input[name=created_by]", "bob").await;
    s.click("button.create-silence").await;
    let error = s
        .wait_for(
            "the form's error",
            "return document.querySelector('#silence-error') && document.querySelector('#silence-error').textContent",
        )
        .await;
    assert!(error.as_str().unwrap().contains("say why"), "{error}");
    // The browser logs the 400 answer, and nothing else.
    let logged = s.console_errors().await;
    assert!(
        logged.len() == 1 && logged[0].contains("status of 400"),
        "{logged:?}"
    );

    // Resolve the incident by hand, with a note.
    s.go(&format!("{base}/incidents?range=1h&refresh=0")).await;
    s.hydrated().await;
    s.type_into("input.resolve-note", "rolled back").await;
    s.click("button.resolve-button").await;
    s.wait_for(
        "resolved after reload",
        "return document.querySelector('#incident-1 .badge.resolved') && document.body.textContent.includes('note: rolled back')",
    )
    .await;
    assert_eq!(
        s.js("return document.querySelectorAll('#incident-1 button.resolve-button').length")
            .await,
        json!(0)
    );
    assert_eq!(s.console_errors().await, Vec::<String>::new());

    // Overview -> a service page by clicking; its operations table sorts.
    s.go(&format!("{base}/?range=1h&refresh=0")).await;
    s.hydrated().await;
    s.click("#services-table a[href^='/services/gateway']")
        .await;
    s.wait_for(
        "the gateway page",
        "return location.pathname === '/services/gateway' && document.documentElement.dataset.hydrated === 'true'",
    )
    .await;
    assert_eq!(s.console_errors().await, Vec::<String>::new());
    let callees = s
        .js("return [...document.querySelectorAll('#callees-table tbody tr td:nth-child(2)')].map(td => td.textContent)")
        .await;
    assert_eq!(callees, json!(["payments"]));
    s.click("#operations-table th:nth-child(2)").await;
    let mark = s
        .js("return document.querySelector('#operations-table th:nth-child(2)').textContent")
        .await;
    assert_eq!(mark, json!("requests ▲"));
    s.screenshot("service").await;
    // The service map; a click on a service opens its page.
    s.click("header a[href^='/service-map']").await;
    s.wait_for(
        "the service map",
        "return location.pathname === '/service-map' && document.querySelector('svg.graph')",
    )
    .await;
    assert_eq!(
        s.js("return document.querySelector('g.call[data-to=payments] path').classList.contains('error')")
            .await,
        json!(true)
    );
    s.screenshot("service-map").await;
    s.click("svg.graph a[data-service=payments] rect").await;
    s.wait_for(
        "the payments page",
        "return location.pathname === '/services/payments'",
    )
    .await;
    s.hydrated().await;
    let callers = s
        .js("return [...document.querySelectorAll('#callers-table tbody tr td:first-child')].map(td => td.textContent)")
        .await;
    assert_eq!(callers, json!(["gateway"]));
    assert_eq!(s.console_errors().await, Vec::<String>::new());

    // A bad severity is explained in the page, with 400.
    let r = reqwest::get(format!("{base}/logs?severity=LOUD"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("use TRACE, DEBUG"));
}

/// Sign-in and sign-out in a real browser, with API tokens on: a page
/// opened without a session leads to the sign-in form, a token signs in and
/// goes back to that page, the session cookie is invisible to scripts
/// (HttpOnly), the header names who is signed in, and "Sign out" ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_and_out_in_a_real_browser() {
    const EDITOR: &str = "editor-token-for-the-browser";
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    let auth = web::auth::Auth::new(&web::auth::AuthConfig {
        tokens: vec![web::auth::TokenConfig {
            name: "alice".into(),
            role: web::auth::Role::Editor,
            sha256: web::auth::sha256_hex(EDITOR),
        }],
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    let state = WebState {
        auth: Some(std::sync::Arc::new(auth)),
        ..WebState::new(store)
    };
    let base = testkit::serve(app(state)).await;

    let s = Session::start().await;
    s.go(&format!("{base}/query")).await;
    s.wait_for(
        "the sign-in form",
        "return location.pathname === '/login' && document.querySelector('#sign-in')",
    )
    .await;
    assert_eq!(
        s.js("return new URLSearchParams(location.search).get('next')")
            .await,
        json!("/query")
    );
    s.type_into("input[name=token]", EDITOR).await;
    s.click("#sign-in").await;
    s.wait_for(
        "the query page after signing in",
        "return location.pathname === '/query' && document.querySelector('header .who')",
    )
    .await;
    assert_eq!(
        s.js("return document.querySelector('header .who .muted').textContent")
            .await,
        json!("alice (editor)")
    );
    assert_eq!(
        s.js("return document.cookie").await,
        json!(""),
        "the session cookie must be HttpOnly"
    );
    s.screenshot("signed-in").await;
    s.click("#sign-out").await;
    s.wait_for(
        "the sign-in form after signing out",
        "return location.pathname === '/login'",
    )
    .await;
    s.go(&format!("{base}/query")).await;
    s.wait_for(
        "the sign-in form again",
        "return location.pathname === '/login'",
    )
    .await;
    assert_eq!(s.console_errors().await, Vec::<String>::new());
}
