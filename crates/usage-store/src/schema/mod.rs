//! The tables of the pipeline as the code sees them, defined once: each
//! table's name and ordered columns with their ClickHouse types
//! ([`tables`]), the codes of its `Enum8` columns ([`codes`]) and the ranges
//! of values its columns store faithfully ([`values`]).
//!
//! The migrations in `schemas/clickhouse/` create the tables; these
//! definitions are what the writers (RowBinary, columns in table order) and
//! the readers (codes decoded back) use. `tests/tables.rs` applies the
//! migrations to a scratch database and compares every definition with
//! `DESCRIBE TABLE`: a migration that changes a table must change its
//! definition here, and the other way round.
//!
//! ClickHouse 18.16 checks neither the codes nor the ranges of what it is
//! sent in RowBinary: a value outside them is stored as something else. So a
//! value that cannot be stored faithfully is an error ([`Unstorable`]), and a
//! stored code this code does not know is an error on reading
//! ([`UnknownCode`]), never a default.

pub mod codes;
mod tables;
pub mod values;

use std::fmt;

pub use codes::{
    ScheduleFormat, ScheduleFrequency, ScheduleKind, StoredEnum, UnknownCode, UnknownLabel,
};
pub use tables::{
    ALL, ASSIGNMENT_EVENTS, ASSIGNMENT_STATE, AUTHORIZATIONS, DAILY_USAGE, FLEX_WINDOWS,
    GROUP_MEMBERSHIPS, LAST_ACCESS, PRODUCT_RATES, REPORT_SCHEDULES, TEAMS, TEAM_MERGES,
    TOKEN_MONTHS, USAGE_MONTHS, USER_PROFILES,
};
pub use values::{Unreadable, Unstorable, Why};

/// The type of a column, printed ([`fmt::Display`]) exactly as
/// `DESCRIBE TABLE` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    UInt8,
    UInt16,
    UInt32,
    UInt64,
    /// Days since 1970-01-01 (`UInt16`); see [`values::date`].
    Date,
    /// `DateTime('UTC')`: seconds since the epoch (`UInt32`); see [`values::datetime`].
    DateTime,
    /// `Enum8` with these labels and codes, in ascending code order (the
    /// `CODES` of a [`StoredEnum`]).
    Enum8(&'static [(&'static str, i8)]),
    /// `AggregateFunction(function, arguments)`: the state of an aggregate
    /// function, kept by an `AggregatingMergeTree` and read with the
    /// function's `-Merge` form (never written or read as rows by this code).
    AggregateState {
        function: &'static str,
        /// The argument types, as `DESCRIBE TABLE` prints them.
        arguments: &'static str,
    },
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::String => f.write_str("String"),
            ColumnType::UInt8 => f.write_str("UInt8"),
            ColumnType::UInt16 => f.write_str("UInt16"),
            ColumnType::UInt32 => f.write_str("UInt32"),
            ColumnType::UInt64 => f.write_str("UInt64"),
            ColumnType::Date => f.write_str("Date"),
            ColumnType::DateTime => f.write_str("DateTime('UTC')"),
            ColumnType::Enum8(codes) => {
                f.write_str("Enum8(")?;
                for (i, (label, code)) in codes.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "'{label}' = {code}")?;
                }
                f.write_str(")")
            }
            ColumnType::AggregateState {
                function,
                arguments,
            } => write!(f, "AggregateFunction({function}, {arguments})"),
        }
    }
}

/// One column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
}

/// A table: its name and its columns in table order (the order of its
/// `CREATE TABLE`, which is the order RowBinary rows are written in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [Column],
}

impl TableDef {
    /// The column names in table order, comma-separated: the column list of
    /// an `INSERT INTO table (...) FORMAT RowBinary`.
    pub fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        names.join(", ")
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for TableDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usage_core::event::Access;

    #[test]
    fn types_print_as_describe_table_prints_them() {
        assert_eq!(ColumnType::DateTime.to_string(), "DateTime('UTC')");
        assert_eq!(ColumnType::UInt64.to_string(), "UInt64");
        assert_eq!(
            ColumnType::Enum8(Access::CODES).to_string(),
            "Enum8('seat' = 1, 'flex' = 2)"
        );
        assert_eq!(
            USAGE_MONTHS.column("days").map(|c| c.ty.to_string()),
            Some("AggregateFunction(groupBitOr, UInt32)".to_owned())
        );
    }

    #[test]
    fn the_insert_column_list_is_the_columns_in_table_order() {
        assert_eq!(
            DAILY_USAGE.column_list(),
            "team_id, user_id, product, access, usage_date"
        );
        assert_eq!(
            AUTHORIZATIONS.column("access").map(|c| c.ty),
            Some(ColumnType::Enum8(Access::CODES))
        );
        assert_eq!(AUTHORIZATIONS.column("nope"), None);
    }

    #[test]
    fn table_names_and_column_names_are_unique() {
        for (i, table) in ALL.iter().enumerate() {
            assert!(
                ALL[..i].iter().all(|t| t.name != table.name),
                "{table} twice"
            );
            for (j, column) in table.columns.iter().enumerate() {
                assert!(
                    table.columns[..j].iter().all(|c| c.name != column.name),
                    "{table}.{} twice",
                    column.name
                );
            }
        }
    }
}
