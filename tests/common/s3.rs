//! moto's S3 server, from the test virtualenv (`scripts/test.sh` installs
//! `moto[server]`; `BURNWATCH_PYTHON` names its interpreter), started on a
//! free loopback port.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "bw-test";

/// moto's S3 server on a free loopback port; killed when dropped.
pub struct S3 {
    pub child: Child,
    pub endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn python() -> PathBuf {
    PathBuf::from(
        std::env::var("BURNWATCH_PYTHON").expect(
            "BURNWATCH_PYTHON names the test virtualenv's python (scripts/test.sh sets it)",
        ),
    )
}

/// A free port for a child process to listen on, picked below the kernel's
/// ephemeral range (32768-60999 on Linux): a port picked inside it can be
/// taken by any outgoing connection before the child binds it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    for attempt in 0u64..1000 {
        seed.write_u64(attempt);
        let port = 20_000 + (seed.finish() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-32000")
}

impl S3 {
    pub fn start() -> S3 {
        let moto = python().with_file_name("moto_server");
        assert!(
            moto.exists(),
            "{} is missing: pip install 'moto[server]' into the test virtualenv",
            moto.display()
        );
        let port = free_port();
        let child = Command::new(&moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let s3 = S3 { child, endpoint };
        let http = reqwest::blocking::Client::new();
        let t = Instant::now();
        while http.get(&s3.endpoint).send().is_err() {
            assert!(t.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        s3
    }

    pub fn create_bucket(&self, name: &str) {
        let r = reqwest::blocking::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Keys under `prefix` (ListObjectsV2).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let body = reqwest::blocking::Client::new()
            .get(format!(
                "{}/{BUCKET}?list-type=2&max-keys=1000&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .unwrap()
            .text()
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// Settings of a client for this server's bucket under `prefix`.
    pub fn storage(&self, prefix: &str, node: &str) -> store::StorageConfig {
        store::StorageConfig {
            url: Some(format!("s3://{BUCKET}/{prefix}")),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            allow_http: Some(true),
            node_id: Some(node.into()),
            lease_secs: Some(30),
            ..Default::default()
        }
    }

    /// `[storage]` settings for this server.
    pub fn config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("storage.toml");
        std::fs::write(
            &path,
            format!(
                "[storage]\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id = \"test\"\n\
                 secret_access_key = \"test\"\nallow_http = true\nlease_secs = 6\n\
                 [store]\nflush_interval_secs = 0.5\n",
                self.endpoint
            ),
        )
        .unwrap();
        path
    }
}
