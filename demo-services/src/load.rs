//! The load generator: virtual users doing storefront journeys against the
//! gateway at a target request rate, optionally following a compressed
//! day/night curve, reporting progress as it runs.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng as _;
use rand::seq::IndexedRandom as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::services::catalog::PRODUCTS;

/// Flags of `burnwatch demo load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Gateway base URL.
    #[arg(
        long,
        env = "SHOP_GATEWAY_URL",
        default_value = "http://127.0.0.1:9100"
    )]
    pub target: String,
    /// Stop after this long, e.g. `10m` [default: run until stopped].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    #[command(flatten)]
    pub shape: LoadShape,
}

/// Rate, users and journey mix (shared by `demo load` and `demo`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoadShape {
    /// Target requests per second (the mean, with --diurnal).
    #[arg(long, default_value_t = 10.0)]
    pub rps: f64,
    /// Concurrent virtual users.
    #[arg(long, default_value_t = 16)]
    pub users: usize,
    /// Vary the rate along a day/night curve (x0.4 at night, x1.6 at peak).
    #[arg(long)]
    pub diurnal: bool,
    /// Length of one simulated day, e.g. `1h`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub day_length: Duration,
    /// Journey weights: browse, search, product, cart, checkout.
    #[arg(
        long,
        default_value = "browse=35,search=15,product=20,cart=15,checkout=15"
    )]
    pub mix: Mix,
    /// Progress report interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub report_every: Duration,
}

/// The storefront journeys a virtual user picks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Journey {
    /// List products, look at one to three.
    Browse,
    /// Search, maybe open a hit.
    Search,
    /// Open one product page.
    Product,
    /// Log in, add to the cart, view it.
    Cart,
    /// Log in, fill the cart, check out, view the order.
    Checkout,
}

/// Journey weights (`browse=35,search=15,...`).
#[derive(Debug, Clone)]
pub struct Mix(Vec<(Journey, u32)>);

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut out = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("expected name=weight, got {part:?}"))?;
            let journey = match name.trim() {
                "browse" => Journey::Browse,
                "search" => Journey::Search,
                "product" => Journey::Product,
                "cart" => Journey::Cart,
                "checkout" => Journey::Checkout,
                other => {
                    return Err(format!(
                        "unknown journey {other:?}; use browse, search, product, cart, checkout"
                    ));
                }
            };
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight of {name} must be a whole number, got {weight:?}"))?;
            out.push((journey, weight));
        }
        if out.iter().map(|(_, w)| w).sum::<u32>() == 0 {
            return Err("the mix needs at least one positive weight".into());
        }
        Ok(Mix(out))
    }
}

impl Mix {
    fn pick(&self, rng: &mut impl rand::Rng) -> Journey {
        self.0
            .choose_weighted(rng, |(_, w)| *w)
            .map(|(j, _)| *j)
            .unwrap_or(Journey::Browse)
    }
}

/// Spaces requests so the whole generator keeps to the target rate.
struct Pacer {
    next: Mutex<Instant>,
    start: Instant,
    rps: f64,
    day: Option<Duration>,
}

impl Pacer {
    fn rate(&self, now: Instant) -> f64 {
        match self.day {
            None => self.rps,
            Some(day) => {
                // Peak in the simulated afternoon, trough at night.
                let phase = (now - self.start).as_secs_f64() / day.as_secs_f64();
                let f = 1.0 - 0.6 * (2.0 * std::f64::consts::PI * phase).cos();
                self.rps * f.max(0.05)
            }
        }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            // After a stall, catch up by at most a quarter second of requests.
            let floor = now.checked_sub(Duration::from_millis(250)).unwrap_or(now);
            let slot = (*next).max(floor);
            *next = slot + Duration::from_secs_f64(1.0 / self.rate(now));
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Counters of a load run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests answered or failed.
    pub requests: AtomicU64,
    /// 5xx answers and transport failures.
    pub server_errors: AtomicU64,
    /// 4xx answers.
    pub client_errors: AtomicU64,
    /// Checkouts answered 201.
    pub checkouts_ok: AtomicU64,
    /// Checkouts answered otherwise.
    pub checkouts_failed: AtomicU64,
    latencies_us: std::sync::Mutex<Vec<u64>>,
}

impl Stats {
    fn record(&self, status: Option<StatusCode>, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match status {
            Some(s) if s.is_client_error() => {
                self.client_errors.fetch_add(1, Ordering::Relaxed);
            }
            Some(s) if !s.is_server_error() => {}
            _ => {
                self.server_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latencies_us
            .lock()
            .expect("stats lock")
            .push(took.as_micros() as u64);
    }

    fn take_latencies(&self) -> Vec<u64> {
        std::mem::take(&mut *self.latencies_us.lock().expect("stats lock"))
    }
}

struct VirtualUser {
    id: usize,
    run: String,
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    registered: bool,
    stats: Arc<Stats>,
    pacer: Arc<Pacer>,
}

impl VirtualUser {
    /// One paced request; returns the status (None on transport failure)
    /// and the JSON body.
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (Option<StatusCode>, Value) {
        self.pacer.wait().await;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let started = Instant::now();
        let result = req.send().await;
        let (status, value) = match result {
            Ok(resp) => {
                let status = resp.status();
                let value = resp.json::<Value>().await.unwrap_or(Value::Null);
                (Some(status), value)
            }
            Err(_) => (None, Value::Null),
        };
        self.stats.record(status, started.elapsed());
        (status, value)
    }

    fn email(&self) -> String {
        format!("shopper-{}-{}@example.com", self.run, self.id)
    }

    async fn ensure_login(&mut self) -> bool {
        if self.token.is_some() {
            return true;
        }
        let password = "correct-horse-battery";
        if !self.registered {
            let (status, _) = self
                .request(
                    reqwest::Method::POST,
                    "/api/users",
                    Some(json!({"email": self.email(), "name": format!("Shopper {}", self.id), "password": password})),
                )
                .await;
            self.registered = matches!(status, Some(StatusCode::CREATED | StatusCode::CONFLICT));
            if !self.registered {
                return false;
            }
        }
        let (status, v) = self
            .request(
                reqwest::Method::POST,
                "/api/login",
                Some(json!({"email": self.email(), "password": password})),
            )
            .await;
        if status == Some(StatusCode::OK) {
            self.token = v["token"].as_str().map(str::to_string);
        }
        self.token.is_some()
    }

    async fn add_random_item(&mut self) -> Option<StatusCode> {
        let (pid, qty) = {
            let mut rng = rand::rng();
            (rng.random_range(1..=PRODUCTS), rng.random_range(1..=2))
        };
        let (status, _) = self
            .request(
                reqwest::Method::POST,
                "/api/cart/items",
                Some(json!({"product_id": pid, "quantity": qty})),
            )
            .await;
        if status == Some(StatusCode::UNAUTHORIZED) {
            self.token = None;
        }
        status
    }

    async fn journey(&mut self, journey: Journey) {
        use reqwest::Method;
        let (pid, views, word) = {
            let mut rng = rand::rng();
            let words = [
                "backpack", "tent", "jacket", "trail", "alpine", "bottle", "lamp", "pro",
            ];
            (
                rng.random_range(1..=PRODUCTS),
                rng.random_range(1..=3),
                *words.choose(&mut rng).expect("non-empty"),
            )
        };
        match journey {
            Journey::Browse => {
                self.request(Method::GET, "/api/products?limit=20", None)
                    .await;
                for i in 0..views {
                    let id = (pid + i * 7 - 1) % PRODUCTS + 1;
                    self.request(Method::GET, &format!("/api/products/{id}"), None)
                        .await;
                }
            }
            Journey::Search => {
                let (_, hits) = self
                    .request(Method::GET, &format!("/api/search?q={word}"), None)
                    .await;
                if let Some(id) = hits
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|p| p["id"].as_i64())
                {
                    self.request(Method::GET, &format!("/api/products/{id}"), None)
                        .await;
                }
            }
            Journey::Product => {
                self.request(Method::GET, &format!("/api/products/{pid}"), None)
                    .await;
            }
            Journey::Cart => {
                if self.ensure_login().await {
                    self.add_random_item().await;
                    self.request(Method::GET, "/api/cart", None).await;
                }
            }
            Journey::Checkout => {
                if !self.ensure_login().await {
                    return;
                }
                for _ in 0..views.min(2) {
                    self.add_random_item().await;
                }
                let (status, order) = self.request(Method::POST, "/api/checkout", None).await;
                if status == Some(StatusCode::CREATED) {
                    self.stats.checkouts_ok.fetch_add(1, Ordering::Relaxed);
                    if let Some(id) = order["order_id"].as_str() {
                        self.request(Method::GET, &format!("/api/orders/{id}"), None)
                            .await;
                    }
                } else {
                    self.stats.checkouts_failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// A progress line on stdout; a closed stdout is not an error worth dying for.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Runs the load until `stop` fires or `--duration` passes; returns the
/// counters.
pub async fn run(args: LoadArgs, stop: CancellationToken) -> anyhow::Result<Arc<Stats>> {
    let LoadArgs {
        target,
        duration,
        shape: args,
    } = args;
    anyhow::ensure!(
        args.rps.is_finite() && args.rps > 0.0,
        "--rps must be a positive number, got {}",
        args.rps
    );
    anyhow::ensure!(args.users > 0, "--users must be at least 1");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("burnwatch-demo-load/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let start = Instant::now();
    let pacer = Arc::new(Pacer {
        next: Mutex::new(start),
        start,
        rps: args.rps,
        day: args.diurnal.then_some(args.day_length),
    });
    let stats = Arc::new(Stats::default());
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let base = target.trim_end_matches('/').to_string();
    let stop = match duration {
        Some(d) => {
            let child = stop.child_token();
            let c = child.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                c.cancel();
            });
            child
        }
        None => stop,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..args.users {
        let mut vu = VirtualUser {
            id,
            run: run_id.clone(),
            http: http.clone(),
            base: base.clone(),
            token: None,
            registered: false,
            stats: stats.clone(),
            pacer: pacer.clone(),
        };
        let mix = args.mix.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            loop {
                let journey = mix.pick(&mut rand::rng());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = vu.journey(journey) => {}
                }
            }
        });
    }
    say(format_args!(
        "load: {} virtual users, {} req/s{} against {base}",
        args.users,
        args.rps,
        if args.diurnal { " (diurnal)" } else { "" }
    ));
    let mut report = tokio::time::interval(args.report_every);
    report.tick().await;
    let mut last = (0u64, Instant::now());
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = report.tick() => {
                let total = stats.requests.load(Ordering::Relaxed);
                let now = Instant::now();
                let mut lat = stats.take_latencies();
                lat.sort_unstable();
                let rate = (total - last.0) as f64 / (now - last.1).as_secs_f64();
                let errors = stats.server_errors.load(Ordering::Relaxed);
                say(format_args!(
                    "load: {:>5.0}s {:>6.1} req/s (target {:.1}) total {total} 5xx {errors} ({:.1}%) 4xx {} p50 {:.0} ms p99 {:.0} ms checkouts {} ok / {} failed",
                    (now - start).as_secs_f64(),
                    rate,
                    pacer.rate(now),
                    100.0 * errors as f64 / total.max(1) as f64,
                    stats.client_errors.load(Ordering::Relaxed),
                    percentile(&lat, 0.5),
                    percentile(&lat, 0.99),
                    stats.checkouts_ok.load(Ordering::Relaxed),
                    stats.checkouts_failed.load(Ordering::Relaxed),
                ));
                last = (total, now);
            }
        }
    }
    tasks.shutdown().await;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_names_errors() {
        let m: Mix = "browse=1,checkout=3".parse().unwrap();
        assert_eq!(m.0.len(), 2);
        let e = "browse=1,shop=2".parse::<Mix>().unwrap_err();
        assert!(e.contains("shop"), "{e}");
        assert!("browse=0".parse::<Mix>().is_err());
        assert!("browse".parse::<Mix>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_keeps_the_rate_and_follows_the_day() {
        let start = Instant::now();
        let pacer = Pacer {
            next: Mutex::new(start),
            start,
            rps: 50.0,
            day: None,
        };
        for _ in 0..100 {
            pacer.wait().await;
        }
        let took = (Instant::now() - start).as_secs_f64();
        assert!((1.9..2.1).contains(&took), "{took}");

        let day = Pacer {
            next: Mutex::new(start),
            start,
            rps: 10.0,
            day: Some(Duration::from_secs(100)),
        };
        assert!((day.rate(start) - 4.0).abs() < 1e-9);
        assert!((day.rate(start + Duration::from_secs(50)) - 16.0).abs() < 1e-9);
    }
}
