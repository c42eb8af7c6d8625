//! `usage-ingest`: the stream consumers of the license-usage pipeline.

mod budget;
mod dlq;
mod kafka;
mod message;
mod metrics;
mod pipeline;
mod replay;
mod retry;
mod rowbinary;
mod rows;
mod sink;
mod stamp;
mod state;
mod workers;

use anyhow::Context;

/// mimalloc: every event allocates its payload, key and decoded strings, and
/// the system allocator's free lists were a quarter of the consumer's CPU
/// (BENCHMARKS.md, "Where the time goes"). Its 2.x line (the workspace's
/// `v2` feature): 3.x keeps freed pages for a second before returning them,
/// which at a batch every half second held two batches' garbage in RSS
/// (peak 255–271 MB at a million users against 191 MB returning them at
/// once, BENCHMARKS.md); 2.x waits 10 ms.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tokio::sync::watch;
use usage_core::charge::ChargeConfig;
use usage_core::validate::{Limits, Reason};
use usage_runtime::clickhouse::ClickHouseArgs;
use usage_store::{migrate, Warehouse};

/// Reads license-usage events from Kafka, stamps them with their team and
/// Flex token charge, and writes them and their rollups to ClickHouse.
///
/// Every option can also be set in a TOML file (--config) by its long name,
/// or by its environment variable. Precedence: command line, environment,
/// file, default.
#[derive(Debug, Parser)]
#[command(name = "usage-ingest", version)]
struct Cli {
    /// TOML file with any of the options below, by long name.
    #[arg(long, env = "USAGE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "USAGE_LOG_JSON", global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume the inbound topics and keep ClickHouse up to date (until SIGTERM).
    Run(Box<RunArgs>),
    /// Create the database and apply pending schema migrations (safe to run twice, or concurrently).
    Migrate(MigrateArgs),
    /// Re-publish replayable dead letters (unresolved_team, unknown_rate, future_timestamp) to their source topic.
    ReplayDlq(replay::ReplayArgs),
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    /// Directory of the versioned migrations (NNNN_name.sql).
    #[arg(
        long,
        env = "USAGE_MIGRATIONS_DIR",
        default_value = "schemas/clickhouse"
    )]
    migrations_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    clickhouse: ClickHouseArgs,
    #[command(flatten)]
    kafka: kafka::KafkaArgs,
    #[command(flatten)]
    inserts: sink::InsertArgs,
    /// How often librdkafka reports statistics, from which the consumer lag
    /// gauge usage_ingest_consumer_lag_messages{topic,partition} is set
    /// (partitions this instance owns; lag = high watermark - committed
    /// offset). 0 disables the statistics and the gauge.
    #[arg(
        long,
        env = "USAGE_KAFKA_STATS_INTERVAL_MS",
        default_value_t = 5_000,
        value_parser = clap::value_parser!(u64).range(0..=86_400_000),
        help_heading = "Kafka"
    )]
    kafka_stats_interval_ms: u64,

    /// Apply pending migrations before consuming.
    #[arg(long, env = "USAGE_MIGRATE", help_heading = "Start-up")]
    migrate: bool,
    /// Directory of the versioned migrations (with --migrate).
    #[arg(
        long,
        env = "USAGE_MIGRATIONS_DIR",
        default_value = "schemas/clickhouse",
        help_heading = "Start-up"
    )]
    migrations_dir: PathBuf,

    /// A batch closes at this many messages.
    #[arg(
        long,
        env = "USAGE_BATCH_MAX_ROWS",
        default_value_t = 50_000,
        help_heading = "Batching"
    )]
    batch_max_rows: usize,
    /// ... or at this many payload bytes.
    #[arg(long, env = "USAGE_BATCH_MAX_BYTES", default_value_t = 32 * 1024 * 1024, help_heading = "Batching")]
    batch_max_bytes: usize,
    /// ... or this long after its first message.
    #[arg(
        long,
        env = "USAGE_BATCH_MAX_WAIT_MS",
        default_value_t = 500,
        help_heading = "Batching"
    )]
    batch_max_wait_ms: u64,
    /// Batches being written at once while the next one is processed (memory:
    /// about this many batches plus the one filling).
    #[arg(
        long,
        env = "USAGE_BATCHES_IN_FLIGHT",
        default_value_t = 2,
        help_heading = "Batching"
    )]
    batches_in_flight: usize,

    /// Memory the process may use at full rate, in MB, --state-budget-mb
    /// included: lowers --batch-max-bytes, --batches-in-flight and
    /// librdkafka's queue of prefetched messages (16 MiB at most) to fit
    /// (never raises them). 0: no budget, the limits as given. See README,
    /// "Memory".
    #[arg(
        long,
        env = "USAGE_MEMORY_BUDGET_MB",
        default_value_t = 256,
        help_heading = "Batching"
    )]
    memory_budget_mb: usize,

    /// First delay before retrying a failed insert (doubles up to --retry-max-ms, with jitter).
    #[arg(
        long,
        env = "USAGE_RETRY_INITIAL_MS",
        default_value_t = 200,
        help_heading = "Retries"
    )]
    retry_initial_ms: u64,
    /// Longest delay between insert retries. Inserts are retried until they succeed.
    #[arg(
        long,
        env = "USAGE_RETRY_MAX_MS",
        default_value_t = 10_000,
        help_heading = "Retries"
    )]
    retry_max_ms: u64,

    /// How long an authorization whose team is not known waits for late assignment data
    /// before it goes to the dead-letter topic (replayable with `replay-dlq`).
    #[arg(
        long,
        env = "USAGE_UNRESOLVED_HOLD_SECS",
        default_value_t = 30,
        help_heading = "Enrichment"
    )]
    unresolved_hold_secs: u64,
    /// How often assignments and rates written by other instances are read again.
    #[arg(
        long,
        env = "USAGE_FOLLOW_INTERVAL_MS",
        default_value_t = 1_000,
        help_heading = "Enrichment"
    )]
    follow_interval_ms: u64,
    /// Flex windows kept in memory per (user, product), at least.
    #[arg(
        long,
        env = "USAGE_RETAIN_WINDOWS",
        default_value_t = 4,
        help_heading = "Enrichment"
    )]
    retain_windows: usize,
    /// ... and every window within this many days of the newest.
    #[arg(
        long,
        env = "USAGE_RETAIN_DAYS",
        default_value_t = 7,
        help_heading = "Enrichment"
    )]
    retain_days: i64,

    /// Threads that decode authorizations and encode their rows, each
    /// batch cut in as many chunks (stamping stays on one thread, in order).
    /// 0: one per core.
    #[arg(
        long,
        env = "USAGE_WORKERS",
        default_value_t = 0,
        help_heading = "Enrichment"
    )]
    workers: usize,

    /// Memory for the enrichment state, in MiB, or `unbounded`: the users'
    /// assignment histories and Flex windows held between batches (about 2 KB
    /// per user). A user not held is read from ClickHouse (by key, one query
    /// per batch for all of them) when a batch needs it; after each batch the
    /// least recently used users are evicted down to this. 0 keeps nothing
    /// between batches. README.md, "Enrichment state and its memory", says
    /// how to size it.
    #[arg(
        long,
        env = "USAGE_INGEST_STATE_BUDGET_MB",
        default_value = "32",
        help_heading = "Enrichment"
    )]
    state_budget_mb: state::cache::StateBudget,

    /// Largest accepted message.
    #[arg(long, env = "USAGE_MAX_MESSAGE_BYTES", default_value_t = Limits::DEFAULT_MAX_MESSAGE_BYTES, help_heading = "Validation")]
    max_message_bytes: usize,
    /// How far in the future `occurred_at` may be (clock skew), in seconds.
    #[arg(
        long,
        env = "USAGE_MAX_FUTURE_SKEW_SECS",
        default_value_t = 300,
        help_heading = "Validation"
    )]
    max_future_skew_secs: i64,

    /// Stop when more than this share of recent messages is invalid.
    #[arg(
        long,
        env = "USAGE_DLQ_MAX_INVALID_RATIO",
        default_value_t = 0.5,
        help_heading = "Dead letters"
    )]
    dlq_max_invalid_ratio: f64,
    /// How many recent messages the ratio is judged over.
    #[arg(
        long,
        env = "USAGE_DLQ_WINDOW",
        default_value_t = 10_000,
        help_heading = "Dead letters"
    )]
    dlq_window: u64,
    /// Stop after this many invalid messages in a row (0: no limit).
    #[arg(
        long,
        env = "USAGE_DLQ_MAX_CONSECUTIVE",
        default_value_t = 1_000,
        help_heading = "Dead letters"
    )]
    dlq_max_consecutive: u64,

    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "USAGE_METRICS_ADDR",
        default_value = "127.0.0.1:9464",
        help_heading = "Operations"
    )]
    metrics_addr: SocketAddr,
    /// On SIGTERM, how long to finish the current batches before giving up on them
    /// (they stay uncommitted and are consumed again).
    #[arg(
        long,
        env = "USAGE_SHUTDOWN_TIMEOUT_SECS",
        default_value_t = 20,
        help_heading = "Operations"
    )]
    shutdown_timeout_secs: u64,
}

fn main() -> std::process::ExitCode {
    let cli: Cli = usage_runtime::config::parse();
    usage_runtime::logging::init(cli.log_json, "info");
    match run_command(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes, on one line each; no backtrace: these
            // are operating conditions (bad input flood, unreachable service).
            tracing::error!("{error:#}");
            eprintln!("usage-ingest: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run(*args).await,
            Command::Migrate(args) => run_migrate(args).await,
            Command::ReplayDlq(args) => replay::run(args).await,
        }
    })
}

async fn apply_migrations(warehouse: &Warehouse, dir: &std::path::Path) -> anyhow::Result<()> {
    let migrations = migrate::load_dir(dir)
        .with_context(|| format!("loading migrations from {}", dir.display()))?;
    let server = warehouse
        .server_version()
        .await
        .with_context(|| format!("reaching ClickHouse at {}", warehouse.settings().url))?;
    let report = migrate::apply(warehouse, &migrations).await?;
    println!(
        "ClickHouse {server}, database {}: schema version {} ({} applied now, {} already applied)",
        warehouse.database(),
        report
            .schema_version()
            .map_or_else(|| "none".to_owned(), |v| v.to_string()),
        report.applied.len(),
        report.already_applied.len()
    );
    Ok(())
}

async fn run_migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let warehouse = Warehouse::new(args.clickhouse.settings()?)?;
    apply_migrations(&warehouse, &args.migrations_dir).await
}

/// The validation limits of `args`, refused when they would let through a
/// timestamp ClickHouse cannot store.
fn validation_limits(args: &RunArgs) -> anyhow::Result<Limits> {
    let max_future_skew = chrono::TimeDelta::try_seconds(args.max_future_skew_secs.max(0))
        .with_context(|| {
            format!(
                "--max-future-skew-secs {} is out of range",
                args.max_future_skew_secs
            )
        })?;
    let limits = Limits {
        max_message_bytes: args.max_message_bytes,
        max_future_skew,
        ..Limits::default()
    };
    stamp::storable::check_limits(&limits, chrono::Utc::now())
        .map_err(|e| anyhow::anyhow!("validation limits: {e}"))?;
    Ok(limits)
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let limits = validation_limits(&args)?;
    args.inserts.settings().map_err(anyhow::Error::msg)?;
    let warehouse = Warehouse::new(args.clickhouse.settings()?)?;
    if args.migrate {
        apply_migrations(&warehouse, &args.migrations_dir).await?;
    }
    let retry = retry::RetryPolicy {
        initial: Duration::from_millis(args.retry_initial_ms.max(1)),
        max: Duration::from_millis(args.retry_max_ms.max(1)),
    };
    let metrics = metrics::Metrics::new().context("registering metrics")?;
    // ClickHouse may not be up yet: wait for it rather than exit.
    let version = stamp::loader::schema_version(&warehouse, retry, &metrics).await;
    anyhow::ensure!(
        version.is_some(),
        "database {} has no schema: run `usage-ingest migrate` (or pass --migrate)",
        warehouse.database()
    );

    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let written: Vec<&str> = rows::WRITTEN.iter().map(|t| t.name).collect();
    metrics.register_labels(
        &args.kafka.inbound_topics(),
        &args.kafka.authorizations_topic,
        &written,
        &stamp::loader::READ_TABLES,
        &reasons,
    );
    metrics.state_budget(args.state_budget_mb.bytes());
    let bound = metrics::serve(args.metrics_addr, metrics.clone())
        .await
        .with_context(|| format!("serving metrics on {}", args.metrics_addr))?;

    let state_mb = match args.state_budget_mb.bytes() {
        Some(bytes) => bytes.div_ceil(1 << 20),
        None => {
            if args.memory_budget_mb > 0 {
                tracing::warn!(
                    "--state-budget-mb unbounded: --memory-budget-mb bounds the rest, not the state"
                );
            }
            0
        }
    };
    let bounds = budget::bound(
        args.memory_budget_mb,
        state_mb,
        budget::Bounds {
            batch_max_bytes: args.batch_max_bytes.max(1),
            batches_in_flight: args.batches_in_flight.max(1),
            queue_kbytes: budget::DEFAULT_QUEUE_KBYTES,
        },
    )?;
    let workers = workers::Workers::new(args.workers);
    tracing::info!(
        workers = workers.threads(),
        memory_budget_mb = args.memory_budget_mb,
        state_budget_mb = %args.state_budget_mb,
        batch_max_bytes = bounds.batch_max_bytes,
        batches_in_flight = bounds.batches_in_flight,
        kafka_queue_kbytes = bounds.queue_kbytes,
        "memory bounds"
    );
    let settings = pipeline::PipelineSettings {
        kafka_stats_interval_ms: args.kafka_stats_interval_ms,
        kafka_queue_kbytes: bounds.queue_kbytes,
        batch: pipeline::BatchLimits {
            max_rows: args.batch_max_rows.max(1),
            max_bytes: bounds.batch_max_bytes,
            max_wait: Duration::from_millis(args.batch_max_wait_ms),
            max_in_flight: bounds.batches_in_flight,
        },
        retry,
        follow_interval: Duration::from_millis(args.follow_interval_ms),
        state_budget: args.state_budget_mb.bytes(),
        charge: ChargeConfig {
            retain_windows: args.retain_windows.max(1),
            retain_for: chrono::TimeDelta::days(args.retain_days.max(1)),
        },
        stamp: stamp::StampSettings {
            limits,
            unresolved_hold: Duration::from_secs(args.unresolved_hold_secs),
            workers,
        },
        dead_letters: dlq::DeadLetterPolicy::new(
            args.dlq_max_invalid_ratio,
            args.dlq_window,
            args.dlq_max_consecutive,
        ),
        kafka: args.kafka.clone(),
        inserts: args.inserts.clone(),
    };
    let (shutdown_tx, shutdown) = watch::channel(false);
    let (abandon_tx, abandon) = watch::channel(false);
    let stop = pipeline::Stop { shutdown, abandon };
    let pipeline = pipeline::Pipeline::new(settings, &warehouse, metrics, stop).await?;

    let drain_timeout = Duration::from_secs(args.shutdown_timeout_secs);
    tokio::spawn(async move {
        usage_runtime::signal::stop_requested().await;
        tracing::info!("stop requested: draining");
        let _ = shutdown_tx.send(true);
        tokio::time::sleep(drain_timeout).await;
        tracing::warn!("drain timeout: abandoning the batch being written (it stays uncommitted)");
        let _ = abandon_tx.send(true);
    });

    tracing::info!(
        brokers = %args.kafka.kafka_brokers,
        group = %args.kafka.group_id,
        clickhouse = %warehouse.settings().url,
        database = %warehouse.database(),
        metrics = %bound,
        "usage-ingest running"
    );
    pipeline.run().await.context("the pipeline stopped")?;
    tracing::info!("stopped");
    Ok(())
}
