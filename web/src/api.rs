//! The JSON API under `/api/v1/`. Errors always have one shape:
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use store::sql::{QueryError, QueryResult};

use crate::WebState;

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

/// Body of `POST /api/v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One read-only SQL query.
    pub sql: String,
    /// `json` (default), `csv` or `arrow` (Arrow IPC stream). The `Accept`
    /// header (`text/csv`, `application/vnd.apache.arrow.stream`) works too.
    #[serde(default)]
    pub format: Option<String>,
    /// Most rows to return (never more than the server's limit).
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// Output formats of the query endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON rows.
    Json,
    /// CSV with a header row.
    Csv,
    /// Arrow IPC stream.
    Arrow,
}

/// The Arrow IPC stream media type.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn format_of(req: &QueryRequest, headers: &HeaderMap) -> Result<Format, ApiError> {
    match req.format.as_deref() {
        Some("json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv),
        Some("arrow") => return Ok(Format::Arrow),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_format",
                format!("unknown format {other:?}; use json, csv or arrow"),
            ));
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains("text/csv") {
        Format::Csv
    } else if accept.contains(ARROW_STREAM) {
        Format::Arrow
    } else {
        Format::Json
    })
}

/// Encodes a result in a format.
pub fn encode(result: &QueryResult, format: Format) -> Result<Vec<u8>, String> {
    let batches: Vec<&arrow::array::RecordBatch> = result.batches.iter().collect();
    match format {
        Format::Json => {
            let mut rows = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut rows);
                w.write_batches(&batches).map_err(|e| e.to_string())?;
                w.finish().map_err(|e| e.to_string())?;
            }
            let rows: serde_json::Value = if rows.is_empty() {
                serde_json::Value::Array(vec![])
            } else {
                serde_json::from_slice(&rows).map_err(|e| e.to_string())?
            };
            let columns: Vec<serde_json::Value> = result
                .schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({ "name": f.name(), "type": f.data_type().to_string() }))
                .collect();
            let body = serde_json::json!({
                "columns": columns,
                "rows": rows,
                "row_count": result.num_rows(),
                "truncated": result.truncated,
                "elapsed_ms": result.elapsed.as_secs_f64() * 1e3,
            });
            serde_json::to_vec(&body).map_err(|e| e.to_string())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if batches.is_empty() {
                    w.write(&arrow::array::RecordBatch::new_empty(result.schema.clone()))
                        .map_err(|e| e.to_string())?;
                }
                for b in &batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
            }
            Ok(out)
        }
        Format::Arrow => {
            let mut out = Vec::new();
            {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &result.schema)
                    .map_err(|e| e.to_string())?;
                for b in &batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
                w.finish().map_err(|e| e.to_string())?;
            }
            Ok(out)
        }
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
    Json(body)
}

/// `POST /api/v1/query`.
pub async fn query(
    State(s): State<WebState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("expected {{\"sql\": \"...\"}}: {e}"),
        )
    })?;
    let format = format_of(&req, &headers)?;
    let mut limits = s.query_limits.clone();
    if let Some(n) = req.max_rows {
        limits.max_rows = limits.max_rows.min(n);
    }
    let result = store::sql::run(&s.store, &req.sql, &limits).await?;
    let truncated = result.truncated;
    let bytes = tokio::task::spawn_blocking(move || encode(&result, format))
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: e.to_string(),
        })?
        .map_err(|m| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "encoding_error",
            message: m,
        })?;
    let ct = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Arrow => ARROW_STREAM,
    };
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if truncated {
        resp.headers_mut()
            .insert("x-burnwatch-truncated", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

/// Query parameters of the RED endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedParams {
    /// Window start: RFC 3339 or ns since the epoch [default: `to` minus one hour].
    pub from: Option<String>,
    /// Window end (exclusive): RFC 3339 or ns since the epoch [default: now].
    pub to: Option<String>,
    /// Service (required for operations and series).
    pub service: Option<String>,
    /// Operation (span name), for series.
    pub operation: Option<String>,
    /// Bucket width in seconds, for series [default: 60].
    pub step: Option<i64>,
    /// Most services or operations listed, the busiest first
    /// [default: 1000, at most 10000].
    pub limit: Option<usize>,
    /// Only services or operations whose name contains this (any case).
    pub search: Option<String>,
}

impl Params for RedParams {}

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

impl RedParams {
    fn window(&self) -> Result<analytics::red::Window, ApiError> {
        window(self.from.as_deref(), self.to.as_deref())
    }

    fn service(&self) -> Result<&str, ApiError> {
        required(&self.service, "service")
    }
}

impl From<analytics::red::RedError> for ApiError {
    fn from(e: analytics::red::RedError) -> Self {
        match e {
            analytics::red::RedError::BadRequest(m) => ApiError::bad_request("invalid_request", m),
            analytics::red::RedError::Query(m) => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "query_failed",
                message: m,
            },
        }
    }
}

/// `GET /api/v1/red/services`: RED per service over a window.
pub async fn red_services(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<RedParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = p.window()?;
    let rows = crate::top::top(
        s.rollups.services(&w).await?,
        crate::top::api_limit(p.limit),
        p.search.as_deref(),
        |r| r.service.as_str(),
        |r| r.requests as f64,
    );
    Ok(listed(&w, "services", rows))
}

/// `GET /api/v1/red/operations?service=S`: RED per operation of a service.
pub async fn red_operations(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<RedParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = p.window()?;
    let rows = crate::top::top(
        s.rollups.operations(p.service()?, &w).await?,
        crate::top::api_limit(p.limit),
        p.search.as_deref(),
        |r| r.operation.as_deref().unwrap_or_default(),
        |r| r.requests as f64,
    );
    Ok(listed(&w, "operations", rows))
}

/// Parameters of the metric endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricParams {
    /// Window start: RFC 3339 or ns [default: `to` minus one hour].
    pub from: Option<String>,
    /// Window end (exclusive): RFC 3339 or ns [default: now].
    pub to: Option<String>,
    /// Metric name.
    pub name: Option<String>,
    /// Bucket width, seconds [default 60].
    pub step: Option<i64>,
    /// Quantile between 0 and 1, for `/metrics/quantile` [default 0.95].
    pub q: Option<f64>,
    /// Comma-separated keys to group by (`service.name` or data point
    /// attribute keys) [default: one group of everything].
    pub group_by: Option<String>,
}

impl Params for MetricParams {}

impl MetricParams {
    fn parts(&self) -> Result<(analytics::red::Window, &str, i64, Vec<String>), ApiError> {
        let group_by = self
            .group_by
            .as_deref()
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok((
            window(self.from.as_deref(), self.to.as_deref())?,
            required(&self.name, "name")?,
            self.step.unwrap_or(60),
            group_by,
        ))
    }
}

/// `GET /api/v1/metrics`: metric names, types, units, services and attribute keys.
pub async fn metrics_list(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<WindowParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = p.window()?;
    let metrics = crate::top::top(
        analytics::series::list(&s.store, &w).await?,
        crate::top::api_limit(p.limit),
        p.search.as_deref(),
        |m| m.name.as_str(),
        |m| m.points as f64,
    );
    Ok(listed(&w, "metrics", metrics))
}

/// `GET /api/v1/metrics/rate?name=N[&step=60][&group_by=k1,k2]`: per-second
/// rate of a counter, per group.
pub async fn metrics_rate(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<MetricParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (w, name, step, group_by) = p.parts()?;
    let series = analytics::series::counter_rate(&s.store, name, &w, step, &group_by).await?;
    Ok(Json(
        serde_json::json!({ "from": w.from_ns, "to": w.to_ns, "step": step, "group_by": group_by, "series": series }),
    ))
}

/// `GET /api/v1/metrics/gauge?name=N[&step=60][&group_by=k1,k2]`: a gauge's
/// average, minimum, maximum and last value per bucket, per group.
pub async fn metrics_gauge(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<MetricParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (w, name, step, group_by) = p.parts()?;
    let series = analytics::series::gauge(&s.store, name, &w, step, &group_by).await?;
    Ok(Json(
        serde_json::json!({ "from": w.from_ns, "to": w.to_ns, "step": step, "group_by": group_by, "series": series }),
    ))
}

/// `GET /api/v1/metrics/quantile?name=N[&q=0.95][&step=60][&group_by=k1,k2]`:
/// a quantile, the count, sum and average of a histogram metric, per group.
pub async fn metrics_quantile(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<MetricParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (w, name, step, group_by) = p.parts()?;
    let q = p.q.unwrap_or(0.95);
    let series = analytics::series::histogram(&s.store, name, q, &w, step, &group_by).await?;
    Ok(Json(
        serde_json::json!({ "from": w.from_ns, "to": w.to_ns, "step": step, "q": q, "group_by": group_by, "series": series }),
    ))
}

/// `GET /api/v1/service-map`: caller -> callee edges with RED per edge.
pub async fn service_map(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<WindowParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = p.window()?;
    let search = p.search.as_deref().map(str::to_lowercase);
    let edges: Vec<_> = analytics::red::service_map(&s.store, &w)
        .await?
        .into_iter()
        .filter(|e| {
            search.as_deref().is_none_or(|q| {
                e.caller.to_lowercase().contains(q) || e.callee.to_lowercase().contains(q)
            })
        })
        .collect();
    let edges = crate::top::top(
        edges,
        crate::top::api_limit(p.limit),
        None,
        |e| e.caller.as_str(),
        |e| e.calls as f64,
    );
    Ok(listed(&w, "edges", edges))
}

/// `GET /api/v1/red/series?service=S[&operation=O][&step=60]`: RED as a time series.
pub async fn red_series(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<RedParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = p.window()?;
    let step = p.step.unwrap_or(60);
    let points = s
        .rollups
        .series(p.service()?, p.operation.as_deref(), &w, step)
        .await?;
    Ok(Json(
        serde_json::json!({ "from": w.from_ns, "to": w.to_ns, "step": step, "points": points }),
    ))
}

impl From<analytics::search::ExploreError> for ApiError {
    fn from(e: analytics::search::ExploreError) -> Self {
        match e {
            analytics::search::ExploreError::BadRequest(m) => {
                ApiError::bad_request("invalid_request", m)
            }
            analytics::search::ExploreError::Query(m) => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "query_failed",
                message: m,
            },
        }
    }
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

impl Params for analytics::search::TraceSearch {
    const ATTRIBUTES: bool = true;
}

impl Params for analytics::search::LogSearch {
    const ATTRIBUTES: bool = true;
}

/// `GET /api/v1/traces/{trace_id}`: every span of a trace and its logs.
pub async fn trace(
    State(s): State<WebState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let v = analytics::search::trace(&s.rollups.traces, &id).await?;
    if v["spans"].as_array().is_some_and(|a| a.is_empty()) {
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "trace_not_found",
            message: format!("no spans with trace id {id}"),
        });
    }
    Ok(Json(v))
}

/// `GET /api/v1/traces?service=&operation=&status=&min_duration_ms=&max_duration_ms=&attribute=k=v&from=&to=&limit=`.
pub async fn search_traces(
    State(s): State<WebState>,
    ApiQuery {
        params: f,
        attributes,
    }: ApiQuery<analytics::search::TraceSearch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = window(f.from.as_deref(), f.to.as_deref())?;
    Ok(Json(
        analytics::search::search_traces(&s.store, &f, &attributes, w.from_ns, w.to_ns).await?,
    ))
}

/// `GET /api/v1/logs?q=&regex=&min_severity=&service=&trace_id=&attribute=k=v&from=&to=&limit=`.
pub async fn search_logs(
    State(s): State<WebState>,
    ApiQuery {
        params: f,
        attributes,
    }: ApiQuery<analytics::search::LogSearch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = window(f.from.as_deref(), f.to.as_deref())?;
    Ok(Json(
        analytics::search::search_logs(&s.store, &f, &attributes, w.from_ns, w.to_ns).await?,
    ))
}
