//! OTLP/HTTP receiver: `POST /v1/traces`, `/v1/metrics`, `/v1/logs`.
//!
//! Protobuf (`application/x-protobuf`) and JSON (`application/json`, the
//! OTLP JSON mapping) bodies, optionally gzip, zstd or deflate compressed.
//! Answers follow the OTLP/HTTP specification: 200 with an
//! `Export*ServiceResponse` (with `partialSuccess` when items were rejected),
//! 400 / 413 / 415 / 401 / 405 with a `google.rpc.Status` body in the
//! request's encoding, 429 / 503 with `Retry-After` when the server cannot
//! take the data now.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use sha2::Digest as _;

use crate::config::CollectorConfig;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::ingest::{ExportRequest, Ingest, IngestError, Outcome};
use crate::metrics::{Signal, Transport};

/// The body encodings OTLP/HTTP defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// gRPC status codes used in `google.rpc.Status` bodies.
mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNIMPLEMENTED: i32 = 12;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNAUTHENTICATED: i32 = 16;
}

/// An error answer: HTTP status, `google.rpc.Status` code and message.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    code: i32,
    message: String,
    retry_after: Option<u64>,
    encoding: Encoding,
}

impl HttpError {
    fn new(
        status: StatusCode,
        code: i32,
        message: impl Into<String>,
        encoding: Encoding,
    ) -> HttpError {
        HttpError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            encoding,
        }
    }
}

/// Builds a `google.rpc.Status` body in the given encoding.
pub fn status_body(code: i32, message: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => tonic_types::Status {
            code,
            message: message.to_string(),
            details: Vec::new(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = status_body(self.code, &self.message, self.encoding);
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.encoding.content_type()),
        );
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

fn from_ingest(e: IngestError, encoding: Encoding) -> HttpError {
    let retry_after = e.retry_after().map(|d| d.as_secs().max(1));
    let (status, code) = match &e {
        IngestError::Overloaded { .. } => (StatusCode::TOO_MANY_REQUESTS, code::RESOURCE_EXHAUSTED),
        IngestError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE),
        IngestError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL),
    };
    let message = match &e {
        IngestError::Internal(_) => "internal error; see the server log".to_string(),
        other => other.to_string(),
    };
    HttpError {
        status,
        code,
        message,
        retry_after,
        encoding,
    }
}

/// The OTLP/HTTP router.
pub fn router(ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/traces", post(traces).fallback(method_not_allowed))
        .route("/v1/metrics", post(metrics).fallback(method_not_allowed))
        .route("/v1/logs", post(logs).fallback(method_not_allowed))
        .route(
            "/api/v1/write",
            post(crate::remote_write::write).fallback(method_not_allowed),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .with_state(ingest)
}

async fn method_not_allowed() -> Response {
    let mut r = HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        code::UNIMPLEMENTED,
        "OTLP/HTTP export endpoints accept POST only",
        Encoding::Json,
    )
    .into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

async fn not_found() -> Response {
    HttpError::new(
        StatusCode::NOT_FOUND,
        code::UNIMPLEMENTED,
        "unknown path; OTLP/HTTP paths are /v1/traces, /v1/metrics and /v1/logs",
        Encoding::Json,
    )
    .into_response()
}

async fn traces(State(i): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    handle(i, Signal::Traces, headers, body).await
}

async fn metrics(State(i): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    handle(i, Signal::Metrics, headers, body).await
}

async fn logs(State(i): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    handle(i, Signal::Logs, headers, body).await
}

/// Checks a bearer token against the configured ones: clear tokens and
/// SHA-256 digests, each compared in constant time. Open when none is set.
pub fn token_ok(config: &CollectorConfig, authorization: Option<&str>) -> bool {
    if config.auth_tokens.is_empty() && config.auth_sha256.is_empty() {
        return true;
    }
    let Some(given) = authorization.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    }) else {
        return false;
    };
    let given = given.trim();
    let same = |a: &[u8], b: &[u8]| {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    };
    let digest: [u8; 32] = sha2::Sha256::digest(given.as_bytes()).into();
    let plain = config
        .auth_tokens
        .iter()
        .fold(false, |ok, t| ok | same(t.as_bytes(), given.as_bytes()));
    let hashed = config.auth_sha256.iter().fold(false, |ok, h| {
        ok | hex::decode(h.trim()).is_ok_and(|h| same(&h, &digest))
    });
    plain || hashed
}

fn request_encoding(headers: &HeaderMap) -> Result<Encoding, String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        "" => Err("missing Content-Type; use application/x-protobuf or application/json".into()),
        other => Err(format!(
            "unsupported Content-Type {other:?}; use application/x-protobuf or application/json"
        )),
    }
}

/// Why a body could not be decompressed.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit once decompressed (413).
    TooLarge(String),
    /// An unknown `Content-Encoding` (415).
    Unsupported(String),
    /// Not valid in its encoding (400).
    Bad(String),
}

/// Whether a `Content-Encoding` leaves the body as it is (absent, empty or
/// `identity`): [`decompress`] then returns it unchanged, without work.
pub fn is_identity(encoding: Option<&str>) -> bool {
    encoding
        .map(str::trim)
        .is_none_or(|e| e.is_empty() || e.eq_ignore_ascii_case("identity"))
}

/// Decompresses `body` per `Content-Encoding`, never producing more than `limit` bytes.
pub fn decompress(encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Bytes, BodyError> {
    use flate2::bufread::{MultiGzDecoder, ZlibDecoder};

    if is_identity(encoding) {
        return Ok(body);
    }
    let enc = encoding.unwrap_or_default().trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let read = |r: &mut dyn Read, out: &mut Vec<u8>| -> Result<(), BodyError> {
        let mut limited = r.take(limit as u64 + 1);
        limited
            .read_to_end(out)
            .map_err(|e| BodyError::Bad(format!("cannot decompress the {enc} body: {e}")))?;
        if out.len() > limit {
            return Err(BodyError::TooLarge(format!(
                "decompressed body exceeds the limit of {limit} bytes"
            )));
        }
        Ok(())
    };
    // Bytes after the compressed data would be acknowledged and never
    // read: they make the body invalid instead.
    let trailing = |rest: &[u8]| -> Result<(), BodyError> {
        if rest.is_empty() {
            Ok(())
        } else {
            Err(BodyError::Bad(format!(
                "the {enc} body has {} bytes after its compressed data",
                rest.len()
            )))
        }
    };
    match enc.as_str() {
        // Every member of a multi-member gzip body (RFC 1952 2.2).
        "gzip" | "x-gzip" => {
            let mut d = MultiGzDecoder::new(&body[..]);
            read(&mut d, &mut out)?;
            trailing(d.into_inner())?;
        }
        "deflate" => {
            let mut d = ZlibDecoder::new(&body[..]);
            read(&mut d, &mut out)?;
            trailing(d.into_inner())?;
        }
        "zstd" => {
            // The decoder reads every frame of the body.
            let mut d = zstd::stream::read::Decoder::with_buffer(&body[..])
                .map_err(|e| BodyError::Bad(format!("cannot decompress the zstd body: {e}")))?;
            read(&mut d, &mut out)?;
            trailing(d.finish())?;
        }
        other => {
            return Err(BodyError::Unsupported(format!(
                "unsupported Content-Encoding {other:?}; use gzip, zstd, deflate or identity"
            )));
        }
    }
    Ok(Bytes::from(out))
}

/// Decodes an export request body (protobuf or OTLP JSON) of `signal`.
pub fn decode(signal: Signal, encoding: Encoding, body: &[u8]) -> Result<ExportRequest, String> {
    fn pb<T: Message + Default>(b: &[u8]) -> Result<T, String> {
        T::decode(b).map_err(|e| format!("invalid protobuf body: {e}"))
    }
    fn js<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
        crate::json::from_slice(b).map_err(|e| format!("invalid OTLP JSON body: {e}"))
    }
    Ok(match (signal, encoding) {
        (Signal::Traces, Encoding::Protobuf) => {
            ExportRequest::Traces(pb::<ExportTraceServiceRequest>(body)?)
        }
        (Signal::Traces, Encoding::Json) => {
            ExportRequest::Traces(js::<ExportTraceServiceRequest>(body)?)
        }
        (Signal::Metrics, Encoding::Protobuf) => {
            ExportRequest::Metrics(pb::<ExportMetricsServiceRequest>(body)?)
        }
        (Signal::Metrics, Encoding::Json) => {
            ExportRequest::Metrics(js::<ExportMetricsServiceRequest>(body)?)
        }
        (Signal::Logs, Encoding::Protobuf) => {
            ExportRequest::Logs(pb::<ExportLogsServiceRequest>(body)?)
        }
        (Signal::Logs, Encoding::Json) => {
            ExportRequest::Logs(js::<ExportLogsServiceRequest>(body)?)
        }
    })
}

/// The success body, with `partialSuccess` when items were rejected or limited.
pub fn success_body(signal: Signal, encoding: Encoding, outcome: &Outcome) -> Vec<u8> {
    let partial = outcome.is_partial();
    match encoding {
        Encoding::Protobuf => match signal {
            Signal::Traces => outcome.trace_response().encode_to_vec(),
            Signal::Metrics => outcome.metrics_response().encode_to_vec(),
            Signal::Logs => outcome.logs_response().encode_to_vec(),
        },
        Encoding::Json => {
            if !partial {
                return b"{}".to_vec();
            }
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Metrics => "rejectedDataPoints",
                Signal::Logs => "rejectedLogRecords",
            };
            // int64 fields are strings in the OTLP JSON mapping.
            serde_json::json!({
                "partialSuccess": { field: outcome.rejected.to_string(), "errorMessage": outcome.message }
            })
            .to_string()
            .into_bytes()
        }
    }
}

async fn handle(ingest: Arc<Ingest>, signal: Signal, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let metrics = ingest.metrics().clone();
    let transport = Transport::Http;
    let (resp, bytes) = match process(&ingest, signal, &headers, body).await {
        Ok((r, n)) => (r, n),
        Err((e, n)) => {
            match e.status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    // Counted by the ingest path or here for admission refusals.
                }
                StatusCode::UNAUTHORIZED => metrics.unauthorized(),
                s if s.is_client_error() => metrics.bad_request(signal, transport),
                _ => {}
            }
            (e.into_response(), n)
        }
    };
    metrics.request(signal, transport, bytes, started.elapsed());
    resp
}

/// Why a body was not received.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// 413, 408, 400, or 429/503 when there is no capacity.
    pub status: StatusCode,
    /// What was wrong.
    pub message: String,
    /// Seconds to wait before retrying (429/503).
    pub retry_after: Option<u64>,
}

/// Takes a request slot and reads the body within the body deadline and
/// the size limit (`collector.max_body_bytes`), for every HTTP receiver.
pub(crate) async fn receive(
    ingest: &Ingest,
    body: Body,
) -> Result<(crate::ingest::Admission, Bytes), Refusal> {
    let config = ingest.config();
    let limit = config.max_body_bytes;
    let admission = ingest.admit().await.map_err(|e| Refusal {
        status: match e {
            IngestError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::TOO_MANY_REQUESTS,
        },
        retry_after: e.retry_after().map(|d| d.as_secs().max(1)),
        message: e.to_string(),
    })?;
    // The admission is held while the body arrives: a slow sender must not
    // keep it for ever.
    let body_timeout = std::time::Duration::from_millis(config.body_timeout_ms);
    let read = tokio::time::timeout(body_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| Refusal {
            status: StatusCode::REQUEST_TIMEOUT,
            message: format!(
                "the body did not arrive within {} ms (collector.body_timeout_ms)",
                config.body_timeout_ms
            ),
            retry_after: None,
        })?;
    let raw = read.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            Refusal {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("body exceeds the limit of {limit} bytes"),
                retry_after: None,
            }
        } else {
            Refusal {
                status: StatusCode::BAD_REQUEST,
                message: format!("cannot read the body: {e}"),
                retry_after: None,
            }
        }
    })?;
    Ok((admission, raw))
}

async fn process(
    ingest: &Ingest,
    signal: Signal,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, usize), (HttpError, usize)> {
    let config = ingest.config();
    // Errors before we know the encoding are answered in JSON.
    let encoding = match request_encoding(headers) {
        Ok(e) => e,
        Err(msg) => {
            return Err((
                HttpError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    code::INVALID_ARGUMENT,
                    msg,
                    Encoding::Json,
                ),
                0,
            ));
        }
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !token_ok(config, auth) {
        let mut e = HttpError::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHENTICATED,
            "missing or invalid bearer token",
            encoding,
        );
        e.retry_after = None;
        return Err((e, 0));
    }
    let limit = config.max_body_bytes;
    let too_large = |msg: String| {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::INVALID_ARGUMENT,
            msg,
            encoding,
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err((
            too_large(format!(
                "body of {len} bytes exceeds the limit of {limit} bytes"
            )),
            0,
        ));
    }
    let (mut admission, raw) = match receive(ingest, body).await {
        Ok(r) => r,
        Err(r) => {
            if r.status == StatusCode::TOO_MANY_REQUESTS
                || r.status == StatusCode::SERVICE_UNAVAILABLE
            {
                ingest.metrics().refused(signal, Transport::Http);
            }
            let code = match r.status {
                StatusCode::TOO_MANY_REQUESTS => code::RESOURCE_EXHAUSTED,
                StatusCode::SERVICE_UNAVAILABLE => code::UNAVAILABLE,
                _ => code::INVALID_ARGUMENT,
            };
            let mut e = HttpError::new(r.status, code, r.message, encoding);
            e.retry_after = r.retry_after;
            return Err((e, 0));
        }
    };
    let n = raw.len();
    let content_encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bad_body = |e: BodyError| match e {
        BodyError::TooLarge(m) => too_large(m),
        BodyError::Unsupported(m) => HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_ARGUMENT,
            m,
            encoding,
        ),
        BodyError::Bad(m) => {
            HttpError::new(StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT, m, encoding)
        }
    };
    let task_failed = |e: tokio::task::JoinError| {
        tracing::error!(error = %e, "decode task failed");
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "internal error",
            encoding,
        )
    };
    // Decompression and decoding are CPU work: off the async workers.
    let plain = if is_identity(content_encoding.as_deref()) {
        raw
    } else {
        match tokio::task::spawn_blocking(move || {
            decompress(content_encoding.as_deref(), raw, limit)
        })
        .await
        {
            Ok(Ok(plain)) => plain,
            Ok(Err(e)) => return Err((bad_body(e), n)),
            Err(e) => return Err((task_failed(e), n)),
        }
    };
    // The decoded message takes roughly three times its wire size: the
    // budget is taken before decoding, so waiting requests hold only
    // their bodies.
    if let Err(e) = ingest
        .reserve(&mut admission, plain.len().saturating_mul(3))
        .await
    {
        ingest.metrics().refused(signal, Transport::Http);
        return Err((from_ingest(e, encoding), n));
    }
    let request = match tokio::task::spawn_blocking(move || decode(signal, encoding, &plain)).await
    {
        Ok(Ok(r)) => r,
        Ok(Err(m)) => return Err((bad_body(BodyError::Bad(m)), n)),
        Err(e) => return Err((task_failed(e), n)),
    };
    match ingest.export(request, Transport::Http).await {
        Ok(outcome) => {
            let body = success_body(signal, encoding, &outcome);
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(encoding.content_type()),
            );
            Ok((r, n))
        }
        Err(e) => Err((from_ingest(e, encoding), n)),
    }
}
