//! `burnwatch serve`: wires the store, the OTLP receivers and the HTTP side,
//! and shuts them down in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, Role};

/// Sets up `tracing` output with the given filter.
pub fn init_logging(filter: &str) {
    // The scheduler logs every job registration at INFO; keep it quiet unless asked.
    let filter = if filter.contains("tokio_cron_scheduler") {
        filter.to_string()
    } else {
        format!("{filter},tokio_cron_scheduler=warn")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn warn_if_exposed(config: &Config) {
    let open = [config.collector.grpc_addr, config.collector.http_addr]
        .into_iter()
        .filter(|a| !a.ip().is_loopback())
        .collect::<Vec<_>>();
    if !open.is_empty()
        && config.collector.auth_tokens.is_empty()
        && config.collector.auth_sha256.is_empty()
    {
        tracing::warn!(
            addresses = ?open,
            "OTLP receivers listen beyond loopback WITHOUT authentication: anyone who can reach them can write telemetry. \
             Configure [auth] tokens (or collector.auth_tokens / BURNWATCH_INGEST_TOKENS)"
        );
    }
    if !config.http_addr.ip().is_loopback() && config.auth.tokens.is_empty() {
        tracing::warn!(
            address = %config.http_addr,
            "the dashboard and API listen beyond loopback WITHOUT authentication: anyone who can reach them can read all telemetry and silence alerts. \
             Configure [auth] tokens"
        );
    }
}

/// Loads the SLOs from the rules directory and starts their evaluation.
/// No directory: no SLO engine. Invalid files: an error naming file, object
/// and field.
async fn start_slo_engine(
    config: &Config,
    store: &store::Store,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Option<Arc<slo_engine::engine::SloEngine>>> {
    let dir = &config.slo.rules_dir;
    if !dir.is_dir() {
        tracing::warn!(rules_dir = %dir.display(), "no rules directory: SLOs and alerting are off");
        return Ok(None);
    }
    let slos = slo_engine::openslo::load_dir(dir)
        .with_context(|| format!("invalid SLO definitions in {}", dir.display()))?;
    let groups = slo_engine::rules::yaml_files(dir)
        .and_then(|files| slo_engine::rules::load_files(&files))
        .with_context(|| format!("invalid alert rules in {}", dir.display()))?;
    let adjustments = slo_engine::corrections::load_dir(dir)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("invalid budget adjustments in {}", dir.display()))?;
    let mut slo_config = config.slo.clone();
    if slo_config.external_url.is_empty() {
        let scheme = if config.http_tls.is_some() {
            "https"
        } else {
            "http"
        };
        slo_config.external_url = format!("{scheme}://{}", config.http_addr);
    }
    let target = config.state_target("alerts.sqlite")?;
    let shown = target.describe();
    let db = {
        tokio::task::spawn_blocking(move || slo_engine::incidents::open_state(&target))
            .await?
            .with_context(|| format!("cannot open the state database {}", shown))?
    };
    // A name for this process in the evaluator lease: the node id and a
    // random suffix, so two processes never share one.
    let holder = format!("{}:{:08x}", config.storage.node_id(), rand::random::<u32>());
    let engine = slo_engine::engine::SloEngine::open_with_state(
        store.clone(),
        slos,
        groups,
        slo_config,
        db,
        &holder,
    )
    .context("cannot open the incident database")?;
    engine.set_yaml_corrections(adjustments);
    engine.spawn(token.clone(), tracker).await?;
    tracing::info!(
        slos = engine.slos().len(),
        rule_groups = engine.rules().groups().len(),
        rules_dir = %dir.display(),
        interval_secs = config.slo.evaluation_interval_secs,
        "SLO engine running"
    );
    Ok(Some(engine))
}

/// `burnwatch serve --check`: validates what `serve` would load and prints
/// it; an error if the rules directory is missing or any file is invalid.
pub fn check(config: &Config) -> anyhow::Result<()> {
    let dir = &config.slo.rules_dir;
    anyhow::ensure!(
        dir.is_dir(),
        "no rules directory at {} (set --rules-dir or BURNWATCH_RULES_DIR): SLOs and alerting would be off",
        dir.display()
    );
    let slos = slo_engine::openslo::load_dir(dir)
        .with_context(|| format!("invalid SLO definitions in {}", dir.display()))?;
    let groups = slo_engine::rules::yaml_files(dir)
        .and_then(|files| slo_engine::rules::load_files(&files))
        .with_context(|| format!("invalid alert rules in {}", dir.display()))?;
    let adjustments = slo_engine::corrections::load_dir(dir)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("invalid budget adjustments in {}", dir.display()))?;
    let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
    println!("configuration is valid");
    println!("data directory: {}", config.data_dir.display());
    match &config.storage.url {
        Some(url) => println!(
            "storage: {url} (node id {}); the WAL stays in the data directory",
            config.storage.node_id()
        ),
        None => println!("storage: the data directory only"),
    }
    println!(
        "listeners: OTLP/gRPC {}, OTLP/HTTP {}, HTTP {}",
        config.collector.grpc_addr, config.collector.http_addr, config.http_addr
    );
    println!(
        "rules directory: {} ({} SLOs, {} rule groups, {} rules, {} budget adjustments)",
        dir.display(),
        slos.len(),
        groups.len(),
        rules,
        adjustments.len()
    );
    Ok(())
}

/// Opens the compactor's store under node id `compactor`. While another
/// compactor holds that id's lease, waits as a standby and tries again
/// every third of the lease time.
async fn open_compactor(config: &Config) -> anyhow::Result<store::Store> {
    let mut cfg = config.store.clone();
    cfg.role = store::StoreRole::Compactor;
    if let Some(id) = &cfg.storage.node_id
        && id != store::remote::COMPACTOR_NODE
    {
        tracing::warn!(node_id = %id, "the compact role always runs as node id \"compactor\" (its lease is the compaction lease)");
    }
    cfg.storage.node_id = Some(store::remote::COMPACTOR_NODE.into());
    let wait = Duration::from_secs(
        (cfg.storage
            .lease_secs
            .unwrap_or(store::remote::DEFAULT_LEASE_SECS)
            / 3)
        .max(1),
    );
    let mut said = false;
    loop {
        match store::Store::open(cfg.clone()).await {
            Ok(s) => {
                tracing::info!("this node is the active compactor");
                return Ok(s);
            }
            Err(store::Error::LeaseHeld(m)) => {
                if !said {
                    tracing::info!(reason = %m, "another compactor is active; waiting as a standby");
                    said = true;
                }
                tokio::time::sleep(wait).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot open the store in {}",
                    config.data_dir.display()
                )));
            }
        }
    }
}

/// A running control center.
pub struct Server {
    /// Address of the HTTP API and dashboard.
    pub http_addr: std::net::SocketAddr,
    /// Address of the OTLP/gRPC receiver (none on a query node).
    pub grpc_addr: Option<std::net::SocketAddr>,
    store: store::Store,
    token: CancellationToken,
    tracker: TaskTracker,
    ready: Arc<AtomicBool>,
}

/// Runs until `shutdown` resolves, then stops accepting, drains, flushes and closes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let server = start(config).await?;
    shutdown.await;
    server.shutdown().await
}

/// The engine user SQL runs on: `None` for the local one; the Ballista
/// client for `[query] engine = "ballista"` (which needs the bucket).
fn sql_engine(
    config: &Config,
    store: &store::Store,
) -> anyhow::Result<Option<Arc<dyn store::sql::RemoteEngine>>> {
    if config.query.engine != store::sql::QueryEngine::Ballista {
        return Ok(None);
    }
    let url = config.query.ballista_url.as_deref().context(
        "query.engine = \"ballista\" needs query.ballista_url (--ballista-url df://host:50050)",
    )?;
    let remote = store.remote().context(
        "query.engine = \"ballista\" runs SQL on executors that read the bucket: set --storage-url (or storage.url)",
    )?;
    let engine = distributed::BallistaEngine::new(url, Some(remote)).map_err(anyhow::Error::msg)?;
    tracing::info!(scheduler = url, "user SQL runs on the Ballista cluster");
    Ok(Some(Arc::new(engine)))
}

/// Opens the store and starts the receivers and the HTTP side.
pub async fn start(mut config: Config) -> anyhow::Result<Server> {
    // Dashboard sessions live in the state database (beside the incidents),
    // so that a restart does not sign everyone out; a shared one lets every
    // query node honour a session.
    let auth = match web::auth::Auth::new(&config.auth).map_err(anyhow::Error::msg)? {
        Some(a) => {
            let target = config.state_target("sessions.db")?;
            let shown = target.describe();
            let db = {
                tokio::task::spawn_blocking(move || web::auth::open_sessions(&target))
                    .await?
                    .with_context(|| format!("cannot open the sessions database {shown}"))?
            };
            Some(Arc::new(
                a.persist(db, store::now_ns()).map_err(anyhow::Error::msg)?,
            ))
        }
        None => None,
    };
    if let Some(a) = &auth {
        // The OTLP receivers take the tokens that may ingest; with auth on
        // and none of them, nothing could send telemetry.
        let ingest = a.ingest_sha256();
        anyhow::ensure!(
            !ingest.is_empty() || !config.collector.auth_tokens.is_empty(),
            "auth is on, but no token has the ingest or admin role, so nothing could send telemetry: \
             add one (`burnwatch token new --role ingest` prints a token and its config entry)"
        );
        config.collector.auth_sha256.extend(ingest);
        tracing::info!(
            tokens = config.auth.tokens.len(),
            "API and dashboard need a token"
        );
    }
    warn_if_exposed(&config);
    config.collector.connections = config.connections.clone();
    let role = config.cluster.role;
    let token = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut flight_addr = None;
    let store = match role {
        Role::All => store::Store::open(config.store.clone())
            .await
            .with_context(|| format!("cannot open the store in {}", config.data_dir.display()))?,
        Role::Compact => open_compactor(&config).await?,
        Role::Ingest => {
            config.store.role = store::StoreRole::Ingest;
            let listener = tokio::net::TcpListener::bind(config.cluster.flight_addr)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on {} (cluster.flight_addr)",
                        config.cluster.flight_addr
                    )
                })?;
            let bound = listener.local_addr()?;
            config.store.storage.advertise_url = Some(config.cluster.advertised(bound));
            let store = store::Store::open(config.store.clone())
                .await
                .with_context(|| {
                    format!("cannot open the store in {}", config.data_dir.display())
                })?;
            let served = store::flight::serve(store.clone(), listener, token.clone());
            tracker.spawn(async move {
                if let Err(e) = served.await {
                    tracing::error!(error = %e, "the Arrow Flight service stopped");
                }
            });
            flight_addr = Some(bound);
            tracing::info!(flight = %bound, advertised = ?config.store.storage.advertise_url, "serving live rows to query nodes");
            store
        }
        Role::Query => {
            let opts = store::cluster::ClusterOptions {
                ingest_peers: config.cluster.ingest_peers.clone(),
                refresh: Duration::from_secs_f64(config.cluster.refresh_secs),
                peer_timeout: Duration::from_secs_f64(config.cluster.peer_timeout_secs),
                cache_dir: config.data_dir.join("cache"),
            };
            store::Store::open_cluster(&config.storage, opts)
                .await
                .context("cannot open the bucket for the query role")?
        }
    };
    store.spawn_background(token.clone(), &tracker).await?;

    let collector_metrics = Arc::new(collector::CollectorMetrics::default());
    let collector = match role {
        Role::Query | Role::Compact => None,
        Role::All | Role::Ingest => Some(
            collector::Collector::start(
                config.collector.clone(),
                store.clone(),
                collector_metrics.clone(),
                token.clone(),
                &tracker,
            )
            .await?,
        ),
    };

    // One evaluator per cluster's data: ingest nodes leave SLOs to the
    // query role.
    let slo = match role {
        Role::Ingest | Role::Compact => None,
        Role::All | Role::Query => start_slo_engine(&config, &store, &token, &tracker).await?,
    };
    let ready = Arc::new(AtomicBool::new(false));
    let cm = collector_metrics.clone();
    let web_connections = listeners::net::ConnectionStats::new("http");
    let mut connections = vec![web_connections.clone()];
    if let Some(c) = &collector {
        connections.push(c.grpc_connections.clone());
        connections.push(c.http_connections.clone());
    }
    let mut metrics: Vec<web::MetricsSource> = vec![
        Arc::new(crate::process_metrics::collect),
        Arc::new(move |out: &mut exposition::Out<'_>| cm.collect(out)),
        Arc::new(move |out: &mut exposition::Out<'_>| {
            let all: Vec<&listeners::net::ConnectionStats> =
                connections.iter().map(|c| c.as_ref()).collect();
            listeners::net::collect_metrics(&all, out)
        }),
    ];
    if let Some(engine) = slo.clone() {
        metrics.push(Arc::new(move |out: &mut exposition::Out<'_>| {
            engine.collect_metrics(out)
        }));
    }
    let rollups = analytics::rollup::Rollups::with_limit(
        store.clone(),
        config.rollups.cache_bytes,
        config.rollups.max_operations_per_service,
    );
    tracker.spawn(rollups.clone().run(Duration::from_secs(5), token.clone()));
    let r = rollups.clone();
    metrics.push(Arc::new(move |out: &mut exposition::Out<'_>| {
        r.collect_metrics(out)
    }));
    let state = web::WebState {
        store: store.clone(),
        rollups,
        metrics,
        ready: ready.clone(),
        query_limits: config.query.clone(),
        slo,
        auth,
        sql_engine: sql_engine(&config, &store)?,
    };
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    let http_addr = listener.local_addr()?;
    let app = web::app(state);
    let web_token = token.clone();
    let http_scheme = match &config.http_tls {
        Some(files) => {
            let tls = files
                .server_config()
                .context("cannot set up TLS for the HTTP API")?;
            let listener = listeners::tls::TlsListener::new(
                listener,
                tls,
                config.connections.max_connections,
                token.clone(),
                &tracker,
            )?;
            tracker.spawn(listeners::net::serve_http(
                listener,
                app,
                config.connections.clone(),
                web_connections,
                web_token,
            ));
            "https"
        }
        None => {
            tracker.spawn(listeners::net::serve_http(
                listener,
                app,
                config.connections.clone(),
                web_connections,
                web_token,
            ));
            "http"
        }
    };
    ready.store(true, Ordering::Release);
    tracing::info!(
        role = ?role,
        http = %http_addr,
        otlp_grpc = ?collector.as_ref().map(|c| c.grpc_addr),
        otlp_http = ?collector.as_ref().map(|c| c.http_addr),
        data_dir = %config.data_dir.display(),
        "burnwatch is running"
    );
    match &collector {
        Some(c) => println!(
            "burnwatch: HTTP API on {http_scheme}://{http_addr}, OTLP gRPC on {}, OTLP HTTP on {}://{}{}",
            c.grpc_addr,
            if config.collector.tls.is_some() {
                "https"
            } else {
                "http"
            },
            c.http_addr,
            flight_addr
                .map(|a| format!(", Arrow Flight (live rows) on {a}"))
                .unwrap_or_default()
        ),
        None => println!(
            "burnwatch: {} node, HTTP API on {http_scheme}://{http_addr}, reading {}",
            role.name(),
            config.storage.url.as_deref().unwrap_or_default()
        ),
    }
    Ok(Server {
        http_addr,
        grpc_addr: collector.as_ref().map(|c| c.grpc_addr),
        store,
        token,
        tracker,
        ready,
    })
}

impl Server {
    /// Stops accepting, finishes in-flight requests, flushes and closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        tracing::info!("shutting down: no new requests; finishing in-flight ones");
        self.ready.store(false, Ordering::Release);
        self.token.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(30), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within 30 s");
        }
        self.store.close().await.context(
            "final flush failed; the data stays in the WAL and is replayed at the next start",
        )?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}
