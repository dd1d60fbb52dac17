//! `burnwatch rules check FILES` and `burnwatch rules test FILES`: validate
//! SLO and alert rule files, and run rule unit tests (promtool-like), so
//! users can check their rules in CI.

use std::path::PathBuf;

use anyhow::bail;

/// `burnwatch rules ...`.
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Validate OpenSLO and alert rule files (together, so references
    /// between them resolve); exit status 1 on the first error.
    Check {
        /// YAML files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run rule unit test files (see `slo_engine::rules::unit_tests`); exit status
    /// 1 if any test fails.
    Test {
        /// Test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Runs the command.
pub async fn run(cmd: RulesCommand) -> anyhow::Result<()> {
    match cmd {
        RulesCommand::Check { files } => {
            let slos = slo_engine::openslo::load_files(&files)?;
            let groups = slo_engine::rules::load_files(&files)?;
            for s in &slos {
                for w in &s.warnings {
                    println!("warning: SLO {}: {w}", s.name);
                }
            }
            let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
            println!(
                "OK: {} file(s), {} SLO(s), {} rule group(s) with {rules} alert rule(s)",
                files.len(),
                slos.len(),
                groups.len()
            );
            Ok(())
        }
        RulesCommand::Test { files } => {
            let mut failed = 0;
            for f in &files {
                println!("{}:", f.display());
                let report = match slo_engine::rules::unit_tests::run_file(f).await {
                    Ok(r) => r,
                    Err(e) => {
                        println!("  ERROR {e}");
                        failed += 1;
                        continue;
                    }
                };
                for name in &report.passed {
                    println!("  PASS {name}");
                }
                for (name, problems) in &report.failed {
                    println!("  FAIL {name}");
                    for p in problems {
                        println!("    {p}");
                    }
                }
                failed += report.failed.len();
            }
            if failed > 0 {
                bail!("{failed} rule test(s) failed");
            }
            println!("all rule tests passed");
            Ok(())
        }
    }
}
