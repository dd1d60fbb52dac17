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
//!   parser takes exponential time on long failing chains).
//!
//! After parsing, from the syntax tree ([`check_tree`]):
//! - expressions nest at most [`MAX_EXPR_DEPTH`] deep (`1 + 1 + ... + 1`
//!   with thousands of terms parses without recursion but every later pass
//!   recurses once per term);
//! - subqueries nest at most [`MAX_QUERY_DEPTH`] deep;
//! - one `FROM` joins at most [`MAX_JOINS`] relations.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, Select, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::keywords::Keyword;
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

/// Checks the query text's size and token shape before it is parsed.
pub(super) fn check_tokens(sql: &str) -> Result<(), QueryError> {
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
    for token in &tokens {
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
    check_chains(&tokens)
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
