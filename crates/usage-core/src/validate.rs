//! Validation of inbound events: raw Kafka message bytes in, typed events or a
//! machine-readable [`ValidationError`] out.
//!
//! This is the Rust side of the published contract in `schemas/events/`: every
//! message the JSON Schemas reject is rejected here too, with a [`Reason`] that
//! becomes the dead-letter reason and the metric label. On top of the schemas
//! the decoder enforces what a schema cannot say: timestamps not too far in
//! the future ([`Limits::max_future_skew`], relative to `now`), not before
//! [`Limits::min_occurred_at`], a team not merged into itself, Flex token
//! amounts exact to a thousandth.
//!
//! Pure: no I/O, no clock (`now` is an argument), no panics on any input.
//!
//! # Policies
//! - **Unknown properties are ignored** (forward compatibility): publishers
//!   may add fields before consumers know them.
//! - **Optional properties may be omitted or `null`**; both mean absent.
//!   Required properties must be present and not `null` (`null` is
//!   [`Reason::WrongType`]).
//! - **Duplicate keys** of a known property are [`Reason::MalformedJson`]
//!   (RFC 8259 leaves their meaning undefined; we refuse to guess).
//! - **Nesting** deeper than [`MAX_NESTING`] objects and arrays, anywhere
//!   (unknown properties included), is [`Reason::MalformedJson`].
//! - **Strings**: identifiers (`event_id`, `*_id`, `product`,
//!   `product_version`) must be non-empty; every string is at most
//!   [`Limits::max_string_len`] characters (Unicode scalar values, as JSON
//!   Schema's `maxLength` counts), `avatar_url` at most [`Limits::max_url_len`].
//! - **Errors come in document order** for the JSON and type checks (the
//!   first problem serde meets, missing fields last), then field by field in
//!   declaration order for the value checks.
//!
//! # Performance
//! [`decode_authorization`] is the hot path: one serde pass over the bytes
//! into a borrowed wire struct (no `serde_json::Value`), value checks on the
//! borrowed strings, then one allocation per string field. Only on the error
//! path is the message parsed again (to tell malformed JSON from a typing
//! problem, and to find the offending field's path).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::event::{
    parse_timestamp, Access, Assignment, AssignmentAction, AssignmentVia, Authorization,
    DirectoryChange, DirectoryEvent, GroupMembership, ProductRate, Team, TeamMerge, Tokens,
    UserProfile,
};

/// The bounds the decoder enforces beyond the JSON shape. The defaults are
/// the published contract (the JSON Schemas spell the same string limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message, in bytes (default 64 KiB). Larger messages
    /// are [`Reason::TooLarge`] and are not parsed at all.
    pub max_message_bytes: usize,
    /// Longest accepted string, in characters, for every string field except
    /// URLs: ids, product codes, names, emails (default 256).
    pub max_string_len: usize,
    /// Longest accepted URL (`avatar_url`), in characters (default 2048).
    pub max_url_len: usize,
    /// How far past `now` an `occurred_at` may be (clock skew between
    /// publishers and us; default 5 minutes). Beyond it:
    /// [`Reason::FutureTimestamp`]. Not applied to `product_rate.effective_from`,
    /// which may legitimately be scheduled ahead.
    pub max_future_skew: TimeDelta,
    /// Earliest accepted `occurred_at` and `effective_from` (default
    /// 2000-01-01T00:00:00Z): older ones are absurd ([`Reason::PastTimestamp`]).
    pub min_occurred_at: DateTime<Utc>,
    /// Largest accepted `flex_tokens_per_day` (default one billion tokens),
    /// far above any real rate and well inside exact float range on the wire.
    pub max_flex_tokens_per_day: Tokens,
}

impl Limits {
    /// Default [`Limits::max_message_bytes`]: 64 KiB.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
    /// Default [`Limits::max_string_len`]: 256 characters.
    pub const DEFAULT_MAX_STRING_LEN: usize = 256;
    /// Default [`Limits::max_url_len`]: 2048 characters.
    pub const DEFAULT_MAX_URL_LEN: usize = 2048;
    /// Default [`Limits::max_future_skew`] in seconds: 5 minutes.
    pub const DEFAULT_MAX_FUTURE_SKEW_SECS: i64 = 300;
    /// Default [`Limits::max_flex_tokens_per_day`], in whole tokens.
    pub const DEFAULT_MAX_FLEX_TOKENS_PER_DAY: u64 = 1_000_000_000;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            max_string_len: Self::DEFAULT_MAX_STRING_LEN,
            max_url_len: Self::DEFAULT_MAX_URL_LEN,
            max_future_skew: TimeDelta::seconds(Self::DEFAULT_MAX_FUTURE_SKEW_SECS),
            min_occurred_at: NaiveDate::from_ymd_opt(2000, 1, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            max_flex_tokens_per_day: Tokens::from_whole(Self::DEFAULT_MAX_FLEX_TOKENS_PER_DAY),
        }
    }
}

/// Why a message was refused: the dead-letter reason. The strings of
/// [`Reason::as_str`] are stable (they are stored with dead letters and used
/// as metric labels): never rename one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `too_large`: the message exceeds [`Limits::max_message_bytes`].
    TooLarge,
    /// `invalid_utf8`: the bytes are not UTF-8.
    InvalidUtf8,
    /// `malformed_json`: not one JSON value (syntax error, truncated, trailing
    /// data, a duplicate key), or objects and arrays nested deeper than
    /// [`MAX_NESTING`] anywhere in it.
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
    /// [`Limits::max_future_skew`].
    FutureTimestamp,
    /// `past_timestamp`: a timestamp before [`Limits::min_occurred_at`].
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
fn clip(mut text: String, max: usize) -> String {
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

// ---------------------------------------------------------------------------
// Decoders
// ---------------------------------------------------------------------------

/// Decodes one `usage.authorizations` message. The hot path: one serde pass,
/// no intermediate `Value`.
pub fn decode_authorization(
    bytes: &[u8],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Authorization, ValidationError> {
    let text = preflight(bytes, limits)?;
    let w: AuthorizationWire<'_> = parse(text)?;
    let c = Checker { limits, now };
    Ok(Authorization {
        event_id: c.id("event_id", w.event_id)?,
        occurred_at: c.occurred_at("occurred_at", &w.occurred_at)?,
        user_id: c.id("user_id", w.user_id)?,
        product: c.id("product", w.product)?,
        product_version: c.opt_id("product_version", w.product_version)?,
        access: c.one_of("access", &w.access, ACCESS)?,
        team_id: c.opt_id("team_id", w.team_id)?,
        machine_id: c.opt_id("machine_id", w.machine_id)?,
        online: w.online.unwrap_or(true),
    })
}

/// Decodes one `usage.assignments` message.
pub fn decode_assignment(
    bytes: &[u8],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Assignment, ValidationError> {
    let text = preflight(bytes, limits)?;
    let w: AssignmentWire<'_> = parse(text)?;
    let c = Checker { limits, now };
    Ok(Assignment {
        event_id: c.id("event_id", w.event_id)?,
        occurred_at: c.occurred_at("occurred_at", &w.occurred_at)?,
        action: c.one_of("action", &w.action, ACTIONS)?,
        team_id: c.id("team_id", w.team_id)?,
        user_id: c.id("user_id", w.user_id)?,
        product: c.id("product", w.product)?,
        access: c.one_of("access", &w.access, ACCESS)?,
        via: c.one_of("via", &w.via, VIAS)?,
        group_id: c.opt_id("group_id", w.group_id)?,
    })
}

/// The directory `type`s the contract knows, in contract order.
pub const DIRECTORY_TYPES: [&str; 5] = [
    "user_profile",
    "team",
    "group_membership",
    "team_merge",
    "product_rate",
];

/// Decodes one `usage.directory` message: first its `type`, then the fields
/// of that type.
pub fn decode_directory(
    bytes: &[u8],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<DirectoryEvent, ValidationError> {
    let text = preflight(bytes, limits)?;
    let tag: DirectoryTagWire<'_> = parse(text)?;
    let c = Checker { limits, now };
    let (event_id, occurred_at, change) = match &*tag.kind.0 {
        "user_profile" => {
            let w: UserProfileWire<'_> = parse(text)?;
            let change = DirectoryChange::UserProfile(UserProfile {
                user_id: c.id("user_id", w.user_id)?,
                name: c.text("name", w.name)?,
                email: c.text("email", w.email)?,
                avatar_url: c.opt_url("avatar_url", w.avatar_url)?,
            });
            (w.event_id, w.occurred_at, change)
        }
        "team" => {
            let w: TeamWire<'_> = parse(text)?;
            let change = DirectoryChange::Team(Team {
                team_id: c.id("team_id", w.team_id)?,
                name: c.text("name", w.name)?,
                pii_visible: w.pii_visible,
            });
            (w.event_id, w.occurred_at, change)
        }
        "group_membership" => {
            let w: GroupMembershipWire<'_> = parse(text)?;
            let change = DirectoryChange::GroupMembership(GroupMembership {
                team_id: c.id("team_id", w.team_id)?,
                group_id: c.id("group_id", w.group_id)?,
                group_name: c.text("group_name", w.group_name)?,
                user_id: c.id("user_id", w.user_id)?,
                member: w.member,
            });
            (w.event_id, w.occurred_at, change)
        }
        "team_merge" => {
            let w: TeamMergeWire<'_> = parse(text)?;
            let from_team_id = c.id("from_team_id", w.from_team_id)?;
            let into_team_id = c.id("into_team_id", w.into_team_id)?;
            if from_team_id == into_team_id {
                return Err(ValidationError::at(
                    Reason::InvalidValue,
                    "into_team_id",
                    "a team cannot be merged into itself",
                ));
            }
            let change = DirectoryChange::TeamMerge(TeamMerge {
                from_team_id,
                into_team_id,
            });
            (w.event_id, w.occurred_at, change)
        }
        "product_rate" => {
            let w: ProductRateWire<'_> = parse(text)?;
            let change = DirectoryChange::ProductRate(ProductRate {
                product: c.id("product", w.product)?,
                name: c.opt_text("name", w.name)?,
                flex_tokens_per_day: c
                    .tokens_per_day("flex_tokens_per_day", &w.flex_tokens_per_day)?,
                effective_from: c.not_before_min("effective_from", &w.effective_from)?,
            });
            (w.event_id, w.occurred_at, change)
        }
        other => {
            return Err(ValidationError::at(
                Reason::UnknownValue,
                "type",
                format!(
                    "unknown directory type `{other}`, expected one of {}",
                    DIRECTORY_TYPES.join(", ")
                ),
            ))
        }
    };
    Ok(DirectoryEvent {
        event_id: c.id("event_id", event_id)?,
        occurred_at: c.occurred_at("occurred_at", &occurred_at)?,
        change,
    })
}

// ---------------------------------------------------------------------------
// Wire structs: the JSON shape, strings borrowed from the message.
// ---------------------------------------------------------------------------

/// A JSON string, borrowed from the message unless it has escapes.
///
/// A newtype so that `Option<Str>` borrows too (serde only borrows a bare
/// `Cow<str>` field marked `#[serde(borrow)]`).
#[derive(Deserialize)]
#[serde(transparent)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Deserialize)]
struct AuthorizationWire<'a> {
    #[serde(borrow)]
    event_id: Str<'a>,
    #[serde(borrow)]
    occurred_at: Str<'a>,
    #[serde(borrow)]
    user_id: Str<'a>,
    #[serde(borrow)]
    product: Str<'a>,
    #[serde(borrow, default)]
    product_version: Option<Str<'a>>,
    #[serde(borrow)]
    access: Str<'a>,
    #[serde(borrow, default)]
    team_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    machine_id: Option<Str<'a>>,
    #[serde(default)]
    online: Option<bool>,
}

#[derive(Deserialize)]
struct AssignmentWire<'a> {
    #[serde(borrow)]
    event_id: Str<'a>,
    #[serde(borrow)]
    occurred_at: Str<'a>,
    #[serde(borrow)]
    action: Str<'a>,
    #[serde(borrow)]
    team_id: Str<'a>,
    #[serde(borrow)]
    user_id: Str<'a>,
    #[serde(borrow)]
    product: Str<'a>,
    #[serde(borrow)]
    access: Str<'a>,
    #[serde(borrow)]
    via: Str<'a>,
    #[serde(borrow, default)]
    group_id: Option<Str<'a>>,
}

/// First pass over a directory message: only its `type`.
#[derive(Deserialize)]
struct DirectoryTagWire<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
}

#[derive(Deserialize)]
struct UserProfileWire<'a> {
    #[serde(borrow)]
    event_id: Str<'a>,
    #[serde(borrow)]
    occurred_at: Str<'a>,
    #[serde(borrow)]
    user_id: Str<'a>,
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    email: Str<'a>,
    #[serde(borrow, default)]
    avatar_url: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct TeamWire<'a> {
    #[serde(borrow)]
    event_id: Str<'a>,
    #[serde(borrow)]
    occurred_at: Str<'a>,
    #[serde(borrow)]
    team_id: Str<'a>,
    #[serde(borrow)]
    name: Str<'a>,
    pii_visible: bool,
}

#[derive(Deserialize)]
struct GroupMembershipWire<'a> {
    #[serde(borrow)]
    event_id: Str<'a>,
    #[serde(borrow)]
    occurred_at: Str<'a>,
    #[serde(borrow)]
    team_id: Str<'a>,
    #[serde(borrow)]
    group_id: Str<'a>,
    #[serde(borrow)]
    group_name: Str<'a>,
    #[serde(borrow)]
    user_id: Str<'a>,
    member: bool,
}

#[derive(Deserialize)]
struct TeamMergeWire<'a> {
    #[serde(borrow)]
    event_id: Str<'a>,
    #[serde(borrow)]
    occurred_at: Str<'a>,
    #[serde(borrow)]
    from_team_id: Str<'a>,
    #[serde(borrow)]
    into_team_id: Str<'a>,
}

#[derive(Deserialize)]
struct ProductRateWire<'a> {
    #[serde(borrow)]
    event_id: Str<'a>,
    #[serde(borrow)]
    occurred_at: Str<'a>,
    #[serde(borrow)]
    product: Str<'a>,
    #[serde(borrow, default)]
    name: Option<Str<'a>>,
    flex_tokens_per_day: serde_json::Number,
    #[serde(borrow)]
    effective_from: Str<'a>,
}

// ---------------------------------------------------------------------------
// Parsing and error classification
// ---------------------------------------------------------------------------

/// Size, UTF-8 and "is it an object" checks before any parsing.
fn preflight<'a>(bytes: &'a [u8], limits: &Limits) -> Result<&'a str, ValidationError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(ValidationError::whole(
            Reason::TooLarge,
            format!(
                "message is {} bytes, at most {} allowed",
                bytes.len(),
                limits.max_message_bytes
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ValidationError::whole(Reason::InvalidUtf8, format!("message is not UTF-8: {e}"))
    })?;
    if nesting_exceeds(bytes, MAX_NESTING) {
        return Err(ValidationError::whole(
            Reason::MalformedJson,
            format!("objects and arrays nest deeper than {MAX_NESTING}"),
        ));
    }
    // serde would accept a JSON array for a struct (fields by position): only
    // objects are events.
    let first = text
        .bytes()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(b'{') {
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => ValidationError::whole(Reason::NotAnObject, "an event is a JSON object"),
            Err(e) => malformed(&e),
        });
    }
    Ok(text)
}

/// The deepest nesting of objects and arrays a message may have, anywhere
/// (an ignored unknown property included): serde_json's own limit where it
/// builds values, so every decoder refuses the same messages.
pub const MAX_NESTING: usize = 128;

/// Whether objects and arrays nest deeper than `limit` (brackets inside
/// strings do not count). A message with at most `limit` opening brackets in
/// all cannot, which a plain count tells cheaply: the scan runs only then.
fn nesting_exceeds(bytes: &[u8], limit: usize) -> bool {
    // `{` and `[` differ from each other only in bit 5 (0x7B, 0x5B): one
    // compare per byte, summed branch-free in byte lanes (chunks of 255 so a
    // lane never overflows) so that it vectorizes.
    let opening: usize = bytes
        .chunks(255)
        .map(|chunk| {
            usize::from(
                chunk
                    .iter()
                    .fold(0u8, |n, &b| n + u8::from(b | 0x20 == b'{')),
            )
        })
        .sum();
    if opening <= limit {
        return false;
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// One serde pass into a wire struct; on failure, the precise reason and field.
fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ValidationError> {
    serde_json::from_str(text).map_err(|first| classify::<T>(text, &first))
}

/// The error path: parse again to tell syntax from typing, and to find the
/// path of the offending property.
fn classify<'a, T: Deserialize<'a>>(text: &'a str, first: &serde_json::Error) -> ValidationError {
    // Syntax first: a message broken anywhere is malformed, whatever the
    // typed pass stumbled on before reaching the break.
    if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
        return malformed(&e);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => {
            let path = e.path().to_string();
            data_error(&path, &message_of(e.inner()))
        }
        // Cannot happen (the same input failed a moment ago); stay total anyway.
        Ok(_) => data_error(".", &message_of(first)),
    }
}

fn malformed(e: &serde_json::Error) -> ValidationError {
    ValidationError::whole(Reason::MalformedJson, message_of(e))
}

/// serde_json's message without its " at line L column C" suffix.
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) if e.line() != 0 => text[..i].to_owned(),
        _ => text,
    }
}

/// Maps serde's data-error messages (the stable wording of `serde::de::Error`'s
/// provided constructors) to a reason and a field path.
fn data_error(path: &str, message: &str) -> ValidationError {
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    let field_at_path = || {
        if path == "." || path.is_empty() {
            None
        } else {
            Some(path.to_owned())
        }
    };
    let (reason, field) = if let Some(name) = backticked(message, "missing field `") {
        (Reason::MissingField, Some(join(name)))
    } else if let Some(name) = backticked(message, "duplicate field `") {
        (Reason::MalformedJson, Some(join(name)))
    } else if message.starts_with("invalid type: ")
        || message.starts_with("invalid length ")
        || message.starts_with("expected ")
    {
        // "expected …" is serde_json's wording when the document is valid
        // (checked before) but the value cannot start the expected type.
        (Reason::WrongType, field_at_path())
    } else if message.starts_with("unknown variant `") {
        (Reason::UnknownValue, field_at_path())
    } else if message.starts_with("recursion limit exceeded") {
        (Reason::MalformedJson, None)
    } else {
        // "invalid value: …", "number out of range", custom messages.
        (Reason::InvalidValue, field_at_path())
    };
    ValidationError {
        reason,
        field,
        detail: clip(message.to_owned(), ValidationError::MAX_DETAIL_LEN),
    }
}

/// The name between `prefix` and the next backtick.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}

// ---------------------------------------------------------------------------
// Value checks
// ---------------------------------------------------------------------------

/// The spellings of [`Access`]. Enums are read as strings and matched here
/// (not by serde's enum support, which would also take `{"seat": null}`).
const ACCESS: &[(&str, Access)] = &[("seat", Access::Seat), ("flex", Access::Flex)];
/// The spellings of [`AssignmentAction`].
const ACTIONS: &[(&str, AssignmentAction)] = &[
    ("assign", AssignmentAction::Assign),
    ("unassign", AssignmentAction::Unassign),
];
/// The spellings of [`AssignmentVia`].
const VIAS: &[(&str, AssignmentVia)] = &[
    ("direct", AssignmentVia::Direct),
    ("group", AssignmentVia::Group),
    ("default", AssignmentVia::Default),
];

/// The value checks of one message, against the limits and `now`.
struct Checker<'l> {
    limits: &'l Limits,
    now: DateTime<Utc>,
}

impl Checker<'_> {
    /// One of an enum's spellings (exact, case-sensitive).
    fn one_of<T: Copy>(
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
    fn id(&self, field: &str, value: Str<'_>) -> Result<String, ValidationError> {
        if value.0.is_empty() {
            return Err(ValidationError::at(
                Reason::InvalidValue,
                field,
                "must not be empty",
            ));
        }
        self.text(field, value)
    }

    fn opt_id(
        &self,
        field: &str,
        value: Option<Str<'_>>,
    ) -> Result<Option<String>, ValidationError> {
        value.map(|v| self.id(field, v)).transpose()
    }

    /// Free text (may be empty) within the string limit.
    fn text(&self, field: &str, value: Str<'_>) -> Result<String, ValidationError> {
        within(field, value, self.limits.max_string_len)
    }

    fn opt_text(
        &self,
        field: &str,
        value: Option<Str<'_>>,
    ) -> Result<Option<String>, ValidationError> {
        value.map(|v| self.text(field, v)).transpose()
    }

    fn opt_url(
        &self,
        field: &str,
        value: Option<Str<'_>>,
    ) -> Result<Option<String>, ValidationError> {
        value
            .map(|v| within(field, v, self.limits.max_url_len))
            .transpose()
    }

    /// An event time: RFC 3339, not before the minimum, not beyond the skew.
    fn occurred_at(&self, field: &str, value: &Str<'_>) -> Result<DateTime<Utc>, ValidationError> {
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
    fn not_before_min(
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
    fn tokens_per_day(
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

/// A string of at most `max` characters, made owned.
fn within(field: &str, value: Str<'_>, max: usize) -> Result<String, ValidationError> {
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
    Ok(s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        parse_timestamp("2026-06-01T00:00:00Z").expect("valid now")
    }

    const AUTH: &str = r#"{"event_id":"e-1","occurred_at":"2026-05-31T10:00:00+02:00","user_id":"u-1","product":"photoshop","access":"flex"}"#;

    fn auth_err(json: &str) -> ValidationError {
        decode_authorization(json.as_bytes(), &Limits::default(), now())
            .expect_err("should be refused")
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
        let e = auth_err(
            r#"["e-1","2026-05-31T10:00:00Z","u-1","photoshop",null,"flex",null,null,true]"#,
        );
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
        let unknown =
            |depth: usize| AUTH.replacen('{', &format!(r#"{{"x":{},"#, deep_array(depth)), 1);
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
        let e =
            serde_json::from_str::<serde_json::Value>(&deep_array(100_000)).expect_err("too deep");
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
        assert!(decode_authorization(b"{}", &limits, now())
            .is_err_and(|e| e.reason != Reason::TooLarge));
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
            let e =
                decode_assignment(json.as_bytes(), &Limits::default(), now()).expect_err("refused");
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

    #[test]
    fn display_names_reason_and_field() {
        let e = auth_err(&without("user_id"));
        assert_eq!(
            e.to_string(),
            "missing_field at `user_id`: missing field `user_id`"
        );
    }
}
