//! Distributed SQL on Apache DataFusion Ballista.
//!
//! - [`run_scheduler`] and [`run_executor`]: `burnwatch ballista scheduler`
//!   and `burnwatch ballista executor`, Ballista's own scheduler and
//!   executor (the `ballista-scheduler` and `ballista-executor` crates)
//!   with the bucket registered in every session, so executors read the
//!   same Parquet objects the query nodes do.
//! - [`BallistaEngine`]: what a query node with `[query] engine =
//!   "ballista"` runs user SQL on. The query is checked by the same guard as
//!   locally and planned once on the query node to learn which hours of
//!   which table each scan needs; the tables are then registered on the
//!   Ballista session as Parquet listings of exactly the files of the query
//!   node's current view (never a file a compaction replaced and not yet
//!   deleted), pruned to those hours; the plan goes to the scheduler, the
//!   executors read the bucket, the result comes back over Arrow Flight.
//!   The row and result-size limits apply as locally; past the time limit
//!   (or when the caller goes away) the job is cancelled on the scheduler,
//!   which stops its tasks on the executors. Rows the ingest nodes have not
//!   flushed to the bucket yet are not read (the local engine reads them).
//!
//! An unreachable scheduler is an error naming it ([`QueryError::Unavailable`],
//! 503 at the API); the local engine is never used instead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballista::prelude::{SessionConfigExt as _, SessionContextExt as _};
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::serde::protobuf::CancelJobParams;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::{ConfigProducer, RuntimeProducer};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::empty::EmptyTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use object_store::ObjectStore;
use store::Store;
use store::schema::Table;
use store::sql::{QueryError, QueryLimits, QueryResult};

/// The bucket as Ballista's sessions see it: its root URL (`s3://bucket`)
/// and a client for it. `None` for `file://` storage, which every process
/// reads natively.
#[derive(Clone)]
pub struct Bucket {
    root: url::Url,
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.root.as_str())
    }
}

impl Bucket {
    /// The bucket of `[storage]` (connects once to check it answers).
    pub async fn connect(cfg: &store::StorageConfig) -> Result<Option<Bucket>, String> {
        let Some(remote) = store::remote::Remote::connect(cfg)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err("the distributed engine reads the bucket: set --storage-url (or storage.url) as on the query nodes".into());
        };
        Ok(Bucket::of(&remote))
    }

    /// The bucket a store's remote reads.
    pub fn of(remote: &store::remote::Remote) -> Option<Bucket> {
        let url = url::Url::parse(remote.url()).ok()?;
        if url.scheme() != "s3" {
            return None;
        }
        let root = url::Url::parse(&format!("s3://{}", url.host_str()?)).ok()?;
        Some(Bucket {
            root,
            store: remote.object_store(),
        })
    }
}

/// A runtime with the bucket registered (and spill files under `work_dir`).
fn runtime(
    bucket: Option<&Bucket>,
    work_dir: Option<&PathBuf>,
) -> datafusion::error::Result<Arc<RuntimeEnv>> {
    let mut b = RuntimeEnvBuilder::new();
    if let Some(dir) = work_dir {
        b = b.with_temp_file_path(dir.clone());
    }
    let rt = b.build_arc()?;
    if let Some(bucket) = bucket {
        rt.register_object_store(&bucket.root, bucket.store.clone());
    }
    Ok(rt)
}

fn runtime_producer(bucket: Option<Bucket>, work_dir: Option<PathBuf>) -> RuntimeProducer {
    Arc::new(move |_config: &SessionConfig| runtime(bucket.as_ref(), work_dir.as_ref()))
}

fn config_producer() -> ConfigProducer {
    Arc::new(|| store::query::session_config().upgrade_for_ballista())
}

/// `push-staged` (the scheduler hands tasks to executors; Ballista's
/// default) or `pull-staged` (executors poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Policy {
    /// The scheduler pushes tasks.
    #[default]
    PushStaged,
    /// Executors poll for tasks.
    PullStaged,
}

impl From<Policy> for TaskSchedulingPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::PushStaged => TaskSchedulingPolicy::PushStaged,
            Policy::PullStaged => TaskSchedulingPolicy::PullStaged,
        }
    }
}

/// `burnwatch ballista scheduler` flags (Ballista's names).
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerArgs {
    /// Address the scheduler's gRPC service binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Port of the gRPC service (0 picks a free one).
    #[arg(long, default_value_t = 50050)]
    pub bind_port: u16,
    /// Host name executors and clients use to reach this scheduler
    /// [default: --bind-host].
    #[arg(long)]
    pub external_host: Option<String>,
    /// How tasks reach executors; the executors must use the same.
    #[arg(long, value_enum, default_value = "push-staged")]
    pub scheduling_policy: Policy,
}

/// Runs a scheduler until `shutdown` completes; `bound` is told the
/// address once it listens.
pub async fn run_scheduler(
    args: &SchedulerArgs,
    bucket: Option<Bucket>,
    bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;
    use ballista_scheduler::scheduler_process::{
        create_scheduler, start_grpc_service_with_listener,
    };
    let listener = tokio::net::TcpListener::bind((args.bind_host.as_str(), args.bind_port))
        .await
        .map_err(|e| format!("cannot bind {}:{}: {e}", args.bind_host, args.bind_port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let producer = runtime_producer(bucket, None);
    let session_builder: ballista_scheduler::SessionBuilder =
        Arc::new(move |config: SessionConfig| {
            let rt = producer(&config)?;
            Ok(ballista_state(config, rt))
        });
    let mut config = SchedulerConfig::default()
        .with_hostname(args.external_host.as_deref().unwrap_or(&args.bind_host))
        .with_port(addr.port())
        .with_scheduler_policy(args.scheduling_policy.into())
        .with_override_config_producer(config_producer())
        .with_override_session_builder(session_builder);
    config.bind_host = args.bind_host.clone();
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config)
        .await
        .map_err(|e| e.to_string())?;
    bound(addr);
    tokio::select! {
        r = start_grpc_service_with_listener(listener, scheduler) => r.map_err(|e| e.to_string()),
        () = shutdown => Ok(()),
    }
}

/// A session state the way Ballista builds its own (its optimizer rules and
/// functions) over runtime `rt`.
fn ballista_state(
    config: SessionConfig,
    rt: Arc<RuntimeEnv>,
) -> datafusion::execution::SessionState {
    SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .with_runtime_env(rt)
        .with_optimizer_rules(ballista_core::optimizer::ballista_default_optimizer_rules())
        .with_scalar_functions(ballista_core::extension::ballista_scalar_functions())
        .with_aggregate_functions(ballista_core::extension::ballista_aggregate_functions())
        .with_window_functions(ballista_core::extension::ballista_window_functions())
        .build()
}

/// `burnwatch ballista executor` flags (Ballista's names).
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorArgs {
    /// Address the executor binds.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Port of its Arrow Flight service (shuffle data and results).
    #[arg(long, default_value_t = 50051)]
    pub bind_port: u16,
    /// Port of its gRPC service (tasks pushed by the scheduler).
    #[arg(long, default_value_t = 50052)]
    pub bind_grpc_port: u16,
    /// Host name the scheduler and clients use to reach this executor
    /// [default: --bind-host].
    #[arg(long)]
    pub external_host: Option<String>,
    /// The scheduler's host.
    #[arg(long, default_value = "127.0.0.1")]
    pub scheduler_host: String,
    /// The scheduler's port.
    #[arg(long, default_value_t = 50050)]
    pub scheduler_port: u16,
    /// Tasks run at once [default: the number of cores].
    #[arg(long)]
    pub concurrent_tasks: Option<usize>,
    /// Where shuffle and spill files go [default: <data dir>/ballista].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Memory for all running tasks, bytes [default: 70% of the machine's].
    #[arg(long)]
    pub memory_limit: Option<u64>,
    /// How tasks reach this executor; the scheduler's policy.
    #[arg(long, value_enum, default_value = "push-staged")]
    pub scheduling_policy: Policy,
}

/// Runs an executor until ctrl-c or SIGTERM (Ballista's executor process
/// handles both and tells the scheduler it is leaving).
pub async fn run_executor(
    args: &ExecutorArgs,
    bucket: Option<Bucket>,
    work_dir: PathBuf,
) -> Result<(), String> {
    use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| format!("cannot create {}: {e}", work_dir.display()))?;
    let config = ExecutorProcessConfig {
        bind_host: args.bind_host.clone(),
        external_host: Some(
            args.external_host
                .clone()
                .unwrap_or_else(|| args.bind_host.clone()),
        ),
        port: args.bind_port,
        grpc_port: args.bind_grpc_port,
        scheduler_host: args.scheduler_host.clone(),
        scheduler_port: args.scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: args
            .concurrent_tasks
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        task_scheduling_policy: args.scheduling_policy.into(),
        work_dir: Some(work_dir.to_string_lossy().into_owned()),
        memory_pool_size: args.memory_limit,
        override_config_producer: Some(config_producer()),
        override_runtime_producer: Some(runtime_producer(bucket, Some(work_dir.clone()))),
        override_execution_engine: Some(Arc::new(CancellingEngine::default())),
        ..Default::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| e.to_string())
}

/// Ballista's execution engine, with every operator below a stage's
/// shuffle writer wrapped in a [`CancellableExec`] that stops at the next
/// batch once the task is cancelled. Ballista's shuffle writer does the
/// stage's work in a task of its own that a cancellation does not reach:
/// without this, a cancelled query keeps its executor busy until the stage
/// ends (minutes, for a large join).
#[derive(Default)]
struct CancellingEngine(ballista_executor::execution_engine::DefaultExecutionEngine);

/// Passes its input's batches through until `cancelled` is set, then fails.
#[derive(Debug)]
struct CancellableExec {
    input: Arc<dyn ExecutionPlan>,
    cancelled: Arc<AtomicBool>,
}

impl datafusion::physical_plan::DisplayAs for CancellableExec {
    fn fmt_as(
        &self,
        _t: datafusion::physical_plan::DisplayFormatType,
        f: &mut std::fmt::Formatter<'_>,
    ) -> std::fmt::Result {
        write!(f, "CancellableExec")
    }
}

impl ExecutionPlan for CancellableExec {
    fn name(&self) -> &str {
        "CancellableExec"
    }

    fn properties(&self) -> &Arc<datafusion::physical_plan::PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> datafusion::error::Result<TreeNodeRecursion>,
    ) -> datafusion::error::Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(CancellableExec {
            input: children.swap_remove(0),
            cancelled: self.cancelled.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::error::Result<datafusion::execution::SendableRecordBatchStream> {
        use futures::StreamExt as _;
        let cancelled = self.cancelled.clone();
        let stream = self.input.execute(partition, context)?.map(move |batch| {
            if cancelled.load(Ordering::Relaxed) {
                return Err(datafusion::error::DataFusionError::Execution(
                    "the task was cancelled".into(),
                ));
            }
            batch
        });
        Ok(Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(self.schema(), stream),
        ))
    }
}

/// A stage executor that marks its plan cancelled when its task ends
/// (normally, or aborted by a cancellation).
#[derive(Debug)]
struct CancellableStage {
    inner: Arc<dyn ballista_executor::execution_engine::QueryStageExecutor>,
    cancelled: Arc<AtomicBool>,
}

impl std::fmt::Display for CancellableStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.inner, f)
    }
}

struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[async_trait::async_trait]
impl ballista_executor::execution_engine::QueryStageExecutor for CancellableStage {
    async fn execute_query_stage(
        &self,
        task_id: usize,
        context: Arc<datafusion::execution::TaskContext>,
    ) -> datafusion::error::Result<Vec<ballista_core::serde::protobuf::ShuffleWritePartition>> {
        let _done = SetOnDrop(self.cancelled.clone());
        self.inner.execute_query_stage(task_id, context).await
    }

    fn collect_plan_metrics(&self) -> Vec<datafusion::physical_plan::metrics::MetricsSet> {
        self.inner.collect_plan_metrics()
    }

    fn collect_runtime_stats_reports(
        &self,
    ) -> Vec<ballista_core::serde::protobuf::RuntimeStatsReport> {
        self.inner.collect_runtime_stats_reports()
    }

    fn collect_window_state_reports(
        &self,
    ) -> datafusion::error::Result<Vec<ballista_core::serde::protobuf::WindowStateReport>> {
        self.inner.collect_window_state_reports()
    }

    fn collect_column_stats(&self) -> Vec<ballista_core::serde::protobuf::TaskColumnStats> {
        self.inner.collect_column_stats()
    }
}

fn cancellable(
    plan: Arc<dyn ExecutionPlan>,
    cancelled: &Arc<AtomicBool>,
) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
    use datafusion::common::tree_node::{Transformed, TreeNode as _};
    plan.transform_up(|p| {
        if p.children().is_empty() {
            Ok(Transformed::no(p))
        } else {
            Ok(Transformed::yes(Arc::new(CancellableExec {
                input: p,
                cancelled: cancelled.clone(),
            }) as Arc<dyn ExecutionPlan>))
        }
    })
    .map(|t| t.data)
}

impl ballista_executor::execution_engine::ExecutionEngine for CancellingEngine {
    fn create_query_stage_exec(
        &self,
        job_id: ballista_core::JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> datafusion::error::Result<Arc<dyn ballista_executor::execution_engine::QueryStageExecutor>>
    {
        let cancelled = Arc::new(AtomicBool::new(false));
        // The root (the shuffle writer) stays what the engine expects.
        let children = plan
            .children()
            .into_iter()
            .map(|c| cancellable(c.clone(), &cancelled))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let plan = datafusion::physical_plan::execution_plan::replace_children_if_necessary(
            plan, children,
        )?;
        let inner = self.0.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )?;
        Ok(Arc::new(CancellableStage { inner, cancelled }))
    }
}

/// User SQL on a Ballista cluster.
#[derive(Debug)]
pub struct BallistaEngine {
    /// `df://host:port`, as configured.
    url: String,
    /// `http://host:port` of the scheduler's gRPC service.
    grpc: String,
    bucket: Option<Bucket>,
}

/// How long reaching the scheduler may take before the query is refused.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

impl BallistaEngine {
    /// An engine over the scheduler at `url` (`df://host:port`), reading
    /// the bucket of `remote`.
    pub fn new(
        url: &str,
        remote: Option<&store::remote::Remote>,
    ) -> Result<BallistaEngine, String> {
        let parsed = url::Url::parse(url)
            .map_err(|e| format!("query.ballista_url {url:?}: {e} (expected df://host:port)"))?;
        if parsed.scheme() != "df" {
            return Err(format!(
                "query.ballista_url {url:?}: expected df://host:port"
            ));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("query.ballista_url {url:?}: no host"))?;
        let port = parsed.port().unwrap_or(50050);
        Ok(BallistaEngine {
            url: url.to_string(),
            grpc: format!("http://{host}:{port}"),
            bucket: remote.and_then(Bucket::of),
        })
    }

    async fn scheduler(
        &self,
    ) -> Result<SchedulerGrpcClient<tonic::transport::Channel>, QueryError> {
        let unavailable = |why: String| {
            QueryError::Unavailable(format!(
                "the Ballista scheduler at {} cannot be reached ({why}); the query did not run",
                self.url
            ))
        };
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            SchedulerGrpcClient::connect(self.grpc.clone()),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(unavailable(source_chain(&e))),
            Err(_) => Err(unavailable(format!("no answer in {CONNECT_TIMEOUT:?}"))),
        }
    }

    /// The files each table's scans need, as URLs: the query planned once on
    /// the store's own tables, each scan's filters pruning that table's
    /// files to the hours they allow.
    async fn files(
        &self,
        store: &Store,
        sql: &str,
        limits: &QueryLimits,
    ) -> Result<BTreeMap<Table, BTreeSet<String>>, QueryError> {
        let ctx = store::sql::limited_context(store, limits)?;
        let plan = store::sql::plan_on(&ctx, sql).await?;
        let mut files: BTreeMap<Table, BTreeSet<String>> = BTreeMap::new();
        let mut missing_bucket = false;
        plan.apply_with_subqueries(|node| {
            if let LogicalPlan::TableScan(scan) = node
                && let Some(table) = Table::ALL
                    .into_iter()
                    .find(|t| t.name() == scan.table_name.table())
            {
                match store::query::bucket_file_urls(store, table, &scan.filters) {
                    Some(urls) => files.entry(table).or_default().extend(urls),
                    None => missing_bucket = true,
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })
        .map_err(|e| QueryError::Execution(e.to_string()))?;
        if missing_bucket {
            return Err(QueryError::Execution(
                "the distributed engine reads the bucket, and this node has none (storage.url)"
                    .into(),
            ));
        }
        Ok(files)
    }

    /// A Ballista session with the tables registered over `files`.
    async fn context(
        &self,
        files: &BTreeMap<Table, BTreeSet<String>>,
    ) -> Result<SessionContext, QueryError> {
        let exec = |e: datafusion::error::DataFusionError| QueryError::Execution(e.to_string());
        // Pull mode: the scheduler answers the submission with the job id,
        // so a query past its time limit can be cancelled at once (in push
        // mode the id only arrives with the first status change).
        let config = store::query::session_config()
            .upgrade_for_ballista()
            .set_str(ballista_core::config::BALLISTA_CLIENT_PULL, "true");
        let rt = runtime(self.bucket.as_ref(), None).map_err(exec)?;
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(rt)
            .build();
        let ctx = SessionContext::remote_with_state(&self.url, state)
            .await
            .map_err(exec)?;
        for table in Table::ALL {
            let urls = files.get(&table).cloned().unwrap_or_default();
            let provider: Arc<dyn TableProvider> = if urls.is_empty() {
                Arc::new(EmptyTable::new(table.schema()))
            } else {
                let urls = urls
                    .iter()
                    .map(ListingTableUrl::parse)
                    .collect::<datafusion::error::Result<Vec<_>>>()
                    .map_err(exec)?;
                let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(".parquet");
                let config = ListingTableConfig::new_with_multi_paths(urls)
                    .with_listing_options(options)
                    .with_schema(table.schema());
                Arc::new(ListingTable::try_new(config).map_err(exec)?)
            };
            ctx.register_table(table.name(), provider).map_err(exec)?;
        }
        Ok(ctx)
    }
}

/// The error and its causes on one line.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The distributed job of a physical plan, once the scheduler accepted it.
fn job_of(plan: &Arc<dyn ExecutionPlan>) -> Option<String> {
    if let Some(d) = plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>() {
        return d.job_id().map(|j| j.to_string());
    }
    plan.children().into_iter().find_map(job_of)
}

/// Cancels the job of `plan` on the scheduler when dropped while armed (the
/// query timed out, failed, or its caller went away).
struct CancelOnDrop {
    plan: Arc<Mutex<Option<Arc<dyn ExecutionPlan>>>>,
    grpc: String,
    armed: bool,
}

impl CancelOnDrop {
    fn job(&self) -> Option<String> {
        self.plan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(job_of)
    }
}

async fn cancel(grpc: String, job: String) {
    let outcome = async {
        let mut c = SchedulerGrpcClient::connect(grpc).await?;
        c.cancel_job(CancelJobParams {
            job_id: job.clone(),
        })
        .await?;
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    }
    .await;
    match outcome {
        Ok(()) => tracing::info!(job = %job, "distributed query cancelled"),
        Err(e) => tracing::warn!(job = %job, error = %e, "cannot cancel a distributed query"),
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(job) = self.job()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(cancel(self.grpc.clone(), job));
        }
    }
}

#[async_trait::async_trait]
impl store::sql::RemoteEngine for BallistaEngine {
    fn describe(&self) -> String {
        format!("ballista {}", self.url)
    }

    async fn run(
        &self,
        store: &Store,
        sql: &str,
        limits: &QueryLimits,
    ) -> Result<QueryResult, QueryError> {
        store::sql::check_read_only(sql)?;
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(limits.timeout_secs.max(0.001));
        self.scheduler().await?;
        let files = self.files(store, sql, limits).await?;
        let ctx = self.context(&files).await?;
        let mut guard = CancelOnDrop {
            plan: Arc::default(),
            grpc: self.grpc.clone(),
            armed: true,
        };
        let slot = guard.plan.clone();
        let run = store::sql::execute_on(&ctx, sql, limits, move |p| {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        });
        let rows = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(rows)) => {
                guard.armed = false;
                rows
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                // Cancel before answering, so no executor keeps working on a
                // query whose caller was told it stopped.
                guard.armed = false;
                if let Some(job) = guard.job() {
                    cancel(self.grpc.clone(), job).await;
                }
                return Err(QueryError::Timeout(timeout));
            }
        };
        let (schema, batches, truncated) = rows;
        Ok(QueryResult {
            schema,
            batches,
            truncated,
            elapsed: started.elapsed(),
        })
    }
}
