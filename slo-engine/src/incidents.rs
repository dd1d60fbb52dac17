//! Incidents in the state database (embedded SQLite at
//! `<data_dir>/state/alerts.sqlite`, or a shared PostgreSQL):
//! one open incident per SLO at most, which escalates ticket -> page,
//! de-escalates, can be acknowledged, and resolves; every change is a
//! timeline entry; every notification attempt is recorded.

use std::sync::Arc;

use serde::Serialize;
use statedb::{Conn, Migration, StateDb, params};

use crate::evaluate::AlertState;

/// What an evaluation does to an SLO's incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing changes.
    None,
    /// Open a new incident at this severity.
    Open(AlertState),
    /// Raise the open incident's severity (ticket -> page).
    Escalate(AlertState),
    /// Lower it (page -> ticket).
    Deescalate(AlertState),
    /// Close it.
    Resolve,
}

/// The transition for an SLO whose open incident (if any) has severity
/// `open` and whose evaluation says `state`. Missing data neither opens nor
/// resolves: an outage that stops all traffic must not look like a recovery.
pub fn transition(open: Option<AlertState>, state: AlertState) -> Transition {
    let firing = matches!(state, AlertState::Page | AlertState::Ticket);
    match (open, firing) {
        (None, true) => Transition::Open(state),
        (None, false) => Transition::None,
        (Some(_), false) if state == AlertState::Ok => Transition::Resolve,
        (Some(_), false) => Transition::None,
        (Some(cur), true) if state > cur => Transition::Escalate(state),
        (Some(cur), true) if state < cur => Transition::Deescalate(state),
        (Some(_), true) => Transition::None,
    }
}

/// An incident as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// Id.
    pub id: i64,
    /// The SLO.
    pub slo: String,
    /// `page` or `ticket`.
    pub severity: String,
    /// `open`, `acknowledged` or `resolved`.
    pub state: String,
    /// When it opened (ns since the epoch).
    pub opened_ns: i64,
    /// Last change.
    pub updated_ns: i64,
    /// When it resolved.
    pub resolved_ns: Option<i64>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// One line.
    pub summary: String,
    /// State changes and figures, oldest first.
    pub timeline: Vec<TimelineEntry>,
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// When (ns since the epoch).
    pub at_ns: i64,
    /// `opened`, `escalated`, `deescalated`, `acknowledged`, `resolved`,
    /// `notified`, `notification_failed`.
    pub event: String,
    /// Details (burn figures, who, target).
    pub detail: serde_json::Value,
}

/// The incident database.
pub struct Incidents {
    db: Arc<StateDb>,
}

/// The alerting tables, as versioned migrations of the `alerts` component.
/// SQLite's first version is the schema of earlier releases (`IF NOT
/// EXISTS`), so their files upgrade in place.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "incidents, timelines, silences, alert instances",
        sqlite: "
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slo TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_ns INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    resolved_ns INTEGER,
    acknowledged_by TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_open ON incidents (slo) WHERE state <> 'resolved';
CREATE TABLE IF NOT EXISTS timeline (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at_ns INTEGER NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS timeline_incident ON timeline (incident_id);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers TEXT NOT NULL,
    starts_ns INTEGER NOT NULL,
    ends_ns INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_instances (
    grp TEXT NOT NULL,
    alert TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (grp, alert, fingerprint, state)
);",
        postgres: "
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    slo TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_ns BIGINT NOT NULL,
    updated_ns BIGINT NOT NULL,
    resolved_ns BIGINT,
    acknowledged_by TEXT,
    summary TEXT NOT NULL
);
CREATE INDEX incidents_open ON incidents (slo) WHERE state <> 'resolved';
CREATE TABLE timeline (
    id BIGSERIAL PRIMARY KEY,
    incident_id BIGINT NOT NULL REFERENCES incidents (id),
    at_ns BIGINT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX timeline_incident ON timeline (incident_id);
CREATE TABLE silences (
    id BIGSERIAL PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_ns BIGINT NOT NULL,
    ends_ns BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_ns BIGINT NOT NULL
);
CREATE TABLE alert_instances (
    grp TEXT NOT NULL,
    alert TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (grp, alert, fingerprint, state)
);",
    },
    Migration {
        version: 2,
        name: "at most one open incident per SLO",
        sqlite: "CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open ON incidents (slo) WHERE state <> 'resolved';",
        postgres: "CREATE UNIQUE INDEX incidents_one_open ON incidents (slo) WHERE state <> 'resolved';",
    },
    Migration {
        version: 3,
        name: "SLO corrections and maintenance windows, with their audit trail",
        sqlite: "
CREATE TABLE IF NOT EXISTS corrections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    from_ns INTEGER NOT NULL,
    to_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    deleted INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS correction_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    correction INTEGER NOT NULL,
    action TEXT NOT NULL,
    by_whom TEXT NOT NULL,
    at_ns INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS correction_audit_of ON correction_audit (correction);",
        postgres: "
CREATE TABLE corrections (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    from_ns BIGINT NOT NULL,
    to_ns BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    deleted BIGINT NOT NULL
);
CREATE TABLE correction_audit (
    id BIGSERIAL PRIMARY KEY,
    correction BIGINT NOT NULL,
    action TEXT NOT NULL,
    by_whom TEXT NOT NULL,
    at_ns BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX correction_audit_of ON correction_audit (correction);",
    },
];

/// Opens the state database at `target` with the alerting tables migrated.
pub fn open_state(target: &statedb::Target) -> statedb::Result<Arc<StateDb>> {
    let db = StateDb::open(target)?;
    db.migrate("alerts", MIGRATIONS)?;
    Ok(Arc::new(db))
}

fn severity_state(s: &str) -> AlertState {
    if s == "page" {
        AlertState::Page
    } else {
        AlertState::Ticket
    }
}

impl Incidents {
    /// The incidents in `db` (migrated by [`open_state`]).
    pub fn new(db: Arc<StateDb>) -> Incidents {
        Incidents { db }
    }

    /// The open (or acknowledged) incident of `slo`: id and severity.
    pub fn open_for(&self, slo: &str) -> statedb::Result<Option<(i64, AlertState)>> {
        self.db
            .query_opt(
                "SELECT id, severity FROM incidents WHERE slo = ?1 AND state <> 'resolved' ORDER BY id DESC LIMIT 1",
                params![slo],
            )?
            .map(|r| Ok((r.int(0)?, severity_state(&r.text(1)?))))
            .transpose()
    }

    /// The SLOs with an open (or acknowledged) incident.
    pub fn open_slos(&self) -> statedb::Result<Vec<String>> {
        self.db
            .query(
                "SELECT DISTINCT slo FROM incidents WHERE state <> 'resolved'",
                params![],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect()
    }

    /// When incident `id` opened.
    pub fn opened_ns(&self, id: i64) -> statedb::Result<Option<i64>> {
        self.db
            .query_opt("SELECT opened_ns FROM incidents WHERE id = ?1", params![id])?
            .map(|r| r.int(0))
            .transpose()
    }

    /// Applies `t` to `slo`'s incident at `at_ns`; returns the incident id
    /// touched, if any. The open incident is read in the same transaction,
    /// and a unique index allows one open incident per SLO, so two writers
    /// cannot open two.
    pub fn apply(
        &self,
        slo: &str,
        t: Transition,
        at_ns: i64,
        summary: &str,
        detail: &serde_json::Value,
    ) -> statedb::Result<Option<i64>> {
        if t == Transition::None {
            return Ok(None);
        }
        self.db.transaction(|tx| {
            let open = tx
                .query_opt(
                    "SELECT id FROM incidents WHERE slo = ?1 AND state <> 'resolved' ORDER BY id DESC LIMIT 1",
                    params![slo],
                )?
                .map(|r| r.int(0))
                .transpose()?;
            let id = match (t, open) {
                (Transition::None, _) => return Ok(None),
                (Transition::Open(sev), _) => {
                    let id = tx
                        .query_opt(
                            "INSERT INTO incidents (slo, severity, state, opened_ns, updated_ns, summary) VALUES (?1, ?2, 'open', ?3, ?3, ?4) RETURNING id",
                            params![slo, sev.as_str(), at_ns, summary],
                        )?
                        .ok_or_else(|| statedb::Error::Other("INSERT returned no id".into()))?
                        .int(0)?;
                    timeline(tx, id, at_ns, "opened", detail)?;
                    id
                }
                (Transition::Escalate(sev) | Transition::Deescalate(sev), Some(id)) => {
                    tx.execute(
                        "UPDATE incidents SET severity = ?2, updated_ns = ?3, summary = ?4 WHERE id = ?1",
                        params![id, sev.as_str(), at_ns, summary],
                    )?;
                    let event = if matches!(t, Transition::Escalate(_)) {
                        "escalated"
                    } else {
                        "deescalated"
                    };
                    timeline(tx, id, at_ns, event, detail)?;
                    id
                }
                (Transition::Resolve, Some(id)) => {
                    tx.execute(
                        "UPDATE incidents SET state = 'resolved', updated_ns = ?2, resolved_ns = ?2 WHERE id = ?1",
                        params![id, at_ns],
                    )?;
                    timeline(tx, id, at_ns, "resolved", detail)?;
                    id
                }
                (_, None) => return Ok(None),
            };
            Ok(Some(id))
        })
    }

    /// Marks an incident acknowledged by `by`. Errors if it is unknown or
    /// resolved.
    pub fn acknowledge(&self, id: i64, by: &str, at_ns: i64) -> Result<(), String> {
        let done = self
            .db
            .transaction(|tx| {
                let n = tx.execute(
                    "UPDATE incidents SET state = 'acknowledged', acknowledged_by = ?2, updated_ns = ?3 WHERE id = ?1 AND state = 'open'",
                    params![id, by, at_ns],
                )?;
                if n == 0 {
                    return Ok(false);
                }
                timeline(tx, id, at_ns, "acknowledged", &serde_json::json!({ "by": by }))?;
                Ok(true)
            })
            .map_err(|e| e.to_string())?;
        if done {
            Ok(())
        } else {
            Err(format!("incident {id} is not open"))
        }
    }

    /// Resolves an open or acknowledged incident by hand (`by`, with an
    /// optional note); returns its SLO, severity, opening time and summary.
    /// Errors if it is unknown or already resolved.
    pub fn resolve(
        &self,
        id: i64,
        by: &str,
        note: &str,
        at_ns: i64,
    ) -> Result<(String, AlertState, i64, String), String> {
        let row = self
            .db
            .transaction(|tx| {
                let Some(r) = tx.query_opt(
                    "SELECT slo, severity, opened_ns, summary FROM incidents WHERE id = ?1 AND state <> 'resolved'",
                    params![id],
                )?
                else {
                    return Ok(None);
                };
                let row = (r.text(0)?, r.text(1)?, r.int(2)?, r.text(3)?);
                tx.execute(
                    "UPDATE incidents SET state = 'resolved', updated_ns = ?2, resolved_ns = ?2 WHERE id = ?1",
                    params![id, at_ns],
                )?;
                let mut detail = serde_json::json!({ "by": by, "manual": true });
                if !note.is_empty() {
                    detail["note"] = serde_json::Value::String(note.to_string());
                }
                timeline(tx, id, at_ns, "resolved", &detail)?;
                Ok(Some(row))
            })
            .map_err(|e| e.to_string())?;
        let Some((slo, severity, opened_ns, summary)) = row else {
            return Err(format!("incident {id} is not open"));
        };
        Ok((slo, severity_state(&severity), opened_ns, summary))
    }

    /// Adds a timeline entry (e.g. a notification outcome).
    pub fn note(
        &self,
        id: i64,
        at_ns: i64,
        event: &str,
        detail: &serde_json::Value,
    ) -> statedb::Result<()> {
        self.db
            .transaction(|tx| timeline(tx, id, at_ns, event, detail))
    }

    /// Incidents, newest first (at most `limit`), with their timelines.
    pub fn list(&self, limit: usize) -> statedb::Result<Vec<Incident>> {
        self.select("ORDER BY id DESC LIMIT ?1", limit as i64)
    }

    /// One incident with its timeline.
    pub fn get(&self, id: i64) -> statedb::Result<Option<Incident>> {
        Ok(self.select("WHERE id = ?1", id)?.pop())
    }

    /// Incidents chosen by `tail` (SQL after `FROM incidents`, with one
    /// parameter), with their timelines.
    fn select(&self, tail: &str, param: i64) -> statedb::Result<Vec<Incident>> {
        // Insertion order of timeline entries: SQLite's rowid, PostgreSQL's
        // serial id.
        let order = match self.db.dialect() {
            statedb::Dialect::Sqlite => "rowid",
            statedb::Dialect::Postgres => "id",
        };
        self.db.transaction(|tx| {
            let mut incidents = tx
                .query(
                    &format!(
                        "SELECT id, slo, severity, state, opened_ns, updated_ns, resolved_ns, acknowledged_by, summary FROM incidents {tail}"
                    ),
                    params![param],
                )?
                .iter()
                .map(|r| {
                    Ok(Incident {
                        id: r.int(0)?,
                        slo: r.text(1)?,
                        severity: r.text(2)?,
                        state: r.text(3)?,
                        opened_ns: r.int(4)?,
                        updated_ns: r.int(5)?,
                        resolved_ns: r.opt_int(6)?,
                        acknowledged_by: r.opt_text(7)?,
                        summary: r.text(8)?,
                        timeline: Vec::new(),
                    })
                })
                .collect::<statedb::Result<Vec<_>>>()?;
            let sql = format!(
                "SELECT at_ns, event, detail FROM timeline WHERE incident_id = ?1 ORDER BY {order}"
            );
            for inc in &mut incidents {
                inc.timeline = tx
                    .query(&sql, params![inc.id])?
                    .iter()
                    .map(|r| {
                        Ok(TimelineEntry {
                            at_ns: r.int(0)?,
                            event: r.text(1)?,
                            detail: serde_json::from_str(&r.text(2)?)
                                .unwrap_or(serde_json::Value::Null),
                        })
                    })
                    .collect::<statedb::Result<Vec<_>>>()?;
            }
            Ok(incidents)
        })
    }
}

fn timeline(
    tx: &mut dyn Conn,
    id: i64,
    at_ns: i64,
    event: &str,
    detail: &serde_json::Value,
) -> statedb::Result<()> {
    tx.execute(
        "INSERT INTO timeline (incident_id, at_ns, event, detail) VALUES (?1, ?2, ?3, ?4)",
        params![id, at_ns, event, detail.to_string()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertState::*;

    #[test]
    fn transitions() {
        assert_eq!(transition(None, Ok), Transition::None);
        assert_eq!(transition(None, InsufficientData), Transition::None);
        assert_eq!(transition(None, Ticket), Transition::Open(Ticket));
        assert_eq!(transition(Some(Ticket), Page), Transition::Escalate(Page));
        assert_eq!(transition(Some(Page), Page), Transition::None);
        assert_eq!(
            transition(Some(Page), Ticket),
            Transition::Deescalate(Ticket)
        );
        assert_eq!(transition(Some(Page), InsufficientData), Transition::None);
        assert_eq!(transition(Some(Ticket), Ok), Transition::Resolve);
    }

    /// The incident lifecycle on one backend: open, escalate, acknowledge,
    /// reopen the database (a restart), resolve.
    fn lifecycle(target: &statedb::Target) {
        let d = serde_json::json!({});
        {
            let db = Incidents::new(open_state(target).unwrap());
            let id = db
                .apply("checkout", Transition::Open(Ticket), 1, "slow burn", &d)
                .unwrap()
                .unwrap();
            assert_eq!(db.open_for("checkout").unwrap(), Some((id, Ticket)));
            assert_eq!(
                db.apply("checkout", Transition::Escalate(Page), 2, "fast burn", &d)
                    .unwrap(),
                Some(id)
            );
            db.acknowledge(id, "alice", 3).unwrap();
            assert!(db.acknowledge(id, "bob", 4).is_err());
            // A second writer with a stale view cannot open a second one.
            let e = db
                .apply("checkout", Transition::Open(Page), 4, "again", &d)
                .unwrap_err();
            assert!(e.is_unique_violation(), "{e}");
        }
        let db = Incidents::new(open_state(target).unwrap());
        let (id, sev) = db.open_for("checkout").unwrap().unwrap();
        assert_eq!(sev, Page);
        db.apply("checkout", Transition::Resolve, 5, "", &d)
            .unwrap();
        assert_eq!(db.open_for("checkout").unwrap(), None);
        let list = db.list(10).unwrap();
        assert_eq!(list.len(), 1);
        let inc = &list[0];
        assert_eq!(inc.id, id);
        assert_eq!(inc.state, "resolved");
        assert_eq!(inc.acknowledged_by.as_deref(), Some("alice"));
        assert_eq!(inc.resolved_ns, Some(5));
        assert_eq!(inc.opened_ns, 1);
        let events: Vec<&str> = inc.timeline.iter().map(|t| t.event.as_str()).collect();
        assert_eq!(events, ["opened", "escalated", "acknowledged", "resolved"]);
        assert_eq!(db.get(id).unwrap().as_ref(), Some(inc));
        let (slo, _, _, _) = {
            let id2 = db
                .apply("checkout", Transition::Open(Ticket), 6, "x", &d)
                .unwrap()
                .unwrap();
            db.resolve(id2, "bob", "fixed", 7).unwrap()
        };
        assert_eq!(slo, "checkout");
        assert_eq!(db.list(10).unwrap().len(), 2);
    }

    #[test]
    fn one_incident_escalates_resolves_and_survives_a_restart_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        lifecycle(&statedb::Target::Sqlite(
            dir.path().join("state/alerts.sqlite"),
        ));
    }

    #[test]
    fn one_incident_escalates_resolves_and_survives_a_restart_postgres() {
        let pg = statedb::testing::TestPostgres::start().unwrap();
        lifecycle(&statedb::Target::Postgres(
            pg.database("incidents").unwrap(),
        ));
    }
}
