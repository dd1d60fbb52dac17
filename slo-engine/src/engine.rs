//! The SLO engine: evaluates every SLO on a schedule (tokio-cron-scheduler),
//! keeps one incident per SLO in the state database, and notifies webhooks
//! when an incident opens, changes severity or resolves (never on every
//! evaluation).
//!
//! With a shared (PostgreSQL) state database, several query nodes run the
//! engine but one evaluates: it holds the `evaluator` lease. The others
//! compute statuses for their dashboards, follow the rule instances the
//! evaluator saves, and take over within one lease time-to-live of its loss
//! (the lease lasts one evaluation interval and is renewed four times per
//! interval), rebuilding notification state from the database first so
//! incidents already notified are not notified again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::dispatch::{Dispatcher, Grouping, Pending, slo_labels, summary};
use crate::evaluate::{AlertState, GroupStatus, SloStatus};
use crate::evidence::{self, Evidence};
use crate::incidents::{Incident, Incidents, Transition, transition};
use crate::notify::{NotifyMetrics, WebhookAlert, ZERO_TIME, fingerprint, rfc3339};
use crate::openslo::Slo;
use crate::rules::evaluation::RuleRunner;
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
    /// Scheduled evaluations look at windows ending this many seconds
    /// before now, so telemetry still in exporters' batches (5 s in the
    /// OpenTelemetry SDKs by default) is in: without it a window can be
    /// judged clean, resolve an incident, and turn bad again when the late
    /// spans arrive.
    pub evaluation_delay_secs: f64,
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
    /// Most instances one grouped SLO (`groupBy`) keeps: those with the
    /// most events in the SLO window. Values beyond it are reported on the
    /// SLO page and in `/metrics`, not tracked.
    pub max_instances_per_slo: usize,
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
            evaluation_delay_secs: 10.0,
            webhook_urls: Vec::new(),
            external_url: String::new(),
            delivery_attempts: 5,
            group_by: vec!["alertname".into(), "slo".into()],
            group_wait_secs: 30.0,
            group_interval_secs: 300.0,
            repeat_interval_secs: 4.0 * 3600.0,
            alertmanager_urls: Vec::new(),
            alertmanager_resend_secs: 60.0,
            max_instances_per_slo: 500,
        }
    }
}

/// The running engine: SLOs and alert rule groups.
pub struct SloEngine {
    store: Store,
    sli: Arc<SliCounter>,
    slos: Vec<Slo>,
    rules: RuleRunner,
    pub(crate) silences: Silences,
    /// Corrections and maintenance windows made through the API.
    corrections: crate::corrections::Corrections,
    /// Those declared in YAML beside the SLOs.
    yaml_corrections: RwLock<Vec<crate::corrections::Correction>>,
    pub(crate) silenced: std::sync::atomic::AtomicU64,
    pub(crate) config: SloConfig,
    pub(crate) incidents: Incidents,
    pub(crate) dispatcher: Dispatcher,
    last: RwLock<Vec<SloStatus>>,
    /// Each grouped SLO's instances at the last evaluation.
    last_groups: RwLock<Vec<GroupStatus>>,
    pub(crate) http: reqwest::Client,
    /// Delivery counters.
    pub notify_metrics: NotifyMetrics,
    evaluations: std::sync::atomic::AtomicU64,
    evaluation_failures: std::sync::atomic::AtomicU64,
    pub(crate) deliveries: TaskTracker,
    db: Arc<statedb::StateDb>,
    /// This node's name in the evaluator lease.
    holder: String,
    /// Whether this node evaluates (always with an unshared database).
    evaluator: AtomicBool,
    /// When the lease was last renewed (ns).
    renewed_ns: AtomicI64,
    /// Times this node took evaluation over.
    takeovers: AtomicU64,
    /// Held by a scheduled round, so two never run at once.
    round: tokio::sync::Mutex<()>,
}

/// The lease that elects the evaluating node in a shared state database.
pub const EVALUATOR_LEASE: &str = "evaluator";

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The state database.
    #[error("state database: {0}")]
    Db(#[from] statedb::Error),
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

    /// Opens the incident database (SQLite) under `state_dir`, with alert
    /// rule groups (their instances are read back from the same database).
    pub fn open_with_rules(
        store: Store,
        slos: Vec<Slo>,
        groups: Vec<RuleGroup>,
        config: SloConfig,
        state_dir: &std::path::Path,
    ) -> Result<Arc<SloEngine>, EngineError> {
        let db = crate::incidents::open_state(&statedb::Target::Sqlite(
            state_dir.join("alerts.sqlite"),
        ))?;
        SloEngine::open_with_state(store, slos, groups, config, db, "local")
    }

    /// The engine over state database `db` (migrated by
    /// [`crate::incidents::open_state`]); `holder` names this node in the
    /// evaluator lease when `db` is shared.
    pub fn open_with_state(
        store: Store,
        slos: Vec<Slo>,
        groups: Vec<RuleGroup>,
        config: SloConfig,
        db: Arc<statedb::StateDb>,
        holder: &str,
    ) -> Result<Arc<SloEngine>, EngineError> {
        let incidents = Incidents::new(db.clone());
        let rules = RuleRunner::open(groups, db.clone())?;
        let silences = Silences::new(db.clone());
        let corrections = crate::corrections::Corrections::new(db.clone());
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
            corrections,
            yaml_corrections: RwLock::new(Vec::new()),
            silenced: Default::default(),
            config,
            dispatcher: Dispatcher::new(grouping),
            incidents,
            last: RwLock::new(Vec::new()),
            last_groups: RwLock::new(Vec::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client without TLS always builds"),
            notify_metrics: NotifyMetrics::default(),
            evaluations: Default::default(),
            evaluation_failures: Default::default(),
            deliveries: TaskTracker::new(),
            evaluator: AtomicBool::new(!db.is_shared()),
            db,
            holder: holder.to_string(),
            renewed_ns: AtomicI64::new(0),
            takeovers: AtomicU64::new(0),
            round: tokio::sync::Mutex::new(()),
        });
        if engine.is_evaluator() {
            engine.restore()?;
        }
        Ok(engine)
    }

    /// Whether this node evaluates (holds the evaluator lease, or the state
    /// database is its own).
    pub fn is_evaluator(&self) -> bool {
        self.evaluator.load(Ordering::Acquire)
    }

    /// This node's name in the evaluator lease.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The lease's time-to-live: one evaluation interval (at least 1 s).
    fn lease_ttl_ns(&self) -> i64 {
        (self.config.evaluation_interval_secs.max(1.0) * 1e9) as i64
    }

    /// One lease round at `now_ns` (blocking: it talks to the database):
    /// takes or renews the evaluator lease; takes evaluation over when the
    /// lease was just won, steps down when another node holds it or it could
    /// not be renewed for a whole time-to-live. True when this node evaluates
    /// after the round. Always true with an unshared database.
    pub fn lease_round(&self, now_ns: i64) -> bool {
        if !self.db.is_shared() {
            return true;
        }
        let ttl = self.lease_ttl_ns();
        let was = self.is_evaluator();
        match self
            .db
            .try_lease(EVALUATOR_LEASE, &self.holder, now_ns, ttl)
        {
            Ok(true) => {
                self.renewed_ns.store(now_ns, Ordering::Release);
                if !was {
                    self.take_over();
                }
            }
            Ok(false) => {
                if was {
                    self.step_down("another node holds the evaluator lease");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the evaluator lease");
                if was && now_ns - self.renewed_ns.load(Ordering::Acquire) >= ttl {
                    self.step_down("the evaluator lease could not be renewed in time");
                }
            }
        }
        self.is_evaluator()
    }

    /// This node starts evaluating: rule instances and notification state are
    /// read back from the database (what the previous evaluator saved).
    fn take_over(&self) {
        if let Err(e) = self.rules.reload() {
            tracing::error!(error = %e, "cannot read the alert instances back");
        }
        self.dispatcher.clear();
        if let Err(e) = self.restore() {
            tracing::error!(error = %e, "cannot read the open incidents back");
        }
        self.takeovers.fetch_add(1, Ordering::Relaxed);
        self.evaluator.store(true, Ordering::Release);
        tracing::info!(node = %self.holder, "this node now evaluates SLOs and alert rules (evaluator lease taken)");
    }

    fn step_down(&self, why: &str) {
        self.evaluator.store(false, Ordering::Release);
        self.dispatcher.clear();
        tracing::warn!(node = %self.holder, "this node stopped evaluating: {why}");
    }

    /// Gives the lease up (a clean shutdown), so another node takes over at
    /// once instead of after the time-to-live.
    pub fn release_lease(&self) {
        if self.db.is_shared() && self.is_evaluator() {
            self.evaluator.store(false, Ordering::Release);
            if let Err(e) = self.db.release_lease(EVALUATOR_LEASE, &self.holder) {
                tracing::warn!(error = %e, "cannot release the evaluator lease");
            }
        }
    }

    /// After a restart or a takeover: open incidents notified since their
    /// last change, and firing rule instances, rejoin their groups as sent at
    /// their last change (repeated after `repeat_interval`, not notified
    /// again now); open incidents whose notification is still owed are
    /// notified.
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
            let mut annotations: BTreeMap<String, String> = [
                ("summary".to_string(), inc.summary.clone()),
                ("incident_id".to_string(), inc.id.to_string()),
            ]
            .into();
            for (k, v) in slo.annotations_for(crate::burn::Severity::of_incident(&inc.severity)) {
                annotations.entry(k).or_insert(v);
            }
            // Notified since its last change (delivered, failed after every
            // attempt, or held by a silence)? Then it joins its group as sent;
            // otherwise the notification is still owed (e.g. the previous
            // evaluator stopped during the group wait) and goes out now.
            let changed = inc
                .timeline
                .iter()
                .rposition(|t| matches!(t.event.as_str(), "opened" | "escalated" | "deescalated"));
            let notified = inc.timeline.iter().enumerate().any(|(i, t)| {
                changed.is_none_or(|c| i > c)
                    && matches!(
                        t.event.as_str(),
                        "notified" | "notification_failed" | "silenced"
                    )
            });
            let put = |p: Pending, at: i64| {
                if notified {
                    self.dispatcher.restore(p, at)
                } else {
                    self.dispatcher.push(p, now_ns())
                }
            };
            put(
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

    /// Counts SLI events (with per-minute rollups).
    pub fn sli_counter(&self) -> &Arc<SliCounter> {
        &self.sli
    }

    /// The SLOs as defined (a grouped SLO once, not its instances).
    pub fn slos(&self) -> &[Slo] {
        &self.slos
    }

    /// The SLO named `name`: a defined one, or an instance of a grouped
    /// one (`checkout{http.route="/cart"}`, whether or not it is among the
    /// instances kept).
    pub fn find_slo(&self, name: &str) -> Option<Slo> {
        crate::openslo::find_slo(&self.slos, name)
    }

    /// The `max_instances_per_slo` setting.
    pub fn instance_cap(&self) -> usize {
        self.config.max_instances_per_slo.max(1)
    }

    /// Each grouped SLO's instances at the last evaluation.
    pub fn last_groups(&self) -> Vec<GroupStatus> {
        self.last_groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Grouped SLO `slo`'s instances at `at_ns` (corrections applied),
    /// without touching incidents.
    pub async fn group_at(&self, slo: &Slo, at_ns: i64) -> Result<GroupStatus, EngineError> {
        Ok(crate::evaluate::evaluate_group(
            &self.sli,
            slo,
            at_ns,
            &self.all_corrections(),
            self.instance_cap(),
        )
        .await?)
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
    /// A node that does not evaluate reads the instances the evaluator saved
    /// instead.
    pub async fn evaluate_rules_at(self: &Arc<Self>, index: usize, at_ns: i64) -> Vec<Change> {
        if !self.is_evaluator() {
            if let Err(e) = self.rules.reload() {
                tracing::warn!(error = %e, "cannot read the alert instances back");
            }
            return Vec::new();
        }
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

    /// Status of every SLO at the last evaluation.
    pub fn last_statuses(&self) -> Vec<SloStatus> {
        self.last.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Statuses at `at_ns` without touching incidents (for `?at=` queries).
    pub async fn statuses_at(&self, at_ns: i64) -> Result<Vec<SloStatus>, EngineError> {
        let corrections = self.all_corrections();
        let mut out = Vec::new();
        for slo in &self.slos {
            if slo.group_by.is_empty() {
                out.push(
                    crate::evaluate::evaluate_corrected(&self.sli, slo, at_ns, &corrections)
                        .await?,
                );
            } else {
                let g = crate::evaluate::evaluate_group(
                    &self.sli,
                    slo,
                    at_ns,
                    &corrections,
                    self.instance_cap(),
                )
                .await?;
                out.extend(g.instances);
            }
        }
        Ok(out)
    }

    /// One SLO's status at `at_ns` (corrections applied), without touching
    /// incidents.
    pub async fn status_of(&self, slo: &Slo, at_ns: i64) -> Result<SloStatus, EngineError> {
        Ok(
            crate::evaluate::evaluate_corrected(&self.sli, slo, at_ns, &self.all_corrections())
                .await?,
        )
    }

    /// Each tier's burn rates over `[from_ns, to_ns]` at `points` times,
    /// corrections applied.
    pub async fn burn_history(
        &self,
        slo: &Slo,
        from_ns: i64,
        to_ns: i64,
        points: usize,
    ) -> Result<Vec<crate::evaluate::TierHistory>, EngineError> {
        Ok(crate::evaluate::burn_history(
            &self.sli,
            slo,
            &self.all_corrections(),
            from_ns,
            to_ns,
            points,
        )
        .await?)
    }

    /// The budget burn-down of `slo` at `at_ns`, corrections applied.
    pub async fn burndown(
        &self,
        slo: &Slo,
        at_ns: i64,
        points: usize,
    ) -> Result<Vec<crate::evaluate::BurnPoint>, EngineError> {
        Ok(crate::evaluate::burndown_corrected(
            &self.sli,
            slo,
            at_ns,
            points,
            &self.all_corrections(),
        )
        .await?)
    }

    /// The corrections stored through the API.
    pub fn corrections(&self) -> &crate::corrections::Corrections {
        &self.corrections
    }

    /// Sets the corrections declared in YAML (on load and reload).
    pub fn set_yaml_corrections(&self, list: Vec<crate::corrections::Correction>) {
        *self
            .yaml_corrections
            .write()
            .unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// Every correction: those from YAML, then the stored ones.
    pub fn all_corrections(&self) -> Vec<crate::corrections::Correction> {
        let mut out = self
            .yaml_corrections
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match self.corrections.list() {
            Ok(list) => out.extend(list),
            Err(e) => tracing::error!(error = %e, "cannot read the corrections"),
        }
        out
    }

    /// The monthly report of SLO `name` for `month` (`YYYY-MM`; `None`:
    /// the previous month in the SLO's time zone).
    pub async fn month_report(
        &self,
        name: &str,
        month: Option<&str>,
    ) -> Result<crate::report::MonthReport, String> {
        let slo = self
            .find_slo(name)
            .ok_or_else(|| format!("no SLO named {name:?}"))?;
        let slo = &slo;
        let now = now_ns();
        let month = month.map_or_else(
            || crate::report::previous_month(now, crate::report::time_zone(slo)),
            str::to_string,
        );
        let incidents = self.incidents.list(100_000).map_err(|e| e.to_string())?;
        crate::report::month_report(
            &self.store,
            &self.sli,
            slo,
            &incidents,
            &self.all_corrections(),
            &month,
            now,
        )
        .await
    }

    /// A postmortem draft of incident `id` in Markdown (`None`: no such
    /// incident): timeline, burn over the incident, impact, evidence.
    pub async fn postmortem(&self, id: i64) -> Result<Option<String>, String> {
        use crate::postmortem::{BurnStep, Impact, render};
        let Some(inc) = self.incidents.get(id).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let slo = self
            .find_slo(&inc.slo)
            .ok_or_else(|| format!("incident #{id}'s SLO {:?} is no longer defined", inc.slo))?;
        let slo = &slo;
        let to = inc.resolved_ns.unwrap_or_else(now_ns).max(inc.opened_ns);
        // The burn chart: the first page tier's long window (else the
        // first tier's), from an hour before the incident to its end.
        let window = slo
            .tiers
            .iter()
            .find(|t| t.severity == crate::burn::Severity::Page)
            .or(slo.tiers.first())
            .map_or(Duration::from_secs(3600), |t| t.long);
        let window_ns = window.as_nanos() as i64;
        // Whole minutes, so the windows need no raw rows at their edges.
        const MINUTE: i64 = 60_000_000_000;
        let chart_from = (inc.opened_ns - 3_600_000_000_000).div_euclid(MINUTE) * MINUTE;
        let step = (((to - chart_from) / 24).max(MINUTE) + MINUTE - 1) / MINUTE * MINUTE;
        let mut times: Vec<i64> = (1..=24)
            .map(|k| chart_from + k * step)
            .take_while(|t| *t < to)
            .collect();
        times.push(to);
        let mut ranges = vec![(inc.opened_ns, to), slo.time_window.range_at(to)];
        ranges.extend(times.iter().map(|t| (t - window_ns, *t)));
        let counts = self
            .sli
            .windows(&slo.sli.source, &ranges)
            .await
            .map_err(|e| e.to_string())?;
        let impact = Impact {
            from_ns: inc.opened_ns,
            to_ns: to,
            total: counts[0].0,
            bad: counts[0].1,
            budget_events: (1.0 - slo.objective) * counts[1].0 as f64,
        };
        let burn: Vec<BurnStep> = times
            .iter()
            .zip(&counts[2..])
            .map(|(t, (total, bad))| BurnStep {
                at_ns: *t,
                burn: crate::burn::burn_rate(*bad, *total, slo.objective),
            })
            .collect();
        Ok(Some(render(
            slo,
            &inc,
            &impact,
            &burn,
            window.as_secs(),
            &self.config.external_url,
        )))
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
        // Another node evaluates: it notices at its next round and sends the
        // resolved notification (see `sync_resolved`).
        if self.is_evaluator() {
            self.push_resolved(&slo_name, id, severity, opened_ns, summary, by, at_ns);
        }
        Ok(())
    }

    /// Sends the resolved notification of incident `id`, resolved by hand.
    #[allow(clippy::too_many_arguments)]
    fn push_resolved(
        &self,
        slo_name: &str,
        id: i64,
        severity: AlertState,
        opened_ns: i64,
        summary: String,
        by: &str,
        at_ns: i64,
    ) {
        let Some(slo) = self.find_slo(slo_name) else {
            return;
        };
        let slo = &slo;
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
    }

    /// On the evaluator: incidents it holds as firing that were resolved by
    /// hand on another node get their resolved notification.
    fn sync_resolved(&self) {
        for id in self.dispatcher.firing_incidents() {
            let inc = match self.incidents.get(id) {
                Ok(Some(inc)) if inc.state == "resolved" => inc,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read an incident back");
                    return;
                }
            };
            let by = inc
                .timeline
                .iter()
                .rev()
                .find(|t| t.event == "resolved")
                .and_then(|t| t.detail.get("by")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "another node".into());
            let severity = if inc.severity == "page" {
                AlertState::Page
            } else {
                AlertState::Ticket
            };
            let at = inc.resolved_ns.unwrap_or(inc.updated_ns);
            self.push_resolved(&inc.slo, id, severity, inc.opened_ns, inc.summary, &by, at);
        }
    }

    /// One evaluation round at `at_ns`: statuses, incident transitions,
    /// notifications (sent in the background). The clock is a parameter so
    /// tests can drive it.
    /// On a node that does not evaluate (a shared state database whose
    /// lease another node holds), statuses are computed for the dashboard but
    /// incidents and notifications are left to the evaluator.
    pub async fn evaluate_at(self: &Arc<Self>, at_ns: i64) -> Vec<SloStatus> {
        let evaluator = self.is_evaluator();
        if evaluator {
            self.sync_resolved();
        }
        let mut statuses = Vec::with_capacity(self.slos.len());
        let mut groups = Vec::new();
        let corrections = Arc::new(self.all_corrections());
        let cap = self.instance_cap();
        for slo in &self.slos {
            // In its own task, so a panic fails this SLO, not the round.
            let (sli, def, fixes) = (self.sli.clone(), slo.clone(), corrections.clone());
            let outcome = tokio::spawn(async move {
                if def.group_by.is_empty() {
                    crate::evaluate::evaluate_corrected(&sli, &def, at_ns, &fixes)
                        .await
                        .map(|s| (vec![(def, s)], None))
                } else {
                    let g = crate::evaluate::evaluate_group(&sli, &def, at_ns, &fixes, cap).await?;
                    let each = g
                        .instances
                        .iter()
                        .map(|s| (def.instance_for(s), s.clone()))
                        .collect();
                    Ok((each, Some(g)))
                }
            })
            .await;
            match outcome {
                Ok(Ok((each, group))) => {
                    for (inst, status) in each {
                        // A maintenance window holds the SLO's alerts: no
                        // incident changes and nothing is sent until it ends.
                        if evaluator
                            && status.held_by.is_none()
                            && let Err(e) = self.apply(&inst, &status).await
                        {
                            tracing::error!(slo = %inst.name, error = %e, "cannot record the incident");
                        }
                        statuses.push(status);
                    }
                    if let Some(g) = group {
                        if evaluator {
                            self.close_vanished(slo, &g, at_ns).await;
                        }
                        groups.push(g);
                    }
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
            let sources: Vec<(&crate::sli::SliSource, Vec<String>)> = self
                .slos
                .iter()
                .map(|s| (&s.sli.source, s.group_exprs()))
                .collect();
            let deleted = self.sli.sweep(&sources).await;
            if deleted > 0 {
                tracing::debug!(deleted, "deleted stale SLI rollups");
            }
        }
        *self.last.write().unwrap_or_else(|p| p.into_inner()) = statuses.clone();
        *self.last_groups.write().unwrap_or_else(|p| p.into_inner()) = groups;
        self.flush_notifications(at_ns);
        statuses
    }

    /// Resolves the open incidents of grouped SLO `slo`'s instances that
    /// are no longer kept (no events in the window any more, or pushed out
    /// by the cap): nothing would ever close them otherwise.
    async fn close_vanished(self: &Arc<Self>, slo: &Slo, g: &GroupStatus, at_ns: i64) {
        let open = match self.incidents.open_slos() {
            Ok(open) => open,
            Err(e) => {
                tracing::error!(error = %e, "cannot list the open incidents");
                return;
            }
        };
        let prefix = format!("{}{{", slo.name);
        for name in open {
            if !name.starts_with(&prefix) || g.instances.iter().any(|s| s.name == name) {
                continue;
            }
            let Some(inst) = self.find_slo(&name) else {
                continue;
            };
            // An empty status: no tier fires; the incident resolves.
            let mut status = crate::evaluate::status_from_counts(
                &inst,
                at_ns,
                &crate::evaluate::WindowCounts {
                    window_secs: inst.window.as_secs(),
                    total: 0,
                    bad: 0,
                    burn_rate: None,
                },
                &[],
                |d| crate::evaluate::WindowCounts {
                    window_secs: d.as_secs(),
                    total: 0,
                    bad: 0,
                    burn_rate: None,
                },
            );
            status.state = AlertState::Ok;
            tracing::info!(slo = %name, "instance no longer tracked; resolving its incident");
            if let Err(e) = self.apply(&inst, &status).await {
                tracing::error!(slo = %name, error = %e, "cannot resolve the incident");
            }
        }
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

    /// A round on the wall clock, unless one is running (a slow round skips
    /// a tick).
    async fn scheduled_round(self: &Arc<Self>) {
        let Ok(_guard) = self.round.try_lock() else {
            return;
        };
        let delay = (self.config.evaluation_delay_secs.clamp(0.0, 3600.0) * 1e9) as i64;
        self.evaluate_at(now_ns() - delay).await;
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
        let every = Duration::from_secs_f64(self.config.evaluation_interval_secs.max(0.5));
        let job = tokio_cron_scheduler::Job::new_repeated_async(every, move |_id, _l| {
            let engine = engine.clone();
            Box::pin(async move {
                engine.scheduled_round().await;
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
        // With a shared state database: the evaluator lease, taken before the
        // first round and renewed four times per time-to-live. Winning it
        // starts a round at once, so a takeover does not wait for the next
        // tick.
        if self.db.is_shared() {
            let won = {
                let e = self.clone();
                tokio::task::spawn_blocking(move || e.lease_round(now_ns()))
                    .await
                    .unwrap_or(false)
            };
            if !won {
                tracing::info!(node = %self.holder, "another node evaluates SLOs and alert rules; this one follows (it takes over if that node stops renewing the evaluator lease)");
            }
            let lease = self.clone();
            let stop = token.clone();
            let renew = Duration::from_nanos((self.lease_ttl_ns() / 4).max(100_000_000) as u64);
            tracker.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(renew) => {}
                    }
                    let was = lease.is_evaluator();
                    let e = lease.clone();
                    let now = tokio::task::spawn_blocking(move || e.lease_round(now_ns()))
                        .await
                        .unwrap_or(false);
                    if now && !was {
                        let e = lease.clone();
                        tokio::spawn(async move { e.scheduled_round().await });
                    }
                }
                let e = lease.clone();
                let _ = tokio::task::spawn_blocking(move || e.release_lease()).await;
            });
        }
        // A first round right away, so status is there from the start.
        let first = self.clone();
        tracker.spawn(async move {
            first.scheduled_round().await;
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
        out.gauge(
            "burnwatch_slo_evaluator",
            "1 when this node evaluates SLOs and alert rules (it holds the evaluator lease, or the state database is its own), else 0.",
            if self.is_evaluator() { 1.0 } else { 0.0 },
        )?;
        out.counter(
            "burnwatch_slo_evaluator_takeovers_total",
            "Times this node took evaluation over from another (shared state database).",
            self.takeovers.load(Ordering::Relaxed),
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
        let groups = self.last_groups();
        let counts: Vec<([(&str, &str); 1], f64)> = groups
            .iter()
            .map(|g| ([("slo", g.name.as_str())], g.instances.len() as f64))
            .collect();
        out.gauges(
            "burnwatch_slo_instances",
            "Instances a grouped SLO tracks (distinct values of its groupBy attributes, up to the cap).",
            counts.iter().map(|(l, v)| (&l[..], *v)),
        )?;
        let over: Vec<([(&str, &str); 1], f64)> = groups
            .iter()
            .map(|g| ([("slo", g.name.as_str())], g.over_cap as f64))
            .collect();
        out.gauges(
            "burnwatch_slo_instances_over_cap",
            "Distinct values of a grouped SLO's groupBy attributes beyond max_instances_per_slo, not tracked (a lower bound when burnwatch_slo_instances_saturated is 1).",
            over.iter().map(|(l, v)| (&l[..], *v)),
        )?;
        let saturated: Vec<([(&str, &str); 1], f64)> = groups
            .iter()
            .map(|g| ([("slo", g.name.as_str())], f64::from(u8::from(g.saturated))))
            .collect();
        out.gauges(
            "burnwatch_slo_instances_saturated",
            "1 when a grouped SLO had more distinct values than could be held to rank them.",
            saturated.iter().map(|(l, v)| (&l[..], *v)),
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
