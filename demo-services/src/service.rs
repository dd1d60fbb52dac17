//! One shop service as a process: `burnwatch demo service <name>`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

use crate::chaos::{self, Chaos};
use crate::db::Db;
use crate::instrument::{self, Client, Instruments};
use crate::services::{self, Ctx};
use crate::telemetry::Telemetry;

/// Flags of `burnwatch demo service`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// Which service: gateway, users, catalog, inventory, cart, orders,
    /// payments or notifications.
    pub name: String,
    /// Listen address [default: 127.0.0.1:<the service's port>; 0 picks a free one].
    #[arg(long, env = "SHOP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// SQLite database file [default: ./data/demo/<name>.sqlite].
    #[arg(long, env = "SHOP_DB")]
    pub db: Option<PathBuf>,
    /// Log filter.
    #[arg(long, env = "SHOP_LOG", default_value = "info")]
    pub log: String,
    /// Stop when standard input closes (set by `burnwatch demo`, so the
    /// services never outlive it).
    #[arg(long, hide = true)]
    pub exit_on_stdin_eof: bool,
}

/// The line a service prints on stdout once it accepts requests.
pub const READY_PREFIX: &str = "shop-service-ready";

/// Environment variable holding the base URL of `service`
/// (`SHOP_PAYMENTS_URL`, ...).
pub fn url_var(service: &str) -> String {
    format!("SHOP_{}_URL", service.to_ascii_uppercase())
}

/// Runs the service until ctrl-c, SIGTERM or (with `--exit-on-stdin-eof`)
/// the end of standard input; then flushes its telemetry.
pub async fn run(args: ServiceArgs) -> anyhow::Result<()> {
    let spec = crate::service(&args.name).with_context(|| {
        format!(
            "unknown service {:?}; the shop has {}",
            args.name,
            crate::SERVICES
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let telemetry = Telemetry::init(spec.name, &args.log)?;
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], spec.port)));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("{}: cannot listen on {listen}", spec.name))?;
    let addr = listener.local_addr()?;

    let urls: HashMap<String, String> = spec
        .calls
        .iter()
        .map(|dep| {
            let default = format!(
                "http://127.0.0.1:{}",
                crate::service(dep).map_or(0, |s| s.port)
            );
            let url = std::env::var(url_var(dep)).unwrap_or(default);
            (dep.to_string(), url.trim_end_matches('/').to_string())
        })
        .collect();
    let inst = Instruments::new(
        spec.name,
        telemetry.tracer.clone(),
        &telemetry.meter,
        addr.port(),
    );
    let chaos = Chaos::default();
    let client = Client::new(inst.clone(), urls, chaos.clone());
    let db_path = args
        .db
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("./data/demo/{}.sqlite", spec.name)));
    let db = Db::open(
        &db_path,
        services::schema(spec.name),
        telemetry.tracer.clone(),
    )
    .with_context(|| format!("{}: cannot open {}", spec.name, db_path.display()))?;
    let ctx = Ctx::new(inst.clone(), client, db, &telemetry.meter);
    let stop = CancellationToken::new();
    let parts = services::build(spec.name, ctx, stop.clone())?;
    let app = parts
        .traced
        .route_layer(from_fn_with_state(chaos.clone(), chaos::inject))
        .route_layer(from_fn_with_state(inst, instrument::server_span))
        .merge(parts.internal)
        .merge(chaos::admin_router(chaos))
        .route("/healthz", get(|| async { "ok" }));

    tracing::info!(service = spec.name, %addr, db = %db_path.display(), "listening");
    println!("{READY_PREFIX} {} http://{addr}", spec.name);
    let exit_on_eof = args.exit_on_stdin_eof;
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                _ = stdin_closed(), if exit_on_eof => {}
            }
        })
        .await;
    stop.cancel();
    tokio::task::spawn_blocking(move || telemetry.shutdown()).await?;
    served.context("HTTP server failed")
}

async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
