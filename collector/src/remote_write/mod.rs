//! Prometheus remote write: `POST /api/v1/write` on the OTLP/HTTP listener.
//!
//! Both protocol versions, told apart by the `Content-Type`:
//! - 1.0: `application/x-protobuf` (or `;proto=prometheus.WriteRequest`),
//!   a snappy-compressed `prometheus.WriteRequest`;
//! - 2.0: `application/x-protobuf;proto=io.prometheus.write.v2.Request`,
//!   a snappy-compressed `io.prometheus.write.v2.Request` with its symbol
//!   table. Answers carry `X-Prometheus-Remote-Write-Samples-Written`,
//!   `-Histograms-Written` and `-Exemplars-Written`.
//!
//! The same ingest tokens, request slots, memory budget and cardinality
//! limits as OTLP apply, and the answer comes after the rows are durable.
//! Answers: 204 when everything was stored; 400 (not retried) for a body
//! that is not valid snappy or protobuf, a series without a metric name,
//! duplicate label names, broken symbol references or timestamps out of
//! range (nothing of that request is stored), or for series past the
//! per-hour series limit (the other series are stored and counted in the
//! written headers); 401; 413 past `collector.max_body_bytes`; 415 for an
//! unknown content type or encoding; 429 and 503 with `Retry-After` when
//! the server cannot take data now (retried).
//!
//! Each float sample becomes one `metric_points` row named after the
//! series' `__name__`, with every other label (`job` and `instance`
//! included) as a point attribute; the resource gets `service.name` from
//! `job` and `service.instance.id` from `instance`, as the OpenTelemetry
//! Prometheus-compatibility specification maps them. The scope name is
//! [`SCOPE_NAME`], which tells the PromQL layer to use the stored name and
//! labels as they are. Classic histograms and summaries stay as their
//! series (`_bucket` with `le`, `_sum`, `_count`, quantiles). Counters
//! (by metadata, or a `_total`, `_bucket` or `_count` name when none is
//! known) are monotonic cumulative sums, everything else gauges. Native
//! histograms become `exponential_histogram` rows. Stale markers and NaN
//! values are stored with their exact bits. Exemplars of a series without
//! samples in the request are stored on rows flagged "no recorded value"
//! (flags = 1), which value readers skip. See docs/schema.md.

pub mod proto;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use store::Table;
use store::rows::{
    Attr, ExemplarRecord, MetricPointRecord, MetricPointsBuilder, Number, Origin, PointData,
    Temporality,
};

use crate::ingest::{Ingest, IngestError};
use crate::metrics::{Signal, Transport};

/// The instrumentation scope of rows written by remote write.
pub const SCOPE_NAME: &str = "prometheus.remote_write";

/// The `Content-Type` parameter that selects remote write 2.0.
pub const V2_PROTO: &str = "io.prometheus.write.v2.Request";

/// Metadata entries kept from 1.0 requests (families past it are stored
/// without type, help and unit until a restart).
const METADATA_CAPACITY: usize = 100_000;

/// Which protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// A metric family's type, as both versions number it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Unknown or untyped.
    Unknown,
    /// Counter.
    Counter,
    /// Gauge.
    Gauge,
    /// Classic or native histogram.
    Histogram,
    /// Gauge histogram.
    GaugeHistogram,
    /// Summary.
    Summary,
    /// Info.
    Info,
    /// State set.
    StateSet,
}

impl Kind {
    fn from_wire(v: i32) -> Kind {
        match v {
            1 => Kind::Counter,
            2 => Kind::Gauge,
            3 => Kind::Histogram,
            4 => Kind::GaugeHistogram,
            5 => Kind::Summary,
            6 => Kind::Info,
            7 => Kind::StateSet,
            _ => Kind::Unknown,
        }
    }
}

#[derive(Debug, Clone)]
struct Meta {
    kind: Kind,
    help: String,
    unit: String,
}

/// Family metadata learned from 1.0 requests (which send it apart from
/// the samples), applied to later samples of the family. Bounded.
#[derive(Debug, Default)]
pub struct MetadataCache {
    map: Mutex<HashMap<String, Meta>>,
}

impl MetadataCache {
    fn learn(&self, entries: &[proto::v1::MetricMetadata]) {
        if entries.is_empty() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for m in entries {
            if m.metric_family_name.is_empty() {
                continue;
            }
            if map.len() >= METADATA_CAPACITY && !map.contains_key(&m.metric_family_name) {
                continue;
            }
            map.insert(
                m.metric_family_name.clone(),
                Meta {
                    kind: Kind::from_wire(m.r#type),
                    help: m.help.clone(),
                    unit: m.unit.clone(),
                },
            );
        }
    }

    /// The family of a series name: the name itself, or the name without
    /// a `_bucket`, `_sum`, `_count`, `_total`, `_created` or `_info` suffix.
    fn lookup(&self, name: &str) -> Option<Meta> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return None;
        }
        if let Some(m) = map.get(name) {
            return Some(m.clone());
        }
        ["_bucket", "_sum", "_count", "_total", "_created", "_info"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find_map(|family| map.get(family).cloned())
    }
}

/// A request refused as a whole, or a partial failure after storing.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
    written: Option<Written>,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
            retry_after: None,
            written: None,
        }
    }
}

/// What one request stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Float samples.
    pub samples: u64,
    /// Native histogram samples.
    pub histograms: u64,
    /// Exemplars.
    pub exemplars: u64,
}

fn set_written(headers: &mut HeaderMap, w: Written) {
    for (name, n) in [
        ("x-prometheus-remote-write-samples-written", w.samples),
        ("x-prometheus-remote-write-histograms-written", w.histograms),
        ("x-prometheus-remote-write-exemplars-written", w.exemplars),
    ] {
        headers.insert(name, HeaderValue::from(n));
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut r = (self.status, format!("{}\n", self.message)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(w) = self.written {
            set_written(r.headers_mut(), w);
        }
        r
    }
}

/// The protocol version a `Content-Type` selects.
pub fn version(content_type: Option<&str>) -> Result<Version, String> {
    // Prometheus 1.0 senders always set it; a bare body is taken as 1.0.
    let Some(ct) = content_type else {
        return Ok(Version::V1);
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    if media != "application/x-protobuf" {
        return Err(format!(
            "unsupported Content-Type {ct:?}; remote write takes application/x-protobuf \
             (proto=prometheus.WriteRequest or proto={V2_PROTO})"
        ));
    }
    let proto = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string());
    match proto.as_deref() {
        None | Some("prometheus.WriteRequest") => Ok(Version::V1),
        Some(V2_PROTO) => Ok(Version::V2),
        Some(other) => Err(format!(
            "unsupported remote-write message {other:?}; use prometheus.WriteRequest or {V2_PROTO}"
        )),
    }
}

/// Snappy block decompression, refusing output past `limit` bytes before
/// allocating it.
pub fn unsnappy(body: &[u8], limit: usize) -> Result<Vec<u8>, (StatusCode, String)> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not snappy-compressed (block format): {e}"),
        )
    })?;
    if len > limit {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "decompressed body of {len} bytes exceeds the limit of {limit} bytes (collector.max_body_bytes)"
            ),
        ));
    }
    snap::raw::Decoder::new().decompress_vec(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("the body is not valid snappy (block format): {e}"),
        )
    })
}

/// A decoded request of either version.
#[derive(Debug)]
pub enum Decoded {
    /// 1.0.
    V1(proto::v1::WriteRequest),
    /// 2.0.
    V2(proto::v2::Request),
}

/// Decodes a decompressed body.
pub fn decode(version: Version, plain: &[u8]) -> Result<Decoded, String> {
    match version {
        Version::V1 => proto::v1::WriteRequest::decode(plain)
            .map(Decoded::V1)
            .map_err(|e| format!("invalid prometheus.WriteRequest: {e}")),
        Version::V2 => proto::v2::Request::decode(plain)
            .map(Decoded::V2)
            .map_err(|e| format!("invalid {V2_PROTO}: {e}")),
    }
}

/// Label (name, value) pairs borrowed from a request.
type LabelPairs<'a> = Vec<(&'a str, &'a str)>;

/// A native histogram sample, decoded for a row.
#[derive(Debug)]
struct NativeRow {
    time_ns: i64,
    count: u64,
    sum: f64,
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    positive: (i32, Vec<u64>),
    negative: (i32, Vec<u64>),
}

/// One series, borrowed from either version.
#[derive(Debug)]
struct SeriesView<'a> {
    /// Labels without `__name__`.
    labels: Vec<(&'a str, &'a str)>,
    name: &'a str,
    samples: &'a [proto::Sample],
    histograms: &'a [proto::Histogram],
    exemplars: Vec<ExemplarView<'a>>,
    meta: Option<(Kind, &'a str, &'a str)>,
    created_ms: i64,
}

#[derive(Debug)]
struct ExemplarView<'a> {
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
    timestamp: i64,
}

fn split_name<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
    index: usize,
) -> Result<(&'a str, LabelPairs<'a>), String> {
    let mut name = None;
    let mut labels: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs {
        if k.is_empty() {
            return Err(format!("series {index}: a label has an empty name"));
        }
        if k == "__name__" {
            if name.replace(v).is_some() {
                return Err(format!("series {index}: duplicate label __name__"));
            }
            continue;
        }
        if v.is_empty() {
            // An empty value is the same as no label.
            continue;
        }
        labels.push((k, v));
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("series {index}: no metric name (label __name__)"))?;
    labels.sort_unstable();
    if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!(
            "series {index} ({name}): duplicate label name {:?}",
            w[0].0
        ));
    }
    Ok((name, labels))
}

fn views_v1(req: &proto::v1::WriteRequest) -> Result<Vec<SeriesView<'_>>, String> {
    req.timeseries
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            let (name, labels) = split_name(
                ts.labels
                    .iter()
                    .map(|l| (l.name.as_str(), l.value.as_str())),
                i,
            )?;
            Ok(SeriesView {
                labels,
                name,
                samples: &ts.samples,
                histograms: &ts.histograms,
                exemplars: ts
                    .exemplars
                    .iter()
                    .map(|e| ExemplarView {
                        labels: e
                            .labels
                            .iter()
                            .map(|l| (l.name.as_str(), l.value.as_str()))
                            .collect(),
                        value: e.value,
                        timestamp: e.timestamp,
                    })
                    .collect(),
                meta: None,
                created_ms: 0,
            })
        })
        .collect()
}

fn symbol_pairs<'a>(
    symbols: &'a [String],
    refs: &[u32],
    what: &str,
) -> Result<LabelPairs<'a>, String> {
    if !refs.len().is_multiple_of(2) {
        return Err(format!("{what}: an odd number of label references"));
    }
    let sym = |r: u32| {
        symbols.get(r as usize).map(String::as_str).ok_or_else(|| {
            format!(
                "{what}: symbol reference {r} is past the {} symbols",
                symbols.len()
            )
        })
    };
    refs.chunks_exact(2)
        .map(|p| Ok((sym(p[0])?, sym(p[1])?)))
        .collect()
}

fn views_v2(req: &proto::v2::Request) -> Result<Vec<SeriesView<'_>>, String> {
    if req.symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err("symbols[0] must be the empty string".into());
    }
    let symbols = &req.symbols;
    req.timeseries
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            let what = format!("series {i}");
            let pairs = symbol_pairs(symbols, &ts.labels_refs, &what)?;
            let (name, labels) = split_name(pairs.into_iter(), i)?;
            let exemplars = ts
                .exemplars
                .iter()
                .map(|e| {
                    Ok(ExemplarView {
                        labels: symbol_pairs(symbols, &e.labels_refs, &what)?,
                        value: e.value,
                        timestamp: e.timestamp,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let meta = match &ts.metadata {
                Some(m) => {
                    let sym = |r: u32| {
                        symbols.get(r as usize).map(String::as_str).ok_or_else(|| {
                            format!("{what}: metadata symbol reference {r} is out of range")
                        })
                    };
                    Some((
                        Kind::from_wire(m.r#type),
                        sym(m.help_ref)?,
                        sym(m.unit_ref)?,
                    ))
                }
                None => None,
            };
            Ok(SeriesView {
                labels,
                name,
                samples: &ts.samples,
                histograms: &ts.histograms,
                exemplars,
                meta,
                created_ms: ts.created_timestamp,
            })
        })
        .collect()
}

fn ms_to_ns(ms: i64, what: &str) -> Result<i64, String> {
    ms.checked_mul(1_000_000)
        .ok_or_else(|| format!("{what}: timestamp {ms} ms is out of range"))
}

/// Dense bucket counts and the first index, from spans and deltas (integer
/// histograms) or absolute counts (float histograms, which must hold whole
/// numbers to become OTLP counts).
fn buckets(
    spans: &[proto::BucketSpan],
    deltas: &[i64],
    counts: &[f64],
) -> Result<(i32, Vec<u64>), String> {
    let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    let given = if deltas.is_empty() {
        counts.len()
    } else {
        deltas.len()
    } as u64;
    if total != given {
        return Err(format!(
            "native histogram spans cover {total} buckets but {given} counts were given"
        ));
    }
    if total > 100_000 {
        return Err(format!(
            "native histogram has {total} buckets (at most 100000)"
        ));
    }
    let Some(first) = spans.first() else {
        return Ok((0, Vec::new()));
    };
    let start = i64::from(first.offset);
    let mut out: Vec<u64> = Vec::new();
    let mut idx = start;
    let mut k = 0usize;
    let mut running: i64 = 0;
    for (n, s) in spans.iter().enumerate() {
        if n > 0 {
            if s.offset < 0 {
                return Err("native histogram span with a negative gap".into());
            }
            let gap = i64::from(s.offset);
            if gap > 100_000 {
                return Err("native histogram span gap too large".into());
            }
            out.extend(std::iter::repeat_n(0, gap as usize));
            idx += gap;
        }
        for _ in 0..s.length {
            let c = if deltas.is_empty() {
                let f = counts[k];
                if !(f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64) {
                    return Err(format!(
                        "native histogram bucket count {f} is not a whole number"
                    ));
                }
                f as u64
            } else {
                running = running.saturating_add(deltas[k]);
                u64::try_from(running)
                    .map_err(|_| "native histogram bucket count below zero".to_string())?
            };
            out.push(c);
            k += 1;
            idx += 1;
        }
    }
    let _ = idx;
    // Prometheus bucket i covers (base^(i-1), base^i]; OTLP bucket k
    // covers (base^k, base^(k+1)]: k = i - 1.
    let offset = i32::try_from(start - 1).map_err(|_| "native histogram offset out of range")?;
    Ok((offset, out))
}

fn whole(v: Option<u64>, f: Option<f64>, what: &str) -> Result<u64, String> {
    match (v, f) {
        (Some(v), _) => Ok(v),
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => Ok(f as u64),
        (None, Some(f)) => Err(format!("native histogram {what} {f} is not a whole number")),
        (None, None) => Ok(0),
    }
}

/// A converted request.
#[derive(Debug, Default)]
pub struct Converted {
    /// The rows (none when the request carried nothing).
    pub batch: Option<RecordBatch>,
    /// What the rows hold.
    pub written: Written,
    /// Series left out by the per-hour limits.
    pub refused_series: u64,
    /// Samples, histograms and exemplars of those series.
    pub refused_items: u64,
}

/// Converts a decoded request into `metric_points` rows. `admit` gets each
/// series' (service, key) pairs and answers which fit under the limits.
/// Fails (storing nothing) on invalid series.
pub fn convert(
    decoded: &Decoded,
    metadata: &MetadataCache,
    admit: impl FnOnce(&[(&str, u64)]) -> Vec<bool>,
) -> Result<Converted, String> {
    let series = match decoded {
        Decoded::V1(r) => {
            metadata.learn(&r.metadata);
            views_v1(r)?
        }
        Decoded::V2(r) => views_v2(r)?,
    };
    let keys: Vec<(&str, u64)> = series
        .iter()
        .map(|s| {
            let job = s
                .labels
                .iter()
                .find(|(k, _)| *k == "job")
                .map_or("", |l| l.1);
            (job, key_of(s.name, &s.labels))
        })
        .collect();
    let admitted = admit(&keys);
    let mut b = MetricPointsBuilder::new();
    let mut out = Converted::default();
    let mut cached: HashMap<&str, Option<Meta>> = HashMap::new();
    for (i, s) in series.iter().enumerate() {
        if !admitted.get(i).copied().unwrap_or(true) {
            out.refused_series += 1;
            out.refused_items += (s.samples.len() + s.histograms.len() + s.exemplars.len()) as u64;
            continue;
        }
        let learned;
        let (kind, help, unit) = match s.meta {
            Some(m) => m,
            None => {
                learned = cached
                    .entry(s.name)
                    .or_insert_with(|| metadata.lookup(s.name))
                    .clone();
                match &learned {
                    Some(m) => (m.kind, m.help.as_str(), m.unit.as_str()),
                    None => (Kind::Unknown, "", ""),
                }
            }
        };
        let counter = match kind {
            Kind::Counter => true,
            Kind::Histogram | Kind::Summary => {
                s.name.ends_with("_bucket")
                    || s.name.ends_with("_count")
                    || s.name.ends_with("_sum")
            }
            Kind::Unknown => {
                s.name.ends_with("_total")
                    || s.name.ends_with("_bucket")
                    || s.name.ends_with("_count")
            }
            _ => false,
        };
        let job = s.labels.iter().find(|(k, _)| *k == "job").map(|l| l.1);
        let instance = s.labels.iter().find(|(k, _)| *k == "instance").map(|l| l.1);
        let mut resource = Vec::with_capacity(2);
        if let Some(j) = job {
            resource.push(Attr::new("service.name", j));
        }
        if let Some(i) = instance {
            resource.push(Attr::new("service.instance.id", i));
        }
        let origin = Origin {
            service_name: job.unwrap_or("unknown_service"),
            resource_attributes: &resource,
            scope_name: SCOPE_NAME,
            scope_version: match decoded {
                Decoded::V1(_) => "1.0",
                Decoded::V2(_) => "2.0",
            },
        };
        let attrs =
            || -> Vec<Attr<'_>> { s.labels.iter().map(|(k, v)| Attr::new(k, *v)).collect() };
        let start_time_ns = if s.created_ms > 0 {
            Some(ms_to_ns(s.created_ms, s.name)?)
        } else {
            None
        };
        let mut exemplars: Vec<ExemplarRecord<'_>> = s
            .exemplars
            .iter()
            .map(|e| exemplar(e, s.name))
            .collect::<Result<_, _>>()?;
        out.written.exemplars += exemplars.len() as u64;
        let data = |v: f64| {
            if counter {
                PointData::Sum {
                    value: Number::F64(v),
                    is_monotonic: true,
                    temporality: Temporality::Cumulative,
                }
            } else {
                PointData::Gauge(Number::F64(v))
            }
        };
        let last = s.samples.len().saturating_sub(1);
        for (n, p) in s.samples.iter().enumerate() {
            b.append(
                &origin,
                &MetricPointRecord {
                    time_ns: ms_to_ns(p.timestamp, s.name)?,
                    start_time_ns,
                    metric_name: s.name,
                    unit,
                    description: help,
                    attributes: attrs(),
                    flags: 0,
                    data: data(p.value),
                    // A series' exemplars ride on its last sample.
                    exemplars: if n == last {
                        std::mem::take(&mut exemplars)
                    } else {
                        Vec::new()
                    },
                },
            );
        }
        out.written.samples += s.samples.len() as u64;
        let mut histogram_rows: Vec<NativeRow> = Vec::with_capacity(s.histograms.len());
        for h in s.histograms {
            if !(-4..=8).contains(&h.schema) {
                return Err(format!(
                    "series {}: native histogram schema {} is not accepted (exponential schemas -4..8)",
                    s.name, h.schema
                ));
            }
            histogram_rows.push(NativeRow {
                time_ns: ms_to_ns(h.timestamp, s.name)?,
                count: whole(h.count_int, h.count_float, "count")?,
                sum: h.sum,
                scale: h.schema,
                zero_count: whole(h.zero_count_int, h.zero_count_float, "zero count")?,
                zero_threshold: h.zero_threshold,
                positive: buckets(&h.positive_spans, &h.positive_deltas, &h.positive_counts)?,
                negative: buckets(&h.negative_spans, &h.negative_deltas, &h.negative_counts)?,
            });
        }
        for h in &histogram_rows {
            b.append(
                &origin,
                &MetricPointRecord {
                    time_ns: h.time_ns,
                    start_time_ns,
                    metric_name: s.name,
                    unit,
                    description: help,
                    attributes: attrs(),
                    flags: 0,
                    data: PointData::ExponentialHistogram {
                        temporality: if kind == Kind::GaugeHistogram {
                            Temporality::Delta
                        } else {
                            Temporality::Cumulative
                        },
                        count: h.count,
                        sum: Some(h.sum),
                        min: None,
                        max: None,
                        scale: h.scale,
                        zero_count: h.zero_count,
                        zero_threshold: h.zero_threshold,
                        positive_offset: h.positive.0,
                        positive_bucket_counts: &h.positive.1,
                        negative_offset: h.negative.0,
                        negative_bucket_counts: &h.negative.1,
                    },
                    exemplars: Vec::new(),
                },
            );
        }
        out.written.histograms += s.histograms.len() as u64;
        // Exemplars of a series without samples: rows with no recorded
        // value (flags = 1), one per exemplar.
        for e in exemplars {
            b.append(
                &origin,
                &MetricPointRecord {
                    time_ns: e.time_ns,
                    start_time_ns,
                    metric_name: s.name,
                    unit,
                    description: help,
                    attributes: attrs(),
                    flags: 1,
                    data: data(f64::NAN),
                    exemplars: vec![e],
                },
            );
        }
    }
    if !b.is_empty() {
        out.batch = Some(b.finish());
    }
    Ok(out)
}

fn exemplar<'a>(e: &ExemplarView<'a>, name: &str) -> Result<ExemplarRecord<'a>, String> {
    let mut trace_id = None;
    let mut span_id = None;
    let mut filtered = Vec::new();
    for (k, v) in &e.labels {
        match *k {
            "trace_id" | "traceID" | "traceId" => {
                if let Some(id) = hex_id::<16>(v) {
                    trace_id = Some(id);
                    continue;
                }
            }
            "span_id" | "spanID" | "spanId" => {
                if let Some(id) = hex_id::<8>(v) {
                    span_id = Some(id);
                    continue;
                }
            }
            _ => {}
        }
        filtered.push(Attr::new(k, *v));
    }
    Ok(ExemplarRecord {
        time_ns: ms_to_ns(e.timestamp, name)?,
        value: e.value,
        trace_id,
        span_id,
        filtered_attributes: filtered,
    })
}

/// A trace or span id in hex, when it is one.
fn hex_id<const N: usize>(v: &str) -> Option<[u8; N]> {
    hex::decode(v)
        .ok()
        .and_then(|b| <[u8; N]>::try_from(b).ok())
}

fn key_of(name: &str, labels: &[(&str, &str)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    labels.hash(&mut h);
    h.finish()
}

/// `POST /api/v1/write`.
pub async fn write(State(ingest): State<Arc<Ingest>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let metrics = ingest.metrics().clone();
    let (resp, bytes) = match process(&ingest, &headers, body).await {
        Ok((r, n)) => (r, n),
        Err((f, n)) => {
            match f.status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                    metrics.refused(Signal::Metrics, Transport::RemoteWrite)
                }
                StatusCode::UNAUTHORIZED => metrics.unauthorized(),
                s if s.is_client_error() && f.written.is_none() => {
                    metrics.bad_request(Signal::Metrics, Transport::RemoteWrite)
                }
                _ => {}
            }
            (f.into_response(), n)
        }
    };
    metrics.request(
        Signal::Metrics,
        Transport::RemoteWrite,
        bytes,
        started.elapsed(),
    );
    resp
}

async fn process(
    ingest: &Ingest,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Response, usize), (Failure, usize)> {
    let config = ingest.config();
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let version =
        version(ct).map_err(|m| (Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m), 0))?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !crate::http::token_ok(config, auth) {
        return Err((
            Failure::new(StatusCode::UNAUTHORIZED, "missing or invalid bearer token"),
            0,
        ));
    }
    match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("snappy") => {}
        Some(other) => {
            return Err((
                Failure::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "unsupported Content-Encoding {other:?}; remote write bodies are snappy"
                    ),
                ),
                0,
            ));
        }
    }
    let (mut admission, raw) = crate::http::receive(ingest, body).await.map_err(|r| {
        (
            Failure {
                status: r.status,
                message: r.message,
                retry_after: r.retry_after,
                written: None,
            },
            0,
        )
    })?;
    let n = raw.len();
    let limit = config.max_body_bytes;
    let decoded = tokio::task::spawn_blocking(move || {
        let plain = unsnappy(&raw, limit)?;
        let size = plain.len();
        decode(version, &plain)
            .map(|d| (d, size))
            .map_err(|m| (StatusCode::BAD_REQUEST, m))
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "remote-write decode task failed");
        (
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
            n,
        )
    })?;
    let (decoded, size) = decoded.map_err(|(s, m)| (Failure::new(s, m), n))?;
    // Decoded messages take roughly three times their wire size.
    ingest
        .reserve(&mut admission, size.saturating_mul(3))
        .await
        .map_err(|e| (refusal(e), n))?;
    let cardinality = ingest.cardinality().clone();
    let metadata = ingest.remote_write_metadata().clone();
    let limits = cardinality.limits();
    let converted = tokio::task::spawn_blocking(move || {
        let now = store::now_ns();
        convert(&decoded, &metadata, |keys| {
            cardinality.admit_series(now, keys.iter().copied())
        })
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "remote-write conversion task failed");
        (
            Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
            n,
        )
    })?;
    let converted = converted.map_err(|m| (Failure::new(StatusCode::BAD_REQUEST, m), n))?;
    let items = converted.written.samples + converted.written.histograms;
    if let Some(batch) = converted.batch {
        ingest
            .write_rows(
                Signal::Metrics,
                Transport::RemoteWrite,
                Table::MetricPoints,
                batch,
                items,
            )
            .await
            .map_err(|e| (refusal(e), n))?;
    }
    if converted.refused_series > 0 {
        ingest.metrics().cardinality_rejected(
            Signal::Metrics,
            Transport::RemoteWrite,
            converted.refused_items,
        );
        let (_, max_series) = limits;
        let mut f = Failure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{} series ({} samples, histograms and exemplars) refused: past the limit of {max_series} \
                 distinct series per hour (collector.max_series_per_hour) or of new services per hour; \
                 the other series were stored",
                converted.refused_series, converted.refused_items
            ),
        );
        f.written = Some(converted.written);
        return Err((f, n));
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    if version == Version::V2 {
        set_written(r.headers_mut(), converted.written);
    }
    Ok((r, n))
}

fn refusal(e: IngestError) -> Failure {
    let retry_after = e.retry_after().map(|d| d.as_secs().max(1));
    let status = match &e {
        IngestError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
        IngestError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        IngestError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match &e {
        IngestError::Internal(_) => "internal error; see the server log".to_string(),
        other => other.to_string(),
    };
    Failure {
        status,
        message,
        retry_after,
        written: None,
    }
}

#[cfg(test)]
mod tests;
