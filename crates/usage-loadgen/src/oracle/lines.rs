//! The report's lines as the oracle sees them: per (current team, user,
//! product, access), days used in a range, last accessed (ever), tokens of
//! the windows opened in the range, the assignment in force and the
//! status — folded from the expected rows of the stored teams, merges
//! applied.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

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

impl Oracle {
    /// The report's lines for `team` (a current team; `None`: all teams)
    /// over `range`, from `rows` (the expected rows of every stored team).
    pub fn report_lines(
        &self,
        rows: &[ExpectedRow],
        team: Option<&str>,
        range: DateRange,
    ) -> BTreeMap<LineKey, ExpectedLine> {
        struct Acc {
            dates: BTreeSet<NaiveDate>,
            held: Option<CurrentAssignment>,
            tokens: u64,
        }
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
        let mut out = BTreeMap::new();
        for (key, a) in acc {
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
}
