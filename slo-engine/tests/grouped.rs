//! Grouped SLOs (`groupBy`) with exact figures: every instance's status,
//! counted in one grouped pass, equals the status of that instance
//! evaluated on its own (a recomputation with its own filter), for
//! Occurrences and Timeslices, with data in files and in memory and window
//! ends inside minutes; the instances' events add up to the SLO's; the cap
//! keeps the instances with the most events and reports the rest; each
//! instance has its own incident; corrections can select one instance by
//! its attribute.

use std::path::Path;

use slo_engine::corrections::{Correction, Scope};
use slo_engine::engine::{SloConfig, SloEngine};
use slo_engine::evaluate::{AlertState, SloStatus, evaluate, evaluate_corrected, evaluate_group};
use slo_engine::openslo::{Slo, find_slo, instance_name, load_str, parse_instance_name};
use slo_engine::sli::SliCounter;
use store::{Store, Table};

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const T0: i64 = 1_709_632_800_000_000_000; // 2024-03-05T10:00:00Z

fn grouped(budgeting: &str) -> Slo {
    let text = format!(
        r#"
apiVersion: openslo/v1
kind: SLO
metadata: {{name: gateway-routes, labels: {{team: shop}}}}
spec:
  service: gateway
  groupBy: [http.route]
  indicator:
    metadata: {{name: gateway-errors}}
    spec:
      ratioMetric:
        bad:
          metricSource: {{type: burnwatch, spec: {{service: gateway, errors: true}}}}
        total:
          metricSource: {{type: burnwatch, spec: {{service: gateway}}}}
  timeWindow: [{{duration: 1d, isRolling: true}}]
  {budgeting}
  minEvents: 5
"#
    );
    load_str(Path::new("slo.yaml"), &text).unwrap().remove(0)
}

/// Requests of `route` every `every` ns in [from, to), bad when `bad(t)`.
async fn traffic(
    store: &Store,
    route: &str,
    from: i64,
    to: i64,
    every: i64,
    bad: impl Fn(i64) -> bool,
) {
    let times: Vec<(i64, bool)> = (0..)
        .map(|i| from + i * every)
        .take_while(|t| *t < to)
        .map(|t| (t, bad(t)))
        .collect();
    for chunk in times.chunks(20_000) {
        store
            .write(
                Table::Spans,
                store::synth::http_requests("gateway", "GET", route, chunk),
            )
            .await
            .unwrap();
    }
}

/// Four routes over the day before T0, in files, and the last minutes in
/// memory: /cart fails in its last 20 minutes, /search in its first 10,
/// /home never, /admin is small and fails half the time.
async fn shop(store: &Store) {
    let from = T0 - 24 * HOUR;
    traffic(store, "/cart", from, T0 - 5 * MIN, 20 * SEC, |t| {
        t >= T0 - 20 * MIN
    })
    .await;
    traffic(store, "/search", from, T0 - 5 * MIN, 30 * SEC, |t| {
        t < from + 10 * MIN
    })
    .await;
    traffic(store, "/home", from, T0 - 5 * MIN, 45 * SEC, |_| false).await;
    traffic(store, "/admin", T0 - 3 * HOUR, T0 - 5 * MIN, 7 * MIN, |t| {
        (t / (7 * MIN)) % 2 == 0
    })
    .await;
    store.flush().await.unwrap();
    // The last five minutes stay in memory.
    traffic(store, "/cart", T0 - 5 * MIN, T0, 20 * SEC, |_| true).await;
    traffic(store, "/search", T0 - 5 * MIN, T0, 30 * SEC, |_| false).await;
}

fn counts(s: &SloStatus) -> Vec<(u64, u64, u64)> {
    s.windows
        .iter()
        .map(|w| (w.window_secs, w.total, w.bad))
        .collect()
}

/// Each instance of the grouped pass equals its own evaluation.
async fn check_instances(counter: &SliCounter, slo: &Slo, at: i64, fixes: &[Correction]) -> usize {
    let g = evaluate_group(counter, slo, at, fixes, 500).await.unwrap();
    assert_eq!(g.over_cap, 0);
    assert!(!g.saturated);
    for inst in &g.instances {
        let def = slo.instance_for(inst);
        assert_eq!(def.name, inst.name);
        let alone = evaluate_corrected(counter, &def, at, fixes).await.unwrap();
        assert_eq!(counts(inst), counts(&alone), "{}", inst.name);
        assert_eq!(inst.state, alone.state, "{}", inst.name);
        assert_eq!(inst.budget_remaining, alone.budget_remaining);
        assert_eq!(inst.data_from_ns, alone.data_from_ns, "{}", inst.name);
        assert_eq!(inst, &alone, "{}", inst.name);
    }
    g.instances.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_matches_its_own_recomputation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    shop(&store).await;
    let counter = SliCounter::new(store.clone(), 8 << 20);
    let slo = grouped("budgetingMethod: Occurrences\n  objectives: [{target: 0.99}]");
    assert_eq!(slo.group_by, vec!["http.route".to_string()]);

    // At a minute start and inside a minute (windows end mid-minute: edge
    // rows are read raw).
    for at in [T0, T0 - 7 * MIN - 13 * SEC] {
        assert_eq!(check_instances(&counter, &slo, at, &[]).await, 4);
    }
    let g = evaluate_group(&counter, &slo, T0, &[], 500).await.unwrap();
    // The instances' events add up to the SLO's as a whole, window by window.
    let whole = evaluate(&counter, &slo, T0).await.unwrap();
    for (i, w) in whole.windows.iter().enumerate() {
        let total: u64 = g.instances.iter().map(|s| s.windows[i].total).sum();
        let bad: u64 = g.instances.iter().map(|s| s.windows[i].bad).sum();
        assert_eq!((total, bad), (w.total, w.bad), "window {} s", w.window_secs);
    }
    // Hand counts for /cart over the day: 3 a minute for 24 h less the
    // last 5 min from files, then 15 in memory; the last 20 min all fail.
    let cart = g
        .instances
        .iter()
        .find(|s| s.name == r#"gateway-routes{http.route="/cart"}"#)
        .unwrap();
    assert_eq!((cart.total, cart.bad), (24 * 60 * 3, 60));
    assert_eq!(cart.group["http.route"], "/cart");
    assert_eq!(cart.instance_of.as_deref(), Some("gateway-routes"));
    // Worst first: /admin (half its requests fail: the least budget
    // left) and /cart page (its last 20 minutes all fail); /search failed
    // only a day ago.
    let order: Vec<(&str, AlertState)> = g
        .instances
        .iter()
        .map(|s| (s.group["http.route"].as_str(), s.state))
        .collect();
    assert_eq!(
        order,
        [
            ("/admin", AlertState::Page),
            ("/cart", AlertState::Page),
            ("/search", AlertState::Ok),
            ("/home", AlertState::Ok)
        ]
    );
    let home = g
        .instances
        .iter()
        .find(|s| s.name.contains("/home"))
        .unwrap();
    assert_eq!((home.bad, home.state), (0, AlertState::Ok));

    // Timeslices: per-minute slices per instance.
    let slices = grouped(
        "budgetingMethod: Timeslices\n  objectives: [{target: 0.95, timeSliceTarget: 0.9, timeSliceWindow: 5m}]",
    );
    assert_eq!(
        check_instances(&counter, &slices, T0 - 2 * MIN, &[]).await,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_keeps_the_busiest_instances_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    shop(&store).await;
    let counter = SliCounter::new(store.clone(), 8 << 20);
    let slo = grouped("budgetingMethod: Occurrences\n  objectives: [{target: 0.99}]");
    let g = evaluate_group(&counter, &slo, T0, &[], 2).await.unwrap();
    assert_eq!(g.cap, 2);
    assert_eq!(g.over_cap, 2);
    let mut kept: Vec<&str> = g.instances.iter().map(|s| s.name.as_str()).collect();
    kept.sort();
    // /cart (3 a minute) and /search (2 a minute) have the most events.
    assert_eq!(
        kept,
        vec![
            r#"gateway-routes{http.route="/cart"}"#,
            r#"gateway-routes{http.route="/search"}"#
        ]
    );
    // Past 4x the cap, values are not even held: a cap of 1 holds 4, so
    // with 4 routes nothing is saturated yet.
    let one = evaluate_group(&counter, &slo, T0, &[], 1).await.unwrap();
    assert_eq!(
        (one.instances.len(), one.over_cap, one.saturated),
        (1, 3, false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_instance_has_its_own_incident_and_corrections_select_instances() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    shop(&store).await;
    let slo = grouped("budgetingMethod: Occurrences\n  objectives: [{target: 0.99}]");
    let engine = SloEngine::open(
        store.clone(),
        vec![slo.clone()],
        SloConfig::default(),
        &dir.path().join("state"),
    )
    .unwrap();
    let statuses = engine.evaluate_at(T0).await;
    assert_eq!(statuses.len(), 4, "one status per instance");
    let incidents = engine.incidents(10).unwrap();
    let mut slos: Vec<&str> = incidents.iter().map(|i| i.slo.as_str()).collect();
    slos.sort();
    // /cart pages; /admin fails half its few requests: it burns too.
    assert_eq!(
        slos,
        vec![
            r#"gateway-routes{http.route="/admin"}"#,
            r#"gateway-routes{http.route="/cart"}"#
        ]
    );
    let groups = engine.last_groups();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].instances.len(), 4);
    // The metrics report the instances per grouped SLO.
    let text = {
        let e = engine.clone();
        exposition::encode(&[std::sync::Arc::new(move |o: &mut exposition::Out<'_>| {
            e.collect_metrics(o)
        })])
    };
    assert!(
        text.contains(r#"burnwatch_slo_instances{slo="gateway-routes"} 4"#),
        "{text}"
    );
    assert!(text.contains(r#"burnwatch_slo_instances_over_cap{slo="gateway-routes"} 0"#));

    // An instance is found by name, kept or not; its name round-trips.
    let cart = engine
        .find_slo(r#"gateway-routes{http.route="/cart"}"#)
        .unwrap();
    assert_eq!(cart.labels["http.route"], "/cart");
    assert_eq!(cart.labels["team"], "shop");
    assert!(find_slo(engine.slos(), r#"gateway-routes{http.route="/nope"}"#).is_some());
    assert!(find_slo(engine.slos(), r#"gateway-routes{other="/cart"}"#).is_none());
    let odd = instance_name(
        "s",
        &["a.b".into(), "c".into()],
        &["x\"y\\z\n".into(), "".into()],
    );
    assert_eq!(
        parse_instance_name(&odd).unwrap(),
        (
            "s".to_string(),
            vec![
                ("a.b".to_string(), "x\"y\\z\n".to_string()),
                ("c".to_string(), String::new())
            ]
        )
    );

    // A correction scoped by the attribute: only /cart's figures change,
    // by exactly its events in the corrected range (the last 20 minutes
    // before T0 - 5 min: 45 requests, all bad).
    let counter = SliCounter::new(store.clone(), 8 << 20);
    let fix = [Correction {
        id: 1,
        kind: "correction".into(),
        scope: Scope {
            slo: Some("gateway-routes".into()),
            labels: [("http.route".to_string(), "/cart".to_string())].into(),
            ..Default::default()
        },
        from_ns: T0 - 20 * MIN,
        to_ns: T0 - 5 * MIN,
        reason: "bad deploy".into(),
        created_by: "tester".into(),
        created_ns: 0,
        source: "test".into(),
    }];
    let before = evaluate_group(&counter, &slo, T0, &[], 500).await.unwrap();
    let after = evaluate_group(&counter, &slo, T0, &fix, 500).await.unwrap();
    for b in &before.instances {
        let a = after.instances.iter().find(|a| a.name == b.name).unwrap();
        if b.name.contains("/cart") {
            assert_eq!((b.total - a.total, b.bad - a.bad), (45, 45));
            assert_eq!(a.corrections.len(), 1);
        } else {
            assert_eq!(counts(a), counts(b), "{}", b.name);
            assert!(a.corrections.is_empty());
        }
    }
    assert_eq!(check_instances(&counter, &slo, T0, &fix).await, 4);
}

#[test]
fn group_by_is_checked() {
    let base = |group: &str, source: &str| {
        format!(
            r#"
apiVersion: openslo/v1
kind: SLO
metadata: {{name: s}}
spec:
  service: gateway
  {group}
  indicator:
    metadata: {{name: i}}
    spec:
      ratioMetric:
        bad: {{metricSource: {{type: burnwatch, spec: {source}}}}}
        total: {{metricSource: {{type: burnwatch, spec: {source}}}}}
  timeWindow: [{{duration: 1d, isRolling: true}}]
  objectives: [{{target: 0.99}}]
"#
        )
    };
    let spans = "{service: gateway}";
    let err = |group: &str, source: &str| {
        load_str(Path::new("slo.yaml"), &base(group, source))
            .unwrap_err()
            .to_string()
    };
    assert!(err("groupBy: []", spans).contains("spec.groupBy"));
    assert!(err("groupBy: ['a b']", spans).contains("not an attribute name"));
    assert!(err("groupBy: [a, a]", spans).contains("listed twice"));
    let metrics = "{table: metrics, metric: m}";
    assert!(err("groupBy: [a]", metrics).contains("grouped SLOs count spans or log records"));
    let one = load_str(Path::new("slo.yaml"), &base("groupBy: tier", spans)).unwrap();
    assert_eq!(one[0].group_by, vec!["tier".to_string()]);
}
