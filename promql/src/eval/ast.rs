//! The evaluator's own expression tree.
//!
//! `promql-parser` produces an AST for a newer PromQL dialect than the one
//! this engine implements (Prometheus 2.42). [`convert`] turns it into a
//! [`Node`] tree, rejecting what 2.42 does not know (unknown functions,
//! `limitk`, `fill()` modifiers, `or` inside selectors), dropping
//! parentheses, resolving operators to enums and collecting every vector
//! selector in a [`SelectorInfo`] list.
//!
//! The module also ports the pre-processing steps of Prometheus's engine:
//! [`preprocess`] (`PreprocessExpr`: `@ start()`/`@ end()` resolution and
//! step-invariant wrapping), [`set_offset_for_at_modifier`] and
//! [`selection_ranges`] (`findMinMaxTime`/`getTimeRangesForSelector`).

use std::time::{Duration, SystemTime};

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_DIV, T_EQLC, T_GROUP, T_GTE,
    T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MAX, T_MIN, T_MOD, T_MUL, T_NEQ, T_POW,
    T_QUANTILE, T_STDDEV, T_STDVAR, T_SUB, T_SUM, T_TOPK,
};
use promql_parser::parser::{
    AtModifier, BinModifier, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};

use crate::types::{Error, MatchOp, Matcher};

/// The functions Prometheus 2.42 knows (the parser knows newer ones too).
const FUNCTIONS_2_42: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_replace",
    "label_join",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Functions whose result depends on the evaluation time even when their
/// arguments do not (Prometheus's `AtModifierUnsafeFunctions`).
const AT_MODIFIER_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// The type of an expression's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl ValueType {
    /// Prometheus's `DocumentedType`.
    pub(crate) fn documented(self) -> &'static str {
        match self {
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        }
    }
}

/// Aggregation operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    CountValues,
    Quantile,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eql,
    Neq,
    Gtr,
    Lss,
    Gte,
    Lte,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eql | BinOp::Neq | BinOp::Gtr | BinOp::Lss | BinOp::Gte | BinOp::Lte
        )
    }

    pub(crate) fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }

    /// Prometheus's `shouldDropMetricName`.
    pub(crate) fn drops_metric_name(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow | BinOp::Mod
        )
    }
}

/// Vector matching cardinality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// How two vectors are matched (Prometheus's `VectorMatching`).
#[derive(Debug, Clone)]
pub(crate) struct Matching {
    pub card: Card,
    /// `on(...)` (true) or `ignoring(...)` (false).
    pub on: bool,
    /// The `on`/`ignoring` labels, sorted and unique.
    pub labels: Vec<String>,
    /// The `group_left`/`group_right` labels.
    pub include: Vec<String>,
}

/// `@ start()` / `@ end()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartOrEnd {
    Start,
    End,
}

/// A vector selector.
#[derive(Debug, Clone)]
pub(crate) struct Selector {
    /// Index into the loaded series (and [`SelectorInfo`] list).
    pub id: usize,
    /// The matchers as written (metric name last), regexes compiled.
    pub matchers: Vec<PMatcher>,
    /// Effective offset (ms), adjusted for `@` by
    /// [`set_offset_for_at_modifier`].
    pub offset: i64,
    /// The offset as written (ms).
    pub original_offset: i64,
    /// The `@` time (ms), once resolved.
    pub timestamp: Option<i64>,
    pub start_or_end: Option<StartOrEnd>,
}

/// A subquery `expr[range:step] @ t offset o`.
#[derive(Debug, Clone)]
pub(crate) struct Subquery {
    pub expr: Box<Node>,
    pub range: i64,
    /// 0 when not given.
    pub step: i64,
    pub offset: i64,
    pub original_offset: i64,
    pub timestamp: Option<i64>,
    pub start_or_end: Option<StartOrEnd>,
}

/// An expression node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Aggregate {
        op: AggOp,
        expr: Box<Node>,
        param: Option<Box<Node>>,
        /// Sorted grouping labels.
        grouping: Vec<String>,
        without: bool,
    },
    Call {
        func: &'static str,
        args: Vec<Node>,
    },
    /// Unary minus.
    Neg(Box<Node>),
    Binary {
        op: BinOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
        /// Set when both sides are vectors.
        matching: Option<Matching>,
        return_bool: bool,
    },
    Number(f64),
    Str(String),
    Vector(Selector),
    Matrix {
        vs: Selector,
        range: i64,
    },
    Subquery(Subquery),
    StepInvariant(Box<Node>),
}

impl Node {
    /// The type of the node's value.
    pub(crate) fn value_type(&self) -> ValueType {
        match self {
            Node::Aggregate { .. } | Node::Vector(_) => ValueType::Vector,
            Node::Call { func, .. } => match *func {
                "time" | "scalar" | "pi" => ValueType::Scalar,
                _ => ValueType::Vector,
            },
            Node::Neg(e) | Node::StepInvariant(e) => e.value_type(),
            Node::Binary { lhs, rhs, .. } => {
                if lhs.value_type() == ValueType::Scalar && rhs.value_type() == ValueType::Scalar {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Node::Number(_) => ValueType::Scalar,
            Node::Str(_) => ValueType::String,
            Node::Matrix { .. } | Node::Subquery(_) => ValueType::Matrix,
        }
    }

    /// The node itself, or what a step-invariant wrapper holds.
    pub(crate) fn unwrap_step_invariant(&self) -> &Node {
        match self {
            Node::StepInvariant(e) => e,
            e => e,
        }
    }

    pub(crate) fn unwrap_step_invariant_mut(&mut self) -> &mut Node {
        match self {
            Node::StepInvariant(e) => e,
            e => e,
        }
    }
}

/// What the engine needs to load for one selector.
#[derive(Debug, Clone)]
pub(crate) struct SelectorInfo {
    /// Matchers for the source.
    pub matchers: Vec<Matcher>,
    /// The same, compiled, to filter what the source returns.
    pub filter: Vec<PMatcher>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadData(msg.into())
}

fn duration_ms(d: &Duration) -> Result<i64, Error> {
    i64::try_from(d.as_millis()).map_err(|_| bad("duration out of range"))
}

fn offset_ms(o: &Option<Offset>) -> Result<i64, Error> {
    match o {
        None => Ok(0),
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => Ok(-duration_ms(d)?),
    }
}

fn system_time_ms(t: &SystemTime) -> Result<i64, Error> {
    let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()),
        Err(e) => i64::try_from(e.duration().as_millis()).map(|v| -v),
    };
    ms.map_err(|_| bad("timestamp out of bounds for @ modifier"))
}

fn at_modifier(at: &Option<AtModifier>) -> Result<(Option<i64>, Option<StartOrEnd>), Error> {
    Ok(match at {
        None => (None, None),
        Some(AtModifier::Start) => (None, Some(StartOrEnd::Start)),
        Some(AtModifier::End) => (None, Some(StartOrEnd::End)),
        Some(AtModifier::At(t)) => (Some(system_time_ms(t)?), None),
    })
}

/// Converts a parsed expression, registering its selectors in `selectors`.
pub(crate) fn convert(expr: &Expr, selectors: &mut Vec<SelectorInfo>) -> Result<Node, Error> {
    Ok(match expr {
        Expr::Aggregate(a) => {
            let op = match a.op.id() {
                T_SUM => AggOp::Sum,
                T_AVG => AggOp::Avg,
                T_COUNT => AggOp::Count,
                T_MIN => AggOp::Min,
                T_MAX => AggOp::Max,
                T_GROUP => AggOp::Group,
                T_STDDEV => AggOp::Stddev,
                T_STDVAR => AggOp::Stdvar,
                T_TOPK => AggOp::Topk,
                T_BOTTOMK => AggOp::Bottomk,
                T_COUNT_VALUES => AggOp::CountValues,
                T_QUANTILE => AggOp::Quantile,
                _ => {
                    return Err(bad(format!(
                        "unknown aggregation operator {:?}",
                        a.op.to_string()
                    )));
                }
            };
            let (mut grouping, without) = match &a.modifier {
                None => (vec![], false),
                Some(LabelModifier::Include(l)) => (l.labels.clone(), false),
                Some(LabelModifier::Exclude(l)) => (l.labels.clone(), true),
            };
            grouping.sort();
            grouping.dedup();
            let param = match &a.param {
                Some(p) => Some(Box::new(convert(p, selectors)?)),
                None => None,
            };
            Node::Aggregate {
                op,
                expr: Box::new(convert(&a.expr, selectors)?),
                param,
                grouping,
                without,
            }
        }
        Expr::Unary(u) => Node::Neg(Box::new(convert(&u.expr, selectors)?)),
        Expr::Binary(b) => {
            let op = match b.op.id() {
                T_ADD => BinOp::Add,
                T_SUB => BinOp::Sub,
                T_MUL => BinOp::Mul,
                T_DIV => BinOp::Div,
                T_MOD => BinOp::Mod,
                T_POW => BinOp::Pow,
                T_ATAN2 => BinOp::Atan2,
                T_EQLC => BinOp::Eql,
                T_NEQ => BinOp::Neq,
                T_GTR => BinOp::Gtr,
                T_LSS => BinOp::Lss,
                T_GTE => BinOp::Gte,
                T_LTE => BinOp::Lte,
                T_LAND => BinOp::And,
                T_LOR => BinOp::Or,
                T_LUNLESS => BinOp::Unless,
                _ => {
                    return Err(bad(format!(
                        "unknown binary operator {:?}",
                        b.op.to_string()
                    )));
                }
            };
            let lhs = convert(&b.lhs, selectors)?;
            let rhs = convert(&b.rhs, selectors)?;
            let default_modifier = BinModifier::default();
            let m = b.modifier.as_ref().unwrap_or(&default_modifier);
            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                return Err(bad("parse error: fill modifiers are not supported"));
            }
            let both_vectors =
                lhs.value_type() == ValueType::Vector && rhs.value_type() == ValueType::Vector;
            let matching = if both_vectors {
                let (on, mut labels) = match &m.matching {
                    Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                    Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                    None => (false, vec![]),
                };
                labels.sort();
                labels.dedup();
                let (mut card, include) = match &m.card {
                    VectorMatchCardinality::OneToOne => (Card::OneToOne, vec![]),
                    VectorMatchCardinality::ManyToOne(l) => (Card::ManyToOne, l.labels.clone()),
                    VectorMatchCardinality::OneToMany(l) => (Card::OneToMany, l.labels.clone()),
                    VectorMatchCardinality::ManyToMany => (Card::ManyToMany, vec![]),
                };
                if op.is_set() {
                    if matches!(card, Card::ManyToOne | Card::OneToMany) {
                        return Err(bad(format!(
                            "parse error: no grouping allowed for \"{}\" operation",
                            b.op
                        )));
                    }
                    card = Card::ManyToMany;
                } else if card == Card::ManyToMany {
                    card = Card::OneToOne;
                }
                Some(Matching {
                    card,
                    on,
                    labels,
                    include,
                })
            } else {
                None
            };
            Node::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
                matching,
                return_bool: m.return_bool,
            }
        }
        Expr::Paren(p) => convert(&p.expr, selectors)?,
        Expr::Subquery(s) => {
            let (timestamp, start_or_end) = at_modifier(&s.at)?;
            let original_offset = offset_ms(&s.offset)?;
            let range = duration_ms(&s.range)?;
            let step = match &s.step {
                Some(d) => duration_ms(d)?,
                None => 0,
            };
            if range <= 0 {
                return Err(bad("parse error: subquery range must be positive"));
            }
            Node::Subquery(Subquery {
                expr: Box::new(convert(&s.expr, selectors)?),
                range,
                step,
                offset: original_offset,
                original_offset,
                timestamp,
                start_or_end,
            })
        }
        Expr::NumberLiteral(n) => Node::Number(n.val),
        Expr::StringLiteral(s) => Node::Str(s.val.clone()),
        Expr::VectorSelector(vs) => Node::Vector(convert_selector(vs, selectors)?),
        Expr::MatrixSelector(ms) => {
            let range = duration_ms(&ms.range)?;
            if range <= 0 {
                return Err(bad("parse error: range must be positive"));
            }
            Node::Matrix {
                vs: convert_selector(&ms.vs, selectors)?,
                range,
            }
        }
        Expr::Call(c) => {
            let Some(func) = FUNCTIONS_2_42.iter().find(|f| **f == c.func.name) else {
                return Err(bad(format!(
                    "parse error: unknown function with name {:?}",
                    c.func.name
                )));
            };
            let args = c
                .args
                .args
                .iter()
                .map(|a| convert(a, selectors))
                .collect::<Result<Vec<_>, _>>()?;
            Node::Call { func, args }
        }
        Expr::Extension(_) => return Err(bad("parse error: unsupported expression")),
    })
}

fn convert_selector(
    vs: &VectorSelector,
    selectors: &mut Vec<SelectorInfo>,
) -> Result<Selector, Error> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(bad("parse error: unexpected \"or\" in label matching"));
    }
    let mut filter: Vec<PMatcher> = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name {
        filter.push(PMatcher::new(PMatchOp::Equal, "__name__", name));
    }
    let matchers = filter
        .iter()
        .map(|m| Matcher {
            name: m.name.clone(),
            op: match m.op {
                PMatchOp::Equal => MatchOp::Equal,
                PMatchOp::NotEqual => MatchOp::NotEqual,
                PMatchOp::Re(_) => MatchOp::Re,
                PMatchOp::NotRe(_) => MatchOp::NotRe,
            },
            value: m.value.clone(),
        })
        .collect();
    let (timestamp, start_or_end) = at_modifier(&vs.at)?;
    let original_offset = offset_ms(&vs.offset)?;
    let id = selectors.len();
    selectors.push(SelectorInfo {
        matchers,
        filter: filter.clone(),
    });
    Ok(Selector {
        id,
        matchers: filter,
        offset: original_offset,
        original_offset,
        timestamp,
        start_or_end,
    })
}

fn resolve(start_or_end: Option<StartOrEnd>, timestamp: &mut Option<i64>, start: i64, end: i64) {
    match start_or_end {
        Some(StartOrEnd::Start) => *timestamp = Some(start),
        Some(StartOrEnd::End) => *timestamp = Some(end),
        None => {}
    }
}

/// Prometheus's `PreprocessExpr`: resolves `@ start()`/`@ end()` and wraps
/// step-invariant sub-expressions in [`Node::StepInvariant`].
pub(crate) fn preprocess(node: Node, start: i64, end: i64) -> Node {
    let mut node = node;
    if preprocess_helper(&mut node, start, end) {
        Node::StepInvariant(Box::new(node))
    } else {
        node
    }
}

fn wrap(node: &mut Node) {
    let inner = std::mem::replace(node, Node::Number(0.0));
    *node = Node::StepInvariant(Box::new(inner));
}

fn preprocess_helper(node: &mut Node, start: i64, end: i64) -> bool {
    match node {
        Node::Vector(vs) | Node::Matrix { vs, .. } => {
            resolve(vs.start_or_end, &mut vs.timestamp, start, end);
            vs.timestamp.is_some()
        }
        Node::Aggregate { expr, .. } => preprocess_helper(expr, start, end),
        Node::Binary { lhs, rhs, .. } => {
            let l = preprocess_helper(lhs, start, end);
            let r = preprocess_helper(rhs, start, end);
            if l && r {
                return true;
            }
            if l {
                wrap(lhs);
            }
            if r {
                wrap(rhs);
            }
            false
        }
        Node::Call { func, args } => {
            let mut invariant = !AT_MODIFIER_UNSAFE.contains(func);
            let flags: Vec<bool> = args
                .iter_mut()
                .map(|a| preprocess_helper(a, start, end))
                .collect();
            invariant = invariant && flags.iter().all(|f| *f);
            if invariant {
                return true;
            }
            for (a, f) in args.iter_mut().zip(flags) {
                if f {
                    wrap(a);
                }
            }
            false
        }
        Node::Subquery(sq) => {
            if preprocess_helper(&mut sq.expr, start, end) {
                wrap(&mut sq.expr);
            }
            resolve(sq.start_or_end, &mut sq.timestamp, start, end);
            sq.timestamp.is_some()
        }
        Node::Neg(e) => preprocess_helper(e, start, end),
        Node::Str(_) | Node::Number(_) => true,
        Node::StepInvariant(_) => true,
    }
}

/// One subquery on the path from the root to a node.
#[derive(Debug, Clone, Copy)]
struct SubqPath {
    original_offset: i64,
    range: i64,
    timestamp: Option<i64>,
}

/// Prometheus's `subqueryTimes`: summed offsets and ranges of the enclosing
/// subqueries (reset at a subquery with `@`), and the innermost `@` time.
fn subquery_times(path: &[SubqPath]) -> (i64, i64, Option<i64>) {
    let (mut off, mut range, mut ts) = (0i64, 0i64, None);
    for p in path {
        off = off.saturating_add(p.original_offset);
        range = range.saturating_add(p.range);
        if let Some(t) = p.timestamp {
            off = p.original_offset;
            range = p.range;
            ts = Some(t);
        }
    }
    (off, range, ts)
}

/// Prometheus's `setOffsetForAtModifier`: adjusts the effective offsets of
/// selectors and subqueries with `@` relative to `eval_time`.
pub(crate) fn set_offset_for_at_modifier(eval_time: i64, node: &mut Node) {
    fn get_offset(eval_time: i64, ts: Option<i64>, original: i64, path: &[SubqPath]) -> i64 {
        let Some(ts) = ts else { return original };
        let (mut subq_offset, _, subq_ts) = subquery_times(path);
        if let Some(st) = subq_ts {
            subq_offset = subq_offset.saturating_add(eval_time.saturating_sub(st));
        }
        let offset_for_ts = eval_time.saturating_sub(ts);
        original.saturating_add(offset_for_ts.saturating_sub(subq_offset))
    }
    fn walk(eval_time: i64, node: &mut Node, path: &mut Vec<SubqPath>) {
        match node {
            Node::Vector(vs) | Node::Matrix { vs, .. } => {
                vs.offset = get_offset(eval_time, vs.timestamp, vs.original_offset, path);
            }
            Node::Subquery(sq) => {
                sq.offset = get_offset(eval_time, sq.timestamp, sq.original_offset, path);
                path.push(SubqPath {
                    original_offset: sq.original_offset,
                    range: sq.range,
                    timestamp: sq.timestamp,
                });
                walk(eval_time, &mut sq.expr, path);
                path.pop();
            }
            Node::Aggregate { expr, param, .. } => {
                if let Some(p) = param {
                    walk(eval_time, p, path);
                }
                walk(eval_time, expr, path);
            }
            Node::Call { args, .. } => {
                for a in args {
                    walk(eval_time, a, path);
                }
            }
            Node::Neg(e) | Node::StepInvariant(e) => walk(eval_time, e, path),
            Node::Binary { lhs, rhs, .. } => {
                walk(eval_time, lhs, path);
                walk(eval_time, rhs, path);
            }
            Node::Number(_) | Node::Str(_) => {}
        }
    }
    walk(eval_time, node, &mut Vec::new());
}

/// Prometheus's `getTimeRangesForSelector` for every selector: the
/// `[start, end]` (ms, inclusive) of samples the query may read from it.
/// Indexed by selector id.
pub(crate) fn selection_ranges(
    node: &Node,
    count: usize,
    start: i64,
    end: i64,
    lookback: i64,
) -> Vec<(i64, i64)> {
    fn range_for(
        vs: &Selector,
        path: &[SubqPath],
        eval_range: i64,
        start: i64,
        end: i64,
        lookback: i64,
    ) -> (i64, i64) {
        let (mut s, mut e) = (start, end);
        let (subq_offset, subq_range, subq_ts) = subquery_times(path);
        if let Some(t) = subq_ts {
            s = t;
            e = t;
        }
        if let Some(t) = vs.timestamp {
            s = t;
            e = t;
        } else {
            s = s.saturating_sub(subq_offset).saturating_sub(subq_range);
            e = e.saturating_sub(subq_offset);
        }
        if eval_range == 0 {
            s = s.saturating_sub(lookback);
        } else {
            s = s.saturating_sub(eval_range);
        }
        (
            s.saturating_sub(vs.original_offset),
            e.saturating_sub(vs.original_offset),
        )
    }
    fn walk(
        node: &Node,
        path: &mut Vec<SubqPath>,
        out: &mut Vec<(i64, i64)>,
        start: i64,
        end: i64,
        lookback: i64,
    ) {
        match node {
            Node::Vector(vs) => {
                if let Some(slot) = out.get_mut(vs.id) {
                    *slot = range_for(vs, path, 0, start, end, lookback);
                }
            }
            Node::Matrix { vs, range } => {
                if let Some(slot) = out.get_mut(vs.id) {
                    *slot = range_for(vs, path, *range, start, end, lookback);
                }
            }
            Node::Subquery(sq) => {
                path.push(SubqPath {
                    original_offset: sq.original_offset,
                    range: sq.range,
                    timestamp: sq.timestamp,
                });
                walk(&sq.expr, path, out, start, end, lookback);
                path.pop();
            }
            Node::Aggregate { expr, param, .. } => {
                if let Some(p) = param {
                    walk(p, path, out, start, end, lookback);
                }
                walk(expr, path, out, start, end, lookback);
            }
            Node::Call { args, .. } => {
                for a in args {
                    walk(a, path, out, start, end, lookback);
                }
            }
            Node::Neg(e) | Node::StepInvariant(e) => walk(e, path, out, start, end, lookback),
            Node::Binary { lhs, rhs, .. } => {
                walk(lhs, path, out, start, end, lookback);
                walk(rhs, path, out, start, end, lookback);
            }
            Node::Number(_) | Node::Str(_) => {}
        }
    }
    let mut out = vec![(0, -1); count];
    walk(node, &mut Vec::new(), &mut out, start, end, lookback);
    out
}
