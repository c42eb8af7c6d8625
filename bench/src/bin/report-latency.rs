//! `report-latency`: latency of the report service over a large dataset, by
//! the real path: generated events → Kafka → `usage-ingest` → ClickHouse →
//! `usage-report` over HTTP.
//!
//! 1. **The dataset** (database `usage_bench_report` by default): reused when
//!    the parameters recorded in `.local/bench/report-dataset-<db>.json` match and
//!    the database still holds the rows recorded there (`--rebuild` forces a
//!    new one). Otherwise: a generation pass (renders every message, keeps
//!    none: the expected counts), publication to fresh topics (generation
//!    again, overlapped with producing), then `usage-ingest --migrate` from
//!    offset 0 until every reportable event is stored, then SIGTERM.
//! 2. **The measurement**: `usage-report` on that database; for each case,
//!    warm-up requests then N sequential requests on one keep-alive
//!    connection, timed client-side (request sent to body read); every
//!    answer must be 200 with a non-empty report.
//! 3. A table on stdout, and JSON in `bench/results/report-latency.json`.
//!
//! Run with `bench/run-report` (builds the release binaries first).

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use usage_loadgen::{DateRange, Message, Oracle, PublishConfig, Scenario, ScenarioConfig, Topic};
use usage_testkit::host;
use usage_testkit::ingest::IngestRun;
use usage_testkit::memory;
use usage_testkit::report::{Admin, Report, ReportRun};
use usage_testkit::services::Services;
use usage_testkit::stats::percentile;
use usage_testkit::topics::{self, Topics};

const TOKEN: &str = "bench-token-0123456789";

#[derive(Debug, Parser)]
#[command(
    name = "report-latency",
    about = "Latency of usage-report over a generated dataset ingested by usage-ingest."
)]
struct Args {
    /// Users of the scenario.
    #[arg(long, default_value_t = 50_000)]
    users: usize,
    /// Days of the scenario (ending an hour before the build).
    #[arg(long, default_value_t = 90)]
    days: u32,
    /// Mean authorizations per active user-day (5.55 gives about 10M events
    /// for 50k users over 90 days).
    #[arg(long, default_value_t = 5.55)]
    events_per_user_day: f64,
    #[arg(long, default_value_t = 20)]
    teams: usize,
    #[arg(long, default_value_t = 6)]
    products: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Build the dataset again even if the recorded one matches.
    #[arg(long)]
    rebuild: bool,
    /// Only plan and count the scenario (no Kafka, no ClickHouse).
    #[arg(long)]
    dry_run: bool,
    /// Timed requests per case.
    #[arg(long, default_value_t = 30)]
    requests: usize,
    /// Untimed requests per case before them.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// ClickHouse database of the dataset.
    #[arg(long, default_value = "usage_bench_report")]
    database: String,
    #[arg(long, env = "USAGE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(
        long,
        env = "USAGE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse_url: String,
    /// Directory of the release binaries.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Working directory: the dataset record, logs, the admins file.
    #[arg(long, default_value = ".local/bench")]
    work_dir: PathBuf,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench/results/report-latency.json")]
    out: PathBuf,
    /// ClickHouse's pid file (for its CPU time during the requests).
    #[arg(long, default_value = ".local/services/clickhouse/pid")]
    clickhouse_pid_file: PathBuf,
    /// Give up on ingestion after this many seconds.
    #[arg(long, default_value_t = 1800)]
    ingest_timeout_secs: u64,
    /// After the timing, check the served numbers: every team's overview
    /// and all teams', over three ranges, against the load generator's
    /// oracle of the same scenario (generated again: about 3 minutes and
    /// 2 GB at the default size). A difference fails the run.
    #[arg(long)]
    check_oracle: bool,
}

/// What the dataset was built from, and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Dataset {
    database: String,
    scenario: ScenarioConfig,
    built_at: String,
    messages_published: u64,
    authorizations_published: u64,
    authorizations_offline: u64,
    authorization_payload_bytes: u64,
    /// Reportable events expected in `authorizations` (online ones).
    expected_stored: u64,
    /// Rows in `authorizations` once ingestion ended.
    stored: u64,
    /// Distinct event ids among them.
    stored_distinct: u64,
    phases: Phases,
    rollups: Rollups,
    ingest_vm_hwm_kb: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Phases {
    /// Planning the world (users, holdings, rates).
    plan_secs: f64,
    /// One pass rendering every message, none kept (the expected counts).
    generate_secs: f64,
    /// Generation again, overlapped with producing, until all acknowledged.
    publish_secs: f64,
    /// From starting usage-ingest (migrations, group join) to the last event stored.
    ingest_secs: f64,
    /// Stored events per second over the ingest phase.
    ingest_events_per_sec: f64,
    /// From SIGTERM to usage-ingest's exit.
    ingest_shutdown_secs: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Rollups {
    authorizations: u64,
    daily_usage: u64,
    flex_windows: u64,
    assignment_state: u64,
    user_profiles: u64,
    group_memberships: u64,
    /// Active parts per table.
    parts: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
struct CaseResult {
    case: String,
    range: String,
    /// Path and query.
    path: String,
    requests: usize,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
    min_ms: f64,
    mean_ms: f64,
    response_bytes: usize,
    /// Users page: rows matching over all pages.
    total_rows: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Results {
    date: String,
    machine: Machine,
    clickhouse_version: String,
    dataset: Dataset,
    dataset_reused: bool,
    team_all_teams: usize,
    largest_team: String,
    largest_team_users: u64,
    warmup_requests: usize,
    timed_requests: usize,
    cases: Vec<CaseResult>,
    report_vm_hwm_kb: Option<u64>,
    report_vm_rss_kb: Option<u64>,
    /// `/proc/loadavg` before and after the timed requests (other work on
    /// the machine skews the figures).
    loadavg_before: String,
    loadavg_after: String,
    /// Over every request (warm-up included): wall time, and the CPU time of
    /// usage-report and of ClickHouse (from `/proc/<pid>/stat`).
    requests_wall_secs: f64,
    report_cpu_secs: Option<f64>,
    clickhouse_cpu_secs: Option<f64>,
    /// With `--check-oracle`: the overviews compared with the oracle.
    oracle_check: Option<OracleCheck>,
}

#[derive(Debug, Serialize)]
struct OracleCheck {
    /// Overviews compared (teams and all teams, times ranges).
    overviews: usize,
    /// `query: field served != oracle`, one per difference.
    differences: Vec<String>,
    /// Generating the scenario and its oracle.
    oracle_secs: f64,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    mem_total_kb: Option<u64>,
}

fn say(msg: impl AsRef<str>) {
    eprintln!("report-latency: {}", msg.as_ref());
}

/// CPU seconds (user + system) of a process so far.
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name (which may hold spaces): state is 3rd.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let tck = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Some((utime + stime) / tck)
}

fn machine() -> Machine {
    let mem_total_kb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    });
    Machine {
        cpu: host::cpu_model(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_total_kb,
    }
}

// ---------------------------------------------------------------------------
// ClickHouse

struct Ch {
    client: clickhouse::Client,
    db: String,
}

impl Ch {
    async fn execute(&self, sql: &str) -> Result<()> {
        usage_testkit::clickhouse::execute(&self.client, sql).await
    }

    async fn u64(&self, sql: &str) -> Result<u64> {
        usage_testkit::clickhouse::number(&self.client, sql).await
    }

    async fn count(&self, table: &str) -> Result<u64> {
        self.u64(&format!("SELECT count() FROM {}.{table}", self.db))
            .await
    }

    async fn table_exists(&self, table: &str) -> Result<bool> {
        let n = self
            .u64(&format!(
                "SELECT count() FROM system.tables WHERE database = '{}' AND name = '{table}'",
                self.db
            ))
            .await?;
        Ok(n > 0)
    }

    async fn rollups(&self) -> Result<Rollups> {
        let parts = self
            .client
            .query(&format!(
                "SELECT table, count() FROM system.parts WHERE database = '{}' AND active \
                 GROUP BY table ORDER BY table",
                self.db
            ))
            .fetch_all::<(String, u64)>()
            .await
            .context("reading system.parts")?;
        Ok(Rollups {
            authorizations: self.count("authorizations").await?,
            daily_usage: self.count("daily_usage").await?,
            flex_windows: self.count("flex_windows").await?,
            assignment_state: self.count("assignment_state").await?,
            user_profiles: self.count("user_profiles").await?,
            group_memberships: self.count("group_memberships").await?,
            parts,
        })
    }

    /// Waits (up to `limit`) until no merge runs in the database.
    async fn settle_merges(&self, limit: Duration) -> Result<()> {
        let started = Instant::now();
        loop {
            let n = self
                .u64(&format!(
                    "SELECT count() FROM system.merges WHERE database = '{}'",
                    self.db
                ))
                .await?;
            if n == 0 {
                return Ok(());
            }
            if started.elapsed() > limit {
                say(format!(
                    "{n} merges still running after {}s: measuring anyway",
                    limit.as_secs()
                ));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The dataset

fn scenario_config(args: &Args) -> ScenarioConfig {
    ScenarioConfig {
        seed: args.seed,
        users: args.users,
        teams: args.teams,
        products: args.products,
        days: args.days,
        end: chrono::Utc::now() - chrono::TimeDelta::hours(1),
        flex_share: ScenarioConfig::default().flex_share,
        events_per_user_day: args.events_per_user_day,
        duplicate_share: 0.0,
        late_share: 0.0,
        poison_share: 0.0,
    }
}

/// The same scenario but for its end instant.
fn same_parameters(a: &ScenarioConfig, b: &ScenarioConfig) -> bool {
    ScenarioConfig {
        end: b.end,
        ..a.clone()
    } == *b
}

/// Counts of the authorizations seen in a message stream.
#[derive(Debug, Default)]
struct Tally {
    messages: u64,
    authorizations: u64,
    offline: u64,
    payload_bytes: u64,
}

impl Tally {
    fn see(&mut self, m: &Message) {
        self.messages += 1;
        if m.topic == Topic::Authorizations {
            self.authorizations += 1;
            self.payload_bytes += m.payload.len() as u64;
            // Offline events are consumed and counted, never stored.
            if contains(&m.payload, b"\"online\":false") {
                self.offline += 1;
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn record_path(args: &Args) -> PathBuf {
    args.work_dir
        .join(format!("report-dataset-{}.json", args.database))
}

/// The recorded dataset, if it matches `config` and the database still holds it.
async fn reusable(args: &Args, ch: &Ch, config: &ScenarioConfig) -> Result<Option<Dataset>> {
    let path = record_path(args);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let recorded: Dataset = match serde_json::from_slice(&bytes) {
        Ok(d) => d,
        Err(e) => {
            say(format!("ignoring {}: {e}", path.display()));
            return Ok(None);
        }
    };
    if recorded.database != args.database || !same_parameters(&recorded.scenario, config) {
        say("the recorded dataset has other parameters: rebuilding");
        return Ok(None);
    }
    if !ch.table_exists("authorizations").await? {
        say(format!(
            "database {} has no data: rebuilding",
            args.database
        ));
        return Ok(None);
    }
    let stored = ch.count("authorizations").await?;
    if stored != recorded.stored || stored < recorded.expected_stored {
        say(format!(
            "database {} holds {stored} events, {} recorded ({} expected): rebuilding",
            args.database, recorded.stored, recorded.expected_stored
        ));
        return Ok(None);
    }
    Ok(Some(recorded))
}

const TOPIC_PREFIX: &str = "reportbench";

/// The broker and ClickHouse of the run.
fn services(args: &Args) -> Services {
    Services {
        brokers: args.brokers.clone(),
        clickhouse_url: args.clickhouse_url.clone(),
    }
}

/// Deletes the topics of earlier builds (all named `reportbench<time>.*`):
/// the local broker keeps them in memory.
async fn delete_stale_topics(args: &Args) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    let metadata =
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, Duration::from_secs(10)))
            .await??;
    let stale: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|n| n.starts_with(TOPIC_PREFIX))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    say(format!("deleting {} topics of earlier builds", stale.len()));
    delete_topics(args, &stale).await;
    Ok(())
}

async fn delete_topics(args: &Args, names: &[&str]) {
    if let Err(e) = topics::delete_topics(&args.brokers, names).await {
        say(format!("could not delete the topics: {e:#}"));
    }
}

async fn build_dataset(args: &Args, ch: &Ch, config: ScenarioConfig) -> Result<Dataset> {
    // 1. Plan and generate (every message rendered, none kept).
    let t = Instant::now();
    let scenario = Scenario::generate(&config)?;
    let plan_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let messages = scenario.messages();
    let expected = tokio::task::spawn_blocking(move || {
        let mut tally = Tally::default();
        for m in messages {
            tally.see(&m);
        }
        tally
    })
    .await?;
    let generate_secs = t.elapsed().as_secs_f64();
    let (total, auths, offline) = (expected.messages, expected.authorizations, expected.offline);
    let expected_stored = auths - offline;
    say(format!(
        "generated {total} messages: {auths} authorizations ({offline} offline, {:.0} MB), \
         plan {plan_secs:.1}s, generation {generate_secs:.1}s",
        expected.payload_bytes as f64 / 1e6
    ));
    if args.dry_run {
        return Ok(Dataset {
            database: args.database.clone(),
            scenario: config,
            built_at: chrono::Utc::now().to_rfc3339(),
            messages_published: 0,
            authorizations_published: auths,
            authorizations_offline: offline,
            authorization_payload_bytes: expected.payload_bytes,
            expected_stored,
            stored: 0,
            stored_distinct: 0,
            phases: Phases {
                plan_secs,
                generate_secs,
                ..Phases::default()
            },
            rollups: Rollups::default(),
            ingest_vm_hwm_kb: None,
        });
    }

    // 2. Fresh topics, publication.
    let topics = Topics::named(&format!("{TOPIC_PREFIX}{}", chrono::Utc::now().timestamp()));
    delete_stale_topics(args).await?;
    topics.create(&args.brokers, 4).await?;
    let outcome = publish_and_ingest(args, ch, &scenario, &topics, total, expected_stored).await;
    delete_topics(args, &topics.all()).await;
    let (published, phases_ingest, stored, ingest_vm_hwm_kb) = outcome?;
    if published != total {
        bail!("published {published} messages, generated {total}");
    }
    let stored_distinct = ch
        .u64(&format!(
            "SELECT uniqExact(event_id) FROM {}.authorizations",
            args.database
        ))
        .await?;
    let rollups = ch.rollups().await?;
    Ok(Dataset {
        database: args.database.clone(),
        scenario: config,
        built_at: chrono::Utc::now().to_rfc3339(),
        messages_published: published,
        authorizations_published: auths,
        authorizations_offline: offline,
        authorization_payload_bytes: expected.payload_bytes,
        expected_stored,
        stored,
        stored_distinct,
        phases: Phases {
            plan_secs,
            generate_secs,
            ..phases_ingest
        },
        rollups,
        ingest_vm_hwm_kb,
    })
}

/// Publishes the scenario, then runs usage-ingest until every reportable
/// event is stored. Returns (messages published, phases, rows stored,
/// usage-ingest's peak RSS).
async fn publish_and_ingest(
    args: &Args,
    ch: &Ch,
    scenario: &Scenario,
    topics: &Topics,
    total: u64,
    target: u64,
) -> Result<(u64, Phases, u64, Option<u64>)> {
    let t = Instant::now();
    let mut last_print = Instant::now();
    let report = usage_loadgen::publish(
        &PublishConfig {
            topics: topics.inbound(),
            ..PublishConfig::new(args.brokers.clone())
        },
        scenario.messages(),
        Some(total),
        |p| {
            if last_print.elapsed() >= Duration::from_secs(10) {
                last_print = Instant::now();
                say(format!(
                    "publishing: {} of {total} sent, {} acknowledged, {:.0}s",
                    p.sent,
                    p.delivered,
                    p.elapsed.as_secs_f64()
                ));
            }
        },
    )
    .await?;
    let publish_secs = t.elapsed().as_secs_f64();
    say(format!(
        "published {} messages in {publish_secs:.1}s ({:.0}/s)",
        report.messages,
        report.rate()
    ));

    // usage-ingest into a fresh database, from offset 0.
    ch.execute(&format!("DROP DATABASE IF EXISTS {}", args.database))
        .await?;
    let log_path = args.work_dir.join("report-ingest.log");
    let t = Instant::now();
    let mut ingest = IngestRun::new(
        args.bin_dir.join("usage-ingest"),
        &services(args),
        &args.database,
        topics,
        &format!("{}_group", topics.authorizations),
    )
    .arg("--migrate")
    .spawn(&log_path)?
    .process;
    say(format!(
        "usage-ingest started (pid {}, log {})",
        ingest.pid(),
        log_path.display()
    ));
    let ch_stored = async || -> Result<u64> {
        if ch.table_exists("authorizations").await? {
            ch.count("authorizations").await
        } else {
            Ok(0)
        }
    };
    let deadline = t + Duration::from_secs(args.ingest_timeout_secs);
    let mut last = (0u64, Instant::now());
    let mut last_print = Instant::now();
    let stored = loop {
        ingest.check_alive()?;
        let n = ch_stored().await?;
        if n != last.0 {
            last = (n, Instant::now());
        }
        if n >= target {
            break n;
        }
        if last_print.elapsed() >= Duration::from_secs(10) {
            last_print = Instant::now();
            say(format!(
                "ingesting: {n} of {target} events stored, {:.0}s",
                t.elapsed().as_secs_f64()
            ));
        }
        if n > 0 && last.1.elapsed() > Duration::from_secs(120) {
            say(format!(
                "no progress for 120s at {n} of {target} events: stopping there"
            ));
            break n;
        }
        if Instant::now() >= deadline {
            bail!("ingestion timed out at {n} of {target} events");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ingest_secs = t.elapsed().as_secs_f64();
    let hwm = memory::peak_bytes(ingest.pid()).map(|b| b / 1024);
    let shutdown = ingest.terminate(Duration::from_secs(60)).await?;
    if let Some(status) = ingest.exited().filter(|s| !s.success()) {
        say(format!("usage-ingest exited with {status}"));
    }
    let stored = stored.max(ch_stored().await?);
    say(format!(
        "ingested {stored} events in {ingest_secs:.1}s ({:.0}/s); usage-ingest stopped in {:.1}s",
        stored as f64 / ingest_secs,
        shutdown.as_secs_f64()
    ));
    Ok((
        report.messages,
        Phases {
            publish_secs,
            ingest_secs,
            ingest_events_per_sec: stored as f64 / ingest_secs,
            ingest_shutdown_secs: shutdown.as_secs_f64(),
            ..Phases::default()
        },
        stored,
        hwm,
    ))
}

// ---------------------------------------------------------------------------
// The measurement

/// One timed case: a path and query, and what a good answer holds.
struct Case {
    name: String,
    range: &'static str,
    /// Path and query.
    path: String,
    url: String,
    users_page: bool,
}

/// A checked answer: its size and, for a users page, the total rows.
async fn get_checked(
    http: &reqwest::Client,
    case: &Case,
) -> Result<(Duration, usize, Option<u64>)> {
    let t = Instant::now();
    let response = http
        .get(&case.url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .with_context(|| format!("GET {}", case.url))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading GET {}", case.url))?;
    let elapsed = t.elapsed();
    if status != reqwest::StatusCode::OK {
        bail!(
            "GET {}: {status}: {}",
            case.url,
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {}: not JSON", case.url))?;
    let total = if case.users_page {
        let rows = v
            .get("rows")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        let total = v.get("total").and_then(serde_json::Value::as_u64);
        if rows == 0 || total.unwrap_or(0) == 0 {
            bail!("GET {}: an empty users page", case.url);
        }
        total
    } else {
        let seats = v
            .pointer("/subscriptions/assigned_seats")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let active = v
            .pointer("/subscriptions/active")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if seats == 0 || active == 0 || v.get("flex").is_none() {
            bail!(
                "GET {}: an empty overview: {}",
                case.url,
                String::from_utf8_lossy(&body[..body.len().min(500)])
            );
        }
        None
    };
    Ok((elapsed, body.len(), total))
}

async fn measure(args: &Args, http: &reqwest::Client, case: &Case) -> Result<CaseResult> {
    for _ in 0..args.warmup {
        get_checked(http, case).await?;
    }
    let mut ms = Vec::with_capacity(args.requests);
    let (mut bytes, mut total) = (0, None);
    for _ in 0..args.requests {
        let (d, b, t) = get_checked(http, case).await?;
        ms.push(d.as_secs_f64() * 1000.0);
        (bytes, total) = (b, t);
    }
    let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(CaseResult {
        case: case.name.clone(),
        range: case.range.to_owned(),
        path: case.path.clone(),
        requests: ms.len(),
        p50_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
        min_ms: ms.first().copied().unwrap_or(0.0),
        mean_ms: mean,
        response_bytes: bytes,
        total_rows: total,
    })
}

/// Starts usage-report on the dataset and waits for `/readyz`: it and its base URL.
async fn start_report(args: &Args) -> Result<(Report, String)> {
    let log_path = args.work_dir.join("report-service.log");
    let report = ReportRun::new(
        args.bin_dir.join("usage-report"),
        &services(args),
        &args.database,
        args.work_dir.join("report"),
    )
    .admins([Admin {
        id: "bench".into(),
        role: "primary".into(),
        teams: vec!["*".into()],
        token: TOKEN.into(),
    }])
    .hmac_key("6265e6368a4b2a41c1f4d1f1c9e2b0a7b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3\n")
    .log(&log_path)
    .start()
    .await?;
    let base = report.url("");
    say(format!(
        "usage-report ready on {base} (pid {}, log {})",
        report.process.pid(),
        log_path.display()
    ));
    Ok((report, base))
}

#[derive(Deserialize)]
struct TeamsAnswer {
    teams: Vec<TeamEntry>,
}

#[derive(Deserialize)]
struct TeamEntry {
    team_id: String,
}

fn print_table(results: &Results) {
    let d = &results.dataset;
    println!();
    println!(
        "dataset {}: {} users, {} teams, {} days; {} authorizations published, {} stored",
        d.database,
        d.scenario.users,
        d.scenario.teams,
        d.scenario.days,
        d.authorizations_published,
        d.stored
    );
    println!(
        "rollups: daily_usage {}, flex_windows {}, assignment_state {}",
        d.rollups.daily_usage, d.rollups.flex_windows, d.rollups.assignment_state
    );
    println!(
        "largest team {} ({} users); {} timed requests per case after {} warm-up",
        results.largest_team,
        results.largest_team_users,
        results.timed_requests,
        results.warmup_requests
    );
    println!(
        "{:<34} {:<14} {:>9} {:>9} {:>9} {:>10}",
        "case", "range", "p50 ms", "p95 ms", "max ms", "bytes"
    );
    for c in &results.cases {
        println!(
            "{:<34} {:<14} {:>9.1} {:>9.1} {:>9.1} {:>10}",
            c.case, c.range, c.p50_ms, c.p95_ms, c.max_ms, c.response_bytes
        );
    }
    let kb = |v: Option<u64>| v.map_or("?".to_owned(), |k| format!("{:.0} MB", k as f64 / 1024.0));
    println!(
        "usage-report memory after the run: VmHWM {}, VmRSS {}",
        kb(results.report_vm_hwm_kb),
        kb(results.report_vm_rss_kb)
    );
    let secs = |v: Option<f64>| v.map_or("?".to_owned(), |s| format!("{s:.1}s"));
    println!(
        "CPU over the {:.0}s of requests: usage-report {}, ClickHouse {}",
        results.requests_wall_secs,
        secs(results.report_cpu_secs),
        secs(results.clickhouse_cpu_secs)
    );
    println!(
        "load average before / after: {} / {}",
        results.loadavg_before, results.loadavg_after
    );
}

async fn run(args: Args) -> Result<()> {
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("creating {}", args.work_dir.display()))?;
    let ch = Ch {
        client: clickhouse::Client::default()
            .with_url(&args.clickhouse_url)
            .with_validation(false),
        db: args.database.clone(),
    };
    let config = scenario_config(&args);
    if args.dry_run {
        let d = build_dataset(&args, &ch, config).await?;
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    let clickhouse_version = ch
        .client
        .query("SELECT version()")
        .fetch_one::<String>()
        .await
        .context("ClickHouse does not answer")?;

    let existing = if args.rebuild {
        None
    } else {
        reusable(&args, &ch, &config).await?
    };
    let reused = existing.is_some();
    let dataset = match existing {
        Some(d) => {
            say(format!(
                "reusing dataset {} built {} ({} events stored)",
                d.database, d.built_at, d.stored
            ));
            d
        }
        None => {
            let d = build_dataset(&args, &ch, config).await?;
            let path = record_path(&args);
            std::fs::write(&path, serde_json::to_vec_pretty(&d)?)
                .with_context(|| format!("writing {}", path.display()))?;
            d
        }
    };
    if dataset.stored < dataset.expected_stored {
        say(format!(
            "warning: {} of {} expected events stored",
            dataset.stored, dataset.expected_stored
        ));
    }
    let r = &dataset.rollups;
    say(format!(
        "rollups: authorizations {}, daily_usage {}, flex_windows {}, assignment_state {}",
        r.authorizations, r.daily_usage, r.flex_windows, r.assignment_state
    ));
    ch.settle_merges(Duration::from_secs(300)).await?;

    // The largest team: most distinct users with usage.
    let (largest_team, largest_team_users) = ch
        .client
        .query(&format!(
            "SELECT team_id, uniqExact(user_id) AS n FROM {}.daily_usage \
             GROUP BY team_id ORDER BY n DESC, team_id LIMIT 1",
            args.database
        ))
        .fetch_one::<(String, u64)>()
        .await
        .context("finding the largest team")?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(1)
        .build()?;
    let (mut report, base) = start_report(&args).await?;
    let teams: TeamsAnswer = get_json(&http, &format!("{base}/v1/teams"))
        .await
        .context("reading /v1/teams")?;
    if !teams.teams.iter().any(|t| t.team_id == largest_team) {
        bail!("the largest team {largest_team} is not in /v1/teams");
    }
    say(format!(
        "{} teams; the largest: {largest_team} ({largest_team_users} users with usage)",
        teams.teams.len()
    ));

    let mut cases = Vec::new();
    for range in ["last_30_days", "last_3_months"] {
        for (name, team, users, sort) in [
            ("overview team=all", "all", false, ""),
            ("overview largest team", largest_team.as_str(), false, ""),
            ("users p1 team=all", "all", true, ""),
            ("users p1 largest team", largest_team.as_str(), true, ""),
            (
                "users p1 largest, days_used:desc",
                largest_team.as_str(),
                true,
                "&sort=days_used:desc",
            ),
        ] {
            let path = if users {
                format!("/v1/report/users?team={team}&range={range}&page=1&page_size=50{sort}")
            } else {
                format!("/v1/report/overview?team={team}&range={range}")
            };
            cases.push(Case {
                name: name.to_owned(),
                range,
                url: format!("{base}{path}"),
                path,
                users_page: users,
            });
        }
    }
    let ch_pid = std::fs::read_to_string(&args.clickhouse_pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let loadavg_before = host::load_average();
    let cpu_before = (cpu_secs(Some(report.process.pid())), cpu_secs(ch_pid));
    let wall = Instant::now();
    let mut results_cases = Vec::new();
    for case in &cases {
        let r = measure(&args, &http, case)
            .await
            .with_context(|| format!("case {} {}", case.name, case.range))?;
        say(format!(
            "{} {}: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
            r.case, r.range, r.p50_ms, r.p95_ms, r.max_ms
        ));
        results_cases.push(r);
    }
    let requests_wall_secs = wall.elapsed().as_secs_f64();
    let delta = |after: Option<f64>, before: Option<f64>| Some(after? - before?);
    let report_cpu_secs = delta(cpu_secs(Some(report.process.pid())), cpu_before.0);
    let clickhouse_cpu_secs = delta(cpu_secs(ch_pid), cpu_before.1);
    let loadavg_after = host::load_average();
    let report_memory = memory::of(report.process.pid());
    let oracle_check = if args.check_oracle {
        let teams: Vec<String> = teams.teams.iter().map(|t| t.team_id.clone()).collect();
        Some(check_oracle(&http, &base, &dataset.scenario, &teams).await?)
    } else {
        None
    };
    report.process.terminate(Duration::from_secs(30)).await?;

    let results = Results {
        date: chrono::Utc::now().to_rfc3339(),
        machine: machine(),
        clickhouse_version,
        team_all_teams: teams.teams.len(),
        largest_team,
        largest_team_users,
        dataset,
        dataset_reused: reused,
        warmup_requests: args.warmup,
        timed_requests: args.requests,
        cases: results_cases,
        report_vm_hwm_kb: report_memory.map(|m| m.peak_bytes / 1024),
        report_vm_rss_kb: report_memory.map(|m| m.rss_bytes / 1024),
        loadavg_before,
        loadavg_after,
        requests_wall_secs,
        report_cpu_secs,
        clickhouse_cpu_secs,
        oracle_check,
    };
    print_table(&results);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&results)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("results: {}", args.out.display());
    if let Some(check) = &results.oracle_check {
        for d in &check.differences {
            println!("differs from the oracle: {d}");
        }
        println!(
            "oracle check: {} overviews, {} differences (oracle built in {:.0}s)",
            check.overviews,
            check.differences.len(),
            check.oracle_secs
        );
        if !check.differences.is_empty() {
            bail!("the served overviews differ from the oracle");
        }
    }
    Ok(())
}

/// `url`'s JSON, as the benchmark's admin.
async fn get_json<T: serde::de::DeserializeOwned>(http: &reqwest::Client, url: &str) -> Result<T> {
    Ok(http
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Every team's overview, and all teams', over the last 30 days, the last 3
/// months and a custom range, next to the oracle's summary of the range the
/// service says it used.
async fn check_oracle(
    http: &reqwest::Client,
    base: &str,
    config: &ScenarioConfig,
    teams: &[String],
) -> Result<OracleCheck> {
    say("oracle check: generating the scenario and its oracle");
    let t = Instant::now();
    let config = config.clone();
    let oracle = tokio::task::spawn_blocking(move || -> Result<Oracle> {
        let scenario = Scenario::generate(&config)?;
        Ok(Oracle::from_scenario(&scenario)?)
    })
    .await??;
    let oracle_secs = t.elapsed().as_secs_f64();
    let today = chrono::Utc::now().date_naive();
    let custom = format!(
        "range=custom&from={}&to={}",
        today - chrono::Days::new(59),
        today - chrono::Days::new(10)
    );
    let mut differences = Vec::new();
    let mut overviews = 0;
    for range in ["range=last_30_days", "range=last_3_months", custom.as_str()] {
        for team in teams.iter().map(Some).chain([None]) {
            let q = format!("team={}&{range}", team.map_or("all", String::as_str));
            let o: serde_json::Value = get_json(http, &format!("{base}/v1/report/overview?{q}"))
                .await
                .with_context(|| format!("overview {q}"))?;
            let date = |field: &str| -> Result<chrono::NaiveDate> {
                let v = o["range"][field].as_str().unwrap_or_default();
                chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .with_context(|| format!("overview {q}: range.{field} {v:?}"))
            };
            let range = DateRange::new(date("from")?, date("to")?);
            let want = oracle.team_summary(team.map(String::as_str), range, chrono::Utc::now());
            let s = &o["subscriptions"];
            let f = &o["flex"];
            let tokens_milli = f["tokens_consumed"]
                .as_f64()
                .map(|t| (t * 1000.0).round() as u64);
            let fields = [
                (
                    "assigned_seats",
                    s["assigned_seats"].as_u64(),
                    Some(want.seats_assigned),
                ),
                ("active", s["active"].as_u64(), Some(want.seats_active)),
                ("inactive", s["inactive"].as_u64(), want.seats_inactive),
                (
                    "not_yet_active",
                    s["not_yet_active"].as_u64(),
                    Some(want.seats_not_yet_active),
                ),
                (
                    "tokens_consumed (thousandths)",
                    tokens_milli,
                    Some(want.flex_tokens_milli),
                ),
                ("flex users", f["users"].as_u64(), Some(want.flex_users)),
                (
                    "flex days_used",
                    f["days_used"].as_u64(),
                    Some(want.flex_days_used),
                ),
            ];
            for (name, served, expected) in fields {
                if served != expected {
                    differences.push(format!("{q}: {name} {served:?} != {expected:?}"));
                }
            }
            overviews += 1;
        }
    }
    Ok(OracleCheck {
        overviews,
        differences,
        oracle_secs,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On a signal the run is dropped, and with it the child processes.
    let outcome = tokio::select! {
        r = run(args) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow!("terminated")),
    };
    if let Err(e) = outcome {
        eprintln!("report-latency: error: {e:#}");
        // Without waiting for a generation thread still running.
        std::process::exit(1);
    }
    Ok(())
}
