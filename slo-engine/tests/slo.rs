//! SLO evaluation on stored spans, checked against the SRE Workbook's
//! figures, and the engine end to end: one incident per SLO that escalates,
//! de-escalates and resolves, survives a restart, and notifies a real local
//! webhook receiver once per change.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::webhook::{receiver, settle};

use slo_engine::burn::standard_tiers;
use slo_engine::engine::{SloConfig, SloEngine};
use slo_engine::evaluate::{AlertState, evaluate};
use slo_engine::openslo::{Slo, load_dir};
use slo_engine::sli::SliCounter;
use store::{Store, Table};

const T0: i64 = 1_709_632_800_000_000_000; // 2024-03-05T10:00:00Z
const SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SEC;

fn slo_yaml(target: f64, min_events: u64) -> String {
    format!(
        r#"
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  displayName: Checkout availability
spec:
  service: shop
  minEvents: {min_events}
  indicator:
    metadata: {{name: checkout-errors}}
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource: {{type: burnwatch, spec: {{service: gateway, operation: "POST /api/checkout", errors: true}}}}
        total:
          metricSource: {{type: burnwatch, spec: {{service: gateway, operation: "POST /api/checkout"}}}}
  timeWindow: [{{duration: 30d, isRolling: true}}]
  budgetingMethod: Occurrences
  objectives: [{{target: {target}}}]
"#
    )
}

fn load_slo(dir: &std::path::Path, target: f64, min_events: u64) -> Slo {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("slo.yaml"), slo_yaml(target, min_events)).unwrap();
    load_dir(&rules).unwrap().remove(0)
}

/// Checkout requests at the given start times; `bad` ones fail.
fn spans(times: &[(i64, bool)]) -> arrow::array::RecordBatch {
    store::synth::http_requests("gateway", "POST", "/api/checkout", times)
}

fn counter(store: &Store) -> Arc<SliCounter> {
    SliCounter::new(store.clone(), 1 << 20)
}

async fn open_store(dir: &std::path::Path) -> Store {
    Store::open(testkit::store_config(&dir.join("data")))
        .await
        .unwrap()
}

/// One request per second in [from, to), bad when `bad(t)`.
async fn write_traffic(store: &Store, from: i64, to: i64, bad: impl Fn(i64) -> bool) {
    let times: Vec<(i64, bool)> = (0..)
        .map(|i| from + i * SEC)
        .take_while(|t| *t < to)
        .map(|t| (t, bad(t)))
        .collect();
    for chunk in times.chunks(50_000) {
        store.write(Table::Spans, spans(chunk)).await.unwrap();
    }
}

#[test]
fn workbook_budget_shares() {
    // Budget consumed = burn x long window / SLO window.
    let month = Duration::from_secs(30 * 86400);
    let shares: Vec<f64> = standard_tiers(month)
        .iter()
        .map(|t| t.factor * t.long.as_secs_f64() / month.as_secs_f64())
        .collect();
    for (got, want) in shares.iter().zip([0.02, 0.05, 0.10, 0.10]) {
        assert!((got - want).abs() < 1e-12, "{shares:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_outage_trips_the_fast_page_after_51_8_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let slo = load_slo(dir.path(), 0.999, 10);
    let store = open_store(dir.path()).await;
    // An hour of healthy traffic, then every request fails from T0 on.
    write_traffic(&store, T0 - HOUR, T0 + 120 * SEC, |t| t >= T0).await;

    // After 51 s: 51 bad of 3600 in the last hour = burn 14.17 < 14.4.
    let s = evaluate(&counter(&store), &slo, T0 + 51 * SEC)
        .await
        .unwrap();
    let fast = &s.tiers[0];
    assert_eq!((fast.long_secs, fast.short_secs), (3600, 300));
    assert!(
        (fast.long_burn.unwrap() - 51.0 / 3.6).abs() < 1e-9,
        "{fast:?}"
    );
    assert!(!fast.firing);
    // After 52 s: burn 14.44 > 14.4 over 1h, and the 5m window agrees.
    let s = evaluate(&counter(&store), &slo, T0 + 52 * SEC)
        .await
        .unwrap();
    let fast = &s.tiers[0];
    assert!(
        (fast.long_burn.unwrap() - 52.0 / 3.6).abs() < 1e-9,
        "{fast:?}"
    );
    assert!(fast.short_burn.unwrap() > 14.4);
    assert!(fast.firing);
    assert_eq!(s.state, AlertState::Page);
    // Exact event counts, not an average of ratios.
    assert_eq!((s.total, s.bad), (3652, 52));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_requests_an_hour_with_one_failure() {
    let dir = tempfile::tempdir().unwrap();
    let slo = load_slo(dir.path(), 0.999, 10);
    let store = open_store(dir.path()).await;
    // 30 days of 10 requests an hour; one failure in the last hour.
    let start = T0 - 30 * 24 * HOUR;
    let times: Vec<(i64, bool)> = (0..30 * 24 * 10)
        .map(|i| {
            let t = start + i * 360 * SEC;
            (t, t == T0 - 360 * SEC)
        })
        .collect();
    store.write(Table::Spans, spans(&times)).await.unwrap();
    let s = evaluate(&counter(&store), &slo, T0).await.unwrap();
    assert_eq!((s.total, s.bad), (7200, 1));
    let hour = s.windows.iter().find(|w| w.window_secs == 3600).unwrap();
    assert_eq!((hour.total, hour.bad), (10, 1));
    assert!((hour.burn_rate.unwrap() - 100.0).abs() < 1e-9);
    // 100 x 1h / 30d = 13.9% of the budget.
    assert!(
        (s.budget_consumed.unwrap() - 1.0 / 7.2).abs() < 1e-9,
        "{:?}",
        s.budget_consumed
    );
    assert!((s.budget_consumed.unwrap() * 1000.0).round() == 139.0);
    // Data over the whole window (the first request is at its start).
    assert_eq!(s.data_from_ns, Some(start));
    assert_eq!(s.coverage_secs, 30 * 24 * 3600);
    assert_eq!(s.coverage_note, None);

    // Seen 3 h 12 min after the first request (a brand-new SLO): the
    // budget is over that much history, and says so.
    let early = start + 3 * HOUR + 12 * 60 * SEC;
    let s = evaluate(&counter(&store), &slo, early).await.unwrap();
    assert_eq!(s.total, 32);
    assert_eq!(s.data_from_ns, Some(start));
    assert_eq!(s.coverage_secs, 3 * 3600 + 12 * 60);
    assert_eq!(
        s.coverage_note.as_deref(),
        Some("budget over 3 h 12 min of a 30-day window")
    );

    // With a minimum of 20 events per long window there is not enough data
    // to page on one failure: an explicit state, not NaN or a false page.
    let strict = load_slo(dir.path(), 0.999, 20);
    let s = evaluate(&counter(&store), &strict, T0).await.unwrap();
    assert!(s.tiers[0].insufficient_data && !s.tiers[0].firing);
    // (The 6h/30m tier has 60 events and a burn of 16.7: it still pages.)
    assert!(s.tiers[1].firing && !s.tiers[1].insufficient_data);
    // No data at all: insufficient data, and no burn rate (not NaN).
    let s = evaluate(&counter(&store), &slo, start - HOUR)
        .await
        .unwrap();
    assert_eq!(s.state, AlertState::InsufficientData);
    assert_eq!(s.current_burn, None);
    assert_eq!(s.sli, None);
    assert_eq!(s.data_from_ns, None);
    assert_eq!(
        s.coverage_note.as_deref(),
        Some("no events yet in a 30-day window")
    );
}

/// Resolving by hand closes the incident (who and why on its timeline) and
/// sends a resolved notification at once; an SLO that still burns opens a
/// new incident at the next round, which pages again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_resolved_incident_notifies_and_reopens_while_burning() {
    let dir = tempfile::tempdir().unwrap();
    let slo = load_slo(dir.path(), 0.999, 10);
    let store = open_store(dir.path()).await;
    let outage_end = T0 + 600 * SEC;
    write_traffic(&store, T0 - HOUR, outage_end + HOUR, |t| t >= T0).await;
    let (url, got) = receiver().await;
    let config = SloConfig {
        webhook_urls: vec![url],
        group_wait_secs: 0.0,
        group_interval_secs: 0.0,
        ..SloConfig::default()
    };
    let engine = SloEngine::open(store, vec![slo], config, &dir.path().join("state")).unwrap();
    engine.evaluate_at(outage_end).await;
    assert_eq!(settle(&got, 1).await.len(), 1);
    let id = engine.incidents(1).unwrap()[0].id;

    engine
        .resolve_at(id, "alice", "rolled back", outage_end + 10 * SEC)
        .unwrap();
    engine.flush_notifications(outage_end + 10 * SEC);
    let payloads = settle(&got, 2).await;
    assert_eq!(payloads.len(), 2, "{payloads:#?}");
    let alert = &payloads[1]["alerts"][0];
    assert_eq!(payloads[1]["status"], "resolved");
    assert_eq!(alert["annotations"]["resolved_by"], "alice");
    assert_eq!(alert["labels"]["severity"], "page");
    assert_ne!(alert["endsAt"], "0001-01-01T00:00:00Z");
    let inc = &engine.incidents(1).unwrap()[0];
    assert_eq!((inc.id, inc.state.as_str()), (id, "resolved"));
    let events: Vec<&str> = inc.timeline.iter().map(|t| t.event.as_str()).collect();
    assert_eq!(
        events.last(),
        Some(&"notified"),
        "the resolved notification"
    );
    let resolved = inc.timeline.iter().find(|t| t.event == "resolved").unwrap();
    assert_eq!(
        resolved.detail,
        serde_json::json!({ "by": "alice", "manual": true, "note": "rolled back" })
    );
    // Twice is refused.
    assert!(
        engine
            .resolve_at(id, "bob", "", outage_end + 20 * SEC)
            .unwrap_err()
            .contains("not open")
    );

    // Still burning: a new incident pages.
    engine.evaluate_at(outage_end + 30 * SEC).await;
    let list = engine.incidents(10).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].state.as_str(), list[0].severity.as_str()),
        ("open", "page")
    );
    let payloads = settle(&got, 3).await;
    assert_eq!(payloads.len(), 3);
    assert_eq!(payloads[2]["status"], "firing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_incident_escalates_deescalates_resolves_and_notifies_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let slo = load_slo(dir.path(), 0.999, 10);
    let store = open_store(dir.path()).await;
    // Healthy hour, 10 minutes of full outage, then 7 healthy hours.
    let outage_end = T0 + 600 * SEC;
    write_traffic(&store, T0 - HOUR, outage_end + 7 * HOUR, |t| {
        (T0..outage_end).contains(&t)
    })
    .await;
    // A log record of the last failing request (the 4200th of the batch;
    // synth::http_requests derives its trace id from the start and index).
    let last_failed = outage_end - SEC;
    let trace = (last_failed as u128 * 7 + 4200).to_be_bytes();
    let mut logs = store::rows::LogsBuilder::new();
    let res = vec![store::rows::Attr::new("service.name", "gateway")];
    logs.append(
        &store::rows::Origin {
            service_name: "gateway",
            resource_attributes: &res,
            scope_name: "",
            scope_version: "",
        },
        &store::rows::LogRecord {
            time_ns: last_failed + 5_000_000,
            observed_time_ns: last_failed,
            severity_number: 17,
            severity_text: "ERROR",
            body: Some("card declined".into()),
            trace_id: Some(trace),
            ..Default::default()
        },
    );
    store.write(Table::Logs, logs.finish()).await.unwrap();
    let (url, got) = receiver().await;
    let config = SloConfig {
        webhook_urls: vec![url],
        external_url: "http://burnwatch.example".into(),
        group_wait_secs: 0.0,
        group_interval_secs: 0.0,
        ..SloConfig::default()
    };
    let state_dir = dir.path().join("state");
    let engine =
        SloEngine::open(store.clone(), vec![slo.clone()], config.clone(), &state_dir).unwrap();

    // During the outage every tier fires (page and ticket): one incident, one page.
    let s = engine.evaluate_at(outage_end).await;
    assert!(s[0].tiers.iter().all(|t| t.firing), "{:?}", s[0].tiers);
    assert_eq!(s[0].state, AlertState::Page);
    engine.evaluate_at(outage_end + 30 * SEC).await;
    let payloads = settle(&got, 1).await;
    assert_eq!(payloads.len(), 1, "{payloads:#?}");
    let p = &payloads[0];
    assert_eq!(p["version"], "4");
    assert_eq!(p["status"], "firing");
    assert_eq!(p["alerts"][0]["labels"]["severity"], "page");
    assert_eq!(p["alerts"][0]["labels"]["slo"], "checkout-availability");
    assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        p["groupKey"],
        "{}:{alertname=\"SLOBurnRate\", slo=\"checkout-availability\"}"
    );
    // The evidence, over the 1 h window of the fastest firing tier: the
    // failing operation, the newest failing requests and their logs.
    let inc = &engine.incidents(1).unwrap()[0];
    let ev = &inc
        .timeline
        .iter()
        .find(|t| t.event == "evidence")
        .expect("evidence on the timeline")
        .detail;
    assert_eq!(ev["operations"][0]["operation"], "POST /api/checkout");
    assert_eq!(
        (
            ev["operations"][0]["bad"].as_u64(),
            ev["operations"][0]["total"].as_u64()
        ),
        (Some(600), Some(3600))
    );
    assert_eq!(ev["traces"].as_array().unwrap().len(), 5);
    let newest = format!("{:032x}", last_failed as u128 * 7 + 4200);
    assert_eq!(ev["traces"][0]["trace_id"], newest.as_str());
    assert_eq!(ev["logs"][0]["body"], "card declined");
    assert_eq!(ev["logs"][0]["trace_id"], newest.as_str());
    let ann = &p["alerts"][0]["annotations"];
    assert_eq!(
        ann["example_trace"],
        format!("http://burnwatch.example/api/v1/traces/{newest}").as_str()
    );
    assert!(
        ann["top_operation"]
            .as_str()
            .unwrap()
            .starts_with("gateway POST /api/checkout: 600 of 3600 bad (100%"),
        "{ann}"
    );

    // A restart keeps the incident: no second page.
    drop(engine);
    let engine =
        SloEngine::open(store.clone(), vec![slo.clone()], config.clone(), &state_dir).unwrap();
    engine.evaluate_at(outage_end + 60 * SEC).await;
    assert_eq!(settle(&got, 1).await.len(), 1);

    // 40 minutes later the page windows (5m, 30m) are clean, the ticket
    // tier's 2h window is not: de-escalate to a ticket.
    let s = engine.evaluate_at(outage_end + 40 * 60 * SEC).await;
    assert_eq!(s[0].state, AlertState::Ticket, "{:?}", s[0].tiers);
    let payloads = settle(&got, 2).await;
    assert_eq!(payloads.len(), 2);
    assert_eq!(payloads[1]["alerts"][0]["labels"]["severity"], "ticket");

    // After 6 h every short window is clean: resolved.
    let s = engine.evaluate_at(outage_end + 6 * HOUR + 60 * SEC).await;
    assert_eq!(s[0].state, AlertState::Ok, "{:?}", s[0].tiers);
    let payloads = settle(&got, 3).await;
    assert_eq!(payloads.len(), 3);
    assert_eq!(payloads[2]["status"], "resolved");
    assert_ne!(payloads[2]["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");

    let incidents = engine.incidents(10).unwrap();
    assert_eq!(incidents.len(), 1);
    let inc = &incidents[0];
    assert_eq!(inc.state, "resolved");
    let events: Vec<&str> = inc.timeline.iter().map(|t| t.event.as_str()).collect();
    for e in ["opened", "deescalated", "resolved", "notified"] {
        assert!(events.contains(&e), "{events:?}");
    }
    assert_eq!(events.iter().filter(|e| **e == "notified").count(), 3);
    let m = {
        let e = engine.clone();
        exposition::encode(&[std::sync::Arc::new(move |o: &mut exposition::Out<'_>| {
            e.collect_metrics(o)
        })])
    };
    // Counters restart with the process: two deliveries since the restart.
    assert!(
        m.contains("burnwatch_notifications_total{receiver=\"webhook\",result=\"delivered\"} 2"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deliveries_are_retried_counted_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let slo = load_slo(dir.path(), 0.999, 10);
    let store = open_store(dir.path()).await;
    write_traffic(&store, T0 - HOUR, T0 + 600 * SEC, |t| t >= T0).await;
    // Nothing listens here.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // The path is the credential, as in Slack or Teams webhook URLs.
    let dead = format!("http://{}/hooks/T0/S3CRET-PATH", l.local_addr().unwrap());
    drop(l);
    let config = SloConfig {
        webhook_urls: vec![dead],
        delivery_attempts: 2,
        group_wait_secs: 0.0,
        group_interval_secs: 0.0,
        ..SloConfig::default()
    };
    let engine = SloEngine::open(store, vec![slo], config, &dir.path().join("state")).unwrap();
    engine.evaluate_at(T0 + 600 * SEC).await;
    let mut failed = None;
    for _ in 0..100 {
        let inc = &engine.incidents(1).unwrap()[0];
        if let Some(t) = inc
            .timeline
            .iter()
            .find(|t| t.event == "notification_failed")
        {
            failed = Some(t.detail.to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The timeline (shown on the incident page) names the host, never the
    // path that holds the credential.
    let detail = failed.expect("no notification_failed event");
    assert!(!detail.contains("S3CRET"), "{detail}");
    assert!(
        detail.contains("\"target\":\"http://127.0.0.1:"),
        "{detail}"
    );
    let m = {
        let e = engine.clone();
        exposition::encode(&[std::sync::Arc::new(move |o: &mut exposition::Out<'_>| {
            e.collect_metrics(o)
        })])
    };
    assert!(
        m.contains("burnwatch_notifications_total{receiver=\"webhook\",result=\"failed\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("burnwatch_notification_failed_attempts_total{receiver=\"webhook\"} 2"),
        "{m}"
    );
}

/// The backtest replays the same outage: the 1h/5m page fires at the first
/// evaluation after it starts and resets once its 5-minute window is clean;
/// the incident opens once as a page, de-escalates and resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_replays_when_tiers_fired_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let slo = load_slo(dir.path(), 0.999, 10);
    let store = open_store(dir.path()).await;
    write_traffic(&store, T0 - HOUR, T0 + 8 * HOUR, |t| {
        (T0..T0 + 600 * SEC).contains(&t)
    })
    .await;
    let b = slo_engine::backtest::run(&store, &slo, T0 - 600 * SEC, T0 + 8 * HOUR, 300)
        .await
        .unwrap();
    assert_eq!(b.evaluations, (8 * 3600 + 600) / 300);
    let fast = b
        .tiers
        .iter()
        .find(|t| t.severity == "page" && t.long_secs == 3600)
        .unwrap();
    assert_eq!(fast.fired_at_ns, T0 + 300 * SEC);
    assert_eq!(fast.reset_at_ns, Some(T0 + 900 * SEC));
    // 600 of 3600 requests failed at 99.9%: long-window burn 166.67 at its peak.
    assert!(
        (fast.peak_long_burn - 600.0 / 3600.0 / 0.001).abs() < 1e-6,
        "{fast:?}"
    );
    let events: Vec<(&str, &str)> = b.incidents.iter().map(|e| (e.event, e.state)).collect();
    assert_eq!(events.first(), Some(&("opened", "page")));
    assert_eq!(b.incidents[0].at_ns, T0 + 300 * SEC);
    assert_eq!(
        events.iter().filter(|(e, _)| *e == "opened").count(),
        1,
        "{events:?}"
    );
    assert!(events.contains(&("deescalated", "ticket")), "{events:?}");
    assert_eq!(events.last().map(|e| e.0), Some("resolved"), "{events:?}");
    assert!(
        slo_engine::backtest::run(&store, &slo, T0, T0 + 365 * 86_400 * SEC, 1)
            .await
            .is_err()
    );
}

/// An active silence that matches the incident's labels holds its
/// notifications back (recorded on the timeline and counted); the incident
/// itself opens as usual. Expired, the next change notifies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_hold_back_matching_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let slo = load_slo(dir.path(), 0.999, 10);
    let store = open_store(dir.path()).await;
    let outage_end = T0 + 600 * SEC;
    write_traffic(&store, T0 - HOUR, outage_end + 7 * HOUR, |t| {
        (T0..outage_end).contains(&t)
    })
    .await;
    let (url, got) = receiver().await;
    let config = SloConfig {
        webhook_urls: vec![url],
        group_wait_secs: 0.0,
        group_interval_secs: 0.0,
        ..SloConfig::default()
    };
    let engine =
        SloEngine::open(store.clone(), vec![slo], config, &dir.path().join("state")).unwrap();
    let now = slo_engine::engine::now_ns();
    let silence = slo_engine::silences::NewSilence {
        matchers: vec![
            slo_engine::silences::Matcher::parse("slo=\"checkout-availability\"").unwrap(),
            slo_engine::silences::Matcher::parse("severity=~\"page|ticket\"").unwrap(),
        ],
        starts_at_ns: None,
        ends_at_ns: now + 3_600 * SEC,
        created_by: "alice".into(),
        comment: "load test".into(),
    };
    let id = engine.silences().create(&silence, now).unwrap();
    engine.evaluate_at(outage_end).await;
    assert!(settle(&got, 1).await.is_empty(), "silenced: nothing sent");
    let inc = &engine.incidents(1).unwrap()[0];
    assert_eq!(inc.state, "open");
    let s = inc
        .timeline
        .iter()
        .find(|t| t.event == "silenced")
        .expect("the silenced notification is on the timeline");
    assert_eq!(s.detail["silence"], id);
    let m = {
        let e = engine.clone();
        exposition::encode(&[std::sync::Arc::new(move |o: &mut exposition::Out<'_>| {
            e.collect_metrics(o)
        })])
    };
    assert!(
        m.contains("burnwatch_notifications_silenced_total 1"),
        "{m}"
    );
    // Expired: the de-escalation 40 minutes later is sent.
    assert!(
        engine
            .silences()
            .expire(id, slo_engine::engine::now_ns())
            .unwrap()
    );
    engine.evaluate_at(outage_end + 40 * 60 * SEC).await;
    let payloads = settle(&got, 1).await;
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0]["alerts"][0]["labels"]["severity"], "ticket");
}

/// The Alertmanager binary: `BURNWATCH_ALERTMANAGER`, or Debian's
/// `prometheus-alertmanager` / upstream's `alertmanager` on the PATH.
fn alertmanager_binary() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("BURNWATCH_ALERTMANAGER") {
        return p.into();
    }
    for name in ["prometheus-alertmanager", "alertmanager"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "this test needs a real Alertmanager: install it (Debian: apt-get install prometheus-alertmanager; scripts/test.sh does) or set BURNWATCH_ALERTMANAGER"
    );
}

/// Waits up to `secs` for `n` payloads.
async fn settle_for(
    got: &Arc<Mutex<Vec<serde_json::Value>>>,
    n: usize,
    secs: u64,
) -> Vec<serde_json::Value> {
    for _ in 0..secs * 20 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything more (a duplicate) would arrive right after.
    tokio::time::sleep(Duration::from_millis(300)).await;
    got.lock().unwrap().clone()
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_pushed_to_a_real_alertmanager_which_notifies_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, got) = receiver().await;
    // A real Alertmanager routing everything to our receiver, quickly.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let am_dir = dir.path().join("alertmanager");
    std::fs::create_dir_all(&am_dir).unwrap();
    std::fs::write(
        am_dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, slo]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {hook}\n        send_resolved: true\n"
        ),
    )
    .unwrap();
    let _am = KillOnDrop(
        std::process::Command::new(alertmanager_binary())
            .arg(format!(
                "--config.file={}",
                am_dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", am_dir.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let am = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{am}/-/ready")).send().await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "Alertmanager did not start");

    // Alertmanager judges startsAt/endsAt by its own clock: use the real one.
    let now = slo_engine::engine::now_ns();
    // The SLO carries a runbook, which Alertmanager passes on.
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(
        rules.join("slo.yaml"),
        slo_yaml(0.999, 10).replace(
            "  displayName: Checkout availability\n",
            "  displayName: Checkout availability\n  annotations: {runbook_url: \"https://runbooks.example/checkout\"}\n",
        ),
    )
    .unwrap();
    let slo = load_dir(&rules).unwrap().remove(0);
    let store = open_store(dir.path()).await;
    // An hour of good traffic and a last minute of failures: a fast burn.
    write_traffic(&store, now - HOUR, now - 60 * SEC, |_| false).await;
    write_traffic(&store, now - 60 * SEC, now, |_| true).await;
    let config = SloConfig {
        alertmanager_urls: vec![am.clone()],
        ..SloConfig::default()
    };
    let engine =
        SloEngine::open(store.clone(), vec![slo], config, &dir.path().join("state")).unwrap();
    let s = engine.evaluate_at(now).await;
    assert_eq!(s[0].state, AlertState::Page);

    // Alertmanager has it, and after its group_wait tells its receiver.
    let firing = settle_for(&got, 1, 30).await;
    assert_eq!(firing.len(), 1, "Alertmanager's notification");
    let p = &firing[0];
    assert_eq!(p["status"], "firing");
    assert_eq!(p["alerts"][0]["labels"]["slo"], "checkout-availability");
    assert_eq!(p["alerts"][0]["labels"]["severity"], "page");
    assert!(
        p["alerts"][0]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("Checkout availability"),
        "{p}"
    );
    assert_eq!(
        p["alerts"][0]["annotations"]["runbook_url"], "https://runbooks.example/checkout",
        "{p}"
    );
    let listed: serde_json::Value = http
        .get(format!("{am}/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["status"]["state"], "active");

    // Burnwatch's own webhook payload has exactly Alertmanager's fields.
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let ours = serde_json::to_value(slo_engine::notify::WebhookPayload {
        version: "4".into(),
        group_key: String::new(),
        truncated_alerts: 0,
        status: String::new(),
        receiver: String::new(),
        group_labels: Default::default(),
        common_labels: Default::default(),
        common_annotations: Default::default(),
        external_url: String::new(),
        alerts: vec![slo_engine::notify::WebhookAlert {
            status: String::new(),
            labels: Default::default(),
            annotations: Default::default(),
            starts_at: String::new(),
            ends_at: String::new(),
            generator_url: String::new(),
            fingerprint: String::new(),
        }],
    })
    .unwrap();
    assert_eq!(keys(&ours), keys(p));
    assert_eq!(keys(&ours["alerts"][0]), keys(&p["alerts"][0]));

    // Recovery: enough good requests that no tier burns: resolved, pushed
    // with its end time, and Alertmanager sends the resolved notification.
    let later = slo_engine::engine::now_ns();
    let times: Vec<(i64, bool)> = (0..100_000)
        .map(|i| (later - 240 * SEC + i * 1_800_000, false))
        .collect();
    for chunk in times.chunks(50_000) {
        store.write(Table::Spans, spans(chunk)).await.unwrap();
    }
    let s = engine.evaluate_at(later).await;
    assert_eq!(s[0].state, AlertState::Ok);
    let all = settle_for(&got, 2, 30).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[1]["status"], "resolved");
    assert_eq!(all[1]["alerts"][0]["status"], "resolved");
}
