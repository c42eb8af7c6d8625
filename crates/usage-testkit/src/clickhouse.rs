//! ClickHouse for a harness: databases of its own with the schema applied,
//! dropped at the end, and the one-number queries that check them.

use anyhow::{Context, Result};
use usage_store::{migrate, Warehouse, WarehouseSettings};

/// Creates `database` on `clickhouse_url` with every migration of
/// `schemas/clickhouse` applied.
pub async fn create_database(clickhouse_url: &str, database: &str) -> Result<Warehouse> {
    create_database_on(clickhouse_url, None, database).await
}

/// Creates `database` with every migration applied: on `clickhouse_url`
/// alone, or on every node of `cluster` (which that server knows) in the
/// cluster form of the schema.
pub async fn create_database_on(
    clickhouse_url: &str,
    cluster: Option<&str>,
    database: &str,
) -> Result<Warehouse> {
    let warehouse = Warehouse::new(WarehouseSettings {
        url: clickhouse_url.to_owned(),
        database: database.to_owned(),
        cluster: cluster.map(str::to_owned),
        ..WarehouseSettings::default()
    })
    .with_context(|| format!("the warehouse settings of {database}"))?;
    let migrations = migrate::load_dir(&crate::repo_root().join("schemas/clickhouse"))
        .context("loading the migrations")?;
    migrate::apply(&warehouse, &migrations)
        .await
        .with_context(|| format!("applying the migrations to {database} on {clickhouse_url}"))?;
    Ok(warehouse)
}

/// `DROP DATABASE IF EXISTS` the warehouse's database (`ON CLUSTER` in
/// cluster mode: every node's tables and their ZooKeeper state go).
pub async fn drop_database(warehouse: &Warehouse) -> Result<()> {
    let on_cluster = warehouse
        .cluster()
        .map(|name| format!(" ON CLUSTER {name}"))
        .unwrap_or_default();
    execute(
        &warehouse.server_client(),
        &format!(
            "DROP DATABASE IF EXISTS {}{on_cluster}",
            warehouse.database()
        ),
    )
    .await
}

/// Runs a statement.
pub async fn execute(client: &clickhouse::Client, sql: &str) -> Result<()> {
    client
        .query(sql)
        .execute()
        .await
        .with_context(|| sql.to_owned())
}

/// The one number a query returns (`SELECT count() ...`).
pub async fn number(client: &clickhouse::Client, sql: &str) -> Result<u64> {
    client
        .query(sql)
        .fetch_one::<u64>()
        .await
        .with_context(|| sql.to_owned())
}

/// The process a scratch database was made by: its name is
/// `<tag>_<pid>_<counter>_<nanos>` (what the tests' `unique` makes), with
/// `prefix` at the start of the tag.
fn maker_pid(database: &str, prefix: &str) -> Option<u32> {
    if !database.starts_with(prefix) {
        return None;
    }
    let mut parts = database.rsplitn(4, '_');
    let (nanos, counter, pid, tag) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(nanos) && numeric(counter) && tag.len() >= prefix.len())
        .then(|| pid.parse().ok())
        .flatten()
}

/// Drops the scratch databases (named as [`maker_pid`] reads, starting
/// with `prefix`) whose process is gone: a test's database outlives it when
/// the test fails, is killed, or belongs to a fixture shared by a test
/// binary's tests (statics are never dropped), and the server would gather
/// them run after run. Databases of running processes stay. Only on a
/// server on loopback, whose clients' processes are this machine's (a
/// process id means nothing across machines). The names of the databases
/// dropped.
pub async fn sweep_databases(clickhouse_url: &str, prefix: &str) -> Result<Vec<String>> {
    if !on_loopback(clickhouse_url) {
        return Ok(Vec::new());
    }
    let client = &clickhouse::Client::default()
        .with_url(clickhouse_url)
        .with_validation(false);
    let names = client
        .query("SELECT name FROM system.databases")
        .fetch_all::<String>()
        .await
        .context("listing the databases")?;
    let own = std::process::id();
    let mut dropped = Vec::new();
    for name in names {
        let Some(pid) = maker_pid(&name, prefix) else {
            continue;
        };
        if pid == own || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        execute(client, &format!("DROP DATABASE IF EXISTS {name}")).await?;
        dropped.push(name);
    }
    Ok(dropped)
}

/// Whether `url`'s host is this machine's loopback (`localhost`,
/// `127.0.0.0/8`, `::1`).
fn on_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
    else {
        return false;
    };
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::{maker_pid, on_loopback};

    #[test]
    fn only_loopback_servers_are_swept() {
        assert!(on_loopback("http://127.0.0.1:8123"));
        assert!(on_loopback("http://localhost:8123/"));
        assert!(on_loopback("http://[::1]:8123"));
        assert!(on_loopback("http://127.0.0.2"));
        assert!(!on_loopback("http://10.0.0.5:8123"));
        assert!(!on_loopback("http://clickhouse.example:8123"));
        assert!(!on_loopback("not a url"));
    }

    #[test]
    fn only_scratch_names_with_the_prefix_name_a_process() {
        assert_eq!(
            maker_pid("test_report_cache_4021_3_88123", "test_"),
            Some(4021)
        );
        assert_eq!(maker_pid("test_x_7_0_1", "test_"), Some(7));
        assert_eq!(maker_pid("report_cache_4021_3_88123", "test_"), None);
        assert_eq!(maker_pid("test_usage_2024_01", "test_"), None);
        assert_eq!(maker_pid("test_a_b_c_d", "test_"), None);
        assert_eq!(maker_pid("test_", "test_"), None);
        assert_eq!(maker_pid("default", "test_"), None);
    }
}
