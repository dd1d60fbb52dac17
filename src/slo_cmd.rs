//! `burnwatch slo status`: every SLO's objective, window, SLI, budget left,
//! burn per alert window and alert state, from a data directory or a
//! running server.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// `burnwatch slo ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SloCommand {
    /// Print each SLO's status.
    Status(StatusArgs),
    /// Replay stored history through the SLOs' alerting: when each tier
    /// would have fired and reset, and what the incident would have done.
    Backtest(BacktestArgs),
    /// Convert Sloth or Pyrra SLO files to OpenSLO files with Prometheus
    /// SLIs, reporting what could not be carried over.
    Import(ImportArgs),
    /// A calendar month of each SLO: attainment, budget used, incidents
    /// with the budget each spent, top bad operations.
    Report(ReportArgs),
    /// Exclude a time range from SLOs (a correction) or declare a
    /// maintenance window (excluded, and alerts held), on a running server.
    Correct(CorrectArgs),
}

/// Arguments of `burnwatch slo correct`.
#[derive(Debug, clap::Args)]
pub struct CorrectArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API token (role editor; viewer for --list).
    #[arg(long, env = "BURNWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Start: RFC 3339 or ns since the epoch.
    #[arg(long)]
    pub from: Option<String>,
    /// End: RFC 3339 or ns since the epoch.
    #[arg(long, conflicts_with = "duration")]
    pub to: Option<String>,
    /// Length from --from, e.g. 2h.
    #[arg(long)]
    pub duration: Option<String>,
    /// Why (required to create or edit).
    #[arg(long)]
    pub reason: Option<String>,
    /// Who (required to create, edit or delete).
    #[arg(long)]
    pub by: Option<String>,
    /// Only this SLO.
    #[arg(long)]
    pub slo: Option<String>,
    /// Only the SLOs of this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only the SLOs with this label (name=value; repeatable).
    #[arg(long)]
    pub label: Vec<String>,
    /// A maintenance window: also hold the alerts while it runs.
    #[arg(long)]
    pub maintenance: bool,
    /// Replace correction ID instead of creating one.
    #[arg(long, conflicts_with_all = ["delete", "list"])]
    pub edit: Option<i64>,
    /// Delete correction ID (with --by).
    #[arg(long, conflicts_with = "list")]
    pub delete: Option<i64>,
    /// List every correction.
    #[arg(long)]
    pub list: bool,
}

/// Arguments of `burnwatch slo report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The month, `YYYY-MM`, in each SLO's time zone [default: the previous month].
    #[arg(long)]
    pub month: Option<String>,
    /// Only this SLO [default: every SLO].
    #[arg(long)]
    pub slo: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "md")]
    pub format: ReportFormat,
    /// Read this data directory (read-only; fine beside a server).
    #[arg(long, env = "BURNWATCH_DATA_DIR", conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// Ask a running server instead, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: Option<String>,
    /// API token for --url (role viewer or more).
    #[arg(long, env = "BURNWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// SLO definitions (with --data-dir) [default: ./alert-rules].
    #[arg(long, env = "BURNWATCH_RULES_DIR", conflicts_with = "url")]
    pub rules_dir: Option<PathBuf>,
}

/// Formats of `burnwatch slo report`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    /// Markdown.
    Md,
    /// CSV: a month row, then a row per incident.
    Csv,
    /// The API's JSON.
    Json,
}

async fn report(args: ReportArgs) -> anyhow::Result<()> {
    use slo_engine::report::{MonthReport, to_csv, to_markdown};
    let mut reports: Vec<MonthReport> = Vec::new();
    match &args.url {
        Some(url) => {
            let base = url.trim_end_matches('/').to_string();
            let client = reqwest::Client::new();
            let get = |endpoint: String| {
                let mut req = client.get(&endpoint);
                if let Some(t) = &args.token {
                    req = req.bearer_auth(t);
                }
                async move {
                    let resp = req
                        .send()
                        .await
                        .with_context(|| format!("cannot reach {endpoint}"))?;
                    let status = resp.status();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    if !status.is_success() {
                        bail!("{status}: {}", body["error"]["message"]);
                    }
                    Ok::<Value, anyhow::Error>(body)
                }
            };
            let names: Vec<String> = match &args.slo {
                Some(n) => vec![n.clone()],
                None => get(format!("{base}/api/v1/slos")).await?["slos"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s["name"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            for n in names {
                let mut endpoint = format!("{base}/api/v1/slos/{n}/report");
                if let Some(m) = &args.month {
                    endpoint.push_str(&format!("?month={m}"));
                }
                reports.push(serde_json::from_value(get(endpoint).await?)?);
            }
        }
        None => {
            let data_dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("./data"));
            let rules = args
                .rules_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("alert-rules"));
            let all = slo_engine::openslo::load_dir(&rules)?;
            let defs: Vec<_> = match &args.slo {
                // A defined SLO or an instance of a grouped one.
                Some(n) => slo_engine::openslo::find_slo(&all, n).into_iter().collect(),
                None => all,
            };
            if defs.is_empty() {
                bail!("no such SLO in {}", rules.display());
            }
            let store = store::Store::open_read_only(store::StoreConfig {
                data_dir: data_dir.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot open {}", data_dir.display()))?;
            // The incidents of a server on this data directory, if any.
            let state = data_dir.join("state").join("alerts.sqlite");
            let incidents = if state.exists() {
                let db = slo_engine::incidents::open_state(&statedb::Target::Sqlite(state))?;
                slo_engine::incidents::Incidents::new(db).list(100_000)?
            } else {
                Vec::new()
            };
            let counter = slo_engine::sli::SliCounter::new(store.clone(), 64 << 20);
            let corrections = offline_corrections(&rules, &data_dir)?;
            let now = chrono::Utc::now()
                .timestamp_nanos_opt()
                .context("clock out of range")?;
            for slo in &defs {
                let month = args.month.clone().unwrap_or_else(|| {
                    slo_engine::report::previous_month(now, slo_engine::report::time_zone(slo))
                });
                reports.push(
                    slo_engine::report::month_report(
                        &store,
                        &counter,
                        slo,
                        &incidents,
                        &corrections,
                        &month,
                        now,
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {e}", slo.name))?,
                );
            }
        }
    }
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        ReportFormat::Md => {
            for r in &reports {
                println!("{}", to_markdown(r));
            }
        }
        ReportFormat::Csv => {
            for (i, r) in reports.iter().enumerate() {
                let csv = to_csv(r);
                // One header for all SLOs.
                let body = if i == 0 {
                    csv.as_str()
                } else {
                    csv.split_once('\n').map_or("", |x| x.1)
                };
                print!("{body}");
            }
        }
    }
    Ok(())
}

/// Arguments of `burnwatch slo import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The tool the files come from.
    #[arg(long, value_enum)]
    pub from: ImportFrom,
    /// Sloth (`prometheus/v1` or `sloth.slok.dev/v1`) or Pyrra
    /// (`pyrra.dev/v1alpha1`) files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write `<name>.yaml` per input file here (e.g. alert-rules)
    /// [default: print to standard output].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The SLO period of Sloth specs, which carry none (Sloth's
    /// `--default-slo-period`).
    #[arg(long, default_value = "30d")]
    pub sloth_period: humantime::Duration,
}

/// Formats `burnwatch slo import` reads.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ImportFrom {
    /// Sloth.
    Sloth,
    /// Pyrra.
    Pyrra,
}

/// `burnwatch slo import`: converts every file, or fails without writing
/// anything when one cannot be converted.
fn import(args: ImportArgs) -> anyhow::Result<()> {
    use slo_engine::import::{Options, Source, convert};
    let source = match args.from {
        ImportFrom::Sloth => Source::Sloth,
        ImportFrom::Pyrra => Source::Pyrra,
    };
    let options = Options {
        sloth_period: *args.sloth_period,
    };
    let mut done = Vec::new();
    for f in &args.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let c = convert(source, f, &text, &options)?;
        done.push((f, c));
    }
    let path_of = |dir: &std::path::Path, f: &std::path::Path| {
        let stem = f
            .file_stem()
            .map_or_else(|| "imported".into(), |s| s.to_string_lossy().into_owned());
        dir.join(format!("{stem}.yaml"))
    };
    if let Some(dir) = &args.out {
        for (f, _) in &done {
            let path = path_of(dir, f);
            if path.exists() {
                bail!("{} exists: nothing was written", path.display());
            }
        }
    }
    for (f, c) in &done {
        for n in &c.notes {
            eprintln!("{}: not carried over: {n}", f.display());
        }
        match &args.out {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let path = path_of(dir, f);
                std::fs::write(&path, &c.yaml)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!(
                    "{}: {} SLO(s) written to {}: {}",
                    f.display(),
                    c.slos.len(),
                    path.display(),
                    c.slos.join(", ")
                );
            }
            None => print!("{}", c.yaml),
        }
    }
    Ok(())
}

/// Arguments of `burnwatch slo backtest`.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The data directory (read-only; fine beside a server).
    #[arg(long, env = "BURNWATCH_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// SLO definitions.
    #[arg(long, env = "BURNWATCH_RULES_DIR", default_value = "alert-rules")]
    pub rules_dir: PathBuf,
    /// Only this SLO [default: every SLO].
    #[arg(long)]
    pub slo: Option<String>,
    /// Start: RFC 3339, ns since the epoch, or a duration before --to (e.g. 24h) [default: 24h].
    #[arg(long, default_value = "24h")]
    pub from: String,
    /// End: RFC 3339 or ns since the epoch [default: now].
    #[arg(long)]
    pub to: Option<String>,
    /// Time between evaluations (e.g. 1m, 5m); each evaluation scans the
    /// SLO's longest window.
    #[arg(long, default_value = "5m")]
    pub step: humantime::Duration,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Aligned text.
    Table,
    /// The API's JSON.
    Json,
}

/// Arguments of `burnwatch slo status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Evaluate over this data directory (read-only; fine beside a server).
    #[arg(long, env = "BURNWATCH_DATA_DIR", conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// Ask a running server instead, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: Option<String>,
    /// API token for --url (role viewer or more), when the server has auth on.
    #[arg(long, env = "BURNWATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// SLO definitions (with --data-dir) [default: ./alert-rules].
    #[arg(long, env = "BURNWATCH_RULES_DIR", conflicts_with = "url")]
    pub rules_dir: Option<PathBuf>,
    /// Evaluation time: RFC 3339 or ns since the epoch [default: now].
    #[arg(long)]
    pub at: Option<String>,
    /// Most instances shown per grouped SLO (with --data-dir), those with
    /// the most events.
    #[arg(long, default_value_t = 500, conflicts_with = "url")]
    pub max_instances: usize,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

fn parse_at(at: &str) -> anyhow::Result<i64> {
    if let Ok(ns) = at.parse::<i64>() {
        return Ok(ns);
    }
    let t = chrono::DateTime::parse_from_rfc3339(at)
        .with_context(|| format!("--at {at:?}: expected RFC 3339 or ns since the epoch"))?;
    t.timestamp_nanos_opt().context("--at is out of range")
}

/// The corrections a server on `data_dir` with `rules` applies: those
/// declared in YAML and those stored in its state database.
fn offline_corrections(
    rules: &std::path::Path,
    data_dir: &std::path::Path,
) -> anyhow::Result<Vec<slo_engine::corrections::Correction>> {
    let mut out = slo_engine::corrections::load_dir(rules).map_err(anyhow::Error::msg)?;
    let state = data_dir.join("state").join("alerts.sqlite");
    if state.exists() {
        let db = slo_engine::incidents::open_state(&statedb::Target::Sqlite(state))?;
        out.extend(slo_engine::corrections::Corrections::new(db).list()?);
    }
    Ok(out)
}

/// `burnwatch slo correct`: creates, lists or deletes corrections and
/// maintenance windows on a running server.
async fn correct(args: CorrectArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    let client = reqwest::Client::new();
    let auth = |r: reqwest::RequestBuilder| match &args.token {
        Some(t) => r.bearer_auth(t),
        None => r,
    };
    let resp = if args.list {
        auth(client.get(format!("{base}/api/v1/corrections")))
            .send()
            .await
    } else if let Some(id) = args.delete {
        let by = args.by.clone().context("--by is required")?;
        auth(client.delete(format!("{base}/api/v1/corrections/{id}")))
            .query(&[("by", by)])
            .send()
            .await
    } else {
        let mut labels = serde_json::Map::new();
        for l in &args.label {
            let (k, v) = l
                .split_once('=')
                .with_context(|| format!("--label {l:?}: expected name=value"))?;
            labels.insert(k.to_string(), Value::from(v));
        }
        let mut scope = serde_json::Map::new();
        if let Some(s) = &args.slo {
            scope.insert("slo".into(), Value::from(s.as_str()));
        }
        if let Some(s) = &args.service {
            scope.insert("service".into(), Value::from(s.as_str()));
        }
        if !labels.is_empty() {
            scope.insert("labels".into(), Value::Object(labels));
        }
        let body = serde_json::json!({
            "kind": if args.maintenance { "maintenance" } else { "correction" },
            "scope": scope,
            "from": args.from.clone().context("--from is required")?,
            "to": args.to,
            "duration": args.duration,
            "reason": args.reason.clone().context("--reason is required")?,
            "createdBy": args.by.clone().context("--by is required")?,
        });
        let body = match body {
            Value::Object(mut m) => {
                m.retain(|_, v| !v.is_null());
                Value::Object(m)
            }
            v => v,
        };
        let req = match args.edit {
            Some(id) => client.put(format!("{base}/api/v1/corrections/{id}")),
            None => client.post(format!("{base}/api/v1/corrections")),
        };
        auth(req).json(&body).send().await
    }
    .with_context(|| format!("cannot reach {base}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{status}: {}", body["error"]["message"]);
    }
    println!("{}", serde_json::to_string_pretty(&body)?);
    Ok(())
}

/// Runs the command.
pub async fn run(cmd: SloCommand) -> anyhow::Result<()> {
    let args = match cmd {
        SloCommand::Status(args) => args,
        SloCommand::Backtest(args) => return backtest(args).await,
        SloCommand::Import(args) => return import(args),
        SloCommand::Report(args) => return report(args).await,
        SloCommand::Correct(args) => return correct(args).await,
    };
    let slos: Value = match &args.url {
        Some(url) => {
            let mut endpoint = format!("{}/api/v1/slos", url.trim_end_matches('/'));
            if let Some(at) = &args.at {
                endpoint.push_str(&format!("?at={}", parse_at(at)?));
            }
            let mut req = reqwest::Client::new().get(&endpoint);
            if let Some(t) = &args.token {
                req = req.bearer_auth(t);
            }
            let resp = req
                .send()
                .await
                .with_context(|| format!("cannot reach {endpoint}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("{status}: {}", body["error"]["message"]);
            }
            body["slos"].clone()
        }
        None => {
            let data_dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("./data"));
            let rules = args
                .rules_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("alert-rules"));
            let defs = slo_engine::openslo::load_dir(&rules)?;
            let store = store::Store::open_read_only(store::StoreConfig {
                data_dir: data_dir.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("cannot open {}", data_dir.display()))?;
            let at = match &args.at {
                Some(at) => parse_at(at)?,
                None => chrono::Utc::now()
                    .timestamp_nanos_opt()
                    .context("clock out of range")?,
            };
            let counter = slo_engine::sli::SliCounter::new(
                store.clone(),
                slo_engine::sli::DEFAULT_CACHE_BYTES,
            );
            let corrections = offline_corrections(&rules, &data_dir)?;
            let mut out = Vec::new();
            for slo in &defs {
                if slo.group_by.is_empty() {
                    out.push(
                        slo_engine::evaluate::evaluate_corrected(&counter, slo, at, &corrections)
                            .await?,
                    );
                } else {
                    // Each instance, worst first.
                    let g = slo_engine::evaluate::evaluate_group(
                        &counter,
                        slo,
                        at,
                        &corrections,
                        args.max_instances,
                    )
                    .await?;
                    if g.over_cap > 0 {
                        eprintln!(
                            "{}: {}{} more values of {} beyond the {} instances shown (--max-instances)",
                            slo.name,
                            if g.saturated { "at least " } else { "" },
                            g.over_cap,
                            slo.group_by.join(", "),
                            g.cap
                        );
                    }
                    out.extend(g.instances);
                }
            }
            serde_json::to_value(out)?
        }
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&slos)?),
        Format::Table => print!("{}", table(&slos)),
    }
    Ok(())
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |f| format!("{:.2}%", f * 100.0))
}

fn burn(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |f| format!("{f:.2}"))
}

fn dur(secs: &Value) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs.as_u64().unwrap_or(0)))
        .to_string()
}

/// Renders statuses as text: one line per SLO, one indented line per tier.
fn table(slos: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let list = slos.as_array().unwrap_or(&empty);
    if list.is_empty() {
        out.push_str("no SLOs\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<24} {:>9} {:>6} {:<22} {:>9} {:>10} {:>9} {:<17}",
        "SLO", "OBJECTIVE", "WINDOW", "SLI", "SLI VALUE", "BUDGET", "EVENTS", "STATE"
    );
    for s in list {
        let _ = writeln!(
            out,
            "{:<24} {:>9} {:>6} {:<22} {:>9} {:>10} {:>9} {:<17}",
            s["name"].as_str().unwrap_or("?"),
            pct(&s["objective"]),
            dur(&s["window_secs"]),
            s["sli_kind"].as_str().unwrap_or("?"),
            pct(&s["sli"]),
            pct(&s["budget_remaining"]),
            s["total"],
            s["state"].as_str().unwrap_or("?"),
        );
        if let Some(n) = s["coverage_note"].as_str() {
            let _ = writeln!(out, "    partial window: {n}");
        }
        for t in s["tiers"].as_array().unwrap_or(&empty) {
            let _ = writeln!(
                out,
                "    {:<6} {:>3}/{:<4} burn {:>8} / {:<8} threshold {:>6}{}",
                t["severity"].as_str().unwrap_or("?"),
                dur(&t["long_secs"]),
                dur(&t["short_secs"]),
                burn(&t["long_burn"]),
                burn(&t["short_burn"]),
                burn(&t["factor"]),
                if t["firing"].as_bool() == Some(true) {
                    "  FIRING"
                } else if t["insufficient_data"].as_bool() == Some(true) {
                    "  (insufficient data)"
                } else {
                    ""
                }
            );
        }
        for w in s["warnings"].as_array().unwrap_or(&empty) {
            let _ = writeln!(out, "    warning: {}", w.as_str().unwrap_or(""));
        }
    }
    out
}

fn when(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

async fn backtest(args: BacktestArgs) -> anyhow::Result<()> {
    let to = match &args.to {
        Some(t) => parse_at(t)?,
        None => chrono::Utc::now()
            .timestamp_nanos_opt()
            .context("clock out of range")?,
    };
    let from = match humantime::parse_duration(&args.from) {
        Ok(d) => to - d.as_nanos() as i64,
        Err(_) => parse_at(&args.from)?,
    };
    let defs = slo_engine::openslo::load_dir(&args.rules_dir)?;
    let defs: Vec<_> = defs
        .into_iter()
        .filter(|s| args.slo.as_ref().is_none_or(|n| *n == s.name))
        .collect();
    if defs.is_empty() {
        bail!("no such SLO in {}", args.rules_dir.display());
    }
    let store = store::Store::open_read_only(store::StoreConfig {
        data_dir: args.data_dir.clone(),
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot open {}", args.data_dir.display()))?;
    let corrections = offline_corrections(&args.rules_dir, &args.data_dir)?;
    let mut all = Vec::new();
    for slo in &defs {
        let b = slo_engine::backtest::run_corrected(
            &store,
            slo,
            from,
            to,
            args.step.as_secs(),
            &corrections,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", slo.name))?;
        all.push(b);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&all)?),
        Format::Table => {
            for b in &all {
                println!(
                    "{}: {} evaluations from {} to {} every {}",
                    b.slo,
                    b.evaluations,
                    when(b.from_ns),
                    when(b.to_ns),
                    humantime::format_duration(std::time::Duration::from_secs(b.step_secs))
                );
                if b.tiers.is_empty() {
                    println!("    no tier fired");
                }
                for t in &b.tiers {
                    println!(
                        "    {:<6} {}/{} fired {}  reset {}  peak burn {:.2}",
                        t.severity,
                        dur(&Value::from(t.long_secs)),
                        dur(&Value::from(t.short_secs)),
                        when(t.fired_at_ns),
                        t.reset_at_ns.map_or("(still firing)".to_string(), when),
                        t.peak_long_burn
                    );
                }
                for e in &b.incidents {
                    println!(
                        "    incident {:<11} at {} -> {} (burn {})",
                        e.event,
                        when(e.at_ns),
                        e.state,
                        e.burn.map_or("-".into(), |b| format!("{b:.2}"))
                    );
                }
            }
        }
    }
    Ok(())
}
