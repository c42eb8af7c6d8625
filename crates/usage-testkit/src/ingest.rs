//! `usage-ingest` as a child process: `run` with the flags every harness
//! gives it (services, database, topics, group, the short group timeouts
//! the local broker needs, a metrics port), plus what a caller adds; and
//! `migrate`.

use crate::metrics::{http_client, Metrics};
use crate::ports::free_port;
use crate::process::Process;
use crate::services::Services;
use crate::topics::Topics;
use anyhow::{ensure, Context, Result};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How to start one `usage-ingest run`: the common flags, and the options,
/// environment and output a caller sets.
#[derive(Debug, Clone)]
pub struct IngestRun {
    binary: PathBuf,
    services: Services,
    database: String,
    topics: Topics,
    group: String,
    metrics_port: Option<u16>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    stdout_to_log: bool,
}

impl IngestRun {
    /// `binary run` on `services`, into `database`, reading `topics` in
    /// consumer group `group`.
    pub fn new(
        binary: impl Into<PathBuf>,
        services: &Services,
        database: &str,
        topics: &Topics,
        group: &str,
    ) -> IngestRun {
        IngestRun {
            binary: binary.into(),
            services: services.clone(),
            database: database.to_owned(),
            topics: topics.clone(),
            group: group.to_owned(),
            metrics_port: None,
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdout_to_log: false,
        }
    }

    /// The port of `--metrics-addr` (default: a [`free_port`]).
    pub fn metrics_port(mut self, port: u16) -> IngestRun {
        self.metrics_port = Some(port);
        self
    }

    /// An option after the common ones (`--migrate`, batching, hold, ...).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> IngestRun {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Options after the common ones.
    pub fn args<I, S>(mut self, args: I) -> IngestRun
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable of the process (`RUST_LOG`, ...).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> IngestRun {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// An environment variable the process must not inherit (`USAGE_CONFIG`).
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> IngestRun {
        self.env_remove.push(key.as_ref().to_owned());
        self
    }

    /// Standard output to the log file too (by default only standard error,
    /// where it logs, goes there).
    pub fn stdout_to_log(mut self) -> IngestRun {
        self.stdout_to_log = true;
        self
    }

    /// Starts it, its log (standard error) in `log`.
    pub fn spawn(self, log: &Path) -> Result<Ingest> {
        let metrics_port = match self.metrics_port {
            Some(port) => port,
            None => free_port()?,
        };
        let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let stdout = if self.stdout_to_log {
            Stdio::from(log_file.try_clone().context("the log file")?)
        } else {
            Stdio::null()
        };
        let topics = &self.topics;
        let mut command = Command::new(&self.binary);
        command
            .arg("run")
            .args(["--kafka-brokers", &self.services.brokers])
            .args(["--clickhouse-url", &self.services.clickhouse_url])
            .args(["--clickhouse-database", &self.database])
            .args(["--group-id", &self.group])
            .args(["--authorizations-topic", &topics.authorizations])
            .args(["--assignments-topic", &topics.assignments])
            .args(["--directory-topic", &topics.directory])
            .args(["--dlq-topic", &topics.dlq])
            .args(["--session-timeout-ms", "6000"])
            .args(["--heartbeat-interval-ms", "500"])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log_file);
        for key in &self.env_remove {
            command.env_remove(key);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let process = Process::spawn("usage-ingest", &mut command, Some(log.to_path_buf()))?;
        Ok(Ingest {
            process,
            metrics_port,
        })
    }
}

/// A running `usage-ingest run` (killed when dropped, with its process).
#[derive(Debug)]
pub struct Ingest {
    /// The child process.
    pub process: Process,
    /// The port of its `/metrics` and `/readyz`.
    pub metrics_port: u16,
}

impl Ingest {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its metrics now; None when it does not answer.
    pub async fn metrics(&self) -> Option<Metrics> {
        Metrics::scrape(self.metrics_port).await
    }

    /// Whether `/readyz` answers 200 (None when it does not answer at all).
    pub async fn ready(&self) -> Option<bool> {
        let response = http_client()
            .get(format!("http://127.0.0.1:{}/readyz", self.metrics_port))
            .send()
            .await
            .ok()?;
        Some(response.status().is_success())
    }
}

/// `usage-ingest migrate` of `database` on `clickhouse_url` (created if
/// needed), its log in `log`.
pub fn migrate(binary: &Path, clickhouse_url: &str, database: &str, log: &Path) -> Result<()> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let status = Command::new(binary)
        .args(["migrate", "--clickhouse-url", clickhouse_url])
        .args(["--clickhouse-database", database])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .context("running usage-ingest migrate")?;
    ensure!(
        status.success(),
        "usage-ingest migrate into {database} failed ({status}); log: {}",
        log.display()
    );
    Ok(())
}
