//! PromQL functions, ported from Prometheus 2.42's `functions.go` and
//! `quantile.go` (float samples only: native histograms are not stored,
//! so `histogram_count`/`histogram_sum`/`histogram_fraction` return
//! nothing, as 2.42 does for float series).

use std::collections::HashMap;

use promql_parser::label::{MatchOp as PMatchOp, Matcher as PMatcher};
use regex::Regex;

use super::aggregate::quantile;
use super::ast::Node;
use super::labels::{self, Builder, Lbls};
use super::{ESample, RangeCtx, Vector};
use crate::types::{Error, Labels};

/// Per-node state kept across steps (Prometheus's `EvalNodeHelper`).
#[derive(Debug, Default)]
pub(crate) struct State {
    /// `label_replace`'s compiled regex.
    regex: Option<Regex>,
    /// Output labels by input labels (`label_replace`, `label_join`).
    cache: HashMap<Lbls, Lbls>,
}

fn exec_err(msg: String) -> Error {
    Error::Execution(msg)
}

fn scalar_arg(vals: &[Vector], i: usize) -> f64 {
    vals.get(i)
        .and_then(|v| v.first())
        .map(|s| s.v)
        .unwrap_or(f64::NAN)
}

fn string_arg(args: &[Node], i: usize) -> &str {
    match args.get(i).map(Node::unwrap_step_invariant) {
        Some(Node::Str(s)) => s,
        _ => "",
    }
}

fn simple(vals: &[Vector], f: impl Fn(f64) -> f64) -> Vector {
    vals.first()
        .map(|v| {
            v.iter()
                .map(|s| ESample {
                    labels: labels::drop_metric_name(&s.labels),
                    t: s.t,
                    v: f(s.v),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn scalar_result(v: f64) -> Vector {
    vec![ESample {
        labels: labels::empty(),
        t: 0,
        v,
    }]
}

/// The labels `absent()`/`absent_over_time()` give: those set by equality
/// matchers (a label matched more than once is left out).
pub(crate) fn absent_labels(matchers: &[PMatcher]) -> Lbls {
    let mut b = Builder::new(&Labels::default());
    let mut has = std::collections::HashSet::new();
    for m in matchers {
        if m.name == labels::METRIC_NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !has.contains(&m.name) {
            b.set(&m.name, &m.value);
            has.insert(m.name.clone());
        } else {
            b.del(&[&m.name]);
        }
    }
    b.labels()
}

/// Calls a function whose arguments are instant vectors, scalars and
/// strings. `vals` holds the evaluated arguments (empty for strings).
pub(crate) fn call_instant(
    func: &str,
    vals: &[Vector],
    args: &[Node],
    ts: i64,
    state: &mut State,
) -> Result<Vector, Error> {
    use std::f64::consts::PI;
    Ok(match func {
        "time" => scalar_result(ts as f64 / 1000.0),
        "pi" => scalar_result(PI),
        "abs" => simple(vals, f64::abs),
        "ceil" => simple(vals, f64::ceil),
        "floor" => simple(vals, f64::floor),
        "exp" => simple(vals, f64::exp),
        "sqrt" => simple(vals, f64::sqrt),
        "ln" => simple(vals, f64::ln),
        "log2" => simple(vals, f64::log2),
        "log10" => simple(vals, f64::log10),
        "sin" => simple(vals, f64::sin),
        "cos" => simple(vals, f64::cos),
        "tan" => simple(vals, f64::tan),
        "asin" => simple(vals, f64::asin),
        "acos" => simple(vals, f64::acos),
        "atan" => simple(vals, f64::atan),
        "sinh" => simple(vals, f64::sinh),
        "cosh" => simple(vals, f64::cosh),
        "tanh" => simple(vals, f64::tanh),
        "asinh" => simple(vals, f64::asinh),
        "acosh" => simple(vals, f64::acosh),
        "atanh" => simple(vals, f64::atanh),
        "rad" => simple(vals, |v| v * PI / 180.0),
        "deg" => simple(vals, |v| v * 180.0 / PI),
        "sgn" => simple(vals, |v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        "clamp" => {
            let (min, max) = (scalar_arg(vals, 1), scalar_arg(vals, 2));
            if max < min {
                return Ok(Vec::new());
            }
            simple(vals, |v| go_max(min, go_min(max, v)))
        }
        "clamp_max" => {
            let max = scalar_arg(vals, 1);
            simple(vals, |v| go_min(max, v))
        }
        "clamp_min" => {
            let min = scalar_arg(vals, 1);
            simple(vals, |v| go_max(min, v))
        }
        "round" => {
            let to_nearest = if args.len() >= 2 {
                scalar_arg(vals, 1)
            } else {
                1.0
            };
            let inv = 1.0 / to_nearest;
            simple(vals, |v| (v * inv + 0.5).floor() / inv)
        }
        "scalar" => {
            let v = vals.first().map(Vec::as_slice).unwrap_or(&[]);
            scalar_result(if v.len() == 1 { v[0].v } else { f64::NAN })
        }
        "vector" => scalar_result(scalar_arg(vals, 0)),
        "sort" | "sort_desc" => {
            let mut v = vals.first().cloned().unwrap_or_default();
            let desc = func == "sort_desc";
            v.sort_by(|a, b| {
                use std::cmp::Ordering;
                match (a.v.is_nan(), b.v.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ => {
                        let o = a.v.partial_cmp(&b.v).unwrap_or(Ordering::Equal);
                        if desc { o.reverse() } else { o }
                    }
                }
            });
            v
        }
        "timestamp" => vals
            .first()
            .map(|v| {
                v.iter()
                    .map(|s| ESample {
                        labels: labels::drop_metric_name(&s.labels),
                        t: s.t,
                        v: s.t as f64 / 1000.0,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        "absent" => {
            if vals.first().is_some_and(|v| !v.is_empty()) {
                return Ok(Vec::new());
            }
            let labels = match args.first().map(Node::unwrap_step_invariant) {
                Some(Node::Vector(vs)) => absent_labels(&vs.matchers),
                _ => labels::empty(),
            };
            vec![ESample {
                labels,
                t: 0,
                v: 1.0,
            }]
        }
        "label_replace" => label_replace(vals, args, state)?,
        "label_join" => label_join(vals, args, state)?,
        "histogram_quantile" => histogram_quantile(scalar_arg(vals, 0), vals.get(1)),
        // Native histograms only: float samples are skipped.
        "histogram_count" | "histogram_sum" | "histogram_fraction" => Vec::new(),
        "days_in_month" | "day_of_month" | "day_of_week" | "day_of_year" | "hour" | "minute"
        | "month" | "year" => date_function(func, vals, ts),
        _ => {
            return Err(Error::BadData(format!(
                "function {func:?} does not take instant vectors"
            )));
        }
    })
}

/// Go's `math.Min` (NaN wins, -0 < +0).
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { a } else { b };
    }
    if a < b { a } else { b }
}

/// Go's `math.Max` (NaN wins, +0 > -0).
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return f64::NAN;
    }
    if a == 0.0 && b == 0.0 {
        return if a.is_sign_negative() { b } else { a };
    }
    if a > b { a } else { b }
}

fn label_replace(vals: &[Vector], args: &[Node], state: &mut State) -> Result<Vector, Error> {
    let dst = string_arg(args, 1);
    let repl = string_arg(args, 2);
    let src = string_arg(args, 3);
    let regex_str = string_arg(args, 4);
    if state.regex.is_none() {
        let re = Regex::new(&format!("^(?:{regex_str})$")).map_err(|_| {
            exec_err(format!(
                "invalid regular expression in label_replace(): {regex_str}"
            ))
        })?;
        if !labels::is_valid_label_name(dst) {
            return Err(exec_err(format!(
                "invalid destination label name in label_replace(): {dst}"
            )));
        }
        state.regex = Some(re);
    }
    let Some(re) = state.regex.as_ref() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for s in vals.first().map(Vec::as_slice).unwrap_or(&[]) {
        let metric = match state.cache.get(&s.labels) {
            Some(m) => m.clone(),
            None => {
                let src_val = s.labels.get(src).unwrap_or("");
                let m = match re.captures(src_val) {
                    None => s.labels.clone(),
                    Some(caps) => {
                        let mut res = String::new();
                        caps.expand(repl, &mut res);
                        let mut b = Builder::new(&s.labels);
                        b.del(&[dst]);
                        if !res.is_empty() {
                            b.set(dst, &res);
                        }
                        b.labels()
                    }
                };
                state.cache.insert(s.labels.clone(), m.clone());
                m
            }
        };
        out.push(ESample {
            labels: metric,
            t: s.t,
            v: s.v,
        });
    }
    Ok(out)
}

fn label_join(vals: &[Vector], args: &[Node], state: &mut State) -> Result<Vector, Error> {
    let dst = string_arg(args, 1);
    let sep = string_arg(args, 2);
    let mut srcs = Vec::new();
    for i in 3..args.len() {
        let src = string_arg(args, i);
        if !labels::is_valid_label_name(src) {
            return Err(exec_err(format!(
                "invalid source label name in label_join(): {src}"
            )));
        }
        srcs.push(src);
    }
    if !labels::is_valid_label_name(dst) {
        return Err(exec_err(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let mut out = Vec::new();
    for s in vals.first().map(Vec::as_slice).unwrap_or(&[]) {
        let metric = match state.cache.get(&s.labels) {
            Some(m) => m.clone(),
            None => {
                let joined: Vec<&str> =
                    srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect();
                let joined = joined.join(sep);
                let mut b = Builder::new(&s.labels);
                if joined.is_empty() {
                    b.del(&[dst]);
                } else {
                    b.set(dst, &joined);
                }
                let m = b.labels();
                state.cache.insert(s.labels.clone(), m.clone());
                m
            }
        };
        out.push(ESample {
            labels: metric,
            t: s.t,
            v: s.v,
        });
    }
    Ok(out)
}

/// Go's `strconv.ParseFloat(s, 64)` for the forms bucket bounds use.
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let lower = s.to_ascii_lowercase();
    let (sign, rest) = match lower.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, lower.strip_prefix('+').unwrap_or(&lower)),
    };
    match rest {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if rest.is_empty()
        || !rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
    {
        return None;
    }
    s.parse::<f64>().ok()
}

/// `histogram_quantile` over classic buckets.
fn histogram_quantile(q: f64, vec: Option<&Vector>) -> Vector {
    // Grouped by all labels but `le` (the metric name included, as
    // Prometheus does); the output drops `le` and the metric name.
    let mut groups: Vec<(Lbls, Vec<(f64, f64)>)> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    for s in vec.map(Vec::as_slice).unwrap_or(&[]) {
        let Some(upper) = s.labels.get("le").and_then(parse_go_float) else {
            continue;
        };
        let key = labels::signature(&s.labels, true, &all_but_le(&s.labels));
        let gi = match index.get(&key) {
            Some(&i) => i,
            None => {
                let m = Builder::new(&s.labels)
                    .del(&[labels::METRIC_NAME, "le"])
                    .labels();
                index.insert(key, groups.len());
                groups.push((m, Vec::new()));
                groups.len() - 1
            }
        };
        groups[gi].1.push((upper, s.v));
    }
    groups
        .into_iter()
        .map(|(labels, buckets)| ESample {
            labels,
            t: 0,
            v: bucket_quantile(q, buckets),
        })
        .collect()
}

fn all_but_le(l: &Labels) -> Vec<String> {
    l.0.iter()
        .filter(|(n, _)| n != "le")
        .map(|(n, _)| n.clone())
        .collect()
}

/// Prometheus's `bucketQuantile`: `buckets` are `(upper bound, count)`.
pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if buckets.is_empty() {
        return f64::NAN;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets[buckets.len() - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    // Coalesce equal bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    let mut buckets = merged;
    // Ensure monotonic counts.
    let mut max = buckets[0].1;
    for b in buckets.iter_mut().skip(1) {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|b| b.1 < rank);
    if b == n {
        return buckets[n - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[b].0;
    let mut count = buckets[b].1;
    if b > 0 {
        bucket_start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

/// A UTC civil time.
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    weekday: i64,
    yday: i64,
    hour: i64,
    minute: i64,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if is_leap(y) {
                29
            } else {
                28
            }
        }
    }
}

/// Unix seconds to UTC civil time (Howard Hinnant's `civil_from_days`).
fn civil(secs: i64) -> Civil {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let mut year = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    if month <= 2 {
        year += 1;
    }
    let cumulative: i64 = (1..month).map(|m| days_in_month(year, m)).sum();
    Civil {
        year,
        month,
        day,
        weekday: (days + 4).rem_euclid(7),
        yday: cumulative + day,
        hour: sod / 3600,
        minute: (sod % 3600) / 60,
    }
}

/// Go's `int64(f)` on amd64: truncation, with out-of-range and NaN giving
/// the minimum value.
fn go_f64_to_i64(f: f64) -> i64 {
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f) {
        i64::MIN
    } else {
        f as i64
    }
}

fn date_value(func: &str, secs: i64) -> f64 {
    // Clamp to a range the civil conversion handles without overflow.
    let c = civil(secs.clamp(-(1 << 52), 1 << 52));
    (match func {
        "days_in_month" => days_in_month(c.year, c.month),
        "day_of_month" => c.day,
        "day_of_week" => c.weekday,
        "day_of_year" => c.yday,
        "hour" => c.hour,
        "minute" => c.minute,
        "month" => c.month,
        _ => c.year,
    }) as f64
}

fn date_function(func: &str, vals: &[Vector], ts: i64) -> Vector {
    match vals.first() {
        None => scalar_result(date_value(func, ts / 1000)),
        Some(v) => v
            .iter()
            .map(|s| ESample {
                labels: labels::drop_metric_name(&s.labels),
                t: s.t,
                v: date_value(func, go_f64_to_i64(s.v)),
            })
            .collect(),
    }
}

/// Neumaier-compensated increment (Prometheus's `kahanSumInc`).
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Least-squares regression: slope and the intercept at `intercept_time`.
fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let init_y = points[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in points.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

/// Go's `time.Duration.Seconds()` of a duration in milliseconds.
fn duration_seconds(ms: i64) -> f64 {
    (ms / 1000) as f64 + ((ms % 1000) * 1_000_000) as f64 / 1e9
}

/// Prometheus's `extrapolatedRate` (rate, increase, delta).
fn extrapolated_rate(
    p: &[(i64, f64)],
    ctx: &RangeCtx<'_>,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut prev = first.1;
        for &(_, v) in &p[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut to_start = (first.0 - ctx.range_start) as f64 / 1000.0;
    let to_end = (ctx.range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (p.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg / 2.0
    };
    // One factor, divided by the range for rates, as 2.42 computes it
    // (the order of the operations shows in the last bits).
    let mut factor = interval / sampled;
    if rate {
        factor /= duration_seconds(ctx.range);
    }
    Some(result * factor)
}

/// Prometheus's `instantValue` (irate, idelta).
fn instant_value(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut result = if rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Result<Option<f64>, Error> {
    if sf <= 0.0 || sf >= 1.0 {
        return Err(exec_err(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if tf <= 0.0 || tf >= 1.0 {
        return Err(exec_err(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    if p.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, p[0].1);
    let mut b = p[1].1 - p[0].1;
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        b = if i == 1 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        };
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

/// Calls a function of a range vector on one series' points in the
/// window (never empty).
pub(crate) fn call_range(
    func: &str,
    p: &[(i64, f64)],
    ctx: &RangeCtx<'_>,
) -> Result<Option<f64>, Error> {
    let scalar = |i: usize| ctx.scalars.get(i).copied().unwrap_or(f64::NAN);
    Ok(match func {
        "rate" => extrapolated_rate(p, ctx, true, true),
        "increase" => extrapolated_rate(p, ctx, true, false),
        "delta" => extrapolated_rate(p, ctx, false, false),
        "irate" => instant_value(p, true),
        "idelta" => instant_value(p, false),
        "deriv" => {
            if p.len() < 2 {
                None
            } else {
                Some(linear_regression(p, p[0].0).0)
            }
        }
        "predict_linear" => {
            if p.len() < 2 {
                None
            } else {
                let (slope, intercept) = linear_regression(p, ctx.ts);
                Some(slope * scalar(1) + intercept)
            }
        }
        "resets" => {
            let mut n = 0;
            for w in p.windows(2) {
                if w[1].1 < w[0].1 {
                    n += 1;
                }
            }
            Some(n as f64)
        }
        "changes" => {
            let mut n = 0;
            for w in p.windows(2) {
                let (prev, cur) = (w[0].1, w[1].1);
                if cur != prev && !(cur.is_nan() && prev.is_nan()) {
                    n += 1;
                }
            }
            Some(n as f64)
        }
        "avg_over_time" => {
            let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
            for &(_, v) in p {
                count += 1.0;
                if mean.is_infinite() {
                    if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                        continue;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        continue;
                    }
                }
                (mean, c) = kahan_inc(v / count - mean / count, mean, c);
            }
            Some(if mean.is_infinite() { mean } else { mean + c })
        }
        "sum_over_time" => {
            let (mut sum, mut c) = (0.0f64, 0.0f64);
            for &(_, v) in p {
                (sum, c) = kahan_inc(v, sum, c);
            }
            Some(if sum.is_infinite() { sum } else { sum + c })
        }
        "count_over_time" => Some(p.len() as f64),
        "last_over_time" => p.last().map(|x| x.1),
        "max_over_time" => {
            let mut max = p[0].1;
            for &(_, v) in p {
                if v > max || max.is_nan() {
                    max = v;
                }
            }
            Some(max)
        }
        "min_over_time" => {
            let mut min = p[0].1;
            for &(_, v) in p {
                if v < min || min.is_nan() {
                    min = v;
                }
            }
            Some(min)
        }
        "quantile_over_time" => Some(quantile(scalar(0), p.iter().map(|x| x.1).collect())),
        "stddev_over_time" | "stdvar_over_time" => {
            let mut count = 0.0;
            let (mut mean, mut c_mean) = (0.0, 0.0);
            let (mut aux, mut c_aux) = (0.0, 0.0);
            for &(_, v) in p {
                count += 1.0;
                let delta = v - (mean + c_mean);
                (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
                (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
            }
            let var = (aux + c_aux) / count;
            Some(if func == "stddev_over_time" {
                var.sqrt()
            } else {
                var
            })
        }
        "present_over_time" | "absent_over_time" => Some(1.0),
        "holt_winters" => holt_winters(p, scalar(1), scalar(2))?,
        _ => {
            return Err(Error::BadData(format!(
                "function {func:?} does not take a range vector"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantile_cases() {
        let b = vec![(0.1, 10.0), (0.5, 20.0), (1.0, 30.0), (f64::INFINITY, 40.0)];
        // rank 20 falls at the top of the 0.5 bucket.
        assert_eq!(bucket_quantile(0.5, b.clone()), 0.5);
        // rank 4 in the first bucket: 0 + 0.1 * 4/10.
        assert!((bucket_quantile(0.1, b.clone()) - 0.04).abs() < 1e-12);
        // In the +Inf bucket: the second highest bound.
        assert_eq!(bucket_quantile(0.99, b.clone()), 1.0);
        assert_eq!(bucket_quantile(-1.0, b.clone()), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(2.0, b.clone()), f64::INFINITY);
        assert!(bucket_quantile(f64::NAN, b).is_nan());
        // No +Inf bucket.
        assert!(bucket_quantile(0.5, vec![(1.0, 1.0), (2.0, 2.0)]).is_nan());
        // Only the +Inf bucket.
        assert!(bucket_quantile(0.5, vec![(f64::INFINITY, 2.0)]).is_nan());
        // No observations.
        assert!(bucket_quantile(0.5, vec![(1.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        // Non-monotonic counts are fixed up; duplicate bounds coalesced.
        let b = vec![(1.0, 10.0), (2.0, 5.0), (f64::INFINITY, 10.0), (2.0, 0.0)];
        assert!((bucket_quantile(0.5, b) - 0.5).abs() < 1e-12);
        // Negative lowest bound is returned as is.
        assert_eq!(
            bucket_quantile(0.1, vec![(-1.0, 5.0), (f64::INFINITY, 10.0)]),
            -1.0
        );
    }

    #[test]
    fn civil_dates() {
        // 2024-02-29T13:45:00Z, a Thursday.
        let c = civil(1_709_214_300);
        assert_eq!((c.year, c.month, c.day), (2024, 2, 29));
        assert_eq!((c.hour, c.minute, c.weekday, c.yday), (13, 45, 4, 60));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2023, 2), 28);
        let c = civil(0);
        assert_eq!(
            (c.year, c.month, c.day, c.weekday, c.yday),
            (1970, 1, 1, 4, 1)
        );
        let c = civil(-1);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute),
            (1969, 12, 31, 23, 59)
        );
        let c = civil(951_782_400); // 2000-02-29
        assert_eq!((c.year, c.month, c.day), (2000, 2, 29));
    }

    #[test]
    fn go_float_parsing() {
        assert_eq!(parse_go_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float("Inf"), Some(f64::INFINITY));
        assert_eq!(parse_go_float("-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_go_float("0.25"), Some(0.25));
        assert_eq!(parse_go_float("1e3"), Some(1000.0));
        assert_eq!(parse_go_float(""), None);
        assert_eq!(parse_go_float("abc"), None);
        assert!(parse_go_float("NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn regression() {
        let p = [(0, 1.0), (1000, 3.0), (2000, 5.0)];
        let (slope, intercept) = linear_regression(&p, 0);
        assert!((slope - 2.0).abs() < 1e-12);
        assert!((intercept - 1.0).abs() < 1e-12);
        let (slope, intercept) = linear_regression(&[(0, 4.0), (1000, 4.0)], 0);
        assert_eq!((slope, intercept), (0.0, 4.0));
    }
}
