//! Span metrics for PromQL, from the RED rollups (no scan of raw spans
//! beyond the rollups' own edges): the series the OpenTelemetry Collector's
//! spanmetrics connector and Tempo's metrics generator produce, so Grafana's
//! stock RED panels work on Burnwatch's traces.
//!
//! - `traces_spanmetrics_calls_total` (counter) and
//!   `traces_spanmetrics_duration_seconds_bucket{le}` / `_sum` / `_count`
//!   (histogram, bounds [`SPAN_METRIC_BOUNDS`]);
//! - labels `service` (Tempo's name) and `service_name` (the connector's),
//!   `span_name`, `span_kind` (`SPAN_KIND_SERVER`, ...) and `status_code`
//!   (`STATUS_CODE_UNSET`, `STATUS_CODE_OK`, `STATUS_CODE_ERROR`);
//! - one sample per minute boundary, the count of spans that started
//!   before it, counted from the first whole minute of the selection (so
//!   `increase` over minute-aligned ranges is exact, and rates equal the
//!   RED API's);
//! - exemplars on the `_bucket` series: per minute and bucket, the latest
//!   span that fell in it (`trace_id`, `span_id`, its duration).

use std::collections::BTreeMap;

use promql::{Labels, Matcher, Series};

use crate::prom::{Exemplar, Family, format_bound};
use crate::rollup::{SPAN_METRIC_BOUNDS, SpanMetricRow};

const MINUTE_MS: i64 = 60_000;

/// The counter of spans.
pub const CALLS: &str = "traces_spanmetrics_calls_total";
/// The duration histogram's family name.
pub const DURATION: &str = "traces_spanmetrics_duration_seconds";

/// The span-metric families, as the metadata endpoint lists them.
pub fn families() -> Vec<Family> {
    let f =
        |name: &str, metric_type: &str, prom_type: &'static str, unit: &str, help: &str| Family {
            stored: String::new(),
            metric_type: metric_type.into(),
            remote_write: false,
            monotonic: true,
            temporality: "cumulative".into(),
            unit: unit.into(),
            help: help.into(),
            name: name.into(),
            prom_type,
        };
    vec![
        f(
            CALLS,
            "sum",
            "counter",
            "",
            "Spans by service, span name, kind and status code (from Burnwatch's rollups).",
        ),
        f(
            DURATION,
            "histogram",
            "histogram",
            "seconds",
            "Span durations by service, span name, kind and status code (from Burnwatch's rollups).",
        ),
    ]
}

/// Whether a selection with these `__name__` matchers may want span metrics.
pub fn wanted(name_matchers: &[&Matcher]) -> bool {
    families()
        .iter()
        .flat_map(Family::series_names)
        .chain([CALLS.to_string()])
        .any(|n| name_matchers.iter().all(|m| m.matches(&n)))
}

fn base_labels(r: &SpanMetricRow) -> Vec<(String, String)> {
    vec![
        ("service".into(), r.service.to_string()),
        ("service_name".into(), r.service.to_string()),
        ("span_name".into(), r.operation.to_string()),
        ("span_kind".into(), format!("SPAN_KIND_{}", r.kind)),
        ("status_code".into(), format!("STATUS_CODE_{}", r.status)),
    ]
}

pub(crate) fn with_name(mut pairs: Vec<(String, String)>, name: &str, le: Option<f64>) -> Labels {
    pairs.push(("__name__".into(), name.into()));
    if let Some(le) = le {
        pairs.push(("le".into(), format_bound(le)));
    }
    Labels::new(pairs)
}

/// The `le` bounds of the duration buckets: [`SPAN_METRIC_BOUNDS`] and +Inf.
pub(crate) fn bucket_bounds() -> Vec<f64> {
    SPAN_METRIC_BOUNDS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .collect()
}

/// Whether `labels` satisfy every matcher (an absent label is empty).
pub(crate) fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.name).unwrap_or("")))
}

/// What one label set accumulates per minute.
enum Part {
    Calls,
    Sum,
    Count,
    Bucket(usize),
}

/// The span-metric series matching `matchers` from per-minute `rows`, with
/// one sample per minute boundary in `[start_ms, end_ms]` (labels only,
/// without samples, when `with_samples` is false).
pub fn series(
    rows: &[SpanMetricRow],
    matchers: &[Matcher],
    start_ms: i64,
    end_ms: i64,
    with_samples: bool,
) -> Vec<Series> {
    let bounds = bucket_bounds();
    // Per series: increments per minute start (ms).
    let mut inc: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
    let matches = |l: &Labels| matches_all(matchers, l);
    for r in rows {
        let base = base_labels(r);
        let minute = r.minute_ns.div_euclid(1_000_000);
        let mut parts = vec![
            (with_name(base.clone(), CALLS, None), Part::Calls),
            (
                with_name(base.clone(), &format!("{DURATION}_sum"), None),
                Part::Sum,
            ),
            (
                with_name(base.clone(), &format!("{DURATION}_count"), None),
                Part::Count,
            ),
        ];
        for (i, b) in bounds.iter().enumerate() {
            parts.push((
                with_name(base.clone(), &format!("{DURATION}_bucket"), Some(*b)),
                Part::Bucket(i),
            ));
        }
        for (labels, part) in parts {
            if !matches(&labels) {
                continue;
            }
            let v = match part {
                Part::Calls | Part::Count => r.calls as f64,
                Part::Sum => r.sum_ns as f64 / 1e9,
                Part::Bucket(i) => r.buckets[..=i].iter().sum::<u64>() as f64,
            };
            *inc.entry(labels).or_default().entry(minute).or_default() += v;
        }
    }
    cumulative(inc, start_ms, end_ms, with_samples)
}

/// Counter series from increments per minute start (ms): one sample per
/// minute boundary in `[start_ms, end_ms]`, the sum of the minutes before
/// it (labels only when `with_samples` is false).
pub(crate) fn cumulative(
    inc: BTreeMap<Labels, BTreeMap<i64, f64>>,
    start_ms: i64,
    end_ms: i64,
    with_samples: bool,
) -> Vec<Series> {
    let first = start_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
    let last = end_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
    inc.into_iter()
        .map(|(labels, by_minute)| {
            if !with_samples {
                return Series {
                    labels,
                    samples: Vec::new(),
                };
            }
            // Samples from the first minute with data (the counter is zero
            // before it) to the end of the range, never past the next
            // minute boundary after now.
            let data_start = by_minute.keys().next().copied().unwrap_or(first);
            let now_ms = store::now_ns().div_euclid(1_000_000);
            let last = last.min(now_ms.div_euclid(MINUTE_MS) * MINUTE_MS + MINUTE_MS);
            let mut samples = Vec::new();
            let mut total: f64 = by_minute.range(..first).map(|(_, v)| v).sum();
            let mut t = first.max(data_start);
            while t <= last {
                samples.push((t, total));
                total += by_minute.get(&t).copied().unwrap_or(0.0);
                t += MINUTE_MS;
            }
            Series { labels, samples }
        })
        .filter(|s| !with_samples || !s.samples.is_empty())
        .collect()
}

/// Exemplars on the `_bucket` series matching `matchers`, with span start
/// times in `[start_ms, end_ms]`.
pub fn exemplars(
    rows: &[SpanMetricRow],
    matchers: &[Matcher],
    start_ms: i64,
    end_ms: i64,
) -> Vec<(Labels, Vec<Exemplar>)> {
    let mut out: BTreeMap<Labels, Vec<Exemplar>> = BTreeMap::new();
    for r in rows {
        for e in &r.exemplars {
            let t = e.time_ns.div_euclid(1_000_000);
            if t < start_ms || t > end_ms {
                continue;
            }
            let le = SPAN_METRIC_BOUNDS
                .get(e.bucket as usize)
                .copied()
                .unwrap_or(f64::INFINITY);
            let labels = with_name(base_labels(r), &format!("{DURATION}_bucket"), Some(le));
            if !matches_all(matchers, &labels) {
                continue;
            }
            out.entry(labels).or_default().push(Exemplar {
                labels: Labels::new(vec![
                    ("trace_id".into(), e.trace_id.clone()),
                    ("span_id".into(), e.span_id.clone()),
                ]),
                value: e.duration_ns as f64 / 1e9,
                t,
            });
        }
    }
    for ex in out.values_mut() {
        ex.sort_by_key(|e| e.t);
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql::MatchOp;
    use std::sync::Arc;

    fn row(minute: i64, calls: u64, bucket: usize) -> SpanMetricRow {
        let mut buckets = [0; SPAN_METRIC_BOUNDS.len() + 1];
        buckets[bucket] = calls;
        SpanMetricRow {
            minute_ns: minute * 60_000_000_000,
            service: Arc::from("shop"),
            operation: Arc::from("GET /"),
            kind: "SERVER",
            status: "UNSET",
            calls,
            sum_ns: calls as i64 * 5_000_000,
            buckets,
            exemplars: vec![],
        }
    }

    #[test]
    fn counters_accumulate_per_minute_boundary() {
        let rows = [row(10, 3, 4), row(12, 2, 4)];
        let m = [Matcher {
            name: "__name__".into(),
            op: MatchOp::Equal,
            value: CALLS.into(),
        }];
        let s = series(&rows, &m, 10 * MINUTE_MS, 14 * MINUTE_MS, true);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels.get("span_kind"), Some("SPAN_KIND_SERVER"));
        assert_eq!(s[0].labels.get("service"), Some("shop"));
        let v: Vec<(i64, f64)> = s[0]
            .samples
            .iter()
            .map(|(t, v)| (t / MINUTE_MS, *v))
            .collect();
        assert_eq!(v, [(10, 0.0), (11, 3.0), (12, 3.0), (13, 5.0), (14, 5.0)]);
        // Buckets are cumulative in `le`.
        let b = [Matcher {
            name: "__name__".into(),
            op: MatchOp::Equal,
            value: format!("{DURATION}_bucket"),
        }];
        let s = series(&rows, &b, 10 * MINUTE_MS, 14 * MINUTE_MS, true);
        assert_eq!(s.len(), SPAN_METRIC_BOUNDS.len() + 1);
        let last = |le: &str| {
            s.iter()
                .find(|x| x.labels.get("le") == Some(le))
                .unwrap()
                .samples
                .last()
                .unwrap()
                .1
        };
        assert_eq!(last("0.008"), 0.0);
        assert_eq!(last("0.01"), 5.0);
        assert_eq!(last("+Inf"), 5.0);
    }
}
