//! SLO definitions in OpenSLO v1 YAML: `SLO`, `SLI`, `Service`,
//! `AlertPolicy`, `AlertCondition`, `AlertNotificationTarget`, loaded from a
//! directory of `.yaml`/`.yml` files (several documents per file allowed),
//! resolved (references to SLIs, policies, conditions, targets) and checked.
//! Every error names the file, the object and the field.
//!
//! Burnwatch's metric source (`metricSource.type: burnwatch`) selects spans
//! (the default), log records or metric points with a structured filter, or
//! anything with SQL:
//!
//! ```yaml
//! metricSource:
//!   type: burnwatch
//!   spec:
//!     service: gateway              # service.name
//!     operation: POST /api/checkout # span name (or `route:` for http.route)
//!     kind: SERVER                  # default SERVER
//!     errors: true                  # only failed spans (ERROR status or HTTP 5xx)
//!     where: "http_request_method = 'POST'"   # any extra SQL predicate
//! ---
//!   spec: {table: logs, service: worker, minSeverity: ERROR, contains: "job failed"}
//! ---
//!   spec: {table: metrics, metric: payments.charges, service: payments, attributes: {outcome: declined}}
//! ---
//!   spec: {sql: "SELECT time, value FROM metric_points WHERE metric_name = 'jobs.done'"}
//! ```
//!
//! A Prometheus metric source (`type: Prometheus`, `spec.query` in PromQL)
//! is evaluated with Burnwatch's PromQL engine over the same store (remote
//! write and OTLP metrics alike) at one-minute steps. With `ratioMetric.
//! counter: true` the query returns counters and the events of a minute are
//! their increases (resets handled); otherwise each step's value, summed
//! over the series, is the events of the minute before it (write e.g.
//! `sum(increase(http_requests_total{code=~"5.."}[1m]))`). Good/bad and
//! total must both be Prometheus sources.
//!
//! Span and log sources count rows; metric sources count counter increases
//! (ratio SLIs) or histogram observations (threshold SLIs); an SQL source
//! returns a `time` (timestamp) and a `value` (events) column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::burn::{Severity, Tier, standard_tiers, tier_can_fire};
use crate::sli::{MetricSelector, SliSource};
use crate::window::{Budgeting, Calendar, SloWindow, parse_calendar_duration, parse_start_time};
use store::Table;

/// An SLO ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// `metadata.name`, unique.
    pub name: String,
    /// `metadata.displayName` or the name.
    pub display_name: String,
    /// `spec.service`.
    pub service: String,
    /// `spec.description`.
    pub description: String,
    /// Target share of good events, e.g. 0.999.
    pub objective: f64,
    /// The window's length: a rolling window's, or a calendar period's
    /// nominal length (a month is 30 days); alert tiers scale with it.
    pub window: Duration,
    /// Rolling or calendar window.
    pub time_window: SloWindow,
    /// Occurrences or Timeslices.
    pub budgeting: Budgeting,
    /// What is counted.
    pub sli: SliQuery,
    /// Alert tiers (the workbook's, rescaled, unless alert policies say otherwise).
    pub tiers: Vec<Tier>,
    /// Fewer events than this in a tier's long window: insufficient data, no alert.
    pub min_events: u64,
    /// Webhook URLs from the SLO's notification targets.
    pub webhooks: Vec<String>,
    /// The SLO's `metadata.labels` (a list value joined with `,`): what
    /// corrections select SLOs by.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The SLO's `metadata.annotations` (e.g. `runbook_url`), sent with
    /// every notification of the SLO.
    pub annotations: std::collections::BTreeMap<String, String>,
    /// Each alert policy's `metadata.annotations` with the severities of
    /// its conditions: sent with notifications of those severities,
    /// over the SLO's.
    pub policy_annotations: Vec<(Vec<Severity>, std::collections::BTreeMap<String, String>)>,
    /// `spec.groupBy`: attributes (span or log attributes, else resource
    /// attributes) whose every distinct value is an instance of this SLO
    /// with its own budget, burn, alerts and incidents. Empty: one SLO.
    pub group_by: Vec<String>,
    /// Set on an instance of a grouped SLO: the grouped SLO's name, and
    /// each `group_by` attribute with the instance's value.
    pub instance_of: Option<(String, Vec<(String, String)>)>,
    /// File it came from.
    pub file: PathBuf,
    /// Problems that do not stop loading (e.g. a tier that can never fire).
    pub warnings: Vec<String>,
}

/// What an SLI counts.
#[derive(Debug, Clone, PartialEq)]
pub struct SliQuery {
    /// Where the events come from and which are bad.
    pub source: SliSource,
    /// Human description (`ratio` or `latency lte 0.3 s`).
    pub kind: String,
}

/// A loading error: file, object, field, problem.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {object}: {field}: {message}")]
pub struct LoadError {
    /// File.
    pub file: String,
    /// `Kind/name` of the object (or `document N`).
    pub object: String,
    /// Field path, e.g. `spec.objectives[0].target`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Metadata>,
    #[serde(default)]
    spec: serde_norway::Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    annotations: serde_norway::Value,
    #[serde(default)]
    labels: serde_norway::Value,
}

#[derive(Debug, Clone)]
struct Object {
    kind: String,
    name: String,
    display_name: Option<String>,
    annotations: std::collections::BTreeMap<String, String>,
    labels: std::collections::BTreeMap<String, String>,
    spec: serde_norway::Value,
    file: PathBuf,
}

struct Ctx<'a> {
    file: &'a Path,
    object: String,
}

impl Ctx<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> LoadError {
        LoadError {
            file: self.file.display().to_string(),
            object: self.object.clone(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

type V = serde_norway::Value;

fn get<'v>(v: &'v V, key: &str) -> Option<&'v V> {
    v.get(key).filter(|x| !x.is_null())
}

fn get_str(cx: &Ctx<'_>, v: &V, key: &str, path: &str) -> Result<Option<String>, LoadError> {
    match get(v, key) {
        None => Ok(None),
        Some(V::String(s)) => Ok(Some(s.clone())),
        Some(V::Number(n)) => Ok(Some(n.to_string())),
        Some(V::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(cx.err(&format!("{path}{key}"), "must be a string")),
    }
}

fn req_str(cx: &Ctx<'_>, v: &V, key: &str, path: &str) -> Result<String, LoadError> {
    get_str(cx, v, key, path)?.ok_or_else(|| cx.err(&format!("{path}{key}"), "is required"))
}

fn duration(cx: &Ctx<'_>, text: &str, field: &str) -> Result<Duration, LoadError> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        cx.err(
            field,
            format!("{text:?} is not a duration (e.g. 30d, 1h, 5m): {e}"),
        )
    })?;
    if d.is_zero() {
        return Err(cx.err(field, "must be longer than zero"));
    }
    Ok(d)
}

/// Annotations: a map of strings (numbers and booleans are taken as
/// text); `runbook_url`, when given, must be an http(s) URL.
fn annotations(
    cx: &Ctx<'_>,
    v: &V,
    field: &str,
) -> Result<std::collections::BTreeMap<String, String>, LoadError> {
    let mut out = std::collections::BTreeMap::new();
    if v.is_null() {
        return Ok(out);
    }
    let m = v
        .as_mapping()
        .ok_or_else(|| cx.err(field, "must be a map of names to strings"))?;
    for (k, val) in m {
        let k = k
            .as_str()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| cx.err(field, "names must be non-empty strings"))?;
        let text = match val {
            V::String(s) => s.clone(),
            V::Number(n) => n.to_string(),
            V::Bool(b) => b.to_string(),
            _ => return Err(cx.err(&format!("{field}.{k}"), "must be a string")),
        };
        if k == "runbook_url" && !(text.starts_with("http://") || text.starts_with("https://")) {
            return Err(cx.err(
                &format!("{field}.{k}"),
                format!("{text:?}: a runbook URL (http:// or https://) is expected"),
            ));
        }
        out.insert(k.to_string(), text);
    }
    Ok(out)
}

/// OpenSLO labels: a map of names to a string or a list of strings.
fn labels(cx: &Ctx<'_>, v: &V) -> Result<std::collections::BTreeMap<String, String>, LoadError> {
    let mut out = std::collections::BTreeMap::new();
    let Some(m) = v.as_mapping() else {
        return if v.is_null() {
            Ok(out)
        } else {
            Err(cx.err("metadata.labels", "must be a map"))
        };
    };
    for (k, val) in m {
        let Some(k) = k.as_str() else {
            return Err(cx.err("metadata.labels", "names must be strings"));
        };
        let text = match val {
            V::String(s) => s.clone(),
            V::Number(n) => n.to_string(),
            V::Bool(b) => b.to_string(),
            V::Sequence(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect::<Vec<_>>()
                .join(","),
            _ => return Err(cx.err(&format!("metadata.labels.{k}"), "must be a string")),
        };
        out.insert(k.to_string(), text);
    }
    Ok(out)
}

impl Slo {
    /// The annotations of a notification of `severity`: the SLO's, with
    /// those of the alert policies that have conditions of that severity
    /// over them.
    pub fn annotations_for(
        &self,
        severity: Severity,
    ) -> std::collections::BTreeMap<String, String> {
        let mut out = self.annotations.clone();
        for (sev, notes) in &self.policy_annotations {
            if sev.contains(&severity) {
                out.extend(notes.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    }
}

/// Reads every `.yaml`/`.yml` file of `dir` (not recursive) and resolves
/// the SLOs in them.
pub fn load_dir(dir: &Path) -> Result<Vec<Slo>, LoadError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| LoadError {
            file: dir.display().to_string(),
            object: "-".into(),
            field: "-".into(),
            message: format!("cannot read the directory: {e}"),
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    load_files(&files)
}

/// Parses the files' OpenSLO documents (others, e.g. rule groups, are
/// skipped) and resolves the SLOs.
pub fn load_files(files: &[PathBuf]) -> Result<Vec<Slo>, LoadError> {
    let mut objects: Vec<Object> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| LoadError {
            file: file.display().to_string(),
            object: "-".into(),
            field: "-".into(),
            message: format!("cannot read: {e}"),
        })?;
        objects.extend(parse_documents(file, &text)?);
    }
    resolve(&objects)
}

/// Parses and resolves the SLOs of one file's text; `file` names it in errors.
pub fn load_str(file: &Path, text: &str) -> Result<Vec<Slo>, LoadError> {
    resolve(&parse_documents(file, text)?)
}

fn parse_documents(file: &Path, text: &str) -> Result<Vec<Object>, LoadError> {
    let mut out = Vec::new();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let cx = Ctx {
            file,
            object: format!("document {}", i + 1),
        };
        let value = V::deserialize(de).map_err(|e| cx.err("-", format!("invalid YAML: {e}")))?;
        if value.is_null() {
            continue;
        }
        if value.as_mapping().is_some_and(|m| m.contains_key("groups")) {
            continue; // a rule-group file: crate::rules loads it
        }
        if crate::corrections::is_adjustment(&value) {
            continue; // a budget adjustment: crate::corrections loads it
        }
        let doc: Document = serde_norway::from_value(value)
            .map_err(|e| cx.err("-", format!("not an OpenSLO object: {e}")))?;
        let Some(api) = doc.api_version.as_deref() else {
            return Err(cx.err(
                "apiVersion",
                "is required: neither an OpenSLO object (apiVersion: openslo/v1) nor a rule-group file (groups:)",
            ));
        };
        if api != "openslo/v1" {
            return Err(cx.err(
                "apiVersion",
                format!("{api:?} is not supported; use openslo/v1"),
            ));
        }
        let kind = doc.kind.ok_or_else(|| cx.err("kind", "is required"))?;
        let meta = doc
            .metadata
            .ok_or_else(|| cx.err("metadata", "is required"))?;
        let name = meta
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| cx.err("metadata.name", "is required"))?;
        if !matches!(
            kind.as_str(),
            "SLO"
                | "SLI"
                | "Service"
                | "AlertPolicy"
                | "AlertCondition"
                | "AlertNotificationTarget"
                | "DataSource"
        ) {
            return Err(cx.err("kind", format!("unknown OpenSLO kind {kind:?}")));
        }
        let cx = Ctx {
            file,
            object: format!("{kind}/{name}"),
        };
        let annotations = annotations(&cx, &meta.annotations, "metadata.annotations")?;
        let labels = labels(&cx, &meta.labels)?;
        out.push(Object {
            kind,
            name,
            display_name: meta.display_name,
            annotations,
            labels,
            spec: doc.spec,
            file: file.to_path_buf(),
        });
    }
    Ok(out)
}

fn resolve(objects: &[Object]) -> Result<Vec<Slo>, LoadError> {
    let mut index: HashMap<(&str, &str), &Object> = HashMap::new();
    for o in objects {
        if let Some(prev) = index.insert((o.kind.as_str(), o.name.as_str()), o) {
            return Err(LoadError {
                file: o.file.display().to_string(),
                object: format!("{}/{}", o.kind, o.name),
                field: "metadata.name".into(),
                message: format!("defined twice (also in {})", prev.file.display()),
            });
        }
    }
    let mut slos = Vec::new();
    for o in objects.iter().filter(|o| o.kind == "SLO") {
        slos.push(compile_slo(o, &index)?);
    }
    Ok(slos)
}

fn lookup<'a>(
    cx: &Ctx<'_>,
    index: &HashMap<(&str, &str), &'a Object>,
    kind: &str,
    name: &str,
    field: &str,
) -> Result<&'a Object, LoadError> {
    index
        .get(&(kind, name))
        .copied()
        .ok_or_else(|| cx.err(field, format!("no {kind} named {name:?} is defined")))
}

fn compile_slo(o: &Object, index: &HashMap<(&str, &str), &Object>) -> Result<Slo, LoadError> {
    let cx = Ctx {
        file: &o.file,
        object: format!("SLO/{}", o.name),
    };
    let spec = &o.spec;
    let service = req_str(&cx, spec, "service", "spec.")?;
    let description = get_str(&cx, spec, "description", "spec.")?.unwrap_or_default();

    // Time window: one rolling or calendar window.
    let windows = get(spec, "timeWindow")
        .and_then(V::as_sequence)
        .ok_or_else(|| cx.err("spec.timeWindow", "is required (a list with one window)"))?;
    if windows.len() != 1 {
        return Err(cx.err("spec.timeWindow", "must have exactly one window"));
    }
    let tw = &windows[0];
    let rolling = get(tw, "isRolling").and_then(V::as_bool).unwrap_or(false);
    let duration_text = req_str(&cx, tw, "duration", "spec.timeWindow[0].")?;
    let time_window = match (rolling, get(tw, "calendar")) {
        (true, None) => SloWindow::Rolling(duration(
            &cx,
            &duration_text,
            "spec.timeWindow[0].duration",
        )?),
        (true, Some(_)) => {
            return Err(cx.err(
                "spec.timeWindow[0].calendar",
                "a rolling window has no calendar: set isRolling: false for a calendar window",
            ));
        }
        (false, None) => {
            return Err(cx.err(
                "spec.timeWindow[0]",
                "give isRolling: true (a rolling window) or a calendar (startTime, timeZone)",
            ));
        }
        (false, Some(c)) => {
            let (unit, count) = parse_calendar_duration(&duration_text)
                .map_err(|e| cx.err("spec.timeWindow[0].duration", e))?;
            let start = req_str(&cx, c, "startTime", "spec.timeWindow[0].calendar.")?;
            let start = parse_start_time(&start)
                .map_err(|e| cx.err("spec.timeWindow[0].calendar.startTime", e))?;
            let tz = get_str(&cx, c, "timeZone", "spec.timeWindow[0].calendar.")?
                .unwrap_or_else(|| "UTC".into());
            let tz: chrono_tz::Tz = tz.parse().map_err(|_| {
                cx.err(
                    "spec.timeWindow[0].calendar.timeZone",
                    format!("{tz:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)"),
                )
            })?;
            SloWindow::Calendar(Calendar {
                unit,
                count,
                start,
                tz,
            })
        }
    };
    let window = match &time_window {
        SloWindow::Rolling(d) => *d,
        SloWindow::Calendar(c) => c.nominal(),
    };

    // Objective.
    let objectives = get(spec, "objectives")
        .and_then(V::as_sequence)
        .ok_or_else(|| cx.err("spec.objectives", "is required"))?;
    if objectives.len() != 1 {
        return Err(cx.err("spec.objectives", "must have exactly one objective"));
    }
    let obj = &objectives[0];
    let objective = get(obj, "target")
        .and_then(V::as_f64)
        .ok_or_else(|| cx.err("spec.objectives[0].target", "is required (e.g. 0.999)"))?;
    if !(objective > 0.0 && objective < 1.0) {
        return Err(cx.err(
            "spec.objectives[0].target",
            format!("must be between 0 and 1 (exclusive), got {objective}"),
        ));
    }

    // Budgeting method.
    let method =
        get_str(&cx, spec, "budgetingMethod", "spec.")?.unwrap_or_else(|| "Occurrences".into());
    let budgeting = match method.as_str() {
        "Occurrences" => Budgeting::Occurrences,
        "Timeslices" => {
            let slice_target = get(obj, "timeSliceTarget")
                .and_then(V::as_f64)
                .filter(|t| *t > 0.0 && *t <= 1.0)
                .ok_or_else(|| {
                    cx.err(
                        "spec.objectives[0].timeSliceTarget",
                        "is required for Timeslices: the share of good events that makes a slice good (0 < x <= 1)",
                    )
                })?;
            let text = get_str(&cx, obj, "timeSliceWindow", "spec.objectives[0].")?
                .or(get_str(&cx, spec, "timeSliceWindow", "spec.")?)
                .unwrap_or_else(|| "1m".into());
            let slice = duration(&cx, &text, "spec.objectives[0].timeSliceWindow")?;
            if slice.as_secs() % 60 != 0 || slice.subsec_nanos() != 0 || slice > window / 10 {
                return Err(cx.err(
                    "spec.objectives[0].timeSliceWindow",
                    format!(
                        "{text:?}: a slice must be whole minutes and at most a tenth of the window"
                    ),
                ));
            }
            Budgeting::Timeslices {
                slice,
                slice_target,
            }
        }
        other => {
            return Err(cx.err(
                "spec.budgetingMethod",
                format!("{other:?}: use Occurrences or Timeslices"),
            ));
        }
    };

    // Indicator: inline or by reference.
    let (sli_spec, sli_cx_object, sli_file) = match (
        get(spec, "indicator"),
        get_str(&cx, spec, "indicatorRef", "spec.")?,
    ) {
        (Some(ind), None) => (
            get(ind, "spec")
                .cloned()
                .ok_or_else(|| cx.err("spec.indicator.spec", "is required"))?,
            cx.object.clone(),
            o.file.clone(),
        ),
        (None, Some(r)) => {
            let sli = lookup(&cx, index, "SLI", &r, "spec.indicatorRef")?;
            (
                sli.spec.clone(),
                format!("SLI/{}", sli.name),
                sli.file.clone(),
            )
        }
        _ => {
            return Err(cx.err(
                "spec.indicator",
                "give exactly one of indicator or indicatorRef",
            ));
        }
    };
    let sli_cx = Ctx {
        file: &sli_file,
        object: sli_cx_object,
    };
    let sli = compile_sli(&sli_cx, &sli_spec, obj, &cx)?;
    let group_by = group_by(&cx, spec, &sli)?;

    // Alerting.
    let mut tiers = Vec::new();
    let mut webhooks = Vec::new();
    let mut policy_annotations = Vec::new();
    if let Some(policies) = get(spec, "alertPolicies").and_then(V::as_sequence) {
        for (i, p) in policies.iter().enumerate() {
            let field = format!("spec.alertPolicies[{i}]");
            let (policy_spec, notes) =
                match (get(p, "kind"), get_str(&cx, p, "alertPolicyRef", "")?) {
                    (_, Some(r)) => {
                        let policy = lookup(&cx, index, "AlertPolicy", &r, &field)?;
                        (policy.spec.clone(), policy.annotations.clone())
                    }
                    (Some(_), None) => (
                        get(p, "spec")
                            .cloned()
                            .ok_or_else(|| cx.err(&format!("{field}.spec"), "is required"))?,
                        match get(p, "metadata").and_then(|m| get(m, "annotations")) {
                            Some(a) => {
                                annotations(&cx, a, &format!("{field}.metadata.annotations"))?
                            }
                            None => Default::default(),
                        },
                    ),
                    _ => {
                        return Err(cx.err(&field, "give alertPolicyRef or an inline AlertPolicy"));
                    }
                };
            let before = tiers.len();
            compile_policy(&cx, index, &policy_spec, &field, &mut tiers, &mut webhooks)?;
            if !notes.is_empty() {
                let mut severities: Vec<Severity> =
                    tiers[before..].iter().map(|t| t.severity).collect();
                severities.dedup();
                policy_annotations.push((severities, notes));
            }
        }
    }
    if tiers.is_empty() {
        tiers = standard_tiers(window).to_vec();
    }
    let min_events = get(spec, "minEvents")
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| cx.err("spec.minEvents", "must be a whole number"))
        })
        .transpose()?
        .unwrap_or(10);
    let warnings = tiers
        .iter()
        .filter(|t| !tier_can_fire(t, objective))
        .map(|t| {
            format!(
                "{}: the {:?} tier over {} needs burn rate {:.2}, but at objective {} the highest possible burn rate is {:.2}: it can never fire",
                o.name,
                t.severity,
                humantime::format_duration(t.long),
                t.factor,
                objective,
                1.0 / (1.0 - objective)
            )
        })
        .collect();

    Ok(Slo {
        name: o.name.clone(),
        display_name: o.display_name.clone().unwrap_or_else(|| o.name.clone()),
        service,
        description,
        objective,
        window,
        time_window,
        budgeting,
        sli,
        tiers,
        min_events,
        webhooks,
        annotations: o.annotations.clone(),
        labels: o.labels.clone(),
        policy_annotations,
        group_by,
        instance_of: None,
        file: o.file.clone(),
        warnings,
    })
}

/// Most attributes in one `groupBy`.
pub const MAX_GROUP_BY: usize = 8;

/// `spec.groupBy`: one attribute name or a list of them.
fn group_by(cx: &Ctx<'_>, spec: &V, sli: &SliQuery) -> Result<Vec<String>, LoadError> {
    let Some(v) = get(spec, "groupBy") else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = match v {
        V::String(s) => vec![s.clone()],
        V::Sequence(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| cx.err("spec.groupBy", "must list attribute names (strings)"))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(cx.err(
                "spec.groupBy",
                "must be an attribute name or a list of them (e.g. [http.route])",
            ));
        }
    };
    if names.is_empty() || names.len() > MAX_GROUP_BY {
        return Err(cx.err(
            "spec.groupBy",
            format!("give 1 to {MAX_GROUP_BY} attribute names"),
        ));
    }
    for (i, n) in names.iter().enumerate() {
        let ok = !n.is_empty()
            && n.len() <= 128
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':'));
        if !ok {
            return Err(cx.err(
                &format!("spec.groupBy[{i}]"),
                format!("{n:?} is not an attribute name (letters, digits, . _ - / :, at most 128)"),
            ));
        }
        if names[..i].contains(n) {
            return Err(cx.err(
                &format!("spec.groupBy[{i}]"),
                format!("{n:?} is listed twice"),
            ));
        }
    }
    if !matches!(sli.source, SliSource::Rows { .. }) {
        return Err(cx.err(
            "spec.groupBy",
            "grouped SLOs count spans or log records (a burnwatch metric source with table spans or logs);              for metrics, write one SLO per label value",
        ));
    }
    Ok(names)
}

/// The SQL value of attribute `name` of a span or log record: its own
/// attribute, else its resource's, else `''` (one instance holds the
/// events without the attribute).
pub fn group_expr(name: &str) -> String {
    let key = lit(name);
    format!("coalesce(attributes[{key}], resource_attributes[{key}], '')")
}

/// `name{a="x",b="y"}`: an instance's name, label values quoted like
/// PromQL's.
pub fn instance_name(base: &str, attrs: &[String], values: &[String]) -> String {
    let inner: Vec<String> = attrs
        .iter()
        .zip(values)
        .map(|(a, v)| {
            let quoted = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{a}=\"{quoted}\"")
        })
        .collect();
    format!("{base}{{{}}}", inner.join(","))
}

/// The grouped SLO's name and the values of an instance name made by
/// [`instance_name`] (`None`: not an instance name).
pub fn parse_instance_name(name: &str) -> Option<(String, Vec<(String, String)>)> {
    let open = name.find('{')?;
    let body = name.strip_suffix('}')?.get(open + 1..)?;
    let base = &name[..open];
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let mut attr = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            attr.push(c);
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((attr, value));
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return None,
        }
    }
    (!base.is_empty() && !out.is_empty()).then(|| (base.to_string(), out))
}

/// The SLO named `name` among `slos`: a defined one, or an instance of a
/// grouped one (`checkout{http.route="/cart"}`, whether or not it is among
/// the instances kept).
pub fn find_slo(slos: &[Slo], name: &str) -> Option<Slo> {
    if let Some(s) = slos.iter().find(|s| s.name == name) {
        return Some(s.clone());
    }
    let (base, pairs) = parse_instance_name(name)?;
    let slo = slos
        .iter()
        .find(|s| s.name == base && !s.group_by.is_empty())?;
    if pairs.len() != slo.group_by.len() {
        return None;
    }
    let values: Option<Vec<String>> = slo
        .group_by
        .iter()
        .map(|a| pairs.iter().find(|(k, _)| k == a).map(|(_, v)| v.clone()))
        .collect();
    Some(slo.instance(&values?))
}

impl Slo {
    /// The instance of this grouped SLO for `values` (one per `group_by`
    /// attribute): named `<slo>{attr="value"}`, counting only its events,
    /// labelled with its values (corrections select instances by them).
    pub fn instance(&self, values: &[String]) -> Slo {
        let mut slo = self.clone();
        slo.name = instance_name(&self.name, &self.group_by, values);
        let inner = slo.name[self.name.len()..].to_string();
        slo.display_name = format!("{}{inner}", self.display_name);
        if let SliSource::Rows { total, .. } = &mut slo.sli.source {
            let conds: Vec<String> = self
                .group_by
                .iter()
                .zip(values)
                .map(|(a, v)| format!("{} = {}", group_expr(a), lit(v)))
                .collect();
            *total = format!("({total}) AND {}", conds.join(" AND "));
        }
        for (a, v) in self.group_by.iter().zip(values) {
            slo.labels.insert(a.clone(), v.clone());
        }
        slo.instance_of = Some((
            self.name.clone(),
            self.group_by
                .iter()
                .cloned()
                .zip(values.iter().cloned())
                .collect(),
        ));
        slo.group_by = Vec::new();
        slo
    }

    /// The instance of this grouped SLO that `status` (from
    /// [`crate::evaluate::evaluate_group`]) is about.
    pub fn instance_for(&self, status: &crate::evaluate::SloStatus) -> Slo {
        let values: Vec<String> = self
            .group_by
            .iter()
            .map(|a| status.group.get(a).cloned().unwrap_or_default())
            .collect();
        self.instance(&values)
    }

    /// The SQL expressions of the `group_by` attributes.
    pub fn group_exprs(&self) -> Vec<String> {
        self.group_by.iter().map(|a| group_expr(a)).collect()
    }

    /// The grouped SLO's name for an instance, else the SLO's own.
    pub fn base_name(&self) -> &str {
        self.instance_of.as_ref().map_or(&self.name, |(b, _)| b)
    }
}

fn compile_policy(
    cx: &Ctx<'_>,
    index: &HashMap<(&str, &str), &Object>,
    spec: &V,
    field: &str,
    tiers: &mut Vec<Tier>,
    webhooks: &mut Vec<String>,
) -> Result<(), LoadError> {
    let conditions = get(spec, "conditions")
        .and_then(V::as_sequence)
        .ok_or_else(|| cx.err(&format!("{field}.conditions"), "is required"))?;
    for (j, c) in conditions.iter().enumerate() {
        let cf = format!("{field}.conditions[{j}]");
        let cspec = match get_str(cx, c, "conditionRef", "")? {
            Some(r) => lookup(cx, index, "AlertCondition", &r, &cf)?.spec.clone(),
            None => get(c, "spec")
                .cloned()
                .ok_or_else(|| cx.err(&format!("{cf}.spec"), "is required"))?,
        };
        let severity = match get_str(cx, &cspec, "severity", "")?.as_deref() {
            Some("page" | "critical") => Severity::Page,
            Some("ticket" | "warning" | "info") | None => Severity::Ticket,
            Some(other) => {
                return Err(cx.err(
                    &format!("{cf}.severity"),
                    format!("{other:?}: use page or ticket"),
                ));
            }
        };
        let cond = get(&cspec, "condition")
            .ok_or_else(|| cx.err(&format!("{cf}.condition"), "is required"))?;
        let kind = req_str(cx, cond, "kind", &format!("{cf}.condition."))?;
        if kind != "burnrate" {
            return Err(cx.err(
                &format!("{cf}.condition.kind"),
                format!("{kind:?}: only burnrate is supported"),
            ));
        }
        let factor = get(cond, "threshold")
            .and_then(V::as_f64)
            .filter(|f| *f > 0.0)
            .ok_or_else(|| {
                cx.err(
                    &format!("{cf}.condition.threshold"),
                    "must be a positive number",
                )
            })?;
        // `gte`: a burn equal to the threshold fires; `gt` (and, for
        // files without `op`, the default): only above it.
        let inclusive = match get_str(cx, cond, "op", "")?.as_deref() {
            None | Some("gt") => false,
            Some("gte") => true,
            Some(other @ ("lt" | "lte")) => {
                return Err(cx.err(
                    &format!("{cf}.condition.op"),
                    format!(
                        "{other:?}: a burn-rate condition fires when the burn rate reaches the threshold: use gt or gte"
                    ),
                ));
            }
            Some(other) => {
                return Err(cx.err(
                    &format!("{cf}.condition.op"),
                    format!("{other:?}: use gt or gte"),
                ));
            }
        };
        let long = duration(
            cx,
            &req_str(cx, cond, "lookbackWindow", &format!("{cf}.condition."))?,
            &format!("{cf}.condition.lookbackWindow"),
        )?;
        // The short (confirmation) window: alertAfter, else 1/12 of the long one.
        let short = match get_str(cx, cond, "alertAfter", "")? {
            Some(s) => duration(cx, &s, &format!("{cf}.condition.alertAfter"))?,
            None => long / 12,
        };
        if short >= long {
            return Err(cx.err(
                &format!("{cf}.condition.alertAfter"),
                "the short window must be shorter than lookbackWindow",
            ));
        }
        tiers.push(Tier {
            severity,
            long,
            short,
            factor,
            inclusive,
        });
    }
    if let Some(targets) = get(spec, "notificationTargets").and_then(V::as_sequence) {
        for (j, t) in targets.iter().enumerate() {
            let tf = format!("{field}.notificationTargets[{j}]");
            let tspec = match get_str(cx, t, "targetRef", "")? {
                Some(r) => lookup(cx, index, "AlertNotificationTarget", &r, &tf)?
                    .spec
                    .clone(),
                None => get(t, "spec").cloned().unwrap_or_else(|| t.clone()),
            };
            let url = req_str(cx, &tspec, "target", &format!("{tf}."))?;
            // `${env:NAME}` / `${file:PATH}` keep the credential out of the file.
            let url = crate::secret::resolve(&url)
                .map_err(|e| cx.err(&format!("{tf}.target"), e.to_string()))?
                .into_owned();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(cx.err(
                    &format!("{tf}.target"),
                    format!(
                        "{:?}: a webhook URL (http:// or https://) is expected",
                        crate::secret::redact_url(&url)
                    ),
                ));
            }
            webhooks.push(url);
        }
    }
    Ok(())
}

/// Quotes a string for SQL.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

const ERROR_PREDICATE: &str = "(status_code = 'ERROR' OR http_response_status_code >= 500)";

/// What one Burnwatch metric source selects.
enum Selector {
    /// Rows of spans or logs matching a predicate.
    Rows(Table, String),
    /// Points of one metric.
    Metric(MetricSelector),
    /// A query returning `time` and `value`.
    Sql(String),
    /// A PromQL query.
    Promql(String),
}

/// Log severity names and their lowest severity number (OpenTelemetry).
pub const SEVERITIES: [(&str, i32); 6] = [
    ("TRACE", 1),
    ("DEBUG", 5),
    ("INFO", 9),
    ("WARN", 13),
    ("ERROR", 17),
    ("FATAL", 21),
];

fn extra_where(cx: &Ctx<'_>, spec: &V, sf: &str, parts: &mut Vec<String>) -> Result<(), LoadError> {
    if let Some(w) = get_str(cx, spec, "where", sf)? {
        if w.contains(';') {
            return Err(cx.err(&format!("{sf}where"), "must be one SQL predicate"));
        }
        parts.push(format!("({w})"));
    }
    Ok(())
}

/// A Burnwatch metric source: spans (default), logs, metrics or SQL.
fn selector(cx: &Ctx<'_>, source: &V, field: &str) -> Result<Selector, LoadError> {
    let ms = get(source, "metricSource")
        .ok_or_else(|| cx.err(&format!("{field}.metricSource"), "is required"))?;
    let ty = req_str(cx, ms, "type", &format!("{field}.metricSource."))?;
    let spec = get(ms, "spec")
        .ok_or_else(|| cx.err(&format!("{field}.metricSource.spec"), "is required"))?;
    let sf = format!("{field}.metricSource.spec.");
    if ty.eq_ignore_ascii_case("prometheus") {
        let query = get_str(cx, spec, "query", &sf)?
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| cx.err(&format!("{sf}query"), "is required: a PromQL query"))?;
        promql::Engine::parse(&query)
            .map_err(|e| cx.err(&format!("{sf}query"), format!("invalid PromQL: {e}")))?;
        return Ok(Selector::Promql(query));
    }
    if !ty.eq_ignore_ascii_case("burnwatch") {
        return Err(cx.err(
            &format!("{field}.metricSource.type"),
            format!("{ty:?}: use burnwatch or Prometheus"),
        ));
    }
    if let Some(sql) = get_str(cx, spec, "sql", &sf)? {
        let keys = spec.as_mapping().map_or(0, |m| m.len());
        if keys != 1 {
            return Err(cx.err(&format!("{sf}sql"), "an SQL source takes no other fields"));
        }
        let head = sql.trim_start().to_ascii_lowercase();
        if !(head.starts_with("select") || head.starts_with("with")) || sql.contains(';') {
            return Err(cx.err(
                &format!("{sf}sql"),
                "must be one SELECT query returning a time (timestamp) and a value (events) column",
            ));
        }
        return Ok(Selector::Sql(sql));
    }
    let table = get_str(cx, spec, "table", &sf)?.unwrap_or_else(|| "spans".into());
    let mut parts = Vec::new();
    match table.as_str() {
        "spans" => {
            if let Some(s) = get_str(cx, spec, "service", &sf)? {
                parts.push(format!("service_name = {}", lit(&s)));
            }
            if let Some(s) = get_str(cx, spec, "operation", &sf)? {
                parts.push(format!("name = {}", lit(&s)));
            }
            if let Some(s) = get_str(cx, spec, "route", &sf)? {
                parts.push(format!("http_route = {}", lit(&s)));
            }
            let kind = get_str(cx, spec, "kind", &sf)?.unwrap_or_else(|| "SERVER".into());
            if !matches!(
                kind.as_str(),
                "SERVER" | "CLIENT" | "INTERNAL" | "PRODUCER" | "CONSUMER" | "any"
            ) {
                return Err(cx.err(&format!("{sf}kind"), format!("unknown span kind {kind:?}")));
            }
            if kind != "any" {
                parts.push(format!("kind = {}", lit(&kind)));
            }
            if get(spec, "errors").and_then(V::as_bool).unwrap_or(false) {
                parts.push(ERROR_PREDICATE.to_string());
            }
            extra_where(cx, spec, &sf, &mut parts)?;
            if parts.is_empty() {
                return Err(cx.err(&sf, "select something: service, operation, route or where"));
            }
            Ok(Selector::Rows(Table::Spans, parts.join(" AND ")))
        }
        "logs" => {
            if let Some(s) = get_str(cx, spec, "service", &sf)? {
                parts.push(format!("service_name = {}", lit(&s)));
            }
            if let Some(sev) = get_str(cx, spec, "minSeverity", &sf)? {
                let n = SEVERITIES
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(&sev))
                    .map(|(_, n)| *n)
                    .ok_or_else(|| {
                        cx.err(
                            &format!("{sf}minSeverity"),
                            format!("{sev:?}: use TRACE, DEBUG, INFO, WARN, ERROR or FATAL"),
                        )
                    })?;
                parts.push(format!("severity_number >= {n}"));
            }
            if let Some(text) = get_str(cx, spec, "contains", &sf)? {
                parts.push(format!("strpos(body, {}) > 0", lit(&text)));
            }
            extra_where(cx, spec, &sf, &mut parts)?;
            if parts.is_empty() {
                return Err(cx.err(
                    &sf,
                    "select something: service, minSeverity, contains or where",
                ));
            }
            Ok(Selector::Rows(Table::Logs, parts.join(" AND ")))
        }
        "metrics" => {
            let metric = req_str(cx, spec, "metric", &sf)?;
            let mut filter = String::new();
            if let Some(s) = get_str(cx, spec, "service", &sf)? {
                filter.push_str(&format!(" AND service_name = {}", lit(&s)));
            }
            if let Some(attrs) = get(spec, "attributes") {
                let m = attrs.as_mapping().ok_or_else(|| {
                    cx.err(
                        &format!("{sf}attributes"),
                        "must be a map of attribute to value",
                    )
                })?;
                for (k, v) in m {
                    let (Some(k), Some(v)) = (
                        k.as_str(),
                        match v {
                            V::String(s) => Some(s.clone()),
                            V::Number(n) => Some(n.to_string()),
                            V::Bool(b) => Some(b.to_string()),
                            _ => None,
                        },
                    ) else {
                        return Err(cx.err(
                            &format!("{sf}attributes"),
                            "keys and values must be strings",
                        ));
                    };
                    filter.push_str(&format!(" AND attributes[{}] = {}", lit(k), lit(&v)));
                }
            }
            let mut extra = Vec::new();
            extra_where(cx, spec, &sf, &mut extra)?;
            for w in extra {
                filter.push_str(&format!(" AND {w}"));
            }
            Ok(Selector::Metric(MetricSelector { metric, filter }))
        }
        other => Err(cx.err(
            &format!("{sf}table"),
            format!("{other:?}: use spans, logs or metrics (or sql)"),
        )),
    }
}

fn compile_sli(
    cx: &Ctx<'_>,
    spec: &V,
    objective: &V,
    slo_cx: &Ctx<'_>,
) -> Result<SliQuery, LoadError> {
    if let Some(ratio) = get(spec, "ratioMetric") {
        let total = selector(
            cx,
            get(ratio, "total").ok_or_else(|| cx.err("spec.ratioMetric.total", "is required"))?,
            "spec.ratioMetric.total",
        )?;
        let (other, field, other_is_good) = match (get(ratio, "bad"), get(ratio, "good")) {
            (Some(b), None) => (
                selector(cx, b, "spec.ratioMetric.bad")?,
                "spec.ratioMetric.bad",
                false,
            ),
            (None, Some(g)) => (
                selector(cx, g, "spec.ratioMetric.good")?,
                "spec.ratioMetric.good",
                true,
            ),
            _ => {
                return Err(cx.err(
                    "spec.ratioMetric",
                    "give exactly one of good or bad (plus total)",
                ));
            }
        };
        let source = match (total, other) {
            (Selector::Rows(t, total), Selector::Rows(o, other)) if t == o => SliSource::Rows {
                table: t,
                total,
                // NULL (an attribute missing) is not good: it counts as bad.
                bad: if other_is_good {
                    format!("NOT coalesce(({other}), false)")
                } else {
                    other
                },
            },
            (Selector::Metric(total), Selector::Metric(other)) => SliSource::Counters {
                total,
                other,
                other_is_good,
            },
            (Selector::Sql(total), Selector::Sql(other)) => SliSource::Sql {
                total,
                other,
                other_is_good,
            },
            (Selector::Promql(total), Selector::Promql(other)) => SliSource::Promql {
                total,
                other,
                other_is_good,
                counter: get(ratio, "counter").and_then(V::as_bool).unwrap_or(false),
            },
            _ => {
                return Err(cx.err(
                    field,
                    "must read the same kind of source as total (spans, logs, metrics, sql or Prometheus)",
                ));
            }
        };
        return Ok(SliQuery {
            source,
            kind: "ratio".into(),
        });
    }
    if let Some(th) = get(spec, "thresholdMetric") {
        let total = selector(cx, th, "spec.thresholdMetric")?;
        let op = get_str(slo_cx, objective, "op", "spec.objectives[0].")?.ok_or_else(|| {
            slo_cx.err(
                "spec.objectives[0].op",
                "is required for a threshold SLI (lt or lte)",
            )
        })?;
        let value = get(objective, "value")
            .and_then(V::as_f64)
            .filter(|v| *v > 0.0)
            .ok_or_else(|| {
                slo_cx.err(
                    "spec.objectives[0].value",
                    "is required for a threshold SLI: the latency bound in seconds",
                )
            })?;
        let inclusive = match op.as_str() {
            "lt" => false,
            "lte" => true,
            other => {
                return Err(slo_cx.err(
                    "spec.objectives[0].op",
                    format!("{other:?}: a latency SLI counts requests faster than the bound; use lt or lte"),
                ));
            }
        };
        let source = match total {
            Selector::Rows(Table::Spans, total) => {
                let ns = (value * 1e9).round() as i64;
                let cmp = if inclusive { "<=" } else { "<" };
                SliSource::Rows {
                    table: Table::Spans,
                    total,
                    bad: format!("NOT (duration_ns {cmp} {ns})"),
                }
            }
            Selector::Metric(metric) => SliSource::Histogram {
                metric,
                bound: value,
                inclusive,
            },
            _ => {
                return Err(cx.err(
                    "spec.thresholdMetric.metricSource.spec",
                    "a threshold SLI reads span durations or a histogram metric (table: metrics)",
                ));
            }
        };
        return Ok(SliQuery {
            source,
            kind: format!("latency {op} {value} s"),
        });
    }
    Err(cx.err("spec", "an SLI needs ratioMetric or thresholdMetric"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<Slo>, LoadError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("slo.yaml"), text).unwrap();
        load_dir(dir.path())
    }

    const CHECKOUT: &str = r#"
apiVersion: openslo/v1
kind: SLI
metadata:
  name: checkout-errors
spec:
  ratioMetric:
    counter: true
    bad:
      metricSource:
        type: burnwatch
        spec: {service: gateway, route: /api/checkout, errors: true}
    total:
      metricSource:
        type: burnwatch
        spec: {service: gateway, route: /api/checkout}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  displayName: Checkout availability
spec:
  service: shop
  indicatorRef: checkout-errors
  timeWindow:
    - duration: 30d
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - target: 0.999
"#;

    #[test]
    fn ratio_slo_with_reference_and_standard_tiers() {
        let slos = load(CHECKOUT).unwrap();
        assert_eq!(slos.len(), 1);
        let s = &slos[0];
        assert_eq!(s.display_name, "Checkout availability");
        assert_eq!(s.window, Duration::from_secs(30 * 86400));
        assert_eq!(s.tiers.len(), 4);
        assert!((s.tiers[0].factor - 14.4).abs() < 1e-9);
        let SliSource::Rows { table, total, bad } = &s.sli.source else {
            panic!("{:?}", s.sli.source)
        };
        assert_eq!(*table, Table::Spans);
        assert_eq!(
            total,
            "service_name = 'gateway' AND http_route = '/api/checkout' AND kind = 'SERVER'"
        );
        assert!(bad.contains("status_code = 'ERROR'"));
        assert!(s.warnings.is_empty());
    }

    #[test]
    fn latency_slo_policies_and_targets() {
        let text = r#"
apiVersion: openslo/v1
kind: AlertNotificationTarget
metadata: {name: oncall}
spec: {target: "http://127.0.0.1:9/hook", description: on-call webhook}
---
apiVersion: openslo/v1
kind: AlertCondition
metadata: {name: fast-burn}
spec:
  severity: page
  condition: {kind: burnrate, op: gte, threshold: 14.4, lookbackWindow: 1h, alertAfter: 5m}
---
apiVersion: openslo/v1
kind: AlertPolicy
metadata: {name: page-fast}
spec:
  conditions: [{conditionRef: fast-burn}]
  notificationTargets: [{targetRef: oncall}]
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: catalog-latency}
spec:
  service: shop
  indicator:
    metadata: {name: catalog-latency}
    spec:
      thresholdMetric:
        metricSource: {type: burnwatch, spec: {service: catalog, operation: "GET /products/{id}"}}
  timeWindow: [{duration: 28d, isRolling: true}]
  objectives: [{target: 0.99, op: lte, value: 0.3}]
  alertPolicies: [{alertPolicyRef: page-fast}]
"#;
        let s = &load(text).unwrap()[0];
        assert_eq!(s.tiers.len(), 1);
        assert_eq!(s.tiers[0].severity, Severity::Page);
        assert_eq!(s.tiers[0].short, Duration::from_secs(300));
        assert_eq!(s.webhooks, vec!["http://127.0.0.1:9/hook".to_string()]);
        let SliSource::Rows { bad, .. } = &s.sli.source else {
            panic!("{:?}", s.sli.source)
        };
        assert_eq!(bad, "NOT (duration_ns <= 300000000)");
        assert_eq!(s.sli.kind, "latency lte 0.3 s");
    }

    /// A burn rate exactly at the threshold fires a `gte` condition and not
    /// a `gt` one; `lt` is refused.
    #[test]
    fn condition_op_is_honoured_at_exactly_the_threshold() {
        let text = r#"
apiVersion: openslo/v1
kind: SLO
metadata: {name: at-threshold}
spec:
  service: shop
  indicator:
    metadata: {name: at-threshold}
    spec:
      thresholdMetric:
        metricSource: {type: burnwatch, spec: {service: catalog}}
  timeWindow: [{duration: 28d, isRolling: true}]
  objectives: [{target: 0.75, op: lte, value: 0.3}]
  alertPolicies:
    - kind: AlertPolicy
      metadata: {name: both}
      spec:
        conditions:
          - spec: {severity: page, condition: {kind: burnrate, op: gte, threshold: 2, lookbackWindow: 1h, alertAfter: 5m}}
          - spec: {severity: ticket, condition: {kind: burnrate, op: gt, threshold: 2, lookbackWindow: 6h, alertAfter: 30m}}
"#;
        let slo = &load(text).unwrap()[0];
        assert_eq!(slo.tiers.len(), 2);
        assert!(slo.tiers[0].inclusive && !slo.tiers[1].inclusive);
        // 50 of 100 events bad against a 25% budget: a burn of exactly 2.
        let burn = crate::burn::burn_rate(50, 100, 0.75);
        assert_eq!(burn, Some(2.0));
        let counts = |d: Duration| crate::evaluate::WindowCounts {
            window_secs: d.as_secs(),
            total: 100,
            bad: 50,
            burn_rate: burn,
        };
        let whole = counts(slo.window);
        let st = crate::evaluate::status_from_counts(slo, 0, &whole, &[], counts);
        assert!(st.tiers[0].firing, "gte fires at the threshold");
        assert_eq!(st.tiers[0].op, "gte");
        assert!(!st.tiers[1].firing, "gt does not");
        assert_eq!(st.tiers[1].op, "gt");
        let e = load(&text.replace("op: gt,", "op: lt,")).unwrap_err();
        assert!(e.message.contains("use gt or gte"), "{e}");
    }

    /// Runbooks: the SLO's annotations go with every severity, a policy's
    /// with the severities of its conditions (over the SLO's); a runbook
    /// that is not a URL is refused.
    #[test]
    fn annotations_follow_severity() {
        let text = r##"
apiVersion: openslo/v1
kind: AlertPolicy
metadata:
  name: wake-up
  annotations: {runbook_url: "https://runbooks.example/checkout-page", team: payments}
spec:
  conditions:
    - spec: {severity: page, condition: {kind: burnrate, op: gte, threshold: 14.4, lookbackWindow: 1h, alertAfter: 5m}}
---
apiVersion: openslo/v1
kind: SLO
metadata:
  name: annotated
  annotations: {runbook_url: "https://runbooks.example/checkout", owner: shop}
spec:
  service: shop
  indicator:
    metadata: {name: annotated}
    spec:
      thresholdMetric:
        metricSource: {type: burnwatch, spec: {service: catalog}}
  timeWindow: [{duration: 28d, isRolling: true}]
  objectives: [{target: 0.99, op: lte, value: 0.3}]
  alertPolicies:
    - alertPolicyRef: wake-up
    - kind: AlertPolicy
      metadata: {name: later, annotations: {channel: "#shop"}}
      spec:
        conditions:
          - spec: {severity: ticket, condition: {kind: burnrate, op: gte, threshold: 3, lookbackWindow: 1d, alertAfter: 2h}}
"##;
        let slo = &load(text).unwrap()[0];
        let page = slo.annotations_for(Severity::Page);
        assert_eq!(
            page.get("runbook_url").map(String::as_str),
            Some("https://runbooks.example/checkout-page")
        );
        assert_eq!(page.get("team").map(String::as_str), Some("payments"));
        assert_eq!(page.get("owner").map(String::as_str), Some("shop"));
        assert!(!page.contains_key("channel"));
        let ticket = slo.annotations_for(Severity::Ticket);
        assert_eq!(
            ticket.get("runbook_url").map(String::as_str),
            Some("https://runbooks.example/checkout")
        );
        assert_eq!(ticket.get("channel").map(String::as_str), Some("#shop"));
        assert!(!ticket.contains_key("team"));

        let e = load(&text.replace("https://runbooks.example/checkout\"", "see the wiki\""))
            .unwrap_err();
        assert_eq!(e.object, "SLO/annotated");
        assert_eq!(e.field, "metadata.annotations.runbook_url");
        let e = load(&text.replace("team: payments", "team: [a, b]")).unwrap_err();
        assert_eq!(e.field, "metadata.annotations.team");
    }

    #[test]
    fn errors_name_file_object_and_field() {
        let bad_target = CHECKOUT.replace("target: 0.999", "target: 99.9");
        let e = load(&bad_target).unwrap_err();
        assert_eq!(e.object, "SLO/checkout-availability");
        assert_eq!(e.field, "spec.objectives[0].target");
        assert!(e.file.ends_with("slo.yaml"), "{e}");

        let bad_ref = CHECKOUT.replace("indicatorRef: checkout-errors", "indicatorRef: nope");
        let e = load(&bad_ref).unwrap_err();
        assert_eq!(e.field, "spec.indicatorRef");
        assert!(e.message.contains("\"nope\""), "{e}");

        let bad_window = CHECKOUT.replace("duration: 30d", "duration: thirty");
        let e = load(&bad_window).unwrap_err();
        assert_eq!(e.field, "spec.timeWindow[0].duration");

        let bad_source = CHECKOUT.replace(
            "type: burnwatch\n        spec: {service: gateway, route: /api/checkout}",
            "type: datadog\n        spec: {query: x}",
        );
        let e = load(&bad_source).unwrap_err();
        assert_eq!(e.object, "SLI/checkout-errors");
        assert_eq!(e.field, "spec.ratioMetric.total.metricSource.type");
        assert!(e.message.contains("use burnwatch or Prometheus"), "{e}");
        // A Prometheus total beside a burnwatch bad: not the same kind.
        let mixed = CHECKOUT.replace(
            "type: burnwatch\n        spec: {service: gateway, route: /api/checkout}",
            "type: prometheus\n        spec: {query: x}",
        );
        let e = load(&mixed).unwrap_err();
        assert_eq!(e.field, "spec.ratioMetric.bad");
    }

    #[test]
    fn shipped_shop_slos_load() {
        let dir = Path::new(
            &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
        )
        .join("../alert-rules");
        let slos = load_dir(&dir).unwrap();
        let names: Vec<&str> = slos.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "checkout-availability",
                "checkout-latency",
                "login-availability",
                "catalog-latency",
                "payments-availability"
            ]
        );
        for s in &slos {
            assert!(s.warnings.is_empty(), "{}: {:?}", s.name, s.warnings);
        }
        // The shipped conditions are the standard tiers, written with `gte`.
        let payments = &slos[4];
        let standard: Vec<Tier> = standard_tiers(payments.window)
            .into_iter()
            .map(|t| Tier {
                inclusive: true,
                ..t
            })
            .collect();
        assert_eq!(payments.tiers, standard);
    }

    #[test]
    fn a_ninety_percent_objective_warns_that_the_fast_page_cannot_fire() {
        let s = &load(&CHECKOUT.replace("target: 0.999", "target: 0.9")).unwrap()[0];
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(s.warnings[0].contains("never fire"));
        assert!(s.warnings[0].contains("1h"));
    }
}
