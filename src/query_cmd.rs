//! `burnwatch query`: one read-only SQL query, printed as a table, CSV or JSON.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON (the API's result object).
    Json,
}

/// Arguments of `burnwatch query`.
#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    /// The SQL query (tables: spans, logs, metric_points).
    pub sql: String,
    /// Query this data directory directly (read-only; fine while a server runs on it).
    #[arg(long, env = "BURNWATCH_DATA_DIR", conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// Query a running server instead, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: Option<String>,
    /// Query a bucket directly instead (read-only, no server needed), e.g.
    /// `s3://telemetry/burnwatch`: every node's newest manifest version.
    /// Endpoint and credentials from the AWS_* variables (AWS_ENDPOINT_URL,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP).
    #[arg(long, env = "BURNWATCH_STORAGE_URL", conflicts_with_all = ["url", "data_dir"])]
    pub storage_url: Option<String>,
    /// API token for --url (role viewer or more), when the server has auth on.
    #[arg(long, env = "BURNWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Most rows to return.
    #[arg(long, default_value_t = 10_000)]
    pub max_rows: usize,
    /// Where the query runs: `local` (this process) or `ballista` (a
    /// Ballista cluster reading the bucket of --storage-url).
    #[arg(
        long,
        value_enum,
        default_value = "local",
        requires_if("ballista", "storage_url")
    )]
    pub engine: crate::config::EngineArg,
    /// The Ballista scheduler for --engine ballista, `df://host:50050`.
    #[arg(
        long,
        env = "BURNWATCH_BALLISTA_URL",
        required_if_eq("engine", "ballista")
    )]
    pub ballista_url: Option<String>,
    /// Time limit, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
}

fn render(result: &store::sql::QueryResult, format: OutputFormat) -> anyhow::Result<Vec<u8>> {
    Ok(match format {
        OutputFormat::Table => {
            let mut s = arrow::util::pretty::pretty_format_batches(&result.batches)?.to_string();
            s.push('\n');
            s.into_bytes()
        }
        OutputFormat::Csv => {
            web::api::encode(result, web::api::Format::Csv).map_err(anyhow::Error::msg)?
        }
        OutputFormat::Json => {
            let mut v =
                web::api::encode(result, web::api::Format::Json).map_err(anyhow::Error::msg)?;
            v.push(b'\n');
            v
        }
    })
}

/// Runs the command.
pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let limits = store::sql::QueryLimits {
        max_rows: args.max_rows,
        timeout_secs: args.timeout,
        ..Default::default()
    };
    let result = match (&args.url, &args.storage_url) {
        (Some(url), _) => remote(url, args.token.as_deref(), &args.sql, &limits).await?,
        (None, Some(storage_url)) => {
            let store = store::Store::open_bucket(&store::StorageConfig {
                url: Some(storage_url.clone()),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot read {storage_url}"))?;
            match (args.engine, &args.ballista_url) {
                (crate::config::EngineArg::Ballista, Some(url)) => {
                    use store::sql::RemoteEngine as _;
                    distributed::BallistaEngine::new(url, store.remote().map(|r| r.as_ref()))
                        .map_err(anyhow::Error::msg)?
                        .run(&store, &args.sql, &limits)
                        .await?
                }
                _ => store::sql::run(&store, &args.sql, &limits).await?,
            }
        }
        (None, None) => {
            let data_dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("./data"));
            let store = store::Store::open_read_only(store::StoreConfig {
                data_dir: data_dir.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot open {}", data_dir.display()))?;
            store::sql::run(&store, &args.sql, &limits).await?
        }
    };
    let out = render(&result, args.format)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    if result.truncated {
        eprintln!("(truncated at {} rows)", limits.max_rows);
    }
    Ok(())
}

async fn remote(
    url: &str,
    token: Option<&str>,
    sql: &str,
    limits: &store::sql::QueryLimits,
) -> anyhow::Result<store::sql::QueryResult> {
    let started = std::time::Instant::now();
    let endpoint = format!("{}/api/v1/query", url.trim_end_matches('/'));
    let mut req = reqwest::Client::new().post(&endpoint);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .json(&serde_json::json!({ "sql": sql, "format": "arrow", "max_rows": limits.max_rows }))
        .send()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?;
    let status = resp.status();
    let truncated = resp.headers().contains_key("x-burnwatch-truncated");
    let body = resp.bytes().await?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("{status}: {msg}");
    }
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(store::sql::QueryResult {
        schema,
        batches,
        truncated,
        elapsed: started.elapsed(),
    })
}
