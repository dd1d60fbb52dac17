//! Engine tests over an in-memory source. Expected values are worked out
//! by hand from Prometheus 2.42's algorithms.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Engine, EngineOptions};
use crate::types::{Error, Labels, Queryable, STALE_NAN_BITS, Selection, Series, Value};

/// Serves fixed series; returns every sample of every matching series
/// (the engine must trim to the time range itself). With `extra`, also
/// returns all series regardless of matchers.
struct Fixture {
    series: Vec<Series>,
    extra: bool,
}

#[async_trait::async_trait]
impl Queryable for Fixture {
    async fn select(&self, sel: &Selection) -> Result<Vec<Series>, Error> {
        Ok(self
            .series
            .iter()
            .filter(|s| {
                self.extra
                    || sel
                        .matchers
                        .iter()
                        .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            })
            .cloned()
            .collect())
    }
}

/// A series from `name{k="v",...}` and `(seconds, value)` samples.
fn s(labels: &[(&str, &str)], samples: &[(f64, f64)]) -> Series {
    Series {
        labels: Labels::new(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        samples: samples
            .iter()
            .map(|(t, v)| ((t * 1000.0) as i64, *v))
            .collect(),
    }
}

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

fn fx(series: Vec<Series>) -> Fixture {
    Fixture {
        series,
        extra: false,
    }
}

fn key(l: &Labels) -> String {
    let inner: Vec<String> = l.0.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", inner.join(","))
}

async fn instant(f: &Fixture, q: &str, t_secs: f64) -> Result<Value, Error> {
    Engine::new(EngineOptions::default())
        .instant(f, q, (t_secs * 1000.0) as i64)
        .await
}

/// An instant-vector result as `labels -> value`.
async fn vec_of(f: &Fixture, q: &str, t_secs: f64) -> BTreeMap<String, f64> {
    match instant(f, q, t_secs).await {
        Ok(Value::Vector(v)) => v.iter().map(|s| (key(&s.labels), s.v)).collect(),
        other => panic!("{q}: expected a vector, got {other:?}"),
    }
}

/// The single value of a one-element vector result.
async fn one(f: &Fixture, q: &str, t_secs: f64) -> f64 {
    let v = vec_of(f, q, t_secs).await;
    assert_eq!(v.len(), 1, "{q}: {v:?}");
    v.into_values().next().unwrap_or(f64::NAN)
}

async fn scalar(f: &Fixture, q: &str, t_secs: f64) -> f64 {
    match instant(f, q, t_secs).await {
        Ok(Value::Scalar(_, v)) => v,
        other => panic!("{q}: expected a scalar, got {other:?}"),
    }
}

/// A range-query result as `labels -> [(seconds, value)]`.
async fn range_of(
    f: &Fixture,
    q: &str,
    start: f64,
    end: f64,
    step: f64,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let r = Engine::new(EngineOptions::default())
        .range(
            f,
            q,
            (start * 1000.0) as i64,
            (end * 1000.0) as i64,
            (step * 1000.0) as i64,
        )
        .await;
    match r {
        Ok(Value::Matrix(m)) => m
            .iter()
            .map(|s| {
                (
                    key(&s.labels),
                    s.samples
                        .iter()
                        .map(|(t, v)| (*t as f64 / 1000.0, *v))
                        .collect(),
                )
            })
            .collect(),
        other => panic!("{q}: expected a matrix, got {other:?}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[track_caller]
fn assert_close(a: f64, b: f64) {
    assert!(close(a, b), "{a} != {b}");
}

fn gauge() -> Fixture {
    fx(vec![
        s(
            &[("__name__", "g"), ("job", "a")],
            &[(0.0, 1.0), (60.0, 2.0), (120.0, 3.0), (180.0, 4.0)],
        ),
        s(
            &[("__name__", "g"), ("job", "b")],
            &[(0.0, 10.0), (60.0, 20.0), (120.0, stale())],
        ),
    ])
}

#[tokio::test]
async fn instant_selector_lookback_and_staleness() {
    let f = gauge();
    let v = vec_of(&f, "g", 150.0).await;
    // job="b" went stale at 120s.
    assert_eq!(v.len(), 1);
    assert_eq!(v["{__name__=\"g\",job=\"a\"}"], 3.0);
    let v = vec_of(&f, "g", 90.0).await;
    assert_eq!(v["{__name__=\"g\",job=\"b\"}"], 20.0);
    // The lookback window is [t-5m, t]: the sample at 180s is seen at 480s…
    assert_eq!(one(&f, "g{job=\"a\"}", 480.0).await, 4.0);
    // …but not a millisecond later.
    assert!(vec_of(&f, "g{job=\"a\"}", 480.001).await.is_empty());
    // Before the first sample: nothing.
    assert!(vec_of(&f, "g", -1.0).await.is_empty());
    // Matchers.
    assert_eq!(vec_of(&f, "g{job=~\"a|b\"}", 60.0).await.len(), 2);
    assert_eq!(vec_of(&f, "g{job!=\"a\"}", 60.0).await.len(), 1);
    assert_eq!(
        vec_of(&f, "{__name__=~\"g\",job!~\"b\"}", 60.0).await.len(),
        1
    );
}

#[tokio::test]
async fn engine_filters_what_the_source_returns() {
    let mut f = gauge();
    f.extra = true;
    f.series
        .push(s(&[("__name__", "other")], &[(0.0, 5.0), (60.0, 6.0)]));
    let v = vec_of(&f, "g{job=\"a\"}", 60.0).await;
    assert_eq!(v.len(), 1);
    assert_eq!(v["{__name__=\"g\",job=\"a\"}"], 2.0);
}

#[tokio::test]
async fn range_selector_is_left_closed_and_drops_stale() {
    let f = gauge();
    match instant(&f, "g[2m]", 120.0).await {
        Ok(Value::Matrix(m)) => {
            assert_eq!(m.len(), 2);
            // [0, 120] inclusive at both ends.
            assert_eq!(m[0].samples, vec![(0, 1.0), (60_000, 2.0), (120_000, 3.0)]);
            // The stale marker is dropped.
            assert_eq!(m[1].samples, vec![(0, 10.0), (60_000, 20.0)]);
            assert_eq!(m[0].labels.get("__name__"), Some("g"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        one(&f, "count_over_time(g{job=\"a\"}[2m])", 120.0).await,
        3.0
    );
    assert_eq!(
        one(&f, "count_over_time(g{job=\"a\"}[2m])", 120.001).await,
        2.0
    );
}

fn counter() -> Fixture {
    fx(vec![
        // Regular counter, 15s interval, inside [0, 60].
        s(
            &[("__name__", "c"), ("case", "plain")],
            &[(5.0, 10.0), (20.0, 20.0), (35.0, 30.0), (50.0, 40.0)],
        ),
        // Counter reset between 20s and 35s.
        s(
            &[("__name__", "c"), ("case", "reset")],
            &[(5.0, 10.0), (20.0, 20.0), (35.0, 5.0), (50.0, 15.0)],
        ),
        // Starts late in the window: zero-point clamp.
        s(
            &[("__name__", "c"), ("case", "late")],
            &[(30.0, 10.0), (45.0, 20.0), (60.0, 30.0)],
        ),
        s(&[("__name__", "c"), ("case", "single")], &[(30.0, 10.0)]),
    ])
}

#[tokio::test]
async fn rate_increase_delta_extrapolation() {
    let f = counter();
    // plain: delta 30 over 45s sampled; 5s to the start and 10s to the end
    // are below 1.1 * 15s, so extrapolate to the full 60s: 30 * 60/45 = 40.
    assert_close(one(&f, "increase(c{case=\"plain\"}[1m])", 60.0).await, 40.0);
    assert_close(
        one(&f, "rate(c{case=\"plain\"}[1m])", 60.0).await,
        40.0 / 60.0,
    );
    // reset: 15 - 10 + 20 = 25, extrapolated the same way.
    assert_close(
        one(&f, "increase(c{case=\"reset\"}[1m])", 60.0).await,
        25.0 * 60.0 / 45.0,
    );
    assert_close(one(&f, "resets(c{case=\"reset\"}[1m])", 60.0).await, 1.0);
    // late: 30s to the start (> 16.5s), but the zero point is 15s before the
    // first sample, so extrapolate 15s back: 20 * 45/30 = 30.
    assert_close(one(&f, "increase(c{case=\"late\"}[1m])", 60.0).await, 30.0);
    // delta has no zero clamp: half an interval (7.5s) at the start.
    assert_close(
        one(&f, "delta(c{case=\"late\"}[1m])", 60.0).await,
        20.0 * 37.5 / 30.0,
    );
    // One sample: no result; the metric name is dropped.
    let v = vec_of(&f, "rate(c[1m])", 60.0).await;
    assert_eq!(v.len(), 3);
    assert!(v.contains_key("{case=\"plain\"}"));
}

#[tokio::test]
async fn irate_idelta_deriv_predict_linear() {
    let f = counter();
    assert_close(
        one(&f, "irate(c{case=\"plain\"}[1m])", 60.0).await,
        10.0 / 15.0,
    );
    // A reset: the last value counts as the increase.
    assert_close(
        one(&f, "irate(c{case=\"reset\"}[1m])", 60.0).await,
        10.0 / 15.0,
    );
    assert_close(one(&f, "idelta(c{case=\"reset\"}[1m])", 60.0).await, 10.0);
    assert_close(
        one(&f, "irate(c{case=\"reset\"}[40s])", 40.0).await,
        5.0 / 15.0,
    );
    // Linear data: slope 10/15 per second.
    assert_close(
        one(&f, "deriv(c{case=\"plain\"}[1m])", 60.0).await,
        10.0 / 15.0,
    );
    // At 60s the line is at 40 + 10 * (10/15); 30s later add 20.
    assert_close(
        one(&f, "predict_linear(c{case=\"plain\"}[1m], 30)", 60.0).await,
        40.0 + 10.0 * 10.0 / 15.0 + 20.0,
    );
}

#[tokio::test]
async fn over_time_functions() {
    let f = gauge();
    let q = |fun: &str| format!("{fun}(g{{job=\"a\"}}[3m])");
    assert_close(one(&f, &q("avg_over_time"), 180.0).await, 2.5);
    assert_close(one(&f, &q("sum_over_time"), 180.0).await, 10.0);
    assert_close(one(&f, &q("min_over_time"), 180.0).await, 1.0);
    assert_close(one(&f, &q("max_over_time"), 180.0).await, 4.0);
    assert_close(one(&f, &q("count_over_time"), 180.0).await, 4.0);
    assert_close(one(&f, &q("last_over_time"), 180.0).await, 4.0);
    assert_close(one(&f, &q("present_over_time"), 180.0).await, 1.0);
    assert_close(one(&f, &q("stdvar_over_time"), 180.0).await, 1.25);
    assert_close(one(&f, &q("stddev_over_time"), 180.0).await, 1.25f64.sqrt());
    assert_close(one(&f, &q("changes"), 180.0).await, 3.0);
    assert_close(
        one(&f, "quantile_over_time(0.5, g{job=\"a\"}[3m])", 180.0).await,
        2.5,
    );
    assert_close(
        one(&f, "quantile_over_time(0.25, g{job=\"a\"}[3m])", 180.0).await,
        1.75,
    );
    assert_eq!(
        one(&f, "quantile_over_time(2, g{job=\"a\"}[3m])", 180.0).await,
        f64::INFINITY
    );
    // last_over_time keeps the metric name, the others drop it.
    let v = vec_of(&f, "last_over_time(g{job=\"a\"}[3m])", 180.0).await;
    assert!(v.contains_key("{__name__=\"g\",job=\"a\"}"));
    let v = vec_of(&f, "max_over_time(g{job=\"a\"}[3m])", 180.0).await;
    assert!(v.contains_key("{job=\"a\"}"));
    // holt_winters (2.42) on linear data follows the line.
    assert_close(
        one(&f, "holt_winters(g{job=\"a\"}[3m], 0.5, 0.5)", 180.0).await,
        4.0,
    );
    let e = instant(&f, "holt_winters(g[3m], 1, 0.5)", 180.0).await;
    assert!(matches!(e, Err(Error::Execution(_))), "{e:?}");
}

fn histogram() -> Fixture {
    let b = |le: &str, v: f64, job: &str| {
        s(
            &[("__name__", "h_bucket"), ("job", job), ("le", le)],
            &[(0.0, v)],
        )
    };
    fx(vec![
        b("0.1", 10.0, "a"),
        b("0.5", 20.0, "a"),
        b("1", 30.0, "a"),
        b("+Inf", 40.0, "a"),
        // No +Inf bucket: NaN.
        b("0.1", 1.0, "b"),
        b("1", 2.0, "b"),
    ])
}

#[tokio::test]
async fn histogram_quantile_classic_buckets() {
    let f = histogram();
    let v = vec_of(&f, "histogram_quantile(0.5, h_bucket)", 10.0).await;
    assert_eq!(v.len(), 2);
    assert_close(v["{job=\"a\"}"], 0.5);
    assert!(v["{job=\"b\"}"].is_nan());
    // rank 24 in (0.5, 1]: 0.5 + 0.5 * 4/10.
    assert_close(
        one(&f, "histogram_quantile(0.6, h_bucket{job=\"a\"})", 10.0).await,
        0.7,
    );
    // rank 4 in the first bucket, interpolated from 0.
    assert_close(
        one(&f, "histogram_quantile(0.1, h_bucket{job=\"a\"})", 10.0).await,
        0.04,
    );
    // In the +Inf bucket: the highest finite bound.
    assert_close(
        one(&f, "histogram_quantile(0.99, h_bucket{job=\"a\"})", 10.0).await,
        1.0,
    );
    assert_eq!(
        one(&f, "histogram_quantile(-1, h_bucket{job=\"a\"})", 10.0).await,
        f64::NEG_INFINITY
    );
    assert_eq!(
        one(&f, "histogram_quantile(1.5, h_bucket{job=\"a\"})", 10.0).await,
        f64::INFINITY
    );
    // Aggregated by le, as usually written.
    assert_close(
        one(
            &f,
            "histogram_quantile(0.6, sum by (le) (h_bucket{job=\"a\"}))",
            10.0,
        )
        .await,
        0.7,
    );
}

fn aggr() -> Fixture {
    let m = |job: &str, inst: &str, v: f64| {
        s(
            &[("__name__", "m"), ("job", job), ("instance", inst)],
            &[(0.0, v)],
        )
    };
    fx(vec![
        m("a", "1", 1.0),
        m("a", "2", 2.0),
        m("a", "3", 6.0),
        m("b", "1", 10.0),
        m("b", "2", 10.0),
    ])
}

#[tokio::test]
async fn aggregations() {
    let f = aggr();
    let v = vec_of(&f, "sum by (job) (m)", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], 9.0);
    assert_eq!(v["{job=\"b\"}"], 20.0);
    assert_eq!(one(&f, "sum(m)", 0.0).await, 29.0);
    assert_eq!(
        vec_of(&f, "sum(m)", 0.0)
            .await
            .keys()
            .next()
            .map(String::as_str),
        Some("{}")
    );
    let v = vec_of(&f, "avg by (job) (m)", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], 3.0);
    let v = vec_of(&f, "min by (job) (m)", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], 1.0);
    let v = vec_of(&f, "max without (instance) (m)", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], 6.0);
    assert_eq!(v["{job=\"b\"}"], 10.0);
    let v = vec_of(&f, "count by (job) (m)", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], 3.0);
    let v = vec_of(&f, "group by (instance) (m)", 0.0).await;
    assert_eq!(v.len(), 3);
    assert!(v.values().all(|x| *x == 1.0));
    // Population variance of 1, 2, 6: mean 3, (4 + 1 + 9) / 3.
    let v = vec_of(&f, "stdvar by (job) (m)", 0.0).await;
    assert_close(v["{job=\"a\"}"], 14.0 / 3.0);
    assert_close(v["{job=\"b\"}"], 0.0);
    let v = vec_of(&f, "stddev by (job) (m)", 0.0).await;
    assert_close(v["{job=\"a\"}"], (14.0f64 / 3.0).sqrt());
    let v = vec_of(&f, "quantile by (job) (0.5, m)", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], 2.0);
    // topk/bottomk keep the input labels.
    let v = vec_of(&f, "topk(2, m)", 0.0).await;
    assert_eq!(v.len(), 2);
    assert!(v.values().all(|x| *x == 10.0));
    let v = vec_of(&f, "bottomk by (job) (1, m)", 0.0).await;
    assert_eq!(v.len(), 2);
    assert_eq!(v["{__name__=\"m\",instance=\"1\",job=\"a\"}"], 1.0);
    assert!(vec_of(&f, "topk(0, m)", 0.0).await.is_empty());
    let e = instant(&f, "topk(NaN, m)", 0.0).await;
    assert!(matches!(e, Err(Error::Execution(_))), "{e:?}");
    // count_values with Go float formatting.
    let v = vec_of(&f, "count_values(\"value\", m)", 0.0).await;
    assert_eq!(v["{value=\"10\"}"], 2.0);
    assert_eq!(v["{value=\"1\"}"], 1.0);
    let v = vec_of(&f, "count_values by (job) (\"v\", m)", 0.0).await;
    assert_eq!(v["{job=\"b\",v=\"10\"}"], 2.0);
    let e = instant(&f, "count_values(\"0bad\", m)", 0.0).await;
    assert!(matches!(e, Err(Error::Execution(_))), "{e:?}");
}

#[tokio::test]
async fn aggregation_nan_and_inf_handling() {
    let f = fx(vec![
        s(&[("__name__", "n"), ("i", "1")], &[(0.0, f64::NAN)]),
        s(&[("__name__", "n"), ("i", "2")], &[(0.0, 3.0)]),
        s(&[("__name__", "i"), ("i", "1")], &[(0.0, f64::INFINITY)]),
        s(&[("__name__", "i"), ("i", "2")], &[(0.0, 3.0)]),
    ]);
    // max/min replace a NaN by any value; sum propagates it.
    assert_eq!(one(&f, "max(n)", 0.0).await, 3.0);
    assert_eq!(one(&f, "min(n)", 0.0).await, 3.0);
    assert!(one(&f, "sum(n)", 0.0).await.is_nan());
    // avg keeps an infinite mean.
    assert_eq!(one(&f, "avg(i)", 0.0).await, f64::INFINITY);
    // topk prefers a number over NaN.
    let v = vec_of(&f, "topk(1, n)", 0.0).await;
    assert_eq!(v["{__name__=\"n\",i=\"2\"}"], 3.0);
}

fn matching() -> Fixture {
    fx(vec![
        s(
            &[("__name__", "req"), ("job", "a"), ("code", "200")],
            &[(0.0, 8.0)],
        ),
        s(
            &[("__name__", "req"), ("job", "a"), ("code", "500")],
            &[(0.0, 2.0)],
        ),
        s(
            &[("__name__", "req"), ("job", "b"), ("code", "200")],
            &[(0.0, 5.0)],
        ),
        s(&[("__name__", "tot"), ("job", "a")], &[(0.0, 10.0)]),
        s(&[("__name__", "tot"), ("job", "b")], &[(0.0, 20.0)]),
        s(
            &[("__name__", "info"), ("job", "a"), ("team", "x")],
            &[(0.0, 1.0)],
        ),
        s(
            &[("__name__", "info"), ("job", "b"), ("team", "y")],
            &[(0.0, 1.0)],
        ),
        s(
            &[("__name__", "dup"), ("job", "a"), ("i", "1")],
            &[(0.0, 1.0)],
        ),
        s(
            &[("__name__", "dup"), ("job", "a"), ("i", "2")],
            &[(0.0, 1.0)],
        ),
    ])
}

#[tokio::test]
async fn vector_matching() {
    let f = matching();
    // one-to-one on identical label sets (names ignored).
    let v = vec_of(&f, "tot / tot", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], 1.0);
    // group_left: many requests per total.
    let v = vec_of(&f, "req / on (job) group_left tot", 0.0).await;
    assert_eq!(v.len(), 3);
    assert_close(v["{code=\"200\",job=\"a\"}"], 0.8);
    assert_close(v["{code=\"500\",job=\"a\"}"], 0.2);
    assert_close(v["{code=\"200\",job=\"b\"}"], 0.25);
    // ignoring(code) is the same match.
    let v = vec_of(&f, "req / ignoring (code) group_left tot", 0.0).await;
    assert_close(v["{code=\"500\",job=\"a\"}"], 0.2);
    // group_left(team) copies the label from the one side.
    let v = vec_of(&f, "req * on (job) group_left (team) info", 0.0).await;
    assert_eq!(v["{code=\"200\",job=\"a\",team=\"x\"}"], 8.0);
    assert_eq!(v["{code=\"200\",job=\"b\",team=\"y\"}"], 5.0);
    // group_right mirrors it.
    let v = vec_of(&f, "tot / on (job) group_right req", 0.0).await;
    assert_close(v["{code=\"200\",job=\"a\"}"], 1.25);
    // on() keeps only the matching labels in one-to-one results.
    let v = vec_of(&f, "tot + on (job) info", 0.0).await;
    assert_eq!(v["{job=\"b\"}"], 21.0);
    // Many-to-one without group_left.
    let e = instant(&f, "req / on (job) tot", 0.0).await;
    match e {
        Err(Error::Execution(m)) => {
            assert!(m.contains("many-to-one matching must be explicit"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    // Duplicates on the "one" side.
    let e = instant(&f, "tot / on (job) group_left dup", 0.0).await;
    match e {
        Err(Error::Execution(m)) => {
            assert!(
                m.contains(
                    "found duplicate series for the match group {job=\"a\"} on the right hand-side"
                ),
                "{m}"
            );
            assert!(m.contains("many-to-many matching not allowed"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn comparisons_and_set_operators() {
    let f = matching();
    // Filters keep the metric name; bool drops it.
    let v = vec_of(&f, "req > 4", 0.0).await;
    assert_eq!(v.len(), 2);
    assert!(v.contains_key("{__name__=\"req\",code=\"200\",job=\"a\"}"));
    let v = vec_of(&f, "req > bool 4", 0.0).await;
    assert_eq!(v.len(), 3);
    assert_eq!(v["{code=\"500\",job=\"a\"}"], 0.0);
    // Scalar on the left keeps the vector's value.
    let v = vec_of(&f, "4 < req", 0.0).await;
    assert_eq!(v["{__name__=\"req\",code=\"200\",job=\"b\"}"], 5.0);
    // Vector-vector comparison keeps the left value.
    let v = vec_of(&f, "tot > on (job) group_left info", 0.0).await;
    assert_eq!(v["{__name__=\"tot\",job=\"a\"}"], 10.0);
    // Arithmetic drops the name.
    let v = vec_of(&f, "tot * 2", 0.0).await;
    assert_eq!(v["{job=\"b\"}"], 40.0);
    let v = vec_of(&f, "2 ^ 3 ^ 2 - tot", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], 502.0);
    assert_eq!(scalar(&f, "1 == bool 1", 0.0).await, 1.0);
    assert_eq!(scalar(&f, "7 % 4", 0.0).await, 3.0);
    assert_eq!(scalar(&f, "1 / 0", 0.0).await, f64::INFINITY);
    assert!(scalar(&f, "0 / 0", 0.0).await.is_nan());
    // and / or / unless.
    let v = vec_of(&f, "req and on (job) tot", 0.0).await;
    assert_eq!(v.len(), 3);
    let v = vec_of(&f, "req unless on (code) req{job=\"b\"}", 0.0).await;
    assert_eq!(v.len(), 1);
    assert!(v.contains_key("{__name__=\"req\",code=\"500\",job=\"a\"}"));
    let v = vec_of(&f, "tot or info", 0.0).await;
    assert_eq!(v.len(), 4);
    let v = vec_of(&f, "tot or on (job) info", 0.0).await;
    assert_eq!(v.len(), 2);
    // Unary minus drops the name.
    let v = vec_of(&f, "-tot", 0.0).await;
    assert_eq!(v["{job=\"a\"}"], -10.0);
}

#[tokio::test]
async fn offset_and_at_modifiers() {
    let f = gauge();
    assert_eq!(one(&f, "g{job=\"a\"} offset 1m", 120.0).await, 2.0);
    assert_eq!(one(&f, "g{job=\"a\"} offset -1m", 60.0).await, 3.0);
    assert_eq!(one(&f, "g{job=\"a\"} @ 60", 1000.0 - 500.0).await, 2.0);
    assert_eq!(one(&f, "g{job=\"a\"} @ 120 offset 1m", 0.0).await, 2.0);
    assert_eq!(
        one(&f, "sum_over_time(g{job=\"a\"}[1m] @ 180)", 0.0).await,
        7.0
    );
    // @ start() / end() in a range query are fixed.
    let r = range_of(&f, "g{job=\"a\"} @ start()", 60.0, 180.0, 60.0).await;
    assert_eq!(
        r["{__name__=\"g\",job=\"a\"}"],
        vec![(60.0, 2.0), (120.0, 2.0), (180.0, 2.0)]
    );
    let r = range_of(&f, "g{job=\"a\"} @ end() - g{job=\"a\"}", 60.0, 180.0, 60.0).await;
    assert_eq!(
        r["{job=\"a\"}"],
        vec![(60.0, 2.0), (120.0, 1.0), (180.0, 0.0)]
    );
    // timestamp() of a selector gives the sample's own time.
    assert_eq!(one(&f, "timestamp(g{job=\"a\"})", 150.0).await, 120.0);
    assert_eq!(one(&f, "timestamp(g{job=\"a\"} @ 70)", 150.0).await, 60.0);
    // of an expression: the evaluation time.
    assert_eq!(one(&f, "timestamp(-g{job=\"a\"})", 150.0).await, 150.0);
}

#[tokio::test]
async fn subqueries() {
    let f = gauge();
    // Steps aligned to multiples of 1m within [180-120, 180]: 60, 120, 180.
    assert_eq!(
        one(&f, "sum_over_time(g{job=\"a\"}[2m:1m])", 180.0).await,
        9.0
    );
    // At 150s the window starts at 30s, so the steps are 60s and 120s.
    assert_eq!(
        one(&f, "count_over_time(g{job=\"a\"}[2m:1m])", 150.0).await,
        2.0
    );
    assert_eq!(
        one(&f, "sum_over_time(g{job=\"a\"}[2m:1m])", 150.0).await,
        5.0
    );
    // Default step (1m) and offset.
    assert_eq!(
        one(&f, "max_over_time(g{job=\"a\"}[2m:] offset 1m)", 180.0).await,
        3.0
    );
    // Nested: rate over a subquery of a rate-free expression.
    let v = one(&f, "max_over_time(rate(g{job=\"a\"}[2m])[2m:1m])", 180.0).await;
    // rate at 180 over [60,180]: 2 over 120s with no extrapolation gap.
    assert_close(v, 2.0 / 120.0);
    // @ on a subquery.
    assert_eq!(
        one(&f, "sum_over_time(g{job=\"a\"}[1m:1m] @ 120)", 500.0).await,
        5.0
    );
    // A subquery at the top of an instant query is a matrix.
    match instant(&f, "g{job=\"a\"}[2m:1m]", 180.0).await {
        Ok(Value::Matrix(m)) => {
            assert_eq!(m.len(), 1);
            assert_eq!(
                m[0].samples,
                vec![(60_000, 2.0), (120_000, 3.0), (180_000, 4.0)]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn label_functions() {
    let f = matching();
    let v = vec_of(
        &f,
        "label_replace(tot, \"dst\", \"x-$1\", \"job\", \"(.*)\")",
        0.0,
    )
    .await;
    assert!(v.contains_key("{__name__=\"tot\",dst=\"x-a\",job=\"a\"}"));
    // No match: unchanged. Anchored regex.
    let v = vec_of(
        &f,
        "label_replace(tot, \"dst\", \"$1\", \"job\", \"(b)?c\")",
        0.0,
    )
    .await;
    assert!(v.contains_key("{__name__=\"tot\",job=\"a\"}"));
    let v = vec_of(&f, "label_replace(tot, \"job\", \"\", \"job\", \"a\")", 0.0).await;
    assert!(v.contains_key("{__name__=\"tot\"}"));
    let e = instant(&f, "label_replace(tot, \"d\", \"\", \"job\", \"(\")", 0.0).await;
    assert!(matches!(e, Err(Error::Execution(_))), "{e:?}");
    let e = instant(&f, "label_replace(tot, \"1d\", \"\", \"job\", \".*\")", 0.0).await;
    assert!(matches!(e, Err(Error::Execution(_))), "{e:?}");
    let v = vec_of(
        &f,
        "label_join(req, \"both\", \"-\", \"job\", \"code\")",
        0.0,
    )
    .await;
    assert!(v.contains_key("{__name__=\"req\",both=\"a-500\",code=\"500\",job=\"a\"}"));
    // Dropping names can collide.
    let e = instant(&f, "abs({__name__=~\"tot|info\", job=\"a\"})", 0.0).await;
    assert!(e.is_ok(), "{e:?}");
    let e = instant(&f, "abs({__name__=~\"tot|req\", code=\"\"})", 0.0).await;
    assert!(e.is_ok());
    let f2 = fx(vec![
        s(&[("__name__", "x"), ("a", "1")], &[(0.0, 1.0)]),
        s(&[("__name__", "y"), ("a", "1")], &[(0.0, 2.0)]),
    ]);
    let e = instant(&f2, "abs({a=\"1\"})", 0.0).await;
    match e {
        Err(Error::Execution(m)) => assert!(m.contains("same labelset"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn absent_and_misc_functions() {
    let f = gauge();
    let v = vec_of(&f, "absent(nope{job=\"x\", env=~\"p.*\"})", 0.0).await;
    assert_eq!(v["{job=\"x\"}"], 1.0);
    assert!(vec_of(&f, "absent(g)", 0.0).await.is_empty());
    let v = vec_of(&f, "absent_over_time(nope{job=\"x\"}[1m])", 0.0).await;
    assert_eq!(v["{job=\"x\"}"], 1.0);
    assert!(vec_of(&f, "absent_over_time(g[1m])", 0.0).await.is_empty());
    assert_eq!(scalar(&f, "time()", 90.0).await, 90.0);
    assert_eq!(scalar(&f, "scalar(g{job=\"a\"})", 90.0).await, 2.0);
    assert!(scalar(&f, "scalar(g)", 90.0).await.is_nan());
    assert_eq!(one(&f, "vector(3)", 0.0).await, 3.0);
    assert_eq!(scalar(&f, "pi()", 0.0).await, std::f64::consts::PI);
    assert_eq!(one(&f, "clamp(g{job=\"a\"}, 2.5, 3)", 180.0).await, 3.0);
    assert_eq!(one(&f, "clamp_min(g{job=\"a\"}, 5)", 180.0).await, 5.0);
    assert_eq!(one(&f, "clamp_max(g{job=\"a\"}, 2)", 180.0).await, 2.0);
    assert!(vec_of(&f, "clamp(g, 3, 2)", 180.0).await.is_empty());
    assert_eq!(one(&f, "round(vector(2.5))", 0.0).await, 3.0);
    assert_eq!(one(&f, "round(vector(-2.5))", 0.0).await, -2.0);
    assert_eq!(one(&f, "round(vector(17), 5)", 0.0).await, 15.0);
    assert_eq!(one(&f, "sgn(vector(-3))", 0.0).await, -1.0);
    assert_close(one(&f, "ln(vector(10))", 0.0).await, 10f64.ln());
    assert_close(one(&f, "deg(vector(3.141592653589793))", 0.0).await, 180.0);
    // 2024-02-29T13:45:00Z.
    let t = 1_709_214_300.0;
    assert_eq!(one(&f, "hour()", t).await, 13.0);
    assert_eq!(one(&f, "minute()", t).await, 45.0);
    assert_eq!(one(&f, "day_of_week()", t).await, 4.0);
    assert_eq!(one(&f, "day_of_month()", t).await, 29.0);
    assert_eq!(one(&f, "day_of_year()", t).await, 60.0);
    assert_eq!(one(&f, "days_in_month()", t).await, 29.0);
    assert_eq!(one(&f, "month()", t).await, 2.0);
    assert_eq!(one(&f, "year(vector(0))", t).await, 1970.0);
    assert!(vec_of(&f, "histogram_count(g)", 0.0).await.is_empty());
}

#[tokio::test]
async fn sort_keeps_order_at_top_level() {
    let f = aggr();
    let order = |v: Value| match v {
        Value::Vector(v) => v.iter().map(|s| s.v).collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let v = instant(&f, "sort(m)", 0.0).await.map(order);
    assert_eq!(v, Ok(vec![1.0, 2.0, 6.0, 10.0, 10.0]));
    let v = instant(&f, "sort_desc(m)", 0.0).await.map(order);
    assert_eq!(v, Ok(vec![10.0, 10.0, 6.0, 2.0, 1.0]));
}

#[tokio::test]
async fn range_queries() {
    let f = gauge();
    let r = range_of(&f, "g", 0.0, 240.0, 60.0).await;
    assert_eq!(
        r["{__name__=\"g\",job=\"a\"}"],
        vec![
            (0.0, 1.0),
            (60.0, 2.0),
            (120.0, 3.0),
            (180.0, 4.0),
            (240.0, 4.0)
        ]
    );
    // Stale from 120s: points only where there is a value.
    assert_eq!(
        r["{__name__=\"g\",job=\"b\"}"],
        vec![(0.0, 10.0), (60.0, 20.0)]
    );
    // Scalars give one series without labels.
    let r = range_of(&f, "time() * 2", 0.0, 120.0, 60.0).await;
    assert_eq!(r["{}"], vec![(0.0, 0.0), (60.0, 120.0), (120.0, 240.0)]);
    // A series absent at some steps.
    let r = range_of(&f, "sum by (job) (g) > 2", 0.0, 180.0, 60.0).await;
    assert_eq!(r["{job=\"a\"}"], vec![(120.0, 3.0), (180.0, 4.0)]);
    assert_eq!(r["{job=\"b\"}"], vec![(0.0, 10.0), (60.0, 20.0)]);
    // rate in a range query.
    let c = counter();
    let r = range_of(&c, "increase(c{case=\"plain\"}[1m])", 50.0, 60.0, 10.0).await;
    // At 50s the window [-10s, 50s] holds all four samples, 15s after its
    // start (< 1.1 * 15s, extrapolated) and 0s before its end: 30 * 60/45.
    assert_close(r["{case=\"plain\"}"][0].1, 30.0 * 60.0 / 45.0);
    assert_close(r["{case=\"plain\"}"][1].1, 40.0);
    // topk over time keeps per-step winners.
    let r = range_of(&f, "topk(1, g)", 0.0, 120.0, 60.0).await;
    assert_eq!(
        r["{__name__=\"g\",job=\"b\"}"],
        vec![(0.0, 10.0), (60.0, 20.0)]
    );
    assert_eq!(r["{__name__=\"g\",job=\"a\"}"], vec![(120.0, 3.0)]);
    // Step-invariant subtree duplicated over steps.
    let r = range_of(&f, "sum(g @ 60)", 0.0, 120.0, 60.0).await;
    assert_eq!(r["{}"], vec![(0.0, 22.0), (60.0, 22.0), (120.0, 22.0)]);
}

#[tokio::test]
async fn errors_and_limits() {
    let f = gauge();
    let engine = Engine::default();
    // Parse errors and unknown (post-2.42) functions are bad_data.
    for q in [
        "sum(",
        "g{",
        "1 > 2",
        "sort_by_label(g, \"a\")",
        "limitk(1, g)",
        "g[5m] + 1",
        "{}",
    ] {
        let e = engine.instant(&f, q, 0).await;
        assert!(matches!(e, Err(Error::BadData(_))), "{q}: {e:?}");
        assert!(Engine::parse(q).is_err(), "{q}");
    }
    assert!(Engine::parse("rate(g[5m]) > 1").is_ok());
    assert!(Engine::parse("holt_winters(g[5m], 0.1, 0.2)").is_ok());
    // Range query checks.
    let e = engine.range(&f, "g", 0, 1000, 0).await;
    assert!(matches!(e, Err(Error::BadData(_))), "{e:?}");
    let e = engine.range(&f, "g", 1000, 0, 10).await;
    assert!(matches!(e, Err(Error::BadData(_))), "{e:?}");
    let e = engine.range(&f, "g", 0, 11_001_000, 1000).await;
    match e {
        Err(Error::BadData(m)) => assert!(m.contains("11,000 points"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(engine.range(&f, "g", 0, 11_000_000, 1000).await.is_ok());
    let e = engine.range(&f, "g[5m]", 0, 1000, 10).await;
    match e {
        Err(Error::BadData(m)) => assert_eq!(
            m,
            "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"
        ),
        other => panic!("{other:?}"),
    }
    // The sample limit.
    let small = Engine::new(EngineOptions {
        max_samples: 3,
        ..EngineOptions::default()
    });
    let e = small.range(&f, "g", 0, 240_000, 60_000).await;
    match e {
        Err(Error::Execution(m)) => assert!(m.contains("too many samples"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(small.instant(&f, "g", 60_000).await.is_ok());
    let tiny_load = Engine::new(EngineOptions {
        max_loaded_samples: 3,
        ..EngineOptions::default()
    });
    let e = tiny_load.instant(&f, "g", 60_000).await;
    assert!(matches!(e, Err(Error::Execution(_))), "{e:?}");
    // Timeout.
    let slow = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    let e = slow.instant(&f, "sum(g)", 0).await;
    assert!(matches!(e, Err(Error::Timeout(_))), "{e:?}");
    // Odd inputs do not panic.
    for q in [
        "g[100000000w]",
        "g offset -100000000w",
        "topk(1e300, g)",
        "quantile(NaN, g)",
        "histogram_quantile(NaN, g)",
        "round(g, 0)",
        "g @ -1000",
        "rate(g[1ms])",
        "max_over_time(g[1s:1ms])",
    ] {
        let _ = engine.instant(&f, q, 120_000).await;
    }
    // Strings.
    assert_eq!(
        engine.instant(&f, "\"hi\"", 5).await,
        Ok(Value::String(5, "hi".into()))
    );
}

#[tokio::test]
async fn range_queries_with_subqueries_and_absent_over_time() {
    let f = gauge();
    // At each step t the subquery steps are the minutes in [t-2m, t].
    let r = range_of(&f, "sum_over_time(g{job=\"a\"}[2m:1m])", 60.0, 240.0, 60.0).await;
    assert_eq!(
        r["{job=\"a\"}"],
        vec![(60.0, 3.0), (120.0, 6.0), (180.0, 9.0), (240.0, 11.0)]
    );
    // With an offset the windows move back by a minute.
    let r = range_of(
        &f,
        "sum_over_time(g{job=\"a\"}[2m:1m] offset 1m)",
        60.0,
        240.0,
        60.0,
    )
    .await;
    assert_eq!(
        r["{job=\"a\"}"],
        vec![(60.0, 1.0), (120.0, 3.0), (180.0, 6.0), (240.0, 9.0)]
    );
    // absent_over_time yields 1 only at steps where nothing was seen.
    let r = range_of(&f, "absent_over_time(g{job=\"b\"}[1m])", 0.0, 240.0, 60.0).await;
    assert_eq!(r["{job=\"b\"}"], vec![(180.0, 1.0), (240.0, 1.0)]);
    let r = range_of(&f, "absent(g{job=\"b\"})", 0.0, 240.0, 60.0).await;
    assert_eq!(
        r["{job=\"b\"}"],
        vec![(120.0, 1.0), (180.0, 1.0), (240.0, 1.0)]
    );
}

/// Counts the calls it gets.
struct Counting {
    inner: Fixture,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Queryable for Counting {
    async fn select(&self, sel: &Selection) -> Result<Vec<Series>, Error> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.select(sel).await
    }
}

#[tokio::test]
async fn selections_cover_offsets_ranges_and_are_shared() {
    let c = Counting {
        inner: gauge(),
        calls: std::sync::atomic::AtomicUsize::new(0),
    };
    let v = Engine::default()
        .instant(
            &c,
            "g{job=\"a\"} - g{job=\"a\"} offset 1m + g{job=\"a\"}",
            120_000,
        )
        .await;
    match v {
        Ok(Value::Vector(v)) => assert_eq!(v[0].v, 3.0 - 2.0 + 3.0),
        other => panic!("{other:?}"),
    }
    // The two identical selectors share one call.
    assert_eq!(c.calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn selection_ranges_follow_prometheus() {
    use super::ast;
    let ranges = |q: &str, start: i64, end: i64| {
        let (_, node, sels) = super::parse_query(q).expect("parses");
        let node = ast::preprocess(node, start, end);
        ast::selection_ranges(&node, sels.len(), start, end, 300_000)
    };
    // Instant selector: lookback before the start.
    assert_eq!(
        ranges("x", 1_000_000, 2_000_000),
        vec![(700_000, 2_000_000)]
    );
    // Range and offset.
    assert_eq!(
        ranges("rate(x[1m] offset 1m)", 1_000_000, 1_000_000),
        vec![(880_000, 940_000)]
    );
    // @ overrides the query times.
    assert_eq!(
        ranges("x @ 100", 1_000_000, 2_000_000),
        vec![(-200_000, 100_000)]
    );
    assert_eq!(
        ranges("x @ end()", 1_000_000, 2_000_000),
        vec![(1_700_000, 2_000_000)]
    );
    // Subquery range and offset add up.
    assert_eq!(
        ranges(
            "max_over_time(rate(x[1m])[10m:1m] offset 5m)",
            1_000_000,
            1_000_000
        ),
        vec![(1_000_000 - 300_000 - 600_000 - 60_000, 700_000)]
    );
}

/// Evaluation runs off the runtime's threads: on a one-thread runtime, a
/// task keeps running while a heavy range query evaluates. Without the
/// blocking pool the evaluation would hold the only thread and the task
/// would not run once until the query is done.
#[test]
fn evaluation_leaves_the_runtime_free() {
    let series: Vec<Series> = (0..400)
        .map(|i| Series {
            labels: Labels::new(vec![
                ("__name__".into(), "x_total".into()),
                ("instance".into(), format!("i{i}")),
                ("job".into(), format!("j{}", i % 10)),
            ]),
            samples: (0..1440)
                .map(|k| (k * 60_000, (k * (i + 1)) as f64))
                .collect(),
        })
        .collect();
    let source = fx(series);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let (ticks_during, total_ms) = rt.block_on(async {
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = ticks.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(2)).await;
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        // Let the ticker start, then count only what it does while the
        // query runs.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let mut result = None;
        // Repeat until the evaluation took long enough to be observable.
        while started.elapsed() < Duration::from_millis(300) {
            result = Some(
                Engine::new(EngineOptions::default())
                    .range(
                        &source,
                        "sum by (job) (rate(x_total[5m])) / on() group_left sum(rate(x_total[5m]))",
                        0,
                        1439 * 60_000,
                        60_000,
                    )
                    .await,
            );
        }
        let took = started.elapsed().as_millis();
        let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
        ticker.abort();
        match result {
            Some(Ok(Value::Matrix(m))) => assert_eq!(m.len(), 10, "one series per job"),
            other => panic!("unexpected result {other:?}"),
        }
        (during, took)
    });
    // The ticker wakes every 2 ms; over 300 ms or more it must have run
    // many times (a generous floor: timers on a loaded machine are late).
    assert!(
        ticks_during >= 10,
        "the runtime was blocked: {ticks_during} ticks in {total_ms} ms of evaluation"
    );
}
