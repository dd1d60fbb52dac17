//! Typed Arrow builders for the three tables.
//!
//! Producers (the OTLP collector, tests, benchmarks) describe each item as a
//! borrowed record (`SpanRecord`, `LogRecord`, `MetricPointRecord`) and append
//! it to the table's builder; `finish()` yields a `RecordBatch` with exactly the
//! table's schema. Nothing is copied twice: strings go straight from the
//! producer's buffers into the Arrow builders.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListArray, MapBuilder,
    MapFieldNames, RecordBatch, StringBuilder, StructArray, TimestampNanosecondBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields};

use crate::schema::{
    SPAN_PROMOTED, Table, event_struct, exemplar_struct, link_struct, quantile_struct,
};

/// One attribute, its value rendered as a string (see `docs/schema.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct Attr<'a> {
    /// The attribute key.
    pub key: &'a str,
    /// The value: strings as-is, integers in decimal, doubles in shortest
    /// round-trip form, booleans `true`/`false`, bytes base64, arrays and maps as JSON.
    pub value: Cow<'a, str>,
}

impl<'a> Attr<'a> {
    /// A string attribute.
    pub fn new(key: &'a str, value: impl Into<Cow<'a, str>>) -> Self {
        Attr {
            key,
            value: value.into(),
        }
    }
}

/// The OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// `SPAN_KIND_UNSPECIFIED`.
    Unspecified,
    /// `SPAN_KIND_INTERNAL`.
    Internal,
    /// `SPAN_KIND_SERVER`.
    Server,
    /// `SPAN_KIND_CLIENT`.
    Client,
    /// `SPAN_KIND_PRODUCER`.
    Producer,
    /// `SPAN_KIND_CONSUMER`.
    Consumer,
}

impl SpanKind {
    /// The value stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "UNSPECIFIED",
            SpanKind::Internal => "INTERNAL",
            SpanKind::Server => "SERVER",
            SpanKind::Client => "CLIENT",
            SpanKind::Producer => "PRODUCER",
            SpanKind::Consumer => "CONSUMER",
        }
    }
}

/// The OTLP span status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// `STATUS_CODE_UNSET`.
    Unset,
    /// `STATUS_CODE_OK`.
    Ok,
    /// `STATUS_CODE_ERROR`.
    Error,
}

impl StatusCode {
    /// The value stored in the `status_code` column.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "UNSET",
            StatusCode::Ok => "OK",
            StatusCode::Error => "ERROR",
        }
    }
}

/// What every row carries about where it came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    /// `service.name` of the resource (`unknown_service` when absent).
    pub service_name: &'a str,
    /// All resource attributes.
    pub resource_attributes: &'a [Attr<'a>],
    /// Instrumentation scope name (empty when absent).
    pub scope_name: &'a str,
    /// Instrumentation scope version (empty when absent).
    pub scope_version: &'a str,
}

/// A span event.
#[derive(Debug, Clone)]
pub struct EventRecord<'a> {
    /// Event time, ns since the Unix epoch.
    pub time_ns: i64,
    /// Event name.
    pub name: &'a str,
    /// Event attributes.
    pub attributes: Vec<Attr<'a>>,
    /// Attributes the SDK dropped.
    pub dropped_attributes_count: u32,
}

/// A span link.
#[derive(Debug, Clone)]
pub struct LinkRecord<'a> {
    /// Linked trace id.
    pub trace_id: [u8; 16],
    /// Linked span id.
    pub span_id: [u8; 8],
    /// W3C trace state of the link.
    pub trace_state: &'a str,
    /// Link attributes.
    pub attributes: Vec<Attr<'a>>,
    /// Attributes the SDK dropped.
    pub dropped_attributes_count: u32,
    /// W3C trace flags.
    pub flags: u32,
}

/// A span, borrowed from the producer.
#[derive(Debug, Clone)]
pub struct SpanRecord<'a> {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Span id.
    pub span_id: [u8; 8],
    /// Parent span id; `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// W3C trace state (empty when absent).
    pub trace_state: &'a str,
    /// W3C trace flags.
    pub flags: u32,
    /// Span name (the operation).
    pub name: &'a str,
    /// Span kind.
    pub kind: SpanKind,
    /// Start, ns since the Unix epoch.
    pub start_time_ns: i64,
    /// End, ns since the Unix epoch.
    pub end_time_ns: i64,
    /// Status code.
    pub status_code: StatusCode,
    /// Status message (empty when absent).
    pub status_message: &'a str,
    /// Span attributes.
    pub attributes: Vec<Attr<'a>>,
    /// Attributes the SDK dropped.
    pub dropped_attributes_count: u32,
    /// Events.
    pub events: Vec<EventRecord<'a>>,
    /// Events the SDK dropped.
    pub dropped_events_count: u32,
    /// Links.
    pub links: Vec<LinkRecord<'a>>,
    /// Links the SDK dropped.
    pub dropped_links_count: u32,
}

/// A log record, borrowed from the producer.
#[derive(Debug, Clone, Default)]
pub struct LogRecord<'a> {
    /// Event time (`time_unix_nano`, or the observed time when that is 0), ns.
    pub time_ns: i64,
    /// Observed time, ns.
    pub observed_time_ns: i64,
    /// Severity number (0 = unspecified).
    pub severity_number: i32,
    /// Severity text (empty when absent).
    pub severity_text: &'a str,
    /// Body: strings as-is, structured bodies as JSON; `None` when absent.
    pub body: Option<Cow<'a, str>>,
    /// Trace id, when the record belongs to a trace.
    pub trace_id: Option<[u8; 16]>,
    /// Span id, when the record belongs to a span.
    pub span_id: Option<[u8; 8]>,
    /// W3C trace flags.
    pub flags: u32,
    /// Event name (empty when absent).
    pub event_name: &'a str,
    /// Attributes.
    pub attributes: Vec<Attr<'a>>,
    /// Attributes the SDK dropped.
    pub dropped_attributes_count: u32,
}

/// A number as OTLP carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// `as_double`.
    F64(f64),
    /// `as_int`.
    I64(i64),
}

impl Number {
    /// The value as a double.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::F64(v) => v,
            Number::I64(v) => v as f64,
        }
    }
}

/// Aggregation temporality of a sum or histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// `AGGREGATION_TEMPORALITY_UNSPECIFIED`.
    Unspecified,
    /// `AGGREGATION_TEMPORALITY_DELTA`.
    Delta,
    /// `AGGREGATION_TEMPORALITY_CUMULATIVE`.
    Cumulative,
}

impl Temporality {
    /// The value stored in the `temporality` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Temporality::Unspecified => "unspecified",
            Temporality::Delta => "delta",
            Temporality::Cumulative => "cumulative",
        }
    }
}

/// An exemplar.
#[derive(Debug, Clone)]
pub struct ExemplarRecord<'a> {
    /// Exemplar time, ns.
    pub time_ns: i64,
    /// Measured value.
    pub value: f64,
    /// Trace id, when sampled inside a trace.
    pub trace_id: Option<[u8; 16]>,
    /// Span id, when sampled inside a span.
    pub span_id: Option<[u8; 8]>,
    /// Attributes filtered out of the point.
    pub filtered_attributes: Vec<Attr<'a>>,
}

/// The data of one metric point, by metric type.
#[derive(Debug, Clone)]
pub enum PointData<'a> {
    /// A gauge value.
    Gauge(Number),
    /// A sum value.
    Sum {
        /// The value.
        value: Number,
        /// Whether the sum only goes up.
        is_monotonic: bool,
        /// Temporality.
        temporality: Temporality,
    },
    /// An explicit-bucket histogram.
    Histogram {
        /// Temporality.
        temporality: Temporality,
        /// Observations.
        count: u64,
        /// Sum of observations, when known.
        sum: Option<f64>,
        /// Minimum, when known.
        min: Option<f64>,
        /// Maximum, when known.
        max: Option<f64>,
        /// Counts per bucket (`explicit_bounds.len() + 1` of them).
        bucket_counts: &'a [u64],
        /// Upper bounds of all buckets but the last.
        explicit_bounds: &'a [f64],
    },
    /// A base-2 exponential histogram.
    ExponentialHistogram {
        /// Temporality.
        temporality: Temporality,
        /// Observations.
        count: u64,
        /// Sum of observations, when known.
        sum: Option<f64>,
        /// Minimum, when known.
        min: Option<f64>,
        /// Maximum, when known.
        max: Option<f64>,
        /// Resolution.
        scale: i32,
        /// Observations in the zero bucket.
        zero_count: u64,
        /// Width of the zero bucket.
        zero_threshold: f64,
        /// Index of the first positive bucket.
        positive_offset: i32,
        /// Positive bucket counts.
        positive_bucket_counts: &'a [u64],
        /// Index of the first negative bucket.
        negative_offset: i32,
        /// Negative bucket counts.
        negative_bucket_counts: &'a [u64],
    },
    /// A summary.
    Summary {
        /// Observations.
        count: u64,
        /// Sum of observations.
        sum: f64,
        /// (quantile, value) pairs.
        quantiles: Vec<(f64, f64)>,
    },
}

impl PointData<'_> {
    /// The value stored in the `metric_type` column.
    pub fn metric_type(&self) -> &'static str {
        match self {
            PointData::Gauge(_) => "gauge",
            PointData::Sum { .. } => "sum",
            PointData::Histogram { .. } => "histogram",
            PointData::ExponentialHistogram { .. } => "exponential_histogram",
            PointData::Summary { .. } => "summary",
        }
    }
}

/// One metric data point, borrowed from the producer.
#[derive(Debug, Clone)]
pub struct MetricPointRecord<'a> {
    /// Point time, ns.
    pub time_ns: i64,
    /// Start of the aggregation interval, ns, when known.
    pub start_time_ns: Option<i64>,
    /// Metric name.
    pub metric_name: &'a str,
    /// Unit (empty when absent).
    pub unit: &'a str,
    /// Description (empty when absent).
    pub description: &'a str,
    /// Point attributes.
    pub attributes: Vec<Attr<'a>>,
    /// Data point flags.
    pub flags: u32,
    /// The data.
    pub data: PointData<'a>,
    /// Exemplars.
    pub exemplars: Vec<ExemplarRecord<'a>>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of an id, written into `out`.
pub fn hex_id<'b>(bytes: &[u8], out: &'b mut [u8; 32]) -> &'b str {
    let n = bytes.len().min(16);
    for (i, b) in bytes[..n].iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 0xf) as usize];
    }
    // Only ASCII hex digits were written.
    std::str::from_utf8(&out[..2 * n]).unwrap_or_default()
}

fn opt_str(b: &mut StringBuilder, v: &str) {
    if v.is_empty() {
        b.append_null();
    } else {
        b.append_value(v);
    }
}

fn append_id(b: &mut StringBuilder, id: &[u8]) {
    let mut buf = [0u8; 32];
    b.append_value(hex_id(id, &mut buf));
}

fn append_opt_id(b: &mut StringBuilder, id: Option<&[u8]>) {
    match id {
        Some(id) => append_id(b, id),
        None => b.append_null(),
    }
}

/// Builds a `Map<Utf8, Utf8>` column of attributes.
struct AttrMap(MapBuilder<StringBuilder, StringBuilder>);

impl AttrMap {
    fn new() -> Self {
        let names = MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        };
        AttrMap(MapBuilder::new(
            Some(names),
            StringBuilder::new(),
            StringBuilder::new(),
        ))
    }

    fn append(&mut self, attrs: &[Attr<'_>]) {
        for a in attrs {
            self.0.keys().append_value(a.key);
            self.0.values().append_value(&a.value);
        }
        // Appending a valid entry cannot fail; the error is for mismatched lengths.
        let _ = self.0.append(true);
    }

    fn finish(&mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}

/// Offsets of a list column built from flat child builders.
struct Offsets(Vec<i32>);

impl Offsets {
    fn new() -> Self {
        Offsets(vec![0])
    }
    fn push(&mut self, len: usize) {
        let last = *self.0.last().unwrap_or(&0);
        self.0.push(last + len as i32);
    }
    fn finish_list(&mut self, item: DataType, values: ArrayRef) -> ArrayRef {
        let offsets = std::mem::replace(&mut self.0, vec![0]);
        let field = Arc::new(Field::new("item", item, true));
        Arc::new(ListArray::new(
            field,
            OffsetBuffer::new(offsets.into()),
            values,
            None,
        ))
    }
}

/// Offsets plus validity for a nullable list column.
struct NullableOffsets {
    offsets: Offsets,
    valid: Vec<bool>,
}

impl NullableOffsets {
    fn new() -> Self {
        NullableOffsets {
            offsets: Offsets::new(),
            valid: Vec::new(),
        }
    }
    fn push(&mut self, len: Option<usize>) {
        self.offsets.push(len.unwrap_or(0));
        self.valid.push(len.is_some());
    }
    fn finish_list(&mut self, item: DataType, values: ArrayRef) -> ArrayRef {
        let offsets = std::mem::replace(&mut self.offsets.0, vec![0]);
        let valid = std::mem::take(&mut self.valid);
        let field = Arc::new(Field::new("item", item, true));
        Arc::new(ListArray::new(
            field,
            OffsetBuffer::new(offsets.into()),
            values,
            Some(valid.into()),
        ))
    }
}

fn struct_array(fields: Fields, arrays: Vec<ArrayRef>) -> ArrayRef {
    Arc::new(StructArray::new(fields, arrays, None))
}

fn batch(table: Table, columns: Vec<ArrayRef>) -> RecordBatch {
    // The builders produce exactly the table's schema; a mismatch is a bug
    // caught by the round-trip tests.
    RecordBatch::try_new(table.schema(), columns)
        .unwrap_or_else(|e| panic!("{table} builder does not match its schema: {e}"))
}

enum Promoted {
    Str(StringBuilder),
    Int(Int64Builder),
}

fn promoted_index(key: &str) -> Option<usize> {
    // `db.system.name` is the current name of `db.system`; both fill `db_system`.
    let key = if key == "db.system.name" {
        "db.system"
    } else {
        key
    };
    SPAN_PROMOTED.iter().position(|(k, _, _)| *k == key)
}

/// Builds `spans` batches.
pub struct SpansBuilder {
    trace_id: StringBuilder,
    span_id: StringBuilder,
    parent_span_id: StringBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    service_name: StringBuilder,
    name: StringBuilder,
    kind: StringBuilder,
    start_time: TimestampNanosecondBuilder,
    end_time: TimestampNanosecondBuilder,
    duration_ns: Int64Builder,
    status_code: StringBuilder,
    status_message: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    promoted: Vec<Promoted>,
    attributes: AttrMap,
    resource_attributes: AttrMap,
    dropped_attributes_count: UInt32Builder,
    event_offsets: Offsets,
    event_time: TimestampNanosecondBuilder,
    event_name: StringBuilder,
    event_attributes: AttrMap,
    event_dropped: UInt32Builder,
    dropped_events_count: UInt32Builder,
    link_offsets: Offsets,
    link_trace_id: StringBuilder,
    link_span_id: StringBuilder,
    link_trace_state: StringBuilder,
    link_attributes: AttrMap,
    link_dropped: UInt32Builder,
    link_flags: UInt32Builder,
    dropped_links_count: UInt32Builder,
    rows: usize,
}

impl Default for SpansBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SpansBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        SpansBuilder {
            trace_id: StringBuilder::new(),
            span_id: StringBuilder::new(),
            parent_span_id: StringBuilder::new(),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            service_name: StringBuilder::new(),
            name: StringBuilder::new(),
            kind: StringBuilder::new(),
            start_time: TimestampNanosecondBuilder::new(),
            end_time: TimestampNanosecondBuilder::new(),
            duration_ns: Int64Builder::new(),
            status_code: StringBuilder::new(),
            status_message: StringBuilder::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            promoted: SPAN_PROMOTED
                .iter()
                .map(|(_, _, is_int)| {
                    if *is_int {
                        Promoted::Int(Int64Builder::new())
                    } else {
                        Promoted::Str(StringBuilder::new())
                    }
                })
                .collect(),
            attributes: AttrMap::new(),
            resource_attributes: AttrMap::new(),
            dropped_attributes_count: UInt32Builder::new(),
            event_offsets: Offsets::new(),
            event_time: TimestampNanosecondBuilder::new(),
            event_name: StringBuilder::new(),
            event_attributes: AttrMap::new(),
            event_dropped: UInt32Builder::new(),
            dropped_events_count: UInt32Builder::new(),
            link_offsets: Offsets::new(),
            link_trace_id: StringBuilder::new(),
            link_span_id: StringBuilder::new(),
            link_trace_state: StringBuilder::new(),
            link_attributes: AttrMap::new(),
            link_dropped: UInt32Builder::new(),
            link_flags: UInt32Builder::new(),
            dropped_links_count: UInt32Builder::new(),
            rows: 0,
        }
    }

    /// Rows appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one span.
    pub fn append(&mut self, origin: &Origin<'_>, s: &SpanRecord<'_>) {
        self.rows += 1;
        append_id(&mut self.trace_id, &s.trace_id);
        append_id(&mut self.span_id, &s.span_id);
        append_opt_id(
            &mut self.parent_span_id,
            s.parent_span_id.as_ref().map(|p| &p[..]),
        );
        opt_str(&mut self.trace_state, s.trace_state);
        self.flags.append_value(s.flags);
        self.service_name.append_value(origin.service_name);
        self.name.append_value(s.name);
        self.kind.append_value(s.kind.as_str());
        self.start_time.append_value(s.start_time_ns);
        self.end_time.append_value(s.end_time_ns);
        self.duration_ns
            .append_value(s.end_time_ns.saturating_sub(s.start_time_ns));
        self.status_code.append_value(s.status_code.as_str());
        opt_str(&mut self.status_message, s.status_message);
        opt_str(&mut self.scope_name, origin.scope_name);
        opt_str(&mut self.scope_version, origin.scope_version);

        let mut found: [Option<&str>; SPAN_PROMOTED.len()] = [None; SPAN_PROMOTED.len()];
        for a in &s.attributes {
            if let Some(i) = promoted_index(a.key) {
                found[i] = Some(&a.value);
            }
        }
        for (builder, value) in self.promoted.iter_mut().zip(found) {
            match builder {
                Promoted::Str(b) => b.append_option(value),
                Promoted::Int(b) => b.append_option(value.and_then(|v| v.parse::<i64>().ok())),
            }
        }
        self.attributes.append(&s.attributes);
        self.resource_attributes.append(origin.resource_attributes);
        self.dropped_attributes_count
            .append_value(s.dropped_attributes_count);

        self.event_offsets.push(s.events.len());
        for e in &s.events {
            self.event_time.append_value(e.time_ns);
            self.event_name.append_value(e.name);
            self.event_attributes.append(&e.attributes);
            self.event_dropped.append_value(e.dropped_attributes_count);
        }
        self.dropped_events_count
            .append_value(s.dropped_events_count);

        self.link_offsets.push(s.links.len());
        for l in &s.links {
            append_id(&mut self.link_trace_id, &l.trace_id);
            append_id(&mut self.link_span_id, &l.span_id);
            opt_str(&mut self.link_trace_state, l.trace_state);
            self.link_attributes.append(&l.attributes);
            self.link_dropped.append_value(l.dropped_attributes_count);
            self.link_flags.append_value(l.flags);
        }
        self.dropped_links_count.append_value(s.dropped_links_count);
    }

    /// Finishes the batch and resets the builder.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let ts = |b: &mut TimestampNanosecondBuilder| -> ArrayRef {
            Arc::new(b.finish().with_timezone("UTC"))
        };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.service_name.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            ts(&mut self.start_time),
            ts(&mut self.end_time),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
        ];
        for p in &mut self.promoted {
            columns.push(match p {
                Promoted::Str(b) => Arc::new(b.finish()),
                Promoted::Int(b) => Arc::new(b.finish()),
            });
        }
        let events = struct_array(
            event_struct(),
            vec![
                ts(&mut self.event_time),
                Arc::new(self.event_name.finish()),
                self.event_attributes.finish(),
                Arc::new(self.event_dropped.finish()),
            ],
        );
        let links = struct_array(
            link_struct(),
            vec![
                Arc::new(self.link_trace_id.finish()),
                Arc::new(self.link_span_id.finish()),
                Arc::new(self.link_trace_state.finish()),
                self.link_attributes.finish(),
                Arc::new(self.link_dropped.finish()),
                Arc::new(self.link_flags.finish()),
            ],
        );
        columns.extend([
            self.attributes.finish(),
            self.resource_attributes.finish(),
            Arc::new(self.dropped_attributes_count.finish()) as ArrayRef,
            self.event_offsets
                .finish_list(DataType::Struct(event_struct()), events),
            Arc::new(self.dropped_events_count.finish()),
            self.link_offsets
                .finish_list(DataType::Struct(link_struct()), links),
            Arc::new(self.dropped_links_count.finish()),
        ]);
        batch(Table::Spans, columns)
    }
}

/// Builds `logs` batches.
pub struct LogsBuilder {
    time: TimestampNanosecondBuilder,
    observed_time: TimestampNanosecondBuilder,
    service_name: StringBuilder,
    severity_number: Int32Builder,
    severity_text: StringBuilder,
    body: StringBuilder,
    trace_id: StringBuilder,
    span_id: StringBuilder,
    flags: UInt32Builder,
    event_name: StringBuilder,
    attributes: AttrMap,
    resource_attributes: AttrMap,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    dropped_attributes_count: UInt32Builder,
    rows: usize,
}

impl Default for LogsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LogsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        LogsBuilder {
            time: TimestampNanosecondBuilder::new(),
            observed_time: TimestampNanosecondBuilder::new(),
            service_name: StringBuilder::new(),
            severity_number: Int32Builder::new(),
            severity_text: StringBuilder::new(),
            body: StringBuilder::new(),
            trace_id: StringBuilder::new(),
            span_id: StringBuilder::new(),
            flags: UInt32Builder::new(),
            event_name: StringBuilder::new(),
            attributes: AttrMap::new(),
            resource_attributes: AttrMap::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            dropped_attributes_count: UInt32Builder::new(),
            rows: 0,
        }
    }

    /// Rows appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one log record.
    pub fn append(&mut self, origin: &Origin<'_>, r: &LogRecord<'_>) {
        self.rows += 1;
        self.time.append_value(r.time_ns);
        self.observed_time.append_value(r.observed_time_ns);
        self.service_name.append_value(origin.service_name);
        self.severity_number.append_value(r.severity_number);
        opt_str(&mut self.severity_text, r.severity_text);
        self.body.append_option(r.body.as_deref());
        append_opt_id(&mut self.trace_id, r.trace_id.as_ref().map(|t| &t[..]));
        append_opt_id(&mut self.span_id, r.span_id.as_ref().map(|t| &t[..]));
        self.flags.append_value(r.flags);
        opt_str(&mut self.event_name, r.event_name);
        self.attributes.append(&r.attributes);
        self.resource_attributes.append(origin.resource_attributes);
        opt_str(&mut self.scope_name, origin.scope_name);
        opt_str(&mut self.scope_version, origin.scope_version);
        self.dropped_attributes_count
            .append_value(r.dropped_attributes_count);
    }

    /// Finishes the batch and resets the builder.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.observed_time.finish().with_timezone("UTC")),
            Arc::new(self.service_name.finish()),
            Arc::new(self.severity_number.finish()),
            Arc::new(self.severity_text.finish()),
            Arc::new(self.body.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.event_name.finish()),
            self.attributes.finish(),
            self.resource_attributes.finish(),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.dropped_attributes_count.finish()),
        ];
        batch(Table::Logs, columns)
    }
}

/// Builds `metric_points` batches.
pub struct MetricPointsBuilder {
    time: TimestampNanosecondBuilder,
    start_time: TimestampNanosecondBuilder,
    service_name: StringBuilder,
    metric_name: StringBuilder,
    metric_type: StringBuilder,
    unit: StringBuilder,
    description: StringBuilder,
    attributes: AttrMap,
    resource_attributes: AttrMap,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    flags: UInt32Builder,
    value: Float64Builder,
    value_int: Int64Builder,
    is_monotonic: BooleanBuilder,
    temporality: StringBuilder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    bucket_offsets: NullableOffsets,
    bucket_values: UInt64Builder,
    bound_offsets: NullableOffsets,
    bound_values: Float64Builder,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    positive_offset: Int32Builder,
    positive_offsets: NullableOffsets,
    positive_values: UInt64Builder,
    negative_offset: Int32Builder,
    negative_offsets: NullableOffsets,
    negative_values: UInt64Builder,
    quantile_offsets: NullableOffsets,
    quantile_q: Float64Builder,
    quantile_v: Float64Builder,
    exemplar_offsets: Offsets,
    exemplar_time: TimestampNanosecondBuilder,
    exemplar_value: Float64Builder,
    exemplar_trace_id: StringBuilder,
    exemplar_span_id: StringBuilder,
    exemplar_attributes: AttrMap,
    rows: usize,
}

impl Default for MetricPointsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricPointsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        MetricPointsBuilder {
            time: TimestampNanosecondBuilder::new(),
            start_time: TimestampNanosecondBuilder::new(),
            service_name: StringBuilder::new(),
            metric_name: StringBuilder::new(),
            metric_type: StringBuilder::new(),
            unit: StringBuilder::new(),
            description: StringBuilder::new(),
            attributes: AttrMap::new(),
            resource_attributes: AttrMap::new(),
            scope_name: StringBuilder::new(),
            scope_version: StringBuilder::new(),
            flags: UInt32Builder::new(),
            value: Float64Builder::new(),
            value_int: Int64Builder::new(),
            is_monotonic: BooleanBuilder::new(),
            temporality: StringBuilder::new(),
            count: UInt64Builder::new(),
            sum: Float64Builder::new(),
            min: Float64Builder::new(),
            max: Float64Builder::new(),
            bucket_offsets: NullableOffsets::new(),
            bucket_values: UInt64Builder::new(),
            bound_offsets: NullableOffsets::new(),
            bound_values: Float64Builder::new(),
            scale: Int32Builder::new(),
            zero_count: UInt64Builder::new(),
            zero_threshold: Float64Builder::new(),
            positive_offset: Int32Builder::new(),
            positive_offsets: NullableOffsets::new(),
            positive_values: UInt64Builder::new(),
            negative_offset: Int32Builder::new(),
            negative_offsets: NullableOffsets::new(),
            negative_values: UInt64Builder::new(),
            quantile_offsets: NullableOffsets::new(),
            quantile_q: Float64Builder::new(),
            quantile_v: Float64Builder::new(),
            exemplar_offsets: Offsets::new(),
            exemplar_time: TimestampNanosecondBuilder::new(),
            exemplar_value: Float64Builder::new(),
            exemplar_trace_id: StringBuilder::new(),
            exemplar_span_id: StringBuilder::new(),
            exemplar_attributes: AttrMap::new(),
            rows: 0,
        }
    }

    /// Rows appended since the last `finish`.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one data point.
    pub fn append(&mut self, origin: &Origin<'_>, p: &MetricPointRecord<'_>) {
        self.rows += 1;
        self.time.append_value(p.time_ns);
        self.start_time.append_option(p.start_time_ns);
        self.service_name.append_value(origin.service_name);
        self.metric_name.append_value(p.metric_name);
        self.metric_type.append_value(p.data.metric_type());
        opt_str(&mut self.unit, p.unit);
        opt_str(&mut self.description, p.description);
        self.attributes.append(&p.attributes);
        self.resource_attributes.append(origin.resource_attributes);
        opt_str(&mut self.scope_name, origin.scope_name);
        opt_str(&mut self.scope_version, origin.scope_version);
        self.flags.append_value(p.flags);

        // Defaults: every type-specific column null, then the type fills its own.
        let mut value = None;
        let mut value_int = None;
        let mut is_monotonic = None;
        let mut temporality = None;
        let mut count = None;
        let mut sum = None;
        let mut min = None;
        let mut max = None;
        let mut buckets: Option<&[u64]> = None;
        let mut bounds: Option<&[f64]> = None;
        let mut exp = None;
        let mut quantiles: Option<&[(f64, f64)]> = None;
        match &p.data {
            PointData::Gauge(n) => {
                value = Some(n.as_f64());
                if let Number::I64(i) = n {
                    value_int = Some(*i);
                }
            }
            PointData::Sum {
                value: n,
                is_monotonic: m,
                temporality: t,
            } => {
                value = Some(n.as_f64());
                if let Number::I64(i) = n {
                    value_int = Some(*i);
                }
                is_monotonic = Some(*m);
                temporality = Some(t.as_str());
            }
            PointData::Histogram {
                temporality: t,
                count: c,
                sum: s,
                min: lo,
                max: hi,
                bucket_counts,
                explicit_bounds,
            } => {
                temporality = Some(t.as_str());
                count = Some(*c);
                sum = *s;
                min = *lo;
                max = *hi;
                buckets = Some(bucket_counts);
                bounds = Some(explicit_bounds);
            }
            PointData::ExponentialHistogram {
                temporality: t,
                count: c,
                sum: s,
                min: lo,
                max: hi,
                scale,
                zero_count,
                zero_threshold,
                positive_offset,
                positive_bucket_counts,
                negative_offset,
                negative_bucket_counts,
            } => {
                temporality = Some(t.as_str());
                count = Some(*c);
                sum = *s;
                min = *lo;
                max = *hi;
                exp = Some((
                    *scale,
                    *zero_count,
                    *zero_threshold,
                    *positive_offset,
                    *positive_bucket_counts,
                    *negative_offset,
                    *negative_bucket_counts,
                ));
            }
            PointData::Summary {
                count: c,
                sum: s,
                quantiles: q,
            } => {
                count = Some(*c);
                sum = Some(*s);
                quantiles = Some(q);
            }
        }
        self.value.append_option(value);
        self.value_int.append_option(value_int);
        self.is_monotonic.append_option(is_monotonic);
        self.temporality.append_option(temporality);
        self.count.append_option(count);
        self.sum.append_option(sum);
        self.min.append_option(min);
        self.max.append_option(max);
        self.bucket_offsets.push(buckets.map(|b| b.len()));
        self.bucket_values.append_slice(buckets.unwrap_or_default());
        self.bound_offsets.push(bounds.map(|b| b.len()));
        self.bound_values.append_slice(bounds.unwrap_or_default());
        match exp {
            Some((scale, zc, zt, po, pos, no, neg)) => {
                self.scale.append_value(scale);
                self.zero_count.append_value(zc);
                self.zero_threshold.append_value(zt);
                self.positive_offset.append_value(po);
                self.positive_offsets.push(Some(pos.len()));
                self.positive_values.append_slice(pos);
                self.negative_offset.append_value(no);
                self.negative_offsets.push(Some(neg.len()));
                self.negative_values.append_slice(neg);
            }
            None => {
                self.scale.append_null();
                self.zero_count.append_null();
                self.zero_threshold.append_null();
                self.positive_offset.append_null();
                self.positive_offsets.push(None);
                self.negative_offset.append_null();
                self.negative_offsets.push(None);
            }
        }
        self.quantile_offsets.push(quantiles.map(|q| q.len()));
        for (q, v) in quantiles.unwrap_or_default() {
            self.quantile_q.append_value(*q);
            self.quantile_v.append_value(*v);
        }
        self.exemplar_offsets.push(p.exemplars.len());
        for e in &p.exemplars {
            self.exemplar_time.append_value(e.time_ns);
            self.exemplar_value.append_value(e.value);
            append_opt_id(
                &mut self.exemplar_trace_id,
                e.trace_id.as_ref().map(|t| &t[..]),
            );
            append_opt_id(
                &mut self.exemplar_span_id,
                e.span_id.as_ref().map(|t| &t[..]),
            );
            self.exemplar_attributes.append(&e.filtered_attributes);
        }
    }

    /// Finishes the batch and resets the builder.
    pub fn finish(&mut self) -> RecordBatch {
        self.rows = 0;
        let quantiles = struct_array(
            quantile_struct(),
            vec![
                Arc::new(self.quantile_q.finish()),
                Arc::new(self.quantile_v.finish()),
            ],
        );
        let exemplars = struct_array(
            exemplar_struct(),
            vec![
                Arc::new(self.exemplar_time.finish().with_timezone("UTC")),
                Arc::new(self.exemplar_value.finish()),
                Arc::new(self.exemplar_trace_id.finish()),
                Arc::new(self.exemplar_span_id.finish()),
                self.exemplar_attributes.finish(),
            ],
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.time.finish().with_timezone("UTC")),
            Arc::new(self.start_time.finish().with_timezone("UTC")),
            Arc::new(self.service_name.finish()),
            Arc::new(self.metric_name.finish()),
            Arc::new(self.metric_type.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.description.finish()),
            self.attributes.finish(),
            self.resource_attributes.finish(),
            Arc::new(self.scope_name.finish()),
            Arc::new(self.scope_version.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.value_int.finish()),
            Arc::new(self.is_monotonic.finish()),
            Arc::new(self.temporality.finish()),
            Arc::new(self.count.finish()),
            Arc::new(self.sum.finish()),
            Arc::new(self.min.finish()),
            Arc::new(self.max.finish()),
            self.bucket_offsets
                .finish_list(DataType::UInt64, Arc::new(self.bucket_values.finish())),
            self.bound_offsets
                .finish_list(DataType::Float64, Arc::new(self.bound_values.finish())),
            Arc::new(self.scale.finish()),
            Arc::new(self.zero_count.finish()),
            Arc::new(self.zero_threshold.finish()),
            Arc::new(self.positive_offset.finish()),
            self.positive_offsets
                .finish_list(DataType::UInt64, Arc::new(self.positive_values.finish())),
            Arc::new(self.negative_offset.finish()),
            self.negative_offsets
                .finish_list(DataType::UInt64, Arc::new(self.negative_values.finish())),
            self.quantile_offsets
                .finish_list(DataType::Struct(quantile_struct()), quantiles),
            self.exemplar_offsets
                .finish_list(DataType::Struct(exemplar_struct()), exemplars),
        ];
        batch(Table::MetricPoints, columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_system_name_and_its_old_name_fill_one_column() {
        let old = promoted_index("db.system").unwrap();
        assert_eq!(promoted_index("db.system.name"), Some(old));
        assert_eq!(SPAN_PROMOTED[old].1, "db_system");
        assert_eq!(promoted_index("db.system.other"), None);
    }
}
