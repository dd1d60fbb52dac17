//! The Prometheus HTTP API under `/prometheus` (so
//! `http://host:8080/prometheus` is a Grafana Prometheus data-source URL):
//! `api/v1/query`, `query_range`, `series`, `labels`,
//! `label/<name>/values`, `metadata`, `query_exemplars` and
//! `status/buildinfo`, GET and POST form, with Prometheus's JSON shapes,
//! status codes and `errorType`s. Reads need the viewer role.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use promql::{Engine, EngineOptions, Error, MatchOp, Matcher, Value};
use serde_json::{Value as Json, json};

use crate::WebState;

/// The Prometheus version whose API this one follows.
pub const COMPATIBLE_VERSION: &str = "2.42.0";

/// Most points one range query may return per series (as Prometheus).
const MAX_POINTS: i64 = 11_000;

/// Every `/prometheus/api/v1/` route.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/prometheus/api/v1/query", get(query).post(query))
        .route(
            "/prometheus/api/v1/query_range",
            get(query_range).post(query_range),
        )
        .route("/prometheus/api/v1/series", get(series).post(series))
        .route("/prometheus/api/v1/labels", get(labels).post(labels))
        .route("/prometheus/api/v1/label/{name}/values", get(label_values))
        .route("/prometheus/api/v1/metadata", get(metadata))
        .route(
            "/prometheus/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/prometheus/api/v1/status/buildinfo", get(buildinfo))
}

/// A failed call, in Prometheus's error shape.
#[derive(Debug)]
pub struct PromError(Error);

impl From<Error> for PromError {
    fn from(e: Error) -> Self {
        PromError(e)
    }
}

fn bad(msg: impl Into<String>) -> PromError {
    PromError(Error::BadData(msg.into()))
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "PromQL request failed");
        }
        let body = json!({"status": "error", "errorType": self.0.error_type(), "error": self.0.to_string()});
        (status, axum::Json(body)).into_response()
    }
}

fn success(data: Json) -> Response {
    axum::Json(json!({"status": "success", "data": data})).into_response()
}

/// The parameters of a call: the query string and, for POST, the form body.
#[derive(Debug, Default)]
struct Params(Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Params {
    type Rejection = PromError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Params, PromError> {
        let (parts, body) = req.into_parts();
        let req = axum::extract::Request::from_parts(parts.clone(), body);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| bad(format!("cannot read the body: {e}")))?;
        Params::read(&parts.method, &parts.uri, &parts.headers, &body)
    }
}

impl Params {
    fn read(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Params, PromError> {
        let mut pairs: Vec<(String, String)> = match uri.query() {
            Some(q) => serde_urlencoded::from_str(q)
                .map_err(|e| bad(format!("invalid query string: {e}")))?,
            None => Vec::new(),
        };
        if *method == Method::POST && !body.is_empty() {
            let form = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if !form {
                return Err(bad("POST bodies must be application/x-www-form-urlencoded"));
            }
            let more: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
                .map_err(|e| bad(format!("invalid form body: {e}")))?;
            pairs.extend(more);
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn time(&self, name: &str, default: i64) -> Result<i64, PromError> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(s) => parse_time(s).map_err(|e| bad(format!("invalid parameter \"{name}\": {e}"))),
        }
    }
}

/// A Prometheus time: Unix seconds (fractions allowed) or RFC 3339; ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (f * 1000.0).round();
        if ms.abs() > 9.2e15 {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok(ms as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// A Prometheus duration (`1m30s`, `5m`, `250ms`) or float seconds; ms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.2e15 {
            return Err(format!("cannot parse {s:?} to a valid duration"));
        }
        return Ok(ms as i64);
    }
    promql::parse_duration(s).ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

fn now_ms() -> i64 {
    store::now_ns() / 1_000_000
}

/// A sample value as Prometheus writes it.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn ts(t: i64) -> Json {
    json!(t as f64 / 1000.0)
}

fn labels_json(l: &promql::Labels) -> Json {
    Json::Object(
        l.0.iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect(),
    )
}

/// The `data` of a query result.
pub fn result_json(v: &Value) -> Json {
    match v {
        Value::Scalar(t, f) => {
            json!({"resultType": "scalar", "result": [ts(*t), format_value(*f)]})
        }
        Value::String(t, s) => json!({"resultType": "string", "result": [ts(*t), s]}),
        Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples.iter().map(|s| json!({"metric": labels_json(&s.labels), "value": [ts(s.t), format_value(s.v)]})).collect::<Vec<_>>()
        }),
        Value::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series.iter().map(|s| json!({
                "metric": labels_json(&s.labels),
                "values": s.samples.iter().map(|(t, v)| json!([ts(*t), format_value(*v)])).collect::<Vec<_>>()
            })).collect::<Vec<_>>()
        }),
    }
}

fn engine(p: &Params) -> Result<Engine, PromError> {
    let mut options = EngineOptions::default();
    if let Some(t) = p.get("timeout").filter(|t| !t.is_empty()) {
        let ms =
            parse_duration(t).map_err(|e| bad(format!("invalid parameter \"timeout\": {e}")))?;
        if ms > 0 {
            options.timeout = options.timeout.min(Duration::from_millis(ms as u64));
        }
    }
    Ok(Engine::new(options))
}

fn source(s: &WebState) -> Source {
    Source {
        prom: analytics::prom::PromSource::with_rollups(s.rollups.clone()),
        slo: s.slo.clone(),
    }
}

/// Everything PromQL reads: stored metrics and span metrics
/// ([`analytics::prom::PromSource`]) and, with an SLO engine, the SLOs as
/// Sloth's series ([`slo_engine::sloth`]).
struct Source {
    prom: analytics::prom::PromSource,
    slo: Option<std::sync::Arc<slo_engine::engine::SloEngine>>,
}

impl Source {
    async fn series(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        with_samples: bool,
    ) -> Result<Vec<promql::Series>, Error> {
        let mut out = self
            .prom
            .series(matchers, start_ms, end_ms, with_samples)
            .await?;
        if let Some(engine) = &self.slo {
            let names: Vec<&Matcher> = matchers.iter().filter(|m| m.name == "__name__").collect();
            if slo_engine::sloth::wanted(engine.slos(), &names) {
                out.extend(
                    slo_engine::sloth::series(engine, matchers, start_ms, end_ms, with_samples)
                        .await
                        .map_err(Error::Execution)?,
                );
            }
        }
        Ok(out)
    }

    async fn catalog(
        &self,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<analytics::prom::Family>, Error> {
        let mut out = self.prom.catalog(start_ms, end_ms).await?;
        if let Some(engine) = &self.slo {
            out.extend(
                slo_engine::sloth::names(engine.slos())
                    .into_iter()
                    .map(|(name, help)| analytics::prom::Family {
                        stored: String::new(),
                        metric_type: "gauge".into(),
                        remote_write: false,
                        monotonic: false,
                        temporality: String::new(),
                        unit: String::new(),
                        help: help.into(),
                        name,
                        prom_type: "gauge",
                    }),
            );
        }
        Ok(out)
    }

    async fn exemplars(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(promql::Labels, Vec<analytics::prom::Exemplar>)>, Error> {
        self.prom.exemplars(matchers, start_ms, end_ms).await
    }
}

#[async_trait::async_trait]
impl promql::Queryable for Source {
    async fn select(&self, selection: &promql::Selection) -> Result<Vec<promql::Series>, Error> {
        self.series(
            &selection.matchers,
            selection.start_ms,
            selection.end_ms,
            true,
        )
        .await
    }
}

async fn query(State(s): State<WebState>, p: Params) -> Result<Response, PromError> {
    let q = p
        .get("query")
        .ok_or_else(|| bad("invalid parameter \"query\": query must not be empty"))?;
    let at = p.time("time", now_ms())?;
    let v = engine(&p)?.instant(&source(&s), q, at).await?;
    Ok(success(result_json(&v)))
}

async fn query_range(State(s): State<WebState>, p: Params) -> Result<Response, PromError> {
    let q = p
        .get("query")
        .ok_or_else(|| bad("invalid parameter \"query\": query must not be empty"))?;
    let need = |n: &str| {
        p.get(n)
            .ok_or_else(|| bad(format!("invalid parameter \"{n}\": missing")))
    };
    let start =
        parse_time(need("start")?).map_err(|e| bad(format!("invalid parameter \"start\": {e}")))?;
    let end =
        parse_time(need("end")?).map_err(|e| bad(format!("invalid parameter \"end\": {e}")))?;
    if end < start {
        return Err(bad(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let step = parse_duration(need("step")?)
        .map_err(|e| bad(format!("invalid parameter \"step\": {e}")))?;
    if step <= 0 {
        return Err(bad(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(bad(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let v = engine(&p)?.range(&source(&s), q, start, end, step).await?;
    Ok(success(result_json(&v)))
}

/// The matchers of one `match[]` selector.
pub fn selector_matchers(s: &str) -> Result<Vec<Matcher>, PromError> {
    use promql_parser::label::MatchOp as P;
    let expr = promql_parser::parser::parse(s)
        .map_err(|e| bad(format!("invalid parameter \"match[]\": {e}")))?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(bad(format!(
            "invalid parameter \"match[]\": {s:?} is not a series selector"
        )));
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(bad(
            "invalid parameter \"match[]\": `or` in selectors is not supported",
        ));
    }
    let mut out = Vec::new();
    if let Some(n) = vs.name {
        out.push(Matcher {
            name: "__name__".into(),
            op: MatchOp::Equal,
            value: n,
        });
    }
    for m in vs.matchers.matchers {
        let op = match m.op {
            P::Equal => MatchOp::Equal,
            P::NotEqual => MatchOp::NotEqual,
            P::Re(_) => MatchOp::Re,
            P::NotRe(_) => MatchOp::NotRe,
        };
        out.push(Matcher {
            name: m.name,
            op,
            value: m.value,
        });
    }
    Ok(out)
}

fn range_params(p: &Params) -> Result<(i64, i64), PromError> {
    let start = p.time("start", i64::MIN / 2_000_000)?;
    let end = p.time("end", i64::MAX / 2_000_000)?;
    Ok((start, end))
}

async fn matching_series(
    s: &WebState,
    p: &Params,
    require: bool,
) -> Result<Option<BTreeSet<promql::Labels>>, PromError> {
    let selectors = p.all("match[]");
    if selectors.is_empty() {
        if require {
            return Err(bad("no match[] parameter provided"));
        }
        return Ok(None);
    }
    let (start, end) = range_params(p)?;
    let src = source(s);
    let mut out = BTreeSet::new();
    for sel in selectors {
        let m = selector_matchers(sel)?;
        for series in src.series(&m, start, end, false).await? {
            out.insert(series.labels);
        }
    }
    Ok(Some(out))
}

async fn series(State(s): State<WebState>, p: Params) -> Result<Response, PromError> {
    let set = matching_series(&s, &p, true).await?.unwrap_or_default();
    Ok(success(Json::Array(set.iter().map(labels_json).collect())))
}

async fn all_series(s: &WebState, p: &Params) -> Result<BTreeSet<promql::Labels>, PromError> {
    if let Some(set) = matching_series(s, p, false).await? {
        return Ok(set);
    }
    let (start, end) = range_params(p)?;
    let any = [Matcher {
        name: "__name__".into(),
        op: MatchOp::Re,
        value: ".+".into(),
    }];
    Ok(source(s)
        .series(&any, start, end, false)
        .await?
        .into_iter()
        .map(|x| x.labels)
        .collect())
}

async fn labels(State(s): State<WebState>, p: Params) -> Result<Response, PromError> {
    let names: BTreeSet<String> = all_series(&s, &p)
        .await?
        .iter()
        .flat_map(|l| l.0.iter().map(|(k, _)| k.clone()))
        .collect();
    Ok(success(json!(names)))
}

async fn label_values(
    State(s): State<WebState>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response, PromError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad(format!("invalid label name: {name:?}")));
    }
    let (start, end) = range_params(&p)?;
    let values: BTreeSet<String> = if name == "__name__" && p.all("match[]").is_empty() {
        // Names come from the catalogue without reading series.
        source(&s)
            .catalog(start, end)
            .await?
            .iter()
            .flat_map(|f| f.series_names())
            .collect()
    } else {
        all_series(&s, &p)
            .await?
            .iter()
            .filter_map(|l| l.get(&name).map(str::to_string))
            .collect()
    };
    Ok(success(json!(values)))
}

async fn metadata(State(s): State<WebState>, p: Params) -> Result<Response, PromError> {
    let limit = match p.get("limit") {
        Some(l) if !l.is_empty() => l
            .parse::<i64>()
            .map_err(|_| bad("invalid parameter \"limit\""))?,
        _ => -1,
    };
    let metric = p.get("metric").filter(|m| !m.is_empty());
    let mut out: BTreeMap<String, Vec<Json>> = BTreeMap::new();
    for f in source(&s)
        .catalog(i64::MIN / 2_000_000, i64::MAX / 2_000_000)
        .await?
    {
        if metric.is_some_and(|m| m != f.name) {
            continue;
        }
        let entry = json!({"type": f.prom_type, "help": f.help, "unit": f.unit});
        let list = out.entry(f.name.clone()).or_default();
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
    if limit >= 0 {
        out = out.into_iter().take(limit as usize).collect();
    }
    Ok(success(json!(out)))
}

async fn query_exemplars(State(s): State<WebState>, p: Params) -> Result<Response, PromError> {
    let q = p
        .get("query")
        .ok_or_else(|| bad("invalid parameter \"query\": query must not be empty"))?;
    let (start, end) = range_params(&p)?;
    if end < start {
        return Err(bad(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    let expr = promql_parser::parser::parse(q)
        .map_err(|e| bad(format!("invalid parameter \"query\": {e}")))?;
    let mut selectors = Vec::new();
    collect_selectors(&expr, &mut selectors);
    let src = source(&s);
    let mut by_series: BTreeMap<promql::Labels, Vec<Json>> = BTreeMap::new();
    for sel in selectors {
        let m = selector_matchers(&sel)?;
        for (labels, ex) in src.exemplars(&m, start, end).await? {
            by_series.entry(labels).or_default().extend(ex.into_iter().map(|e| {
                json!({"labels": labels_json(&e.labels), "value": format_value(e.value), "timestamp": ts(e.t)})
            }));
        }
    }
    let data: Vec<Json> = by_series
        .into_iter()
        .map(|(l, ex)| json!({"seriesLabels": labels_json(&l), "exemplars": ex}))
        .collect();
    Ok(success(Json::Array(data)))
}

/// The vector selectors of an expression, as selector text.
fn collect_selectors(e: &promql_parser::parser::Expr, out: &mut Vec<String>) {
    use promql_parser::parser::Expr as E;
    match e {
        E::Aggregate(a) => {
            collect_selectors(&a.expr, out);
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
        }
        E::Unary(u) => collect_selectors(&u.expr, out),
        E::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        E::Paren(p) => collect_selectors(&p.expr, out),
        E::Subquery(s) => collect_selectors(&s.expr, out),
        E::MatrixSelector(m) => out.push(plain_selector(&m.vs)),
        E::VectorSelector(v) => out.push(plain_selector(v)),
        E::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
        _ => {}
    }
}

fn plain_selector(v: &promql_parser::parser::VectorSelector) -> String {
    let mut plain = v.clone();
    plain.offset = None;
    plain.at = None;
    plain.to_string()
}

async fn buildinfo() -> Response {
    success(json!({
        "version": COMPATIBLE_VERSION,
        "revision": "",
        "branch": format!("burnwatch-{}", env!("CARGO_PKG_VERSION")),
        "buildUser": "burnwatch",
        "buildDate": "",
        "goVersion": "",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1700000000.123"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn selectors_become_matchers() {
        let m = selector_matchers(r#"up{job=~"a.*",x!="1"}"#).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].value, "up");
        assert_eq!(m[1].op, MatchOp::Re);
        assert!(selector_matchers("sum(up)").is_err());
    }
}
