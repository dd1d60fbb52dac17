//! Unit tests for alert rules, in a format modelled on `promtool test
//! rules`: input series of spans and metric points over time, evaluation
//! times, and the alerts expected to be firing then.
//!
//! ```yaml
//! rule_files: [shop-rules.yaml]      # relative to this file
//! evaluation_interval: 30s           # default 1m
//! tests:
//!   - name: checkout errors page after two minutes
//!     interval: 1m                   # spacing of input samples, default 1m
//!     input_spans:
//!       - service: gateway
//!         operation: POST /api/checkout    # span name
//!         route: /api/checkout             # http.route (optional)
//!         requests: "10x20"                # SERVER spans per interval
//!         errors: "0x9 5x10"               # of which fail (status ERROR, HTTP 500)
//!         duration: 20ms
//!     input_points:
//!       - metric: queue.depth
//!         service: worker
//!         type: gauge                      # or counter (cumulative sum)
//!         labels: { queue: orders }
//!         values: "1+1x10"
//!     alert_rule_test:
//!       - eval_time: 12m
//!         alertname: CheckoutErrors
//!         exp_alerts:
//!           - exp_labels: { service: gateway, severity: page }
//!             exp_annotations: { summary: "gateway: 50 failed requests in 5 minutes" }
//! ```
//!
//! promtool's own test files work too: `input_series` (a series selector
//! such as `'up{job="api"}'` and its `values`), `alert_rule_test`
//! against PromQL alerting rules and `promql_expr_test` (`expr`,
//! `eval_time`, `exp_samples` with `labels` and `value`). A test with
//! `input_series` or `promql_expr_test` starts at the Unix epoch, as
//! promtool's do, so `time()` agrees; values may be `stale`, `NaN`, `Inf`.
//!
//! Series use promtool's notation: `a+bxn` is `a, a+b, ..., a+n*b` (n+1
//! values), `axn` is `a` n+1 times, `_` is no sample, `_xn` n no-samples.
//! Sample `k` of a series is at `k * interval` after the test's start;
//! span counts are spread evenly over their interval, the failing ones
//! first. Rules are evaluated every `evaluation_interval` from the start
//! to the last `eval_time`, exactly as the server does (same SQL, same
//! state machine); at each `eval_time` the firing alerts of `alertname`
//! must equal `exp_alerts` (labels besides `alertname`, and annotations).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use store::rows::{
    Attr, MetricPointRecord, MetricPointsBuilder, Number, Origin, PointData, SpanKind, SpanRecord,
    SpansBuilder, StatusCode, Temporality,
};
use store::{Store, StoreConfig, Table};

use crate::rules::{Instance, InstanceState, Labels, RuleGroup, load_files, query, step};

/// The instant a test starts at: 2026-01-01T00:00:00Z.
pub const START_NS: i64 = 1_767_225_600_000_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    rule_files: Vec<PathBuf>,
    evaluation_interval: Option<String>,
    tests: Vec<TestCase>,
    /// promtool's; accepted when it lists the groups in file order.
    #[serde(default)]
    group_eval_order: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: Option<String>,
    interval: Option<String>,
    #[serde(default)]
    input_spans: Vec<SpanSeries>,
    #[serde(default)]
    input_points: Vec<PointSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    /// promtool's; only `[]` or absent is accepted.
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpanSeries {
    service: String,
    operation: Option<String>,
    route: Option<String>,
    requests: String,
    errors: Option<String>,
    duration: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointSeries {
    metric: String,
    service: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

/// The outcome of one test file.
#[derive(Debug, Default)]
pub struct Report {
    /// Names of the tests that passed.
    pub passed: Vec<String>,
    /// Failed tests: name and what differed.
    pub failed: Vec<(String, Vec<String>)>,
}

impl Report {
    /// Whether every test passed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Expands a series in promtool's notation; `None` is a missing sample.
pub fn expand(series: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in series.split_whitespace() {
        let bad = || format!("series token {tok:?}: use a, a+bxn, a-bxn, axn, _ or _xn");
        let (head, times) = match tok.split_once('x') {
            Some((h, n)) => (h, Some(n.parse::<usize>().map_err(|_| bad())?)),
            None => (tok, None),
        };
        if times.is_some_and(|n| n > 100_000) {
            return Err(format!(
                "series token {tok:?} repeats more than 100000 times"
            ));
        }
        if head == "_" {
            out.extend(std::iter::repeat_n(None, times.unwrap_or(1)));
            continue;
        }
        if head == "stale" {
            let stale = f64::from_bits(promql::STALE_NAN_BITS);
            out.extend(std::iter::repeat_n(Some(stale), times.unwrap_or(1)));
            continue;
        }
        let (a, b) = match head[1..].find(['+', '-']).map(|i| i + 1) {
            Some(i) => {
                let a: f64 = head[..i].parse().map_err(|_| bad())?;
                let b: f64 = head[i + 1..].parse().map_err(|_| bad())?;
                (a, if &head[i..=i] == "-" { -b } else { b })
            }
            None => (head.parse::<f64>().map_err(|_| bad())?, 0.0),
        };
        if head[1..].contains(['+', '-']) && times.is_none() {
            return Err(bad());
        }
        match times {
            None => out.push(Some(a)),
            Some(n) => out.extend((0..=n).map(|k| Some(a + b * k as f64))),
        }
    }
    Ok(out)
}

fn dur(what: &str, s: &Option<String>, default: Duration) -> Result<Duration, String> {
    match s {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("{what} {s:?} is not a duration: {e}")),
    }
}

fn spans(
    series: &SpanSeries,
    interval_ns: i64,
    seq: &mut u64,
) -> Result<arrow::array::RecordBatch, String> {
    let requests = expand(&series.requests)?;
    let errors = match &series.errors {
        Some(e) => expand(e)?,
        None => vec![],
    };
    let d = dur("duration", &series.duration, Duration::from_millis(10))?.as_nanos() as i64;
    let name = series.operation.clone().unwrap_or_else(|| "op".into());
    let res = vec![Attr::new("service.name", series.service.as_str())];
    let origin = Origin {
        service_name: &series.service,
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let mut b = SpansBuilder::new();
    for (k, n) in requests.iter().enumerate() {
        let Some(n) = n else { continue };
        if *n < 0.0 || n.fract() != 0.0 {
            return Err(format!("requests must be whole and not negative, got {n}"));
        }
        let n = *n as i64;
        let failing = errors.get(k).copied().flatten().unwrap_or(0.0) as i64;
        if failing > n {
            return Err(format!("sample {k}: {failing} errors out of {n} requests"));
        }
        for j in 0..n {
            *seq += 1;
            let start = START_NS + k as i64 * interval_ns + j * interval_ns / n;
            let failed = j < failing;
            let code = if failed { "500" } else { "200" };
            let mut attributes = vec![Attr::new("http.response.status_code", code)];
            if let Some(r) = &series.route {
                attributes.push(Attr::new("http.route", r.as_str()));
            }
            b.append(
                &origin,
                &SpanRecord {
                    trace_id: (u128::from(*seq) << 64 | 0x5eed).to_be_bytes(),
                    span_id: seq.to_be_bytes(),
                    parent_span_id: None,
                    trace_state: "",
                    flags: 1,
                    name: &name,
                    kind: SpanKind::Server,
                    start_time_ns: start,
                    end_time_ns: start + d,
                    status_code: if failed {
                        StatusCode::Error
                    } else {
                        StatusCode::Unset
                    },
                    status_message: "",
                    attributes,
                    dropped_attributes_count: 0,
                    events: vec![],
                    dropped_events_count: 0,
                    links: vec![],
                    dropped_links_count: 0,
                },
            );
        }
    }
    Ok(b.finish())
}

fn points(series: &PointSeries, interval_ns: i64) -> Result<arrow::array::RecordBatch, String> {
    let values = expand(&series.values)?;
    let service = series.service.clone().unwrap_or_else(|| "test".into());
    let res = vec![Attr::new("service.name", service.as_str())];
    let origin = Origin {
        service_name: &service,
        resource_attributes: &res,
        scope_name: "",
        scope_version: "",
    };
    let counter = match series.kind.as_deref() {
        None | Some("gauge") => false,
        Some("counter") => true,
        Some(other) => return Err(format!("type {other:?}: use gauge or counter")),
    };
    let mut b = MetricPointsBuilder::new();
    for (k, v) in values.iter().enumerate() {
        let Some(v) = v else { continue };
        let data = if counter {
            PointData::Sum {
                value: Number::F64(*v),
                is_monotonic: true,
                temporality: Temporality::Cumulative,
            }
        } else {
            PointData::Gauge(Number::F64(*v))
        };
        b.append(
            &origin,
            &MetricPointRecord {
                time_ns: START_NS + k as i64 * interval_ns,
                start_time_ns: Some(START_NS),
                metric_name: &series.metric,
                unit: "",
                description: "",
                attributes: series
                    .labels
                    .iter()
                    .map(|(k, v)| Attr::new(k.as_str(), v.as_str()))
                    .collect(),
                flags: 0,
                data,
                exemplars: vec![],
            },
        );
    }
    Ok(b.finish())
}

/// Labels of a series selector such as `up{job="api"}` (equality
/// matchers only).
fn selector_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    let expr = promql::Engine::parse(s).map_err(|e| format!("series {s:?}: {e}"))?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!("series {s:?} is not a series selector"));
    };
    let mut out = Vec::new();
    if let Some(n) = vs.name {
        out.push(("__name__".to_string(), n));
    }
    for m in vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!(
                "series {s:?}: only = matchers can give a series its labels"
            ));
        }
        out.push((m.name, m.value));
    }
    Ok(out)
}

/// promtool input series as rows with Prometheus labels, `start_ns` the
/// test's start.
fn input_series(
    series: &InputSeries,
    interval_ns: i64,
    start_ns: i64,
) -> Result<arrow::array::RecordBatch, String> {
    let labels = selector_labels(&series.series)?;
    let name = labels
        .iter()
        .find(|(k, _)| k == "__name__")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| format!("series {:?} has no metric name", series.series))?;
    let attrs: Vec<(String, String)> = labels
        .into_iter()
        .filter(|(k, _)| k != "__name__")
        .collect();
    let job = attrs
        .iter()
        .find(|(k, _)| k == "job")
        .map(|(_, v)| v.clone());
    let res: Vec<Attr<'_>> = job
        .iter()
        .map(|j| Attr::new("service.name", j.as_str()))
        .collect();
    let origin = Origin {
        service_name: job.as_deref().unwrap_or("unknown_service"),
        resource_attributes: &res,
        scope_name: analytics::prom::REMOTE_WRITE_SCOPE,
        scope_version: "rule-test",
    };
    let mut b = MetricPointsBuilder::new();
    for (k, v) in expand(&series.values)?.iter().enumerate() {
        let Some(v) = v else { continue };
        b.append(
            &origin,
            &MetricPointRecord {
                time_ns: start_ns + k as i64 * interval_ns,
                start_time_ns: None,
                metric_name: &name,
                unit: "",
                description: "",
                attributes: attrs
                    .iter()
                    .map(|(k, v)| Attr::new(k.as_str(), v.as_str()))
                    .collect(),
                flags: 0,
                data: PointData::Gauge(Number::F64(*v)),
                exemplars: vec![],
            },
        );
    }
    Ok(b.finish())
}

/// Runs every test of one test file.
pub async fn run_file(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TestFile =
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let rule_files: Vec<PathBuf> = file.rule_files.iter().map(|f| base.join(f)).collect();
    let groups = load_files(&rule_files).map_err(|e| e.to_string())?;
    if !file.group_eval_order.is_empty() {
        let order: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        if file
            .group_eval_order
            .iter()
            .map(String::as_str)
            .ne(order.iter().copied())
        {
            return Err(format!(
                "{}: group_eval_order other than the file order ({order:?}) is not supported",
                path.display()
            ));
        }
    }
    if groups.is_empty() {
        return Err(format!(
            "{}: rule_files hold no rule groups",
            path.display()
        ));
    }
    let every = dur(
        "evaluation_interval",
        &file.evaluation_interval,
        Duration::from_secs(60),
    )?
    .as_nanos() as i64;
    if every <= 0 {
        return Err("evaluation_interval must be positive".into());
    }
    let mut report = Report::default();
    for (i, case) in file.tests.iter().enumerate() {
        let name = case
            .name
            .clone()
            .unwrap_or_else(|| format!("test {}", i + 1));
        match run_case(case, &groups, every).await {
            Ok(problems) if problems.is_empty() => report.passed.push(name),
            Ok(problems) => report.failed.push((name, problems)),
            Err(e) => report.failed.push((name, vec![e])),
        }
    }
    Ok(report)
}

fn fmt_time(ns: i64) -> String {
    humantime::format_duration(Duration::from_nanos(ns.max(0) as u64)).to_string()
}

async fn run_case(
    case: &TestCase,
    groups: &[RuleGroup],
    every: i64,
) -> Result<Vec<String>, String> {
    let interval = dur("interval", &case.interval, Duration::from_secs(60))?.as_nanos() as i64;
    if interval <= 0 {
        return Err("interval must be positive".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Store::open(StoreConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let promtool = !case.input_series.is_empty() || !case.promql_expr_test.is_empty();
    // promtool's tests start at the Unix epoch.
    let start_ns = if promtool { 0 } else { START_NS };
    if !case.external_labels.is_empty() {
        return Err("external_labels are not supported".into());
    }
    let outcome = async {
        let mut seq = 0u64;
        for s in &case.input_series {
            let b = input_series(s, interval, start_ns)?;
            if b.num_rows() > 0 {
                store
                    .write(Table::MetricPoints, b)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        for s in &case.input_spans {
            store
                .write(Table::Spans, spans(s, interval, &mut seq)?)
                .await
                .map_err(|e| e.to_string())?;
        }
        for p in &case.input_points {
            store
                .write(Table::MetricPoints, points(p, interval)?)
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut checks: Vec<(i64, &AlertTest)> = case
            .alert_rule_test
            .iter()
            .map(|t| {
                dur("eval_time", &Some(t.eval_time.clone()), Duration::ZERO)
                    .map(|d| (d.as_nanos() as i64, t))
            })
            .collect::<Result<_, _>>()?;
        checks.sort_by_key(|(t, _)| *t);
        let mut expr_checks: Vec<(i64, &ExprTest)> = case
            .promql_expr_test
            .iter()
            .map(|t| {
                dur("eval_time", &Some(t.eval_time.clone()), Duration::ZERO)
                    .map(|d| (d.as_nanos() as i64, t))
            })
            .collect::<Result<_, _>>()?;
        expr_checks.sort_by_key(|(t, _)| *t);
        let known: Vec<&str> = groups
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| r.name.as_str()))
            .collect();
        let mut problems = Vec::new();
        for (_, t) in &checks {
            if !known.contains(&t.alertname.as_str()) {
                problems.push(format!(
                    "alertname {:?} is not a rule in rule_files",
                    t.alertname
                ));
            }
        }
        let last = checks
            .last()
            .map_or(0, |(t, _)| *t)
            .max(expr_checks.last().map_or(0, |(t, _)| *t));
        let limits = store::sql::QueryLimits::default();
        let mut state: BTreeMap<(usize, usize), Vec<Instance>> = BTreeMap::new();
        let mut next = checks.iter().peekable();
        let mut at = 0;
        while at <= last {
            for (gi, g) in groups.iter().enumerate() {
                for (ri, r) in g.rules.iter().enumerate() {
                    if r.record {
                        crate::rules::record(&store, r, start_ns + at)
                            .await
                            .map_err(|e| format!("{} at {}: {e}", r.name, fmt_time(at)))?;
                        continue;
                    }
                    let rows = query(&store, r, start_ns + at, &limits)
                        .await
                        .map_err(|e| format!("{} at {}: {e}", r.name, fmt_time(at)))?;
                    step(
                        &g.name,
                        r,
                        state.entry((gi, ri)).or_default(),
                        rows,
                        start_ns + at,
                    );
                }
            }
            // Checks at or before this evaluation and before the next one.
            while let Some((t, check)) = next.peek() {
                if *t >= at + every {
                    break;
                }
                problems.extend(compare(check, *t, &state));
                next.next();
            }
            // Expression checks see every rule evaluated up to their time.
            while let Some((t, check)) = expr_checks.first().copied() {
                if t >= at + every {
                    break;
                }
                problems.extend(compare_expr(&store, check, start_ns + t, t).await?);
                expr_checks.remove(0);
            }
            at += every;
        }
        Ok::<_, String>(problems)
    }
    .await;
    let _ = store.close().await;
    outcome
}

/// Compares a `promql_expr_test` at `at_ns` (`rel` from the start).
async fn compare_expr(
    store: &Store,
    check: &ExprTest,
    at_ns: i64,
    rel: i64,
) -> Result<Vec<String>, String> {
    let got = crate::rules::promql_rows(store, &check.expr, at_ns)
        .await
        .map_err(|e| format!("expr {:?} at {}: {e}", check.expr, fmt_time(rel)))?;
    let mut got: Vec<(Labels, f64)> = got;
    let mut want: Vec<(Labels, f64)> = check
        .exp_samples
        .iter()
        .map(|s| {
            let labels = if s.labels.trim().is_empty() || s.labels.trim() == "{}" {
                Vec::new()
            } else {
                selector_labels(&s.labels)?
            };
            Ok((labels.into_iter().collect::<Labels>(), s.value))
        })
        .collect::<Result<_, String>>()?;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    want.sort_by(|a, b| a.0.cmp(&b.0));
    // promtool's tolerance.
    let close = |a: f64, b: f64| {
        (a.is_nan() && b.is_nan())
            || a == b
            || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1e-300)
    };
    let same = got.len() == want.len()
        && got
            .iter()
            .zip(&want)
            .all(|(g, w)| g.0 == w.0 && close(g.1, w.1));
    if same {
        return Ok(vec![]);
    }
    let show = |v: &[(Labels, f64)]| {
        v.iter()
            .map(|(l, x)| format!("{l:?} {x}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Ok(vec![format!(
        "expr {:?} at {}:\n      expected: {}\n      got:      {}",
        check.expr,
        fmt_time(rel),
        show(&want),
        show(&got)
    )])
}

/// An alert as compared: labels (without `alertname`) and annotations.
type Seen = (Labels, Labels);

fn compare(
    check: &AlertTest,
    at: i64,
    state: &BTreeMap<(usize, usize), Vec<Instance>>,
) -> Vec<String> {
    let mut got: Vec<Seen> = state
        .values()
        .flatten()
        .filter(|i| i.alert == check.alertname && i.state == InstanceState::Firing)
        .map(|i| {
            let mut l = i.labels.clone();
            l.remove("alertname");
            (l, i.annotations.clone())
        })
        .collect();
    let mut want: Vec<Seen> = check
        .exp_alerts
        .iter()
        .map(|e| (e.exp_labels.clone(), e.exp_annotations.clone()))
        .collect();
    got.sort();
    want.sort();
    if got == want {
        return vec![];
    }
    let show = |v: &[Seen]| {
        if v.is_empty() {
            return "no alerts".to_string();
        }
        v.iter()
            .map(|(l, a)| format!("labels {l:?} annotations {a:?}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    vec![format!(
        "alertname {} at {}:\n      expected: {}\n      got:      {}",
        check.alertname,
        fmt_time(at),
        show(&want),
        show(&got)
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_notation() {
        let v = |s: &str| expand(s).unwrap();
        assert_eq!(v("1 2 3"), vec![Some(1.0), Some(2.0), Some(3.0)]);
        assert_eq!(v("1+2x3"), vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(v("10-5x2"), vec![Some(10.0), Some(5.0), Some(0.0)]);
        assert_eq!(v("4x2"), vec![Some(4.0); 3]);
        assert_eq!(v("_ 1 _x2"), vec![None, Some(1.0), None, None]);
        assert_eq!(v("-1 -2+1x1"), vec![Some(-1.0), Some(-2.0), Some(-1.0)]);
        for bad in ["x", "1+", "1+2", "ax3", "1x-1", "1xx2"] {
            assert!(expand(bad).is_err(), "{bad}");
        }
    }
}
