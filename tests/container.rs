//! The container's default command finds the shipped SLOs and rules.
//!
//! There is no Docker engine here, so this is a dry run of what the image
//! does: the Dockerfile's `COPY alert-rules <dir>` and `ENV` lines are
//! applied to a temporary root, docker-compose.yml's command and
//! environment for the `burnwatch` service are taken as written, and the
//! built binary runs that command with `--check`, which loads the
//! configuration and every SLO and rule file and exits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `${NAME:-default}` as compose resolves it with `NAME` unset.
fn compose_value(v: &str) -> String {
    match v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        Some(inner) => inner
            .split_once(":-")
            .map_or(String::new(), |(_, d)| d.to_string()),
        None => v.to_string(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The container's absolute path `p` inside the fake root.
fn inside(fake: &Path, p: &str) -> PathBuf {
    fake.join(p.trim_start_matches('/'))
}

#[test]
fn the_image_default_command_finds_the_shipped_rules() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    // The runtime stage is the last FROM.
    let runtime = dockerfile.rsplit("\nFROM ").next().unwrap();
    let copy_dest = runtime
        .lines()
        .find_map(|l| l.strip_prefix("COPY alert-rules "))
        .expect("the runtime image copies alert-rules/")
        .trim()
        .to_string();
    let mut env: BTreeMap<String, String> = runtime
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let workdir = runtime
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("WORKDIR "))
        .unwrap_or("/")
        .trim()
        .to_string();

    let compose: serde_norway::Value = serde_norway::from_str(
        &std::fs::read_to_string(root().join("docker-compose.yml")).unwrap(),
    )
    .unwrap();
    let service = &compose["services"]["burnwatch"];
    let command: Vec<String> = service["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    if let Some(map) = service["environment"].as_mapping() {
        for (k, v) in map {
            let v = match v {
                serde_norway::Value::String(s) => compose_value(s),
                other => serde_norway::to_string(other).unwrap().trim().to_string(),
            };
            env.insert(k.as_str().unwrap().to_string(), v);
        }
    }
    // A volume over the rules path would replace the shipped files; the
    // default stack must not mount one.
    let volumes = format!("{:?}", service["volumes"]);
    assert!(
        !volumes.contains(&copy_dest),
        "docker-compose.yml mounts over the shipped rules: {volumes}"
    );

    let fake = tempfile::tempdir().unwrap();
    copy_dir(
        &root().join("alert-rules"),
        &inside(fake.path(), &copy_dest),
    );
    let cwd = inside(fake.path(), &workdir);
    std::fs::create_dir_all(&cwd).unwrap();
    // Absolute container paths live under the fake root.
    for key in [
        "BURNWATCH_RULES_DIR",
        "BURNWATCH_DATA_DIR",
        "BURNWATCH_CONFIG",
    ] {
        if let Some(v) = env.get_mut(key)
            && v.starts_with('/')
        {
            *v = inside(fake.path(), v).display().to_string();
        }
    }
    let run = |env: &BTreeMap<String, String>| {
        Command::new(env!("CARGO_BIN_EXE_burnwatch"))
            .args(&command)
            .arg("--check")
            .current_dir(&cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .output()
            .unwrap()
    };
    let out = run(&env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let shipped_slos = std::fs::read_dir(root().join("alert-rules"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("kind: SLO")))
        .count();
    assert!(shipped_slos > 0);
    assert!(
        stdout.contains(&format!(
            "rules directory: {} (",
            inside(fake.path(), &copy_dest).display()
        )),
        "{stdout}"
    );
    let slos: usize = stdout
        .split(" (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(slos >= shipped_slos, "{stdout}");
    assert!(!stdout.contains(" 0 rule groups"), "{stdout}");

    // Without the rules the check fails and says why.
    std::fs::remove_dir_all(inside(fake.path(), &copy_dest)).unwrap();
    let out = run(&env);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no rules directory"), "{stderr}");
}

/// An error ends the process with one line of causes and exit code 1,
/// never a backtrace (the operator reads it), even with RUST_BACKTRACE set.
#[test]
fn errors_are_one_line_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_burnwatch"))
        .args(["serve", "--check", "--rules-dir"])
        .arg(dir.path().join("missing"))
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("burnwatch: error: no rules directory"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
}
