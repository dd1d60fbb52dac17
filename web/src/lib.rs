//! Burnwatch's HTTP side: the dashboard ([`ui`]: one module per page), the
//! JSON API ([`api`]: one module per route group), self-telemetry and health
//! endpoints, on one router.
//!
//! - `POST /api/v1/query`: one read-only SQL query, JSON / CSV / Arrow IPC out ([`api::query`]).
//! - `GET /api/v1/red/{services,operations,series}`: RED metrics over a window.
//! - `GET /api/v1/traces/{id}`, `GET /api/v1/traces`, `GET /api/v1/logs`:
//!   a trace with its logs, trace search, log search (`analytics::search`).
//! - `GET /api/v1/service-map`: caller -> callee edges with RED per edge.
//! - `GET /api/v1/metrics`, `/metrics/rate`, `/metrics/gauge`,
//!   `/metrics/quantile`: the metric catalogue, counter rates, gauges,
//!   histogram quantiles and averages, grouped by attributes.
//! - `GET /api/v1/slos[/{name}]`, `GET /api/v1/incidents`,
//!   `POST /api/v1/incidents/{id}/ack`: SLO status and incidents;
//!   `GET /api/v1/alerts`, `GET /api/v1/rules`: alert rules;
//!   `GET|POST /api/v1/silences`, `DELETE /api/v1/silences/{id}` ([`api::slos`]).
//! - `/login`, `/logout`: dashboard sessions, when API tokens are
//!   configured ([`auth`]); every other route then checks the caller's role.
//! - [`top`]: every list of services, operations, edges or metrics is
//!   bounded (the busiest first, with a count of the rest and a search).
//! - [`security`]: a strict Content-Security-Policy and the framing,
//!   sniffing and referrer headers on every answer; writes that a browser
//!   sends from another site are refused.
//! - `GET /healthz`: the process is up.
//! - `GET /readyz`: ready to take traffic (store open, receivers bound).
//! - `GET /metrics`: OpenMetrics text from every part (store, collector, ...)
//!   through the `exposition` crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub mod api;
pub mod auth;
pub mod cluster;
pub mod security;
pub mod top;
pub mod ui;

/// Something that reports metrics in the `/metrics` answer.
pub type MetricsSource = Arc<dyn exposition::Source>;

/// State shared by the HTTP handlers.
#[derive(Clone)]
pub struct WebState {
    /// The store, for readiness and queries.
    pub store: store::Store,
    /// Sources rendered by `/metrics`, in order.
    pub metrics: Vec<MetricsSource>,
    /// Set once everything is started; cleared at shutdown.
    pub ready: Arc<AtomicBool>,
    /// Limits for SQL queries.
    pub query_limits: store::sql::QueryLimits,
    /// The SLO engine, when SLOs are loaded.
    pub slo: Option<Arc<slo_engine::engine::SloEngine>>,
    /// RED rollups over the store.
    pub rollups: Arc<analytics::rollup::Rollups>,
    /// API tokens and dashboard sessions; `None`: auth is off.
    pub auth: Option<Arc<auth::Auth>>,
    /// Where user SQL (the query API and the SQL console) runs: `None` is
    /// the local engine; `Some` the distributed one (`[query] engine =
    /// "ballista"`), never silently replaced by the local one.
    pub sql_engine: Option<Arc<dyn store::sql::RemoteEngine>>,
}

impl WebState {
    /// Runs user SQL on the configured engine, with the guard and `limits`.
    pub async fn run_sql(
        &self,
        sql: &str,
        limits: &store::sql::QueryLimits,
    ) -> Result<store::sql::QueryResult, store::sql::QueryError> {
        match &self.sql_engine {
            Some(engine) => engine.run(&self.store, sql, limits).await,
            None => store::sql::run(&self.store, sql, limits).await,
        }
    }
}

impl WebState {
    /// State over `store` with everything else at its default: a 16 MiB
    /// rollup cache, no `/metrics` sources beyond the store's, not ready,
    /// the default query limits, no SLO engine, auth off.
    pub fn new(store: store::Store) -> Self {
        WebState {
            rollups: analytics::rollup::Rollups::new(store.clone(), 1 << 24),
            store,
            metrics: Vec::new(),
            ready: Arc::default(),
            query_limits: Default::default(),
            slo: None,
            auth: None,
            sql_engine: None,
        }
    }
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("store", &self.store)
            .finish()
    }
}

/// The HTTP router.
pub fn app(state: WebState) -> Router {
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/", get(ui::overview::overview))
        .route("/slos", get(ui::slos::slo_list))
        .route("/slos/{name}", get(ui::slos::slo_page))
        .route("/slos/{name}/report", get(ui::slos::slo_report))
        .route(
            "/slos/{name}/corrections",
            post(ui::slos::create_correction),
        )
        .route(
            "/slos/{name}/corrections/{id}/delete",
            post(ui::slos::delete_correction),
        )
        .route("/incidents", get(ui::incidents::incident_list))
        .route("/incidents/{id}", get(ui::incidents::incident))
        .route("/services/{name}", get(ui::services::service))
        .route("/service-map", get(ui::services::map))
        .route("/explore/metrics", get(ui::metrics::explore))
        .route("/query", get(ui::query::console))
        .route(
            "/silences",
            get(ui::silences::list).post(ui::silences::create),
        )
        .route("/silences/{id}/expire", post(ui::silences::expire))
        .route("/traces", get(ui::traces::search))
        .route("/logs", get(ui::logs::search))
        .route("/traces/{trace_id}", get(ui::traces::trace))
        .route("/pkg/burnwatch.js", get(ui::assets::js))
        .route("/pkg/burnwatch_bg.wasm", get(ui::assets::wasm))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api::routes())
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        // Pages, JSON and /metrics gzip'd for clients that accept it (the
        // wasm bundle is stored compressed and passes through as it is).
        .layer(tower_http::compression::CompressionLayer::new())
        // On a query node, every answer names the ingest nodes missing from it.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            cluster::track,
        ))
        // Every route checks the caller's role (see [`auth`]).
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        // Writes from other sites are refused before anything else; every
        // answer carries the browser protections (see [`security`]).
        .layer(axum::middleware::from_fn(security::same_origin))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(state)
}

pub use api::OPENAPI;

async fn readyz(State(s): State<WebState>) -> impl IntoResponse {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics(State(s): State<WebState>) -> impl IntoResponse {
    let store = s.store.clone();
    let mut sources: Vec<MetricsSource> = vec![Arc::new(move |out: &mut exposition::Out<'_>| {
        store.collect_metrics(out)
    })];
    sources.extend(s.metrics.iter().cloned());
    (
        [(header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
        exposition::encode(&sources),
    )
}
