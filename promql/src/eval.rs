//! The evaluator (being written).

/// Engine limits and defaults.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5m).
    pub lookback_ms: i64,
    /// Most samples held in memory by one query (Prometheus: 50,000,000).
    pub max_samples: usize,
    /// Wall-clock limit of one query.
    pub timeout: std::time::Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: std::time::Duration::from_secs(120),
        }
    }
}

/// The PromQL engine.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    /// Its options.
    pub options: EngineOptions,
}
