//! API tokens with roles, and dashboard sessions.
//!
//! Tokens are configured by their SHA-256 (hex), never in clear; each has a
//! name and a role:
//!
//! | role | may |
//! |---|---|
//! | `ingest` | send telemetry (OTLP) only |
//! | `viewer` | read: dashboard, JSON API, SQL queries, `/metrics` |
//! | `editor` | viewer, and change: acknowledge and resolve incidents, silences |
//! | `admin` | everything (editor, and ingest) |
//!
//! With no token configured, auth is off and everything is open (the
//! default binds to loopback). With tokens, every route but `/healthz`,
//! `/readyz`, `/login` and the static bundle needs a bearer token
//! (`Authorization: Bearer <token>`) or a dashboard session: `/login`
//! trades a token for a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` when configured), kept in memory
//! (bounded; a restart signs everyone out). A request without credentials
//! gets 401 (the API) or a redirect to `/login` (pages); one whose role is
//! too low gets 403.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::WebState;
use crate::api::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Send telemetry only.
    Ingest,
    /// Read everything.
    Viewer,
    /// Read, and manage incidents and silences.
    Editor,
    /// Everything.
    Admin,
}

impl Role {
    /// Whether this role includes `need`.
    pub fn allows(self, need: Role) -> bool {
        match need {
            Role::Ingest => matches!(self, Role::Ingest | Role::Admin),
            _ => self != Role::Ingest && self >= need,
        }
    }

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

/// One configured token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who or what holds it (shown in logs and on timelines, never the token).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, 64 hex characters (`burnwatch token hash`).
    pub sha256: String,
}

/// The `[auth]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// API tokens. None: auth is off.
    pub tokens: Vec<TokenConfig>,
    /// Hours a dashboard session lasts.
    pub session_hours: f64,
    /// Mark the session cookie `Secure` (set when users reach Burnwatch over
    /// HTTPS, e.g. behind a TLS proxy).
    pub secure_cookie: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens: Vec::new(),
            session_hours: 12.0,
            secure_cookie: false,
        }
    }
}

/// SHA-256 of `token`, as bytes.
pub fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// SHA-256 of `token`, as the hex the configuration holds.
pub fn sha256_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// A new random token (32 bytes, hex).
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Most dashboard sessions kept at once (the oldest is dropped beyond).
pub const MAX_SESSIONS: usize = 10_000;

/// The cookie that carries a dashboard session.
pub const COOKIE: &str = "burnwatch_session";

#[derive(Debug, Clone)]
struct Session {
    name: String,
    role: Role,
    expires_ns: i64,
    /// SHA-256 of the token that opened it.
    token: [u8; 32],
}

/// Checked tokens and live sessions.
#[derive(Debug)]
pub struct Auth {
    tokens: Vec<(String, Role, [u8; 32])>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    /// Where sessions outlive a restart (the state database), when set.
    db: Mutex<Option<Arc<statedb::StateDb>>>,
    session_ns: i64,
    secure_cookie: bool,
}

/// A saved session: SHA-256 of its id, SHA-256 of its token, expiry.
type SavedSession = ([u8; 32], [u8; 32], i64);

/// The sessions table, as versioned migrations of the `sessions` component
/// (SQLite's first version is the schema of earlier releases).
pub const MIGRATIONS: &[statedb::Migration] = &[statedb::Migration {
    version: 1,
    name: "dashboard sessions",
    sqlite: "CREATE TABLE IF NOT EXISTS sessions (
    id_sha256 BLOB PRIMARY KEY,
    token_sha256 BLOB NOT NULL,
    expires_ns INTEGER NOT NULL
);",
    postgres: "CREATE TABLE sessions (
    id_sha256 BYTEA PRIMARY KEY,
    token_sha256 BYTEA NOT NULL,
    expires_ns BIGINT NOT NULL
);",
}];

/// Opens the state database at `target` with the sessions table migrated.
pub fn open_sessions(target: &statedb::Target) -> statedb::Result<Arc<statedb::StateDb>> {
    let db = statedb::StateDb::open(target)?;
    db.migrate("sessions", MIGRATIONS)?;
    Ok(Arc::new(db))
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name.
    pub name: String,
    /// Its role.
    pub role: Role,
}

tokio::task_local! {
    /// Who the request being handled comes from (set by [`guard`] when auth
    /// is on), for the page header's "signed in as" and sign-out button.
    static SIGNED_IN: Principal;
}

/// The caller of the request being handled, when auth is on.
pub fn signed_in() -> Option<Principal> {
    SIGNED_IN.try_with(Principal::clone).ok()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Checks the configuration; `None` when no token is configured.
    pub fn new(config: &AuthConfig) -> Result<Option<Auth>, String> {
        if config.tokens.is_empty() {
            return Ok(None);
        }
        let mut tokens = Vec::new();
        for t in &config.tokens {
            let bytes = hex::decode(t.sha256.trim()).ok().filter(|b| b.len() == 32);
            let Some(bytes) = bytes else {
                return Err(format!(
                    "auth token {:?}: sha256 must be 64 hex characters (the SHA-256 of the token; `burnwatch token hash` prints it)",
                    t.name
                ));
            };
            let mut h = [0u8; 32];
            h.copy_from_slice(&bytes);
            tokens.push((t.name.clone(), t.role, h));
        }
        if !(config.session_hours > 0.0 && config.session_hours <= 24.0 * 30.0) {
            return Err(format!(
                "auth.session_hours must be more than 0 and at most 720, got {}",
                config.session_hours
            ));
        }
        Ok(Some(Auth {
            tokens,
            sessions: Mutex::new(HashMap::new()),
            db: Mutex::new(None),
            session_ns: (config.session_hours * 3600e9) as i64,
            secure_cookie: config.secure_cookie,
        }))
    }

    /// Keeps sessions in the state database `db` (see [`open_sessions`]) so
    /// that they outlive a restart, and loads the live ones saved there. Only
    /// the SHA-256 of a session id is stored. A saved session whose token is
    /// no longer configured (removed or rotated) is dropped; one whose token
    /// changed role takes the new role. With a shared database (PostgreSQL)
    /// every node reads sessions from it, so a session opened on one node
    /// works on the others and signing out ends it everywhere.
    pub fn persist(self, db: Arc<statedb::StateDb>, now_ns: i64) -> Result<Auth, String> {
        let where_ = db.describe().to_string();
        let rows = db
            .execute(
                "DELETE FROM sessions WHERE expires_ns <= ?1",
                statedb::params![now_ns],
            )
            .and_then(|_| {
                db.query(
                    "SELECT id_sha256, token_sha256, expires_ns FROM sessions",
                    &[],
                )
            })
            .map_err(|e| format!("cannot open the sessions database {where_}: {e}"))?;
        let rows: Vec<SavedSession> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.blob(0).ok()?.try_into().ok()?,
                    r.blob(1).ok()?.try_into().ok()?,
                    r.int(2).ok()?,
                ))
            })
            .collect();
        let mut kept = HashMap::new();
        let mut dropped = Vec::new();
        for (id, token, expires_ns) in rows {
            match self.session_of(&token, expires_ns) {
                Some(session) => {
                    kept.insert(id, session);
                }
                None => dropped.push(id),
            }
        }
        for id in &dropped {
            if let Err(e) = db.execute(
                "DELETE FROM sessions WHERE id_sha256 = ?1",
                statedb::params![&id[..]],
            ) {
                return Err(format!("cannot update the sessions database {where_}: {e}"));
            }
        }
        if !kept.is_empty() || !dropped.is_empty() {
            tracing::info!(
                restored = kept.len(),
                dropped = dropped.len(),
                "dashboard sessions restored (sessions of tokens no longer configured are dropped)"
            );
        }
        *self.sessions.lock().unwrap_or_else(|e| e.into_inner()) = kept;
        *self.db.lock().unwrap_or_else(|e| e.into_inner()) = Some(db);
        Ok(self)
    }

    /// A session of the configured token whose SHA-256 is `token`.
    fn session_of(&self, token: &[u8; 32], expires_ns: i64) -> Option<Session> {
        self.tokens
            .iter()
            .find(|(_, _, h)| same(h, token))
            .map(|(name, role, _)| Session {
                name: name.clone(),
                role: *role,
                expires_ns,
                token: *token,
            })
    }

    fn database(&self) -> Option<Arc<statedb::StateDb>> {
        self.db.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on the sessions database, if there is one; a failure is
    /// logged (the session still works on this node until its restart).
    fn save(&self, what: &str, f: impl FnOnce(&statedb::StateDb) -> statedb::Result<()>) {
        if let Some(db) = self.database()
            && let Err(e) = f(&db)
        {
            tracing::warn!(error = %e, "cannot {what} in the sessions database; it will not outlive a restart");
        }
    }

    /// SHA-256 digests (hex) of the tokens that may ingest, for the OTLP
    /// receivers.
    pub fn ingest_sha256(&self) -> Vec<String> {
        self.tokens
            .iter()
            .filter(|(_, r, _)| r.allows(Role::Ingest))
            .map(|(_, _, h)| hex::encode(h))
            .collect()
    }

    /// The holder of `token`, if it is configured (every token compared in
    /// constant time).
    pub fn check_token(&self, token: &str) -> Option<Principal> {
        let d = digest(token.trim());
        let mut found = None;
        for (name, role, h) in &self.tokens {
            if same(h, &d) && found.is_none() {
                found = Some(Principal {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        found
    }

    /// Starts a session for `p`, who signed in with `token`; returns its id
    /// (for the cookie).
    fn open_session(&self, p: &Principal, token: &str, now_ns: i64) -> String {
        let id = new_token();
        let key = digest(&id);
        let session = Session {
            name: p.name.clone(),
            role: p.role,
            expires_ns: now_ns + self.session_ns,
            token: digest(token.trim()),
        };
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.retain(|_, v| v.expires_ns > now_ns);
        let oldest = (s.len() >= MAX_SESSIONS)
            .then(|| s.iter().min_by_key(|(_, v)| v.expires_ns).map(|(k, _)| *k))
            .flatten();
        if let Some(k) = oldest {
            s.remove(&k);
        }
        s.insert(key, session.clone());
        drop(s);
        self.save("save the session", |db| {
            db.transaction(|tx| {
                tx.execute(
                    "DELETE FROM sessions WHERE expires_ns <= ?1",
                    statedb::params![now_ns],
                )?;
                if let Some(k) = oldest {
                    tx.execute(
                        "DELETE FROM sessions WHERE id_sha256 = ?1",
                        statedb::params![&k[..]],
                    )?;
                }
                tx.execute(
                    "INSERT INTO sessions (id_sha256, token_sha256, expires_ns) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id_sha256) DO UPDATE SET token_sha256 = excluded.token_sha256, expires_ns = excluded.expires_ns",
                    statedb::params![&key[..], &session.token[..], session.expires_ns],
                )?;
                Ok(())
            })
        });
        id
    }

    fn session(&self, id: &str, now_ns: i64) -> Option<Principal> {
        let key = digest(id);
        // A shared database is the truth: sessions opened or ended on other
        // nodes count here too.
        if let Some(db) = self.database().filter(|db| db.is_shared()) {
            match db.query_opt(
                "SELECT token_sha256, expires_ns FROM sessions WHERE id_sha256 = ?1 AND expires_ns > ?2",
                statedb::params![&key[..], now_ns],
            ) {
                Ok(row) => {
                    let found = row.and_then(|r| {
                        let token: [u8; 32] = r.blob(0).ok()?.try_into().ok()?;
                        self.session_of(&token, r.int(1).ok()?)
                    });
                    return found.map(|v| Principal {
                        name: v.name,
                        role: v.role,
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read sessions from the shared database; using this node's");
                }
            }
        }
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.get(&key)
            .filter(|v| v.expires_ns > now_ns)
            .map(|v| Principal {
                name: v.name.clone(),
                role: v.role,
            })
    }

    fn close_session(&self, id: &str) {
        let key = digest(id);
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.remove(&key);
        drop(s);
        self.save("end the session", |db| {
            db.execute(
                "DELETE FROM sessions WHERE id_sha256 = ?1",
                statedb::params![&key[..]],
            )
            .map(|_| ())
        });
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Who sent `headers`: a bearer token, else a session cookie.
    pub fn principal(&self, headers: &HeaderMap, now_ns: i64) -> Option<Principal> {
        if let Some(h) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let token = h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))?;
            return self.check_token(token);
        }
        cookie(headers, COOKIE).and_then(|id| self.session(&id, now_ns))
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// What a route needs: `None` for the open ones.
pub fn required(method: &Method, path: &str) -> Option<Role> {
    if matches!(path, "/healthz" | "/readyz" | "/login" | "/logout") || path.starts_with("/pkg/") {
        return None;
    }
    let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    Some(
        if reads || path == "/api/v1/query" || path.starts_with("/prometheus/api/v1/") {
            Role::Viewer
        } else {
            Role::Editor
        },
    )
}

fn now_ns() -> i64 {
    slo_engine::engine::now_ns()
}

/// The middleware: lets a request through if its principal's role allows
/// the route; otherwise 401 / 403 (JSON for the API) or a redirect to the
/// sign-in page.
pub async fn guard(State(s): State<WebState>, req: Request, next: Next) -> Response {
    let Some(auth) = s.auth.as_ref() else {
        return next.run(req).await;
    };
    let Some(need) = required(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let path = req.uri().path().to_string();
    let api = path.starts_with("/api/")
        || path.starts_with("/prometheus/")
        || path.starts_with("/jaeger/")
        || path.starts_with("/loki/")
        || path == "/metrics";
    match auth.principal(req.headers(), now_ns()) {
        Some(p) if p.role.allows(need) => SIGNED_IN.scope(p, next.run(req)).await,
        Some(p) => {
            let msg = format!(
                "{} ({}) may not do this: it needs the {} role",
                p.name,
                p.role.as_str(),
                need.as_str()
            );
            if api {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg).into_response()
            } else {
                (StatusCode::FORBIDDEN, Html(page("Not allowed", &msg, ""))).into_response()
            }
        }
        // The API, writes, and a bearer token that is wrong: 401. A page
        // opened without credentials: the sign-in form.
        None if api
            || *req.method() != Method::GET
            || req.headers().contains_key(header::AUTHORIZATION) =>
        {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "sign in: send Authorization: Bearer <token>, or a dashboard session",
            )
            .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"burnwatch\""),
            );
            r
        }
        None => {
            let next = req
                .uri()
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string());
            Redirect::to(&format!(
                "/login?{}",
                serde_urlencoded::to_string([("next", next.as_str())]).unwrap_or_default()
            ))
            .into_response()
        }
    }
}

fn page(title: &str, message: &str, form: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"><title>{t} · Burnwatch</title>\
         <style>body{{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}}main{{max-width:420px;margin:80px auto;background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:16px 24px}}\
         input{{width:100%;box-sizing:border-box;padding:6px;margin:8px 0}}.error{{color:#b3261e}}</style></head>\
         <body><main><h1>{t}</h1><p class=\"error\">{m}</p>{form}</main></body></html>",
        t = esc(title),
        m = esc(message),
    )
}

/// Only local paths may follow a sign-in: a `/` not followed by a second
/// `/`, in printable ASCII without backslashes. Browsers drop tabs and line
/// breaks from a URL (`/<TAB>/evil.example` becomes `//evil.example`, a
/// host) and read a backslash as `/`, so any control character, space,
/// backslash or non-ASCII character sends the user to `/` instead.
pub fn local(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `/login` query.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    /// Where to go after signing in.
    pub next: Option<String>,
}

/// `/login` form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The token.
    pub token: String,
    /// Where to go after signing in.
    pub next: Option<String>,
}

fn login_form(next: &str) -> String {
    let next = next.replace('&', "&amp;").replace('"', "&quot;");
    format!(
        "<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label>API token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus></label>\
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form>"
    )
}

/// `GET /login`: the sign-in form.
pub async fn login_page(State(s): State<WebState>, Query(q): Query<LoginQuery>) -> Response {
    if s.auth.is_none() {
        return Redirect::to("/").into_response();
    }
    let next = local(q.next.as_deref());
    Html(page("Sign in", "", &login_form(&next))).into_response()
}

/// `POST /login`: a valid token (any role but `ingest`) starts a session.
pub async fn login(State(s): State<WebState>, Form(f): Form<LoginForm>) -> Response {
    let Some(auth) = s.auth.as_ref() else {
        return Redirect::to("/").into_response();
    };
    let next = local(f.next.as_deref());
    match auth.check_token(&f.token) {
        Some(p) if p.role != Role::Ingest => {
            let id = auth.open_session(&p, &f.token, now_ns());
            tracing::info!(name = %p.name, role = p.role.as_str(), "dashboard sign-in");
            let cookie = format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                auth.session_ns / 1_000_000_000,
                if auth.secure_cookie { "; Secure" } else { "" }
            );
            let mut r = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Some(_) => (
            StatusCode::FORBIDDEN,
            Html(page(
                "Sign in",
                "This token may only send telemetry (role ingest).",
                &login_form(&next),
            )),
        )
            .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Html(page("Sign in", "Unknown token.", &login_form(&next))),
        )
            .into_response(),
    }
}

/// `POST /logout`: ends the session.
pub async fn logout(State(s): State<WebState>, headers: HeaderMap) -> Response {
    if let (Some(auth), Some(id)) = (s.auth.as_ref(), cookie(&headers, COOKIE)) {
        auth.close_session(&id);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "burnwatch_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_except_ingest() {
        assert!(Role::Admin.allows(Role::Editor) && Role::Admin.allows(Role::Ingest));
        assert!(Role::Editor.allows(Role::Viewer) && !Role::Editor.allows(Role::Ingest));
        assert!(!Role::Viewer.allows(Role::Editor));
        assert!(!Role::Ingest.allows(Role::Viewer));
        assert_eq!(required(&Method::GET, "/slos"), Some(Role::Viewer));
        assert_eq!(required(&Method::POST, "/api/v1/query"), Some(Role::Viewer));
        assert_eq!(required(&Method::POST, "/silences"), Some(Role::Editor));
        assert_eq!(
            required(&Method::DELETE, "/api/v1/silences/3"),
            Some(Role::Editor)
        );
        assert_eq!(required(&Method::GET, "/healthz"), None);
    }

    #[test]
    fn tokens_are_checked_by_digest_and_config_errors_say_why() {
        let t = new_token();
        let cfg = AuthConfig {
            tokens: vec![TokenConfig {
                name: "ci".into(),
                role: Role::Viewer,
                sha256: sha256_hex(&t),
            }],
            ..Default::default()
        };
        let auth = Auth::new(&cfg).unwrap().unwrap();
        assert_eq!(auth.check_token(&t).map(|p| p.role), Some(Role::Viewer));
        assert_eq!(auth.check_token("nope"), None);
        assert!(auth.ingest_sha256().is_empty());
        assert!(Auth::new(&AuthConfig::default()).unwrap().is_none());
        let bad = AuthConfig {
            tokens: vec![TokenConfig {
                name: "x".into(),
                role: Role::Admin,
                // The token itself instead of its digest.
                sha256: "s3cret-token".into(),
            }],
            ..Default::default()
        };
        assert!(Auth::new(&bad).unwrap_err().contains("64 hex"));
    }

    #[test]
    fn sessions_expire_and_redirects_stay_local() {
        let auth = Auth::new(&AuthConfig {
            tokens: vec![TokenConfig {
                name: "a".into(),
                role: Role::Editor,
                sha256: sha256_hex("t"),
            }],
            session_hours: 1.0,
            ..Default::default()
        })
        .unwrap()
        .unwrap();
        let p = auth.check_token("t").unwrap();
        let id = auth.open_session(&p, "t", 0);
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("x=1; {COOKIE}={id}").parse().unwrap(),
        );
        assert_eq!(auth.principal(&h, 10), Some(p));
        assert_eq!(auth.principal(&h, 3_600_000_000_001), None);
        assert_eq!(local(Some("//evil.example/")), "/");
        assert_eq!(local(Some("https://evil.example/")), "/");
        assert_eq!(local(Some("/slos?range=1h")), "/slos?range=1h");
    }

    fn sessions_outlive_a_restart_unless_their_token_is_gone(
        target: &statedb::Target,
    ) -> (String, AuthConfig) {
        let db = || open_sessions(target).unwrap();
        let config = |tokens: &[(&str, Role, &str)]| AuthConfig {
            tokens: tokens
                .iter()
                .map(|(name, role, token)| TokenConfig {
                    name: (*name).into(),
                    role: *role,
                    sha256: sha256_hex(token),
                })
                .collect(),
            session_hours: 1.0,
            ..Default::default()
        };
        let cookie_of = |id: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, format!("{COOKIE}={id}").parse().unwrap());
            h
        };
        let both = [("alice", Role::Editor, "ta"), ("bob", Role::Viewer, "tb")];
        let auth = Auth::new(&config(&both))
            .unwrap()
            .unwrap()
            .persist(db(), 0)
            .unwrap();
        let alice = auth.open_session(&auth.check_token("ta").unwrap(), "ta", 0);
        let bob = auth.open_session(&auth.check_token("tb").unwrap(), "tb", 0);
        let gone = auth.open_session(&auth.check_token("tb").unwrap(), "tb", 0);
        auth.close_session(&gone);
        drop(auth);

        // Restarted with the same tokens: both sessions work; the closed one does not.
        let auth = Auth::new(&config(&both))
            .unwrap()
            .unwrap()
            .persist(db(), 10)
            .unwrap();
        assert_eq!(
            auth.principal(&cookie_of(&alice), 10).unwrap().name,
            "alice"
        );
        assert_eq!(
            auth.principal(&cookie_of(&bob), 10).unwrap().role,
            Role::Viewer
        );
        assert_eq!(auth.principal(&cookie_of(&gone), 10), None);
        assert_eq!(auth.sessions(), 2);
        drop(auth);

        // Bob's token rotated and Alice demoted: Bob's session is gone for
        // good, Alice's carries her new role.
        let changed = [("alice", Role::Viewer, "ta"), ("bob", Role::Viewer, "tb2")];
        let auth = Auth::new(&config(&changed))
            .unwrap()
            .unwrap()
            .persist(db(), 20)
            .unwrap();
        assert_eq!(auth.principal(&cookie_of(&bob), 20), None);
        assert_eq!(
            auth.principal(&cookie_of(&alice), 20).unwrap().role,
            Role::Viewer
        );
        drop(auth);
        let auth = Auth::new(&config(&both))
            .unwrap()
            .unwrap()
            .persist(db(), 30)
            .unwrap();
        assert_eq!(
            auth.principal(&cookie_of(&bob), 30),
            None,
            "deleted, not hidden"
        );
        drop(auth);

        // Expired sessions are not restored. The file holds no session id.
        let auth = Auth::new(&config(&both))
            .unwrap()
            .unwrap()
            .persist(db(), 3_600_000_000_001)
            .unwrap();
        assert_eq!(auth.sessions(), 0);
        (alice, config(&both))
    }

    #[test]
    fn sessions_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state").join("sessions.db");
        let (alice, _) = sessions_outlive_a_restart_unless_their_token_is_gone(
            &statedb::Target::Sqlite(file.clone()),
        );
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(alice.len()).any(|w| w == alice.as_bytes()),
            "the session id itself is never stored"
        );
    }

    #[test]
    fn sessions_on_postgres_are_shared_between_nodes() {
        let pg = statedb::testing::TestPostgres::start().unwrap();
        let target = statedb::Target::Postgres(pg.database("sessions").unwrap());
        let (_, config) = sessions_outlive_a_restart_unless_their_token_is_gone(&target);
        let node = || {
            Auth::new(&config)
                .unwrap()
                .unwrap()
                .persist(open_sessions(&target).unwrap(), 5_000_000_000_000)
                .unwrap()
        };
        let (a, b) = (node(), node());
        let mut cookie = HeaderMap::new();
        let id = a.open_session(&a.check_token("ta").unwrap(), "ta", 5_000_000_000_000);
        cookie.insert(header::COOKIE, format!("{COOKIE}={id}").parse().unwrap());
        assert_eq!(
            b.principal(&cookie, 5_000_000_000_001).unwrap().name,
            "alice",
            "opened on one node, valid on the other"
        );
        b.close_session(&id);
        assert_eq!(
            a.principal(&cookie, 5_000_000_000_002),
            None,
            "signed out on one node, ended on the other"
        );
    }
}
