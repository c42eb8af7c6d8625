//! The local ClickHouse cluster (`scripts/services up --cluster`: ZooKeeper
//! and four ClickHouse 18.16 servers, 2 shards x 2 replicas, named `local`)
//! for the cluster tests: where its nodes listen, databases on it, the
//! binaries pointed at it, and the faults (a node SIGKILLed, ZooKeeper
//! stopped) with `scripts/services` bringing them back.
//!
//! Environment: `USAGE_CLUSTER_PORT_BASE` (as `scripts/services`, default
//! 19100), `USAGE_LOCAL_DIR` (its state directory, default `<repo>/.local`).
//! The tests of one binary that use it hold [`exclusive`] so that one
//! test's fault never meets another's ingest.

use crate::services::{self, ScratchDatabase};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use usage_testkit::services::Services;

/// The cluster's name in the nodes' `<remote_servers>`.
pub const NAME: &str = "local";

/// Node `n` (1-4) is shard `(n + 1) / 2`, replica `2 - n % 2`.
pub const NODES: [u32; 4] = [1, 2, 3, 4];

fn port_base() -> u32 {
    std::env::var("USAGE_CLUSTER_PORT_BASE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19100)
}

/// The HTTP URL of node `n`.
pub fn node_url(n: u32) -> String {
    format!("http://127.0.0.1:{}", port_base() + 10 * n + 3)
}

/// The native address (`host:port`, as `system.clusters` and `remote()` say) of node `n`.
pub fn node_address(n: u32) -> String {
    format!("127.0.0.1:{}", port_base() + 10 * n)
}

/// The broker, and node 1 as the binaries' ClickHouse.
pub fn services() -> Services {
    Services {
        clickhouse_url: node_url(1),
        ..services::local()
    }
}

/// The options that put a binary in cluster mode.
pub fn cluster_args() -> [&'static str; 2] {
    ["--clickhouse-cluster", NAME]
}

/// Serialises the tests that use the cluster (faults stop its nodes).
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

fn state_dir() -> PathBuf {
    std::env::var_os("USAGE_LOCAL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join(".local"))
        .join("services/cluster")
}

fn services_script(args: &[&str]) {
    let output = Command::new(crate::repo_root().join("scripts/services"))
        .args(args)
        .output()
        .expect("scripts/services runs");
    assert!(
        output.status.success(),
        "scripts/services {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts whatever of the cluster does not answer (all of it the first
/// time; a killed node or a stopped ZooKeeper later) and waits for it.
pub fn up() {
    services_script(&["up", "--cluster"]);
}

/// SIGKILLs node `n` (no shutdown: what a crash or a lost machine does).
pub fn kill_node(n: u32) {
    let pid_file = state_dir().join(format!("ch{n}/pid"));
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
    let status = Command::new("kill")
        .args(["-KILL", pid.trim()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -KILL {pid}");
    let _ = std::fs::remove_file(&pid_file);
}

/// Stops ZooKeeper (SIGTERM, through `scripts/services`).
pub fn stop_zookeeper() {
    services_script(&["stop-node", "zookeeper"]);
}

/// A database of its own on every node, with the cluster form of the schema.
pub async fn scratch_database(tag: &str) -> ScratchDatabase {
    up();
    let warehouse = usage_testkit::clickhouse::create_database_on(
        &node_url(1),
        Some(NAME),
        &services::unique(tag),
    )
    .await
    .unwrap_or_else(|e| panic!("the cluster answers and the schema applies: {e:#}"));
    ScratchDatabase { warehouse }
}

/// One number from a query run on node `n` itself.
pub async fn number_on(n: u32, sql: &str) -> Option<u64> {
    clickhouse::Client::default()
        .with_url(node_url(n))
        .with_validation(false)
        .query(sql)
        .fetch_one::<u64>()
        .await
        .ok()
}

/// Waits until both replicas of every shard hold the same distinct keys
/// (their number) in each of `tables` (the `_local` tables of `database`,
/// each with its key columns); the per-node counts otherwise.
pub async fn replicas_agree(
    database: &str,
    tables: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let mut counts = Vec::new();
        for (table, key) in tables {
            for n in NODES {
                let sql = format!("SELECT uniqExact({key}) FROM {database}.{table}_local");
                counts.push((table.to_string(), n, number_on(n, &sql).await));
            }
        }
        let agree = counts
            .chunks(4)
            .all(|c| c[0].2.is_some() && c[0].2 == c[1].2 && c[2].2.is_some() && c[2].2 == c[3].2);
        if agree {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!("rows per (table, node): {counts:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
