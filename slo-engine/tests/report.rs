//! The monthly report against a hand computation: a calendar SLO in
//! Europe/Berlin, one checkout every 10 minutes around November 2026, two
//! failure bursts with an incident each, and failures just outside the
//! Berlin month (in UTC's November) that must not count.

use std::path::Path;

use slo_engine::incidents::Incident;
use slo_engine::openslo::load_str;
use slo_engine::report::{month_range, month_report, previous_month, to_csv, to_markdown};
use slo_engine::sli::SliCounter;
use store::{Store, Table};

const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;

fn utc(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

const SLO: &str = r#"
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout-availability, displayName: Checkout availability}
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
  timeWindow:
    - duration: 1M
      isRolling: false
      calendar: {startTime: "2026-01-01 00:00:00", timeZone: Europe/Berlin}
  budgetingMethod: Occurrences
  objectives: [{target: 0.99}]
"#;

fn incident(id: i64, slo: &str, opened: &str, resolved: &str) -> Incident {
    Incident {
        id,
        slo: slo.into(),
        severity: "page".into(),
        state: "resolved".into(),
        opened_ns: utc(opened),
        updated_ns: utc(resolved),
        resolved_ns: Some(utc(resolved)),
        acknowledged_by: None,
        summary: String::new(),
        timeline: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_month_with_two_incidents_equals_the_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(testkit::store_config(&dir.path().join("data")))
        .await
        .unwrap();
    let slo = load_str(Path::new("slo.yaml"), SLO).unwrap().remove(0);

    // November 2026 in Berlin (CET, UTC+1): 31 Oct 23:00 to 30 Nov 23:00 UTC.
    let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
    let (from, to) = month_range("2026-11", tz).unwrap();
    assert_eq!(
        (from, to),
        (utc("2026-10-31T23:00:00Z"), utc("2026-11-30T23:00:00Z"))
    );
    assert_eq!(
        previous_month(utc("2026-12-01T00:30:00+01:00"), tz),
        "2026-11"
    );
    assert_eq!(previous_month(utc("2026-01-10T00:00:00Z"), tz), "2025-12");

    let bursts = [
        (utc("2026-11-05T10:00:00Z"), utc("2026-11-05T11:00:00Z")),
        (utc("2026-11-20T14:00:00Z"), utc("2026-11-20T14:30:00Z")),
        // Outside Berlin's November, inside UTC's: not counted.
        (utc("2026-10-31T22:30:00Z"), utc("2026-10-31T22:40:00Z")),
        (utc("2026-11-30T23:30:00Z"), utc("2026-11-30T23:40:00Z")),
    ];
    let start = utc("2026-10-31T20:00:00Z");
    let end = utc("2026-12-01T02:00:00Z");
    let requests: Vec<(i64, bool)> = (0..)
        .map(|i| start + i * 10 * MIN)
        .take_while(|t| *t < end)
        .map(|t| (t, bursts.iter().any(|(a, b)| t >= *a && t < *b)))
        .collect();
    for chunk in requests.chunks(2000) {
        store
            .write(
                Table::Spans,
                store::synth::http_requests("gateway", "POST", "/api/checkout", chunk),
            )
            .await
            .unwrap();
    }
    store.flush().await.unwrap();

    let incidents = vec![
        incident(
            1,
            "checkout-availability",
            "2026-11-05T10:05:00Z",
            "2026-11-05T11:20:00Z",
        ),
        incident(
            2,
            "checkout-availability",
            "2026-11-20T14:05:00Z",
            "2026-11-20T15:00:00Z",
        ),
        // Another SLO's, and October's: left out.
        incident(
            3,
            "login-availability",
            "2026-11-06T10:00:00Z",
            "2026-11-06T11:00:00Z",
        ),
        incident(
            4,
            "checkout-availability",
            "2026-10-20T10:00:00Z",
            "2026-10-20T11:00:00Z",
        ),
    ];
    let counter = SliCounter::new(store.clone(), 1 << 20);
    let now = utc("2026-12-07T08:00:00Z");
    let r = month_report(&store, &counter, &slo, &incidents, &[], "2026-11", now)
        .await
        .unwrap();

    // By hand: 30 days x 144 checkouts; bad: 6 (10:00-10:50) + 3
    // (14:00-14:20); the budget is 1% of 4320 = 43.2 events.
    assert_eq!(r.time_zone, "Europe/Berlin");
    assert_eq!((r.from_ns, r.to_ns), (from, to));
    assert_eq!((r.total, r.bad), (4320, 9));
    assert!((r.attainment.unwrap() - (1.0 - 9.0 / 4320.0)).abs() < 1e-12);
    assert_eq!(r.met, Some(true));
    assert!((r.budget_events - 43.2).abs() < 1e-9);
    assert!((r.budget_used.unwrap() - 9.0 / 43.2).abs() < 1e-12);
    // Incident 1, 10:05-11:20: checkouts 10:10 ... 11:10 (7), bad 10:10 ...
    // 10:50 (5); incident 2, 14:05-15:00: 14:10 ... 14:50 (5), bad 2.
    let lines: Vec<(i64, u64, u64, u64)> = r
        .incidents
        .iter()
        .map(|i| (i.id, i.duration_secs, i.total, i.bad))
        .collect();
    assert_eq!(lines, vec![(1, 75 * 60, 7, 5), (2, 55 * 60, 5, 2)]);
    assert!((r.incidents[0].budget_spent.unwrap() - 5.0 / 43.2).abs() < 1e-12);
    assert!((r.incidents[1].budget_spent.unwrap() - 2.0 / 43.2).abs() < 1e-12);
    assert_eq!(r.top_operations.len(), 1);
    assert_eq!(r.top_operations[0].operation, "POST /api/checkout");
    assert_eq!(r.top_operations[0].bad, 9);

    let md = to_markdown(&r);
    assert!(
        md.contains("| 99.000% | 99.792% | yes | 4320 | 9 | 20.8% |"),
        "{md}"
    );
    assert!(md.contains("| 1 | page | 2026-11-05 11:05 CET | 2026-11-05 12:20 CET | 1 h 15 min | 5 | 7 | 11.6% |"), "{md}");
    let csv = to_csv(&r);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows.iter().all(|l| l.split(',').count() == 16), "{csv}");
    assert!(
        rows[1].starts_with("month,checkout-availability,2026-11,Europe/Berlin,0.99,"),
        "{csv}"
    );
    assert!(
        rows[2].starts_with("incident,checkout-availability,2026-11,Europe/Berlin,,,,7,5,,1,page,"),
        "{csv}"
    );

    // The same month as Timeslices (1 h slices, a slice with a failure is
    // bad, objective 95%): 720 hourly slices, two bad (10:00 and 14:00
    // UTC); incident 1 overlaps the slices of 10:00 and 11:00 (one bad),
    // incident 2 the one of 14:00 (bad); the budget is 5% of 720 = 36.
    let slices = load_str(
        Path::new("slo.yaml"),
        &SLO.replace(
            "budgetingMethod: Occurrences
  objectives: [{target: 0.99}]",
            "budgetingMethod: Timeslices
  objectives: [{target: 0.95, timeSliceTarget: 0.9, timeSliceWindow: 1h}]",
        ),
    )
    .unwrap()
    .remove(0);
    let t = month_report(&store, &counter, &slices, &incidents, &[], "2026-11", now)
        .await
        .unwrap();
    assert_eq!(t.unit, "slices");
    assert_eq!((t.total, t.bad), (720, 2));
    assert!((t.budget_events - 36.0).abs() < 1e-9);
    assert!((t.budget_used.unwrap() - 2.0 / 36.0).abs() < 1e-12);
    let lines: Vec<(i64, u64, u64)> = t.incidents.iter().map(|i| (i.id, i.total, i.bad)).collect();
    assert_eq!(lines, vec![(1, 2, 1), (2, 1, 1)]);
    assert!(
        to_markdown(&t).contains("| objective | attainment | met | slices | bad | budget used |")
    );

    // A month that has not begun, and a malformed one.
    assert!(
        month_report(&store, &counter, &slo, &incidents, &[], "2027-01", now)
            .await
            .is_err()
    );
    let e = month_report(&store, &counter, &slo, &incidents, &[], "2026-13", now)
        .await
        .unwrap_err();
    assert!(e.contains("YYYY-MM"), "{e}");
}
