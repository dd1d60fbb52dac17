//! Burnwatch's read side: what the dashboard, the API and the SLO engine
//! ask of the stored telemetry.
//!
//! Parts:
//! - [`red`]: rate, errors and duration per service and operation (totals,
//!   bucketed series, service-map edges) from server spans, or from the
//!   `http.server.request.duration` histogram for services without spans.
//! - [`series`]: the metric catalogue, counter rates (resets, delta
//!   temporality), gauges, histogram quantiles, grouped by attributes.
//! - [`rollup`]: per-minute RED rollups of each immutable spans file, kept
//!   by the store as a derived file and merged with raw rows at the window
//!   edges.
//! - [`trace_index`]: per-file trace-id filters, so a trace lookup opens
//!   only the files that can hold it.
//! - [`text_index`]: per-file trigram filters of log bodies, so a log text
//!   search opens only the files that can hold the text.
//! - [`file_filter`]: what both kinds of per-file filter share (the Bloom
//!   filter, building, caching and the candidate files of a lookup).
//! - [`jaeger`]: spans in Jaeger's query model (services, operations,
//!   trace search, one trace, dependencies) for `/jaeger`.
//! - [`loki`]: LogQL log queries (stream selector, line and field
//!   filters) over `logs`, for `/loki`.
//! - [`search`]: trace search, log search and one trace with its logs, for
//!   the API and the dashboard.
//! - [`spanmetrics`]: the spanmetrics connector's series
//!   (`traces_spanmetrics_*`) for PromQL, from the rollups.
//! - [`edges`]: the service map's edges from per-file extracts of the
//!   spans that can end an edge, paired per hour and cached.
//! - [`servicegraph`]: the service-graph connector's series
//!   (`traces_service_graph_*`) from the service map's edges, per minute.
//! - [`sketch`]: mergeable duration sketches (1% relative accuracy).
//! - [`cache`]: the byte-bounded LRU cache of decoded per-file data.
//!
//! Data flow: `store` (Parquet files + buffers, via DataFusion) ->
//! analytics -> `slo-engine` and `web`.

pub mod cache;
pub mod edges;
pub mod file_filter;
pub mod jaeger;
pub mod loki;
pub mod prom;
pub mod red;
pub mod rollup;
pub mod search;
pub mod series;
pub mod servicegraph;
pub mod sketch;
pub mod spanmetrics;
pub mod text_index;
pub mod trace_index;
