//! Metrics from `metric_points`: the catalogue of metric names, and metric
//! series over time, optionally grouped by attributes:
//! - counter rates (monotonic sums, cumulative and delta temporality,
//!   counter resets handled) ([`counter_rate`]);
//! - gauges: average, minimum, maximum and last value per bucket ([`gauge`]);
//! - explicit-bucket histograms: quantiles (Prometheus interpolation) and
//!   averages (sum / count) per bucket ([`histogram`]);
//! - RED from the `http.server.request.duration` histogram, for services
//!   that export metrics but no spans ([`red_from_histogram`]).
//!
//! A *series* is one service plus one full attribute set; cumulative points
//! are turned into increases per series (the first point of a series only
//! sets a baseline, so the query looks back [`LOOKBACK_NS`] before the
//! window; a drop is a reset and the new value counts from zero). Series are
//! then summed into *groups*: one group per distinct value of the
//! `group_by` keys (`service.name` is the service; any other key a data
//! point attribute), or one group of everything.

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use serde::Serialize;
use store::Store;

use crate::red::{Red, RedError, RedPoint, RedSource, Window, quote};

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

/// How far before a window a query reads, so that the first cumulative
/// point inside the window has a baseline (at least one step).
pub const LOOKBACK_NS: i64 = 10 * 60 * 1_000_000_000;

/// Most `group_by` keys.
pub const MAX_GROUP_KEYS: usize = 8;

/// Most points (groups x buckets) one query returns.
pub const MAX_SERIES_POINTS: usize = 200_000;

/// One group of a grouped metric query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series<P> {
    /// The group's value of each `group_by` key (an absent attribute is `""`).
    pub labels: BTreeMap<String, String>,
    /// One point per bucket, every bucket present.
    pub points: Vec<P>,
}

/// What a grouped query reads and how it buckets.
struct Plan<'a> {
    metric: &'a str,
    metric_type: &'a str,
    group_by: &'a [String],
    from_ns: i64,
    to_ns: i64,
    step_ns: i64,
    buckets: usize,
    /// Extra SQL conditions, each starting with ` AND `.
    filter: String,
}

impl Plan<'_> {
    fn new<'a>(
        metric: &'a str,
        metric_type: &'a str,
        group_by: &'a [String],
        w: &Window,
        step_secs: i64,
    ) -> Result<Plan<'a>, RedError> {
        let (step_ns, buckets) = w.buckets(step_secs)?;
        check_group_by(group_by)?;
        Ok(Plan {
            metric,
            metric_type,
            group_by,
            from_ns: w.from_ns,
            to_ns: w.to_ns,
            step_ns,
            buckets: buckets as usize,
            filter: String::new(),
        })
    }

    /// Points of the metric from `LOOKBACK_NS` (or a step, if longer) before
    /// the window, ordered by time, with the group columns `g0..gN` after
    /// `columns`.
    fn sql(&self, columns: &str) -> String {
        let groups: String = self
            .group_by
            .iter()
            .enumerate()
            .map(|(i, k)| format!(", {} AS g{i}", group_column(k)))
            .collect();
        format!(
            "SELECT time, temporality, service_name, attributes, {columns}{groups} \
             FROM metric_points WHERE metric_name = {} AND metric_type = {} AND (flags & 1) = 0 \
             AND time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({}){} ORDER BY time",
            quote(self.metric),
            quote(self.metric_type),
            self.from_ns - LOOKBACK_NS.max(self.step_ns),
            self.to_ns,
            self.filter
        )
    }

    fn bucket(&self, time_ns: i64) -> Option<usize> {
        (time_ns >= self.from_ns && time_ns < self.to_ns)
            .then(|| ((time_ns - self.from_ns) / self.step_ns) as usize)
    }

    fn time_of(&self, bucket: usize) -> i64 {
        self.from_ns + bucket as i64 * self.step_ns
    }
}

fn check_group_by(group_by: &[String]) -> Result<(), RedError> {
    if group_by.len() > MAX_GROUP_KEYS {
        return Err(RedError::BadRequest(format!(
            "{} group_by keys; at most {MAX_GROUP_KEYS}",
            group_by.len()
        )));
    }
    for k in group_by {
        if k.is_empty() || k.len() > 256 {
            return Err(RedError::BadRequest(format!(
                "group_by key {k:?} must be 1 to 256 characters"
            )));
        }
    }
    Ok(())
}

/// The SQL of one group key: `service.name` is the service column, any
/// other key a data point attribute.
fn group_column(key: &str) -> String {
    if key == "service.name" {
        "service_name".to_string()
    } else {
        format!("attributes[{}]", quote(key))
    }
}

/// The string value of column `name` at row `i` (`""` when null).
fn strings(b: &RecordBatch, name: &str) -> Result<StringArray, RedError> {
    let c = b
        .column_by_name(name)
        .ok_or_else(|| RedError::Query(format!("column {name} missing")))?;
    let c = arrow::compute::cast(c, &DataType::Utf8).map_err(|e| RedError::Query(e.to_string()))?;
    Ok(c.as_string::<i32>().clone())
}

fn value_of(a: &StringArray, i: usize) -> &str {
    if a.is_null(i) { "" } else { a.value(i) }
}

/// Per row: the series key (service plus every attribute, sorted) and the
/// group key (the group column values).
struct Keys {
    service: StringArray,
    attributes: MapArray,
    groups: Vec<StringArray>,
}

impl Keys {
    fn new(b: &RecordBatch, group_keys: usize) -> Result<Keys, RedError> {
        Ok(Keys {
            service: strings(b, "service_name")?,
            attributes: b
                .column_by_name("attributes")
                .and_then(|c| c.as_map_opt().cloned())
                .ok_or_else(|| RedError::Query("attributes column missing".into()))?,
            groups: (0..group_keys)
                .map(|g| strings(b, &format!("g{g}")))
                .collect::<Result<_, _>>()?,
        })
    }

    fn series(&self, i: usize) -> String {
        let entry = self.attributes.value(i);
        let keys = entry.column(0).as_string::<i32>();
        let values = entry.column(1).as_string::<i32>();
        let mut pairs: Vec<(&str, &str)> = (0..entry.len())
            .map(|j| (keys.value(j), value_of(values, j)))
            .collect();
        pairs.sort_unstable();
        let mut s = String::from(value_of(&self.service, i));
        for (k, v) in pairs {
            s.push('\u{1f}');
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }

    fn group(&self, i: usize) -> Vec<String> {
        self.groups
            .iter()
            .map(|g| value_of(g, i).to_string())
            .collect()
    }
}

/// Accumulators per group, each with one slot per bucket; bounded by
/// [`MAX_SERIES_POINTS`].
struct Groups<T> {
    buckets: usize,
    by_group: HashMap<Vec<String>, Vec<T>>,
}

impl<T: Default + Clone> Groups<T> {
    fn new(buckets: usize) -> Groups<T> {
        Groups {
            buckets,
            by_group: HashMap::new(),
        }
    }

    fn slot(&mut self, group: Vec<String>, bucket: usize) -> Result<&mut T, RedError> {
        if !self.by_group.contains_key(&group)
            && (self.by_group.len() + 1) * self.buckets > MAX_SERIES_POINTS
        {
            return Err(RedError::BadRequest(format!(
                "more than {} groups of {} buckets: group by fewer keys, or use a larger step",
                MAX_SERIES_POINTS / self.buckets.max(1),
                self.buckets
            )));
        }
        let buckets = self.buckets;
        Ok(&mut self
            .by_group
            .entry(group)
            .or_insert_with(|| vec![T::default(); buckets])[bucket])
    }

    /// Every group (ordered by labels) with its points; no data and no
    /// grouping is one empty group, so an ungrouped query always answers
    /// one series.
    fn finish<P>(
        mut self,
        group_by: &[String],
        mut point: impl FnMut(usize, &T) -> P,
    ) -> Vec<Series<P>> {
        if group_by.is_empty() && self.by_group.is_empty() {
            self.by_group
                .insert(vec![], vec![T::default(); self.buckets]);
        }
        let mut out: Vec<Series<P>> = self
            .by_group
            .into_iter()
            .map(|(g, slots)| Series {
                labels: group_by.iter().cloned().zip(g).collect(),
                points: slots.iter().enumerate().map(|(k, t)| point(k, t)).collect(),
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// One bucket of a counter rate series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatePoint {
    /// Bucket start, ns.
    pub time_ns: i64,
    /// Increase per second over the bucket.
    pub rate: f64,
    /// Increase over the bucket.
    pub increase: f64,
}

/// The per-second rate of a monotonic sum (counter) in `step_secs` buckets,
/// per group. Cumulative points contribute the difference to the previous
/// point of the same series (a drop is a reset: the new value counts from
/// zero; the first point of a series only sets the baseline); delta points
/// contribute their value.
pub async fn counter_rate(
    store: &Store,
    metric: &str,
    w: &Window,
    step_secs: i64,
    group_by: &[String],
) -> Result<Vec<Series<RatePoint>>, RedError> {
    let plan = Plan::new(metric, "sum", group_by, w, step_secs)?;
    let mut groups: Groups<f64> = Groups::new(plan.buckets);
    counter_walk(store, &plan, |group, k, _, inc| {
        *groups.slot(group, k)? += inc;
        Ok(())
    })
    .await?;
    let step = plan.step_ns as f64 / 1e9;
    Ok(groups.finish(group_by, |k, inc| RatePoint {
        time_ns: plan.time_of(k),
        rate: inc / step,
        increase: *inc,
    }))
}

/// One bucket of a gauge series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GaugePoint {
    /// Bucket start, ns.
    pub time_ns: i64,
    /// Samples in the bucket, over the group's series.
    pub samples: u64,
    /// Mean of the samples (`None` without samples).
    pub avg: Option<f64>,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// Sum over the group's series of each series' last sample in the
    /// bucket (e.g. total queue depth over instances).
    pub last: Option<f64>,
}

#[derive(Debug, Default, Clone)]
struct GaugeAcc {
    samples: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: HashMap<String, (i64, f64)>,
}

/// A gauge in `step_secs` buckets, per group: average, minimum, maximum and
/// (summed over series) last value of the samples in each bucket. Integer
/// gauges are read as floats.
pub async fn gauge(
    store: &Store,
    metric: &str,
    w: &Window,
    step_secs: i64,
    group_by: &[String],
) -> Result<Vec<Series<GaugePoint>>, RedError> {
    let plan = Plan::new(metric, "gauge", group_by, w, step_secs)?;
    let mut groups: Groups<GaugeAcc> = Groups::new(plan.buckets);
    for b in run(
        store,
        &plan.sql("coalesce(value, arrow_cast(value_int, 'Float64')) AS v"),
    )
    .await?
    {
        let keys = Keys::new(&b, group_by.len())?;
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        let v = b
            .column_by_name("v")
            .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned())
            .ok_or_else(|| RedError::Query("value column missing".into()))?;
        for i in 0..b.num_rows() {
            let Some(k) = plan.bucket(t.value(i)) else {
                continue;
            };
            if v.is_null(i) || !v.value(i).is_finite() {
                continue;
            }
            let (time, value) = (t.value(i), v.value(i));
            let a = groups.slot(keys.group(i), k)?;
            if a.samples == 0 {
                a.min = value;
                a.max = value;
            }
            a.samples += 1;
            a.sum += value;
            a.min = a.min.min(value);
            a.max = a.max.max(value);
            let e = a.last.entry(keys.series(i)).or_insert((time, value));
            if time >= e.0 {
                *e = (time, value);
            }
        }
    }
    Ok(groups.finish(group_by, |k, a| {
        let some = |x: f64| (a.samples > 0).then_some(x);
        GaugePoint {
            time_ns: plan.time_of(k),
            samples: a.samples,
            avg: some(a.sum / a.samples.max(1) as f64),
            min: some(a.min),
            max: some(a.max),
            last: some(a.last.values().map(|(_, v)| v).sum()),
        }
    }))
}

/// One bucket of a histogram series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantilePoint {
    /// Bucket start, ns.
    pub time_ns: i64,
    /// Observations in the bucket, over the group's series.
    pub count: u64,
    /// The estimated quantile (`None` without observations).
    pub value: Option<f64>,
    /// Sum of the observations (`None` when a point did not carry its sum).
    pub sum: Option<f64>,
    /// sum / count (`None` without observations or without sums).
    pub average: Option<f64>,
}

/// Group-by keys from their comma-separated form (`service.name,route`):
/// trimmed, empty ones dropped.
pub fn parse_group_by(keys: &str) -> Vec<String> {
    keys.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect()
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

/// Merged histogram increases of one group in one bucket.
#[derive(Debug, Default, Clone)]
struct HistAcc {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    /// Every merged point carried its sum.
    sum_known: bool,
    points: u64,
}

impl HistAcc {
    /// Adds one increase; points whose bounds differ from the first merged
    /// are skipped (bucket layouts cannot be merged exactly).
    fn add(&mut self, bounds: &[f64], counts: &[u64], sum: Option<f64>) {
        if self.points == 0 {
            self.bounds = bounds.to_vec();
            self.counts = vec![0; counts.len()];
            self.sum_known = true;
        } else if self.bounds != bounds || self.counts.len() != counts.len() {
            return;
        }
        self.points += 1;
        for (a, c) in self.counts.iter_mut().zip(counts) {
            *a += c;
        }
        match sum {
            Some(s) => self.sum += s,
            None => self.sum_known = false,
        }
    }

    fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The last cumulative point of a series: counts and sum.
struct Baseline {
    counts: Vec<u64>,
    sum: Option<f64>,
}

/// Walks the explicit-bucket histogram points of a plan and feeds each
/// point's increase (per series; resets and delta handled) to `add` with
/// the row's group and bucket.
async fn histogram_increases(
    store: &Store,
    plan: &Plan<'_>,
    mut add: impl FnMut(Vec<String>, usize, i64, &[f64], &[u64], Option<f64>) -> Result<(), RedError>,
) -> Result<(), RedError> {
    let mut last: HashMap<String, Baseline> = HashMap::new();
    for b in run(store, &plan.sql("bucket_counts, explicit_bounds, sum")).await? {
        let keys = Keys::new(&b, plan.group_by.len())?;
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        let temp = strings(&b, "temporality")?;
        let col = |n: &str| {
            b.column_by_name(n)
                .ok_or_else(|| RedError::Query(format!("column {n} missing")))
        };
        let counts = col("bucket_counts")?.as_list::<i32>();
        let bounds = col("explicit_bounds")?.as_list::<i32>();
        let sums = col("sum")?.as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            if counts.is_null(i) || bounds.is_null(i) {
                continue;
            }
            let c: Vec<u64> = counts
                .value(i)
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec();
            let bd = bounds.value(i);
            let bd = bd.as_primitive::<Float64Type>().values();
            let sum = (!sums.is_null(i)).then(|| sums.value(i));
            let (inc, inc_sum) = if value_of(&temp, i) == "delta" {
                (Some(c), sum)
            } else {
                let prev = last.insert(
                    keys.series(i),
                    Baseline {
                        counts: c.clone(),
                        sum,
                    },
                );
                match prev {
                    Some(p)
                        if p.counts.len() == c.len()
                            && p.counts.iter().zip(&c).all(|(p, n)| n >= p) =>
                    {
                        let inc = c.iter().zip(&p.counts).map(|(n, p)| n - p).collect();
                        let s = match (sum, p.sum) {
                            (Some(s), Some(ps)) => Some(s - ps),
                            _ => None,
                        };
                        (Some(inc), s)
                    }
                    Some(_) => (Some(c), sum), // reset: counts start again from zero
                    None => (None, None),      // baseline only
                }
            };
            if let (Some(inc), Some(k)) = (inc, plan.bucket(t.value(i))) {
                add(keys.group(i), k, t.value(i), bd, &inc, inc_sum)?;
            }
        }
    }
    Ok(())
}

/// An explicit-bucket histogram metric in `step_secs` buckets, per group:
/// observation count, quantile `q` (Prometheus interpolation, see
/// [`bucket_quantile`]), sum and average. Cumulative points contribute their
/// increase since the previous point of the same series (a drop in any
/// bucket is a reset), delta points their counts. Within a group and
/// bucket, points whose bounds differ from the first seen are skipped.
pub async fn histogram(
    store: &Store,
    metric: &str,
    q: f64,
    w: &Window,
    step_secs: i64,
    group_by: &[String],
) -> Result<Vec<Series<QuantilePoint>>, RedError> {
    if !(0.0..=1.0).contains(&q) {
        return Err(RedError::BadRequest(format!(
            "quantile {q} is not between 0 and 1"
        )));
    }
    let plan = Plan::new(metric, "histogram", group_by, w, step_secs)?;
    let mut groups: Groups<HistAcc> = Groups::new(plan.buckets);
    histogram_increases(store, &plan, |g, k, _, bounds, counts, sum| {
        groups.slot(g, k)?.add(bounds, counts, sum);
        Ok(())
    })
    .await?;
    Ok(groups.finish(group_by, |k, a| {
        let count = a.count();
        let sum = (a.points > 0 && a.sum_known).then_some(a.sum);
        QuantilePoint {
            time_ns: plan.time_of(k),
            count,
            value: bucket_quantile(q, &a.bounds, &a.counts),
            sum,
            average: sum.filter(|_| count > 0).map(|s| s / count as f64),
        }
    }))
}

/// An explicit-bucket histogram's distribution over time: observations per
/// (time bucket, histogram bucket), all series together, for a heatmap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heatmap {
    /// Upper bounds of the histogram buckets (the last bucket, above the
    /// highest bound, has none).
    pub bounds: Vec<f64>,
    /// Start of each time bucket, ns.
    pub times_ns: Vec<i64>,
    /// `counts[t][b]`: observations in time bucket `t` and histogram bucket
    /// `b` (`bounds.len() + 1` per time bucket).
    pub counts: Vec<Vec<u64>>,
    /// Points skipped because their bucket layout differs from the first
    /// seen (layouts cannot be merged exactly).
    pub skipped_points: u64,
}

/// The distribution of a histogram metric per `step_secs` bucket over the
/// window (increases of cumulative points, resets and delta handled as in
/// [`histogram`]), merged over every series with the first bucket layout
/// seen.
pub async fn heatmap(
    store: &Store,
    metric: &str,
    w: &Window,
    step_secs: i64,
) -> Result<Heatmap, RedError> {
    let plan = Plan::new(metric, "histogram", &[], w, step_secs)?;
    let mut h = Heatmap {
        bounds: Vec::new(),
        times_ns: (0..plan.buckets).map(|k| plan.time_of(k)).collect(),
        counts: vec![Vec::new(); plan.buckets],
        skipped_points: 0,
    };
    let mut layout_known = false;
    histogram_increases(store, &plan, |_, k, _, bounds, counts, _| {
        if !layout_known {
            h.bounds = bounds.to_vec();
            layout_known = true;
        }
        if h.bounds != bounds || counts.len() != bounds.len() + 1 {
            h.skipped_points += 1;
            return Ok(());
        }
        let row = &mut h.counts[k];
        if row.is_empty() {
            *row = vec![0; counts.len()];
        }
        for (a, c) in row.iter_mut().zip(counts) {
            *a += c;
        }
        Ok(())
    })
    .await?;
    let width = h.bounds.len() + 1;
    for row in &mut h.counts {
        if row.is_empty() {
            *row = vec![0; width];
        }
    }
    Ok(h)
}

/// A plan over `[from_ns, to_ns)` in one-minute buckets, with `filter`
/// (SQL conditions over `metric_points`, each starting with ` AND `).
fn point_plan<'a>(
    metric: &'a str,
    metric_type: &'a str,
    filter: &str,
    from_ns: i64,
    to_ns: i64,
) -> Plan<'a> {
    let step_ns = 60_000_000_000;
    Plan {
        metric,
        metric_type,
        group_by: &[],
        from_ns,
        to_ns,
        step_ns,
        buckets: ((to_ns - from_ns).max(0) / step_ns + 1) as usize,
        filter: filter.to_string(),
    }
}

/// Every increase of a counter (monotonic sum) in `[from_ns, to_ns)`, at
/// its point's time: cumulative points add the difference to the previous
/// point of their series (a drop is a reset; the first point of a series
/// is only a baseline), delta points their value.
pub async fn counter_increases(
    store: &Store,
    metric: &str,
    filter: &str,
    from_ns: i64,
    to_ns: i64,
    mut add: impl FnMut(i64, f64),
) -> Result<(), RedError> {
    let plan = point_plan(metric, "sum", filter, from_ns, to_ns);
    counter_walk(store, &plan, |_, _, t, inc| {
        add(t, inc);
        Ok(())
    })
    .await
}

/// Walks the counter points of a plan and feeds each point's increase
/// (per series; resets and delta handled) to `add` with the row's group,
/// bucket and time.
async fn counter_walk(
    store: &Store,
    plan: &Plan<'_>,
    mut add: impl FnMut(Vec<String>, usize, i64, f64) -> Result<(), RedError>,
) -> Result<(), RedError> {
    let mut last: HashMap<String, f64> = HashMap::new();
    for b in run(store, &plan.sql("value")).await? {
        let keys = Keys::new(&b, plan.group_by.len())?;
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        let temp = strings(&b, "temporality")?;
        let v = b
            .column_by_name("value")
            .and_then(|c| c.as_primitive_opt::<Float64Type>().cloned())
            .ok_or_else(|| RedError::Query("value column missing".into()))?;
        for i in 0..b.num_rows() {
            if v.is_null(i) {
                continue;
            }
            let value = v.value(i);
            let inc = if value_of(&temp, i) == "delta" {
                Some(value)
            } else {
                let prev = last.insert(keys.series(i), value);
                prev.map(|p| if value >= p { value - p } else { value })
            };
            if let (Some(inc), Some(k)) = (inc, plan.bucket(t.value(i))) {
                add(keys.group(i), k, t.value(i), inc)?;
            }
        }
    }
    Ok(())
}

/// Every increase of an explicit-bucket histogram in `[from_ns, to_ns)`,
/// at its point's time: `(time, bounds, bucket count increases)`.
pub async fn histogram_point_increases(
    store: &Store,
    metric: &str,
    filter: &str,
    from_ns: i64,
    to_ns: i64,
    mut add: impl FnMut(i64, &[f64], &[u64]),
) -> Result<(), RedError> {
    let plan = point_plan(metric, "histogram", filter, from_ns, to_ns);
    histogram_increases(store, &plan, |_, _, t, bounds, counts, _| {
        add(t, bounds, counts);
        Ok(())
    })
    .await
}

/// The HTTP server duration histogram of the semantic conventions.
pub const HTTP_SERVER_DURATION: &str = "http.server.request.duration";

/// Which RED figures to take from the duration histogram.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistogramRed<'a> {
    /// Only this service.
    pub service: Option<&'a str>,
    /// Only this operation (`"{method} {route}"`).
    pub operation: Option<&'a str>,
    /// One result per operation instead of per service.
    pub per_operation: bool,
    /// Services to leave out (those that have spans).
    pub exclude: &'a [String],
}

/// The operation name of a histogram point: `"{method} {route}"`, the span
/// name the conventions give an HTTP server span.
fn operation_of(method: &str, route: &str) -> String {
    match (method, route) {
        ("", route) => route.to_string(),
        (method, "") => method.to_string(),
        (method, route) => format!("{method} {route}"),
    }
}

type RedAcc = BTreeMap<(String, String, usize), (u64, HistAcc)>;

/// Merged duration histograms per (service, operation, bucket) with their
/// error counts, and each service's factor from its unit to ms.
async fn histogram_red(
    store: &Store,
    w: &Window,
    step_secs: i64,
    f: &HistogramRed<'_>,
) -> Result<(RedAcc, HashMap<String, f64>), RedError> {
    let keys: Vec<String> = [
        "service.name",
        "http.request.method",
        "http.route",
        "http.response.status_code",
    ]
    .map(String::from)
    .to_vec();
    let mut plan = Plan::new(HTTP_SERVER_DURATION, "histogram", &keys, w, step_secs)?;
    if let Some(s) = f.service {
        plan.filter = format!(" AND service_name = {}", quote(s));
    }
    if !f.exclude.is_empty() {
        let list: Vec<String> = f.exclude.iter().map(|s| quote(s)).collect();
        plan.filter
            .push_str(&format!(" AND service_name NOT IN ({})", list.join(", ")));
    }
    let mut scale_ms: HashMap<String, f64> = HashMap::new();
    let unit_sql = format!(
        "SELECT service_name, max(unit) AS unit FROM metric_points WHERE metric_name = {} \
         AND metric_type = 'histogram' AND time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({}){} GROUP BY 1",
        quote(HTTP_SERVER_DURATION),
        w.from_ns,
        w.to_ns,
        plan.filter
    );
    for b in run(store, &unit_sql).await? {
        let (s, u) = (strings(&b, "service_name")?, strings(&b, "unit")?);
        for i in 0..b.num_rows() {
            let scale = if value_of(&u, i) == "ms" { 1.0 } else { 1e3 };
            scale_ms.insert(value_of(&s, i).to_string(), scale);
        }
    }
    if scale_ms.is_empty() {
        return Ok((BTreeMap::new(), scale_ms));
    }
    let mut acc: RedAcc = BTreeMap::new();
    histogram_increases(store, &plan, |g, k, _, bounds, counts, sum| {
        let op = operation_of(&g[1], &g[2]);
        if f.operation.is_some_and(|o| o != op) {
            return Ok(());
        }
        let op = if f.per_operation { op } else { String::new() };
        let e = acc.entry((g[0].clone(), op, k)).or_default();
        if g[3].parse::<i64>().is_ok_and(|c| c >= 500) {
            e.0 += counts.iter().sum::<u64>();
        }
        e.1.add(bounds, counts, sum);
        Ok(())
    })
    .await?;
    Ok((acc, scale_ms))
}

fn quantiles_ms(h: &HistAcc, scale: f64) -> [Option<f64>; 4] {
    crate::red::SERIES_QUANTILES
        .map(|q| bucket_quantile(q, &h.bounds, &h.counts).map(|v| v * scale))
}

/// RED from the [`HTTP_SERVER_DURATION`] histogram over a window, per
/// service (or per operation, `"{method} {route}"`): requests are
/// observations, errors the observations with `http.response.status_code`
/// ≥ 500, percentiles interpolated in the buckets (so only as precise as the
/// bucket bounds). Durations in `s` (the conventions' unit) or `ms`.
pub async fn red_from_histogram(
    store: &Store,
    w: &Window,
    f: &HistogramRed<'_>,
) -> Result<Vec<Red>, RedError> {
    // One bucket covering the window.
    let secs = ((w.to_ns - w.from_ns + 999_999_999) / 1_000_000_000).max(1);
    let (acc, scale_ms) = histogram_red(store, w, secs, f).await?;
    let seconds = (w.to_ns - w.from_ns) as f64 / 1e9;
    Ok(acc
        .into_iter()
        .filter(|(_, (_, h))| h.count() > 0)
        .map(|((svc, op, _), (errors, h))| {
            let scale = scale_ms.get(&svc).copied().unwrap_or(1e3);
            let [p50, p90, p95, p99] = quantiles_ms(&h, scale).map(|v| v.unwrap_or(f64::NAN));
            let requests = h.count();
            Red {
                operation: f.per_operation.then_some(op),
                service: svc,
                requests,
                errors,
                rate: requests as f64 / seconds,
                error_ratio: errors as f64 / requests.max(1) as f64,
                p50_ms: p50,
                p90_ms: p90,
                p95_ms: p95,
                p99_ms: p99,
                source: RedSource::Histogram,
            }
        })
        .collect())
}

/// RED of one service (or operation) from the duration histogram as
/// `step_secs` buckets aligned to `w.from_ns`; every bucket is present.
pub async fn red_series_from_histogram(
    store: &Store,
    service: &str,
    operation: Option<&str>,
    w: &Window,
    step_secs: i64,
) -> Result<Vec<RedPoint>, RedError> {
    let (step_ns, buckets) = w.buckets(step_secs)?;
    let f = HistogramRed {
        service: Some(service),
        operation,
        ..Default::default()
    };
    let (acc, scale_ms) = histogram_red(store, w, step_secs, &f).await?;
    let scale = scale_ms.get(service).copied().unwrap_or(1e3);
    let mut by_bucket: HashMap<usize, (u64, HistAcc)> =
        acc.into_iter().map(|((_, _, k), v)| (k, v)).collect();
    Ok((0..buckets as usize)
        .map(|k| {
            let time_ns = w.from_ns + k as i64 * step_ns;
            match by_bucket.remove(&k) {
                Some((errors, h)) if h.count() > 0 => crate::red::point(
                    w,
                    time_ns,
                    step_ns,
                    (h.count(), errors),
                    quantiles_ms(&h, scale),
                ),
                _ => crate::red::point(w, time_ns, step_ns, (0, 0), [None; 4]),
            }
        })
        .collect())
}

/// One stored exemplar of a metric: when, the value, and its trace.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricExemplar {
    /// Exemplar time, ns.
    pub time_ns: i64,
    /// The measured value.
    pub value: f64,
    /// 32 hex characters.
    pub trace_id: String,
}

/// Exemplars with a trace id of metric `name` (as stored) in the window,
/// newest first, at most `limit`.
pub async fn exemplars(
    store: &Store,
    name: &str,
    w: &Window,
    limit: usize,
) -> Result<Vec<MetricExemplar>, RedError> {
    let sql = format!(
        "SELECT CAST(ex['time'] AS BIGINT) AS t, ex['value'] AS v, ex['trace_id'] AS tid FROM ( \
           SELECT unnest(exemplars) AS ex FROM metric_points \
           WHERE metric_name = {} AND time >= to_timestamp_nanos({}) - INTERVAL '1 hour' \
             AND time < to_timestamp_nanos({}) + INTERVAL '1 hour' AND cardinality(exemplars) > 0) \
         WHERE ex['time'] >= to_timestamp_nanos({}) AND ex['time'] < to_timestamp_nanos({}) \
           AND ex['trace_id'] IS NOT NULL AND ex['trace_id'] <> '' \
         ORDER BY t DESC LIMIT {limit}",
        quote(name),
        w.from_ns,
        w.to_ns,
        w.from_ns,
        w.to_ns,
    );
    let batches = store::query::collect(store, &sql)
        .await
        .map_err(|e| RedError::Query(e.to_string()))?;
    let mut out = Vec::new();
    for b in &batches {
        let t = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let v = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Float64)
            .map_err(|e| RedError::Query(e.to_string()))?;
        let v = v.as_primitive::<arrow::datatypes::Float64Type>();
        let tid = arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Utf8)
            .map_err(|e| RedError::Query(e.to_string()))?;
        let tid = tid.as_string::<i32>();
        for i in 0..b.num_rows() {
            if v.is_null(i) {
                continue;
            }
            out.push(MetricExemplar {
                time_ns: t.value(i),
                value: v.value(i),
                trace_id: tid.value(i).to_string(),
            });
        }
    }
    Ok(out)
}
