//! RFC 3339 timestamps: any offset in, UTC out, microsecond precision.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an RFC 3339 timestamp with an offset: {0}")]
pub struct TimestampError(pub String);

/// Parses an RFC 3339 timestamp (any offset, `Z` included), normalised to UTC
/// and truncated to whole microseconds.
pub fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, TimestampError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).trunc_subsecs(6))
        .map_err(|e| TimestampError(e.to_string()))
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
