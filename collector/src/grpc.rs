//! OTLP/gRPC receiver: TraceService, MetricsService and LogsService.
//!
//! Accepts gzip and zstd compressed messages up to the body limit. Rejected
//! items come back in `partial_success`; capacity problems as
//! RESOURCE_EXHAUSTED or UNAVAILABLE with a `RetryInfo` detail, which OTLP
//! exporters honour by retrying after the delay.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::http::token_ok;
use crate::ingest::{ExportRequest, Ingest, IngestError, Outcome};
use crate::metrics::{Signal, Transport};

/// The three OTLP services over one `Ingest`.
#[derive(Clone, Debug)]
pub struct OtlpGrpc {
    ingest: Arc<Ingest>,
}

fn to_status(e: IngestError) -> Status {
    match e {
        IngestError::Overloaded {
            message,
            retry_after,
        } => Status::with_error_details(
            Code::ResourceExhausted,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        IngestError::Unavailable {
            message,
            retry_after,
        } => Status::with_error_details(
            Code::Unavailable,
            message,
            ErrorDetails::with_retry_info(Some(retry_after)),
        ),
        IngestError::Internal(_) => Status::internal("internal error; see the server log"),
    }
}

impl OtlpGrpc {
    /// Services writing through `ingest`.
    pub fn new(ingest: Arc<Ingest>) -> OtlpGrpc {
        OtlpGrpc { ingest }
    }

    async fn run(
        &self,
        signal: Signal,
        auth: Option<String>,
        request: ExportRequest,
        size: usize,
    ) -> Result<Outcome, Status> {
        let started = Instant::now();
        let m = self.ingest.metrics().clone();
        let result = self.run_inner(signal, auth, request, size).await;
        if let Err(s) = &result {
            match s.code() {
                Code::Unauthenticated => m.unauthorized(),
                Code::InvalidArgument => m.bad_request(signal, Transport::Grpc),
                _ => {}
            }
        }
        m.request(signal, Transport::Grpc, size, started.elapsed());
        result
    }

    async fn run_inner(
        &self,
        signal: Signal,
        auth: Option<String>,
        request: ExportRequest,
        size: usize,
    ) -> Result<Outcome, Status> {
        if !token_ok(self.ingest.config(), auth.as_deref()) {
            return Err(Status::unauthenticated("missing or invalid bearer token"));
        }
        let mut admission = match self.ingest.admit().await {
            Ok(a) => a,
            Err(e) => {
                self.ingest.metrics().refused(signal, Transport::Grpc);
                return Err(to_status(e));
            }
        };
        if let Err(e) = self
            .ingest
            .reserve(&mut admission, size.saturating_mul(3))
            .await
        {
            self.ingest.metrics().refused(signal, Transport::Grpc);
            return Err(to_status(e));
        }
        self.ingest
            .export(request, Transport::Grpc)
            .await
            .map_err(to_status)
    }

    /// The tonic services, with compression and the message size limit set.
    pub fn services(
        self,
    ) -> (
        TraceServiceServer<OtlpGrpc>,
        MetricsServiceServer<OtlpGrpc>,
        LogsServiceServer<OtlpGrpc>,
    ) {
        let limit = self.ingest.config().max_body_bytes;
        (
            TraceServiceServer::new(self.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd),
            MetricsServiceServer::new(self.clone())
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd),
            LogsServiceServer::new(self)
                .max_decoding_message_size(limit)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd),
        )
    }
}

fn auth_of<T>(r: &Request<T>) -> Option<String> {
    r.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let auth = auth_of(&request);
        let req = request.into_inner();
        let size = req.encoded_len();
        let o = self
            .run(Signal::Traces, auth, ExportRequest::Traces(req), size)
            .await?;
        Ok(Response::new(o.trace_response()))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let auth = auth_of(&request);
        let req = request.into_inner();
        let size = req.encoded_len();
        let o = self
            .run(Signal::Metrics, auth, ExportRequest::Metrics(req), size)
            .await?;
        Ok(Response::new(o.metrics_response()))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let auth = auth_of(&request);
        let req = request.into_inner();
        let size = req.encoded_len();
        let o = self
            .run(Signal::Logs, auth, ExportRequest::Logs(req), size)
            .await?;
        Ok(Response::new(o.logs_response()))
    }
}

/// Answers a message over the size limit with RESOURCE_EXHAUSTED and no
/// retry hint, as SECURITY.md and the OTLP specification expect (tonic
/// answers OUT_OF_RANGE, which exporters retry forever), and counts it as
/// a bad request of its signal.
#[derive(Clone, Debug)]
pub struct OversizeLayer {
    metrics: Arc<crate::metrics::CollectorMetrics>,
    limit: usize,
}

impl OversizeLayer {
    /// A layer counting into `metrics`; `limit` is the message size limit.
    pub fn new(metrics: Arc<crate::metrics::CollectorMetrics>, limit: usize) -> OversizeLayer {
        OversizeLayer { metrics, limit }
    }
}

impl<S> tower::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;
    fn layer(&self, inner: S) -> Oversize<S> {
        Oversize {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`OversizeLayer`].
#[derive(Clone, Debug)]
pub struct Oversize<S> {
    inner: S,
    layer: OversizeLayer,
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for Oversize<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let signal = if path.contains("MetricsService") {
            Signal::Metrics
        } else if path.contains("LogsService") {
            Signal::Logs
        } else {
            Signal::Traces
        };
        let future = self.inner.call(req);
        let layer = self.layer.clone();
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            // tonic's two answers: OUT_OF_RANGE for a message declared
            // over the limit, RESOURCE_EXHAUSTED for one that inflates
            // past it.
            let status = headers.get("grpc-status").map(|v| v.as_bytes().to_vec());
            let message = headers
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .replace("%20", " ");
            let oversize = match status.as_deref() {
                Some(b"11") => message.contains("too large"),
                Some(b"8") => message.contains("size limit"),
                _ => false,
            };
            if oversize {
                headers.remove("grpc-status");
                headers.remove("grpc-message");
                headers.remove("grpc-status-details-bin");
                let status = Status::resource_exhausted(format!(
                    "the message is larger than the limit of {} bytes (collector.max_body_bytes); \
                     send smaller batches",
                    layer.limit
                ));
                // Only fails for header values that cannot be encoded,
                // which this message is not.
                let _ = status.add_header(headers);
                layer.metrics.bad_request(signal, Transport::Grpc);
            }
            Ok(response)
        })
    }
}
