//! Alert rules in Prometheus rule-group form, with SQL expressions.
//!
//! ```yaml
//! groups:
//!   - name: shop
//!     interval: 30s
//!     rules:
//!       - alert: CheckoutErrors
//!         expr: |
//!           SELECT service_name AS service, count(*) AS value FROM spans
//!           WHERE status_code = 'ERROR' AND start_time >= now() - INTERVAL '5 minutes'
//!           GROUP BY 1 HAVING count(*) > 10
//!         for: 2m
//!         keep_firing_for: 5m
//!         labels: { severity: page }
//!         annotations:
//!           summary: "{{ $labels.service }}: {{ $value }} failed requests in 5 minutes"
//! ```
//!
//! `expr` is one read-only SQL query (it starts with `SELECT` or `WITH`) or
//! a PromQL expression (anything else), so Prometheus rule files load as
//! they are. A SQL query's rows are its alert instances; a PromQL
//! expression's samples are (their labels without `__name__`, their
//! value). Recording rules (`record:`) take PromQL: each evaluation writes
//! the expression's samples back to `metric_points` under the recorded
//! name (scope `prometheus.remote_write`, version `recording-rule`), where
//! PromQL and later rules of the group read them.
//!
//! For SQL, each row it returns is one active alert
//! instance: the `value` column is its value, every other column a label
//! (NULL leaves the label out). `now()` is the evaluation instant, so rules
//! evaluate the same in tests and backtests as live. An instance is
//! *pending* from the first evaluation that returns it and *firing* once it
//! has been returned for `for`; a firing instance that is no longer
//! returned keeps firing for `keep_firing_for`, then resolves (and is kept,
//! as resolved, for [`RESOLVED_RETENTION_NS`]); a pending one that
//! disappears is dropped. Annotations are templates over `{{ $labels.NAME }}`,
//! `{{ $value }}` and `{{ $labels }}`.
//!
//! Parts: this module (rule files, templates, the pending/firing state
//! machine of one rule's instances), [`evaluation`] (rule groups evaluated
//! against the store on their interval, instance state in SQLite) and
//! [`unit_tests`] (promtool-like rule unit tests over synthetic series).

pub mod evaluation;
pub mod unit_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use serde::{Deserialize, Serialize};
use store::Store;
use store::sql::QueryLimits;

use crate::notify::fingerprint;
use crate::openslo::LoadError;

/// Label names to values.
pub type Labels = BTreeMap<String, String>;

/// One row of a rule's expression: its labels and value.
pub type Row = (Labels, f64);

/// How long resolved instances stay listed.
pub const RESOLVED_RETENTION_NS: i64 = 15 * 60 * 1_000_000_000;

/// Most instances one rule may have at once; more rows fail the evaluation.
pub const MAX_INSTANCES: usize = 1_000;

/// A rule group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleGroup {
    /// Unique name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// Evaluation interval.
    #[serde(with = "humantime_serde_secs")]
    pub interval: Duration,
    /// Its alerting rules, evaluated in order.
    pub rules: Vec<AlertRule>,
}

/// The language of a rule's expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// A read-only SQL query (starts with `SELECT` or `WITH`).
    Sql,
    /// A PromQL expression.
    Promql,
}

impl Lang {
    /// The language of `expr`: SQL when its first word is a SQL statement
    /// keyword (`SELECT`, `WITH`, ... in any case; the SQL guard then
    /// refuses all but queries), otherwise PromQL.
    pub fn of(expr: &str) -> Lang {
        const SQL: [&str; 14] = [
            "select", "with", "values", "explain", "insert", "update", "delete", "drop", "create",
            "alter", "copy", "set", "truncate", "show",
        ];
        let rest = expr.trim_start().trim_start_matches('(');
        let first: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = rest[first.len()..].chars().next();
        let word_ends = after.is_none_or(|c| c.is_whitespace() || c == '(' || c == '*');
        if word_ends && SQL.iter().any(|k| first.eq_ignore_ascii_case(k)) {
            Lang::Sql
        } else {
            Lang::Promql
        }
    }
}

/// An alerting or recording rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRule {
    /// `alert`: the alert name (`alertname` label); `record`: the name of
    /// the recorded series.
    pub name: String,
    /// A recording rule (`record:`) rather than an alerting rule.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub record: bool,
    /// The expression's language.
    pub lang: Lang,
    /// The expression: one read-only SQL query (a `value` column and label
    /// columns) or PromQL.
    pub expr: String,
    /// How long an instance must be active before it fires.
    #[serde(rename = "for", with = "humantime_serde_secs")]
    pub for_: Duration,
    /// How long a firing instance keeps firing after it stops being active.
    #[serde(with = "humantime_serde_secs")]
    pub keep_firing_for: Duration,
    /// Labels added to every instance (templates allowed).
    pub labels: BTreeMap<String, String>,
    /// Annotation templates.
    pub annotations: BTreeMap<String, String>,
}

mod humantime_serde_secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupsFile {
    groups: Vec<GroupDoc>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDoc {
    name: Option<String>,
    interval: Option<String>,
    #[serde(default)]
    rules: Vec<RuleDoc>,
    /// Accepted for compatibility with Prometheus files; must be 0 or absent.
    limit: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    alert: Option<String>,
    record: Option<String>,
    expr: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// The default group interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

fn err(file: &Path, object: &str, field: &str, message: impl Into<String>) -> LoadError {
    LoadError {
        file: file.display().to_string(),
        object: object.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

fn duration(
    file: &Path,
    object: &str,
    field: &str,
    s: &Option<String>,
) -> Result<Duration, LoadError> {
    match s {
        None => Ok(Duration::ZERO),
        Some(s) => humantime::parse_duration(s.trim()).map_err(|e| {
            err(
                file,
                object,
                field,
                format!("{s:?} is not a duration (e.g. 30s, 5m, 1h): {e}"),
            )
        }),
    }
}

fn valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a YAML text is a rule-group file (a top-level `groups` key).
pub fn is_rule_file(text: &str) -> bool {
    serde_norway::from_str::<serde_norway::Value>(text)
        .ok()
        .and_then(|v| v.as_mapping().map(|m| m.contains_key("groups")))
        .unwrap_or(false)
}

/// Parses the rule groups of one file; errors name the file, the group or
/// rule, and the field.
pub fn parse(file: &Path, text: &str) -> Result<Vec<RuleGroup>, LoadError> {
    let doc: GroupsFile = serde_norway::from_str(text)
        .map_err(|e| err(file, "-", "groups", format!("not a rule-group file: {e}")))?;
    let mut out = Vec::new();
    for (gi, g) in doc.groups.into_iter().enumerate() {
        let gname = g
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| err(file, &format!("group {}", gi + 1), "name", "is required"))?;
        let gobj = format!("group {gname}");
        if out.iter().any(|x: &RuleGroup| x.name == gname) {
            return Err(err(
                file,
                &gobj,
                "name",
                "is used by another group in this file",
            ));
        }
        if g.limit.is_some_and(|l| l > 0) {
            return Err(err(
                file,
                &gobj,
                "limit",
                "is not supported (use 0 or leave it out)",
            ));
        }
        let interval = match &g.interval {
            None => DEFAULT_INTERVAL,
            Some(_) => duration(file, &gobj, "interval", &g.interval)?,
        };
        if interval < Duration::from_secs(1) {
            return Err(err(file, &gobj, "interval", "must be at least 1s"));
        }
        if g.rules.is_empty() {
            return Err(err(file, &gobj, "rules", "must list at least one rule"));
        }
        let mut rules = Vec::new();
        for (ri, r) in g.rules.into_iter().enumerate() {
            let robj = format!("{gobj}, rule {}", ri + 1);
            let record = r.record.is_some();
            if record && r.alert.is_some() {
                return Err(err(
                    file,
                    &robj,
                    "record",
                    "a rule has either alert or record, not both",
                ));
            }
            let name = match (r.record, r.alert) {
                (Some(n), _) => {
                    if !valid_metric_name(&n) {
                        return Err(err(
                            file,
                            &robj,
                            "record",
                            format!("{n:?} must match [a-zA-Z_:][a-zA-Z0-9_:]*"),
                        ));
                    }
                    n
                }
                (None, Some(n)) => {
                    if !valid_label_name(&n) {
                        return Err(err(
                            file,
                            &robj,
                            "alert",
                            format!("{n:?} must match [a-zA-Z_][a-zA-Z0-9_]*"),
                        ));
                    }
                    n
                }
                (None, None) => return Err(err(file, &robj, "alert", "is required (or record)")),
            };
            let robj = format!("{gobj}, rule {name}");
            let expr = r
                .expr
                .filter(|e| !e.trim().is_empty())
                .ok_or_else(|| err(file, &robj, "expr", "is required"))?;
            let lang = Lang::of(&expr);
            match lang {
                Lang::Sql if record => {
                    return Err(err(
                        file,
                        &robj,
                        "expr",
                        "recording rules take PromQL; a SQL query can be an alerting rule or queried directly",
                    ));
                }
                Lang::Sql => {
                    store::sql::pin_now(&expr, 0)
                        .map_err(|e| err(file, &robj, "expr", e.to_string()))?;
                }
                Lang::Promql => {
                    promql::Engine::parse(&expr)
                        .map_err(|e| err(file, &robj, "expr", format!("invalid PromQL: {e}")))?;
                }
            }
            if record
                && (r.for_.is_some() || r.keep_firing_for.is_some() || !r.annotations.is_empty())
            {
                return Err(err(
                    file,
                    &robj,
                    "for",
                    "recording rules take no for, keep_firing_for or annotations",
                ));
            }
            for (k, v) in &r.labels {
                if !valid_label_name(k) {
                    return Err(err(
                        file,
                        &robj,
                        &format!("labels.{k}"),
                        "label names must match [a-zA-Z_][a-zA-Z0-9_]*",
                    ));
                }
                check_template(v).map_err(|m| err(file, &robj, &format!("labels.{k}"), m))?;
            }
            for (k, v) in &r.annotations {
                check_template(v).map_err(|m| err(file, &robj, &format!("annotations.{k}"), m))?;
            }
            rules.push(AlertRule {
                name,
                record,
                lang,
                for_: duration(file, &robj, "for", &r.for_)?,
                keep_firing_for: duration(file, &robj, "keep_firing_for", &r.keep_firing_for)?,
                expr,
                labels: r.labels,
                annotations: r.annotations,
            });
        }
        out.push(RuleGroup {
            name: gname,
            file: file.display().to_string(),
            interval,
            rules,
        });
    }
    Ok(out)
}

/// Loads every rule-group file among `files` (others are skipped); group
/// names must be unique across files.
pub fn load_files(files: &[PathBuf]) -> Result<Vec<RuleGroup>, LoadError> {
    let mut out: Vec<RuleGroup> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| err(file, "-", "-", format!("cannot read: {e}")))?;
        if !is_rule_file(&text) {
            continue;
        }
        for g in parse(file, &text)? {
            if let Some(other) = out.iter().find(|o| o.name == g.name) {
                return Err(err(
                    file,
                    &format!("group {}", g.name),
                    "name",
                    format!("is also a group in {}", other.file),
                ));
            }
            out.push(g);
        }
    }
    Ok(out)
}

/// The `.yaml`/`.yml` files of a directory, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, "-", "-", format!("cannot read the directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

/// Checks a template: every `{{ ... }}` is `$value`, `$labels` or
/// `$labels.NAME`, and braces balance.
pub fn check_template(t: &str) -> Result<(), String> {
    render(t, &BTreeMap::new(), 0.0).map(|_| ())
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A value as Go's `%v` writes it (what Prometheus's templates show):
/// the shortest form, in exponent form below 1e-4 and from 1e6 on.
pub fn go_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Renders a template with an instance's labels and value.
pub fn render(t: &str, labels: &BTreeMap<String, String>, value: f64) -> Result<String, String> {
    render_lang(t, labels, value, Lang::Sql)
}

/// Renders a template; `$value` as Prometheus writes it for PromQL rules.
pub fn render_lang(
    t: &str,
    labels: &BTreeMap<String, String>,
    value: f64,
    lang: Lang,
) -> Result<String, String> {
    let mut out = String::with_capacity(t.len());
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in template {t:?}"))?;
        let expr = after[..end].trim();
        match expr {
            "$value" if lang == Lang::Promql => out.push_str(&go_value(value)),
            "$value" => out.push_str(&fmt_value(value)),
            "$labels" => out.push_str(
                &labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            e if e.starts_with("$labels.") && valid_label_name(&e[8..]) => {
                out.push_str(labels.get(&e[8..]).map(String::as_str).unwrap_or(""))
            }
            other => {
                return Err(format!(
                    "unknown template expression {{{{ {other} }}}}: use {{{{ $value }}}}, {{{{ $labels }}}} or {{{{ $labels.NAME }}}}"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err(format!("unopened }}}} in template {t:?}"));
    }
    out.push_str(rest);
    Ok(out)
}

/// States of an alert instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Active for less than `for`.
    Pending,
    /// Active for `for` (or kept firing by `keep_firing_for`).
    Firing,
    /// Was firing; no longer.
    Resolved,
}

impl InstanceState {
    /// `pending`, `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Firing => "firing",
            InstanceState::Resolved => "resolved",
        }
    }

    fn parse(s: &str) -> Option<InstanceState> {
        match s {
            "pending" => Some(InstanceState::Pending),
            "firing" => Some(InstanceState::Firing),
            "resolved" => Some(InstanceState::Resolved),
            _ => None,
        }
    }
}

/// One alert instance of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// The group.
    pub group: String,
    /// The rule's alert name.
    pub alert: String,
    /// Every label: `alertname`, the rule's labels, the row's labels.
    pub labels: BTreeMap<String, String>,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
    /// The last value.
    pub value: f64,
    /// State.
    pub state: InstanceState,
    /// When it first became active, ns.
    pub active_at_ns: i64,
    /// When it started firing, ns.
    pub fired_at_ns: Option<i64>,
    /// The last evaluation that returned it, ns.
    pub last_seen_ns: i64,
    /// When it resolved, ns.
    pub resolved_at_ns: Option<i64>,
    /// The first evaluation, since it was last active, that did not return
    /// it (while `keep_firing_for` keeps it firing), ns.
    #[serde(default)]
    pub keep_firing_since_ns: Option<i64>,
}

impl Instance {
    /// The stable id of the instance (hash of its labels).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.labels)
    }
}

/// A change worth a notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Started firing.
    Firing(Instance),
    /// Stopped firing.
    Resolved(Instance),
}

/// The rows of a rule's expression at `at_ns`: each row's labels (every
/// column but `value`) and value.
pub async fn query(
    store: &Store,
    rule: &AlertRule,
    at_ns: i64,
    limits: &QueryLimits,
) -> Result<Vec<Row>, String> {
    if rule.lang == Lang::Promql {
        let mut rows = promql_rows(store, &rule.expr, at_ns).await?;
        for (labels, _) in &mut rows {
            labels.remove("__name__");
        }
        if rows.len() > MAX_INSTANCES {
            return Err(format!(
                "the expression returned more than {MAX_INSTANCES} samples (alert instances)"
            ));
        }
        return Ok(rows);
    }
    let sql = store::sql::pin_now(&rule.expr, at_ns).map_err(|e| e.to_string())?;
    let mut limits = limits.clone();
    limits.max_rows = limits.max_rows.min(MAX_INSTANCES);
    let result = store::sql::run(store, &sql, &limits)
        .await
        .map_err(|e| e.to_string())?;
    if result.truncated {
        return Err(format!(
            "the expression returned more than {MAX_INSTANCES} rows (alert instances)"
        ));
    }
    rows(&result.batches)
}

/// The samples of a PromQL expression at `at_ns` (a scalar is one sample
/// without labels), with their full labels.
pub async fn promql_rows(store: &Store, expr: &str, at_ns: i64) -> Result<Vec<Row>, String> {
    let engine = promql::Engine::new(promql::EngineOptions::default());
    let source = analytics::prom::PromSource::new(store.clone());
    match engine
        .instant(&source, expr, at_ns.div_euclid(1_000_000))
        .await
        .map_err(|e| e.to_string())?
    {
        promql::Value::Vector(samples) => Ok(samples
            .into_iter()
            .map(|s| (s.labels.0.into_iter().collect(), s.v))
            .collect()),
        promql::Value::Scalar(_, v) => Ok(vec![(BTreeMap::new(), v)]),
        _ => Err("the expression must give an instant vector or a scalar".into()),
    }
}

/// Evaluates a recording rule at `at_ns` and writes its samples (named
/// `rule.name`, the rule's labels added) to `metric_points`; returns how
/// many were written.
pub async fn record(store: &Store, rule: &AlertRule, at_ns: i64) -> Result<usize, String> {
    use store::rows::{Attr, MetricPointRecord, MetricPointsBuilder, Number, Origin, PointData};
    let rows = promql_rows(store, &rule.expr, at_ns).await?;
    let mut b = MetricPointsBuilder::new();
    let at_ms = at_ns.div_euclid(1_000_000);
    for (mut labels, value) in rows {
        labels.remove("__name__");
        for (k, v) in &rule.labels {
            labels.insert(k.clone(), v.clone());
        }
        let job = labels.get("job").cloned();
        let mut resource = Vec::new();
        if let Some(j) = &job {
            resource.push(Attr::new("service.name", j.as_str()));
        }
        let origin = Origin {
            service_name: job.as_deref().unwrap_or("unknown_service"),
            resource_attributes: &resource,
            scope_name: analytics::prom::REMOTE_WRITE_SCOPE,
            scope_version: "recording-rule",
        };
        b.append(
            &origin,
            &MetricPointRecord {
                time_ns: at_ms * 1_000_000,
                start_time_ns: None,
                metric_name: &rule.name,
                unit: "",
                description: "",
                attributes: labels
                    .iter()
                    .map(|(k, v)| Attr::new(k.as_str(), v.as_str()))
                    .collect(),
                flags: 0,
                data: PointData::Gauge(Number::F64(value)),
                exemplars: Vec::new(),
            },
        );
    }
    let n = b.len();
    if n > 0 {
        store
            .write(store::Table::MetricPoints, b.finish())
            .await
            .map_err(|e| format!("cannot write the recorded series: {e}"))?;
    }
    Ok(n)
}

fn rows(batches: &[RecordBatch]) -> Result<Vec<Row>, String> {
    let mut out: Vec<Row> = Vec::new();
    for b in batches {
        let schema = b.schema();
        let value_idx = schema
            .index_of("value")
            .map_err(|_| "the expression must return a column named value".to_string())?;
        let values = arrow::compute::cast(b.column(value_idx), &DataType::Float64)
            .map_err(|e| format!("the value column is not numeric: {e}"))?;
        let values = values.as_primitive::<Float64Type>();
        let labels: Vec<(String, arrow::array::ArrayRef)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != value_idx)
            .map(|(i, f)| {
                arrow::compute::cast(b.column(i), &DataType::Utf8)
                    .map(|c| (f.name().clone(), c))
                    .map_err(|e| format!("label column {} cannot be text: {e}", f.name()))
            })
            .collect::<Result<_, _>>()?;
        for i in 0..b.num_rows() {
            if values.is_null(i) {
                continue;
            }
            let mut l = BTreeMap::new();
            for (name, col) in &labels {
                let c = col.as_string::<i32>();
                if !c.is_null(i) {
                    l.insert(name.clone(), c.value(i).to_string());
                }
            }
            if out.iter().any(|(x, _)| *x == l) {
                return Err(format!(
                    "two rows have the same labels {l:?}: label columns must identify each row"
                ));
            }
            out.push((l, values.value(i)));
        }
    }
    Ok(out)
}

/// Advances the instances of one rule to `at_ns` given the rows its
/// expression returned; returns what started and stopped firing.
pub fn step(
    group: &str,
    rule: &AlertRule,
    instances: &mut Vec<Instance>,
    active: Vec<Row>,
    at_ns: i64,
) -> Vec<Change> {
    let mut changes = Vec::new();
    let for_ns = rule.for_.as_nanos() as i64;
    let keep_ns = rule.keep_firing_for.as_nanos() as i64;
    let mut seen = Vec::with_capacity(active.len());
    for (row_labels, value) in active {
        let mut labels = row_labels;
        for (k, v) in &rule.labels {
            let rendered = render_lang(v, &labels, value, rule.lang).unwrap_or_else(|_| v.clone());
            labels.insert(k.clone(), rendered);
        }
        labels.insert("alertname".into(), rule.name.clone());
        let annotations: BTreeMap<String, String> = rule
            .annotations
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    render_lang(t, &labels, value, rule.lang).unwrap_or_else(|e| e),
                )
            })
            .collect();
        let live = instances
            .iter_mut()
            .find(|i| i.labels == labels && i.state != InstanceState::Resolved);
        let inst = match live {
            Some(i) => i,
            None => {
                instances.push(Instance {
                    group: group.into(),
                    alert: rule.name.clone(),
                    labels: labels.clone(),
                    annotations: annotations.clone(),
                    value,
                    state: InstanceState::Pending,
                    active_at_ns: at_ns,
                    fired_at_ns: None,
                    last_seen_ns: at_ns,
                    resolved_at_ns: None,
                    keep_firing_since_ns: None,
                });
                instances.last_mut().expect("just pushed")
            }
        };
        inst.value = value;
        inst.annotations = annotations;
        inst.last_seen_ns = at_ns;
        inst.keep_firing_since_ns = None;
        if inst.state == InstanceState::Pending && at_ns - inst.active_at_ns >= for_ns {
            inst.state = InstanceState::Firing;
            inst.fired_at_ns = Some(at_ns);
            changes.push(Change::Firing(inst.clone()));
        }
        seen.push(labels);
    }
    instances.retain_mut(|i| {
        if seen.contains(&i.labels) && i.state != InstanceState::Resolved {
            return true;
        }
        match i.state {
            InstanceState::Pending => false,
            InstanceState::Firing
                if at_ns - *i.keep_firing_since_ns.get_or_insert(at_ns) < keep_ns =>
            {
                true
            }
            InstanceState::Firing => {
                i.state = InstanceState::Resolved;
                i.resolved_at_ns = Some(at_ns);
                changes.push(Change::Resolved(i.clone()));
                true
            }
            InstanceState::Resolved => {
                at_ns - i.resolved_at_ns.unwrap_or(at_ns) < RESOLVED_RETENTION_NS
            }
        }
    });
    changes
}

/// Alert instances in the state database, so a restart (or another node
/// taking over evaluation) keeps `for` progress and does not notify again.
pub struct InstanceStore {
    db: std::sync::Arc<statedb::StateDb>,
}

impl std::fmt::Debug for InstanceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceStore")
    }
}

impl InstanceStore {
    /// The instances in `db` (migrated by [`crate::incidents::open_state`]).
    pub fn new(db: std::sync::Arc<statedb::StateDb>) -> InstanceStore {
        InstanceStore { db }
    }

    /// The stored instances of a rule.
    pub fn load(&self, group: &str, alert: &str) -> statedb::Result<Vec<Instance>> {
        let rows = self.db.query(
            "SELECT state, body FROM alert_instances WHERE grp = ?1 AND alert = ?2 ORDER BY fingerprint",
            statedb::params![group, alert],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (state, body) = (row.text(0)?, row.text(1)?);
            if InstanceState::parse(&state).is_some()
                && let Ok(i) = serde_json::from_str::<Instance>(&body)
            {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Replaces the stored instances of a rule, in one transaction.
    pub fn save(&self, group: &str, alert: &str, instances: &[Instance]) -> statedb::Result<()> {
        self.db.transaction(|tx| {
            tx.execute(
                "DELETE FROM alert_instances WHERE grp = ?1 AND alert = ?2",
                statedb::params![group, alert],
            )?;
            for i in instances {
                tx.execute(
                    "INSERT INTO alert_instances (grp, alert, fingerprint, state, body) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (grp, alert, fingerprint, state) DO UPDATE SET body = excluded.body",
                    statedb::params![
                        group,
                        alert,
                        i.fingerprint(),
                        i.state.as_str(),
                        serde_json::to_string(i).unwrap_or_default()
                    ],
                )?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn rule(for_m: u64, keep_m: u64) -> AlertRule {
        AlertRule {
            record: false,
            lang: Lang::Sql,
            name: "HighErrors".into(),
            expr: "SELECT 'a' AS service, 1 AS value".into(),
            for_: Duration::from_secs(for_m * 60),
            keep_firing_for: Duration::from_secs(keep_m * 60),
            labels: [("severity".to_string(), "page".to_string())].into(),
            annotations: [(
                "summary".to_string(),
                "{{ $labels.service }} at {{ $value }}".to_string(),
            )]
            .into(),
        }
    }

    fn row(service: &str, v: f64) -> Row {
        ([("service".to_string(), service.to_string())].into(), v)
    }

    #[test]
    fn pending_then_firing_after_for_then_kept_then_resolved() {
        let r = rule(2, 3);
        let mut inst = Vec::new();
        // t=0: active -> pending.
        assert!(step("g", &r, &mut inst, vec![row("a", 5.0)], 0).is_empty());
        assert_eq!(inst[0].state, InstanceState::Pending);
        // t=1m: still pending; t=2m: fires.
        assert!(step("g", &r, &mut inst, vec![row("a", 6.0)], MIN).is_empty());
        let c = step("g", &r, &mut inst, vec![row("a", 7.5)], 2 * MIN);
        assert!(matches!(&c[..], [Change::Firing(i)] if i.value == 7.5
            && i.annotations["summary"] == "a at 7.5"
            && i.labels["alertname"] == "HighErrors"
            && i.labels["severity"] == "page"));
        // Gone at 3m and 5m: keep_firing_for 3m keeps it firing until 6m.
        assert!(step("g", &r, &mut inst, vec![], 3 * MIN).is_empty());
        assert!(step("g", &r, &mut inst, vec![], 5 * MIN).is_empty());
        assert_eq!(inst[0].state, InstanceState::Firing);
        let c = step("g", &r, &mut inst, vec![], 6 * MIN);
        assert!(matches!(&c[..], [Change::Resolved(i)] if i.resolved_at_ns == Some(6 * MIN)));
        // Resolved instances are listed for 15 minutes, then dropped.
        step("g", &r, &mut inst, vec![], 20 * MIN);
        assert_eq!(inst.len(), 1);
        step("g", &r, &mut inst, vec![], 21 * MIN);
        assert!(inst.is_empty());
    }

    #[test]
    fn a_pending_instance_that_disappears_never_fires() {
        let r = rule(5, 0);
        let mut inst = Vec::new();
        step("g", &r, &mut inst, vec![row("a", 1.0)], 0);
        assert!(step("g", &r, &mut inst, vec![], MIN).is_empty());
        assert!(inst.is_empty());
        // Back again: `for` counts from the new start.
        step("g", &r, &mut inst, vec![row("a", 1.0)], 2 * MIN);
        assert!(step("g", &r, &mut inst, vec![row("a", 1.0)], 6 * MIN).is_empty());
        assert_eq!(
            step("g", &r, &mut inst, vec![row("a", 1.0)], 7 * MIN).len(),
            1
        );
    }

    #[test]
    fn zero_for_fires_at_once_and_instances_are_per_label_set() {
        let r = rule(0, 0);
        let mut inst = Vec::new();
        let c = step("g", &r, &mut inst, vec![row("a", 1.0), row("b", 2.0)], 0);
        assert_eq!(c.len(), 2);
        let c = step("g", &r, &mut inst, vec![row("b", 2.0)], MIN);
        assert!(matches!(&c[..], [Change::Resolved(i)] if i.labels["service"] == "a"));
        // a fires again: a new instance beside the resolved one.
        let c = step(
            "g",
            &r,
            &mut inst,
            vec![row("a", 3.0), row("b", 2.0)],
            2 * MIN,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(inst.len(), 3);
    }

    #[test]
    fn templates() {
        let l: BTreeMap<String, String> = [("service".into(), "cart".into())].into();
        assert_eq!(
            render("{{$labels.service}} {{ $value }}!", &l, 0.25).unwrap(),
            "cart 0.25!"
        );
        assert_eq!(
            render("{{ $labels }}", &l, 1.0).unwrap(),
            "service=\"cart\""
        );
        assert_eq!(render("{{ $labels.missing }}", &l, 1.0).unwrap(), "");
        assert!(
            check_template("{{ .Value }}")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(
            check_template("{{ $value")
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(check_template("x }}").is_err());
    }

    #[test]
    fn files_parse_with_errors_that_name_the_place() {
        let f = Path::new("rules.yaml");
        let ok = "groups:\n  - name: g\n    interval: 1m\n    rules:\n      - alert: A\n        expr: SELECT 1 AS value\n        for: 2m\n        keep_firing_for: 30s\n        labels: {severity: ticket}\n        annotations: {summary: 'v={{ $value }}'}\n";
        let g = parse(f, ok).unwrap();
        assert_eq!(g[0].interval, Duration::from_secs(60));
        assert_eq!(g[0].rules[0].for_, Duration::from_secs(120));
        for (text, field, says) in [
            ("groups:\n  - rules: []\n", "name", "required"),
            (
                "groups:\n  - name: g\n    rules: []\n",
                "rules",
                "at least one",
            ),
            (
                "groups:\n  - name: g\n    interval: soon\n    rules:\n      - alert: A\n        expr: SELECT 1 AS value\n",
                "interval",
                "not a duration",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: SELECT 1\n",
                "expr",
                "recording rules take PromQL",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: sum(rate(x[5m]) > \n",
                "expr",
                "invalid PromQL",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - record: 'a-b'\n        expr: sum(x)\n",
                "record",
                "must match",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: DROP TABLE spans\n",
                "expr",
                "only queries",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A-B\n        expr: SELECT 1 AS value\n",
                "alert",
                "must match",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: SELECT 1 AS value\n        annotations: {s: '{{ $foo }}'}\n",
                "annotations.s",
                "unknown template",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: SELECT 1 AS value\n        for: x\n",
                "for",
                "not a duration",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: SELECT 1 AS value\n        colour: red\n",
                "groups",
                "unknown field",
            ),
            (
                "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: SELECT 1 AS value\n  - name: g\n    rules:\n      - alert: B\n        expr: SELECT 1 AS value\n",
                "name",
                "another group",
            ),
        ] {
            let e = parse(f, text).unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.to_string().contains(says), "{text}: {e}");
            assert_eq!(e.file, "rules.yaml");
        }
        assert!(is_rule_file(ok));
        assert!(!is_rule_file("apiVersion: openslo/v1\nkind: SLO\n"));
    }

    #[test]
    fn instances_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let target = statedb::Target::Sqlite(dir.path().join("alerts.sqlite"));
        let open = || InstanceStore::new(crate::incidents::open_state(&target).unwrap());
        let r = rule(0, 0);
        let mut inst = Vec::new();
        step("g", &r, &mut inst, vec![row("a", 1.0)], 0);
        open().save("g", "HighErrors", &inst).unwrap();
        let back = open().load("g", "HighErrors").unwrap();
        assert_eq!(back, inst);
    }

    #[test]
    fn values_render_as_go_writes_them_for_promql_rules() {
        assert_eq!(go_value(0.16), "0.16");
        assert_eq!(go_value(4.200000000000002), "4.200000000000002");
        assert_eq!(go_value(100.0), "100");
        assert_eq!(go_value(123456.0), "123456");
        assert_eq!(go_value(1234567.0), "1.234567e+06");
        assert_eq!(go_value(0.00001), "1e-05");
        assert_eq!(go_value(0.0001), "0.0001");
        assert_eq!(go_value(f64::NAN), "NaN");
        assert_eq!(Lang::of("  select 1 AS value"), Lang::Sql);
        assert_eq!(Lang::of("WITH x AS (SELECT 1) SELECT * FROM x"), Lang::Sql);
        assert_eq!(Lang::of("sum(rate(x[5m])) > 1"), Lang::Promql);
        assert_eq!(Lang::of("selected_total > 1"), Lang::Promql);
    }
}
