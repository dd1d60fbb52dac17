//! Evidence for an SLO incident, gathered when it opens or escalates: the
//! operations contributing most bad events, example failing traces, and the
//! logs of those traces, over the window that made the alert fire.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type, TimestampNanosecondType};
use serde::{Deserialize, Serialize};
use store::Store;
use store::sql::QueryLimits;

use crate::openslo::Slo;

/// Most operations, traces and log records kept.
pub const TOP_OPERATIONS: usize = 5;
/// Example traces kept.
pub const EXAMPLE_TRACES: usize = 5;
/// Log records kept.
pub const LOG_RECORDS: usize = 30;

/// One operation's share of the bad events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationBurn {
    /// Service.
    pub service: String,
    /// Operation (span name).
    pub operation: String,
    /// Bad events in the window.
    pub bad: u64,
    /// Events in the window.
    pub total: u64,
    /// bad / all bad events of the SLO in the window.
    pub share_of_bad: f64,
}

/// A failing request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExampleTrace {
    /// Trace id (open it at `/api/v1/traces/{trace_id}`).
    pub trace_id: String,
    /// Service of the failing span.
    pub service: String,
    /// Its operation.
    pub operation: String,
    /// Start, ns.
    pub start_ns: i64,
    /// Duration, ms.
    pub duration_ms: f64,
    /// Span status.
    pub status_code: String,
    /// HTTP status, when any.
    pub http_status: Option<i64>,
}

/// A log record of an example trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Trace id.
    pub trace_id: String,
    /// Time, ns.
    pub time_ns: i64,
    /// Service.
    pub service: String,
    /// Severity text.
    pub severity: String,
    /// Body.
    pub body: String,
}

/// Evidence of one burn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Window start, ns.
    pub from_ns: i64,
    /// Window end, ns.
    pub to_ns: i64,
    /// Operations by bad events, most first.
    pub operations: Vec<OperationBurn>,
    /// The newest failing requests.
    pub traces: Vec<ExampleTrace>,
    /// Their logs, oldest first.
    pub logs: Vec<LogLine>,
}

async fn run(store: &Store, sql: &str) -> Result<Vec<RecordBatch>, String> {
    let limits = QueryLimits {
        timeout_secs: 30.0,
        ..QueryLimits::default()
    };
    store::sql::run(store, sql, &limits)
        .await
        .map(|r| r.batches)
        .map_err(|e| e.to_string())
}

fn text(b: &RecordBatch, i: usize) -> Result<arrow::array::StringArray, String> {
    let c = arrow::compute::cast(b.column(i), &DataType::Utf8).map_err(|e| e.to_string())?;
    Ok(c.as_string::<i32>().clone())
}

fn int(b: &RecordBatch, i: usize) -> Result<arrow::array::Int64Array, String> {
    let c = arrow::compute::cast(b.column(i), &DataType::Int64).map_err(|e| e.to_string())?;
    Ok(c.as_primitive::<Int64Type>().clone())
}

fn s(a: &arrow::array::StringArray, i: usize) -> String {
    if a.is_null(i) {
        String::new()
    } else {
        a.value(i).to_string()
    }
}

/// Gathers the evidence of `slo`'s bad events in `[from_ns, to_ns)`.
pub async fn gather(
    store: &Store,
    slo: &Slo,
    from_ns: i64,
    to_ns: i64,
) -> Result<Evidence, String> {
    let window = format!(
        "start_time >= to_timestamp_nanos({from_ns}) AND start_time < to_timestamp_nanos({to_ns})"
    );
    let Some((total, bad)) = slo.sli.source.span_predicates() else {
        // Log and metric SLIs have no spans to point at.
        return Ok(Evidence {
            from_ns,
            to_ns,
            operations: Vec::new(),
            traces: Vec::new(),
            logs: Vec::new(),
        });
    };
    let ops_sql = format!(
        "SELECT service_name, name, count(*) AS total, sum(CASE WHEN ({bad}) THEN 1 ELSE 0 END) AS bad \
         FROM spans WHERE ({total}) AND {window} GROUP BY 1, 2 \
         HAVING sum(CASE WHEN ({bad}) THEN 1 ELSE 0 END) > 0 ORDER BY bad DESC, 1, 2"
    );
    let mut operations = Vec::new();
    let mut all_bad = 0u64;
    for b in run(store, &ops_sql).await? {
        let (svc, op, t, n) = (text(&b, 0)?, text(&b, 1)?, int(&b, 2)?, int(&b, 3)?);
        for i in 0..b.num_rows() {
            all_bad += n.value(i) as u64;
            operations.push(OperationBurn {
                service: s(&svc, i),
                operation: s(&op, i),
                bad: n.value(i) as u64,
                total: t.value(i) as u64,
                share_of_bad: 0.0,
            });
        }
    }
    operations.truncate(TOP_OPERATIONS);
    for o in &mut operations {
        o.share_of_bad = o.bad as f64 / all_bad.max(1) as f64;
    }
    let traces_sql = format!(
        "SELECT trace_id, service_name, name, start_time, duration_ns, status_code, http_response_status_code \
         FROM spans WHERE ({total}) AND ({bad}) AND {window} ORDER BY start_time DESC LIMIT {EXAMPLE_TRACES}"
    );
    let mut traces = Vec::new();
    for b in run(store, &traces_sql).await? {
        let (id, svc, op) = (text(&b, 0)?, text(&b, 1)?, text(&b, 2)?);
        let start = b.column(3).as_primitive::<TimestampNanosecondType>();
        let (dur, st, http) = (int(&b, 4)?, text(&b, 5)?, int(&b, 6)?);
        for i in 0..b.num_rows() {
            traces.push(ExampleTrace {
                trace_id: s(&id, i),
                service: s(&svc, i),
                operation: s(&op, i),
                start_ns: start.value(i),
                duration_ms: dur.value(i) as f64 / 1e6,
                status_code: s(&st, i),
                http_status: (!http.is_null(i)).then(|| http.value(i)),
            });
        }
    }
    let mut logs = Vec::new();
    if !traces.is_empty() {
        let ids: Vec<String> = traces
            .iter()
            .map(|t| analytics::red::quote(&t.trace_id))
            .collect();
        // A trace's logs are near its spans: an hour either side.
        let logs_sql = format!(
            "SELECT trace_id, time, service_name, severity_text, severity_number, body FROM logs \
             WHERE trace_id IN ({}) AND time >= to_timestamp_nanos({}) AND time < to_timestamp_nanos({}) \
             ORDER BY time LIMIT {LOG_RECORDS}",
            ids.join(", "),
            from_ns - 3_600_000_000_000,
            to_ns + 3_600_000_000_000
        );
        for b in run(store, &logs_sql).await? {
            let (id, svc, sev, num, body) = (
                text(&b, 0)?,
                text(&b, 2)?,
                text(&b, 3)?,
                int(&b, 4)?,
                text(&b, 5)?,
            );
            let time = b.column(1).as_primitive::<TimestampNanosecondType>();
            for i in 0..b.num_rows() {
                let severity = match s(&sev, i) {
                    t if !t.is_empty() => t,
                    _ => format!("severity {}", num.value(i)),
                };
                logs.push(LogLine {
                    trace_id: s(&id, i),
                    time_ns: time.value(i),
                    service: s(&svc, i),
                    severity,
                    body: s(&body, i),
                });
            }
        }
    }
    Ok(Evidence {
        from_ns,
        to_ns,
        operations,
        traces,
        logs,
    })
}
