//! The suite's own ClickHouse and broker: started with `scripts/services up`
//! under a private state directory and free ports (below the kernel's
//! ephemeral range: `usage_testkit::ports`), so that stopping, pausing or
//! reconfiguring them never touches the shared services other tests use.
//! Stopped (`scripts/services down`) when dropped.

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use usage_testkit::ports::{ephemeral_range_start, free_port, port_free, reserve};
use usage_testkit::process::{alive, signal};
use usage_testkit::services::Services;

/// A private ClickHouse and tansu broker.
pub(crate) struct PrivateServices {
    repo: PathBuf,
    /// `USAGE_LOCAL_DIR` of these services.
    pub(crate) dir: PathBuf,
    http_port: u16,
    tcp_port: u16,
    kafka_port: u16,
    stopped: bool,
}

impl PrivateServices {
    /// Starts ClickHouse and the broker under `dir` (reusing the tansu binary
    /// the shared services downloaded, if any).
    pub(crate) fn start(repo: &Path, dir: &Path) -> Result<PrivateServices> {
        std::fs::create_dir_all(dir.join("bin"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let shared_tansu = std::env::var_os("USAGE_LOCAL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join(".local"))
            .join("bin/tansu");
        let tansu = dir.join("bin/tansu");
        if shared_tansu.is_file() && !tansu.exists() {
            std::os::unix::fs::symlink(&shared_tansu, &tansu)
                .with_context(|| format!("linking {}", shared_tansu.display()))?;
        }
        // ClickHouse also listens on tcp + 9 (interserver): all four must be free.
        let ephemeral = ephemeral_range_start();
        let (http_port, tcp_port, kafka_port) = (0..50)
            .find_map(|_| {
                let ports = (free_port().ok()?, free_port().ok()?, free_port().ok()?);
                let distinct = ports.0 != ports.1 && ports.1 != ports.2 && ports.0 != ports.2;
                let interserver = ports.1.checked_add(9)?;
                // Below the ephemeral range too, unless free_port fell back to it.
                (distinct
                    && (interserver < ephemeral || ports.1 >= ephemeral)
                    && port_free(interserver)
                    && ![ports.0, ports.2].contains(&interserver))
                .then_some(ports)
            })
            .context("no free ports for the private services")?;
        // Nothing this process starts later may take it while ClickHouse is down.
        reserve(tcp_port + 9);
        let services = PrivateServices {
            repo: repo.to_path_buf(),
            dir: dir.to_path_buf(),
            http_port,
            tcp_port,
            kafka_port,
            stopped: false,
        };
        services.script("up")?;
        Ok(services)
    }

    fn script(&self, action: &str) -> Result<()> {
        let output = Command::new(self.repo.join("scripts/services"))
            .arg(action)
            .env("USAGE_LOCAL_DIR", &self.dir)
            .env("USAGE_CLICKHOUSE_HTTP_PORT", self.http_port.to_string())
            .env("USAGE_CLICKHOUSE_TCP_PORT", self.tcp_port.to_string())
            .env("USAGE_KAFKA_PORT", self.kafka_port.to_string())
            .output()
            .context("running scripts/services")?;
        ensure!(
            output.status.success(),
            "scripts/services {action} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    /// The broker and ClickHouse, as a pipeline is given them.
    pub(crate) fn services(&self) -> Services {
        Services {
            brokers: self.brokers(),
            clickhouse_url: self.clickhouse_url(),
        }
    }

    pub(crate) fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    pub(crate) fn clickhouse_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn clickhouse_dir(&self) -> PathBuf {
        self.dir.join("services/clickhouse")
    }

    fn pid(&self, file: &Path) -> Result<u32> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the pid file {}", file.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds no pid", file.display()))
    }

    fn broker_pid(&self) -> Result<u32> {
        self.pid(&self.dir.join("services/tansu/pid"))
    }

    /// Whether ClickHouse answers `/ping`.
    pub(crate) async fn clickhouse_answers(&self) -> bool {
        let url = format!("{}/ping", self.clickhouse_url());
        let client = reqwest::Client::new();
        match client.get(url).timeout(Duration::from_secs(2)).send().await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    /// Stops ClickHouse alone, at once: SIGKILL, as in a crash or an OOM
    /// kill. (On SIGTERM it keeps serving open keep-alive connections for
    /// up to 5 s while it shuts down: the outage would start late.) Waits
    /// until the process is gone.
    pub(crate) async fn stop_clickhouse(&self) -> Result<()> {
        let pid = self.pid(&self.clickhouse_dir().join("pid"))?;
        signal(pid, "KILL")?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(pid) {
            if Instant::now() >= deadline {
                bail!("ClickHouse (pid {pid}) still runs 20 s after SIGKILL");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts ClickHouse again (`scripts/services up`: the broker already answers).
    pub(crate) async fn start_clickhouse(&self) -> Result<()> {
        let me = self.script_runner();
        tokio::task::spawn_blocking(move || me.script("up")).await??;
        ensure!(
            self.clickhouse_answers().await,
            "ClickHouse does not answer after a restart"
        );
        Ok(())
    }

    fn script_runner(&self) -> PrivateServices {
        PrivateServices {
            repo: self.repo.clone(),
            dir: self.dir.clone(),
            http_port: self.http_port,
            tcp_port: self.tcp_port,
            kafka_port: self.kafka_port,
            // A copy for one script call: never stops anything when dropped.
            stopped: true,
        }
    }

    /// SIGSTOP (true) or SIGCONT (false) to the broker.
    pub(crate) fn pause_broker(&self, pause: bool) -> Result<()> {
        signal(self.broker_pid()?, if pause { "STOP" } else { "CONT" })
    }

    /// Makes the default profile read-only (`readonly = 2`: reads and
    /// settings only) or writable again, by editing this server's
    /// `users.xml`, which ClickHouse reloads within a few seconds.
    pub(crate) fn set_read_only(&self, read_only: bool) -> Result<()> {
        const MARK: &str = "<readonly>2</readonly><!-- usage-faults -->";
        const ANCHOR: &str = "<max_memory_usage>";
        let path = self.clickhouse_dir().join("users.xml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let without = text.replace(MARK, "");
        let new = if read_only {
            let Some(at) = without.find(ANCHOR) else {
                bail!("{} has no {ANCHOR} to anchor the setting", path.display());
            };
            format!("{}{MARK}{}", &without[..at], &without[at..])
        } else {
            without
        };
        std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))
    }

    /// Stops both (idempotent).
    pub(crate) fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        // A paused broker would not see SIGTERM: `down` sends SIGCONT first.
        self.script("down")
    }
}

impl Drop for PrivateServices {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("usage-faults: stopping the private services: {error:#}");
        }
    }
}
