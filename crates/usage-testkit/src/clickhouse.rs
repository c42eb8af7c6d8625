//! ClickHouse for a harness: databases of its own with the schema applied,
//! dropped at the end, and the one-number queries that check them.

use anyhow::{Context, Result};
use usage_store::{migrate, Warehouse, WarehouseSettings};

/// Creates `database` on `clickhouse_url` with every migration of
/// `schemas/clickhouse` applied.
pub async fn create_database(clickhouse_url: &str, database: &str) -> Result<Warehouse> {
    let warehouse = Warehouse::new(WarehouseSettings {
        url: clickhouse_url.to_owned(),
        database: database.to_owned(),
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

/// `DROP DATABASE IF EXISTS` the warehouse's database.
pub async fn drop_database(warehouse: &Warehouse) -> Result<()> {
    execute(
        &warehouse.server_client(),
        &format!("DROP DATABASE IF EXISTS {}", warehouse.database()),
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
