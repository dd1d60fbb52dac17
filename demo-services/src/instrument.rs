//! HTTP instrumentation per the OpenTelemetry semantic conventions: a SERVER
//! span and an `http.server.request.duration` point for every request, a
//! CLIENT span for every outgoing call, W3C trace context on every hop.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::chaos::Chaos;
use crate::error::CallError;
use crate::error::ErrorMessage;

/// Bucket boundaries the HTTP semantic conventions recommend for
/// `http.server.request.duration` (seconds).
pub const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The per-service instrumentation handles.
#[derive(Clone)]
pub struct Instruments {
    /// `service.name`, also used in log lines.
    pub service: &'static str,
    /// Tracer of this service.
    pub tracer: opentelemetry_sdk::trace::SdkTracer,
    duration: opentelemetry::metrics::Histogram<f64>,
    port: u16,
}

impl Instruments {
    /// Creates the HTTP instruments on `meter`.
    pub fn new(
        service: &'static str,
        tracer: opentelemetry_sdk::trace::SdkTracer,
        meter: &opentelemetry::metrics::Meter,
        port: u16,
    ) -> Instruments {
        let duration = meter
            .f64_histogram("http.server.request.duration")
            .with_unit("s")
            .with_description("Duration of HTTP server requests.")
            .with_boundaries(DURATION_BOUNDARIES.to_vec())
            .build();
        Instruments {
            service,
            tracer,
            duration,
            port,
        }
    }
}

/// Axum middleware (install with `route_layer`, so the matched route is
/// known): continues the caller's trace, records the SERVER span and the
/// duration histogram. Runs the handler with the span as the current context,
/// so database spans, client calls and log records nest under it.
pub async fn server_span(
    State(inst): State<Instruments>,
    matched: Option<MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = matched
        .as_ref()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(req.headers()))
    });
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.to_string()),
        KeyValue::new("http.route", route.clone()),
        KeyValue::new("url.path", req.uri().path().to_string()),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("server.port", i64::from(inst.port)),
        KeyValue::new("network.protocol.version", "1.1"),
    ];
    if let Some(q) = req.uri().query() {
        attributes.push(KeyValue::new("url.query", q.to_string()));
    }
    if let Some(ua) = req
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", ua.to_string()));
    }
    let span = inst
        .tracer
        .span_builder(format!("{method} {route}"))
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
        .start_with_context(&inst.tracer, &parent);
    let cx = parent.with_span(span);
    let response = next.run(req).with_context(cx.clone()).await;

    let status = response.status();
    let span = cx.span();
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status.as_u16()),
    ));
    let mut metric_attrs = vec![
        KeyValue::new("http.request.method", method.to_string()),
        KeyValue::new("http.route", route),
        KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
        KeyValue::new("url.scheme", "http"),
    ];
    if status.is_server_error() {
        let message = response
            .extensions()
            .get::<ErrorMessage>()
            .map(|m| m.0.clone())
            .unwrap_or_else(|| status.to_string());
        span.set_attribute(KeyValue::new("error.type", status.as_u16().to_string()));
        span.set_status(Status::error(message));
        metric_attrs.push(KeyValue::new("error.type", status.as_u16().to_string()));
    }
    span.end();
    inst.duration
        .record(started.elapsed().as_secs_f64(), &metric_attrs);
    response
}

/// An instrumented HTTP client for calls to the other shop services.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Base URL of each service this one calls, by name.
    urls: Arc<HashMap<String, String>>,
    inst: Instruments,
    chaos: Chaos,
}

impl Client {
    /// `urls` maps service names to base URLs (`http://host:port`).
    pub fn new(inst: Instruments, urls: HashMap<String, String>, chaos: Chaos) -> Client {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(32)
            .build()
            .expect("reqwest client without TLS always builds");
        Client {
            http,
            urls: Arc::new(urls),
            inst,
            chaos,
        }
    }

    /// Base URL of `service`.
    pub fn url(&self, service: &str) -> Option<&str> {
        self.urls.get(service).map(String::as_str)
    }

    /// `GET path` on `service` (see [`Client::call`]).
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: &str,
        template: &str,
        path: &str,
    ) -> Result<T, CallError> {
        self.call(service, Method::GET, template, path, None::<&()>)
            .await
    }

    /// Calls `method path` on `service` (with a JSON body if given) inside a
    /// CLIENT span, and decodes the JSON answer. `template` is the route
    /// template (`/products/{id}`), used in the span name.
    pub async fn call<T: DeserializeOwned>(
        &self,
        service: &str,
        method: Method,
        template: &str,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, CallError> {
        let base = self.url(service).ok_or_else(|| CallError::Transport {
            service: service.to_string(),
            message: "no address configured".into(),
        })?;
        let url = format!("{base}{path}");
        let parsed = reqwest::Url::parse(&url).map_err(|e| CallError::Transport {
            service: service.to_string(),
            message: e.to_string(),
        })?;
        let parent = Context::current();
        let span = self
            .inst
            .tracer
            .span_builder(format!("{method} {template}"))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_string()),
                KeyValue::new("url.full", url.clone()),
                KeyValue::new("url.template", template.to_string()),
                KeyValue::new(
                    "server.address",
                    parsed.host_str().unwrap_or_default().to_string(),
                ),
                KeyValue::new(
                    "server.port",
                    i64::from(parsed.port_or_known_default().unwrap_or(80)),
                ),
                KeyValue::new("peer.service", service.to_string()),
            ])
            .start_with_context(&self.inst.tracer, &parent);
        let cx = parent.with_span(span);

        let extra = self.chaos.dependency_delay(service);
        let result = async {
            if !extra.is_zero() {
                tokio::time::sleep(extra).await;
            }
            let mut headers = HeaderMap::new();
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&Context::current(), &mut HeaderInjector(&mut headers))
            });
            let mut req = self.http.request(method.clone(), parsed).headers(headers);
            if let Some(body) = body {
                req = req.json(body);
            }
            let transport = |e: reqwest::Error| CallError::Transport {
                service: service.to_string(),
                message: e.to_string(),
            };
            let resp = req.send().await.map_err(transport)?;
            let status = resp.status();
            Context::current().span().set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if !status.is_success() {
                let text = resp.text().await.unwrap_or_default();
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or(text);
                return Err(CallError::Status {
                    service: service.to_string(),
                    status,
                    message,
                });
            }
            let bytes = resp.bytes().await.map_err(transport)?;
            // 204 and other empty answers decode as JSON null.
            let body: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            serde_json::from_slice::<T>(body).map_err(|e| CallError::Transport {
                service: service.to_string(),
                message: format!("undecodable answer: {e}"),
            })
        }
        .with_context(cx.clone())
        .await;

        let span = cx.span();
        match &result {
            Err(CallError::Status {
                status, message, ..
            }) if status.is_server_error() => {
                span.set_attribute(KeyValue::new("error.type", status.as_u16().to_string()));
                span.set_status(Status::error(message.clone()));
            }
            Err(CallError::Transport { message, .. }) => {
                span.set_attribute(KeyValue::new("error.type", "transport"));
                span.set_status(Status::error(message.clone()));
            }
            _ => {}
        }
        span.end();
        result
    }
}
