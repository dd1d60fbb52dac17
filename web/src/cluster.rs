//! On a query node: which ingest nodes did not answer at the last refresh
//! of the cluster view. Every answer carries them in the
//! `Burnwatch-Missing-Nodes` header, JSON answers in a `missing_nodes`
//! field and pages in a banner, so nobody reads a partial result as whole.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use store::cluster::MissingNode;

use crate::WebState;

tokio::task_local! {
    static MISSING: Vec<MissingNode>;
}

/// Middleware: makes the missing nodes known to the handler and the header.
pub async fn track(State(s): State<WebState>, req: Request, next: Next) -> Response {
    let missing = s.store.missing_nodes();
    if missing.is_empty() {
        return next.run(req).await;
    }
    let names = missing.iter().map(label).collect::<Vec<_>>().join(", ");
    let mut resp = MISSING.scope(missing, next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&names) {
        resp.headers_mut().insert("burnwatch-missing-nodes", v);
    }
    resp
}

fn label(m: &MissingNode) -> String {
    if m.node.is_empty() {
        m.url.clone()
    } else {
        m.node.clone()
    }
}

/// The ingest nodes missing from the request being handled's results.
pub fn missing() -> Vec<MissingNode> {
    MISSING.try_with(Clone::clone).unwrap_or_default()
}

/// Adds `missing_nodes` to a JSON object when some node is missing.
pub fn annotate(body: &mut serde_json::Value) {
    let missing = missing();
    if !missing.is_empty()
        && let Some(o) = body.as_object_mut()
    {
        o.insert("missing_nodes".into(), serde_json::json!(missing));
    }
}

/// The page banner naming the missing nodes (empty when none).
pub fn banner() -> String {
    let missing = missing();
    if missing.is_empty() {
        return String::new();
    }
    let items: String = missing
        .iter()
        .map(|m| {
            format!(
                "<li><b>{}</b> ({}): {}</li>",
                crate::ui::escape(&label(m)),
                crate::ui::escape(&m.url),
                crate::ui::escape(&m.error)
            )
        })
        .collect();
    format!(
        "<div class=\"missing-nodes\" role=\"alert\">Results may be incomplete: these ingest nodes did not answer, so their rows not yet in the bucket are missing.<ul>{items}</ul></div>"
    )
}
