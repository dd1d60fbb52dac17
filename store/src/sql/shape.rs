//! Limits on the shape of user SQL, checked before and right after parsing,
//! so that nothing later (the parser, the planner, the optimizer, dropping
//! the syntax tree) recurses deeper than a thread's stack allows.
//!
//! Before parsing, from the tokens alone:
//! - the text is at most [`MAX_SQL_BYTES`];
//! - brackets nest at most [`MAX_NESTING`] deep;
//! - operators and keywords number at most [`MAX_OPERATORS`] (a syntax tree
//!   is never deeper than the operators that built it, so this bounds the
//!   depth of whatever the parser returns);
//! - set operations (`UNION`, `EXCEPT`, `INTERSECT`) number at most
//!   [`MAX_SET_OPERATIONS`];
//! - access chains (`a.b.c[x].d`) are at most [`MAX_ACCESS_CHAIN`] long (the
//!   parser takes exponential time on long failing chains);
//! - prefix operators (`NOT`, `+`, `-`, `~`, `!`) follow each other at most
//!   [`MAX_PREFIX_RUN`] times (the parser takes exponential time on long
//!   failing runs of them, too).
//!
//! While parsing ([`parse`]), the parser may start at most a few expressions
//! per token: it backtracks (a keyword tried as an operator, then as a
//! name), and backtracking inside backtracking is exponential, so a short
//! query that fails late (`NOT +NOT +...`, `CAST(CAST(...`) could hold a
//! thread for minutes. Past the budget the parse stops with an error.
//!
//! After parsing, from the syntax tree ([`check_tree`]):
//! - expressions nest at most [`MAX_EXPR_DEPTH`] deep (`1 + 1 + ... + 1`
//!   with thousands of terms parses without recursion but every later pass
//!   recurses once per term);
//! - subqueries nest at most [`MAX_QUERY_DEPTH`] deep;
//! - one `FROM` joins at most [`MAX_JOINS`] relations.

use std::cell::Cell;
use std::collections::VecDeque;
use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, Select, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::{Dialect, GenericDialect};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use super::QueryError;

/// Longest query text, bytes.
pub const MAX_SQL_BYTES: usize = 256 << 10;
/// Most accesses in one expression chain: each `.`, and each subscript or
/// call attached to a chain together with the longest chain inside it
/// (`a.b[c.d]` counts 1 + (1 + 1) = 3).
pub const MAX_ACCESS_CHAIN: usize = 12;
/// Deepest nesting of brackets and parentheses.
pub const MAX_NESTING: usize = 64;
/// Most prefix operators (`NOT`, `+`, `-`, `~`, `!`) in a row, opening
/// brackets between them included: `NOT +NOT +...` or `+++...` that ends in
/// a parse error costs the parser time exponential in its length (24 pairs
/// of `NOT +` take 26 s). Real queries write two or three (`NOT -x`, `- -1`).
pub const MAX_PREFIX_RUN: usize = 16;
/// Most operators and keywords in one query.
pub const MAX_OPERATORS: usize = 4096;
/// Most `UNION`, `EXCEPT` and `INTERSECT` in one query.
pub const MAX_SET_OPERATIONS: usize = 64;
/// Deepest nesting of expressions (operands of operators, arguments of
/// functions, `CASE` branches, ...).
pub const MAX_EXPR_DEPTH: usize = 256;
/// Deepest nesting of queries (subqueries, CTE bodies, derived tables).
pub const MAX_QUERY_DEPTH: usize = 32;
/// Most relations joined in one `FROM` (by `JOIN` or by commas).
pub const MAX_JOINS: usize = 32;

/// Expressions the parser may start per token of the query, and in all.
pub const PARSE_STEPS_PER_TOKEN: usize = 4;
const PARSE_STEPS_BASE: usize = 256;

/// Parses `sql` (the generic dialect, as the query engine does) within a
/// budget of expression starts proportional to its `tokens` (not counting
/// whitespace, as [`check_tokens`] returns them).
pub(super) fn parse(sql: &str, tokens: usize) -> Result<VecDeque<DfStatement>, QueryError> {
    let dialect = Budgeted {
        inner: GenericDialect {},
        left: Cell::new(PARSE_STEPS_BASE + tokens * PARSE_STEPS_PER_TOKEN),
    };
    let parsed = DFParser::parse_sql_with_dialect(sql, &dialect);
    if dialect.left.get() == 0 {
        return Err(QueryError::Invalid(format!(
            "the query takes too long to parse: the parser backtracked past \
             {PARSE_STEPS_PER_TOKEN} expressions per token (a long run of NOT, CAST, \
             CASE or signs nested in each other that ends in a syntax error)"
        )));
    }
    parsed.map_err(|e| QueryError::Invalid(e.to_string()))
}

/// The generic dialect, counting the expressions the parser starts and
/// failing every one past its budget. The failure is the parser's own
/// recursion-limit error, which its backtracking passes up instead of
/// trying the next alternative, so the parse ends within a few steps.
#[derive(Debug)]
struct Budgeted {
    inner: GenericDialect,
    left: Cell<usize>,
}

macro_rules! delegate {
    ($($name:ident),* $(,)?) => {
        $(fn $name(&self) -> bool {
            self.inner.$name()
        })*
    };
}

impl Dialect for Budgeted {
    fn dialect(&self) -> std::any::TypeId {
        self.inner.dialect()
    }

    fn parse_prefix(&self, _parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        match self.left.get() {
            0 => Some(Err(ParserError::RecursionLimitExceeded)),
            n => {
                self.left.set(n - 1);
                None
            }
        }
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_delimited_identifier_start(ch)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.inner.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.inner.is_identifier_part(ch)
    }

    // Every other method the generic dialect overrides (sqlparser 0.62);
    // `parsing_matches_the_generic_dialect` checks the two agree.
    delegate!(
        supports_unicode_string_literal,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_connect_by,
        supports_match_recognize,
        supports_pipe_operator,
        supports_start_transaction_modifier,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        supports_window_clause_named_window_reference,
        supports_parenthesized_set_variables,
        supports_select_wildcard_except,
        support_map_literal_syntax,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_create_view_comment_syntax,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_create_index_with_clause,
        supports_explain_with_utility_options,
        supports_limit_comma,
        supports_update_order_by,
        supports_from_first_select,
        supports_projection_trailing_commas,
        supports_asc_desc_in_column_definition,
        supports_try_convert,
        supports_bitwise_shift_operators,
        supports_comment_on,
        supports_load_extension,
        supports_named_fn_args_with_assignment_operator,
        supports_struct_literal,
        supports_empty_projections,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_user_host_grantee,
        supports_string_escape_constant,
        supports_array_typedef_with_brackets,
        supports_match_against,
        supports_set_names,
        supports_comma_separated_set_assignments,
        supports_filter_during_aggregation,
        supports_select_wildcard_exclude,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_quote_delimited_string,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comment_optimizer_hint,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions,
    );
}

/// Checks the query text's size and token shape before it is parsed;
/// returns how many tokens it has, whitespace aside.
pub(super) fn check_tokens(sql: &str) -> Result<usize, QueryError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(QueryError::Invalid(format!(
            "the query is {} bytes long; at most {MAX_SQL_BYTES} are allowed",
            sql.len()
        )));
    }
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| QueryError::Invalid(e.to_string()))?;
    let mut operators = 0usize;
    let mut set_operations = 0usize;
    let mut prefix_run = 0usize;
    for token in &tokens {
        match token {
            Token::Whitespace(_) | Token::LParen => {}
            Token::Plus
            | Token::Minus
            | Token::Tilde
            | Token::ExclamationMark
            | Token::DoubleExclamationMark
            | Token::PGSquareRoot
            | Token::PGCubeRoot
            | Token::AtSign
            | Token::Sharp
            | Token::AtDashAt
            | Token::AtAt
            | Token::QuestionMarkDash
            | Token::QuestionPipe => prefix_run += 1,
            Token::Word(w) if w.keyword == Keyword::NOT && w.quote_style.is_none() => {
                prefix_run += 1
            }
            _ => prefix_run = 0,
        }
        if prefix_run > MAX_PREFIX_RUN {
            return Err(QueryError::Invalid(format!(
                "the query has more than {MAX_PREFIX_RUN} prefix operators (NOT, +, -, ~, ! and the like) in a row"
            )));
        }
        match token {
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Comma
            | Token::Period
            | Token::SemiColon
            | Token::LParen
            | Token::RParen
            | Token::LBracket
            | Token::RBracket
            | Token::LBrace
            | Token::RBrace => {}
            Token::Word(w) if w.keyword == Keyword::NoKeyword || w.quote_style.is_some() => {}
            Token::Word(w) => {
                operators += 1;
                if matches!(
                    w.keyword,
                    Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS
                ) {
                    set_operations += 1;
                }
            }
            _ => operators += 1,
        }
    }
    if operators > MAX_OPERATORS {
        return Err(QueryError::Invalid(format!(
            "the query has {operators} operators and keywords; at most {MAX_OPERATORS} are allowed"
        )));
    }
    if set_operations > MAX_SET_OPERATIONS {
        return Err(QueryError::Invalid(format!(
            "the query combines {} queries with UNION, EXCEPT or INTERSECT; at most {} are allowed",
            set_operations + 1,
            MAX_SET_OPERATIONS + 1
        )));
    }
    check_chains(&tokens)?;
    Ok(tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .count())
}

/// Refuses, by their tokens alone, queries the SQL parser would take
/// exponential time on: after each `.` it tries to parse the rest of the
/// chain as an expression and, when that fails (an unclosed `[`, a bad
/// subscript), parses it again as an identifier, so a chain of n accesses
/// that fails at its end costs 2^n parses (30 accesses take minutes).
/// Queries that parse are fast at any length, but a guard cannot know which
/// ones will before parsing; real queries chain a few accesses at most.
/// Brackets nested too deep are refused here as well.
fn check_chains(tokens: &[Token]) -> Result<(), QueryError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Prev {
        Start,
        Word,
        Period,
        Close,
        Other,
    }
    /// A chain being read at one nesting level.
    struct Level {
        /// Accesses in the current chain.
        dots: usize,
        /// The longest chain inside the groups attached to the current chain.
        inner: usize,
        /// The longest chain ended at this level.
        longest: usize,
        prev: Prev,
        /// Whether this group is attached to the chain of the level above
        /// (`a.b[...]`, `a.f(...)`, `f(x)[...]`), so its chains add to that one.
        attached: bool,
    }
    impl Level {
        fn new(attached: bool) -> Level {
            Level {
                dots: 0,
                inner: 0,
                longest: 0,
                prev: Prev::Start,
                attached,
            }
        }
        fn chain(&self) -> usize {
            self.dots + self.inner
        }
        fn end_chain(&mut self) {
            self.longest = self.longest.max(self.chain());
            self.dots = 0;
            self.inner = 0;
        }
        /// The longest chain at this level, once it is closed.
        fn close(mut self) -> usize {
            self.end_chain();
            self.longest
        }
    }
    /// Closes the innermost group and adds its longest chain to the level
    /// around it.
    fn close_group(stack: &mut Vec<Level>) {
        let level = stack.pop().expect("more than one level");
        let attached = level.attached;
        let inner = level.close();
        let top = stack.last_mut().expect("the outermost level stays");
        if attached {
            // The subscript or call itself costs like an access.
            top.inner = top.inner.max(inner + 1);
        } else {
            top.longest = top.longest.max(inner);
        }
    }

    let mut stack = vec![Level::new(false)];
    let mut longest = 0;
    for token in tokens {
        if matches!(token, Token::Whitespace(_)) {
            continue;
        }
        let depth = stack.len();
        let top = stack.last_mut().expect("the outermost level stays");
        match token {
            Token::Word(_) => {
                if top.prev != Prev::Period {
                    top.end_chain();
                }
                top.prev = Prev::Word;
            }
            Token::Period => {
                if matches!(top.prev, Prev::Word | Prev::Close) {
                    top.dots += 1;
                } else {
                    top.end_chain();
                }
                top.prev = Prev::Period;
            }
            Token::LBracket | Token::LParen | Token::LBrace => {
                // A plain call `f(...)` or a bracket after an operator
                // starts no chain; a subscript, or a call on a chain
                // (`a.f(...)`, `f(x)(y)`), continues the one before it.
                let attached = match top.prev {
                    Prev::Period | Prev::Close => true,
                    Prev::Word => *token != Token::LParen || top.chain() > 0,
                    Prev::Start | Prev::Other => false,
                };
                if !attached {
                    top.end_chain();
                }
                if depth > MAX_NESTING {
                    return Err(QueryError::Invalid(format!(
                        "the query nests brackets more than {MAX_NESTING} deep"
                    )));
                }
                stack.push(Level::new(attached));
            }
            Token::RBracket | Token::RParen | Token::RBrace if depth > 1 => {
                close_group(&mut stack);
                stack.last_mut().expect("the outermost level stays").prev = Prev::Close;
            }
            _ => {
                top.end_chain();
                top.prev = Prev::Other;
            }
        }
        if let Some(top) = stack.last()
            && top.chain() > MAX_ACCESS_CHAIN
        {
            longest = longest.max(top.chain());
            break;
        }
    }
    // Unclosed groups count as closed at the end.
    while stack.len() > 1 {
        close_group(&mut stack);
    }
    longest = longest.max(stack.pop().expect("the outermost level").close());
    if longest > MAX_ACCESS_CHAIN {
        return Err(QueryError::Invalid(format!(
            "an expression chains {longest} accesses (`.`, `[...]` and calls on a chain, \
             like a.b.c[x].d); at most {MAX_ACCESS_CHAIN} are allowed"
        )));
    }
    Ok(())
}

/// Checks the depth of expressions and queries, and the joins per `FROM`,
/// of a parsed statement. The walk stops at the first limit it passes, so
/// it never recurses deeper than the limits itself.
pub(super) fn check_tree(statement: &Statement) -> Result<(), QueryError> {
    #[derive(Default)]
    struct Depth {
        expr: usize,
        query: usize,
    }
    impl Visitor for Depth {
        type Break = QueryError;
        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<QueryError> {
            self.expr += 1;
            if self.expr > MAX_EXPR_DEPTH {
                return ControlFlow::Break(QueryError::Invalid(format!(
                    "an expression nests more than {MAX_EXPR_DEPTH} deep (a long chain such as \
                     1 + 1 + ... or a = 1 OR a = 2 OR ...; for a list of values use IN (...))"
                )));
            }
            ControlFlow::Continue(())
        }
        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<QueryError> {
            self.expr -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<QueryError> {
            self.query += 1;
            if self.query > MAX_QUERY_DEPTH {
                return ControlFlow::Break(QueryError::Invalid(format!(
                    "queries nest more than {MAX_QUERY_DEPTH} deep"
                )));
            }
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &Query) -> ControlFlow<QueryError> {
            self.query -= 1;
            ControlFlow::Continue(())
        }
        fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<QueryError> {
            let relations: usize = select.from.iter().map(|t| 1 + t.joins.len()).sum();
            if relations > MAX_JOINS {
                return ControlFlow::Break(QueryError::Invalid(format!(
                    "one FROM joins {relations} relations; at most {MAX_JOINS} are allowed"
                )));
            }
            ControlFlow::Continue(())
        }
    }
    match statement.visit(&mut Depth::default()) {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// [`parse`] alone, without the token limits in front of it.
    fn parse_alone(sql: &str) -> Result<VecDeque<DfStatement>, QueryError> {
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize()
            .map_or(0, |t| {
                t.iter()
                    .filter(|t| !matches!(t, Token::Whitespace(_)))
                    .count()
            });
        parse(sql, tokens)
    }

    /// The budgeted dialect parses every query exactly as the generic one
    /// (which the query engine uses): a method the generic dialect
    /// overrides and the wrapper does not would show up here.
    #[test]
    fn parsing_matches_the_generic_dialect() {
        let seeds = format!("{}/../fuzz/seeds/sql_guard", env!("CARGO_MANIFEST_DIR"));
        let mut corpus: Vec<String> = std::fs::read_dir(&seeds)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(corpus.len() >= 10, "{seeds}");
        corpus.extend(
            [
                "SELECT service, count(*) FILTER (WHERE status_code = 2) FROM spans GROUP BY 1",
                "SELECT * EXCLUDE (attributes) FROM spans LIMIT 3",
                "SELECT {'a': 1}['a'], [1, 2][1], DATE '2026-01-01', INTERVAL '1 minute'",
                "SELECT CAST(x AS BIGINT), TRY_CAST('1' AS INT), x::text FROM t",
                "SELECT NOT - -1, - - +2, ~3, x IS NOT NULL, y NOT IN (1, 2) FROM t",
                "SELECT CASE WHEN a THEN b ELSE c END, EXTRACT(HOUR FROM ts) FROM t",
                "WITH a AS (SELECT 1) SELECT * FROM a UNION ALL SELECT 2",
                "SELECT a, sum(b) OVER (PARTITION BY a ORDER BY c ROWS 2 PRECEDING) FROM t",
                "SELECT 1 << 2, 'x' || 'y', a LIKE 'b%', a ILIKE 'c', a ~ 'd' FROM t",
                "SELECT trim(BOTH 'x' FROM y), substring(y FROM 2 FOR 3) FROM t",
                "SELECT \"quoted name\", `x`, t.* FROM t AS u(a, b)",
                "SELECT 1 + ",
                "SELECT NOT +NOT +NOT + FROM",
            ]
            .map(str::to_string),
        );
        for sql in &corpus {
            let generic = DFParser::parse_sql(sql).map_err(|e| e.to_string());
            let budgeted = parse_alone(sql).map_err(|e| e.to_string());
            assert_eq!(format!("{generic:?}"), format!("{budgeted:?}"), "{sql}");
        }
    }

    /// Backtracking inside backtracking stops at the budget, whatever the
    /// keyword or sign that causes it; the prefix-run limit is not needed
    /// for that (it gives a clearer message for the common shape).
    #[test]
    fn exponential_backtracking_stops_at_the_budget() {
        for (fragment, suffix) in [
            ("NOT +", ""),
            ("NOT (+", ""),
            ("NOT a = ", "+"),
            ("CAST(", "x AS"),
            ("CASE WHEN ", ""),
            ("a.NOT ~", ""),
        ] {
            let sql = format!("SELECT {}{suffix}", fragment.repeat(40));
            let started = Instant::now();
            let err = parse_alone(&sql).unwrap_err().to_string();
            assert!(err.contains("SQL") || err.contains("parse"), "{sql}: {err}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{sql}: {:?}",
                started.elapsed()
            );
        }
        // A long query that parses is well within its budget.
        let long = format!("SELECT {} FROM spans", vec!["NOT -x"; 2000].join(" AND "));
        assert!(parse_alone(&long).is_ok());
    }
}
