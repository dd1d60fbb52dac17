//! `burnwatch slo import`: the sample Sloth and Pyrra files (in
//! `tests/import/`) convert to OpenSLO files that load back with the same
//! objectives, windows, queries, alert tiers and annotations, and what
//! has no counterpart is reported.

use std::path::{Path, PathBuf};
use std::time::Duration;

use slo_engine::burn::Severity;
use slo_engine::import::{Options, Source, convert, pyrra_windows};
use slo_engine::openslo::{Slo, load_str};
use slo_engine::sli::SliSource;

const MIN: u64 = 60;
const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

fn sample(name: &str) -> (PathBuf, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(name);
    let text = std::fs::read_to_string(&p).unwrap();
    (p, text)
}

fn converted(source: Source, name: &str) -> (Vec<Slo>, Vec<String>, String) {
    let (p, text) = sample(name);
    let c = convert(source, &p, &text, &Options::default()).unwrap();
    let slos = load_str(Path::new("converted.yaml"), &c.yaml).unwrap();
    assert_eq!(
        slos.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        c.slos
    );
    (slos, c.notes, c.yaml)
}

fn promql(s: &Slo) -> (String, String, bool, bool) {
    match &s.sli.source {
        SliSource::Promql {
            total,
            other,
            other_is_good,
            counter,
        } => (total.clone(), other.clone(), *other_is_good, *counter),
        other => panic!("a Prometheus SLI was expected, got {other:?}"),
    }
}

/// (severity, long, short, factor) of each tier.
fn tiers(s: &Slo) -> Vec<(Severity, u64, u64, f64)> {
    s.tiers
        .iter()
        .map(|t| {
            (
                t.severity,
                t.long.as_secs(),
                t.short.as_secs(),
                (t.factor * 1e6).round() / 1e6,
            )
        })
        .collect()
}

#[test]
fn sloth_prometheus_v1_round_trips() {
    let (slos, notes, yaml) = converted(Source::Sloth, "sloth-prometheus-v1.yaml");
    assert_eq!(slos.len(), 2, "{yaml}");

    let a = &slos[0];
    assert_eq!(a.name, "checkout-requests-availability");
    assert_eq!(a.display_name, "requests-availability");
    assert_eq!(a.service, "checkout");
    assert_eq!(a.objective, 0.999);
    assert_eq!(a.window, Duration::from_secs(30 * DAY));
    assert_eq!(a.description, "Checkout requests answered without a 5xx.");
    let (total, bad, good, counter) = promql(a);
    assert_eq!(
        bad,
        r#"60 * (sum(rate(http_requests_total{job="checkout",code=~"5.."}[1m])))"#
    );
    assert_eq!(
        total,
        r#"60 * (sum(rate(http_requests_total{job="checkout"}[1m])))"#
    );
    assert!(!good && !counter);
    // Sloth's 30-day windows: 2 % of the budget in 1h (5m), 5 % in 6h
    // (30m), 10 % in 1d (2h) and in 3d (6h).
    assert_eq!(
        tiers(a),
        vec![
            (Severity::Page, HOUR, 5 * MIN, 14.4),
            (Severity::Page, 6 * HOUR, 30 * MIN, 6.0),
            (Severity::Ticket, DAY, 2 * HOUR, 3.0),
            (Severity::Ticket, 3 * DAY, 6 * HOUR, 1.0),
        ]
    );
    assert!(
        a.tiers.iter().all(|t| !t.inclusive),
        "Sloth compares with >"
    );
    let page = a.annotations_for(Severity::Page);
    assert_eq!(
        page["runbook_url"],
        "https://runbooks.example/checkout-errors"
    );
    assert_eq!(page["summary"], "Checkout is failing");
    assert_eq!(page["alertname"], "CheckoutHighErrorRate");
    let ticket = a.annotations_for(Severity::Ticket);
    assert_eq!(
        ticket["summary"],
        "Checkout errors are eating the month's budget"
    );
    assert_eq!(
        ticket["runbook_url"],
        "https://runbooks.example/checkout-errors"
    );

    // The raw ratio: one event a minute, the ratio of it bad; ticket only.
    let q = &slos[1];
    assert_eq!(q.name, "checkout-orders-queue");
    assert_eq!(q.objective, 0.99);
    let (total, bad, _, counter) = promql(q);
    let ratio = r#"sum(rate(jobs_failed_total{queue="orders"}[1m])) / sum(rate(jobs_total{queue="orders"}[1m]))"#;
    assert_eq!(bad, format!("clamp(({ratio}), 0, 1)"));
    assert_eq!(total, format!("vector(1) and on() count({ratio})"));
    assert!(!counter);
    assert!(q.tiers.iter().all(|t| t.severity == Severity::Ticket));
    assert_eq!(q.tiers.len(), 2);

    // Reported: the plugin SLI, the raw ratio's weighting, the labels.
    let all = notes.join("\n");
    assert!(
        all.contains("checkout-apiserver-latency: a plugin SLI"),
        "{all}"
    );
    assert!(
        all.contains("raw error-ratio SLI counts each minute"),
        "{all}"
    );
    assert!(all.contains("alert labels are not carried over"), "{all}");
    assert!(
        yaml.contains("# Not carried over: checkout-apiserver-latency"),
        "{yaml}"
    );
}

#[test]
fn sloth_kubernetes_resource_round_trips() {
    let (slos, _, yaml) = converted(Source::Sloth, "sloth-k8s.yaml");
    assert_eq!(slos.len(), 1, "{yaml}");
    let s = &slos[0];
    assert_eq!(s.name, "search-queries-ok");
    assert_eq!(s.objective, 0.995);
    let (total, bad, _, _) = promql(s);
    assert_eq!(
        bad,
        r#"60 * (sum(rate(search_queries_total{outcome="error"}[1m])))"#
    );
    assert_eq!(total, "60 * (sum(rate(search_queries_total[1m])))");
    // Page alerts only (the ticket alert is disabled).
    assert_eq!(
        tiers(s),
        vec![
            (Severity::Page, HOUR, 5 * MIN, 14.4),
            (Severity::Page, 6 * HOUR, 30 * MIN, 6.0),
        ]
    );
    let page = s.annotations_for(Severity::Page);
    assert_eq!(page["runbook_url"], "https://runbooks.example/search");
    assert_eq!(page["summary"], "Search is failing now");
}

#[test]
fn sloth_factors_follow_the_period() {
    let (p, text) = sample("sloth-k8s.yaml");
    let c = convert(
        Source::Sloth,
        &p,
        &text,
        &Options {
            sloth_period: Duration::from_secs(28 * DAY),
        },
    )
    .unwrap();
    let s = &load_str(&p, &c.yaml).unwrap()[0];
    assert_eq!(s.window, Duration::from_secs(28 * DAY));
    // Sloth's own 28-day factors: 2 % x 672 h / 1 h, 5 % x 672 h / 6 h.
    assert_eq!(
        tiers(s),
        vec![
            (Severity::Page, HOUR, 5 * MIN, 13.44),
            (Severity::Page, 6 * HOUR, 30 * MIN, 5.6),
        ]
    );
}

#[test]
fn pyrra_round_trips() {
    let (slos, notes, yaml) = converted(Source::Pyrra, "pyrra.yaml");
    assert_eq!(slos.len(), 3, "{yaml}");

    let e = &slos[0];
    assert_eq!(e.name, "api-errors");
    assert_eq!(e.service, "storefront");
    assert_eq!(e.objective, 0.99);
    assert_eq!(e.window, Duration::from_secs(14 * DAY));
    let (total, bad, good, counter) = promql(e);
    assert_eq!(bad, r#"http_requests_total{job="api",code=~"5.."}"#);
    assert_eq!(total, r#"http_requests_total{job="api"}"#);
    assert!(!good && counter);
    // Pyrra's windows over two weeks (its README lists 3m, 15m, 30m, 1h,
    // 3h, 12h, 2d).
    assert_eq!(
        tiers(e),
        vec![
            (Severity::Page, 30 * MIN, 3 * MIN, 14.0),
            (Severity::Page, 3 * HOUR, 15 * MIN, 7.0),
            (Severity::Ticket, 12 * HOUR, HOUR, 2.0),
            (Severity::Ticket, 2 * DAY, 3 * HOUR, 1.0),
        ]
    );
    assert_eq!(
        e.annotations_for(Severity::Page)["alertname"],
        "ApiErrorBudgetBurn"
    );

    let l = &slos[1];
    assert_eq!(l.objective, 0.995);
    let (total, good_q, good, counter) = promql(l);
    assert_eq!(
        good_q,
        r#"http_request_duration_seconds_bucket{job="api",le="0.5"}"#
    );
    assert_eq!(total, r#"http_request_duration_seconds_count{job="api"}"#);
    assert!(good && counter);
    // Four weeks: the SRE workbook's windows, Pyrra's factors.
    assert_eq!(
        tiers(l),
        vec![
            (Severity::Page, HOUR, 5 * MIN, 14.0),
            (Severity::Page, 6 * HOUR, 30 * MIN, 7.0),
            (Severity::Ticket, DAY, 2 * HOUR, 2.0),
            (Severity::Ticket, 4 * DAY, 6 * HOUR, 1.0),
        ]
    );

    let b = &slos[2];
    let (total, good_q, good, counter) = promql(b);
    assert_eq!(
        good_q,
        r#"sum(sum_over_time(probe_success{target="shop"}[1m]))"#
    );
    assert_eq!(
        total,
        r#"sum(count_over_time(probe_success{target="shop"}[1m]))"#
    );
    assert!(good && !counter);
    assert_eq!(b.window, Duration::from_secs(7 * DAY));

    let all = notes.join("\n");
    assert!(
        all.contains("api-errors: grouping by route is not carried over"),
        "{all}"
    );
    assert!(
        all.contains("api-latency-native: a latencyNative indicator"),
        "{all}"
    );
    assert!(
        all.contains("`for` durations are not carried over"),
        "{all}"
    );
    // probe-up turned the absent alert off: no note for it.
    assert!(
        !all.contains("probe-up: Pyrra's absent-metric alert"),
        "{all}"
    );
    assert!(
        all.contains("api-errors: Pyrra's absent-metric alert"),
        "{all}"
    );
}

#[test]
fn pyrra_windows_scale_with_the_slo_window() {
    // 30 days: every window a division of the window, rounded to minutes.
    let w = pyrra_windows(Duration::from_secs(30 * DAY));
    let minutes: Vec<(u64, u64)> = w
        .iter()
        .map(|x| (x.2.as_secs() / 60, x.3.as_secs() / 60))
        .collect();
    assert_eq!(minutes, vec![(64, 5), (386, 32), (1543, 129), (6171, 386)]);
}

#[test]
fn files_that_are_not_of_the_format_are_refused() {
    let (p, sloth) = sample("sloth-k8s.yaml");
    let e = convert(Source::Pyrra, &p, &sloth, &Options::default()).unwrap_err();
    assert!(
        e.message.contains("not a Pyrra ServiceLevelObjective"),
        "{e}"
    );
    let (p, pyrra) = sample("pyrra.yaml");
    let e = convert(Source::Sloth, &p, &pyrra, &Options::default()).unwrap_err();
    assert!(e.message.contains("not a Sloth spec"), "{e}");
    // A query without the window template.
    let bad = sloth.replace(
        "[{{.window}}]))\n          totalQuery",
        "[5m]))\n          totalQuery",
    );
    let e = convert(Source::Sloth, &p, &bad, &Options::default()).unwrap_err();
    assert!(e.message.contains("has no {{.window}}"), "{e}");
    // Nothing convertible at all.
    let only_native = pyrra.split("---\n").last().unwrap().to_string();
    let e = convert(Source::Pyrra, &p, &only_native, &Options::default()).unwrap_err();
    assert!(e.message.contains("no SLO could be converted"), "{e}");
}
