//! API tokens with roles through the real router: with tokens configured,
//! no route but the health probes and the sign-in page answers without
//! one; each role reaches what it may and gets 403 beyond; the dashboard
//! signs in with a token and keeps an HttpOnly session cookie.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use std::sync::Arc;
use store::Store;
use tower::ServiceExt as _;
use web::auth::{Auth, AuthConfig, Role, TokenConfig, sha256_hex};
use web::{WebState, app};

const VIEWER: &str = "viewer-token-1";
const EDITOR: &str = "editor-token-2";
const INGEST: &str = "ingest-token-3";

async fn state() -> (WebState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
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
    let token = |name: &str, role, t: &str| TokenConfig {
        name: name.into(),
        role,
        sha256: sha256_hex(t),
    };
    let auth = Auth::new(&AuthConfig {
        tokens: vec![
            token("grafana", Role::Viewer, VIEWER),
            token("alice", Role::Editor, EDITOR),
            token("shop", Role::Ingest, INGEST),
        ],
        ..Default::default()
    })
    .unwrap()
    .unwrap();
    (
        WebState {
            slo: Some(engine),
            auth: Some(Arc::new(auth)),
            ..WebState::new(store)
        },
        dir,
    )
}

async fn send(
    s: &WebState,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    match auth {
        Some(c) if c.starts_with("burnwatch_session=") => req = req.header(header::COOKIE, c),
        Some(t) => req = req.header(header::AUTHORIZATION, format!("Bearer {t}")),
        None => {}
    }
    let ct = if body.starts_with('{') {
        "application/json"
    } else {
        "application/x-www-form-urlencoded"
    };
    let resp = app(s.clone())
        .oneshot(
            req.header(header::CONTENT_TYPE, ct)
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (st, h, String::from_utf8_lossy(&b).to_string())
}

/// Every page and API route, with a method and a body where it takes one.
fn routes() -> Vec<(Method, &'static str, &'static str)> {
    let get = |p| (Method::GET, p, "");
    vec![
        get("/"),
        get("/services/gateway"),
        get("/service-map"),
        get("/traces"),
        get("/traces/0123456789abcdef0123456789abcdef"),
        get("/logs"),
        get("/explore/metrics"),
        get("/slos"),
        get("/slos/checkout-availability"),
        get("/incidents"),
        get("/incidents/1"),
        get("/silences"),
        get("/query?sql=SELECT+1"),
        get("/metrics"),
        get("/api/v1/red/services"),
        get("/api/v1/red/operations?service=gateway"),
        get("/api/v1/red/series?service=gateway"),
        get("/api/v1/traces"),
        get("/api/v1/traces/0123456789abcdef0123456789abcdef"),
        get("/api/v1/logs"),
        get("/api/v1/service-map"),
        get("/api/v1/metrics"),
        get("/api/v1/slos"),
        get("/api/v1/slos/checkout-availability"),
        get("/api/v1/incidents"),
        get("/api/v1/alerts"),
        get("/api/v1/rules"),
        get("/api/v1/silences"),
        get("/api/v1/openapi.json"),
        (Method::POST, "/api/v1/query", r#"{"sql": "SELECT 1"}"#),
        (Method::POST, "/api/v1/incidents/1/ack", r#"{"by": "x"}"#),
        (
            Method::POST,
            "/api/v1/incidents/1/resolve",
            r#"{"by": "x"}"#,
        ),
        (
            Method::POST,
            "/api/v1/silences",
            r#"{"matchers": ["slo=\"x\""], "duration": "1h", "createdBy": "x", "comment": "y"}"#,
        ),
        (Method::DELETE, "/api/v1/silences/1", ""),
        (
            Method::POST,
            "/silences",
            "matchers=slo%3D%22x%22&duration=1h&created_by=x&comment=y",
        ),
        (Method::POST, "/silences/1/expire", ""),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_a_token_with_the_right_role() {
    let (s, _dir) = state().await;
    for (method, path, body) in routes() {
        let writes = method != Method::GET && path != "/api/v1/query";
        // No credentials: 401 for the API and writes, a sign-in redirect for pages.
        let (st, h, _) = send(&s, method.clone(), path, None, body).await;
        let page = method == Method::GET && !path.starts_with("/api/") && path != "/metrics";
        if page {
            assert_eq!(st, StatusCode::SEE_OTHER, "{method} {path}");
            let to = h[header::LOCATION].to_str().unwrap();
            assert!(to.starts_with("/login?next=%2F"), "{path}: {to}");
        } else {
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert!(h.contains_key(header::WWW_AUTHENTICATE), "{path}");
        }
        // A wrong token and an ingest token are not enough.
        for t in ["nope", INGEST] {
            let (st, _, _) = send(&s, method.clone(), path, Some(t), body).await;
            assert!(
                st == StatusCode::UNAUTHORIZED || st == StatusCode::FORBIDDEN,
                "{method} {path} with {t}: {st}"
            );
        }
        // A viewer reads; writes are refused with 403.
        let (st, _, text) = send(&s, method.clone(), path, Some(VIEWER), body).await;
        if writes {
            assert_eq!(st, StatusCode::FORBIDDEN, "{method} {path}: {text}");
            assert!(text.contains("needs the editor role"), "{text}");
        } else {
            assert!(
                st != StatusCode::UNAUTHORIZED && st != StatusCode::FORBIDDEN,
                "viewer {method} {path}: {st} {text}"
            );
        }
        // An editor gets past the guard everywhere.
        let (st, _, text) = send(&s, method.clone(), path, Some(EDITOR), body).await;
        assert!(
            st != StatusCode::UNAUTHORIZED && st != StatusCode::FORBIDDEN,
            "editor {method} {path}: {st} {text}"
        );
    }
    // The probes stay open.
    for p in ["/healthz", "/readyz"] {
        let (st, _, _) = send(&s, Method::GET, p, None, "").await;
        assert_ne!(st, StatusCode::UNAUTHORIZED, "{p}");
        assert_ne!(st, StatusCode::SEE_OTHER, "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_with_a_token_and_keeps_an_httponly_session() {
    let (s, _dir) = state().await;
    let (st, _, page) = send(&s, Method::GET, "/login?next=%2Fslos", None, "").await;
    assert_eq!(st, 200);
    assert!(page.contains("name=\"token\"") && page.contains("value=\"/slos\""));
    // A wrong token, and an ingest token, do not sign in.
    let (st, h, page) = send(&s, Method::POST, "/login", None, "token=nope&next=%2Fslos").await;
    assert_eq!(st, 401);
    assert!(!h.contains_key(header::SET_COOKIE) && page.contains("Unknown token"));
    let (st, _, _) = send(
        &s,
        Method::POST,
        "/login",
        None,
        &format!("token={INGEST}&next=%2F"),
    )
    .await;
    assert_eq!(st, 403);
    // A viewer's token: a session cookie, back to where the user was going.
    let (st, h, _) = send(
        &s,
        Method::POST,
        "/login",
        None,
        &format!("token={VIEWER}&next=%2Fslos"),
    )
    .await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert_eq!(h[header::LOCATION], "/slos");
    let set = h[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(
        !set.contains(VIEWER),
        "the cookie is a session id, not the token"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let (st, _, page) = send(&s, Method::GET, "/slos", Some(&cookie), "").await;
    assert_eq!(st, 200);
    assert!(page.contains("<h1>SLOs</h1>"), "{page}");
    // The header says who is signed in and offers to sign out.
    assert!(page.contains("grafana (viewer)"), "{page}");
    assert!(
        page.contains(r#"<form method="post" action="/logout">"#) && page.contains("Sign out"),
        "{page}"
    );
    // The session is a viewer's: a silence is refused.
    let (st, _, _) = send(
        &s,
        Method::POST,
        "/silences",
        Some(&cookie),
        "matchers=slo%3D%22x%22&duration=1h&created_by=x&comment=y",
    )
    .await;
    assert_eq!(st, 403);
    // An open redirect is not followed.
    let (_, h, _) = send(
        &s,
        Method::POST,
        "/login",
        None,
        &format!("token={EDITOR}&next=%2F%2Fevil.example%2F"),
    )
    .await;
    assert_eq!(h[header::LOCATION], "/");
    // Signing out ends the session.
    let (st, h, _) = send(&s, Method::POST, "/logout", Some(&cookie), "").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    assert!(
        h[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (st, _, _) = send(&s, Method::GET, "/slos", Some(&cookie), "").await;
    assert_eq!(st, StatusCode::SEE_OTHER);
}

/// Sends `req` through the router; status, headers, body.
async fn raw(s: &WebState, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    let resp = app(s.clone()).oneshot(req).await.unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    let b = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (st, h, String::from_utf8_lossy(&b).to_string())
}

#[tokio::test]
async fn sign_in_only_returns_to_local_paths() {
    let (s, _dir) = state().await;
    for (next, want) in [
        ("/query?sql=SELECT+1", "/query?sql=SELECT+1"),
        ("/slos", "/slos"),
        // Browsers drop tabs and line breaks: `/<TAB>/evil.example` is a host.
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
        ("/\r\nSet-Cookie: x=1", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/caf\u{e9}", "/"),
        ("javascript:alert(1)", "/"),
    ] {
        let body = serde_urlencoded::to_string([("token", EDITOR), ("next", next)]).unwrap();
        let (st, h, _) = send(&s, Method::POST, "/login", None, &body).await;
        assert_eq!(st, StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(h[header::LOCATION], want, "{next:?}");
        // The form carries the cleaned value too.
        let uri = format!(
            "/login?{}",
            serde_urlencoded::to_string([("next", next)]).unwrap()
        );
        let (st, _, page) = send(&s, Method::GET, &uri, None, "").await;
        assert_eq!(st, StatusCode::OK);
        let want_field = format!(
            "name=\"next\" value=\"{}\"",
            want.replace('&', "&amp;").replace('"', "&quot;")
        );
        assert!(page.contains(&want_field), "{next:?}: {page}");
    }
}

#[tokio::test]
async fn writes_from_another_site_are_refused() {
    let (s, _dir) = state().await;
    let post = |origin: Option<&str>, site: Option<&str>| {
        let mut r = Request::post("/silences")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::AUTHORIZATION, format!("Bearer {EDITOR}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        if let Some(x) = site {
            r = r.header("sec-fetch-site", x);
        }
        r.body(Body::from(
            "matchers=service%3D%22payments%22&duration=1h&created_by=a&comment=b",
        ))
        .unwrap()
    };
    for (origin, site) in [
        (Some("https://evil.example"), None),
        (Some("null"), None),
        (None, Some("cross-site")),
        (Some("http://127.0.0.1:8080"), Some("same-site")),
    ] {
        let (st, _, body) = raw(&s, post(origin, site)).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{origin:?} {site:?}: {body}");
        assert!(body.contains("cross_site"), "{body}");
    }
    assert!(
        s.slo
            .as_ref()
            .unwrap()
            .silences()
            .list(0)
            .unwrap()
            .is_empty(),
        "nothing was created"
    );
    // The same form from this origin, or from a client that is no browser.
    for (origin, site) in [
        (Some("http://127.0.0.1:8080"), Some("same-origin")),
        (Some("http://127.0.0.1:8080"), None),
        (None, None),
    ] {
        let (st, _, body) = raw(&s, post(origin, site)).await;
        assert_ne!(st, StatusCode::FORBIDDEN, "{origin:?} {site:?}: {body}");
    }
}

#[tokio::test]
async fn pages_escape_the_request_and_send_browser_protections() {
    let (s, _dir) = state().await;
    let attack = "</textarea><script>alert(1)</script><img src=x onerror=alert(2)>";
    let uri = format!(
        "/query?{}",
        serde_urlencoded::to_string([("sql", attack)]).unwrap()
    );
    let (st, h, page) = send(&s, Method::GET, &uri, Some(VIEWER), "").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{page}");
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(
        page.contains("&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self' 'sha256-"),
        "{csp}"
    );
    assert!(!csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    for uri in ["/", "/api/v1/slos", "/healthz", "/login", "/no-such-page"] {
        let (_, h, _) = send(&s, Method::GET, uri, Some(VIEWER), "").await;
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{uri}");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{uri}");
        assert_eq!(h[header::REFERRER_POLICY], "same-origin", "{uri}");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }
}
