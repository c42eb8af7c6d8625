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
