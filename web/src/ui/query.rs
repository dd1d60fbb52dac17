//! `/query`: a SQL console. The query is in the URL (`?sql=`), so a result
//! can be linked; it runs through the same read-only guard and limits as
//! `POST /api/v1/query`. `$from` and `$to` stand for the view's window
//! (as timestamps). Results show as a table (up to [`SHOWN_ROWS`] rows)
//! and, when their shape allows, a chart: a time column with numbers
//! becomes a time series (one line per number column, or per value of a
//! text column), a text column with numbers becomes bars.

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use leptos::prelude::*;
use serde::Deserialize;
use store::sql::QueryError;

use super::charts::{Bars, COLORS, Line, TimeSeries};
use super::{View, error_page, non_empty, page, url_encode};
use crate::WebState;

/// Most rows the console shows (and charts).
pub const SHOWN_ROWS: usize = 1_000;

/// Example queries offered on an empty console.
const EXAMPLES: [(&str, &str); 4] = [
    (
        "Requests and errors per service",
        "SELECT service_name, count(*) AS requests, sum(CASE WHEN status_code = 'ERROR' THEN 1 ELSE 0 END) AS errors\nFROM spans WHERE kind = 'SERVER' AND start_time >= $from AND start_time < $to\nGROUP BY service_name ORDER BY requests DESC",
    ),
    (
        "p95 duration per minute",
        "SELECT date_trunc('minute', start_time) AS minute, approx_percentile_cont(duration_ns / 1e6, 0.95) AS p95_ms\nFROM spans WHERE kind = 'SERVER' AND start_time >= $from AND start_time < $to\nGROUP BY 1 ORDER BY 1",
    ),
    (
        "Errors per minute by service",
        "SELECT date_trunc('minute', start_time) AS minute, service_name, count(*) AS errors\nFROM spans WHERE status_code = 'ERROR' AND start_time >= $from AND start_time < $to\nGROUP BY 1, 2 ORDER BY 1",
    ),
    (
        "Newest error logs",
        "SELECT time, service_name, body, trace_id FROM logs\nWHERE severity_number >= 17 AND time >= $from AND time < $to\nORDER BY time DESC LIMIT 50",
    ),
];

/// `/query` parameters besides the view.
#[derive(Debug, Default, Deserialize)]
pub struct QueryForm {
    /// The SQL.
    pub sql: Option<String>,
}

/// `sql` with `$from` and `$to` replaced by the window's bounds.
pub fn bind_window(sql: &str, from_ns: i64, to_ns: i64) -> String {
    sql.replace("$from", &format!("to_timestamp_nanos({from_ns})"))
        .replace("$to", &format!("to_timestamp_nanos({to_ns})"))
}

fn is_number(t: &DataType) -> bool {
    t.is_integer()
        || t.is_floating()
        || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)
    )
}

fn floats(a: &dyn Array) -> Option<Float64Array> {
    let c = cast(a, &DataType::Float64).ok()?;
    c.as_any().downcast_ref::<Float64Array>().cloned()
}

fn times(a: &dyn Array) -> Option<Int64Array> {
    let c = cast(a, &DataType::Timestamp(TimeUnit::Nanosecond, None)).ok()?;
    let c = cast(&c, &DataType::Int64).ok()?;
    c.as_any().downcast_ref::<Int64Array>().cloned()
}

fn texts(a: &dyn Array) -> Option<StringArray> {
    let c = cast(a, &DataType::Utf8).ok()?;
    c.as_any().downcast_ref::<StringArray>().cloned()
}

/// The chart a result suggests, if any.
pub enum Chart {
    /// Time on x: lines.
    Series {
        /// Lines.
        lines: Vec<Line>,
        /// First and last time.
        from_ns: i64,
        /// Last time.
        to_ns: i64,
        /// Unit (the charted column).
        unit: String,
    },
    /// A label per row: bars.
    Bars {
        /// Label and value.
        items: Vec<(String, f64)>,
        /// Unit (the charted column).
        unit: String,
    },
}

/// Picks a chart for `batch`: the first timestamp column with the number
/// columns (split by the first text column, if any) as lines; otherwise the
/// first text column with the first number column as bars.
pub fn chart_of(batch: &RecordBatch) -> Option<Chart> {
    let schema = batch.schema();
    let fields = schema.fields();
    let time = fields.iter().position(|f| {
        matches!(
            f.data_type(),
            DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
        )
    });
    let numbers: Vec<usize> = (0..fields.len())
        .filter(|i| is_number(fields[*i].data_type()))
        .collect();
    let text = (0..fields.len()).find(|i| is_text(fields[*i].data_type()));
    let first_number = *numbers.first()?;
    if let Some(t) = time {
        let ts = times(batch.column(t).as_ref())?;
        let mut lines: Vec<Line> = Vec::new();
        match text {
            Some(k) => {
                let keys = texts(batch.column(k).as_ref())?;
                let vals = floats(batch.column(first_number).as_ref())?;
                for row in 0..batch.num_rows() {
                    if ts.is_null(row) {
                        continue;
                    }
                    let key = if keys.is_null(row) {
                        "(null)"
                    } else {
                        keys.value(row)
                    };
                    let v = (!vals.is_null(row)).then(|| vals.value(row));
                    match lines.iter().position(|l| l.name == key) {
                        Some(i) => lines[i].points.push((ts.value(row), v)),
                        None if lines.len() < COLORS.len() => lines.push(Line {
                            name: key.to_string(),
                            points: vec![(ts.value(row), v)],
                        }),
                        None => {}
                    }
                }
            }
            None => {
                for &n in numbers.iter().take(COLORS.len()) {
                    let vals = floats(batch.column(n).as_ref())?;
                    lines.push(Line {
                        name: fields[n].name().clone(),
                        points: (0..batch.num_rows())
                            .filter(|r| !ts.is_null(*r))
                            .map(|r| (ts.value(r), (!vals.is_null(r)).then(|| vals.value(r))))
                            .collect(),
                    });
                }
            }
        }
        for l in &mut lines {
            l.points.sort_by_key(|p| p.0);
        }
        let all = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0));
        let (lo, hi) = all.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
        if lo >= hi {
            return None;
        }
        let unit = if text.is_some() || numbers.len() == 1 {
            fields[first_number].name().clone()
        } else {
            String::new()
        };
        return Some(Chart::Series {
            lines,
            from_ns: lo,
            to_ns: hi,
            unit,
        });
    }
    let k = text?;
    let keys = texts(batch.column(k).as_ref())?;
    let vals = floats(batch.column(first_number).as_ref())?;
    let items = (0..batch.num_rows().min(30))
        .filter(|r| !vals.is_null(*r))
        .map(|r| {
            let key = if keys.is_null(r) {
                "(null)".to_string()
            } else {
                keys.value(r).to_string()
            };
            (key, vals.value(r))
        })
        .collect();
    Some(Chart::Bars {
        items,
        unit: fields[first_number].name().clone(),
    })
}

/// The page status for a query error: the user's fault is 400.
fn status_of(e: &QueryError) -> StatusCode {
    match e {
        QueryError::NotAllowed(_) | QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
        QueryError::Timeout(_)
        | QueryError::ResourcesExhausted(_)
        | QueryError::ResultTooLarge(_) => StatusCode::UNPROCESSABLE_ENTITY,
        QueryError::Execution(_) => StatusCode::INTERNAL_SERVER_ERROR,
        QueryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `GET /query`.
pub async fn console(
    State(s): State<WebState>,
    view: View,
    Query(f): Query<QueryForm>,
) -> Response {
    let sql = non_empty(&f.sql);
    let mut status = StatusCode::OK;
    let q = view.query.clone();
    let result = match &sql {
        None => view! {
            <h2>"Examples"</h2>
            <ul id="examples">
                {EXAMPLES
                    .iter()
                    .map(|(title, text)| {
                        let href = format!("/query?{q}&sql={}", url_encode(text));
                        view! { <li><a href=href>{*title}</a></li> }
                    })
                    .collect_view()}
            </ul>
            <p class="muted">"Tables: spans, logs, metric_points (see docs/schema.md). $from and $to are the range picked above."</p>
        }
        .into_any(),
        Some(text) => {
            let bound = bind_window(text, view.window.from_ns, view.window.to_ns);
            let mut limits = s.query_limits.clone();
            limits.max_rows = limits.max_rows.min(SHOWN_ROWS);
            match s.run_sql(&bound, &limits).await {
                Err(e) => {
                    status = status_of(&e);
                    view! { <p class="error" id="query-error">{e.to_string()}</p> }.into_any()
                }
                Ok(r) => {
                    let batch = match arrow::compute::concat_batches(&r.schema, &r.batches) {
                        Ok(b) => b,
                        Err(e) => {
                            return error_page(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "Query",
                                format!("cannot assemble the result: {e}"),
                            );
                        }
                    };
                    let chart = match chart_of(&batch) {
                        Some(Chart::Series { lines, from_ns, to_ns, unit }) => view! {
                            <TimeSeries id="query-chart".to_string() title="Result".to_string() unit=unit from_ns=from_ns to_ns=to_ns lines=lines/>
                        }
                        .into_any(),
                        Some(Chart::Bars { items, unit }) => view! {
                            <Bars id="query-chart".to_string() items=items unit=unit/>
                        }
                        .into_any(),
                        None => ().into_any(),
                    };
                    let opts = FormatOptions::default().with_null("NULL");
                    let formatters: Vec<_> = batch
                        .columns()
                        .iter()
                        .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).ok())
                        .collect();
                    let rows = (0..batch.num_rows())
                        .map(|r| {
                            view! {
                                <tr>
                                    {formatters
                                        .iter()
                                        .map(|f| {
                                            let text = f.as_ref().map(|f| f.value(r).to_string()).unwrap_or_default();
                                            view! { <td>{text}</td> }
                                        })
                                        .collect_view()}
                                </tr>
                            }
                        })
                        .collect_view();
                    let meta = format!(
                        "{} rows{} in {:.1} ms",
                        batch.num_rows(),
                        if r.truncated { " (cut off: add a LIMIT or narrow the query)" } else { "" },
                        r.elapsed.as_secs_f64() * 1e3
                    );
                    view! {
                        <p class="muted" id="query-meta">{meta}</p>
                        {chart}
                        <div style="overflow-x:auto">
                            <table id="query-results">
                                <tr>{r.schema.fields().iter().map(|f| view! { <th title=f.data_type().to_string()>{f.name().clone()}</th> }).collect_view()}</tr>
                                {rows}
                            </table>
                        </div>
                    }
                    .into_any()
                }
            }
        }
    };
    let body = view! {
        <h1>"Query"</h1>
        <section>
            <form method="get" action="/query">
                {view.hidden_fields()}
                // Leptos writes a textarea's text as it is (raw text, unlike
                // other elements): escaped here, or `</textarea>` in the
                // query would end the element and open the page to scripts.
                <textarea name="sql" class="sql" rows="6" placeholder="SELECT service_name, count(*) FROM spans WHERE start_time >= $from GROUP BY 1">{super::escape(sql.as_deref().unwrap_or_default())}</textarea>
                <p><button type="submit" id="run-query">"Run"</button> <span class="muted">" read-only; at most 1,000 rows shown; $from and $to are the range picked above"</span></p>
            </form>
        </section>
        <section id="query-result">{result}</section>
    }
    .to_html();
    let path = match &sql {
        Some(text) => format!("/query?sql={}", url_encode(text)),
        None => "/query".to_string(),
    };
    let mut r = page("Query", Some(&view), &path, body);
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampNanosecondArray;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    #[test]
    fn window_placeholders_become_timestamps() {
        assert_eq!(
            bind_window("start_time >= $from AND start_time < $to", 5, 9),
            "start_time >= to_timestamp_nanos(5) AND start_time < to_timestamp_nanos(9)"
        );
    }

    #[test]
    fn results_pick_their_chart() {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "minute",
                DataType::Timestamp(TimeUnit::Nanosecond, None),
                false,
            ),
            Field::new("service", DataType::Utf8, false),
            Field::new("errors", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampNanosecondArray::from(vec![60, 0, 0, 60])),
                Arc::new(StringArray::from(vec!["a", "a", "b", "b"])),
                Arc::new(Int64Array::from(vec![2, 1, 5, 7])),
            ],
        )
        .unwrap();
        let Some(Chart::Series {
            lines,
            from_ns,
            to_ns,
            unit,
        }) = chart_of(&batch)
        else {
            panic!("a time column makes a series");
        };
        assert_eq!((from_ns, to_ns, unit.as_str()), (0, 60, "errors"));
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].name, "a");
        assert_eq!(lines[0].points, vec![(0, Some(1.0)), (60, Some(2.0))]);
        // Without the time column: bars per service.
        let bars = batch.project(&[1, 2]).unwrap();
        let Some(Chart::Bars { items, .. }) = chart_of(&bars) else {
            panic!("text and numbers make bars");
        };
        assert_eq!(items[2], ("b".to_string(), 5.0));
        // Only text: no chart.
        assert!(chart_of(&batch.project(&[1]).unwrap()).is_none());
    }
}
