//! Starting the whole shop as eight child processes (what `burnwatch demo`
//! does): dependencies first, each told where its dependencies listen and
//! where to send OTLP; stopped by closing their standard input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::service::{READY_PREFIX, url_var};

/// How to start the shop.
#[derive(Debug, Clone)]
pub struct ShopOptions {
    /// Program to run; it must accept `demo service <name> ...`.
    pub program: PathBuf,
    /// Where the databases and `shop.json` go.
    pub dir: PathBuf,
    /// First port (services take consecutive ports in topology order of
    /// [`crate::SERVICES`]); `None` lets the OS choose free ports.
    pub port_base: Option<u16>,
    /// OTLP endpoints for the services (`http://127.0.0.1:4317`); with
    /// several, the services take turns over them.
    pub otlp_endpoints: Vec<String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS` value (an ingest token), if any.
    pub otlp_headers: Option<String>,
    /// Log filter for the services.
    pub log: String,
}

/// The running shop.
pub struct Shop {
    children: Vec<(&'static str, Child)>,
    /// Base URL of each service.
    pub urls: BTreeMap<String, String>,
}

/// Service names with every service after the ones it calls.
pub fn start_order() -> Vec<&'static str> {
    fn visit(name: &'static str, out: &mut Vec<&'static str>) {
        if out.contains(&name) {
            return;
        }
        if let Some(s) = crate::service(name) {
            for c in s.calls {
                visit(c, out);
            }
        }
        out.push(name);
    }
    let mut out = Vec::new();
    for s in crate::SERVICES {
        visit(s.name, &mut out);
    }
    out
}

fn shop_file(dir: &Path) -> PathBuf {
    dir.join("shop.json")
}

/// The service URLs a running demo wrote under `data_dir/demo/`, if any.
pub fn read_urls(data_dir: &Path) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let path = shop_file(&data_dir.join("demo"));
    match std::fs::read(&path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not valid", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Env defaults for fresher demo data; explicit settings win.
const OTEL_DEFAULTS: [(&str, &str); 3] = [
    ("OTEL_METRIC_EXPORT_INTERVAL", "10000"),
    ("OTEL_BSP_SCHEDULE_DELAY", "1000"),
    ("OTEL_BLRP_SCHEDULE_DELAY", "1000"),
];

impl Shop {
    /// Starts every service and waits until each accepts requests.
    pub async fn start(opts: &ShopOptions) -> anyhow::Result<Shop> {
        std::fs::create_dir_all(&opts.dir)
            .with_context(|| format!("cannot create {}", opts.dir.display()))?;
        let mut shop = Shop {
            children: Vec::new(),
            urls: BTreeMap::new(),
        };
        anyhow::ensure!(
            !opts.otlp_endpoints.is_empty(),
            "the shop needs an OTLP endpoint"
        );
        for (i, name) in start_order().into_iter().enumerate() {
            // Several endpoints (ingest nodes): the services take turns.
            let endpoint = &opts.otlp_endpoints[i % opts.otlp_endpoints.len()];
            let spec = crate::service(name).expect("start order lists known services");
            let port = match opts.port_base {
                Some(base) => {
                    let i = crate::SERVICES
                        .iter()
                        .position(|s| s.name == name)
                        .unwrap_or(0);
                    base + i as u16
                }
                None => 0,
            };
            let mut cmd = Command::new(&opts.program);
            cmd.args(["demo", "service", name, "--exit-on-stdin-eof"])
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--db")
                .arg(opts.dir.join(format!("{name}.sqlite")))
                .arg("--log")
                .arg(&opts.log)
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
                .env("OTEL_SERVICE_NAME", name)
                .env_remove("SHOP_LISTEN")
                .env_remove("SHOP_DB")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            if let Some(h) = &opts.otlp_headers {
                cmd.env("OTEL_EXPORTER_OTLP_HEADERS", h);
            }
            for (k, v) in OTEL_DEFAULTS {
                if std::env::var_os(k).is_none() {
                    cmd.env(k, v);
                }
            }
            for dep in spec.calls {
                cmd.env(url_var(dep), &shop.urls[*dep]);
            }
            let mut child = cmd
                .spawn()
                .with_context(|| format!("cannot start {}", opts.program.display()))?;
            let stdout = child.stdout.take().expect("piped stdout");
            let mut lines = BufReader::new(stdout).lines();
            let ready = tokio::time::timeout(Duration::from_secs(30), async {
                while let Some(line) = lines.next_line().await? {
                    if let Some(rest) = line.strip_prefix(READY_PREFIX) {
                        let url = rest.split_whitespace().nth(1).unwrap_or_default();
                        return Ok::<_, std::io::Error>(Some(url.to_string()));
                    }
                }
                Ok(None)
            })
            .await;
            let url = match ready {
                Ok(Ok(Some(url))) => url,
                _ => {
                    let status = child.try_wait().ok().flatten();
                    shop.stop().await;
                    anyhow::bail!(
                        "{name} did not start ({}); see its log above",
                        status.map_or("no answer within 30 s".to_string(), |s| s.to_string())
                    );
                }
            };
            // Keep draining its stdout so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            shop.urls.insert(name.to_string(), url);
            shop.children.push((name, child));
        }
        let path = shop_file(&opts.dir);
        std::fs::write(&path, serde_json::to_vec_pretty(&shop.urls)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(shop)
    }

    /// Stops the services, callers first, each flushing its telemetry;
    /// kills any that has not exited after 15 s.
    pub async fn stop(mut self) {
        while let Some((name, mut child)) = self.children.pop() {
            drop(child.stdin.take());
            match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => {
                    tracing::warn!(service = name, %status, "service exited with an error")
                }
                _ => {
                    tracing::warn!(
                        service = name,
                        "service did not stop within 15 s; killing it"
                    );
                    let _ = child.kill().await;
                }
            }
        }
    }

    /// A service that exited on its own, if any.
    pub fn exited(&mut self) -> Option<(&'static str, std::process::ExitStatus)> {
        self.children
            .iter_mut()
            .find_map(|(name, c)| c.try_wait().ok().flatten().map(|s| (*name, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_start_first() {
        let order = start_order();
        assert_eq!(order.len(), 8);
        for (i, name) in order.iter().enumerate() {
            for dep in crate::service(name).unwrap().calls {
                let j = order.iter().position(|n| n == dep).unwrap();
                assert!(j < i, "{dep} must start before {name}");
            }
        }
    }
}
