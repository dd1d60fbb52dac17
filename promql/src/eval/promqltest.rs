//! Runs Prometheus's own PromQL test scripts (`promql/testdata/*.test`
//! from the Prometheus repository at v2.42.0) against this engine.
//!
//! The scripts are not part of this crate, so the test is ignored by
//! default: put them in a directory (`git show v2.42.0:promql/testdata/<f>`
//! from a Prometheus clone) and run
//! `PROMQL_TESTDATA_DIR=<dir> cargo test -p promql --lib prometheus_testdata -- --ignored`. Each `eval` is checked as an instant query and, like
//! Prometheus's runner does, as a range query from `t-1m` to `t+1m`
//! (step 1m) whose middle step must give the same result.

use std::collections::BTreeMap;

use super::{Engine, EngineOptions};
use crate::types::{Error, Labels, Queryable, STALE_NAN_BITS, Selection, Series, Value};

struct Store(Vec<Series>);

#[async_trait::async_trait]
impl Queryable for Store {
    async fn select(&self, sel: &Selection) -> Result<Vec<Series>, Error> {
        Ok(self
            .0
            .iter()
            .filter(|s| {
                sel.matchers
                    .iter()
                    .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            })
            .cloned()
            .collect())
    }
}

use crate::types::parse_duration;

fn parse_number(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        "stale" => Some(f64::from_bits(STALE_NAN_BITS)),
        _ => {
            if let Some(h) = s.strip_prefix("0x") {
                return i64::from_str_radix(h, 16).ok().map(|v| v as f64);
            }
            s.parse().ok()
        }
    }
}

/// Parses `name{a="b",...}` and returns the labels and the rest of the line.
fn parse_metric(line: &str) -> Option<(Labels, &str)> {
    let line = line.trim_start();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let mut pairs = Vec::new();
    if name_end > 0 {
        pairs.push(("__name__".to_string(), line[..name_end].to_string()));
    }
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut consumed = r.len();
        loop {
            // Skip spaces and commas.
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(i, c)) = chars.peek() else { break };
            if c == '}' {
                consumed = i + 1;
                break;
            }
            let mut name = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' {
                    break;
                }
                name.push(c);
                chars.next();
            }
            chars.next(); // '='
            chars.next(); // '"'
            let mut value = String::new();
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            value.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                    }
                    '"' => break,
                    other => value.push(other),
                }
            }
            pairs.push((name.trim().to_string(), value));
        }
        rest = &r[consumed..];
    }
    Some((Labels::new(pairs), rest))
}

/// Parses a series description's values (`1 2 _ 3+2x4 stale 1x3 _x2`).
fn parse_values(s: &str) -> Option<Vec<Option<f64>>> {
    let mut out = Vec::new();
    for item in s.split_whitespace() {
        if item == "_" {
            out.push(None);
            continue;
        }
        if let Some((base, times)) = item.split_once('x')
            && !base.starts_with("0x")
        {
            let n: u64 = times.parse().ok()?;
            if base == "_" {
                out.extend((0..n).map(|_| None));
                continue;
            }
            // `a+bxn` / `a-bxn` / `axn`.
            let split = base
                .char_indices()
                .skip(1)
                .find(|(i, c)| {
                    (*c == '+' || *c == '-') && !base[..*i].to_ascii_lowercase().ends_with('e')
                })
                .map(|(i, _)| i);
            let (start, inc) = match split {
                Some(i) => (parse_number(&base[..i])?, parse_number(&base[i..])?),
                None => (parse_number(base)?, 0.0),
            };
            let mut v = start;
            for _ in 0..=n {
                out.push(Some(v));
                v += inc;
            }
            continue;
        }
        out.push(Some(parse_number(item)?));
    }
    Some(out)
}

fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    let min_normal = f64::MIN_POSITIVE;
    if a == 0.0 || b == 0.0 || diff < min_normal {
        return diff < 1e-6 * min_normal;
    }
    diff / (a.abs() + b.abs()) < 1e-6
}

/// Prometheus's `atModifierTestCases`: the query with `@ <eval time>` on
/// every selector and subquery (not inside a subquery that has one), and
/// the extra evaluation times to run it at; `None` when the query uses a
/// function whose result depends on the evaluation time.
fn at_modifier_cases(query: &str, ts: i64) -> Option<(String, Vec<i64>)> {
    use promql_parser::parser::{AtModifier, Expr};
    fn walk(e: &mut Expr, at: &AtModifier, unsafe_fn: &mut bool) {
        match e {
            Expr::VectorSelector(vs) => {
                vs.at.get_or_insert_with(|| at.clone());
            }
            Expr::MatrixSelector(ms) => {
                ms.vs.at.get_or_insert_with(|| at.clone());
            }
            Expr::Subquery(sq) => {
                // Everything below has a subquery with @ on its path.
                sq.at.get_or_insert_with(|| at.clone());
            }
            Expr::Call(c) => {
                const UNSAFE: &[&str] = &[
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
                *unsafe_fn |= UNSAFE.contains(&c.func.name);
                for a in &mut c.args.args {
                    walk(a, at, unsafe_fn);
                }
            }
            Expr::Aggregate(a) => {
                if let Some(p) = &mut a.param {
                    walk(p, at, unsafe_fn);
                }
                walk(&mut a.expr, at, unsafe_fn);
            }
            Expr::Unary(u) => walk(&mut u.expr, at, unsafe_fn),
            Expr::Binary(b) => {
                walk(&mut b.lhs, at, unsafe_fn);
                walk(&mut b.rhs, at, unsafe_fn);
            }
            Expr::Paren(p) => walk(&mut p.expr, at, unsafe_fn),
            _ => {}
        }
    }
    let mut expr = Engine::parse(query).ok()?;
    let at = AtModifier::try_from(ts as f64 / 1000.0).ok()?;
    let mut unsafe_fn = false;
    walk(&mut expr, &at, &mut unsafe_fn);
    if unsafe_fn {
        return None;
    }
    let times = if ts == 0 {
        vec![-1000, 0, 1000]
    } else {
        vec![-10 * ts, 0, ts / 5, ts, 10 * ts]
    };
    Some((expr.to_string(), times))
}

enum Expect {
    Scalar(f64),
    Vector(BTreeMap<Labels, f64>),
}

fn compare(expect: &Expect, got: &Value) -> Result<(), String> {
    match (expect, got) {
        (Expect::Scalar(e), Value::Scalar(_, g)) => {
            if almost_equal(*e, *g) {
                Ok(())
            } else {
                Err(format!("expected scalar {e}, got {g}"))
            }
        }
        (Expect::Vector(e), Value::Vector(v)) => {
            let got: BTreeMap<Labels, f64> = v.iter().map(|s| (s.labels.clone(), s.v)).collect();
            if got.len() != v.len() {
                return Err("duplicate labels in result".into());
            }
            for (l, ev) in e {
                match got.get(l) {
                    None => return Err(format!("missing {l:?} (expected {ev}); got {got:?}")),
                    Some(gv) if !almost_equal(*ev, *gv) => {
                        return Err(format!("{l:?}: expected {ev}, got {gv}"));
                    }
                    _ => {}
                }
            }
            for l in got.keys() {
                if !e.contains_key(l) {
                    return Err(format!("unexpected {l:?}; got {got:?}"));
                }
            }
            Ok(())
        }
        (Expect::Vector(e), Value::Scalar(_, _)) if e.is_empty() => Err("got a scalar".into()),
        (_, other) => Err(format!("unexpected result {other:?}")),
    }
}

/// Checks one query at one time, as an instant and as a range query.
async fn check(
    engine: &Engine,
    store: &Store,
    expect: &Expect,
    query: &str,
    at: i64,
    fail: bool,
    ordered: bool,
) -> Result<(), String> {
    let result = engine.instant(store, query, at).await;
    match (&result, fail) {
        (Err(_), true) => return Ok(()),
        (Ok(_), true) => return Err("expected an error".into()),
        (Err(e), false) => return Err(format!("error {e:?}")),
        (Ok(v), false) => compare(expect, v)?,
    }
    if ordered {
        return Ok(());
    }
    // Range mode: the middle step must match.
    let range = engine
        .range(store, query, at - 60_000, at + 60_000, 60_000)
        .await;
    let got = match range {
        Ok(Value::Matrix(m)) => {
            let v: Vec<crate::types::Sample> = m
                .iter()
                .filter_map(|s| {
                    s.samples
                        .iter()
                        .find(|p| p.0 == at)
                        .map(|p| crate::types::Sample {
                            labels: s.labels.clone(),
                            t: at,
                            v: p.1,
                        })
                })
                .collect();
            match expect {
                Expect::Scalar(_) => Value::Scalar(at, v.first().map(|s| s.v).unwrap_or(f64::NAN)),
                Expect::Vector(_) => Value::Vector(v),
            }
        }
        other => return Err(format!("range mode: {other:?}")),
    };
    compare(expect, &got).map_err(|e| format!("range mode: {e}"))
}

/// Runs one script; returns `(passed, failures)`.
async fn run_script(name: &str, text: &str) -> (usize, Vec<String>) {
    let engine = Engine::new(EngineOptions {
        max_samples: 10_000,
        ..EngineOptions::default()
    });
    let mut store = Store(Vec::new());
    let mut failures = Vec::new();
    let mut passed = 0;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "clear" {
            store = Store(Vec::new());
            continue;
        }
        if let Some(interval) = line.strip_prefix("load") {
            let Some(step) = parse_duration(interval.trim()) else {
                failures.push(format!("{name}:{i}: bad load line"));
                continue;
            };
            while i < lines.len() && !lines[i].trim().is_empty() {
                let def = lines[i];
                i += 1;
                let Some((labels, rest)) = parse_metric(def) else {
                    failures.push(format!("{name}:{i}: bad series {def}"));
                    continue;
                };
                let Some(values) = parse_values(rest) else {
                    failures.push(format!("{name}:{i}: bad values {def}"));
                    continue;
                };
                let samples: Vec<(i64, f64)> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(k, v)| v.map(|v| (k as i64 * step, v)))
                    .collect();
                // A later definition of the same series replaces the
                // earlier one, as in Prometheus's loader.
                match store.0.iter_mut().find(|s| s.labels == labels) {
                    Some(s) => s.samples = samples,
                    None => store.0.push(Series { labels, samples }),
                }
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("eval") else {
            failures.push(format!("{name}:{i}: unknown command {line}"));
            continue;
        };
        let (mode, rest) = match rest.split_once(char::is_whitespace) {
            Some((m, r)) => (m, r.trim_start()),
            None => continue,
        };
        let rest = rest.strip_prefix("instant").unwrap_or(rest).trim_start();
        let rest = rest.strip_prefix("at").unwrap_or(rest).trim_start();
        let (at, query) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let query = query.trim();
        let line_no = i;
        let Some(at) = parse_duration(at) else {
            failures.push(format!("{name}:{i}: bad time {at}"));
            continue;
        };
        let mut expect = Expect::Vector(BTreeMap::new());
        while i < lines.len() && !lines[i].trim().is_empty() {
            let def = lines[i].trim();
            i += 1;
            if let Some(v) = parse_number(def) {
                expect = Expect::Scalar(v);
                continue;
            }
            let Some((labels, rest)) = parse_metric(def) else {
                continue;
            };
            let v = parse_values(rest)
                .and_then(|v| v.first().copied().flatten())
                .unwrap_or(f64::NAN);
            if let Expect::Vector(m) = &mut expect {
                m.insert(labels, v);
            }
        }
        let fail = mode == "_fail";
        let mut cases = vec![(query.to_string(), at)];
        if !fail && let Some((q, times)) = at_modifier_cases(query, at) {
            cases.extend(times.into_iter().map(|t| (q.clone(), t)));
        }
        for (query, at) in cases {
            let query = query.as_str();
            match check(
                &engine,
                &store,
                &expect,
                query,
                at,
                fail,
                mode == "_ordered",
            )
            .await
            {
                Ok(()) => passed += 1,
                Err(e) => failures.push(format!("{name}:{line_no}: {query} at {at}: {e}")),
            }
        }
    }
    (passed, failures)
}

#[tokio::test]
#[ignore = "needs PROMQL_TESTDATA_DIR: Prometheus v2.42.0's promql/testdata/*.test"]
async fn prometheus_testdata() {
    let dir = std::env::var("PROMQL_TESTDATA_DIR").expect(
        "PROMQL_TESTDATA_DIR: a directory with Prometheus v2.42.0's promql/testdata/*.test",
    );
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    let mut total_passed = 0;
    let mut all_failures = Vec::new();
    for path in entries {
        if path.extension().and_then(|e| e.to_str()) != Some("test") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let (passed, failures) = run_script(&name, &text).await;
        total_passed += passed;
        all_failures.extend(failures);
    }
    for f in &all_failures {
        eprintln!("FAIL {f}");
    }
    eprintln!("passed {total_passed}, failed {}", all_failures.len());
    assert!(all_failures.is_empty(), "{} failures", all_failures.len());
}
