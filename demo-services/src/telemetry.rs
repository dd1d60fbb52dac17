//! OpenTelemetry set-up for one shop service: traces, metrics and logs
//! exported over OTLP, configured by the standard `OTEL_*` variables.
//!
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4317`, or
//!   `http://localhost:4318` for HTTP) and the per-signal variants.
//! - `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` (default) or `http/protobuf`.
//! - `OTEL_METRIC_EXPORT_INTERVAL` (ms, default 60000), `OTEL_BSP_*`,
//!   `OTEL_RESOURCE_ATTRIBUTES`: read by the SDK itself.
//!
//! Application logs go through `tracing`: to stderr as text (filtered by
//! `--log`), and through the OpenTelemetry bridge as OTLP log records (INFO
//! and up, or `SHOP_OTLP_LOG`) that carry the trace and span id of the span
//! active when they were written.

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The providers of one process; [`Telemetry::shutdown`] flushes them.
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    logger_provider: SdkLoggerProvider,
    /// The tracer every span of this service is started from.
    pub tracer: opentelemetry_sdk::trace::SdkTracer,
    /// The meter for HTTP and business metrics.
    pub meter: opentelemetry::metrics::Meter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Grpc,
    HttpProtobuf,
}

fn transport() -> anyhow::Result<Transport> {
    match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
        Err(_) | Ok("grpc") | Ok("") => Ok(Transport::Grpc),
        Ok("http/protobuf") => Ok(Transport::HttpProtobuf),
        Ok(other) => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported; use grpc or http/protobuf"
        ),
    }
}

macro_rules! exporter {
    ($kind:ident, $transport:expr) => {
        match $transport {
            Transport::Grpc => opentelemetry_otlp::$kind::builder().with_tonic().build()?,
            Transport::HttpProtobuf => opentelemetry_otlp::$kind::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build()?,
        }
    };
}

impl Telemetry {
    /// Builds the exporters and installs the `tracing` subscriber. Must run
    /// inside a Tokio runtime (the gRPC exporter connects lazily on it).
    pub fn init(service: &str, log_filter: &str) -> anyhow::Result<Telemetry> {
        let transport = transport()?;
        let resource = Resource::builder()
            .with_service_name(service.to_string())
            .with_attributes([
                KeyValue::new("service.namespace", "burnwatch-demo-shop"),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
                KeyValue::new("deployment.environment.name", "demo"),
            ])
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(exporter!(SpanExporter, transport))
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_periodic_exporter(exporter!(MetricExporter, transport))
            .build();
        let logger_provider = SdkLoggerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter!(LogExporter, transport))
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );

        // The exporters' own crates log through `tracing` too; sending those
        // records back into the exporter would loop, so the bridge skips them.
        // OTLP gets INFO and up whatever the console shows (SHOP_OTLP_LOG overrides).
        let otlp_level = std::env::var("SHOP_OTLP_LOG").unwrap_or_else(|_| "info".into());
        let otel_filter = tracing_subscriber::EnvFilter::new(format!(
            "{otlp_level},opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,tonic=off,h2=off,hyper=off,hyper_util=off,reqwest=off,tower=off"
        ));
        let bridge = opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(
            &logger_provider,
        );
        let fmt_filter = tracing_subscriber::EnvFilter::try_new(format!("{log_filter},h2=warn"))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        use std::io::IsTerminal as _;
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::Layer::with_filter(bridge, otel_filter))
            .with(tracing_subscriber::Layer::with_filter(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
                fmt_filter,
            ))
            .try_init();

        let tracer = tracer_provider.tracer("burnwatch-demo-shop");
        let meter = meter_provider.meter("burnwatch-demo-shop");
        Ok(Telemetry {
            tracer_provider,
            meter_provider,
            logger_provider,
            tracer,
            meter,
        })
    }

    /// Exports what is buffered and stops the exporters. Blocks; call it
    /// from a blocking thread.
    pub fn shutdown(&self) {
        for (signal, result) in [
            ("traces", self.tracer_provider.shutdown()),
            ("metrics", self.meter_provider.shutdown()),
            ("logs", self.logger_provider.shutdown()),
        ] {
            if let Err(e) = result {
                eprintln!("telemetry: final {signal} export failed: {e}");
            }
        }
    }
}
