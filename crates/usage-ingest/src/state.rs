//! The state enrichment needs — assignment history, Flex rates, Flex windows —
//! kept in ClickHouse (the tables the ingest itself writes) and loaded from
//! there (by `stamp/loader.rs`): on start, on partition assignment, and as
//! other instances add to it.
//! A restart or a rebalance therefore stamps events exactly as before.

use chrono::{DateTime, TimeDelta, Utc};
use clickhouse::Row;
use serde::Deserialize;
use usage_core::charge::{ChargeConfig, ChargeState, RateTable, WindowRecord, WINDOW};
use usage_core::event::{Access, Assignment, AssignmentAction, AssignmentVia, ProductRate, Tokens};
use usage_core::team::AssignmentState;
use usage_core::FastMap;
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

fn from_parts(seconds: u32, micros: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(seconds), micros.min(999_999) * 1000).unwrap_or_default()
}

fn access_of(code: i8) -> Access {
    if code == 2 {
        Access::Flex
    } else {
        Access::Seat
    }
}

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
    fn into_event(self) -> Assignment {
        Assignment {
            event_id: self.event_id,
            occurred_at: from_parts(self.occurred_at, self.occurred_us),
            action: if self.action == 2 {
                AssignmentAction::Unassign
            } else {
                AssignmentAction::Assign
            },
            team_id: self.team_id,
            user_id: self.user_id,
            product: self.product,
            access: access_of(self.access),
            via: match self.via {
                2 => AssignmentVia::Group,
                3 => AssignmentVia::Default,
                _ => AssignmentVia::Direct,
            },
            group_id: (!self.group_id.is_empty()).then_some(self.group_id),
        }
    }
}

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
    /// the last read. Returns how many were new to this state.
    pub(crate) async fn follow_assignments(
        &mut self,
        warehouse: &Warehouse,
    ) -> Result<usize, StoreError> {
        let since = self
            .assignments_read_until
            .saturating_sub(FOLLOW_OVERLAP_SECONDS);
        let mut cursor = warehouse
            .client()
            .query(
                "SELECT event_id, occurred_at, occurred_us, action, team_id, user_id, product, \
                 access, via, group_id, ingested_at FROM assignment_events \
                 WHERE ingested_at >= toDateTime(?, 'UTC')",
            )
            .bind(since)
            .fetch::<AssignmentRecord>()?;
        let mut new = 0;
        while let Some(record) = cursor.next().await? {
            self.assignments_read_until = self.assignments_read_until.max(record.ingested_at);
            if self.assignments.apply(&record.into_event()) == usage_core::team::Applied::New {
                new += 1;
            }
        }
        Ok(new)
    }

    /// Reads every product rate (a small table) again.
    pub(crate) async fn reload_rates(&mut self, warehouse: &Warehouse) -> Result<(), StoreError> {
        let rates = warehouse
            .client()
            .query(
                "SELECT product, name, flex_tokens_milli, effective_from, effective_from_us, \
                 event_id, version FROM product_rates",
            )
            .fetch_all::<RateRecord>()
            .await?;
        for r in rates {
            let published = DateTime::from_timestamp_micros(i64::try_from(r.version).unwrap_or(0))
                .unwrap_or_default();
            self.rates.apply(
                &r.event_id,
                published,
                &ProductRate {
                    product: r.product,
                    name: (!r.name.is_empty()).then_some(r.name),
                    flex_tokens_per_day: Tokens::from_millis(r.flex_tokens_milli),
                    effective_from: from_parts(r.effective_from, r.effective_from_us),
                },
            );
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
                 any(opening_event_id), any(tokens_milli) FROM flex_windows \
                 WHERE (user_id, product) IN ({placeholders}) AND window_start >= toDateTime(?, 'UTC') \
                 GROUP BY user_id, product, window_start, window_start_us"
            ));
            for (user, product, _) in chunk {
                query = query.bind(*user).bind(*product);
            }
            let rows = query
                .bind(u32::try_from(earliest.timestamp().max(0)).unwrap_or(0))
                .fetch_all::<WindowRow>()
                .await?;
            for row in rows {
                let start = from_parts(row.window_start, row.window_start_us);
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
