//! Fault injection, controlled at runtime through each service's admin
//! endpoint (`GET`/`PUT`/`DELETE /admin/chaos`): error rate, added latency
//! (fixed + jitter), full outage, slow dependency; for the whole service or
//! one route; optionally for a limited time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use rand::Rng as _;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// One fault, as set through the admin endpoint (and the CLI).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Fault {
    /// `"POST /charges"` (one method and route), `"/charges"` (any method)
    /// or absent (every route).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Fraction of requests answered 500, in [0, 1].
    pub error_rate: f64,
    /// Added latency per request, milliseconds.
    pub latency_ms: u64,
    /// Up to this many milliseconds more, uniformly random.
    pub jitter_ms: u64,
    /// Answer every request 503.
    pub outage: bool,
    /// Calls from this service to that one get `dependency_latency_ms` added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slow_dependency: Option<String>,
    /// See `slow_dependency`.
    pub dependency_latency_ms: u64,
    /// How long the fault lasts; absent = until cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_secs: Option<f64>,
    /// Set by the service: when the fault ends (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl Fault {
    /// Checks ranges; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate must be within [0, 1], got {}",
                self.error_rate
            ));
        }
        if let Some(s) = self.for_secs
            && !(s.is_finite() && s > 0.0)
        {
            return Err(format!("for_secs must be a positive number, got {s}"));
        }
        if self.slow_dependency.is_some() != (self.dependency_latency_ms > 0) {
            return Err("slow_dependency and dependency_latency_ms go together".into());
        }
        if let Some(r) = &self.route
            && !r.contains('/')
        {
            return Err(format!(
                "route must look like \"POST /charges\" or \"/charges\", got {r:?}"
            ));
        }
        Ok(())
    }

    fn matches(&self, method: &str, route: &str) -> bool {
        match &self.route {
            None => true,
            Some(r) => match r.split_once(' ') {
                Some((m, p)) => m.eq_ignore_ascii_case(method) && p == route,
                None => r == route,
            },
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The active faults of one service.
#[derive(Clone, Default)]
pub struct Chaos {
    faults: Arc<Mutex<Vec<Fault>>>,
}

impl Chaos {
    /// Adds `fault`, replacing one for the same route (and dependency).
    pub fn set(&self, mut fault: Fault) -> Result<Fault, String> {
        fault.validate()?;
        fault.expires_at_ms = fault
            .for_secs
            .map(|s| now_ms() + (s * 1000.0).round() as u64);
        let mut faults = self.faults.lock().expect("chaos lock");
        faults.retain(|f| !(f.route == fault.route && f.slow_dependency == fault.slow_dependency));
        faults.push(fault.clone());
        Ok(fault)
    }

    /// Removes every fault.
    pub fn clear(&self) {
        self.faults.lock().expect("chaos lock").clear();
    }

    /// The faults still in force.
    pub fn active(&self) -> Vec<Fault> {
        let now = now_ms();
        let mut faults = self.faults.lock().expect("chaos lock");
        faults.retain(|f| f.expires_at_ms.is_none_or(|t| t > now));
        faults.clone()
    }

    /// Extra delay for a call to `service`.
    pub fn dependency_delay(&self, service: &str) -> Duration {
        let ms = self
            .active()
            .iter()
            .filter(|f| f.slow_dependency.as_deref() == Some(service))
            .map(|f| f.dependency_latency_ms)
            .max()
            .unwrap_or(0);
        Duration::from_millis(ms)
    }
}

/// Axum middleware (install with `route_layer`, inside the span layer):
/// applies the faults that match the request's route.
pub async fn inject(
    State(chaos): State<Chaos>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = matched.as_ref().map(|m| m.as_str()).unwrap_or("");
    let method = req.method().as_str().to_string();
    let faults: Vec<Fault> = chaos
        .active()
        .into_iter()
        .filter(|f| f.matches(&method, route))
        .collect();
    if faults.is_empty() {
        return next.run(req).await;
    }
    let (delay, fail, outage) = {
        let mut rng = rand::rng();
        let mut delay = 0u64;
        let mut fail = false;
        for f in &faults {
            let jitter = if f.jitter_ms > 0 {
                rng.random_range(0..=f.jitter_ms)
            } else {
                0
            };
            delay = delay.max(f.latency_ms + jitter);
            if f.error_rate > 0.0 && rng.random_bool(f.error_rate) {
                fail = true;
            }
        }
        (delay, fail, faults.iter().any(|f| f.outage))
    };
    if outage {
        return AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable (chaos: outage)",
        )
        .into_response();
    }
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if fail {
        return AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (chaos: injected fault)",
        )
        .into_response();
    }
    next.run(req).await
}

/// `GET /admin/chaos` lists, `PUT` adds a fault, `DELETE` clears all.
pub fn admin_router(chaos: Chaos) -> Router {
    Router::new()
        .route(
            "/admin/chaos",
            get(list).put(put_fault).delete(clear_faults),
        )
        .with_state(chaos)
}

async fn list(State(chaos): State<Chaos>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "faults": chaos.active() }))
}

async fn put_fault(
    State(chaos): State<Chaos>,
    body: Result<Json<Fault>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, AppError> {
    let Json(fault) = body.map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let fault = chaos
        .set(fault)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e))?;
    tracing::warn!(?fault, "chaos fault set");
    Ok(Json(serde_json::json!({ "fault": fault })))
}

async fn clear_faults(State(chaos): State<Chaos>) -> StatusCode {
    chaos.clear();
    tracing::warn!("chaos cleared");
    StatusCode::NO_CONTENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_matching_replacement_and_expiry() {
        let chaos = Chaos::default();
        chaos
            .set(Fault {
                route: Some("POST /charges".into()),
                error_rate: 0.5,
                ..Default::default()
            })
            .unwrap();
        chaos
            .set(Fault {
                route: Some("POST /charges".into()),
                error_rate: 0.2,
                ..Default::default()
            })
            .unwrap();
        let active = chaos.active();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].error_rate, 0.2);
        assert!(active[0].matches("POST", "/charges"));
        assert!(!active[0].matches("GET", "/charges"));
        let any = Fault {
            route: Some("/refunds".into()),
            ..Default::default()
        };
        assert!(any.matches("DELETE", "/refunds"));
        assert!(Fault::default().matches("GET", "/x"));

        chaos
            .set(Fault {
                slow_dependency: Some("payments".into()),
                dependency_latency_ms: 300,
                for_secs: Some(0.05),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            chaos.dependency_delay("payments"),
            Duration::from_millis(300)
        );
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(chaos.dependency_delay("payments"), Duration::ZERO);
        chaos.clear();
        assert!(chaos.active().is_empty());
    }

    #[test]
    fn bad_faults_are_named() {
        let chaos = Chaos::default();
        let e = chaos
            .set(Fault {
                error_rate: 1.5,
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("error_rate"), "{e}");
        let e = chaos
            .set(Fault {
                slow_dependency: Some("x".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("dependency_latency_ms"), "{e}");
    }
}
