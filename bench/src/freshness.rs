//! End-to-end freshness at half load, and a soak of `usage-ingest`'s memory.
//!
//! One `usage-ingest` on fresh topics and a fresh database, a background load
//! published at a fixed rate by the generator (its reference data first), and
//! every 100 ms a probe authorization (`occurred_at` = now, `team_id` set, a
//! user of its own) whose publish time is recorded. ClickHouse is polled every
//! 20 ms, one query for every probe not seen yet: a probe is visible when its
//! row is in `authorizations` and its day in the `daily_usage` rollup. Its
//! freshness is the time from just before it was handed to the producer to
//! the answer of the first poll that saw it (an upper bound: up to one poll
//! interval plus one query late). Meanwhile the ingest's `VmRSS` is sampled
//! every 2 s.

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use usage_loadgen::{PublishConfig, PublishReport};
use usage_testkit::clickhouse::execute;
use usage_testkit::ingest::{self, IngestRun};
use usage_testkit::memory;
use usage_testkit::metrics::Metrics;
use usage_testkit::services::Services;
use usage_testkit::stats::{median, percentile};
use usage_testkit::topics::Topics;

use crate::support::{clean_scenario, query_count};

const PROBE_EVERY: Duration = Duration::from_millis(100);
const POLL_EVERY: Duration = Duration::from_millis(20);
const SOAK_EVERY: Duration = Duration::from_secs(2);
/// How long probes not yet visible are still waited for once probing stops.
const PROBE_DRAIN: Duration = Duration::from_secs(30);
/// The team every probe carries (so no assignment lookup is needed).
const PROBE_TEAM: &str = "bench-probe-team";

pub(crate) struct Config<'a> {
    pub(crate) tag: &'a str,
    pub(crate) brokers: &'a str,
    pub(crate) clickhouse_url: &'a str,
    pub(crate) bin_dir: &'a Path,
    pub(crate) logs: &'a Path,
    /// Background messages per second.
    pub(crate) rate: f64,
    pub(crate) freshness_secs: u64,
    pub(crate) soak_secs: u64,
    pub(crate) warmup_secs: u64,
    /// Users of the background scenario (at least).
    pub(crate) users: usize,
    /// Authorizations per user-day of a scenario (to size the background).
    pub(crate) authorizations_per_user_day: f64,
    pub(crate) keep_databases: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct Background {
    /// Messages per second asked of the generator (half the median sustained
    /// rate of one usage-ingest in this run, unless overridden).
    pub(crate) target_rate: f64,
    /// Messages per second actually published during the probe window.
    pub(crate) achieved_rate: f64,
    /// Messages published from the start of the background to its end.
    pub(crate) messages: u64,
    pub(crate) scenario_users: usize,
    pub(crate) scenario_days: u32,
    /// Set when the background stopped before the phase did (exhausted or failed).
    pub(crate) ended_early: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Probes {
    pub(crate) published: usize,
    pub(crate) visible: usize,
    pub(crate) missing: usize,
    pub(crate) send_errors: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
    /// Publish to the broker's acknowledgement (acks=all), median.
    pub(crate) ack_p50_ms: f64,
    /// Duration of a visibility poll (one query), median and max.
    pub(crate) poll_query_p50_ms: f64,
    pub(crate) poll_query_max_ms: f64,
    pub(crate) poll_errors: usize,
    /// Every visible probe's freshness, in publish order (ms).
    pub(crate) latencies_ms: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Soak {
    pub(crate) interval_secs: u64,
    pub(crate) duration_secs: f64,
    /// (seconds since the window opened, VmRSS bytes).
    pub(crate) samples: Vec<(f64, u64)>,
    pub(crate) first_bytes: u64,
    pub(crate) min_bytes: u64,
    pub(crate) max_bytes: u64,
    pub(crate) last_bytes: u64,
    pub(crate) second_half_median_bytes: u64,
    /// (last - median of the second half) / that median, in %.
    pub(crate) last_vs_second_half_pct: f64,
    /// `last_vs_second_half_pct` below 10 % (no growth at the end).
    pub(crate) flat: bool,
    /// VmHWM at the end of the phase.
    pub(crate) peak_bytes: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) freshness_secs: u64,
    pub(crate) warmup_secs: u64,
    pub(crate) background: Background,
    /// Authorization rows stored per second by usage-ingest during the probe
    /// window (reportable events only: offline ones are not stored).
    pub(crate) ingest_rows_per_second: f64,
    pub(crate) probes: Probes,
    pub(crate) soak: Soak,
}

/// Aborts the background publication when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) async fn run(cfg: &Config<'_>, server: &clickhouse::Client) -> anyhow::Result<Report> {
    let topics = Topics::named(&format!("{}.fresh", cfg.tag));
    topics.create(cfg.brokers, 4).await?;
    let db = format!("{}_fresh", cfg.tag);
    let result = phase(cfg, server, &topics, &db).await;
    if !cfg.keep_databases {
        let _ = execute(server, &format!("DROP DATABASE IF EXISTS {db}")).await;
    }
    let _ = topics.delete(cfg.brokers).await;
    result
}

async fn phase(
    cfg: &Config<'_>,
    server: &clickhouse::Client,
    topics: &Topics,
    db: &str,
) -> anyhow::Result<Report> {
    let soak_secs = cfg.soak_secs.max(cfg.freshness_secs);
    // The background must outlast the phase: join, warm-up, the longer of the
    // two windows, the drain of the last probes, with a margin.
    let seconds = (10 + cfg.warmup_secs + soak_secs + PROBE_DRAIN.as_secs()) as f64;
    let needed = cfg.rate * seconds * 1.2;
    let per_user_day = cfg.authorizations_per_user_day.max(0.1);
    let users = cfg
        .users
        .max((needed / (per_user_day * 3650.0)).ceil() as usize);
    let days = (needed / (per_user_day * users as f64))
        .ceil()
        .clamp(1.0, 3650.0) as u32;
    let scenario = clean_scenario(2, users, days)?;
    let product = scenario
        .products()
        .first()
        .map_or("photoshop", |p| *p)
        .to_owned();

    let binary = cfg.bin_dir.join("usage-ingest");
    let migrate_log = cfg.logs.join(format!("{db}-migrate.log"));
    ingest::migrate(&binary, cfg.clickhouse_url, db, &migrate_log)?;
    let services = Services {
        brokers: cfg.brokers.to_owned(),
        clickhouse_url: cfg.clickhouse_url.to_owned(),
    };
    let ingest = IngestRun::new(&binary, &services, db, topics, &format!("{db}_group"))
        .spawn(&cfg.logs.join("fresh-ingest.log"))?;
    let (mut child, port) = (ingest.process, ingest.metrics_port);

    // Joined: it owns the four authorizations partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        child.check_alive()?;
        let owned = Metrics::scrape(port)
            .await
            .and_then(|m| m.by_topic("usage_ingest_assigned_partitions", &topics.authorizations));
        if owned.is_some_and(|n| n >= 4.0) {
            break;
        }
        if Instant::now() >= deadline {
            anyhow::bail!("usage-ingest did not join its group within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!(
        "usage-bench: freshness: background at {:.0} msgs/s ({users} users over {days} days, reference data first)",
        cfg.rate
    );
    let sent = Arc::new(AtomicU64::new(0));
    let mut background = {
        let sent = sent.clone();
        let config = PublishConfig {
            topics: topics.inbound(),
            rate: cfg.rate,
            ..PublishConfig::new(cfg.brokers)
        };
        AbortOnDrop(tokio::spawn(async move {
            usage_loadgen::publish(&config, scenario.messages(), None, move |p| {
                sent.store(p.sent, Ordering::Relaxed);
            })
            .await
        }))
    };

    let count_sql = format!("SELECT count() FROM {db}.authorizations");
    let deadline = Instant::now() + Duration::from_secs(60);
    while query_count(server, &count_sql).await == 0 {
        child.check_alive()?;
        if Instant::now() >= deadline {
            anyhow::bail!("usage-ingest stored nothing within 60 s of the background");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(cfg.warmup_secs)).await;
    child.check_alive()?;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", cfg.brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()
        .context("probe producer")?;
    {
        // Connect and learn the partitions before the first probe.
        let p = producer.clone();
        let topic = topics.authorizations.clone();
        tokio::task::spawn_blocking(move || {
            p.client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map(|_| ())
        })
        .await?
        .context("probe producer metadata")?;
    }

    eprintln!(
        "usage-bench: freshness: probing every {} ms for {} s, soak sampling every {} s for {soak_secs} s",
        PROBE_EVERY.as_millis(),
        cfg.freshness_secs,
        SOAK_EVERY.as_secs()
    );
    let t0 = Instant::now();
    let sent0 = sent.load(Ordering::Relaxed);
    let stored0 = query_count(server, &count_sql).await;
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = Sender {
        producer,
        topic: topics.authorizations.clone(),
        tag: cfg.tag.to_owned(),
        product,
    };
    let _sender = AbortOnDrop(tokio::spawn(sender.run(
        t0,
        Duration::from_secs(cfg.freshness_secs),
        sent.clone(),
        tx,
    )));
    let poller = Poller {
        db,
        server,
        count_sql: &count_sql,
    };
    let pid = child.pid();
    let (probed, samples) = tokio::try_join!(
        poller.run(rx),
        soak(pid, t0, Duration::from_secs(soak_secs)),
    )?;
    child.check_alive()?;
    let peak_bytes = memory::peak_bytes(pid).unwrap_or(0);
    let sent_end = sent.load(Ordering::Relaxed);
    let ended_early = if background.0.is_finished() {
        Some(match (&mut background.0).await {
            Ok(Ok(report)) => exhausted(&report),
            Ok(Err(e)) => format!("failed: {e}"),
            Err(e) => format!("task: {e}"),
        })
    } else {
        None
    };
    drop(background);
    drop(child);

    let window_secs = probed.ended.duration_since(t0).as_secs_f64().max(1e-9);
    Ok(Report {
        freshness_secs: cfg.freshness_secs,
        warmup_secs: cfg.warmup_secs,
        background: Background {
            target_rate: cfg.rate,
            achieved_rate: probed.sent.saturating_sub(sent0) as f64 / window_secs,
            messages: sent_end,
            scenario_users: users,
            scenario_days: days,
            ended_early,
        },
        ingest_rows_per_second: probed.stored.saturating_sub(stored0) as f64 / window_secs,
        probes: probed.probes,
        soak: soak_summary(samples, peak_bytes),
    })
}

fn exhausted(report: &PublishReport) -> String {
    format!(
        "the scenario ran out after {} messages ({:.0} s)",
        report.messages,
        report.elapsed.as_secs_f64()
    )
}

/// Publishes the probes, on a fixed 100 ms grid, in a task of its own (so
/// slow visibility queries never delay a probe).
struct Sender {
    producer: FutureProducer,
    topic: String,
    tag: String,
    product: String,
}

/// What the sender tells the poller.
enum Sent {
    Probe(Probe),
    Ack {
        n: usize,
        ok: bool,
        at: Instant,
    },
    /// Probing stopped: when, and the background's messages then.
    Done {
        at: Instant,
        background: u64,
    },
}

impl Sender {
    async fn run(
        self,
        t0: Instant,
        length: Duration,
        background: Arc<AtomicU64>,
        tx: mpsc::UnboundedSender<Sent>,
    ) {
        let mut tick = tokio::time::interval_at(t0.into(), PROBE_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        for n in 0.. {
            tick.tick().await;
            if t0.elapsed() >= length {
                let background = background.load(Ordering::Relaxed);
                let _ = tx.send(Sent::Done {
                    at: Instant::now(),
                    background,
                });
                return;
            }
            let probe = self.send(n, &tx);
            let _ = tx.send(Sent::Probe(probe));
        }
    }

    /// Publishes probe `n`: a valid authorization (schemas/events), seat,
    /// online, `team_id` set, now, a user of its own.
    fn send(&self, n: usize, tx: &mpsc::UnboundedSender<Sent>) -> Probe {
        let user = format!("probe-{}-{n}", self.tag);
        let event_id = format!("probe-{}-{n}-event", self.tag);
        let payload = serde_json::json!({
            "event_id": event_id,
            "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "user_id": user,
            "product": self.product,
            "product_version": "bench",
            "access": "seat",
            "team_id": PROBE_TEAM,
            "machine_id": "bench-probe",
            "online": true,
        })
        .to_string();
        let published = Instant::now();
        let record = FutureRecord::to(&self.topic).key(&user).payload(&payload);
        let failed = match self.producer.send_result(record) {
            Ok(delivery) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let ok = matches!(delivery.await, Ok(Ok(_)));
                    let _ = tx.send(Sent::Ack {
                        n,
                        ok,
                        at: Instant::now(),
                    });
                });
                false
            }
            Err(_) => true,
        };
        Probe {
            user,
            event_id,
            published,
            acked: None,
            visible: None,
            failed,
        }
    }
}

struct Probe {
    user: String,
    event_id: String,
    published: Instant,
    acked: Option<Instant>,
    visible: Option<Instant>,
    failed: bool,
}

struct Probed {
    probes: Probes,
    /// When probing stopped, and the background's messages and the stored
    /// rows then.
    ended: Instant,
    sent: u64,
    stored: u64,
}

/// Polls ClickHouse every 20 ms for the probes not seen yet, until every
/// probe is seen or [`PROBE_DRAIN`] after probing stopped.
struct Poller<'a> {
    db: &'a str,
    server: &'a clickhouse::Client,
    count_sql: &'a str,
}

impl Poller<'_> {
    async fn run(&self, mut rx: mpsc::UnboundedReceiver<Sent>) -> anyhow::Result<Probed> {
        let mut probes: Vec<Probe> = Vec::new();
        let mut tick = tokio::time::interval(POLL_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut query_ms: Vec<f64> = Vec::new();
        let mut poll_errors = 0usize;
        let mut ended: Option<(Instant, u64, u64)> = None;
        loop {
            tick.tick().await;
            loop {
                let event = match rx.try_recv() {
                    Ok(event) => event,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        if ended.is_none() {
                            anyhow::bail!("the probe sender stopped before probing ended");
                        }
                        break;
                    }
                };
                match event {
                    Sent::Probe(p) => probes.push(p),
                    Sent::Ack { n, ok, at } => {
                        if let Some(p) = probes.get_mut(n) {
                            if ok {
                                p.acked = Some(at);
                            } else {
                                p.failed = true;
                            }
                        }
                    }
                    Sent::Done { at, background } => {
                        let stored = query_count(self.server, self.count_sql).await;
                        ended = Some((at, background, stored));
                    }
                }
            }
            let pending: Vec<usize> = (0..probes.len())
                .filter(|&i| probes[i].visible.is_none() && !probes[i].failed)
                .collect();
            if let Some((at, _, _)) = ended {
                if pending.is_empty() || at.elapsed() >= PROBE_DRAIN {
                    break;
                }
            }
            if pending.is_empty() {
                continue;
            }
            let started = Instant::now();
            match self.visible(pending.iter().map(|&i| &probes[i])).await {
                Ok(seen) => {
                    let now = Instant::now();
                    query_ms.push(ms(now.duration_since(started)));
                    for &i in &pending {
                        if seen.contains(&probes[i].user) {
                            probes[i].visible = Some(now);
                        }
                    }
                }
                Err(_) => poll_errors += 1,
            }
        }
        let Some((ended, sent_then, stored_then)) = ended else {
            anyhow::bail!("the probe poller ended before probing did");
        };
        let latencies_ms: Vec<f64> = probes
            .iter()
            .filter_map(|p| p.visible.map(|v| ms(v.duration_since(p.published))))
            .collect();
        let mut sorted = latencies_ms.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let mut acks: Vec<f64> = probes
            .iter()
            .filter_map(|p| p.acked.map(|a| ms(a.duration_since(p.published))))
            .collect();
        acks.sort_by(|a, b| a.total_cmp(b));
        let send_errors = probes.iter().filter(|p| p.failed).count();
        Ok(Probed {
            probes: Probes {
                published: probes.len(),
                visible: sorted.len(),
                missing: probes
                    .iter()
                    .filter(|p| p.visible.is_none() && !p.failed)
                    .count(),
                send_errors,
                p50_ms: percentile(&sorted, 50.0),
                p99_ms: percentile(&sorted, 99.0),
                max_ms: sorted.last().copied().unwrap_or(0.0),
                mean_ms: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
                ack_p50_ms: percentile(&acks, 50.0),
                poll_query_p50_ms: median(query_ms.clone()),
                poll_query_max_ms: query_ms.iter().copied().fold(0.0, f64::max),
                poll_errors,
                latencies_ms,
            },
            ended,
            sent: sent_then,
            stored: stored_then,
        })
    }

    /// The users of the `pending` probes whose row is in `authorizations` and
    /// whose day is in `daily_usage`. Identifiers are generated here
    /// (`probe-<tag>-<n>`), so they are safe to inline.
    async fn visible<'p>(
        &self,
        pending: impl Iterator<Item = &'p Probe>,
    ) -> anyhow::Result<Vec<String>> {
        let (mut users, mut events) = (Vec::new(), Vec::new());
        for p in pending {
            users.push(format!("'{}'", p.user));
            events.push(format!("'{}'", p.event_id));
        }
        let (users, events) = (users.join(","), events.join(","));
        let db = self.db;
        let sql = format!(
            "SELECT DISTINCT user_id FROM {db}.daily_usage \
             WHERE team_id = '{PROBE_TEAM}' AND user_id IN ({users}) AND user_id IN \
             (SELECT user_id FROM {db}.authorizations \
              WHERE team_id = '{PROBE_TEAM}' AND user_id IN ({users}) AND event_id IN ({events}))"
        );
        let rows = tokio::time::timeout(
            Duration::from_secs(5),
            self.server.query(&sql).fetch_all::<String>(),
        )
        .await
        .context("visibility poll timed out")??;
        Ok(rows)
    }
}

/// VmRSS of `pid` every 2 s from `t0` for `length`.
async fn soak(pid: u32, t0: Instant, length: Duration) -> anyhow::Result<Vec<(f64, u64)>> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval_at(t0.into(), SOAK_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let at = t0.elapsed();
        if at > length + Duration::from_millis(500) {
            return Ok(samples);
        }
        let rss = memory::rss_bytes(pid)
            .context("usage-ingest exited during the freshness/soak phase")?;
        samples.push((at.as_secs_f64(), rss));
    }
}

fn soak_summary(samples: Vec<(f64, u64)>, peak_bytes: u64) -> Soak {
    let values: Vec<u64> = samples.iter().map(|s| s.1).collect();
    let half: Vec<f64> = values[values.len() / 2..]
        .iter()
        .map(|&v| v as f64)
        .collect();
    let second_half = median(half);
    let last = values.last().copied().unwrap_or(0);
    let pct = if second_half > 0.0 {
        (last as f64 - second_half) / second_half * 100.0
    } else {
        0.0
    };
    Soak {
        interval_secs: SOAK_EVERY.as_secs(),
        duration_secs: samples.last().map_or(0.0, |s| s.0),
        first_bytes: values.first().copied().unwrap_or(0),
        min_bytes: values.iter().copied().min().unwrap_or(0),
        max_bytes: values.iter().copied().max().unwrap_or(0),
        last_bytes: last,
        second_half_median_bytes: second_half as u64,
        last_vs_second_half_pct: pct,
        flat: !values.is_empty() && pct < 10.0,
        peak_bytes,
        samples,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
