//! Trace and log endpoints: `GET /api/v1/traces/{trace_id}` (a trace and
//! its logs), `GET /api/v1/traces` and `GET /api/v1/logs` (search).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::{ApiError, ApiQuery, Params, window};
use crate::WebState;

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
        analytics::search::search_traces(
            &s.store,
            Some(&s.rollups.traces),
            &f,
            &attributes,
            w.from_ns,
            w.to_ns,
        )
        .await?,
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
        analytics::search::search_logs(
            &s.store,
            Some(&s.rollups.texts),
            &f,
            &attributes,
            w.from_ns,
            w.to_ns,
        )
        .await?,
    ))
}
