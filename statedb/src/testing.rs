//! A throwaway PostgreSQL server for tests: `initdb` into a temporary
//! directory, `postgres` on a free loopback port, stopped and deleted on
//! drop. Uses Debian's `postgresql` package (`/usr/lib/postgresql/<v>/bin`)
//! or `BURNWATCH_PG_BIN`; as root, the server runs as the `postgres` user
//! (initdb refuses root).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; stopped when dropped.
pub struct TestPostgres {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("BURNWATCH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    Err("PostgreSQL is not installed: the tests need its server (Debian: apt-get install postgresql; or set BURNWATCH_PG_BIN to the directory holding initdb and postgres)".into())
}

/// uid and gid of `name` from /etc/passwd.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&name) && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` as a command, run as the `postgres` user when we are root.
fn command(program: &Path, as_user: Option<(u32, u32)>) -> Command {
    match as_user {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl TestPostgres {
    /// Starts a server; the error says what is missing.
    pub fn start() -> Result<TestPostgres, String> {
        let bin = bin_dir()?;
        let as_user = if is_root() {
            Some(user_ids("postgres").ok_or(
                "running as root and there is no `postgres` user to run the server as (apt-get install postgresql creates it)",
            )?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("burnwatch-pg")
            .tempdir()
            .map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = as_user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), as_user)
            .arg("-D")
            .arg(&data)
            .args(["-U", "burnwatch", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log =
            std::fs::File::create(dir.path().join("server.log")).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = as_user {
            let _ = std::os::unix::fs::chown(dir.path().join("server.log"), Some(uid), Some(gid));
        }
        let child = command(&bin.join("postgres"), as_user)
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let mut pg = TestPostgres { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = pg.url("postgres");
            let ok = std::thread::spawn(move || {
                postgres::Client::connect(&url, postgres::NoTls).is_ok()
            })
            .join()
            .unwrap_or(false);
            if ok {
                return Ok(pg);
            }
            if let Ok(Some(status)) = pg.child.try_wait() {
                return Err(format!("postgres exited ({status}): {}", pg.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres did not accept connections in 30 s: {}",
                    pg.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for database `db` as the superuser `burnwatch`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://burnwatch@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates database `name` and returns its URL (one per test keeps tests
    /// apart on one server).
    pub fn database(&self, name: &str) -> Result<String, String> {
        let url = self.url("postgres");
        let sql = format!("CREATE DATABASE \"{name}\"");
        std::thread::spawn(move || {
            let mut c =
                postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
            c.batch_execute(&sql).map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "panicked".to_string())??;
        Ok(self.url(name))
    }

    /// Stops the server at once (SIGKILL): what a crash looks like.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT), then SIGKILL if it lingers.
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}
