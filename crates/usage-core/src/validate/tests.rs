//! The decoders' behaviour, message by message: defaults, nulls, how serde's
//! errors map to reasons and fields, whole-message problems, nesting, limits.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::wire::{AuthorizationWire, Str};
use super::*;
use crate::event::{parse_timestamp, Access};

fn now() -> DateTime<Utc> {
    parse_timestamp("2026-06-01T00:00:00Z").expect("valid now")
}

const AUTH: &str = r#"{"event_id":"e-1","occurred_at":"2026-05-31T10:00:00+02:00","user_id":"u-1","product":"photoshop","access":"flex"}"#;

fn auth_err(json: &str) -> ValidationError {
    decode_authorization(json.as_bytes(), &Limits::default(), now()).expect_err("should be refused")
}

fn with(field: &str, raw_value: &str) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(AUTH).expect("valid json");
    v.insert(
        field.to_owned(),
        serde_json::from_str(raw_value).expect("valid value"),
    );
    serde_json::to_string(&v).expect("serializable")
}

fn without(field: &str) -> String {
    let mut v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(AUTH).expect("valid json");
    v.remove(field);
    serde_json::to_string(&v).expect("serializable")
}

#[track_caller]
fn assert_refused(e: &ValidationError, reason: Reason, field: Option<&str>) {
    assert_eq!((e.reason, e.field.as_deref()), (reason, field), "{e}");
}

#[test]
fn decodes_a_minimal_authorization_with_defaults() {
    let a = decode_authorization(AUTH.as_bytes(), &Limits::default(), now()).expect("valid");
    assert_eq!(a.event_id, "e-1");
    assert_eq!(
        crate::event::format_timestamp(&a.occurred_at),
        "2026-05-31T08:00:00Z"
    );
    assert_eq!(a.access, Access::Flex);
    assert!(a.online);
    assert_eq!(
        (a.product_version, a.team_id, a.machine_id),
        (None, None, None)
    );
}

#[test]
fn nulls_mean_absent_for_optional_fields_only() {
    let a = decode_authorization(
        with("team_id", "null").as_bytes(),
        &Limits::default(),
        now(),
    )
    .expect("null optional");
    assert_eq!(a.team_id, None);
    let a = decode_authorization(with("online", "null").as_bytes(), &Limits::default(), now())
        .expect("null online");
    assert!(a.online);
    assert_refused(
        &auth_err(&with("user_id", "null")),
        Reason::WrongType,
        Some("user_id"),
    );
}

#[test]
fn plain_strings_are_borrowed_from_the_message() {
    let json = with("team_id", r#""t-1""#);
    let w: AuthorizationWire<'_> = serde_json::from_str(&json).expect("valid");
    assert!(matches!(w.user_id.0, Cow::Borrowed("u-1")));
    assert!(matches!(w.team_id, Some(Str(Cow::Borrowed("t-1")))));
    let json = with("user_id", r#""u\n""#);
    let w: AuthorizationWire<'_> = serde_json::from_str(&json).expect("valid");
    assert!(matches!(w.user_id.0, Cow::Owned(_)));
}

#[test]
fn escaped_strings_are_unescaped() {
    let a = decode_authorization(
        with("product", r#""photo\u0073hop \"cc\"""#).as_bytes(),
        &Limits::default(),
        now(),
    )
    .expect("valid");
    assert_eq!(a.product, "photoshop \"cc\"");
}

#[test]
fn maps_serde_errors_to_reasons_and_fields() {
    for (json, reason, field) in [
        (without("user_id"), Reason::MissingField, Some("user_id")),
        (without("access"), Reason::MissingField, Some("access")),
        (with("user_id", "42"), Reason::WrongType, Some("user_id")),
        (
            with("online", r#""yes""#),
            Reason::WrongType,
            Some("online"),
        ),
        (
            with("product_version", "[1]"),
            Reason::WrongType,
            Some("product_version"),
        ),
        (with("access", "true"), Reason::WrongType, Some("access")),
        (
            with("access", r#""trial""#),
            Reason::UnknownValue,
            Some("access"),
        ),
        (
            with("access", r#""Seat""#),
            Reason::UnknownValue,
            Some("access"),
        ),
        (
            with("access", r#"{"seat":null}"#),
            Reason::WrongType,
            Some("access"),
        ),
        (
            with("event_id", r#""""#),
            Reason::InvalidValue,
            Some("event_id"),
        ),
        (
            with("team_id", r#""""#),
            Reason::InvalidValue,
            Some("team_id"),
        ),
        (
            with("occurred_at", r#""yesterday""#),
            Reason::BadTimestamp,
            Some("occurred_at"),
        ),
        (
            with("occurred_at", "1772353800"),
            Reason::WrongType,
            Some("occurred_at"),
        ),
        (
            with("occurred_at", r#""2026-06-01T00:05:01Z""#),
            Reason::FutureTimestamp,
            Some("occurred_at"),
        ),
        (
            with("occurred_at", r#""1999-12-31T23:59:59Z""#),
            Reason::PastTimestamp,
            Some("occurred_at"),
        ),
    ] {
        assert_refused(&auth_err(&json), reason, field);
    }
}

#[test]
fn skew_is_inclusive() {
    let at_limit = with("occurred_at", r#""2026-06-01T00:05:00Z""#);
    assert!(decode_authorization(at_limit.as_bytes(), &Limits::default(), now()).is_ok());
}

#[test]
fn whole_message_problems_name_no_field() {
    for (bytes, reason) in [
        (&b""[..], Reason::MalformedJson),
        (b"   ", Reason::MalformedJson),
        (b"{", Reason::MalformedJson),
        (br#"{"event_id":"e-1",}"#, Reason::MalformedJson),
        (br#"{"event_id":"e-1"} {}"#, Reason::MalformedJson),
        (b"[1,2", Reason::MalformedJson),
        (b"\xef\xbb\xbf{}", Reason::MalformedJson),
        (b"[]", Reason::NotAnObject),
        (b"null", Reason::NotAnObject),
        (b" \"text\" ", Reason::NotAnObject),
        (b"{\"user_id\":\"\xff\"}", Reason::InvalidUtf8),
    ] {
        let e = decode_authorization(bytes, &Limits::default(), now()).expect_err("refused");
        assert_refused(&e, reason, None);
    }
}

#[test]
fn a_syntax_error_wins_over_an_earlier_type_error() {
    let e = auth_err(r#"{"event_id": 5, "x": ]"#);
    assert_refused(&e, Reason::MalformedJson, None);
}

#[test]
fn an_array_is_not_an_event_even_in_field_order() {
    let e =
        auth_err(r#"["e-1","2026-05-31T10:00:00Z","u-1","photoshop",null,"flex",null,null,true]"#);
    assert_refused(&e, Reason::NotAnObject, None);
}

#[test]
fn duplicate_known_keys_are_malformed() {
    let json = AUTH.replacen('{', r#"{"access":"seat","#, 1);
    assert_refused(&auth_err(&json), Reason::MalformedJson, Some("access"));
}

#[test]
fn unknown_properties_are_ignored() {
    let json = AUTH.replacen('{', r#"{"future_field":{"a":[1,2,{"b":null}]},"#, 1);
    assert!(decode_authorization(json.as_bytes(), &Limits::default(), now()).is_ok());
}

#[test]
fn deep_nesting_never_crashes() {
    let deep_array = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_object = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let limits = Limits {
        max_message_bytes: usize::MAX,
        ..Limits::default()
    };
    type Decode = fn(&[u8], &Limits, DateTime<Utc>) -> Result<(), ValidationError>;
    let decoders: [Decode; 3] = [
        |b, l, n| decode_authorization(b, l, n).map(drop),
        |b, l, n| decode_assignment(b, l, n).map(drop),
        |b, l, n| decode_directory(b, l, n).map(drop),
    ];
    // Up to MAX_NESTING levels anywhere is fine, one more is malformed,
    // in an unknown property as in a known one; brackets in strings do
    // not count.
    let unknown = |depth: usize| AUTH.replacen('{', &format!(r#"{{"x":{},"#, deep_array(depth)), 1);
    // The event itself is one level.
    assert!(decode_authorization(unknown(MAX_NESTING - 1).as_bytes(), &limits, now()).is_ok());
    let in_string = AUTH.replacen('{', &format!(r#"{{"x":"{}","#, "[{".repeat(1_000)), 1);
    assert!(decode_authorization(in_string.as_bytes(), &limits, now()).is_ok());
    let escaped = AUTH.replacen('{', &format!(r#"{{"x":"\\\"{}","#, "[".repeat(1_000)), 1);
    assert!(decode_authorization(escaped.as_bytes(), &limits, now()).is_ok());
    for (json, reason, field) in [
        (unknown(MAX_NESTING), Reason::MalformedJson, None),
        (unknown(100_000), Reason::MalformedJson, None),
        (
            AUTH.replacen('{', &format!(r#"{{"user_id":{},"#, deep_array(100_000)), 1),
            Reason::MalformedJson,
            None,
        ),
        (deep_array(100_000), Reason::MalformedJson, None),
        ("[".repeat(100_000), Reason::MalformedJson, None),
        (r#"{"a":"#.repeat(100_000), Reason::MalformedJson, None),
    ] {
        let e = decode_authorization(json.as_bytes(), &limits, now()).expect_err("refused");
        assert_refused(&e, reason, field);
    }
    for json in [
        deep_array(100_000),
        deep_object(100_000),
        "[".repeat(100_000),
        r#"{"a":"#.repeat(100_000),
    ] {
        for decode in decoders {
            assert!(decode(json.as_bytes(), &limits, now()).is_err());
        }
    }
    // serde_json's own recursion limit (128) is an error, not a stack
    // overflow, wherever a value is built.
    let e = serde_json::from_str::<serde_json::Value>(&deep_array(100_000)).expect_err("too deep");
    assert!(e.to_string().starts_with("recursion limit exceeded"), "{e}");
}

#[test]
fn too_large_is_checked_before_anything_else() {
    let limits = Limits {
        max_message_bytes: 10,
        ..Limits::default()
    };
    let e = decode_authorization(
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &limits,
        now(),
    )
    .expect_err("refused");
    assert_refused(&e, Reason::TooLarge, None);
    assert!(
        decode_authorization(b"{}", &limits, now()).is_err_and(|e| e.reason != Reason::TooLarge)
    );
}

#[test]
fn string_limits_count_characters_not_bytes() {
    let limits = Limits::default();
    let fits = format!("\"{}\"", "é".repeat(limits.max_string_len));
    let a = decode_authorization(with("product", &fits).as_bytes(), &limits, now())
        .expect("256 two-byte characters fit");
    assert_eq!(a.product.chars().count(), 256);
    let over = format!("\"{}\"", "x".repeat(limits.max_string_len + 1));
    assert_refused(
        &auth_err(&with("product", &over)),
        Reason::InvalidValue,
        Some("product"),
    );
}

#[test]
fn details_are_clipped() {
    let long = format!("\"{}\"", "x".repeat(10_000));
    let e = auth_err(&with("online", &long));
    assert_refused(&e, Reason::WrongType, Some("online"));
    assert!(
        e.detail.len() <= ValidationError::MAX_DETAIL_LEN,
        "{}",
        e.detail.len()
    );
    let e = auth_err(&with("occurred_at", &long));
    assert_refused(&e, Reason::BadTimestamp, Some("occurred_at"));
    assert!(e.detail.len() <= ValidationError::MAX_DETAIL_LEN);
}

#[test]
fn assignment_enums_each_name_their_field() {
    let base = r#"{"event_id":"e","occurred_at":"2026-05-01T00:00:00Z","action":"assign","team_id":"t","user_id":"u","product":"p","access":"seat","via":"direct"}"#;
    assert!(decode_assignment(base.as_bytes(), &Limits::default(), now()).is_ok());
    for (from, to, field) in [
        (r#""assign""#, r#""grant""#, "action"),
        (r#""seat""#, r#""assign""#, "access"),
        (r#""direct""#, r#""seat""#, "via"),
    ] {
        let json = base.replacen(from, to, 1);
        let e = decode_assignment(json.as_bytes(), &Limits::default(), now()).expect_err("refused");
        assert_refused(&e, Reason::UnknownValue, Some(field));
    }
}

#[test]
fn directory_type_is_checked_first() {
    let dir = |json: &str| decode_directory(json.as_bytes(), &Limits::default(), now());
    let e = dir(r#"{"event_id":"e"}"#).expect_err("no type");
    assert_refused(&e, Reason::MissingField, Some("type"));
    let e = dir(r#"{"type":7}"#).expect_err("type not a string");
    assert_refused(&e, Reason::WrongType, Some("type"));
    let e = dir(r#"{"type":"license"}"#).expect_err("unknown type");
    assert_refused(&e, Reason::UnknownValue, Some("type"));
    let e = dir(r#"{"type":"team","type":"team"}"#).expect_err("duplicate type");
    assert_refused(&e, Reason::MalformedJson, Some("type"));
    let e = dir(r#"{"type":"team","event_id":"e","occurred_at":"2026-05-01T00:00:00Z","team_id":"t","name":"T"}"#)
        .expect_err("no pii_visible");
    assert_refused(&e, Reason::MissingField, Some("pii_visible"));
}

#[test]
fn product_rates_are_exact_bounded_thousandths() {
    let rate = |tokens: &str| {
        let json = format!(
            r#"{{"type":"product_rate","event_id":"e","occurred_at":"2026-05-01T00:00:00Z","product":"p","flex_tokens_per_day":{tokens},"effective_from":"2027-01-01T00:00:00Z"}}"#
        );
        decode_directory(json.as_bytes(), &Limits::default(), now())
    };
    let ok = |tokens: &str| match rate(tokens) {
        Ok(DirectoryEvent {
            change: DirectoryChange::ProductRate(r),
            ..
        }) => r.flex_tokens_per_day.millis(),
        other => panic!("{tokens}: {other:?}"),
    };
    assert_eq!(ok("7"), 7000);
    assert_eq!(ok("2.5"), 2500);
    assert_eq!(ok("0.125"), 125);
    assert_eq!(ok("0"), 0);
    assert_eq!(ok("1E3"), 1_000_000);
    assert_eq!(ok("1000000000"), 1_000_000_000_000);
    for bad in [
        "-1",
        "0.0001",
        "1000000000.001",
        "1e300",
        "18446744073709551616",
    ] {
        let e = rate(bad).expect_err(bad);
        assert_refused(&e, Reason::InvalidValue, Some("flex_tokens_per_day"));
    }
    let e = rate(r#""7""#).expect_err("string");
    assert_refused(&e, Reason::WrongType, Some("flex_tokens_per_day"));
}

#[test]
fn display_names_reason_and_field() {
    let e = auth_err(&without("user_id"));
    assert_eq!(
        e.to_string(),
        "missing_field at `user_id`: missing field `user_id`"
    );
}
