//! The SLO engine: evaluates every SLO on a schedule (tokio-cron-scheduler),
//! keeps one incident per SLO in SQLite, and notifies webhooks when an
//! incident opens, changes severity or resolves (never on every evaluation).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerting::RuleRunner;
use crate::evaluate::{AlertState, SloStatus, evaluate};
use crate::evidence::{self, Evidence};
use crate::incidents::{Incident, Incidents, Transition, transition};
use crate::notify::{
    NotifyMetrics, WebhookAlert, ZERO_TIME, deliver, fingerprint, payload, rfc3339,
};
use crate::openslo::Slo;
use crate::rules::{Change, RuleGroup};
use crate::silences::Silences;
use crate::sli::SliCounter;
use store::sql::QueryLimits;

/// `[slo]` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    /// Directory of OpenSLO (and rule) YAML files. Missing: no SLOs.
    pub rules_dir: PathBuf,
    /// Seconds between evaluations.
    pub evaluation_interval_secs: f64,
    /// Webhooks every notification goes to (besides the SLOs' own targets).
    pub webhook_urls: Vec<String>,
    /// Burnwatch's URL as users reach it, for links in notifications
    /// [default: http://<http_addr>].
    pub external_url: String,
    /// Delivery attempts per notification.
    pub delivery_attempts: u32,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            rules_dir: PathBuf::from("alert-rules"),
            evaluation_interval_secs: 30.0,
            webhook_urls: Vec::new(),
            external_url: String::new(),
            delivery_attempts: 5,
        }
    }
}

/// The running engine: SLOs and alert rule groups.
pub struct SloEngine {
    store: Store,
    sli: Arc<SliCounter>,
    slos: Vec<Slo>,
    rules: RuleRunner,
    silences: Silences,
    silenced: std::sync::atomic::AtomicU64,
    config: SloConfig,
    incidents: Incidents,
    last: RwLock<Vec<SloStatus>>,
    http: reqwest::Client,
    /// Delivery counters.
    pub notify_metrics: NotifyMetrics,
    evaluations: std::sync::atomic::AtomicU64,
    evaluation_failures: std::sync::atomic::AtomicU64,
    deliveries: TaskTracker,
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The incident database.
    #[error("incident database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A query.
    #[error("{0}")]
    Query(#[from] store::sql::QueryError),
    /// The scheduler.
    #[error("scheduler: {0}")]
    Scheduler(String),
}

/// Evaluation rounds between sweeps of stale SLI rollup files.
const SWEEP_EVERY: u64 = 20;

/// The wall clock, ns since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl SloEngine {
    /// Opens the incident database under `state_dir` (SLOs only).
    pub fn open(
        store: Store,
        slos: Vec<Slo>,
        config: SloConfig,
        state_dir: &std::path::Path,
    ) -> Result<Arc<SloEngine>, EngineError> {
        SloEngine::open_with_rules(store, slos, Vec::new(), config, state_dir)
    }

    /// Opens the incident database under `state_dir`, with alert rule groups
    /// (their instances are read back from the same database).
    pub fn open_with_rules(
        store: Store,
        slos: Vec<Slo>,
        groups: Vec<RuleGroup>,
        config: SloConfig,
        state_dir: &std::path::Path,
    ) -> Result<Arc<SloEngine>, EngineError> {
        let db = state_dir.join("alerts.sqlite");
        let incidents = Incidents::open(&db)?;
        let rules = RuleRunner::open(groups, &db)?;
        let silences = Silences::open(&db)?;
        for s in &slos {
            for w in &s.warnings {
                tracing::warn!(slo = %s.name, "{w}");
            }
        }
        Ok(Arc::new(SloEngine {
            sli: SliCounter::new(store.clone(), crate::sli::DEFAULT_CACHE_BYTES),
            store,
            slos,
            rules,
            silences,
            silenced: Default::default(),
            config,
            incidents,
            last: RwLock::new(Vec::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client without TLS always builds"),
            notify_metrics: NotifyMetrics::default(),
            evaluations: Default::default(),
            evaluation_failures: Default::default(),
            deliveries: TaskTracker::new(),
        }))
    }

    /// Counts SLI events (with per-minute rollups).
    pub fn sli_counter(&self) -> &Arc<SliCounter> {
        &self.sli
    }

    /// The SLOs.
    pub fn slos(&self) -> &[Slo] {
        &self.slos
    }

    /// The alert rules and their instances.
    pub fn rules(&self) -> &RuleRunner {
        &self.rules
    }

    /// The silences.
    pub fn silences(&self) -> &Silences {
        &self.silences
    }

    /// Evaluates alert rule group `index` at `at_ns` and notifies the
    /// webhooks of every instance that started or stopped firing (in the
    /// background). The clock is a parameter so tests can drive it.
    pub async fn evaluate_rules_at(self: &Arc<Self>, index: usize, at_ns: i64) -> Vec<Change> {
        let limits = QueryLimits {
            timeout_secs: self
                .rules
                .groups()
                .get(index)
                .map_or(30.0, |g| g.interval.as_secs_f64().clamp(1.0, 30.0)),
            ..QueryLimits::default()
        };
        let changes = self
            .rules
            .evaluate_group_at(&self.store, &limits, index, at_ns)
            .await;
        for c in &changes {
            self.notify_alert(c);
        }
        changes
    }

    fn notify_alert(self: &Arc<Self>, change: &Change) {
        let (inst, firing) = match change {
            Change::Firing(i) => (i, true),
            Change::Resolved(i) => (i, false),
        };
        tracing::warn!(
            alert = %inst.alert,
            labels = ?inst.labels,
            value = inst.value,
            "alert {}",
            if firing { "firing" } else { "resolved" }
        );
        if let Some(silence) = self.silences.silenced_by(&inst.labels, now_ns()) {
            self.silenced.fetch_add(1, Ordering::Relaxed);
            tracing::info!(alert = %inst.alert, silence, "notification silenced");
            return;
        }
        let targets = self.config.webhook_urls.clone();
        if targets.is_empty() {
            return;
        }
        let external = self.config.external_url.trim_end_matches('/').to_string();
        let alert = WebhookAlert {
            status: if firing { "firing" } else { "resolved" }.into(),
            fingerprint: inst.fingerprint(),
            labels: inst.labels.clone(),
            annotations: inst.annotations.clone(),
            starts_at: rfc3339(inst.active_at_ns),
            ends_at: inst.resolved_at_ns.map_or(ZERO_TIME.into(), rfc3339),
            generator_url: format!("{external}/api/v1/alerts"),
        };
        let body = payload("burnwatch", &external, alert, &["alertname"]);
        let engine = self.clone();
        let attempts = self.config.delivery_attempts;
        self.deliveries.spawn(async move {
            for url in targets {
                if let Err(e) = deliver(
                    &engine.http,
                    &url,
                    &body,
                    attempts,
                    Duration::from_millis(500),
                    &engine.notify_metrics,
                )
                .await
                {
                    tracing::error!(target_url = %url, error = %e, "alert notification failed");
                }
            }
        });
    }

    /// Status of every SLO at the last evaluation.
    pub fn last_statuses(&self) -> Vec<SloStatus> {
        self.last.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Statuses at `at_ns` without touching incidents (for `?at=` queries).
    pub async fn statuses_at(&self, at_ns: i64) -> Result<Vec<SloStatus>, EngineError> {
        let mut out = Vec::new();
        for slo in &self.slos {
            out.push(evaluate(&self.sli, slo, at_ns).await?);
        }
        Ok(out)
    }

    /// Incidents, newest first.
    pub fn incidents(&self, limit: usize) -> Result<Vec<Incident>, EngineError> {
        Ok(self.incidents.list(limit)?)
    }

    /// Acknowledges an incident.
    pub fn acknowledge(&self, id: i64, by: &str) -> Result<(), String> {
        self.incidents.acknowledge(id, by, now_ns())
    }

    /// One evaluation round at `at_ns`: statuses, incident transitions,
    /// notifications (sent in the background). The clock is a parameter so
    /// tests can drive it.
    pub async fn evaluate_at(self: &Arc<Self>, at_ns: i64) -> Vec<SloStatus> {
        let mut statuses = Vec::with_capacity(self.slos.len());
        for slo in &self.slos {
            match evaluate(&self.sli, slo, at_ns).await {
                Ok(status) => {
                    if let Err(e) = self.apply(slo, &status).await {
                        tracing::error!(slo = %slo.name, error = %e, "cannot record the incident");
                    }
                    statuses.push(status);
                }
                Err(e) => {
                    self.evaluation_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(slo = %slo.name, error = %e, "SLO evaluation failed");
                }
            }
        }
        let round = self.evaluations.fetch_add(1, Ordering::Relaxed);
        if round % SWEEP_EVERY == SWEEP_EVERY - 1 && !self.store.is_read_only() {
            let sources: Vec<&crate::sli::SliSource> =
                self.slos.iter().map(|s| &s.sli.source).collect();
            let deleted = self.sli.sweep(&sources).await;
            if deleted > 0 {
                tracing::debug!(deleted, "deleted stale SLI rollups");
            }
        }
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = statuses.clone();
        statuses
    }

    async fn apply(self: &Arc<Self>, slo: &Slo, status: &SloStatus) -> Result<(), EngineError> {
        let open = self.incidents.open_for(&slo.name)?;
        let t = transition(open.map(|(_, s)| s), status.state);
        if t == Transition::None {
            return Ok(());
        }
        let summary = summary(slo, status);
        let detail = serde_json::json!({
            "state": status.state.as_str(),
            "budget_remaining": status.budget_remaining,
            "current_burn": status.current_burn,
            "tiers": status.tiers,
        });
        let Some(id) = self
            .incidents
            .apply(&slo.name, t, status.at_ns, &summary, &detail)?
        else {
            return Ok(());
        };
        tracing::warn!(slo = %slo.name, incident = id, transition = ?t, "{summary}");
        let (firing, severity) = match t {
            Transition::Open(s) | Transition::Escalate(s) | Transition::Deescalate(s) => (true, s),
            Transition::Resolve => (false, open.map(|(_, s)| s).unwrap_or(AlertState::Ticket)),
            Transition::None => return Ok(()),
        };
        let opened_ns = self.incidents.opened_ns(id)?.unwrap_or(status.at_ns);
        let evidence = match t {
            Transition::Open(_) | Transition::Escalate(_) => self.evidence(slo, status, id).await,
            _ => None,
        };
        self.notify(
            slo,
            status,
            id,
            firing,
            severity,
            opened_ns,
            evidence.as_ref(),
        );
        Ok(())
    }

    /// Gathers and records on the incident's timeline the operations, example
    /// traces and logs behind a burn, over the shortest long window of the
    /// firing tiers (the window that made it fire).
    async fn evidence(&self, slo: &Slo, status: &SloStatus, incident: i64) -> Option<Evidence> {
        let secs = status
            .tiers
            .iter()
            .filter(|t| t.firing)
            .map(|t| t.long_secs)
            .min()?;
        let from = status.at_ns - (secs as i64).saturating_mul(1_000_000_000);
        match evidence::gather(&self.store, slo, from, status.at_ns).await {
            Ok(ev) => {
                let detail = serde_json::to_value(&ev).unwrap_or_default();
                if let Err(e) = self
                    .incidents
                    .note(incident, status.at_ns, "evidence", &detail)
                {
                    tracing::error!(error = %e, "cannot record the evidence");
                }
                Some(ev)
            }
            Err(e) => {
                tracing::warn!(slo = %slo.name, error = %e, "cannot gather the evidence of a burn");
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn notify(
        self: &Arc<Self>,
        slo: &Slo,
        status: &SloStatus,
        incident: i64,
        firing: bool,
        severity: AlertState,
        opened_ns: i64,
        evidence: Option<&Evidence>,
    ) {
        let mut targets: Vec<String> = self.config.webhook_urls.clone();
        targets.extend(slo.webhooks.iter().cloned());
        targets.dedup();
        if targets.is_empty() {
            return;
        }
        let labels: BTreeMap<String, String> = [
            ("alertname", "SLOBurnRate".to_string()),
            ("slo", slo.name.clone()),
            ("service", slo.service.clone()),
            ("severity", severity.as_str().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(silence) = self.silences.silenced_by(&labels, now_ns()) {
            self.silenced.fetch_add(1, Ordering::Relaxed);
            let detail = serde_json::json!({
                "silence": silence,
                "status": if firing { "firing" } else { "resolved" },
            });
            if let Err(e) = self.incidents.note(incident, now_ns(), "silenced", &detail) {
                tracing::error!(error = %e, "cannot record the silenced notification");
            }
            return;
        }
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".to_string(), summary(slo, status));
        annotations.insert(
            "description".to_string(),
            format!(
                "{} ({}): objective {} over {}; {}",
                slo.display_name,
                status.sli_kind,
                slo.objective,
                humantime::format_duration(slo.window),
                status
                    .tiers
                    .iter()
                    .map(|t| format!(
                        "{} {}/{} burn {}/{} (>{:.2}){}",
                        t.severity,
                        humantime::format_duration(Duration::from_secs(t.long_secs)),
                        humantime::format_duration(Duration::from_secs(t.short_secs)),
                        fmt_burn(t.long_burn),
                        fmt_burn(t.short_burn),
                        t.factor,
                        if t.firing { " FIRING" } else { "" }
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        );
        annotations.insert("incident_id".to_string(), incident.to_string());
        if let Some(r) = status.budget_remaining {
            annotations.insert("budget_remaining".to_string(), format!("{r:.4}"));
        }
        let external = self.config.external_url.trim_end_matches('/').to_string();
        if let Some(ev) = evidence {
            if let Some(o) = ev.operations.first() {
                annotations.insert(
                    "top_operation".to_string(),
                    format!(
                        "{} {}: {} of {} bad ({:.0}% of the bad events)",
                        o.service,
                        o.operation,
                        o.bad,
                        o.total,
                        o.share_of_bad * 100.0
                    ),
                );
            }
            if let Some(t) = ev.traces.first() {
                annotations.insert(
                    "example_trace".to_string(),
                    format!("{external}/api/v1/traces/{}", t.trace_id),
                );
            }
        }
        let alert = WebhookAlert {
            status: if firing { "firing" } else { "resolved" }.into(),
            fingerprint: fingerprint(&labels),
            labels,
            annotations,
            starts_at: rfc3339(opened_ns),
            ends_at: if firing {
                ZERO_TIME.into()
            } else {
                rfc3339(status.at_ns)
            },
            generator_url: format!("{external}/api/v1/slos/{}", slo.name),
        };
        let body = payload("burnwatch", &external, alert, &["slo"]);
        let engine = self.clone();
        let attempts = self.config.delivery_attempts;
        self.deliveries.spawn(async move {
            for url in targets {
                let outcome = deliver(
                    &engine.http,
                    &url,
                    &body,
                    attempts,
                    Duration::from_millis(500),
                    &engine.notify_metrics,
                )
                .await;
                let (event, detail) = match &outcome {
                    Ok(n) => (
                        "notified",
                        serde_json::json!({"target": url, "status": body.status, "attempts": n}),
                    ),
                    Err(e) => {
                        tracing::error!(target_url = %url, error = %e, "notification failed");
                        (
                            "notification_failed",
                            serde_json::json!({"target": url, "status": body.status, "error": e}),
                        )
                    }
                };
                if let Err(e) = engine.incidents.note(incident, now_ns(), event, &detail) {
                    tracing::error!(error = %e, "cannot record the notification");
                }
            }
        });
    }

    /// Evaluates every `evaluation_interval_secs` until `token` is cancelled.
    pub async fn spawn(
        self: &Arc<Self>,
        token: CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<(), EngineError> {
        let sched = tokio_cron_scheduler::JobScheduler::new()
            .await
            .map_err(|e| EngineError::Scheduler(e.to_string()))?;
        let engine = self.clone();
        let running = Arc::new(tokio::sync::Mutex::new(()));
        let every = Duration::from_secs_f64(self.config.evaluation_interval_secs.max(0.5));
        let job = tokio_cron_scheduler::Job::new_repeated_async(every, move |_id, _l| {
            let engine = engine.clone();
            let running = running.clone();
            Box::pin(async move {
                // Never two rounds at once (a slow round skips a tick).
                let Ok(_guard) = running.try_lock() else {
                    return;
                };
                engine.evaluate_at(now_ns()).await;
            })
        })
        .map_err(|e| EngineError::Scheduler(e.to_string()))?;
        sched
            .add(job)
            .await
            .map_err(|e| EngineError::Scheduler(e.to_string()))?;
        // One job per rule group, at the group's interval.
        for (index, group) in self.rules.groups().iter().enumerate() {
            let engine = self.clone();
            let running = Arc::new(tokio::sync::Mutex::new(()));
            let job =
                tokio_cron_scheduler::Job::new_repeated_async(group.interval, move |_id, _l| {
                    let engine = engine.clone();
                    let running = running.clone();
                    Box::pin(async move {
                        let Ok(_guard) = running.try_lock() else {
                            return;
                        };
                        engine.evaluate_rules_at(index, now_ns()).await;
                    })
                })
                .map_err(|e| EngineError::Scheduler(e.to_string()))?;
            sched
                .add(job)
                .await
                .map_err(|e| EngineError::Scheduler(e.to_string()))?;
        }
        sched
            .start()
            .await
            .map_err(|e| EngineError::Scheduler(e.to_string()))?;
        // A first round right away, so status is there from the start.
        let first = self.clone();
        tracker.spawn(async move {
            first.evaluate_at(now_ns()).await;
        });
        let deliveries = self.deliveries.clone();
        tracker.spawn(async move {
            token.cancelled().await;
            let mut sched = sched;
            let _ = sched.shutdown().await;
            deliveries.close();
            let _ = tokio::time::timeout(Duration::from_secs(10), deliveries.wait()).await;
        });
        Ok(())
    }

    /// Prometheus text for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let m = &self.notify_metrics;
        let _ = writeln!(
            out,
            "# HELP burnwatch_slo_evaluations_total SLO evaluation rounds.\n# TYPE burnwatch_slo_evaluations_total counter\nburnwatch_slo_evaluations_total {}",
            self.evaluations.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_slo_evaluation_failures_total SLO evaluations that failed.\n# TYPE burnwatch_slo_evaluation_failures_total counter\nburnwatch_slo_evaluation_failures_total {}",
            self.evaluation_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_notifications_total Notifications by outcome.\n# TYPE burnwatch_notifications_total counter\nburnwatch_notifications_total{{result=\"delivered\"}} {}\nburnwatch_notifications_total{{result=\"failed\"}} {}",
            m.delivered.load(Ordering::Relaxed),
            m.failed.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_notification_failed_attempts_total Delivery attempts that failed (retries included).\n# TYPE burnwatch_notification_failed_attempts_total counter\nburnwatch_notification_failed_attempts_total {}",
            m.failed_attempts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_alert_rule_evaluations_total Alert rule evaluations.\n# TYPE burnwatch_alert_rule_evaluations_total counter\nburnwatch_alert_rule_evaluations_total {}\n# HELP burnwatch_alert_rule_evaluation_failures_total Alert rule evaluations whose query failed.\n# TYPE burnwatch_alert_rule_evaluation_failures_total counter\nburnwatch_alert_rule_evaluation_failures_total {}",
            self.rules.evaluations.load(Ordering::Relaxed),
            self.rules.failures.load(Ordering::Relaxed)
        );
        let sm = &self.sli.metrics;
        for (name, help, v) in [
            (
                "burnwatch_sli_rollup_cache_hits_total",
                "SLI rollups answered from memory.",
                &sm.cache_hits,
            ),
            (
                "burnwatch_sli_rollup_loaded_total",
                "SLI rollups read from their file.",
                &sm.loaded,
            ),
            (
                "burnwatch_sli_rollup_computed_total",
                "SLI rollups computed from a data file.",
                &sm.computed,
            ),
            (
                "burnwatch_sli_rollup_unreadable_total",
                "SLI rollup files that could not be read and were recomputed.",
                &sm.unreadable,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP burnwatch_sli_rollup_cache_bytes Bytes of SLI rollups held in memory.\n# TYPE burnwatch_sli_rollup_cache_bytes gauge\nburnwatch_sli_rollup_cache_bytes {}",
            self.sli.cache_bytes()
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_notifications_silenced_total Notifications not sent because a silence matched.\n# TYPE burnwatch_notifications_silenced_total counter\nburnwatch_notifications_silenced_total {}",
            self.silenced.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP burnwatch_alerts Alert instances by state.\n# TYPE burnwatch_alerts gauge"
        );
        for (state, n) in self.rules.counts() {
            let _ = writeln!(out, "burnwatch_alerts{{state=\"{state}\"}} {n}");
        }
        let last = self.last_statuses();
        let _ = writeln!(
            out,
            "# HELP burnwatch_slo_budget_remaining Share of the error budget left.\n# TYPE burnwatch_slo_budget_remaining gauge"
        );
        for s in &last {
            if let Some(r) = s.budget_remaining {
                let _ = writeln!(
                    out,
                    "burnwatch_slo_budget_remaining{{slo=\"{}\"}} {r}",
                    s.name
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP burnwatch_slo_alert_state 0 insufficient data, 1 ok, 2 ticket, 3 page.\n# TYPE burnwatch_slo_alert_state gauge"
        );
        for s in &last {
            let v = match s.state {
                AlertState::InsufficientData => 0,
                AlertState::Ok => 1,
                AlertState::Ticket => 2,
                AlertState::Page => 3,
            };
            let _ = writeln!(out, "burnwatch_slo_alert_state{{slo=\"{}\"}} {v}", s.name);
        }
    }
}

fn fmt_burn(b: Option<f64>) -> String {
    b.map_or("-".into(), |b| format!("{b:.2}"))
}

fn summary(slo: &Slo, status: &SloStatus) -> String {
    match status.state {
        AlertState::Page | AlertState::Ticket => format!(
            "{} is burning its error budget at {}x ({}); {}",
            slo.display_name,
            fmt_burn(status.current_burn),
            status.state.as_str(),
            match status.budget_remaining {
                Some(r) if r <= 0.0 => format!(
                    "the {} budget is exhausted ({:.0}% spent)",
                    humantime::format_duration(slo.window),
                    (1.0 - r) * 100.0
                ),
                Some(r) => format!("{:.1}% of the budget left", r * 100.0),
                None => "no events in the window".into(),
            }
        ),
        _ => format!(
            "{} is back within its burn-rate thresholds",
            slo.display_name
        ),
    }
}
