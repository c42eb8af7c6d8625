//! Frequent and occasional users, and what moving a seat to Flex would
//! cost (docs/rules.md rule 11).
//!
//! > *See which users are frequent or occasional users of a product …
//! > consider assigning them to prepaid Flex.* — the vendor's help page.
//!
//! The page names the two kinds of user but not where one ends; this project
//! classes each report line (team, user, product, access) by its **monthly
//! average** as the report shows it (days used ÷ months in range, to two
//! decimals: [`shown_average`]) against a per-deployment threshold,
//! [`FrequentDaysPerMonth`] (5 by default):
//!
//! - [`UsageClass::Unused`]: no day used in the range;
//! - [`UsageClass::Occasional`]: used, on average on fewer than the
//!   threshold's days a month;
//! - [`UsageClass::Frequent`]: on average on at least that many.
//!
//! The shown average, not the exact quotient, decides: a line showing 5.00
//! is never called occasional under a threshold of 5.
//!
//! What a seat user would have cost on Flex ([`flex_tokens_if_moved`]): each
//! day used counts the product's daily rate in force at the start (00:00
//! UTC) of that day ([`RateTable::rate_at`]); a day with no rate in force
//! counts 0. It is an estimate: real Flex usage is charged per 24-hour
//! window (rule 4), so two consecutive days inside one window would cost
//! one rate, not two — the estimate is an upper bound of that.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};

use crate::charge::RateTable;
use crate::event::Tokens;

/// How often a line is used over the range: ordered from least to most.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum UsageClass {
    /// No day used in the range.
    Unused,
    /// Used on fewer than the threshold's days a month, on average.
    Occasional,
    /// Used on at least the threshold's days a month, on average.
    Frequent,
}

impl UsageClass {
    /// Every class, from least to most used.
    pub const ALL: [UsageClass; 3] = [
        UsageClass::Unused,
        UsageClass::Occasional,
        UsageClass::Frequent,
    ];

    /// The stable name (`unused`, `occasional`, `frequent`).
    pub fn as_str(self) -> &'static str {
        match self {
            UsageClass::Unused => "unused",
            UsageClass::Occasional => "occasional",
            UsageClass::Frequent => "frequent",
        }
    }

    /// The class named `name`.
    pub fn from_name(name: &str) -> Option<UsageClass> {
        UsageClass::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for UsageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The threshold between occasional and frequent: days used per month on
/// average (a number from 0.01 to 31, at most two decimals, like the
/// average it is compared with).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct FrequentDaysPerMonth(f64);

/// Why a threshold is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("days per month must be a number from 0.01 to 31 with at most two decimals, got {0:?}")]
pub struct ThresholdError(String);

impl FrequentDaysPerMonth {
    /// The default: 5 days a month, about one working day a week.
    pub const DEFAULT: FrequentDaysPerMonth = FrequentDaysPerMonth(5.0);

    /// A threshold of `days` per month (0.01 to 31, two decimals at most).
    pub fn new(days: f64) -> Result<FrequentDaysPerMonth, ThresholdError> {
        let hundredths = (days * 100.0).round();
        let whole_hundredths = (days * 100.0 - hundredths).abs() < 1e-6;
        if days.is_finite() && (0.01..=31.0).contains(&days) && whole_hundredths {
            Ok(FrequentDaysPerMonth(hundredths / 100.0))
        } else {
            Err(ThresholdError(days.to_string()))
        }
    }

    /// The days per month.
    pub fn days(self) -> f64 {
        self.0
    }
}

impl Default for FrequentDaysPerMonth {
    fn default() -> FrequentDaysPerMonth {
        FrequentDaysPerMonth::DEFAULT
    }
}

impl FromStr for FrequentDaysPerMonth {
    type Err = ThresholdError;

    fn from_str(text: &str) -> Result<FrequentDaysPerMonth, ThresholdError> {
        let days: f64 = text
            .trim()
            .parse()
            .map_err(|_| ThresholdError(text.to_owned()))?;
        FrequentDaysPerMonth::new(days).map_err(|_| ThresholdError(text.to_owned()))
    }
}

impl fmt::Display for FrequentDaysPerMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The monthly average as the report shows it: `days_used / months`
/// rounded to two decimals (0 when `months` is not positive).
pub fn shown_average(days_used: u32, months: f64) -> f64 {
    if months > 0.0 {
        (f64::from(days_used) / months * 100.0).round() / 100.0
    } else {
        0.0
    }
}

/// The usage class of a line used on `days_used` days over a range of
/// `months` months ([`crate::range::ReportRange::months`]).
pub fn usage_class(days_used: u32, months: f64, frequent_at: FrequentDaysPerMonth) -> UsageClass {
    if days_used == 0 {
        UsageClass::Unused
    } else if shown_average(days_used, months) < frequent_at.days() {
        UsageClass::Occasional
    } else {
        UsageClass::Frequent
    }
}

/// The Flex tokens `product` would have cost on the UTC `days` used: per
/// day, the daily rate in force at its start (00:00 UTC); a day with no
/// rate in force counts 0.
pub fn flex_tokens_if_moved<I>(rates: &RateTable, product: &str, days: I) -> Tokens
where
    I: IntoIterator<Item = NaiveDate>,
{
    let millis = days
        .into_iter()
        .filter_map(|d| rates.rate_at(product, Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))))
        .fold(0u64, |sum, t| sum.saturating_add(t.millis()));
    Tokens::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ProductRate;

    fn at(d: &str) -> NaiveDate {
        NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn classes_by_the_shown_average() {
        let five = FrequentDaysPerMonth::DEFAULT;
        assert_eq!(usage_class(0, 1.0, five), UsageClass::Unused);
        assert_eq!(usage_class(1, 1.0, five), UsageClass::Occasional);
        assert_eq!(usage_class(4, 1.0, five), UsageClass::Occasional);
        assert_eq!(usage_class(5, 1.0, five), UsageClass::Frequent);
        assert_eq!(usage_class(14, 3.0, five), UsageClass::Occasional);
        assert_eq!(usage_class(15, 3.0, five), UsageClass::Frequent);
        // 4.999 shows as 5.00: frequent, as the column says.
        assert_eq!(shown_average(4999, 1000.0), 5.0);
        assert_eq!(usage_class(4999, 1000.0, five), UsageClass::Frequent);
        assert_eq!(usage_class(4994, 1000.0, five), UsageClass::Occasional);
        let half = "2.5".parse::<FrequentDaysPerMonth>().expect("valid");
        assert_eq!(usage_class(2, 1.0, half), UsageClass::Occasional);
        assert_eq!(usage_class(5, 2.0, half), UsageClass::Frequent);
    }

    #[test]
    fn thresholds_are_checked() {
        for good in ["5", "0.5", "31", "0.01", " 12.25 "] {
            assert!(good.parse::<FrequentDaysPerMonth>().is_ok(), "{good}");
        }
        for bad in ["0", "-1", "31.5", "NaN", "inf", "five", "", "2.125"] {
            assert!(bad.parse::<FrequentDaysPerMonth>().is_err(), "{bad}");
        }
        assert_eq!(FrequentDaysPerMonth::DEFAULT.to_string(), "5");
        assert_eq!(
            UsageClass::from_name("occasional"),
            Some(UsageClass::Occasional)
        );
        assert_eq!(UsageClass::from_name("rare"), None);
    }

    #[test]
    fn tokens_if_moved_take_the_rate_at_the_start_of_each_day() {
        let mut rates = RateTable::new();
        let rate = |millis: u64, from: chrono::DateTime<Utc>| ProductRate {
            product: "cad".into(),
            name: None,
            flex_tokens_per_day: Tokens::from_millis(millis),
            effective_from: from,
        };
        let midnight = |d: &str| Utc.from_utc_datetime(&at(d).and_time(NaiveTime::MIN));
        rates.apply(
            "r1",
            midnight("2026-01-01"),
            &rate(7_000, midnight("2026-01-02")),
        );
        // Takes effect during the 10th: the 10th still costs the old rate.
        rates.apply(
            "r2",
            midnight("2026-01-01"),
            &rate(9_500, midnight("2026-01-10") + chrono::TimeDelta::hours(1)),
        );
        let days = ["2026-01-01", "2026-01-02", "2026-01-10", "2026-01-11"].map(at);
        // No rate on the 1st: 0; 7 + 7 + 9.5.
        assert_eq!(
            flex_tokens_if_moved(&rates, "cad", days),
            Tokens::from_millis(23_500)
        );
        assert_eq!(flex_tokens_if_moved(&rates, "other", days), Tokens::ZERO);
        assert_eq!(flex_tokens_if_moved(&rates, "cad", []), Tokens::ZERO);
    }
}
