//! The same checks on both backends: SQLite in a temporary directory and a
//! throwaway PostgreSQL server (`statedb::testing`): migrations, values,
//! transactions, unique violations, leases, a reconnect after the server
//! comes back.

use statedb::testing::TestPostgres;
use statedb::{Error, Migration, Result, StateDb, Target, params};

const V1: Migration = Migration {
    version: 1,
    name: "t",
    sqlite: "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT, n INTEGER, b BLOB);",
    postgres: "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v TEXT, n BIGINT, b BYTEA);",
};
const V2: Migration = Migration {
    version: 2,
    name: "unique v",
    sqlite: "CREATE UNIQUE INDEX t_v ON t (v);",
    postgres: "CREATE UNIQUE INDEX t_v ON t (v);",
};

fn exercise(target: &Target) {
    {
        let db = StateDb::open(target).unwrap();
        db.migrate("test", &[V1]).unwrap();
        let id = db
            .query_opt(
                "INSERT INTO t (v, n, b) VALUES (?1, ?2, ?3) RETURNING id",
                params!["a", Some(5i64), &b"xy"[..]],
            )
            .unwrap()
            .unwrap()
            .int(0)
            .unwrap();
        let row = db
            .query_opt("SELECT v, n, b FROM t WHERE id = ?1", params![id])
            .unwrap()
            .unwrap();
        assert_eq!(row.text(0).unwrap(), "a");
        assert_eq!(row.opt_int(1).unwrap(), Some(5));
        assert_eq!(row.blob(2).unwrap(), b"xy");
        let none: Option<i64> = None;
        db.execute("INSERT INTO t (v, n) VALUES (?1, ?2)", params!["n", none])
            .unwrap();
        let row = db
            .query_opt("SELECT n FROM t WHERE v = ?1", params!["n"])
            .unwrap()
            .unwrap();
        assert_eq!(row.opt_int(0).unwrap(), None);
        // A failed transaction leaves nothing behind.
        let r: Result<()> = db.transaction(|c| {
            c.execute("INSERT INTO t (v) VALUES ('b')", &[])?;
            Err(Error::Other("no".into()))
        });
        assert!(r.is_err());
        assert_eq!(db.query("SELECT id FROM t", &[]).unwrap().len(), 2);
    }
    // Reopened: the applied migration is not applied again; the next one is.
    let db = StateDb::open(target).unwrap();
    db.migrate("test", &[V1, V2]).unwrap();
    db.migrate("test", &[V1, V2]).unwrap();
    let e = db
        .execute("INSERT INTO t (v) VALUES ('a')", &[])
        .unwrap_err();
    assert!(e.is_unique_violation(), "{e}");
    // A binary that knows only V1 refuses the newer schema.
    let e = db.migrate("test", &[V1]).unwrap_err().to_string();
    assert!(e.contains("newer than this binary"), "{e}");

    assert!(db.try_lease("eval", "a", 100, 50).unwrap());
    assert!(!db.try_lease("eval", "b", 120, 50).unwrap());
    assert!(db.try_lease("eval", "a", 140, 50).unwrap());
    assert_eq!(db.lease("eval").unwrap(), Some(("a".to_string(), 190)));
    assert!(db.try_lease("eval", "b", 190, 50).unwrap(), "expired");
    assert!(!db.try_lease("eval", "a", 200, 50).unwrap());
    db.release_lease("eval", "b").unwrap();
    assert!(db.try_lease("eval", "a", 201, 50).unwrap(), "released");
}

#[test]
fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    exercise(&Target::Sqlite(dir.path().join("s/state.sqlite")));
}

#[test]
fn postgres() {
    let pg = TestPostgres::start().unwrap();
    let url = pg.database("backends").unwrap();
    exercise(&Target::Postgres(url.clone()));
    // Two nodes: one lease holder at a time, seen by both.
    let a = StateDb::open(&Target::Postgres(url.clone())).unwrap();
    let b = StateDb::open(&Target::Postgres(url)).unwrap();
    assert!(a.try_lease("x", "node-a", 1_000, 100).unwrap());
    assert!(!b.try_lease("x", "node-b", 1_050, 100).unwrap());
    assert_eq!(b.lease("x").unwrap().unwrap().0, "node-a");
}

#[tokio::test(flavor = "current_thread")]
async fn postgres_from_inside_a_runtime_and_after_a_restart() {
    let pg = TestPostgres::start().unwrap();
    let url = pg.database("runtime").unwrap();
    let db = StateDb::open(&Target::Postgres(url.clone())).unwrap();
    db.migrate("test", &[V1]).unwrap();
    db.execute("INSERT INTO t (v) VALUES ('a')", &[]).unwrap();
    // The server goes away: calls fail with a clear error, and work again
    // once a server is back (a new connection is made).
    drop(pg);
    let e = db.query("SELECT v FROM t", &[]).unwrap_err().to_string();
    assert!(e.starts_with("PostgreSQL:"), "{e}");
    let e = db.query("SELECT v FROM t", &[]).unwrap_err().to_string();
    assert!(e.contains("PostgreSQL"), "{e}");
    let wrong = StateDb::open(&Target::Postgres(
        "postgres://burnwatch@127.0.0.1:1/none".into(),
    ))
    .unwrap_err()
    .to_string();
    assert!(wrong.contains("PostgreSQL"), "{wrong}");
}
