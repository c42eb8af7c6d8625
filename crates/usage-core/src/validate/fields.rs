//! The value checks of each field, beyond its JSON type: non-empty ids,
//! string lengths, enum spellings, timestamps (format, not too old, not too
//! far in the future), Flex token rates.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use crate::event::{parse_timestamp, Access, AssignmentAction, AssignmentVia, Tokens};

use super::error::clip;
use super::wire::Str;
use super::{Limits, Reason, ValidationError};

/// The spellings of [`Access`]. Enums are read as strings and matched here
/// (not by serde's enum support, which would also take `{"seat": null}`).
pub(super) const ACCESS: &[(&str, Access)] = &[("seat", Access::Seat), ("flex", Access::Flex)];
/// The spellings of [`AssignmentAction`].
pub(super) const ACTIONS: &[(&str, AssignmentAction)] = &[
    ("assign", AssignmentAction::Assign),
    ("unassign", AssignmentAction::Unassign),
];
/// The spellings of [`AssignmentVia`].
pub(super) const VIAS: &[(&str, AssignmentVia)] = &[
    ("direct", AssignmentVia::Direct),
    ("group", AssignmentVia::Group),
    ("default", AssignmentVia::Default),
];

/// The value checks of one message, against the limits and `now`.
pub(super) struct Checker<'l> {
    pub(super) limits: &'l Limits,
    pub(super) now: DateTime<Utc>,
}

impl Checker<'_> {
    /// One of an enum's spellings (exact, case-sensitive).
    pub(super) fn one_of<T: Copy>(
        &self,
        field: &str,
        value: &Str<'_>,
        spellings: &[(&str, T)],
    ) -> Result<T, ValidationError> {
        match spellings.iter().find(|(s, _)| *s == value.0) {
            Some((_, v)) => Ok(*v),
            None => Err(ValidationError::at(
                Reason::UnknownValue,
                field,
                format!(
                    "unknown value {:?}, expected one of {}",
                    clip(value.0.to_string(), 64),
                    spellings
                        .iter()
                        .map(|(s, _)| *s)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// A non-empty identifier within the string limit.
    pub(super) fn id(&self, field: &str, value: Str<'_>) -> Result<String, ValidationError> {
        self.id_in_place(field, value).map(Cow::into_owned)
    }

    pub(super) fn opt_id(
        &self,
        field: &str,
        value: Option<Str<'_>>,
    ) -> Result<Option<String>, ValidationError> {
        value.map(|v| self.id(field, v)).transpose()
    }

    /// [`Checker::id`], the string left where it is (borrowed from the
    /// message unless it had escapes).
    pub(super) fn id_in_place<'a>(
        &self,
        field: &str,
        value: Str<'a>,
    ) -> Result<Cow<'a, str>, ValidationError> {
        if value.0.is_empty() {
            return Err(ValidationError::at(
                Reason::InvalidValue,
                field,
                "must not be empty",
            ));
        }
        within(field, value, self.limits.max_string_len)
    }

    pub(super) fn opt_id_in_place<'a>(
        &self,
        field: &str,
        value: Option<Str<'a>>,
    ) -> Result<Option<Cow<'a, str>>, ValidationError> {
        value.map(|v| self.id_in_place(field, v)).transpose()
    }

    /// Free text (may be empty) within the string limit.
    pub(super) fn text(&self, field: &str, value: Str<'_>) -> Result<String, ValidationError> {
        within(field, value, self.limits.max_string_len).map(Cow::into_owned)
    }

    pub(super) fn opt_text(
        &self,
        field: &str,
        value: Option<Str<'_>>,
    ) -> Result<Option<String>, ValidationError> {
        value.map(|v| self.text(field, v)).transpose()
    }

    pub(super) fn opt_url(
        &self,
        field: &str,
        value: Option<Str<'_>>,
    ) -> Result<Option<String>, ValidationError> {
        value
            .map(|v| within(field, v, self.limits.max_url_len).map(Cow::into_owned))
            .transpose()
    }

    /// An event time: RFC 3339, not before the minimum, not beyond the skew.
    pub(super) fn occurred_at(
        &self,
        field: &str,
        value: &Str<'_>,
    ) -> Result<DateTime<Utc>, ValidationError> {
        let t = self.not_before_min(field, value)?;
        let latest = self
            .now
            .checked_add_signed(self.limits.max_future_skew)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if t > latest {
            return Err(ValidationError::at(
                Reason::FutureTimestamp,
                field,
                format!(
                    "{} is more than {}s after now ({})",
                    value.0,
                    self.limits.max_future_skew.num_seconds(),
                    crate::event::format_timestamp(&self.now)
                ),
            ));
        }
        Ok(t)
    }

    /// A timestamp: RFC 3339, not before the minimum.
    pub(super) fn not_before_min(
        &self,
        field: &str,
        value: &Str<'_>,
    ) -> Result<DateTime<Utc>, ValidationError> {
        let t = parse_timestamp(&value.0).map_err(|e| {
            ValidationError::at(
                Reason::BadTimestamp,
                field,
                format!("{:?}: {e}", clip(value.0.to_string(), 64)),
            )
        })?;
        if t < self.limits.min_occurred_at {
            return Err(ValidationError::at(
                Reason::PastTimestamp,
                field,
                format!(
                    "{} is before {}",
                    value.0,
                    crate::event::format_timestamp(&self.limits.min_occurred_at)
                ),
            ));
        }
        Ok(t)
    }

    /// A daily Flex token rate: non-negative, thousandths at most, bounded.
    pub(super) fn tokens_per_day(
        &self,
        field: &str,
        value: &serde_json::Number,
    ) -> Result<Tokens, ValidationError> {
        let tokens = Tokens::parse(&value.to_string())
            .map_err(|e| ValidationError::at(Reason::InvalidValue, field, e.to_string()))?;
        if tokens > self.limits.max_flex_tokens_per_day {
            return Err(ValidationError::at(
                Reason::InvalidValue,
                field,
                format!(
                    "{tokens} tokens per day is more than the {} allowed",
                    self.limits.max_flex_tokens_per_day
                ),
            ));
        }
        Ok(tokens)
    }
}

/// A string of at most `max` characters.
fn within<'a>(field: &str, value: Str<'a>, max: usize) -> Result<Cow<'a, str>, ValidationError> {
    let s = value.0;
    // Bytes bound characters from above: count only when it can matter.
    if s.len() > max {
        let chars = s.chars().count();
        if chars > max {
            return Err(ValidationError::at(
                Reason::InvalidValue,
                field,
                format!("is {chars} characters long, at most {max} allowed"),
            ));
        }
    }
    Ok(s)
}
