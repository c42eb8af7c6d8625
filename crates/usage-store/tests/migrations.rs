//! The migrations against the real ClickHouse server (`scripts/services up`).

use std::path::PathBuf;
use usage_store::{migrate, StoreError, Warehouse, WarehouseSettings};

fn migrations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/clickhouse")
}

/// A warehouse on a database of its own, dropped at the end of the test.
struct ScratchDatabase(Warehouse);

impl ScratchDatabase {
    fn new(tag: &str) -> ScratchDatabase {
        let settings = WarehouseSettings {
            url: std::env::var("USAGE_CLICKHOUSE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
            database: format!("test_{tag}_{}", std::process::id()),
            ..WarehouseSettings::default()
        };
        ScratchDatabase(Warehouse::new(settings).expect("valid settings"))
    }

    async fn drop_database(&self) {
        self.0
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS {}", self.0.database()))
            .execute()
            .await
            .expect("drop database");
    }

    async fn tables(&self) -> Vec<String> {
        self.0
            .server_client()
            .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
            .bind(self.0.database())
            .fetch_all::<String>()
            .await
            .expect("list tables")
    }
}

#[tokio::test]
async fn applying_twice_changes_nothing_the_second_time() {
    let db = ScratchDatabase::new("twice");
    db.drop_database().await;
    let migrations = migrate::load_dir(&migrations_dir()).expect("migrations load");
    let latest = migrations.last().expect("at least one migration").version;

    let first = migrate::apply(&db.0, &migrations).await.expect("first run");
    assert_eq!(first.applied.len(), migrations.len());
    let tables_after_first = db.tables().await;
    assert!(tables_after_first.contains(&"authorizations".to_owned()));
    assert!(tables_after_first.contains(&"schema_migrations".to_owned()));

    let second = migrate::apply(&db.0, &migrations)
        .await
        .expect("second run");
    assert!(second.applied.is_empty(), "nothing left to apply");
    assert_eq!(second.schema_version(), Some(latest));
    assert_eq!(db.tables().await, tables_after_first);
    assert_eq!(
        migrate::schema_version(&db.0).await.expect("version"),
        Some(latest)
    );
    db.drop_database().await;
}

#[tokio::test]
async fn two_instances_starting_together_both_succeed() {
    let db = ScratchDatabase::new("together");
    db.drop_database().await;
    let migrations = migrate::load_dir(&migrations_dir()).expect("migrations load");
    let (a, b) = tokio::join!(
        migrate::apply(&db.0, &migrations),
        migrate::apply(&db.0, &migrations)
    );
    let (a, b) = (a.expect("instance a"), b.expect("instance b"));
    assert_eq!(a.schema_version(), b.schema_version());
    let again = migrate::apply(&db.0, &migrations).await.expect("third run");
    assert!(again.applied.is_empty());
    db.drop_database().await;
}

#[tokio::test]
async fn an_applied_migration_that_changed_is_refused() {
    let db = ScratchDatabase::new("changed");
    db.drop_database().await;
    let original = migrate::Migration::parse(
        "0001_probe.sql",
        "CREATE TABLE IF NOT EXISTS probe (x UInt8) ENGINE = Memory;",
    )
    .expect("valid");
    migrate::apply(&db.0, std::slice::from_ref(&original))
        .await
        .expect("applies");
    let edited = migrate::Migration::parse(
        "0001_probe.sql",
        "CREATE TABLE IF NOT EXISTS probe (x UInt16) ENGINE = Memory;",
    )
    .expect("valid");
    let err = migrate::apply(&db.0, &[edited])
        .await
        .expect_err("a changed migration is refused");
    assert!(
        matches!(err, StoreError::ChecksumMismatch { version: 1, .. }),
        "{err}"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_failing_statement_names_its_migration() {
    let db = ScratchDatabase::new("failing");
    db.drop_database().await;
    let broken = migrate::Migration::parse(
        "0001_broken.sql",
        "CREATE TABLE IF NOT EXISTS ok (x UInt8) ENGINE = Memory;\nCREATE TABLE nope (;",
    )
    .expect("parses as text");
    let err = migrate::apply(&db.0, &[broken])
        .await
        .expect_err("bad SQL fails");
    assert!(
        matches!(
            err,
            StoreError::MigrationFailed {
                version: 1,
                statement: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(migrate::schema_version(&db.0).await.expect("version"), None);
    db.drop_database().await;
}
