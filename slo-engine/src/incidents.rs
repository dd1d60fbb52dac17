//! Incidents in an embedded SQLite database (`<data_dir>/state/alerts.sqlite`):
//! one open incident per SLO at most, which escalates ticket -> page,
//! de-escalates, can be acknowledged, and resolves; every change is a
//! timeline entry; every notification attempt is recorded.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;

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
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
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
";

fn severity_state(s: &str) -> AlertState {
    if s == "page" {
        AlertState::Page
    } else {
        AlertState::Ticket
    }
}

impl Incidents {
    /// Opens (or creates) the database.
    pub fn open(path: &Path) -> rusqlite::Result<Incidents> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Incidents {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The open (or acknowledged) incident of `slo`: id and severity.
    pub fn open_for(&self, slo: &str) -> rusqlite::Result<Option<(i64, AlertState)>> {
        self.lock()
            .query_row(
                "SELECT id, severity FROM incidents WHERE slo = ?1 AND state <> 'resolved' ORDER BY id DESC LIMIT 1",
                params![slo],
                |r| Ok((r.get::<_, i64>(0)?, severity_state(&r.get::<_, String>(1)?))),
            )
            .optional()
    }

    /// When incident `id` opened.
    pub fn opened_ns(&self, id: i64) -> rusqlite::Result<Option<i64>> {
        self.lock()
            .query_row(
                "SELECT opened_ns FROM incidents WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
    }

    /// Applies `t` to `slo`'s incident at `at_ns`; returns the incident id
    /// touched, if any.
    pub fn apply(
        &self,
        slo: &str,
        t: Transition,
        at_ns: i64,
        summary: &str,
        detail: &serde_json::Value,
    ) -> rusqlite::Result<Option<i64>> {
        let open = self.open_for(slo)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let id = match (t, open) {
            (Transition::None, _) => return Ok(None),
            (Transition::Open(sev), _) => {
                tx.execute(
                    "INSERT INTO incidents (slo, severity, state, opened_ns, updated_ns, summary) VALUES (?1, ?2, 'open', ?3, ?3, ?4)",
                    params![slo, sev.as_str(), at_ns, summary],
                )?;
                let id = tx.last_insert_rowid();
                timeline(&tx, id, at_ns, "opened", detail)?;
                id
            }
            (Transition::Escalate(sev) | Transition::Deescalate(sev), Some((id, _))) => {
                tx.execute(
                    "UPDATE incidents SET severity = ?2, updated_ns = ?3, summary = ?4 WHERE id = ?1",
                    params![id, sev.as_str(), at_ns, summary],
                )?;
                let event = if matches!(t, Transition::Escalate(_)) {
                    "escalated"
                } else {
                    "deescalated"
                };
                timeline(&tx, id, at_ns, event, detail)?;
                id
            }
            (Transition::Resolve, Some((id, _))) => {
                tx.execute(
                    "UPDATE incidents SET state = 'resolved', updated_ns = ?2, resolved_ns = ?2 WHERE id = ?1",
                    params![id, at_ns],
                )?;
                timeline(&tx, id, at_ns, "resolved", detail)?;
                id
            }
            (_, None) => return Ok(None),
        };
        tx.commit()?;
        Ok(Some(id))
    }

    /// Marks an incident acknowledged by `by`. Errors if it is unknown or
    /// resolved.
    pub fn acknowledge(&self, id: i64, by: &str, at_ns: i64) -> Result<(), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        let n = tx
            .execute(
                "UPDATE incidents SET state = 'acknowledged', acknowledged_by = ?2, updated_ns = ?3 WHERE id = ?1 AND state = 'open'",
                params![id, by, at_ns],
            )
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("incident {id} is not open"));
        }
        timeline(
            &tx,
            id,
            at_ns,
            "acknowledged",
            &serde_json::json!({ "by": by }),
        )
        .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())
    }

    /// Resolves an open or acknowledged incident by hand (`by`, with an
    /// optional note); returns its SLO, severity and opening time. Errors if
    /// it is unknown or already resolved.
    pub fn resolve(
        &self,
        id: i64,
        by: &str,
        note: &str,
        at_ns: i64,
    ) -> Result<(String, AlertState, i64, String), String> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        let row: Option<(String, String, i64, String)> = tx
            .query_row(
                "SELECT slo, severity, opened_ns, summary FROM incidents WHERE id = ?1 AND state <> 'resolved'",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        let Some((slo, severity, opened_ns, summary)) = row else {
            return Err(format!("incident {id} is not open"));
        };
        tx.execute(
            "UPDATE incidents SET state = 'resolved', updated_ns = ?2, resolved_ns = ?2 WHERE id = ?1",
            params![id, at_ns],
        )
        .map_err(|e| e.to_string())?;
        let mut detail = serde_json::json!({ "by": by, "manual": true });
        if !note.is_empty() {
            detail["note"] = serde_json::Value::String(note.to_string());
        }
        timeline(&tx, id, at_ns, "resolved", &detail).map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
        Ok((slo, severity_state(&severity), opened_ns, summary))
    }

    /// Adds a timeline entry (e.g. a notification outcome).
    pub fn note(
        &self,
        id: i64,
        at_ns: i64,
        event: &str,
        detail: &serde_json::Value,
    ) -> rusqlite::Result<()> {
        let conn = self.lock();
        timeline(&conn, id, at_ns, event, detail)
    }

    /// Incidents, newest first (at most `limit`), with their timelines.
    pub fn list(&self, limit: usize) -> rusqlite::Result<Vec<Incident>> {
        self.select("ORDER BY id DESC LIMIT ?1", limit as i64)
    }

    /// One incident with its timeline.
    pub fn get(&self, id: i64) -> rusqlite::Result<Option<Incident>> {
        Ok(self.select("WHERE id = ?1", id)?.pop())
    }

    /// Incidents chosen by `tail` (SQL after `FROM incidents`, with one
    /// parameter), with their timelines.
    fn select(&self, tail: &str, param: i64) -> rusqlite::Result<Vec<Incident>> {
        let conn = self.lock();
        let mut st = conn.prepare(&format!(
            "SELECT id, slo, severity, state, opened_ns, updated_ns, resolved_ns, acknowledged_by, summary FROM incidents {tail}"
        ))?;
        let mut incidents = st
            .query_map(params![param], |r| {
                Ok(Incident {
                    id: r.get(0)?,
                    slo: r.get(1)?,
                    severity: r.get(2)?,
                    state: r.get(3)?,
                    opened_ns: r.get(4)?,
                    updated_ns: r.get(5)?,
                    resolved_ns: r.get(6)?,
                    acknowledged_by: r.get(7)?,
                    summary: r.get(8)?,
                    timeline: Vec::new(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut tl = conn.prepare(
            "SELECT at_ns, event, detail FROM timeline WHERE incident_id = ?1 ORDER BY rowid",
        )?;
        for inc in &mut incidents {
            inc.timeline = tl
                .query_map(params![inc.id], |r| {
                    let detail: String = r.get(2)?;
                    Ok(TimelineEntry {
                        at_ns: r.get(0)?,
                        event: r.get(1)?,
                        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
        }
        Ok(incidents)
    }
}

fn timeline(
    conn: &Connection,
    id: i64,
    at_ns: i64,
    event: &str,
    detail: &serde_json::Value,
) -> rusqlite::Result<()> {
    conn.execute(
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

    #[test]
    fn one_incident_escalates_resolves_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/alerts.sqlite");
        let d = serde_json::json!({});
        {
            let db = Incidents::open(&path).unwrap();
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
        }
        let db = Incidents::open(&path).unwrap();
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
        let events: Vec<&str> = inc.timeline.iter().map(|t| t.event.as_str()).collect();
        assert_eq!(events, ["opened", "escalated", "acknowledged", "resolved"]);
    }
}
