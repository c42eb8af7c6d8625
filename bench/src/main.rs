//! `usage-bench`: sustained throughput of the raw path and of `usage-ingest`
//! (one instance and two in one consumer group), side by side in one run, from
//! the same pre-filled topics; then end-to-end freshness at half load and a
//! soak of usage-ingest's memory.
//!
//! 1. publishes a generated scenario once (`usage-loadgen`, no poison);
//! 2. for each run: the raw path (`raw-path`, JSON forwarded to
//!    `INSERT ... FORMAT JSONEachRow`) into a fresh table, then `usage-ingest`
//!    (enrichment and every rollup) into a fresh database, then two
//!    `usage-ingest` processes in one group into another fresh database, each
//!    with a new consumer group reading from offset 0;
//! 3. measures each from its first stored row to its last (the group join
//!    excluded), and each usage-ingest's peak RSS (VmHWM);
//! 4. freshness (`freshness.rs`): one usage-ingest on fresh topics under a
//!    background load at half the median sustained rate, probes every 100 ms,
//!    their time to be visible in ClickHouse; VmRSS sampled every 2 s;
//! 5. prints min / median / max and the ratios, and the CPU-seconds per
//!    million events of the consumer, the broker and ClickHouse in each
//!    measurement (`cpu.rs`); writes JSON.
//!
//! Run with `bench/run` (builds the release binaries first).

mod cpu;
mod freshness;
mod profile;
mod querylog;
mod support;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use usage_loadgen::{Oracle, PublishConfig};
use usage_testkit::clickhouse::execute;
use usage_testkit::host;
use usage_testkit::ingest::{self, IngestRun};
use usage_testkit::memory;
use usage_testkit::metrics::Metrics;
use usage_testkit::process::Process as Child;
use usage_testkit::services::Services;
use usage_testkit::stats::median;
use usage_testkit::topics::Topics;

use support::{clean_scenario, mb, query_count};

#[derive(Debug, Parser)]
#[command(name = "usage-bench")]
struct Args {
    /// Users of the scenario (6600 users over 90 days is about 1M authorizations).
    #[arg(long, default_value_t = 6600)]
    users: usize,
    #[arg(long, default_value_t = 90)]
    days: u32,
    /// Repetitions of each throughput measurement.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Length of the freshness phase: probes are published for this long
    /// under the background load (0 skips the freshness and soak phase).
    #[arg(long, default_value_t = 60)]
    freshness_secs: u64,
    /// Length of the soak (VmRSS every 2 s) in the same phase, the background
    /// load running throughout; default and minimum: --freshness-secs. The
    /// local broker keeps every message in memory until the topics are
    /// deleted at the end: measured ~0.65 GB a minute at 85 k msgs/s.
    #[arg(long)]
    soak_secs: Option<u64>,
    /// Background load of the freshness phase, messages per second; default:
    /// half the median sustained rate of one usage-ingest in this run.
    #[arg(long)]
    freshness_rate: Option<f64>,
    /// Time between the first stored row of the freshness phase and its first probe.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// Keep the databases the benchmark creates (dropped after each
    /// measurement by default).
    #[arg(long)]
    keep_databases: bool,
    /// Keep the logs of the usage-ingest processes (in a temporary directory;
    /// kept anyway when the benchmark fails).
    #[arg(long)]
    keep_logs: bool,
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
    /// After the throughput runs, one more usage-ingest (one instance) under
    /// `perf record`, its flame graph written here as SVG; that run is not
    /// counted in the figures (perf slows it). Needs `inferno` (`profile.rs`).
    #[arg(long)]
    flamegraph: Option<PathBuf>,
    /// Each consumer sends `log_queries=1` with its inserts, and what each
    /// table's inserts cost ClickHouse is read from system.query_log after
    /// each measurement (`querylog.rs`).
    #[arg(long)]
    query_log: bool,
    /// Extra options for every usage-ingest process, e.g.
    /// `--ingest-arg=--clickhouse-compression=none` (repeatable).
    #[arg(long = "ingest-arg", allow_hyphen_values = true)]
    ingest_args: Vec<String>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench/results/latest.json")]
    out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
struct Measurement {
    /// `raw`, `usage-ingest` (one instance) or `usage-ingest x2` (two
    /// instances in one consumer group).
    path: &'static str,
    run: usize,
    events: u64,
    /// Sustained rate between 10 % and 90 % of the load (all instances together).
    events_per_second: f64,
    /// Each usage-ingest process of the measurement.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    processes: Vec<Process>,
    /// Rows stored twice (re-consumed after a rebalance): count() - uniqExact(event_id).
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_rows: Option<u64>,
    /// Whether every expected row was stored (waited for after the measurement).
    #[serde(skip_serializing_if = "Option::is_none")]
    complete: Option<bool>,
    /// CPU-seconds per million events of the consumer, the broker and
    /// ClickHouse, from the consumer's start to the last row stored.
    cpu: cpu::Cpu,
    /// Per table, what its inserts cost ClickHouse (with --query-log).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    insert_cost: Vec<querylog::TableCost>,
}

#[derive(Debug, Clone, Serialize)]
struct Process {
    /// VmHWM once the whole load is stored: the peak RSS over the run.
    peak_rss_bytes: Option<u64>,
    /// Authorizations partitions this instance owned at 10 % of the load, at
    /// 90 %, and at the end (from its metrics).
    authorizations_partitions: [Option<f64>; 3],
    /// Authorizations this instance consumed (from its metrics).
    authorizations_consumed: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    date: String,
    machine: String,
    /// /proc/loadavg before the benchmark, after the throughput runs, at the end.
    load_average: [String; 3],
    /// What ClickHouse's data is stored on, when it runs on this machine
    /// (e.g. `ext4 without a journal (/dev/vda on /)`).
    clickhouse_data: Option<String>,
    users: usize,
    days: u32,
    authorizations_published: u64,
    payload_bytes: u64,
    measurements: Vec<Measurement>,
    raw_median: f64,
    ingest_median: f64,
    /// usage-ingest (one instance) / raw, median of the per-run ratios.
    ratio_median: f64,
    ingest2_median: f64,
    /// Two instances / raw, median of the per-run ratios.
    ratio2_median: f64,
    /// Two instances / one, median of the per-run ratios.
    two_vs_one_median: f64,
    /// Median over runs of the one instance's peak RSS.
    peak_rss_one_median_bytes: u64,
    /// Median over runs of the larger peak RSS of the two instances.
    peak_rss_two_median_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    freshness: Option<freshness::Report>,
}

/// Where a fill stands when it is measured.
struct Fill {
    /// Rows per second between 10 % and 90 % of the target.
    rate: f64,
    /// Authorizations partitions of each watched instance at 10 % and 90 %.
    partitions_low: Vec<Option<f64>>,
    partitions_high: Vec<Option<f64>>,
}

/// Instances whose assigned partitions are read when a fill crosses 10 % and 90 %.
struct Watch<'a> {
    ports: &'a [u16],
    topic: &'a str,
}

impl Watch<'_> {
    async fn partitions(&self) -> Vec<Option<f64>> {
        let mut out = Vec::new();
        for &port in self.ports {
            out.push(
                Metrics::scrape(port)
                    .await
                    .and_then(|m| m.by_topic("usage_ingest_assigned_partitions", self.topic)),
            );
        }
        out
    }
}

/// Waits until `sql` reaches `target`. The sustained rate: rows per second
/// between 10 % and 90 % of the target (start-up, group join and the last
/// batch excluded, the same way for every path).
async fn time_fill(
    client: &clickhouse::Client,
    sql: &str,
    target: u64,
    children: &mut [Child],
    watch: Option<&Watch<'_>>,
) -> anyhow::Result<Fill> {
    let deadline = Instant::now() + Duration::from_secs(900);
    let (low, high) = (target / 10, target - target / 10);
    let mut t_low: Option<(Instant, u64)> = None;
    let mut partitions_low = Vec::new();
    loop {
        let n = query_count(client, sql).await;
        let now = Instant::now();
        if n >= low && t_low.is_none() {
            t_low = Some((now, n));
            if let Some(w) = watch {
                partitions_low = w.partitions().await;
            }
        }
        if n >= high {
            let (t0, n0) = t_low.unwrap_or((now, n));
            let seconds = now.duration_since(t0).as_secs_f64();
            if seconds <= 0.0 || n <= n0 {
                bail!("the whole load landed between two polls: use more events (--users)");
            }
            let partitions_high = match watch {
                Some(w) => w.partitions().await,
                None => Vec::new(),
            };
            return Ok(Fill {
                rate: (n - n0) as f64 / seconds,
                partitions_low,
                partitions_high,
            });
        }
        for child in children.iter_mut() {
            child
                .check_alive()
                .with_context(|| format!("at {n} of {target} rows"))?;
        }
        if now >= deadline {
            bail!("timed out at {n} of {target} rows");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spread(v: &[f64]) -> (f64, f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (min, median(v.to_vec()), max)
}

/// What every measurement of a run shares.
struct Bench<'a> {
    args: &'a Args,
    tag: &'a str,
    topics: &'a Topics,
    logs: &'a Path,
    server: clickhouse::Client,
    published_auth: u64,
    /// Authorizations usage-ingest stores (the online ones).
    counted: u64,
}

impl Bench<'_> {
    async fn drop_database(&self, db: &str) {
        if !self.args.keep_databases {
            let _ = execute(&self.server, &format!("DROP DATABASE IF EXISTS {db}")).await;
        }
    }

    async fn raw(&self, run: usize) -> anyhow::Result<Measurement> {
        let args = self.args;
        let db = format!("{}_raw_{run}", self.tag);
        execute(&self.server, &format!("CREATE DATABASE {db}")).await?;
        execute(
            &self.server,
            &format!(
                "CREATE TABLE {db}.raw_authorizations (event_id String, occurred_at DateTime, \
                 user_id String, product String, product_version Nullable(String), access String, \
                 team_id Nullable(String), machine_id Nullable(String)) ENGINE = MergeTree ORDER BY tuple()"
            ),
        )
        .await?;
        let meter = cpu::Meter::start(&args.brokers, &args.clickhouse_url).await;
        let since = self.query_log_since().await?;
        let mut raw = [Child::spawn(
            "raw-path",
            Command::new(args.bin_dir.join("raw-path"))
                .args([
                    "--brokers",
                    &args.brokers,
                    "--topic",
                    &self.topics.authorizations,
                ])
                .args(["--group", &format!("{db}_group"), "--database", &db])
                .args(["--clickhouse-url", &args.clickhouse_url])
                .args(args.query_log.then_some("--log-queries"))
                .stdout(Stdio::null()),
            None,
        )?];
        let count_sql = format!("SELECT count() FROM {db}.raw_authorizations");
        let fill = time_fill(
            &self.server,
            &count_sql,
            self.published_auth,
            &mut raw,
            None,
        )
        .await;
        // The rest of the load, so the CPU covers the whole of it.
        let complete = match fill {
            Ok(_) => Some(
                self.wait_complete(&count_sql, self.published_auth, &mut raw)
                    .await?,
            ),
            Err(_) => None,
        };
        let cpu = meter.stop(&[raw[0].pid()], self.published_auth);
        drop(raw);
        let insert_cost = self.insert_costs(since).await?;
        self.drop_database(&db).await;
        Ok(Measurement {
            path: "raw",
            run,
            events: self.published_auth,
            events_per_second: fill?.rate,
            processes: Vec::new(),
            duplicate_rows: None,
            complete,
            cpu,
            insert_cost,
        })
    }

    /// `instances` usage-ingest processes in one new group, every rollup maintained.
    async fn ingest(&self, run: usize, instances: usize) -> anyhow::Result<Measurement> {
        let db = match instances {
            1 => format!("{}_ingest_{run}", self.tag),
            n => format!("{}_ingest{n}_{run}", self.tag),
        };
        let result = self.ingest_into(&db, run, instances, None).await;
        self.drop_database(&db).await;
        result
    }

    /// One usage-ingest under `perf record`, its flame graph written to `svg`.
    async fn profiled(&self, svg: &Path) -> anyhow::Result<Measurement> {
        let db = format!("{}_ingest_profiled", self.tag);
        let result = self.ingest_into(&db, 0, 1, Some(svg)).await;
        self.drop_database(&db).await;
        result
    }

    async fn ingest_into(
        &self,
        db: &str,
        run: usize,
        instances: usize,
        flamegraph: Option<&Path>,
    ) -> anyhow::Result<Measurement> {
        let args = self.args;
        let binary = args.bin_dir.join("usage-ingest");
        let migrate_log = self.logs.join(format!("{db}-migrate.log"));
        ingest::migrate(&binary, &args.clickhouse_url, db, &migrate_log)?;
        let services = Services {
            brokers: args.brokers.clone(),
            clickhouse_url: args.clickhouse_url.clone(),
        };
        let group = format!("{db}_group");
        let meter = cpu::Meter::start(&args.brokers, &args.clickhouse_url).await;
        let since = self.query_log_since().await?;
        let mut extra: Vec<String> = args.ingest_args.clone();
        if args.query_log {
            extra.push("--clickhouse-insert-setting=log_queries=1".to_owned());
        }
        // Started together, so both members are in the group's first
        // generation (checked below through their partitions).
        let (mut children, ports): (Vec<Child>, Vec<u16>) = (0..instances)
            .map(|i| {
                let log = self.logs.join(format!("{db}-{i}.log"));
                IngestRun::new(&binary, &services, db, self.topics, &group)
                    .args(&extra)
                    .spawn(&log)
                    .map(|ingest| (ingest.process, ingest.metrics_port))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        let recording = match flamegraph {
            Some(_) => Some(profile::record(children[0].pid(), self.logs)?),
            None => None,
        };
        let watch = Watch {
            ports: &ports,
            topic: &self.topics.authorizations,
        };
        // Rows stored are the reportable events (offline ones are consumed,
        // counted, not stored): scale the rate to events consumed.
        let count_sql = format!("SELECT count() FROM {db}.authorizations");
        let fill = time_fill(
            &self.server,
            &count_sql,
            self.counted,
            &mut children,
            Some(&watch),
        )
        .await?;
        // The rest of the load, so the peak RSS and the CPU cover the whole run.
        let complete = self
            .wait_complete(&count_sql, self.counted, &mut children)
            .await?;
        let pids: Vec<u32> = children.iter().map(Child::pid).collect();
        let cpu = meter.stop(&pids, self.published_auth);
        if let (Some(recording), Some(svg)) = (recording, flamegraph) {
            let title = format!(
                "usage-ingest, {} authorizations from offset 0 ({})",
                self.published_auth,
                chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
            );
            recording.finish(svg, &title)?;
            eprintln!("usage-bench: flame graph in {}", svg.display());
        }
        let mut processes = Vec::new();
        for (i, (child, &port)) in children.iter().zip(&ports).enumerate() {
            let metrics = Metrics::scrape(port).await;
            let topic = &self.topics.authorizations;
            processes.push(Process {
                peak_rss_bytes: memory::peak_bytes(child.pid()),
                authorizations_partitions: [
                    fill.partitions_low.get(i).copied().flatten(),
                    fill.partitions_high.get(i).copied().flatten(),
                    metrics
                        .as_ref()
                        .and_then(|m| m.by_topic("usage_ingest_assigned_partitions", topic)),
                ],
                authorizations_consumed: metrics
                    .as_ref()
                    .and_then(|m| m.by_topic("usage_ingest_events_consumed_total", topic)),
            });
        }
        drop(children);
        let insert_cost = self.insert_costs(since).await?;
        let stored = query_count(&self.server, &count_sql).await;
        let distinct = query_count(
            &self.server,
            &format!("SELECT uniqExact(event_id) FROM {db}.authorizations"),
        )
        .await;
        let rate = fill.rate * self.published_auth as f64 / self.counted.max(1) as f64;
        Ok(Measurement {
            path: if instances == 1 {
                "usage-ingest"
            } else {
                "usage-ingest x2"
            },
            run,
            events: self.published_auth,
            events_per_second: rate,
            processes,
            duplicate_rows: Some(stored.saturating_sub(distinct)),
            complete: Some(complete),
            cpu,
            insert_cost,
        })
    }

    /// ClickHouse's clock, when --query-log is on.
    async fn query_log_since(&self) -> anyhow::Result<Option<u64>> {
        if !self.args.query_log {
            return Ok(None);
        }
        Ok(Some(querylog::server_now(&self.args.clickhouse_url).await?))
    }

    async fn insert_costs(&self, since: Option<u64>) -> anyhow::Result<Vec<querylog::TableCost>> {
        match since {
            Some(since) => querylog::insert_costs(&self.args.clickhouse_url, since).await,
            None => Ok(Vec::new()),
        }
    }

    /// Waits (up to a minute) until `sql` counts `target` rows; whether it did.
    async fn wait_complete(
        &self,
        sql: &str,
        target: u64,
        children: &mut [Child],
    ) -> anyhow::Result<bool> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if query_count(&self.server, sql).await >= target {
                return Ok(true);
            }
            for child in children.iter_mut() {
                child.check_alive()?;
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tag = format!("bench{}", chrono::Utc::now().timestamp());
    let logs = std::env::temp_dir().join(format!("usage-bench-{tag}"));
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let topics = Topics::named(&tag);
    topics.create(&args.brokers, 4).await?;
    let result = bench(&args, &tag, &topics, &logs).await;
    let _ = topics.delete(&args.brokers).await;
    match &result {
        Ok(()) => {
            if args.keep_logs {
                eprintln!("usage-bench: process logs in {}", logs.display());
            } else {
                let _ = std::fs::remove_dir_all(&logs);
            }
        }
        Err(_) => eprintln!("usage-bench: process logs kept in {}", logs.display()),
    }
    result
}

async fn bench(args: &Args, tag: &str, topics: &Topics, logs: &Path) -> anyhow::Result<()> {
    let load_before = host::load_average();
    let clickhouse_data =
        querylog::data_filesystem(&args.clickhouse_url, &format!("{tag}_probe")).await;
    if let Some(fs) = &clickhouse_data {
        eprintln!("usage-bench: ClickHouse's data is on {fs}");
        if fs.contains("without a journal") {
            eprintln!(
                "usage-bench: on ext4 without a journal ClickHouse's CPU per event moves by 2x or more \
                 from run to run (file creation after deletes; docs/local-services.md)"
            );
        }
    }
    let scenario = clean_scenario(1, args.users, args.days)?;
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
            topics: topics.inbound(),
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

    let bench = Bench {
        args,
        tag,
        topics,
        logs,
        server: clickhouse::Client::default()
            .with_url(&args.clickhouse_url)
            .with_validation(false),
        published_auth,
        counted,
    };
    let mut measurements = Vec::new();
    for run in 1..=args.runs {
        // 1. The raw path.
        let m = bench.raw(run).await?;
        eprintln!(
            "usage-bench: run {run} raw path: {:.0} events/s",
            m.events_per_second
        );
        measurements.push(m);
        // 2. usage-ingest, every rollup maintained, then two instances.
        for instances in [1, 2] {
            let m = bench.ingest(run, instances).await?;
            let rss: Vec<String> = m
                .processes
                .iter()
                .map(|p| format!("{:.0}", mb(p.peak_rss_bytes.unwrap_or(0))))
                .collect();
            eprintln!(
                "usage-bench: run {run} usage-ingest x{instances}: {:.0} events/s, peak RSS {} MB",
                m.events_per_second,
                rss.join(" + ")
            );
            measurements.push(m);
        }
    }
    let load_after_throughput = host::load_average();
    if let Some(svg) = &args.flamegraph {
        let m = bench.profiled(svg).await?;
        eprintln!(
            "usage-bench: profiled usage-ingest (not counted): {:.0} events/s",
            m.events_per_second
        );
    }

    let rates = |path: &str| -> Vec<f64> {
        measurements
            .iter()
            .filter(|m| m.path == path)
            .map(|m| m.events_per_second)
            .collect()
    };
    let (raw, ingest, ingest2) = (
        rates("raw"),
        rates("usage-ingest"),
        rates("usage-ingest x2"),
    );
    let ratio =
        |a: &[f64], b: &[f64]| -> Vec<f64> { a.iter().zip(b).map(|(a, b)| a / b).collect() };
    let (ratios, ratios2, two_vs_one) = (
        ratio(&ingest, &raw),
        ratio(&ingest2, &raw),
        ratio(&ingest2, &ingest),
    );
    let peaks = |path: &str| -> Vec<f64> {
        measurements
            .iter()
            .filter(|m| m.path == path)
            .map(|m| {
                m.processes
                    .iter()
                    .filter_map(|p| p.peak_rss_bytes)
                    .max()
                    .unwrap_or(0) as f64
            })
            .collect()
    };
    let (peak1, peak2) = (peaks("usage-ingest"), peaks("usage-ingest x2"));

    // 3. Freshness at half load, and the soak.
    let ingest_median = median(ingest.clone());
    let fresh = if args.freshness_secs == 0 {
        None
    } else {
        let rate = args.freshness_rate.unwrap_or(ingest_median / 2.0);
        if rate <= 0.0 {
            bail!("no background rate for the freshness phase: measure a run or pass --freshness-rate");
        }
        let days = args.days.max(1) as f64;
        let config = freshness::Config {
            tag,
            brokers: &args.brokers,
            clickhouse_url: &args.clickhouse_url,
            bin_dir: &args.bin_dir,
            logs,
            rate,
            freshness_secs: args.freshness_secs,
            soak_secs: args.soak_secs.unwrap_or(args.freshness_secs),
            warmup_secs: args.warmup_secs,
            users: args.users,
            authorizations_per_user_day: published_auth as f64 / (args.users.max(1) as f64 * days),
            keep_databases: args.keep_databases,
        };
        Some(freshness::run(&config, &bench.server).await?)
    };
    let load_end = host::load_average();

    println!(
        "\n{published_auth} authorizations ({:.0} MB), {} runs, 4 partitions, each from offset 0 with a new group",
        payload_bytes as f64 / 1e6,
        args.runs
    );
    println!("{:<44} {:>12} {:>12} {:>12}", "", "min", "median", "max");
    for (name, v) in [
        ("raw path (events/s)", &raw),
        ("usage-ingest, 1 instance (events/s)", &ingest),
        ("usage-ingest, 2 instances (events/s)", &ingest2),
    ] {
        let (min, med, max) = spread(v);
        println!("{name:<44} {min:>12.0} {med:>12.0} {max:>12.0}");
    }
    for (name, v) in [
        ("usage-ingest 1 / raw (same run)", &ratios),
        ("usage-ingest 2 / raw (same run)", &ratios2),
        ("usage-ingest 2 / 1 (same run)", &two_vs_one),
    ] {
        let (min, med, max) = spread(v);
        println!("{name:<44} {min:>12.2} {med:>12.2} {max:>12.2}");
    }
    for (name, v) in [
        ("peak RSS, 1 instance (MB)", &peak1),
        ("peak RSS, 2 instances (MB, larger)", &peak2),
    ] {
        let (min, med, max) = spread(v);
        println!(
            "{name:<44} {:>12.0} {:>12.0} {:>12.0}",
            min / 1e6,
            med / 1e6,
            max / 1e6
        );
    }
    let cpus = |path: &str| -> Vec<cpu::Cpu> {
        measurements
            .iter()
            .filter(|m| m.path == path)
            .map(|m| m.cpu)
            .collect()
    };
    cpu::print_table(&[
        ("raw path", cpus("raw")),
        ("usage-ingest", cpus("usage-ingest")),
        ("usage-ingest x2", cpus("usage-ingest x2")),
    ]);
    println!("per run:");
    for m in measurements.iter().filter(|m| m.processes.is_empty()) {
        println!("  {}{}", run_and_cpu(m), incomplete(m));
    }
    for m in measurements.iter().filter(|m| !m.processes.is_empty()) {
        let each = |f: &dyn Fn(&Process) -> String| -> String {
            m.processes.iter().map(f).collect::<Vec<_>>().join(" + ")
        };
        let opt = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.0}"));
        println!(
            "  {}  peak RSS {} MB  partitions at 10%/90%/end {}  consumed {}  duplicates {}{}",
            run_and_cpu(m),
            each(&|p| format!("{:.0}", mb(p.peak_rss_bytes.unwrap_or(0)))),
            each(&|p| {
                let [a, b, c] = p.authorizations_partitions;
                format!("{}/{}/{}", opt(a), opt(b), opt(c))
            }),
            each(&|p| opt(p.authorizations_consumed)),
            m.duplicate_rows.unwrap_or(0),
            incomplete(m),
        );
    }
    for m in measurements.iter().filter(|m| !m.insert_cost.is_empty()) {
        println!(
            "  run {} {}: ClickHouse CPU-s per M events in the inserts (system.query_log):",
            m.run, m.path
        );
        let per_million = 1e6 / m.events.max(1) as f64;
        let mut total = 0.0;
        for t in &m.insert_cost {
            total += t.cpu_seconds;
            println!(
                "    {:<22} {:>6} inserts {:>9} rows  {:>6.2} CPU-s per M events  {:>6.2} CPU-s per M rows",
                t.table,
                t.inserts,
                t.rows,
                t.cpu_seconds * per_million,
                t.cpu_seconds * 1e6 / t.rows.max(1) as f64
            );
        }
        println!("    {:<22} {:>49.2}", "all inserts", total * per_million);
    }
    if let Some(f) = &fresh {
        let b = &f.background;
        let p = &f.probes;
        let s = &f.soak;
        println!(
            "\nfreshness at half load ({} s of probes every 100 ms; background target {:.0} msgs/s, achieved {:.0} msgs/s; usage-ingest stored {:.0} rows/s)",
            f.freshness_secs, b.target_rate, b.achieved_rate, f.ingest_rows_per_second
        );
        println!(
            "  probes: {} published, {} visible, {} missing, {} send errors",
            p.published, p.visible, p.missing, p.send_errors
        );
        println!(
            "  published -> in authorizations and daily_usage (ms): p50 {:.0}  p99 {:.0}  max {:.0}  mean {:.0}  (broker ack p50 {:.1}; poll query p50 {:.1}, max {:.0})",
            p.p50_ms, p.p99_ms, p.max_ms, p.mean_ms, p.ack_p50_ms, p.poll_query_p50_ms, p.poll_query_max_ms
        );
        if let Some(why) = &b.ended_early {
            println!("  NOTE: the background ended early: {why}");
        }
        println!(
            "  soak: usage-ingest VmRSS over {:.0} s, {} samples every {} s (MB): first {:.0}  min {:.0}  max {:.0}  last {:.0}  second-half median {:.0}  last vs it {:+.1}% -> {}  (VmHWM {:.0})",
            s.duration_secs,
            s.samples.len(),
            s.interval_secs,
            mb(s.first_bytes),
            mb(s.min_bytes),
            mb(s.max_bytes),
            mb(s.last_bytes),
            mb(s.second_half_median_bytes),
            s.last_vs_second_half_pct,
            if s.flat { "flat" } else { "GROWING" },
            mb(s.peak_bytes),
        );
    }
    println!("load average (1/5/15 min): before {load_before}; after the throughput runs {load_after_throughput}; at the end {load_end}");
    if let Some(fs) = &clickhouse_data {
        println!("ClickHouse's data on {fs}");
    }

    let report = Report {
        date: chrono::Utc::now().to_rfc3339(),
        machine: host::cpu_model(),
        load_average: [load_before, load_after_throughput, load_end],
        clickhouse_data,
        users: args.users,
        days: args.days,
        authorizations_published: published_auth,
        payload_bytes,
        raw_median: median(raw),
        ingest_median,
        ratio_median: median(ratios),
        ingest2_median: median(ingest2),
        ratio2_median: median(ratios2),
        two_vs_one_median: median(two_vs_one),
        peak_rss_one_median_bytes: median(peak1) as u64,
        peak_rss_two_median_bytes: median(peak2) as u64,
        freshness: fresh,
        measurements,
    };
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    println!("results: {}", args.out.display());
    Ok(())
}

/// A measurement's run, path, rate and CPU-seconds per million events, as
/// each line of the per-run listing starts.
fn run_and_cpu(m: &Measurement) -> String {
    let two = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.2}"));
    format!(
        "run {} {:<16} {:>9.0} events/s  CPU-s per M events: consumer {:.2} broker {} clickhouse {} (others' {})",
        m.run,
        m.path,
        m.events_per_second,
        m.cpu.consumer,
        two(m.cpu.broker),
        two(m.cpu.clickhouse),
        two(m.cpu.clickhouse_background),
    )
}

/// The mark of a measurement that did not see every event stored.
fn incomplete(m: &Measurement) -> &'static str {
    if m.complete == Some(false) {
        "  INCOMPLETE"
    } else {
        ""
    }
}
