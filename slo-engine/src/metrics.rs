//! Metrics from `metric_points`: the catalogue of metric names, and counter
//! rates with cumulative and delta temporality (counter resets handled).

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
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

async fn run(store: &Store, sql: &str) -> Result<Vec<RecordBatch>, RedError> {
    store::query::session_context(store)
        .sql(sql)
        .await
        .map_err(|e| RedError::Query(e.to_string()))?
        .collect()
        .await
        .map_err(|e| RedError::Query(e.to_string()))
}

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
    if step_secs <= 0 {
        return Err(RedError::BadRequest(format!(
            "step must be a positive number of seconds, got {step_secs}"
        )));
    }
    let step_ns = step_secs * 1_000_000_000;
    let buckets = (w.to_ns - w.from_ns + step_ns - 1) / step_ns;
    if buckets > crate::red::MAX_POINTS {
        return Err(RedError::BadRequest(format!(
            "{buckets} buckets requested; use a larger step"
        )));
    }
    // One step before the window, so the first point in it has a baseline.
    let sql = format!(
        "SELECT time, value, temporality, service_name || '|' || array_to_string(array_sort(map_keys(attributes)), ',') || '|' || \
         array_to_string(array_sort(map_values(attributes)), ',') AS series \
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
