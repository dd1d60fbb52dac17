//! The PromQL evaluator, following Prometheus 2.42's engine.
//!
//! A query goes through these steps:
//!
//! 1. parse with `promql-parser`, then convert to the engine's own tree
//!    ([`ast::convert`]), rejecting what Prometheus 2.42 does not support;
//! 2. pre-process: resolve `@ start()`/`@ end()` and mark step-invariant
//!    sub-expressions ([`ast::preprocess`]);
//! 3. compute, for every vector selector, the time range the query reads
//!    from it (offsets, `@`, ranges, lookback and enclosing subqueries
//!    included) and call [`Queryable::select`] once per selector; what the
//!    source returns is filtered again (matchers and time range), sorted and
//!    de-duplicated;
//! 4. evaluate in memory over all steps at once, as Prometheus's evaluator
//!    does (`rangeEval`): every node yields a matrix with one point per
//!    step at which it has a value.
//!
//! Limits: `max_samples` (samples held in memory by the evaluation,
//! counted as Prometheus does), `max_loaded_samples` (raw samples loaded
//! from the source) and `timeout` (checked between selections and at
//! every evaluation step).

mod aggregate;
mod ast;
mod binary;
mod functions;
mod labels;
#[cfg(test)]
mod promqltest;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Once};
use std::time::Instant;

use promql_parser::parser::value::ValueType as PValueType;
use promql_parser::parser::{self as pp, Function};

use crate::types::{Error, Labels, Queryable, Sample, Selection, Series, Value, is_stale};
use ast::{BinOp, Node, Selector, ValueType};
use labels::Lbls;

/// Engine limits and defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_ms: i64,
    /// Most samples held in memory by one query (Prometheus: 50,000,000).
    pub max_samples: usize,
    /// Wall-clock limit of one query.
    pub timeout: std::time::Duration,
    /// Step of subqueries written without one (`x[1h:]`): Prometheus uses
    /// the global evaluation interval, 1m by default.
    pub default_subquery_step_ms: i64,
    /// Most raw samples one query may load from the source (after
    /// trimming to the time ranges it needs). Prometheus streams from
    /// storage and has no such limit; this engine holds what it loads in
    /// memory, so it bounds that separately from `max_samples`.
    pub max_loaded_samples: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: std::time::Duration::from_secs(120),
            default_subquery_step_ms: 60_000,
            max_loaded_samples: 50_000_000,
        }
    }
}

/// The PromQL engine.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    /// Its options.
    pub options: EngineOptions,
}

/// Most points a range query may return per series.
const MAX_POINTS: i64 = 11_000;

const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

static REGISTER_FUNCTIONS: Once = Once::new();

/// Registers with the parser the 2.42 functions it no longer knows.
fn register_legacy_functions() {
    REGISTER_FUNCTIONS.call_once(|| {
        // Ignoring the result: it only fails when the name is built in,
        // in which case the parser already accepts it.
        let _ = pp::register_extra_functions(vec![Function::new(
            "holt_winters",
            vec![PValueType::Matrix, PValueType::Scalar, PValueType::Scalar],
            0,
            PValueType::Vector,
            false,
        )]);
    });
}

/// Parses and converts a query.
fn parse_query(query: &str) -> Result<(pp::Expr, Node, Vec<ast::SelectorInfo>), Error> {
    register_legacy_functions();
    let expr = pp::parse(query).map_err(|e| Error::BadData(format!("parse error: {e}")))?;
    let mut selectors = Vec::new();
    let node = ast::convert(&expr, &mut selectors)?;
    Ok((expr, node, selectors))
}

impl Engine {
    /// An engine with these options.
    pub fn new(options: EngineOptions) -> Engine {
        Engine { options }
    }

    /// Parse only (for rule-file checks): `Err(Error::BadData(msg))` on a
    /// syntax error or a construct Prometheus 2.42 does not support.
    pub fn parse(query: &str) -> Result<pp::Expr, Error> {
        parse_query(query).map(|(expr, _, _)| expr)
    }

    /// Instant query at `at_ms`. The result is a `Scalar`, `String`,
    /// `Vector` (instant vector expression) or `Matrix` (range selector or
    /// subquery at the top).
    pub async fn instant(
        &self,
        source: &dyn Queryable,
        query: &str,
        at_ms: i64,
    ) -> Result<Value, Error> {
        let (_, node, selectors) = parse_query(query)?;
        self.exec(source, node, selectors, at_ms, at_ms, 0).await
    }

    /// Range query: evaluates at `start`, `start + step`, … `<= end` and
    /// returns a `Matrix` sorted by labels (a scalar expression gives one
    /// series with no labels).
    pub async fn range(
        &self,
        source: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, Error> {
        if step_ms <= 0 {
            return Err(Error::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
        }
        if end_ms < start_ms {
            return Err(Error::BadData(
                "end timestamp must not be before start time".into(),
            ));
        }
        if (end_ms as i128 - start_ms as i128) / step_ms as i128 > MAX_POINTS as i128 {
            return Err(Error::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                    .into(),
            ));
        }
        let (_, node, selectors) = parse_query(query)?;
        let t = node.value_type();
        if t != ValueType::Scalar && t != ValueType::Vector {
            return Err(Error::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                t.documented()
            )));
        }
        self.exec(source, node, selectors, start_ms, end_ms, step_ms)
            .await
    }

    async fn exec(
        &self,
        source: &dyn Queryable,
        node: Node,
        selectors: Vec<ast::SelectorInfo>,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Value, Error> {
        let began = Instant::now();
        let deadline = began.checked_add(self.options.timeout);
        let top_type = node.value_type();
        let keep_order =
            matches!(&node, Node::Call { func, .. } if *func == "sort" || *func == "sort_desc");
        let mut node = ast::preprocess(node, start, end);
        let lookback = self.options.lookback_ms.max(0);
        let ranges = ast::selection_ranges(&node, selectors.len(), start, end, lookback);
        let max_samples = i64::try_from(self.options.max_samples).unwrap_or(i64::MAX);
        let max_loaded = i64::try_from(self.options.max_loaded_samples).unwrap_or(i64::MAX);

        let mut data: Vec<Vec<ESeries>> = Vec::with_capacity(selectors.len());
        // Selectors with the same matchers and time range are read once.
        let mut seen: HashMap<(String, i64, i64), usize> = HashMap::new();
        // Index into `data` of each selector.
        let mut slots: Vec<usize> = Vec::with_capacity(selectors.len());
        let mut loaded: i64 = 0;
        for (info, &(min_t, max_t)) in selectors.iter().zip(&ranges) {
            let key = (format!("{:?}", info.matchers), min_t, max_t);
            if let Some(&i) = seen.get(&key) {
                slots.push(i);
                continue;
            }
            let selection = Selection {
                matchers: info.matchers.clone(),
                start_ms: min_t,
                end_ms: max_t,
            };
            let raw = source.select(&selection).await?;
            let series = prepare_series(raw, info, min_t, max_t);
            loaded = loaded.saturating_add(series.iter().map(|s| s.points.len() as i64).sum());
            if loaded > max_loaded {
                return Err(Error::Execution(TOO_MANY_SAMPLES.into()));
            }
            seen.insert(key, data.len());
            slots.push(data.len());
            data.push(series);
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Err(Error::Timeout("query preparation".into()));
            }
        }

        ast::set_offset_for_at_modifier(start, &mut node);
        let options = EvalOptions {
            start,
            end,
            step,
            lookback,
            max_samples,
            subquery_step: self.options.default_subquery_step_ms.max(1),
            deadline,
            top_type,
            keep_order,
        };
        // Evaluation is CPU work without awaits: inside a Tokio runtime it
        // runs on the blocking pool, at most one query per core at a time,
        // so a heavy query cannot stall the runtime's workers.
        if tokio::runtime::Handle::try_current().is_err() {
            return evaluate(node, &data, &slots, &options);
        }
        let _permit = match evaluation_slots().acquire().await {
            Ok(p) => p,
            Err(_) => return Err(Error::Execution("the query engine is shutting down".into())),
        };
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(Error::Timeout("queue".into()));
        }
        tokio::task::spawn_blocking(move || evaluate(node, &data, &slots, &options))
            .await
            .map_err(|e| Error::Execution(format!("query evaluation failed: {e}")))?
    }
}

/// What [`evaluate`] needs besides the tree and the loaded series.
struct EvalOptions {
    start: i64,
    end: i64,
    step: i64,
    lookback: i64,
    max_samples: i64,
    subquery_step: i64,
    deadline: Option<Instant>,
    top_type: ValueType,
    keep_order: bool,
}

/// Evaluations running at once in this process: one per core.
fn evaluation_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    })
}

/// Evaluates a pre-processed tree over the loaded series.
fn evaluate(
    mut node: Node,
    data: &[Vec<ESeries>],
    slots: &[usize],
    o: &EvalOptions,
) -> Result<Value, Error> {
    let EvalOptions {
        start,
        end,
        step,
        lookback,
        max_samples,
        subquery_step,
        deadline,
        top_type,
        keep_order,
    } = *o;
    {
        let instant = step == 0;
        let mut ev = Evaluator {
            start,
            end,
            interval: if instant { 1 } else { step },
            lookback,
            max_samples,
            current_samples: 0,
            subquery_step,
            data,
            slots,
            deadline,
        };
        let val = ev.eval(&mut node)?;
        let mat = match val {
            EvalValue::String(s) => return Ok(Value::String(start, s)),
            EvalValue::Matrix(m) => m,
        };
        if instant {
            return Ok(match top_type {
                ValueType::Vector => {
                    let mut v: Vec<Sample> = mat
                        .into_iter()
                        .filter_map(|s| {
                            s.points.first().map(|p| Sample {
                                labels: unwrap_labels(s.labels),
                                t: start,
                                v: p.1,
                            })
                        })
                        .collect();
                    if !keep_order {
                        v.sort_by(|a, b| a.labels.cmp(&b.labels));
                    }
                    Value::Vector(v)
                }
                ValueType::Scalar => {
                    let v = mat
                        .first()
                        .and_then(|s| s.points.first())
                        .map(|p| p.1)
                        .unwrap_or(f64::NAN);
                    Value::Scalar(start, v)
                }
                _ => Value::Matrix(to_output_matrix(mat)),
            });
        }
        Ok(Value::Matrix(to_output_matrix(mat)))
    }
}

fn unwrap_labels(l: Lbls) -> Labels {
    Arc::try_unwrap(l).unwrap_or_else(|a| (*a).clone())
}

fn to_output_matrix(mat: Matrix) -> Vec<Series> {
    let mut out: Vec<Series> = mat
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .map(|s| Series {
            labels: unwrap_labels(s.labels),
            samples: s.points,
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// Filters what a source returned (matchers, time range), sorts samples,
/// merges series with equal labels and sorts series by labels.
fn prepare_series(
    raw: Vec<Series>,
    info: &ast::SelectorInfo,
    min_t: i64,
    max_t: i64,
) -> Vec<ESeries> {
    let mut by_labels: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
    for s in raw {
        let labels = Labels::new(s.labels.0);
        let ok = info
            .filter
            .iter()
            .all(|m| m.is_match(labels.get(&m.name).unwrap_or("")));
        if !ok {
            continue;
        }
        let samples = s
            .samples
            .into_iter()
            .filter(|(t, _)| *t >= min_t && *t <= max_t);
        by_labels.entry(labels).or_default().extend(samples);
    }
    let mut out: Vec<ESeries> = by_labels
        .into_iter()
        .filter_map(|(labels, mut points)| {
            if points.is_empty() {
                return None;
            }
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            Some(ESeries {
                labels: Arc::new(labels),
                points,
            })
        })
        .collect();
    out.sort_by(|a, b| a.labels.cmp(&b.labels));
    out
}

/// One element of an instant vector during evaluation.
#[derive(Debug, Clone)]
pub(crate) struct ESample {
    pub labels: Lbls,
    /// The sample's time: the step time, or for selectors read by
    /// `timestamp()` the raw sample's time.
    pub t: i64,
    pub v: f64,
}

/// An instant vector during evaluation.
pub(crate) type Vector = Vec<ESample>;

/// A series during evaluation: points at step times (or raw samples).
#[derive(Debug, Clone)]
pub(crate) struct ESeries {
    pub labels: Lbls,
    pub points: Vec<(i64, f64)>,
}

/// A range vector, or the per-step result of any expression.
pub(crate) type Matrix = Vec<ESeries>;

/// What evaluating a node gives.
#[derive(Debug)]
pub(crate) enum EvalValue {
    Matrix(Matrix),
    String(String),
}

fn has_duplicate_labels<'a>(labels: impl Iterator<Item = &'a Lbls>) -> bool {
    let mut seen = std::collections::HashSet::new();
    for l in labels {
        if !seen.insert(&**l) {
            return true;
        }
    }
    false
}

fn same_labelset_error() -> Error {
    Error::Execution("vector cannot contain metrics with the same labelset".into())
}

fn too_many_samples() -> Error {
    Error::Execution(TOO_MANY_SAMPLES.into())
}

/// Collects per-step result vectors into series.
struct StepCollector {
    series: Vec<ESeries>,
    index: HashMap<Lbls, usize>,
}

impl StepCollector {
    fn new() -> Self {
        StepCollector {
            series: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn add(&mut self, ts: i64, result: Vector) {
        for s in result {
            match self.index.get(&s.labels) {
                Some(&i) => self.series[i].points.push((ts, s.v)),
                None => {
                    self.index.insert(s.labels.clone(), self.series.len());
                    self.series.push(ESeries {
                        labels: s.labels,
                        points: vec![(ts, s.v)],
                    });
                }
            }
        }
    }
}

/// Arguments of a range-vector function at one step.
pub(crate) struct RangeCtx<'a> {
    /// Evaluation time.
    pub ts: i64,
    /// Window start (`ts - offset - range`) and end (`ts - offset`).
    pub range_start: i64,
    pub range_end: i64,
    /// Range length (ms).
    pub range: i64,
    /// Values of the scalar arguments at this step, by argument index.
    pub scalars: &'a [f64],
}

/// Computes the grouping key or matching signature of a label set.
type KeyFn<'a> = dyn Fn(&Labels) -> Vec<u8> + 'a;

/// One step of `range_eval`: the input vectors, the keys of their
/// elements and the step time give the step's output vector.
type StepFn<'a> = dyn FnMut(&[Vector], &[Vec<&[u8]>], i64) -> Result<Vector, Error> + 'a;

/// Evaluates a tree over a fixed set of steps.
pub(crate) struct Evaluator<'a> {
    start: i64,
    end: i64,
    interval: i64,
    lookback: i64,
    max_samples: i64,
    current_samples: i64,
    subquery_step: i64,
    /// Loaded series, and the index into them of each selector.
    data: &'a [Vec<ESeries>],
    slots: &'a [usize],
    deadline: Option<Instant>,
}

impl<'a> Evaluator<'a> {
    fn child(&self, start: i64, end: i64, interval: i64) -> Evaluator<'a> {
        Evaluator {
            start,
            end,
            interval,
            lookback: self.lookback,
            max_samples: self.max_samples,
            current_samples: self.current_samples,
            subquery_step: self.subquery_step,
            data: self.data,
            slots: self.slots,
            deadline: self.deadline,
        }
    }

    /// Counts one step's result against the sample limit (kept in
    /// `temp_samples` across the steps of one node), refusing a vector
    /// with two samples of the same labels.
    fn account_step(&mut self, result: &Vector, temp_samples: &mut i64) -> Result<(), Error> {
        if has_duplicate_labels(result.iter().map(|s| &s.labels)) {
            return Err(same_labelset_error());
        }
        let n = result.len() as i64;
        self.current_samples += n;
        *temp_samples += n;
        if self.current_samples > self.max_samples {
            return Err(too_many_samples());
        }
        Ok(())
    }

    fn check_deadline(&self) -> Result<(), Error> {
        if self.deadline.is_some_and(|d| Instant::now() > d) {
            return Err(Error::Timeout("expression evaluation".into()));
        }
        Ok(())
    }

    /// The loaded series of a selector.
    fn series_of(&self, vs: &Selector) -> &'a [ESeries] {
        self.slots
            .get(vs.id)
            .and_then(|&i| self.data.get(i))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The number of steps.
    fn step_count(&self) -> u64 {
        if self.end < self.start {
            return 0;
        }
        let span = self.end as i128 - self.start as i128;
        let n = span / self.interval.max(1) as i128 + 1;
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// The step times.
    fn steps(&self) -> impl Iterator<Item = i64> + use<> {
        let (start, interval) = (self.start as i128, self.interval.max(1) as i128);
        (0..self.step_count()).map(move |i| (start + i as i128 * interval) as i64)
    }

    /// Checks the deadline every 4096 calls.
    fn tick(&self, counter: &mut u32) -> Result<(), Error> {
        *counter = counter.wrapping_add(1);
        if counter.is_multiple_of(4096) {
            self.check_deadline()?;
        }
        Ok(())
    }

    fn eval_matrix(&mut self, node: &mut Node) -> Result<Matrix, Error> {
        match self.eval(node)? {
            EvalValue::Matrix(m) => Ok(m),
            EvalValue::String(_) => Ok(Vec::new()),
        }
    }

    /// Evaluates the non-string nodes (strings give `None`).
    fn eval_args(&mut self, nodes: &mut [&mut Node]) -> Result<Vec<Option<Matrix>>, Error> {
        let mut out = Vec::with_capacity(nodes.len());
        for n in nodes.iter_mut() {
            if n.value_type() == ValueType::String {
                out.push(None);
            } else {
                out.push(Some(self.eval_matrix(n)?));
            }
        }
        Ok(out)
    }

    /// Prometheus's `rangeEval`: feeds `f` the input vectors of each step
    /// (and, when `key` is given, each input sample's key) and assembles
    /// its results into series.
    fn range_eval(
        &mut self,
        inputs: Vec<Option<Matrix>>,
        key: Option<&KeyFn<'_>>,
        original_samples: i64,
        f: &mut StepFn<'_>,
    ) -> Result<Matrix, Error> {
        let inputs: Vec<Matrix> = inputs.into_iter().map(Option::unwrap_or_default).collect();
        let keys: Vec<Vec<Vec<u8>>> = match key {
            Some(k) => inputs
                .iter()
                .map(|m| m.iter().map(|s| k(&s.labels)).collect())
                .collect(),
            None => inputs.iter().map(|_| Vec::new()).collect(),
        };
        let mut pos: Vec<Vec<usize>> = inputs.iter().map(|m| vec![0; m.len()]).collect();
        let mut vectors: Vec<Vector> = inputs.iter().map(|m| Vec::with_capacity(m.len())).collect();
        let mut temp_samples = self.current_samples;
        let mut out = StepCollector::new();
        for ts in self.steps() {
            self.check_deadline()?;
            self.current_samples = temp_samples;
            let mut bufs: Vec<Vec<&[u8]>> = Vec::with_capacity(inputs.len());
            for (i, m) in inputs.iter().enumerate() {
                vectors[i].clear();
                let mut buf = Vec::new();
                for (si, s) in m.iter().enumerate() {
                    let p = pos[i][si];
                    if let Some(&(t, v)) = s.points.get(p)
                        && t == ts
                    {
                        if self.current_samples >= self.max_samples {
                            return Err(too_many_samples());
                        }
                        vectors[i].push(ESample {
                            labels: s.labels.clone(),
                            t,
                            v,
                        });
                        if key.is_some() {
                            buf.push(keys[i][si].as_slice());
                        }
                        pos[i][si] = p + 1;
                        self.current_samples += 1;
                    }
                }
                bufs.push(buf);
            }
            let result = f(&vectors, &bufs, ts)?;
            self.account_step(&result, &mut temp_samples)?;
            if self.start == self.end {
                let mat: Matrix = result
                    .into_iter()
                    .map(|s| ESeries {
                        labels: s.labels,
                        points: vec![(ts, s.v)],
                    })
                    .collect();
                self.current_samples = original_samples + mat.len() as i64;
                return Ok(mat);
            }
            out.add(ts, result);
        }
        let mat = out.series;
        let total: i64 = mat.iter().map(|s| s.points.len() as i64).sum();
        self.current_samples = original_samples + total;
        Ok(mat)
    }

    /// The latest non-stale sample of `points` at `ts` within the
    /// lookback window (Prometheus's `vectorSelectorSingle`).
    fn select_single(&self, points: &[(i64, f64)], offset: i64, ts: i64) -> Option<(i64, f64)> {
        let ref_time = ts.saturating_sub(offset);
        let idx = points.partition_point(|p| p.0 <= ref_time);
        if idx == 0 {
            return None;
        }
        let (t, v) = points[idx - 1];
        if t < ref_time.saturating_sub(self.lookback) || is_stale(v) {
            return None;
        }
        Some((t, v))
    }

    /// An instant vector selector at one time, sample times kept.
    fn vector_selector_at(&mut self, vs: &Selector, ts: i64) -> Result<Vector, Error> {
        let series = self.series_of(vs);
        let mut out = Vec::new();
        for s in series {
            if let Some((t, v)) = self.select_single(&s.points, vs.offset, ts) {
                out.push(ESample {
                    labels: s.labels.clone(),
                    t,
                    v,
                });
                self.current_samples += 1;
                if self.current_samples > self.max_samples {
                    return Err(too_many_samples());
                }
            }
        }
        Ok(out)
    }

    /// The non-stale points of `points` in `[mint, maxt]`.
    fn window(points: &[(i64, f64)], mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        out.clear();
        let lo = points.partition_point(|p| p.0 < mint);
        let hi = points.partition_point(|p| p.0 <= maxt);
        if lo < hi {
            out.extend(points[lo..hi].iter().filter(|p| !is_stale(p.1)));
        }
    }

    /// Evaluates a node over the evaluator's steps.
    pub(crate) fn eval(&mut self, node: &mut Node) -> Result<EvalValue, Error> {
        self.check_deadline()?;
        let mat = match node {
            Node::Aggregate {
                op,
                expr,
                param,
                grouping,
                without,
            } => {
                let (op, without) = (*op, *without);
                let grouping: &[String] = grouping;
                let key = |l: &Labels| labels::grouping_key(l, grouping, without);
                let original = self.current_samples;
                let string_param = match param.as_deref().map(Node::unwrap_step_invariant) {
                    Some(Node::Str(s)) => Some(s.clone()),
                    _ => None,
                };
                if let Some(s) = string_param {
                    let m = self.eval_matrix(expr)?;
                    self.range_eval(vec![Some(m)], Some(&key), original, &mut |v, sh, _| {
                        aggregate::aggregate(
                            op,
                            grouping,
                            without,
                            aggregate::Param::Label(&s),
                            &v[0],
                            &sh[0],
                        )
                    })?
                } else {
                    let has_param = param.is_some();
                    let pm = match param {
                        Some(p) => Some(self.eval_matrix(p)?),
                        None => None,
                    };
                    let m = self.eval_matrix(expr)?;
                    self.range_eval(vec![pm, Some(m)], Some(&key), original, &mut |v, sh, _| {
                        let p = if has_param {
                            v[0].first().map(|s| s.v).unwrap_or(f64::NAN)
                        } else {
                            0.0
                        };
                        aggregate::aggregate(
                            op,
                            grouping,
                            without,
                            aggregate::Param::Number(p),
                            &v[1],
                            &sh[1],
                        )
                    })?
                }
            }
            Node::Call { func, args } => self.eval_call(func, args)?,
            Node::Neg(e) => {
                let mut mat = self.eval_matrix(e)?;
                for s in &mut mat {
                    s.labels = labels::drop_metric_name(&s.labels);
                    for p in &mut s.points {
                        p.1 = -p.1;
                    }
                }
                if has_duplicate_labels(mat.iter().map(|s| &s.labels)) {
                    return Err(same_labelset_error());
                }
                mat
            }
            Node::Binary {
                op,
                lhs,
                rhs,
                matching,
                return_bool,
            } => {
                let (op, return_bool) = (*op, *return_bool);
                let lt = lhs.value_type();
                let rt = rhs.value_type();
                let original = self.current_samples;
                let l = self.eval_matrix(lhs)?;
                let r = self.eval_matrix(rhs)?;
                let inputs = vec![Some(l), Some(r)];
                match (lt, rt) {
                    (ValueType::Scalar, ValueType::Scalar) => {
                        self.range_eval(inputs, None, original, &mut |v, _, _| {
                            let a = v[0].first().map(|s| s.v).unwrap_or(f64::NAN);
                            let b = v[1].first().map(|s| s.v).unwrap_or(f64::NAN);
                            Ok(vec![ESample {
                                labels: labels::empty(),
                                t: 0,
                                v: binary::scalar_binop(op, a, b),
                            }])
                        })?
                    }
                    (ValueType::Vector, ValueType::Vector) => {
                        let Some(m) = matching.as_ref() else {
                            return Err(Error::Internal("missing vector matching".into()));
                        };
                        let key = |l: &Labels| labels::signature(l, m.on, &m.labels);
                        self.range_eval(inputs, Some(&key), original, &mut |v, sh, _| match op {
                            BinOp::And => Ok(binary::vector_and(&v[0], &v[1], &sh[0], &sh[1])),
                            BinOp::Or => Ok(binary::vector_or(&v[0], &v[1], &sh[0], &sh[1])),
                            BinOp::Unless => {
                                Ok(binary::vector_unless(&v[0], &v[1], &sh[0], &sh[1]))
                            }
                            _ => binary::vector_binop(
                                op,
                                &v[0],
                                &v[1],
                                m,
                                return_bool,
                                &sh[0],
                                &sh[1],
                            ),
                        })?
                    }
                    (ValueType::Vector, _) => {
                        self.range_eval(inputs, None, original, &mut |v, _, _| {
                            let s = v[1].first().map(|s| s.v).unwrap_or(f64::NAN);
                            Ok(binary::vector_scalar_binop(
                                op,
                                &v[0],
                                s,
                                false,
                                return_bool,
                            ))
                        })?
                    }
                    _ => self.range_eval(inputs, None, original, &mut |v, _, _| {
                        let s = v[0].first().map(|s| s.v).unwrap_or(f64::NAN);
                        Ok(binary::vector_scalar_binop(op, &v[1], s, true, return_bool))
                    })?,
                }
            }
            Node::Number(n) => {
                let n = *n;
                let original = self.current_samples;
                self.range_eval(Vec::new(), None, original, &mut |_, _, _| {
                    Ok(vec![ESample {
                        labels: labels::empty(),
                        t: 0,
                        v: n,
                    }])
                })?
            }
            Node::Str(s) => return Ok(EvalValue::String(s.clone())),
            Node::Vector(vs) => self.eval_vector_selector(vs)?,
            Node::Matrix { vs, range } => {
                if self.start != self.end {
                    return Err(Error::Internal(
                        "cannot do range evaluation of matrix selector".into(),
                    ));
                }
                self.eval_matrix_selector(vs, *range)?
            }
            Node::Subquery(sq) => {
                let offset = sq.offset;
                let range = sq.range;
                let interval = if sq.step != 0 {
                    sq.step
                } else {
                    self.subquery_step
                };
                let end = self.end.saturating_sub(offset);
                let lower = self.start.saturating_sub(offset).saturating_sub(range);
                let mut start = interval.saturating_mul(lower / interval);
                if start < lower {
                    start = start.saturating_add(interval);
                }
                if start != self.start {
                    ast::set_offset_for_at_modifier(start, &mut sq.expr);
                }
                let mut child = self.child(start, end, interval);
                let res = child.eval_matrix(&mut sq.expr)?;
                self.current_samples = child.current_samples;
                res
            }
            Node::StepInvariant(inner) => {
                if matches!(**inner, Node::Number(_) | Node::Str(_)) {
                    return self.eval(inner);
                }
                let mut child = self.child(self.start, self.start, self.interval);
                let res = child.eval(inner)?;
                self.current_samples = child.current_samples;
                let mut mat = match res {
                    EvalValue::Matrix(m) => m,
                    other => return Ok(other),
                };
                if matches!(**inner, Node::Matrix { .. } | Node::Subquery(_)) {
                    return Ok(EvalValue::Matrix(mat));
                }
                let mut ticks = 0;
                for s in &mut mat {
                    let Some(&(_, v)) = s.points.first() else {
                        continue;
                    };
                    s.points.truncate(1);
                    for ts in self.steps().skip(1) {
                        self.tick(&mut ticks)?;
                        s.points.push((ts, v));
                        self.current_samples += 1;
                        if self.current_samples > self.max_samples {
                            return Err(too_many_samples());
                        }
                    }
                }
                mat
            }
        };
        Ok(EvalValue::Matrix(mat))
    }

    fn eval_vector_selector(&mut self, vs: &Selector) -> Result<Matrix, Error> {
        let series = self.series_of(vs);
        let mut mat = Vec::new();
        let mut ticks = 0;
        for s in series {
            self.check_deadline()?;
            let mut points = Vec::new();
            for ts in self.steps() {
                self.tick(&mut ticks)?;
                if let Some((_, v)) = self.select_single(&s.points, vs.offset, ts) {
                    if self.current_samples < self.max_samples {
                        points.push((ts, v));
                        self.current_samples += 1;
                    } else {
                        return Err(too_many_samples());
                    }
                }
            }
            if !points.is_empty() {
                mat.push(ESeries {
                    labels: s.labels.clone(),
                    points,
                });
            }
        }
        Ok(mat)
    }

    fn eval_matrix_selector(&mut self, vs: &Selector, range: i64) -> Result<Matrix, Error> {
        let series = self.series_of(vs);
        let maxt = self.start.saturating_sub(vs.offset);
        let mint = maxt.saturating_sub(range);
        let mut mat = Vec::new();
        let mut buf = Vec::new();
        for s in series {
            self.check_deadline()?;
            Self::window(&s.points, mint, maxt, &mut buf);
            if self.current_samples + buf.len() as i64 > self.max_samples {
                return Err(too_many_samples());
            }
            self.current_samples += buf.len() as i64;
            if !buf.is_empty() {
                mat.push(ESeries {
                    labels: s.labels.clone(),
                    points: buf.clone(),
                });
            }
        }
        Ok(mat)
    }

    fn eval_call(&mut self, func: &'static str, args: &mut [Node]) -> Result<Matrix, Error> {
        // timestamp() of a selector reads the raw samples' times.
        if func == "timestamp"
            && let Some(Node::Vector(vs)) = args.first_mut().map(Node::unwrap_step_invariant_mut)
        {
            return self.eval_timestamp_of_selector(vs);
        }

        let matrix_idx = args.iter().position(|a| {
            matches!(
                a.unwrap_step_invariant(),
                Node::Matrix { .. } | Node::Subquery(_)
            )
        });
        let Some(matrix_idx) = matrix_idx else {
            let original = self.current_samples;
            let mut refs: Vec<&mut Node> = args.iter_mut().collect();
            let inputs = self.eval_args(&mut refs)?;
            let args: &[Node] = args;
            let mut state = functions::State::default();
            return self.range_eval(inputs, None, original, &mut |v, _, ts| {
                functions::call_instant(func, v, args, ts, &mut state)
            });
        };

        // A subquery argument is evaluated first, like Prometheus's
        // evalSubquery, and then read like a range selector.
        let mut subquery: Option<(Matrix, i64, i64, i64)> = None;
        if let Node::Subquery(sq) = args[matrix_idx].unwrap_step_invariant_mut() {
            let (range, mut offset, ts, orig) =
                (sq.range, sq.offset, sq.timestamp, sq.original_offset);
            if let Some(t) = ts {
                offset = orig.saturating_add(self.start.saturating_sub(t));
            }
            let node = args[matrix_idx].unwrap_step_invariant_mut();
            let m = self.eval_matrix(node)?;
            let total: i64 = m.iter().map(|s| s.points.len() as i64).sum();
            subquery = Some((m, range, offset, total));
        }

        let mut others: Vec<Option<Matrix>> = Vec::with_capacity(args.len());
        for (i, a) in args.iter_mut().enumerate() {
            if i == matrix_idx || a.value_type() == ValueType::String {
                others.push(None);
            } else {
                others.push(Some(self.eval_matrix(a)?));
            }
        }

        let (series, range, offset, subquery_total): (&[ESeries], i64, i64, i64) = match &subquery {
            Some((m, range, offset, total)) => (m.as_slice(), *range, *offset, *total),
            None => match args[matrix_idx].unwrap_step_invariant() {
                Node::Matrix { vs, range } => (self.series_of(vs), *range, vs.offset, 0),
                _ => return Err(Error::Internal("matrix argument expected".into())),
            },
        };

        let mut scalars = vec![f64::NAN; args.len()];
        let mut ticks = 0;
        let mut mat: Matrix = Vec::new();
        let mut points = Vec::new();
        let mut window_len: i64 = 0;
        for s in series {
            self.check_deadline()?;
            self.current_samples -= window_len;
            window_len = 0;
            let labels = if func == "last_over_time" {
                s.labels.clone()
            } else {
                labels::drop_metric_name(&s.labels)
            };
            let mut out_points = Vec::new();
            for (step, ts) in self.steps().enumerate() {
                self.tick(&mut ticks)?;
                for (j, o) in others.iter().enumerate() {
                    if let Some(m) = o {
                        scalars[j] = m
                            .first()
                            .and_then(|s| s.points.get(step))
                            .map(|p| p.1)
                            .unwrap_or(f64::NAN);
                    }
                }
                let maxt = ts.saturating_sub(offset);
                let mint = maxt.saturating_sub(range);
                Self::window(&s.points, mint, maxt, &mut points);
                self.current_samples += points.len() as i64 - window_len;
                window_len = points.len() as i64;
                if self.current_samples > self.max_samples {
                    return Err(too_many_samples());
                }
                if points.is_empty() {
                    continue;
                }
                let ctx = RangeCtx {
                    ts,
                    range_start: mint,
                    range_end: maxt,
                    range,
                    scalars: &scalars,
                };
                if let Some(v) = functions::call_range(func, &points, &ctx)? {
                    out_points.push((ts, v));
                }
            }
            if !out_points.is_empty() {
                if self.current_samples + out_points.len() as i64 <= self.max_samples {
                    self.current_samples += out_points.len() as i64;
                    mat.push(ESeries {
                        labels,
                        points: out_points,
                    });
                } else {
                    return Err(too_many_samples());
                }
            }
        }
        self.current_samples -= window_len;
        self.current_samples -= subquery_total;

        if func == "absent_over_time" {
            let n = usize::try_from(self.step_count()).unwrap_or(usize::MAX);
            if mat.iter().any(|s| s.points.len() == n) {
                return Ok(Vec::new());
            }
            let mut found = std::collections::HashSet::new();
            for s in &mat {
                for p in &s.points {
                    found.insert(p.0);
                }
            }
            if found.len() == n {
                return Ok(Vec::new());
            }
            let labels = match args[matrix_idx].unwrap_step_invariant() {
                Node::Matrix { vs, .. } => functions::absent_labels(&vs.matchers),
                _ => labels::empty(),
            };
            let mut points = Vec::new();
            for t in self.steps() {
                self.tick(&mut ticks)?;
                if !found.contains(&t) {
                    points.push((t, 1.0));
                    if points.len() as i64 > self.max_samples {
                        return Err(too_many_samples());
                    }
                }
            }
            return Ok(vec![ESeries { labels, points }]);
        }

        if has_duplicate_labels(mat.iter().map(|s| &s.labels)) {
            return Err(same_labelset_error());
        }
        Ok(mat)
    }

    /// `timestamp(selector)`: the time of the sample each series has at
    /// each step.
    fn eval_timestamp_of_selector(&mut self, vs: &mut Selector) -> Result<Matrix, Error> {
        let original = self.current_samples;
        let mut temp_samples = self.current_samples;
        let mut out = StepCollector::new();
        let single = self.start == self.end;
        for ts in self.steps() {
            self.check_deadline()?;
            self.current_samples = temp_samples;
            if let Some(t) = vs.timestamp {
                vs.offset = ts.saturating_sub(t);
            }
            let vec = self.vector_selector_at(vs, ts)?;
            let result: Vector = vec
                .into_iter()
                .map(|s| ESample {
                    labels: labels::drop_metric_name(&s.labels),
                    t: ts,
                    v: s.t as f64 / 1000.0,
                })
                .collect();
            self.account_step(&result, &mut temp_samples)?;
            if single {
                self.current_samples = original + result.len() as i64;
                return Ok(result
                    .into_iter()
                    .map(|s| ESeries {
                        labels: s.labels,
                        points: vec![(ts, s.v)],
                    })
                    .collect());
            }
            out.add(ts, result);
        }
        let total: i64 = out.series.iter().map(|s| s.points.len() as i64).sum();
        self.current_samples = original + total;
        Ok(out.series)
    }
}
