//! Scalar functions under the query's memory budget.
//!
//! DataFusion accounts the memory of joins, sorts and aggregations against
//! a query's pool, but a scalar function allocates its result unaccounted:
//! `repeat('x', 2147483647)` builds 2 GiB in one call, and no time limit can
//! stop a single call once it runs. Every scalar function of a user query's
//! session is therefore wrapped in [`Budgeted`]:
//!
//! - before the call, functions whose result can be far larger than their
//!   arguments (`repeat`, `lpad`, `rpad`, `replace`, `regexp_replace`,
//!   `array_repeat`, `array_resize`, `range`, `generate_series`) estimate
//!   an upper bound of the bytes they will build from their arguments, and
//!   `levenshtein` estimates its work (the product of the two lengths);
//! - after the call, the result's actual size is checked (this covers the
//!   functions whose result is at most a small multiple of their arguments,
//!   such as `concat`, so nesting them cannot grow past the budget either).
//!
//! Both checks reserve the bytes from the query's memory pool, next to what
//! its operators hold, and fail with `ResourcesExhausted` when the pool
//! cannot give them; the reservation is returned right after the check.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, FieldRef, IntervalUnit, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
};
use datafusion::prelude::SessionContext;

/// Most character comparisons one `levenshtein` call may make (its cost is
/// the product of the two lengths; this is about a second of CPU).
pub const MAX_LEVENSHTEIN_WORK: f64 = (1u64 << 28) as f64;

/// Wraps every scalar function registered in `ctx` so that its results
/// count against `ctx`'s memory pool.
/// `limit` is the pool's size, for messages.
pub fn install(ctx: &SessionContext, limit: usize) {
    let pool = Arc::clone(&ctx.runtime_env().memory_pool);
    let state = ctx.state();
    let functions: Vec<Arc<ScalarUDF>> = state
        .scalar_functions()
        .iter()
        .filter(|(key, f)| key.as_str() == f.name())
        .map(|(_, f)| Arc::clone(f))
        .collect();
    for f in functions {
        ctx.register_udf(ScalarUDF::new_from_impl(Budgeted {
            inner: f.as_ref().clone(),
            pool: Arc::clone(&pool),
            limit,
        }));
    }
}

/// A scalar function whose results are checked against a memory pool.
#[derive(Debug)]
pub struct Budgeted {
    inner: ScalarUDF,
    pool: Arc<dyn MemoryPool>,
    limit: usize,
}

impl PartialEq for Budgeted {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for Budgeted {}

impl Hash for Budgeted {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

fn exhausted(message: String) -> DataFusionError {
    DataFusionError::ResourcesExhausted(message)
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes:.0} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl Budgeted {
    /// Reserves `bytes` from the pool for a moment: fails if the pool
    /// cannot give them.
    fn check(&self, bytes: f64, what: &str) -> Result<()> {
        let name = self.inner.name();
        let reservation = MemoryConsumer::new(format!("function {name}")).register(&self.pool);
        let fits = bytes.is_finite()
            && bytes <= usize::MAX as f64
            && reservation.try_grow(bytes as usize).is_ok();
        if fits {
            return Ok(());
        }
        Err(exhausted(format!(
            "{name}() {what} {}; the query may use {} (the query's memory limit) and has {} left",
            human(bytes),
            human(self.limit as f64),
            human(self.limit.saturating_sub(self.pool.reserved()) as f64),
        )))
    }

    /// An upper bound of the bytes (or, for `levenshtein`, the work) of a
    /// call, for the functions whose result can be much larger than their
    /// arguments.
    fn estimate(&self, args: &ScalarFunctionArgs) -> Option<(f64, &'static str)> {
        let rows = args.number_rows.max(1);
        let a = &args.args;
        let build = "would build";
        Some(match self.inner.name() {
            "repeat" => (
                sum_product(rows, &[byte_lengths(a.first()?)?, counts(a.get(1)?)?]),
                build,
            ),
            "lpad" | "rpad" => {
                let fill = match a.get(2) {
                    Some(f) => byte_lengths(f)?.map(|b| b.clamp(1.0, 4.0)),
                    None => PerRow::Const(1.0),
                };
                let padded = sum_product(rows, &[counts(a.get(1)?)?, fill]);
                (padded + sum(rows, &byte_lengths(a.first()?)?), build)
            }
            "replace" => {
                let text = byte_lengths(a.first()?)?;
                let from = byte_lengths(a.get(1)?)?;
                let to = byte_lengths(a.get(2)?)?;
                // At most one match per `from` bytes (per character for an
                // empty `from`, with one more at the end).
                let matches = text.zip(&from, |t, f| (t + 1.0) / f.max(1.0));
                (sum(rows, &text) + sum_product(rows, &[matches, to]), build)
            }
            "regexp_replace" => {
                // Each match (at most one per byte, plus one) writes the
                // replacement, whose group references each copy at most the
                // whole text over all matches.
                let text = byte_lengths(a.first()?)?;
                let repl = byte_lengths(a.get(2)?)?;
                let per = text.clone().map(|t| 2.0 * t + 1.0);
                (sum(rows, &text) + sum_product(rows, &[per, repl]), build)
            }
            "array_repeat" => (
                sum_product(rows, &[element_sizes(a.first()?), counts(a.get(1)?)?]),
                build,
            ),
            "array_resize" => {
                let width = match a.get(2) {
                    Some(v) => element_sizes(v),
                    None => PerRow::Const(list_element_width(a.first()?)),
                };
                (sum_product(rows, &[counts(a.get(1)?)?, width]), build)
            }
            "range" | "generate_series" => (range_bytes(rows, a)?, build),
            "levenshtein" => (
                sum_product(rows, &[byte_lengths(a.first()?)?, byte_lengths(a.get(1)?)?]),
                "would compare",
            ),
            _ => return None,
        })
    }
}

/// One number per row of an argument: the same for every row, or one each.
#[derive(Debug, Clone)]
enum PerRow {
    Const(f64),
    Rows(Vec<f64>),
}

impl PerRow {
    fn get(&self, i: usize) -> f64 {
        match self {
            PerRow::Const(v) => *v,
            PerRow::Rows(v) => v.get(i).copied().unwrap_or(0.0),
        }
    }
    fn map(self, f: impl Fn(f64) -> f64) -> PerRow {
        match self {
            PerRow::Const(v) => PerRow::Const(f(v)),
            PerRow::Rows(v) => PerRow::Rows(v.into_iter().map(f).collect()),
        }
    }
    fn zip(&self, other: &PerRow, f: impl Fn(f64, f64) -> f64) -> PerRow {
        match (self, other) {
            (PerRow::Const(a), PerRow::Const(b)) => PerRow::Const(f(*a, *b)),
            _ => {
                let n = self.len().max(other.len());
                PerRow::Rows((0..n).map(|i| f(self.get(i), other.get(i))).collect())
            }
        }
    }
    fn len(&self) -> usize {
        match self {
            PerRow::Const(_) => 1,
            PerRow::Rows(v) => v.len(),
        }
    }
}

fn sum(rows: usize, v: &PerRow) -> f64 {
    sum_product(rows, std::slice::from_ref(v))
}

/// The sum over rows of the product of the factors.
fn sum_product(rows: usize, factors: &[PerRow]) -> f64 {
    if factors.iter().all(|f| matches!(f, PerRow::Const(_))) {
        return factors.iter().map(|f| f.get(0)).product::<f64>() * rows as f64;
    }
    (0..rows)
        .map(|i| factors.iter().map(|f| f.get(i)).product::<f64>())
        .sum()
}

/// Byte lengths of a string or binary argument (nulls count 0).
fn byte_lengths(v: &ColumnarValue) -> Option<PerRow> {
    match v {
        ColumnarValue::Scalar(s) => Some(PerRow::Const(match s {
            ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                v.as_ref().map_or(0, |s| s.len()) as f64
            }
            ScalarValue::Binary(v) | ScalarValue::LargeBinary(v) | ScalarValue::BinaryView(v) => {
                v.as_ref().map_or(0, |s| s.len()) as f64
            }
            other if other.is_null() => 0.0,
            // Numbers and other values in a string function are cast to
            // text; their text is short.
            _ => 32.0,
        })),
        ColumnarValue::Array(a) => {
            let lengths: Vec<f64> = match a.data_type() {
                DataType::Utf8 => {
                    let s = a.as_string::<i32>();
                    (0..s.len()).map(|i| s.value_length(i) as f64).collect()
                }
                DataType::LargeUtf8 => {
                    let s = a.as_string::<i64>();
                    (0..s.len()).map(|i| s.value_length(i) as f64).collect()
                }
                DataType::Utf8View => {
                    let s = a.as_string_view();
                    (0..s.len()).map(|i| s.value(i).len() as f64).collect()
                }
                DataType::Binary => {
                    let s = a.as_binary::<i32>();
                    (0..s.len()).map(|i| s.value_length(i) as f64).collect()
                }
                DataType::LargeBinary => {
                    let s = a.as_binary::<i64>();
                    (0..s.len()).map(|i| s.value_length(i) as f64).collect()
                }
                DataType::BinaryView => {
                    let s = a.as_binary_view();
                    (0..s.len()).map(|i| s.value(i).len() as f64).collect()
                }
                _ => vec![32.0; a.len()],
            };
            Some(PerRow::Rows(lengths))
        }
    }
}

/// Non-negative integer values of a count argument (nulls and negative
/// numbers count 0).
fn counts(v: &ColumnarValue) -> Option<PerRow> {
    match v {
        ColumnarValue::Scalar(s) => {
            if s.is_null() {
                return Some(PerRow::Const(0.0));
            }
            let n = s.cast_to(&DataType::Float64).ok()?;
            match n {
                ScalarValue::Float64(Some(n)) => Some(PerRow::Const(n.max(0.0))),
                _ => None,
            }
        }
        ColumnarValue::Array(a) => {
            let f = arrow::compute::cast(a, &DataType::Float64).ok()?;
            let f = f.as_primitive::<arrow::datatypes::Float64Type>();
            Some(PerRow::Rows(
                (0..f.len())
                    .map(|i| {
                        if f.is_null(i) {
                            0.0
                        } else {
                            f.value(i).max(0.0)
                        }
                    })
                    .collect(),
            ))
        }
    }
}

/// The bytes one copy of each row's value takes.
fn element_sizes(v: &ColumnarValue) -> PerRow {
    if let Some(lengths) = match v.data_type() {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => byte_lengths(v).map(|l| l.map(|b| b + 16.0)),
        _ => None,
    } {
        return lengths;
    }
    match v {
        ColumnarValue::Scalar(s) => PerRow::Const(s.size() as f64),
        ColumnarValue::Array(a) => {
            let per_row = a.get_array_memory_size() as f64 / a.len().max(1) as f64;
            PerRow::Const(per_row.max(1.0))
        }
    }
}

/// The bytes of one element of a list argument.
fn list_element_width(v: &ColumnarValue) -> f64 {
    match v.data_type() {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().primitive_width().unwrap_or(16) as f64
        }
        _ => 16.0,
    }
}

/// The bytes `range`/`generate_series` would build: elements times their
/// width, for integer, date and timestamp ranges.
fn range_bytes(rows: usize, args: &[ColumnarValue]) -> Option<f64> {
    let as_i64 = |v: &ColumnarValue| -> Option<PerRow> {
        let as_int = |s: &ScalarValue| -> Option<f64> {
            if s.is_null() {
                return Some(0.0);
            }
            match s {
                ScalarValue::Date32(Some(d)) => Some(*d as f64 * 86_400e9),
                ScalarValue::Date64(Some(d)) => Some(*d as f64 * 1e6),
                ScalarValue::TimestampSecond(Some(t), _) => Some(*t as f64 * 1e9),
                ScalarValue::TimestampMillisecond(Some(t), _) => Some(*t as f64 * 1e6),
                ScalarValue::TimestampMicrosecond(Some(t), _) => Some(*t as f64 * 1e3),
                ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t as f64),
                // A step of months counts as the shortest month; days as
                // the shortest day.
                ScalarValue::IntervalYearMonth(Some(m)) => Some(*m as f64 * 28.0 * 86_400e9),
                ScalarValue::IntervalDayTime(Some(d)) => {
                    Some(d.days as f64 * 86_400e9 + d.milliseconds as f64 * 1e6)
                }
                ScalarValue::IntervalMonthDayNano(Some(i)) => Some(
                    i.months as f64 * 28.0 * 86_400e9
                        + i.days as f64 * 86_400e9
                        + i.nanoseconds as f64,
                ),
                other => match other.cast_to(&DataType::Float64).ok()? {
                    ScalarValue::Float64(Some(f)) => Some(f),
                    _ => None,
                },
            }
        };
        match v {
            ColumnarValue::Scalar(s) => Some(PerRow::Const(as_int(s)?)),
            ColumnarValue::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for i in 0..a.len() {
                    out.push(as_int(&ScalarValue::try_from_array(a, i).ok()?)?);
                }
                Some(PerRow::Rows(out))
            }
        }
    };
    let width = match args.first()?.data_type() {
        DataType::Date32 => 4.0,
        DataType::Timestamp(TimeUnit::Nanosecond, _)
        | DataType::Timestamp(..)
        | DataType::Date64
        | DataType::Int64
        | DataType::UInt64 => 8.0,
        DataType::Interval(IntervalUnit::MonthDayNano) => 16.0,
        _ => 8.0,
    };
    let (start, stop, step) = match args {
        [stop] => (PerRow::Const(0.0), as_i64(stop)?, PerRow::Const(1.0)),
        [start, stop] => (as_i64(start)?, as_i64(stop)?, PerRow::Const(1.0)),
        [start, stop, step] => (as_i64(start)?, as_i64(stop)?, as_i64(step)?),
        _ => return None,
    };
    let n = rows.max(start.len()).max(stop.len()).max(step.len());
    let elements: f64 = (0..n)
        .map(|i| {
            let span = (stop.get(i) - start.get(i)).abs();
            let step = step.get(i).abs();
            if step == 0.0 { 0.0 } else { span / step + 1.0 }
        })
        .sum::<f64>()
        * if start.len().max(stop.len()).max(step.len()) == 1 {
            rows as f64
        } else {
            1.0
        };
    Some(elements * width)
}

fn result_bytes(v: &ColumnarValue) -> usize {
    match v {
        ColumnarValue::Array(a) => a.get_array_memory_size(),
        ColumnarValue::Scalar(s) => s.size(),
    }
}

// Delegates every method, like DataFusion's own alias wrapper.
impl ScalarUDFImpl for Budgeted {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some((bytes, what)) = self.estimate(&args) {
            if what == "would compare" {
                if bytes > MAX_LEVENSHTEIN_WORK {
                    return Err(exhausted(format!(
                        "{}() would compare {bytes:.0} pairs of characters in one call; at most \
                         {MAX_LEVENSHTEIN_WORK:.0} are allowed (compare shorter texts)",
                        self.name()
                    )));
                }
            } else {
                self.check(bytes, what)?;
            }
        }
        let out = self.inner.inner().invoke_with_args(args)?;
        self.check(result_bytes(&out) as f64, "built")?;
        Ok(out)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let inner = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Budgeted {
            inner,
            pool: Arc::clone(&self.pool),
            limit: self.limit,
        }))
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        self.inner.inner().simplify(args, info)
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.inner().preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.inner().propagate_constraints(interval, inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.inner().struct_field_mapping(literal_args)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().strictly_order_preserving(inputs)
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.inner().placement(args)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner().documentation()
    }
}
