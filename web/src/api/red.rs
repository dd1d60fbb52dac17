//! RED endpoints: `GET /api/v1/red/services`, `/red/operations`,
//! `/red/series` (from the rollups) and `GET /api/v1/service-map`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{ApiError, ApiQuery, Params, WindowParams, listed, required, window};
use crate::WebState;

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
pub async fn services(
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
pub async fn operations(
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

/// `GET /api/v1/service-map`: caller -> callee edges with RED per edge.
pub async fn service_map(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<WindowParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = p.window()?;
    let search = p.search.as_deref().map(str::to_lowercase);
    let edges: Vec<_> = s
        .rollups
        .edges
        .service_map(&w, None)
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
pub async fn series(
    State(s): State<WebState>,
    ApiQuery { params: p, .. }: ApiQuery<RedParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let w = p.window()?;
    let step = p.step.unwrap_or(60);
    let points = s
        .rollups
        .series(p.service()?, p.operation.as_deref(), &w, step)
        .await?;
    let mut body =
        serde_json::json!({ "from": w.from_ns, "to": w.to_ns, "step": step, "points": points });
    crate::cluster::annotate(&mut body);
    Ok(Json(body))
}
