//! Each service's own embedded SQLite database, with a database CLIENT span
//! (`db.system.name = sqlite`) around every statement.

use std::path::Path;
use std::sync::Mutex;

use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{Context, KeyValue};
use rusqlite::Connection;

/// One service's database.
pub struct Db {
    conn: Mutex<Connection>,
    namespace: String,
    tracer: opentelemetry_sdk::trace::SdkTracer,
}

impl Db {
    /// Opens (creating if needed) the database at `path` in WAL mode and
    /// applies `schema` (idempotent `CREATE TABLE IF NOT EXISTS ...`).
    pub fn open(
        path: &Path,
        schema: &str,
        tracer: opentelemetry_sdk::trace::SdkTracer,
    ) -> anyhow::Result<Db> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(schema)?;
        Ok(Db {
            conn: Mutex::new(conn),
            namespace: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            tracer,
        })
    }

    /// Runs `f` on the connection inside a span named `"{operation} {table}"`
    /// (e.g. `"SELECT products"`); `statement` is the SQL recorded as
    /// `db.query.text`. The span's parent is the current context.
    pub fn run<T>(
        &self,
        operation: &str,
        table: &str,
        statement: &str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut span = self
            .tracer
            .span_builder(format!("{operation} {table}"))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("db.system.name", "sqlite"),
                KeyValue::new("db.namespace", self.namespace.clone()),
                KeyValue::new("db.operation.name", operation.to_string()),
                KeyValue::new("db.collection.name", table.to_string()),
                KeyValue::new("db.query.text", statement.to_string()),
            ])
            .start_with_context(&self.tracer, &Context::current());
        let result = {
            let mut conn = self.conn.lock().expect("database lock");
            f(&mut conn)
        };
        if let Err(e) = &result {
            span.set_attribute(KeyValue::new("error.type", "sqlite"));
            span.set_status(Status::error(e.to_string()));
        }
        span.end();
        result
    }

    /// Runs `f` without a span (start-up seeding, background jobs).
    pub fn untraced<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut conn = self.conn.lock().expect("database lock");
        f(&mut conn)
    }
}
