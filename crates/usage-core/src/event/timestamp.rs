//! RFC 3339 timestamps: any offset in, UTC out, microsecond precision.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp with an offset: {0}")]
pub struct TimestampError(pub String);

/// The shape every contract timestamp must have, as the JSON Schemas spell it
/// (`pattern`): `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, fraction of 1 to 9
/// digits, `T` and `Z` in either case (RFC 3339 §5.6).
pub const TIMESTAMP_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$";

/// Parses an RFC 3339 timestamp (any offset, `Z` included), normalised to UTC
/// and truncated to whole microseconds.
///
/// Stricter than chrono's own RFC 3339 parser: the text must have exactly the
/// shape of [`TIMESTAMP_PATTERN`] (no space separator, no offset-less local
/// time, at most nanosecond digits), and then be a real instant (month 13,
/// February 30 or offset `+24:00` are refused).
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, TimestampError> {
    if !has_rfc3339_shape(text.as_bytes()) {
        return Err(TimestampError(
            "expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM".to_owned(),
        ));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|e| TimestampError(e.to_string()))
}

/// Whether `text` matches [`TIMESTAMP_PATTERN`] (checked by hand: no regex engine).
fn has_rfc3339_shape(text: &[u8]) -> bool {
    fn digits(b: &[u8]) -> bool {
        !b.is_empty() && b.iter().all(u8::is_ascii_digit)
    }
    let Some((date_time, rest)) = text.split_at_checked(19) else {
        return false;
    };
    let date_time_ok = digits(&date_time[0..4])
        && date_time[4] == b'-'
        && digits(&date_time[5..7])
        && date_time[7] == b'-'
        && digits(&date_time[8..10])
        && matches!(date_time[10], b'T' | b't')
        && digits(&date_time[11..13])
        && date_time[13] == b':'
        && digits(&date_time[14..16])
        && date_time[16] == b':'
        && digits(&date_time[17..19]);
    let offset = match rest.strip_prefix(b".") {
        Some(fraction) => {
            let n = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            if n == 0 || n > 9 {
                return false;
            }
            &fraction[n..]
        }
        None => rest,
    };
    let offset_ok = match offset {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => digits(&[*h1, *h2, *m1, *m2]),
        _ => false,
    };
    date_time_ok && offset_ok
}

/// Formats a UTC timestamp the way the contract's examples spell it:
/// `2026-03-01T08:30:00Z`, with a fraction only when there is one.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) mod serde_rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_timestamp(t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_timestamp(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_any_offset_and_normalises_to_utc_microseconds() {
        for (text, utc) in [
            ("2026-03-01T08:30:00Z", "2026-03-01T08:30:00Z"),
            ("2026-03-01t08:30:00z", "2026-03-01T08:30:00Z"),
            ("2026-03-01T10:30:00+02:00", "2026-03-01T08:30:00Z"),
            ("2026-03-01T03:00:00.5-05:30", "2026-03-01T08:30:00.500Z"),
            (
                "2026-03-01T08:30:00.123456789Z",
                "2026-03-01T08:30:00.123456Z",
            ),
        ] {
            let t = parse_timestamp(text).expect(text);
            assert_eq!(format_timestamp(&t), utc, "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_rfc_3339_with_an_offset() {
        for text in [
            "",
            "2026-03-01",
            "2026-03-01T08:30:00",
            "2026-03-01 08:30:00Z",
            "2026-03-01T08:30Z",
            "2026-03-01T08:30:00.Z",
            "2026-03-01T08:30:00.1234567890Z",
            "2026-03-01T08:30:00+0200",
            "2026-03-01T08:30:00+02",
            "2026-13-01T08:30:00Z",
            "2026-02-30T08:30:00Z",
            "2026-03-01T25:30:00Z",
            "2026-03-01T08:30:00+24:00",
            "1772353800",
            "２０２６-03-01T08:30:00Z",
        ] {
            assert!(parse_timestamp(text).is_err(), "{text:?} accepted");
        }
    }
}
