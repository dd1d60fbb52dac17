//! Burnwatch's state database: incidents, timelines, alert instances,
//! silences, dashboard sessions and leases.
//!
//! Two backends behind one small API:
//! - **SQLite** (the default): a file under `<data_dir>/state`, embedded,
//!   nothing to run. Right for one node.
//! - **PostgreSQL** (`[state] url = "postgres://..."`): one database shared by
//!   every query node, so they all show the same incidents, any of them can
//!   acknowledge, and one evaluator is elected with a lease
//!   ([`StateDb::try_lease`]).
//!
//! SQL is written once in the subset both understand, with `?1`-style
//! parameters (rewritten to `$1` for PostgreSQL). Schemas are versioned
//! migrations per component ([`StateDb::migrate`]), each with a SQLite and a
//! PostgreSQL text, applied at start in one transaction and recorded in
//! `schema_migrations`.
//!
//! The PostgreSQL client is synchronous (like SQLite's); when called from
//! inside a Tokio runtime, each call runs on a short-lived scoped thread so
//! the client's own runtime never nests in the caller's.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer (BIGINT in PostgreSQL).
    Int(i64),
    /// A double.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes (BLOB / BYTEA).
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::Blob(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// Parameters from a list of values of mixed types.
#[macro_export]
macro_rules! params {
    ($($v:expr),* $(,)?) => {
        &[$($crate::Value::from($v)),*][..]
    };
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| Error::Other(format!("no column {i} in a row of {}", self.0.len())))
    }

    fn mismatch(&self, i: usize, want: &str) -> Error {
        Error::Other(format!(
            "column {i}: expected {want}, found {:?}",
            self.0.get(i)
        ))
    }

    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| self.mismatch(i, "an integer"))
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    /// A text column.
    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?.ok_or_else(|| self.mismatch(i, "text"))
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v.clone())),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    /// A bytes column.
    pub fn blob(&self, i: usize) -> Result<Vec<u8>> {
        match self.at(i)? {
            Value::Blob(v) => Ok(v.clone()),
            _ => Err(self.mismatch(i, "bytes")),
        }
    }
}

/// Errors of the state database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite said no.
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no (or cannot be reached).
    #[error("PostgreSQL: {}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// Anything else (a bad URL, a schema newer than this binary, a type).
    #[error("{0}")]
    Other(String),
}

/// PostgreSQL's own message when there is one (`db error` alone says
/// nothing), else the client's.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

impl Error {
    /// Whether this is a violated unique constraint (e.g. a second open
    /// incident for one SLO).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            Error::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }
}

/// The result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The SQL dialect behind a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Where the state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:password@host:port/db`).
    Postgres(String),
}

impl Target {
    /// `url` from the configuration: empty means the SQLite file
    /// `default_sqlite`; `postgres://` or `postgresql://` a server;
    /// `sqlite://<path>` another SQLite file.
    pub fn parse(url: &str, default_sqlite: &Path) -> Result<Target> {
        let url = url.trim();
        if url.is_empty() {
            return Ok(Target::Sqlite(default_sqlite.to_path_buf()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            url.parse::<postgres::Config>()
                .map_err(|e| Error::Other(format!("state.url {}: {e}", redact(url))))?;
            return Ok(Target::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Target::Sqlite(PathBuf::from(path)));
        }
        Err(Error::Other(format!(
            "state.url {}: use postgres://user:password@host:port/database, sqlite://<path>, or leave it empty for SQLite under the data directory",
            redact(url)
        )))
    }

    /// For logs: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Target::Sqlite(p) => format!("sqlite://{}", p.display()),
            Target::Postgres(u) => redact(u),
        }
    }
}

/// `url` with the password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// A connection (or a transaction on one) that runs SQL.
pub trait Conn {
    /// Runs a statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    /// Runs a query; its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Runs several statements without parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// The dialect.
    fn dialect(&self) -> Dialect;
}

impl dyn Conn + '_ {
    /// The first row of a query, if any.
    pub fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Real(v) => ToSqlOutput::Borrowed(ValueRef::Real(*v)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        use postgres::types::Type;
        match self {
            Value::Null => Ok(postgres::types::IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Value::Real(v) => v.to_sql(ty, out),
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_ty: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// `?N` placeholders as PostgreSQL's `$N` (outside quoted strings).
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

fn sqlite_row(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        values.push(match r.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            ValueRef::Real(v) => Value::Real(v),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        });
    }
    Ok(Row(values))
}

struct Sqlite<'a>(&'a rusqlite::Connection);

impl Conn for Sqlite<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        Ok(self
            .0
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut st = self.0.prepare_cached(sql)?;
        let n = st.column_count();
        let rows = st
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                sqlite_row(r, n)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

fn pg_row(r: &postgres::Row) -> Result<Row> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let ty = col.type_();
        let v = match *ty {
            Type::INT8 => r.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => r
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => r
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => r
                .try_get::<_, Option<bool>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::FLOAT8 => r.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => r
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                r.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Blob),
            _ => {
                return Err(Error::Other(format!(
                    "column {} has type {ty}, which the state database does not read",
                    col.name()
                )));
            }
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

struct Pg<'a, C: postgres::GenericClient>(&'a mut C);

fn pg_params(params: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

impl<C: postgres::GenericClient> Conn for Pg<'_, C> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        Ok(self.0.execute(pg_sql(sql).as_str(), &pg_params(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        self.0
            .query(pg_sql(sql).as_str(), &pg_params(params))?
            .iter()
            .map(pg_row)
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        Ok(self.0.batch_execute(sql)?)
    }

    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
}

/// A PostgreSQL connection, made on first use and again after it breaks.
struct PgClient {
    config: postgres::Config,
    client: Option<postgres::Client>,
}

impl PgClient {
    fn client(&mut self) -> Result<&mut postgres::Client> {
        if self.client.as_ref().is_none_or(postgres::Client::is_closed) {
            self.client = None;
            self.client = Some(self.config.connect(postgres::NoTls)?);
        }
        Ok(self.client.as_mut().expect("connected just above"))
    }
}

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(Box<Mutex<PgClient>>),
}

/// The state database; safe to share between threads.
pub struct StateDb {
    backend: Backend,
    describe: String,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb")
            .field("target", &self.describe)
            .finish()
    }
}

impl Drop for StateDb {
    fn drop(&mut self) {
        // The synchronous client closes its connection with a `block_on` of
        // its own, which must not run on a runtime's thread either.
        if let Backend::Postgres(pg) = &mut self.backend {
            let client = pg
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .client
                .take();
            if client.is_some() {
                off_runtime(|| drop(client));
            }
        }
    }
}

/// One versioned schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// 1, 2, 3, ... in order.
    pub version: i64,
    /// What it does, for the log and `schema_migrations`.
    pub name: &'static str,
    /// The statements for SQLite.
    pub sqlite: &'static str,
    /// The statements for PostgreSQL.
    pub postgres: &'static str,
}

/// The database's own tables (leases).
const OWN: &[Migration] = &[Migration {
    version: 1,
    name: "leases",
    sqlite: "CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_ns INTEGER NOT NULL,
        acquired_ns INTEGER NOT NULL
    );",
    postgres: "CREATE TABLE IF NOT EXISTS leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_ns BIGINT NOT NULL,
        acquired_ns BIGINT NOT NULL
    );",
}];

/// Runs `f` where a synchronous PostgreSQL client may block: on a scoped
/// thread when called from inside a Tokio runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// How long a connection attempt to PostgreSQL may take when the URL does
/// not say (`connect_timeout`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl StateDb {
    /// Opens the database (creating a SQLite file and its directory if
    /// needed; connecting to PostgreSQL) and applies its own migrations.
    pub fn open(target: &Target) -> Result<StateDb> {
        let backend = match target {
            Target::Sqlite(path) => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let conn = rusqlite::Connection::open(path)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn.busy_timeout(Duration::from_secs(5))?;
                Backend::Sqlite(Mutex::new(conn))
            }
            Target::Postgres(url) => {
                let mut config: postgres::Config = url
                    .parse()
                    .map_err(|e| Error::Other(format!("state.url {}: {e}", redact(url))))?;
                if config.get_connect_timeout().is_none() {
                    config.connect_timeout(CONNECT_TIMEOUT);
                }
                if config.get_application_name().is_none() {
                    config.application_name("burnwatch");
                }
                let mut pg = PgClient {
                    config,
                    client: None,
                };
                off_runtime(|| pg.client().map(|_| ()))?;
                Backend::Postgres(Box::new(Mutex::new(pg)))
            }
        };
        let db = StateDb {
            backend,
            describe: target.describe(),
        };
        db.migrate("statedb", OWN)?;
        Ok(db)
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Whether other nodes may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.dialect() == Dialect::Postgres
    }

    /// Where it is, without a password.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Runs `f` on the connection, in a transaction when `tx`.
    fn run<T: Send>(
        &self,
        tx: bool,
        f: impl FnOnce(&mut dyn Conn) -> Result<T> + Send,
    ) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
                if !tx {
                    return f(&mut Sqlite(&conn));
                }
                let t = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let v = f(&mut Sqlite(&t))?;
                t.commit()?;
                Ok(v)
            }
            Backend::Postgres(pg) => {
                let mut guard = pg.lock().unwrap_or_else(|e| e.into_inner());
                let pg: &mut PgClient = &mut guard;
                off_runtime(|| {
                    let client = pg.client()?;
                    if !tx {
                        return f(&mut Pg(client));
                    }
                    let mut t = client.transaction()?;
                    let v = f(&mut Pg(&mut t))?;
                    t.commit()?;
                    Ok(v)
                })
            }
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        self.run(false, |c| c.execute(sql, params))
    }

    /// Runs one query; its rows.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        self.run(false, |c| c.query(sql, params))
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled
    /// back otherwise.
    pub fn transaction<T: Send>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<T> + Send,
    ) -> Result<T> {
        self.run(true, f)
    }

    /// Applies the migrations of `component` that this database has not
    /// seen, in order, in one transaction (with PostgreSQL, under an
    /// advisory lock, so nodes starting together do not race). Refuses a
    /// database whose schema is newer than `list` knows.
    pub fn migrate(&self, component: &str, list: &[Migration]) -> Result<()> {
        let applied = self.transaction(|c| {
            if c.dialect() == Dialect::Postgres {
                c.execute("SELECT pg_advisory_xact_lock(7261083)", &[])?;
                c.batch(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                        component TEXT NOT NULL,
                        version BIGINT NOT NULL,
                        name TEXT NOT NULL,
                        applied_ns BIGINT NOT NULL,
                        PRIMARY KEY (component, version)
                    );",
                )?;
            } else {
                c.batch(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                        component TEXT NOT NULL,
                        version INTEGER NOT NULL,
                        name TEXT NOT NULL,
                        applied_ns INTEGER NOT NULL,
                        PRIMARY KEY (component, version)
                    );",
                )?;
            }
            let done: Vec<i64> = c
                .query(
                    "SELECT version FROM schema_migrations WHERE component = ?1",
                    params![component],
                )?
                .iter()
                .map(|r| r.int(0))
                .collect::<Result<_>>()?;
            let known = list.iter().map(|m| m.version).max().unwrap_or(0);
            if let Some(newest) = done.iter().copied().max().filter(|v| *v > known) {
                return Err(Error::Other(format!(
                    "the state database's {component} schema is at version {newest}, newer than this binary knows ({known}): run the newer Burnwatch, or restore a backup"
                )));
            }
            let mut applied = Vec::new();
            for m in list {
                if done.contains(&m.version) {
                    continue;
                }
                let sql = match c.dialect() {
                    Dialect::Sqlite => m.sqlite,
                    Dialect::Postgres => m.postgres,
                };
                c.batch(sql).map_err(|e| {
                    Error::Other(format!(
                        "migration {component} {} ({}): {e}",
                        m.version, m.name
                    ))
                })?;
                c.execute(
                    "INSERT INTO schema_migrations (component, version, name, applied_ns) VALUES (?1, ?2, ?3, ?4)",
                    params![component, m.version, m.name, now_ns()],
                )?;
                applied.push(m.version);
            }
            Ok(applied)
        })?;
        for v in applied {
            tracing::info!(component, version = v, database = %self.describe, "state database migrated");
        }
        Ok(())
    }

    /// Takes or renews the lease `name` for `holder` until `now_ns + ttl_ns`.
    /// True when `holder` has it: it was free, expired, or already held by
    /// `holder`. Atomic in both backends (one upsert).
    pub fn try_lease(&self, name: &str, holder: &str, now_ns: i64, ttl_ns: i64) -> Result<bool> {
        let n = self.execute(
            "INSERT INTO leases (name, holder, expires_ns, acquired_ns) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET
                holder = excluded.holder,
                expires_ns = excluded.expires_ns,
                acquired_ns = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_ns ELSE excluded.acquired_ns END
             WHERE leases.holder = excluded.holder OR leases.expires_ns <= ?4",
            params![name, holder, now_ns.saturating_add(ttl_ns), now_ns],
        )?;
        Ok(n == 1)
    }

    /// Gives the lease up if `holder` has it (a clean shutdown), so another
    /// node takes over at once.
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        self.execute(
            "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
            params![name, holder],
        )?;
        Ok(())
    }

    /// Who holds lease `name` and until when (ns), if anyone ever took it.
    pub fn lease(&self, name: &str) -> Result<Option<(String, i64)>> {
        self.query_opt(
            "SELECT holder, expires_ns FROM leases WHERE name = ?1",
            params![name],
        )?
        .map(|r| Ok((r.text(0)?, r.int(1)?)))
        .transpose()
    }
}

/// The wall clock, ns since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_redaction() {
        assert_eq!(
            pg_sql("SELECT '?1' FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1' FROM t WHERE a = $1 AND b = $12"
        );
        assert_eq!(
            redact("postgres://bw:secret@db:5432/burnwatch"),
            "postgres://bw:***@db:5432/burnwatch"
        );
        assert_eq!(redact("postgres://db/burnwatch"), "postgres://db/burnwatch");
        let dir = Path::new("/data/state/alerts.sqlite");
        assert_eq!(
            Target::parse("", dir).unwrap(),
            Target::Sqlite(dir.to_path_buf())
        );
        assert!(matches!(
            Target::parse("postgresql://u@h/db", dir).unwrap(),
            Target::Postgres(_)
        ));
        let e = Target::parse("mysql://h/db", dir).unwrap_err().to_string();
        assert!(e.contains("postgres://"), "{e}");
    }
}

pub mod testing;
