//! The report's lines as the oracle sees them: per (current team, user,
//! product, access), days used in a range, last accessed (ever), tokens of
//! the windows opened in the range, the assignment in force and the
//! status — folded from the expected rows of the stored teams, merges
//! applied.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::days::DAY_US;
use super::{CurrentAssignment, DateRange, ExpectedRow, Oracle};
use crate::Access;

/// (current team, user, product, access label).
pub type LineKey = (String, String, String, String);

/// What the oracle says of one report line.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedLine {
    pub days_used: u64,
    pub last_accessed: Option<NaiveDate>,
    pub tokens_milli: u64,
    pub assigned_date: Option<NaiveDate>,
    pub status: String,
}

/// What the oracle folds per line before the range is applied.
struct Acc {
    dates: BTreeSet<NaiveDate>,
    held: Option<CurrentAssignment>,
    tokens: u64,
}

/// The occasional seat users tile as the oracle sees it (docs/rules.md
/// rule 11): seats assigned now, used in the range on fewer than the
/// threshold's days a month on average.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OccasionalSeats {
    /// Distinct users holding such a seat.
    pub seat_users: u64,
    /// Such seats.
    pub seats: u64,
    /// Per such seat and day used in the range, the rate in force at 00:00
    /// UTC that day (0 without one), in thousandths.
    pub flex_tokens_if_moved_milli: u64,
}

/// The usage class of a line used on `days_used` days over `months` months
/// with the threshold `frequent_days_per_month`: `unused` without a day,
/// `occasional` when the monthly average as the report shows it (to two
/// decimals) is below the threshold, else `frequent`.
pub fn usage_class(days_used: u64, months: f64, frequent_days_per_month: f64) -> &'static str {
    if days_used == 0 {
        return "unused";
    }
    let shown = (days_used as f64 / months * 100.0).round() / 100.0;
    if shown < frequent_days_per_month {
        "occasional"
    } else {
        "frequent"
    }
}

impl Oracle {
    /// Per line of `team` (`None`: all teams), every date used (ever) and
    /// the assignment in force and tokens of the windows opened in `range`.
    fn fold_lines(
        &self,
        rows: &[ExpectedRow],
        team: Option<&str>,
        range: DateRange,
    ) -> BTreeMap<LineKey, Acc> {
        let mut acc: BTreeMap<LineKey, Acc> = BTreeMap::new();
        for row in rows {
            if team.is_some_and(|t| t != row.current_team_id) {
                continue;
            }
            let key = (
                row.current_team_id.clone(),
                row.user_id.clone(),
                row.product.clone(),
                row.access.as_str().to_owned(),
            );
            let entry = acc.entry(key).or_insert(Acc {
                dates: BTreeSet::new(),
                held: None,
                tokens: 0,
            });
            entry.dates.extend(self.usage_dates(
                &row.team_id,
                &row.user_id,
                &row.product,
                row.access,
            ));
            if let Some(a) = &row.assignment {
                if entry.held.as_ref().is_none_or(|h| a.since < h.since) {
                    entry.held = Some(a.clone());
                }
            }
            if row.access == Access::Flex {
                entry.tokens += self
                    .windows(&row.user_id, &row.product)
                    .iter()
                    .filter(|w| w.team_id == row.team_id)
                    .filter(|w| {
                        let d = w.start.date_naive();
                        range.from <= d && d <= range.to
                    })
                    .map(|w| w.tokens_milli)
                    .sum::<u64>();
            }
        }
        acc
    }

    /// The report's lines for `team` (a current team; `None`: all teams)
    /// over `range`, from `rows` (the expected rows of every stored team).
    pub fn report_lines(
        &self,
        rows: &[ExpectedRow],
        team: Option<&str>,
        range: DateRange,
    ) -> BTreeMap<LineKey, ExpectedLine> {
        let mut out = BTreeMap::new();
        for (key, a) in self.fold_lines(rows, team, range) {
            let days = a
                .dates
                .iter()
                .filter(|d| range.from <= **d && **d <= range.to)
                .count() as u64;
            let access = if key.3 == "flex" {
                Access::Flex
            } else {
                Access::Seat
            };
            let Some(status) = Oracle::status_of(a.held.as_ref(), access, days > 0, range) else {
                continue;
            };
            out.insert(
                key,
                ExpectedLine {
                    days_used: days,
                    last_accessed: a.dates.last().copied(),
                    tokens_milli: a.tokens,
                    assigned_date: a.held.map(|h| h.since.date_naive()),
                    status: status.as_str().to_owned(),
                },
            );
        }
        out
    }

    /// The occasional seat users of `team` (`None`: all teams) over `range`
    /// of `months` months, with the threshold `frequent_days_per_month`.
    pub fn occasional_seats(
        &self,
        rows: &[ExpectedRow],
        team: Option<&str>,
        range: DateRange,
        months: f64,
        frequent_days_per_month: f64,
    ) -> OccasionalSeats {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN);
        let mut users: BTreeSet<String> = BTreeSet::new();
        let mut out = OccasionalSeats::default();
        for ((_, user, product, access), a) in self.fold_lines(rows, team, range) {
            if access != "seat" || a.held.is_none() {
                continue;
            }
            let used: Vec<NaiveDate> = a
                .dates
                .iter()
                .copied()
                .filter(|d| range.from <= *d && *d <= range.to)
                .collect();
            if usage_class(used.len() as u64, months, frequent_days_per_month) != "occasional" {
                continue;
            }
            out.seats += 1;
            users.insert(user);
            for d in used {
                let midnight = (d - epoch).num_days() * DAY_US;
                out.flex_tokens_if_moved_milli += self.rate_at(&product, midnight).unwrap_or(0);
            }
        }
        out.seat_users = users.len() as u64;
        out
    }
}
