//! `usage-bench`: sustained throughput of the raw path and of `usage-ingest`,
//! side by side in one run, from the same pre-filled topics.
//!
//! 1. publishes a generated scenario once (`usage-loadgen`, no poison);
//! 2. for each run: the raw path (`raw-path`, JSON forwarded to
//!    `INSERT ... FORMAT JSONEachRow`) into a fresh table, then `usage-ingest`
//!    (enrichment and every rollup) into a fresh database, each with a new
//!    consumer group reading from offset 0;
//! 3. measures each from its first stored row to its last (the group join
//!    excluded), and prints min / median / max and the ratio; writes JSON.
//!
//! Run with `bench/run` (builds the release binaries first).

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use usage_loadgen::{Oracle, PublishConfig, Scenario, ScenarioConfig, Topics};

#[derive(Debug, Parser)]
#[command(name = "usage-bench")]
struct Args {
    /// Users of the scenario (6600 users over 90 days is about 1M authorizations).
    #[arg(long, default_value_t = 6600)]
    users: usize,
    #[arg(long, default_value_t = 90)]
    days: u32,
    /// Repetitions of each measurement.
    #[arg(long, default_value_t = 3)]
    runs: usize,
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
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench/results/latest.json")]
    out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
struct Measurement {
    path: &'static str,
    run: usize,
    events: u64,
    /// Sustained rate between 10 % and 90 % of the load.
    events_per_second: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    machine: String,
    users: usize,
    days: u32,
    authorizations_published: u64,
    payload_bytes: u64,
    measurements: Vec<Measurement>,
    raw_median: f64,
    ingest_median: f64,
    ratio_median: f64,
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn query_count(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query(sql).fetch_one::<u64>().await.unwrap_or(0)
}

async fn execute(client: &clickhouse::Client, sql: &str) -> anyhow::Result<()> {
    client
        .query(sql)
        .execute()
        .await
        .with_context(|| sql.to_owned())
}

/// Waits until `sql` reaches `target`. The sustained rate: rows per second
/// between 10 % and 90 % of the target (start-up, group join and the last
/// batch excluded, the same way for every path).
async fn time_fill(
    client: &clickhouse::Client,
    sql: &str,
    target: u64,
    child: &mut Killed,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(900);
    let (low, high) = (target / 10, target - target / 10);
    let mut t_low: Option<(Instant, u64)> = None;
    loop {
        let n = query_count(client, sql).await;
        let now = Instant::now();
        if n >= low && t_low.is_none() {
            t_low = Some((now, n));
        }
        if n >= high {
            let (t0, n0) = t_low.unwrap_or((now, n));
            let seconds = now.duration_since(t0).as_secs_f64();
            if seconds <= 0.0 || n <= n0 {
                bail!("the whole load landed between two polls: use more events (--users)");
            }
            return Ok((n - n0) as f64 / seconds);
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            bail!("the consumer exited ({status}) at {n} of {target} rows");
        }
        if now >= deadline {
            bail!("timed out at {n} of {target} rows");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn spread(v: &[f64]) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (min, median(v.to_vec()), max)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tag = format!("bench{}", chrono::Utc::now().timestamp());
    let topics = Topics {
        authorizations: format!("{tag}.authorizations"),
        assignments: format!("{tag}.assignments"),
        directory: format!("{tag}.directory"),
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .create()?;
    let dlq = format!("{tag}.dlq");
    let names = [
        topics.authorizations.as_str(),
        topics.assignments.as_str(),
        topics.directory.as_str(),
        dlq.as_str(),
    ];
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| NewTopic::new(t, 4, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }

    let scenario = Scenario::generate(&ScenarioConfig {
        seed: 1,
        users: args.users,
        days: args.days,
        end: chrono::Utc::now() - chrono::TimeDelta::hours(1),
        duplicate_share: 0.0,
        late_share: 0.0,
        poison_share: 0.0,
        ..ScenarioConfig::default()
    })?;
    let oracle = Oracle::from_scenario(&scenario)?;
    let counted = oracle.totals().events_counted;
    let published_auth = scenario
        .messages()
        .filter(|m| m.topic == usage_loadgen::Topic::Authorizations)
        .count() as u64;
    let payload_bytes: u64 = scenario
        .messages()
        .filter(|m| m.topic == usage_loadgen::Topic::Authorizations)
        .map(|m| m.payload.len() as u64)
        .sum();
    eprintln!("usage-bench: publishing {published_auth} authorizations ({payload_bytes} bytes) and their reference data");
    let report = usage_loadgen::publish_scenario(
        &PublishConfig {
            topics: topics.clone(),
            ..PublishConfig::new(args.brokers.clone())
        },
        &scenario,
        |_| {},
    )
    .await?;
    eprintln!(
        "usage-bench: published in {:.1}s",
        report.elapsed.as_secs_f64()
    );

    let server = clickhouse::Client::default()
        .with_url(&args.clickhouse_url)
        .with_validation(false);
    let mut measurements = Vec::new();
    for run in 1..=args.runs {
        // 1. The raw path.
        let db = format!("{tag}_raw_{run}");
        execute(&server, &format!("CREATE DATABASE {db}")).await?;
        execute(
            &server,
            &format!(
                "CREATE TABLE {db}.raw_authorizations (event_id String, occurred_at DateTime, \
                 user_id String, product String, product_version Nullable(String), access String, \
                 team_id Nullable(String), machine_id Nullable(String)) ENGINE = MergeTree ORDER BY tuple()"
            ),
        )
        .await?;
        let mut raw = Killed(
            Command::new(args.bin_dir.join("raw-path"))
                .args([
                    "--brokers",
                    &args.brokers,
                    "--topic",
                    &topics.authorizations,
                ])
                .args(["--group", &format!("{db}_group"), "--database", &db])
                .args(["--clickhouse-url", &args.clickhouse_url])
                .stdout(Stdio::null())
                .spawn()
                .context("starting raw-path")?,
        );
        let rate = time_fill(
            &server,
            &format!("SELECT count() FROM {db}.raw_authorizations"),
            published_auth,
            &mut raw,
        )
        .await?;
        drop(raw);
        measurements.push(Measurement {
            path: "raw",
            run,
            events: published_auth,
            events_per_second: rate,
        });
        eprintln!("usage-bench: run {run} raw path: {rate:.0} events/s");

        // 2. usage-ingest, every rollup maintained.
        let db = format!("{tag}_ingest_{run}");
        let status = Command::new(args.bin_dir.join("usage-ingest"))
            .args(["migrate", "--clickhouse-url", &args.clickhouse_url])
            .args(["--clickhouse-database", &db])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("migrate failed");
        }
        let mut ingest = Killed(
            Command::new(args.bin_dir.join("usage-ingest"))
                .arg("run")
                .args([
                    "--kafka-brokers",
                    &args.brokers,
                    "--group-id",
                    &format!("{db}_group"),
                ])
                .args(["--authorizations-topic", &topics.authorizations])
                .args(["--assignments-topic", &topics.assignments])
                .args(["--directory-topic", &topics.directory, "--dlq-topic", &dlq])
                .args([
                    "--clickhouse-url",
                    &args.clickhouse_url,
                    "--clickhouse-database",
                    &db,
                ])
                .args([
                    "--session-timeout-ms",
                    "6000",
                    "--heartbeat-interval-ms",
                    "500",
                ])
                .args(["--metrics-addr", "127.0.0.1:0"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting usage-ingest")?,
        );
        // Rows stored are the reportable events (offline ones are consumed,
        // counted, not stored): scale the rate to events consumed.
        let stored_rate = time_fill(
            &server,
            &format!("SELECT count() FROM {db}.authorizations"),
            counted,
            &mut ingest,
        )
        .await?;
        drop(ingest);
        let rate = stored_rate * published_auth as f64 / counted.max(1) as f64;
        measurements.push(Measurement {
            path: "usage-ingest",
            run,
            events: published_auth,
            events_per_second: rate,
        });
        eprintln!("usage-bench: run {run} usage-ingest: {rate:.0} events/s");
    }

    let rates = |path: &str| -> Vec<f64> {
        measurements
            .iter()
            .filter(|m| m.path == path)
            .map(|m| m.events_per_second)
            .collect()
    };
    let (raw, ingest) = (rates("raw"), rates("usage-ingest"));
    let ratios: Vec<f64> = raw.iter().zip(&ingest).map(|(r, i)| i / r).collect();
    println!(
        "\n{published_auth} authorizations ({:.0} MB), {} runs, one consumer each, 4 partitions",
        payload_bytes as f64 / 1e6,
        args.runs
    );
    println!("{:<34} {:>12} {:>12} {:>12}", "", "min", "median", "max");
    for (name, v) in [
        ("raw path (events/s)", &raw),
        ("usage-ingest (events/s)", &ingest),
    ] {
        let (min, med, max) = spread(v);
        println!("{name:<34} {min:>12.0} {med:>12.0} {max:>12.0}");
    }
    let (min, med, max) = spread(&ratios);
    println!(
        "{:<34} {min:>12.2} {med:>12.2} {max:>12.2}",
        "usage-ingest / raw (same run)"
    );
    let report = Report {
        date: chrono::Utc::now().to_rfc3339(),
        machine: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .map(str::to_owned)
            })
            .unwrap_or_default(),
        users: args.users,
        days: args.days,
        authorizations_published: published_auth,
        payload_bytes,
        raw_median: median(raw),
        ingest_median: median(ingest),
        ratio_median: med,
        measurements,
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    println!("results: {}", args.out.display());
    let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
    Ok(())
}
