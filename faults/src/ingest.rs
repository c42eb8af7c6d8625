//! `usage-ingest run` as a child process of a fault: started on the fault's
//! topics and database (with `usage-testkit`'s launcher), its metrics and
//! readiness read over HTTP, killed or stopped on demand, and its memory
//! sampled while it runs.

use crate::memory::Memory;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;
use usage_testkit::ingest::IngestRun;
use usage_testkit::metrics::Metrics;
use usage_testkit::services::Services;
use usage_testkit::topics::Topics;

/// Where one fault's pipeline reads and writes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) services: Services,
    pub(crate) database: String,
    pub(crate) topics: Topics,
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
    ingest: usage_testkit::ingest::Ingest,
    pub(crate) name: String,
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
        let log = self.log_dir.join(format!("{name}.log"));
        let ingest = IngestRun::new(
            &self.binary,
            &target.services,
            &target.database,
            &target.topics,
            group,
        )
        .args(&self.options)
        .env("RUST_LOG", "info")
        .env_remove("USAGE_CONFIG")
        .stdout_to_log()
        .spawn(&log)?;
        monitor.watch(ingest.pid());
        Ok(Ingest {
            ingest,
            name: name.to_owned(),
            monitor: monitor.clone(),
        })
    }
}

impl Ingest {
    pub(crate) fn pid(&self) -> u32 {
        self.ingest.pid()
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill(&mut self) {
        self.monitor.sample(self.pid());
        self.ingest.process.kill();
        self.monitor.unwatch(self.pid());
    }

    /// SIGTERM (drain, commit, leave the group), then waits up to `timeout`
    /// for the exit, sampling its memory; SIGKILL after that. Whether it
    /// exited by itself.
    pub(crate) async fn terminate(&mut self, timeout: Duration) -> bool {
        if self.exited().is_some() {
            return true;
        }
        self.monitor.sample(self.pid());
        let _ = self.ingest.process.signal("TERM");
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
        self.ingest.process.exited()
    }

    /// Its metrics (None when it does not answer).
    pub(crate) async fn metrics(&self) -> Option<Metrics> {
        self.ingest.metrics().await
    }

    /// Whether `/readyz` answers 200 (None when it does not answer at all).
    pub(crate) async fn ready(&self) -> Option<bool> {
        self.ingest.ready().await
    }

    /// Its log file.
    pub(crate) fn log(&self) -> &Path {
        self.ingest.process.log().unwrap_or(Path::new(""))
    }

    /// The last `lines` lines of its log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        self.ingest.process.log_tail(lines)
    }

    /// Its whole log.
    pub(crate) fn log_text(&self) -> String {
        self.ingest.process.log_text()
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}
