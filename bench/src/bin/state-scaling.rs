//! `state-scaling`: usage-ingest's memory, start-up and throughput as the
//! number of users grows, with its enrichment state at its default budget
//! (issue "bounded state at a million users"; BENCHMARKS.md).
//!
//! Per size (10k, 100k, 1M users by default):
//!
//! 1. **History**: a generated scenario of that many users (fewer days at
//!    the large end) published to fresh topics and ingested by usage-ingest
//!    into `usage_bench_state_<users>` — the assignment history, Flex
//!    windows and rates a restarted instance finds in ClickHouse. Reused
//!    while its record (`.local/bench/state-<users>.json`) matches.
//! 2. **Offered rate, from a start**: authorizations published at `--rate`
//!    per second for `--rate-secs`, one per assigned (user, product) in a
//!    random order (cycled when there are fewer pairs: at a million users
//!    nearly every event is a user the state has not seen), to fresh topics;
//!    half a second in, a new usage-ingest (release, default options, a new
//!    group) starts on the history's database. From its start: `/readyz`
//!    (start-up reads done), partitions assigned, the first stored batch
//!    (`usage_ingest_rows_inserted_total`, polled every 20 ms; the commit
//!    follows the insert). The rate stored over the phase, the largest
//!    backlog seen, peak RSS (`VmHWM`) and the state's cache metrics.
//! 3. **Full speed**: a backlog of `--backlog` of the same authorizations,
//!    drained by another new instance: the rate (10 % to 90 %) and peak RSS.
//!
//! Results: `--out` (JSON).

use anyhow::{bail, Context, Result};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use usage_loadgen::{PublishConfig, Scenario, ScenarioConfig};
use usage_testkit::ingest::{Ingest, IngestRun};
use usage_testkit::metrics::Metrics;
use usage_testkit::services::Services;
use usage_testkit::topics::Topics;

#[derive(Debug, Parser)]
#[command(
    name = "state-scaling",
    about = "usage-ingest's RSS, start-up and throughput at 10k, 100k and 1M users."
)]
struct Args {
    /// The sizes, in users.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    users: Vec<usize>,
    /// Authorizations waiting when usage-ingest starts.
    #[arg(long, default_value_t = 300_000)]
    backlog: usize,
    /// Authorizations per second offered after the backlog.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// For how long.
    #[arg(long, default_value_t = 30)]
    rate_secs: u64,
    /// Extra options of the measured usage-ingest (none: its defaults).
    #[arg(long, allow_hyphen_values = true)]
    ingest_option: Vec<String>,
    /// Build the histories again.
    #[arg(long)]
    rebuild: bool,
    #[arg(long, env = "USAGE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(
        long,
        env = "USAGE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    clickhouse_url: String,
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[arg(long, default_value = ".local/bench")]
    work_dir: PathBuf,
    #[arg(long, default_value = "bench/results/state-scaling.json")]
    out: PathBuf,
}

/// The history a size is measured against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct History {
    database: String,
    users: usize,
    days: u32,
    events_per_user_day: f64,
    messages: u64,
    assignment_events: u64,
    authorizations: u64,
    flex_windows: u64,
    build_secs: f64,
}

#[derive(Debug, Serialize)]
struct SizeResult {
    history: History,
    pairs_assigned: u64,
    /// With the offered rate flowing from before the start.
    start: Start,
    offered_events_per_sec: f64,
    stored_events_per_sec_at_offered_rate: f64,
    max_backlog_at_offered_rate: u64,
    peak_rss_mb_at_offered_rate: f64,
    /// The state's cache at the end of the offered rate.
    state_cache_entries: f64,
    state_cache_bytes: f64,
    state_cache_hits: f64,
    state_cache_misses: f64,
    state_cache_evictions: f64,
    state_load_seconds_total: f64,
    batches: f64,
    /// A backlog drained by a new instance at full speed.
    backlog: usize,
    backlog_drain_events_per_sec: f64,
    peak_rss_mb_draining: f64,
    load_average_after: String,
}

#[derive(Debug, Serialize)]
struct Report {
    run_at: String,
    host: String,
    load_average_before: String,
    ingest_options: Vec<String>,
    sizes: Vec<SizeResult>,
}

fn say(s: impl AsRef<str>) {
    eprintln!(
        "[state-scaling {}] {}",
        chrono::Utc::now().format("%H:%M:%S"),
        s.as_ref()
    );
}

/// Fewer days of history at the large end, so each builds in minutes.
fn shape(users: usize) -> (u32, f64) {
    match users {
        0..=20_000 => (30, 1.0),
        20_001..=200_000 => (10, 1.0),
        _ => (3, 1.0),
    }
}

async fn number(client: &clickhouse::Client, sql: &str) -> Result<u64> {
    usage_testkit::clickhouse::number(client, sql).await
}

fn services(args: &Args) -> Services {
    Services {
        brokers: args.brokers.clone(),
        clickhouse_url: args.clickhouse_url.clone(),
    }
}

async fn history(args: &Args, users: usize, client: &clickhouse::Client) -> Result<History> {
    let database = format!("usage_bench_state_{users}");
    let record = args.work_dir.join(format!("state-{users}.json"));
    let (days, events_per_user_day) = shape(users);
    if !args.rebuild {
        if let Some(h) = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<History>(&b).ok())
        {
            let held = number(
                client,
                &format!("SELECT count() FROM {database}.assignment_events"),
            )
            .await
            .unwrap_or(0);
            if h.days == days && held == h.assignment_events && held > 0 {
                say(format!("{users} users: reusing {database}"));
                return Ok(h);
            }
        }
    }
    let t = Instant::now();
    let config = ScenarioConfig {
        seed: 20,
        users,
        teams: (users / 200).max(20),
        days,
        events_per_user_day,
        end: chrono::Utc::now() - chrono::TimeDelta::hours(1),
        duplicate_share: 0.0,
        late_share: 0.0,
        poison_share: 0.0,
        ..ScenarioConfig::default()
    };
    let scenario = Scenario::generate(&config)?;
    let count = scenario.count();
    say(format!(
        "{users} users: publishing {} messages",
        count.messages
    ));
    let topics = Topics::named(&format!("statehist{}", chrono::Utc::now().timestamp()));
    topics.create(&args.brokers, 4).await?;
    let published = usage_loadgen::publish(
        &PublishConfig {
            topics: topics.inbound(),
            ..PublishConfig::new(args.brokers.clone())
        },
        scenario.messages(),
        Some(count.messages),
        |_| {},
    )
    .await?;
    drop(scenario);
    usage_testkit::clickhouse::execute(client, &format!("DROP DATABASE IF EXISTS {database}"))
        .await?;
    let log = args.work_dir.join(format!("state-history-{users}.log"));
    let mut ingest = IngestRun::new(
        args.bin_dir.join("usage-ingest"),
        &services(args),
        &database,
        &topics,
        &format!("{}_group", topics.authorizations),
    )
    .arg("--migrate")
    .spawn(&log)?;
    let expected = published.messages;
    let mut last = (0.0, Instant::now());
    loop {
        ingest.process.check_alive()?;
        let consumed = ingest
            .metrics()
            .await
            .map_or(0.0, |m| m.sum("usage_ingest_events_consumed_total"));
        if consumed as u64 >= expected {
            break;
        }
        if consumed > last.0 {
            last = (consumed, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(120) {
            bail!("history of {users} users: stuck at {consumed} of {expected} messages");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The last batch is written before the drain ends.
    ingest.process.terminate(Duration::from_secs(60)).await?;
    let _ = topics.delete(&args.brokers).await;
    let q = |table: &str| format!("SELECT count() FROM {database}.{table}");
    let h = History {
        database: database.clone(),
        users,
        days,
        events_per_user_day,
        messages: expected,
        assignment_events: number(client, &q("assignment_events")).await?,
        authorizations: number(client, &q("authorizations")).await?,
        flex_windows: number(client, &q("flex_windows")).await?,
        build_secs: t.elapsed().as_secs_f64(),
    };
    std::fs::write(&record, serde_json::to_vec_pretty(&h)?)?;
    say(format!(
        "{users} users: history built in {:.0}s: {h:?}",
        h.build_secs
    ));
    Ok(h)
}

/// Assigned (user, product, access) in a random order.
async fn pairs(
    client: &clickhouse::Client,
    database: &str,
) -> Result<Vec<(String, String, String)>> {
    client
        .query(&format!(
            "SELECT user_id, product, toString(access) FROM {database}.assignment_state FINAL \
             WHERE assigned = 1 ORDER BY cityHash64(user_id, product, team_id)"
        ))
        .fetch_all::<(String, String, String)>()
        .await
        .context("reading the assigned pairs")
}

fn payload(n: usize, pair: &(String, String, String)) -> String {
    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    format!(
        r#"{{"event_id":"live-{n}","occurred_at":"{at}","user_id":"{}","product":"{}","access":"{}"}}"#,
        pair.0, pair.1, pair.2
    )
}

fn producer(args: &Args) -> Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .create()?)
}

/// Publishes events `from..to` (pairs cycled) to `topic`, at `rate` per second (0: at once).
async fn publish(
    producer: &FutureProducer,
    topic: &str,
    pairs: &[(String, String, String)],
    from: usize,
    to: usize,
    rate: f64,
) -> Result<()> {
    let started = Instant::now();
    let mut waiting = Vec::with_capacity(10_000);
    for n in from..to {
        let pair = &pairs[n % pairs.len()];
        let body = payload(n, pair);
        let record = FutureRecord::to(topic).key(&pair.0).payload(&body);
        waiting.push(producer.send_result(record).map_err(|(e, _)| e)?);
        if waiting.len() >= 10_000 {
            for w in waiting.drain(..) {
                w.await?.map_err(|(e, _)| e)?;
            }
        }
        if rate > 0.0 && (n - from) % 1000 == 999 {
            let due = Duration::from_secs_f64((n - from + 1) as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    for w in waiting {
        w.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

fn stored(m: &Metrics) -> u64 {
    m.sum("usage_ingest_rows_inserted_total{table=\"authorizations\"}") as u64
}

async fn stored_now(ingest: &Ingest) -> u64 {
    ingest.metrics().await.map_or(0, |m| stored(&m))
}

/// A usage-ingest started on `topics` (a new group) against the history.
fn start(args: &Args, h: &History, topics: &Topics, what: &str) -> Result<Ingest> {
    let log = args.work_dir.join(format!("state-{what}-{}.log", h.users));
    IngestRun::new(
        args.bin_dir.join("usage-ingest"),
        &services(args),
        &h.database,
        topics,
        &format!("{}_group", topics.authorizations),
    )
    .args(&args.ingest_option)
    .spawn(&log)
}

/// The offered rate from the start: how long until the first stored
/// batch (and until ready, and assigned), the rate stored, peak RSS.
async fn offered(
    args: &Args,
    h: &History,
    pairs: &[(String, String, String)],
) -> Result<(Start, f64, u64, f64, Metrics)> {
    let topics = Topics::named(&format!("stateoffer{}", chrono::Utc::now().timestamp()));
    topics.create(&args.brokers, 4).await?;
    let total = (args.rate * args.rate_secs as f64) as usize;
    let publisher = {
        let (producer, topic, pairs) = (
            producer(args)?,
            topics.authorizations.clone(),
            pairs.to_vec(),
        );
        let rate = args.rate;
        tokio::spawn(async move { publish(&producer, &topic, &pairs, 0, total, rate).await })
    };
    // Usage is flowing when the instance starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let phase = Instant::now();
    let mut ingest = start(args, h, &topics, "offered")?;
    let mut s = Start::default();
    let mut max_behind = 0u64;
    loop {
        ingest.process.check_alive()?;
        let now = phase.elapsed().as_secs_f64();
        let m = ingest.metrics().await;
        let n = m.as_ref().map_or(0, stored);
        if s.ready.is_none() && ingest.ready().await == Some(true) {
            s.ready = Some(now);
        }
        if s.assigned.is_none()
            && m.as_ref()
                .is_some_and(|m| m.sum("usage_ingest_assigned_partitions") > 0.0)
        {
            s.assigned = Some(now);
        }
        if s.first_batch.is_none() && n > 0 {
            s.first_batch = Some(now);
            say(format!(
                "{} users: first batch stored {now:.2}s after start ({s:?})",
                h.users
            ));
        }
        let offered = ((now + 0.5) * args.rate) as u64;
        if s.first_batch.is_some() {
            max_behind = max_behind.max(offered.min(total as u64).saturating_sub(n));
        }
        if n >= total as u64 {
            break;
        }
        if phase.elapsed() > Duration::from_secs(args.rate_secs + 300) {
            bail!(
                "{} users: {n} of {total} stored at the offered rate",
                h.users
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let phase_secs = phase.elapsed().as_secs_f64() + 0.5;
    publisher.await??;
    let m = ingest.metrics().await.context("metrics at the end")?;
    let peak = usage_testkit::memory::peak_bytes(ingest.pid()).unwrap_or(0);
    ingest.process.terminate(Duration::from_secs(30)).await?;
    let _ = topics.delete(&args.brokers).await;
    Ok((
        s,
        total as f64 / phase_secs,
        max_behind,
        peak as f64 / 1e6,
        m,
    ))
}

/// A backlog drained at full speed: the rate (10 % to 90 %), peak RSS.
async fn drain(args: &Args, h: &History, pairs: &[(String, String, String)]) -> Result<(f64, f64)> {
    let topics = Topics::named(&format!("statedrain{}", chrono::Utc::now().timestamp()));
    topics.create(&args.brokers, 4).await?;
    publish(
        &producer(args)?,
        &topics.authorizations,
        pairs,
        0,
        args.backlog,
        0.0,
    )
    .await?;
    let started = Instant::now();
    let mut ingest = start(args, h, &topics, "drain")?;
    let (mut t10, mut t90) = (None, None);
    let backlog = args.backlog as u64;
    loop {
        ingest.process.check_alive()?;
        let n = stored_now(&ingest).await;
        let now = started.elapsed().as_secs_f64();
        if n >= backlog / 10 && t10.is_none() {
            t10 = Some(now);
        }
        if n >= backlog * 9 / 10 && t90.is_none() {
            t90 = Some(now);
        }
        if n >= backlog {
            break;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("{} users: {n} of {backlog} stored after 900 s", h.users);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = (0.8 * backlog as f64) / (t90.unwrap_or(0.0) - t10.unwrap_or(0.0)).max(1e-3);
    let peak = usage_testkit::memory::peak_bytes(ingest.pid()).unwrap_or(0);
    ingest.process.terminate(Duration::from_secs(30)).await?;
    let _ = topics.delete(&args.brokers).await;
    Ok((rate, peak as f64 / 1e6))
}

/// Seconds from the process's start.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Start {
    /// `/readyz` answers 200: the start-up reads are done, consuming.
    ready: Option<f64>,
    /// Partitions assigned by the group.
    assigned: Option<f64>,
    /// The first batch stored.
    first_batch: Option<f64>,
}

async fn measure(args: &Args, h: History, client: &clickhouse::Client) -> Result<SizeResult> {
    let pairs = pairs(client, &h.database).await?;
    if pairs.is_empty() {
        bail!("no assigned pair in {}", h.database);
    }
    say(format!("{} users: {} assigned pairs", h.users, pairs.len()));
    let (start, stored_rate, max_behind, peak_offered, m) = offered(args, &h, &pairs).await?;
    say(format!(
        "{} users: {stored_rate:.0} events/s stored at {} offered, peak RSS {peak_offered:.0} MB",
        h.users, args.rate
    ));
    let (drain_rate, peak_drain) = drain(args, &h, &pairs).await?;
    say(format!(
        "{} users: backlog drained at {drain_rate:.0} events/s, peak RSS {peak_drain:.0} MB",
        h.users
    ));
    let r = SizeResult {
        pairs_assigned: pairs.len() as u64,
        start,
        offered_events_per_sec: args.rate,
        stored_events_per_sec_at_offered_rate: stored_rate,
        max_backlog_at_offered_rate: max_behind,
        peak_rss_mb_at_offered_rate: peak_offered,
        backlog: args.backlog,
        backlog_drain_events_per_sec: drain_rate,
        peak_rss_mb_draining: peak_drain,
        state_cache_entries: m.sum("usage_ingest_state_cache_entries"),
        state_cache_bytes: m.sum("usage_ingest_state_cache_bytes"),
        state_cache_hits: m.sum("usage_ingest_state_cache_hits_total"),
        state_cache_misses: m.sum("usage_ingest_state_cache_misses_total"),
        state_cache_evictions: m.sum("usage_ingest_state_cache_evictions_total"),
        state_load_seconds_total: m.sum("usage_ingest_state_load_seconds_sum"),
        batches: m.sum("usage_ingest_state_load_seconds_count"),
        load_average_after: usage_testkit::host::load_average(),
        history: h,
    };
    say(format!("{} users: {r:?}", r.history.users));
    Ok(r)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.work_dir)?;
    let client = clickhouse::Client::default()
        .with_url(&args.clickhouse_url)
        .with_validation(false);
    let mut report = Report {
        run_at: chrono::Utc::now().to_rfc3339(),
        host: usage_testkit::host::cpu_model(),
        load_average_before: usage_testkit::host::load_average(),
        ingest_options: args.ingest_option.clone(),
        sizes: Vec::new(),
    };
    for &users in &args.users {
        let h = history(&args, users, &client).await?;
        report.sizes.push(measure(&args, h, &client).await?);
        std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    }
    say(format!("results in {}", args.out.display()));
    Ok(())
}
