//! Step 4 of stamping (pure): the rows of a batch, per table — the stamped
//! authorizations with the Flex windows they opened and their day-level
//! rollup, and the current assignment of every key the batch touched. The
//! facts, most of the bytes, are encoded in chunks over the [`Workers`] and
//! joined in order: the same bytes as on one thread.

use super::decode::AssignmentKey;
use super::stamper::Stamp;
use super::Pending;
use crate::rowbinary::RowBinary;
use crate::rows::{self, Tables};
use crate::workers::Workers;
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::BTreeMap;
use usage_core::event::{Access, AssignmentVia};
use usage_core::team::AssignmentState;
use usage_core::usage::usage_date;
use usage_core::FastSet;
use usage_store::schema::{self, values, Unstorable};

/// About the size of an encoded fact row (ids of a few dozen bytes), to
/// reserve a chunk's bytes at once.
const FACT_BYTES: usize = 160;

/// Encodes the stamped authorizations (the facts), the windows they opened
/// and the day-level rollup (deduplicated per batch); returns the
/// `occurred_at` of the oldest of them. Their timestamps were checked when
/// they were decoded (`storable`): a value that cannot be stored now is an error.
pub(crate) fn authorizations(
    tables: &mut Tables,
    stored: &[(Pending, Stamp)],
    ingested_at: DateTime<Utc>,
    workers: &Workers,
) -> Result<Option<DateTime<Utc>>, Unstorable> {
    let facts = workers.map_chunks(stored, |chunk| {
        let mut rows = RowBinary::with_capacity(schema::AUTHORIZATIONS, chunk.len() * FACT_BYTES);
        for (p, stamp) in chunk {
            fact(p, stamp, ingested_at).encode_into(&mut rows)?;
        }
        Ok::<_, Unstorable>(rows)
    });
    for rows in facts {
        let rows = rows?;
        if rows.rows() > 0 {
            tables.append(rows);
        }
    }
    let mut oldest: Option<DateTime<Utc>> = None;
    let mut days: FastSet<(&str, &str, &str, Access, NaiveDate)> = FastSet::default();
    for (p, stamp) in stored {
        let a = p.auth();
        let day = usage_date(a.occurred_at);
        oldest = Some(oldest.map_or(a.occurred_at, |o| o.min(a.occurred_at)));
        if stamp.opened_window {
            if let Some(start) = stamp.window_start {
                rows::flex_window(
                    tables,
                    a.user_id,
                    a.product,
                    start,
                    &stamp.team_id,
                    a.event_id,
                    stamp.tokens_milli,
                )?;
            }
        }
        if days.insert((&stamp.team_id, a.user_id, a.product, a.access, day)) {
            rows::daily_usage(tables, &stamp.team_id, a.user_id, a.product, a.access, day)?;
        }
    }
    Ok(oldest)
}

/// The fact row of a stamped authorization.
fn fact<'a>(p: &'a Pending, stamp: &'a Stamp, ingested_at: DateTime<Utc>) -> rows::FactRow<'a> {
    let a = p.auth();
    rows::FactRow {
        event_id: a.event_id,
        occurred_at: a.occurred_at,
        usage_date: usage_date(a.occurred_at),
        team_id: &stamp.team_id,
        team_source: stamp.source,
        user_id: a.user_id,
        product: a.product,
        product_version: a.product_version.unwrap_or(""),
        access: a.access,
        machine_id: a.machine_id.unwrap_or(""),
        window_start: stamp.window_start,
        tokens_milli: stamp.tokens_milli,
        partition: p.partition,
        offset: p.offset,
        ingested_at,
    }
}

/// Encodes the current assignment of every key in `touched` under `version`
/// (above every earlier batch's: two batches in one second must not tie,
/// readers keep the highest version).
pub(crate) fn assignment_states(
    tables: &mut Tables,
    assignments: &AssignmentState,
    touched: &BTreeMap<AssignmentKey, AssignmentVia>,
    version: u64,
) -> Result<(), Unstorable> {
    let latest = DateTime::<Utc>::MAX_UTC;
    for ((team_id, user_id, product, access), via) in touched {
        let current = assignments.current_assignment(team_id, user_id, product, *access, latest);
        rows::assignment_state(
            tables, team_id, user_id, product, *access, current, *via, version,
        )?;
    }
    Ok(())
}

/// Versions of `assignment_state` rows: the wall clock in microseconds,
/// strictly increasing within a process even when batches follow each other
/// within a microsecond or the clock steps back. A key's newest state is
/// computed from the most complete history, so the highest version is the
/// one readers must keep (`argMax(.., version)`, `ReplacingMergeTree(version)`).
/// The rows of one key are written by the instance that owns its assignments
/// partition, which after a rebalance is a later writer.
#[derive(Debug, Default)]
pub(crate) struct StateVersions {
    last: u64,
}

impl StateVersions {
    /// The version of rows written at `now` (a clock before 1970 is an error).
    pub(crate) fn next(&mut self, now: DateTime<Utc>) -> Result<u64, Unstorable> {
        self.last = values::micros("version", now)?.max(self.last.saturating_add(1));
        Ok(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn state_versions_increase_within_one_second_and_when_the_clock_steps_back() {
        let mut versions = StateVersions::default();
        let t = Utc
            .timestamp_opt(1_795_931_568, 0)
            .single()
            .expect("a valid instant");
        let micros = |t: DateTime<Utc>| values::micros("version", t).expect("after 1970");
        let first = versions.next(t).expect("storable");
        assert_eq!(first, micros(t));
        let second = versions.next(t).expect("storable");
        let third = versions
            .next(t - chrono::TimeDelta::seconds(3))
            .expect("storable");
        assert!(first < second && second < third, "{first} {second} {third}");
        let later = t + chrono::TimeDelta::seconds(1);
        assert_eq!(versions.next(later), Ok(micros(later)));
    }

    #[test]
    fn a_clock_before_1970_is_an_error_not_version_zero() {
        let before = Utc.timestamp_opt(-1, 0).single().expect("a valid instant");
        let error = StateVersions::default()
            .next(before)
            .expect_err("not storable");
        assert_eq!(error.column, "version");
    }
}
