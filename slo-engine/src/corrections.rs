//! SLO corrections and maintenance windows: time ranges (past or future)
//! whose events are excluded from an SLO's SLI, budget and burn. A
//! maintenance window also holds the SLO's alerts while it runs (the
//! status says so; no incident opens and nothing is sent), and releases
//! them after.
//!
//! They come from YAML beside the SLOs (`kind: BudgetAdjustment`, see
//! [`load_dir`]) and at runtime from the API and `burnwatch slo correct`,
//! stored in the state database with an audit trail (created, edited,
//! deleted, by whom). A correction's scope is one SLO, the SLOs of a
//! service, the SLOs whose labels match, or (none given) every SLO.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use statedb::{StateDb, params};

use crate::openslo::Slo;

/// Longest reason, author or scope name, in bytes.
pub const MAX_TEXT: usize = 1024;

/// Most labels in a scope.
pub const MAX_LABELS: usize = 32;

/// Longest correction: a year.
pub const MAX_LENGTH_NS: i64 = 366 * 86_400 * 1_000_000_000;

/// Which SLOs a correction applies to; nothing given means every SLO.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scope {
    /// One SLO by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<String>,
    /// The SLOs of a service (`spec.service`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The SLOs with all these `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Scope {
    /// Whether `slo` is in the scope.
    pub fn matches(&self, slo: &Slo) -> bool {
        self.slo
            .as_ref()
            .is_none_or(|n| *n == slo.name || *n == slo.base_name())
            && self.service.as_ref().is_none_or(|s| *s == slo.service)
            && self
                .labels
                .iter()
                .all(|(k, v)| slo.labels.get(k).is_some_and(|x| x == v))
    }
}

/// A correction (events excluded) or a maintenance window (events
/// excluded and alerts held).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    /// Id: positive for stored ones, negative for those from YAML.
    pub id: i64,
    /// `correction` or `maintenance`.
    pub kind: String,
    /// Which SLOs.
    pub scope: Scope,
    /// Start, ns.
    pub from_ns: i64,
    /// End (exclusive), ns.
    pub to_ns: i64,
    /// Why.
    pub reason: String,
    /// Who made it.
    pub created_by: String,
    /// When it was made, ns.
    pub created_ns: i64,
    /// `api` or the YAML file and object name.
    pub source: String,
}

impl Correction {
    /// Whether it holds alerts at `at_ns` (a running maintenance window).
    pub fn holds(&self, at_ns: i64) -> bool {
        self.kind == "maintenance" && self.from_ns <= at_ns && at_ns < self.to_ns
    }
}

/// What an API caller or the CLI gives to create or edit one.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCorrection {
    /// `correction` (default) or `maintenance`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Which SLOs.
    #[serde(default)]
    pub scope: Scope,
    /// Start, ns.
    pub from_ns: i64,
    /// End, ns.
    pub to_ns: i64,
    /// Why (required).
    pub reason: String,
    /// Who (required).
    pub created_by: String,
}

impl NewCorrection {
    /// Checks it; the error says what is wrong.
    pub fn check(&self) -> Result<String, String> {
        let kind = self.kind.clone().unwrap_or_else(|| "correction".into());
        if kind != "correction" && kind != "maintenance" {
            return Err(format!("kind {kind:?}: use correction or maintenance"));
        }
        if self.to_ns <= self.from_ns {
            return Err("the end must be after the start".into());
        }
        if self.to_ns - self.from_ns > MAX_LENGTH_NS {
            return Err("a correction may last at most a year".into());
        }
        if self.reason.trim().is_empty() || self.created_by.trim().is_empty() {
            return Err("reason and createdBy are required".into());
        }
        // Every evaluation round reads them all: each one stays small.
        if self.reason.len() > MAX_TEXT || self.created_by.len() > MAX_TEXT {
            return Err(format!(
                "reason and createdBy may be at most {MAX_TEXT} bytes"
            ));
        }
        let scope_text = self.scope.slo.iter().chain(&self.scope.service);
        if self.scope.labels.len() > MAX_LABELS
            || scope_text
                .chain(self.scope.labels.keys())
                .chain(self.scope.labels.values())
                .any(|t| t.len() > MAX_TEXT)
        {
            return Err(format!(
                "a scope has at most {MAX_LABELS} labels and names of at most {MAX_TEXT} bytes"
            ));
        }
        Ok(kind)
    }
}

/// One change in a correction's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// The correction.
    pub correction: i64,
    /// `created`, `edited` or `deleted`.
    pub action: String,
    /// Who.
    pub by: String,
    /// When, ns.
    pub at_ns: i64,
    /// The correction as it was after the change (before, for `deleted`).
    pub detail: serde_json::Value,
}

/// The stored corrections.
pub struct Corrections {
    db: Arc<StateDb>,
}

impl std::fmt::Debug for Corrections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Corrections")
    }
}

impl Corrections {
    /// The corrections in `db` (migrated by [`crate::incidents::open_state`]).
    pub fn new(db: Arc<StateDb>) -> Corrections {
        Corrections { db }
    }

    fn audit_row(&self, c: &Correction, action: &str, by: &str, at_ns: i64) -> statedb::Result<()> {
        self.db.execute(
            "INSERT INTO correction_audit (correction, action, by_whom, at_ns, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                c.id,
                action,
                by,
                at_ns,
                serde_json::to_string(c).unwrap_or_default()
            ],
        )?;
        Ok(())
    }

    /// Stores a new correction; returns it.
    pub fn create(&self, n: &NewCorrection, now_ns: i64) -> Result<Correction, String> {
        let kind = n.check()?;
        let scope = serde_json::to_string(&n.scope).map_err(|e| e.to_string())?;
        let id = self
            .db
            .query_opt(
                "INSERT INTO corrections (kind, scope, from_ns, to_ns, reason, created_by, created_ns, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0) RETURNING id",
                params![
                    kind.as_str(),
                    scope,
                    n.from_ns,
                    n.to_ns,
                    n.reason.trim(),
                    n.created_by.trim(),
                    now_ns
                ],
            )
            .and_then(|r| {
                r.ok_or_else(|| statedb::Error::Other("INSERT returned no id".into()))?
                    .int(0)
            })
            .map_err(|e| e.to_string())?;
        let c = self
            .get(id)
            .map_err(|e| e.to_string())?
            .ok_or("the new correction vanished")?;
        self.audit_row(&c, "created", n.created_by.trim(), now_ns)
            .map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// Replaces a correction's range, scope, kind and reason (`by` is who
    /// edits). `Ok(None)`: no such correction.
    pub fn edit(
        &self,
        id: i64,
        n: &NewCorrection,
        now_ns: i64,
    ) -> Result<Option<Correction>, String> {
        let kind = n.check()?;
        let scope = serde_json::to_string(&n.scope).map_err(|e| e.to_string())?;
        let changed = self
            .db
            .execute(
                "UPDATE corrections SET kind = ?2, scope = ?3, from_ns = ?4, to_ns = ?5, reason = ?6 WHERE id = ?1 AND deleted = 0",
                params![id, kind.as_str(), scope, n.from_ns, n.to_ns, n.reason.trim()],
            )
            .map_err(|e| e.to_string())?;
        if changed == 0 {
            return Ok(None);
        }
        let c = self.get(id).map_err(|e| e.to_string())?;
        if let Some(c) = &c {
            self.audit_row(c, "edited", n.created_by.trim(), now_ns)
                .map_err(|e| e.to_string())?;
        }
        Ok(c)
    }

    /// Deletes a correction (kept in the audit trail). `Ok(false)`: none.
    pub fn delete(&self, id: i64, by: &str, now_ns: i64) -> Result<bool, String> {
        if by.trim().is_empty() {
            return Err("who deletes it is required (by)".into());
        }
        let Some(c) = self.get(id).map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let n = self
            .db
            .execute(
                "UPDATE corrections SET deleted = 1 WHERE id = ?1 AND deleted = 0",
                params![id],
            )
            .map_err(|e| e.to_string())?;
        if n > 0 {
            self.audit_row(&c, "deleted", by.trim(), now_ns)
                .map_err(|e| e.to_string())?;
        }
        Ok(n > 0)
    }

    fn row(r: &statedb::Row) -> statedb::Result<Correction> {
        Ok(Correction {
            id: r.int(0)?,
            kind: r.text(1)?,
            scope: serde_json::from_str(&r.text(2)?).unwrap_or_default(),
            from_ns: r.int(3)?,
            to_ns: r.int(4)?,
            reason: r.text(5)?,
            created_by: r.text(6)?,
            created_ns: r.int(7)?,
            source: "api".into(),
        })
    }

    /// One live correction.
    pub fn get(&self, id: i64) -> statedb::Result<Option<Correction>> {
        let rows = self.db.query(
            "SELECT id, kind, scope, from_ns, to_ns, reason, created_by, created_ns FROM corrections WHERE id = ?1 AND deleted = 0",
            params![id],
        )?;
        rows.first().map(Self::row).transpose()
    }

    /// The live corrections, newest first.
    pub fn list(&self) -> statedb::Result<Vec<Correction>> {
        let rows = self.db.query(
            "SELECT id, kind, scope, from_ns, to_ns, reason, created_by, created_ns FROM corrections WHERE deleted = 0 ORDER BY id DESC LIMIT 10000",
            &[],
        )?;
        rows.iter().map(Self::row).collect()
    }

    /// A correction's audit trail, oldest first.
    pub fn audit(&self, id: i64) -> statedb::Result<Vec<AuditEntry>> {
        let rows = self.db.query(
            "SELECT correction, action, by_whom, at_ns, detail FROM correction_audit WHERE correction = ?1 ORDER BY id",
            params![id],
        )?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    correction: r.int(0)?,
                    action: r.text(1)?,
                    by: r.text(2)?,
                    at_ns: r.int(3)?,
                    detail: serde_json::from_str(&r.text(4)?).unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// The time ranges of `corrections` that apply to `slo`, merged (sorted,
/// disjoint).
pub fn excluded_ranges(slo: &Slo, corrections: &[Correction]) -> Vec<(i64, i64)> {
    let mut r: Vec<(i64, i64)> = corrections
        .iter()
        .filter(|c| c.scope.matches(slo))
        .map(|c| (c.from_ns, c.to_ns))
        .collect();
    r.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Reads the `BudgetAdjustment` documents of the YAML files in `dir`
/// (others are skipped). Modelled on OpenSLO v2alpha's proposal:
///
/// ```yaml
/// apiVersion: openslo/v2alpha
/// kind: BudgetAdjustment
/// metadata: {name: db-upgrade}
/// spec:
///   description: Database upgrade, checkout read-only   # the reason
///   firstEventStart: "2026-12-10T02:00:00Z"
///   duration: 2h
///   sloMatcher: {sloRef: checkout-availability}          # or service:, labels:; none: every SLO
///   type: maintenance                                    # Burnwatch: or correction (the default)
///   createdBy: ops                                       # Burnwatch
/// ```
///
/// Recurring adjustments (`rrule`) are refused.
pub fn load_dir(dir: &Path) -> Result<Vec<Correction>, String> {
    let mut files: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
        Ok(r) => r
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(_) => return Ok(Vec::new()),
    };
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        out.extend(parse(&f, &text)?);
    }
    for (i, c) in out.iter_mut().enumerate() {
        c.id = -(i as i64) - 1;
    }
    Ok(out)
}

/// Whether a YAML document is a budget adjustment.
pub(crate) fn is_adjustment(v: &serde_norway::Value) -> bool {
    v.get("kind").and_then(|k| k.as_str()) == Some("BudgetAdjustment")
}

/// The budget adjustments of one file's text.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Correction>, String> {
    use serde::Deserialize as _;
    type V = serde_norway::Value;
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v = V::deserialize(de).map_err(|e| format!("{}: invalid YAML: {e}", file.display()))?;
        if !is_adjustment(&v) {
            continue;
        }
        let name = v
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(V::as_str)
            .unwrap_or("");
        let at = format!(
            "{}: BudgetAdjustment/{name} (document {})",
            file.display(),
            i + 1
        );
        let err = |field: &str, msg: &str| format!("{at}: {field}: {msg}");
        let spec = v.get("spec").ok_or_else(|| err("spec", "is required"))?;
        let s = |k: &str| spec.get(k).and_then(V::as_str).map(str::to_string);
        if spec.get("rrule").is_some() {
            return Err(err(
                "spec.rrule",
                "recurring adjustments are not supported: declare each window",
            ));
        }
        let start = s("firstEventStart")
            .ok_or_else(|| err("spec.firstEventStart", "is required (RFC 3339)"))?;
        let from_ns = chrono::DateTime::parse_from_rfc3339(&start)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| {
                err(
                    "spec.firstEventStart",
                    "must be RFC 3339, e.g. 2026-12-10T02:00:00Z",
                )
            })?;
        let duration =
            s("duration").ok_or_else(|| err("spec.duration", "is required (e.g. 2h)"))?;
        let d = humantime::parse_duration(&duration)
            .map_err(|e| err("spec.duration", &format!("{duration:?}: {e}")))?;
        let mut scope = Scope::default();
        if let Some(m) = spec.get("sloMatcher") {
            scope.slo = m.get("sloRef").and_then(V::as_str).map(str::to_string);
            scope.service = m.get("service").and_then(V::as_str).map(str::to_string);
            if let Some(V::Mapping(l)) = m.get("labels") {
                for (k, v) in l {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                        scope.labels.insert(k.into(), v.into());
                    }
                }
            }
        }
        let n = NewCorrection {
            kind: s("type"),
            scope,
            from_ns,
            to_ns: from_ns.saturating_add(d.as_nanos().min(i64::MAX as u128) as i64),
            reason: s("description").unwrap_or_else(|| name.to_string()),
            created_by: s("createdBy").unwrap_or_else(|| "alert-rules".into()),
        };
        let kind = n.check().map_err(|e| err("spec", &e))?;
        out.push(Correction {
            id: 0,
            kind,
            scope: n.scope,
            from_ns: n.from_ns,
            to_ns: n.to_ns,
            reason: n.reason,
            created_by: n.created_by,
            created_ns: 0,
            source: format!("{}: {name}", file.display()),
        });
    }
    Ok(out)
}
