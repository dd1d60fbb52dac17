//! OTLP export requests for tests: attributes and a request of spans
//! under one resource and one scope.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    any(key, any_value::Value::StringValue(value.into()))
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    any(key, any_value::Value::IntValue(value))
}

fn any(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// One resource with `resource` attributes and one scope holding `spans`.
pub fn spans_request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: (!resource.is_empty()).then(|| Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
