//! Burnwatch's SLO engine: error budgets and multiwindow, multi-burn-rate
//! alerting (Google SRE Workbook, chapter 5).
//!
//! Parts so far: [`metrics`] (the metric catalogue and counter rates with
//! reset handling), [`red`] (rate, errors and duration per service and
//! operation, totals and time series, from server spans in the store) and
//! [`burn`] (burn-rate math and the standard alert tiers, rescaled for any
//! SLO window). The engine that evaluates SLOs and alert rules over the store
//! builds on these.

pub mod burn;
pub mod metrics;
pub mod red;
