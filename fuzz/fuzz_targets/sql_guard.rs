#![no_main]
//! The SQL guard: `check_read_only` on any text never panics, and what it
//! lets through stays one read-only query after `now()` is pinned (the
//! rewrite rules and backtests run).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    if store::sql::check_read_only(sql).is_err() {
        return;
    }
    match store::sql::pin_now(sql, 1_700_000_000_000_000_000) {
        Ok(pinned) => {
            if let Err(e) = store::sql::check_read_only(&pinned) {
                panic!("pinning now() turned an allowed query into a refused one: {e}\n{sql}\n=> {pinned}");
            }
        }
        Err(e) => panic!("an allowed query cannot be pinned: {e}\n{sql}"),
    }
});
