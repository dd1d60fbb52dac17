//! A read-only Loki query API under `/loki` (so `http://host:8080/loki`
//! is a Grafana Loki data-source URL, the target of trace-to-logs):
//! `api/v1/query_range`, `api/v1/query`, `api/v1/labels` and
//! `api/v1/label/{name}/values`, with Loki's JSON shapes. The query
//! language is LogQL's log-query subset of [`analytics::loki`]; a metric
//! query answers 400, except constant expressions (`vector(1)+1`, which
//! Grafana's "Save & test" sends), evaluated as PromQL. Errors are plain
//! text with 400 (bad parameters or query) or 500, as Loki's.

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use analytics::loki::{self, LogQuery};
use analytics::search::ExploreError;

use crate::WebState;

const HOUR_NS: i64 = 3_600_000_000_000;

/// Every `/loki/api/v1/` route.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/loki/api/v1/query_range", get(query_range))
        .route("/loki/api/v1/query", get(query))
        .route("/loki/api/v1/labels", get(labels))
        .route("/loki/api/v1/label/{name}/values", get(label_values))
}

/// A failed call: Loki answers errors as plain text.
#[derive(Debug)]
pub struct LokiError(StatusCode, String);

impl From<ExploreError> for LokiError {
    fn from(e: ExploreError) -> Self {
        match e {
            ExploreError::BadRequest(m) => LokiError(StatusCode::BAD_REQUEST, m),
            ExploreError::Query(m) => LokiError(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        if self.0 == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.1, "Loki API request failed");
        }
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.1),
        )
            .into_response()
    }
}

fn bad(m: impl Into<String>) -> LokiError {
    LokiError(StatusCode::BAD_REQUEST, m.into())
}

fn pairs(q: Option<String>) -> Result<Vec<(String, String)>, LokiError> {
    match q {
        Some(q) => {
            serde_urlencoded::from_str(&q).map_err(|e| bad(format!("invalid query string: {e}")))
        }
        None => Ok(Vec::new()),
    }
}

fn one<'a>(p: &'a [(String, String)], key: &str) -> Option<&'a str> {
    p.iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

/// A Loki time: ns since the epoch, (fractional) seconds, or RFC 3339.
fn time(name: &str, v: &str) -> Result<i64, LokiError> {
    let v = v.trim();
    if let Ok(n) = v.parse::<i64>() {
        // Loki reads integers as ns; small ones can only be seconds.
        return Ok(if n.abs() < 100_000_000_000 {
            n.saturating_mul(1_000_000_000)
        } else {
            n
        });
    }
    if let Ok(f) = v.parse::<f64>()
        && f.is_finite()
    {
        return Ok((f * 1e9) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            bad(format!(
                "invalid parameter {name}: {v:?} is not a time (ns, seconds or RFC 3339)"
            ))
        })
}

fn limit(p: &[(String, String)]) -> Result<usize, LokiError> {
    match one(p, "limit") {
        None => Ok(100),
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n as usize),
            _ => Err(bad(format!(
                "invalid parameter limit: {l:?} must be a positive integer"
            ))),
        },
    }
}

fn forward(p: &[(String, String)]) -> Result<bool, LokiError> {
    match one(p, "direction").map(str::to_ascii_lowercase).as_deref() {
        None | Some("backward") => Ok(false),
        Some("forward") => Ok(true),
        Some(other) => Err(bad(format!(
            "invalid parameter direction: {other:?} (use forward or backward)"
        ))),
    }
}

/// `[start, end]` from `start`/`end`/`since` (default: the hour before now).
fn range(p: &[(String, String)]) -> Result<(i64, i64), LokiError> {
    let end = match one(p, "end") {
        Some(e) => time("end", e)?,
        None => store::now_ns(),
    };
    let start = match (one(p, "start"), one(p, "since")) {
        (Some(s), _) => time("start", s)?,
        (None, Some(since)) => end.saturating_sub(
            promql::parse_duration(since)
                .ok_or_else(|| {
                    bad(format!(
                        "invalid parameter since: {since:?} is not a duration like 1h or 30m"
                    ))
                })?
                .saturating_mul(1_000_000),
        ),
        (None, None) => end.saturating_sub(HOUR_NS),
    };
    if end < start {
        return Err(bad("the query time range is invalid: end is before start"));
    }
    Ok((start, end))
}

fn streams_json(streams: Vec<loki::Stream>) -> Value {
    let result: Vec<Value> = streams
        .into_iter()
        .map(|s| {
            let values: Vec<Value> = s
                .values
                .into_iter()
                .map(|(t, line)| json!([t.to_string(), line]))
                .collect();
            json!({
                "stream": { "service_name": s.service, "level": s.level },
                "values": values,
            })
        })
        .collect();
    json!({
        "status": "success",
        "data": { "resultType": "streams", "result": result, "stats": {} },
    })
}

async fn logs(
    s: &WebState,
    q: &str,
    from: i64,
    to: i64,
    p: &[(String, String)],
) -> Result<Response, LokiError> {
    let parsed = LogQuery::parse(q)?;
    let streams = loki::query(&s.store, &parsed, from, to, limit(p)?, forward(p)?).await?;
    Ok(axum::Json(streams_json(streams)).into_response())
}

/// `GET /loki/api/v1/query_range?query=&start=&end=&limit=&direction=&since=`.
pub async fn query_range(
    State(s): State<WebState>,
    RawQuery(q): RawQuery,
) -> Result<Response, LokiError> {
    let p = pairs(q)?;
    let query = one(&p, "query").ok_or_else(|| bad("query parameter is required"))?;
    if !loki::is_log_query(query) {
        return Err(bad(
            "metric queries over logs are not supported; send a log query such as {service_name=\"checkout\"} |= \"error\"",
        ));
    }
    let (from, to) = range(&p)?;
    logs(&s, query, from, to, &p).await
}

/// `GET /loki/api/v1/query?query=&time=&limit=&direction=`: a log query
/// over the hour before `time`, or a constant expression.
pub async fn query(
    State(s): State<WebState>,
    RawQuery(q): RawQuery,
) -> Result<Response, LokiError> {
    let p = pairs(q)?;
    let query = one(&p, "query").ok_or_else(|| bad("query parameter is required"))?;
    let at = match one(&p, "time") {
        Some(t) => time("time", t)?,
        None => store::now_ns(),
    };
    if loki::is_log_query(query) {
        return logs(&s, query, at.saturating_sub(HOUR_NS), at, &p).await;
    }
    if query.contains('{') {
        return Err(bad(
            "metric queries over logs are not supported; send a log query such as {service_name=\"checkout\"}",
        ));
    }
    // A constant expression: PromQL over no series.
    struct Nothing;
    #[async_trait::async_trait]
    impl promql::Queryable for Nothing {
        async fn select(
            &self,
            _: &promql::Selection,
        ) -> Result<Vec<promql::Series>, promql::Error> {
            Ok(Vec::new())
        }
    }
    let at_ms = at.div_euclid(1_000_000);
    let v = promql::Engine::new(promql::EngineOptions::default())
        .instant(&Nothing, query, at_ms)
        .await
        .map_err(|e| bad(format!("parse error: {e}")))?;
    let ts = at_ms as f64 / 1000.0;
    let fmt = |v: f64| {
        if v.is_finite() {
            format!("{v}")
        } else if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    };
    let data = match v {
        promql::Value::Scalar(_, x) => json!({"resultType": "scalar", "result": [ts, fmt(x)]}),
        promql::Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples.iter().map(|x| json!({
                "metric": x.labels.0.iter().filter(|(k, _)| k != "__name__").map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "value": [ts, fmt(x.v)],
            })).collect::<Vec<_>>(),
        }),
        _ => return Err(bad("unsupported expression: use a log query or a constant")),
    };
    Ok(axum::Json(json!({"status": "success", "data": data})).into_response())
}

/// `GET /loki/api/v1/labels`: the stream labels.
pub async fn labels(RawQuery(q): RawQuery) -> Result<Response, LokiError> {
    let p = pairs(q)?;
    range(&p)?;
    Ok(axum::Json(json!({"status": "success", "data": loki::LABELS})).into_response())
}

/// `GET /loki/api/v1/label/{name}/values`.
pub async fn label_values(
    State(s): State<WebState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, LokiError> {
    let p = pairs(q)?;
    let (from, to) = range(&p)?;
    let values = loki::label_values(&s.store, &name, from, to).await?;
    Ok(axum::Json(json!({"status": "success", "data": values})).into_response())
}
