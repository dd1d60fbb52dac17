//! Golden SQL: queries over a fixed generated dataset (synthetic spans,
//! logs and metric points, half flushed to Parquet, half in memory) and
//! the exact rows they must return, in `tests/golden/*.slt`:
//!
//! ```text
//! query <name>
//! <SQL, one or more lines>
//! ----
//! <expected result as CSV with a header>
//! ```
//!
//! `BURNWATCH_BLESS=1 cargo test -p store --test golden` rewrites the
//! expected results from the current output (review the diff before
//! committing it).

use store::sql::{QueryLimits, run};
use store::{Store, Table, synth};

const BASE: i64 = 1_709_632_800_000_000_000; // 2024-03-05T10:00:00Z
const HOUR: i64 = 3_600_000_000_000;

async fn dataset(dir: &std::path::Path) -> Store {
    let store = Store::open(testkit::store_config(dir)).await.unwrap();
    store
        .write(Table::Spans, synth::spans(7, 600, BASE, 2 * HOUR))
        .await
        .unwrap();
    store
        .write(Table::Logs, synth::logs(7, 200, BASE))
        .await
        .unwrap();
    store
        .write(Table::MetricPoints, synth::metric_points(BASE + HOUR))
        .await
        .unwrap();
    store.flush().await.unwrap();
    store
        .write(Table::Spans, synth::spans(8, 400, BASE + HOUR, HOUR))
        .await
        .unwrap();
    store
}

fn csv(result: &store::sql::QueryResult) -> String {
    let mut out = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(&mut out);
        if result.batches.is_empty() {
            w.write(&arrow::array::RecordBatch::new_empty(result.schema.clone()))
                .unwrap();
        }
        for b in &result.batches {
            w.write(b).unwrap();
        }
    }
    String::from_utf8(out).unwrap()
}

struct Case {
    name: String,
    sql: String,
    expected: String,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for block in text
        .split("\nquery ")
        .map(|b| b.trim_start_matches("query "))
    {
        let block = block.trim();
        if block.is_empty() || block.starts_with('#') && !block.contains("----") {
            continue;
        }
        let lines: Vec<&str> = block.lines().collect();
        let sep = lines
            .iter()
            .position(|l| l.trim() == "----")
            .unwrap_or(lines.len());
        let expected = lines.get(sep + 1..).unwrap_or_default().join("\n");
        cases.push(Case {
            name: lines[0].trim().to_string(),
            sql: lines[1..sep].join("\n").trim().to_string(),
            expected: expected.trim().to_string(),
        });
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_queries() {
    let dir = tempfile::tempdir().unwrap();
    let store = dataset(dir.path()).await;
    let bless = std::env::var_os("BURNWATCH_BLESS").is_some();
    let root = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut count = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let header: String = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        let mut blessed = header;
        for case in parse(&text) {
            count += 1;
            let got = match run(&store, &case.sql, &QueryLimits::default()).await {
                Ok(r) => csv(&r).trim().to_string(),
                Err(e) => format!("error: {e}"),
            };
            if got != case.expected {
                failures.push(format!(
                    "{}: {}\n--- expected\n{}\n--- got\n{}",
                    file.display(),
                    case.name,
                    case.expected,
                    got
                ));
            }
            blessed.push_str(&format!(
                "\nquery {}\n{}\n----\n{}\n",
                case.name, case.sql, got
            ));
        }
        if bless {
            std::fs::write(&file, blessed).unwrap();
        }
    }
    assert!(count >= 10, "{count} golden queries");
    assert!(bless || failures.is_empty(), "{}", failures.join("\n\n"));
}
