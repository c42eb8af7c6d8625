//! One fault's run: its scenario and oracle, its own topics, database and
//! consumer group on the private services, its usage-ingest instances, and
//! the row computed at the end.

use crate::corpus::{CorpusSummary, Stream};
use crate::ingest::{Ingest, Launcher, Target};
use crate::kafka;
use crate::memory::Memory;
use crate::report::{Check, Row};
use crate::services::PrivateServices;
use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use usage_loadgen::verify::{self, Observed};
use usage_loadgen::{
    ExpectedRollups, Message, Oracle, PublishConfig, PublishReport, Scenario, ScenarioConfig,
};
use usage_store::Warehouse;
use usage_testkit::clickhouse;
use usage_testkit::topics::Topics;

/// What usage-ingest keeps of a dead letter's payload when the whole one is
/// over the broker's message size (`usage_ingest::dlq::TRUNCATED_PAYLOAD_BYTES`).
const TRUNCATED_BYTES: usize = 64 * 1024;

/// The sizes of the suite.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) short: bool,
    /// Messages published per fault (about).
    pub(crate) events: u64,
    pub(crate) kills: usize,
    pub(crate) clickhouse_outage: Duration,
    pub(crate) broker_pause: Duration,
    /// Join/leave cycles of the second and third instance.
    pub(crate) storm_cycles: usize,
    pub(crate) insert_errors: Duration,
    /// Longest wait for the rollups to equal the oracle after a fault.
    pub(crate) timeout: Duration,
    /// `--unresolved-hold-secs` of every instance.
    pub(crate) hold_secs: u64,
    /// `--batch-max-rows` of every instance.
    pub(crate) batch_rows: u64,
    /// Options every instance gets (batching, hold).
    pub(crate) ingest_options: Vec<String>,
}

/// What every fault shares.
pub(crate) struct Suite {
    /// The repository (the scenario corpus is read from it).
    pub(crate) repo: PathBuf,
    pub(crate) plan: Plan,
    pub(crate) services: PrivateServices,
    pub(crate) binary: PathBuf,
    pub(crate) log_dir: PathBuf,
}

/// One fault in progress.
pub(crate) struct Run<'a> {
    pub(crate) suite: &'a Suite,
    pub(crate) id: String,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) target: Target,
    pub(crate) stream: Stream,
    pub(crate) expected: ExpectedRollups,
    /// Messages the stream publishes.
    pub(crate) messages: u64,
    pub(crate) warehouse: Warehouse,
    pub(crate) launcher: Launcher,
    pub(crate) memory: Memory,
    sampler: tokio::task::JoinHandle<()>,
    pub(crate) group: String,
    pub(crate) row: Row,
    started: Instant,
    /// Names of the usage-ingest instances started, for their log files.
    started_instances: u32,
    publish_overrides: Vec<(String, String)>,
}

/// A scenario config of `users` users over 30 days, with the test suite's
/// shares of duplicates, late events and poison.
pub(crate) fn scenario_config(seed: u64, users: usize) -> ScenarioConfig {
    ScenarioConfig {
        seed,
        users,
        teams: 6,
        days: 30,
        duplicate_share: 0.02,
        late_share: 0.02,
        poison_share: 0.002,
        ..ScenarioConfig::default()
    }
}

/// The number of users for about `messages` messages (measured on a small
/// scenario of the same shape).
pub(crate) fn users_for(messages: u64, shape: &ScenarioConfig) -> Result<usize> {
    const PROBE: usize = 200;
    let probe = Scenario::generate(&ScenarioConfig {
        users: PROBE,
        ..shape.clone()
    })?;
    let per_user = (probe.count().messages as f64 / PROBE as f64).max(1.0);
    Ok(((messages as f64 / per_user).ceil() as usize).max(20))
}

/// A scenario of `shape` with at least `messages` messages (users sized on
/// a small probe, then grown until it is big enough), and its message count.
pub(crate) fn sized_scenario(messages: u64, shape: &ScenarioConfig) -> Result<(Scenario, u64)> {
    let mut users = users_for(messages, shape)?;
    loop {
        let scenario = Scenario::generate(&ScenarioConfig {
            users,
            ..shape.clone()
        })?;
        let count = scenario.count().messages;
        if count >= messages {
            return Ok((scenario, count));
        }
        let grow = messages as f64 / count.max(1) as f64 * 1.01;
        users = (users as f64 * grow).ceil() as usize + 1;
    }
}

/// A fault's scenario, the stream published and its oracle: computed ahead
/// of the fault (blocking, CPU only).
pub(crate) struct Generated {
    pub(crate) label: String,
    pub(crate) stream: Stream,
    /// Messages the stream publishes.
    pub(crate) messages: u64,
    pub(crate) expected: ExpectedRollups,
    pub(crate) users: usize,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) summary: Option<CorpusSummary>,
    pub(crate) took: Duration,
}

/// Generates the scenario of `config` with at least `events` messages (its
/// `users` sized to them), with the messages of `extra` injected, and
/// computes its oracle.
pub(crate) fn generate(
    seed: u64,
    id: &str,
    label: String,
    events: u64,
    mut config: ScenarioConfig,
    extra: impl FnOnce(&Scenario, &mut ChaCha8Rng) -> Result<(Vec<Message>, Option<CorpusSummary>)>,
) -> Result<Generated> {
    let started = Instant::now();
    let fault_seed = mix(seed, id);
    let mut rng = ChaCha8Rng::seed_from_u64(fault_seed);
    config.seed = fault_seed;
    let (scenario, count) = sized_scenario(events, &config)?;
    let users = scenario.config().users;
    let (extra, summary) = extra(&scenario, &mut rng)?;
    let stream = Stream::new(scenario, count, extra, &mut rng);
    let oracle =
        Oracle::from_messages(|| stream.messages()).context("the oracle reads the stream")?;
    let end = stream.scenario().config().end;
    let ranges = Oracle::standard_ranges(end, stream.scenario().config().days);
    let expected = oracle.expected_rollups(end, &ranges, false);
    Ok(Generated {
        label,
        messages: expected.totals.messages,
        stream,
        expected,
        users,
        rng,
        summary,
        took: started.elapsed(),
    })
}

impl<'a> Run<'a> {
    /// Creates the fault's topics and database for `generated`.
    pub(crate) async fn prepare(
        suite: &'a Suite,
        id: &str,
        generated: Generated,
    ) -> Result<Run<'a>> {
        let started = Instant::now();
        let Generated {
            label: fault,
            stream,
            messages,
            expected,
            users,
            rng,
            took,
            ..
        } = generated;
        let stamp = format!(
            "{}_{}_{}",
            id.replace(['-', '.'], "_"),
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        );
        let target = Target {
            services: suite.services.services(),
            database: format!("faults_{stamp}"),
            topics: Topics::named(&format!("faults.{stamp}")),
        };
        target
            .topics
            .create(&target.services.brokers, kafka::PARTITIONS)
            .await?;
        let warehouse =
            clickhouse::create_database(&target.services.clickhouse_url, &target.database).await?;

        let memory = Memory::default();
        let sampler = memory.spawn_sampler();
        let launcher = Launcher {
            binary: suite.binary.clone(),
            log_dir: suite.log_dir.clone(),
            options: suite.plan.ingest_options.clone(),
        };
        let row = Row {
            id: id.to_owned(),
            fault,
            expected: expected.totals.events_counted,
            dlq_expected: expected
                .dead_letters
                .iter()
                .map(|(r, n)| (r.as_str().to_owned(), *n))
                .collect(),
            ..Row::default()
        };
        println!(
            "[{id}] {}: {} messages ({} users, {} authorizations counted, {} dead letters expected), database {}; oracle in {:.1} s",
            row.fault,
            messages,
            users,
            expected.totals.events_counted,
            expected.totals.dead_lettered,
            target.database,
            took.as_secs_f64()
        );
        Ok(Run {
            suite,
            id: id.to_owned(),
            rng,
            group: format!("faults-{stamp}"),
            target,
            stream,
            expected,
            messages,
            warehouse,
            launcher,
            memory,
            sampler,
            row,
            started,
            started_instances: 0,
            publish_overrides: vec![("message.max.bytes".into(), "16000000".into())],
        })
    }

    /// Starts an instance in `group` (the fault's own group if None).
    pub(crate) fn start(&mut self, group: Option<&str>) -> Result<Ingest> {
        self.started_instances += 1;
        let name = format!("{}-{}", self.id, self.started_instances);
        let group = group.unwrap_or(&self.group).to_owned();
        self.launcher
            .start(&self.target, &group, &name, &self.memory)
    }

    /// Publishes the stream in the background (`rate` messages/s, 0: as fast as possible).
    pub(crate) fn publish(&self, rate: f64) -> tokio::task::JoinHandle<Result<PublishReport>> {
        let config = PublishConfig {
            topics: self.target.topics.inbound(),
            rate,
            overrides: self.publish_overrides.clone(),
            ..PublishConfig::new(self.target.services.brokers.clone())
        };
        let stream = self.stream.clone();
        let total = self.messages;
        tokio::spawn(async move {
            usage_loadgen::publish(&config, stream.messages(), Some(total), |_| {})
                .await
                .context("publishing the scenario")
        })
    }

    /// Waits for a background publication; records the count.
    pub(crate) async fn published(
        &mut self,
        handle: tokio::task::JoinHandle<Result<PublishReport>>,
    ) -> Result<()> {
        let report = handle.await.context("the publisher task")??;
        self.row.published = report.messages;
        Ok(())
    }

    /// One number from ClickHouse.
    pub(crate) async fn number(&self, sql: &str) -> Result<u64> {
        clickhouse::number(self.warehouse.client(), sql).await
    }

    /// Waits until `fraction` of the expected authorizations have rows (a
    /// moment of the run), or `timeout`.
    pub(crate) async fn wait_progress(&self, fraction: f64, timeout: Duration) -> u64 {
        let goal = (self.expected.totals.events_counted as f64 * fraction) as u64;
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self
                .number("SELECT count() FROM authorizations")
                .await
                .unwrap_or(0);
            if rows >= goal || Instant::now() >= deadline {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The warehouse as the oracle sees it, and the differences.
    pub(crate) async fn observe(&self) -> Result<(Observed, Vec<String>)> {
        let ranges: Vec<_> = self
            .expected
            .ranges
            .iter()
            .map(|r| (r.name.clone(), r.range))
            .collect();
        let observed = verify::observe(self.warehouse.client(), &ranges)
            .await
            .context("reading the rollups")?;
        let differences = verify::differences(&self.expected, &observed);
        Ok((observed, differences))
    }

    /// Waits until the rollups equal the oracle: the moment they did, or
    /// None after the plan's timeout. Gives up early when every instance
    /// of `instances` has exited, or when nothing was written for
    /// [`SETTLED`] (longer than the longest insert retry delay and hold).
    pub(crate) async fn converge(&self, instances: &mut [Ingest]) -> Option<Instant> {
        const SETTLED: Duration = Duration::from_secs(40);
        let deadline = Instant::now() + self.suite.plan.timeout;
        let want = self.expected.totals.events_counted;
        let mut last: Option<(u64, Instant)> = None;
        loop {
            let stored = self
                .number("SELECT uniqExact(event_id) FROM authorizations")
                .await
                .ok();
            if stored == Some(want) {
                let at = Instant::now();
                if let Ok((_, differences)) = self.observe().await {
                    if differences.is_empty() {
                        return Some(at);
                    }
                }
            }
            let rows = self
                .number(
                    "SELECT (SELECT count() FROM authorizations) + (SELECT count() FROM daily_usage) \
                     + (SELECT count() FROM flex_windows) + (SELECT count() FROM assignment_state)",
                )
                .await
                .ok();
            match (rows, last) {
                (Some(rows), Some((before, since))) if rows == before => {
                    if since.elapsed() >= SETTLED {
                        return None;
                    }
                }
                (Some(rows), _) => last = Some((rows, Instant::now())),
                (None, _) => last = None,
            }
            if Instant::now() >= deadline
                || (!instances.is_empty() && instances.iter_mut().all(|i| i.exited().is_some()))
            {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub(crate) fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.row.checks.push(Check {
            name: name.to_owned(),
            ok,
            detail: detail.into(),
        });
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.row.notes.push(note.into());
    }

    /// Reads the dead-letter topic, again while it does not match the
    /// oracle yet (held-back events are dead-lettered after the hold).
    async fn dead_letters(&self) -> Result<kafka::DeadLetters> {
        let deadline = Instant::now() + Duration::from_secs(20 + 2 * self.suite.plan.hold_secs);
        loop {
            let brokers = self.target.services.brokers.clone();
            let topic = self.target.topics.dlq.clone();
            let letters =
                tokio::task::spawn_blocking(move || kafka::read_dead_letters(&brokers, &topic))
                    .await??;
            if letters.by_reason == self.row.dlq_expected || Instant::now() >= deadline {
                return Ok(letters);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The row: final comparison with the oracle, dead letters, memory,
    /// recovery. Stops the instances; drops the database and topics when
    /// the fault passed.
    pub(crate) async fn finish(
        mut self,
        fault_end: Option<Instant>,
        converged: Option<Instant>,
        mut instances: Vec<Ingest>,
    ) -> Row {
        if let Err(error) = self
            .finish_inner(fault_end, converged, &mut instances)
            .await
        {
            self.row.error = Some(format!("{error:#}"));
        }
        self.memory.sample_all();
        self.row.peak_rss_mib = crate::faults::mib(self.memory.peak_bytes());
        for instance in &mut instances {
            instance.terminate(Duration::from_secs(10)).await;
        }
        self.sampler.abort();
        self.row.instances = self.started_instances;
        self.row.elapsed_secs = self.started.elapsed().as_secs_f64();
        self.row.judge();
        if self.row.passed {
            let _ = clickhouse::drop_database(&self.warehouse).await;
            let _ = self
                .target
                .topics
                .delete(&self.target.services.brokers)
                .await;
        } else {
            for instance in &instances {
                self.row.notes.push(format!(
                    "log of {} ({}), last lines:\n{}",
                    instance.name,
                    instance.log().display(),
                    indent(&instance.log_tail(25))
                ));
            }
            self.row.notes.push(format!(
                "kept for inspection: database {}, topics {}.* (private services' state: {})",
                self.target.database,
                self.target.topics.dlq.trim_end_matches(".dlq"),
                self.suite.services.dir.display()
            ));
        }
        println!(
            "[{}] {} in {:.0} s",
            self.id,
            if self.row.passed { "ok" } else { "FAILED" },
            self.row.elapsed_secs
        );
        self.row
    }

    async fn finish_inner(
        &mut self,
        fault_end: Option<Instant>,
        converged: Option<Instant>,
        instances: &mut [Ingest],
    ) -> Result<()> {
        self.row.recovery_secs = match (fault_end, converged) {
            (Some(end), Some(at)) => Some(at.saturating_duration_since(end).as_secs_f64()),
            (None, Some(_)) => Some(0.0),
            _ => None,
        };
        for instance in instances.iter_mut() {
            if let Some(status) = instance.exited() {
                self.row.notes.push(format!(
                    "{} exited by itself ({status}); last lines:\n{}",
                    instance.name,
                    indent(&instance.log_tail(12))
                ));
            }
        }
        let letters = self.dead_letters().await?;
        self.row.dlq = letters.by_reason.clone();
        self.row.dlq_messages = letters.messages;
        if letters.inconsistent > 0 {
            self.check(
                "one reason per dead letter",
                false,
                format!(
                    "{} source offsets were dead-lettered with two different reasons",
                    letters.inconsistent
                ),
            );
        }
        if self.id.starts_with('6') {
            self.check_dead_letter_payloads(&letters);
        }
        let (observed, differences) = self.observe().await?;
        self.row.in_rollups = observed.events_counted;
        self.row.lost = self
            .expected
            .totals
            .events_counted
            .saturating_sub(observed.events_counted);
        self.row.double_counted = double_counted(&self.expected, &observed);
        self.row.differences = differences;
        Ok(())
    }

    /// Every refused message of the stream is in the dead-letter topic, byte
    /// for byte, with its reason.
    fn check_dead_letter_payloads(&mut self, letters: &kafka::DeadLetters) {
        let mut want: BTreeMap<(String, u64), i64> = BTreeMap::new();
        // A letter over the broker's size limit carries the payload's first
        // 64 KiB and the original size: it stands for the message with that
        // prefix and size.
        let mut by_prefix: BTreeMap<(usize, u64), u64> = BTreeMap::new();
        for message in self.stream.messages() {
            if let Some(reason) = message.expected_reason {
                let hash = kafka::payload_hash(&message.payload);
                *want.entry((reason.as_str().to_owned(), hash)).or_default() += 1;
                let prefix = &message.payload[..message.payload.len().min(TRUNCATED_BYTES)];
                by_prefix.insert((message.payload.len(), kafka::payload_hash(prefix)), hash);
            }
        }
        let ingest_reasons = ["unresolved_team", "unknown_rate", "beyond_horizon"];
        let mut balance = want;
        let mut truncated = 0;
        for (reason, hash, truncated_from) in &letters.payloads {
            if ingest_reasons.contains(&reason.as_str()) {
                continue;
            }
            let hash = match truncated_from {
                Some(size) => {
                    truncated += 1;
                    by_prefix.get(&(*size, *hash)).copied().unwrap_or(*hash)
                }
                None => *hash,
            };
            *balance.entry((reason.clone(), hash)).or_default() -= 1;
        }
        if truncated > 0 {
            self.note(format!(
                "{truncated} letters over the broker's message size carry the payload's first 64 KiB and its size"
            ));
        }
        let missing: i64 = balance.values().filter(|n| **n > 0).sum();
        let unexpected: i64 = -balance.values().filter(|n| **n < 0).sum::<i64>();
        let refused = self
            .stream
            .injected()
            .filter(|m| m.expected_reason.is_some())
            .count();
        self.check(
            "every refused message is in the DLQ, byte for byte, with its reason",
            missing == 0 && unexpected == 0,
            format!(
                "{missing} refused messages missing from the DLQ (or with another reason), \
                 {unexpected} letters not expected ({refused} injected, plus the scenario's poison)"
            ),
        );
    }
}

/// Rollup rows with a figure above the oracle's, plus rows the oracle does
/// not have: what counting something twice (or inventing it) would show.
pub(crate) fn double_counted(expected: &ExpectedRollups, observed: &Observed) -> u64 {
    let mut keys = BTreeSet::new();
    let mut above = 0;
    for row in &expected.rows {
        let key = (
            row.team_id.clone(),
            row.user_id.clone(),
            row.product.clone(),
            row.access,
        );
        if let Some(got) = observed.rows.get(&key) {
            let more_in_range = got
                .days_used_in
                .iter()
                .any(|(range, n)| *n > row.days_used_in.get(range).copied().unwrap_or(0));
            if got.days_used > row.days_used
                || got.windows > row.windows
                || got.tokens_milli > row.tokens_milli
                || more_in_range
            {
                above += 1;
            }
        }
        keys.insert(key);
    }
    let invented = observed.rows.keys().filter(|k| !keys.contains(*k)).count() as u64;
    above + invented
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("      {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The seed of one fault: the suite's seed mixed with the fault's id (FNV-1a).
fn mix(seed: u64, id: &str) -> u64 {
    id.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
