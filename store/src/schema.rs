//! The three tables' Arrow schemas: the public SQL contract (see `docs/schema.md`).
//!
//! One fixed schema per signal. Frequent semantic-convention attributes are
//! promoted to typed columns; every attribute (promoted or not) is also kept in
//! the `attributes` map so `attributes['any.key']` always works.

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// The tables the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// One row per span.
    Spans,
    /// One row per log record.
    Logs,
    /// One row per metric data point.
    MetricPoints,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 3] = [Table::Spans, Table::Logs, Table::MetricPoints];

    /// The SQL table name, also the directory name under the data dir.
    pub fn name(self) -> &'static str {
        match self {
            Table::Spans => "spans",
            Table::Logs => "logs",
            Table::MetricPoints => "metric_points",
        }
    }

    /// Parses a SQL table name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// One-byte tag used in the WAL.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Table::Spans => 1,
            Table::Logs => 2,
            Table::MetricPoints => 3,
        }
    }

    pub(crate) fn from_tag(tag: u8) -> Option<Table> {
        match tag {
            1 => Some(Table::Spans),
            2 => Some(Table::Logs),
            3 => Some(Table::MetricPoints),
            _ => None,
        }
    }

    /// The timestamp column that decides the hour partition and time pruning.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Spans => "start_time",
            Table::Logs | Table::MetricPoints => "time",
        }
    }

    /// Columns the Parquet files are sorted by (in order), so that filters on
    /// service and time prune row groups and pages well.
    pub fn sort_columns(self) -> &'static [&'static str] {
        match self {
            Table::Spans => &["service_name", "start_time"],
            Table::Logs => &["service_name", "time"],
            Table::MetricPoints => &["metric_name", "service_name", "time"],
        }
    }

    /// Columns with a Parquet bloom filter (point lookups by id).
    pub fn bloom_filter_columns(self) -> &'static [&'static str] {
        match self {
            Table::Spans => &["trace_id", "span_id"],
            Table::Logs => &["trace_id"],
            Table::MetricPoints => &[],
        }
    }

    /// The table's Arrow schema.
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<[SchemaRef; 3]> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| {
            [
                Arc::new(spans_schema()),
                Arc::new(logs_schema()),
                Arc::new(metric_points_schema()),
            ]
        });
        match self {
            Table::Spans => all[0].clone(),
            Table::Logs => all[1].clone(),
            Table::MetricPoints => all[2].clone(),
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `Timestamp(Nanosecond, "UTC")`.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// The entries field of an attribute map: `Map<Utf8, Utf8>`.
pub(crate) fn map_entries_field() -> Arc<Field> {
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, true),
        ])),
        false,
    ))
}

/// `Map<Utf8, Utf8>`: attribute key to value rendered as a string.
pub fn attr_map_type() -> DataType {
    DataType::Map(map_entries_field(), false)
}

fn attrs(name: &str) -> Field {
    Field::new(name, attr_map_type(), false)
}

fn utf8(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn list_of(name: &str, item: DataType, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new("item", item, true))),
        nullable,
    )
}

/// Promoted span attributes: (attribute key, column name, is integer).
pub const SPAN_PROMOTED: &[(&str, &str, bool)] = &[
    ("http.route", "http_route", false),
    ("http.request.method", "http_request_method", false),
    (
        "http.response.status_code",
        "http_response_status_code",
        true,
    ),
    ("url.full", "url_full", false),
    ("server.address", "server_address", false),
    ("server.port", "server_port", true),
    ("rpc.system", "rpc_system", false),
    ("rpc.service", "rpc_service", false),
    ("rpc.method", "rpc_method", false),
    ("rpc.grpc.status_code", "rpc_grpc_status_code", true),
    ("db.system", "db_system", false),
    ("db.namespace", "db_namespace", false),
    ("db.operation.name", "db_operation_name", false),
    ("peer.service", "peer_service", false),
    ("messaging.system", "messaging_system", false),
    (
        "messaging.operation.type",
        "messaging_operation_type",
        false,
    ),
    (
        "messaging.destination.name",
        "messaging_destination_name",
        false,
    ),
    ("error.type", "error_type", false),
];

pub(crate) fn event_struct() -> Fields {
    Fields::from(vec![
        Field::new("time", ts_type(), false),
        utf8("name", false),
        attrs("attributes"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ])
}

pub(crate) fn link_struct() -> Fields {
    Fields::from(vec![
        utf8("trace_id", false),
        utf8("span_id", false),
        utf8("trace_state", true),
        attrs("attributes"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("flags", DataType::UInt32, false),
    ])
}

fn spans_schema() -> Schema {
    let mut fields = vec![
        utf8("trace_id", false),
        utf8("span_id", false),
        utf8("parent_span_id", true),
        utf8("trace_state", true),
        Field::new("flags", DataType::UInt32, false),
        utf8("service_name", false),
        utf8("name", false),
        utf8("kind", false),
        Field::new("start_time", ts_type(), false),
        Field::new("end_time", ts_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        utf8("status_code", false),
        utf8("status_message", true),
        utf8("scope_name", true),
        utf8("scope_version", true),
    ];
    for (_, column, is_int) in SPAN_PROMOTED {
        let ty = if *is_int {
            DataType::Int64
        } else {
            DataType::Utf8
        };
        fields.push(Field::new(*column, ty, true));
    }
    fields.extend([
        attrs("attributes"),
        attrs("resource_attributes"),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        list_of("events", DataType::Struct(event_struct()), false),
        Field::new("dropped_events_count", DataType::UInt32, false),
        list_of("links", DataType::Struct(link_struct()), false),
        Field::new("dropped_links_count", DataType::UInt32, false),
    ]);
    Schema::new(fields)
}

fn logs_schema() -> Schema {
    Schema::new(vec![
        Field::new("time", ts_type(), false),
        Field::new("observed_time", ts_type(), false),
        utf8("service_name", false),
        Field::new("severity_number", DataType::Int32, false),
        utf8("severity_text", true),
        utf8("body", true),
        utf8("trace_id", true),
        utf8("span_id", true),
        Field::new("flags", DataType::UInt32, false),
        utf8("event_name", true),
        attrs("attributes"),
        attrs("resource_attributes"),
        utf8("scope_name", true),
        utf8("scope_version", true),
        Field::new("dropped_attributes_count", DataType::UInt32, false),
    ])
}

pub(crate) fn quantile_struct() -> Fields {
    Fields::from(vec![
        Field::new("quantile", DataType::Float64, false),
        Field::new("value", DataType::Float64, false),
    ])
}

pub(crate) fn exemplar_struct() -> Fields {
    Fields::from(vec![
        Field::new("time", ts_type(), false),
        Field::new("value", DataType::Float64, false),
        utf8("trace_id", true),
        utf8("span_id", true),
        attrs("filtered_attributes"),
    ])
}

fn metric_points_schema() -> Schema {
    Schema::new(vec![
        Field::new("time", ts_type(), false),
        Field::new("start_time", ts_type(), true),
        utf8("service_name", false),
        utf8("metric_name", false),
        utf8("metric_type", false),
        utf8("unit", true),
        utf8("description", true),
        attrs("attributes"),
        attrs("resource_attributes"),
        utf8("scope_name", true),
        utf8("scope_version", true),
        Field::new("flags", DataType::UInt32, false),
        Field::new("value", DataType::Float64, true),
        Field::new("value_int", DataType::Int64, true),
        Field::new("is_monotonic", DataType::Boolean, true),
        utf8("temporality", true),
        Field::new("count", DataType::UInt64, true),
        Field::new("sum", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        list_of("bucket_counts", DataType::UInt64, true),
        list_of("explicit_bounds", DataType::Float64, true),
        Field::new("scale", DataType::Int32, true),
        Field::new("zero_count", DataType::UInt64, true),
        Field::new("zero_threshold", DataType::Float64, true),
        Field::new("positive_offset", DataType::Int32, true),
        list_of("positive_bucket_counts", DataType::UInt64, true),
        Field::new("negative_offset", DataType::Int32, true),
        list_of("negative_bucket_counts", DataType::UInt64, true),
        list_of("quantiles", DataType::Struct(quantile_struct()), true),
        list_of("exemplars", DataType::Struct(exemplar_struct()), false),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_time_columns_exist() {
        for table in Table::ALL {
            assert_eq!(Table::from_name(table.name()), Some(table));
            assert_eq!(Table::from_tag(table.tag()), Some(table));
            let schema = table.schema();
            let time = schema.field_with_name(table.time_column()).unwrap();
            assert_eq!(time.data_type(), &ts_type());
            for column in table.sort_columns() {
                assert!(schema.field_with_name(column).is_ok(), "{column}");
            }
            for column in table.bloom_filter_columns() {
                assert!(schema.field_with_name(column).is_ok(), "{column}");
            }
        }
    }
}
