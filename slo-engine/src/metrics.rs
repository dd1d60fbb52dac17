//! Metrics from `metric_points`: the catalogue of metric names, and counter
//! rates with cumulative and delta temporality (counter resets handled).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampNanosecondType};
use serde::Serialize;
use store::Store;

use crate::red::{RedError, Window, quote};

/// One metric name as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricInfo {
    /// Metric name.
    pub name: String,
    /// `gauge`, `sum`, `histogram`, `exponential_histogram` or `summary`.
    pub metric_type: String,
    /// Unit, when given.
    pub unit: Option<String>,
    /// Services that report it.
    pub services: Vec<String>,
    /// Data point attribute keys seen.
    pub attribute_keys: Vec<String>,
    /// Data points in the window.
    pub points: u64,
}

use crate::red::run;

/// SQL for the series a point belongs to: service plus its attributes.
const SERIES_KEY: &str = "service_name || '|' || array_to_string(array_sort(map_keys(attributes)), ',') || '|' || \
     array_to_string(array_sort(map_values(attributes)), ',')";

fn window_sql(w: &Window) -> String {
    format!(
        "time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({})",
        w.from_ns, w.to_ns
    )
}

/// Metric names with types, units, services and attribute keys, by name.
pub async fn list(store: &Store, w: &Window) -> Result<Vec<MetricInfo>, RedError> {
    let base = format!(
        "SELECT metric_name, metric_type, max(unit) AS unit, array_agg(DISTINCT service_name) AS services, count(*) AS points \
         FROM metric_points WHERE {} GROUP BY metric_name, metric_type ORDER BY metric_name, metric_type",
        window_sql(w)
    );
    let keys = format!(
        "SELECT DISTINCT metric_name, metric_type, k FROM \
         (SELECT metric_name, metric_type, unnest(map_keys(attributes)) AS k FROM metric_points WHERE {}) ORDER BY k",
        window_sql(w)
    );
    let mut by_metric: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for b in run(store, &keys).await? {
        let (n, t, k) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
            b.column(2).as_string::<i32>(),
        );
        for i in 0..b.num_rows() {
            by_metric
                .entry((n.value(i).to_string(), t.value(i).to_string()))
                .or_default()
                .push(k.value(i).to_string());
        }
    }
    let mut out = Vec::new();
    for b in run(store, &base).await? {
        let names = b.column(0).as_string::<i32>();
        let types = b.column(1).as_string::<i32>();
        let units = b.column(2).as_string::<i32>();
        let services = b.column(3).as_list::<i32>();
        let points = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            let svc = services.value(i);
            let svc = svc.as_string::<i32>();
            let mut services: Vec<String> =
                (0..svc.len()).map(|j| svc.value(j).to_string()).collect();
            services.sort();
            let key = (names.value(i).to_string(), types.value(i).to_string());
            out.push(MetricInfo {
                attribute_keys: by_metric.remove(&key).unwrap_or_default(),
                name: key.0,
                metric_type: key.1,
                unit: (!units.is_null(i)).then(|| units.value(i).to_string()),
                services,
                points: points.value(i) as u64,
            });
        }
    }
    Ok(out)
}

/// One bucket of a counter rate series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatePoint {
    /// Bucket start, ns.
    pub time_ns: i64,
    /// Increase per second over the bucket, summed over all series.
    pub rate: f64,
    /// Increase over the bucket.
    pub increase: f64,
}

/// The per-second rate of a monotonic sum (counter) in `step_secs` buckets,
/// summed over all series (service + attributes). Cumulative points
/// contribute the difference to the previous point of the same series (a
/// drop is a reset: the new value counts from zero; the first point of a
/// series only sets the baseline); delta points contribute their value.
pub async fn counter_rate(
    store: &Store,
    metric: &str,
    w: &Window,
    step_secs: i64,
) -> Result<Vec<RatePoint>, RedError> {
    let (step_ns, buckets) = w.buckets(step_secs)?;
    // One step before the window, so the first point in it has a baseline.
    let sql = format!(
        "SELECT time, value, temporality, {SERIES_KEY} AS series \
         FROM metric_points WHERE metric_name = {} AND metric_type = 'sum' \
         AND time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({}) ORDER BY series, time",
        quote(metric),
        w.from_ns - step_ns,
        w.to_ns
    );
    let mut increase = vec![0.0f64; buckets as usize];
    let mut last: BTreeMap<String, f64> = BTreeMap::new();
    for b in run(store, &sql).await? {
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        let v = b.column(1).as_primitive::<Float64Type>();
        let temp = b.column(2).as_string::<i32>();
        let series = b.column(3).as_string::<i32>();
        for i in 0..b.num_rows() {
            if v.is_null(i) {
                continue;
            }
            let (time, value) = (t.value(i), v.value(i));
            let inc = if temp.value(i) == "delta" {
                Some(value)
            } else {
                let prev = last.insert(series.value(i).to_string(), value);
                prev.map(|p| if value >= p { value - p } else { value })
            };
            if let Some(inc) = inc
                && time >= w.from_ns
            {
                increase[((time - w.from_ns) / step_ns) as usize] += inc;
            }
        }
    }
    Ok(increase
        .into_iter()
        .enumerate()
        .map(|(k, inc)| RatePoint {
            time_ns: w.from_ns + k as i64 * step_ns,
            rate: inc / step_secs as f64,
            increase: inc,
        })
        .collect())
}

/// One bucket of a histogram quantile series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantilePoint {
    /// Bucket start, ns.
    pub time_ns: i64,
    /// Observations in the bucket, over all series.
    pub count: u64,
    /// The estimated quantile (`None` without observations).
    pub value: Option<f64>,
}

/// Estimates quantile `q` from explicit bucket counts (upper bounds
/// `bounds`, one more count than bounds), interpolating linearly inside the
/// bucket that holds the rank, as Prometheus' `histogram_quantile` does; the
/// lowest bucket starts at 0 and a rank in the overflow bucket returns the
/// highest bound.
pub fn bucket_quantile(q: f64, bounds: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 || counts.len() != bounds.len() + 1 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0u64;
    for (i, c) in counts.iter().enumerate() {
        if (below + c) as f64 >= rank && *c > 0 {
            if i == bounds.len() {
                return bounds.last().copied();
            }
            let lower = if i == 0 {
                0.0_f64.min(bounds[0])
            } else {
                bounds[i - 1]
            };
            let upper = bounds[i];
            return Some(lower + (upper - lower) * (rank - below as f64) / *c as f64);
        }
        below += c;
    }
    bounds.last().copied()
}

/// Quantile `q` of an explicit-bucket histogram metric in `step_secs` buckets,
/// over all its series: cumulative points contribute their increase since
/// the previous point of the same series (a drop in any bucket is a reset),
/// delta points their counts. Points whose bounds differ from the first seen
/// in a bucket are skipped.
pub async fn histogram_quantile(
    store: &Store,
    metric: &str,
    q: f64,
    w: &Window,
    step_secs: i64,
) -> Result<Vec<QuantilePoint>, RedError> {
    if !(0.0..=1.0).contains(&q) {
        return Err(RedError::BadRequest(format!(
            "quantile {q} is not between 0 and 1"
        )));
    }
    let (step_ns, buckets) = w.buckets(step_secs)?;
    let sql = format!(
        "SELECT time, temporality, {SERIES_KEY} AS series, bucket_counts, explicit_bounds \
         FROM metric_points WHERE metric_name = {} AND metric_type = 'histogram' \
         AND time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({}) ORDER BY series, time",
        quote(metric),
        w.from_ns - step_ns,
        w.to_ns
    );
    let mut acc: Vec<Option<(Vec<f64>, Vec<u64>)>> = vec![None; buckets as usize];
    let mut last: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for b in run(store, &sql).await? {
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        let temp = b.column(1).as_string::<i32>();
        let series = b.column(2).as_string::<i32>();
        let counts = b.column(3).as_list::<i32>();
        let bounds = b.column(4).as_list::<i32>();
        for i in 0..b.num_rows() {
            if counts.is_null(i) || bounds.is_null(i) {
                continue;
            }
            let c: Vec<u64> = counts
                .value(i)
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .values()
                .to_vec();
            let bd: Vec<f64> = bounds
                .value(i)
                .as_primitive::<Float64Type>()
                .values()
                .to_vec();
            let inc = if temp.value(i) == "delta" {
                Some(c.clone())
            } else {
                match last.insert(series.value(i).to_string(), c.clone()) {
                    Some(prev)
                        if prev.len() == c.len() && prev.iter().zip(&c).all(|(p, n)| n >= p) =>
                    {
                        Some(c.iter().zip(&prev).map(|(n, p)| n - p).collect())
                    }
                    Some(_) => Some(c.clone()), // reset
                    None => None,               // baseline only
                }
            };
            let time = t.value(i);
            let Some(inc) = inc else { continue };
            if time < w.from_ns {
                continue;
            }
            let slot = &mut acc[((time - w.from_ns) / step_ns) as usize];
            match slot {
                None => *slot = Some((bd, inc)),
                Some((sb, sc)) if *sb == bd && sc.len() == inc.len() => {
                    for (a, x) in sc.iter_mut().zip(&inc) {
                        *a += x;
                    }
                }
                Some(_) => {}
            }
        }
    }
    Ok(acc
        .into_iter()
        .enumerate()
        .map(|(k, slot)| {
            let time_ns = w.from_ns + k as i64 * step_ns;
            match slot {
                Some((bounds, counts)) => QuantilePoint {
                    time_ns,
                    count: counts.iter().sum(),
                    value: bucket_quantile(q, &bounds, &counts),
                },
                None => QuantilePoint {
                    time_ns,
                    count: 0,
                    value: None,
                },
            }
        })
        .collect())
}
