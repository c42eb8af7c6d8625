//! What the measurements of `usage-bench` share: child processes that are
//! killed when dropped, `usage-ingest` started the same way everywhere, memory
//! figures from `/proc`, the ingest's metrics, topics and ClickHouse helpers.

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use usage_loadgen::{Scenario, ScenarioConfig, Topics};

/// A child process, killed (SIGKILL) and reaped when dropped: an error or an
/// early return never leaves one behind.
pub(crate) struct Killed {
    child: Child,
    name: String,
    log: Option<PathBuf>,
}

impl Killed {
    pub(crate) fn new(child: Child, name: impl Into<String>, log: Option<PathBuf>) -> Killed {
        Killed {
            child,
            name: name.into(),
            log,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has exited (with where its log is).
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            match &self.log {
                Some(log) => bail!("{} exited ({status}); log: {}", self.name, log.display()),
                None => bail!("{} exited ({status})", self.name),
            }
        }
        Ok(())
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` given in kB (`VmRSS`, `VmHWM`), in bytes.
/// `None` when the process is gone (or a zombie, which has no memory lines).
pub(crate) fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A TCP port free on loopback right now (for `--metrics-addr`).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    free_ports(1)?.into_iter().next().context("no free port")
}

/// `n` distinct TCP ports free on loopback right now.
pub(crate) fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// How every `usage-ingest` of the benchmark is started.
pub(crate) struct Ingest<'a> {
    pub(crate) bin_dir: &'a Path,
    pub(crate) brokers: &'a str,
    pub(crate) clickhouse_url: &'a str,
    pub(crate) topics: &'a Topics,
    pub(crate) dlq: &'a str,
    /// Directory of the processes' logs.
    pub(crate) logs: &'a Path,
}

impl Ingest<'_> {
    /// `usage-ingest migrate` into a new database.
    pub(crate) fn migrate(&self, db: &str) -> anyhow::Result<()> {
        let log = self.logs.join(format!("{db}-migrate.log"));
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let status = Command::new(self.bin_dir.join("usage-ingest"))
            .args(["migrate", "--clickhouse-url", self.clickhouse_url])
            .args(["--clickhouse-database", db])
            .stdout(Stdio::null())
            .stderr(file)
            .status()
            .context("running usage-ingest migrate")?;
        if !status.success() {
            bail!(
                "usage-ingest migrate into {db} failed ({status}); log: {}",
                log.display()
            );
        }
        Ok(())
    }

    /// `usage-ingest run` (default settings but the short group timeouts the
    /// local broker needs), its log in `logs/<name>.log`.
    pub(crate) fn spawn(
        &self,
        name: &str,
        db: &str,
        group: &str,
        metrics_port: u16,
    ) -> anyhow::Result<Killed> {
        let log = self.logs.join(format!("{name}.log"));
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(self.bin_dir.join("usage-ingest"))
            .arg("run")
            .args(["--kafka-brokers", self.brokers, "--group-id", group])
            .args(["--authorizations-topic", &self.topics.authorizations])
            .args(["--assignments-topic", &self.topics.assignments])
            .args(["--directory-topic", &self.topics.directory])
            .args(["--dlq-topic", self.dlq])
            .args(["--clickhouse-url", self.clickhouse_url])
            .args(["--clickhouse-database", db])
            .args(["--session-timeout-ms", "6000"])
            .args(["--heartbeat-interval-ms", "500"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("starting usage-ingest")?;
        Ok(Killed::new(child, name, Some(log)))
    }
}

/// A sample of one `usage-ingest`'s Prometheus metrics.
pub(crate) struct Metrics(String);

impl Metrics {
    /// GET `/metrics` of the instance on `port`; `None` if it does not answer.
    pub(crate) async fn scrape(http: &reqwest::Client, port: u16) -> Option<Metrics> {
        let response = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        Some(Metrics(response.text().await.ok()?))
    }

    /// The value of `name{topic="<topic>"}`.
    pub(crate) fn by_topic(&self, name: &str, topic: &str) -> Option<f64> {
        let label = format!("topic=\"{topic}\"");
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') && rest.contains(&label))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// Creates `<prefix>.authorizations`, `.assignments`, `.directory` and
/// `.dlq`, 4 partitions each: the topics and the dead-letter topic's name.
pub(crate) async fn create_topics(
    admin: &AdminClient<DefaultClientContext>,
    prefix: &str,
) -> anyhow::Result<(Topics, String)> {
    let topics = Topics {
        authorizations: format!("{prefix}.authorizations"),
        assignments: format!("{prefix}.assignments"),
        directory: format!("{prefix}.directory"),
    };
    let dlq = format!("{prefix}.dlq");
    let new: Vec<NewTopic<'_>> = topic_names(&topics, &dlq)
        .iter()
        .map(|t| NewTopic::new(t, 4, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok((topics, dlq))
}

/// A clean scenario (no duplicates, late events or poison) ending an hour ago.
pub(crate) fn clean_scenario(seed: u64, users: usize, days: u32) -> anyhow::Result<Scenario> {
    Ok(Scenario::generate(&ScenarioConfig {
        seed,
        users,
        days,
        end: chrono::Utc::now() - chrono::TimeDelta::hours(1),
        duplicate_share: 0.0,
        late_share: 0.0,
        poison_share: 0.0,
        ..ScenarioConfig::default()
    })?)
}

/// The four topics of [`create_topics`] (to delete them).
pub(crate) fn topic_names<'a>(topics: &'a Topics, dlq: &'a str) -> [&'a str; 4] {
    [
        &topics.authorizations,
        &topics.assignments,
        &topics.directory,
        dlq,
    ]
}

/// A count query; 0 when it fails (polled again).
pub(crate) async fn query_count(client: &clickhouse::Client, sql: &str) -> u64 {
    client.query(sql).fetch_one::<u64>().await.unwrap_or(0)
}

pub(crate) async fn execute(client: &clickhouse::Client, sql: &str) -> anyhow::Result<()> {
    client
        .query(sql)
        .execute()
        .await
        .with_context(|| sql.to_owned())
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Nearest-rank percentile (`p` in 0..=1) of `sorted` (ascending).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
