//! `burnwatch slo import`: SLOs from Sloth and Pyrra as OpenSLO files with
//! Prometheus SLIs, for teams moving over from those tools.
//!
//! - **Sloth** `prometheus/v1` specs (`version: "prometheus/v1"`,
//!   snake_case keys) and `sloth.slok.dev/v1` `PrometheusServiceLevel`
//!   resources (camelCase keys). Event SLIs become ratio SLIs of two
//!   Prometheus queries with `{{.window}}` set to one minute (rates
//!   scaled to events per minute); raw error-ratio SLIs count each minute
//!   as one event, the minute's ratio of it bad. Alerting keeps Sloth's
//!   windows and budget shares (page 2 % in 1h/5m and 5 % in 6h/30m,
//!   ticket 10 % in 1d/2h and in 3d/6h, factors scaled to the period) and
//!   the alerting, page and ticket annotations.
//! - **Pyrra** `pyrra.dev/v1alpha1` `ServiceLevelObjective` resources:
//!   `ratio` and `latency` indicators become counter ratio SLIs,
//!   `bool_gauge` the share of its samples that are 1; alerting keeps Pyrra's
//!   four windows and factors (14, 7, 2, 1), scaled to the SLO window as
//!   Pyrra scales them.
//!
//! Whatever has no counterpart (plugin SLIs, native-histogram latency,
//! Pyrra's `grouping` and `for` durations, alert labels) is reported, never
//! dropped silently; every converted file is loaded back with
//! [`crate::openslo`] before it is returned.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_norway::{Mapping, Value as V};

/// The tool a file comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Sloth (`prometheus/v1` or `sloth.slok.dev/v1`).
    Sloth,
    /// Pyrra (`pyrra.dev/v1alpha1`).
    Pyrra,
}

/// One converted input file.
#[derive(Debug, Clone)]
pub struct Converted {
    /// The OpenSLO documents, ready to write.
    pub yaml: String,
    /// Names of the SLOs converted.
    pub slos: Vec<String>,
    /// What could not be carried over, one sentence each.
    pub notes: Vec<String>,
}

/// A file that cannot be converted at all.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ImportError {
    /// The input file.
    pub file: String,
    /// What is wrong.
    pub message: String,
}

/// Options of a conversion.
#[derive(Debug, Clone)]
pub struct Options {
    /// The SLO period of Sloth specs (they have none; Sloth's
    /// `--default-slo-period` is 30 days by default).
    pub sloth_period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sloth_period: Duration::from_secs(30 * 86_400),
        }
    }
}

const DAY: u64 = 86_400;

/// Converts the text of one file.
pub fn convert(
    source: Source,
    file: &Path,
    text: &str,
    options: &Options,
) -> Result<Converted, ImportError> {
    let err = |message: String| ImportError {
        file: file.display().to_string(),
        message,
    };
    let mut out = Out::default();
    for (i, de) in serde_norway::Deserializer::from_str(text).enumerate() {
        let doc = <V as serde::Deserialize>::deserialize(de)
            .map_err(|e| err(format!("document {}: invalid YAML: {e}", i + 1)))?;
        if doc.is_null() {
            continue;
        }
        let at = format!("document {}", i + 1);
        match source {
            Source::Sloth => sloth(&doc, &at, options, &mut out),
            Source::Pyrra => pyrra(&doc, &at, &mut out),
        }
        .map_err(err)?;
    }
    if out.slos.is_empty() {
        return Err(err(format!(
            "no SLO could be converted{}",
            if out.notes.is_empty() {
                String::new()
            } else {
                format!(": {}", out.notes.join("; "))
            }
        )));
    }
    let mut yaml = format!(
        "# OpenSLO converted by `burnwatch slo import --from {}` from {}.\n",
        match source {
            Source::Sloth => "sloth",
            Source::Pyrra => "pyrra",
        },
        file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    for n in &out.notes {
        yaml.push_str(&format!("# Not carried over: {n}\n"));
    }
    for d in &out.docs {
        yaml.push_str("---\n");
        yaml.push_str(&serde_norway::to_string(d).map_err(|e| err(e.to_string()))?);
    }
    // What is written must load.
    crate::openslo::load_str(file, &yaml)
        .map_err(|e| err(format!("the converted file does not load: {e}")))?;
    Ok(Converted {
        yaml,
        slos: out.slos,
        notes: out.notes,
    })
}

#[derive(Default)]
struct Out {
    docs: Vec<V>,
    slos: Vec<String>,
    notes: Vec<String>,
}

fn map<const N: usize>(pairs: [(&str, V); N]) -> V {
    let mut m = Mapping::new();
    for (k, v) in pairs {
        if !v.is_null() {
            m.insert(V::from(k), v);
        }
    }
    V::Mapping(m)
}

fn string_map(m: &BTreeMap<String, String>) -> V {
    if m.is_empty() {
        return V::Null;
    }
    V::Mapping(
        m.iter()
            .map(|(k, v)| (V::from(k.as_str()), V::from(v.as_str())))
            .collect(),
    )
}

fn meta(
    name: &str,
    display: Option<&str>,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> V {
    map([
        ("name", V::from(name)),
        ("displayName", display.map_or(V::Null, V::from)),
        ("labels", string_map(labels)),
        ("annotations", string_map(annotations)),
    ])
}

fn doc(kind: &str, metadata: V, spec: V) -> V {
    map([
        ("apiVersion", V::from("openslo/v1")),
        ("kind", V::from(kind)),
        ("metadata", metadata),
        ("spec", spec),
    ])
}

/// A DNS-label-like name: lowercase letters, digits and `-`.
fn name_of(parts: &[&str]) -> String {
    let mut out = String::new();
    for c in parts.join("-").chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(63).collect()
}

fn get<'v>(v: &'v V, keys: &[&str]) -> Option<&'v V> {
    keys.iter().find_map(|k| v.get(*k)).filter(|x| !x.is_null())
}

fn text(v: &V, keys: &[&str]) -> Option<String> {
    match get(v, keys)? {
        V::String(s) => Some(s.clone()),
        V::Number(n) => Some(n.to_string()),
        V::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: Option<&V>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(V::Mapping(m)) = v {
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
                continue;
            };
            out.insert(k.to_string(), v);
        }
    }
    out
}

/// A duration in the largest whole unit (days, hours, minutes).
fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(DAY) {
        format!("{}d", s / DAY)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s.div_ceil(60))
    }
}

/// A Prometheus duration (`2w`, `28d`, `1h30m`).
fn prom_duration(s: &str) -> Option<Duration> {
    let ms = promql::parse_duration(s.trim())?;
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

/// A burn-rate condition (op `gt`, as both tools compare).
fn condition(severity: &str, factor: f64, long: Duration, short: Duration) -> V {
    map([(
        "spec",
        map([
            ("severity", V::from(severity)),
            (
                "condition",
                map([
                    ("kind", V::from("burnrate")),
                    ("op", V::from("gt")),
                    ("threshold", V::from(round(factor))),
                    ("lookbackWindow", V::from(fmt_duration(long))),
                    ("alertAfter", V::from(fmt_duration(short))),
                ]),
            ),
        ]),
    )])
}

fn round(f: f64) -> f64 {
    (f * 1e6).round() / 1e6
}

fn policy(name: &str, annotations: &BTreeMap<String, String>, conditions: Vec<V>) -> V {
    map([
        ("kind", V::from("AlertPolicy")),
        ("metadata", meta(name, None, &BTreeMap::new(), annotations)),
        (
            "spec",
            map([
                ("alertWhenBreaching", V::from(true)),
                ("conditions", V::Sequence(conditions)),
            ]),
        ),
    ])
}

fn prometheus(query: &str) -> V {
    map([(
        "metricSource",
        map([
            ("type", V::from("Prometheus")),
            ("spec", map([("query", V::from(query))])),
        ]),
    )])
}

#[allow(clippy::too_many_arguments)]
fn slo_doc(
    name: &str,
    display: &str,
    labels: &BTreeMap<String, String>,
    service: &str,
    description: &str,
    window: Duration,
    target: f64,
    ratio: V,
    policies: Vec<V>,
) -> V {
    doc(
        "SLO",
        meta(name, Some(display), labels, &BTreeMap::new()),
        map([
            ("service", V::from(service)),
            (
                "description",
                if description.is_empty() {
                    V::Null
                } else {
                    V::from(description)
                },
            ),
            (
                "indicator",
                map([
                    ("metadata", map([("name", V::from(name))])),
                    ("spec", map([("ratioMetric", ratio)])),
                ]),
            ),
            (
                "timeWindow",
                V::Sequence(vec![map([
                    ("duration", V::from(fmt_duration(window))),
                    ("isRolling", V::from(true)),
                ])]),
            ),
            ("budgetingMethod", V::from("Occurrences")),
            (
                "objectives",
                V::Sequence(vec![map([("target", V::from(round(target)))])]),
            ),
            (
                "alertPolicies",
                if policies.is_empty() {
                    V::Null
                } else {
                    V::Sequence(policies)
                },
            ),
        ]),
    )
}

/// A Sloth query with its window set to one minute, as events per
/// minute: per-second rates are multiplied by 60.
fn sloth_query(q: &str) -> Result<String, String> {
    let re = regex::Regex::new(r"\{\{\s*\.window\s*\}\}").expect("valid regex");
    if !re.is_match(q) {
        return Err(format!("{q:?} has no {{{{.window}}}}"));
    }
    let q = re.replace_all(q, "1m").into_owned();
    promql::Engine::parse(&q).map_err(|e| format!("{q:?} is not valid PromQL: {e}"))?;
    let rate = regex::Regex::new(r"(^|[^A-Za-z0-9_:])rate\s*\(").expect("valid regex");
    Ok(if rate.is_match(&q) {
        format!("60 * ({q})")
    } else {
        q
    })
}

fn sloth(doc: &V, at: &str, options: &Options, out: &mut Out) -> Result<(), String> {
    let (spec, camel) = if text(doc, &["version"]).as_deref() == Some("prometheus/v1") {
        (doc, false)
    } else if text(doc, &["apiVersion"]).as_deref() == Some("sloth.slok.dev/v1")
        && text(doc, &["kind"]).as_deref() == Some("PrometheusServiceLevel")
    {
        (
            get(doc, &["spec"]).ok_or_else(|| format!("{at}: spec is required"))?,
            true,
        )
    } else {
        return Err(format!(
            "{at}: not a Sloth spec (version: prometheus/v1, or apiVersion: sloth.slok.dev/v1 with kind: PrometheusServiceLevel)"
        ));
    };
    let key = |snake: &'static str, camel_key: &'static str| if camel { camel_key } else { snake };
    let service = text(spec, &["service"]).ok_or_else(|| format!("{at}: service is required"))?;
    let service_name = name_of(&[&service]);
    let labels = strings(get(spec, &["labels"]));
    let slos = get(spec, &["slos"])
        .and_then(V::as_sequence)
        .ok_or_else(|| format!("{at}: slos is required"))?;
    let period = options.sloth_period;
    if !spec
        .get(key("slo_plugins", "sloPlugins"))
        .is_none_or(V::is_null)
    {
        out.notes.push(format!(
            "{service}: SLO plugins ({}) have no counterpart",
            key("slo_plugins", "sloPlugins")
        ));
    }
    for (i, s) in slos.iter().enumerate() {
        let sat = format!("{at}: slos[{i}]");
        let Some(slo_name) = text(s, &["name"]) else {
            return Err(format!("{sat}: name is required"));
        };
        let name = name_of(&[&service, &slo_name]);
        let objective = get(s, &["objective"])
            .and_then(V::as_f64)
            .ok_or_else(|| format!("{sat}: objective is required (a percentage, e.g. 99.9)"))?;
        if !(objective > 0.0 && objective < 100.0) {
            out.notes.push(format!(
                "{name}: objective {objective} % has no error budget (it must be below 100): not converted"
            ));
            continue;
        }
        let mut slo_labels = labels.clone();
        slo_labels.extend(strings(get(s, &["labels"])));
        let sli = get(s, &["sli"]).ok_or_else(|| format!("{sat}: sli is required"))?;
        let ratio = if let Some(ev) = get(sli, &["events"]) {
            let error = text(ev, &[key("error_query", "errorQuery")]).ok_or_else(|| {
                format!(
                    "{sat}: sli.events.{} is required",
                    key("error_query", "errorQuery")
                )
            })?;
            let total = text(ev, &[key("total_query", "totalQuery")]).ok_or_else(|| {
                format!(
                    "{sat}: sli.events.{} is required",
                    key("total_query", "totalQuery")
                )
            })?;
            map([
                ("counter", V::from(false)),
                (
                    "bad",
                    prometheus(&sloth_query(&error).map_err(|e| format!("{sat}: {e}"))?),
                ),
                (
                    "total",
                    prometheus(&sloth_query(&total).map_err(|e| format!("{sat}: {e}"))?),
                ),
            ])
        } else if let Some(raw) = get(sli, &["raw"]) {
            let q = text(raw, &[key("error_ratio_query", "errorRatioQuery")]).ok_or_else(|| {
                format!(
                    "{sat}: sli.raw.{} is required",
                    key("error_ratio_query", "errorRatioQuery")
                )
            })?;
            let q = sloth_query(&q).map_err(|e| format!("{sat}: {e}"))?;
            // A ratio already: it is taken back from events per minute.
            let q = q
                .strip_prefix("60 * (")
                .and_then(|x| x.strip_suffix(')'))
                .map_or(q.clone(), str::to_string);
            out.notes.push(format!(
                "{name}: a raw error-ratio SLI counts each minute as one event, the minute's error ratio of it bad (minutes weigh alike, not by traffic)"
            ));
            map([
                ("counter", V::from(false)),
                ("bad", prometheus(&format!("clamp(({q}), 0, 1)"))),
                (
                    "total",
                    prometheus(&format!("vector(1) and on() count({q})")),
                ),
            ])
        } else if get(sli, &["plugin"]).is_some() {
            out.notes.push(format!(
                "{name}: a plugin SLI ({}) cannot be converted: write its error and total queries as an events SLI",
                text(get(sli, &["plugin"]).unwrap_or(&V::Null), &["id"]).unwrap_or_default()
            ));
            continue;
        } else {
            return Err(format!("{sat}: sli needs events, raw or plugin"));
        };
        // Alerting: Sloth's windows, factors scaled to the period.
        let mut policies = Vec::new();
        let alerting = get(s, &["alerting"]).cloned().unwrap_or(V::Null);
        let common = strings(get(&alerting, &["annotations"]));
        if get(&alerting, &["labels"]).is_some() {
            out.notes.push(format!(
                "{name}: alert labels are not carried over (Burnwatch labels its alerts with slo, service and severity)"
            ));
        }
        let hours = period.as_secs_f64() / 3600.0;
        let factor = |budget_percent: f64, long_h: f64| budget_percent * hours / 100.0 / long_h;
        for (sev, field, windows) in [
            (
                "page",
                key("page_alert", "pageAlert"),
                [(2.0, 1.0, 5u64), (5.0, 6.0, 30)],
            ),
            (
                "ticket",
                key("ticket_alert", "ticketAlert"),
                [(10.0, 24.0, 120), (10.0, 72.0, 360)],
            ),
        ] {
            let a = get(&alerting, &[field]).cloned().unwrap_or(V::Null);
            if get(&a, &["disable"]).and_then(V::as_bool) == Some(true) {
                continue;
            }
            if get(&a, &["labels"]).is_some() && get(&alerting, &["labels"]).is_none() {
                out.notes.push(format!(
                    "{name}: {sev} alert labels are not carried over (Burnwatch labels its alerts with slo, service and severity)"
                ));
            }
            let mut notes = common.clone();
            notes.extend(strings(get(&a, &["annotations"])));
            if let Some(n) = text(&alerting, &["name"]) {
                notes.entry("alertname".into()).or_insert(n);
            }
            let conditions = windows
                .iter()
                .map(|&(pct, long_h, short_m)| {
                    condition(
                        sev,
                        factor(pct, long_h),
                        Duration::from_secs((long_h * 3600.0) as u64),
                        Duration::from_secs(short_m * 60),
                    )
                })
                .collect();
            policies.push(policy(&format!("{name}-{sev}"), &notes, conditions));
        }
        if policies.is_empty() {
            out.notes.push(format!(
                "{name}: Sloth's alerts were both disabled; Burnwatch alerts with its default tiers"
            ));
        }
        out.docs.push(slo_doc(
            &name,
            &slo_name,
            &slo_labels,
            &service_name,
            &text(s, &["description"]).unwrap_or_default(),
            period,
            objective / 100.0,
            ratio,
            policies,
        ));
        out.slos.push(name);
    }
    Ok(())
}

/// Pyrra's `Windows`: (severity, factor, long, short) for an SLO window,
/// each a division of the window rounded to the minute.
pub fn pyrra_windows(window: Duration) -> [(&'static str, f64, Duration, Duration); 4] {
    let w = window.as_secs_f64();
    let at = |div: f64| {
        let minutes = (w / div / 60.0).round().max(1.0);
        Duration::from_secs(minutes as u64 * 60)
    };
    [
        ("page", 14.0, at(672.0), at(8064.0)),
        ("page", 7.0, at(112.0), at(1344.0)),
        ("ticket", 2.0, at(28.0), at(336.0)),
        ("ticket", 1.0, at(7.0), at(112.0)),
    ]
}

fn pyrra(doc: &V, at: &str, out: &mut Out) -> Result<(), String> {
    if text(doc, &["kind"]).as_deref() != Some("ServiceLevelObjective")
        || !text(doc, &["apiVersion"]).is_some_and(|a| a.starts_with("pyrra.dev/"))
    {
        return Err(format!(
            "{at}: not a Pyrra ServiceLevelObjective (apiVersion: pyrra.dev/v1alpha1)"
        ));
    }
    let md = get(doc, &["metadata"]).cloned().unwrap_or(V::Null);
    let slo_name =
        text(&md, &["name"]).ok_or_else(|| format!("{at}: metadata.name is required"))?;
    let namespace = text(&md, &["namespace"]).unwrap_or_else(|| "default".into());
    let labels = strings(get(&md, &["labels"]));
    let spec = get(doc, &["spec"]).ok_or_else(|| format!("{at}: spec is required"))?;
    let name = name_of(&[&slo_name]);
    let target_text =
        text(spec, &["target"]).ok_or_else(|| format!("{at}: spec.target is required"))?;
    let target: f64 = target_text
        .trim()
        .parse()
        .map_err(|_| format!("{at}: spec.target {target_text:?} is not a percentage"))?;
    if !(target > 0.0 && target < 100.0) {
        out.notes.push(format!(
            "{name}: target {target_text} % has no error budget (it must be between 0 and 100): not converted"
        ));
        return Ok(());
    }
    if target <= 1.0 {
        out.notes.push(format!(
            "{name}: target {target_text} is read as a percentage, as Pyrra reads it ({target_text} %, not {} %)",
            target * 100.0
        ));
    }
    let window_text =
        text(spec, &["window"]).ok_or_else(|| format!("{at}: spec.window is required"))?;
    let window = prom_duration(&window_text)
        .ok_or_else(|| format!("{at}: spec.window {window_text:?} is not a duration"))?;
    let indicator =
        get(spec, &["indicator"]).ok_or_else(|| format!("{at}: spec.indicator is required"))?;
    let metric = |v: &V, field: &str| -> Result<String, String> {
        let m = text(v, &["metric"]).ok_or_else(|| format!("{at}: {field}.metric is required"))?;
        promql::Engine::parse(&m).map_err(|e| format!("{at}: {field}.metric {m:?}: {e}"))?;
        Ok(m)
    };
    let grouping;
    let ratio = if let Some(r) = get(indicator, &["ratio"]) {
        grouping = get(r, &["grouping"]).cloned();
        let errors = metric(
            get(r, &["errors"]).unwrap_or(&V::Null),
            "indicator.ratio.errors",
        )?;
        let total = metric(
            get(r, &["total"]).unwrap_or(&V::Null),
            "indicator.ratio.total",
        )?;
        map([
            ("counter", V::from(true)),
            ("bad", prometheus(&errors)),
            ("total", prometheus(&total)),
        ])
    } else if let Some(l) = get(indicator, &["latency"]) {
        grouping = get(l, &["grouping"]).cloned();
        let success = metric(
            get(l, &["success"]).unwrap_or(&V::Null),
            "indicator.latency.success",
        )?;
        let total = metric(
            get(l, &["total"]).unwrap_or(&V::Null),
            "indicator.latency.total",
        )?;
        map([
            ("counter", V::from(true)),
            ("good", prometheus(&success)),
            ("total", prometheus(&total)),
        ])
    } else if let Some(b) = get(indicator, &["bool_gauge"]) {
        grouping = get(b, &["grouping"]).cloned();
        let m = metric(b, "indicator.bool_gauge")?;
        map([
            ("counter", V::from(false)),
            ("good", prometheus(&format!("sum(sum_over_time({m}[1m]))"))),
            (
                "total",
                prometheus(&format!("sum(count_over_time({m}[1m]))")),
            ),
        ])
    } else if get(indicator, &["latencyNative"]).is_some() {
        out.notes.push(format!(
            "{name}: a latencyNative indicator reads native histograms, which Burnwatch does not store: not converted"
        ));
        return Ok(());
    } else {
        return Err(format!(
            "{at}: spec.indicator needs ratio, latency, latencyNative or bool_gauge"
        ));
    };
    if let Some(g) = grouping
        .as_ref()
        .and_then(V::as_sequence)
        .filter(|g| !g.is_empty())
    {
        let by: Vec<String> = g
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        out.notes.push(format!(
            "{name}: grouping by {} is not carried over: the SLO covers every series together",
            by.join(", ")
        ));
    }
    let alerting = get(spec, &["alerting"]).cloned().unwrap_or(V::Null);
    let disabled = get(&alerting, &["disabled"]).and_then(V::as_bool) == Some(true)
        || get(&alerting, &["burnrates"]).and_then(V::as_bool) == Some(false);
    let mut policies = Vec::new();
    if disabled {
        out.notes.push(format!(
            "{name}: Pyrra's burn-rate alerts were disabled; Burnwatch alerts with its default tiers"
        ));
    } else {
        let mut notes = BTreeMap::new();
        if let Some(n) = text(&alerting, &["name"]) {
            notes.insert("alertname".to_string(), n);
        }
        let windows = pyrra_windows(window);
        for sev in ["page", "ticket"] {
            let conditions = windows
                .iter()
                .filter(|w| w.0 == sev)
                .map(|&(s, f, long, short)| condition(s, f, long, short))
                .collect();
            policies.push(policy(&format!("{name}-{sev}"), &notes, conditions));
        }
        out.notes.push(format!(
            "{name}: Pyrra's `for` durations are not carried over (Burnwatch fires at the evaluation that crosses both windows)"
        ));
        if get(&alerting, &["absent"]).and_then(V::as_bool) != Some(false) {
            out.notes.push(format!(
                "{name}: Pyrra's absent-metric alert is not carried over (Burnwatch reports insufficient data on the SLO instead)"
            ));
        }
    }
    out.docs.push(slo_doc(
        &name,
        &slo_name,
        &labels,
        &name_of(&[&namespace]),
        &text(spec, &["description"]).unwrap_or_default(),
        window,
        target / 100.0,
        ratio,
        policies,
    ));
    out.slos.push(name);
    Ok(())
}
