//! The faults: each publishes its scenario to its own topics, runs
//! usage-ingest on it, injects the fault at a random moment (seeded) and
//! waits for the rollups to equal the oracle.

use crate::corpus;
use crate::ingest::Ingest;
use crate::kafka;
use crate::report::Row;
use crate::run::{self, scenario_config, Generated, Plan, Run, Suite};
use anyhow::{bail, Context, Result};
use rand::Rng;
use std::path::Path;
use std::time::{Duration, Instant};

/// A fault of the suite (7, fuzzing, is not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Fault {
    /// 1: usage-ingest killed with SIGKILL at random moments, restarted each time.
    #[value(alias = "1")]
    Kill,
    /// 2: ClickHouse stopped mid-run, then started.
    #[value(alias = "2")]
    Clickhouse,
    /// 3: the broker paused (SIGSTOP), then resumed.
    #[value(alias = "3")]
    Broker,
    /// 4: a second and third instance join and leave the group repeatedly.
    #[value(alias = "4")]
    Rebalance,
    /// 5: 10% upstream duplicates, then a replay from offset 0 by a fresh group.
    #[value(alias = "5")]
    Replay,
    /// 6a: bad input of every kind (messages under 1 MB) among good events.
    #[value(alias = "6a")]
    HostileInput,
    /// 6b: messages over 1 MB (1 MB strings, a 2 MB JSON document) among good events.
    #[value(alias = "6b")]
    OversizeInput,
    /// 6: both bad-input faults.
    #[value(alias = "6")]
    BadInput,
    /// 8a: inserts fail: a table is missing (detached), then back.
    #[value(alias = "8a")]
    MissingTable,
    /// 8b: inserts fail: ClickHouse read-only, then writable.
    #[value(alias = "8b")]
    ReadOnly,
    /// 8: both insert-error faults.
    #[value(alias = "8")]
    InsertErrors,
}

impl Fault {
    /// Every fault, in order (`BadInput` is 6a + 6b, `InsertErrors` 8a + 8b).
    pub(crate) const ALL: [Fault; 9] = [
        Fault::Kill,
        Fault::Clickhouse,
        Fault::Broker,
        Fault::Rebalance,
        Fault::Replay,
        Fault::HostileInput,
        Fault::OversizeInput,
        Fault::MissingTable,
        Fault::ReadOnly,
    ];

    /// The faults a selection names.
    pub(crate) fn expand(self) -> Vec<Fault> {
        match self {
            Fault::InsertErrors => vec![Fault::MissingTable, Fault::ReadOnly],
            Fault::BadInput => vec![Fault::HostileInput, Fault::OversizeInput],
            f => vec![f],
        }
    }

    pub(crate) fn id(self) -> &'static str {
        match self {
            Fault::Kill => "1",
            Fault::Clickhouse => "2",
            Fault::Broker => "3",
            Fault::Rebalance => "4",
            Fault::Replay => "5",
            Fault::HostileInput | Fault::BadInput => "6a",
            Fault::OversizeInput => "6b",
            Fault::MissingTable => "8a",
            Fault::ReadOnly | Fault::InsertErrors => "8b",
        }
    }
}

/// When the fault ended and when the rollups equalled the oracle.
struct Outcome {
    fault_end: Option<Instant>,
    converged: Option<Instant>,
}

/// The label of a fault in the table, with its sizes.
fn label(plan: &Plan, fault: Fault) -> String {
    let secs = |d: Duration| d.as_secs();
    match fault {
        Fault::Kill => format!("SIGKILL x{}", plan.kills),
        Fault::Clickhouse => format!("ClickHouse killed, down {} s", secs(plan.clickhouse_outage)),
        Fault::Broker => format!("broker SIGSTOP {} s", secs(plan.broker_pause)),
        Fault::Rebalance => format!("rebalance storm x{}", plan.storm_cycles),
        Fault::Replay => "10% duplicates + replay".to_owned(),
        Fault::HostileInput | Fault::BadInput => "bad input".to_owned(),
        Fault::OversizeInput => "input over 1 MB".to_owned(),
        Fault::MissingTable => format!("table missing {} s", secs(plan.insert_errors)),
        Fault::ReadOnly | Fault::InsertErrors => {
            format!("read-only {} s", secs(plan.insert_errors))
        }
    }
}

/// The scenario, stream and oracle of a fault (blocking: CPU only).
pub(crate) fn generate(repo: &Path, seed: u64, plan: &Plan, fault: Fault) -> Result<Generated> {
    let config = match fault {
        Fault::Replay => usage_loadgen::ScenarioConfig {
            duplicate_share: 0.10,
            ..scenario_config(0, 0)
        },
        Fault::HostileInput | Fault::BadInput => usage_loadgen::ScenarioConfig {
            poison_share: 0.01,
            ..scenario_config(0, 0)
        },
        _ => scenario_config(0, 0),
    };
    // The outage must begin with a large backlog still in Kafka, however
    // fast the pipeline is: a bigger scenario in the short suite.
    let events = match fault {
        Fault::Clickhouse if plan.short => plan.events * 2,
        _ => plan.events,
    };
    let corpus = match fault {
        Fault::HostileInput | Fault::BadInput => Some(false),
        Fault::OversizeInput => Some(true),
        _ => None,
    };
    run::generate(
        seed,
        fault.id(),
        label(plan, fault),
        events,
        config,
        |scenario, rng| match corpus {
            Some(oversize) => {
                let (messages, summary) = corpus::bad_input(repo, scenario, rng, oversize)?;
                Ok((messages, Some(summary)))
            }
            None => Ok((Vec::new(), None)),
        },
    )
}

/// Runs one fault to its row (failures are in the row, never an error).
pub(crate) async fn run(suite: &Suite, fault: Fault, generated: Result<Generated>) -> Row {
    let failed = |error: anyhow::Error| {
        let mut row = Row {
            id: fault.id().to_owned(),
            fault: label(&suite.plan, fault),
            error: Some(format!("preparing: {error:#}")),
            ..Row::default()
        };
        row.judge();
        row
    };
    let generated = match generated {
        Ok(g) => g,
        Err(error) => return failed(error),
    };
    let summary = generated.summary.clone();
    let mut run = match Run::prepare(suite, fault.id(), generated).await {
        Ok(run) => run,
        Err(error) => return failed(error),
    };
    if let Some(summary) = &summary {
        run.note(format!(
            "injected: {} refused ({}), {} valid events with hostile strings in every identifier",
            summary.refused.values().sum::<u64>(),
            summary
                .refused
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            summary.hostile_valid
        ));
        if !summary.skipped_examples.is_empty() {
            run.note(format!(
                "contract examples left out (no longer in the future of this clock): {}",
                summary.skipped_examples.join(", ")
            ));
        }
    }
    let mut instances = Vec::new();
    let outcome = match fault {
        Fault::Kill => kills(&mut run, &mut instances).await,
        Fault::Clickhouse => clickhouse_outage(&mut run, &mut instances).await,
        Fault::Broker => broker_pause(&mut run, &mut instances).await,
        Fault::Rebalance => rebalance_storm(&mut run, &mut instances).await,
        Fault::Replay => duplicates_and_replay(&mut run, &mut instances).await,
        Fault::HostileInput | Fault::OversizeInput | Fault::BadInput => {
            bad_input(&mut run, &mut instances, summary.as_ref()).await
        }
        Fault::MissingTable => insert_errors(&mut run, &mut instances, InsertError::Table).await,
        Fault::ReadOnly | Fault::InsertErrors => {
            insert_errors(&mut run, &mut instances, InsertError::ReadOnly).await
        }
    };
    match outcome {
        Ok(o) => run.finish(o.fault_end, o.converged, instances).await,
        Err(error) => {
            run.row.error = Some(format!("{error:#}"));
            run.finish(None, None, instances).await
        }
    }
}

/// A publication rate that spreads the stream over three times the fault's
/// length (at least 10 s, 15 s in the long suite), so that data flows
/// before, during and after it.
fn spread(run: &Run<'_>, fault: Duration) -> f64 {
    let least = if run.suite.plan.short { 10.0 } else { 15.0 };
    let secs = (fault.as_secs_f64() * 3.0).max(least);
    run.messages as f64 / secs
}

fn millis(rng: &mut impl Rng, range: std::ops::Range<u64>) -> Duration {
    Duration::from_millis(rng.random_range(range))
}

/// Bytes in MiB.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// `instances` all still running (a crash is a failure).
fn no_crash(run: &mut Run<'_>, instances: &mut [Ingest]) {
    let crashed: Vec<String> = instances
        .iter_mut()
        .filter_map(|i| i.exited().map(|s| format!("{} ({s})", i.name)))
        .collect();
    run.check(
        "no crash",
        crashed.is_empty(),
        if crashed.is_empty() {
            "usage-ingest kept running through the fault".to_owned()
        } else {
            format!("exited: {}", crashed.join(", "))
        },
    );
}

/// 1: SIGKILL at random moments of the run, restarted at once each time.
async fn kills(run: &mut Run<'_>, instances: &mut Vec<Ingest>) -> Result<Outcome> {
    let n = run.suite.plan.kills;
    let mut moments: Vec<f64> = (0..n).map(|_| run.rng.random_range(0.03..0.9)).collect();
    moments.sort_by(f64::total_cmp);
    instances.push(run.start(None)?);
    // Published at a steady rate over about 4 s per kill: the kills fall
    // while data flows, however fast the pipeline is.
    let secs = (4.0 * n as f64).max(10.0);
    let publisher = run.publish(run.messages as f64 / secs);
    let mut fault_end = None;
    let mut at = Vec::new();
    let want = run.expected.totals.events_counted.max(1);
    let mut started = Instant::now();
    for moment in moments {
        run.wait_progress(moment, run.suite.plan.timeout).await;
        // A moment of this instance's life too: mostly after its group join
        // (~3 s), sometimes during it.
        let oldest = if run.suite.plan.short { 4_000 } else { 8_000 };
        let age = millis(&mut run.rng, 1_000..oldest);
        tokio::time::sleep(age.saturating_sub(started.elapsed())).await;
        let jitter = millis(&mut run.rng, 0..400);
        tokio::time::sleep(jitter).await;
        let rows = run
            .number("SELECT count() FROM authorizations")
            .await
            .unwrap_or(0);
        let Some(mut victim) = instances.pop() else {
            bail!("no instance to kill");
        };
        if let Some(status) = victim.exited() {
            run.check(
                "no crash",
                false,
                format!("{} had exited by itself ({status})", victim.name),
            );
        }
        victim.kill();
        at.push(format!(
            "{:.0}% ({:.1} s old)",
            100.0 * rows as f64 / want as f64,
            started.elapsed().as_secs_f64()
        ));
        instances.push(run.start(None)?);
        started = Instant::now();
        fault_end = Some(Instant::now());
    }
    run.note(format!(
        "killed at {} of the expected rows stored (copies included; the instance's age)",
        at.join(", ")
    ));
    run.published(publisher).await?;
    let converged = run.converge(instances).await;
    no_crash(run, instances);
    Ok(Outcome {
        fault_end,
        converged,
    })
}

/// 2: ClickHouse stopped mid-run, started again after the plan's outage.
async fn clickhouse_outage(run: &mut Run<'_>, instances: &mut Vec<Ingest>) -> Result<Outcome> {
    instances.push(run.start(None)?);
    let publisher = run.publish(0.0);
    let moment = run.rng.random_range(0.1..0.3);
    run.wait_progress(moment, run.suite.plan.timeout).await;
    let pid = instances[0].pid();
    let rss_before = run.memory.rss_bytes(pid).unwrap_or(0);
    let (retries_before, consumed_before) = match instances[0].metrics().await {
        Some(m) => (
            m.sum("usage_ingest_clickhouse_errors_total"),
            m.sum("usage_ingest_events_consumed_total"),
        ),
        None => (0.0, 0.0),
    };
    let stored_before = run.number("SELECT count() FROM authorizations").await?;
    run.suite.services.stop_clickhouse().await?;
    let stopped = Instant::now();
    let mut rss_peak = rss_before;
    let mut paused_max = 0.0f64;
    let mut consumed_during = 0.0f64;
    let mut unready = false;
    while stopped.elapsed() < run.suite.plan.clickhouse_outage {
        if let Some(rss) = run.memory.rss_bytes(pid) {
            rss_peak = rss_peak.max(rss);
        }
        if let Some(m) = instances[0].metrics().await {
            paused_max = paused_max.max(m.sum("usage_ingest_paused_partitions"));
            consumed_during = m.sum("usage_ingest_events_consumed_total") - consumed_before;
        }
        unready |= instances[0].ready().await == Some(false);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    run.suite.services.start_clickhouse().await?;
    let fault_end = Some(Instant::now());
    run.published(publisher).await?;
    let converged = run.converge(instances).await;
    no_crash(run, instances);
    // Every failed request counts, reads of enrichment state as well as
    // inserts: an outage may hit only reads.
    let retries = match instances[0].metrics().await {
        Some(m) => m.sum("usage_ingest_clickhouse_errors_total"),
        None => 0.0,
    } - retries_before;
    run.check(
        "retries visible in metrics",
        retries > 0.0,
        format!("usage_ingest_clickhouse_errors_total +{retries:.0} over the outage"),
    );
    // Backpressure: what the pipeline took from Kafka during the outage is
    // bounded by the batches it may hold (in flight and filling).
    let bound = 3 * run.suite.plan.batch_rows;
    let waiting = run.messages.saturating_sub(consumed_before as u64);
    run.check(
        "backpressure, not buffering",
        (consumed_during as u64) <= bound,
        format!(
            "{consumed_during:.0} messages consumed during the outage (bound {bound}) while about {waiting} \
             were waiting in Kafka; usage_ingest_paused_partitions reached {paused_max:.0}"
        ),
    );
    let blocked = instances[0]
        .log_text()
        .lines()
        .filter(|l| l.contains("from ClickHouse failed; retrying"))
        .count();
    if paused_max == 0.0 && blocked > 0 {
        run.note(format!(
            "no partition was paused: the consumer loop was blocked in batch processing, \
             retrying a read of enrichment state ({blocked} \"... from ClickHouse failed; retrying\" \
             lines), so it stopped polling Kafka (memory held by librdkafka's queue limit; an \
             outage longer than max.poll.interval.ms would evict it from the group)"
        ));
    }
    // What the design holds: the batches in flight and the one filling
    // (generously 1 KiB a message) plus librdkafka's queue and some slack.
    let limit_mib = 64.0 + 3.0 * run.suite.plan.batch_rows as f64 / 1024.0;
    let growth_mib = mib(rss_peak.saturating_sub(rss_before));
    run.check(
        "memory bounded",
        growth_mib <= limit_mib,
        format!(
            "RSS {:.0} MiB when ClickHouse stopped, at most {:.0} MiB during the outage (+{growth_mib:.0} MiB; limit +{limit_mib:.0}), \
             with {} of {} authorizations still to store when it stopped",
            mib(rss_before),
            mib(rss_peak),
            run.expected.totals.events_counted.saturating_sub(stored_before),
            run.expected.totals.events_counted,
        ),
    );

    run.check(
        "/readyz reports the outage",
        unready,
        if unready {
            "503 while ClickHouse was down"
        } else {
            "never 503 during the outage"
        },
    );
    Ok(Outcome {
        fault_end,
        converged,
    })
}

/// 3: the broker paused with SIGSTOP, resumed with SIGCONT.
async fn broker_pause(run: &mut Run<'_>, instances: &mut Vec<Ingest>) -> Result<Outcome> {
    instances.push(run.start(None)?);
    let publisher = run.publish(spread(run, run.suite.plan.broker_pause));
    let moment = run.rng.random_range(0.2..0.4);
    run.wait_progress(moment, run.suite.plan.timeout).await;
    let rows_before = run.number("SELECT count() FROM authorizations").await?;
    run.suite.services.pause_broker(true)?;
    tokio::time::sleep(run.suite.plan.broker_pause).await;
    let rows_paused = run.number("SELECT count() FROM authorizations").await?;
    run.suite.services.pause_broker(false)?;
    let fault_end = Some(Instant::now());
    run.note(format!(
        "{rows_before} rows when the broker stopped, {rows_paused} when it resumed"
    ));
    run.published(publisher).await?;
    let converged = run.converge(instances).await;
    no_crash(run, instances);
    Ok(Outcome {
        fault_end,
        converged,
    })
}

/// Leaves the group: SIGTERM (drain, commit, leave) or, one time in four, SIGKILL.
async fn leave(run: &mut Run<'_>, mut instance: Ingest, log: &mut Vec<String>) {
    if let Some(status) = instance.exited() {
        run.check(
            "no crash",
            false,
            format!("{} had exited by itself ({status})", instance.name),
        );
        return;
    }
    if run.rng.random_bool(0.25) {
        instance.kill();
        log.push(format!("{} killed", instance.name));
    } else {
        let clean = instance.terminate(Duration::from_secs(30)).await;
        let status = instance.exited();
        let ok = clean && status.is_some_and(|s| s.success());
        if !ok {
            run.check(
                "leavers drain and exit 0 on SIGTERM",
                false,
                format!(
                    "{} exit {status:?}; last lines:\n{}",
                    instance.name,
                    instance.log_tail(8)
                ),
            );
        }
        log.push(format!("{} left", instance.name));
    }
}

/// 4: a second and a third instance join and leave the group, again and again.
async fn rebalance_storm(run: &mut Run<'_>, instances: &mut Vec<Ingest>) -> Result<Outcome> {
    instances.push(run.start(None)?);
    // Published over about the storm's length, so that data flows throughout.
    let storm_secs = 9.0 * run.suite.plan.storm_cycles as f64;
    let rate = run.messages as f64 / storm_secs.max(1.0);
    let publisher = run.publish(rate);
    let moment = run.rng.random_range(0.01..0.05);
    run.wait_progress(moment, run.suite.plan.timeout).await;
    let mut log = Vec::new();
    for _ in 0..run.suite.plan.storm_cycles {
        let second = run.start(None)?;
        let pause = millis(&mut run.rng, 1_500..4_000);
        tokio::time::sleep(pause).await;
        let third = run.start(None)?;
        let pause = millis(&mut run.rng, 1_500..4_000);
        tokio::time::sleep(pause).await;
        let (first_out, last_out) = if run.rng.random_bool(0.5) {
            (second, third)
        } else {
            (third, second)
        };
        leave(run, first_out, &mut log).await;
        let pause = millis(&mut run.rng, 500..2_000);
        tokio::time::sleep(pause).await;
        leave(run, last_out, &mut log).await;
        let pause = millis(&mut run.rng, 500..2_000);
        tokio::time::sleep(pause).await;
    }
    let fault_end = Some(Instant::now());
    let stored = run.number("SELECT count() FROM authorizations").await?;
    run.note(format!(
        "storm over with {stored} rows stored of {} expected; {}",
        run.expected.totals.events_counted,
        log.join(", ")
    ));
    run.published(publisher).await?;
    let converged = run.converge(instances).await;
    no_crash(run, instances);
    if !run
        .row
        .checks
        .iter()
        .any(|c| c.name == "leavers drain and exit 0 on SIGTERM")
    {
        run.check(
            "leavers drain and exit 0 on SIGTERM",
            true,
            "every instance told to leave did",
        );
    }
    Ok(Outcome {
        fault_end,
        converged,
    })
}

/// 5: duplicates published upstream (10%, some hours of event time later),
/// then the whole topics read again from offset 0 by a fresh group.
async fn duplicates_and_replay(run: &mut Run<'_>, instances: &mut Vec<Ingest>) -> Result<Outcome> {
    instances.push(run.start(None)?);
    let publisher = run.publish(0.0);
    run.published(publisher).await?;
    let first = run.converge(instances).await;
    run.check(
        "first pass (with duplicates) equals the oracle",
        first.is_some(),
        format!(
            "{} duplicates among {} messages",
            run.expected.totals.duplicates, run.messages
        ),
    );
    if first.is_none() {
        return Ok(Outcome {
            fault_end: None,
            converged: None,
        });
    }
    for mut instance in instances.drain(..) {
        instance.terminate(Duration::from_secs(30)).await;
    }
    let group = format!("{}-replay", run.group);
    instances.push(run.start(Some(&group))?);
    let replay_start = Instant::now();
    let deadline = replay_start + run.suite.plan.timeout;
    let letters: u64 = run.expected.dead_letters.values().sum();
    let mut differing_polls = 0u32;
    let mut last_poll = Instant::now();
    let mut consumed;
    loop {
        let metrics = instances[0].metrics().await.unwrap_or_default();
        consumed = metrics.sum("usage_ingest_events_consumed_total");
        let pending = metrics.sum("usage_ingest_pending_events");
        let dead = metrics.sum("usage_ingest_dead_letters_total");
        if consumed as u64 >= run.messages && pending == 0.0 && dead as u64 >= letters {
            break;
        }
        if Instant::now() >= deadline || instances[0].exited().is_some() {
            break;
        }
        if last_poll.elapsed() >= Duration::from_secs(3) {
            last_poll = Instant::now();
            if let Ok((_, differences)) = run.observe().await {
                if !differences.is_empty() {
                    differing_polls += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The last batch written and committed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.check(
        "the fresh group read everything again",
        consumed as u64 >= run.messages,
        format!("{consumed:.0} of {} messages consumed", run.messages),
    );
    run.check(
        "rollups unchanged during the replay",
        differing_polls == 0,
        format!("{differing_polls} polls during the replay differed from the oracle"),
    );
    let converged = run.converge(instances).await;
    no_crash(run, instances);
    Ok(Outcome {
        fault_end: Some(replay_start),
        converged,
    })
}

/// Table names of the fault's database.
async fn tables(run: &Run<'_>) -> Result<Vec<String>> {
    run.warehouse
        .client()
        .query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
        .fetch_all::<String>()
        .await
        .context("listing tables")
}

async fn databases(run: &Run<'_>) -> Result<Vec<String>> {
    run.warehouse
        .client()
        .query("SELECT name FROM system.databases ORDER BY name")
        .fetch_all::<String>()
        .await
        .context("listing databases")
}

/// 6: the bad-input corpus spread through a scenario with 1% poison.
async fn bad_input(
    run: &mut Run<'_>,
    instances: &mut Vec<Ingest>,
    summary: Option<&corpus::CorpusSummary>,
) -> Result<Outcome> {
    let tables_before = tables(run).await?;
    let databases_before = databases(run).await?;
    instances.push(run.start(None)?);
    let publisher = run.publish(0.0);
    run.published(publisher).await?;
    let fault_end = Some(Instant::now());
    let converged = run.converge(instances).await;
    no_crash(run, instances);
    let tables_after = tables(run).await?;
    let databases_after = databases(run).await?;
    run.check(
        "ClickHouse holds no injected SQL (tables)",
        tables_before == tables_after,
        format!("tables before: {tables_before:?}; after: {tables_after:?}"),
    );
    run.check(
        "ClickHouse holds no injected SQL (databases)",
        databases_before == databases_after,
        format!(
            "{} databases before and {} after",
            databases_before.len(),
            databases_after.len()
        ),
    );
    let hostile = run
        .number("SELECT uniqExact(event_id) FROM authorizations WHERE startsWith(event_id, 'faults-hostile-')")
        .await?;
    let want = summary.map_or(0, |s| s.hostile_valid);
    run.check(
        "valid events with hostile strings are counted",
        hostile == want,
        format!("{hostile} of {want} stored (their rollup rows, strings byte for byte, are compared with the oracle)"),
    );
    Ok(Outcome {
        fault_end,
        converged,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InsertError {
    /// `daily_usage` detached: every insert into it fails.
    Table,
    /// The server's default profile read-only.
    ReadOnly,
}

async fn readonly_setting(run: &Run<'_>) -> Option<String> {
    run.warehouse
        .client()
        .query("SELECT value FROM system.settings WHERE name = 'readonly'")
        .fetch_one::<String>()
        .await
        .ok()
}

/// Waits until the server's `readonly` setting is `want` (users.xml reloaded).
async fn await_readonly(run: &Run<'_>, want: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while readonly_setting(run).await.as_deref() != Some(want) {
        if Instant::now() >= deadline {
            bail!("ClickHouse did not reload users.xml (readonly = {want}) within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// 8: inserts fail for a while, then the cause is fixed: no offset may be
/// committed meanwhile, the error must be reported, nothing lost after.
async fn insert_errors(
    run: &mut Run<'_>,
    instances: &mut Vec<Ingest>,
    kind: InsertError,
) -> Result<Outcome> {
    instances.push(run.start(None)?);
    let publisher = run.publish(spread(run, run.suite.plan.insert_errors));
    let moment = run.rng.random_range(0.2..0.4);
    run.wait_progress(moment, run.suite.plan.timeout).await;
    let errors_before = match instances[0].metrics().await {
        Some(m) => m.sum("usage_ingest_clickhouse_errors_total"),
        None => 0.0,
    };
    let (expected_text, cause) = match kind {
        InsertError::Table => {
            run.warehouse
                .client()
                .query("DETACH TABLE daily_usage")
                .execute()
                .await
                .context("DETACH TABLE daily_usage")?;
            ("doesn't exist", "table daily_usage detached")
        }
        InsertError::ReadOnly => {
            run.suite.services.set_read_only(true)?;
            await_readonly(run, "2").await?;
            ("readonly", "default profile readonly = 2")
        }
    };
    let broken = Instant::now();
    let topics = vec![
        run.target.topics.authorizations.clone(),
        run.target.topics.assignments.clone(),
        run.target.topics.directory.clone(),
    ];
    let committed = |run: &Run<'_>| {
        let brokers = run.target.services.brokers.clone();
        let group = run.group.clone();
        let topics = topics.clone();
        tokio::task::spawn_blocking(move || kafka::committed(&brokers, &group, &topics))
    };
    // Batches stored before the fault may still commit for a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = committed(run).await??;
    let mut unready = false;
    while broken.elapsed() < run.suite.plan.insert_errors {
        unready |= instances[0].ready().await == Some(false);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    unready |= instances[0].ready().await == Some(false);
    let last = committed(run).await??;
    let errors = match instances[0].metrics().await {
        Some(m) => m.sum("usage_ingest_clickhouse_errors_total"),
        None => 0.0,
    } - errors_before;
    match kind {
        InsertError::Table => {
            run.warehouse
                .client()
                .query("ATTACH TABLE daily_usage")
                .execute()
                .await
                .context("ATTACH TABLE daily_usage")?;
        }
        InsertError::ReadOnly => {
            run.suite.services.set_read_only(false)?;
            await_readonly(run, "0").await?;
        }
    }
    let fault_end = Some(Instant::now());
    let log = instances[0].log_text();
    let reported = log
        .lines()
        .find(|l| l.contains("insert failed") && l.contains(expected_text));
    run.check(
        "stops committing",
        first == last && !first.is_empty(),
        format!(
            "committed offsets {} between {} s into the fault and its end ({} partitions with commits)",
            if first == last { "unchanged" } else { "MOVED" },
            2,
            first.len()
        ),
    );
    run.check(
        "reports the error clearly",
        reported.is_some() && errors > 0.0 && unready,
        format!(
            "{cause}: usage_ingest_clickhouse_errors_total +{errors:.0}, /readyz {}, log: {}",
            if unready { "503" } else { "never 503" },
            reported.map_or_else(
                || format!("no \"insert failed\" line with \"{expected_text}\""),
                |l| l.chars().take(300).collect::<String>()
            )
        ),
    );
    run.published(publisher).await?;
    let converged = run.converge(instances).await;
    no_crash(run, instances);
    Ok(Outcome {
        fault_end,
        converged,
    })
}
