//! Burn-rate alerting end to end on the demo shop, with the SLOs and rules
//! that ship in alert-rules/: a payments outage (chaos) makes charges and
//! checkouts fail; the shipped `payments-availability` SLO (99.9% over 30
//! days, the Workbook's tiers) opens a page incident within 65 s, and a real
//! webhook receiver gets that page exactly once (Alertmanager payload,
//! version 4). Recovery is shown with one more SLO on the same traffic with
//! short windows (2m/15s page, 4m/30s ticket), since the shipped 30-day
//! tiers rightly keep burning for hours after a minute of total outage:
//! clearing the outage resolves its incident and sends a resolved
//! notification.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use common::{EXE, chaos_payments, wait};

const RULES: &str = r#"
apiVersion: openslo/v1
kind: AlertPolicy
metadata: {name: fast-test-windows}
spec:
  conditions:
    - spec:
        severity: page
        condition: {kind: burnrate, op: gte, threshold: 14.4, lookbackWindow: 2m, alertAfter: 15s}
    - spec:
        severity: ticket
        condition: {kind: burnrate, op: gte, threshold: 6, lookbackWindow: 4m, alertAfter: 30s}
---
apiVersion: openslo/v1
kind: SLO
metadata: {name: checkout-short-windows, displayName: Checkout availability (short windows)}
spec:
  service: shop
  indicator:
    metadata: {name: checkout-errors-short}
    spec:
      ratioMetric:
        counter: true
        bad:
          metricSource: {type: burnwatch, spec: {service: gateway, route: /api/checkout, errors: true}}
        total:
          metricSource: {type: burnwatch, spec: {service: gateway, route: /api/checkout}}
  timeWindow: [{duration: 1h, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.999}]
  alertPolicies: [{alertPolicyRef: fast-test-windows}]
"#;

fn get(http: &reqwest::blocking::Client, url: &str) -> Value {
    http.get(url).send().unwrap().json().unwrap()
}

/// Firing notifications that page for `slo`.
fn pages(got: &testkit::webhook::Received, slo: &str) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .filter(|p| {
            p["status"] == "firing"
                && p["alerts"][0]["labels"]["slo"] == slo
                && p["alerts"][0]["labels"]["severity"] == "page"
        })
        .count()
}

/// The newest incident of `slo`.
fn incident_of(v: &Value, slo: &str) -> Option<Value> {
    v["incidents"]
        .as_array()?
        .iter()
        .find(|i| i["slo"] == slo)
        .cloned()
}

const PAYMENTS: &str = "payments-availability";
const SHORT: &str = "checkout-short-windows";

#[test]
fn payments_outage_pages_once_and_recovery_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let shipped = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("alert-rules");
    for f in std::fs::read_dir(&shipped).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&p, rules.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(rules.join("checkout-short-windows.yaml"), RULES).unwrap();
    // The receiver (testkit's, on a real socket) runs on its own runtime
    // for the whole test.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (hook, got) = rt.block_on(testkit::webhook::receiver());

    let data_dir = dir.path().join("data");
    let rules_arg = rules.to_str().unwrap().to_string();
    let demo = common::start_demo(
        &data_dir,
        &[
            "--rps",
            "30",
            "--users",
            "10",
            "--mix",
            "browse=30,product=10,checkout=60",
            "--slo-interval",
            "2",
            "--alert-webhook",
            &hook,
            "--group-wait",
            "1",
            "--group-interval",
            "2",
            "--rules-dir",
            &rules_arg,
        ],
        &[("OTEL_BSP_SCHEDULE_DELAY", "300")],
    );
    let api = demo.api.clone();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Healthy: the SLOs are evaluated and no incident opens.
    wait("healthy evaluation", Duration::from_secs(60), || {
        let v = get(&http, &format!("{api}/api/v1/slos"));
        let ok = |name: &str| {
            v["slos"].as_array().is_some_and(|a| {
                a.iter().any(|s| {
                    s["name"] == name
                        && s["total"].as_u64().unwrap_or(0) >= 20
                        && s["state"] == "ok"
                })
            })
        };
        (ok(PAYMENTS) && ok(SHORT)).then_some(())
    });
    assert_eq!(
        get(&http, &format!("{api}/api/v1/incidents"))["incidents"],
        serde_json::json!([])
    );

    // Payments goes down: the shipped payments SLO pages within 65 s.
    chaos_payments(&data_dir, &["--outage"]);
    let (incident, took) = wait("payments page incident", Duration::from_secs(65), || {
        let v = get(&http, &format!("{api}/api/v1/incidents"));
        incident_of(&v, PAYMENTS).filter(|i| i["severity"] == "page" && i["state"] == "open")
    });
    println!(
        "payments page incident after {took:?}: {}",
        incident["summary"]
    );
    wait("page notifications", Duration::from_secs(20), || {
        (pages(&got, PAYMENTS) >= 1 && pages(&got, SHORT) >= 1).then_some(())
    });
    // More evaluation rounds during the outage: still one page each.
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(pages(&got, PAYMENTS), 1, "{:#?}", got.lock().unwrap());
    assert_eq!(pages(&got, SHORT), 1, "{:#?}", got.lock().unwrap());
    let first = got
        .lock()
        .unwrap()
        .iter()
        .find(|p| p["alerts"][0]["labels"]["slo"] == PAYMENTS)
        .cloned()
        .unwrap();
    assert_eq!(first["version"], "4");
    assert_eq!(first["receiver"], "burnwatch");
    assert_eq!(first["alerts"][0]["labels"]["alertname"], "SLOBurnRate");
    assert_eq!(
        first["alerts"][0]["annotations"]["incident_id"],
        incident["id"].to_string()
    );

    // The CLI shows the page, from the server and from the data directory.
    let out = Command::new(EXE)
        .args(["slo", "status", "--url", &api])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(PAYMENTS) && text.contains("page"), "{text}");
    let out = Command::new(EXE)
        .args(["slo", "status", "--format", "json"])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--rules-dir")
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let payments = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == PAYMENTS)
        .unwrap();
    assert!(payments["bad"].as_u64().unwrap() > 0, "{v}");

    // Recovery resolves the short-window incident and notifies; the
    // payments page stays open (its 1 h window still burns) but is not
    // notified again.
    chaos_payments(&data_dir, &["--clear"]);
    let (_, took) = wait("resolution", Duration::from_secs(120), || {
        let v = get(&http, &format!("{api}/api/v1/incidents"));
        v["incidents"]
            .as_array()?
            .iter()
            .any(|i| i["slo"] == SHORT && i["state"] == "resolved")
            .then_some(())
    });
    println!("resolved {took:?} after clearing");
    wait("resolved notification", Duration::from_secs(20), || {
        got.lock()
            .unwrap()
            .iter()
            .any(|p| p["status"] == "resolved" && p["alerts"][0]["labels"]["slo"] == SHORT)
            .then_some(())
    });
    assert_eq!(pages(&got, SHORT), 1);
    assert_eq!(pages(&got, PAYMENTS), 1);
    let incidents = get(&http, &format!("{api}/api/v1/incidents"));
    let of = |slo: &str| {
        incidents["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["slo"] == slo)
            .count()
    };
    // One payments incident, still open; one short-window incident,
    // resolved. (Evaluations look at windows ending --slo-delay before
    // now: before that, failed checkouts still in the shop's 5 s span
    // batches arrived after a round had judged the 30 s ticket window
    // clean and resolved the incident, tripped it again and opened a
    // second one.)
    assert_eq!(of(PAYMENTS), 1, "{incidents}");
    assert_eq!(of(SHORT), 1, "{incidents}");
    let m = http
        .get(format!("{api}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let slos = get(&http, &format!("{api}/api/v1/slos"));
    assert!(
        m.contains(&format!("burnwatch_slo_alert_state{{slo=\"{SHORT}\"}} 1"))
            || m.contains(&format!("burnwatch_slo_alert_state{{slo=\"{SHORT}\"}} 2")),
        "recovered: no longer paging\n{m}\n{slos:#}"
    );
    assert!(
        m.contains(&format!(
            "burnwatch_slo_alert_state{{slo=\"{PAYMENTS}\"}} 3"
        )),
        "the 30-day payments SLO still burns\n{m}"
    );
    drop(demo);
}
