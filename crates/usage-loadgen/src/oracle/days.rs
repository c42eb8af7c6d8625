//! UTC dates as day numbers since 2000-01-01 (compact in the usage sets),
//! and inclusive date ranges.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub(super) const DAY_US: i64 = 86_400_000_000;
/// Days from 1970-01-01 to 2000-01-01: day numbers count from 2000-01-01.
const EPOCH_2000: i64 = 10_957;

/// A UTC date as a day number since 2000-01-01.
pub(super) type Day = u16;

pub(super) fn day_of_micros(us: i64) -> Option<Day> {
    Day::try_from(us.div_euclid(DAY_US) - EPOCH_2000).ok()
}

fn day_of_date(d: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or(NaiveDate::MIN);
    (d - epoch).num_days()
}

pub(super) fn date_of_day(d: Day) -> NaiveDate {
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or(NaiveDate::MIN);
    epoch + chrono::TimeDelta::days(i64::from(d))
}

/// An inclusive range of UTC dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DateRange {
    pub fn new(from: NaiveDate, to: NaiveDate) -> DateRange {
        DateRange { from, to }
    }

    /// Months in the range for the monthly average of a custom range: per
    /// calendar month touched, the days covered over the days of that month.
    pub fn calendar_months(&self) -> f64 {
        use chrono::Datelike;
        let mut covered: std::collections::BTreeMap<(i32, u32), u32> = Default::default();
        let mut d = self.from;
        while d <= self.to {
            *covered.entry((d.year(), d.month())).or_default() += 1;
            d = d.succ_opt().unwrap_or(NaiveDate::MAX);
        }
        covered
            .into_iter()
            .map(|((y, m), n)| {
                let first = NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(NaiveDate::MIN);
                let next = if m == 12 {
                    NaiveDate::from_ymd_opt(y + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(y, m + 1, 1)
                }
                .unwrap_or(NaiveDate::MAX);
                f64::from(n) / (next - first).num_days() as f64
            })
            .sum()
    }

    pub(super) fn contains_day(&self, d: Day) -> bool {
        let d = i64::from(d);
        d >= day_of_date(self.from) && d <= day_of_date(self.to)
    }
}
