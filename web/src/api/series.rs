//! Metric endpoints: `GET /api/v1/metrics` (the catalogue),
//! `/metrics/rate`, `/metrics/gauge` and `/metrics/quantile`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::{ApiError, ApiQuery, Params, WindowParams, listed, required, window};
use crate::WebState;

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
            .map(analytics::series::parse_group_by)
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
pub async fn list(
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
pub async fn rate(
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
pub async fn gauge(
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
pub async fn quantile(
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
