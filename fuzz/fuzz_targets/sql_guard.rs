#![no_main]
//! The SQL guard: `check_read_only` on any text never panics, and what it
//! lets through stays one read-only query after `now()` is pinned (the
//! rewrite rules and backtests run).
//!
//! An input that starts with `R` builds a long query from a short one, so
//! the fuzzer reaches the depth and width limits (thousands of terms)
//! within its input length: `R`, a count (two bytes, little endian), then
//! text split at the first two `\x01` bytes into a prefix, a fragment and a
//! suffix; the query is the prefix, the fragment repeated `count` times,
//! and the suffix (`SELECT 1` `+ 1` `` with a count of 4,000 is the probe's
//! `1 + 1 + ... + 1`), at most 16 KiB.

fn query(data: &[u8]) -> Option<String> {
    let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
    match data {
        [b'R', lo, hi, rest @ ..] => {
            let count = u16::from_le_bytes([*lo, *hi]) as usize;
            let rest = std::str::from_utf8(rest).ok()?;
            let mut parts = rest.splitn(3, '\x01');
            let (prefix, fragment, suffix) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
            // 16 KiB reaches every depth and operator limit (4,096 terms
            // of ` + 1`) and keeps executions fast; the length limit
            // itself is tested in store/tests/sql_limits.rs.
            let count = count.min((16 << 10) / fragment.len().max(1));
            Some(format!("{prefix}{}{suffix}", fragment.repeat(count)))
        }
        _ => text(data),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(sql) = query(data) else {
        return;
    };
    if store::sql::check_read_only(&sql).is_err() {
        return;
    }
    match store::sql::pin_now(&sql, 1_700_000_000_000_000_000) {
        Ok(pinned) => {
            if let Err(e) = store::sql::check_read_only(&pinned) {
                panic!("pinning now() turned an allowed query into a refused one: {e}\n{sql}\n=> {pinned}");
            }
        }
        Err(e) => panic!("an allowed query cannot be pinned: {e}\n{sql}"),
    }
});
