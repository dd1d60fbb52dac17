//! Configuration: defaults, then the TOML file, then `BURNWATCH_*` environment
//! variables and command-line flags (clap merges those two; flags win).
//! This is the only place that reads the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The whole configuration file. Every field is optional.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Root of all stored data.
    pub data_dir: PathBuf,
    /// Address of the HTTP API, dashboard, `/metrics`, `/healthz`, `/readyz`.
    pub http_addr: SocketAddr,
    /// TLS on the HTTP API and dashboard listener (PEM certificate and key).
    /// Absent: plain HTTP. With TLS on, the session cookie is `Secure`.
    pub http_tls: Option<listeners::tls::TlsFiles>,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,store=debug`.
    pub log: String,
    /// Connection cap and request-head deadline of every listener.
    pub connections: listeners::net::ConnectionLimits,
    /// Storage engine settings.
    pub store: store::StoreConfig,
    /// Where Parquet files, derived files and manifests live beyond the
    /// data directory (a bucket); unset keeps everything in `data_dir`.
    pub storage: store::StorageConfig,
    /// OTLP receiver settings.
    pub collector: collector::CollectorConfig,
    /// Limits for SQL queries (API and CLI).
    pub query: store::sql::QueryLimits,
    /// SLOs, alerting and notifications.
    pub slo: slo_engine::engine::SloConfig,
    /// RED rollups: cache size and the per-service operation limit.
    pub rollups: analytics::rollup::RollupConfig,
    /// API tokens with roles (ingest, viewer, editor, admin) and dashboard
    /// sessions. No tokens: auth is off.
    pub auth: web::auth::AuthConfig,
    /// The node's role when several nodes share one bucket.
    pub cluster: ClusterConfig,
    /// Where incidents, silences, alert instances and dashboard sessions
    /// live: SQLite under the data directory, or a PostgreSQL shared by the
    /// query nodes.
    pub state: StateConfig,
}

/// `--query-engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineArg {
    /// DataFusion in this process.
    Local,
    /// A Ballista cluster.
    Ballista,
}

impl From<EngineArg> for store::sql::QueryEngine {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Local => store::sql::QueryEngine::Local,
            EngineArg::Ballista => store::sql::QueryEngine::Ballista,
        }
    }
}

/// The `[state]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Empty (the default): SQLite files under `<data_dir>/state`.
    /// `postgres://user:password@host:port/database`: one PostgreSQL
    /// database shared by every query node (same incidents everywhere, one
    /// evaluator elected by a lease). May be `${env:NAME}` or `${file:/path}`.
    pub url: String,
}

impl Config {
    /// Where the state database of `file` (`alerts.sqlite` or `sessions.db`)
    /// is: that SQLite file under `<data_dir>/state`, or the shared
    /// PostgreSQL database of `state.url`.
    pub fn state_target(&self, file: &str) -> anyhow::Result<statedb::Target> {
        statedb::Target::parse(&self.state.url, &self.data_dir.join("state").join(file))
            .map_err(anyhow::Error::msg)
    }
}

/// What a node does when several share one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in one process (the default; a bucket is optional).
    #[default]
    All,
    /// OTLP receivers, WAL, flushes to the bucket, and its rows not yet in
    /// the bucket served to query nodes over Arrow Flight.
    Ingest,
    /// HTTP API, dashboard and SLO evaluation over every node's data.
    Query,
    /// Merges every node's small files into hourly files and applies
    /// retention across the bucket; runs as node id `compactor`, whose
    /// lease lets one compactor act at a time (others wait).
    Compact,
}

/// The `[cluster]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `all`, `ingest`, `query` or `compact`.
    pub role: Role,
    /// Ingest role: where the Arrow Flight service for query nodes listens.
    pub flight_addr: SocketAddr,
    /// Ingest role: the URL query nodes use to reach `flight_addr`, written
    /// into the node's lease [default: `http://<host name>:<port>`, or
    /// `http://<flight_addr>` when it is a specific address].
    pub advertise_url: Option<String>,
    /// Query role: Flight URLs of the ingest nodes [default: those
    /// advertised by the leases in the bucket].
    pub ingest_peers: Vec<String>,
    /// Query role: seconds between refreshes of the view (its freshness).
    pub refresh_secs: f64,
    /// Query role: seconds an ingest node may take to answer before it is
    /// reported missing.
    pub peer_timeout_secs: f64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            role: Role::All,
            flight_addr: SocketAddr::from(([127, 0, 0, 1], 8815)),
            advertise_url: None,
            ingest_peers: Vec::new(),
            refresh_secs: 1.0,
            peer_timeout_secs: 1.0,
        }
    }
}

impl Role {
    /// The role as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Compact => "compact",
        }
    }
}

impl ClusterConfig {
    /// The URL written into an ingest node's lease.
    pub fn advertised(&self, bound: SocketAddr) -> String {
        if let Some(u) = &self.advertise_url {
            return u.clone();
        }
        if bound.ip().is_unspecified() {
            format!("http://{}:{}", store::remote::host_name(), bound.port())
        } else {
            format!("http://{bound}")
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            http_tls: None,
            log: "info".into(),
            connections: listeners::net::ConnectionLimits::default(),
            store: store::StoreConfig::default(),
            storage: store::StorageConfig::default(),
            collector: collector::CollectorConfig::default(),
            query: store::sql::QueryLimits::default(),
            slo: slo_engine::engine::SloConfig::default(),
            rollups: analytics::rollup::RollupConfig::default(),
            auth: web::auth::AuthConfig::default(),
            cluster: ClusterConfig::default(),
            state: StateConfig::default(),
        }
    }
}

/// Flags (and their environment variables) shared by `serve` and `demo`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerFlags {
    /// TOML configuration file.
    #[arg(long, env = "BURNWATCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory [default: ./data].
    #[arg(long, env = "BURNWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP API and dashboard address [default: 127.0.0.1:8080].
    #[arg(long, env = "BURNWATCH_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// OTLP/gRPC address [default: 127.0.0.1:4317].
    #[arg(long, env = "BURNWATCH_OTLP_GRPC_ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP address [default: 127.0.0.1:4318].
    #[arg(long, env = "BURNWATCH_OTLP_HTTP_ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,
    /// Bearer tokens accepted for ingest, comma-separated. Unset: no auth.
    #[arg(long, env = "BURNWATCH_INGEST_TOKENS", value_delimiter = ',')]
    pub ingest_tokens: Option<Vec<String>>,
    /// Log filter, e.g. `info` or `debug,tonic=info`.
    #[arg(long, env = "BURNWATCH_LOG")]
    pub log: Option<String>,
    /// Directory of SLO (OpenSLO) and rule files [default: ./alert-rules].
    #[arg(long, env = "BURNWATCH_RULES_DIR")]
    pub rules_dir: Option<PathBuf>,
    /// Webhooks that receive every alert notification, comma-separated.
    #[arg(long, env = "BURNWATCH_ALERT_WEBHOOKS", value_delimiter = ',')]
    pub alert_webhook: Option<Vec<String>>,
    /// Alertmanagers that receive every alert (`<url>/api/v2/alerts`), comma-separated.
    #[arg(long, env = "BURNWATCH_ALERTMANAGERS", value_delimiter = ',')]
    pub alertmanager: Option<Vec<String>>,
    /// Seconds a new notification group waits before notifying [default: 30].
    #[arg(long, env = "BURNWATCH_GROUP_WAIT")]
    pub group_wait: Option<f64>,
    /// Seconds between notifications of a group about changes [default: 300].
    #[arg(long, env = "BURNWATCH_GROUP_INTERVAL")]
    pub group_interval: Option<f64>,
    /// Seconds between SLO evaluations [default: 30].
    #[arg(long, env = "BURNWATCH_SLO_INTERVAL")]
    pub slo_interval: Option<f64>,
    /// SLO evaluations look at windows ending this many seconds ago, so
    /// batched telemetry is in [default: 10].
    #[arg(long, env = "BURNWATCH_SLO_DELAY")]
    pub slo_delay: Option<f64>,
    /// TLS certificate chain (PEM) for all three listeners (OTLP gRPC, OTLP
    /// HTTP, the API and dashboard); needs --tls-key.
    #[arg(long, env = "BURNWATCH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for all three listeners; needs --tls-cert.
    #[arg(long, env = "BURNWATCH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Object storage for Parquet files and manifests: `s3://bucket/prefix`
    /// or `file:///abs/path` [default: none, everything in --data-dir].
    /// Credentials and endpoint from `[storage]` or the AWS_* variables.
    #[arg(long, env = "BURNWATCH_STORAGE_URL")]
    pub storage_url: Option<String>,
    /// This node's id in the bucket [default: the host name].
    #[arg(long, env = "BURNWATCH_NODE_ID")]
    pub node_id: Option<String>,
    /// What this node does: `all` (default), `ingest`, `query` or
    /// `compact`. The cluster roles need --storage-url.
    #[arg(long, env = "BURNWATCH_ROLE", value_enum)]
    pub role: Option<Role>,
    /// Ingest role: address of the Arrow Flight service for query nodes
    /// [default: 127.0.0.1:8815].
    #[arg(long, env = "BURNWATCH_FLIGHT_ADDR")]
    pub flight_addr: Option<SocketAddr>,
    /// Query role: Flight URLs of the ingest nodes, comma-separated
    /// [default: those advertised in the bucket].
    #[arg(long, env = "BURNWATCH_INGEST_PEERS", value_delimiter = ',')]
    pub ingest_peers: Option<Vec<String>>,
    /// Where user SQL runs: `local` (default) or `ballista` (a Ballista
    /// cluster reading the bucket; needs --ballista-url and --storage-url).
    #[arg(long, env = "BURNWATCH_QUERY_ENGINE", value_enum)]
    pub query_engine: Option<EngineArg>,
    /// The Ballista scheduler for --query-engine ballista, `df://host:50050`.
    #[arg(long, env = "BURNWATCH_BALLISTA_URL")]
    pub ballista_url: Option<String>,
    /// State database: `postgres://user:password@host:port/db` shared by
    /// the query nodes [default: SQLite under --data-dir/state].
    #[arg(long, env = "BURNWATCH_STATE_URL", hide_env_values = true)]
    pub state_url: Option<String>,
    /// Check the configuration and the SLO and rule files, print what
    /// would run, and exit: non-zero if anything is invalid or the rules
    /// directory is missing. Opens no port and writes nothing.
    #[arg(long)]
    pub check: bool,
}

impl ServerFlags {
    /// Loads the file (if any) and applies the flags over it.
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => load_file(path)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(a) = self.http_addr {
            config.http_addr = a;
        }
        if let Some(a) = self.otlp_grpc_addr {
            config.collector.grpc_addr = a;
        }
        if let Some(a) = self.otlp_http_addr {
            config.collector.http_addr = a;
        }
        if let Some(t) = &self.ingest_tokens {
            config.collector.auth_tokens = t.iter().filter(|s| !s.is_empty()).cloned().collect();
        }
        if let (Some(cert_file), Some(key_file)) = (&self.tls_cert, &self.tls_key) {
            let files = listeners::tls::TlsFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            };
            config.collector.tls = Some(files.clone());
            config.http_tls = Some(files);
        }
        if config.http_tls.is_some() {
            // A session cookie over HTTPS never goes out over plain HTTP.
            config.auth.secure_cookie = true;
        }
        if let Some(l) = &self.log {
            config.log = l.clone();
        }
        if let Some(d) = &self.rules_dir {
            config.slo.rules_dir = d.clone();
        }
        if let Some(w) = &self.alert_webhook {
            config.slo.webhook_urls = w.iter().filter(|s| !s.is_empty()).cloned().collect();
        }
        if let Some(a) = &self.alertmanager {
            config.slo.alertmanager_urls = a.iter().filter(|s| !s.is_empty()).cloned().collect();
        }
        if let Some(w) = self.group_wait {
            anyhow::ensure!(
                w.is_finite() && w >= 0.0,
                "--group-wait must be zero or more seconds, got {w}"
            );
            config.slo.group_wait_secs = w;
        }
        if let Some(i) = self.group_interval {
            anyhow::ensure!(
                i.is_finite() && i >= 0.0,
                "--group-interval must be zero or more seconds, got {i}"
            );
            config.slo.group_interval_secs = i;
        }
        if let Some(i) = self.slo_interval {
            anyhow::ensure!(
                i.is_finite() && i >= 0.5,
                "--slo-interval must be at least 0.5 seconds, got {i}"
            );
            config.slo.evaluation_interval_secs = i;
        }
        if let Some(d) = self.slo_delay {
            anyhow::ensure!(
                d.is_finite() && (0.0..=3600.0).contains(&d),
                "--slo-delay must be 0 to 3600 seconds, got {d}"
            );
            config.slo.evaluation_delay_secs = d;
        }
        if let Some(u) = &self.storage_url {
            config.storage.url = Some(u.clone()).filter(|u| !u.trim().is_empty());
        }
        if let Some(n) = &self.node_id {
            config.storage.node_id = Some(n.clone());
        }
        if let Some(r) = self.role {
            config.cluster.role = r;
        }
        if let Some(a) = self.flight_addr {
            config.cluster.flight_addr = a;
        }
        if let Some(p) = &self.ingest_peers {
            config.cluster.ingest_peers = p.iter().filter(|s| !s.is_empty()).cloned().collect();
        }
        if let Some(u) = &self.state_url {
            config.state.url = u.clone();
        }
        if let Some(e) = self.query_engine {
            config.query.engine = e.into();
        }
        if let Some(u) = &self.ballista_url {
            config.query.ballista_url = Some(u.clone()).filter(|u| !u.trim().is_empty());
        }
        if config.query.engine == store::sql::QueryEngine::Ballista {
            let url = config.query.ballista_url.as_deref().ok_or_else(|| {
                anyhow::anyhow!("query.engine = \"ballista\" needs query.ballista_url (--ballista-url df://host:50050)")
            })?;
            distributed::BallistaEngine::new(url, None).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                config.storage.url.is_some(),
                "query.engine = \"ballista\" runs SQL on executors that read the bucket: set --storage-url (or storage.url)"
            );
        }
        if config.cluster.role != Role::All {
            anyhow::ensure!(
                config.storage.url.is_some(),
                "--role {} needs a bucket shared by the nodes: set --storage-url (or storage.url)",
                config.cluster.role.name()
            );
        }
        for (name, v) in [
            ("cluster.refresh_secs", config.cluster.refresh_secs),
            (
                "cluster.peer_timeout_secs",
                config.cluster.peer_timeout_secs,
            ),
        ] {
            anyhow::ensure!(
                v.is_finite() && (0.05..=3600.0).contains(&v),
                "{name} must be between 0.05 and 3600 seconds, got {v}"
            );
        }
        for p in &config.cluster.ingest_peers {
            anyhow::ensure!(
                p.starts_with("http://") || p.starts_with("https://"),
                "ingest peer {p:?} must be a URL starting with http:// or https://"
            );
        }
        resolve_secrets(&mut config)?;
        config.store.data_dir = config.data_dir.clone();
        config.store.storage = config.storage.clone();
        Ok(config)
    }
}

/// Reads the values written as `${env:NAME}` or `${file:PATH}` in the fields
/// that may hold a secret (see `slo_engine::secret`).
fn resolve_secrets(config: &mut Config) -> anyhow::Result<()> {
    use slo_engine::secret::resolve_all;
    resolve_all("slo.webhook_urls", &mut config.slo.webhook_urls).map_err(anyhow::Error::msg)?;
    resolve_all("slo.alertmanager_urls", &mut config.slo.alertmanager_urls)
        .map_err(anyhow::Error::msg)?;
    resolve_all("collector.auth_tokens", &mut config.collector.auth_tokens)
        .map_err(anyhow::Error::msg)?;
    for (name, value) in [
        ("storage.access_key_id", &mut config.storage.access_key_id),
        (
            "storage.secret_access_key",
            &mut config.storage.secret_access_key,
        ),
    ] {
        if let Some(v) = value {
            *v = slo_engine::secret::resolve(v)
                .with_context(|| name.to_string())?
                .into_owned();
        }
    }
    config.state.url = slo_engine::secret::resolve(&config.state.url)
        .context("state.url")?
        .into_owned();
    config.state_target("alerts.sqlite")?;
    for (i, t) in config.auth.tokens.iter_mut().enumerate() {
        t.sha256 = slo_engine::secret::resolve(&t.sha256)
            .with_context(|| format!("auth.tokens[{i}].sha256"))?
            .into_owned();
    }
    anyhow::ensure!(
        (1..=slo_engine::sli::FILE_GROUPS).contains(&config.slo.max_instances_per_slo),
        "slo.max_instances_per_slo = {}: give 1 to {}",
        config.slo.max_instances_per_slo,
        slo_engine::sli::FILE_GROUPS
    );
    for (what, urls) in [
        ("webhook", &config.slo.webhook_urls),
        ("alertmanager", &config.slo.alertmanager_urls),
    ] {
        for u in urls {
            anyhow::ensure!(
                u.starts_with("http://") || u.starts_with("https://"),
                "{what} URL {} must start with http:// or https://",
                slo_engine::secret::redact_url(u)
            );
        }
    }
    Ok(())
}

/// Reads and parses a TOML configuration file.
pub fn load_file(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(
            &path,
            "data_dir = \"/var/lib/bw\"\nhttp_addr = \"127.0.0.1:9000\"\n[store]\nflush_interval_secs = 2.5\n[store.retention_hours]\nspans = 48\n[collector]\nmax_body_bytes = 1024\n",
        )
        .unwrap();
        let flags = ServerFlags {
            config: Some(path.clone()),
            http_addr: Some("127.0.0.1:9001".parse().unwrap()),
            ..Default::default()
        };
        let c = flags.resolve().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/bw"));
        assert_eq!(c.store.data_dir, PathBuf::from("/var/lib/bw"));
        assert_eq!(c.http_addr.port(), 9001);
        assert_eq!(c.store.flush_interval_secs, 2.5);
        assert_eq!(c.store.retention_hours.spans, 48);
        assert_eq!(c.store.retention_hours.logs, 168);
        assert_eq!(c.collector.max_body_bytes, 1024);
        assert_eq!(c.collector.grpc_addr.port(), 4317);

        std::fs::write(&path, "[store]\nflush_intervall = 1\n").unwrap();
        let err = format!("{:#}", load_file(&path).unwrap_err());
        assert!(err.contains("flush_intervall"), "{err}");
    }

    #[test]
    fn storage_settings_from_the_file_flags_and_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s3-secret");
        std::fs::write(&secret, "very-secret\n").unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            format!(
                "[storage]\nurl = \"s3://from-file/x\"\nendpoint = \"http://minio:9000\"\n\
                 access_key_id = \"key\"\nsecret_access_key = \"${{file:{}}}\"\nallow_http = true\n",
                secret.display()
            ),
        )
        .unwrap();
        let flags = ServerFlags {
            config: Some(path.clone()),
            node_id: Some("Ingest_1".into()),
            ..Default::default()
        };
        let c = flags.resolve().unwrap();
        assert_eq!(c.storage.url.as_deref(), Some("s3://from-file/x"));
        assert_eq!(c.storage.secret_access_key.as_deref(), Some("very-secret"));
        assert_eq!(c.storage.node_id(), "ingest-1");
        assert_eq!(
            c.store.storage, c.storage,
            "the store gets the same settings"
        );
        let flags = ServerFlags {
            config: Some(path.clone()),
            storage_url: Some("file:///srv/bucket".into()),
            ..Default::default()
        };
        assert_eq!(
            flags.resolve().unwrap().storage.url.as_deref(),
            Some("file:///srv/bucket")
        );
        // No URL anywhere: the data directory only.
        assert_eq!(Config::default().storage.url, None);
        std::fs::write(&path, "[storage]\nbucket = \"x\"\n").unwrap();
        let err = format!("{:#}", load_file(&path).unwrap_err());
        assert!(err.contains("bucket"), "{err}");
    }

    #[test]
    fn auth_tokens_come_from_the_file_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        let digest = web::auth::sha256_hex("s3cret");
        std::fs::write(
            &path,
            format!(
                "[auth]\nsession_hours = 8\n[[auth.tokens]]\nname = \"ci\"\nrole = \"viewer\"\nsha256 = \"{digest}\"\n"
            ),
        )
        .unwrap();
        let c = load_file(&path).unwrap();
        assert_eq!(c.auth.tokens.len(), 1);
        assert_eq!(c.auth.tokens[0].role, web::auth::Role::Viewer);
        assert_eq!(c.auth.session_hours, 8.0);
        let auth = web::auth::Auth::new(&c.auth).unwrap().unwrap();
        assert_eq!(auth.check_token("s3cret").unwrap().name, "ci");
        std::fs::write(
            &path,
            "[[auth.tokens]]\nname = \"x\"\nrole = \"root\"\nsha256 = \"00\"\n",
        )
        .unwrap();
        let err = format!("{:#}", load_file(&path).unwrap_err());
        assert!(err.contains("root"), "{err}");
    }

    #[test]
    fn secrets_come_from_files_and_env_and_errors_do_not_echo_them() {
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook");
        std::fs::write(&hook, "https://hooks.example.com/services/T0/B0/S3CRET\n").unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "ingest-s3cret").unwrap();
        let path = dir.path().join("b.toml");
        std::fs::write(
            &path,
            format!(
                "[slo]\nwebhook_urls = [\"${{file:{}}}\"]\nalertmanager_urls = [\"${{env:PATH}}\"]\n[collector]\nauth_tokens = [\"${{file:{}}}\"]\n",
                hook.display(),
                token.display()
            ),
        )
        .unwrap();
        let flags = ServerFlags {
            config: Some(path.clone()),
            ..Default::default()
        };
        // PATH is not a URL: refused, without printing it.
        let err = format!("{:#}", flags.resolve().unwrap_err());
        assert!(
            err.contains("alertmanager URL <url> must start with http"),
            "{err}"
        );
        assert!(!err.contains(&std::env::var("PATH").unwrap()), "{err}");

        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("${env:PATH}", "http://127.0.0.1:9093");
        std::fs::write(&path, text).unwrap();
        let c = flags.resolve().unwrap();
        assert_eq!(
            c.slo.webhook_urls,
            ["https://hooks.example.com/services/T0/B0/S3CRET"]
        );
        assert_eq!(c.collector.auth_tokens, ["ingest-s3cret"]);

        std::fs::remove_file(&hook).unwrap();
        let err = format!("{:#}", flags.resolve().unwrap_err());
        assert!(
            err.contains("slo.webhook_urls[0]") && err.contains(&hook.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn defaults_need_no_file() {
        let c = ServerFlags::default().resolve().unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.collector.http_addr.port(), 4318);
        assert!(c.collector.auth_tokens.is_empty());
    }
}
