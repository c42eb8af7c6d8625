//! Report date ranges (docs/rules.md rule 5).
//!
//! All dates are **UTC dates**, both ends **inclusive**. "Today" is the UTC
//! date of the `now` passed in (no clock is read here).
//!
//! | preset (stable name) | dates as of `today` |
//! |---|---|
//! | `last_30_days` | rolling: `today - 29 days ..= today` (30 days, today included) |
//! | `last_3_months` | the 3 whole calendar months before the current one |
//! | `last_6_months` | the 6 whole calendar months before the current one |
//! | `last_9_months` | the 9 whole calendar months before the current one |
//! | `last_12_months` | the 12 whole calendar months before the current one |
//!
//! The month presets are *completed* months: the current month is excluded
//! (on 2026-01-10, `last_3_months` is 2025-10-01 ..= 2025-12-31; on
//! 2024-03-15 it is 2023-12-01 ..= 2024-02-29). A custom range `{from, to}`
//! needs `from <= to`, `to <= today`, and at most [`MAX_CUSTOM_DAYS`] days.
//!
//! **Months in range** (the divisor of the monthly average): a month preset
//! counts its months (3, 6, 9, 12); `last_30_days` counts as exactly **1**
//! month (it is the report's "monthly" view: days used over the last 30 days
//! *is* the monthly figure); a custom range counts calendar months
//! pro rata — each calendar month it touches contributes
//! `days covered / days in that month` — so a custom range of whole months
//! counts exactly like the matching preset (2025-10-01 ..= 2025-12-31 is 3.0),
//! and February 2024 (29 days) is 1.0, as is January (31 days).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};

/// The longest custom range accepted, in days (a leap year).
pub const MAX_CUSTOM_DAYS: u32 = 366;

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not one of the stable preset names.
    #[error("unknown date range preset {0:?} (expected one of last_30_days, last_3_months, last_6_months, last_9_months, last_12_months)")]
    UnknownPreset(String),
    /// `from > to`.
    #[error("date range starts after it ends: {from} > {to}")]
    Reversed {
        /// The first date asked for.
        from: NaiveDate,
        /// The last date asked for.
        to: NaiveDate,
    },
    /// Longer than [`MAX_CUSTOM_DAYS`].
    #[error("date range of {days} days is longer than the maximum of {max} days")]
    TooLong {
        /// Days asked for.
        days: u32,
        /// Days allowed.
        max: u32,
    },
    /// A custom range ending after today (UTC).
    #[error("date range ends after today (UTC): {to} > {today}")]
    EndsAfterToday {
        /// The last date asked for.
        to: NaiveDate,
        /// Today, UTC.
        today: NaiveDate,
    },
    /// A date beyond what the calendar supports.
    #[error("date out of the supported calendar range")]
    OutOfCalendar,
}

/// An inclusive range of UTC dates, `from <= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateRange {
    from: NaiveDate,
    to: NaiveDate,
}

impl DateRange {
    /// An inclusive range; refuses `from > to`.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<DateRange, RangeError> {
        if from > to {
            return Err(RangeError::Reversed { from, to });
        }
        Ok(DateRange { from, to })
    }

    /// First date (inclusive).
    pub fn from(&self) -> NaiveDate {
        self.from
    }

    /// Last date (inclusive).
    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// Number of dates in the range (at least 1).
    pub fn days(&self) -> u32 {
        // `from <= to`, and chrono dates span far less than u32::MAX days.
        u32::try_from((self.to - self.from).num_days() + 1).unwrap_or(u32::MAX)
    }

    /// Whether `date` is in the range (both ends inclusive).
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }

    /// Whether the UTC date of `t` is in the range.
    pub fn contains_instant(&self, t: DateTime<Utc>) -> bool {
        self.contains(t.date_naive())
    }

    /// Calendar months covered, pro rata: each calendar month touched
    /// contributes `days covered / days in the month` (see the module docs).
    pub fn calendar_months(&self) -> f64 {
        let mut months = 0.0;
        let mut start = self.from;
        loop {
            let first = start.with_day(1).unwrap_or(start);
            let next_first = first.checked_add_months(Months::new(1));
            let month_end = next_first
                .and_then(|d| d.pred_opt())
                .unwrap_or(NaiveDate::MAX);
            let month_days = (month_end - first).num_days() + 1;
            let end = month_end.min(self.to);
            let covered = (end - start).num_days() + 1;
            months += covered as f64 / month_days as f64;
            match next_first {
                Some(next) if end < self.to => start = next,
                _ => break,
            }
        }
        months
    }
}

impl fmt::Display for DateRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.from, self.to)
    }
}

/// The report's date range presets, with their stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangePreset {
    /// `last_30_days`: today and the 29 days before.
    Last30Days,
    /// `last_3_months`: the 3 completed calendar months before the current one.
    Last3Months,
    /// `last_6_months`: the 6 completed calendar months before the current one.
    Last6Months,
    /// `last_9_months`: the 9 completed calendar months before the current one.
    Last9Months,
    /// `last_12_months`: the 12 completed calendar months before the current one.
    Last12Months,
}

impl RangePreset {
    /// Every preset, shortest first.
    pub const ALL: [RangePreset; 5] = [
        RangePreset::Last30Days,
        RangePreset::Last3Months,
        RangePreset::Last6Months,
        RangePreset::Last9Months,
        RangePreset::Last12Months,
    ];

    /// The stable name (`last_30_days`, `last_3_months`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RangePreset::Last30Days => "last_30_days",
            RangePreset::Last3Months => "last_3_months",
            RangePreset::Last6Months => "last_6_months",
            RangePreset::Last9Months => "last_9_months",
            RangePreset::Last12Months => "last_12_months",
        }
    }

    /// The whole calendar months of a month preset; `None` for `last_30_days`.
    pub fn whole_months(self) -> Option<u32> {
        match self {
            RangePreset::Last30Days => None,
            RangePreset::Last3Months => Some(3),
            RangePreset::Last6Months => Some(6),
            RangePreset::Last9Months => Some(9),
            RangePreset::Last12Months => Some(12),
        }
    }

    /// The dates of the preset as of `today` (a UTC date).
    pub fn dates(self, today: NaiveDate) -> Result<DateRange, RangeError> {
        match self.whole_months() {
            None => {
                let from = today
                    .checked_sub_days(chrono::Days::new(29))
                    .ok_or(RangeError::OutOfCalendar)?;
                DateRange::new(from, today)
            }
            Some(n) => {
                let this_month = today.with_day(1).ok_or(RangeError::OutOfCalendar)?;
                let to = this_month.pred_opt().ok_or(RangeError::OutOfCalendar)?;
                let from = this_month
                    .checked_sub_months(Months::new(n))
                    .ok_or(RangeError::OutOfCalendar)?;
                DateRange::new(from, to)
            }
        }
    }
}

impl fmt::Display for RangePreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RangePreset {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<RangePreset, RangeError> {
        RangePreset::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| RangeError::UnknownPreset(s.to_owned()))
    }
}

/// The date range a report is asked for: a preset, or custom dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportRange {
    /// A named preset, resolved against today.
    Preset(RangePreset),
    /// Inclusive custom dates (checked against today by [`ReportRange::resolve`]).
    Custom(DateRange),
}

impl ReportRange {
    /// A custom range, `from <= to`, at most [`MAX_CUSTOM_DAYS`] days.
    pub fn custom(from: NaiveDate, to: NaiveDate) -> Result<ReportRange, RangeError> {
        let range = DateRange::new(from, to)?;
        if range.days() > MAX_CUSTOM_DAYS {
            return Err(RangeError::TooLong {
                days: range.days(),
                max: MAX_CUSTOM_DAYS,
            });
        }
        Ok(ReportRange::Custom(range))
    }

    /// The dates as of `now` (its UTC date is "today"). A custom range must
    /// end on or before today and span at most [`MAX_CUSTOM_DAYS`] days.
    pub fn resolve(&self, now: DateTime<Utc>) -> Result<DateRange, RangeError> {
        let today = now.date_naive();
        match *self {
            ReportRange::Preset(p) => p.dates(today),
            ReportRange::Custom(range) => {
                if range.days() > MAX_CUSTOM_DAYS {
                    return Err(RangeError::TooLong {
                        days: range.days(),
                        max: MAX_CUSTOM_DAYS,
                    });
                }
                if range.to > today {
                    return Err(RangeError::EndsAfterToday {
                        to: range.to,
                        today,
                    });
                }
                Ok(range)
            }
        }
    }

    /// Months in range, the monthly average's divisor (see the module docs):
    /// N for the month presets, 1 for `last_30_days`, calendar months pro
    /// rata for a custom range.
    pub fn months(&self) -> f64 {
        match *self {
            ReportRange::Preset(p) => p.whole_months().map_or(1.0, f64::from),
            ReportRange::Custom(range) => range.calendar_months(),
        }
    }
}
