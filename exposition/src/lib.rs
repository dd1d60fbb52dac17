//! Burnwatch's `/metrics`: every part of the process (store, collector,
//! listeners, analytics, SLO engine) keeps its own counters as atomics and
//! reports them on each scrape through [`Source`]; [`encode`] turns them
//! into one OpenMetrics text exposition with `prometheus-client`, the
//! Prometheus project's Rust client (names, `HELP`, `TYPE`, label escaping,
//! histogram buckets, the closing `# EOF`).
//!
//! Names are written as scraped: a counter is named with its `_total`
//! suffix here (`burnwatch_store_flushes_total`), as users query it.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A part of the process that reports metrics on each scrape.
pub trait Source: Send + Sync + 'static {
    /// Reports every metric family of this part.
    fn collect(&self, out: &mut Out<'_>) -> fmt::Result;
}

impl<F> Source for F
where
    F: Fn(&mut Out<'_>) -> fmt::Result + Send + Sync + 'static,
{
    fn collect(&self, out: &mut Out<'_>) -> fmt::Result {
        self(out)
    }
}

/// One histogram series: cumulative counts per upper bound (ascending,
/// without `+Inf`), the count of all observations and their sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// `(upper bound, observations <= bound)`, ascending.
    pub cumulative: Vec<(f64, u64)>,
    /// Observations (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observed values.
    pub sum: f64,
}

/// A label value, escaped as the text format requires (`\`, `"`, newline).
struct Escaped<'a>(&'a str);

impl EncodeLabelValue for Escaped<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        use fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

fn labels<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, Escaped<'a>)> {
    pairs.iter().map(|(k, v)| (*k, Escaped(v))).collect()
}

/// Where a [`Source`] writes its metric families.
pub struct Out<'a> {
    encoder: DescriptorEncoder<'a>,
}

impl Out<'_> {
    /// A counter without labels. `name` ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) -> fmt::Result {
        self.counters(name, help, [(&[][..], value)])
    }

    /// A counter family: one series per label set. `name` ends in `_total`.
    pub fn counters<'l>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (&'l [(&'l str, &'l str)], u64)>,
    ) -> fmt::Result {
        let base = name.strip_suffix("_total").unwrap_or_else(|| {
            debug_assert!(false, "counter {name} must end in _total");
            name
        });
        let mut family = self
            .encoder
            .encode_descriptor(base, help, None, MetricType::Counter)?;
        for (pairs, value) in series {
            if pairs.is_empty() {
                family.encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            } else {
                let set = labels(pairs);
                family
                    .encode_family(&set)?
                    .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
            }
        }
        Ok(())
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) -> fmt::Result {
        self.gauges(name, help, [(&[][..], value)])
    }

    /// A gauge family: one series per label set.
    pub fn gauges<'l>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (&'l [(&'l str, &'l str)], f64)>,
    ) -> fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        // Whole numbers (sizes, counts) print without a fraction.
        fn put(m: &mut MetricEncoder<'_>, value: f64) -> fmt::Result {
            if value.fract() == 0.0 && value.abs() < 9.0e15 {
                m.encode_gauge(&(value as i64))
            } else {
                m.encode_gauge(&value)
            }
        }
        for (pairs, value) in series {
            if pairs.is_empty() {
                put(&mut family, value)?;
            } else {
                let set = labels(pairs);
                put(&mut family.encode_family(&set)?, value)?;
            }
        }
        Ok(())
    }

    /// A histogram family: one series per label set.
    pub fn histograms<'l>(
        &mut self,
        name: &str,
        help: &str,
        series: impl IntoIterator<Item = (&'l [(&'l str, &'l str)], Histogram)>,
    ) -> fmt::Result {
        let mut family = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (pairs, h) in series {
            // The encoder takes counts per bucket and adds them up; `+Inf`
            // is the bucket bounded by f64::MAX.
            let mut buckets = Vec::with_capacity(h.cumulative.len() + 1);
            let mut below = 0;
            for &(bound, cumulative) in &h.cumulative {
                buckets.push((bound, cumulative.saturating_sub(below)));
                below = cumulative;
            }
            buckets.push((f64::MAX, h.count.saturating_sub(below)));
            let set = labels(pairs);
            family
                .encode_family(&set)?
                .encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
        }
        Ok(())
    }
}

struct Adapter(Arc<dyn Source>);

impl fmt::Debug for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Source")
    }
}

impl Collector for Adapter {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> fmt::Result {
        self.0.collect(&mut Out { encoder })
    }
}

/// The exposition of every source, in order, ending in `# EOF`.
pub fn encode(sources: &[Arc<dyn Source>]) -> String {
    let mut registry = Registry::default();
    for s in sources {
        registry.register_collector(Box::new(Adapter(s.clone())));
    }
    let mut out = String::new();
    // Writing to a String cannot fail; a source's own error ends the text
    // early, which the missing `# EOF` shows to the scraper.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_histograms_encode_as_openmetrics() {
        let source = |out: &mut Out<'_>| -> fmt::Result {
            out.counter("burnwatch_things_total", "Things done.", 3)?;
            out.counters(
                "burnwatch_rows_total",
                "Rows.",
                [
                    (&[("table", "spans")][..], 5),
                    (&[("table", "logs")][..], 0),
                ],
            )?;
            out.gauge("burnwatch_bytes", "Bytes held.", 1024.0)?;
            out.gauges(
                "burnwatch_budget_remaining",
                "Budget left.",
                [(&[("slo", "a \"quoted\" \\ name\n")][..], 0.25)],
            )?;
            out.histograms(
                "burnwatch_duration_seconds",
                "Durations.",
                [(
                    &[("signal", "traces")][..],
                    Histogram {
                        cumulative: vec![(0.1, 2), (1.0, 3)],
                        count: 4,
                        sum: 2.5,
                    },
                )],
            )
        };
        let text = encode(&[Arc::new(source)]);
        let want = "# HELP burnwatch_things Things done.\n\
            # TYPE burnwatch_things counter\n\
            burnwatch_things_total 3\n\
            # HELP burnwatch_rows Rows.\n\
            # TYPE burnwatch_rows counter\n\
            burnwatch_rows_total{table=\"spans\"} 5\n\
            burnwatch_rows_total{table=\"logs\"} 0\n\
            # HELP burnwatch_bytes Bytes held.\n\
            # TYPE burnwatch_bytes gauge\n\
            burnwatch_bytes 1024\n\
            # HELP burnwatch_budget_remaining Budget left.\n\
            # TYPE burnwatch_budget_remaining gauge\n\
            burnwatch_budget_remaining{slo=\"a \\\"quoted\\\" \\\\ name\\n\"} 0.25\n\
            # HELP burnwatch_duration_seconds Durations.\n\
            # TYPE burnwatch_duration_seconds histogram\n\
            burnwatch_duration_seconds_sum{signal=\"traces\"} 2.5\n\
            burnwatch_duration_seconds_count{signal=\"traces\"} 4\n\
            burnwatch_duration_seconds_bucket{le=\"0.1\",signal=\"traces\"} 2\n\
            burnwatch_duration_seconds_bucket{le=\"1.0\",signal=\"traces\"} 3\n\
            burnwatch_duration_seconds_bucket{le=\"+Inf\",signal=\"traces\"} 4\n\
            # EOF\n";
        assert_eq!(text, want);
    }
}
