//! `usage-ingest run` as a child process: started on a fault's topics and
//! database, its metrics and readiness read over HTTP, killed or stopped on
//! demand, and its memory sampled while it runs.

use crate::services::{alive, free_port, memory_kib, signal};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Where one fault's pipeline reads and writes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) brokers: String,
    pub(crate) clickhouse_url: String,
    pub(crate) database: String,
    pub(crate) authorizations: String,
    pub(crate) assignments: String,
    pub(crate) directory: String,
    pub(crate) dlq: String,
}

/// How every instance is started.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    pub(crate) binary: PathBuf,
    pub(crate) log_dir: PathBuf,
    /// Options after the connection ones (batching, hold, ...).
    pub(crate) options: Vec<String>,
}

/// A running `usage-ingest run`, killed when dropped.
pub(crate) struct Ingest {
    child: Child,
    pub(crate) name: String,
    metrics_port: u16,
    pub(crate) log: PathBuf,
    exit: Option<ExitStatus>,
    monitor: Memory,
}

impl Launcher {
    /// Starts an instance named `name` (its log file) in `group`.
    pub(crate) fn start(
        &self,
        target: &Target,
        group: &str,
        name: &str,
        monitor: &Memory,
    ) -> Result<Ingest> {
        let metrics_port = free_port()?;
        let log = self.log_dir.join(format!("{name}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let stdout = log_file.try_clone().context("log file")?;
        let child = Command::new(&self.binary)
            .arg("run")
            .args(["--kafka-brokers", &target.brokers])
            .args(["--clickhouse-url", &target.clickhouse_url])
            .args(["--clickhouse-database", &target.database])
            .args(["--group-id", group])
            .args(["--authorizations-topic", &target.authorizations])
            .args(["--assignments-topic", &target.assignments])
            .args(["--directory-topic", &target.directory])
            .args(["--dlq-topic", &target.dlq])
            .args(["--session-timeout-ms", "6000"])
            .args(["--heartbeat-interval-ms", "500"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(&self.options)
            .env("RUST_LOG", "info")
            .env_remove("USAGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        monitor.watch(child.id());
        Ok(Ingest {
            child,
            name: name.to_owned(),
            metrics_port,
            log,
            exit: None,
            monitor: monitor.clone(),
        })
    }
}

impl Ingest {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) {
        self.monitor.sample(self.pid());
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
        self.monitor.unwatch(self.pid());
    }

    /// SIGTERM (drain, commit, leave the group), then waits up to `timeout`
    /// for the exit; SIGKILL after that. Whether it exited by itself.
    pub(crate) async fn terminate(&mut self, timeout: Duration) -> bool {
        if self.exited().is_some() {
            return true;
        }
        self.monitor.sample(self.pid());
        let _ = signal(self.pid(), "TERM");
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.exited().is_some() {
                self.monitor.unwatch(self.pid());
                return true;
            }
            self.monitor.sample(self.pid());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.kill();
        false
    }

    /// The exit status, once it has exited.
    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
            }
        }
        self.exit
    }

    /// The text of its `/metrics` (None when it does not answer).
    pub(crate) async fn metrics(&self) -> Option<String> {
        let response = http()
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .ok()?;
        response.text().await.ok()
    }

    /// Whether `/readyz` answers 200 (None when it does not answer at all).
    pub(crate) async fn ready(&self) -> Option<bool> {
        let response = http()
            .get(format!("http://127.0.0.1:{}/readyz", self.metrics_port))
            .send()
            .await
            .ok()?;
        Some(response.status().is_success())
    }

    /// The last `lines` lines of its log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Its whole log.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

/// The last `lines` lines of a file.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The sum of the samples of a series in Prometheus text whose name and
/// labels start with `prefix`.
pub(crate) fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Peak memory of every instance of a fault: the largest VmHWM seen, sampled
/// while they run (a background task samples every 200 ms; kills sample
/// just before).
#[derive(Clone, Default)]
pub(crate) struct Memory(Arc<Mutex<MemoryState>>);

#[derive(Default)]
struct MemoryState {
    /// Live pids and their last VmRSS (KiB).
    rss: BTreeMap<u32, u64>,
    peak_hwm_kib: u64,
}

impl Memory {
    fn state(&self) -> MutexGuard<'_, MemoryState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn watch(&self, pid: u32) {
        self.state().rss.insert(pid, 0);
        self.sample(pid);
    }

    fn unwatch(&self, pid: u32) {
        self.state().rss.remove(&pid);
    }

    fn sample(&self, pid: u32) {
        if let Some((rss, hwm)) = memory_kib(pid) {
            let mut state = self.state();
            state.peak_hwm_kib = state.peak_hwm_kib.max(hwm);
            if let Some(r) = state.rss.get_mut(&pid) {
                *r = rss;
            }
        }
    }

    /// Samples every watched process (dead ones are dropped).
    pub(crate) fn sample_all(&self) {
        let pids: Vec<u32> = self.state().rss.keys().copied().collect();
        for pid in pids {
            if alive(pid) {
                self.sample(pid);
            } else {
                self.unwatch(pid);
            }
        }
    }

    /// The largest VmHWM seen, in KiB.
    pub(crate) fn peak_kib(&self) -> u64 {
        self.state().peak_hwm_kib
    }

    /// The current VmRSS of `pid` (KiB), as last sampled.
    pub(crate) fn rss_kib(&self, pid: u32) -> Option<u64> {
        self.sample(pid);
        self.state().rss.get(&pid).copied()
    }

    /// Samples every 200 ms until the returned handle is aborted.
    pub(crate) fn spawn_sampler(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.sample_all();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}
