//! The Prometheus remote-write messages: `prometheus.WriteRequest` (1.0)
//! and `io.prometheus.write.v2.Request` (2.0), field for field as the
//! protocol defines them. Messages both versions share (samples, native
//! histograms, bucket spans) are one type.

/// A float sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value (a NaN with the stale-marker bits ends a series).
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Unix milliseconds.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// A span of native-histogram buckets.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BucketSpan {
    /// Gap to the previous span (or the first bucket index).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// Buckets in the span.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// A native (sparse, exponential) histogram sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// Observations (integer histograms).
    #[prost(uint64, optional, tag = "1")]
    pub count_int: Option<u64>,
    /// Observations (float histograms).
    #[prost(double, optional, tag = "2")]
    pub count_float: Option<f64>,
    /// Sum of observations.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// Resolution: bucket boundaries are powers of 2^(2^-schema).
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// Width of the zero bucket.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// Observations in the zero bucket (integer histograms).
    #[prost(uint64, optional, tag = "6")]
    pub zero_count_int: Option<u64>,
    /// Observations in the zero bucket (float histograms).
    #[prost(double, optional, tag = "7")]
    pub zero_count_float: Option<f64>,
    /// Spans of negative buckets.
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Negative bucket counts, delta-encoded (integer histograms).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    /// Negative bucket counts (float histograms).
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    /// Spans of positive buckets.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// Positive bucket counts, delta-encoded (integer histograms).
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// Positive bucket counts (float histograms).
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    /// Counter-reset hint.
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Unix milliseconds.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Bucket bounds of custom-bucket histograms (2.0 only).
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// Remote write 1.0.
pub mod v1 {
    use super::{Histogram, Sample};

    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        /// The series.
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        /// Metric family metadata.
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    /// One series with its samples.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Labels, `__name__` included.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Exemplars.
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
        /// Native histogram samples.
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    /// A label.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        /// Name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Value.
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// An exemplar.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// Its labels (`trace_id`, `span_id`, ...).
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// The observed value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Unix milliseconds.
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// Metadata of one metric family.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gauge histogram,
        /// 5 summary, 6 info, 7 stateset.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        /// The family name.
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        /// Help text.
        #[prost(string, tag = "4")]
        pub help: String,
        /// Unit.
        #[prost(string, tag = "5")]
        pub unit: String,
    }
}

/// Remote write 2.0.
pub mod v2 {
    use super::{Histogram, Sample};

    /// `io.prometheus.write.v2.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        /// Every string the series refer to; `symbols[0]` is "".
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        /// The series.
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// One series.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Label name and value symbol references, in pairs.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Native histogram samples.
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<Histogram>,
        /// Exemplars.
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        /// Type, help and unit.
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
        /// When the counter was created (Unix ms), 0 when unknown.
        #[prost(int64, tag = "6")]
        pub created_timestamp: i64,
    }

    /// An exemplar.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        /// Label symbol references, in pairs.
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        /// The observed value.
        #[prost(double, tag = "2")]
        pub value: f64,
        /// Unix milliseconds.
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// Series metadata.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        /// 0 unspecified, 1 counter, 2 gauge, 3 histogram, 4 gauge
        /// histogram, 5 summary, 6 info, 7 stateset.
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        /// Help text symbol.
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        /// Unit symbol.
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }
}
