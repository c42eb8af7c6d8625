//! What each table's inserts cost ClickHouse, from `system.query_log`
//! (`--query-log`): the consumers send `log_queries=1` with their inserts,
//! and after a measurement the finished inserts since its start that carry
//! that setting are summed per table — count, rows written, and CPU
//! (`UserTimeMicroseconds` + `SystemTimeMicroseconds` of `ProfileEvents`,
//! which ClickHouse 18.16 logs; the materialized views an insert fires run
//! in it and are counted with it; background merges are not).
//!
//! Other queries sent with `log_queries=1` in the same window would be
//! counted too.

use anyhow::{bail, Context};
use serde::Serialize;

/// The inserts into one table during a measurement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TableCost {
    pub(crate) table: String,
    pub(crate) inserts: u64,
    pub(crate) rows: u64,
    /// CPU-seconds ClickHouse spent in these inserts.
    pub(crate) cpu_seconds: f64,
}

async fn query(url: &str, sql: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(url)
        .body(sql.to_owned())
        .send()
        .await
        .context("querying ClickHouse")?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("ClickHouse answered {status}: {text}");
    }
    Ok(text)
}

/// ClickHouse's clock now, in seconds since the epoch.
pub(crate) async fn server_now(url: &str) -> anyhow::Result<u64> {
    let text = query(url, "SELECT toUInt32(now())").await?;
    text.trim().parse().context("now() from ClickHouse")
}

/// What ClickHouse's data is stored on ([`usage_testkit::host::filesystem_of`]
/// of a table's directory), when the server runs on this machine: a probe
/// table is made in `database` (created and dropped here) and asked where
/// it is (`data_path` on 18.16, `data_paths` later).
pub(crate) async fn data_filesystem(url: &str, database: &str) -> Option<String> {
    query(url, &format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .await
        .ok()?;
    let mut path = None;
    if query(
        url,
        &format!("CREATE TABLE {database}.probe (x UInt8) ENGINE = MergeTree ORDER BY x"),
    )
    .await
    .is_ok()
    {
        for column in ["data_path", "arrayElement(data_paths, 1)"] {
            let sql = format!(
                "SELECT {column} FROM system.tables WHERE database = '{database}' AND name = 'probe'"
            );
            if let Ok(text) = query(url, &sql).await {
                path = Some(text.trim().to_owned()).filter(|p| !p.is_empty());
                break;
            }
        }
    }
    // Asked while the table's directory exists.
    let filesystem = path
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .and_then(|p| usage_testkit::host::filesystem_of(&p));
    let _ = query(url, &format!("DROP DATABASE IF EXISTS {database}")).await;
    filesystem
}

/// The inserts sent with `log_queries=1` that finished since `since` (server clock), per table.
pub(crate) async fn insert_costs(url: &str, since: u64) -> anyhow::Result<Vec<TableCost>> {
    query(url, "SYSTEM FLUSH LOGS").await?;
    let sql = format!(
        "SELECT extract(query, '^INSERT INTO ([A-Za-z_0-9.]+)') AS t, count(), sum(written_rows), \
         sum(arraySum(arrayMap((n, v) -> if(n = 'UserTimeMicroseconds' OR n = 'SystemTimeMicroseconds', v, 0), \
         ProfileEvents.Names, ProfileEvents.Values))) / 1e6 \
         FROM system.query_log \
         WHERE type = 2 AND event_time >= toDateTime({since}) AND query LIKE 'INSERT INTO%' \
         AND has(Settings.Names, 'log_queries') \
         GROUP BY t ORDER BY t FORMAT TSV"
    );
    let text = query(url, &sql).await?;
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [table, inserts, rows, cpu] = fields[..] else {
            bail!("unexpected query_log line {line:?}");
        };
        out.push(TableCost {
            table: table.to_owned(),
            inserts: inserts.parse()?,
            rows: rows.parse()?,
            cpu_seconds: cpu.parse()?,
        });
    }
    Ok(out)
}
