//! OTLP protobuf types straight into the store's Arrow builders.
//!
//! Each export request becomes one `RecordBatch` per signal. Invalid records
//! are counted and described (the first few problems), never stored, and
//! never fail the rest of the request: the receivers answer them with
//! `partialSuccess`.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt::Write as _;

use arrow::array::RecordBatch;
use base64::Engine as _;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind as PbKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as PbStatus;
use store::rows::{
    Attr, EventRecord, ExemplarRecord, LinkRecord, LogRecord, LogsBuilder, MetricPointRecord,
    MetricPointsBuilder, Number, Origin, PointData, SpanKind, SpanRecord, SpansBuilder, StatusCode,
    Temporality,
};

/// Validation settings.
#[derive(Debug, Clone, Copy)]
pub struct ConvertOptions {
    /// A span may end this much before it starts (clock skew) and still be kept.
    pub end_before_start_tolerance_ns: i64,
    /// Receive time, used as the observed time of log records that have none.
    pub now_ns: i64,
    /// Most attributes kept per span, event, link, log record, data point,
    /// exemplar or resource; the rest are dropped and counted in
    /// `dropped_attributes_count` where the record has one.
    pub max_attributes: usize,
    /// Longest attribute key or value kept, in bytes; longer ones are cut
    /// at a character boundary. Also the limit of status messages and trace
    /// states, and of metric units and descriptions.
    pub max_attribute_value_bytes: usize,
    /// Longest name kept, in bytes: span, event, metric, scope and service
    /// names, log event names and severity texts.
    pub max_name_bytes: usize,
    /// Longest log body kept, in bytes (a structured body as its JSON text).
    pub max_log_body_bytes: usize,
}

/// Default of [`ConvertOptions::max_attributes`] (the OpenTelemetry SDKs' default count limit).
pub const DEFAULT_MAX_ATTRIBUTES: usize = 128;
/// Default of [`ConvertOptions::max_attribute_value_bytes`].
pub const DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES: usize = 16 << 10;
/// Default of [`ConvertOptions::max_name_bytes`].
pub const DEFAULT_MAX_NAME_BYTES: usize = 4 << 10;
/// Default of [`ConvertOptions::max_log_body_bytes`].
pub const DEFAULT_MAX_LOG_BODY_BYTES: usize = 64 << 10;

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            end_before_start_tolerance_ns: 0,
            now_ns: store::now_ns(),
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_attribute_value_bytes: DEFAULT_MAX_ATTRIBUTE_VALUE_BYTES,
            max_name_bytes: DEFAULT_MAX_NAME_BYTES,
            max_log_body_bytes: DEFAULT_MAX_LOG_BODY_BYTES,
        }
    }
}

/// The outcome of converting one request.
#[derive(Debug)]
pub struct Converted {
    /// The valid records, or `None` when there were none.
    pub batch: Option<RecordBatch>,
    /// Records accepted.
    pub accepted: u64,
    /// Records rejected.
    pub rejected: u64,
    /// What was wrong with the rejected records, and which limits were
    /// applied to the kept ones (empty when neither happened).
    pub message: String,
    /// Attributes dropped over the count limit.
    pub attributes_dropped: u64,
    /// Attribute keys or values, names, messages or log bodies cut to their
    /// length limits.
    pub values_truncated: u64,
}

/// Collects rejection reasons: the count plus the first few messages.
#[derive(Default)]
struct Rejections {
    count: u64,
    message: String,
}

const MAX_REASONS: u64 = 5;

impl Rejections {
    fn reject(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.count <= MAX_REASONS {
            if !self.message.is_empty() {
                self.message.push_str("; ");
            }
            self.message.push_str(&what());
        } else if self.count == MAX_REASONS + 1 {
            self.message.push_str("; ...");
        }
    }

    fn finish(
        self,
        kind: &str,
        accepted: u64,
        batch: Option<RecordBatch>,
        limits: &AttrLimits,
    ) -> Converted {
        let mut message = if self.count == 0 {
            String::new()
        } else {
            format!("rejected {} {kind}: {}", self.count, self.message)
        };
        let (dropped, truncated) = (limits.dropped.get(), limits.truncated.get());
        if dropped > 0 || truncated > 0 {
            if !message.is_empty() {
                message.push_str("; ");
            }
            // A warning with the items kept: the OTLP spec allows
            // `partialSuccess` with zero rejected items for exactly this.
            let _ = write!(
                message,
                "{kind} were kept but limited: {dropped} attributes dropped over the limit of {} per item \
                 (collector.max_attributes), {truncated} texts cut: attribute keys and values, status \
                 messages, units and descriptions to {} bytes (collector.max_attribute_value_bytes), \
                 names to {} bytes (collector.max_name_bytes), log bodies to {} bytes \
                 (collector.max_log_body_bytes)",
                limits.max_count, limits.max_bytes, limits.max_name, limits.max_body
            );
        }
        Converted {
            batch,
            accepted,
            rejected: self.count,
            message,
            attributes_dropped: dropped,
            values_truncated: truncated,
        }
    }
}

/// Applies the attribute count and length limits and counts what it cut.
struct AttrLimits {
    max_count: usize,
    max_bytes: usize,
    max_name: usize,
    max_body: usize,
    dropped: Cell<u64>,
    truncated: Cell<u64>,
}

/// The longest prefix of `s` of at most `max` bytes that ends at a character boundary.
fn prefix(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

impl AttrLimits {
    fn new(opts: &ConvertOptions) -> AttrLimits {
        AttrLimits {
            max_count: opts.max_attributes,
            max_bytes: opts.max_attribute_value_bytes.max(1),
            max_name: opts.max_name_bytes.max(1),
            max_body: opts.max_log_body_bytes.max(1),
            dropped: Cell::new(0),
            truncated: Cell::new(0),
        }
    }

    /// `s` cut to `max` bytes at a character boundary, counted when cut.
    fn cut<'a>(&self, s: &'a str, max: usize) -> &'a str {
        let end = prefix(s, max);
        if end < s.len() {
            self.truncated.set(self.truncated.get() + 1);
        }
        &s[..end]
    }

    /// A name within `max_name_bytes`.
    fn name<'a>(&self, s: &'a str) -> &'a str {
        self.cut(s, self.max_name)
    }

    /// A status message, trace state, unit or description within
    /// `max_attribute_value_bytes`.
    fn text<'a>(&self, s: &'a str) -> &'a str {
        self.cut(s, self.max_bytes)
    }

    /// A log body within `max_log_body_bytes`.
    fn body<'a>(&self, body: Cow<'a, str>) -> Cow<'a, str> {
        let end = prefix(&body, self.max_body);
        if end == body.len() {
            return body;
        }
        self.truncated.set(self.truncated.get() + 1);
        match body {
            Cow::Borrowed(b) => Cow::Borrowed(&b[..end]),
            Cow::Owned(mut b) => {
                b.truncate(end);
                Cow::Owned(b)
            }
        }
    }

    /// The scope's name and version within `max_name_bytes`.
    fn scope<'a>(&self, scope: Option<&'a InstrumentationScope>) -> (&'a str, &'a str) {
        let (name, version) = scope_parts(scope);
        (self.name(name), self.name(version))
    }

    /// The attributes within the limits, for records without a dropped count.
    fn get<'a>(&self, kvs: &'a [KeyValue]) -> Vec<Attr<'a>> {
        self.with_dropped(kvs, 0).0
    }

    /// The attributes within the limits, and `already_dropped` plus the
    /// number dropped here (saturating).
    fn with_dropped<'a>(&self, kvs: &'a [KeyValue], already_dropped: u32) -> (Vec<Attr<'a>>, u32) {
        let kept = kvs.len().min(self.max_count);
        let over = kvs.len() - kept;
        if over > 0 {
            self.dropped.set(self.dropped.get() + over as u64);
        }
        let attrs = kvs[..kept]
            .iter()
            .map(|kv| {
                let key = &kv.key[..prefix(&kv.key, self.max_bytes)];
                let mut value = kv
                    .value
                    .as_ref()
                    .map(any_value_string)
                    .unwrap_or(Cow::Borrowed(""));
                let end = prefix(&value, self.max_bytes);
                let mut cut = (key.len() < kv.key.len()) as u64;
                if end < value.len() {
                    cut += 1;
                    value = match value {
                        Cow::Borrowed(v) => Cow::Borrowed(&v[..end]),
                        Cow::Owned(mut v) => {
                            v.truncate(end);
                            Cow::Owned(v)
                        }
                    };
                }
                if cut > 0 {
                    self.truncated.set(self.truncated.get() + cut);
                }
                Attr { key, value }
            })
            .collect();
        (
            attrs,
            already_dropped.saturating_add(u32::try_from(over).unwrap_or(u32::MAX)),
        )
    }
}

/// An attribute value rendered as the string stored in attribute maps.
pub fn any_value_string(v: &AnyValue) -> Cow<'_, str> {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Cow::Borrowed(s),
        Some(any_value::Value::BoolValue(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Some(any_value::Value::IntValue(i)) => Cow::Owned(i.to_string()),
        Some(any_value::Value::DoubleValue(d)) => Cow::Owned(d.to_string()),
        Some(any_value::Value::BytesValue(b)) => {
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(any_value::Value::ArrayValue(_)) | Some(any_value::Value::KvlistValue(_)) => {
            let mut s = String::new();
            write_json(v, &mut s);
            Cow::Owned(s)
        }
        Some(any_value::Value::StringValueStrindex(i)) => Cow::Owned(format!("strindex:{i}")),
        None => Cow::Borrowed(""),
    }
}

fn write_json_str(s: &str, out: &mut String) {
    // serde_json escapes correctly; a String never fails to serialise.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Writes an `AnyValue` as JSON (used for arrays, maps and structured log bodies).
pub fn write_json(v: &AnyValue, out: &mut String) {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => write_json_str(s, out),
        Some(any_value::Value::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(any_value::Value::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(any_value::Value::DoubleValue(d)) if d.is_finite() => {
            let _ = write!(out, "{d}");
        }
        Some(any_value::Value::DoubleValue(d)) => write_json_str(&d.to_string(), out),
        Some(any_value::Value::BytesValue(b)) => {
            write_json_str(&base64::engine::general_purpose::STANDARD.encode(b), out)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            out.push('[');
            for (i, x) in a.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            out.push('{');
            for (i, x) in kv.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_str(&x.key, out);
                out.push(':');
                match &x.value {
                    Some(v) => write_json(v, out),
                    None => out.push_str("null"),
                }
            }
            out.push('}');
        }
        Some(any_value::Value::StringValueStrindex(i)) => {
            let _ = write!(out, "{i}");
        }
        None => out.push_str("null"),
    }
}

/// A resource's `service.name`, or `unknown_service` without one.
pub fn service_name(resource: Option<&Resource>) -> &str {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
                _ => None,
            },
        )
        .unwrap_or("unknown_service")
}

fn scope_parts(scope: Option<&InstrumentationScope>) -> (&str, &str) {
    scope
        .map(|s| (s.name.as_str(), s.version.as_str()))
        .unwrap_or(("", ""))
}

fn id16(b: &[u8]) -> Option<[u8; 16]> {
    let id: [u8; 16] = b.try_into().ok()?;
    (id != [0; 16]).then_some(id)
}

fn id8(b: &[u8]) -> Option<[u8; 8]> {
    let id: [u8; 8] = b.try_into().ok()?;
    (id != [0; 8]).then_some(id)
}

fn ts(v: u64) -> Option<i64> {
    i64::try_from(v).ok()
}

/// An optional id field: empty is `Ok(None)`, a valid id `Ok(Some)`, anything else `Err`.
fn opt_id<const N: usize>(b: &[u8]) -> Result<Option<[u8; N]>, ()> {
    if b.is_empty() {
        return Ok(None);
    }
    let id: [u8; N] = b.try_into().map_err(|_| ())?;
    Ok((id != [0; N]).then_some(id))
}

fn span_kind(k: i32) -> SpanKind {
    match PbKind::try_from(k) {
        Ok(PbKind::Internal) => SpanKind::Internal,
        Ok(PbKind::Server) => SpanKind::Server,
        Ok(PbKind::Client) => SpanKind::Client,
        Ok(PbKind::Producer) => SpanKind::Producer,
        Ok(PbKind::Consumer) => SpanKind::Consumer,
        _ => SpanKind::Unspecified,
    }
}

/// Converts a trace export request.
pub fn spans(req: &ExportTraceServiceRequest, opts: &ConvertOptions) -> Converted {
    let mut b = SpansBuilder::new();
    let mut rej = Rejections::default();
    let limits = AttrLimits::new(opts);
    for rs in &req.resource_spans {
        let resource_attributes = rs
            .resource
            .as_ref()
            .map(|r| limits.get(&r.attributes))
            .unwrap_or_default();
        let service = limits.name(service_name(rs.resource.as_ref()));
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) = limits.scope(ss.scope.as_ref());
            let origin = Origin {
                service_name: service,
                resource_attributes: &resource_attributes,
                scope_name,
                scope_version,
            };
            for s in &ss.spans {
                let Some(trace_id) = id16(&s.trace_id) else {
                    rej.reject(|| {
                        format!(
                            "span {:?}: trace_id must be 16 bytes and not all zero, got {} bytes",
                            s.name,
                            s.trace_id.len()
                        )
                    });
                    continue;
                };
                let Some(span_id) = id8(&s.span_id) else {
                    rej.reject(|| {
                        format!(
                            "span {:?}: span_id must be 8 bytes and not all zero, got {} bytes",
                            s.name,
                            s.span_id.len()
                        )
                    });
                    continue;
                };
                let Ok(parent_span_id) = opt_id::<8>(&s.parent_span_id) else {
                    rej.reject(|| {
                        format!(
                            "span {:?}: parent_span_id must be empty or 8 bytes, got {} bytes",
                            s.name,
                            s.parent_span_id.len()
                        )
                    });
                    continue;
                };
                let (Some(start), Some(end)) =
                    (ts(s.start_time_unix_nano), ts(s.end_time_unix_nano))
                else {
                    rej.reject(|| format!("span {:?}: timestamp out of range", s.name));
                    continue;
                };
                if start == 0 {
                    rej.reject(|| format!("span {:?}: start_time_unix_nano is missing", s.name));
                    continue;
                }
                if end < start - opts.end_before_start_tolerance_ns {
                    rej.reject(|| {
                        format!(
                            "span {:?}: ends {} ns before it starts",
                            s.name,
                            start - end
                        )
                    });
                    continue;
                }
                let mut bad_link = false;
                let links = s
                    .links
                    .iter()
                    .filter_map(|l| match (id16(&l.trace_id), id8(&l.span_id)) {
                        (Some(trace_id), Some(span_id)) => {
                            let (attributes, dropped_attributes_count) =
                                limits.with_dropped(&l.attributes, l.dropped_attributes_count);
                            Some(LinkRecord {
                                trace_id,
                                span_id,
                                trace_state: limits.text(&l.trace_state),
                                attributes,
                                dropped_attributes_count,
                                flags: l.flags,
                            })
                        }
                        _ => {
                            bad_link = true;
                            None
                        }
                    })
                    .collect();
                if bad_link {
                    rej.reject(|| {
                        format!(
                            "span {:?}: a link has an invalid trace_id or span_id",
                            s.name
                        )
                    });
                    continue;
                }
                let status = s.status.as_ref();
                let (attributes, dropped_attributes_count) =
                    limits.with_dropped(&s.attributes, s.dropped_attributes_count);
                let record = SpanRecord {
                    trace_id,
                    span_id,
                    parent_span_id,
                    trace_state: limits.text(&s.trace_state),
                    flags: s.flags,
                    name: limits.name(&s.name),
                    kind: span_kind(s.kind),
                    start_time_ns: start,
                    end_time_ns: end.max(start),
                    status_code: match status.map(|st| PbStatus::try_from(st.code)) {
                        Some(Ok(PbStatus::Ok)) => StatusCode::Ok,
                        Some(Ok(PbStatus::Error)) => StatusCode::Error,
                        _ => StatusCode::Unset,
                    },
                    status_message: limits.text(status.map(|st| st.message.as_str()).unwrap_or("")),
                    attributes,
                    dropped_attributes_count,
                    events: s
                        .events
                        .iter()
                        .map(|e| {
                            let (attributes, dropped_attributes_count) =
                                limits.with_dropped(&e.attributes, e.dropped_attributes_count);
                            EventRecord {
                                time_ns: ts(e.time_unix_nano).unwrap_or(start),
                                name: limits.name(&e.name),
                                attributes,
                                dropped_attributes_count,
                            }
                        })
                        .collect(),
                    dropped_events_count: s.dropped_events_count,
                    links,
                    dropped_links_count: s.dropped_links_count,
                };
                b.append(&origin, &record);
            }
        }
    }
    let accepted = b.len() as u64;
    let batch = (!b.is_empty()).then(|| b.finish());
    rej.finish("spans", accepted, batch, &limits)
}

/// Converts a logs export request.
pub fn logs(req: &ExportLogsServiceRequest, opts: &ConvertOptions) -> Converted {
    let mut b = LogsBuilder::new();
    let mut rej = Rejections::default();
    let limits = AttrLimits::new(opts);
    for rl in &req.resource_logs {
        let resource_attributes = rl
            .resource
            .as_ref()
            .map(|r| limits.get(&r.attributes))
            .unwrap_or_default();
        let service = limits.name(service_name(rl.resource.as_ref()));
        for sl in &rl.scope_logs {
            let (scope_name, scope_version) = limits.scope(sl.scope.as_ref());
            let origin = Origin {
                service_name: service,
                resource_attributes: &resource_attributes,
                scope_name,
                scope_version,
            };
            for (i, r) in sl.log_records.iter().enumerate() {
                let Ok(trace_id) = opt_id::<16>(&r.trace_id) else {
                    rej.reject(|| {
                        format!(
                            "log record {i}: trace_id must be empty or 16 bytes, got {} bytes",
                            r.trace_id.len()
                        )
                    });
                    continue;
                };
                let Ok(span_id) = opt_id::<8>(&r.span_id) else {
                    rej.reject(|| {
                        format!(
                            "log record {i}: span_id must be empty or 8 bytes, got {} bytes",
                            r.span_id.len()
                        )
                    });
                    continue;
                };
                let (Some(time), Some(observed)) =
                    (ts(r.time_unix_nano), ts(r.observed_time_unix_nano))
                else {
                    rej.reject(|| format!("log record {i}: timestamp out of range"));
                    continue;
                };
                let observed = if observed == 0 { opts.now_ns } else { observed };
                let body = r.body.as_ref().map(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Cow::Borrowed(s.as_str()),
                    Some(_) => {
                        let mut s = String::new();
                        write_json(v, &mut s);
                        Cow::Owned(s)
                    }
                    None => Cow::Borrowed(""),
                });
                let (attributes, dropped_attributes_count) =
                    limits.with_dropped(&r.attributes, r.dropped_attributes_count);
                b.append(
                    &origin,
                    &LogRecord {
                        time_ns: if time == 0 { observed } else { time },
                        observed_time_ns: observed,
                        severity_number: r.severity_number,
                        severity_text: limits.name(&r.severity_text),
                        body: body.map(|b| limits.body(b)),
                        trace_id,
                        span_id,
                        flags: r.flags,
                        event_name: limits.name(&r.event_name),
                        attributes,
                        dropped_attributes_count,
                    },
                );
            }
        }
    }
    let accepted = b.len() as u64;
    let batch = (!b.is_empty()).then(|| b.finish());
    rej.finish("log records", accepted, batch, &limits)
}

fn temporality(t: i32) -> Temporality {
    match AggregationTemporality::try_from(t) {
        Ok(AggregationTemporality::Delta) => Temporality::Delta,
        Ok(AggregationTemporality::Cumulative) => Temporality::Cumulative,
        _ => Temporality::Unspecified,
    }
}

fn exemplars<'a>(ex: &'a [Exemplar], limits: &AttrLimits) -> Vec<ExemplarRecord<'a>> {
    ex.iter()
        .map(|e| ExemplarRecord {
            time_ns: ts(e.time_unix_nano).unwrap_or(0),
            value: match e.value {
                Some(exemplar::Value::AsDouble(d)) => d,
                Some(exemplar::Value::AsInt(i)) => i as f64,
                None => f64::NAN,
            },
            trace_id: id16(&e.trace_id),
            span_id: id8(&e.span_id),
            filtered_attributes: limits.get(&e.filtered_attributes),
        })
        .collect()
}

/// Converts a metrics export request: one row per data point.
pub fn metric_points(req: &ExportMetricsServiceRequest, opts: &ConvertOptions) -> Converted {
    let mut b = MetricPointsBuilder::new();
    let mut rej = Rejections::default();
    let limits = AttrLimits::new(opts);
    for rm in &req.resource_metrics {
        let resource_attributes = rm
            .resource
            .as_ref()
            .map(|r| limits.get(&r.attributes))
            .unwrap_or_default();
        let service = limits.name(service_name(rm.resource.as_ref()));
        for sm in &rm.scope_metrics {
            let (scope_name, scope_version) = limits.scope(sm.scope.as_ref());
            let origin = Origin {
                service_name: service,
                resource_attributes: &resource_attributes,
                scope_name,
                scope_version,
            };
            for m in &sm.metrics {
                let name = limits.name(&m.name);
                let text = MetricText {
                    name,
                    unit: limits.text(&m.unit),
                    description: limits.text(&m.description),
                };
                if name.is_empty() {
                    rej.reject(|| "a metric has no name".to_string());
                    continue;
                }
                macro_rules! push {
                    ($p:expr, $data:expr, $ex:expr) => {
                        match point(
                            &text,
                            $p.time_unix_nano,
                            $p.start_time_unix_nano,
                            limits.get(&$p.attributes),
                            $p.flags,
                            $data,
                            $ex,
                        ) {
                            Some(rec) => b.append(&origin, &rec),
                            None => rej.reject(|| {
                                format!("metric {name:?}: a data point has no valid time_unix_nano")
                            }),
                        }
                    };
                }
                match &m.data {
                    None => rej.reject(|| format!("metric {name:?} has no data (gauge, sum, histogram, exponential histogram or summary)")),
                    Some(Data::Gauge(g)) => {
                        for p in &g.data_points {
                            let Some(n) = number(p.value) else {
                                rej.reject(|| format!("metric {name:?}: a gauge point has no value"));
                                continue;
                            };
                            push!(p, PointData::Gauge(n), exemplars(&p.exemplars, &limits));
                        }
                    }
                    Some(Data::Sum(s)) => {
                        for p in &s.data_points {
                            let Some(n) = number(p.value) else {
                                rej.reject(|| format!("metric {name:?}: a sum point has no value"));
                                continue;
                            };
                            let data = PointData::Sum {
                                value: n,
                                is_monotonic: s.is_monotonic,
                                temporality: temporality(s.aggregation_temporality),
                            };
                            push!(p, data, exemplars(&p.exemplars, &limits));
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        for p in &h.data_points {
                            if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                                rej.reject(|| format!(
                                    "metric {name:?}: histogram has {} bucket counts for {} bounds (want bounds + 1)",
                                    p.bucket_counts.len(),
                                    p.explicit_bounds.len()
                                ));
                                continue;
                            }
                            let data = PointData::Histogram {
                                temporality: temporality(h.aggregation_temporality),
                                count: p.count,
                                sum: p.sum,
                                min: p.min,
                                max: p.max,
                                bucket_counts: &p.bucket_counts,
                                explicit_bounds: &p.explicit_bounds,
                            };
                            push!(p, data, exemplars(&p.exemplars, &limits));
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        for p in &h.data_points {
                            let pos = p.positive.as_ref();
                            let neg = p.negative.as_ref();
                            let data = PointData::ExponentialHistogram {
                                temporality: temporality(h.aggregation_temporality),
                                count: p.count,
                                sum: p.sum,
                                min: p.min,
                                max: p.max,
                                scale: p.scale,
                                zero_count: p.zero_count,
                                zero_threshold: p.zero_threshold,
                                positive_offset: pos.map(|b| b.offset).unwrap_or(0),
                                positive_bucket_counts: pos.map(|b| b.bucket_counts.as_slice()).unwrap_or_default(),
                                negative_offset: neg.map(|b| b.offset).unwrap_or(0),
                                negative_bucket_counts: neg.map(|b| b.bucket_counts.as_slice()).unwrap_or_default(),
                            };
                            push!(p, data, exemplars(&p.exemplars, &limits));
                        }
                    }
                    Some(Data::Summary(s)) => {
                        for p in &s.data_points {
                            let data = PointData::Summary {
                                count: p.count,
                                sum: p.sum,
                                quantiles: p.quantile_values.iter().map(|q| (q.quantile, q.value)).collect(),
                            };
                            push!(p, data, Vec::new());
                        }
                    }
                }
            }
        }
    }
    let accepted = b.len() as u64;
    let batch = (!b.is_empty()).then(|| b.finish());
    rej.finish("data points", accepted, batch, &limits)
}

/// A metric's name, unit and description, within their limits.
struct MetricText<'a> {
    name: &'a str,
    unit: &'a str,
    description: &'a str,
}

fn point<'a>(
    m: &MetricText<'a>,
    time: u64,
    start: u64,
    attributes: Vec<Attr<'a>>,
    flags: u32,
    data: PointData<'a>,
    exemplars: Vec<ExemplarRecord<'a>>,
) -> Option<MetricPointRecord<'a>> {
    let time_ns = ts(time).filter(|t| *t > 0)?;
    Some(MetricPointRecord {
        time_ns,
        start_time_ns: ts(start).filter(|s| *s > 0),
        metric_name: m.name,
        unit: m.unit,
        description: m.description,
        attributes,
        flags,
        data,
        exemplars,
    })
}

fn number(v: Option<number_data_point::Value>) -> Option<Number> {
    match v? {
        number_data_point::Value::AsDouble(d) => Some(Number::F64(d)),
        number_data_point::Value::AsInt(i) => Some(Number::I64(i)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue as Array, KeyValueList};

    fn v(value: any_value::Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    #[test]
    fn attribute_values_render_as_documented() {
        use any_value::Value::*;
        assert_eq!(any_value_string(&v(StringValue("x".into()))), "x");
        assert_eq!(any_value_string(&v(BoolValue(true))), "true");
        assert_eq!(any_value_string(&v(IntValue(-42))), "-42");
        assert_eq!(any_value_string(&v(DoubleValue(0.25))), "0.25");
        assert_eq!(any_value_string(&v(BytesValue(vec![0, 1, 2]))), "AAEC");
        let arr = v(ArrayValue(Array {
            values: vec![
                v(StringValue("a\"b".into())),
                v(IntValue(2)),
                v(DoubleValue(f64::NAN)),
            ],
        }));
        assert_eq!(any_value_string(&arr), r#"["a\"b",2,"NaN"]"#);
        let kv = v(KvlistValue(KeyValueList {
            values: vec![
                KeyValue {
                    key: "k".into(),
                    value: Some(v(BoolValue(false))),
                    ..Default::default()
                },
                KeyValue {
                    key: "n".into(),
                    value: None,
                    ..Default::default()
                },
            ],
        }));
        assert_eq!(any_value_string(&kv), r#"{"k":false,"n":null}"#);
        assert_eq!(any_value_string(&AnyValue { value: None }), "");
    }

    #[test]
    fn rejection_messages_are_capped() {
        let mut r = Rejections::default();
        for i in 0..20 {
            r.reject(|| format!("problem {i}"));
        }
        let c = r.finish(
            "spans",
            3,
            None,
            &AttrLimits::new(&ConvertOptions::default()),
        );
        assert_eq!(c.rejected, 20);
        assert!(
            c.message
                .starts_with("rejected 20 spans: problem 0; problem 1"),
            "{}",
            c.message
        );
        assert!(c.message.ends_with("problem 4; ..."), "{}", c.message);
    }

    #[test]
    fn attribute_limits_drop_and_cut_and_say_so() {
        use any_value::Value::*;
        let opts = ConvertOptions {
            max_attributes: 3,
            max_attribute_value_bytes: 5,
            ..Default::default()
        };
        let limits = AttrLimits::new(&opts);
        let kv = |k: &str, val: AnyValue| KeyValue {
            key: k.into(),
            value: Some(val),
            ..Default::default()
        };
        let kvs = vec![
            kv("a", v(StringValue("short".into()))),
            // 'é' is two bytes: a cut at 5 bytes must not split one.
            kv("b", v(StringValue("ééé".into()))),
            kv("long.key", v(IntValue(1234567))),
            kv("d", v(BoolValue(true))),
            kv("e", v(BoolValue(true))),
        ];
        let (got, dropped) = limits.with_dropped(&kvs, 4);
        assert_eq!(dropped, 6, "4 dropped by the sender plus 2 here");
        let pairs: Vec<(&str, &str)> = got.iter().map(|a| (a.key, &*a.value)).collect();
        assert_eq!(pairs, [("a", "short"), ("b", "éé"), ("long.", "12345")]);
        assert_eq!(limits.dropped.get(), 2);
        assert_eq!(
            limits.truncated.get(),
            3,
            "one value, one key and one value"
        );
        assert_eq!(limits.get(&kvs[..1]).len(), 1);
        let c = Rejections::default().finish("spans", 1, None, &limits);
        assert_eq!(c.rejected, 0);
        assert_eq!((c.attributes_dropped, c.values_truncated), (2, 3));
        assert!(
            c.message
                .contains("2 attributes dropped over the limit of 3")
                && c.message.contains("collector.max_attribute_value_bytes"),
            "{}",
            c.message
        );
        // Within the limits: no message at all.
        let quiet = AttrLimits::new(&ConvertOptions::default());
        assert_eq!(quiet.get(&kvs).len(), 5);
        assert!(
            Rejections::default()
                .finish("spans", 1, None, &quiet)
                .message
                .is_empty()
        );
    }

    #[test]
    fn names_messages_and_log_bodies_are_cut_and_counted() {
        use any_value::Value::*;
        use arrow::array::AsArray as _;
        use opentelemetry_proto::tonic::logs::v1::{LogRecord as PbLog, ResourceLogs, ScopeLogs};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
        // "service.name" and "checkout" fit the attribute limit.
        let opts = ConvertOptions {
            max_attribute_value_bytes: 12,
            max_name_bytes: 4,
            max_log_body_bytes: 10,
            ..Default::default()
        };
        let resource = Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(v(StringValue("checkout".into()))),
                ..Default::default()
            }],
            ..Default::default()
        });
        let scope = Some(InstrumentationScope {
            name: "io.opentelemetry.http".into(),
            version: "1.2".into(),
            ..Default::default()
        });
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: resource.clone(),
                scope_spans: vec![ScopeSpans {
                    scope: scope.clone(),
                    spans: vec![Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        name: "GET /a/very/long/route".into(),
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_000_000_000_001,
                        status: Some(Status {
                            code: 2,
                            message: "connection refused".into(),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let c = spans(&req, &opts);
        assert_eq!((c.accepted, c.rejected), (1, 0));
        // service, scope name, span name and status message; "1.2" fits.
        assert_eq!(c.values_truncated, 4, "{}", c.message);
        assert!(
            c.message.contains("collector.max_name_bytes"),
            "{}",
            c.message
        );
        let batch = c.batch.unwrap();
        let text = |b: &RecordBatch, col: &str| {
            b.column_by_name(col)
                .unwrap_or_else(|| panic!("no column {col}"))
                .as_string::<i32>()
                .value(0)
                .to_string()
        };
        assert_eq!(text(&batch, "name"), "GET ");
        assert_eq!(text(&batch, "status_message"), "connection r");
        assert_eq!(text(&batch, "service_name"), "chec");

        let logs_req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource,
                scope_logs: vec![ScopeLogs {
                    scope,
                    log_records: vec![
                        PbLog {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            // 'é' is two bytes: the cut at 10 must not split one.
                            body: Some(v(StringValue("ééééé-and-more".into()))),
                            ..Default::default()
                        },
                        PbLog {
                            time_unix_nano: 1_700_000_000_000_000_000,
                            body: Some(v(StringValue("short".into()))),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let c = logs(&logs_req, &opts);
        assert_eq!((c.accepted, c.rejected), (2, 0));
        // service and scope names once per resource and scope, one body.
        assert_eq!(c.values_truncated, 3, "{}", c.message);
        let batch = c.batch.unwrap();
        let body = batch.column_by_name("body").unwrap().as_string::<i32>();
        assert_eq!(body.value(0), "ééééé");
        assert_eq!(body.value(1), "short");
        assert!(
            c.message.contains("collector.max_log_body_bytes"),
            "{}",
            c.message
        );
    }
}
