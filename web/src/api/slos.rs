//! SLO and incident endpoints:
//! - `GET /api/v1/slos[?at=TIME]`: every SLO's status (the last scheduled
//!   evaluation, or a fresh one at `at` without touching incidents).
//! - `GET /api/v1/slos/{name}`: one SLO (a defined one, or an instance of
//!   a grouped one, `checkout{http.route="/cart"}` URL-encoded).
//! - `GET /api/v1/slos/{name}/instances[?at=TIME]`: a grouped SLO's
//!   instances, worst first, and the values beyond the cap.
//! - `GET /api/v1/incidents[?limit=N]`: incidents with their timelines.
//! - `POST /api/v1/incidents/{id}/ack` `{"by": "alice"}`: acknowledge.
//! - `GET /api/v1/alerts`: alert rule instances; `GET /api/v1/rules`: rule
//!   groups and their health.
//! - `GET /api/v1/silences`, `POST /api/v1/silences`, `DELETE
//!   /api/v1/silences/{id}`: silences (matchers, start, end, author).

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use serde::Deserialize;
use slo_engine::engine::SloEngine;
use slo_engine::evaluate::SloStatus;

use super::{ApiError, Engine, parse_time};

/// Query of `GET /api/v1/slos`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtParams {
    /// RFC 3339 or ns since the epoch.
    pub at: Option<String>,
}

async fn statuses(engine: &SloEngine, at: Option<&str>) -> Result<Vec<SloStatus>, ApiError> {
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
    Engine(engine): Engine,
    Query(p): Query<AtParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let statuses = statuses(&engine, p.at.as_deref()).await?;
    let groups: Vec<serde_json::Value> = engine
        .last_groups()
        .iter()
        .map(|g| {
            serde_json::json!({
                "name": g.name,
                "group_by": g.group_by,
                "instances": g.instances.len(),
                "over_cap": g.over_cap,
                "saturated": g.saturated,
                "cap": g.cap,
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "slos": statuses, "groups": groups }),
    ))
}

/// `GET /api/v1/slos/{name}/instances`.
pub async fn instances(
    Engine(engine): Engine,
    Path(name): Path<String>,
    Query(p): Query<AtParams>,
) -> Result<Json<slo_engine::evaluate::GroupStatus>, ApiError> {
    let def = engine
        .slos()
        .iter()
        .find(|s| s.name == name)
        .cloned()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no SLO named {name:?}"),
            )
        })?;
    if def.group_by.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("SLO {name:?} has no groupBy: it has no instances"),
        ));
    }
    let last = engine.last_groups().into_iter().find(|g| g.name == name);
    let group = match (p.at.as_deref(), last) {
        (None, Some(g)) => g,
        (at, _) => {
            let at = match at {
                Some(at) => parse_time("at", at)?,
                None => slo_engine::engine::now_ns(),
            };
            engine.group_at(&def, at).await.map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "evaluation_failed",
                    e.to_string(),
                )
            })?
        }
    };
    Ok(Json(group))
}

/// `GET /api/v1/slos/{name}`.
pub async fn one(
    Engine(engine): Engine,
    Path(name): Path<String>,
    Query(p): Query<AtParams>,
) -> Result<Json<SloStatus>, ApiError> {
    if let Some(st) = statuses(&engine, p.at.as_deref())
        .await?
        .into_iter()
        .find(|st| st.name == name)
    {
        return Ok(Json(st));
    }
    // A grouped SLO as a whole (all its events), or an instance not among
    // those kept.
    let def = engine.find_slo(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no SLO named {name:?}"),
        )
    })?;
    let at = match p.at.as_deref() {
        Some(at) => parse_time("at", at)?,
        None => slo_engine::engine::now_ns(),
    };
    engine.status_of(&def, at).await.map(Json).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "evaluation_failed",
            e.to_string(),
        )
    })
}

/// Query of `GET /api/v1/slos/{name}/report`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// `YYYY-MM` [default: the previous month in the SLO's time zone].
    pub month: Option<String>,
    /// `json` (default), `md` or `csv`.
    pub format: Option<String>,
}

/// `GET /api/v1/slos/{name}/report`: the SLO's month (attainment, budget
/// used, incidents with their budget, top bad operations).
pub async fn report(
    Engine(engine): Engine,
    Path(name): Path<String>,
    Query(p): Query<ReportParams>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if engine.find_slo(&name).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no SLO named {name:?}"),
        ));
    }
    let r = engine
        .month_report(&name, p.month.as_deref())
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e))?;
    Ok(match p.format.as_deref().unwrap_or("json") {
        "json" => Json(r).into_response(),
        "md" => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/markdown; charset=utf-8",
            )],
            slo_engine::report::to_markdown(&r),
        )
            .into_response(),
        "csv" => (
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            slo_engine::report::to_csv(&r),
        )
            .into_response(),
        other => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("format {other:?}: use json, md or csv"),
            ));
        }
    })
}

/// `GET /api/v1/incidents/{id}/postmortem`: a postmortem draft in
/// Markdown (timeline, burn, impact, evidence, empty cause and action
/// items), as a download.
pub async fn postmortem(
    Engine(engine): Engine,
    Path(id): Path<i64>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let md = engine
        .postmortem(id)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no incident #{id}"),
            )
        })?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/markdown; charset=utf-8".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"postmortem-{id}.md\""),
            ),
        ],
        md,
    )
        .into_response())
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
    Engine(engine): Engine,
    Query(p): Query<IncidentParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = engine
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
    Engine(engine): Engine,
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
    engine
        .acknowledge(id, ack.by.trim())
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not_open", e))?;
    Ok(Json(
        serde_json::json!({ "id": id, "state": "acknowledged", "by": ack.by.trim() }),
    ))
}

/// Body of the resolve call.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// Who resolves.
    pub by: String,
    /// Why (goes on the timeline).
    #[serde(default)]
    pub note: Option<String>,
}

/// `POST /api/v1/incidents/{id}/resolve`: closes an open or acknowledged
/// incident by hand; a resolved notification is sent.
pub async fn resolve(
    Engine(engine): Engine,
    Path(id): Path<i64>,
    body: Result<Json<Resolve>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(r) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let by = r.by.trim();
    if by.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "`by` must name who resolves",
        ));
    }
    let note = r.note.as_deref().unwrap_or("").trim();
    if note.len() > 2000 {
        return Err(ApiError::bad_request(
            "invalid_body",
            "`note` is longer than 2000 bytes",
        ));
    }
    engine
        .resolve(id, by, note)
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "not_open", e))?;
    Ok(Json(
        serde_json::json!({ "id": id, "state": "resolved", "by": by }),
    ))
}

/// `GET /api/v1/alerts`: every alert instance of the rule groups (pending,
/// firing, recently resolved) with labels, annotations, value and times.
pub async fn alerts(Engine(engine): Engine) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "alerts": engine.rules().instances() }),
    ))
}

/// `GET /api/v1/rules`: the rule groups, each rule with its health (last
/// evaluation, duration, error) and its pending and firing counts.
pub async fn rules(Engine(engine): Engine) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::json!({
        "groups": engine.rules().groups(),
        "health": engine.rules().health(),
    })))
}

/// Body of `POST /api/v1/silences`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SilenceRequest {
    /// Alertmanager-style matchers: `{"name", "value", "isRegex", "isEqual"}`
    /// objects, or strings such as `service="gateway"` or `severity=~"page|ticket"`.
    pub matchers: Vec<serde_json::Value>,
    /// Start: RFC 3339 or ns [default: now].
    pub starts_at: Option<String>,
    /// End: RFC 3339 or ns (or give `duration`).
    pub ends_at: Option<String>,
    /// Length from the start, e.g. `2h` (instead of `endsAt`).
    pub duration: Option<String>,
    /// Who silences.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

fn matcher(v: &serde_json::Value) -> Result<slo_engine::silences::Matcher, String> {
    match v {
        serde_json::Value::String(s) => slo_engine::silences::Matcher::parse(s),
        other => serde_json::from_value(other.clone()).map_err(|e| format!("matcher {other}: {e}")),
    }
}

/// `GET /api/v1/silences`: every silence with its state now.
pub async fn silences(Engine(engine): Engine) -> Result<Json<serde_json::Value>, ApiError> {
    let list = engine
        .silences()
        .list(slo_engine::engine::now_ns())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database", e.to_string()))?;
    Ok(Json(serde_json::json!({ "silences": list })))
}

/// Body of `POST /api/v1/corrections` and `PUT /api/v1/corrections/{id}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorrectionRequest {
    /// `correction` (events excluded, the default) or `maintenance`
    /// (excluded, and alerts held while it runs).
    pub kind: Option<String>,
    /// `{slo}`, `{service}`, `{labels: {k: v}}`; empty: every SLO.
    #[serde(default)]
    pub scope: slo_engine::corrections::Scope,
    /// Start: RFC 3339 or ns.
    pub from: String,
    /// End: RFC 3339 or ns (or give `duration`).
    pub to: Option<String>,
    /// Length from the start, e.g. `2h`.
    pub duration: Option<String>,
    /// Why.
    pub reason: String,
    /// Who creates or edits it.
    pub created_by: String,
}

fn correction(req: CorrectionRequest) -> Result<slo_engine::corrections::NewCorrection, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_correction", m);
    let from = parse_time("from", &req.from)?;
    let to = match (&req.to, &req.duration) {
        (Some(t), None) => parse_time("to", t)?,
        (None, Some(d)) => {
            let d =
                humantime::parse_duration(d).map_err(|e| bad(format!("duration {d:?}: {e}")))?;
            from.saturating_add(d.as_nanos().min(i64::MAX as u128) as i64)
        }
        _ => return Err(bad("give exactly one of to and duration".into())),
    };
    let n = slo_engine::corrections::NewCorrection {
        kind: req.kind,
        scope: req.scope,
        from_ns: from,
        to_ns: to,
        reason: req.reason,
        created_by: req.created_by,
    };
    n.check().map_err(bad)?;
    Ok(n)
}

/// `GET /api/v1/corrections`: every correction and maintenance window
/// (from YAML, negative ids, and through the API).
pub async fn corrections(Engine(engine): Engine) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "corrections": engine.all_corrections() }))
}

/// `POST /api/v1/corrections`: 201 with the correction.
pub async fn create_correction(
    Engine(engine): Engine,
    body: Result<Json<CorrectionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<slo_engine::corrections::Correction>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let n = correction(req)?;
    let c = engine
        .corrections()
        .create(&n, slo_engine::engine::now_ns())
        .map_err(|e| ApiError::bad_request("invalid_correction", e))?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// `PUT /api/v1/corrections/{id}`: replaces one (audited as edited).
pub async fn edit_correction(
    Engine(engine): Engine,
    Path(id): Path<i64>,
    body: Result<Json<CorrectionRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<slo_engine::corrections::Correction>, ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let n = correction(req)?;
    engine
        .corrections()
        .edit(id, &n, slo_engine::engine::now_ns())
        .map_err(|e| ApiError::bad_request("invalid_correction", e))?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no correction #{id} (those from YAML are edited in their file)"),
            )
        })
}

/// Query of `DELETE /api/v1/corrections/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Who deletes it.
    pub by: String,
}

/// `DELETE /api/v1/corrections/{id}?by=NAME`: deletes one (kept in its
/// audit trail).
pub async fn delete_correction(
    Engine(engine): Engine,
    Path(id): Path<i64>,
    Query(p): Query<DeleteParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let deleted = engine
        .corrections()
        .delete(id, &p.by, slo_engine::engine::now_ns())
        .map_err(|e| ApiError::bad_request("invalid_correction", e))?;
    if !deleted {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no correction #{id}"),
        ));
    }
    Ok(Json(serde_json::json!({ "id": id, "deleted": true })))
}

/// `GET /api/v1/corrections/{id}/audit`: created, edited, deleted, by whom.
pub async fn correction_audit(
    Engine(engine): Engine,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let a = engine
        .corrections()
        .audit(id)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database", e.to_string()))?;
    Ok(Json(serde_json::json!({ "audit": a })))
}

/// `POST /api/v1/silences`: creates a silence; 201 with its id.
pub async fn create_silence(
    Engine(engine): Engine,
    body: Result<Json<SilenceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let bad = |m: String| ApiError::bad_request("invalid_silence", m);
    let now = slo_engine::engine::now_ns();
    let matchers = req
        .matchers
        .iter()
        .map(matcher)
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    let starts = req
        .starts_at
        .as_deref()
        .map(|t| parse_time("startsAt", t))
        .transpose()?;
    let ends = match (&req.ends_at, &req.duration) {
        (Some(e), None) => parse_time("endsAt", e)?,
        (None, Some(d)) => {
            let d =
                humantime::parse_duration(d).map_err(|e| bad(format!("duration {d:?}: {e}")))?;
            starts.unwrap_or(now).saturating_add(d.as_nanos() as i64)
        }
        _ => return Err(bad("give exactly one of endsAt and duration".into())),
    };
    let new = slo_engine::silences::NewSilence {
        matchers,
        starts_at_ns: starts,
        ends_at_ns: ends,
        created_by: req.created_by,
        comment: req.comment,
    };
    let id = engine.silences().create(&new, now).map_err(bad)?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

/// `DELETE /api/v1/silences/{id}`: expires a silence now.
pub async fn expire_silence(
    Engine(engine): Engine,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let expired = engine
        .silences()
        .expire(id, slo_engine::engine::now_ns())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "database", e.to_string()))?;
    if !expired {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_active_silence",
            format!("no silence {id} that has not ended"),
        ));
    }
    Ok(Json(serde_json::json!({ "id": id, "state": "expired" })))
}
