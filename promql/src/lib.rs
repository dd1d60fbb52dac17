//! Burnwatch's PromQL engine: Prometheus query semantics over series read
//! from any [`Queryable`] source.
//!
//! Queries are parsed with `promql-parser`; every vector selector is turned
//! into one [`Selection`] (its label matchers and the time range the whole
//! query needs from it, lookback, ranges, offsets, `@` and subqueries
//! included), the source returns the matching raw series once, and the
//! expression is then evaluated in memory step by step with Prometheus's
//! rules (lookback delta and staleness, extrapolated `rate`, vector
//! matching, aggregations, functions).
//!
//! Times are Unix milliseconds, as in Prometheus.

pub mod eval;
pub mod types;

pub use eval::{Engine, EngineOptions};
pub use types::*;
