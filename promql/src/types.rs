//! The values the engine reads and returns, and its errors.

use std::sync::Arc;

/// The stale marker Prometheus writes when a series disappears: a NaN with
/// this exact bit pattern. A sample holding it ends the series (it is not
/// a value); an ordinary NaN is a value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is the stale marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A label set: sorted by name, unique names, no empty values.
/// The metric name is the label `__name__`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(pub Vec<(String, String)>);

impl Labels {
    /// Builds a label set from pairs in any order; empty values are dropped.
    pub fn new(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort();
        pairs.dedup_by(|a, b| a.0 == b.0);
        Labels(pairs)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }
}

/// One raw series from the source: its labels and its samples in time
/// order (stale markers included).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// All labels, `__name__` included.
    pub labels: Labels,
    /// `(unix ms, value)`, ascending, one sample per timestamp.
    pub samples: Vec<(i64, f64)>,
}

/// One label matcher, as written in a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored regular expression)
    Re,
    /// `!~`
    NotRe,
}

/// A label matcher: `name op value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    /// Label name (`__name__` for the metric name).
    pub name: String,
    /// Operator.
    pub op: MatchOp,
    /// Value or regular expression source (unanchored as written).
    pub value: String,
}

impl Matcher {
    /// Whether a label value (empty when the label is absent) matches.
    /// Regular expressions are anchored at both ends, as in Prometheus.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Re => anchored(&self.value).is_some_and(|r| r.is_match(value)),
            MatchOp::NotRe => !anchored(&self.value).is_some_and(|r| r.is_match(value)),
        }
    }
}

fn anchored(re: &str) -> Option<regex::Regex> {
    regex::Regex::new(&format!("^(?s:{re})$")).ok()
}

/// What the engine asks a source for: the series whose labels match all
/// matchers, with their samples in `[start_ms, end_ms]` (both inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// First sample time wanted.
    pub start_ms: i64,
    /// Last sample time wanted.
    pub end_ms: i64,
}

/// Where series come from (the store, or a test fixture).
#[async_trait::async_trait]
pub trait Queryable: Send + Sync {
    /// The series matching the selection. A source may return extra
    /// samples outside the range or extra series; the engine filters.
    async fn select(&self, selection: &Selection) -> Result<Vec<Series>, Error>;
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Labels of the result series.
    pub labels: Labels,
    /// Evaluation time (ms).
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// A query result.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `scalar`: time and value.
    Scalar(i64, f64),
    /// `string`: time and value.
    String(i64, String),
    /// `vector`: one sample per series.
    Vector(Vec<Sample>),
    /// `matrix`: series with samples (range queries, range selectors).
    Matrix(Vec<Series>),
}

/// Why a query failed, mapped onto Prometheus's `errorType`s.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query or a parameter is malformed: `bad_data`, HTTP 400.
    #[error("{0}")]
    BadData(String),
    /// Evaluation failed (e.g. many-to-many matching, a sample limit):
    /// `execution`, HTTP 422.
    #[error("{0}")]
    Execution(String),
    /// The time limit ran out: `timeout`, HTTP 503.
    #[error("query timed out in {0}")]
    Timeout(String),
    /// Cancelled: `canceled`, HTTP 503.
    #[error("query was canceled")]
    Canceled,
    /// The source failed: `internal`, HTTP 500.
    #[error("{0}")]
    Internal(String),
    /// The source is unreachable: `unavailable`, HTTP 503.
    #[error("{0}")]
    Unavailable(String),
}

impl Error {
    /// Prometheus's `errorType` string.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Execution(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Canceled => "canceled",
            Error::Internal(_) => "internal",
            Error::Unavailable(_) => "unavailable",
        }
    }

    /// The HTTP status Prometheus answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::BadData(_) => 400,
            Error::Execution(_) => 422,
            Error::Timeout(_) | Error::Canceled | Error::Unavailable(_) => 503,
            Error::Internal(_) => 500,
        }
    }
}

/// A Prometheus duration (`model.ParseDuration`: `1m30s`, `5m`, `250ms`;
/// units y, w, d, h, m, s, ms) in milliseconds; `None` when malformed or
/// out of range.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(unit).and_then(|v| total.checked_add(v))?;
    }
    Some(total)
}

/// Shared handle to a source.
pub type Source = Arc<dyn Queryable>;
