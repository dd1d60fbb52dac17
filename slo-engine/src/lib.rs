//! Burnwatch's SLO engine: error budgets and multiwindow, multi-burn-rate
//! alerting (Google SRE Workbook, chapter 5).
//!
//! Read-side queries (RED, metric series, rollups, trace-id filters) live in
//! the `analytics` crate; this crate keeps SLOs and alerting.
//!
//! Parts: [`burn`]
//! (burn-rate math and the standard alert tiers, rescaled for any SLO
//! window), [`openslo`] (OpenSLO v1 definitions), [`window`] (rolling and
//! calendar windows, Occurrences and Timeslices), [`sli`] (counting an SLI's
//! events exactly from per-minute rollups plus raw edges), [`evaluate`] (SLI, budget,
//! burn per window and tier states at an instant), [`incidents`] (one
//! incident per SLO in SQLite), [`dispatch`] (grouping with group_wait,
//! group_interval and repeat_interval; Alertmanager push; the engine's
//! delivery path), [`evidence`] (top operations, example
//! failing traces and their logs for an incident), [`notify`] (Alertmanager webhook payloads,
//! delivery with retries), [`secret`] (secrets in URLs kept out of logs), [`rules`] (Prometheus-style alert rule groups with SQL expressions and
//! their pending/firing state machine; [`rules::evaluation`]: rule
//! evaluation and instance state in SQLite; [`rules::unit_tests`]:
//! promtool-like rule unit tests), [`silences`] (label matchers that hold back
//! notifications), [`backtest`] (replaying history through an SLO's
//! tiers and incident logic), and [`engine`] (the scheduled evaluation loop
//! for SLOs and rule groups).

pub mod backtest;
pub mod burn;
pub mod corrections;
pub mod dispatch;
pub mod engine;
pub mod evaluate;
pub mod evidence;
pub mod import;
pub mod incidents;
pub mod notify;
pub mod openslo;
pub mod postmortem;
pub mod report;
pub mod rules;
pub mod secret;
pub mod silences;
pub mod sli;
pub mod sloth;
pub mod window;
