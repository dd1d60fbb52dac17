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

use crate::dispatch::{Dispatcher, Grouping, Pending};
use crate::evaluate::{AlertState, SloStatus, evaluate};
use crate::evidence::{self, Evidence};
use crate::incidents::{Incident, Incidents, Transition, transition};
use crate::notify::{NotifyMetrics, WebhookAlert, ZERO_TIME, deliver, fingerprint, rfc3339};
use crate::openslo::Slo;
use crate::rules::evaluation::RuleRunner;
use crate::rules::{Change, RuleGroup};
use crate::secret::redact_url;
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
    /// Labels that group notifications (one notification per group).
    pub group_by: Vec<String>,
    /// Seconds a new group waits before its first notification.
    pub group_wait_secs: f64,
    /// Seconds between notifications of a group about changes.
    pub group_interval_secs: f64,
    /// Seconds before an unchanged firing group is notified again.
    pub repeat_interval_secs: f64,
    /// Alertmanagers to push alerts to (`<url>/api/v2/alerts`).
    pub alertmanager_urls: Vec<String>,
    /// Seconds between pushes of unchanged alerts to Alertmanager.
    pub alertmanager_resend_secs: f64,
}

impl SloConfig {
    fn grouping(&self) -> Grouping {
        let ns = |s: f64| (s.max(0.0) * 1e9) as i64;
        Grouping {
            group_by: self.group_by.clone(),
            group_wait_ns: ns(self.group_wait_secs),
            group_interval_ns: ns(self.group_interval_secs),
            repeat_interval_ns: ns(self.repeat_interval_secs),
            resend_interval_ns: ns(self.alertmanager_resend_secs.max(1.0)),
        }
    }
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            rules_dir: PathBuf::from("alert-rules"),
            evaluation_interval_secs: 30.0,
            webhook_urls: Vec::new(),
            external_url: String::new(),
            delivery_attempts: 5,
            group_by: vec!["alertname".into(), "slo".into()],
            group_wait_secs: 30.0,
            group_interval_secs: 300.0,
            repeat_interval_secs: 4.0 * 3600.0,
            alertmanager_urls: Vec::new(),
            alertmanager_resend_secs: 60.0,
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
    dispatcher: Dispatcher,
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

/// The labels of an SLO's alert.
fn slo_labels(slo: &Slo, severity: &str) -> BTreeMap<String, String> {
    [
        ("alertname", "SLOBurnRate".to_string()),
        ("slo", slo.name.clone()),
        ("service", slo.service.clone()),
        ("severity", severity.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
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
        let grouping = config.grouping();
        let engine = Arc::new(SloEngine {
            sli: SliCounter::new(store.clone(), crate::sli::DEFAULT_CACHE_BYTES),
            store,
            slos,
            rules,
            silences,
            silenced: Default::default(),
            config,
            dispatcher: Dispatcher::new(grouping),
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
        });
        engine.restore()?;
        Ok(engine)
    }

    /// After a restart: open incidents and firing rule instances were
    /// notified before; they rejoin their groups as sent at their last
    /// change (repeated after `repeat_interval`, not notified again now).
    fn restore(&self) -> Result<(), EngineError> {
        let external = self.config.external_url.trim_end_matches('/').to_string();
        for inc in self.incidents.list(10_000)? {
            if inc.resolved_ns.is_some() {
                continue;
            }
            let Some(slo) = self.slos.iter().find(|s| s.name == inc.slo) else {
                continue;
            };
            let labels = slo_labels(slo, &inc.severity);
            let annotations: BTreeMap<String, String> = [
                ("summary".to_string(), inc.summary.clone()),
                ("incident_id".to_string(), inc.id.to_string()),
            ]
            .into();
            self.dispatcher.restore(
                Pending {
                    key: format!("slo/{}/{}", slo.name, inc.id),
                    alert: WebhookAlert {
                        status: "firing".into(),
                        fingerprint: fingerprint(&labels),
                        labels,
                        annotations,
                        starts_at: rfc3339(inc.opened_ns),
                        ends_at: ZERO_TIME.into(),
                        generator_url: format!("{external}/api/v1/slos/{}", slo.name),
                    },
                    targets: self.slo_targets(slo),
                    incident: Some(inc.id),
                },
                inc.updated_ns,
            );
        }
        for inst in self.rules.instances() {
            if inst.state == crate::rules::InstanceState::Firing {
                self.dispatcher
                    .restore(self.rule_alert(&inst, true, &external), inst.last_seen_ns);
            }
        }
        Ok(())
    }

    fn slo_targets(&self, slo: &Slo) -> Vec<String> {
        let mut targets: Vec<String> = self.config.webhook_urls.clone();
        for w in &slo.webhooks {
            if !targets.contains(w) {
                targets.push(w.clone());
            }
        }
        targets
    }

    fn rule_alert(&self, inst: &crate::rules::Instance, firing: bool, external: &str) -> Pending {
        Pending {
            key: format!("rule/{}", inst.fingerprint()),
            alert: WebhookAlert {
                status: if firing { "firing" } else { "resolved" }.into(),
                fingerprint: inst.fingerprint(),
                labels: inst.labels.clone(),
                annotations: inst.annotations.clone(),
                starts_at: rfc3339(inst.active_at_ns),
                ends_at: inst.resolved_at_ns.map_or(ZERO_TIME.into(), rfc3339),
                generator_url: format!("{external}/api/v1/alerts"),
            },
            targets: self.config.webhook_urls.clone(),
            incident: None,
        }
    }

    /// Sends what the dispatcher has due at `at_ns`: grouped webhook
    /// notifications (in the background, retried) and the Alertmanager push.
    pub fn flush_notifications(self: &Arc<Self>, at_ns: i64) {
        let external = self.config.external_url.trim_end_matches('/').to_string();
        let (out, held) = self
            .dispatcher
            .flush_due(at_ns, "burnwatch", &external, |labels| {
                self.silences.silenced_by(labels, now_ns())
            });
        for h in held {
            self.silenced.fetch_add(1, Ordering::Relaxed);
            tracing::info!(labels = ?h.labels, silence = %h.silence, "notification silenced");
            if let Some(incident) = h.incident {
                let detail = serde_json::json!({"silence": h.silence, "status": h.status});
                if let Err(e) = self.incidents.note(incident, now_ns(), "silenced", &detail) {
                    tracing::error!(error = %e, "cannot record the silenced notification");
                }
            }
        }
        for o in out {
            let engine = self.clone();
            let attempts = self.config.delivery_attempts;
            self.deliveries.spawn(async move {
                for url in &o.targets {
                    let outcome = deliver(
                        &engine.http,
                        url,
                        &o.payload,
                        attempts,
                        Duration::from_millis(500),
                        &engine.notify_metrics.webhook,
                    )
                    .await;
                    let shown = redact_url(url);
                    if let Err(e) = &outcome {
                        tracing::error!(target_url = %shown, error = %e, "notification failed");
                    }
                    for (incident, status) in &o.incidents {
                        let (event, detail) = match &outcome {
                            Ok(n) => (
                                "notified",
                                serde_json::json!({"target": shown, "status": status, "attempts": n, "group": o.payload.group_key, "alerts": o.payload.alerts.len()}),
                            ),
                            Err(e) => (
                                "notification_failed",
                                serde_json::json!({"target": shown, "status": status, "error": e}),
                            ),
                        };
                        if let Err(e) = engine.incidents.note(*incident, now_ns(), event, &detail) {
                            tracing::error!(error = %e, "cannot record the notification");
                        }
                    }
                }
            });
        }
        if self.config.alertmanager_urls.is_empty() {
            return;
        }
        let Some(alerts) = self.dispatcher.push_due(at_ns) else {
            return;
        };
        let engine = self.clone();
        self.deliveries.spawn(async move {
            for base in &engine.config.alertmanager_urls {
                let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
                // Unchanged alerts are sent again within a minute: few retries.
                let outcome = deliver(
                    &engine.http,
                    &url,
                    &alerts,
                    engine.config.delivery_attempts.min(3),
                    Duration::from_millis(500),
                    &engine.notify_metrics.alertmanager,
                )
                .await;
                if let Err(e) = outcome {
                    tracing::error!(alertmanager = %redact_url(&url), error = %e, "alert push failed");
                }
            }
        });
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
        self.flush_notifications(at_ns);
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
        let external = self.config.external_url.trim_end_matches('/').to_string();
        let at = inst.resolved_at_ns.unwrap_or(inst.last_seen_ns);
        self.dispatcher
            .push(self.rule_alert(inst, firing, &external), at);
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

    /// One incident with its timeline.
    pub fn incident(&self, id: i64) -> Result<Option<Incident>, EngineError> {
        Ok(self.incidents.get(id)?)
    }

    /// Acknowledges an incident.
    pub fn acknowledge(&self, id: i64, by: &str) -> Result<(), String> {
        self.incidents.acknowledge(id, by, now_ns())
    }

    /// Resolves an incident by hand: it is closed with `by` (and `note`)
    /// on its timeline, and a resolved notification goes out like an
    /// automatic one. If the SLO is still burning, the next round opens a
    /// new incident (and pages again), as resolving a firing alert does in
    /// other pagers.
    pub fn resolve(self: &Arc<Self>, id: i64, by: &str, note: &str) -> Result<(), String> {
        self.resolve_at(id, by, note, now_ns())
    }

    /// [`SloEngine::resolve`] at `at_ns` (the clock is a parameter for tests).
    pub fn resolve_at(
        self: &Arc<Self>,
        id: i64,
        by: &str,
        note: &str,
        at_ns: i64,
    ) -> Result<(), String> {
        let (slo_name, severity, opened_ns, summary) =
            self.incidents.resolve(id, by, note, at_ns)?;
        tracing::info!(incident = id, slo = %slo_name, by, "incident resolved by hand");
        let Some(slo) = self.slos.iter().find(|s| s.name == slo_name) else {
            return Ok(());
        };
        let external = self.config.external_url.trim_end_matches('/').to_string();
        let labels = slo_labels(slo, severity.as_str());
        let annotations: BTreeMap<String, String> = [
            ("summary".to_string(), summary),
            ("incident_id".to_string(), id.to_string()),
            ("resolved_by".to_string(), by.to_string()),
        ]
        .into();
        self.dispatcher.push(
            Pending {
                key: format!("slo/{}/{id}", slo.name),
                alert: WebhookAlert {
                    status: "resolved".into(),
                    fingerprint: fingerprint(&labels),
                    labels,
                    annotations,
                    starts_at: rfc3339(opened_ns),
                    ends_at: rfc3339(at_ns),
                    generator_url: format!("{external}/api/v1/slos/{}", slo.name),
                },
                targets: self.slo_targets(slo),
                incident: Some(id),
            },
            at_ns,
        );
        Ok(())
    }

    /// One evaluation round at `at_ns`: statuses, incident transitions,
    /// notifications (sent in the background). The clock is a parameter so
    /// tests can drive it.
    pub async fn evaluate_at(self: &Arc<Self>, at_ns: i64) -> Vec<SloStatus> {
        let mut statuses = Vec::with_capacity(self.slos.len());
        for slo in &self.slos {
            // In its own task, so a panic fails this SLO, not the round.
            let (sli, def) = (self.sli.clone(), slo.clone());
            let outcome = tokio::spawn(async move { evaluate(&sli, &def, at_ns).await }).await;
            match outcome {
                Ok(Ok(status)) => {
                    if let Err(e) = self.apply(slo, &status).await {
                        tracing::error!(slo = %slo.name, error = %e, "cannot record the incident");
                    }
                    statuses.push(status);
                }
                Ok(Err(e)) => {
                    self.evaluation_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(slo = %slo.name, error = %e, "SLO evaluation failed");
                }
                Err(e) => {
                    self.evaluation_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(slo = %slo.name, error = %e, "SLO evaluation panicked");
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
        self.flush_notifications(at_ns);
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
        let targets = self.slo_targets(slo);
        let labels = slo_labels(slo, severity.as_str());
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".to_string(), summary(slo, status));
        annotations.insert(
            "description".to_string(),
            format!(
                "{} ({}): objective {} over {}; {}",
                slo.display_name,
                status.sli_kind,
                slo.objective,
                slo.time_window.describe(),
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
        self.dispatcher.push(
            Pending {
                key: format!("slo/{}/{incident}", slo.name),
                alert,
                targets,
                incident: Some(incident),
            },
            status.at_ns,
        );
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
        // Group waits and intervals run on the wall clock between rounds.
        let ticker = self.clone();
        let stop = token.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                ticker.flush_notifications(now_ns());
            }
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

    /// Reports the SLO engine's metrics (evaluations, notifications, rules,
    /// SLI rollups, budgets, alert states) to `/metrics`.
    pub fn collect_metrics(&self, out: &mut exposition::Out<'_>) -> std::fmt::Result {
        out.counter(
            "burnwatch_slo_evaluations_total",
            "SLO evaluation rounds.",
            self.evaluations.load(Ordering::Relaxed),
        )?;
        out.counter(
            "burnwatch_slo_evaluation_failures_total",
            "SLO evaluations that failed.",
            self.evaluation_failures.load(Ordering::Relaxed),
        )?;
        let receivers = [
            ("webhook", &self.notify_metrics.webhook),
            ("alertmanager", &self.notify_metrics.alertmanager),
        ];
        let outcome: Vec<([(&str, &str); 2], u64)> = receivers
            .iter()
            .flat_map(|(kind, m)| {
                [
                    (
                        [("receiver", *kind), ("result", "delivered")],
                        m.delivered.load(Ordering::Relaxed),
                    ),
                    (
                        [("receiver", *kind), ("result", "failed")],
                        m.failed.load(Ordering::Relaxed),
                    ),
                ]
            })
            .collect();
        out.counters(
            "burnwatch_notifications_total",
            "Notifications by receiver kind and outcome.",
            outcome.iter().map(|(l, v)| (&l[..], *v)),
        )?;
        let attempts: Vec<([(&str, &str); 1], u64)> = receivers
            .iter()
            .map(|(kind, m)| {
                (
                    [("receiver", *kind)],
                    m.failed_attempts.load(Ordering::Relaxed),
                )
            })
            .collect();
        out.counters(
            "burnwatch_notification_failed_attempts_total",
            "Delivery attempts that failed (retries included).",
            attempts.iter().map(|(l, v)| (&l[..], *v)),
        )?;
        out.gauge(
            "burnwatch_notification_groups",
            "Notification groups waiting or active.",
            self.dispatcher.groups() as f64,
        )?;
        out.counter(
            "burnwatch_alert_rule_evaluations_total",
            "Alert rule evaluations.",
            self.rules.evaluations.load(Ordering::Relaxed),
        )?;
        out.counter(
            "burnwatch_alert_rule_evaluation_failures_total",
            "Alert rule evaluations whose query failed.",
            self.rules.failures.load(Ordering::Relaxed),
        )?;
        let sm = &self.sli.metrics;
        analytics::cache::collect_counters(
            out,
            &[
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
            ],
        )?;
        out.gauge(
            "burnwatch_sli_rollup_cache_bytes",
            "Bytes of SLI rollups held in memory.",
            self.sli.cache_bytes() as f64,
        )?;
        out.counter(
            "burnwatch_notifications_silenced_total",
            "Notifications not sent because a silence matched.",
            self.silenced.load(Ordering::Relaxed),
        )?;
        let states: Vec<([(&str, &str); 1], f64)> = self
            .rules
            .counts()
            .into_iter()
            .map(|(state, n)| ([("state", state)], n as f64))
            .collect();
        out.gauges(
            "burnwatch_alerts",
            "Alert instances by state.",
            states.iter().map(|(l, v)| (&l[..], *v)),
        )?;
        let last = self.last_statuses();
        let budgets: Vec<([(&str, &str); 1], f64)> = last
            .iter()
            .filter_map(|s| Some(([("slo", s.name.as_str())], s.budget_remaining?)))
            .collect();
        out.gauges(
            "burnwatch_slo_budget_remaining",
            "Share of the error budget left.",
            budgets.iter().map(|(l, v)| (&l[..], *v)),
        )?;
        let states: Vec<([(&str, &str); 1], f64)> = last
            .iter()
            .map(|s| {
                let v = match s.state {
                    AlertState::InsufficientData => 0.0,
                    AlertState::Ok => 1.0,
                    AlertState::Ticket => 2.0,
                    AlertState::Page => 3.0,
                };
                ([("slo", s.name.as_str())], v)
            })
            .collect();
        out.gauges(
            "burnwatch_slo_alert_state",
            "0 insufficient data, 1 ok, 2 ticket, 3 page.",
            states.iter().map(|(l, v)| (&l[..], *v)),
        )
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
                    slo.time_window.describe(),
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
