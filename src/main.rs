//! The `burnwatch` binary: a thin CLI over the workspace crates.

// jemalloc: less fragmentation than glibc malloc across the runtime's
// threads, so resident memory tracks live data.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod ballista_cmd;
mod config;
mod demo;
mod process_metrics;
mod query_cmd;
mod rules_cmd;
mod serve;
mod slo_cmd;

use clap::{Parser, Subcommand};

/// Burnwatch: OTLP-native observability and SLO control center.
#[derive(Debug, Parser)]
#[command(name = "burnwatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control center: OTLP receivers, storage, HTTP API.
    Serve(Box<config::ServerFlags>),
    /// Run the demo: the control center, the demo shop's eight services and
    /// a load generator; `demo chaos|scenario|load|service` drive the parts.
    Demo(Box<demo::DemoArgs>),
    /// SLO status: budgets, burn rates, alert states.
    #[command(subcommand)]
    Slo(slo_cmd::SloCommand),
    /// Run one read-only SQL query against a data directory (also while a
    /// server runs on it) or a running server.
    Query(query_cmd::QueryArgs),
    /// Check SLO and alert rule files; run rule unit tests.
    #[command(subcommand)]
    Rules(rules_cmd::RulesCommand),
    /// API tokens: make a new one, or hash one for the configuration.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Distributed SQL: a Ballista scheduler or executor over the bucket.
    #[command(subcommand)]
    Ballista(ballista_cmd::BallistaCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new random token and the `[[auth.tokens]]` entry that
    /// configures it (only its SHA-256 goes into the configuration).
    New {
        /// `ingest`, `viewer`, `editor` or `admin`.
        #[arg(long)]
        role: String,
        /// Who or what holds it.
        #[arg(long, default_value = "token")]
        name: String,
    },
    /// Read a token from standard input and print its SHA-256 (hex).
    Hash,
}

fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::New { role, name } => {
            let role: web::auth::Role =
                serde_json::from_value(serde_json::Value::String(role.clone())).map_err(|_| {
                    anyhow::anyhow!("role {role:?}: use ingest, viewer, editor or admin")
                })?;
            let t = web::auth::new_token();
            println!("token (give it to its holder; it is not stored anywhere): {t}\n");
            println!(
                "[[auth.tokens]]\nname = {:?}\nrole = \"{}\"\nsha256 = \"{}\"",
                name,
                role.as_str(),
                web::auth::sha256_hex(&t)
            );
        }
        TokenCommand::Hash => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            anyhow::ensure!(!line.trim().is_empty(), "no token on standard input");
            println!("{}", web::auth::sha256_hex(line.trim()));
        }
    }
    Ok(())
}

/// Runs the command; an error is printed as one line of causes (never a
/// backtrace: an operator reads it, e.g. "final flush failed; the data stays
/// in the WAL ...: No space left on device") and the exit code is 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("burnwatch: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(flags) => {
            let config = flags.resolve()?;
            if flags.check {
                return serve::check(&config);
            }
            serve::init_logging(&config.log);
            runtime()?.block_on(serve::run(config, serve::shutdown_signal()))
        }
        Command::Demo(args) => demo::main(*args),
        Command::Slo(cmd) => {
            serve::init_logging("warn");
            runtime()?.block_on(slo_cmd::run(cmd))
        }
        Command::Query(args) => {
            serve::init_logging("warn");
            runtime()?.block_on(query_cmd::run(args))
        }
        Command::Rules(cmd) => {
            serve::init_logging("warn");
            runtime()?.block_on(rules_cmd::run(cmd))
        }
        Command::Token(cmd) => token(cmd),
        Command::Ballista(cmd) => {
            let log = match &cmd {
                ballista_cmd::BallistaCommand::Scheduler { common, .. }
                | ballista_cmd::BallistaCommand::Executor { common, .. } => common.log.clone(),
            };
            serve::init_logging(&log);
            runtime()?.block_on(ballista_cmd::run(cmd))
        }
    }
}

/// The multi-threaded Tokio runtime every command runs on.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
