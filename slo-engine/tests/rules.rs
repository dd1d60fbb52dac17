//! Alert rule groups end to end: SQL expressions over stored spans under a
//! controlled clock, pending -> firing -> resolved with `for` and
//! `keep_firing_for`, one webhook notification per change to a real local
//! HTTP receiver, state that survives a restart, and the rule unit-test
//! runner (the shipped shop tests pass; a wrong expectation fails).

use testkit::webhook::{receiver, settle};

use slo_engine::engine::{SloConfig, SloEngine};
use slo_engine::rules::{Change, InstanceState, parse};
use store::{Store, Table};

const T0: i64 = 1_709_632_800_000_000_000;
const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;

const RULES: &str = r#"
groups:
  - name: api
    interval: 30s
    rules:
      - alert: ErrorsHigh
        expr: |
          SELECT service_name AS service, count(*) AS value FROM spans
          WHERE status_code = 'ERROR' AND start_time >= now() - INTERVAL '1 minute' AND start_time < now()
          GROUP BY 1 HAVING count(*) >= 5
        for: 1m
        keep_firing_for: 1m
        labels: { severity: page, team: "{{ $labels.service }}-team" }
        annotations: { summary: "{{ $labels.service }}: {{ $value }} errors in a minute" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_fires_after_for_keeps_firing_resolves_and_notifies_once_per_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    // One request a second for 10 minutes on "api"; minutes 2 to 4 fail.
    let requests: Vec<(i64, bool)> = (0..600)
        .map(|i| (T0 + i * SEC, (120..300).contains(&i)))
        .collect();
    store
        .write(
            Table::Spans,
            store::synth::http_requests("api", "GET", "/x", &requests),
        )
        .await
        .unwrap();
    let groups = parse(std::path::Path::new("rules.yaml"), RULES).unwrap();
    let (url, got) = receiver().await;
    let config = SloConfig {
        webhook_urls: vec![url],
        group_wait_secs: 0.0,
        group_interval_secs: 0.0,
        ..SloConfig::default()
    };
    let state = dir.path().join("state");
    let engine = SloEngine::open_with_rules(
        store.clone(),
        vec![],
        groups.clone(),
        config.clone(),
        &state,
    )
    .unwrap();
    let mut fired_at = None;
    let mut resolved_at = None;
    let mut at = T0;
    while at <= T0 + 4 * MIN {
        for c in engine.evaluate_rules_at(0, at).await {
            match c {
                Change::Firing(i) => {
                    assert_eq!(fired_at.replace(at), None);
                    assert_eq!(i.labels["team"], "api-team");
                    assert_eq!(i.annotations["summary"], "api: 60 errors in a minute");
                }
                Change::Resolved(_) => panic!("resolved too early"),
            }
        }
        at += 30 * SEC;
    }
    // Errors from 120 s: the 1-minute window holds >= 5 errors from 125 s,
    // so the 2.5 min evaluation makes it pending and `for: 1m` fires it at 3.5 min.
    assert_eq!(fired_at, Some(T0 + 210 * SEC));
    let alerts = engine.rules().instances();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].state, InstanceState::Firing);
    assert_eq!(alerts[0].active_at_ns, T0 + 150 * SEC);

    // A restart: the firing instance is read back and not notified again.
    drop(engine);
    let engine = SloEngine::open_with_rules(store.clone(), vec![], groups, config, &state).unwrap();
    assert_eq!(engine.rules().instances()[0].state, InstanceState::Firing);
    while at <= T0 + 8 * MIN {
        for c in engine.evaluate_rules_at(0, at).await {
            match c {
                Change::Firing(_) => panic!("fired twice"),
                Change::Resolved(i) => {
                    assert_eq!(resolved_at.replace(at), None);
                    assert_eq!(i.resolved_at_ns, Some(at));
                }
            }
        }
        at += 30 * SEC;
    }
    // Errors end at 300 s: the 5.5 min window [270 s, 330 s) still holds 30;
    // absent from 6 min; kept firing for 1 minute: resolved at 7 min.
    assert_eq!(resolved_at, Some(T0 + 420 * SEC));
    let health = engine.rules().health();
    assert_eq!(
        (
            health[0].health.as_str(),
            health[0].firing,
            health[0].pending
        ),
        ("ok", 0, 0)
    );

    let payloads = settle(&got, 2).await;
    assert_eq!(payloads.len(), 2, "{payloads:?}");
    let statuses: Vec<&str> = payloads
        .iter()
        .map(|p| p["alerts"][0]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["firing", "resolved"]);
    let a = &payloads[0]["alerts"][0];
    assert_eq!(payloads[0]["version"], "4");
    assert_eq!(payloads[0]["groupLabels"]["alertname"], "ErrorsHigh");
    assert_eq!(a["labels"]["alertname"], "ErrorsHigh");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["labels"]["service"], "api");
    assert_eq!(a["startsAt"], "2024-03-05T10:02:30.000Z");
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        payloads[1]["alerts"][0]["endsAt"],
        "2024-03-05T10:07:00.000Z"
    );
    assert_eq!(a["fingerprint"], payloads[1]["alerts"][0]["fingerprint"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_expression_is_reported_and_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    let text = "groups:\n  - name: g\n    rules:\n      - alert: NoValue\n        expr: SELECT 1 AS v\n      - alert: NoSuchColumn\n        expr: SELECT nope AS value FROM spans\n";
    let groups = parse(std::path::Path::new("r.yaml"), text).unwrap();
    let engine = SloEngine::open_with_rules(
        store,
        vec![],
        groups,
        SloConfig::default(),
        &dir.path().join("state"),
    )
    .unwrap();
    assert!(engine.evaluate_rules_at(0, T0).await.is_empty());
    let h = engine.rules().health();
    assert_eq!(h[0].health, "error");
    assert!(
        h[0].last_error
            .as_deref()
            .unwrap()
            .contains("column named value"),
        "{h:?}"
    );
    assert_eq!(h[1].health, "error");
    assert!(
        h[1].last_error.as_deref().unwrap().contains("nope"),
        "{h:?}"
    );
    let metrics = {
        let e = engine.clone();
        exposition::encode(&[std::sync::Arc::new(move |o: &mut exposition::Out<'_>| {
            e.collect_metrics(o)
        })])
    };
    assert!(
        metrics.contains("burnwatch_alert_rule_evaluation_failures_total 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_rule_tests_pass_and_a_wrong_expectation_fails() {
    let shipped = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../alert-rules/tests/shop-rules.test.yaml");
    let report = slo_engine::rules::unit_tests::run_file(&shipped)
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.failed);
    assert_eq!(report.passed.len(), 2);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("r.yaml"), RULES).unwrap();
    let test = r#"
rule_files: [r.yaml]
evaluation_interval: 30s
tests:
  - name: wrong
    interval: 1s
    input_spans:
      - { service: api, requests: "1x599", errors: "0x119 1x179 0x300" }
    alert_rule_test:
      - eval_time: 4m
        alertname: ErrorsHigh
        exp_alerts:
          - exp_labels: { service: api, severity: page, team: api-team }
            exp_annotations: { summary: "api: 61 errors in a minute" }
      - eval_time: 1m
        alertname: NoSuchRule
"#;
    std::fs::write(dir.path().join("t.yaml"), test).unwrap();
    let report = slo_engine::rules::unit_tests::run_file(&dir.path().join("t.yaml"))
        .await
        .unwrap();
    assert!(!report.ok());
    let problems = &report.failed[0].1;
    assert!(
        problems.iter().any(|p| p.contains("NoSuchRule")),
        "{problems:?}"
    );
    let diff = problems.iter().find(|p| p.contains("at 4m")).unwrap();
    assert!(
        diff.contains("61 errors") && diff.contains("60 errors"),
        "{diff}"
    );
}
