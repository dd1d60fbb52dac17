//! The receiver-independent ingest path: admission (concurrency and a byte
//! budget), conversion off the async workers, the durable write, and the
//! mapping of store errors to "retry later" answers.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use store::{Store, Table};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::CollectorConfig;
use crate::convert::{self, ConvertOptions, Converted};
use crate::metrics::{CollectorMetrics, Signal, Transport};

/// Why a request was not (fully) processed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Over capacity right now: 429 / RESOURCE_EXHAUSTED.
    #[error("{message}")]
    Overloaded {
        /// What is full.
        message: String,
        /// When to retry.
        retry_after: Duration,
    },
    /// Cannot store now (disk full, shutting down): 503 / UNAVAILABLE.
    #[error("{message}")]
    Unavailable {
        /// Why.
        message: String,
        /// When to retry.
        retry_after: Duration,
    },
    /// A bug or an unexpected I/O failure: 500 / INTERNAL. Logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// The retry hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            IngestError::Overloaded { retry_after, .. }
            | IngestError::Unavailable { retry_after, .. } => Some(*retry_after),
            IngestError::Internal(_) => None,
        }
    }
}

/// What happened to the items of one request.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Items stored durably.
    pub accepted: u64,
    /// Invalid items rejected.
    pub rejected: u64,
    /// What was wrong with the rejected items, and which limits were
    /// applied to the kept ones.
    pub message: String,
}

impl Outcome {
    /// Whether the answer carries `partialSuccess`: items were rejected, or
    /// kept with a warning (`rejected` zero, `error_message` set, as the
    /// OTLP spec allows).
    pub fn is_partial(&self) -> bool {
        self.rejected > 0 || !self.message.is_empty()
    }

    /// The trace export response: `partial_success` only when items were
    /// rejected or limited.
    pub fn trace_response(&self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: self.is_partial().then(|| ExportTracePartialSuccess {
                rejected_spans: self.rejected as i64,
                error_message: self.message.clone(),
            }),
        }
    }

    /// The metrics export response.
    pub fn metrics_response(&self) -> ExportMetricsServiceResponse {
        ExportMetricsServiceResponse {
            partial_success: self.is_partial().then(|| ExportMetricsPartialSuccess {
                rejected_data_points: self.rejected as i64,
                error_message: self.message.clone(),
            }),
        }
    }

    /// The logs export response.
    pub fn logs_response(&self) -> ExportLogsServiceResponse {
        ExportLogsServiceResponse {
            partial_success: self.is_partial().then(|| ExportLogsPartialSuccess {
                rejected_log_records: self.rejected as i64,
                error_message: self.message.clone(),
            }),
        }
    }
}

/// Capacity held by one request while it is processed.
#[derive(Debug)]
pub struct Admission {
    _request: OwnedSemaphorePermit,
    _bytes: Option<OwnedSemaphorePermit>,
}

/// A decoded export request of any signal.
#[derive(Debug)]
pub enum ExportRequest {
    /// Traces.
    Traces(ExportTraceServiceRequest),
    /// Metrics.
    Metrics(ExportMetricsServiceRequest),
    /// Logs.
    Logs(ExportLogsServiceRequest),
}

impl ExportRequest {
    /// Its signal.
    pub fn signal(&self) -> Signal {
        match self {
            ExportRequest::Traces(_) => Signal::Traces,
            ExportRequest::Metrics(_) => Signal::Metrics,
            ExportRequest::Logs(_) => Signal::Logs,
        }
    }
}

/// Shared by both receivers.
#[derive(Debug)]
pub struct Ingest {
    store: Store,
    metrics: Arc<CollectorMetrics>,
    config: CollectorConfig,
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    byte_permits: usize,
    cardinality: Arc<crate::cardinality::Cardinality>,
    remote_write_metadata: Arc<crate::remote_write::MetadataCache>,
}

impl Ingest {
    /// A new ingest path writing to `store`.
    pub fn new(store: Store, config: CollectorConfig, metrics: Arc<CollectorMetrics>) -> Ingest {
        let byte_permits = (config.max_inflight_bytes / 1024).clamp(1, u32::MAX as usize);
        Ingest {
            store,
            metrics,
            requests: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
            bytes: Arc::new(Semaphore::new(byte_permits)),
            byte_permits,
            cardinality: Arc::new(crate::cardinality::Cardinality::new(
                config.max_services_per_hour,
                config.max_series_per_hour,
            )),
            remote_write_metadata: Arc::default(),
            config,
        }
    }

    /// The receivers' settings.
    pub fn config(&self) -> &CollectorConfig {
        &self.config
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<CollectorMetrics> {
        &self.metrics
    }

    fn overloaded(&self, what: &str) -> IngestError {
        IngestError::Overloaded {
            message: format!("{what}; retry later"),
            retry_after: Duration::from_secs(1),
        }
    }

    /// Waits (up to the queue timeout) for a request slot.
    pub async fn admit(&self) -> Result<Admission, IngestError> {
        let wait = Duration::from_millis(self.config.queue_timeout_ms);
        match tokio::time::timeout(wait, self.requests.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Admission {
                _request: p,
                _bytes: None,
            }),
            _ => Err(self.overloaded("too many export requests in flight")),
        }
    }

    /// Adds `bytes` of decoded data to the request's budget.
    pub async fn reserve(
        &self,
        admission: &mut Admission,
        bytes: usize,
    ) -> Result<(), IngestError> {
        let kib = (bytes / 1024 + 1).min(self.byte_permits) as u32;
        let wait = Duration::from_millis(self.config.queue_timeout_ms);
        match tokio::time::timeout(wait, self.bytes.clone().acquire_many_owned(kib)).await {
            Ok(Ok(p)) => {
                admission._bytes = Some(p);
                Ok(())
            }
            _ => Err(self.overloaded("ingest memory budget exhausted")),
        }
    }

    /// Converts and stores one request. Returns once the valid items are
    /// durable; invalid items are reported in the outcome.
    pub async fn export(
        &self,
        req: ExportRequest,
        transport: Transport,
    ) -> Result<Outcome, IngestError> {
        let signal = req.signal();
        let opts = ConvertOptions {
            end_before_start_tolerance_ns: (self.config.end_before_start_tolerance_ms as i64)
                .saturating_mul(1_000_000),
            now_ns: store::now_ns(),
            max_attributes: self.config.max_attributes,
            max_attribute_value_bytes: self.config.max_attribute_value_bytes,
            max_name_bytes: self.config.max_name_bytes,
            max_log_body_bytes: self.config.max_log_body_bytes,
        };
        let cardinality = self.cardinality.clone();
        let mut req = req;
        let converted = tokio::task::spawn_blocking(move || {
            let pruned = cardinality.prune(&mut req, opts.now_ns);
            let converted = match &req {
                ExportRequest::Traces(r) => (Table::Spans, convert::spans(r, &opts)),
                ExportRequest::Metrics(r) => {
                    (Table::MetricPoints, convert::metric_points(r, &opts))
                }
                ExportRequest::Logs(r) => (Table::Logs, convert::logs(r, &opts)),
            };
            (converted, pruned)
        })
        .await
        .map_err(|e| IngestError::Internal(format!("conversion task failed: {e}")))?;
        let (
            (
                table,
                Converted {
                    batch,
                    accepted,
                    mut rejected,
                    mut message,
                    attributes_dropped,
                    values_truncated,
                },
            ),
            pruned,
        ) = converted;
        if pruned.rejected > 0 {
            rejected += pruned.rejected;
            self.metrics
                .cardinality_rejected(signal, transport, pruned.rejected);
            message = if message.is_empty() {
                pruned.message
            } else {
                format!("{}; {message}", pruned.message)
            };
        }
        if let Some(batch) = batch {
            self.write(signal, transport, table, batch).await?;
        }
        self.metrics.accepted(signal, transport, accepted);
        self.metrics.rejected(signal, transport, rejected);
        self.metrics
            .limited(signal, transport, attributes_dropped, values_truncated);
        Ok(Outcome {
            accepted,
            rejected,
            message,
        })
    }

    /// The per-hour service and series limits.
    pub fn cardinality(&self) -> &Arc<crate::cardinality::Cardinality> {
        &self.cardinality
    }

    /// Metric family metadata learned from remote write 1.0.
    pub fn remote_write_metadata(&self) -> &Arc<crate::remote_write::MetadataCache> {
        &self.remote_write_metadata
    }

    /// Stores rows converted by a receiver of its own (Prometheus remote
    /// write): returns once they are durable, counting `accepted` items.
    pub async fn write_rows(
        &self,
        signal: Signal,
        transport: Transport,
        table: Table,
        batch: RecordBatch,
        accepted: u64,
    ) -> Result<(), IngestError> {
        if batch.num_rows() > 0 {
            self.write(signal, transport, table, batch).await?;
        }
        self.metrics.accepted(signal, transport, accepted);
        Ok(())
    }

    async fn write(
        &self,
        signal: Signal,
        transport: Transport,
        table: Table,
        batch: RecordBatch,
    ) -> Result<(), IngestError> {
        match self.store.write(table, batch).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.metrics.refused(signal, transport);
                let retry_after = e.retry_after().unwrap_or(Duration::from_secs(1));
                match e {
                    store::Error::Overloaded { .. } => Err(IngestError::Overloaded {
                        message: format!("{e}"),
                        retry_after,
                    }),
                    store::Error::BucketUnavailable { .. } => {
                        tracing::warn!(error = %e, "refusing ingest: the bucket does not take files");
                        Err(IngestError::Unavailable {
                            message: format!("{e}"),
                            retry_after,
                        })
                    }
                    store::Error::DiskFull { .. } => {
                        tracing::warn!(error = %e, "refusing ingest: disk full");
                        Err(IngestError::Unavailable {
                            message: "storage is full; retry later".into(),
                            retry_after,
                        })
                    }
                    store::Error::Closed => Err(IngestError::Unavailable {
                        message: "shutting down; retry later".into(),
                        retry_after,
                    }),
                    other => {
                        tracing::error!(error = %other, "ingest write failed; the data was not acknowledged");
                        Err(IngestError::Internal(other.to_string()))
                    }
                }
            }
        }
    }
}
