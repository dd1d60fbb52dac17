//! `burnwatch ballista scheduler|executor`: a Ballista cluster for
//! distributed SQL over the bucket (see the `distributed` crate).

use std::path::PathBuf;

use anyhow::Context as _;

/// `burnwatch ballista ...`.
#[derive(Debug, clap::Subcommand)]
pub enum BallistaCommand {
    /// The scheduler: plans distributed queries and hands their tasks to
    /// executors (query nodes reach it with `--ballista-url df://host:port`).
    Scheduler {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: distributed::SchedulerArgs,
    },
    /// An executor: runs tasks, reading the bucket's Parquet directly.
    Executor {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        args: distributed::ExecutorArgs,
    },
}

/// What the scheduler and executors share with `serve`: the configuration
/// file and the bucket.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Configuration file (TOML); its `[storage]` table is used.
    #[arg(long, env = "BURNWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// The bucket the query nodes use: `s3://bucket/prefix` or
    /// `file:///abs/path`; endpoint and credentials as for `serve`.
    #[arg(long, env = "BURNWATCH_STORAGE_URL")]
    pub storage_url: Option<String>,
    /// Data directory (the executor's work directory goes under it).
    #[arg(long, env = "BURNWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter.
    #[arg(long, env = "BURNWATCH_LOG", default_value = "info")]
    pub log: String,
}

impl Common {
    fn config(&self) -> anyhow::Result<crate::config::Config> {
        let mut config = match &self.config {
            Some(p) => crate::config::load_file(p)?,
            None => crate::config::Config::default(),
        };
        if let Some(u) = &self.storage_url {
            config.storage.url = Some(u.clone()).filter(|u| !u.trim().is_empty());
        }
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        Ok(config)
    }
}

/// Runs the command until ctrl-c or SIGTERM.
pub async fn run(cmd: BallistaCommand) -> anyhow::Result<()> {
    match cmd {
        BallistaCommand::Scheduler { common, args } => {
            let config = common.config()?;
            let bucket = distributed::Bucket::connect(&config.storage)
                .await
                .map_err(anyhow::Error::msg)
                .context("cannot reach the bucket")?;
            distributed::run_scheduler(
                &args,
                bucket,
                |addr| {
                    println!("burnwatch: Ballista scheduler on df://{addr}");
                },
                crate::serve::shutdown_signal(),
            )
            .await
            .map_err(anyhow::Error::msg)
        }
        BallistaCommand::Executor { common, args } => {
            let config = common.config()?;
            let bucket = distributed::Bucket::connect(&config.storage)
                .await
                .map_err(anyhow::Error::msg)
                .context("cannot reach the bucket")?;
            let work_dir = args.work_dir.clone().unwrap_or_else(|| {
                config
                    .data_dir
                    .join("ballista")
                    .join(format!("{}", args.bind_port))
            });
            println!(
                "burnwatch: Ballista executor on {}:{} (flight), {}:{} (grpc), scheduler {}:{}",
                args.bind_host,
                args.bind_port,
                args.bind_host,
                args.bind_grpc_port,
                args.scheduler_host,
                args.scheduler_port
            );
            distributed::run_executor(&args, bucket, work_dir)
                .await
                .map_err(anyhow::Error::msg)
        }
    }
}
