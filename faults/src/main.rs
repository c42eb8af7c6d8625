//! `usage-faults`: the fault suite of the usage pipeline. Each fault runs
//! `usage-ingest` on a generated scenario (its own topics, database and
//! consumer group, on a ClickHouse and a broker of the suite's own), injects
//! the fault at a random moment, and compares the rollups with the load
//! generator's independent oracle. See `faults/README.md`.

mod corpus;
mod faults;
mod ingest;
mod kafka;
mod memory;
mod report;
mod run;
mod services;

use anyhow::{Context, Result};
use clap::Parser;
use faults::Fault;
use run::{Plan, Suite};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use usage_testkit::binaries::{self, Profile};

/// Runs the fault suite and prints a table: fault, events published, events
/// in rollups, lost, double-counted, dead letters by reason, peak RSS,
/// recovery time. Exits 1 when any fault's rollups differ from the oracle,
/// anything is lost, a dead-letter count differs or a check fails.
#[derive(Debug, Parser)]
#[command(name = "usage-faults", version)]
struct Cli {
    /// The short suite (about 60k events per fault, 3 kills, 5 s outages, a
    /// short storm): a few minutes; what the test command runs.
    #[arg(long)]
    short: bool,
    /// Run only these faults (repeatable): kill (1), clickhouse (2), broker
    /// (3), rebalance (4), replay (5), hostile-input (6a), oversize-input
    /// (6b), bad-input (6 = 6a + 6b), missing-table (8a), read-only (8b),
    /// insert-errors (8 = 8a + 8b).
    #[arg(long, value_enum)]
    only: Vec<Fault>,
    /// Messages published per fault (default: 1000000, or 60000 with --short).
    #[arg(long)]
    events: Option<u64>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of every random choice (scenarios, fault moments, corpus); random if absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Use target/release/usage-ingest (built with `cargo build --release`)
    /// instead of target/debug/usage-ingest.
    #[arg(long)]
    release: bool,
    /// The usage-ingest binary to test (not built by this program).
    #[arg(long)]
    ingest_bin: Option<PathBuf>,
    /// Keep the private services' directory (logs, ClickHouse data) even when everything passed.
    #[arg(long)]
    keep: bool,
    /// Longest wait for the rollups to equal the oracle after each fault, in
    /// seconds (default: 60 with --short, 600 otherwise).
    #[arg(long)]
    timeout_secs: Option<u64>,
}

#[derive(Serialize)]
struct Results<'a> {
    seed: u64,
    short: bool,
    events_per_fault: u64,
    ingest_binary: String,
    started_at: String,
    elapsed_secs: f64,
    passed: bool,
    faults: &'a [report::Row],
}

fn plan(cli: &Cli) -> Plan {
    let hold_secs = if cli.short { 3 } else { 10 };
    let mut ingest_options = vec!["--unresolved-hold-secs".to_owned(), hold_secs.to_string()];
    if cli.short {
        // Small batches: many commits, so kills and rebalances land among them.
        ingest_options
            .extend(["--batch-max-rows", "5000", "--batch-max-wait-ms", "200"].map(str::to_owned));
    }
    let secs = Duration::from_secs;
    if cli.short {
        Plan {
            short: true,
            events: cli.events.unwrap_or(60_000),
            kills: 3,
            clickhouse_outage: secs(5),
            broker_pause: secs(5),
            storm_cycles: 2,
            insert_errors: secs(5),
            timeout: secs(cli.timeout_secs.unwrap_or(60)),
            hold_secs,
            batch_rows: 5_000,
            ingest_options,
        }
    } else {
        Plan {
            short: false,
            events: cli.events.unwrap_or(1_000_000),
            kills: 10,
            clickhouse_outage: secs(30),
            broker_pause: secs(20),
            storm_cycles: 8,
            insert_errors: secs(30),
            timeout: secs(cli.timeout_secs.unwrap_or(600)),
            hold_secs,
            batch_rows: 100_000,
            ingest_options,
        }
    }
}

/// The usage-ingest binary: given, or built with cargo (debug or release).
fn ingest_binary(cli: &Cli) -> Result<PathBuf> {
    if let Some(bin) = &cli.ingest_bin {
        anyhow::ensure!(bin.is_file(), "{} does not exist", bin.display());
        return Ok(bin.clone());
    }
    let profile = if cli.release {
        Profile::Release
    } else {
        Profile::Debug
    };
    binaries::build("usage-ingest", "usage-ingest", profile)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run_suite(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("usage-faults: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run_suite(cli: Cli) -> Result<bool> {
    let started = Instant::now();
    let started_at = chrono::Utc::now();
    let repo = usage_testkit::repo_root();
    let seed = cli.seed.unwrap_or_else(rand::random);
    let plan = plan(&cli);
    let mut selected: Vec<Fault> = if cli.only.is_empty() {
        Fault::ALL.to_vec()
    } else {
        cli.only.iter().flat_map(|f| f.expand()).collect()
    };
    selected.sort();
    selected.dedup();
    let binary = ingest_binary(&cli)?;
    println!(
        "usage-faults: {} suite, seed {seed} (rerun: --seed {seed}), {} messages per fault, usage-ingest {}",
        if plan.short { "short" } else { "long" },
        plan.events,
        binary.display()
    );

    let state = std::env::var_os("USAGE_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join(".local"))
        .join("faults")
        .join(format!(
            "run-{}-{}",
            started_at.format("%Y%m%dT%H%M%S"),
            std::process::id()
        ));
    let log_dir = state.join("logs");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let services = {
        let (repo, state) = (repo.clone(), state.clone());
        tokio::task::spawn_blocking(move || services::PrivateServices::start(&repo, &state))
            .await??
    };
    println!(
        "usage-faults: private ClickHouse {} and broker {} (state in {})",
        services.clickhouse_url(),
        services.brokers(),
        state.display()
    );
    let suite = Suite {
        repo,
        plan,
        services,
        binary: binary.clone(),
        log_dir,
    };

    let mut rows = Vec::new();
    // The next fault's scenario and oracle are computed while a fault runs.
    let generate = |fault: Fault| {
        let (repo, plan) = (suite.repo.clone(), suite.plan.clone());
        tokio::task::spawn_blocking(move || faults::generate(&repo, seed, &plan, fault))
    };
    let interrupted = tokio::select! {
        _ = async {
            let mut next = selected.first().map(|f| generate(*f));
            for (i, fault) in selected.iter().enumerate() {
                let generated = match next.take() {
                    Some(handle) => handle.await.unwrap_or_else(|e| Err(e.into())),
                    None => Err(anyhow::anyhow!("nothing generated")),
                };
                next = selected.get(i + 1).map(|f| generate(*f));
                rows.push(faults::run(&suite, *fault, generated).await);
            }
        } => false,
        _ = tokio::signal::ctrl_c() => true,
    };
    let suite_events = suite.plan.events;
    let Suite { mut services, .. } = suite;
    let stop = tokio::task::spawn_blocking(move || services.stop()).await;
    if let Ok(Err(error)) | Err(error) = stop.map_err(anyhow::Error::from) {
        eprintln!("usage-faults: stopping the private services: {error:#}");
    }
    if interrupted {
        eprintln!(
            "usage-faults: interrupted; state kept in {}",
            state.display()
        );
        return Ok(false);
    }

    let passed = rows.iter().all(|r| r.passed);
    let events_per_fault = suite_events;
    println!("\n{}", report::table(&rows));
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "usage-faults: {} in {elapsed:.0} s (seed {seed})",
        if passed {
            "every fault passed"
        } else {
            "FAILED"
        }
    );
    if let Some(out) = &cli.out {
        let results = Results {
            seed,
            short: cli.short,
            events_per_fault,
            ingest_binary: binary.display().to_string(),
            started_at: started_at.to_rfc3339(),
            elapsed_secs: elapsed,
            passed,
            faults: &rows,
        };
        let json = serde_json::to_string_pretty(&results)?;
        std::fs::write(out, json).with_context(|| format!("writing {}", out.display()))?;
        println!("usage-faults: results in {}", out.display());
    }
    if passed && !cli.keep {
        let _ = std::fs::remove_dir_all(&state);
    } else {
        println!(
            "usage-faults: logs and ClickHouse data kept in {}",
            state.display()
        );
    }
    Ok(passed)
}
