//! Notifications in the Alertmanager webhook format (version "4"), delivered
//! with retries and backoff; outcomes are counted for `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::secret::redact_url;

/// One alert in a webhook payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    /// `firing` or `resolved`.
    pub status: String,
    /// Identifying labels.
    pub labels: BTreeMap<String, String>,
    /// Descriptive annotations.
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; `0001-01-01T00:00:00Z` while firing.
    pub ends_at: String,
    /// Link back to Burnwatch.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Stable hash of the labels.
    pub fingerprint: String,
}

/// The Alertmanager webhook payload, version 4, every field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    /// Always `"4"`.
    pub version: String,
    /// Identifies the group (`{}:{slo="..."}`).
    pub group_key: String,
    /// Alerts left out of the payload.
    pub truncated_alerts: u64,
    /// `firing` if any alert fires, else `resolved`.
    pub status: String,
    /// Receiver name.
    pub receiver: String,
    /// Labels the group is formed by.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert shares.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert shares.
    pub common_annotations: BTreeMap<String, String>,
    /// Where Burnwatch is reachable.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<WebhookAlert>,
}

/// RFC 3339 (UTC, milliseconds) for ns since the epoch.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The zero time Alertmanager uses for "no end yet".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// FNV-1a over the sorted labels, hex: stable across restarts.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

/// Delivery counters of one kind of receiver.
#[derive(Debug, Default)]
pub struct Counters {
    /// Payloads delivered (2xx).
    pub delivered: AtomicU64,
    /// Payloads given up on after every retry.
    pub failed: AtomicU64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: AtomicU64,
}

/// Delivery counters: webhooks, and pushes to Alertmanager.
#[derive(Debug, Default)]
pub struct NotifyMetrics {
    /// Webhook notifications.
    pub webhook: Counters,
    /// Pushes to Alertmanager's `/api/v2/alerts`.
    pub alertmanager: Counters,
}

/// Posts `payload` to `url`, retrying up to `attempts` times with
/// exponential backoff from `backoff`; returns the attempts used, or the
/// last error.
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    payload: &impl Serialize,
    attempts: u32,
    backoff: Duration,
    metrics: &Counters,
) -> Result<u32, String> {
    let mut delay = backoff;
    let mut last = String::new();
    for attempt in 1..=attempts.max(1) {
        match http.post(url).json(payload).send().await {
            Ok(r) if r.status().is_success() => {
                metrics.delivered.fetch_add(1, Ordering::Relaxed);
                return Ok(attempt);
            }
            // The URL may hold a credential: only its host is shown.
            Ok(r) => last = format!("{} answered {}", redact_url(url), r.status()),
            Err(e) => last = format!("{}: {}", redact_url(url), e.without_url()),
        }
        metrics.failed_attempts.fetch_add(1, Ordering::Relaxed);
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }
    metrics.failed.fetch_add(1, Ordering::Relaxed);
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_snapshot() {
        let labels: BTreeMap<String, String> = [
            ("alertname", "SLOBurnRate"),
            ("severity", "page"),
            ("slo", "checkout-availability"),
            ("service", "shop"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let alert = WebhookAlert {
            status: "firing".into(),
            fingerprint: fingerprint(&labels),
            labels,
            annotations: [("summary".to_string(), "burning".to_string())].into(),
            starts_at: rfc3339(1_700_000_000_123_000_000),
            ends_at: ZERO_TIME.into(),
            generator_url: "http://bw/slos/checkout-availability".into(),
        };
        // Through the dispatcher, as the engine sends it.
        let d = crate::dispatch::Dispatcher::new(crate::dispatch::Grouping {
            group_by: vec!["slo".into()],
            group_wait_ns: 0,
            ..Default::default()
        });
        d.push(
            crate::dispatch::Pending {
                key: "slo/checkout-availability/1".into(),
                alert,
                targets: vec!["http://hook".into()],
                incident: Some(1),
            },
            1_700_000_000_123_000_000,
        );
        let (out, _) = d.flush_due(1_700_000_000_123_000_000, "burnwatch", "http://bw", |_| {
            None
        });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].incidents, vec![(1, "firing".to_string())]);
        let p = &out[0].payload;
        let json = serde_json::to_value(p).unwrap();
        let want = serde_json::json!({
            "version": "4",
            "groupKey": "{}:{slo=\"checkout-availability\"}",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "burnwatch",
            "groupLabels": {"slo": "checkout-availability"},
            "commonLabels": {"alertname": "SLOBurnRate", "service": "shop", "severity": "page", "slo": "checkout-availability"},
            "commonAnnotations": {"summary": "burning"},
            "externalURL": "http://bw",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "SLOBurnRate", "service": "shop", "severity": "page", "slo": "checkout-availability"},
                "annotations": {"summary": "burning"},
                "startsAt": "2023-11-14T22:13:20.123Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://bw/slos/checkout-availability",
                "fingerprint": p.alerts[0].fingerprint,
            }]
        });
        assert_eq!(json, want);
        assert_eq!(p.alerts[0].fingerprint.len(), 16);
    }
}
