//! Versioned schema migrations: `schemas/clickhouse/NNNN_name.sql`.
//!
//! Each file is a list of `;`-separated statements, applied in version order
//! and recorded in the `schema_migrations` table with the file's checksum.
//! Every statement must be idempotent (`CREATE ... IF NOT EXISTS`, ...): that is
//! what makes a second run, or two instances starting together, harmless —
//! both may run a pending migration, and the record table collapses the two
//! records of one version (ReplacingMergeTree keyed by version). An applied
//! migration whose file has changed is refused: add a new one instead.
//!
//! The SQL must run on ClickHouse 18.16 and on a current ClickHouse; the
//! compatibility test (`tests/compat/`) loads every file into both.

use crate::{StoreError, Warehouse};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The table that records applied migrations.
pub const MIGRATIONS_TABLE: &str = "schema_migrations";

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: String,
    /// sha256 of the file (line endings normalised), hex.
    pub checksum: String,
    pub statements: Vec<String>,
}

impl Migration {
    /// Parses a migration from its file name (`0001_authorizations.sql`) and text.
    pub fn parse(file_name: &str, sql: &str) -> Result<Migration, StoreError> {
        let bad = |reason: &str| StoreError::BadMigrationFile {
            file: file_name.to_owned(),
            reason: reason.to_owned(),
        };
        let stem = file_name
            .strip_suffix(".sql")
            .ok_or_else(|| bad("the name must end in .sql"))?;
        let (number, name) = stem
            .split_once('_')
            .ok_or_else(|| bad("the name must be NNNN_name.sql"))?;
        let version: u32 = number
            .parse()
            .map_err(|_| bad("the name must start with a version number"))?;
        if version == 0 || name.is_empty() {
            return Err(bad("the version must be positive and the name non-empty"));
        }
        let normalised = sql.replace("\r\n", "\n");
        let statements = split_statements(&normalised);
        if statements.is_empty() {
            return Err(bad("no statements"));
        }
        Ok(Migration {
            version,
            name: name.to_owned(),
            checksum: hex::encode(Sha256::digest(normalised.as_bytes())),
            statements,
        })
    }
}

/// Reads every `*.sql` file of `dir`, sorted by version; refuses duplicate versions.
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>, StoreError> {
    let mut migrations = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("sql") {
            continue;
        }
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| StoreError::BadMigrationFile {
                file: path.display().to_string(),
                reason: "the name is not UTF-8".into(),
            })?
            .to_owned();
        let sql = std::fs::read_to_string(&path)?;
        migrations.push(Migration::parse(&file_name, &sql)?);
    }
    migrations.sort_by_key(|m| m.version);
    if let Some(pair) = migrations.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(StoreError::BadMigrationFile {
            file: format!("{}, {}", pair[0].name, pair[1].name),
            reason: format!("two migrations have version {}", pair[0].version),
        });
    }
    Ok(migrations)
}

/// Splits SQL text into statements at `;` outside quotes, dropping `--` comments.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                current.push(c);
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        current.push(escaped);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    current.push(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    for skipped in chars.by_ref() {
                        if skipped == '\n' {
                            current.push('\n');
                            break;
                        }
                    }
                }
                ';' => push_statement(&mut statements, &mut current),
                _ => current.push(c),
            },
        }
    }
    push_statement(&mut statements, &mut current);
    statements
}

fn push_statement(statements: &mut Vec<String>, current: &mut String) {
    let statement = current.trim();
    if !statement.is_empty() {
        statements.push(statement.to_owned());
    }
    current.clear();
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run.
    pub applied: Vec<u32>,
    /// Versions found already applied.
    pub already_applied: Vec<u32>,
}

impl MigrationReport {
    /// The highest version now in force.
    pub fn schema_version(&self) -> Option<u32> {
        self.applied
            .iter()
            .chain(&self.already_applied)
            .copied()
            .max()
    }
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct AppliedMigration {
    version: u32,
    checksum: String,
}

/// Creates the database and the record table, then applies every pending
/// migration — on every node of the cluster in cluster mode
/// ([`crate::cluster`]).
pub async fn apply(
    warehouse: &Warehouse,
    migrations: &[Migration],
) -> Result<MigrationReport, StoreError> {
    if let Some(cluster) = warehouse.cluster() {
        return apply_on_cluster(warehouse, cluster, migrations).await;
    }
    let legacy = warehouse.server_version().await?.is_legacy();
    warehouse
        .server_client()
        .query(&format!(
            "CREATE DATABASE IF NOT EXISTS {}",
            warehouse.database()
        ))
        .execute()
        .await?;
    let client = warehouse.client();
    client
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (\
                version UInt32, name String, checksum String, applied_at DateTime('UTC')\
             ) ENGINE = ReplacingMergeTree ORDER BY version"
        ))
        .execute()
        .await?;
    let applied = applied_migrations(warehouse).await?;
    let mut report = MigrationReport::default();
    for migration in migrations {
        if let Some(done) = applied.iter().find(|a| a.version == migration.version) {
            if done.checksum != migration.checksum {
                return Err(StoreError::ChecksumMismatch {
                    version: migration.version,
                    name: migration.name.clone(),
                    applied: done.checksum.clone(),
                    current: migration.checksum.clone(),
                });
            }
            report.already_applied.push(migration.version);
            continue;
        }
        for (index, statement) in migration.statements.iter().enumerate() {
            run_statement(client, legacy, migration, index, statement).await?;
        }
        client
            .query(&format!(
                "INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum, applied_at) \
                 VALUES (?, ?, ?, now())"
            ))
            .bind(migration.version)
            .bind(migration.name.as_str())
            .bind(migration.checksum.as_str())
            .execute()
            .await?;
        tracing::info!(version = migration.version, name = %migration.name, "migration applied");
        report.applied.push(migration.version);
    }
    Ok(report)
}

/// Cluster mode: the DDL runs `ON CLUSTER`, the backfills once through the
/// Distributed tables, and every node records what it has applied. A
/// migration is pending while one node lacks its record; running it again
/// is harmless (every statement is idempotent), and only the nodes that lack
/// the record get one.
/// Runs statement `index` (from 0) of `migration`; on a `legacy` server
/// with the setting its LowCardinality columns need.
async fn run_statement(
    client: &clickhouse::Client,
    legacy: bool,
    migration: &Migration,
    index: usize,
    statement: &str,
) -> Result<(), StoreError> {
    let mut query = client.query_raw(statement);
    if legacy {
        query = query.with_setting("allow_experimental_low_cardinality_type", "1");
    }
    query
        .execute()
        .await
        .map_err(|source| StoreError::MigrationFailed {
            version: migration.version,
            name: migration.name.clone(),
            statement: index + 1,
            source,
        })
}

async fn apply_on_cluster(
    warehouse: &Warehouse,
    cluster: &str,
    migrations: &[Migration],
) -> Result<MigrationReport, StoreError> {
    let legacy = warehouse.server_version().await?.is_legacy();
    let database = warehouse.database();
    for ddl in crate::cluster::bootstrap(database, cluster) {
        warehouse.server_client().query_raw(&ddl).execute().await?;
    }
    let nodes = crate::cluster::nodes(warehouse, cluster).await?;
    let mut applied = Vec::with_capacity(nodes.len());
    for node in &nodes {
        let remote = crate::cluster::remote_table(node, warehouse, MIGRATIONS_TABLE);
        let rows = warehouse
            .client()
            .query_raw(&format!(
                "SELECT version, any(checksum) FROM {remote} GROUP BY version ORDER BY version"
            ))
            .fetch_all::<AppliedMigration>()
            .await?;
        applied.push(rows);
    }
    let client = warehouse.client();
    let mut report = MigrationReport::default();
    for migration in migrations {
        let mut missing = Vec::new();
        for (node, records) in nodes.iter().zip(&applied) {
            match records.iter().find(|a| a.version == migration.version) {
                Some(done) if done.checksum != migration.checksum => {
                    return Err(StoreError::ChecksumMismatch {
                        version: migration.version,
                        name: migration.name.clone(),
                        applied: done.checksum.clone(),
                        current: migration.checksum.clone(),
                    })
                }
                Some(_) => {}
                None => missing.push(node),
            }
        }
        if missing.is_empty() {
            report.already_applied.push(migration.version);
            continue;
        }
        for (index, statement) in migration.statements.iter().enumerate() {
            for form in crate::cluster::cluster_form(statement, database, cluster)? {
                run_statement(client, legacy, migration, index, &form).await?;
            }
        }
        for node in missing {
            let remote = crate::cluster::remote_table(node, warehouse, MIGRATIONS_TABLE);
            client
                .query_raw(&format!(
                    "INSERT INTO FUNCTION {remote} SELECT {}, {}, {}, now()",
                    migration.version,
                    crate::cluster::quote(&migration.name),
                    crate::cluster::quote(&migration.checksum),
                ))
                .execute()
                .await?;
        }
        tracing::info!(version = migration.version, name = %migration.name, cluster, "migration applied on the cluster");
        report.applied.push(migration.version);
    }
    Ok(report)
}

async fn applied_migrations(warehouse: &Warehouse) -> Result<Vec<AppliedMigration>, StoreError> {
    Ok(warehouse
        .client()
        .query(&format!(
            "SELECT version, any(checksum) FROM {MIGRATIONS_TABLE} GROUP BY version ORDER BY version"
        ))
        .fetch_all::<AppliedMigration>()
        .await?)
}

/// The highest applied version, or `None` before the first migration.
pub async fn schema_version(warehouse: &Warehouse) -> Result<Option<u32>, StoreError> {
    Ok(applied_migrations(warehouse)
        .await?
        .iter()
        .map(|a| a.version)
        .max())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_drops_comments() {
        let sql = "-- a comment; with a semicolon\nCREATE TABLE a (s String DEFAULT ';') ENGINE = Memory;\n\n\
                   SELECT 'it''s; fine', \"x;y\" -- trailing; comment\n;\n";
        assert_eq!(
            split_statements(sql),
            vec![
                "CREATE TABLE a (s String DEFAULT ';') ENGINE = Memory".to_owned(),
                "SELECT 'it''s; fine', \"x;y\"".to_owned(),
            ]
        );
    }

    #[test]
    fn parses_file_names() {
        let m = Migration::parse("0007_daily_usage.sql", "SELECT 1;").expect("valid");
        assert_eq!((m.version, m.name.as_str()), (7, "daily_usage"));
        assert_eq!(m.statements, vec!["SELECT 1".to_owned()]);
        for bad in ["x_daily.sql", "0007.sql", "0000_zero.sql", "0007_a.txt"] {
            assert!(Migration::parse(bad, "SELECT 1").is_err(), "{bad}");
        }
        assert!(Migration::parse("0001_empty.sql", "-- nothing\n").is_err());
    }

    #[test]
    fn checksum_ignores_line_endings() {
        let unix = Migration::parse("0001_a.sql", "SELECT 1;\nSELECT 2;\n").expect("valid");
        let dos = Migration::parse("0001_a.sql", "SELECT 1;\r\nSELECT 2;\r\n").expect("valid");
        assert_eq!(unix.checksum, dos.checksum);
    }
}
