//! `burnwatch demo`: the control center, the eight shop services and the
//! load generator in one command; plus `demo service|load|chaos|scenario`.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Subcommand;
use demo_services::load::LoadArgs;
use demo_services::shop::{Shop, ShopOptions};
use tokio_util::sync::CancellationToken;

use crate::config::ServerFlags;
use crate::serve;

/// `burnwatch demo` and its subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub command: Option<DemoCommand>,
    #[command(flatten)]
    pub server: ServerFlags,
    #[command(flatten)]
    pub run: DemoRunFlags,
}

/// Flags of the all-in-one demo.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoRunFlags {
    /// First port of the shop's services (gateway on it, the others after);
    /// 0 picks free ports.
    #[arg(long, default_value_t = 9100)]
    pub shop_port_base: u16,
    /// Do not start the load generator.
    #[arg(long)]
    pub no_load: bool,
    /// Console log filter for the shop's services (their logs always go to
    /// Burnwatch over OTLP; `info` also prints them here).
    #[arg(long, default_value = "off")]
    pub shop_log: String,
    #[command(flatten)]
    pub load: demo_services::load::LoadShape,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Run one shop service (what `burnwatch demo` starts eight of; also
    /// the container command in docker-compose.yml).
    Service(demo_services::service::ServiceArgs),
    /// Run the shop's eight services and the load generator against
    /// Burnwatch running elsewhere (e.g. a cluster's ingest nodes): the
    /// services take turns over the given OTLP/gRPC endpoints.
    Shop(ShopArgs),
    /// Run the load generator against a running shop.
    Load(LoadArgs),
    /// Inject or clear faults in a running shop service.
    Chaos(demo_services::control::ChaosArgs),
    /// Play a chaos scenario file (see demo-services/scenarios/).
    Scenario(demo_services::control::ScenarioArgs),
}

fn loopback_if_unspecified(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// The load generator against `shop`'s gateway (unless `flags.no_load`).
fn start_load(
    gateway: &str,
    flags: &DemoRunFlags,
    stop: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    (!flags.no_load).then(|| {
        let args = LoadArgs {
            target: gateway.to_string(),
            duration: None,
            shape: flags.load.clone(),
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = demo_services::load::run(args, stop).await {
                tracing::error!(error = %e, "load generator failed");
            }
        })
    })
}

/// Waits for ctrl-c, SIGTERM or a shop service exiting; then stops the
/// load and the shop (its services flush their last telemetry).
async fn run_until_stopped(
    mut shop: Shop,
    load: Option<tokio::task::JoinHandle<()>>,
    stop_load: CancellationToken,
) {
    let mut check = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = serve::shutdown_signal() => break,
            _ = check.tick() => {
                if let Some((name, status)) = shop.exited() {
                    tracing::error!(service = name, %status, "a shop service exited; stopping");
                    break;
                }
            }
        }
    }
    stop_load.cancel();
    if let Some(load) = load {
        let _ = load.await;
    }
    shop.stop().await;
}

/// `burnwatch demo shop`.
#[derive(Debug, clap::Args)]
pub struct ShopArgs {
    /// OTLP/gRPC endpoint(s) of the control center, e.g.
    /// http://127.0.0.1:4317; repeat (or separate with commas) to spread the
    /// services over several ingest nodes.
    #[arg(long = "otlp-endpoint", required = true, value_delimiter = ',')]
    pub otlp_endpoints: Vec<String>,
    /// `authorization=Bearer <token>` when the ingest nodes have tokens.
    #[arg(long, env = "BURNWATCH_SHOP_OTLP_HEADERS", hide_env_values = true)]
    pub otlp_headers: Option<String>,
    /// Where the services' databases and `demo/shop.json` go (so that
    /// `burnwatch demo chaos --data-dir` finds them).
    #[arg(long, default_value = "./data")]
    pub data_dir: std::path::PathBuf,
    #[command(flatten)]
    pub run: DemoRunFlags,
}

/// The shop and the load generator only, until ctrl-c or SIGTERM.
pub async fn run_shop(args: ShopArgs) -> anyhow::Result<()> {
    let opts = ShopOptions {
        program: std::env::current_exe().context("cannot find the burnwatch executable")?,
        dir: args.data_dir.join("demo"),
        port_base: (args.run.shop_port_base != 0).then_some(args.run.shop_port_base),
        otlp_endpoints: args.otlp_endpoints.clone(),
        otlp_headers: args.otlp_headers.clone(),
        log: args.run.shop_log.clone(),
    };
    let shop = Shop::start(&opts)
        .await
        .context("the demo shop did not start")?;
    let gateway = shop.urls["gateway"].clone();
    let stop_load = CancellationToken::new();
    let load = start_load(&gateway, &args.run, &stop_load);
    println!(
        "burnwatch demo shop: gateway {gateway}, exporting to {}",
        args.otlp_endpoints.join(", ")
    );
    run_until_stopped(shop, load, stop_load).await;
    Ok(())
}

/// Everything at once, until ctrl-c or SIGTERM.
pub async fn run_all(server_flags: &ServerFlags, flags: DemoRunFlags) -> anyhow::Result<()> {
    let config = server_flags.resolve()?;
    let data_dir = config.data_dir.clone();
    let tls = config.collector.tls.is_some();
    let token = config.collector.auth_tokens.first().cloned();
    let server = serve::start(config).await?;

    let endpoint = format!(
        "{}://{}",
        if tls { "https" } else { "http" },
        loopback_if_unspecified(server.grpc_addr.context("the demo runs the all role")?)
    );
    let opts = ShopOptions {
        program: std::env::current_exe().context("cannot find the burnwatch executable")?,
        dir: data_dir.join("demo"),
        port_base: (flags.shop_port_base != 0).then_some(flags.shop_port_base),
        otlp_endpoints: vec![endpoint],
        otlp_headers: token.map(|t| format!("authorization=Bearer {t}")),
        log: flags.shop_log.clone(),
    };
    let shop = match Shop::start(&opts).await {
        Ok(shop) => shop,
        Err(e) => {
            let _ = server.shutdown().await;
            return Err(e.context("the demo shop did not start"));
        }
    };
    let gateway = shop.urls["gateway"].clone();
    let stop_load = CancellationToken::new();
    let load = start_load(&gateway, &flags, &stop_load);
    println!(
        "burnwatch demo: dashboard http://{} | shop gateway {gateway} | services: {}",
        loopback_if_unspecified(server.http_addr),
        shop.urls
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "burnwatch demo: try `burnwatch demo chaos payments --error-rate 0.5 --for 10m --data-dir {}`; ctrl-c stops everything",
        data_dir.display()
    );
    // The services flush their last telemetry into the still-running collector.
    run_until_stopped(shop, load, stop_load).await;
    println!("burnwatch demo: stopped the shop; stopping the control center");
    server.shutdown().await
}

/// Dispatches `burnwatch demo ...`.
pub fn main(args: DemoArgs) -> anyhow::Result<()> {
    let rt = crate::runtime()?;
    match args.command {
        None => {
            let config = args.server.resolve()?;
            serve::init_logging(&config.log);
            rt.block_on(run_all(&args.server, args.run))
        }
        // The service installs its own subscriber (stderr + OTLP logs).
        Some(DemoCommand::Service(a)) => rt.block_on(demo_services::service::run(a)),
        Some(DemoCommand::Shop(a)) => {
            serve::init_logging("warn");
            rt.block_on(run_shop(a))
        }
        Some(DemoCommand::Load(a)) => {
            serve::init_logging("warn");
            rt.block_on(async move {
                let stop = CancellationToken::new();
                let s = stop.clone();
                tokio::spawn(async move {
                    serve::shutdown_signal().await;
                    s.cancel();
                });
                demo_services::load::run(a, stop).await.map(|_| ())
            })
        }
        Some(DemoCommand::Chaos(a)) => {
            serve::init_logging("warn");
            rt.block_on(demo_services::control::chaos(a))
        }
        Some(DemoCommand::Scenario(a)) => {
            serve::init_logging("warn");
            rt.block_on(demo_services::control::scenario(a))
        }
    }
}
