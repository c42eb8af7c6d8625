//! The poison corpus: messages the decoder must refuse, each with the one
//! dead-letter [`Reason`] the contract (`schemas/events/README.md`) gives it.
//!
//! Every poison message starts from a *valid* event and breaks exactly one
//! thing, so its reason is unambiguous under the contract's precedence
//! (size, UTF-8, syntax, object, types in document order with missing
//! properties last, then value checks in field order). A poison message's
//! timestamps are inside the scenario span, which must not be in the future
//! of the consumer's clock (otherwise `future_timestamp` would come first).

use chrono::{DateTime, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::{Message, Reason, Topic};

/// One kind of poison message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PoisonKind {
    // authorizations
    TooLarge,
    InvalidUtf8Latin1,
    RandomBytes,
    MalformedTruncated,
    MalformedTrailingComma,
    MalformedDuplicateKey,
    MalformedSingleQuotes,
    MalformedEmpty,
    MalformedTwoObjects,
    NotAnObjectArray,
    NotAnObjectString,
    NotAnObjectNull,
    NotAnObjectNumber,
    MissingAccess,
    MissingEventId,
    WrongTypeOnline,
    WrongTypeUserId,
    WrongTypeProductNull,
    UnknownAccess,
    UnknownAccessUppercase,
    InvalidEmptyEventId,
    InvalidProductTooLong,
    BadTimestampSpace,
    BadTimestampNoOffset,
    BadTimestampMonth13,
    FutureYear2999,
    FutureYearAfterEnd,
    PastYear1990,
    // assignments
    AssignmentUnknownAction,
    AssignmentUnknownVia,
    AssignmentMissingVia,
    AssignmentWrongTypeTeam,
    AssignmentPastTimestamp,
    // directory
    DirectoryUnknownType,
    DirectoryMissingType,
    TeamMergeIntoItself,
    RateTooPrecise,
    RateNegative,
    RatePastEffectiveFrom,
    MembershipMissingMember,
    TeamWrongTypePii,
}

impl PoisonKind {
    /// Every kind, in a fixed order (the generator cycles through it).
    pub const ALL: [PoisonKind; 41] = [
        PoisonKind::TooLarge,
        PoisonKind::InvalidUtf8Latin1,
        PoisonKind::RandomBytes,
        PoisonKind::MalformedTruncated,
        PoisonKind::MalformedTrailingComma,
        PoisonKind::MalformedDuplicateKey,
        PoisonKind::MalformedSingleQuotes,
        PoisonKind::MalformedEmpty,
        PoisonKind::MalformedTwoObjects,
        PoisonKind::NotAnObjectArray,
        PoisonKind::NotAnObjectString,
        PoisonKind::NotAnObjectNull,
        PoisonKind::NotAnObjectNumber,
        PoisonKind::MissingAccess,
        PoisonKind::MissingEventId,
        PoisonKind::WrongTypeOnline,
        PoisonKind::WrongTypeUserId,
        PoisonKind::WrongTypeProductNull,
        PoisonKind::UnknownAccess,
        PoisonKind::UnknownAccessUppercase,
        PoisonKind::InvalidEmptyEventId,
        PoisonKind::InvalidProductTooLong,
        PoisonKind::BadTimestampSpace,
        PoisonKind::BadTimestampNoOffset,
        PoisonKind::BadTimestampMonth13,
        PoisonKind::FutureYear2999,
        PoisonKind::FutureYearAfterEnd,
        PoisonKind::PastYear1990,
        PoisonKind::AssignmentUnknownAction,
        PoisonKind::AssignmentUnknownVia,
        PoisonKind::AssignmentMissingVia,
        PoisonKind::AssignmentWrongTypeTeam,
        PoisonKind::AssignmentPastTimestamp,
        PoisonKind::DirectoryUnknownType,
        PoisonKind::DirectoryMissingType,
        PoisonKind::TeamMergeIntoItself,
        PoisonKind::RateTooPrecise,
        PoisonKind::RateNegative,
        PoisonKind::RatePastEffectiveFrom,
        PoisonKind::MembershipMissingMember,
        PoisonKind::TeamWrongTypePii,
    ];

    /// The reason the decoder must give.
    pub fn reason(self) -> Reason {
        use PoisonKind::*;
        match self {
            TooLarge => Reason::TooLarge,
            InvalidUtf8Latin1 | RandomBytes => Reason::InvalidUtf8,
            MalformedTruncated
            | MalformedTrailingComma
            | MalformedDuplicateKey
            | MalformedSingleQuotes
            | MalformedEmpty
            | MalformedTwoObjects => Reason::MalformedJson,
            NotAnObjectArray | NotAnObjectString | NotAnObjectNull | NotAnObjectNumber => {
                Reason::NotAnObject
            }
            MissingAccess
            | MissingEventId
            | AssignmentMissingVia
            | DirectoryMissingType
            | MembershipMissingMember => Reason::MissingField,
            WrongTypeOnline
            | WrongTypeUserId
            | WrongTypeProductNull
            | AssignmentWrongTypeTeam
            | TeamWrongTypePii => Reason::WrongType,
            UnknownAccess
            | UnknownAccessUppercase
            | AssignmentUnknownAction
            | AssignmentUnknownVia
            | DirectoryUnknownType => Reason::UnknownValue,
            InvalidEmptyEventId
            | InvalidProductTooLong
            | TeamMergeIntoItself
            | RateTooPrecise
            | RateNegative => Reason::InvalidValue,
            BadTimestampSpace | BadTimestampNoOffset | BadTimestampMonth13 => Reason::BadTimestamp,
            FutureYear2999 | FutureYearAfterEnd => Reason::FutureTimestamp,
            PastYear1990 | AssignmentPastTimestamp | RatePastEffectiveFrom => Reason::PastTimestamp,
        }
    }

    /// The topic the message is published to.
    pub fn topic(self) -> Topic {
        use PoisonKind::*;
        match self {
            AssignmentUnknownAction
            | AssignmentUnknownVia
            | AssignmentMissingVia
            | AssignmentWrongTypeTeam
            | AssignmentPastTimestamp => Topic::Assignments,
            DirectoryUnknownType
            | DirectoryMissingType
            | TeamMergeIntoItself
            | RateTooPrecise
            | RateNegative
            | RatePastEffectiveFrom
            | MembershipMissingMember
            | TeamWrongTypePii => Topic::Directory,
            _ => Topic::Authorizations,
        }
    }
}

/// The valid material a poison message is made from.
#[derive(Debug, Clone, Copy)]
pub struct PoisonContext<'a> {
    /// A fresh event id (never used by another message).
    pub event_id: &'a str,
    /// A valid `occurred_at` (inside the span).
    pub occurred_at: &'a str,
    pub user_id: &'a str,
    pub team_id: &'a str,
    pub product: &'a str,
    /// The end of the scenario span.
    pub end: DateTime<Utc>,
    /// Seed of the random bytes.
    pub salt: u64,
}

fn authorization(ctx: &PoisonContext<'_>) -> Value {
    json!({
        "event_id": ctx.event_id,
        "occurred_at": ctx.occurred_at,
        "user_id": ctx.user_id,
        "product": ctx.product,
        "product_version": "2026",
        "access": "seat",
    })
}

fn assignment(ctx: &PoisonContext<'_>) -> Value {
    json!({
        "event_id": ctx.event_id,
        "occurred_at": ctx.occurred_at,
        "action": "assign",
        "team_id": ctx.team_id,
        "user_id": ctx.user_id,
        "product": ctx.product,
        "access": "seat",
        "via": "direct",
    })
}

fn set(mut v: Value, key: &str, value: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
    v
}

fn remove(mut v: Value, key: &str) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.remove(key);
    }
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// Builds the poison message of `kind` from `ctx`.
pub fn render(kind: PoisonKind, ctx: &PoisonContext<'_>) -> Message {
    use PoisonKind::*;
    let auth = || authorization(ctx);
    let assign = || assignment(ctx);
    let ts = |s: &str| Value::String(s.to_owned());
    let mut key = ctx.user_id.to_owned();
    let payload: Vec<u8> = match kind {
        TooLarge => {
            // A valid event but for its size: an unknown property pads it
            // past 64 KiB (unknown properties are otherwise ignored).
            bytes(&set(auth(), "padding", Value::String("x".repeat(70_000))))
        }
        InvalidUtf8Latin1 => {
            // user_id "élève" in Latin-1.
            let mut b = Vec::new();
            b.extend_from_slice(b"{\"event_id\":\"");
            b.extend_from_slice(ctx.event_id.as_bytes());
            b.extend_from_slice(b"\",\"occurred_at\":\"");
            b.extend_from_slice(ctx.occurred_at.as_bytes());
            b.extend_from_slice(b"\",\"user_id\":\"\xe9l\xe8ve\",\"product\":\"");
            b.extend_from_slice(ctx.product.as_bytes());
            b.extend_from_slice(b"\",\"access\":\"seat\"}");
            b
        }
        RandomBytes => {
            let mut rng = ChaCha8Rng::seed_from_u64(ctx.salt);
            let len = rng.random_range(16..600);
            let mut b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // 0xFF never occurs in UTF-8: the bytes are certainly not UTF-8.
            b[0] = 0xff;
            b
        }
        MalformedTruncated => {
            let full = bytes(&auth());
            full[..full.len() / 2].to_vec()
        }
        MalformedTrailingComma => {
            let mut s = auth().to_string();
            s.pop();
            s.push_str(",}");
            s.into_bytes()
        }
        MalformedDuplicateKey => {
            let mut s = auth().to_string();
            s.pop();
            s.push_str(",\"access\":\"flex\"}");
            s.into_bytes()
        }
        MalformedSingleQuotes => {
            format!("{{'event_id': '{}', 'access': 'seat'}}", ctx.event_id).into_bytes()
        }
        MalformedEmpty => Vec::new(),
        MalformedTwoObjects => {
            let one = auth().to_string();
            format!("{one}{one}").into_bytes()
        }
        NotAnObjectArray => format!("[{}]", auth()).into_bytes(),
        NotAnObjectString => b"\"authorization\"".to_vec(),
        NotAnObjectNull => b"null".to_vec(),
        NotAnObjectNumber => b"42".to_vec(),
        MissingAccess => bytes(&remove(auth(), "access")),
        MissingEventId => bytes(&remove(auth(), "event_id")),
        WrongTypeOnline => bytes(&set(auth(), "online", json!("yes"))),
        WrongTypeUserId => bytes(&set(auth(), "user_id", json!(12345))),
        WrongTypeProductNull => bytes(&set(auth(), "product", Value::Null)),
        UnknownAccess => bytes(&set(auth(), "access", json!("trial"))),
        UnknownAccessUppercase => bytes(&set(auth(), "access", json!("Seat"))),
        InvalidEmptyEventId => bytes(&set(auth(), "event_id", json!(""))),
        InvalidProductTooLong => bytes(&set(auth(), "product", Value::String("p".repeat(257)))),
        BadTimestampSpace => bytes(&set(
            auth(),
            "occurred_at",
            ts(&ctx.occurred_at.replacen('T', " ", 1)),
        )),
        BadTimestampNoOffset => {
            let local = ctx.occurred_at.trim_end_matches('Z');
            bytes(&set(auth(), "occurred_at", ts(local)))
        }
        BadTimestampMonth13 => bytes(&set(auth(), "occurred_at", ts("2026-13-01T10:00:00Z"))),
        FutureYear2999 => bytes(&set(auth(), "occurred_at", ts("2999-01-01T00:00:00Z"))),
        FutureYearAfterEnd => {
            // A century after the span's end: in the future of any
            // plausible consumer clock, whatever `end` is.
            let at = ctx
                .end
                .checked_add_signed(TimeDelta::days(36_525))
                .unwrap_or(ctx.end);
            let s = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            bytes(&set(auth(), "occurred_at", ts(&s)))
        }
        PastYear1990 => bytes(&set(auth(), "occurred_at", ts("1990-01-01T00:00:00Z"))),
        AssignmentUnknownAction => bytes(&set(assign(), "action", json!("grant"))),
        AssignmentUnknownVia => bytes(&set(assign(), "via", json!("sso"))),
        AssignmentMissingVia => bytes(&remove(assign(), "via")),
        AssignmentWrongTypeTeam => bytes(&set(assign(), "team_id", json!(7))),
        AssignmentPastTimestamp => bytes(&set(assign(), "occurred_at", ts("1990-06-01T12:00:00Z"))),
        DirectoryUnknownType => {
            key = ctx.user_id.to_owned();
            bytes(&json!({
                "event_id": ctx.event_id,
                "occurred_at": ctx.occurred_at,
                "type": "user_deleted",
                "user_id": ctx.user_id,
            }))
        }
        DirectoryMissingType => {
            key = ctx.team_id.to_owned();
            bytes(&json!({
                "event_id": ctx.event_id,
                "occurred_at": ctx.occurred_at,
                "team_id": ctx.team_id,
                "name": "No type",
                "pii_visible": true,
            }))
        }
        TeamMergeIntoItself => {
            key = ctx.team_id.to_owned();
            bytes(&json!({
                "event_id": ctx.event_id,
                "occurred_at": ctx.occurred_at,
                "type": "team_merge",
                "from_team_id": ctx.team_id,
                "into_team_id": ctx.team_id,
            }))
        }
        RateTooPrecise | RateNegative | RatePastEffectiveFrom => {
            key = ctx.product.to_owned();
            let (tokens, effective_from) = match kind {
                RateTooPrecise => (json!(1.2345), ctx.occurred_at.to_owned()),
                RateNegative => (json!(-1), ctx.occurred_at.to_owned()),
                _ => (json!(2.5), "1990-01-01T00:00:00Z".to_owned()),
            };
            bytes(&json!({
                "event_id": ctx.event_id,
                "occurred_at": ctx.occurred_at,
                "type": "product_rate",
                "product": ctx.product,
                "flex_tokens_per_day": tokens,
                "effective_from": effective_from,
            }))
        }
        MembershipMissingMember => {
            key = ctx.team_id.to_owned();
            bytes(&json!({
                "event_id": ctx.event_id,
                "occurred_at": ctx.occurred_at,
                "type": "group_membership",
                "team_id": ctx.team_id,
                "group_id": "grp-poison",
                "group_name": "Poison",
                "user_id": ctx.user_id,
            }))
        }
        TeamWrongTypePii => {
            key = ctx.team_id.to_owned();
            bytes(&json!({
                "event_id": ctx.event_id,
                "occurred_at": ctx.occurred_at,
                "type": "team",
                "team_id": ctx.team_id,
                "name": "Yes-team",
                "pii_visible": "yes",
            }))
        }
    };
    Message::poison(kind.topic(), key, payload, kind.reason())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_validation_reason_is_covered() {
        for reason in Reason::VALIDATION {
            assert!(
                PoisonKind::ALL.iter().any(|k| k.reason() == reason),
                "{reason} has no poison kind"
            );
        }
    }

    #[test]
    fn poison_is_what_it_claims() {
        let end = DateTime::parse_from_rfc3339("2026-05-31T12:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        let ctx = PoisonContext {
            event_id: "p-1",
            occurred_at: "2026-05-01T10:00:00.123Z",
            user_id: "u-000001",
            team_id: "team-acme",
            product: "autocad",
            end,
            salt: 7,
        };
        for kind in PoisonKind::ALL {
            let m = render(kind, &ctx);
            assert_eq!(m.expected_reason, Some(kind.reason()));
            let text = std::str::from_utf8(&m.payload);
            match kind.reason() {
                Reason::TooLarge => assert!(m.payload.len() > 65_536),
                Reason::InvalidUtf8 => assert!(text.is_err(), "{kind:?}"),
                Reason::MalformedJson => {
                    assert!(
                        serde_json::from_slice::<Value>(&m.payload).is_err()
                            || kind == PoisonKind::MalformedDuplicateKey,
                        "{kind:?}"
                    )
                }
                Reason::NotAnObject => {
                    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(json!({}));
                    assert!(!v.is_object(), "{kind:?}");
                }
                _ => {
                    let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
                    assert!(v.is_object(), "{kind:?}");
                    assert!(m.payload.len() < 65_536);
                }
            }
        }
    }
}
