//! `POST /api/v1/query`: one read-only SQL query under the configured
//! limits; JSON, CSV or Arrow IPC out.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use store::sql::QueryResult;

use super::ApiError;
use crate::WebState;

/// Body of `POST /api/v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// One read-only SQL query.
    pub sql: String,
    /// `json` (default), `csv` or `arrow` (Arrow IPC stream). The `Accept`
    /// header (`text/csv`, `application/vnd.apache.arrow.stream`) works too.
    #[serde(default)]
    pub format: Option<String>,
    /// Most rows to return (never more than the server's limit).
    #[serde(default)]
    pub max_rows: Option<usize>,
}

/// Output formats of the query endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON rows.
    Json,
    /// CSV with a header row.
    Csv,
    /// Arrow IPC stream.
    Arrow,
}

/// The Arrow IPC stream media type.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn format_of(req: &QueryRequest, headers: &HeaderMap) -> Result<Format, ApiError> {
    match req.format.as_deref() {
        Some("json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv),
        Some("arrow") => return Ok(Format::Arrow),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_format",
                format!("unknown format {other:?}; use json, csv or arrow"),
            ));
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains("text/csv") {
        Format::Csv
    } else if accept.contains(ARROW_STREAM) {
        Format::Arrow
    } else {
        Format::Json
    })
}

/// Encodes a result in a format.
pub fn encode(result: &QueryResult, format: Format) -> Result<Vec<u8>, String> {
    encode_noting(result, format, &[])
}

/// [`encode`], with the ingest nodes missing from the result named in the
/// JSON's `missing_nodes` (when any).
pub fn encode_noting(
    result: &QueryResult,
    format: Format,
    missing: &[store::cluster::MissingNode],
) -> Result<Vec<u8>, String> {
    let batches: Vec<&arrow::array::RecordBatch> = result.batches.iter().collect();
    match format {
        Format::Json => {
            let mut rows = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut rows);
                w.write_batches(&batches).map_err(|e| e.to_string())?;
                w.finish().map_err(|e| e.to_string())?;
            }
            let rows: serde_json::Value = if rows.is_empty() {
                serde_json::Value::Array(vec![])
            } else {
                serde_json::from_slice(&rows).map_err(|e| e.to_string())?
            };
            let columns: Vec<serde_json::Value> = result
                .schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({ "name": f.name(), "type": f.data_type().to_string() }))
                .collect();
            let mut body = serde_json::json!({
                "columns": columns,
                "rows": rows,
                "row_count": result.num_rows(),
                "truncated": result.truncated,
                "elapsed_ms": result.elapsed.as_secs_f64() * 1e3,
            });
            if !missing.is_empty() {
                body["missing_nodes"] = serde_json::json!(missing);
            }
            serde_json::to_vec(&body).map_err(|e| e.to_string())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if batches.is_empty() {
                    w.write(&arrow::array::RecordBatch::new_empty(result.schema.clone()))
                        .map_err(|e| e.to_string())?;
                }
                for b in &batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
            }
            Ok(out)
        }
        Format::Arrow => {
            let mut out = Vec::new();
            {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &result.schema)
                    .map_err(|e| e.to_string())?;
                for b in &batches {
                    w.write(b).map_err(|e| e.to_string())?;
                }
                w.finish().map_err(|e| e.to_string())?;
            }
            Ok(out)
        }
    }
}

/// `POST /api/v1/query`.
pub async fn query(
    State(s): State<WebState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!("expected {{\"sql\": \"...\"}}: {e}"),
        )
    })?;
    let format = format_of(&req, &headers)?;
    let mut limits = s.query_limits.clone();
    if let Some(n) = req.max_rows {
        limits.max_rows = limits.max_rows.min(n);
    }
    let result = s.run_sql(&req.sql, &limits).await?;
    let truncated = result.truncated;
    let missing = crate::cluster::missing();
    let bytes = tokio::task::spawn_blocking(move || encode_noting(&result, format, &missing))
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: e.to_string(),
        })?
        .map_err(|m| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "encoding_error",
            message: m,
        })?;
    let ct = match format {
        Format::Json => "application/json",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Arrow => ARROW_STREAM,
    };
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if truncated {
        resp.headers_mut()
            .insert("x-burnwatch-truncated", HeaderValue::from_static("true"));
    }
    Ok(resp)
}
