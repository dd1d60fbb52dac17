//! Browser-facing protections on every response and every write.
//!
//! - [`headers`]: a strict `Content-Security-Policy` (scripts only from
//!   this origin plus the islands' loader by its hash, WebAssembly allowed,
//!   no plugins, no framing, forms only to this origin),
//!   `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
//!   `Referrer-Policy: same-origin`.
//! - [`same_origin`]: a state-changing request (anything but GET, HEAD and
//!   OPTIONS) that a browser marks as coming from another site
//!   (`Sec-Fetch-Site: cross-site` or `same-site`, or an `Origin` whose host
//!   is not this server's) is refused with 403 before it reaches a handler.
//!   Requests without either header (curl, scripts, Grafana) pass: they are
//!   not made by a browser on someone else's page.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The `Content-Security-Policy` of every response: the islands' loader is
/// the only inline script, allowed by its SHA-256.
pub fn content_security_policy() -> String {
    use base64::Engine as _;
    let loader = crate::ui::assets::LOADER
        .trim_start_matches(r#"<script type="module">"#)
        .trim_end_matches("</script>");
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(loader));
    format!(
        "default-src 'none'; script-src 'self' 'sha256-{hash}' 'wasm-unsafe-eval'; \
         style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// Adds the security headers to every response.
pub async fn headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Why a write from a browser is refused, if it is.
fn cross_site(method: &Method, headers: &HeaderMap) -> Option<String> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        return match site {
            "same-origin" | "none" => None,
            other => Some(format!(
                "refused a {method} from another site (Sec-Fetch-Site: {other})"
            )),
        };
    }
    let origin = headers.get(header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("");
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or("");
    let hosts = [headers.get(header::HOST), headers.get("x-forwarded-host")];
    let same = !origin_host.is_empty()
        && hosts
            .iter()
            .flatten()
            .filter_map(|h| h.to_str().ok())
            .any(|h| h.eq_ignore_ascii_case(origin_host));
    if same {
        None
    } else {
        Some(format!(
            "refused a {method} from another origin (Origin: {origin})"
        ))
    }
}

/// Refuses state-changing requests that a browser sent from another site.
pub async fn same_origin(req: Request, next: Next) -> Response {
    match cross_site(req.method(), req.headers()) {
        None => next.run(req).await,
        Some(message) => {
            crate::api::ApiError::new(StatusCode::FORBIDDEN, "cross_site", message).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn writes_from_other_sites_are_refused() {
        let post = Method::POST;
        // Not a browser, or a browser on this origin.
        assert_eq!(cross_site(&post, &headers(&[])), None);
        assert_eq!(
            cross_site(&post, &headers(&[("sec-fetch-site", "same-origin")])),
            None
        );
        assert_eq!(
            cross_site(
                &post,
                &headers(&[
                    ("origin", "http://127.0.0.1:8080"),
                    ("host", "127.0.0.1:8080")
                ])
            ),
            None
        );
        assert_eq!(
            cross_site(
                &post,
                &headers(&[
                    ("origin", "https://burnwatch.example"),
                    ("host", "10.0.0.5:8080"),
                    ("x-forwarded-host", "burnwatch.example")
                ])
            ),
            None
        );
        // Another site.
        for h in [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("origin", "https://evil.example"),
                ("host", "127.0.0.1:8080"),
            ]),
            headers(&[("origin", "null"), ("host", "127.0.0.1:8080")]),
            headers(&[
                ("origin", "http://127.0.0.1:8080.evil.example"),
                ("host", "127.0.0.1:8080"),
            ]),
        ] {
            assert!(cross_site(&post, &h).is_some(), "{h:?}");
            assert!(cross_site(&Method::GET, &h).is_none());
        }
    }

    #[test]
    fn the_policy_allows_the_loader_by_hash() {
        let csp = content_security_policy();
        assert!(csp.contains("'sha256-"), "{csp}");
        assert!(
            !csp.contains("'unsafe-inline' 'sha256") && !csp.contains("script-src 'unsafe-inline'")
        );
        assert!(csp.contains("frame-ancestors 'none'"));
    }
}
