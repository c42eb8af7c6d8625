//! Values as the columns store them, checked: a value outside what a column
//! holds faithfully is an [`Unstorable`] error naming the column, never
//! clamped (ClickHouse 18.16 takes any bits it is sent in RowBinary, so a
//! clamp or a wrap becomes a wrong row). And back: stored values to the
//! domain's, checked where a stored value can be one the writers never write.
//!
//! The dates and times a column holds faithfully, measured on 18.16: a `Date`
//! is a `UInt16` count of days and a `DateTime` a `UInt32` count of seconds,
//! but its date tables end early in 2106 — a `Date` past 2106-02-07 or a
//! `DateTime` past 2106-02-06 23:59:59 reads back as 1970 or `0000-00-00` —
//! and it parses text (the literals of every query) only through 2105-12-31:
//! `toDate('2106-01-01')` is `0000-00-00`, without an error. So both end
//! with 2105-12-31 ([`LAST_DAY`], [`LAST_SECOND`]); `tests/tables.rs` holds
//! these bounds against the live server. Both start at the epoch.

use super::{ColumnType, UnknownCode, UnknownLabel};
use chrono::{DateTime, Days, NaiveDate, Utc};
use std::fmt;

/// The last day a `Date` column holds (and queries can name): 2105-12-31.
pub const LAST_DAY: NaiveDate = match NaiveDate::from_ymd_opt(2105, 12, 31) {
    Some(day) => day,
    None => panic!("2105-12-31 is a date"),
};

/// `LAST_DAY` as stored: days since 1970-01-01.
pub const LAST_DAY_NUMBER: u16 = 49_672;

/// The last second a `DateTime` column holds: 2105-12-31T23:59:59Z, as
/// stored (seconds since the epoch).
pub const LAST_SECOND: u32 = 4_291_747_199;

/// The first day and second: 1970-01-01 and its midnight.
pub const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(day) => day,
    None => panic!("1970-01-01 is a date"),
};

/// Why a value cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Before the first value the column holds (an instant before 1970, a
    /// negative number).
    Below,
    /// After the last value the column holds.
    Above,
    /// A leap second (`23:59:60`): a `DateTime` has none.
    LeapSecond,
}

/// A value a column cannot hold faithfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstorable {
    pub column: &'static str,
    pub ty: ColumnType,
    /// The value, as text.
    pub value: String,
    pub why: Why,
}

impl Unstorable {
    fn new(column: &'static str, ty: ColumnType, value: impl fmt::Display, why: Why) -> Self {
        Unstorable {
            column,
            ty,
            value: value.to_string(),
            why,
        }
    }

    fn explain(&self) -> String {
        let range = match self.ty {
            ColumnType::Date => format!("1970-01-01 to {LAST_DAY}"),
            ColumnType::DateTime => format!("1970-01-01T00:00:00Z to {LAST_DAY}T23:59:59Z"),
            ColumnType::UInt16 => format!("0 to {}", u16::MAX),
            ColumnType::UInt32 => format!("0 to {}", u32::MAX),
            ColumnType::UInt64 => format!("0 to {}", u64::MAX),
            ColumnType::UInt8
            | ColumnType::String
            | ColumnType::Enum8(_)
            | ColumnType::AggregateState { .. } => String::new(),
        };
        match self.why {
            Why::Below => format!("before {range}"),
            Why::Above => format!("after {range}"),
            Why::LeapSecond => "a leap second".to_owned(),
        }
    }
}

impl fmt::Display for Unstorable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {}: {} cannot be stored as {}: {}",
            self.column,
            self.value,
            self.ty,
            self.explain()
        )
    }
}

impl std::error::Error for Unstorable {}

/// A stored value this code cannot read back faithfully: an unknown code or
/// label, or a value the writers never write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error(transparent)]
    Code(#[from] UnknownCode),
    #[error(transparent)]
    Label(#[from] UnknownLabel),
    #[error("column {column}: stored value {value} is {what}")]
    Value {
        column: &'static str,
        value: String,
        what: &'static str,
    },
}

/// A day as a `Date` column stores it: days since 1970-01-01, up to [`LAST_DAY`].
pub fn date(column: &'static str, day: NaiveDate) -> Result<u16, Unstorable> {
    let days = day.signed_duration_since(EPOCH).num_days();
    if days < 0 {
        return Err(Unstorable::new(column, ColumnType::Date, day, Why::Below));
    }
    u16::try_from(days)
        .ok()
        .filter(|d| *d <= LAST_DAY_NUMBER)
        .ok_or_else(|| Unstorable::new(column, ColumnType::Date, day, Why::Above))
}

/// An instant as a `DateTime('UTC')` column stores it: whole seconds since
/// the epoch (the column holds no fraction: it is dropped), up to
/// [`LAST_SECOND`]. A leap second counts as the second before it.
pub fn datetime(column: &'static str, at: DateTime<Utc>) -> Result<u32, Unstorable> {
    let seconds = at.timestamp();
    if seconds < 0 {
        return Err(unstorable_instant(column, at, Why::Below));
    }
    u32::try_from(seconds)
        .ok()
        .filter(|s| *s <= LAST_SECOND)
        .ok_or_else(|| unstorable_instant(column, at, Why::Above))
}

/// An instant as a `DateTime('UTC')` column and its `UInt32` companion of
/// microseconds within the second store it (`occurred_at`, `occurred_us`).
/// Sub-microsecond digits are dropped (the contract's precision is the
/// microsecond); a leap second cannot be stored.
pub fn datetime_us(column: &'static str, at: DateTime<Utc>) -> Result<(u32, u32), Unstorable> {
    let seconds = datetime(column, at)?;
    let nanos = at.timestamp_subsec_nanos();
    if nanos >= 1_000_000_000 {
        return Err(unstorable_instant(column, at, Why::LeapSecond));
    }
    Ok((seconds, nanos / 1_000))
}

fn unstorable_instant(column: &'static str, at: DateTime<Utc>, why: Why) -> Unstorable {
    Unstorable::new(
        column,
        ColumnType::DateTime,
        at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        why,
    )
}

/// An instant as microseconds since the epoch in a `UInt64` column (the
/// `version` of latest-wins tables); instants before the epoch cannot be stored.
pub fn micros(column: &'static str, at: DateTime<Utc>) -> Result<u64, Unstorable> {
    u64::try_from(at.timestamp_micros()).map_err(|_| {
        Unstorable::new(
            column,
            ColumnType::UInt64,
            at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            Why::Below,
        )
    })
}

/// A number in a `UInt16` column (`source_partition`).
pub fn uint16(column: &'static str, value: impl Into<i64>) -> Result<u16, Unstorable> {
    let value = value.into();
    u16::try_from(value).map_err(|_| out_of(column, ColumnType::UInt16, value))
}

/// A number in a `UInt64` column (`source_offset`).
pub fn uint64(column: &'static str, value: impl Into<i64>) -> Result<u64, Unstorable> {
    let value = value.into();
    u64::try_from(value).map_err(|_| out_of(column, ColumnType::UInt64, value))
}

fn out_of(column: &'static str, ty: ColumnType, value: i64) -> Unstorable {
    let why = if value < 0 { Why::Below } else { Why::Above };
    Unstorable::new(column, ty, value, why)
}

/// A stored `Date`: every `UInt16` is a day.
pub fn read_date(days: u16) -> NaiveDate {
    EPOCH
        .checked_add_days(Days::new(u64::from(days)))
        .expect("65535 days after 1970-01-01 is a date")
}

/// A stored `DateTime`: every `UInt32` is an instant.
pub fn read_datetime(seconds: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(i64::from(seconds), 0).expect("a UInt32 of seconds is an instant")
}

/// A stored `DateTime` and its microseconds within the second; microseconds
/// of a whole second or more are not something the writers write.
pub fn read_datetime_us(
    column: &'static str,
    seconds: u32,
    micros: u32,
) -> Result<DateTime<Utc>, Unreadable> {
    if micros >= 1_000_000 {
        return Err(Unreadable::Value {
            column,
            value: micros.to_string(),
            what: "not a number of microseconds within a second",
        });
    }
    Ok(read_datetime(seconds) + chrono::TimeDelta::microseconds(i64::from(micros)))
}

/// Stored microseconds since the epoch (a `version`).
pub fn read_micros(column: &'static str, micros: u64) -> Result<DateTime<Utc>, Unreadable> {
    i64::try_from(micros)
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| Unreadable::Value {
            column,
            value: micros.to_string(),
            what: "beyond the instants this code represents",
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().expect("a date")
    }

    fn instant(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("an instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_bounds_are_the_dates_they_say() {
        assert_eq!(EPOCH, day("1970-01-01"));
        assert_eq!(read_date(LAST_DAY_NUMBER), LAST_DAY);
        assert_eq!(read_datetime(LAST_SECOND), instant("2105-12-31T23:59:59Z"));
        assert_eq!(read_datetime(0), DateTime::UNIX_EPOCH);
    }

    #[test]
    fn dates_from_the_epoch_to_the_last_day_are_stored() {
        assert_eq!(date("usage_date", day("1970-01-01")), Ok(0));
        assert_eq!(date("usage_date", day("2026-03-01")), Ok(20_513));
        assert_eq!(date("usage_date", day("2105-12-31")), Ok(LAST_DAY_NUMBER));
        let before = date("usage_date", day("1969-12-31")).expect_err("before the epoch");
        assert_eq!((before.column, before.why), ("usage_date", Why::Below));
        let after = date("usage_date", day("2106-01-01")).expect_err("after the last day");
        assert_eq!(after.why, Why::Above);
        assert_eq!(
            after.to_string(),
            "column usage_date: 2106-01-01 cannot be stored as Date: after 1970-01-01 to 2105-12-31"
        );
        assert_eq!(
            date("d", day("2149-06-06")).map_err(|e| e.why),
            Err(Why::Above),
            "the UInt16 limit is not the range"
        );
    }

    #[test]
    fn instants_from_the_epoch_to_the_last_second_are_stored() {
        assert_eq!(datetime("t", instant("1970-01-01T00:00:00Z")), Ok(0));
        assert_eq!(
            datetime("t", instant("2105-12-31T23:59:59.999999Z")),
            Ok(LAST_SECOND),
            "the fraction is dropped, not rounded up"
        );
        let before = datetime("t", instant("1969-12-31T23:59:59.999999Z")).expect_err("before");
        assert_eq!(before.why, Why::Below);
        assert_eq!(
            datetime("t", instant("2106-01-01T00:00:00Z")).map_err(|e| e.why),
            Err(Why::Above)
        );
        assert_eq!(
            datetime("t", instant("2106-02-07T06:28:15Z")).map_err(|e| e.why),
            Err(Why::Above),
            "the UInt32 limit is not the range"
        );
    }

    #[test]
    fn instants_with_microseconds_keep_them_and_refuse_leap_seconds() {
        assert_eq!(
            datetime_us("occurred_at", instant("2026-03-01T00:00:01.000250Z")),
            Ok((1_772_323_201, 250))
        );
        assert_eq!(
            datetime_us("occurred_at", instant("1970-01-01T00:00:00Z")),
            Ok((0, 0))
        );
        assert_eq!(
            datetime_us("occurred_at", instant("2105-12-31T23:59:59.999999Z")),
            Ok((LAST_SECOND, 999_999))
        );
        assert_eq!(
            datetime_us("occurred_at", instant("2106-01-01T00:00:00Z")).map_err(|e| e.why),
            Err(Why::Above)
        );
        assert_eq!(
            datetime_us("occurred_at", instant("1969-12-31T23:59:59Z")).map_err(|e| e.why),
            Err(Why::Below)
        );
        let leap = instant("2016-12-31T23:59:60.5Z");
        assert_eq!(
            datetime_us("occurred_at", leap).map_err(|e| e.why),
            Err(Why::LeapSecond)
        );
    }

    #[test]
    fn versions_are_microseconds_from_the_epoch() {
        assert_eq!(micros("version", DateTime::UNIX_EPOCH), Ok(0));
        assert_eq!(
            micros("version", instant("2026-03-01T00:00:01.000250Z")),
            Ok(1_772_323_201_000_250)
        );
        assert_eq!(
            micros("version", instant("1969-12-31T23:59:59.999999Z")).map_err(|e| e.why),
            Err(Why::Below)
        );
    }

    #[test]
    fn numbers_out_of_their_column_type_are_not_stored() {
        assert_eq!(uint16("source_partition", 0), Ok(0));
        assert_eq!(uint16("source_partition", 65_535), Ok(u16::MAX));
        let above = uint16("source_partition", 65_536).expect_err("too large");
        assert_eq!((above.column, above.why), ("source_partition", Why::Above));
        assert_eq!(
            uint16("source_partition", -1).map_err(|e| e.why),
            Err(Why::Below)
        );
        assert_eq!(uint64("source_offset", i64::MAX), Ok(i64::MAX as u64));
        assert_eq!(uint64("source_offset", 0), Ok(0));
        assert_eq!(
            uint64("source_offset", -1001).map_err(|e| e.why),
            Err(Why::Below),
            "librdkafka's logical offsets (OFFSET_INVALID) are not offsets"
        );
    }

    #[test]
    fn stored_values_read_back_as_written() {
        for text in ["1970-01-01", "2026-02-28", "2105-12-31"] {
            let d = day(text);
            assert_eq!(read_date(date("d", d).expect("storable")), d);
        }
        assert_eq!(read_date(u16::MAX), day("2149-06-06"));
        for text in [
            "1970-01-01T00:00:00Z",
            "2026-03-01T08:30:00.123456Z",
            "2105-12-31T23:59:59.999999Z",
        ] {
            let t = instant(text);
            let (s, us) = datetime_us("t", t).expect("storable");
            assert_eq!(read_datetime_us("t", s, us), Ok(t));
            assert_eq!(read_micros("v", micros("v", t).expect("storable")), Ok(t));
        }
        assert!(matches!(
            read_datetime_us("occurred_us", 0, 1_000_000),
            Err(Unreadable::Value {
                column: "occurred_us",
                ..
            })
        ));
        assert!(read_micros("version", u64::MAX).is_err());
    }
}
