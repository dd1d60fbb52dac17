//! Limits on new services and metric series per hour.
//!
//! One client that sends a hundred thousand distinct `service.name` values
//! (or metric attribute sets) in a second would grow every index, rollup
//! and page that lists services or series. [`Cardinality`] keeps, for the
//! current hour, the set of services and series seen; a request whose
//! items would add a service past `collector.max_services_per_hour`, or a
//! series past `collector.max_series_per_hour`, has those items rejected
//! (reported in `partialSuccess` with a message that names the limit and
//! counted in `burnwatch_otlp_cardinality_rejected_items_total`). Items of
//! services and series already seen this hour are always accepted. Memory
//! is bounded by the limits: the sets never grow past them. A new hour
//! starts with empty sets.
//!
//! A series is a service, a metric name and the data point's attributes
//! (in any order). Spans and log records count only their service.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;

use crate::convert::{any_value_string, service_name};
use crate::ingest::ExportRequest;

const HOUR_NS: i64 = 3_600_000_000_000;

/// What the limits rejected from one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pruned {
    /// Items removed from the request.
    pub rejected: u64,
    /// Why, for `partialSuccess` (empty when nothing was removed).
    pub message: String,
}

#[derive(Debug, Default)]
struct Window {
    hour: i64,
    services: HashSet<u64>,
    series: HashSet<u64>,
}

/// The services and series seen this hour, and their limits.
#[derive(Debug)]
pub struct Cardinality {
    max_services: usize,
    max_series: usize,
    window: Mutex<Window>,
}

fn hash_of(parts: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// A data point's series: its service, metric name and attributes (in any
/// order).
fn series_hash(service: &str, metric: &str, attributes: &[KeyValue]) -> u64 {
    let mut attrs: Vec<(&str, String)> = attributes
        .iter()
        .map(|kv| {
            (
                kv.key.as_str(),
                kv.value
                    .as_ref()
                    .map(|v| any_value_string(v).into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    attrs.sort_unstable();
    hash_of((service, metric, attrs))
}

impl Cardinality {
    /// Limits of `max_services` new services and `max_series` new series
    /// per hour (0: no limit).
    pub fn new(max_services: usize, max_series: usize) -> Cardinality {
        Cardinality {
            max_services,
            max_series,
            window: Mutex::new(Window::default()),
        }
    }

    /// Admits series given as (service, series key) pairs at `now_ns`:
    /// one verdict per pair, true when its service and series were seen
    /// this hour or fit under the limits. Used by receivers that do not
    /// carry OTLP requests (Prometheus remote write).
    pub fn admit_series<'a>(
        &self,
        now_ns: i64,
        series: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Vec<bool> {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let hour = now_ns.div_euclid(HOUR_NS);
        if w.hour != hour {
            *w = Window {
                hour,
                ..Window::default()
            };
        }
        series
            .into_iter()
            .map(|(service, key)| {
                let sh = hash_of(service);
                let service_ok = self.max_services == 0
                    || w.services.contains(&sh)
                    || (w.services.len() < self.max_services && w.services.insert(sh));
                if !service_ok {
                    return false;
                }
                let h = hash_of((service, key));
                self.max_series == 0
                    || w.series.contains(&h)
                    || (w.series.len() < self.max_series && w.series.insert(h))
            })
            .collect()
    }

    /// The limits: (services, series) per hour, 0 for none.
    pub fn limits(&self) -> (usize, usize) {
        (self.max_services, self.max_series)
    }

    /// Removes from `req` the items past the limits at `now_ns`.
    pub fn prune(&self, req: &mut ExportRequest, now_ns: i64) -> Pruned {
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let hour = now_ns.div_euclid(HOUR_NS);
        if w.hour != hour {
            *w = Window {
                hour,
                ..Window::default()
            };
        }
        let mut services_refused: Vec<String> = Vec::new();
        let mut series_refused = 0u64;
        let mut rejected = 0u64;
        let max_services = self.max_services;
        let max_series = self.max_series;
        // Admits a service: true if seen or room is left.
        let mut admit_service = |w: &mut Window, name: &str| -> bool {
            let h = hash_of(name);
            if max_services == 0 || w.services.contains(&h) {
                return true;
            }
            if w.services.len() < max_services {
                w.services.insert(h);
                return true;
            }
            if services_refused.len() < 3 && !services_refused.iter().any(|s| s == name) {
                services_refused.push(name.to_string());
            }
            false
        };
        let kind = match req {
            ExportRequest::Traces(r) => {
                prune_traces(r, |name| admit_service(&mut w, name), &mut rejected);
                "spans"
            }
            ExportRequest::Logs(r) => {
                prune_logs(r, |name| admit_service(&mut w, name), &mut rejected);
                "log records"
            }
            ExportRequest::Metrics(r) => {
                for rm in &mut r.resource_metrics {
                    let service = service_name(rm.resource.as_ref()).to_string();
                    if !admit_service(&mut w, &service) {
                        rejected += count_metric_points(rm);
                        rm.scope_metrics.clear();
                        continue;
                    }
                    for sm in &mut rm.scope_metrics {
                        for m in &mut sm.metrics {
                            let name = m.name.clone();
                            let mut admit = |attributes: &[KeyValue]| -> bool {
                                if max_series == 0 {
                                    return true;
                                }
                                let h = series_hash(&service, &name, attributes);
                                if w.series.contains(&h) {
                                    return true;
                                }
                                if w.series.len() < max_series {
                                    w.series.insert(h);
                                    return true;
                                }
                                series_refused += 1;
                                rejected += 1;
                                false
                            };
                            match &mut m.data {
                                Some(Data::Gauge(g)) => {
                                    g.data_points.retain(|p| admit(&p.attributes))
                                }
                                Some(Data::Sum(s)) => {
                                    s.data_points.retain(|p| admit(&p.attributes))
                                }
                                Some(Data::Histogram(h)) => {
                                    h.data_points.retain(|p| admit(&p.attributes))
                                }
                                Some(Data::ExponentialHistogram(h)) => {
                                    h.data_points.retain(|p| admit(&p.attributes))
                                }
                                Some(Data::Summary(s)) => {
                                    s.data_points.retain(|p| admit(&p.attributes))
                                }
                                None => {}
                            }
                        }
                    }
                }
                "data points"
            }
        };
        let mut message = String::new();
        if !services_refused.is_empty() {
            message = format!(
                "rejected {kind} of services past the limit of {max_services} distinct services per hour \
                 (collector.max_services_per_hour), e.g. {}",
                services_refused
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if series_refused > 0 {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&format!(
                "rejected {series_refused} data points of series past the limit of {max_series} \
                 distinct series per hour (collector.max_series_per_hour)"
            ));
        }
        Pruned { rejected, message }
    }
}

fn prune_traces(
    r: &mut ExportTraceServiceRequest,
    mut admit: impl FnMut(&str) -> bool,
    rejected: &mut u64,
) {
    r.resource_spans.retain(|rs| {
        if admit(service_name(rs.resource.as_ref())) {
            return true;
        }
        *rejected += rs
            .scope_spans
            .iter()
            .map(|s| s.spans.len() as u64)
            .sum::<u64>();
        false
    });
}

fn prune_logs(
    r: &mut ExportLogsServiceRequest,
    mut admit: impl FnMut(&str) -> bool,
    rejected: &mut u64,
) {
    r.resource_logs.retain(|rl| {
        if admit(service_name(rl.resource.as_ref())) {
            return true;
        }
        *rejected += rl
            .scope_logs
            .iter()
            .map(|s| s.log_records.len() as u64)
            .sum::<u64>();
        false
    });
}

fn count_metric_points(rm: &opentelemetry_proto::tonic::metrics::v1::ResourceMetrics) -> u64 {
    rm.scope_metrics
        .iter()
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        } as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn traces(services: impl Iterator<Item = String>) -> ExportRequest {
        ExportRequest::Traces(ExportTraceServiceRequest {
            resource_spans: services
                .map(|s| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", &s)],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span::default(), Span::default()],
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        })
    }

    #[test]
    fn new_services_past_the_limit_are_rejected_until_the_next_hour() {
        let c = Cardinality::new(3, 0);
        let t0 = 10 * HOUR_NS + 5;
        let mut req = traces((0..5).map(|i| format!("s{i}")));
        let p = c.prune(&mut req, t0);
        assert_eq!(p.rejected, 4);
        assert!(
            p.message.contains("limit of 3 distinct services per hour"),
            "{}",
            p.message
        );
        assert!(p.message.contains("\"s3\", \"s4\""), "{}", p.message);
        let ExportRequest::Traces(r) = &req else {
            panic!()
        };
        assert_eq!(r.resource_spans.len(), 3);
        // Known services keep flowing; new ones wait for the next hour.
        let mut again = traces(["s0", "s9", "s2"].into_iter().map(String::from));
        assert_eq!(c.prune(&mut again, t0 + 1).rejected, 2);
        let mut later = traces(["s9"].into_iter().map(String::from));
        assert_eq!(c.prune(&mut later, t0 + HOUR_NS).rejected, 0);
        // No limit: nothing removed.
        let free = Cardinality::new(0, 0);
        let mut many = traces((0..100).map(|i| format!("x{i}")));
        assert_eq!(free.prune(&mut many, t0), Pruned::default());
    }

    #[test]
    fn series_are_a_service_a_metric_and_attributes_in_any_order() {
        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
        };
        let point = |attrs: Vec<KeyValue>| NumberDataPoint {
            attributes: attrs,
            ..Default::default()
        };
        let mut req = ExportRequest::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "api")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![
                                point(vec![kv("a", "1"), kv("b", "2")]),
                                point(vec![kv("b", "2"), kv("a", "1")]),
                                point(vec![kv("a", "2")]),
                                point(vec![kv("a", "3")]),
                            ],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let c = Cardinality::new(10, 2);
        let p = c.prune(&mut req, 0);
        assert_eq!(p.rejected, 1, "{}", p.message);
        assert!(p.message.contains("max_series_per_hour"));
        let ExportRequest::Metrics(r) = &req else {
            panic!()
        };
        let Some(Data::Gauge(g)) = &r.resource_metrics[0].scope_metrics[0].metrics[0].data else {
            panic!()
        };
        assert_eq!(g.data_points.len(), 3);
    }
}
