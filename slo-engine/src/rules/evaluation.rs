//! Evaluation of alert rule groups ([`crate::rules`]): the instances of
//! every rule, kept in memory and in SQLite (so a restart keeps `for`
//! progress and does not notify again), and each rule's health (last
//! evaluation, its duration and error).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use serde::Serialize;
use store::Store;
use store::sql::QueryLimits;

use crate::rules::{Change, Instance, InstanceState, InstanceStore, RuleGroup, query, step};

/// A rule's last evaluation: error, instant (ns), duration (ms).
type LastEvaluation = (Option<String>, i64, f64);

/// The outcome of a rule's last evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleHealth {
    /// Group.
    pub group: String,
    /// Alert name.
    pub alert: String,
    /// `ok`, `error` or `unknown` (not evaluated yet).
    pub health: String,
    /// The error of the last evaluation.
    pub last_error: Option<String>,
    /// When it was last evaluated, ns.
    pub last_evaluation_ns: Option<i64>,
    /// How long it took, ms.
    pub evaluation_ms: Option<f64>,
    /// Instances pending now.
    pub pending: usize,
    /// Instances firing now.
    pub firing: usize,
}

/// Rule groups and the state of their alert instances.
pub struct RuleRunner {
    groups: Vec<RuleGroup>,
    instances: Mutex<HashMap<(String, String), Vec<Instance>>>,
    health: RwLock<HashMap<(String, String), LastEvaluation>>,
    db: InstanceStore,
    /// Rule evaluations.
    pub evaluations: AtomicU64,
    /// Rule evaluations that failed.
    pub failures: AtomicU64,
}

impl std::fmt::Debug for RuleRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleRunner")
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl RuleRunner {
    /// The rules over the instance table in `db`, with the instances of
    /// every rule read back.
    pub fn open(
        groups: Vec<RuleGroup>,
        db: std::sync::Arc<statedb::StateDb>,
    ) -> statedb::Result<RuleRunner> {
        let runner = RuleRunner {
            groups,
            instances: Mutex::new(HashMap::new()),
            health: RwLock::new(HashMap::new()),
            db: InstanceStore::new(db),
            evaluations: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        };
        runner.reload()?;
        Ok(runner)
    }

    /// Reads every rule's instances back from the database (at start, and
    /// when this node takes over evaluation or follows the evaluating one).
    pub fn reload(&self) -> statedb::Result<()> {
        let mut instances = HashMap::new();
        for g in &self.groups {
            for r in &g.rules {
                instances.insert(
                    (g.name.clone(), r.name.clone()),
                    self.db.load(&g.name, &r.name)?,
                );
            }
        }
        *self.instances.lock().unwrap_or_else(|e| e.into_inner()) = instances;
        Ok(())
    }

    /// The rule groups.
    pub fn groups(&self) -> &[RuleGroup] {
        &self.groups
    }

    /// Evaluates every rule of group `index` at `at_ns` (in order) and
    /// returns what started or stopped firing. A rule whose query fails
    /// keeps its instances as they are and records the error.
    pub async fn evaluate_group_at(
        &self,
        store: &Store,
        limits: &QueryLimits,
        index: usize,
        at_ns: i64,
    ) -> Vec<Change> {
        let Some(group) = self.groups.get(index) else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        for rule in &group.rules {
            let key = (group.name.clone(), rule.name.clone());
            let started = Instant::now();
            if rule.record {
                let result = crate::rules::record(store, rule, at_ns).await;
                self.evaluations.fetch_add(1, Ordering::Relaxed);
                let error = result.err();
                if let Some(e) = &error {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(group = %group.name, record = %rule.name, error = %e, "recording rule evaluation failed");
                }
                let ms = started.elapsed().as_secs_f64() * 1e3;
                self.health
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, (error, at_ns, ms));
                continue;
            }
            let result = query(store, rule, at_ns, limits).await;
            let ms = started.elapsed().as_secs_f64() * 1e3;
            self.evaluations.fetch_add(1, Ordering::Relaxed);
            let error = match result {
                Ok(rows) => {
                    let snapshot = {
                        let mut all = self.instances.lock().unwrap_or_else(|e| e.into_inner());
                        let inst = all.entry(key.clone()).or_default();
                        changes.extend(step(&group.name, rule, inst, rows, at_ns));
                        inst.clone()
                    };
                    if let Err(e) = self.db.save(&group.name, &rule.name, &snapshot) {
                        tracing::error!(group = %group.name, alert = %rule.name, error = %e, "cannot save alert state");
                    }
                    None
                }
                Err(e) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(group = %group.name, alert = %rule.name, error = %e, "alert rule evaluation failed");
                    Some(e)
                }
            };
            self.health
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, (error, at_ns, ms));
        }
        changes
    }

    /// Every instance (pending, firing, recently resolved), by group, alert
    /// and labels.
    pub fn instances(&self) -> Vec<Instance> {
        let all = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Instance> = all.values().flatten().cloned().collect();
        out.sort_by(|a, b| {
            (&a.group, &a.alert, &a.labels, a.active_at_ns).cmp(&(
                &b.group,
                &b.alert,
                &b.labels,
                b.active_at_ns,
            ))
        });
        out
    }

    /// Health of every rule.
    pub fn health(&self) -> Vec<RuleHealth> {
        let health = self.health.read().unwrap_or_else(|e| e.into_inner());
        let all = self.instances.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for g in &self.groups {
            for r in &g.rules {
                let key = (g.name.clone(), r.name.clone());
                let h = health.get(&key);
                let count = |s: InstanceState| {
                    all.get(&key)
                        .map_or(0, |v| v.iter().filter(|i| i.state == s).count())
                };
                out.push(RuleHealth {
                    group: g.name.clone(),
                    alert: r.name.clone(),
                    health: match h {
                        None => "unknown",
                        Some((None, _, _)) => "ok",
                        Some((Some(_), _, _)) => "error",
                    }
                    .into(),
                    last_error: h.and_then(|(e, _, _)| e.clone()),
                    last_evaluation_ns: h.map(|(_, t, _)| *t),
                    evaluation_ms: h.map(|(_, _, ms)| *ms),
                    pending: count(InstanceState::Pending),
                    firing: count(InstanceState::Firing),
                });
            }
        }
        out
    }

    /// Instances per state, for `/metrics`.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out: BTreeMap<&'static str, usize> =
            [("pending", 0), ("firing", 0), ("resolved", 0)].into();
        for i in self.instances() {
            *out.entry(i.state.as_str()).or_default() += 1;
        }
        out
    }
}
