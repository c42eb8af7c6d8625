//! `report-latency`: latency of the report service over a large dataset, by
//! the real path: generated events → Kafka → `usage-ingest` → ClickHouse →
//! `usage-report` over HTTP.
//!
//! 1. **The dataset** (`dataset`): reused when the parameters recorded in
//!    `.local/bench/report-dataset-<db>.json` match and the database still
//!    holds the rows recorded there (`--rebuild` forces a new one).
//! 2. **The variants**, each its own `usage-report` process on that
//!    database, all running at once: the query path before
//!    (`--baseline-bin`, an earlier build), this one computing every request
//!    (`--report-cache-secs 0`), and this one as it is served (the brief
//!    per-filter-set cache on).
//! 3. **Side by side** (`measure`): for every case, warm-up requests then N
//!    timed ones, each round asking every uncached variant in turn on its
//!    own keep-alive connection (so a machine busier at one moment slows
//!    them alike), then the cached one's requests back to back (as the page
//!    asks: spaced by the others' answers, they would outlive its freshness
//!    and measure only misses), timed client-side; the page's full load is its three requests
//!    at once; every answer must be 200 and hold what it should. ClickHouse's
//!    CPU is read around each request and counted to its variant. Then
//!    (`load`), one variant after the other, 20 concurrent clients for 20 s
//!    over a mix of overviews, users pages and charts; usage-report's CPU
//!    and peak memory per variant.
//! 4. With `--check-oracle` (`oracle`): every overview and users row of
//!    every team and all teams over three ranges against the oracle.
//! 5. A table on stdout, JSON in `bench/results/report-latency.json`.
//!
//! Run with `bench/run-report` (builds the release binaries first).

mod dataset;
mod load;
mod measure;
mod oracle;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use usage_testkit::host;
use usage_testkit::memory;
use usage_testkit::report::{Admin, Report, ReportRun};

use dataset::{build_dataset, record_path, reusable, scenario_config, services, Ch, Dataset};
use load::LoadResult;
use measure::{CaseResult, Kind};
use oracle::OracleCheck;

pub(crate) const TOKEN: &str = "bench-token-0123456789";
const HMAC_KEY: &str = "6265e6368a4b2a41c1f4d1f1c9e2b0a7b3c5d7e9f1a3b5c7d9e1f3a5b7c9d1e3\n";

#[derive(Debug, Parser)]
#[command(
    name = "report-latency",
    about = "Latency of usage-report over a generated dataset ingested by usage-ingest."
)]
pub(crate) struct Args {
    /// Users of the scenario.
    #[arg(long, default_value_t = 50_000)]
    pub(crate) users: usize,
    /// Days of the scenario (ending an hour before the build).
    #[arg(long, default_value_t = 90)]
    pub(crate) days: u32,
    /// Mean authorizations per active user-day (5.55 gives about 10M events
    /// for 50k users over 90 days).
    #[arg(long, default_value_t = 5.55)]
    pub(crate) events_per_user_day: f64,
    #[arg(long, default_value_t = 20)]
    pub(crate) teams: usize,
    #[arg(long, default_value_t = 6)]
    pub(crate) products: usize,
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Build the dataset again even if the recorded one matches.
    #[arg(long)]
    pub(crate) rebuild: bool,
    /// Only plan and count the scenario (no Kafka, no ClickHouse).
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Timed requests per case and variant.
    #[arg(long, default_value_t = 10)]
    pub(crate) requests: usize,
    /// Untimed requests per case and variant before them.
    #[arg(long, default_value_t = 1)]
    pub(crate) warmup: usize,
    /// The usage-report binary of the query path before (built from an
    /// earlier commit: `bench/run-report --baseline REV` builds it),
    /// measured first, side by side with this one.
    #[arg(long)]
    pub(crate) baseline_bin: Option<PathBuf>,
    /// Concurrent clients of the load (0: no load).
    #[arg(long, default_value_t = 20)]
    pub(crate) load_clients: usize,
    /// Seconds of load per variant.
    #[arg(long, default_value_t = 20)]
    pub(crate) load_secs: u64,
    /// ClickHouse database of the dataset.
    #[arg(long, default_value = "usage_bench_report")]
    pub(crate) database: String,
    #[arg(long, env = "USAGE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    #[arg(
        long,
        env = "USAGE_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub(crate) clickhouse_url: String,
    /// Directory of the release binaries.
    #[arg(long, default_value = "target/release")]
    pub(crate) bin_dir: PathBuf,
    /// Working directory: the dataset record, logs, the admins file.
    #[arg(long, default_value = ".local/bench")]
    pub(crate) work_dir: PathBuf,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench/results/report-latency.json")]
    pub(crate) out: PathBuf,
    /// ClickHouse's pid file (for its CPU time during the requests).
    #[arg(long, default_value = ".local/services/clickhouse/pid")]
    pub(crate) clickhouse_pid_file: PathBuf,
    /// Give up on ingestion after this many seconds.
    #[arg(long, default_value_t = 1800)]
    pub(crate) ingest_timeout_secs: u64,
    /// After the timing, check the served numbers: every team's overview
    /// and users rows and all teams', over three ranges, against the load
    /// generator's oracle of the same scenario (generated again: about 3
    /// minutes and 2 GB at the default size). A difference fails the run.
    #[arg(long)]
    pub(crate) check_oracle: bool,
    /// An argument given to this tree's usage-report as served (the cached
    /// variant), e.g. `--report-arg=--report-cache-mb=96`; repeatable.
    #[arg(long = "report-arg", allow_hyphen_values = true)]
    pub(crate) report_args: Vec<String>,
}

/// One usage-report build and configuration, measured.
#[derive(Debug, Serialize)]
struct VariantResult {
    /// `before`, `after (no cache)`, `after`.
    name: String,
    binary: String,
    /// Extra arguments given to it.
    args: Vec<String>,
    cases: Vec<CaseResult>,
    /// The load from what the cases left (for a cached service: the mix's
    /// one-team filter sets computed cold within it).
    load: Option<LoadResult>,
    /// The same load again right after: the steady state of a page opened
    /// over and over (for a cached service: every filter set computed).
    load_again: Option<LoadResult>,
    /// Over the cases (warm-up included): requests, wall time, and the CPU
    /// time of usage-report and of ClickHouse (from `/proc/<pid>/stat`).
    requests: usize,
    requests_wall_secs: f64,
    report_cpu_secs: Option<f64>,
    clickhouse_cpu_secs: Option<f64>,
    /// usage-report's peak and current resident memory after everything.
    report_vm_hwm_kb: Option<u64>,
    report_vm_rss_kb: Option<u64>,
    loadavg_before: String,
    loadavg_after: String,
}

#[derive(Debug, Serialize)]
struct Results {
    date: String,
    machine: Machine,
    clickhouse_version: String,
    dataset: Dataset,
    dataset_reused: bool,
    teams: usize,
    largest_team: String,
    largest_team_users: u64,
    search: String,
    warmup_requests: usize,
    timed_requests: usize,
    variants: Vec<VariantResult>,
    /// With `--check-oracle`.
    oracle_check: Option<OracleCheck>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    mem_total_kb: Option<u64>,
}

pub(crate) fn say(msg: impl AsRef<str>) {
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

#[derive(Deserialize)]
struct TeamsAnswer {
    teams: Vec<TeamEntry>,
}

#[derive(Deserialize)]
struct TeamEntry {
    team_id: String,
}

/// Starts a usage-report on the dataset and waits for `/readyz`: it and
/// its base URL.
async fn start_report(
    args: &Args,
    binary: &Path,
    extra: &[String],
    name: &str,
) -> Result<(Report, String)> {
    let log_path = args.work_dir.join(format!(
        "report-service-{}.log",
        name.replace([' ', '(', ')'], "")
    ));
    let report = ReportRun::new(
        binary.to_path_buf(),
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
    .hmac_key(HMAC_KEY)
    .args(extra.iter().cloned())
    .log(&log_path)
    .start()
    .await?;
    let base = report.url("");
    say(format!(
        "{name}: usage-report ready on {base} (pid {}, log {})",
        report.process.pid(),
        log_path.display()
    ));
    Ok((report, base))
}

/// A usage-report build and configuration to measure.
struct Plan {
    name: &'static str,
    binary: PathBuf,
    args: Vec<String>,
    /// Answers from its brief cache: asked back to back (as the page asks)
    /// after the others' rounds, since rounds spaced by the others' slower
    /// answers would outlive its freshness and measure only misses.
    cached: bool,
}

/// Measures every variant side by side: all of them run at once, and each
/// timed request of a case goes to each variant in turn, so a machine
/// busier at one moment slows them alike. ClickHouse's CPU is read before
/// and after each request (they run one at a time) and counted to the
/// variant that made it. Then the load, one variant after the other.
async fn measure_variants(
    args: &Args,
    plans: &[Plan],
    cases: &[measure::Case],
    mix: &[(String, Kind)],
    ch_pid: Option<u32>,
) -> Result<Vec<VariantResult>> {
    let mut running = Vec::new();
    for plan in plans {
        let (report, base) = start_report(args, &plan.binary, &plan.args, plan.name).await?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(3)
            .build()?;
        running.push((report, base, http));
    }
    let loadavg_before = host::load_average();
    let started = Instant::now();
    let report_cpu_before: Vec<Option<f64>> = running
        .iter()
        .map(|(r, _, _)| cpu_secs(Some(r.process.pid())))
        .collect();
    let mut clickhouse_cpu = vec![0.0f64; plans.len()];
    let mut counts = vec![0usize; plans.len()];
    let mut results: Vec<Vec<CaseResult>> = vec![Vec::new(); plans.len()];
    for case in cases {
        let mut ms: Vec<Vec<f64>> = vec![Vec::new(); plans.len()];
        let mut last = vec![(0usize, None); plans.len()];
        let rounds = args.warmup + args.requests;
        let order = (0..rounds)
            .flat_map(|round| {
                (0..plans.len())
                    .filter(|&i| !plans[i].cached)
                    .map(move |i| (round, i))
            })
            .chain(
                (0..plans.len())
                    .filter(|&i| plans[i].cached)
                    .flat_map(|i| (0..rounds).map(move |round| (round, i))),
            );
        for (round, i) in order {
            let (_, base, http) = &running[i];
            let before = cpu_secs(ch_pid);
            let (elapsed, bytes, total) = measure::time_once(http, base, case)
                .await
                .with_context(|| format!("{}: case {} {}", plans[i].name, case.name, case.range))?;
            if let (Some(after), Some(before)) = (cpu_secs(ch_pid), before) {
                clickhouse_cpu[i] += after - before;
            }
            counts[i] += case.paths().len();
            if round >= args.warmup {
                ms[i].push(elapsed.as_secs_f64() * 1000.0);
                last[i] = (bytes, total);
            }
        }
        let mut line = format!("{} {}:", case.name, case.range);
        for (i, ms) in ms.into_iter().enumerate() {
            let r = measure::summarize(case, ms, last[i].0, last[i].1);
            line.push_str(&format!(" {} p95 {:.1} ms;", plans[i].name, r.p95_ms));
            results[i].push(r);
        }
        say(line);
    }
    let requests_wall_secs = started.elapsed().as_secs_f64();
    let loadavg_after = host::load_average();
    let mut variants = Vec::new();
    for (i, ((report, base, _), cases)) in running.iter().zip(results).enumerate() {
        let report_cpu_secs = cpu_secs(Some(report.process.pid()))
            .zip(report_cpu_before[i])
            .map(|(a, b)| a - b);
        let (mut load, mut load_again) = (None, None);
        if args.load_clients > 0 && args.load_secs > 0 {
            for (window, slot) in [("load", &mut load), ("load again", &mut load_again)] {
                let l = load::run(base, mix.to_vec(), args.load_clients, args.load_secs).await?;
                say(format!(
                    "{}: {window} of {} clients: {:.1} requests/s, p50 {:.0} ms, p99 {:.0} ms, \
                     {} errors",
                    plans[i].name, l.clients, l.requests_per_sec, l.p50_ms, l.p99_ms, l.errors
                ));
                *slot = Some(l);
            }
        }
        let memory = memory::of(report.process.pid());
        variants.push(VariantResult {
            name: plans[i].name.to_owned(),
            binary: plans[i].binary.display().to_string(),
            args: plans[i].args.clone(),
            cases,
            load,
            load_again,
            requests: counts[i],
            requests_wall_secs,
            report_cpu_secs,
            clickhouse_cpu_secs: ch_pid.map(|_| clickhouse_cpu[i]),
            report_vm_hwm_kb: memory.map(|m| m.peak_bytes / 1024),
            report_vm_rss_kb: memory.map(|m| m.rss_bytes / 1024),
            loadavg_before: loadavg_before.clone(),
            loadavg_after: loadavg_after.clone(),
        });
    }
    for (mut report, _, _) in running {
        report.process.terminate(Duration::from_secs(30)).await?;
    }
    Ok(variants)
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
    let r = &d.rollups;
    println!(
        "rows: daily_usage {}, flex_windows {}, assignment_state {}; usage_months {}, \
         last_access {}, token_months {}",
        r.daily_usage,
        r.flex_windows,
        r.assignment_state,
        r.usage_months,
        r.last_access,
        r.token_months
    );
    println!(
        "largest team {} ({} users); p95 in ms over {} timed requests per case after {} warm-up",
        results.largest_team,
        results.largest_team_users,
        results.timed_requests,
        results.warmup_requests
    );
    let mut header = format!("{:<40} {:<15}", "case", "range");
    for v in &results.variants {
        header.push_str(&format!(" {:>18}", v.name));
    }
    println!("{header}");
    let first = results.variants.last().map_or(0, |v| v.cases.len());
    for i in 0..first {
        let Some(c) = results.variants.last().and_then(|v| v.cases.get(i)) else {
            continue;
        };
        let mut line = format!("{:<40} {:<15}", c.case, c.range);
        for v in &results.variants {
            match v.cases.get(i) {
                Some(c) => line.push_str(&format!(" {:>18.1}", c.p95_ms)),
                None => line.push_str(&format!(" {:>18}", "-")),
            }
        }
        println!("{line}");
    }
    let kb = |v: Option<u64>| v.map_or("?".to_owned(), |k| format!("{:.0} MB", k as f64 / 1024.0));
    for v in &results.variants {
        let per = |s: Option<f64>| {
            s.map_or("?".to_owned(), |s| {
                format!("{:.1} ms", 1000.0 * s / v.requests.max(1) as f64)
            })
        };
        println!(
            "{}: CPU per request: usage-report {}, ClickHouse {}; peak memory {}",
            v.name,
            per(v.report_cpu_secs),
            per(v.clickhouse_cpu_secs),
            kb(v.report_vm_hwm_kb)
        );
        if let Some(l) = &v.load {
            println!(
                "{}: {} clients for {:.0}s over {} requests: {:.1} requests/s, p50 {:.0} ms, \
                 p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms, {} errors",
                v.name,
                l.clients,
                l.secs,
                l.mix,
                l.requests_per_sec,
                l.p50_ms,
                l.p95_ms,
                l.p99_ms,
                l.max_ms,
                l.errors
            );
        }
    }
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
    let mut dataset = match existing {
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
    ch.settle_merges(Duration::from_secs(300)).await?;
    dataset.rollups = ch.rollups().await?;

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
    let this = args.bin_dir.join("usage-report");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;

    // The teams and a search that finds a few lines, from this build.
    let (teams, search) = {
        let (mut report, base) = start_report(&args, &this, &[], "setup").await?;
        let teams: TeamsAnswer = get_json(&http, &format!("{base}/v1/teams"))
            .await
            .context("reading /v1/teams")?;
        let page: serde_json::Value = get_json(
            &http,
            &format!("{base}/v1/report/users?team=all&range=last_3_months&page=1&page_size=1"),
        )
        .await?;
        let key = page["rows"][0]["user_key"].as_str().unwrap_or_default();
        let search: String = key.chars().take(6).collect();
        report.process.terminate(Duration::from_secs(30)).await?;
        (
            teams
                .teams
                .into_iter()
                .map(|t| t.team_id)
                .collect::<Vec<_>>(),
            search,
        )
    };
    if !teams.contains(&largest_team) {
        bail!("the largest team {largest_team} is not in /v1/teams");
    }
    say(format!(
        "{} teams; the largest: {largest_team} ({largest_team_users} users with usage); search {search:?}",
        teams.len()
    ));
    let cases = measure::cases(&largest_team, &search, chrono::Utc::now().date_naive());
    let mix = load::mix(&teams);
    let ch_pid = std::fs::read_to_string(&args.clickhouse_pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());

    let mut plans = Vec::new();
    if let Some(before) = &args.baseline_bin {
        plans.push(Plan {
            name: "before",
            binary: before.clone(),
            args: Vec::new(),
            cached: false,
        });
    }
    plans.push(Plan {
        name: "after (no cache)",
        binary: this.clone(),
        args: vec!["--report-cache-secs".into(), "0".into()],
        cached: false,
    });
    plans.push(Plan {
        name: "after",
        binary: this.clone(),
        args: args.report_args.clone(),
        cached: true,
    });
    let variants = measure_variants(&args, &plans, &cases, &mix, ch_pid).await?;
    let oracle_check = if args.check_oracle {
        let (mut report, base) = start_report(&args, &this, &[], "oracle").await?;
        let check = oracle::check_oracle(&http, &base, &dataset.scenario, &teams, HMAC_KEY).await;
        report.process.terminate(Duration::from_secs(30)).await?;
        Some(check?)
    } else {
        None
    };
    let results = Results {
        date: chrono::Utc::now().to_rfc3339(),
        machine: machine(),
        clickhouse_version,
        teams: teams.len(),
        largest_team,
        largest_team_users,
        search,
        dataset,
        dataset_reused: reused,
        warmup_requests: args.warmup,
        timed_requests: args.requests,
        variants,
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
            "oracle check: {} overviews and {} users rows, {} differences (oracle built in {:.0}s)",
            check.overviews, check.rows, check.difference_count, check.oracle_secs
        );
        if check.difference_count > 0 {
            bail!("the served report differs from the oracle");
        }
    }
    Ok(())
}

/// `url`'s JSON, as the benchmark's admin.
pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T> {
    Ok(http
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
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
