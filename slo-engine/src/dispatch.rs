//! Notification grouping, as Alertmanager does it, and pushing alerts to
//! Alertmanagers.
//!
//! Alerts (SLO incidents and alert-rule instances) are put into groups by
//! the values of the `group_by` labels and their receivers. A new group
//! waits `group_wait` before its first notification, so alerts that start
//! together go out together; after that the group is looked at every
//! `group_interval` and notified only when something changed (an alert
//! started, changed or resolved), or when `repeat_interval` passed since the
//! last notification while something still fires. A resolved alert is sent
//! once (as resolved) and then leaves its group; an empty group is removed.
//!
//! Every notification carries every alert of its group (firing and
//! just-resolved). Silences are checked when a group is flushed: silenced
//! alerts are left out (and counted), and a group whose alerts are all
//! silenced sends nothing.
//!
//! Alertmanager push: every active alert (and a resolved one for 15 minutes
//! after it resolved) is POSTed to each configured Alertmanager's
//! `/api/v2/alerts` when it changes and again every `resend_interval`, with
//! `endsAt` four resend intervals ahead while it fires, as Prometheus does;
//! Alertmanager then groups, silences and routes by its own configuration.
//!
//! The clock is a parameter everywhere, so tests drive it.
//!
//! The engine's delivery path lives here too (`impl SloEngine` below):
//! alerts built from SLO incidents and rule instances go into the
//! dispatcher, and what it has due goes to webhooks (retried, recorded on
//! the incident) and Alertmanagers.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{SloEngine, now_ns};
use crate::evaluate::{AlertState, SloStatus};
use crate::evidence::Evidence;
use crate::notify::{WebhookAlert, WebhookPayload, ZERO_TIME, deliver, fingerprint, rfc3339};
use crate::openslo::Slo;
use crate::rules::Change;
use crate::secret::redact_url;

const SEC: i64 = 1_000_000_000;

/// How long a resolved alert is still pushed to Alertmanager.
const RESOLVED_RETENTION_NS: i64 = 15 * 60 * SEC;

/// `[slo.grouping]`-style settings (they live in `[slo]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// Labels that form a group.
    pub group_by: Vec<String>,
    /// Wait before a new group's first notification, ns.
    pub group_wait_ns: i64,
    /// Wait between notifications of a group about changes, ns.
    pub group_interval_ns: i64,
    /// Wait before repeating an unchanged firing group, ns.
    pub repeat_interval_ns: i64,
    /// Alertmanager push: resend period, ns.
    pub resend_interval_ns: i64,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping {
            group_by: vec!["alertname".into(), "slo".into()],
            group_wait_ns: 30 * SEC,
            group_interval_ns: 300 * SEC,
            repeat_interval_ns: 4 * 3600 * SEC,
            resend_interval_ns: 60 * SEC,
        }
    }
}

/// One alert handed to the dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Identity across changes (an SLO incident keeps one alert while its
    /// severity label changes): e.g. `slo/<name>/<incident>` or a fingerprint.
    pub key: String,
    /// The alert as it should be sent now (`status` firing or resolved).
    pub alert: WebhookAlert,
    /// Webhook receivers.
    pub targets: Vec<String>,
    /// The SLO incident, for its timeline.
    pub incident: Option<i64>,
}

/// A notification to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Webhook receivers.
    pub targets: Vec<String>,
    /// The payload (every alert of the group).
    pub payload: WebhookPayload,
    /// Incidents whose alerts are in it, with the status sent for each.
    pub incidents: Vec<(i64, String)>,
}

/// An alert held back by a silence when its group was flushed.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// `firing` or `resolved`.
    pub status: String,
    /// The silence's id.
    pub silence: i64,
    /// The SLO incident, for its timeline.
    pub incident: Option<i64>,
}

#[derive(Debug)]
struct Group {
    labels: BTreeMap<String, String>,
    targets: Vec<String>,
    alerts: BTreeMap<String, Pending>,
    next_flush_ns: i64,
    last_notified_ns: Option<i64>,
    /// key -> (status, fingerprint) as last notified.
    last_sent: BTreeMap<String, (String, String)>,
    /// key -> (status, fingerprint) as last held back by a silence.
    held: BTreeMap<String, (String, String)>,
}

/// An alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339: the resolve time, or while firing a time a few resends ahead.
    pub ends_at: String,
    /// Link back to Burnwatch.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

#[derive(Debug)]
struct Pushed {
    alert: WebhookAlert,
    resolved_ns: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<String, Group>,
    pushed: BTreeMap<String, Pushed>,
    push_due: bool,
    last_push_ns: Option<i64>,
}

/// The dispatcher; safe to share.
#[derive(Debug)]
pub struct Dispatcher {
    config: Grouping,
    state: Mutex<State>,
}

fn group_key(targets: &[String], labels: &BTreeMap<String, String>) -> String {
    format!(
        "{}:{{{}}}",
        targets.join(","),
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Labels (and annotations) shared by every alert, with the same value.
fn common(maps: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some(first) = maps.first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| maps.iter().all(|m| m.get(*k) == Some(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Dispatcher {
    /// A dispatcher with `config`.
    pub fn new(config: Grouping) -> Dispatcher {
        Dispatcher {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &Grouping {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn labels_of(&self, alert: &WebhookAlert) -> BTreeMap<String, String> {
        self.config
            .group_by
            .iter()
            .filter_map(|k| alert.labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// Forgets every group and pushed alert (this node stopped evaluating,
    /// or is about to rebuild them from the database).
    pub fn clear(&self) {
        *self.lock() = State::default();
    }

    /// SLO incidents this dispatcher still holds as firing (in a group, or
    /// pushed to Alertmanager).
    pub fn firing_incidents(&self) -> Vec<i64> {
        let st = self.lock();
        let mut ids: Vec<i64> = st
            .groups
            .values()
            .flat_map(|g| g.alerts.values())
            .filter(|p| p.alert.status == "firing")
            .filter_map(|p| p.incident)
            .chain(st.pushed.iter().filter_map(|(k, p)| {
                let id = k.strip_prefix("slo/")?.rsplit_once('/')?.1.parse().ok()?;
                (p.resolved_ns.is_none()).then_some(id)
            }))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Hands over an alert that started, changed or resolved at `now_ns`.
    pub fn push(&self, p: Pending, now_ns: i64) {
        let resolved = (p.alert.status == "resolved").then_some(now_ns);
        self.admit(p, resolved, |g| {
            g.next_flush_ns = now_ns + self.config.group_wait_ns;
        });
    }

    /// Hands over an alert that was already notified before a restart: it
    /// joins its group as sent, so it is repeated after `repeat_interval`
    /// but not notified again now.
    pub fn restore(&self, p: Pending, now_ns: i64) {
        let sent = (p.alert.status.clone(), p.alert.fingerprint.clone());
        let key = p.key.clone();
        self.admit(p, None, |g| {
            g.next_flush_ns = now_ns + self.config.group_interval_ns;
            g.last_notified_ns = Some(now_ns);
        });
        let mut st = self.lock();
        for g in st.groups.values_mut() {
            if g.alerts.contains_key(&key) {
                g.last_sent.insert(key.clone(), sent.clone());
            }
        }
    }

    /// Records `p` for the Alertmanager push and puts it into its group,
    /// set up by `new_group` if the group is new.
    fn admit(&self, p: Pending, resolved_ns: Option<i64>, new_group: impl FnOnce(&mut Group)) {
        let mut st = self.lock();
        st.pushed.insert(
            p.key.clone(),
            Pushed {
                resolved_ns,
                alert: p.alert.clone(),
            },
        );
        st.push_due = true;
        if p.targets.is_empty() {
            return;
        }
        let labels = self.labels_of(&p.alert);
        let key = group_key(&p.targets, &labels);
        let g = st.groups.entry(key).or_insert_with(|| {
            let mut g = Group {
                labels,
                targets: p.targets.clone(),
                alerts: BTreeMap::new(),
                next_flush_ns: 0,
                last_notified_ns: None,
                last_sent: BTreeMap::new(),
                held: BTreeMap::new(),
            };
            new_group(&mut g);
            g
        });
        g.alerts.insert(p.key.clone(), p);
    }

    /// Notifications of the groups due at `now_ns` that have something to
    /// say, and the alerts silences held back. `silenced` maps an alert's
    /// labels to the id of a silence that holds it back.
    pub fn flush_due(
        &self,
        now_ns: i64,
        receiver: &str,
        external_url: &str,
        silenced: impl Fn(&BTreeMap<String, String>) -> Option<i64>,
    ) -> (Vec<Outgoing>, Vec<Held>) {
        let mut st = self.lock();
        let mut out = Vec::new();
        let mut held = Vec::new();
        let mut empty = Vec::new();
        for (gk, g) in st.groups.iter_mut() {
            if now_ns < g.next_flush_ns {
                continue;
            }
            let mut open = Vec::new();
            for (k, p) in &g.alerts {
                let cur = (p.alert.status.clone(), p.alert.fingerprint.clone());
                match silenced(&p.alert.labels) {
                    Some(id) => {
                        if g.held.get(k) != Some(&cur) {
                            held.push(Held {
                                labels: p.alert.labels.clone(),
                                status: p.alert.status.clone(),
                                silence: id,
                                incident: p.incident,
                            });
                            g.held.insert(k.clone(), cur);
                        }
                    }
                    None => open.push((k, p, cur)),
                }
            }
            let changed = open
                .iter()
                .any(|(k, _, cur)| g.last_sent.get(*k) != Some(cur));
            let firing = open.iter().any(|(_, p, _)| p.alert.status == "firing");
            let repeat = firing
                && g.last_notified_ns
                    .is_some_and(|t| now_ns - t >= self.config.repeat_interval_ns);
            if changed || repeat {
                let alerts: Vec<WebhookAlert> =
                    open.iter().map(|(_, p, _)| p.alert.clone()).collect();
                let incidents = open
                    .iter()
                    .filter_map(|(_, p, _)| p.incident.map(|i| (i, p.alert.status.clone())))
                    .collect();
                let labels: Vec<&BTreeMap<String, String>> =
                    alerts.iter().map(|a| &a.labels).collect();
                let annotations: Vec<&BTreeMap<String, String>> =
                    alerts.iter().map(|a| &a.annotations).collect();
                let payload = WebhookPayload {
                    version: "4".into(),
                    group_key: format!(
                        "{{}}:{{{}}}",
                        g.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    truncated_alerts: 0,
                    status: if firing { "firing" } else { "resolved" }.into(),
                    receiver: receiver.into(),
                    group_labels: g.labels.clone(),
                    common_labels: common(&labels),
                    common_annotations: common(&annotations),
                    external_url: external_url.into(),
                    alerts,
                };
                out.push(Outgoing {
                    targets: g.targets.clone(),
                    payload,
                    incidents,
                });
                g.last_notified_ns = Some(now_ns);
                for (k, _, cur) in open {
                    g.held.remove(k);
                    g.last_sent.insert(k.clone(), cur);
                }
            }
            // Resolved alerts have been told (or were silenced): they leave.
            g.alerts.retain(|_, p| p.alert.status != "resolved");
            g.last_sent.retain(|k, _| g.alerts.contains_key(k));
            g.held.retain(|k, _| g.alerts.contains_key(k));
            if g.alerts.is_empty() {
                empty.push(gk.clone());
            } else {
                g.next_flush_ns = now_ns + self.config.group_interval_ns;
            }
        }
        for k in empty {
            st.groups.remove(&k);
        }
        (out, held)
    }

    /// The alerts to push to Alertmanager at `now_ns`, if a push is due (a
    /// change, or `resend_interval` since the last push).
    pub fn push_due(&self, now_ns: i64) -> Option<Vec<PostableAlert>> {
        let mut st = self.lock();
        st.pushed.retain(|_, p| {
            p.resolved_ns
                .is_none_or(|t| now_ns - t < RESOLVED_RETENTION_NS)
        });
        let due = st.push_due
            || st
                .last_push_ns
                .is_none_or(|t| now_ns - t >= self.config.resend_interval_ns);
        if !due || st.pushed.is_empty() {
            st.push_due = false;
            return None;
        }
        st.push_due = false;
        st.last_push_ns = Some(now_ns);
        let ahead = now_ns + 4 * self.config.resend_interval_ns.max(SEC);
        Some(
            st.pushed
                .values()
                .map(|p| PostableAlert {
                    labels: p.alert.labels.clone(),
                    annotations: p.alert.annotations.clone(),
                    starts_at: p.alert.starts_at.clone(),
                    ends_at: match p.resolved_ns {
                        Some(_) if p.alert.ends_at != ZERO_TIME => p.alert.ends_at.clone(),
                        Some(t) => rfc3339(t),
                        None => rfc3339(ahead),
                    },
                    generator_url: p.alert.generator_url.clone(),
                })
                .collect(),
        )
    }

    /// Groups waiting or active, for `/metrics`.
    pub fn groups(&self) -> usize {
        self.lock().groups.len()
    }
}

/// The engine's delivery path: alerts built from SLO incidents and rule
/// instances, pushed into the dispatcher, and what the dispatcher has due
/// sent to webhooks and Alertmanagers.
impl SloEngine {
    pub(crate) fn slo_targets(&self, slo: &Slo) -> Vec<String> {
        let mut targets: Vec<String> = self.config.webhook_urls.clone();
        for w in &slo.webhooks {
            if !targets.contains(w) {
                targets.push(w.clone());
            }
        }
        targets
    }

    pub(crate) fn rule_alert(
        &self,
        inst: &crate::rules::Instance,
        firing: bool,
        external: &str,
    ) -> Pending {
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
        // Only the evaluating node notifies.
        if !self.is_evaluator() {
            return;
        }
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

    pub(crate) fn notify_alert(self: &Arc<Self>, change: &Change) {
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

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn notify(
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
        // The SLO's and its policies' annotations (e.g. `runbook_url`);
        // Burnwatch's own above take precedence.
        for (k, v) in slo.annotations_for(crate::burn::Severity::of_incident(severity.as_str())) {
            annotations.entry(k).or_insert(v);
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
}

/// The labels of an SLO's alert.
/// An instance of a grouped SLO also carries `slo_group` (the grouped
/// SLO's name) and each `groupBy` attribute as a label (`http.route` as
/// `http_route`).
pub(crate) fn slo_labels(slo: &Slo, severity: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("alertname", "SLOBurnRate".to_string()),
        ("slo", slo.name.clone()),
        ("service", slo.service.clone()),
        ("severity", severity.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some((base, values)) = &slo.instance_of {
        labels.insert("slo_group".into(), base.clone());
        for (attr, value) in values {
            let name: String = attr
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            labels.entry(name).or_insert_with(|| value.clone());
        }
    }
    labels
}

fn fmt_burn(b: Option<f64>) -> String {
    b.map_or("-".into(), |b| format!("{b:.2}"))
}

pub(crate) fn summary(slo: &Slo, status: &SloStatus) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fingerprint;

    const T: i64 = 1_700_000_000 * SEC;

    fn alert(name: &str, slo: &str, severity: &str, status: &str) -> WebhookAlert {
        let labels: BTreeMap<String, String> =
            [("alertname", name), ("slo", slo), ("severity", severity)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        WebhookAlert {
            status: status.into(),
            fingerprint: fingerprint(&labels),
            labels,
            annotations: [("summary".to_string(), format!("{slo} {severity}"))].into(),
            starts_at: rfc3339(T),
            ends_at: if status == "firing" {
                ZERO_TIME.into()
            } else {
                rfc3339(T + 600 * SEC)
            },
            generator_url: "http://bw/x".into(),
        }
    }

    fn pending(key: &str, a: WebhookAlert) -> Pending {
        Pending {
            key: key.into(),
            alert: a,
            targets: vec!["http://hook".into()],
            incident: None,
        }
    }

    fn flush(d: &Dispatcher, at: i64) -> Vec<Outgoing> {
        d.flush_due(at, "burnwatch", "http://bw", |_| None).0
    }

    fn config() -> Grouping {
        Grouping {
            group_by: vec!["alertname".into()],
            group_wait_ns: 30 * SEC,
            group_interval_ns: 300 * SEC,
            repeat_interval_ns: 3600 * SEC,
            resend_interval_ns: 60 * SEC,
        }
    }

    #[test]
    fn group_wait_batches_alerts_that_start_together() {
        let d = Dispatcher::new(config());
        d.push(pending("a", alert("HighErrors", "", "page", "firing")), T);
        assert!(flush(&d, T + 29 * SEC).is_empty(), "still in group_wait");
        d.push(
            pending("b", alert("HighErrors", "", "ticket", "firing")),
            T + 10 * SEC,
        );
        let out = flush(&d, T + 30 * SEC);
        assert_eq!(out.len(), 1);
        let p = &out[0].payload;
        assert_eq!(p.alerts.len(), 2, "both alerts in one notification");
        assert_eq!(p.group_key, "{}:{alertname=\"HighErrors\"}");
        assert_eq!(p.common_labels.get("alertname").unwrap(), "HighErrors");
        assert!(
            !p.common_labels.contains_key("severity"),
            "differs: not common"
        );
        assert_eq!(p.status, "firing");
    }

    #[test]
    fn changes_wait_for_group_interval_and_repeats_wait_for_repeat_interval() {
        let d = Dispatcher::new(config());
        d.push(pending("a", alert("X", "", "page", "firing")), T);
        assert_eq!(flush(&d, T + 30 * SEC).len(), 1);
        // Nothing changed: no notification at the next interval.
        assert!(flush(&d, T + 330 * SEC).is_empty());
        // A new alert joins: sent at the next group interval, not before.
        d.push(
            pending("b", alert("X", "", "ticket", "firing")),
            T + 400 * SEC,
        );
        assert!(flush(&d, T + 500 * SEC).is_empty());
        let out = flush(&d, T + 630 * SEC);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.alerts.len(), 2);
        // Unchanged and firing: repeated once repeat_interval has passed.
        assert!(flush(&d, T + 930 * SEC).is_empty());
        let repeat = flush(&d, T + 630 * SEC + 3600 * SEC);
        assert_eq!(repeat.len(), 1, "repeat_interval");
        // One resolves: the group says so once, then only the other remains.
        let mut r = alert("X", "", "page", "resolved");
        r.starts_at = rfc3339(T);
        d.push(pending("a", r), T + 5000 * SEC);
        let out = flush(&d, T + 5000 * SEC + 300 * SEC);
        assert_eq!(out.len(), 1);
        let statuses: Vec<&str> = out[0]
            .payload
            .alerts
            .iter()
            .map(|a| a.status.as_str())
            .collect();
        assert_eq!(statuses, ["resolved", "firing"]);
        assert_eq!(out[0].payload.status, "firing");
        // The last one resolves: a resolved notification, then the group is gone.
        d.push(
            pending("b", alert("X", "", "ticket", "resolved")),
            T + 6000 * SEC,
        );
        let out = flush(&d, T + 7000 * SEC);
        assert_eq!(out[0].payload.status, "resolved");
        assert_eq!(d.groups(), 0);
    }

    #[test]
    fn an_escalation_is_a_change_of_the_same_alert() {
        let d = Dispatcher::new(Grouping {
            group_by: vec!["alertname".into(), "slo".into()],
            ..config()
        });
        d.push(
            pending("slo/c/1", alert("SLOBurnRate", "c", "ticket", "firing")),
            T,
        );
        assert_eq!(flush(&d, T + 30 * SEC).len(), 1);
        d.push(
            pending("slo/c/1", alert("SLOBurnRate", "c", "page", "firing")),
            T + 60 * SEC,
        );
        let out = flush(&d, T + 330 * SEC);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.alerts.len(), 1, "one incident, one alert");
        assert_eq!(out[0].payload.alerts[0].labels["severity"], "page");
        // Another SLO is another group.
        d.push(
            pending("slo/d/2", alert("SLOBurnRate", "d", "page", "firing")),
            T + 400 * SEC,
        );
        assert_eq!(d.groups(), 2);
    }

    #[test]
    fn restored_alerts_are_not_notified_again_but_are_repeated() {
        let d = Dispatcher::new(config());
        d.restore(pending("a", alert("X", "", "page", "firing")), T);
        assert!(flush(&d, T + 300 * SEC).is_empty());
        assert_eq!(flush(&d, T + 3600 * SEC).len(), 1);
    }

    #[test]
    fn silenced_alerts_are_left_out_at_flush() {
        let d = Dispatcher::new(config());
        d.push(pending("a", alert("X", "", "page", "firing")), T);
        d.push(pending("b", alert("X", "", "ticket", "firing")), T);
        let (out, held) = d.flush_due(T + 30 * SEC, "burnwatch", "http://bw", |l| {
            (l.get("severity").map(String::as_str) == Some("ticket")).then_some(1)
        });
        assert_eq!(out[0].payload.alerts.len(), 1);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].silence, 1);
        // All silenced: nothing is sent, and the silence is not a change to
        // tell about later.
        let d = Dispatcher::new(config());
        d.push(pending("a", alert("X", "", "page", "firing")), T);
        let (out, held) = d.flush_due(T + 30 * SEC, "burnwatch", "http://bw", |_| Some(2));
        assert!(out.is_empty());
        assert_eq!(held.len(), 1);
        let (out, held) = d.flush_due(T + 330 * SEC, "burnwatch", "http://bw", |_| Some(2));
        assert!(
            out.is_empty() && held.is_empty(),
            "held back once, not every interval"
        );
        // The silence expires: the alert is notified at the next interval.
        assert_eq!(flush(&d, T + 630 * SEC).len(), 1);
    }

    #[test]
    fn alertmanager_push_resends_and_keeps_resolved_alerts_a_while() {
        let d = Dispatcher::new(config());
        d.push(pending("a", alert("X", "", "page", "firing")), T);
        let first = d.push_due(T).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(
            first[0].ends_at,
            rfc3339(T + 240 * SEC),
            "4 resend intervals ahead"
        );
        assert!(
            d.push_due(T + 30 * SEC).is_none(),
            "nothing new, not yet a resend"
        );
        assert_eq!(d.push_due(T + 60 * SEC).unwrap().len(), 1, "resend");
        d.push(
            pending("a", alert("X", "", "page", "resolved")),
            T + 90 * SEC,
        );
        let r = d.push_due(T + 90 * SEC).unwrap();
        assert_eq!(r[0].ends_at, rfc3339(T + 600 * SEC), "the resolve time");
        assert!(
            d.push_due(T + 90 * SEC + 16 * 60 * SEC).is_none(),
            "dropped after 15 min"
        );
        // Without webhook receivers an alert is still pushed.
        d.push(
            Pending {
                targets: vec![],
                ..pending("c", alert("Y", "", "page", "firing"))
            },
            T + 2000 * SEC,
        );
        assert_eq!(d.push_due(T + 2000 * SEC).unwrap().len(), 1);
        assert_eq!(d.groups(), 1, "an alert without receivers joins no group");
    }
}
