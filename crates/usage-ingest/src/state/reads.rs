//! The reads of enrichment state from ClickHouse (each made, and retried,
//! by `stamp/loader.rs`). Every read may be made again whole after a
//! failure half-way: applying what it read twice changes nothing.

use super::records::{unreadable, AssignmentRecord, RateRecord, WindowRow};
use super::Enrichment;
use chrono::{DateTime, TimeDelta, Utc};
use usage_core::charge::{WindowRecord, WINDOW};
use usage_core::event::Tokens;
use usage_core::FastMap;
use usage_store::schema::{values, Unreadable, ASSIGNMENT_EVENTS, FLEX_WINDOWS, PRODUCT_RATES};
use usage_store::{StoreError, Warehouse};

/// Overlap when following `assignment_events` by `ingested_at`: rows of the
/// same second (or a slightly slow clock) are read again; applying them is idempotent.
const FOLLOW_OVERLAP_SECONDS: u32 = 5;

/// Users whose history one query reads: a whole batch's, as a rule. The
/// ids go in the query's text as one array literal (parsed as one value,
/// unlike an `IN` list of as many literals); a batch's keys are scattered
/// over the table, so each query reads most of its granules, and one query
/// per batch costs one scan (at a million users, 45 000 users in one query
/// took 1.0 s, nine queries of 5 000 took 0.6 s each).
const USERS_PER_QUERY: usize = 100_000;

/// The bytes of ids one query takes at most (each escaped at most twice
/// its length in the text).
const ID_BYTES_PER_QUERY: usize = 24 << 20;

/// The largest query text sent (`max_query_size`): room for
/// [`ID_BYTES_PER_QUERY`] bytes of ids, escaped and quoted.
const MAX_QUERY_BYTES: &str = "67108864";

/// `items` in chunks of at most [`USERS_PER_QUERY`] items and
/// [`ID_BYTES_PER_QUERY`] bytes of ids (`bytes` of each).
fn chunks_by<T>(items: &[T], bytes: impl Fn(&T) -> usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut total = 0;
        let n = rest
            .iter()
            .take(USERS_PER_QUERY)
            .take_while(|item| {
                total += bytes(item) + 4;
                total <= ID_BYTES_PER_QUERY
            })
            .count()
            .max(1);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

impl Enrichment {
    /// At start: from where to follow `assignment_events` — the newest
    /// `ingested_at` stored (one column scanned, nothing kept). The users'
    /// histories are read when a batch needs them.
    pub(crate) async fn follow_from_now(
        &mut self,
        warehouse: &Warehouse,
    ) -> Result<(), StoreError> {
        let newest = warehouse
            .client()
            .query(&format!(
                "SELECT toUInt32(max(ingested_at)) FROM {ASSIGNMENT_EVENTS}"
            ))
            .fetch_one::<u32>()
            .await?;
        self.assignments_read_until = self.assignments_read_until.max(newest);
        Ok(())
    }

    /// Reads assignment events other instances (or earlier runs) wrote since
    /// the last read, and applies those of the users whose history is held.
    /// Returns how many were new to this state. Only a read that got to the
    /// end moves the point the next one starts from (the rows come in no
    /// order): a read that failed half-way is made again whole.
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
            if self.followed(&event) {
                new += 1;
            }
        }
        self.assignments_read_until = read_until;
        Ok(new)
    }

    /// Reads the whole stored history of each of `users` (by key: the
    /// table is ordered by `user_id` first), all of them in one query.
    /// Returns how many events were read.
    pub(crate) async fn read_histories(
        &mut self,
        warehouse: &Warehouse,
        users: &[&str],
    ) -> Result<usize, StoreError> {
        let mut read = 0;
        for chunk in chunks_by(users, |u| u.len()) {
            // (A retry reads only what is still missing.)
            let chunk: Vec<&str> = chunk
                .iter()
                .copied()
                .filter(|u| self.cache.get(u).is_none_or(|e| !e.complete))
                .collect();
            if chunk.is_empty() {
                continue;
            }
            // (An IN subquery over the array: the primary key serves it.)
            let query = warehouse
                .client()
                .query(&format!(
                    "SELECT {} FROM {ASSIGNMENT_EVENTS} WHERE user_id IN (SELECT arrayJoin(?))",
                    ASSIGNMENT_EVENTS.column_list()
                ))
                .bind(&chunk)
                .with_setting("max_query_size", MAX_QUERY_BYTES);
            // Each row applied as it comes (a user's rows in any order,
            // mixed with others'): a read holds one row, not the histories.
            let mut started: FastMap<&str, bool> = chunk.iter().map(|u| (*u, false)).collect();
            let mut cursor = query.fetch::<AssignmentRecord>()?;
            while let Some(record) = cursor.next().await? {
                let event = record.into_event().map_err(unreadable(ASSIGNMENT_EVENTS))?;
                let Some(started) = started.get_mut(event.user_id.as_str()) else {
                    continue; // not asked for
                };
                if !*started {
                    self.history_started(&event.user_id);
                    *started = true;
                }
                self.history_fact(&event);
                read += 1;
            }
            for user in chunk {
                if !started.get(user).copied().unwrap_or(false) {
                    self.history_started(user);
                }
                self.history_done(user);
            }
        }
        Ok(read)
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

    /// Reads the windows of one (user, product) again from before `at`
    /// (an out-of-order event older than what the state still holds).
    pub(crate) async fn reload_windows(
        &mut self,
        warehouse: &Warehouse,
        user: &str,
        product: &str,
        at: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        self.windows_outdated(user, product);
        self.load_windows(warehouse, &[(user, product, at)]).await
    }

    /// Makes sure the windows of each (user, product) that may cover an event
    /// at or after its `first_use` are in the state: every stored window
    /// starting at or after `first_use - 24h`. Keys held far enough back
    /// already are skipped; an out-of-order event earlier than that reloads
    /// its key from further back.
    pub(crate) async fn load_windows(
        &mut self,
        warehouse: &Warehouse,
        keys: &[(&str, &str, DateTime<Utc>)],
    ) -> Result<usize, StoreError> {
        let wanted = self.windows_to_read(keys);
        let mut restored = 0;
        for chunk in chunks_by(&wanted, |(u, p, _)| u.len() + p.len()) {
            let users: Vec<&str> = chunk.iter().map(|(u, _, _)| *u).collect();
            let products: Vec<&str> = chunk.iter().map(|(_, p, _)| *p).collect();
            let earliest = chunk.iter().map(|(_, _, t)| *t).min().unwrap_or_default()
                - WINDOW
                - TimeDelta::seconds(1);
            // (The pairs as two arrays zipped by ARRAY JOIN: the primary key serves it.)
            let query = warehouse
                .client()
                .query(&format!(
                    "SELECT user_id, product, window_start, window_start_us, \
                     any(opening_event_id), any(tokens_milli) FROM {FLEX_WINDOWS} \
                     WHERE (user_id, product) IN \
                     (SELECT u, p FROM (SELECT ? AS us, ? AS ps) ARRAY JOIN us AS u, ps AS p) \
                     AND window_start >= toDateTime(?, 'UTC') \
                     GROUP BY user_id, product, window_start, window_start_us"
                ))
                .bind(&users)
                .bind(&products)
                .with_setting("max_query_size", MAX_QUERY_BYTES);
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
            let mut by_pair: usage_core::FastMap<(String, String), Vec<WindowRecord>> =
                usage_core::FastMap::default();
            for (start, row) in rows {
                by_pair
                    .entry((row.user_id, row.product))
                    .or_default()
                    .push(WindowRecord {
                        start,
                        opened_by: row.opening_event_id,
                        tokens: Some(Tokens::from_millis(row.tokens_milli)),
                        late: false,
                    });
            }
            for (user, product, first_use) in chunk {
                let stored = by_pair
                    .remove(&((*user).to_owned(), (*product).to_owned()))
                    .unwrap_or_default();
                restored += self.windows_read(user, product, *first_use - WINDOW, stored);
            }
        }
        Ok(restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_in_chunks_bounded_by_count_and_bytes() {
        let short: Vec<&str> = vec!["u"; 2 * USERS_PER_QUERY + 1];
        let sizes: Vec<usize> = chunks_by(&short, |u| u.len()).map(<[&str]>::len).collect();
        assert_eq!(sizes, [USERS_PER_QUERY, USERS_PER_QUERY, 1]);
        let long = "x".repeat(ID_BYTES_PER_QUERY / 3);
        let long: Vec<&str> = vec![long.as_str(); 5];
        let sizes: Vec<usize> = chunks_by(&long, |u| u.len()).map(<[&str]>::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(chunks_by(&[] as &[&str], |u| u.len()).count(), 0);
    }
}
