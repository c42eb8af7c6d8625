//! `usage-ingest`: the stream consumers of the license-usage pipeline.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
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
    /// Create the database and apply pending schema migrations (safe to run twice, or concurrently).
    Migrate(MigrateArgs),
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = usage_runtime::config::parse();
    usage_runtime::logging::init(cli.log_json, "info");
    match cli.command {
        Command::Migrate(args) => run_migrate(args).await,
    }
}

async fn run_migrate(args: MigrateArgs) -> anyhow::Result<()> {
    let migrations = migrate::load_dir(&args.migrations_dir)
        .with_context(|| format!("loading migrations from {}", args.migrations_dir.display()))?;
    let warehouse = Warehouse::new(args.clickhouse.settings()?)?;
    let server = warehouse
        .server_version()
        .await
        .with_context(|| format!("reaching ClickHouse at {}", args.clickhouse.clickhouse_url))?;
    let report = migrate::apply(&warehouse, &migrations).await?;
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
