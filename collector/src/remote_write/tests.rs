use super::*;

#[test]
fn content_types_select_the_version() {
    assert_eq!(version(None), Ok(Version::V1));
    assert_eq!(version(Some("application/x-protobuf")), Ok(Version::V1));
    assert_eq!(
        version(Some("application/x-protobuf;proto=prometheus.WriteRequest")),
        Ok(Version::V1)
    );
    assert_eq!(
        version(Some(
            "application/x-protobuf; proto=io.prometheus.write.v2.Request"
        )),
        Ok(Version::V2)
    );
    assert!(version(Some("application/json")).is_err());
    assert!(version(Some("application/x-protobuf;proto=x.Y")).is_err());
}

#[test]
fn native_buckets_expand_spans_and_shift_the_index() {
    let spans = [
        proto::BucketSpan {
            offset: -2,
            length: 2,
        },
        proto::BucketSpan {
            offset: 3,
            length: 1,
        },
    ];
    // Integer deltas 3, +1, -2: counts 3, 4, 2.
    let (offset, counts) = buckets(&spans, &[3, 1, -2], &[]).unwrap();
    assert_eq!(offset, -3);
    assert_eq!(counts, vec![3, 4, 0, 0, 0, 2]);
    // Float counts must be whole.
    assert_eq!(
        buckets(&spans, &[], &[1.0, 2.0, 3.0]).unwrap().1,
        vec![1, 2, 0, 0, 0, 3]
    );
    assert!(buckets(&spans, &[], &[1.5, 2.0, 3.0]).is_err());
    // Counts that do not match the spans, and counts below zero.
    assert!(buckets(&spans, &[1, 2], &[]).is_err());
    assert!(buckets(&spans, &[1, -5, 0], &[]).is_err());
}

#[test]
fn metadata_applies_to_a_family_s_series() {
    let cache = MetadataCache::default();
    cache.learn(&[proto::v1::MetricMetadata {
        r#type: 3,
        metric_family_name: "rpc_seconds".into(),
        help: "h".into(),
        unit: "seconds".into(),
    }]);
    assert_eq!(
        cache.lookup("rpc_seconds_bucket").map(|m| m.kind),
        Some(Kind::Histogram)
    );
    assert_eq!(
        cache.lookup("rpc_seconds_sum").map(|m| m.unit),
        Some("seconds".into())
    );
    assert!(cache.lookup("other").is_none());
}
