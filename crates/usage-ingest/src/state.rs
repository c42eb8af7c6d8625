//! The state enrichment needs — assignment history, Flex rates, Flex windows —
//! kept in ClickHouse (the tables the ingest itself writes) and loaded from
//! there (by `stamp/loader.rs`): on start, on partition assignment, and as
//! other instances add to it.
//! A restart or a rebalance therefore stamps events exactly as before.
//!
//! Rows are decoded with the tables' definitions (`usage_store::schema`): a
//! stored code or value this code cannot represent is an error of the read
//! ([`StoreError::Unreadable`]), reported and retried like any failed read,
//! never replaced by a default.

use chrono::{DateTime, TimeDelta, Utc};
use clickhouse::Row;
use serde::Deserialize;
use usage_core::charge::{ChargeConfig, ChargeState, RateTable, WindowRecord, WINDOW};
use usage_core::event::{Access, Assignment, AssignmentAction, AssignmentVia, ProductRate, Tokens};
use usage_core::team::AssignmentState;
use usage_core::FastMap;
use usage_store::schema::{
    values, StoredEnum, TableDef, Unreadable, ASSIGNMENT_EVENTS, FLEX_WINDOWS, PRODUCT_RATES,
};
use usage_store::{StoreError, Warehouse};

/// What the stamper consults to stamp an authorization.
pub(crate) struct Enrichment {
    pub(crate) assignments: AssignmentState,
    pub(crate) rates: RateTable,
    pub(crate) charges: ChargeState,
    /// Per (user, product), from when its windows are loaded from ClickHouse.
    loaded_from: FastMap<(Box<str>, Box<str>), DateTime<Utc>>,
    /// `ingested_at` (seconds) of the newest assignment event read from ClickHouse.
    assignments_read_until: u32,
}

/// A stored value of `table` that cannot be read back, as a read error.
fn unreadable(table: TableDef) -> impl Fn(Unreadable) -> StoreError {
    move |e| StoreError::unreadable(&table, e)
}

/// A row of `assignment_events`: every column, in table order.
#[derive(Debug, Row, Deserialize)]
struct AssignmentRecord {
    event_id: String,
    occurred_at: u32,
    occurred_us: u32,
    action: i8,
    team_id: String,
    user_id: String,
    product: String,
    access: i8,
    via: i8,
    group_id: String,
    ingested_at: u32,
}

impl AssignmentRecord {
    fn into_event(self) -> Result<Assignment, Unreadable> {
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
struct RateRecord {
    product: String,
    name: String,
    flex_tokens_milli: u64,
    effective_from: u32,
    effective_from_us: u32,
    event_id: String,
    version: u64,
}

impl RateRecord {
    /// The rate, with its event id and when it was published.
    fn into_rate(self) -> Result<(String, DateTime<Utc>, ProductRate), Unreadable> {
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
struct WindowRow {
    user_id: String,
    product: String,
    window_start: u32,
    window_start_us: u32,
    opening_event_id: String,
    tokens_milli: u64,
}

/// Overlap when following `assignment_events` by `ingested_at`: rows of the
/// same second (or a slightly slow clock) are read again; applying them is idempotent.
const FOLLOW_OVERLAP_SECONDS: u32 = 5;

impl Enrichment {
    /// An empty state: fill it with [`Enrichment::follow_assignments`] (the
    /// whole history, the first time) and [`Enrichment::reload_rates`].
    pub(crate) fn new(charge_config: ChargeConfig) -> Enrichment {
        Enrichment {
            assignments: AssignmentState::new(),
            rates: RateTable::new(),
            charges: ChargeState::new(charge_config),
            loaded_from: FastMap::default(),
            assignments_read_until: 0,
        }
    }

    /// Reads assignment events other instances (or earlier runs) wrote since
    /// the last read. Returns how many were new to this state. Only a read
    /// that got to the end moves the point the next one starts from (the rows
    /// come in no order): a read that failed half-way is made again whole,
    /// and applying an event twice changes nothing.
    pub(crate) async fn follow_assignments(
        &mut self,
        warehouse: &Warehouse,
    ) -> Result<usize, StoreError> {
        let since = self
            .assignments_read_until
            .saturating_sub(FOLLOW_OVERLAP_SECONDS);
        let mut cursor = warehouse
            .client()
            .query(&format!(
                "SELECT {} FROM {ASSIGNMENT_EVENTS} WHERE ingested_at >= toDateTime(?, 'UTC')",
                ASSIGNMENT_EVENTS.column_list()
            ))
            .bind(since)
            .fetch::<AssignmentRecord>()?;
        let mut new = 0;
        let mut read_until = self.assignments_read_until;
        while let Some(record) = cursor.next().await? {
            read_until = read_until.max(record.ingested_at);
            let event = record.into_event().map_err(unreadable(ASSIGNMENT_EVENTS))?;
            if self.assignments.apply(&event) == usage_core::team::Applied::New {
                new += 1;
            }
        }
        self.assignments_read_until = read_until;
        Ok(new)
    }

    /// Reads every product rate (a small table) again.
    pub(crate) async fn reload_rates(&mut self, warehouse: &Warehouse) -> Result<(), StoreError> {
        let rates = warehouse
            .client()
            .query(&format!(
                "SELECT {} FROM {PRODUCT_RATES}",
                PRODUCT_RATES.column_list()
            ))
            .fetch_all::<RateRecord>()
            .await?
            .into_iter()
            .map(RateRecord::into_rate)
            .collect::<Result<Vec<_>, _>>()
            .map_err(unreadable(PRODUCT_RATES))?;
        for (event_id, published, rate) in rates {
            self.rates.apply(&event_id, published, &rate);
        }
        Ok(())
    }

    /// Forgets the Flex windows (after a rebalance: the partitions, and so the
    /// users, this instance owns may have changed hands).
    pub(crate) fn forget_windows(&mut self) {
        self.charges = ChargeState::new(self.charges.config());
        self.loaded_from.clear();
    }

    /// Reads the windows of one (user, product) again from before `at`
    /// (an out-of-order event older than what the state still holds).
    pub(crate) async fn reload_windows(
        &mut self,
        warehouse: &Warehouse,
        user: &str,
        product: &str,
        at: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.loaded_from
            .remove(&(Box::from(user), Box::from(product)));
        self.load_windows(warehouse, &[(user, product, at)]).await
    }

    /// Makes sure the windows of each (user, product) that may cover an event
    /// at or after its `first_use` are in the state: every stored window
    /// starting at or after `first_use - 24h`. Keys loaded far enough back
    /// already are skipped; an out-of-order event earlier than that reloads
    /// its key from further back.
    pub(crate) async fn load_windows(
        &mut self,
        warehouse: &Warehouse,
        keys: &[(&str, &str, DateTime<Utc>)],
    ) -> Result<usize, StoreError> {
        let wanted: Vec<&(&str, &str, DateTime<Utc>)> = keys
            .iter()
            .filter(|(u, p, first_use)| {
                self.loaded_from
                    .get(&(Box::from(*u), Box::from(*p)))
                    .is_none_or(|from| *first_use - WINDOW < *from)
            })
            .collect();
        let mut restored = 0;
        for chunk in wanted.chunks(500) {
            let earliest = chunk.iter().map(|(_, _, t)| *t).min().unwrap_or_default()
                - WINDOW
                - TimeDelta::seconds(1);
            let placeholders = vec!["(?, ?)"; chunk.len()].join(", ");
            let mut query = warehouse.client().query(&format!(
                "SELECT user_id, product, window_start, window_start_us, \
                 any(opening_event_id), any(tokens_milli) FROM {FLEX_WINDOWS} \
                 WHERE (user_id, product) IN ({placeholders}) AND window_start >= toDateTime(?, 'UTC') \
                 GROUP BY user_id, product, window_start, window_start_us"
            ));
            for (user, product, _) in chunk {
                query = query.bind(*user).bind(*product);
            }
            // A bound of the query, not a stored value: from before 1970 is
            // every window. (The events were storable, so it is before 2106.)
            let from = u32::try_from(earliest.timestamp().max(0)).unwrap_or(u32::MAX);
            let rows = query
                .bind(from)
                .fetch_all::<WindowRow>()
                .await?
                .into_iter()
                .map(|row| {
                    let start = values::read_datetime_us(
                        "window_start_us",
                        row.window_start,
                        row.window_start_us,
                    )?;
                    Ok((start, row))
                })
                .collect::<Result<Vec<_>, Unreadable>>()
                .map_err(unreadable(FLEX_WINDOWS))?;
            for (start, row) in rows {
                self.charges.restore(
                    &row.user_id,
                    &row.product,
                    &WindowRecord {
                        start,
                        opened_by: row.opening_event_id,
                        tokens: Some(Tokens::from_millis(row.tokens_milli)),
                        late: false,
                    },
                );
                restored += 1;
            }
            for (user, product, first_use) in chunk {
                let from = *first_use - WINDOW;
                self.charges.extend_history(user, product, from);
                self.loaded_from
                    .insert((Box::from(*user), Box::from(*product)), from);
            }
        }
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use usage_store::schema::UnknownCode;

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
