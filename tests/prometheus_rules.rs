//! Prometheus rule files and promtool's rule unit tests: `promtool test
//! rules` (Prometheus 2.42, Debian's `prometheus` package) and `burnwatch
//! rules test` agree on the same files: both pass the shop's PromQL rules'
//! tests, and both fail a copy whose expectations are wrong. `promtool
//! check rules` and `burnwatch rules check` both accept the rule file.

use std::path::Path;
use std::process::Command;

const EXE: &str = env!("CARGO_BIN_EXE_burnwatch");

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd}: {e} (scripts/test.sh installs Debian's prometheus, which brings promtool)")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn promtool() -> String {
    std::env::var("BURNWATCH_PROMTOOL").unwrap_or_else(|_| "promtool".into())
}

#[test]
fn promtool_and_burnwatch_agree_on_the_shop_rule_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("alert-rules/shop-prometheus-rules.yaml");
    let tests = root.join("alert-rules/tests/shop-prometheus-rules.test.yaml");
    let (ok, text) = run(&promtool(), &["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "promtool check rules: {text}");
    let (ok, text) = run(EXE, &["rules", "check", rules.to_str().unwrap()]);
    assert!(ok, "burnwatch rules check: {text}");
    assert!(
        text.contains("2 alert rule(s)") || text.contains("4"),
        "{text}"
    );

    let (ok, text) = run(&promtool(), &["test", "rules", tests.to_str().unwrap()]);
    assert!(ok, "promtool test rules: {text}");
    let (ok, text) = run(EXE, &["rules", "test", tests.to_str().unwrap()]);
    assert!(ok, "burnwatch rules test: {text}");
    assert_eq!(text.matches("PASS").count(), 2, "{text}");

    // Wrong expectations (an annotation, a recorded value, a quantile
    // rendered short): both fail, in both test cases.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&rules, dir.path().join("shop-prometheus-rules.yaml")).unwrap();
    let mut broken = std::fs::read_to_string(&tests).unwrap().replace(
        "../shop-prometheus-rules.yaml",
        "shop-prometheus-rules.yaml",
    );
    for (from, to) in [
        ("0.16 of requests failed", "0.17 of requests failed"),
        ("value: 0.13333333333333333", "value: 0.14"),
        ("p99 4.200000000000002 s", "p99 4.2 s"),
    ] {
        assert!(broken.contains(from), "{from}");
        broken = broken.replace(from, to);
    }
    let file = dir.path().join("broken.test.yaml");
    std::fs::write(&file, broken).unwrap();
    let (p_ok, p_text) = run(&promtool(), &["test", "rules", file.to_str().unwrap()]);
    let (b_ok, b_text) = run(EXE, &["rules", "test", file.to_str().unwrap()]);
    assert!(!p_ok, "promtool passed wrong expectations: {p_text}");
    assert!(!b_ok, "burnwatch passed wrong expectations: {b_text}");
    assert_eq!(b_text.matches("FAIL").count(), 2, "{b_text}");
    for (p_what, b_what) in [
        ("0.17 of requests", "0.17 of requests"),
        ("1.4E-01", "0.14"),
        ("p99 4.2 s", "p99 4.2 s"),
    ] {
        assert!(
            p_text.contains(p_what) && b_text.contains(b_what),
            "{b_what}:\n{p_text}\n{b_text}"
        );
    }
}
