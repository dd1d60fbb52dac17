//! The Jaeger query API under `/jaeger` (so `http://host:8080/jaeger` is a
//! Grafana Jaeger data-source URL, and Jaeger UI's calls work):
//! `api/services`, `api/services/{service}/operations`, `api/operations`,
//! `api/traces` (search, or `traceID=` lookups), `api/traces/{id}` and
//! `api/dependencies`, in Jaeger's envelope `{data, total, limit, offset,
//! errors}`. Bad parameters answer 400 and a missing trace 404, both with
//! the error in `errors`. The model is [`analytics::jaeger`]'s.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use analytics::jaeger::{self, TraceQuery};
use analytics::search::ExploreError;

use crate::WebState;

/// How far back services and operations are listed.
const CATALOG_LOOKBACK_NS: i64 = 7 * 86_400_000_000_000;

/// The default search window when neither `start` nor `lookback` is given.
const DEFAULT_LOOKBACK_NS: i64 = 3_600_000_000_000;

/// Jaeger's default number of traces per search.
const DEFAULT_LIMIT: usize = 100;

/// The default window of `api/dependencies`, ms (Jaeger's: one day).
const DEFAULT_DEPENDENCY_LOOKBACK_MS: i64 = 86_400_000;

/// Every `/jaeger/api/` route.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/jaeger/api/services", get(services))
        .route(
            "/jaeger/api/services/{service}/operations",
            get(service_operations),
        )
        .route("/jaeger/api/operations", get(operations))
        .route("/jaeger/api/traces", get(find_traces))
        .route("/jaeger/api/traces/{trace_id}", get(trace))
        .route("/jaeger/api/dependencies", get(dependencies))
}

/// A failed call in Jaeger's envelope.
#[derive(Debug)]
pub struct JaegerError {
    status: StatusCode,
    msg: String,
}

impl JaegerError {
    fn bad(msg: impl Into<String>) -> JaegerError {
        JaegerError {
            status: StatusCode::BAD_REQUEST,
            msg: msg.into(),
        }
    }
}

impl From<ExploreError> for JaegerError {
    fn from(e: ExploreError) -> Self {
        match e {
            ExploreError::BadRequest(m) => JaegerError::bad(m),
            ExploreError::Query(m) => JaegerError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                msg: m,
            },
        }
    }
}

impl From<analytics::red::RedError> for JaegerError {
    fn from(e: analytics::red::RedError) -> Self {
        match e {
            analytics::red::RedError::BadRequest(m) => JaegerError::bad(m),
            other => JaegerError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                msg: other.to_string(),
            },
        }
    }
}

impl IntoResponse for JaegerError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.msg, "Jaeger API request failed");
        }
        let body = json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{ "code": self.status.as_u16(), "msg": self.msg }],
        });
        (self.status, axum::Json(body)).into_response()
    }
}

fn envelope(data: Value, total: usize) -> Response {
    axum::Json(json!({ "data": data, "total": total, "limit": 0, "offset": 0, "errors": null }))
        .into_response()
}

/// The query string's pairs, in order (keys may repeat).
fn pairs(q: Option<String>) -> Result<Vec<(String, String)>, JaegerError> {
    match q {
        Some(q) => serde_urlencoded::from_str(&q)
            .map_err(|e| JaegerError::bad(format!("invalid query string: {e}"))),
        None => Ok(Vec::new()),
    }
}

fn one<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn int(p: &[(String, String)], key: &str) -> Result<Option<i64>, JaegerError> {
    one(p, key)
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                JaegerError::bad(format!(
                    "unable to parse param '{key}': {v:?} is not an integer"
                ))
            })
        })
        .transpose()
}

fn duration(p: &[(String, String)], key: &str) -> Result<Option<i64>, JaegerError> {
    one(p, key)
        .map(|v| {
            jaeger::go_duration_ns(v)
                .map_err(|e| JaegerError::bad(format!("unable to parse param '{key}': {e}")))
        })
        .transpose()
}

/// A Jaeger UI lookback (`1h`, `2d`, `custom`), ns.
fn lookback_ns(v: &str) -> Result<Option<i64>, JaegerError> {
    if v == "custom" {
        return Ok(None);
    }
    if let Some(days) = v.strip_suffix('d')
        && let Ok(d) = days.parse::<i64>()
        && d > 0
    {
        return Ok(Some(d.saturating_mul(86_400_000_000_000)));
    }
    jaeger::go_duration_ns(v)
        .map(Some)
        .map_err(|e| JaegerError::bad(format!("unable to parse param 'lookback': {e}")))
}

fn catalog_window() -> (i64, i64) {
    let now = store::now_ns();
    (now - CATALOG_LOOKBACK_NS, now + 60_000_000_000)
}

/// `GET /jaeger/api/services`: services with spans in the last 7 days.
pub async fn services(State(s): State<WebState>) -> Result<Response, JaegerError> {
    let (from, to) = catalog_window();
    let list = jaeger::services(&s.store, from, to).await?;
    let n = list.len();
    Ok(envelope(json!(list), n))
}

/// `GET /jaeger/api/services/{service}/operations`: its span names.
pub async fn service_operations(
    State(s): State<WebState>,
    Path(service): Path<String>,
) -> Result<Response, JaegerError> {
    let (from, to) = catalog_window();
    let mut names: Vec<String> = jaeger::operations(&s.store, Some(&service), None, from, to)
        .await?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.dedup();
    let n = names.len();
    Ok(envelope(json!(names), n))
}

/// `GET /jaeger/api/operations?service=&spanKind=`: span names with kinds.
pub async fn operations(
    State(s): State<WebState>,
    RawQuery(q): RawQuery,
) -> Result<Response, JaegerError> {
    let p = pairs(q)?;
    let service =
        one(&p, "service").ok_or_else(|| JaegerError::bad("parameter 'service' is required"))?;
    let (from, to) = catalog_window();
    let ops = jaeger::operations(&s.store, Some(service), one(&p, "spanKind"), from, to).await?;
    let data: Vec<Value> = ops
        .iter()
        .map(|(n, k)| json!({ "name": n, "spanKind": k }))
        .collect();
    let n = data.len();
    Ok(envelope(json!(data), n))
}

/// `GET /jaeger/api/traces`: a search (`service` required, `operation`,
/// `tags` as JSON or logfmt, `tag=key:value`, `start`/`end` in µs,
/// `lookback`, `minDuration`/`maxDuration` as Go durations, `limit`), or
/// the traces named by `traceID=` parameters.
pub async fn find_traces(
    State(s): State<WebState>,
    RawQuery(q): RawQuery,
) -> Result<Response, JaegerError> {
    let p = pairs(q)?;
    let ids: Vec<&str> = p
        .iter()
        .filter(|(k, _)| k == "traceID")
        .map(|(_, v)| v.as_str())
        .collect();
    if !ids.is_empty() {
        let mut out = Vec::new();
        for id in ids {
            if let Some(t) = jaeger::trace(&s.rollups.traces, id).await? {
                out.push(t);
            }
        }
        return Ok(envelope(json!(out), 0));
    }
    let service =
        one(&p, "service").ok_or_else(|| JaegerError::bad("parameter 'service' is required"))?;
    let end_ns = match int(&p, "end")? {
        Some(us) => us.saturating_mul(1000),
        None => store::now_ns(),
    };
    let start_ns = match int(&p, "start")? {
        Some(us) => us.saturating_mul(1000),
        None => {
            let back = match one(&p, "lookback") {
                Some(l) => lookback_ns(l)?.unwrap_or(DEFAULT_LOOKBACK_NS),
                None => DEFAULT_LOOKBACK_NS,
            };
            end_ns.saturating_sub(back)
        }
    };
    if start_ns > end_ns {
        return Err(JaegerError::bad("'start' must not be after 'end'"));
    }
    let min = duration(&p, "minDuration")?;
    let max = duration(&p, "maxDuration")?;
    if let (Some(a), Some(b)) = (min, max)
        && b < a
    {
        return Err(JaegerError::bad(
            "'maxDuration' should be greater than 'minDuration'",
        ));
    }
    let limit = match int(&p, "limit")? {
        Some(l) if l < 0 => return Err(JaegerError::bad("'limit' must be non-negative")),
        Some(0) | None => DEFAULT_LIMIT,
        Some(l) => l as usize,
    };
    let mut tags = Vec::new();
    for (k, v) in &p {
        match k.as_str() {
            "tags" => tags.extend(jaeger::parse_tags(v)?),
            "tag" => {
                let (tk, tv) = v.split_once(':').ok_or_else(|| {
                    JaegerError::bad(format!("malformed 'tag' parameter {v:?}: use key:value"))
                })?;
                tags.push((tk.to_string(), tv.to_string()));
            }
            _ => {}
        }
    }
    let query = TraceQuery {
        service: Some(service.to_string()),
        operation: one(&p, "operation").map(str::to_string),
        tags,
        // Jaeger's end is inclusive.
        start_ns,
        end_ns: end_ns.saturating_add(1),
        min_duration_ns: min,
        max_duration_ns: max,
        limit,
    };
    let traces = jaeger::find_traces(&s.store, Some(&s.rollups.traces), &query).await?;
    Ok(envelope(json!(traces), 0))
}

/// `GET /jaeger/api/traces/{traceID}`: one trace, or 404.
pub async fn trace(
    State(s): State<WebState>,
    Path(id): Path<String>,
) -> Result<Response, JaegerError> {
    match jaeger::trace(&s.rollups.traces, &id).await? {
        Some(t) => Ok(envelope(json!([t]), 0)),
        None => Err(JaegerError {
            status: StatusCode::NOT_FOUND,
            msg: "trace not found".into(),
        }),
    }
}

/// `GET /jaeger/api/dependencies?endTs=&lookback=` (ms): the service map's
/// edges as Jaeger dependency links.
pub async fn dependencies(
    State(s): State<WebState>,
    RawQuery(q): RawQuery,
) -> Result<Response, JaegerError> {
    let p = pairs(q)?;
    let end_ms = int(&p, "endTs")?.unwrap_or_else(|| store::now_ns() / 1_000_000);
    let back_ms = int(&p, "lookback")?.unwrap_or(DEFAULT_DEPENDENCY_LOOKBACK_MS);
    if back_ms <= 0 {
        return Err(JaegerError::bad(
            "'lookback' must be a positive number of ms",
        ));
    }
    let w = analytics::red::Window::new(
        end_ms.saturating_sub(back_ms).saturating_mul(1_000_000),
        end_ms.saturating_mul(1_000_000),
    )?;
    let edges = s.rollups.edges.service_map(&w, None).await?;
    let links = jaeger::dependencies(&edges);
    let n = links.len();
    Ok(envelope(json!(links), n))
}
