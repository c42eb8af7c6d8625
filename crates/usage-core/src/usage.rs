//! Days used, last accessed, monthly average, Flex tile (docs/rules.md rules 1, 5).
//!
//! > *Last accessed date represents the most recent date (using UTC) on which
//! > a license authorization call was made.* — the vendor's help page.
//!
//! - Only online usage counts ([`is_reportable`], rule 1): *"offline usage
//!   isn't reported in the Usage Report"*.
//! - **Days used** = distinct UTC dates with at least one reportable
//!   authorization, per (team, user, product), in the range, both ends
//!   inclusive ([`days_used`]).
//! - **Last accessed** = the most recent UTC date of an authorization as of
//!   `now` — not cut by the range; usage stamped after `now` is ignored
//!   ([`last_accessed`]).
//! - **Monthly average** = days used / months in range ([`monthly_average`];
//!   months in range are defined in [`crate::range`]).
//!
//! These are sets of dates, so duplicates and replays cannot change them.
//! [`UsageBook`] is the reference rollup (the warehouse's rollups compute the
//! same numbers; tests hold them to it): it records the date of every
//! reportable authorization under the team stamped at ingest, and reads rows
//! per **current** team (merges resolved at read time, rule 2), taking the
//! union of the merged teams' dates.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};

use crate::event::{Access, Authorization, Tokens};
use crate::merge::TeamMerges;
use crate::range::{DateRange, ReportRange};

/// Rule 1: only online usage is reported (`online: false` is counted in a
/// metric by the ingest, not stored, not an error).
pub fn is_reportable(auth: &Authorization) -> bool {
    auth.online
}

/// The UTC date a usage counts for.
pub fn usage_date(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

/// Days used: distinct UTC dates of `times` inside `range` (inclusive).
pub fn days_used<I>(times: I, range: &DateRange) -> u32
where
    I: IntoIterator<Item = DateTime<Utc>>,
{
    let dates: BTreeSet<NaiveDate> = times
        .into_iter()
        .map(usage_date)
        .filter(|d| range.contains(*d))
        .collect();
    u32::try_from(dates.len()).unwrap_or(u32::MAX)
}

/// Last accessed: the most recent UTC date of `times` at or before `now`,
/// whatever the report's range.
pub fn last_accessed<I>(times: I, now: DateTime<Utc>) -> Option<NaiveDate>
where
    I: IntoIterator<Item = DateTime<Utc>>,
{
    times
        .into_iter()
        .filter(|t| *t <= now)
        .max()
        .map(usage_date)
}

/// Monthly average = days used / months in range (see [`crate::range`]:
/// N for "last N months", 1 for "last 30 days", calendar months pro rata for
/// a custom range).
pub fn monthly_average(days_used: u32, range: &ReportRange) -> f64 {
    let months = range.months();
    if months > 0.0 {
        f64::from(days_used) / months
    } else {
        0.0
    }
}

const SEAT_BIT: u8 = 1;
const FLEX_BIT: u8 = 2;

fn access_bit(access: Access) -> u8 {
    match access {
        Access::Seat => SEAT_BIT,
        Access::Flex => FLEX_BIT,
    }
}

/// One row of the usage rollup: a (current team, user, product).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsageRow {
    /// The current team (after merges).
    pub team_id: String,
    /// The user.
    pub user_id: String,
    /// The product (any version).
    pub product: String,
    /// Distinct UTC dates with usage in the range.
    pub days_used: u32,
    /// Of those, the dates with Flex usage.
    pub flex_days_used: u32,
    /// Most recent UTC date of usage as of now (not cut by the range).
    pub last_accessed: Option<NaiveDate>,
}

/// The days of use of every (team, user, product): the reference rollup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBook {
    /// (team, user, product) → date → accesses used that day (bit set).
    days: BTreeMap<(String, String, String), BTreeMap<NaiveDate, u8>>,
}

impl UsageBook {
    /// An empty rollup.
    pub fn new() -> UsageBook {
        UsageBook::default()
    }

    /// Records a reportable authorization under the team stamped at ingest.
    /// Returns whether it added a new day (or access on a day); offline usage
    /// is ignored. Idempotent.
    pub fn record(&mut self, team_id: &str, auth: &Authorization) -> bool {
        if !is_reportable(auth) {
            return false;
        }
        let key = (
            team_id.to_owned(),
            auth.user_id.clone(),
            auth.product.clone(),
        );
        let mask = self
            .days
            .entry(key)
            .or_default()
            .entry(usage_date(auth.occurred_at))
            .or_insert(0);
        let before = *mask;
        *mask |= access_bit(auth.access);
        *mask != before
    }

    /// The rows of the report: per (current team, user, product) with usage
    /// at or before `now`, sorted.
    pub fn rows(
        &self,
        range: &DateRange,
        now: DateTime<Utc>,
        merges: &TeamMerges,
    ) -> Vec<UsageRow> {
        let today = usage_date(now);
        let mut merged: BTreeMap<(&str, &str, &str), BTreeMap<NaiveDate, u8>> = BTreeMap::new();
        for ((team, user, product), dates) in &self.days {
            let days = merged
                .entry((merges.current(team), user.as_str(), product.as_str()))
                .or_default();
            for (date, mask) in dates.range(..=today) {
                *days.entry(*date).or_insert(0) |= mask;
            }
        }
        merged
            .into_iter()
            .filter(|(_, days)| !days.is_empty())
            .map(|((team, user, product), days)| {
                let in_range = || days.range(range.from()..=range.to());
                UsageRow {
                    team_id: team.to_owned(),
                    user_id: user.to_owned(),
                    product: product.to_owned(),
                    days_used: count(in_range()),
                    flex_days_used: count(in_range().filter(|(_, m)| **m & FLEX_BIT != 0)),
                    last_accessed: days.keys().next_back().copied(),
                }
            })
            .collect()
    }
}

fn count<I: Iterator>(items: I) -> u32 {
    u32::try_from(items.count()).unwrap_or(u32::MAX)
}

/// The Flex overview tile (rule 5): tokens consumed in the range, distinct
/// users with Flex usage in it, and the sum of their (Flex) days used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlexTile {
    /// Tokens consumed: charges whose window starts in the range.
    pub tokens: Tokens,
    /// Distinct users with Flex usage in the range.
    pub users: u64,
    /// The sum of their Flex days used.
    pub days_used: u64,
}

/// Builds the Flex tile from usage rows (of the selected scope) and the
/// tokens of the charges whose window starts in the range
/// ([`crate::charge::tokens_in_range`]).
pub fn flex_tile<'a, I>(rows: I, tokens: Tokens) -> FlexTile
where
    I: IntoIterator<Item = &'a UsageRow>,
{
    let mut users: BTreeSet<&str> = BTreeSet::new();
    let mut days_used = 0u64;
    for row in rows {
        if row.flex_days_used > 0 {
            users.insert(&row.user_id);
            days_used += u64::from(row.flex_days_used);
        }
    }
    FlexTile {
        tokens,
        users: users.len() as u64,
        days_used,
    }
}
