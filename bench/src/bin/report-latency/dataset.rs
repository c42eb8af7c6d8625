//! The dataset: a generated scenario published to fresh topics and ingested
//! by `usage-ingest` into its own database, reused across runs while its
//! parameters match and the database still holds it.

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use usage_loadgen::{Message, PublishConfig, Scenario, ScenarioConfig, Topic};
use usage_testkit::ingest::IngestRun;
use usage_testkit::memory;
use usage_testkit::services::Services;
use usage_testkit::topics::{self, Topics};

use crate::{say, Args};

/// What the dataset was built from, and what it holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Dataset {
    pub(crate) database: String,
    pub(crate) scenario: ScenarioConfig,
    pub(crate) built_at: String,
    pub(crate) messages_published: u64,
    pub(crate) authorizations_published: u64,
    pub(crate) authorizations_offline: u64,
    pub(crate) authorization_payload_bytes: u64,
    /// Reportable events expected in `authorizations` (online ones).
    pub(crate) expected_stored: u64,
    /// Rows in `authorizations` once ingestion ended.
    pub(crate) stored: u64,
    /// Distinct event ids among them.
    pub(crate) stored_distinct: u64,
    pub(crate) phases: Phases,
    pub(crate) rollups: Rollups,
    pub(crate) ingest_vm_hwm_kb: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Phases {
    /// Planning the world (users, holdings, rates).
    pub(crate) plan_secs: f64,
    /// One pass rendering every message, none kept (the expected counts).
    pub(crate) generate_secs: f64,
    /// Generation again, overlapped with producing, until all acknowledged.
    pub(crate) publish_secs: f64,
    /// From starting usage-ingest (migrations, group join) to the last event stored.
    pub(crate) ingest_secs: f64,
    /// Stored events per second over the ingest phase.
    pub(crate) ingest_events_per_sec: f64,
    /// From SIGTERM to usage-ingest's exit.
    pub(crate) ingest_shutdown_secs: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Rollups {
    pub(crate) authorizations: u64,
    pub(crate) daily_usage: u64,
    pub(crate) flex_windows: u64,
    pub(crate) assignment_state: u64,
    pub(crate) user_profiles: u64,
    pub(crate) group_memberships: u64,
    /// The report's rollups (migration 0006).
    #[serde(default)]
    pub(crate) usage_months: u64,
    #[serde(default)]
    pub(crate) last_access: u64,
    #[serde(default)]
    pub(crate) token_months: u64,
    /// Active parts per table.
    pub(crate) parts: Vec<(String, u64)>,
}

// ---------------------------------------------------------------------------
// ClickHouse

pub(crate) struct Ch {
    pub(crate) client: clickhouse::Client,
    pub(crate) db: String,
}

impl Ch {
    pub(crate) async fn execute(&self, sql: &str) -> Result<()> {
        usage_testkit::clickhouse::execute(&self.client, sql).await
    }

    pub(crate) async fn u64(&self, sql: &str) -> Result<u64> {
        usage_testkit::clickhouse::number(&self.client, sql).await
    }

    pub(crate) async fn count(&self, table: &str) -> Result<u64> {
        self.u64(&format!("SELECT count() FROM {}.{table}", self.db))
            .await
    }

    pub(crate) async fn table_exists(&self, table: &str) -> Result<bool> {
        let n = self
            .u64(&format!(
                "SELECT count() FROM system.tables WHERE database = '{}' AND name = '{table}'",
                self.db
            ))
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn rollups(&self) -> Result<Rollups> {
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
            usage_months: self.count("usage_months").await?,
            last_access: self.count("last_access").await?,
            token_months: self.count("token_months").await?,
            parts,
        })
    }

    /// Waits (up to `limit`) until no merge runs in the database.
    pub(crate) async fn settle_merges(&self, limit: Duration) -> Result<()> {
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

pub(crate) fn scenario_config(args: &Args) -> ScenarioConfig {
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
pub(crate) fn same_parameters(a: &ScenarioConfig, b: &ScenarioConfig) -> bool {
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
    pub(crate) fn see(&mut self, m: &Message) {
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

pub(crate) fn record_path(args: &Args) -> PathBuf {
    args.work_dir
        .join(format!("report-dataset-{}.json", args.database))
}

/// The recorded dataset, if it matches `config` and the database still holds it.
pub(crate) async fn reusable(
    args: &Args,
    ch: &Ch,
    config: &ScenarioConfig,
) -> Result<Option<Dataset>> {
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

pub(crate) const TOPIC_PREFIX: &str = "reportbench";

/// The broker and ClickHouse of the run.
pub(crate) fn services(args: &Args) -> Services {
    Services {
        brokers: args.brokers.clone(),
        clickhouse_url: args.clickhouse_url.clone(),
    }
}

/// Deletes the topics of earlier builds (all named `reportbench<time>.*`):
/// the local broker keeps them in memory.
pub(crate) async fn delete_stale_topics(args: &Args) -> Result<()> {
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

pub(crate) async fn delete_topics(args: &Args, names: &[&str]) {
    if let Err(e) = topics::delete_topics(&args.brokers, names).await {
        say(format!("could not delete the topics: {e:#}"));
    }
}

pub(crate) async fn build_dataset(args: &Args, ch: &Ch, config: ScenarioConfig) -> Result<Dataset> {
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
pub(crate) async fn publish_and_ingest(
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
