//! `usage-report` as a child process: its admins file and HMAC key written
//! into a directory of its own, started with the flags every harness gives
//! it, on a free port, and waited for until it is ready.

use crate::metrics::http_client;
use crate::ports::free_port;
use crate::process::Process;
use crate::services::Services;
use anyhow::{bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An admin of the admins file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Its id (its email is `<id>@example.com`).
    pub id: String,
    /// `primary`, `team`, ...
    pub role: String,
    /// The teams it may see; `["*"]` for every team.
    pub teams: Vec<String>,
    /// Its bearer token.
    pub token: String,
}

/// The admins file (`--admins-file`) of `admins`.
pub fn admins_toml(admins: &[Admin]) -> String {
    let mut text = String::new();
    for a in admins {
        let teams: Vec<String> = a.teams.iter().map(|t| format!("{t:?}")).collect();
        let _ = write!(
            text,
            "[[admin]]\nid = {:?}\nemail = \"{}@example.com\"\nrole = {:?}\nteams = [{}]\ntoken = {:?}\n\n",
            a.id,
            a.id,
            a.role,
            teams.join(", "),
            a.token
        );
    }
    text
}

/// How to start one `usage-report`: the common flags, and what a caller sets.
#[derive(Debug, Clone)]
pub struct ReportRun {
    binary: PathBuf,
    services: Services,
    database: String,
    dir: PathBuf,
    admins: Vec<Admin>,
    hmac_key: String,
    scheduler_interval_secs: u64,
    log: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl ReportRun {
    /// `binary` on `services` and `database`, its files (admins, key,
    /// exports, log) in `dir`. No admin until [`ReportRun::admins`]; the
    /// scheduler off (interval 0) unless set.
    pub fn new(
        binary: impl Into<PathBuf>,
        services: &Services,
        database: &str,
        dir: impl Into<PathBuf>,
    ) -> ReportRun {
        ReportRun {
            binary: binary.into(),
            services: services.clone(),
            database: database.to_owned(),
            dir: dir.into(),
            admins: Vec::new(),
            hmac_key: String::new(),
            scheduler_interval_secs: 0,
            log: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The admins of its admins file.
    pub fn admins(mut self, admins: impl IntoIterator<Item = Admin>) -> ReportRun {
        self.admins.extend(admins);
        self
    }

    /// The HMAC key of the user keys (`--hmac-key-file`).
    pub fn hmac_key(mut self, key: &str) -> ReportRun {
        key.clone_into(&mut self.hmac_key);
        self
    }

    /// `--scheduler-interval-secs` (0: no scheduled exports run).
    pub fn scheduler_interval_secs(mut self, secs: u64) -> ReportRun {
        self.scheduler_interval_secs = secs;
        self
    }

    /// Where its log goes (default: `report.log` in its directory).
    pub fn log(mut self, path: impl Into<PathBuf>) -> ReportRun {
        self.log = Some(path.into());
        self
    }

    /// Options after the common ones.
    pub fn args<I, S>(mut self, args: I) -> ReportRun
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// An environment variable of the process (`RUST_LOG`, ...).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> ReportRun {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Writes its files, starts it on a free port and waits (30 s at most)
    /// until `/readyz` answers 200.
    pub async fn start(self) -> Result<Report> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        // The service creates it (owner only).
        let exports_dir = self.dir.join("exports");
        let admins_file = self.dir.join("admins.toml");
        write_private(&admins_file, &admins_toml(&self.admins))?;
        let key_file = self.dir.join("hmac.key");
        write_private(&key_file, &self.hmac_key)?;
        let log = self.log.unwrap_or_else(|| self.dir.join("report.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let port = free_port()?;
        let mut command = Command::new(&self.binary);
        command
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--clickhouse-url", &self.services.clickhouse_url])
            .args(["--clickhouse-database", &self.database])
            .args(["--kafka-brokers", &self.services.brokers])
            .arg("--admins-file")
            .arg(&admins_file)
            .arg("--hmac-key-file")
            .arg(&key_file)
            .arg("--exports-dir")
            .arg(&exports_dir)
            .args([
                "--scheduler-interval-secs",
                &self.scheduler_interval_secs.to_string(),
            ])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let mut process = Process::spawn("usage-report", &mut command, Some(log))?;
        let base = format!("http://127.0.0.1:{port}");
        let http = http_client();
        let started = Instant::now();
        loop {
            process
                .check_alive()
                .context("usage-report did not start")?;
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "usage-report not ready after 30 s; its log:\n{}",
                    process.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Report {
            process,
            port,
            exports_dir,
        })
    }
}

/// A running `usage-report` (killed when dropped, with its process).
#[derive(Debug)]
pub struct Report {
    /// The child process.
    pub process: Process,
    /// The port it listens on (loopback).
    pub port: u16,
    /// Its `--exports-dir`.
    pub exports_dir: PathBuf,
}

impl Report {
    /// The URL of `path` (`/v1/teams`) on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Writes a file readable by its owner only (tokens, keys).
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
