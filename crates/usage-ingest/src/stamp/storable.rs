//! Part of step 1 of stamping (pure): an event whose timestamps ClickHouse
//! cannot store faithfully (`usage_store::schema::values`: from 1970-01-01 to
//! 2105-12-31, no leap second) is refused as a dead letter, before it touches
//! the enrichment state, with the contract's reasons: `past_timestamp`
//! before the range, `future_timestamp` after it, `bad_timestamp` for a leap
//! second (`23:59:60`, which no stored instant can be). The validation
//! limits keep `occurred_at` inside the range ([`check_limits`], at
//! start-up); `product_rate.effective_from` has no upper limit there, so a
//! rate effective after 2105 is refused here.

use chrono::{DateTime, Utc};
use usage_core::event::{
    format_timestamp, Assignment, AuthorizationRef, DirectoryChange, DirectoryEvent,
};
use usage_core::validate::{Limits, Reason, ValidationError};
use usage_store::schema::{values, Why};

/// An authorization's `occurred_at` can be stored.
pub(crate) fn authorization<'a>(a: impl Into<AuthorizationRef<'a>>) -> Result<(), ValidationError> {
    instant("occurred_at", a.into().occurred_at)
}

/// An assignment's `occurred_at` can be stored.
pub(crate) fn assignment(a: &Assignment) -> Result<(), ValidationError> {
    instant("occurred_at", a.occurred_at)
}

/// A directory event's `occurred_at`, and a rate's `effective_from`, can be stored.
pub(crate) fn directory(d: &DirectoryEvent) -> Result<(), ValidationError> {
    instant("occurred_at", d.occurred_at)?;
    if let DirectoryChange::ProductRate(rate) = &d.change {
        instant("effective_from", rate.effective_from)?;
    }
    Ok(())
}

fn instant(field: &'static str, at: DateTime<Utc>) -> Result<(), ValidationError> {
    let error = match values::datetime_us(field, at) {
        Ok(_) => return Ok(()),
        Err(error) => error,
    };
    let (reason, detail) = match error.why {
        Why::Below => (
            Reason::PastTimestamp,
            "is before 1970-01-01T00:00:00Z, the first instant ClickHouse stores".to_owned(),
        ),
        Why::Above => (
            Reason::FutureTimestamp,
            format!(
                "is after {}, the last instant ClickHouse stores",
                format_timestamp(&values::read_datetime(values::LAST_SECOND))
            ),
        ),
        Why::LeapSecond => (
            Reason::BadTimestamp,
            "is a leap second, which ClickHouse cannot store".to_owned(),
        ),
    };
    Err(ValidationError::at(
        reason,
        field,
        format!("{} {detail}", format_timestamp(&at)),
    ))
}

/// Refuses validation limits that would let a timestamp ClickHouse cannot
/// store through as of `now`: a minimum before 1970, or a future skew
/// reaching past the last storable instant.
pub(crate) fn check_limits(limits: &Limits, now: DateTime<Utc>) -> Result<(), String> {
    if values::datetime("min_occurred_at", limits.min_occurred_at).is_err() {
        return Err(format!(
            "the earliest accepted timestamp ({}) is before 1970-01-01T00:00:00Z, the first \
             instant ClickHouse stores",
            format_timestamp(&limits.min_occurred_at)
        ));
    }
    let latest = now.checked_add_signed(limits.max_future_skew);
    if latest.is_none_or(|t| values::datetime("occurred_at", t).is_err()) {
        return Err(format!(
            "a future skew of {}s lets timestamps after {} through, the last instant ClickHouse \
             stores",
            limits.max_future_skew.num_seconds(),
            format_timestamp(&values::read_datetime(values::LAST_SECOND))
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::tests_now as now;
    use chrono::TimeDelta;
    use usage_core::validate::{decode_assignment, decode_authorization, decode_directory};

    fn rate_from(effective_from: &str) -> DirectoryEvent {
        let json = format!(
            r#"{{"event_id":"r","occurred_at":"2026-01-01T00:00:00Z","type":"product_rate","product":"p","flex_tokens_per_day":7,"effective_from":"{effective_from}"}}"#
        );
        decode_directory(json.as_bytes(), &Limits::default(), now()).expect("valid")
    }

    #[test]
    fn a_rate_effective_after_2105_is_a_future_timestamp() {
        assert_eq!(directory(&rate_from("2105-12-31T23:59:59.999999Z")), Ok(()));
        let error = directory(&rate_from("2106-01-01T00:00:00Z")).expect_err("not storable");
        assert_eq!(error.reason, Reason::FutureTimestamp);
        assert_eq!(error.field.as_deref(), Some("effective_from"));
        assert_eq!(
            error.detail,
            "2106-01-01T00:00:00Z is after 2105-12-31T23:59:59Z, the last instant ClickHouse stores"
        );
    }

    #[test]
    fn a_leap_second_is_a_bad_timestamp() {
        let json = r#"{"event_id":"e","occurred_at":"2016-12-31T23:59:60.5Z","user_id":"u","product":"p","access":"seat"}"#;
        let auth = decode_authorization(json.as_bytes(), &Limits::default(), now())
            .expect("valid for the contract");
        let error = authorization(&auth).expect_err("not storable");
        assert_eq!(error.reason, Reason::BadTimestamp);
        assert_eq!(error.field.as_deref(), Some("occurred_at"));
        let error = directory(&rate_from("2026-06-30T23:59:60Z")).expect_err("not storable");
        assert_eq!(
            (error.reason, error.field.as_deref()),
            (Reason::BadTimestamp, Some("effective_from"))
        );
    }

    #[test]
    fn an_instant_before_1970_is_a_past_timestamp() {
        let limits = Limits {
            min_occurred_at: DateTime::<Utc>::MIN_UTC,
            ..Limits::default()
        };
        let json = r#"{"event_id":"a","occurred_at":"1969-12-31T23:59:59Z","action":"assign","team_id":"t","user_id":"u","product":"p","access":"seat","via":"direct"}"#;
        let a = decode_assignment(json.as_bytes(), &limits, now()).expect("within these limits");
        let error = assignment(&a).expect_err("not storable");
        assert_eq!(
            (error.reason, error.field.as_deref()),
            (Reason::PastTimestamp, Some("occurred_at"))
        );
    }

    #[test]
    fn limits_that_let_unstorable_timestamps_through_are_refused() {
        assert_eq!(check_limits(&Limits::default(), now()), Ok(()));
        let early = Limits {
            min_occurred_at: DateTime::parse_from_rfc3339("1969-12-31T00:00:00Z")
                .expect("a timestamp")
                .with_timezone(&Utc),
            ..Limits::default()
        };
        assert!(check_limits(&early, now()).is_err());
        let epoch = Limits {
            min_occurred_at: DateTime::UNIX_EPOCH,
            ..Limits::default()
        };
        assert_eq!(check_limits(&epoch, now()), Ok(()));
        // 2026-06-01 + 29,067 days = 2105-12-31.
        let far = Limits {
            max_future_skew: TimeDelta::days(29_067),
            ..Limits::default()
        };
        assert_eq!(check_limits(&far, now()), Ok(()));
        let too_far = Limits {
            max_future_skew: TimeDelta::days(29_068),
            ..Limits::default()
        };
        assert!(check_limits(&too_far, now()).is_err());
    }
}
