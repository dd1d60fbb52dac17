//! Builds the dashboard's browser bundle, which the server embeds: the
//! `web-islands` crate compiled to `wasm32-unknown-unknown` with its
//! `hydrate` feature, then `wasm-bindgen --target web`, into `$OUT_DIR/pkg`.
//!
//! Everything comes from crates.io and rustup, so a fresh machine builds it:
//! the wasm target is added with rustup if missing, and `wasm-bindgen-cli`
//! (the version of the `wasm-bindgen` crate in Cargo.lock) is installed
//! with `cargo install` into the build directory if none is found. The wasm
//! build has its own target directory next to the main one
//! (`<target>/wasm-islands`), so it neither waits on nor invalidates the
//! main build. `wasm-opt` runs if it is on the PATH.
//!
//! `BURNWATCH_SKIP_WASM=1` builds without the bundle: pages still render,
//! their islands just stay static.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Must equal the `wasm-bindgen` crate version pinned in islands/Cargo.toml.
const WASM_BINDGEN: &str = "0.2.130";
const TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let islands = manifest.join("islands");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", islands.join("src").display());
    println!(
        "cargo:rerun-if-changed={}",
        islands.join("Cargo.toml").display()
    );
    println!("cargo:rerun-if-env-changed=BURNWATCH_SKIP_WASM");
    println!("cargo::rustc-check-cfg=cfg(burnwatch_wasm)");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let pkg = out_dir.join("pkg");
    std::fs::create_dir_all(&pkg).expect("create $OUT_DIR/pkg");
    if std::env::var_os("BURNWATCH_SKIP_WASM").is_some_and(|v| !v.is_empty() && v != "0") {
        println!(
            "cargo:warning=BURNWATCH_SKIP_WASM is set: building the dashboard without its browser bundle"
        );
        std::fs::write(pkg.join("burnwatch.js"), "").expect("write placeholder");
        std::fs::write(pkg.join("burnwatch_bg.wasm"), "").expect("write placeholder");
        return;
    }
    // $OUT_DIR is <target>/[<triple>/]<profile>/build/web-<hash>/out.
    let mut target_root = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.join("wasm"));
    let host = std::env::var("HOST").unwrap_or_default();
    if !host.is_empty() && target_root.ends_with(&host) {
        target_root.pop();
    }
    let wasm_target = target_root.join("wasm-islands");
    if let Err(e) = build(&islands, &wasm_target, &pkg) {
        panic!(
            "building the dashboard's wasm bundle failed: {e}\n\
             (it needs `rustup target add {TARGET}` and wasm-bindgen-cli {WASM_BINDGEN}, both fetched automatically; \
             set BURNWATCH_SKIP_WASM=1 to build without the bundle)"
        );
    }
    println!("cargo:rustc-cfg=burnwatch_wasm");
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // The outer build's settings are for the host; these must not leak in.
    for v in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        c.env_remove(v);
    }
    c
}

fn run(c: &mut Command, what: &str) -> Result<(), String> {
    let status = c
        .status()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: {status}"))
    }
}

fn ensure_target() -> Result<(), String> {
    let Ok(out) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // not a rustup toolchain: the build will say if the target is missing
    };
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        return Ok(());
    }
    run(
        Command::new("rustup").args(["target", "add", TARGET]),
        "rustup target add",
    )
}

fn version_ok(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(WASM_BINDGEN))
}

fn wasm_bindgen(tools: &Path) -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(p) = std::env::var("BURNWATCH_WASM_BINDGEN") {
        candidates.push(p.into());
    }
    candidates.push(tools.join("bin/wasm-bindgen"));
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        candidates.push(dir.join("wasm-bindgen"));
    }
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(home).join("bin/wasm-bindgen"));
    }
    if let Some(found) = candidates.into_iter().find(|p| version_ok(p)) {
        return Ok(found);
    }
    println!("cargo:warning=installing wasm-bindgen-cli {WASM_BINDGEN} (once, about 2 minutes)");
    run(
        cargo()
            .args([
                "install",
                "wasm-bindgen-cli",
                "--version",
                WASM_BINDGEN,
                "--root",
            ])
            .arg(tools)
            .env("CARGO_TARGET_DIR", tools.join("build")),
        "cargo install wasm-bindgen-cli",
    )?;
    let bin = tools.join("bin/wasm-bindgen");
    if version_ok(&bin) {
        Ok(bin)
    } else {
        Err(format!(
            "{} does not report version {WASM_BINDGEN}",
            bin.display()
        ))
    }
}

fn build(islands: &Path, wasm_target: &Path, pkg: &Path) -> Result<(), String> {
    ensure_target()?;
    let bindgen = wasm_bindgen(&wasm_target.join("tools"))?;
    run(
        cargo()
            .args(["rustc", "--lib", "--release", "--target", TARGET])
            .args(["--features", "hydrate", "--crate-type", "cdylib"])
            .arg("--manifest-path")
            .arg(islands.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", wasm_target)
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "z")
            .env("CARGO_PROFILE_RELEASE_LTO", "true")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
            .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
            .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "false"),
        "cargo rustc (web-islands, wasm32)",
    )?;
    let wasm = wasm_target.join(TARGET).join("release/web_islands.wasm");
    run(
        Command::new(&bindgen)
            .args([
                "--target",
                "web",
                "--no-typescript",
                "--out-name",
                "burnwatch",
            ])
            .arg("--out-dir")
            .arg(pkg)
            .arg(&wasm),
        "wasm-bindgen",
    )?;
    let bg = pkg.join("burnwatch_bg.wasm");
    if Command::new("wasm-opt").arg("--version").output().is_ok() {
        let opt = pkg.join("burnwatch_opt.wasm");
        let ok = Command::new("wasm-opt")
            .args(["-Oz", "--all-features"])
            .arg(&bg)
            .arg("-o")
            .arg(&opt)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            std::fs::rename(&opt, &bg).map_err(|e| format!("wasm-opt output: {e}"))?;
        } else {
            println!("cargo:warning=wasm-opt failed; the bundle is not size-optimized");
        }
    }
    Ok(())
}
