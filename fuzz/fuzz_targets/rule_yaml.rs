#![no_main]
//! Alert-rule files: any text either loads as groups whose queries passed
//! the SQL guard and whose templates render, or fails with an error that
//! names the file.

use std::collections::BTreeMap;
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = slo_engine::rules::is_rule_file(text);
    match slo_engine::rules::parse(Path::new("fuzz.yaml"), text) {
        Ok(groups) => {
            let labels: BTreeMap<String, String> =
                [("service".to_string(), "shop".to_string())].into();
            for g in groups {
                assert!(!g.name.trim().is_empty());
                assert!(!g.interval.is_zero(), "group {} has a zero interval", g.name);
                for r in g.rules {
                    assert!(
                        store::sql::check_read_only(&r.expr).is_ok(),
                        "rule {} loaded with a refused query",
                        r.name
                    );
                    for t in r.annotations.values().chain(r.labels.values()) {
                        if let Err(e) = slo_engine::rules::render(t, &labels, 0.5) {
                            panic!("a loaded template does not render: {e}");
                        }
                    }
                }
            }
        }
        Err(e) => assert_eq!(e.file, "fuzz.yaml"),
    }
});
