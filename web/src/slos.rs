//! SLO and incident endpoints:
//! - `GET /api/v1/slos[?at=TIME]`: every SLO's status (the last scheduled
//!   evaluation, or a fresh one at `at` without touching incidents).
//! - `GET /api/v1/slos/{name}`: one SLO.
//! - `GET /api/v1/incidents[?limit=N]`: incidents with their timelines.
//! - `POST /api/v1/incidents/{id}/ack` `{"by": "alice"}`: acknowledge.
//! - `GET /api/v1/alerts`: alert rule instances; `GET /api/v1/rules`: rule
//!   groups and their health.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use slo_engine::engine::SloEngine;
use slo_engine::evaluate::SloStatus;

use crate::WebState;
use crate::api::{ApiError, parse_time};

fn engine(s: &WebState) -> Result<&Arc<SloEngine>, ApiError> {
    s.slo.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_slos",
            "no SLO engine is running (no rules directory)",
        )
    })
}

/// Query of `GET /api/v1/slos`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtParams {
    /// RFC 3339 or ns since the epoch.
    pub at: Option<String>,
}

async fn statuses(s: &WebState, at: Option<&str>) -> Result<Vec<SloStatus>, ApiError> {
    let engine = engine(s)?;
    match at {
        None => Ok(engine.last_statuses()),
        Some(at) => Ok(engine
            .statuses_at(parse_time("at", at)?)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "evaluation_failed",
                    e.to_string(),
                )
            })?),
    }
}

/// `GET /api/v1/slos`.
pub async fn list(
    State(s): State<WebState>,
    Query(p): Query<AtParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let statuses = statuses(&s, p.at.as_deref()).await?;
    Ok(Json(serde_json::json!({ "slos": statuses })))
}

/// `GET /api/v1/slos/{name}`.
pub async fn one(
    State(s): State<WebState>,
    Path(name): Path<String>,
    Query(p): Query<AtParams>,
) -> Result<Json<SloStatus>, ApiError> {
    statuses(&s, p.at.as_deref())
        .await?
        .into_iter()
        .find(|st| st.name == name)
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no SLO named {name:?}"),
            )
        })
}

/// Query of `GET /api/v1/incidents`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentParams {
    /// Most incidents, newest first (default 100).
    pub limit: Option<usize>,
}

/// `GET /api/v1/incidents`.
pub async fn incidents(
    State(s): State<WebState>,
    Query(p): Query<IncidentParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = engine(&s)?
        .incidents(p.limit.unwrap_or(100).min(1000))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "incident_db",
                e.to_string(),
            )
        })?;
    Ok(Json(serde_json::json!({ "incidents": list })))
}

/// Body of the acknowledge call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// Who acknowledges.
    pub by: String,
}

/// `POST /api/v1/incidents/{id}/ack`.
pub async fn acknowledge(
    State(s): State<WebState>,
    Path(id): Path<i64>,
    body: Result<Json<Ack>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(ack) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    if ack.by.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "`by` must name who acknowledges",
        ));
    }
    engine(&s)?
        .acknowledge(id, ack.by.trim())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not_open", e))?;
    Ok(Json(
        serde_json::json!({ "id": id, "state": "acknowledged", "by": ack.by.trim() }),
    ))
}

/// `GET /api/v1/alerts`: every alert instance of the rule groups (pending,
/// firing, recently resolved) with labels, annotations, value and times.
pub async fn alerts(State(s): State<WebState>) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = engine(&s)?;
    Ok(Json(
        serde_json::json!({ "alerts": engine.rules().instances() }),
    ))
}

/// `GET /api/v1/rules`: the rule groups, each rule with its health (last
/// evaluation, duration, error) and its pending and firing counts.
pub async fn rules(State(s): State<WebState>) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = engine(&s)?;
    Ok(Json(serde_json::json!({
        "groups": engine.rules().groups(),
        "health": engine.rules().health(),
    })))
}
