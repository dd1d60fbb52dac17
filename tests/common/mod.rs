//! Shared by the demo tests: start `burnwatch demo` on free ports and drive
//! its chaos command.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const EXE: &str = env!("CARGO_BIN_EXE_burnwatch");

/// A running `burnwatch demo`; killed when dropped, so a failed assertion
/// never leaves it (or, through it, its services) running.
pub struct DemoProcess {
    /// The demo process.
    pub child: Child,
    /// Base URL of its HTTP API (`http://127.0.0.1:port`).
    pub api: String,
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `burnwatch demo` on ephemeral ports with its data in `data_dir`,
/// plus `args` and `envs`; returns once it prints the dashboard URL, then
/// keeps echoing its output.
pub fn start_demo(data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> DemoProcess {
    let mut child = Command::new(EXE)
        .args([
            "demo",
            "--http-addr",
            "127.0.0.1:0",
            "--otlp-grpc-addr",
            "127.0.0.1:0",
            "--otlp-http-addr",
            "127.0.0.1:0",
            "--shop-port-base",
            "0",
        ])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("BURNWATCH_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let api = loop {
        let line = lines
            .next()
            .expect("demo exited before it was ready")
            .unwrap();
        println!("{line}");
        if let Some(rest) = line.strip_prefix("burnwatch demo: dashboard ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            println!("{line}");
        }
    });
    DemoProcess { child, api }
}

/// `burnwatch demo chaos payments <args> --data-dir <data_dir>`; must succeed.
pub fn chaos_payments(data_dir: &Path, args: &[&str]) {
    let out = Command::new(EXE)
        .args(["demo", "chaos", "payments"])
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chaos {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
