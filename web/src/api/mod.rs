//! The JSON API under `/api/v1/`, one module per route group; [`routes`]
//! puts them on one router. Errors always have one shape:
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! - [`query`]: `POST /api/v1/query`, one read-only SQL query; JSON, CSV
//!   or Arrow IPC out.
//! - [`red`]: `GET /api/v1/red/{services,operations,series}` and
//!   `GET /api/v1/service-map`.
//! - [`series`]: `GET /api/v1/metrics[/rate|/gauge|/quantile]`.
//! - [`explore`]: `GET /api/v1/traces/{id}`, `GET /api/v1/traces`,
//!   `GET /api/v1/logs`.
//! - [`slos`]: SLOs, incidents, alert rules and silences.
//! - [`prometheus`]: the Prometheus HTTP API under `/prometheus/api/v1/`
//!   (PromQL, series, labels, metadata, exemplars, build info).
//! - [`jaeger`]: the Jaeger query API under `/jaeger/api/` (services,
//!   operations, trace search, one trace, dependencies).
//! - [`loki`]: a read-only Loki query API under `/loki/api/v1/` (log
//!   queries, labels), the target of Grafana's trace-to-logs.
//!
//! Shared here: [`ApiError`], the [`ApiQuery`] extractor, the [`Engine`]
//! extractor (the SLO engine, or a 404 when none runs) and the time
//! parameters.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use store::sql::QueryError;

use crate::WebState;

pub mod explore;
pub mod jaeger;
pub mod loki;
pub mod prometheus;
pub mod query;
pub mod red;
pub mod series;
pub mod slos;

pub use query::{ARROW_STREAM, Format, QueryRequest, encode};

/// Every `/api/v1/` route.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/api/v1/query", post(query::query))
        .route("/api/v1/red/services", get(red::services))
        .route("/api/v1/red/operations", get(red::operations))
        .route("/api/v1/red/series", get(red::series))
        .route("/api/v1/service-map", get(red::service_map))
        .route("/api/v1/traces", get(explore::search_traces))
        .route("/api/v1/traces/{trace_id}", get(explore::trace))
        .route("/api/v1/logs", get(explore::search_logs))
        .route("/api/v1/metrics", get(series::list))
        .route("/api/v1/metrics/rate", get(series::rate))
        .route("/api/v1/metrics/quantile", get(series::quantile))
        .route("/api/v1/metrics/gauge", get(series::gauge))
        .route("/api/v1/slos", get(slos::list))
        .route("/api/v1/slos/{name}", get(slos::one))
        .route("/api/v1/slos/{name}/report", get(slos::report))
        .route("/api/v1/slos/{name}/instances", get(slos::instances))
        .route("/api/v1/incidents", get(slos::incidents))
        .route("/api/v1/incidents/{id}/ack", post(slos::acknowledge))
        .route("/api/v1/incidents/{id}/postmortem", get(slos::postmortem))
        .route("/api/v1/incidents/{id}/resolve", post(slos::resolve))
        .route("/api/v1/alerts", get(slos::alerts))
        .route("/api/v1/rules", get(slos::rules))
        .route(
            "/api/v1/silences",
            get(slos::silences).post(slos::create_silence),
        )
        .route("/api/v1/silences/{id}", delete(slos::expire_silence))
        .route(
            "/api/v1/corrections",
            get(slos::corrections).post(slos::create_correction),
        )
        .route(
            "/api/v1/corrections/{id}",
            axum::routing::put(slos::edit_correction).delete(slos::delete_correction),
        )
        .route(
            "/api/v1/corrections/{id}/audit",
            get(slos::correction_audit),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .merge(prometheus::routes())
        .merge(jaeger::routes())
        .merge(loki::routes())
}

/// The OpenAPI 3 document of the API.
pub const OPENAPI: &str = include_str!("../openapi.json");

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// The SLO engine, for the SLO, incident, rule and silence endpoints;
/// a 404 (`no_slos`) when none runs (no rules directory).
#[derive(Clone)]
pub struct Engine(pub Arc<slo_engine::engine::SloEngine>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl FromRequestParts<WebState> for Engine {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, s: &WebState) -> Result<Self, ApiError> {
        s.slo.clone().map(Engine).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_slos",
                "no SLO engine is running (no rules directory)",
            )
        })
    }
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "API request failed");
        }
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            "internal error; see the server log".to_string()
        } else {
            self.message
        };
        let body = serde_json::json!({ "error": { "code": self.code, "message": message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let (status, code) = match &e {
            QueryError::NotAllowed(_) => (StatusCode::BAD_REQUEST, "not_allowed"),
            QueryError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            QueryError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "query_timeout"),
            QueryError::ResourcesExhausted(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "query_memory_limit")
            }
            QueryError::ResultTooLarge(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "query_result_too_large")
            }
            QueryError::Execution(_) => (StatusCode::INTERNAL_SERVER_ERROR, "execution_error"),
            QueryError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable"),
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

/// Unknown paths: 404 in the API's error shape.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("no such endpoint: {}", uri.path()),
    }
}

/// Wrong method on a known path: 405 in the API's error shape.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!("{method} is not allowed on {}", uri.path()),
    }
}

/// Query-string parameters of an endpoint.
pub trait Params: DeserializeOwned {
    /// Whether `attribute=key=value` may be given (any number of times).
    const ATTRIBUTES: bool = false;
}

/// Query-string parameters, parsed like axum's `Query` but answering a
/// malformed or unknown parameter with a 400 in the API's error shape, and
/// collecting every `attribute=key=value` (which may repeat) apart.
#[derive(Debug)]
pub struct ApiQuery<T> {
    /// The other parameters.
    pub params: T,
    /// `(key, value)` of each `attribute` parameter, in order.
    pub attributes: Vec<(String, String)>,
}

/// Most `attribute` filters per request.
pub const MAX_ATTRIBUTE_FILTERS: usize = 16;

impl<T: Params, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::bad_request("invalid_parameter", m);
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or(""))
                .map_err(|e| bad(format!("malformed query string: {e}")))?;
        let (attrs, rest): (Vec<_>, Vec<_>) =
            pairs.into_iter().partition(|(k, _)| k == "attribute");
        if !attrs.is_empty() && !T::ATTRIBUTES {
            return Err(bad("this endpoint takes no attribute filters".into()));
        }
        if attrs.len() > MAX_ATTRIBUTE_FILTERS {
            return Err(bad(format!(
                "{} attribute filters; at most {MAX_ATTRIBUTE_FILTERS}",
                attrs.len()
            )));
        }
        let attributes = attrs
            .into_iter()
            .map(|(_, a)| match a.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(bad(format!("attribute {a:?}: use key=value"))),
            })
            .collect::<Result<_, _>>()?;
        let rest = serde_urlencoded::to_string(&rest).map_err(|e| bad(e.to_string()))?;
        let params = serde_urlencoded::from_str(&rest).map_err(|e| bad(e.to_string()))?;
        Ok(ApiQuery { params, attributes })
    }
}

/// A bounded list answer: the window, the kept items under `key`, and how
/// many matched and were left out (see [`crate::top`]).
fn listed<T: serde::Serialize>(
    w: &analytics::red::Window,
    key: &str,
    list: crate::top::Top<T>,
) -> Json<serde_json::Value> {
    let mut body = serde_json::json!({
        "from": w.from_ns, "to": w.to_ns,
        "matched": list.matched, "omitted": list.omitted(),
    });
    body[key] = serde_json::json!(list.items);
    crate::cluster::annotate(&mut body);
    Json(body)
}

/// Parses a time given as RFC 3339 or as ns since the epoch.
pub fn parse_time(name: &str, s: &str) -> Result<i64, ApiError> {
    if let Ok(ns) = s.parse::<i64>() {
        return Ok(ns);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_time",
                format!(
                    "{name}={s:?} is neither RFC 3339 (2024-03-05T10:00:00Z) nor ns since the epoch"
                ),
            )
        })
}

/// The window `[from, to)`: `to` defaults to now, `from` to an hour before `to`.
fn window(from: Option<&str>, to: Option<&str>) -> Result<analytics::red::Window, ApiError> {
    let to = match to {
        Some(t) => parse_time("to", t)?,
        None => store::now_ns(),
    };
    let from = match from {
        Some(f) => parse_time("from", f)?,
        None => to - 3_600_000_000_000,
    };
    analytics::red::Window::new(from, to)
        .map_err(|e| ApiError::bad_request("invalid_window", e.to_string()))
}

/// A query parameter that must be present.
fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, ApiError> {
    value.as_deref().ok_or_else(|| {
        ApiError::bad_request(
            "missing_parameter",
            format!("the {name} parameter is required"),
        )
    })
}

/// A time window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    /// Start: RFC 3339 or ns [default: `to` minus one hour].
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 or ns [default: now].
    pub to: Option<String>,
    /// Most items listed, the busiest first [default: 1000, at most 10000].
    pub limit: Option<usize>,
    /// Only items whose name contains this (any case); for the service
    /// map, edges with either end matching.
    pub search: Option<String>,
}

impl Params for WindowParams {}

impl WindowParams {
    fn window(&self) -> Result<analytics::red::Window, ApiError> {
        window(self.from.as_deref(), self.to.as_deref())
    }
}
