//! `usage-loadgen`: publishes a generated scenario to Kafka (`publish`), or
//! prints what the pipeline must report for it (`expected`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use usage_loadgen::{Oracle, Progress, PublishConfig, Scenario, ScenarioConfig, Topics};

#[derive(Debug, Parser)]
#[command(
    name = "usage-loadgen",
    version,
    about = "Scenario generator for the usage pipeline, with its expected report."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Publish a generated scenario to the inbound topics.
    Publish(PublishArgs),
    /// Print the expected rollups of a scenario as JSON (no Kafka).
    Expected(ExpectedArgs),
    /// Compare what the pipeline stored in ClickHouse with the expected rollups
    /// (from `publish --expected`): print the tiles per team and every difference.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The expected rollups written by `publish --expected` or `expected --out`.
    #[arg(long, env = "USAGE_LOADGEN_EXPECTED")]
    expected: PathBuf,
    /// ClickHouse HTTP endpoint.
    #[arg(
        long,
        env = "USAGE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse_url: String,
    /// ClickHouse user.
    #[arg(long, env = "USAGE_CLICKHOUSE_USER", default_value = "default")]
    clickhouse_user: String,
    /// ClickHouse password.
    #[arg(
        long,
        env = "USAGE_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    clickhouse_password: String,
    /// The pipeline's database.
    #[arg(long, env = "USAGE_CLICKHOUSE_DATABASE", default_value = "usage")]
    clickhouse_database: String,
    /// How many differences to print at most.
    #[arg(long, default_value_t = 20)]
    show: usize,
}

#[derive(Debug, Args)]
struct ScenarioArgs {
    /// Seed of every random choice (same seed and options, same bytes).
    #[arg(long, env = "USAGE_LOADGEN_SEED", default_value_t = 42)]
    seed: u64,
    /// Number of users.
    #[arg(long, env = "USAGE_LOADGEN_USERS", default_value_t = 200)]
    users: usize,
    /// Number of teams.
    #[arg(long, env = "USAGE_LOADGEN_TEAMS", default_value_t = 4)]
    teams: usize,
    /// Number of products (from a fixed catalogue of 16).
    #[arg(long, env = "USAGE_LOADGEN_PRODUCTS", default_value_t = 6)]
    products: usize,
    /// Event-time span in days.
    #[arg(long, env = "USAGE_LOADGEN_DAYS", default_value_t = 90)]
    days: u32,
    /// End of the span, RFC 3339 (default: now). Must not be in the future.
    #[arg(long, env = "USAGE_LOADGEN_END", value_parser = parse_end)]
    end: Option<DateTime<Utc>>,
    /// Share of users on Flex.
    #[arg(long, env = "USAGE_LOADGEN_FLEX_SHARE", default_value_t = 0.3)]
    flex_share: f64,
    /// Mean authorizations per active user-day.
    #[arg(long, env = "USAGE_LOADGEN_EVENTS_PER_USER_DAY", default_value_t = 4.0)]
    events_per_user_day: f64,
    /// Share of events re-published as exact duplicates.
    #[arg(long, env = "USAGE_LOADGEN_DUPLICATE_SHARE", default_value_t = 0.01)]
    duplicate_share: f64,
    /// Share of authorizations published after later ones of the same user.
    #[arg(long, env = "USAGE_LOADGEN_LATE_SHARE", default_value_t = 0.01)]
    late_share: f64,
    /// Share of poison messages (0 disables poison, hostile strings and
    /// the unresolved / unknown-rate cases).
    #[arg(long, env = "USAGE_LOADGEN_POISON_SHARE", default_value_t = 0.001)]
    poison_share: f64,
    /// Include every row's usage dates in the expected JSON.
    #[arg(long, env = "USAGE_LOADGEN_DETAIL")]
    detail: bool,
}

fn parse_end(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not RFC 3339: {e}"))
}

impl ScenarioArgs {
    fn config(&self) -> ScenarioConfig {
        let defaults = ScenarioConfig::default();
        ScenarioConfig {
            seed: self.seed,
            users: self.users,
            teams: self.teams,
            products: self.products,
            days: self.days,
            end: self.end.unwrap_or(defaults.end),
            flex_share: self.flex_share,
            events_per_user_day: self.events_per_user_day,
            duplicate_share: self.duplicate_share,
            late_share: self.late_share,
            poison_share: self.poison_share,
        }
    }
}

#[derive(Debug, Args)]
struct PublishArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Kafka bootstrap servers.
    #[arg(long, env = "USAGE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Target rate in messages per second (0: as fast as possible).
    #[arg(long, env = "USAGE_LOADGEN_RATE", default_value_t = 0.0)]
    rate: f64,
    /// Topic of the authorizations events.
    #[arg(
        long,
        env = "USAGE_AUTHORIZATIONS_TOPIC",
        default_value = "usage.authorizations"
    )]
    authorizations_topic: String,
    /// Topic of the assignments events.
    #[arg(
        long,
        env = "USAGE_ASSIGNMENTS_TOPIC",
        default_value = "usage.assignments"
    )]
    assignments_topic: String,
    /// Topic of the directory events.
    #[arg(long, env = "USAGE_DIRECTORY_TOPIC", default_value = "usage.directory")]
    directory_topic: String,
    /// Also write the oracle's expected rollups (JSON) to this file.
    #[arg(long, env = "USAGE_LOADGEN_EXPECTED")]
    expected: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ExpectedArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Write to this file instead of standard output.
    #[arg(long, env = "USAGE_LOADGEN_OUT")]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Publish(args) => run_publish(args),
        Command::Expected(args) => run_expected(args),
        Command::Verify(args) => run_verify(args),
    }
}

fn run_verify(args: VerifyArgs) -> Result<()> {
    let text = std::fs::read(&args.expected)
        .with_context(|| format!("reading {}", args.expected.display()))?;
    let expected: usage_loadgen::ExpectedRollups =
        serde_json::from_slice(&text).context("the expected rollups are not valid JSON")?;
    let client = clickhouse::Client::default()
        .with_url(&args.clickhouse_url)
        .with_user(&args.clickhouse_user)
        .with_password(&args.clickhouse_password)
        .with_database(&args.clickhouse_database)
        .with_validation(false);
    let ranges: Vec<(String, usage_loadgen::oracle::DateRange)> = expected
        .ranges
        .iter()
        .map(|r| (r.name.clone(), r.range))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let observed = runtime
        .block_on(usage_loadgen::verify::observe(&client, &ranges))
        .with_context(|| format!("reading the rollups at {}", args.clickhouse_url))?;
    let mut differences = usage_loadgen::verify::differences(&expected, &observed);
    for (name, range) in &ranges {
        let got = usage_loadgen::verify::tiles(&expected, &observed, name);
        let want = usage_loadgen::verify::expected_tiles(&expected, name);
        println!(
            "{}",
            usage_loadgen::verify::tiles_table(name, *range, &got, &want)
        );
        if got != want {
            differences.push(format!("the {name} tiles differ from the oracle's"));
        }
    }
    // Rows the oracle knows that hold nothing (assigned once, unassigned,
    // never used): the warehouse has no row for them, and they are compared
    // as empty.
    let empty_rows = expected
        .rows
        .iter()
        .filter(|r| r.assignment.is_none() && r.days_used == 0 && r.windows == 0)
        .count();
    println!(
        "rows compared: {} expected ({} of them empty: unassigned and never used), {} in the warehouse; authorizations stored: {} (expected {}); dead letters expected: {:?}",
        expected.rows.len(),
        empty_rows,
        observed.rows.len(),
        observed.events_counted,
        expected.totals.events_counted,
        expected
            .dead_letters
            .iter()
            .map(|(r, n)| (r.as_str(), *n))
            .collect::<std::collections::BTreeMap<_, _>>()
    );
    if differences.is_empty() {
        println!("the rollups equal the oracle");
        Ok(())
    } else {
        for d in differences.iter().take(args.show) {
            println!("DIFFERENCE {d}");
        }
        anyhow::bail!(
            "{} differences between the rollups and the oracle",
            differences.len()
        )
    }
}

fn expected_json(scenario: &Scenario, detail: bool) -> Result<Vec<u8>> {
    let oracle =
        Oracle::from_scenario(scenario).context("the oracle could not read the scenario")?;
    let end = scenario.config().end;
    let ranges = Oracle::standard_ranges(end, scenario.config().days);
    let expected = oracle.expected_rollups(end, &ranges, detail);
    let mut json = serde_json::to_vec_pretty(&expected)?;
    json.push(b'\n');
    Ok(json)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn run_expected(args: ExpectedArgs) -> Result<()> {
    let scenario = Scenario::generate(&args.scenario.config())?;
    let json = expected_json(&scenario, args.scenario.detail)?;
    match &args.out {
        Some(path) => write_file(path, &json),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&json)?;
            out.flush()?;
            Ok(())
        }
    }
}

fn run_publish(args: PublishArgs) -> Result<()> {
    let config = args.scenario.config();
    let scenario = Scenario::generate(&config)?;
    let publish = PublishConfig {
        topics: Topics {
            authorizations: args.authorizations_topic.clone(),
            assignments: args.assignments_topic.clone(),
            directory: args.directory_topic.clone(),
        },
        rate: args.rate,
        ..PublishConfig::new(args.brokers.clone())
    };
    let (start, end) = scenario.span();
    eprintln!(
        "usage-loadgen: seed {} users {} teams {} products {} days {} ({} .. {}) -> {}",
        config.seed,
        config.users,
        config.teams,
        config.products,
        config.days,
        start,
        end,
        args.brokers
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut last = Instant::now();
    let report = runtime
        .block_on(usage_loadgen::publish_scenario(
            &publish,
            &scenario,
            |p: &Progress| {
                if last.elapsed() >= Duration::from_secs(2) {
                    last = Instant::now();
                    let secs = p.elapsed.as_secs_f64().max(1e-9);
                    let total = p.total.map_or_else(|| "?".to_owned(), |t| t.to_string());
                    eprintln!(
                        "usage-loadgen: published {}/{} ({} acknowledged), {:.0} msg/s",
                        p.sent,
                        total,
                        p.delivered,
                        p.sent as f64 / secs
                    );
                }
            },
        ))
        .context("publishing the scenario")?;
    let topics: Vec<String> = report
        .by_topic
        .iter()
        .map(|(t, n)| format!("{t}={n}"))
        .collect();
    eprintln!(
        "usage-loadgen: published {} messages ({}), duplicates {}, poison {}, late {}, in {:.2}s, {:.0} msg/s",
        report.messages,
        topics.join(" "),
        report.duplicates,
        report.poison,
        report.late,
        report.elapsed.as_secs_f64(),
        report.rate()
    );
    if let Some(path) = &args.expected {
        let json = expected_json(&scenario, args.scenario.detail)?;
        write_file(path, &json)?;
        eprintln!(
            "usage-loadgen: expected rollups written to {}",
            path.display()
        );
    }
    Ok(())
}
