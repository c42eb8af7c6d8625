//! Child processes of a harness: killed and reaped when dropped (an error or
//! an early return never leaves one behind), signalled, waited for, and
//! their logs read.

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A running child process, SIGKILLed and reaped when dropped unless it has
/// exited already.
#[derive(Debug)]
pub struct Process {
    child: Child,
    name: String,
    log: Option<PathBuf>,
    exit: Option<ExitStatus>,
}

impl Process {
    /// Spawns `command`; `name` is for messages, `log` is where its output
    /// goes (if the caller directed it to a file).
    pub fn spawn(
        name: impl Into<String>,
        command: &mut Command,
        log: Option<PathBuf>,
    ) -> Result<Process> {
        let name = name.into();
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Process {
            child,
            name,
            log,
            exit: None,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its name (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file, if it has one.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// The exit status, once it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
            }
        }
        self.exit
    }

    /// An error if it has exited (naming its log).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.exited() {
            match &self.log {
                Some(log) => bail!("{} exited ({status}); log: {}", self.name, log.display()),
                None => bail!("{} exited ({status})", self.name),
            }
        }
        Ok(())
    }

    /// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`, ...) with `kill`.
    pub fn signal(&self, signal: &str) -> Result<()> {
        self::signal(self.pid(), signal)
    }

    /// SIGKILL, then reaps it (nothing if it has exited already).
    pub fn kill(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
    }

    /// Waits (blocking, polling every 50 ms) up to `timeout` for it to
    /// exit: its exit status, or None if it still runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits up to `grace` for it to exit: how long it took.
    /// An error if it still runs then (it is SIGKILLed when dropped).
    pub async fn terminate(&mut self, grace: Duration) -> Result<Duration> {
        let started = Instant::now();
        if self.exited().is_some() {
            return Ok(Duration::ZERO);
        }
        self.signal("TERM")?;
        while started.elapsed() < grace {
            if self.exited().is_some() {
                return Ok(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "{} did not stop within {} s of SIGTERM",
            self.name,
            grace.as_secs()
        )
    }

    /// Its whole log (empty without one).
    pub fn log_text(&self) -> String {
        self.log
            .as_deref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.log
            .as_deref()
            .map(|log| tail(log, lines))
            .unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `signal` (`TERM`, `KILL`, `STOP`, `CONT`, ...) to `pid` with `kill`.
pub fn signal(pid: u32, signal: &str) -> Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("Z (zombie)")),
        Err(_) => false,
    }
}

/// The last `lines` lines of a text file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
