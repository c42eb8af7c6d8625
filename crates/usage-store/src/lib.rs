//! ClickHouse access for the usage pipeline.
//!
//! - [`Warehouse`]: connection settings and a configured [`clickhouse::Client`]
//!   (RowBinary without schema validation, which ClickHouse 18.16 requires).
//! - [`ServerVersion`]: the server's version, for the few places where
//!   behaviour must differ between 18.16 and a current ClickHouse.
//! - [`cluster`]: cluster mode, the schema's replicated and sharded form.
//! - [`migrate`]: the versioned schema migrations in `schemas/clickhouse/`.
//! - [`schema`]: every table defined once — its columns in order with their
//!   types, the codes of its `Enum8` columns and the values its columns store
//!   faithfully — for the writers and the readers alike.

pub mod cluster;
pub mod migrate;
pub mod schema;
mod version;
mod warehouse;

pub use version::ServerVersion;
pub use warehouse::{Warehouse, WarehouseSettings};

/// Errors of the warehouse layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse request failed: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("invalid ClickHouse identifier {0:?}: use letters, digits and '_' only")]
    InvalidIdentifier(String),
    #[error("cannot read migrations: {0}")]
    Io(#[from] std::io::Error),
    #[error("migration file {file}: {reason}")]
    BadMigrationFile { file: String, reason: String },
    #[error(
        "migration {version} ({name}) was applied with checksum {applied} but the file now has \
         {current}: applied migrations are immutable, add a new one instead"
    )]
    ChecksumMismatch {
        version: u32,
        name: String,
        applied: String,
        current: String,
    },
    #[error("migration {version} ({name}), statement {statement}: {source}")]
    MigrationFailed {
        version: u32,
        name: String,
        statement: usize,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("the server knows no cluster {0:?} (system.clusters, <remote_servers>)")]
    UnknownCluster(String),
    #[error("no cluster form for the statement {statement:?}: {reason}")]
    NoClusterForm { statement: String, reason: String },
    #[error("unexpected server version string {0:?}")]
    BadVersion(String),
    #[error("unreadable row in {table}: {source}")]
    Unreadable {
        table: &'static str,
        #[source]
        source: schema::Unreadable,
    },
}

impl StoreError {
    /// A row of `table` read back with a value this code cannot represent
    /// (an unknown `Enum8` code, ...).
    pub fn unreadable(table: &schema::TableDef, source: impl Into<schema::Unreadable>) -> Self {
        StoreError::Unreadable {
            table: table.name,
            source: source.into(),
        }
    }
}

/// Checks that `name` is a plain identifier, safe to splice into DDL.
pub fn check_identifier(name: &str) -> Result<&str, StoreError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && name.len() <= 64 {
        Ok(name)
    } else {
        Err(StoreError::InvalidIdentifier(name.to_owned()))
    }
}
