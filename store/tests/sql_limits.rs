//! User SQL cannot take the process down or past its budget: deep and wide
//! expressions are refused before planning, functions that build large
//! values fail against the query's memory pool, results are capped in
//! bytes, `EXPLAIN` answers, and a query past its time limit stops.

use std::time::{Duration, Instant};

use store::sql::{QueryError, QueryLimits, run};
use store::{Store, Table, synth};

const BASE: i64 = 1_709_632_800_000_000_000;

async fn store(dir: &std::path::Path) -> Store {
    let store = Store::open(testkit::store_config(dir)).await.unwrap();
    store
        .write(Table::Spans, synth::spans(3, 200, BASE, 3_600_000_000_000))
        .await
        .unwrap();
    store
}

fn one_number(r: &store::sql::QueryResult) -> String {
    let batch = &r.batches[0];
    arrow::util::display::array_value_to_string(batch.column(0), 0).unwrap()
}

#[tokio::test]
async fn deep_and_wide_expressions_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let limits = QueryLimits::default();
    // The probe's query: thousands of terms aborted the process.
    let sum = |n: usize| format!("SELECT 1{}", " + 1".repeat(n));
    for (sql, want) in [
        (sum(5_000), "5001 operators and keywords; at most 4096"),
        (sum(1_000), "nests more than 256 deep"),
        (sum(300), "nests more than 256 deep"),
        (sum(100_000), "at most 262144 are allowed"),
        (sum(60_000), "operators and keywords"),
        (format!("SELECT {}true", "NOT ".repeat(3_000)), ""),
        (
            format!("SELECT 1 AS x{}", " UNION ALL SELECT 1".repeat(100)),
            "UNION, EXCEPT or INTERSECT",
        ),
        (
            format!("SELECT '1'{}", "::int".repeat(1_000)),
            "nests more than 256",
        ),
        (
            format!("SELECT NULL{}", " IS NULL".repeat(1_000)),
            "nests more than 256",
        ),
        (
            format!(
                "SELECT count(*) FROM spans s0{}",
                (1..40)
                    .map(|i| format!(" JOIN spans s{i} USING (trace_id)"))
                    .collect::<String>()
            ),
            "joins 40 relations",
        ),
        (
            format!("SELECT {}1{}", "abs(".repeat(70), ")".repeat(70)),
            "more than 64 deep",
        ),
    ] {
        let err = run(&store, &sql, &limits).await.unwrap_err();
        assert!(
            matches!(err, QueryError::Invalid(_)),
            "{}...: {err}",
            &sql[..60.min(sql.len())]
        );
        assert!(
            err.to_string().contains(want),
            "{}...: {err}",
            &sql[..60.min(sql.len())]
        );
    }
    // Nested calls are nesting, not an access chain.
    let nested = format!("SELECT {}1{}", "abs(".repeat(63), ")".repeat(63));
    if let Err(e) = run(&store, &nested, &limits).await {
        assert!(!e.to_string().contains("access"), "{e}");
    }
    // Below the limits the same shapes run.
    let r = run(&store, &sum(200), &limits).await.unwrap();
    assert_eq!(one_number(&r), "201");
    let ors = format!(
        "SELECT count(*) FROM spans WHERE {}",
        (0..200)
            .map(|i| format!("duration_ns = {i}"))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    run(&store, &ors, &limits).await.unwrap();
}

#[tokio::test]
async fn functions_that_build_large_values_stay_within_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    // A small budget keeps the test quick; the default is 512 MiB.
    let limits = QueryLimits {
        memory_bytes: 64 << 20,
        ..Default::default()
    };
    for sql in [
        "SELECT repeat('x', 2147483647)",
        "SELECT length(repeat('x', 2147483647))",
        "SELECT repeat(name, 100000000) FROM spans",
        "SELECT lpad('x', 2147483647)",
        "SELECT rpad('x', 1000000000, 'ab')",
        "SELECT array_repeat('xxxxxxxx', 1000000000)",
        "SELECT cardinality(range(0, 3000000000))",
        "SELECT cardinality(generate_series(0, 3000000000, 1))",
        "SELECT cardinality(range(TIMESTAMP '2000-01-01', TIMESTAMP '2030-01-01', INTERVAL '1 second'))",
        "SELECT array_resize([1], 1000000000)",
        "SELECT length(replace(repeat('a', 100000), 'a', repeat('b', 100000)))",
        "SELECT length(regexp_replace(repeat('a', 100000), 'a', repeat('b', 100000), 'g'))",
        // Doubling by nesting: each call is checked against what is left.
        "WITH t AS (SELECT repeat('x', 20000000) AS r) SELECT length(concat(r, r, r, r)) FROM t",
        // Aggregates count their state against the same pool.
        "SELECT length(string_agg(repeat('x', 100000), ',')) FROM unnest(range(2000))",
    ] {
        match run(&store, sql, &limits).await {
            Err(QueryError::ResourcesExhausted(m)) => assert!(!m.is_empty()),
            other => panic!("{sql}: {other:?}"),
        }
    }
    let err = run(
        &store,
        "SELECT repeat('x', 2147483647)",
        &QueryLimits::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("repeat() would build 2.0 GiB") && err.contains("512.0 MiB"),
        "{err}"
    );
    let err = run(
        &store,
        "SELECT levenshtein(repeat('a', 100000), repeat('b', 100000))",
        &limits,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("levenshtein() would compare"), "{err}");
    // Ordinary uses are untouched.
    let r = run(
        &store,
        "SELECT length(repeat('ab', 1000)) + length(lpad('x', 10)) + cardinality(range(10)) \
         + levenshtein('kitten', 'sitting')",
        &limits,
    )
    .await
    .unwrap();
    assert_eq!(one_number(&r), "2023");
}

#[tokio::test]
async fn results_are_capped_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let limits = QueryLimits {
        max_result_bytes: 1 << 20,
        ..Default::default()
    };
    let err = run(&store, "SELECT repeat('x', 2000000) AS big", &limits)
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::ResultTooLarge(_)), "{err}");
    assert!(err.to_string().contains("larger than 1 MiB"), "{err}");
    // Many small rows add up too.
    let err = run(
        &store,
        "SELECT repeat('x', 1000) FROM unnest(range(5000))",
        &limits,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, QueryError::ResultTooLarge(_)), "{err}");
    let r = run(&store, "SELECT repeat('x', 1000) AS v", &limits)
        .await
        .unwrap();
    assert_eq!(r.num_rows(), 1);
}

#[tokio::test]
async fn explain_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let limits = QueryLimits::default();
    for sql in [
        "EXPLAIN SELECT count(*) FROM spans",
        "EXPLAIN ANALYZE SELECT count(*) FROM spans",
        "EXPLAIN VERBOSE SELECT service_name FROM spans WHERE duration_ns > 5",
    ] {
        let r = run(&store, sql, &limits)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(r.num_rows() > 0, "{sql}");
        let text = arrow::util::pretty::pretty_format_batches(&r.batches)
            .unwrap()
            .to_string();
        assert!(text.contains("plan"), "{sql}: {text}");
    }
    // EXPLAIN of something that is not a query is refused by name.
    match run(&store, "EXPLAIN DELETE FROM spans", &limits).await {
        Err(QueryError::NotAllowed(m)) => assert!(m.contains("EXPLAIN"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_query_past_its_time_limit_stops() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let limits = QueryLimits {
        timeout_secs: 0.5,
        ..Default::default()
    };
    let started = Instant::now();
    let err = run(
        &store,
        "SELECT count(*) FROM unnest(range(1000000)) a(x) CROSS JOIN unnest(range(1000000)) b(y) \
         WHERE a.x + b.y = 7",
        &limits,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, QueryError::Timeout(_)), "{err}");
    // The answer comes at the time limit, not when the work would end.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Random deep and wide expressions and large-value function calls (a
/// fixed seed, so a failure repeats): every one is refused with a reason or
/// runs within its limits; none takes the process down. The suite runs 150;
/// `BURNWATCH_SQL_PROPERTY_CASES=5000` runs more.
#[tokio::test]
async fn random_deep_wide_and_large_queries_never_take_the_process_down() {
    use rand::{Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path()).await;
    let limits = QueryLimits {
        timeout_secs: 2.0,
        memory_bytes: 64 << 20,
        max_result_bytes: 8 << 20,
        ..Default::default()
    };
    let cases: usize = std::env::var("BURNWATCH_SQL_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut seen = std::collections::BTreeMap::new();

    /// An integer expression of about `budget` nodes, nested up to `depth`.
    fn int_expr(rng: &mut rand::rngs::StdRng, depth: usize) -> String {
        if depth == 0 || rng.random_bool(0.15) {
            return match rng.random_range(0..4) {
                0 => rng.random_range(0..1000).to_string(),
                1 => "duration_ns".into(),
                2 => "length(name)".into(),
                _ => "cardinality(range(3))".into(),
            };
        }
        let a = int_expr(rng, depth - 1);
        match rng.random_range(0..9) {
            0 => format!("{a} + {}", rng.random_range(0..9)),
            1 => format!("({a}) * 2"),
            2 => format!("abs({a})"),
            3 => format!("-({a})"),
            4 => format!("CAST({a} AS BIGINT)"),
            5 => format!("CASE WHEN {a} > 5 THEN 1 ELSE {a} END"),
            6 => format!("coalesce({a}, 0)"),
            7 => format!("length(repeat('ab', {}))", big(rng)),
            _ => format!("cardinality(array_repeat({a}, {}))", big(rng)),
        }
    }
    /// A count that is usually small and sometimes far past any budget.
    fn big(rng: &mut rand::rngs::StdRng) -> u64 {
        match rng.random_range(0..4) {
            0 => rng.random_range(0..100),
            1 => rng.random_range(0..100_000),
            2 => rng.random_range(0..100_000_000),
            _ => rng.random_range(0..u32::MAX as u64),
        }
    }

    for case in 0..cases {
        let sql = match rng.random_range(0..6) {
            // A deep nest of mixed operators and calls.
            0 | 1 => {
                let depth = rng.random_range(1..400);
                format!(
                    "SELECT {} AS v FROM spans LIMIT 3",
                    int_expr(&mut rng, depth)
                )
            }
            // A long flat chain.
            2 => {
                let op = ["+", "*", "-", "AND", "OR", "||"][rng.random_range(0..6)];
                let n = rng.random_range(10..6000);
                let term = if matches!(op, "AND" | "OR") {
                    "true"
                } else {
                    "1"
                };
                format!("SELECT {term}{}", format!(" {op} {term}").repeat(n))
            }
            // Large values from functions, alone and nested.
            3 => {
                let f = [
                    "repeat('x', N)",
                    "lpad('x', N)",
                    "rpad('y', N, 'ab')",
                    "array_repeat(1, N)",
                    "range(0, N)",
                    "concat(repeat('x', N), repeat('y', N))",
                    "replace(repeat('a', 1000), 'a', repeat('b', N))",
                ][rng.random_range(0..7)];
                let n = big(&mut rng);
                format!(
                    "SELECT length(CAST({} AS VARCHAR)) AS v",
                    f.replace('N', &n.to_string())
                )
            }
            // Wide: many columns, many ORs, many unions.
            4 => {
                let n = rng.random_range(1..300);
                format!(
                    "SELECT count(*) FROM spans WHERE {}",
                    (0..n)
                        .map(|i| format!("duration_ns = {i}"))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                )
            }
            _ => {
                let n = rng.random_range(1..100);
                format!("SELECT 1 AS v{}", " UNION ALL SELECT 2".repeat(n))
            }
        };
        let outcome = match run(&store, &sql, &limits).await {
            Ok(r) => {
                assert!(r.num_rows() <= limits.max_rows);
                "ran"
            }
            Err(QueryError::Invalid(m)) if m.contains("deep") || m.contains("operators") => {
                "too deep"
            }
            Err(QueryError::ResourcesExhausted(_) | QueryError::ResultTooLarge(_)) => "over budget",
            Err(QueryError::Execution(m)) => {
                assert!(
                    !m.contains("stack") && !m.contains("panic"),
                    "case {case}: {m}"
                );
                "failed"
            }
            Err(_) => "refused",
        };
        *seen.entry(outcome).or_insert(0usize) += 1;
    }
    // The generator reaches every limit, and most queries still run.
    for outcome in ["ran", "too deep", "over budget"] {
        assert!(seen.get(outcome).copied().unwrap_or(0) > 0, "{seen:?}");
    }
}
