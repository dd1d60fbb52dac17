//! The number forms of the proto3 JSON mapping that the generated OTLP
//! types do not accept by themselves.
//!
//! proto3 JSON lets a sender write any number as a string: `"asDouble":
//! "1.5"`, `"NaN"`, `"Infinity"`, `"-Infinity"` for doubles, `"scale": "-2"`
//! for 32-bit integers. The generated types accept strings only for 64-bit
//! integers; a double written as a string inside a flattened `oneof` (such
//! as a data point's value) was silently taken as "no value".
//!
//! [`Lenient`] wraps a `serde` deserializer: where the target asks for a
//! number and the input holds a string, the string is parsed as that
//! number; where a value is collected without a type (a flattened `oneof`)
//! and its key names a double field of OTLP, a numeric string is passed on
//! as a double, and where it names a 32-bit integer field, as an integer.
//! (Inside a flattened `oneof`, such as a metric's data, values are
//! collected before their type is known, so only the key can tell.) Every
//! other value passes through unchanged.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};

/// Keys of OTLP fields that hold one double.
const DOUBLE_KEYS: &[&str] = &[
    "asDouble",
    "doubleValue",
    "sum",
    "min",
    "max",
    "zeroThreshold",
    "quantile",
    "value",
];
/// Keys of OTLP fields that hold a list of doubles.
const DOUBLE_LIST_KEYS: &[&str] = &["explicitBounds"];
/// Keys of OTLP fields that hold a 32-bit integer or an enum number (the
/// 64-bit ones take strings by themselves).
const INTEGER_KEYS: &[&str] = &[
    "flags",
    "scale",
    "offset",
    "droppedAttributesCount",
    "droppedEventsCount",
    "droppedLinksCount",
    "aggregationTemporality",
    "kind",
    "severityNumber",
    "code",
];

/// Deserializes `T` from OTLP JSON with every proto3 number form.
pub fn from_slice<T: de::DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = T::deserialize(Lenient::new(&mut de))?;
    de.end()?;
    Ok(value)
}

/// What a string found at this place may stand for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// Nothing but a string.
    Plain,
    /// A double (its key is a double field).
    Double,
    /// Each element is a double.
    DoubleList,
    /// The target asked for a float.
    Float,
    /// The target asked for an integer, or the key is an integer field.
    Integer,
}

/// A deserializer that reads numbers written as strings.
#[derive(Debug)]
pub struct Lenient<D> {
    inner: D,
    mode: Mode,
}

impl<D> Lenient<D> {
    /// Wraps `inner`.
    pub fn new(inner: D) -> Self {
        Lenient {
            inner,
            mode: Mode::Plain,
        }
    }
}

fn parse_double(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        // Only decimal forms: `inf` or `nan` spelled otherwise stay strings.
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// Wraps a visitor so that strings become numbers where the mode says so,
/// and nested maps and lists are read leniently too.
struct Visit<V> {
    inner: V,
    mode: Mode,
}

impl<V> Visit<V> {
    fn string<'de, E: de::Error>(self, s: &str) -> Result<V::Value, E>
    where
        V: Visitor<'de>,
    {
        match self.mode {
            Mode::Double | Mode::Float => match parse_double(s) {
                Some(f) => self.inner.visit_f64(f),
                None => self.inner.visit_str(s),
            },
            Mode::Integer => {
                if let Ok(i) = s.parse::<i64>() {
                    self.inner.visit_i64(i)
                } else if let Ok(u) = s.parse::<u64>() {
                    self.inner.visit_u64(u)
                } else {
                    self.inner.visit_str(s)
                }
            }
            Mode::Plain | Mode::DoubleList => self.inner.visit_str(s),
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.inner.expecting(f)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.inner.visit_bool(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
        self.inner.visit_i64(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.inner.visit_u64(v)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        self.inner.visit_f64(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.string(v)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        match self.mode {
            Mode::Plain | Mode::DoubleList => self.inner.visit_borrowed_str(v),
            _ => self.string(v),
        }
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        match self.mode {
            Mode::Plain | Mode::DoubleList => self.inner.visit_string(v),
            _ => self.string(&v),
        }
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.inner.visit_bytes(v)
    }
    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.inner.visit_borrowed_bytes(v)
    }
    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.inner.visit_byte_buf(v)
    }
    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Lenient {
            inner: d,
            mode: self.mode,
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Lenient {
            inner: d,
            mode: self.mode,
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let element = if self.mode == Mode::DoubleList {
            Mode::Double
        } else {
            Mode::Plain
        };
        self.inner.visit_seq(Seq {
            inner: seq,
            mode: element,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Map {
            inner: map,
            next: Mode::Plain,
        })
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

/// A seed whose value is read leniently in `mode`.
struct Seed<S> {
    inner: S,
    mode: Mode,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Lenient {
            inner: d,
            mode: self.mode,
        })
    }
}

struct Seq<A> {
    inner: A,
    mode: Mode,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
    type Error = A::Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Seed {
            inner: seed,
            mode: self.mode,
        })
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

struct Map<A> {
    inner: A,
    /// The mode of the value after the key just read.
    next: Mode,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
    type Error = A::Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        // JSON keys are strings: read the key, note its mode, then hand it
        // to the seed.
        let Some(key) = self.inner.next_key::<String>()? else {
            return Ok(None);
        };
        self.next = if DOUBLE_KEYS.contains(&key.as_str()) {
            Mode::Double
        } else if DOUBLE_LIST_KEYS.contains(&key.as_str()) {
            Mode::DoubleList
        } else if INTEGER_KEYS.contains(&key.as_str()) {
            Mode::Integer
        } else {
            Mode::Plain
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        let mode = std::mem::replace(&mut self.next, Mode::Plain);
        self.inner.next_value_seed(Seed { inner: seed, mode })
    }
    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

macro_rules! typed {
    ($($method:ident => $mode:expr),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.inner.deserialize_any(Visit { inner: visitor, mode: $mode })
            }
        )*
    };
}

macro_rules! forward {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.inner.$method(Visit { inner: visitor, mode: self.mode })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Lenient<D> {
    type Error = D::Error;

    typed! {
        deserialize_f32 => Mode::Float,
        deserialize_f64 => Mode::Float,
        deserialize_i8 => Mode::Integer,
        deserialize_i16 => Mode::Integer,
        deserialize_i32 => Mode::Integer,
        deserialize_i64 => Mode::Integer,
        deserialize_i128 => Mode::Integer,
        deserialize_u8 => Mode::Integer,
        deserialize_u16 => Mode::Integer,
        deserialize_u32 => Mode::Integer,
        deserialize_u64 => Mode::Integer,
        deserialize_u128 => Mode::Integer,
    }

    forward! {
        deserialize_any,
        deserialize_bool,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_unit_struct(
            name,
            Visit {
                inner: visitor,
                mode: self.mode,
            },
        )
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_newtype_struct(
            name,
            Visit {
                inner: visitor,
                mode: self.mode,
            },
        )
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple(
            len,
            Visit {
                inner: visitor,
                mode: self.mode,
            },
        )
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_tuple_struct(
            name,
            len,
            Visit {
                inner: visitor,
                mode: self.mode,
            },
        )
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(
            name,
            fields,
            Visit {
                inner: visitor,
                mode: self.mode,
            },
        )
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_ignored_any(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};

    #[test]
    fn numbers_as_strings_are_read_as_numbers() {
        let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"g","gauge":{"dataPoints":[
                {"asDouble":"1.5","timeUnixNano":"1"},
                {"asDouble":"NaN"},
                {"asDouble":"-Infinity"},
                {"asDouble":2.5},
                {"asInt":"7"},
                {"asDouble":"1e3","flags":"1","exemplars":[{"asDouble":"0.25"}]}]}},
            {"name":"h","histogram":{"dataPoints":[
                {"count":"3","sum":"4.5","min":"Infinity","max":"2","explicitBounds":["1","NaN",3],
                 "bucketCounts":["1",1,"1","0"]}]}},
            {"name":"e","exponentialHistogram":{"dataPoints":[
                {"scale":"-2","zeroThreshold":"0.5","positive":{"offset":"-1","bucketCounts":["2"]}}]}},
            {"name":"s","summary":{"dataPoints":[
                {"quantileValues":[{"quantile":"0.5","value":"9.5"}]}]}}
        ]}]}]}"#;
        let req: ExportMetricsServiceRequest = from_slice(body.as_bytes()).unwrap();
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(metric::Data::Gauge(g)) = &metrics[0].data else {
            panic!()
        };
        let values: Vec<_> = g.data_points.iter().map(|p| p.value).collect();
        assert_eq!(values[0], Some(number_data_point::Value::AsDouble(1.5)));
        assert!(matches!(values[1], Some(number_data_point::Value::AsDouble(v)) if v.is_nan()));
        assert_eq!(
            values[2],
            Some(number_data_point::Value::AsDouble(f64::NEG_INFINITY))
        );
        assert_eq!(values[3], Some(number_data_point::Value::AsDouble(2.5)));
        assert_eq!(values[4], Some(number_data_point::Value::AsInt(7)));
        assert_eq!(values[5], Some(number_data_point::Value::AsDouble(1000.0)));
        assert_eq!(g.data_points[5].flags, 1);
        assert_eq!(g.data_points[0].time_unix_nano, 1);
        assert!(matches!(
            g.data_points[5].exemplars[0].value,
            Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(v)) if v == 0.25
        ));
        let Some(metric::Data::Histogram(h)) = &metrics[1].data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!((p.count, p.sum, p.max), (3, Some(4.5), Some(2.0)));
        assert_eq!(p.min, Some(f64::INFINITY));
        assert_eq!(p.explicit_bounds.len(), 3);
        assert!(p.explicit_bounds[1].is_nan());
        assert_eq!(p.bucket_counts, vec![1, 1, 1, 0]);
        let Some(metric::Data::ExponentialHistogram(e)) = &metrics[2].data else {
            panic!()
        };
        let p = &e.data_points[0];
        assert_eq!((p.scale, p.zero_threshold), (-2, 0.5));
        let positive = p.positive.as_ref().unwrap();
        assert_eq!(
            (positive.offset, positive.bucket_counts.clone()),
            (-1, vec![2])
        );
        let Some(metric::Data::Summary(s)) = &metrics[3].data else {
            panic!()
        };
        let q = &s.data_points[0].quantile_values[0];
        assert_eq!((q.quantile, q.value), (0.5, 9.5));
    }

    #[test]
    fn strings_that_are_not_numbers_stay_errors_or_strings() {
        // A string attribute keeps its text even under a key named "value".
        let body = r#"{"resourceSpans":[{"resource":{"attributes":[
            {"key":"k","value":{"stringValue":"1.5"}},
            {"key":"d","value":{"doubleValue":"2.5"}}]}}]}"#;
        let req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest =
            from_slice(body.as_bytes()).unwrap();
        let attrs = &req.resource_spans[0].resource.as_ref().unwrap().attributes;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        assert_eq!(
            attrs[0].value.as_ref().unwrap().value,
            Some(Value::StringValue("1.5".into()))
        );
        assert_eq!(
            attrs[1].value.as_ref().unwrap().value,
            Some(Value::DoubleValue(2.5))
        );
        // A double field with a word in it is still wrong: the metric has
        // no data (the conversion rejects it, naming the metric), and
        // outside a oneof the body does not parse.
        let bad = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"h","histogram":{"dataPoints":[{"sum":"lots"}]}}]}]}]}"#;
        let req = from_slice::<ExportMetricsServiceRequest>(bad.as_bytes()).unwrap();
        assert!(
            req.resource_metrics[0].scope_metrics[0].metrics[0]
                .data
                .is_none()
        );
        let bad =
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"droppedAttributesCount":"many"}]}]}]}"#;
        assert!(
            from_slice::<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>(
                bad.as_bytes()
            )
            .is_err()
        );
        // Trailing bytes after the document are an error, as before.
        assert!(from_slice::<ExportMetricsServiceRequest>(b"{} x").is_err());
    }
}
