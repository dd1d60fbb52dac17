//! Silences: label matchers (Alertmanager's `=`, `!=`, `=~`, `!~`) with a
//! start, an end, an author and a comment, kept in the incident database.
//! While a silence is active, notifications whose labels match every one of
//! its matchers are not sent (incidents and alert states still change, and
//! the suppression is recorded).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use statedb::{StateDb, params};

use crate::rules::Labels;

/// One label matcher, in Alertmanager's API shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Value, or a regular expression anchored at both ends.
    pub value: String,
    /// `value` is a regular expression.
    #[serde(default)]
    pub is_regex: bool,
    /// Match when equal (or matching); `false` negates.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// Longest regex source accepted.
pub const MAX_REGEX: usize = 1_000;

impl Matcher {
    /// Parses `name="value"`, `name!="value"`, `name=~"re"`, `name!~"re"`
    /// (quotes optional).
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let ops = ["!~", "=~", "!=", "="];
        let (i, op) = ops
            .iter()
            .filter_map(|op| s.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.len())))
            .ok_or_else(|| format!("matcher {s:?}: use name=\"value\", !=, =~ or !~"))?;
        let name = s[..i].trim().to_string();
        let raw = s[i + op.len()..].trim();
        let value = raw
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(raw)
            .to_string();
        let m = Matcher {
            name,
            value,
            is_regex: op.contains('~'),
            is_equal: !op.starts_with('!'),
        };
        m.check()?;
        Ok(m)
    }

    /// Checks the name and, for a regex, that it compiles.
    pub fn check(&self) -> Result<(), String> {
        let mut c = self.name.chars();
        let valid = c
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "matcher label name {:?} must match [a-zA-Z_][a-zA-Z0-9_]*",
                self.name
            ));
        }
        if self.is_regex {
            if self.value.len() > MAX_REGEX {
                return Err(format!("matcher regex longer than {MAX_REGEX} characters"));
            }
            regex::Regex::new(&format!("^(?:{})$", self.value))
                .map_err(|e| format!("matcher {}: invalid regex: {e}", self.name))?;
        }
        Ok(())
    }

    /// Whether `labels` satisfy the matcher (an absent label is `""`).
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        let hit = if self.is_regex {
            regex::Regex::new(&format!("^(?:{})$", self.value)).is_ok_and(|r| r.is_match(v))
        } else {
            v == self.value
        };
        hit == self.is_equal
    }
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Silence {
    /// Id.
    pub id: i64,
    /// Every matcher must match.
    pub matchers: Vec<Matcher>,
    /// Start, ns.
    pub starts_at_ns: i64,
    /// End, ns (moved to the expiry time when expired early).
    pub ends_at_ns: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// `pending` (not started), `active` or `expired` at the time asked.
    pub state: &'static str,
}

impl Silence {
    /// Whether it silences `labels` at `at_ns`.
    pub fn silences(&self, labels: &Labels, at_ns: i64) -> bool {
        self.starts_at_ns <= at_ns
            && at_ns < self.ends_at_ns
            && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// A silence to create.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewSilence {
    /// At least one matcher.
    pub matchers: Vec<Matcher>,
    /// Start, ns [default: now].
    #[serde(default)]
    pub starts_at_ns: Option<i64>,
    /// End, ns.
    pub ends_at_ns: i64,
    /// Who creates it (required).
    pub created_by: String,
    /// Why (required).
    pub comment: String,
}

/// Silences in the state database.
pub struct Silences {
    db: Arc<StateDb>,
}

impl std::fmt::Debug for Silences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Silences")
    }
}

/// Most matchers per silence.
pub const MAX_MATCHERS: usize = 32;

impl Silences {
    /// The silences in `db` (migrated by [`crate::incidents::open_state`]).
    pub fn new(db: Arc<StateDb>) -> Silences {
        Silences { db }
    }

    /// Creates a silence; the error says what is wrong with it.
    pub fn create(&self, s: &NewSilence, now_ns: i64) -> Result<i64, String> {
        if s.matchers.is_empty() || s.matchers.len() > MAX_MATCHERS {
            return Err(format!("a silence needs 1 to {MAX_MATCHERS} matchers"));
        }
        for m in &s.matchers {
            m.check()?;
        }
        if s.matchers.iter().all(|m| m.matches(&Labels::new())) {
            return Err("the matchers match every alert (even one without labels): name at least one label value".into());
        }
        if s.created_by.trim().is_empty() || s.comment.trim().is_empty() {
            return Err("createdBy and comment are required".into());
        }
        let starts = s.starts_at_ns.unwrap_or(now_ns);
        if s.ends_at_ns <= starts.max(now_ns) {
            return Err("endsAtNs must be after the start and in the future".into());
        }
        self.db
            .query_opt(
                "INSERT INTO silences (matchers, starts_ns, ends_ns, created_by, comment, created_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
                params![
                    serde_json::to_string(&s.matchers).map_err(|e| e.to_string())?,
                    starts,
                    s.ends_at_ns,
                    s.created_by.trim(),
                    s.comment.trim(),
                    now_ns
                ],
            )
            .and_then(|r| {
                r.ok_or_else(|| statedb::Error::Other("INSERT returned no id".into()))?
                    .int(0)
            })
            .map_err(|e| e.to_string())
    }

    /// Ends a silence now. `Ok(false)` when there is no such silence or it
    /// already ended.
    pub fn expire(&self, id: i64, now_ns: i64) -> statedb::Result<bool> {
        let n = self.db.execute(
            "UPDATE silences SET ends_ns = ?2 WHERE id = ?1 AND ends_ns > ?2",
            params![id, now_ns],
        )?;
        Ok(n > 0)
    }

    /// Every silence (newest first), with its state at `now_ns`.
    pub fn list(&self, now_ns: i64) -> statedb::Result<Vec<Silence>> {
        let rows = self.db.query(
            "SELECT id, matchers, starts_ns, ends_ns, created_by, comment FROM silences ORDER BY id DESC LIMIT 1000",
            &[],
        )?;
        rows.iter()
            .map(|r| {
                let matchers = r.text(1)?;
                let (starts, ends) = (r.int(2)?, r.int(3)?);
                Ok(Silence {
                    id: r.int(0)?,
                    matchers: serde_json::from_str(&matchers).unwrap_or_default(),
                    starts_at_ns: starts,
                    ends_at_ns: ends,
                    created_by: r.text(4)?,
                    comment: r.text(5)?,
                    state: if now_ns < starts {
                        "pending"
                    } else if now_ns < ends {
                        "active"
                    } else {
                        "expired"
                    },
                })
            })
            .collect()
    }

    /// The first active silence that silences `labels` at `now_ns`.
    pub fn silenced_by(&self, labels: &Labels, now_ns: i64) -> Option<i64> {
        self.list(now_ns)
            .ok()?
            .into_iter()
            .find(|s| s.silences(labels, now_ns))
            .map(|s| s.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_parse_and_match() {
        let l = labels(&[("service", "gateway"), ("severity", "page")]);
        for (m, want) in [
            ("service=\"gateway\"", true),
            ("service=gateway", true),
            ("service!=\"gateway\"", false),
            ("severity=~\"page|ticket\"", true),
            ("severity=~\"pag\"", false),
            ("severity!~\"ticket\"", true),
            ("team=\"\"", true),
            ("team!=\"\"", false),
        ] {
            assert_eq!(Matcher::parse(m).unwrap().matches(&l), want, "{m}");
        }
        assert!(Matcher::parse("no operator").is_err());
        assert!(Matcher::parse("1x=\"a\"").is_err());
        assert!(
            Matcher::parse("a=~\"(\"")
                .unwrap_err()
                .contains("invalid regex")
        );
    }

    fn silences_start_end_expire_and_survive_a_reopen(target: &statedb::Target) {
        let open = || Silences::new(crate::incidents::open_state(target).unwrap());
        let s = open();
        let new = |ends: i64| NewSilence {
            matchers: vec![Matcher::parse("service=\"gateway\"").unwrap()],
            starts_at_ns: Some(100),
            ends_at_ns: ends,
            created_by: "alice".into(),
            comment: "deploy".into(),
        };
        let id = s.create(&new(1_000), 50).unwrap();
        let l = labels(&[("service", "gateway")]);
        assert_eq!(s.silenced_by(&l, 99), None, "not started");
        assert_eq!(s.silenced_by(&l, 100), Some(id));
        assert_eq!(s.silenced_by(&labels(&[("service", "cart")]), 100), None);
        drop(s);
        let s = open();
        assert_eq!(s.list(500).unwrap()[0].state, "active");
        assert!(s.expire(id, 500).unwrap());
        assert!(!s.expire(id, 600).unwrap(), "already expired");
        assert_eq!(s.silenced_by(&l, 501), None);
        assert_eq!(s.list(501).unwrap()[0].state, "expired");
        // Bad silences are refused with a reason.
        assert!(s.create(&new(40), 50).unwrap_err().contains("future"));
        let mut all = new(1_000);
        all.matchers = vec![Matcher::parse("team=~\".*\"").unwrap()];
        assert!(s.create(&all, 50).unwrap_err().contains("every alert"));
        let mut anon = new(1_000);
        anon.created_by = " ".into();
        assert!(s.create(&anon, 50).unwrap_err().contains("createdBy"));
    }

    #[test]
    fn silences_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        silences_start_end_expire_and_survive_a_reopen(&statedb::Target::Sqlite(
            dir.path().join("alerts.sqlite"),
        ));
    }

    #[test]
    fn silences_on_postgres() {
        let pg = statedb::testing::TestPostgres::start().unwrap();
        silences_start_end_expire_and_survive_a_reopen(&statedb::Target::Postgres(
            pg.database("silences").unwrap(),
        ));
    }
}
