#![no_main]
//! OpenSLO files: any text either loads as SLOs that satisfy the engine's
//! assumptions or fails with an error that names the file.

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match slo_engine::openslo::load_str(Path::new("fuzz.yaml"), text) {
        Ok(slos) => {
            for slo in slos {
                assert!(
                    slo.objective > 0.0 && slo.objective < 1.0,
                    "objective {} loaded",
                    slo.objective
                );
                assert!(!slo.window.is_zero(), "a zero window loaded");
                assert!(!slo.name.is_empty(), "an SLO without a name loaded");
                for t in &slo.tiers {
                    assert!(t.factor.is_finite() && t.factor > 0.0, "tier {t:?}");
                    assert!(!t.short.is_zero() && t.short <= t.long, "tier {t:?}");
                }
            }
        }
        Err(e) => assert_eq!(e.file, "fuzz.yaml"),
    }
});
