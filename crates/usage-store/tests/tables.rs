//! The table definitions (`usage_store::schema`) against the tables the
//! migrations create on the real ClickHouse server (`scripts/services up`):
//! the same tables, the same columns in the same order with the same types,
//! the same `Enum8` codes; and the storable ranges against what the server
//! formats and parses.

use std::path::PathBuf;
use usage_store::schema::{self, values, ColumnType, TableDef};
use usage_store::{migrate, Warehouse, WarehouseSettings};

fn migrations_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/clickhouse")
}

/// A warehouse on a database of its own with every migration applied,
/// dropped at the end of the test.
struct ScratchDatabase(Warehouse);

impl ScratchDatabase {
    async fn migrated(tag: &str) -> ScratchDatabase {
        let settings = WarehouseSettings {
            url: std::env::var("USAGE_CLICKHOUSE_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
            database: format!("test_{tag}_{}", std::process::id()),
            ..WarehouseSettings::default()
        };
        let db = ScratchDatabase(Warehouse::new(settings).expect("valid settings"));
        db.drop_database().await;
        let migrations = migrate::load_dir(&migrations_dir()).expect("migrations load");
        migrate::apply(&db.0, &migrations)
            .await
            .expect("migrations apply");
        db
    }

    async fn drop_database(&self) {
        self.0
            .server_client()
            .query(&format!("DROP DATABASE IF EXISTS {}", self.0.database()))
            .execute()
            .await
            .expect("drop database");
    }

    /// `DESCRIBE TABLE`: (name, type) of every column, in table order. Read
    /// as text, because the statement's other columns differ between server
    /// versions.
    async fn describe(&self, table: &str) -> Vec<(String, String)> {
        let text = self
            .0
            .client()
            .query(&format!("DESCRIBE TABLE {table}"))
            .fetch_bytes("TabSeparatedRaw")
            .expect("describe")
            .collect()
            .await
            .expect("describe answers");
        String::from_utf8(text.to_vec())
            .expect("UTF-8")
            .lines()
            .map(|line| {
                let mut fields = line.split('\t');
                let name = fields.next().expect("a name").to_owned();
                let ty = fields.next().expect("a type").to_owned();
                (name, ty)
            })
            .collect()
    }

    /// The tables (not the views, materialized or not) the migrations created.
    async fn tables(&self) -> Vec<String> {
        self.0
            .server_client()
            .query(
                "SELECT name FROM system.tables \
                 WHERE database = ? AND engine NOT IN ('View', 'MaterializedView') AND name != ? \
                 ORDER BY name",
            )
            .bind(self.0.database())
            .bind(migrate::MIGRATIONS_TABLE)
            .fetch_all::<String>()
            .await
            .expect("list tables")
    }
}

/// The labels and codes of an `Enum8('a' = 1, 'b' = 2)` type string.
fn enum8_codes(ty: &str) -> Vec<(String, i8)> {
    let inner = ty
        .strip_prefix("Enum8(")
        .and_then(|t| t.strip_suffix(')'))
        .expect("an Enum8 type");
    inner
        .split(", ")
        .map(|pair| {
            let (label, code) = pair.split_once(" = ").expect("'label' = code");
            let label = label
                .strip_prefix('\'')
                .and_then(|l| l.strip_suffix('\''))
                .expect("a quoted label");
            (label.to_owned(), code.parse().expect("an Int8 code"))
        })
        .collect()
}

fn definition(table: &TableDef) -> Vec<(String, String)> {
    table
        .columns
        .iter()
        .map(|c| (c.name.to_owned(), c.ty.to_string()))
        .collect()
}

#[tokio::test]
async fn every_definition_is_its_table_as_the_migrations_create_it() {
    let db = ScratchDatabase::migrated("tables_describe").await;
    for table in schema::ALL {
        let described = db.describe(table.name).await;
        assert_eq!(
            described,
            definition(&table),
            "{table}: the definition in usage-store differs from DESCRIBE TABLE"
        );
        for column in table.columns {
            if let ColumnType::Enum8(codes) = column.ty {
                let (_, ty) = described
                    .iter()
                    .find(|(name, _)| name == column.name)
                    .expect("described");
                let expected: Vec<(String, i8)> =
                    codes.iter().map(|(l, c)| ((*l).to_owned(), *c)).collect();
                assert_eq!(enum8_codes(ty), expected, "{table}.{}", column.name);
            }
        }
    }
    db.drop_database().await;
}

#[tokio::test]
async fn every_table_the_migrations_create_is_defined() {
    let db = ScratchDatabase::migrated("tables_all").await;
    let mut defined: Vec<&str> = schema::ALL.iter().map(|t| t.name).collect();
    defined.sort_unstable();
    assert_eq!(db.tables().await, defined);
    db.drop_database().await;
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Bounds {
    day_text: String,
    day_parsed: u16,
    second_text: String,
    second_parsed: u32,
    past_day_parsed: u16,
}

/// The last day and second `values` lets through are ones the server both
/// formats and parses; on 18.16, the next day is already out of its range.
#[tokio::test]
async fn the_storable_range_is_what_the_server_formats_and_parses() {
    let db = ScratchDatabase::migrated("tables_bounds").await;
    let bounds =
        db.0.client()
            .query(
                "SELECT toString(toDate(?)), toUInt16(toDate(?)), \
             toString(toDateTime(?, 'UTC')), toUInt32(toDateTime(?, 'UTC')), \
             toUInt16(toDate(?))",
            )
            .bind(values::LAST_DAY_NUMBER)
            .bind(values::LAST_DAY.to_string())
            .bind(values::LAST_SECOND)
            .bind(format!("{} 23:59:59", values::LAST_DAY))
            .bind("2106-01-01")
            .fetch_one::<Bounds>()
            .await
            .expect("bounds");
    assert_eq!(bounds.day_text, "2105-12-31");
    assert_eq!(bounds.day_parsed, values::LAST_DAY_NUMBER);
    assert_eq!(bounds.second_text, "2105-12-31 23:59:59");
    assert_eq!(bounds.second_parsed, values::LAST_SECOND);
    if db.0.server_version().await.expect("version").is_legacy() {
        assert_eq!(
            bounds.past_day_parsed, 0,
            "18.16 reads 2106-01-01 as 0000-00-00: the range ends before it"
        );
    }
    db.drop_database().await;
}
