//! Chaos from the command line: `burnwatch demo chaos <service> ...` talks to
//! the service's admin endpoint; `burnwatch demo scenario <file>` plays a
//! timed list of faults from YAML (see `demo-services/scenarios/`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use crate::chaos::Fault;

/// Where to find the shop's services.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ShopLocation {
    /// Data directory of a running `burnwatch demo` (its `demo/shop.json`
    /// lists the services' addresses).
    #[arg(long, env = "BURNWATCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Base URL of the service, overriding every other source.
    #[arg(long)]
    pub url: Option<String>,
}

impl ShopLocation {
    /// Base URL of `service`: `--url`, else `SHOP_<NAME>_URL`, else the
    /// running demo's `shop.json`, else the service's default port.
    pub fn url(&self, service: &str) -> anyhow::Result<String> {
        let spec =
            crate::service(service).with_context(|| format!("unknown service {service:?}"))?;
        if let Some(u) = &self.url {
            return Ok(u.trim_end_matches('/').to_string());
        }
        if let Ok(u) = std::env::var(crate::service::url_var(service)) {
            return Ok(u.trim_end_matches('/').to_string());
        }
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./data"));
        if let Some(urls) = crate::shop::read_urls(&dir)?
            && let Some(u) = urls.get(service)
        {
            return Ok(u.clone());
        }
        Ok(format!("http://127.0.0.1:{}", spec.port))
    }
}

/// Flags of `burnwatch demo chaos`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// The service to disturb.
    pub service: String,
    /// Fraction of requests answered 500, 0..1.
    #[arg(long)]
    pub error_rate: Option<f64>,
    /// Added latency per request, e.g. `300ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// Extra random latency up to this, e.g. `100ms`.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub jitter: Option<Duration>,
    /// Answer every request 503.
    #[arg(long)]
    pub outage: bool,
    /// Only this route: `"POST /charges"` or `/charges`.
    #[arg(long)]
    pub route: Option<String>,
    /// Slow calls to a dependency: `inventory=500ms`.
    #[arg(long, value_name = "SERVICE=DELAY")]
    pub slow_dependency: Option<String>,
    /// How long the fault lasts, e.g. `10m` [default: until cleared].
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Remove every fault from the service.
    #[arg(long, conflicts_with_all = ["error_rate", "latency", "jitter", "outage", "slow_dependency", "duration", "route"])]
    pub clear: bool,
    #[command(flatten)]
    pub shop: ShopLocation,
}

impl ChaosArgs {
    /// The fault these flags describe.
    pub fn fault(&self) -> anyhow::Result<Fault> {
        let (slow_dependency, dependency_latency_ms) = match &self.slow_dependency {
            None => (None, 0),
            Some(s) => {
                let (svc, d) = s.split_once('=').with_context(|| {
                    format!(
                        "--slow-dependency wants SERVICE=DELAY (e.g. inventory=500ms), got {s:?}"
                    )
                })?;
                let d = humantime::parse_duration(d)
                    .with_context(|| format!("bad delay in --slow-dependency {s:?}"))?;
                (Some(svc.to_string()), d.as_millis() as u64)
            }
        };
        let fault = Fault {
            route: self.route.clone(),
            error_rate: self.error_rate.unwrap_or(0.0),
            latency_ms: self.latency.map_or(0, |d| d.as_millis() as u64),
            jitter_ms: self.jitter.map_or(0, |d| d.as_millis() as u64),
            outage: self.outage,
            slow_dependency,
            dependency_latency_ms,
            for_secs: self.duration.map(|d| d.as_secs_f64()),
            expires_at_ms: None,
        };
        anyhow::ensure!(
            fault
                != Fault {
                    route: fault.route.clone(),
                    for_secs: fault.for_secs,
                    ..Fault::default()
                },
            "nothing to inject: give --error-rate, --latency, --outage or --slow-dependency (or --clear)"
        );
        fault.validate().map_err(anyhow::Error::msg)?;
        Ok(fault)
    }
}

/// Sets (or clears) a fault on a service; returns the service's answer.
pub async fn apply(base: &str, fault: Option<&Fault>) -> anyhow::Result<serde_json::Value> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let url = format!("{base}/admin/chaos");
    let req = match fault {
        Some(f) => http.put(&url).json(f),
        None => http.delete(&url),
    };
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}; is the shop running?"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {body}");
    Ok(serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

/// `burnwatch demo chaos`.
pub async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    let base = args.shop.url(&args.service)?;
    if args.clear {
        apply(&base, None).await?;
        println!("{}: faults cleared", args.service);
    } else {
        let fault = args.fault()?;
        let answer = apply(&base, Some(&fault)).await?;
        println!("{}: {}", args.service, answer["fault"]);
    }
    Ok(())
}

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What it demonstrates.
    #[serde(default)]
    pub description: String,
    /// Steps, in time order.
    pub steps: Vec<Step>,
}

/// One step of a scenario.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Offset from the scenario start, e.g. `2m`.
    #[serde(default, with = "humantime_serde_opt")]
    pub at: Option<Duration>,
    /// Target service.
    pub service: String,
    /// Fault to set (absent with `clear: true`).
    #[serde(default)]
    pub fault: Option<Fault>,
    /// Remove the service's faults.
    #[serde(default)]
    pub clear: bool,
}

mod humantime_serde_opt {
    use serde::Deserialize as _;
    use std::time::Duration;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Reads and checks a scenario file.
pub fn load_scenario(path: &Path) -> anyhow::Result<Scenario> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let s: Scenario = serde_norway::from_str(&text)
        .with_context(|| format!("invalid scenario {}", path.display()))?;
    let mut last = Duration::ZERO;
    for (i, step) in s.steps.iter().enumerate() {
        let at = step.at.unwrap_or(last);
        anyhow::ensure!(at >= last, "step {i}: `at` goes back in time");
        last = at;
        anyhow::ensure!(
            crate::service(&step.service).is_some(),
            "step {i}: unknown service {:?}",
            step.service
        );
        match (&step.fault, step.clear) {
            (Some(f), false) => f.validate().map_err(|e| anyhow::anyhow!("step {i}: {e}"))?,
            (None, true) => {}
            _ => anyhow::bail!("step {i}: give either `fault` or `clear: true`"),
        }
    }
    Ok(s)
}

/// Flags of `burnwatch demo scenario`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScenarioArgs {
    /// Scenario file (YAML).
    pub file: PathBuf,
    #[command(flatten)]
    pub shop: ShopLocation,
}

/// `burnwatch demo scenario`: plays the steps in real time.
pub async fn scenario(args: ScenarioArgs) -> anyhow::Result<()> {
    let s = load_scenario(&args.file)?;
    println!("scenario {}: {}", s.name, s.description.trim());
    let start = tokio::time::Instant::now();
    for step in &s.steps {
        if let Some(at) = step.at {
            tokio::time::sleep_until(start + at).await;
        }
        let base = args.shop.url(&step.service)?;
        let elapsed = humantime::format_duration(Duration::from_secs(start.elapsed().as_secs()));
        if step.clear {
            apply(&base, None).await?;
            println!("[{elapsed}] {}: faults cleared", step.service);
        } else if let Some(f) = &step.fault {
            let answer = apply(&base, Some(f)).await?;
            println!("[{elapsed}] {}: {}", step.service, answer["fault"]);
        }
    }
    println!("scenario {} done", s.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_scenarios_are_valid() {
        let dir = Path::new(
            &std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
        )
        .join("scenarios");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let s = load_scenario(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            assert!(!s.steps.is_empty());
            n += 1;
        }
        assert!(n >= 2, "expected scenario files in {}", dir.display());
    }

    #[test]
    fn bad_scenarios_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, "name: x\nsteps:\n  - service: bank\n    clear: true\n").unwrap();
        let e = format!("{:#}", load_scenario(&p).unwrap_err());
        assert!(e.contains("unknown service \"bank\""), "{e}");
        std::fs::write(
            &p,
            "name: x\nsteps:\n  - service: payments\n    fault: {error_rate: 2}\n",
        )
        .unwrap();
        let e = format!("{:#}", load_scenario(&p).unwrap_err());
        assert!(e.contains("error_rate"), "{e}");
        std::fs::write(&p, "name: x\nsteps:\n  - at: 5m\n    service: payments\n    clear: true\n  - at: 1m\n    service: payments\n    clear: true\n").unwrap();
        let e = format!("{:#}", load_scenario(&p).unwrap_err());
        assert!(e.contains("back in time"), "{e}");
    }

    #[test]
    fn chaos_flags_make_a_fault() {
        let args = ChaosArgs {
            service: "payments".into(),
            error_rate: Some(0.5),
            latency: None,
            jitter: None,
            outage: false,
            route: Some("POST /charges".into()),
            slow_dependency: None,
            duration: Some(Duration::from_secs(600)),
            clear: false,
            shop: ShopLocation::default(),
        };
        let f = args.fault().unwrap();
        assert_eq!(f.error_rate, 0.5);
        assert_eq!(f.for_secs, Some(600.0));
        let empty = ChaosArgs {
            error_rate: None,
            ..args.clone()
        };
        assert!(format!("{:#}", empty.fault().unwrap_err()).contains("nothing to inject"));
        let slow = ChaosArgs {
            error_rate: None,
            slow_dependency: Some("inventory=250ms".into()),
            ..args
        };
        assert_eq!(slow.fault().unwrap().dependency_latency_ms, 250);
    }
}
