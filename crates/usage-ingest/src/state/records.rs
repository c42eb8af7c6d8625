//! The rows of enrichment state as ClickHouse stores them, decoded with the
//! tables' definitions (`usage_store::schema`): a stored code or value this
//! code cannot represent is an error of the read ([`StoreError::Unreadable`]),
//! never replaced by a default.

use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::Deserialize;
use usage_core::event::{Access, Assignment, AssignmentAction, AssignmentVia, ProductRate, Tokens};
use usage_store::schema::{values, StoredEnum, TableDef, Unreadable};
use usage_store::StoreError;

/// A stored value of `table` that cannot be read back, as a read error.
pub(super) fn unreadable(table: TableDef) -> impl Fn(Unreadable) -> StoreError {
    move |e| StoreError::unreadable(&table, e)
}

/// A row of `assignment_events`: every column, in table order.
#[derive(Debug, Row, Deserialize)]
pub(super) struct AssignmentRecord {
    pub(super) event_id: String,
    pub(super) occurred_at: u32,
    pub(super) occurred_us: u32,
    pub(super) action: i8,
    pub(super) team_id: String,
    pub(super) user_id: String,
    pub(super) product: String,
    pub(super) access: i8,
    pub(super) via: i8,
    pub(super) group_id: String,
    pub(super) ingested_at: u32,
}

impl AssignmentRecord {
    pub(super) fn into_event(self) -> Result<Assignment, Unreadable> {
        Ok(Assignment {
            occurred_at: values::read_datetime_us(
                "occurred_us",
                self.occurred_at,
                self.occurred_us,
            )?,
            action: AssignmentAction::from_code(self.action)?,
            access: Access::from_code(self.access)?,
            via: AssignmentVia::from_code(self.via)?,
            event_id: self.event_id,
            team_id: self.team_id,
            user_id: self.user_id,
            product: self.product,
            group_id: (!self.group_id.is_empty()).then_some(self.group_id),
        })
    }
}

/// A row of `product_rates`: every column, in table order.
#[derive(Debug, Row, Deserialize)]
pub(super) struct RateRecord {
    pub(super) product: String,
    pub(super) name: String,
    pub(super) flex_tokens_milli: u64,
    pub(super) effective_from: u32,
    pub(super) effective_from_us: u32,
    pub(super) event_id: String,
    pub(super) version: u64,
}

impl RateRecord {
    /// The rate, with its event id and when it was published.
    pub(super) fn into_rate(self) -> Result<(String, DateTime<Utc>, ProductRate), Unreadable> {
        let published = values::read_micros("version", self.version)?;
        let rate = ProductRate {
            effective_from: values::read_datetime_us(
                "effective_from_us",
                self.effective_from,
                self.effective_from_us,
            )?,
            product: self.product,
            name: (!self.name.is_empty()).then_some(self.name),
            flex_tokens_per_day: Tokens::from_millis(self.flex_tokens_milli),
        };
        Ok((self.event_id, published, rate))
    }
}

#[derive(Debug, Row, Deserialize)]
pub(super) struct WindowRow {
    pub(super) user_id: String,
    pub(super) product: String,
    pub(super) window_start: u32,
    pub(super) window_start_us: u32,
    pub(super) opening_event_id: String,
    pub(super) tokens_milli: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use usage_store::schema::{UnknownCode, ASSIGNMENT_EVENTS, PRODUCT_RATES};

    fn record(action: i8, access: i8, via: i8, occurred_us: u32) -> AssignmentRecord {
        AssignmentRecord {
            event_id: "a".into(),
            occurred_at: 1_772_323_200,
            occurred_us,
            action,
            team_id: "t".into(),
            user_id: "u".into(),
            product: "p".into(),
            access,
            via,
            group_id: String::new(),
            ingested_at: 1_772_323_201,
        }
    }

    fn names(table: TableDef) -> Vec<&'static str> {
        table.columns.iter().map(|c| c.name).collect()
    }

    /// The records are read with `SELECT <the table's column list>`: their
    /// fields must be the columns, in order (RowBinary carries no names).
    #[test]
    fn records_have_the_columns_of_their_table() {
        assert_eq!(
            <AssignmentRecord as Row>::COLUMN_NAMES,
            names(ASSIGNMENT_EVENTS)
        );
        assert_eq!(<RateRecord as Row>::COLUMN_NAMES, names(PRODUCT_RATES));
    }

    #[test]
    fn stored_codes_are_decoded_with_the_table_definitions() {
        let a = record(2, 2, 3, 250).into_event().expect("known codes");
        assert_eq!(
            (a.action, a.access, a.via),
            (
                AssignmentAction::Unassign,
                Access::Flex,
                AssignmentVia::Default
            )
        );
        assert_eq!(a.occurred_at.timestamp_subsec_micros(), 250);
    }

    #[test]
    fn an_unknown_code_is_an_error_of_the_read_not_a_default() {
        for (rec, what, code) in [
            (record(3, 1, 1, 0), "assignment action", 3),
            (record(1, 3, 1, 0), "access", 3),
            (record(1, 1, 0, 0), "assignment via", 0),
        ] {
            let error = rec.into_event().expect_err("unknown code");
            assert_eq!(error, Unreadable::Code(UnknownCode { what, code }));
        }
        let error = record(1, 1, 1, 1_000_000)
            .into_event()
            .expect_err("not microseconds within a second");
        assert!(matches!(
            error,
            Unreadable::Value {
                column: "occurred_us",
                ..
            }
        ));
        let store_error = unreadable(ASSIGNMENT_EVENTS)(Unreadable::Code(UnknownCode {
            what: "access",
            code: 3,
        }));
        assert_eq!(
            store_error.to_string(),
            "unreadable row in assignment_events: unknown access code 3"
        );
    }

    #[test]
    fn a_rate_whose_stored_times_are_not_instants_is_an_error() {
        let rate = |effective_from_us: u32, version: u64| RateRecord {
            product: "p".into(),
            name: String::new(),
            flex_tokens_milli: 7_000,
            effective_from: 1_772_323_200,
            effective_from_us,
            event_id: "r".into(),
            version,
        };
        let (event_id, published, r) = rate(5, 1_772_323_200_000_005)
            .into_rate()
            .expect("readable");
        assert_eq!((event_id.as_str(), r.name), ("r", None));
        assert_eq!(published, r.effective_from);
        assert!(rate(1_000_000, 0).into_rate().is_err());
        assert!(rate(0, u64::MAX).into_rate().is_err());
    }
}
