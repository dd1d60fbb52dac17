//! Log text filters per live logs file, so that a text search (`body`
//! contains a text, case-insensitively) opens only the files that may hold
//! the text, however many days it covers.
//!
//! For every live logs file, a Bloom filter of the trigrams of its bodies
//! (every three consecutive bytes after ASCII lowercasing; 10 bits per
//! distinct trigram, 7 probes) is built once and kept like the trace-id
//! filters (see [`crate::file_filter`]), as derived files of kind
//! [`TEXT_INDEX_KIND`]. A file can hold a text only if its filter may hold
//! every trigram of the text, so a rare text skips nearly every file, while
//! a text shorter than three characters, or with characters outside ASCII,
//! reads every file (nothing is ever missed).
//!
//! Case: SQL's `ILIKE` folds case by Unicode rules, under which two
//! characters outside ASCII match ASCII letters (U+212A KELVIN SIGN matches
//! `k`, U+017F LATIN SMALL LETTER LONG S matches `s`); the trigrams map
//! those two to their ASCII letters and every other character outside
//! ASCII to a byte no text searched for has, so a body that matches a text
//! always holds all of the text's trigrams.

use arrow::array::{AsArray, RecordBatch};
use store::Table;

use crate::cache::Weigh;
use crate::file_filter::{Bloom, FileFilter, FilterIndex, mix};

/// The filters' kind of derived file in the store.
pub const TEXT_INDEX_KIND: &str = "logtext-v1";

/// Default memory budget of the filter cache.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

const BITS_PER_KEY: u64 = 10;
const MAGIC: &[u8; 4] = b"BWLT";
const VERSION: u8 = 1;

/// The byte that stands for a character outside ASCII in a trigram.
const OTHER: u8 = 0xff;

/// A Bloom filter of the trigrams of a file's log bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFilter {
    bloom: Bloom,
}

fn trigram_hashes(t: [u8; 3]) -> (u64, u64) {
    let k = u64::from(t[0]) << 16 | u64::from(t[1]) << 8 | u64::from(t[2]);
    (mix(k), mix(k ^ 0x9e37_79b9_7f4a_7c15) | 1)
}

/// The bytes trigrams are taken from: ASCII lowercased, the two characters
/// outside ASCII that fold to ASCII letters as those letters, any other
/// character as [`OTHER`].
fn folded(text: &str, out: &mut Vec<u8>) {
    out.clear();
    if text.is_ascii() {
        out.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
        return;
    }
    out.extend(text.chars().map(|c| match c {
        c if c.is_ascii() => (c as u8).to_ascii_lowercase(),
        '\u{212A}' => b'k',
        '\u{017F}' => b's',
        _ => OTHER,
    }));
}

/// The trigrams a body that contains `text` (case-insensitively) must
/// hold; `None` when the filter cannot tell (fewer than three characters,
/// or a character outside ASCII).
pub fn needed_trigrams(text: &str) -> Option<Vec<[u8; 3]>> {
    if !text.is_ascii() || text.len() < 3 {
        return None;
    }
    let b: Vec<u8> = text.bytes().map(|b| b.to_ascii_lowercase()).collect();
    let mut t: Vec<[u8; 3]> = b.windows(3).map(|w| [w[0], w[1], w[2]]).collect();
    t.sort_unstable();
    t.dedup();
    Some(t)
}

impl TextFilter {
    /// The filter of these bodies.
    pub fn of<'a>(bodies: impl IntoIterator<Item = &'a str>) -> TextFilter {
        let mut distinct: std::collections::HashSet<[u8; 3], foldhash::fast::RandomState> =
            Default::default();
        let mut buf = Vec::new();
        for body in bodies {
            folded(body, &mut buf);
            for w in buf.windows(3) {
                distinct.insert([w[0], w[1], w[2]]);
            }
        }
        let mut bloom = Bloom::with_capacity(distinct.len(), BITS_PER_KEY);
        for t in distinct {
            bloom.insert(trigram_hashes(t));
        }
        TextFilter { bloom }
    }

    /// Whether a body of the file may hold all of `trigrams` (never false
    /// when one does).
    pub fn may_contain(&self, trigrams: &[[u8; 3]]) -> bool {
        trigrams
            .iter()
            .all(|t| self.bloom.may_contain(trigram_hashes(*t)))
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bloom.bytes()
    }
}

impl Weigh for TextFilter {
    fn weight(&self) -> usize {
        self.bytes()
    }
}

impl FileFilter for TextFilter {
    const KIND: &'static str = TEXT_INDEX_KIND;
    const TABLES: &'static [Table] = &[Table::Logs];
    const WHAT: &'static str = "log text filter";
    const SOURCE_SQL: &'static str = "SELECT body FROM f WHERE body IS NOT NULL";

    fn from_batches(batches: &[RecordBatch]) -> TextFilter {
        TextFilter::of(batches.iter().flat_map(|b| {
            let col = b.column(0).as_string::<i32>();
            col.iter().flatten()
        }))
    }

    fn encode(&self) -> Vec<u8> {
        self.bloom.encode(MAGIC, VERSION)
    }

    fn decode(b: &[u8]) -> Result<TextFilter, String> {
        Bloom::decode(b, MAGIC, VERSION, "log text filter").map(|bloom| TextFilter { bloom })
    }
}

/// Log text filters over one store's logs files.
pub type TextIndex = FilterIndex<TextFilter>;

impl FilterIndex<TextFilter> {
    /// A snapshot of `logs` with only the files that may hold a body
    /// containing `text` (case-insensitively), those without a filter and
    /// the rows in memory; every file when the filter cannot tell.
    pub async fn logs_for(&self, text: &str) -> store::Snapshot {
        self.metrics
            .lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match needed_trigrams(text) {
            Some(t) => self.candidates(Table::Logs, |f| f.may_contain(&t)).await,
            None => self.candidates(Table::Logs, |_| true).await,
        }
    }

    /// Reports the index counters to `/metrics`.
    pub fn report(&self, out: &mut exposition::Out<'_>) -> std::fmt::Result {
        self.collect_metrics(out, "burnwatch_log_text_index", "a log text")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn may_hold(bodies: &[&str], text: &str) -> bool {
        let f = TextFilter::of(bodies.iter().copied());
        needed_trigrams(text).is_none_or(|t| f.may_contain(&t))
    }

    #[test]
    fn a_body_that_contains_the_text_always_passes() {
        let bodies = [
            "GET /api/cart failed: upstream Timeout after 812 ms",
            "Temperature 300\u{212A} out of range",
            "Grüße from the \u{017F}hop",
            "",
        ];
        for text in [
            "timeout",
            "TIMEOUT",
            "upstream t",
            "300k",
            "300\u{212A}",
            "ße",
            "shop",
            "hop",
            "ms",
            "e f",
        ] {
            assert!(may_hold(&bodies, text), "{text:?} must pass");
        }
    }

    #[test]
    fn texts_not_in_any_body_are_mostly_ruled_out() {
        let bodies: Vec<String> = (0..20_000)
            .map(|i| format!("GET /api/products {} in {} ms", 200 + i % 3, i % 997))
            .collect();
        let f = TextFilter::of(bodies.iter().map(String::as_str));
        let rare = needed_trigrams("settlement batch rejected").unwrap();
        assert!(!f.may_contain(&rare));
        // Sized for its distinct trigrams, not for its rows.
        assert!(f.bytes() < 4096, "{} bytes", f.bytes());
        let present = needed_trigrams("products 201").unwrap();
        assert!(f.may_contain(&present));
    }

    #[test]
    fn encoding_round_trips_and_foreign_bytes_are_refused() {
        let f = TextFilter::of(["connection reset by peer"]);
        let b = FileFilter::encode(&f);
        assert_eq!(<TextFilter as FileFilter>::decode(&b).unwrap(), f);
        assert!(<TextFilter as FileFilter>::decode(b"BWTF\x02").is_err());
        let mut other = b.clone();
        other[4] = 9;
        assert!(
            <TextFilter as FileFilter>::decode(&other)
                .unwrap_err()
                .contains("version 9")
        );
    }
}
