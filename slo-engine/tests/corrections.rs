//! Corrections and maintenance windows with exact figures: a correction
//! inside a burn scenario changes each window's events and burn by exactly
//! the events it excludes; a maintenance window holds the page while it
//! runs and releases it after; the audit trail records every change; YAML
//! budget adjustments load beside the SLOs.

use std::path::Path;

use slo_engine::burn::burn_rate;
use slo_engine::corrections::{Correction, NewCorrection, Scope};
use slo_engine::engine::SloEngine;
use slo_engine::evaluate::{AlertState, evaluate, evaluate_corrected};
use slo_engine::openslo::{Slo, load_str};
use slo_engine::sli::SliCounter;
use store::{Store, Table};

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const T0: i64 = 1_709_632_800_000_000_000; // 2024-03-05T10:00:00Z

const SLO: &str = r#"
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
  displayName: Checkout availability
  labels: {team: shop}
spec:
  service: shop
  indicator:
    metadata: {name: checkout-errors}
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource: {type: burnwatch, spec: {service: gateway, operation: "POST /api/checkout", errors: true}}
        total:
          metricSource: {type: burnwatch, spec: {service: gateway, operation: "POST /api/checkout"}}
  timeWindow: [{duration: 30d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.999}]
"#;

fn slo() -> Slo {
    load_str(Path::new("slo.yaml"), SLO).unwrap().remove(0)
}

/// One request a minute in [from, to), bad when `bad(t)`.
async fn traffic(store: &Store, from: i64, to: i64, bad: impl Fn(i64) -> bool) {
    let times: Vec<(i64, bool)> = (0..)
        .map(|i| from + i * MIN)
        .take_while(|t| *t < to)
        .map(|t| (t, bad(t)))
        .collect();
    for chunk in times.chunks(20_000) {
        store
            .write(
                Table::Spans,
                store::synth::http_requests("gateway", "POST", "/api/checkout", chunk),
            )
            .await
            .unwrap();
    }
}

fn correction(id: i64, kind: &str, scope: Scope, from_ns: i64, to_ns: i64) -> Correction {
    Correction {
        id,
        kind: kind.into(),
        scope,
        from_ns,
        to_ns,
        reason: "test".into(),
        created_by: "tester".into(),
        created_ns: 0,
        source: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_removes_exactly_its_events_from_every_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    // 30 days of one checkout a minute; the last 30 minutes all fail.
    traffic(&store, T0 - 30 * 24 * HOUR, T0, |t| t >= T0 - 30 * MIN).await;
    let slo = slo();
    let counter = SliCounter::new(store.clone(), 1 << 20);
    let plain = evaluate(&counter, &slo, T0).await.unwrap();
    assert_eq!((plain.total, plain.bad), (43_200, 30));

    // Exclude [T0 - 20 min, T0 - 10 min): ten checkouts, all bad.
    let fix = [correction(
        1,
        "correction",
        Scope {
            slo: Some("checkout-availability".into()),
            ..Default::default()
        },
        T0 - 20 * MIN,
        T0 - 10 * MIN,
    )];
    let fixed = evaluate_corrected(&counter, &slo, T0, &fix).await.unwrap();
    assert_eq!(plain.windows.len(), fixed.windows.len());
    for (a, b) in plain.windows.iter().zip(&fixed.windows) {
        assert_eq!(a.window_secs, b.window_secs);
        // Windows that reach back past T0 - 20 min lose exactly the ten.
        let excluded = if a.window_secs as i64 * SEC >= 20 * MIN {
            10
        } else if a.window_secs as i64 * SEC > 10 * MIN {
            (a.window_secs as i64 * SEC - 10 * MIN).div_euclid(MIN) as u64
        } else {
            0
        };
        assert_eq!(
            (a.total - b.total, a.bad - b.bad),
            (excluded, excluded),
            "window {} s",
            a.window_secs
        );
        assert_eq!(b.burn_rate, burn_rate(b.bad, b.total, 0.999));
    }
    assert_eq!((fixed.total, fixed.bad), (43_190, 20));
    assert_eq!(fixed.corrections.len(), 1);
    assert_eq!(fixed.held_by, None, "a correction does not hold alerts");

    // Out of scope (another service, another label): nothing changes.
    for scope in [
        Scope {
            service: Some("other".into()),
            ..Default::default()
        },
        Scope {
            labels: [("team".to_string(), "search".to_string())].into(),
            ..Default::default()
        },
    ] {
        let other = [correction(
            2,
            "correction",
            scope,
            T0 - 20 * MIN,
            T0 - 10 * MIN,
        )];
        let s = evaluate_corrected(&counter, &slo, T0, &other)
            .await
            .unwrap();
        assert_eq!((s.total, s.bad), (43_200, 30));
        assert!(s.corrections.is_empty());
    }
    // Matching by label: the same as by name.
    let by_label = [correction(
        3,
        "correction",
        Scope {
            labels: [("team".to_string(), "shop".to_string())].into(),
            ..Default::default()
        },
        T0 - 20 * MIN,
        T0 - 10 * MIN,
    )];
    let s = evaluate_corrected(&counter, &slo, T0, &by_label)
        .await
        .unwrap();
    assert_eq!((s.total, s.bad), (43_190, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_window_holds_the_page_and_releases_it_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    // Good checkouts for a day; from M0 - 10 min on every one fails. The
    // maintenance window is [M0, M0 + 30 min).
    let m0 = T0 - 2 * HOUR;
    let m1 = m0 + 30 * MIN;
    traffic(&store, T0 - 24 * HOUR, T0, |t| t >= m0 - 10 * MIN).await;
    let engine = SloEngine::open(
        store.clone(),
        vec![slo()],
        Default::default(),
        &dir.path().join("state"),
    )
    .unwrap();
    let c = engine
        .corrections()
        .create(
            &NewCorrection {
                kind: Some("maintenance".into()),
                scope: Scope::default(),
                from_ns: m0,
                to_ns: m1,
                reason: "database upgrade".into(),
                created_by: "ops".into(),
            },
            m0 - HOUR,
        )
        .unwrap();

    // Two minutes in: the short window still holds three failing minutes
    // from before the window, so the fast tier fires, but it is held.
    let s = engine.evaluate_at(m0 + 2 * MIN).await.remove(0);
    assert_eq!(s.state, AlertState::Page);
    assert!(s.tiers[0].firing);
    assert!(
        s.held_by.as_deref().unwrap().contains("database upgrade"),
        "{:?}",
        s.held_by
    );
    assert!(
        engine.incidents(10).unwrap().is_empty(),
        "held: no incident"
    );
    // Its events are not counted: the hour holds 10 failures before it
    // and 2 minutes inside it are left out.
    let hour = s.windows.iter().find(|w| w.window_secs == 3600).unwrap();
    assert_eq!((hour.total, hour.bad), (60 - 2, 10));

    // Six minutes after it ends, still failing: released, the page opens.
    let s = engine.evaluate_at(m1 + 6 * MIN).await.remove(0);
    assert_eq!(s.held_by, None);
    assert_eq!(s.state, AlertState::Page);
    let incidents = engine.incidents(10).unwrap();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].opened_ns, m1 + 6 * MIN);

    // The audit trail: created, edited, deleted, by whom.
    let edited = engine
        .corrections()
        .edit(
            c.id,
            &NewCorrection {
                kind: Some("maintenance".into()),
                scope: Scope::default(),
                from_ns: m0,
                to_ns: m1 + 10 * MIN,
                reason: "database upgrade, overran".into(),
                created_by: "alice".into(),
            },
            m1,
        )
        .unwrap()
        .unwrap();
    assert_eq!(edited.to_ns, m1 + 10 * MIN);
    assert!(engine.corrections().delete(c.id, "bob", m1 + HOUR).unwrap());
    assert!(!engine.corrections().delete(c.id, "bob", m1 + HOUR).unwrap());
    let audit = engine.corrections().audit(c.id).unwrap();
    let trail: Vec<(&str, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.by.as_str()))
        .collect();
    assert_eq!(
        trail,
        vec![("created", "ops"), ("edited", "alice"), ("deleted", "bob")]
    );
    assert_eq!(audit[1].detail["reason"], "database upgrade, overran");
    assert!(engine.corrections().list().unwrap().is_empty());
    // Bad input is refused with the reason.
    let e = engine
        .corrections()
        .create(
            &NewCorrection {
                kind: Some("holiday".into()),
                scope: Scope::default(),
                from_ns: m0,
                to_ns: m1,
                reason: "x".into(),
                created_by: "y".into(),
            },
            m1,
        )
        .unwrap_err();
    assert!(e.contains("use correction or maintenance"), "{e}");
    // Oversized text is refused, not stored.
    let e = engine
        .corrections()
        .create(
            &NewCorrection {
                kind: None,
                scope: Scope::default(),
                from_ns: m0,
                to_ns: m1,
                reason: "x".repeat(5000),
                created_by: "y".into(),
            },
            m1,
        )
        .unwrap_err();
    assert!(e.contains("at most 1024 bytes"), "{e}");
    assert!(engine.corrections().list().unwrap().is_empty());
}

#[test]
fn budget_adjustments_load_from_yaml_beside_the_slos() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("slos.yaml"), SLO).unwrap();
    std::fs::write(
        dir.path().join("maintenance.yaml"),
        r#"
apiVersion: openslo/v2alpha
kind: BudgetAdjustment
metadata: {name: db-upgrade}
spec:
  description: Database upgrade
  firstEventStart: "2024-03-05T02:00:00Z"
  duration: 2h
  sloMatcher: {sloRef: checkout-availability}
  type: maintenance
  createdBy: ops
---
apiVersion: openslo/v2alpha
kind: BudgetAdjustment
metadata: {name: bad-deploy}
spec:
  firstEventStart: "2024-03-04T10:00:00Z"
  duration: 15m
  sloMatcher: {labels: {team: shop}}
"#,
    )
    .unwrap();
    // The SLO loader skips them; the corrections loader reads them.
    assert_eq!(slo_engine::openslo::load_dir(dir.path()).unwrap().len(), 1);
    let list = slo_engine::corrections::load_dir(dir.path()).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].kind, "maintenance");
    assert_eq!(list[0].from_ns, T0 - 8 * HOUR);
    assert_eq!(list[0].to_ns, T0 - 6 * HOUR);
    assert_eq!(list[0].reason, "Database upgrade");
    assert_eq!(list[0].scope.slo.as_deref(), Some("checkout-availability"));
    assert!(list[0].id < 0 && list[1].id < 0 && list[0].id != list[1].id);
    assert_eq!(list[1].kind, "correction");
    assert_eq!(list[1].reason, "bad-deploy");
    assert!(list[1].scope.matches(&slo()));
    // Recurring ones are refused with the field named.
    std::fs::write(
        dir.path().join("weekly.yaml"),
        "apiVersion: openslo/v2alpha\nkind: BudgetAdjustment\nmetadata: {name: weekly}\nspec: {firstEventStart: \"2024-03-04T10:00:00Z\", duration: 1h, rrule: \"FREQ=WEEKLY\"}\n",
    )
    .unwrap();
    let e = slo_engine::corrections::load_dir(dir.path()).unwrap_err();
    assert!(
        e.contains("spec.rrule") && e.contains("BudgetAdjustment/weekly"),
        "{e}"
    );
}

/// Many windows with edges inside minutes (e.g. a burn history at odd
/// times): one count over all of them equals each counted alone, and the
/// flat edge predicate past 32 edge minutes plans without deep nesting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_unaligned_windows_count_like_one_each() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    // Every 20 s for 3 h, one in seven bad.
    let times: Vec<(i64, bool)> = (0..540)
        .map(|i| (T0 - 3 * HOUR + i * 20 * SEC, i % 7 == 0))
        .collect();
    store
        .write(
            Table::Spans,
            store::synth::http_requests("gateway", "POST", "/api/checkout", &times),
        )
        .await
        .unwrap();
    let slo = slo();
    let counter = SliCounter::new(store.clone(), 1 << 20);
    let windows: Vec<(i64, i64)> = (1..=120)
        .map(|k| (T0 - 2 * HOUR + k * 37 * SEC, T0 - HOUR + k * 41 * SEC))
        .collect();
    let together = counter.windows(&slo.sli.source, &windows).await.unwrap();
    for (w, got) in windows.iter().zip(&together) {
        let by_hand = times
            .iter()
            .filter(|(t, _)| *t >= w.0 && *t < w.1)
            .fold((0u64, 0u64), |(n, b), (_, bad)| {
                (n + 1, b + u64::from(*bad))
            });
        assert_eq!(*got, by_hand, "window {w:?}");
    }
}
