//! Read-only SQL over the store with limits.
//!
//! Only one query statement is accepted (`SELECT`, `WITH`, `VALUES`,
//! `EXPLAIN` of a query). DDL, DML, `COPY`, `CREATE EXTERNAL TABLE`, `SET`
//! and every other statement are rejected before planning; DataFusion's own
//! `SQLOptions` guard is applied as well, and no file- or URL-reading table
//! is registered. Each query runs with a row limit, a result size limit, a
//! time limit and a memory pool of its own.
//!
//! - [`shape`]: limits on the query's text and syntax tree (length, nesting,
//!   expression depth, joins), so no later pass recurses past a stack.
//! - [`budget`]: every scalar function's results count against the query's
//!   memory pool (`repeat('x', 2147483647)` fails instead of allocating).
//! - [`run`]: plans and executes on a thread of its own with a large stack
//!   and a single-threaded runtime, so a query uses at most one core, cannot
//!   starve the server's async workers, and stops when its time is up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

pub mod budget;
pub mod shape;

pub use shape::{
    MAX_ACCESS_CHAIN, MAX_EXPR_DEPTH, MAX_JOINS, MAX_NESTING, MAX_OPERATORS, MAX_PREFIX_RUN,
    MAX_QUERY_DEPTH, MAX_SET_OPERATIONS, MAX_SQL_BYTES,
};

use crate::engine::Store;
use crate::query::{StoreTable, session_config};
use crate::schema::Table;

/// Limits applied to each query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLimits {
    /// Most rows returned; more are cut off and the result marked truncated.
    pub max_rows: usize,
    /// Wall-clock limit, seconds.
    pub timeout_secs: f64,
    /// Memory for joins, sorts, aggregations and the values functions
    /// build, bytes; past it the query fails.
    pub memory_bytes: usize,
    /// Largest result, bytes (the Arrow size of the returned rows); past it
    /// the query fails.
    pub max_result_bytes: usize,
    /// Where user SQL (`POST /api/v1/query`, the SQL console) runs: `local`
    /// (this process) or `ballista` (a Ballista cluster at `ballista_url`
    /// reading the bucket).
    pub engine: QueryEngine,
    /// The Ballista scheduler, `df://host:port`, for `engine = "ballista"`.
    pub ballista_url: Option<String>,
}

/// The engine user SQL runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryEngine {
    /// DataFusion in this process.
    #[default]
    Local,
    /// A Ballista cluster (`burnwatch ballista scheduler|executor`).
    Ballista,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_rows: 10_000,
            timeout_secs: 30.0,
            memory_bytes: 512 << 20,
            max_result_bytes: 64 << 20,
            engine: QueryEngine::Local,
            ballista_url: None,
        }
    }
}

/// Why a query failed, grouped by who is at fault.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not a single read-only query.
    #[error("{0}")]
    NotAllowed(String),
    /// The SQL does not parse or plan (syntax, unknown table or column, types).
    #[error("{0}")]
    Invalid(String),
    /// The query ran past its time limit.
    #[error("query exceeded the time limit of {0:?}")]
    Timeout(Duration),
    /// The query needed more memory than its limit.
    #[error("query exceeded its memory limit: {0}")]
    ResourcesExhausted(String),
    /// The result is larger than `max_result_bytes`.
    #[error("{0}")]
    ResultTooLarge(String),
    /// Reading data failed.
    #[error("query failed: {0}")]
    Execution(String),
    /// The engine the query must run on cannot be reached (e.g. the
    /// distributed engine's scheduler); the query did not run.
    #[error("{0}")]
    Unavailable(String),
}

/// An engine other than the local one that runs user SQL over the store's
/// tables (the distributed engine), with the same guard and limits.
#[async_trait::async_trait]
pub trait RemoteEngine: Send + Sync + std::fmt::Debug {
    /// The engine's name and address, for messages (`ballista df://host:port`).
    fn describe(&self) -> String;
    /// Runs one read-only query, like [`run`].
    async fn run(
        &self,
        store: &Store,
        sql: &str,
        limits: &QueryLimits,
    ) -> Result<QueryResult, QueryError>;
}

/// A finished query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Result schema.
    pub schema: SchemaRef,
    /// Result rows (at most `max_rows`).
    pub batches: Vec<RecordBatch>,
    /// Whether rows were cut off at `max_rows`.
    pub truncated: bool,
    /// Time taken.
    pub elapsed: Duration,
}

impl QueryResult {
    /// Rows returned.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Checks that `sql` is exactly one read-only query.
pub fn check_read_only(sql: &str) -> Result<(), QueryError> {
    read_only_statement(sql).map(|_| ())
}

/// [`check_read_only`], returning the parsed statement.
fn read_only_statement(sql: &str) -> Result<std::collections::VecDeque<DfStatement>, QueryError> {
    let tokens = shape::check_tokens(sql)?;
    let statements = shape::parse(sql, tokens)?;
    if statements.len() != 1 {
        return Err(QueryError::NotAllowed(format!(
            "expected exactly one statement, got {}",
            statements.len()
        )));
    }
    let verb = |s: &str| s.split_whitespace().take(3).collect::<Vec<_>>().join(" ");
    match &statements[0] {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_) => Ok(()),
            SqlStatement::Explain { statement, .. }
                if matches!(statement.as_ref(), SqlStatement::Query(_)) =>
            {
                Ok(())
            }
            other => Err(QueryError::NotAllowed(format!(
                "only queries are allowed (SELECT, WITH, VALUES, EXPLAIN SELECT); got `{}`",
                verb(&other.to_string())
            ))),
        },
        DfStatement::CreateExternalTable(_) => Err(QueryError::NotAllowed(
            "CREATE EXTERNAL TABLE is not allowed: only queries over spans, logs and metric_points"
                .into(),
        )),
        DfStatement::CopyTo(_) => Err(QueryError::NotAllowed(
            "COPY is not allowed: only queries".into(),
        )),
        DfStatement::Explain(e) => match e.statement.as_ref() {
            DfStatement::Statement(s) if matches!(s.as_ref(), SqlStatement::Query(_)) => Ok(()),
            _ => Err(QueryError::NotAllowed(
                "only EXPLAIN of a query is allowed".into(),
            )),
        },
        DfStatement::Reset(_) => Err(QueryError::NotAllowed(
            "RESET is not allowed: only queries".into(),
        )),
    }?;
    match &statements[0] {
        DfStatement::Statement(s) => shape::check_tree(s)?,
        DfStatement::Explain(e) => {
            if let DfStatement::Statement(s) = e.statement.as_ref() {
                shape::check_tree(s)?;
            }
        }
        _ => {}
    }
    check_tables(&statements[0])?;
    Ok(statements)
}

/// Checks that a query reads only the store's tables (and its own CTEs):
/// file paths, URLs and table functions such as `read_parquet` are refused
/// by name, before planning.
fn check_tables(statement: &DfStatement) -> Result<(), QueryError> {
    let (tables, _ctes) = datafusion::sql::resolve::resolve_table_references(statement, true)
        .map_err(|e| QueryError::Invalid(e.to_string()))?;
    for t in tables {
        if t.schema() == Some("information_schema") {
            continue; // the catalogue of tables and columns
        }
        let name = t.table();
        let known = Table::ALL.iter().any(|k| k.name() == name);
        if !known || t.schema().is_some_and(|s| s != "public") {
            let hint = if name.contains('/') || name.contains(':') || name.contains('.') {
                " (reading files or URLs is not allowed)"
            } else if name.starts_with("read_") {
                " (table functions that read files are not allowed)"
            } else {
                ""
            };
            return Err(QueryError::NotAllowed(format!(
                "only the tables spans, logs and metric_points can be read; `{t}` is not one of them{hint}"
            )));
        }
    }
    Ok(())
}

/// Rewrites `now()`, `current_timestamp` and `current_timestamp()` in a
/// read-only query to the literal instant `at_ns`, so that rules, rule
/// tests and backtests evaluate "now" at the instant they are asked about.
/// Fails like [`check_read_only`] for anything but one read-only query.
pub fn pin_now(sql: &str, at_ns: i64) -> Result<String, QueryError> {
    use datafusion::sql::sqlparser::ast::{
        Expr, FunctionArguments, ObjectNamePart, Visit, Visitor,
    };
    use datafusion::sql::sqlparser::tokenizer::{Location, Token, Tokenizer};
    use std::ops::ControlFlow;

    // The calls are found in the parsed query (so an alias or a column named
    // `current_timestamp` is left alone) and replaced in the text as written,
    // by their tokens: printing a parsed query back is not faithful (`- -x`
    // prints as `--x`, a comment).
    let statements = read_only_statement(sql)?;
    let Some(DfStatement::Statement(statement)) = statements.front() else {
        return Ok(sql.to_string());
    };
    struct Calls(Vec<Location>);
    impl Visitor for Calls {
        type Break = ();
        fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
            // Only calls without arguments are the current time: `now(x)` or
            // `now(p)(x)` does not plan anyway, and is left as written so its
            // error comes from the planner.
            let no_arguments = |a: &FunctionArguments| match a {
                FunctionArguments::None => true,
                FunctionArguments::List(l) => {
                    l.args.is_empty() && l.clauses.is_empty() && l.duplicate_treatment.is_none()
                }
                FunctionArguments::Subquery(_) => false,
            };
            if let Expr::Function(f) = e
                && let [ObjectNamePart::Identifier(id)] = f.name.0.as_slice()
                && id.quote_style.is_none()
                && matches!(f.parameters, FunctionArguments::None)
                && no_arguments(&f.args)
                && matches!(
                    id.value.to_ascii_lowercase().as_str(),
                    "now" | "current_timestamp"
                )
            {
                self.0.push(id.span.start);
            }
            ControlFlow::Continue(())
        }
    }
    let mut calls = Calls(Vec::new());
    let _ = statement.visit(&mut calls);
    if calls.0.is_empty() {
        return Ok(sql.to_string());
    }
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| QueryError::Invalid(e.to_string()))?;
    let tokens: Vec<_> = tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    // Lines and columns count from 1, columns in characters.
    let offset = |l: Location| -> Result<usize, QueryError> {
        let start = (l.line as usize)
            .checked_sub(1)
            .and_then(|i| line_starts.get(i).copied());
        let col = (l.column as usize).checked_sub(1);
        start
            .zip(col)
            .and_then(|(start, col)| sql[start..].char_indices().nth(col).map(|(i, _)| start + i))
            .ok_or_else(|| QueryError::Invalid("cannot locate now() in the query".into()))
    };
    let is = |i: usize, want: &Token| tokens.get(i).is_some_and(|t| t.token == *want);
    let mut edits = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let Token::Word(w) = &t.token else {
            continue;
        };
        if !calls.0.contains(&t.span.start) {
            continue;
        }
        let start = offset(t.span.start)?;
        let end = if is(i + 1, &Token::LParen) && is(i + 2, &Token::RParen) {
            offset(tokens[i + 2].span.start)? + 1
        } else {
            start + w.value.len()
        };
        edits.push((start, end));
    }
    if edits.is_empty() {
        return Ok(sql.to_string());
    }
    let literal = format!("to_timestamp_nanos({at_ns})");
    let mut out = String::with_capacity(sql.len() + edits.len() * literal.len());
    let mut pos = 0;
    for (start, end) in edits {
        out.push_str(&sql[pos..start]);
        out.push_str(&literal);
        pos = end;
    }
    out.push_str(&sql[pos..]);
    // The rewrite goes back through the guard.
    check_read_only(&out)
        .map_err(|e| QueryError::Invalid(format!("cannot pin now() in this query: {e}")))?;
    Ok(out)
}

fn classify(e: DataFusionError) -> QueryError {
    let message = e.to_string();
    match e.find_root() {
        DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m.clone()),
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_) => QueryError::Invalid(message),
        _ => QueryError::Execution(message),
    }
}

/// A session for one query: the store's tables and a memory pool of `limits.memory_bytes`.
pub fn limited_context(store: &Store, limits: &QueryLimits) -> Result<SessionContext, QueryError> {
    let runtime = store
        .runtime_with_memory_limit(limits.memory_bytes.max(1 << 20))
        .map_err(|e| QueryError::Execution(e.to_string()))?;
    let ctx = SessionContext::new_with_config_rt(session_config(), runtime);
    for table in Table::ALL {
        ctx.register_table(
            table.name(),
            Arc::new(StoreTable::new(store.clone(), table)),
        )
        .map_err(|e| QueryError::Execution(e.to_string()))?;
    }
    budget::install(&ctx, limits.memory_bytes.max(1 << 20));
    Ok(ctx)
}

/// Stack of the thread that plans and executes a query. Only the pages a
/// query touches are backed by memory.
const QUERY_STACK_BYTES: usize = 64 << 20;
/// How long past its time limit a query may take to give way before its
/// caller stops waiting (a single call of a function between two checks).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Runs one read-only query with limits.
///
/// Planning and execution run on a thread of their own (a large stack and a
/// single-threaded runtime): the caller's runtime only waits. Past the time
/// limit, or when the caller stops waiting (a client that went away), the
/// query is dropped on its thread, which stops its work.
pub async fn run(
    store: &Store,
    sql: &str,
    limits: &QueryLimits,
) -> Result<QueryResult, QueryError> {
    check_read_only(sql)?;
    let started = Instant::now();
    let timeout = Duration::from_secs_f64(limits.timeout_secs.max(0.001));
    let cancel = tokio_util::sync::CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (store, sql, limits) = (store.clone(), sql.to_string(), limits.clone());
    std::thread::Builder::new()
        .name("burnwatch-query".into())
        .stack_size(QUERY_STACK_BYTES)
        .spawn(move || {
            let result = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| QueryError::Execution(format!("cannot start a query runtime: {e}")))
                .and_then(|rt| {
                    let result = rt.block_on(async {
                        tokio::select! {
                            r = tokio::time::timeout(timeout, execute(&store, &sql, &limits)) => {
                                r.map_err(|_| QueryError::Timeout(timeout))?
                            }
                            () = cancel.cancelled() => {
                                Err(QueryError::Execution("the query was cancelled".into()))
                            }
                        }
                    });
                    // Blocking reads still running finish on their own.
                    rt.shutdown_background();
                    result
                });
            let _ = tx.send(result);
        })
        .map_err(|e| QueryError::Execution(format!("cannot start a query thread: {e}")))?;
    let (schema, batches, truncated) = match tokio::time::timeout(timeout + STOP_GRACE, rx).await {
        Ok(Ok(result)) => result?,
        Ok(Err(_)) => {
            return Err(QueryError::Execution(
                "the query thread stopped without an answer".into(),
            ));
        }
        Err(_) => return Err(QueryError::Timeout(timeout)),
    };
    Ok(QueryResult {
        schema,
        batches,
        truncated,
        elapsed: started.elapsed(),
    })
}

/// A result: schema, batches, whether rows were cut off.
pub type Rows = (SchemaRef, Vec<RecordBatch>, bool);

/// Plans and executes a checked query: at most `max_rows` rows (one more
/// is read to know whether rows were cut off) and `max_result_bytes`.
async fn execute(store: &Store, sql: &str, limits: &QueryLimits) -> Result<Rows, QueryError> {
    let ctx = limited_context(store, limits)?;
    execute_on(&ctx, sql, limits, |_| {}).await
}

/// The logical plan of a checked query on `ctx`, planned with DDL, DML and
/// statements refused (for engines that look at it before running it).
pub async fn plan_on(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, QueryError> {
    guarded_frame(ctx, sql)
        .await?
        .into_optimized_plan()
        .map_err(classify)
}

/// A checked query planned on `ctx` with DDL, DML and statements refused
/// (the guard before planning, DataFusion's own options during it).
async fn guarded_frame(
    ctx: &SessionContext,
    sql: &str,
) -> Result<datafusion::dataframe::DataFrame, QueryError> {
    check_read_only(sql)?;
    let options = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    ctx.sql_with_options(sql, options).await.map_err(classify)
}

/// Plans and executes a checked query on `ctx` (whatever engine its
/// planner targets) with the row and result-size limits of `limits`;
/// `on_plan` sees the physical plan before it runs (e.g. to keep a handle
/// for cancelling it).
pub async fn execute_on(
    ctx: &SessionContext,
    sql: &str,
    limits: &QueryLimits,
    on_plan: impl FnOnce(&Arc<dyn datafusion::physical_plan::ExecutionPlan>),
) -> Result<Rows, QueryError> {
    let df = guarded_frame(ctx, sql).await?;
    // An EXPLAIN must stay the root of its plan (its answer is a few rows).
    let explain = matches!(
        df.logical_plan(),
        LogicalPlan::Explain(_) | LogicalPlan::Analyze(_)
    );
    let df = if explain {
        df
    } else {
        df.limit(0, Some(limits.max_rows.saturating_add(1)))
            .map_err(classify)?
    };
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await.map_err(classify)?;
    on_plan(&plan);
    let mut stream: SendableRecordBatchStream =
        datafusion::physical_plan::execute_stream(plan, task).map_err(classify)?;
    let mut batches = Vec::new();
    let mut rows = 0usize;
    let mut bytes = 0usize;
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let mut batch = batch.map_err(classify)?;
        let room = limits.max_rows - rows;
        if batch.num_rows() > room {
            truncated = true;
            batch = batch.slice(0, room);
        }
        bytes += batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum::<usize>();
        if bytes > limits.max_result_bytes {
            return Err(QueryError::ResultTooLarge(format!(
                "the result is larger than {} MiB after {} rows (the limit is query.max_result_bytes); \
                 add a LIMIT, select fewer columns or shorten long values",
                limits.max_result_bytes >> 20,
                rows
            )));
        }
        rows += batch.num_rows();
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
        if truncated {
            break;
        }
    }
    Ok((schema, batches, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_pass_the_guard() {
        for ok in [
            "SELECT 1",
            "select count(*) from spans where service_name = 'a'",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "EXPLAIN SELECT * FROM logs",
            "VALUES (1), (2)",
            "WITH recent AS (SELECT * FROM spans) SELECT count(*) FROM recent JOIN logs USING (trace_id)",
            "SELECT * FROM public.spans",
            "SELECT * FROM (SELECT 1 AS a) t",
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'spans'",
        ] {
            assert!(
                check_read_only(ok).is_ok(),
                "{ok}: {:?}",
                check_read_only(ok)
            );
        }
        for bad in [
            "CREATE TABLE t AS SELECT 1",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'",
            "COPY spans TO '/tmp/x.parquet'",
            "INSERT INTO spans SELECT * FROM spans",
            "DELETE FROM spans",
            "DROP TABLE spans",
            "SET datafusion.execution.batch_size = 1",
            "CREATE VIEW v AS SELECT 1",
            "SELECT 1; SELECT 2",
            "EXPLAIN COPY spans TO '/tmp/x'",
            "SELECT * FROM '/etc/passwd'",
            "SELECT * FROM 'data/spans/date=2024-03-05/hour=10/a.parquet'",
            "SELECT * FROM read_parquet('/tmp/x.parquet')",
            "SELECT * FROM read_csv('https://example.com/x.csv')",
            "SELECT * FROM spans JOIN \"s3://bucket/x\" USING (trace_id)",
            "WITH x AS (SELECT * FROM '/etc/hosts') SELECT * FROM x",
            "SELECT * FROM unknown_table",
            "SELECT * FROM other.spans",
        ] {
            match check_read_only(bad) {
                Err(QueryError::NotAllowed(m)) => assert!(!m.is_empty()),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            check_read_only("SELEC 1"),
            Err(QueryError::Invalid(_))
        ));
    }

    #[test]
    fn now_is_pinned_to_the_evaluation_instant() {
        let sql = pin_now(
            "SELECT count(*) FROM spans WHERE start_time >= now() - INTERVAL '5 minutes' \
             AND end_time < CURRENT_TIMESTAMP AND name <> 'now()'",
            1_700_000_000_000_000_000,
        )
        .unwrap();
        assert_eq!(
            sql.matches("to_timestamp_nanos(1700000000000000000)")
                .count(),
            2,
            "{sql}"
        );
        assert!(!sql.to_lowercase().contains("now() -"), "{sql}");
        assert!(
            sql.contains("'now()'"),
            "string literals are left alone: {sql}"
        );
        assert!(matches!(
            pin_now("DROP TABLE spans", 0),
            Err(QueryError::NotAllowed(_))
        ));
    }

    /// Found by the `sql_guard` fuzz target (inputs kept in
    /// `fuzz/regressions/sql_guard/`): printing the parsed query back turned
    /// `- -x` into `--x` (a comment), and parenthesising a long chain of
    /// unary operators went past the parser's recursion limit; a first
    /// token-only rewrite took an alias named `current_timestamp` for the
    /// function. The calls are now found in the parsed query and replaced in
    /// the text as written.
    #[test]
    fn pinning_keeps_the_query_as_written() {
        for name in [
            "nested-unary-minus",
            "alias-named-current-timestamp",
            "call-with-parameters",
        ] {
            let crash = std::fs::read(format!(
                "{}/../fuzz/regressions/sql_guard/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let crash = std::str::from_utf8(&crash).unwrap();
            check_read_only(crash).unwrap();
            let pinned = pin_now(crash, 0).unwrap();
            check_read_only(&pinned).unwrap();
        }
        assert_eq!(
            pin_now(
                "SELECT - -1 AS a, now() AS t, \"now\"() AS q, x.now() FROM spans \
                 WHERE - - duration_ns < 5 -- now()\n AND start_time < Current_Timestamp",
                7
            )
            .unwrap_or_else(|e| panic!("{e}")),
            "SELECT - -1 AS a, to_timestamp_nanos(7) AS t, \"now\"() AS q, x.now() FROM spans \
             WHERE - - duration_ns < 5 -- now()\n AND start_time < to_timestamp_nanos(7)"
        );
        // An alias or a column that only looks like the function.
        assert_eq!(
            pin_now("SELECT name current_timestamp, now() FROM spans", 2).unwrap(),
            "SELECT name current_timestamp, to_timestamp_nanos(2) FROM spans"
        );
        // Calls with arguments or parameters are not the current time and
        // stay as written (the planner refuses them).
        assert_eq!(
            pin_now(
                "SELECT now(a)(b), current_timestamp(3), now() FROM spans",
                4
            )
            .unwrap(),
            "SELECT now(a)(b), current_timestamp(3), to_timestamp_nanos(4) FROM spans"
        );
        // Multi-byte text before the call.
        assert_eq!(
            pin_now("SELECT 'é→', now ( ) FROM spans", 1).unwrap(),
            "SELECT 'é→', to_timestamp_nanos(1) FROM spans"
        );
    }

    /// A regression input in the `sql_guard` fuzz target's form: as is, or
    /// `R`, a count (u16, little endian), then prefix `\x01` fragment `\x01`
    /// suffix, the fragment repeated (at most 16 KiB).
    fn fuzz_input(name: &str) -> String {
        let data = std::fs::read(format!(
            "{}/../fuzz/regressions/sql_guard/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        match data.as_slice() {
            [b'R', lo, hi, rest @ ..] => {
                let count = u16::from_le_bytes([*lo, *hi]) as usize;
                let rest = std::str::from_utf8(rest).unwrap();
                let mut parts = rest.splitn(3, '\x01');
                let (prefix, fragment) = (parts.next().unwrap(), parts.next().unwrap());
                let suffix = parts.next().unwrap_or("");
                let count = count.min((16 << 10) / fragment.len().max(1));
                format!("{prefix}{}{suffix}", fragment.repeat(count))
            }
            _ => String::from_utf8(data).unwrap(),
        }
    }

    #[test]
    fn long_runs_of_prefix_operators_are_refused_before_parsing() {
        // Found by fuzzing: `NOT +NOT +...` and `+++...` ending in a parse
        // error cost the parser time exponential in the run's length. Runs
        // are refused by their tokens; other shapes of the same backtracking
        // (`NOT ~a.b.NOT ~...`) by the parse budget.
        for name in [
            "slow-not-plus-chain",
            "slow-not-plus-chain-2",
            "unary-plus-chain",
        ] {
            let sql = fuzz_input(name);
            let started = std::time::Instant::now();
            let err = check_read_only(&sql).unwrap_err();
            assert!(
                matches!(&err, QueryError::Invalid(m)
                    if m.contains("prefix operators") || m.contains("too long to parse")),
                "{name}: {err}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{name}: {:?}",
                started.elapsed()
            );
        }
        for run in ["NOT +", "NOT (+", "NOT -", "+", "- ", "~ ", "NOT "] {
            let long = format!("SELECT {}1 FROM spans", run.repeat(40));
            let err = check_read_only(&long).unwrap_err().to_string();
            assert!(
                err.contains("at most") || err.contains("more than 16"),
                "{run}: {err}"
            );
        }
        // Short runs, as real queries write them, pass.
        check_read_only("SELECT NOT - -1, - - +2, 3 - -4, NOT (NOT true) FROM spans").unwrap();
        let at_limit = format!("SELECT {}1", "- ".repeat(MAX_PREFIX_RUN));
        check_read_only(&at_limit).unwrap();
        let past = format!("SELECT {}1", "- ".repeat(MAX_PREFIX_RUN + 1));
        assert!(
            check_read_only(&past)
                .unwrap_err()
                .to_string()
                .contains("in a row")
        );
    }

    #[test]
    fn long_access_chains_are_refused_before_parsing() {
        // Found by fuzzing: each took seconds to minutes in the parser.
        for n in 1..=3 {
            let text = std::fs::read(format!(
                "{}/../fuzz/regressions/sql_guard/slow-access-chain-{n}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            let sql = String::from_utf8_lossy(&text);
            let started = std::time::Instant::now();
            let err = check_read_only(&sql).unwrap_err();
            assert!(matches!(err, QueryError::Invalid(_)), "{err}");
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
        }
        let chain = |n: usize, tail: &str| format!("SELECT {}a{tail}", "a.".repeat(n));
        // 30 accesses and an unclosed subscript: minutes without the check.
        let err = check_read_only(&chain(30, "[b.c")).unwrap_err().to_string();
        assert!(
            err.contains("chains") && err.contains("at most 12"),
            "{err}"
        );
        // Chains through subscripts, and nested ones, count as one.
        let through = format!("SELECT {}a[x +]", "a.a.a.a.a.a.a[1].".repeat(4));
        assert!(check_read_only(&through).is_err());
        let nested = format!("SELECT {}x + {}", "a.a.a.a.a.a[".repeat(3), "]".repeat(3));
        assert!(
            check_read_only(&nested)
                .unwrap_err()
                .to_string()
                .contains("chains")
        );
        let deep = format!("SELECT {}1{}", "(".repeat(100), ")".repeat(100));
        assert!(
            check_read_only(&deep)
                .unwrap_err()
                .to_string()
                .contains("64 deep")
        );
        // Real queries are untouched, however many chains they hold.
        check_read_only(&chain(11, "")).unwrap();
        check_read_only(
            "SELECT s.service_name, s.resource_attributes['k8s.pod.name'] AS pod, \
             round(100.0 * sum(CASE WHEN s.status_code = 'ERROR' THEN 1 ELSE 0 END) / count(*), 2) \
             FROM spans s JOIN (SELECT l.trace_id FROM logs l WHERE l.body LIKE '%a.b.c.d.e.f.g.h.i.j.k.l.m%') t \
             ON s.trace_id = t.trace_id WHERE s.attributes['http.route'] = '/a' GROUP BY 1, 2",
        )
        .unwrap();
    }
}
