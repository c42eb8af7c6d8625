//! Why a message was refused: the dead-letter [`Reason`] and the
//! [`ValidationError`] that carries it with the offending field.

use std::fmt;
use std::str::FromStr;

/// Why a message was refused: the dead-letter reason. The strings of
/// [`Reason::as_str`] are stable (they are stored with dead letters and used
/// as metric labels): never rename one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `too_large`: the message exceeds [`Limits::max_message_bytes`](super::Limits::max_message_bytes).
    TooLarge,
    /// `invalid_utf8`: the bytes are not UTF-8.
    InvalidUtf8,
    /// `malformed_json`: not one JSON value (syntax error, truncated, trailing
    /// data, a duplicate key), or objects and arrays nested deeper than
    /// [`MAX_NESTING`](super::MAX_NESTING) anywhere in it.
    MalformedJson,
    /// `not_an_object`: valid JSON, but not an object.
    NotAnObject,
    /// `missing_field`: a required property is absent.
    MissingField,
    /// `wrong_type`: a property has the wrong JSON type (`null` included).
    WrongType,
    /// `unknown_value`: an enum property (`access`, `action`, `via`) or the
    /// directory `type` has a value the contract does not know.
    UnknownValue,
    /// `invalid_value`: right type, refused value: an empty id, a string
    /// over its length limit, a bad token amount, a team merged into itself.
    InvalidValue,
    /// `bad_timestamp`: a timestamp that is not RFC 3339 with an offset.
    BadTimestamp,
    /// `future_timestamp`: `occurred_at` is later than `now` plus
    /// [`Limits::max_future_skew`](super::Limits::max_future_skew).
    FutureTimestamp,
    /// `past_timestamp`: a timestamp before [`Limits::min_occurred_at`](super::Limits::min_occurred_at).
    PastTimestamp,
    /// `unresolved_team`: reserved for the ingest: a valid authorization
    /// without `team_id` whose team the assignment history cannot resolve
    /// (after the bounded wait for late assignments). Replayable.
    UnresolvedTeam,
    /// `unknown_rate`: reserved for the ingest: a valid Flex authorization
    /// whose product has no daily token rate in force. Replayable.
    UnknownRate,
    /// `beyond_horizon`: reserved for the ingest: a Flex authorization older
    /// than every usage window the pipeline still knows for its (user,
    /// product) — it arrived so far out of order that its charge cannot be
    /// decided exactly. Never guessed.
    BeyondHorizon,
}

impl Reason {
    /// Every reason, for metric pre-registration.
    pub const ALL: [Reason; 14] = [
        Reason::TooLarge,
        Reason::InvalidUtf8,
        Reason::MalformedJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::WrongType,
        Reason::UnknownValue,
        Reason::InvalidValue,
        Reason::BadTimestamp,
        Reason::FutureTimestamp,
        Reason::PastTimestamp,
        Reason::UnresolvedTeam,
        Reason::UnknownRate,
        Reason::BeyondHorizon,
    ];

    /// The stable snake_case spelling: the dead-letter reason and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::MalformedJson => "malformed_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::WrongType => "wrong_type",
            Reason::UnknownValue => "unknown_value",
            Reason::InvalidValue => "invalid_value",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::PastTimestamp => "past_timestamp",
            Reason::UnresolvedTeam => "unresolved_team",
            Reason::UnknownRate => "unknown_rate",
            Reason::BeyondHorizon => "beyond_horizon",
        }
    }

    /// Whether replaying the same bytes later may succeed: the reasons that
    /// depend on state the pipeline has not seen yet (`unresolved_team`,
    /// `unknown_rate`), and `future_timestamp`, which depends on `now`.
    pub fn is_replayable(self) -> bool {
        matches!(
            self,
            Reason::UnresolvedTeam | Reason::UnknownRate | Reason::FutureTimestamp
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of [`Reason::ALL`]'s spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dead-letter reason `{0}`")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;

    fn from_str(s: &str) -> Result<Reason, UnknownReason> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

/// Why an inbound message was refused: what goes to the dead-letter topic
/// beside the original bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}{}: {detail}", at_field(.field))]
pub struct ValidationError {
    /// The machine-readable reason.
    pub reason: Reason,
    /// Dotted path of the offending property (`access`, `flex_tokens_per_day`);
    /// `None` only when the message as a whole is refused (`too_large`,
    /// `invalid_utf8`, `malformed_json` without a culprit key, `not_an_object`).
    pub field: Option<String>,
    /// A human-readable explanation, at most [`ValidationError::MAX_DETAIL_LEN`]
    /// bytes (values quoted from the message are clipped).
    pub detail: String,
}

fn at_field(field: &Option<String>) -> String {
    match field {
        Some(f) => format!(" at `{f}`"),
        None => String::new(),
    }
}

impl ValidationError {
    /// Longest [`ValidationError::detail`], in bytes.
    pub const MAX_DETAIL_LEN: usize = 300;

    /// An error about the property at `field`.
    pub fn at(reason: Reason, field: impl Into<String>, detail: impl Into<String>) -> Self {
        ValidationError {
            reason,
            field: Some(field.into()),
            detail: clip(detail.into(), Self::MAX_DETAIL_LEN),
        }
    }

    /// An error about the message as a whole.
    pub fn whole(reason: Reason, detail: impl Into<String>) -> Self {
        ValidationError {
            reason,
            field: None,
            detail: clip(detail.into(), Self::MAX_DETAIL_LEN),
        }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary, marking the cut.
pub(super) fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "{r} twice");
            assert_eq!(r.as_str().parse::<Reason>(), Ok(r));
            assert!(r
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
        assert!("nope".parse::<Reason>().is_err());
    }
}
