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
//! [`decode_authorization_in_place`] is the hot path: one serde pass over the
//! bytes into a borrowed wire struct (no `serde_json::Value`), value checks on
//! the borrowed strings, which stay in the message (the ingest keeps the
//! message and where each field lies in it); [`decode_authorization`] makes
//! them owned. Only on the error
//! path is the message parsed again (to tell malformed JSON from a typing
//! problem, and to find the offending field's path).
//!
//! # Layout
//! - this module: the three decoders, the entry points;
//! - `limits`: [`Limits`], the bounds beyond the JSON shape;
//! - `error`: the dead-letter [`Reason`] and the [`ValidationError`];
//! - `json`: the checks before parsing (size, UTF-8, nesting, "an object")
//!   and the mapping of serde's errors to a reason and a field;
//! - `wire`: the JSON shape of each event, strings borrowed from the message;
//! - `fields`: the value checks of each field (ids, lengths, enums,
//!   timestamps, token rates);
//! - `tests`: the decoders' behaviour, message by message.

mod error;
mod fields;
mod json;
mod limits;
mod wire;

pub use error::{Reason, UnknownReason, ValidationError};
pub use json::MAX_NESTING;
pub use limits::Limits;

use chrono::{DateTime, Utc};

use std::borrow::Cow;

use crate::event::{
    Access, Assignment, Authorization, AuthorizationRef, DirectoryChange, DirectoryEvent,
    GroupMembership, ProductRate, Team, TeamMerge, UserProfile,
};
use fields::{Checker, ACCESS, ACTIONS, VIAS};
use json::{parse, preflight, preflight_text};
use wire::{
    AssignmentWire, AuthorizationWire, DirectoryTagWire, GroupMembershipWire, ProductRateWire,
    TeamMergeWire, TeamWire, UserProfileWire,
};

/// Decodes one `usage.authorizations` message into an owned [`Authorization`].
pub fn decode_authorization(
    bytes: &[u8],
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<Authorization, ValidationError> {
    authorization(preflight(bytes, limits)?, limits, now).map(|a| a.into_owned())
}

/// Decodes one `usage.authorizations` message already known to be text
/// (the ingest makes its payload a `String` to keep it): its strings left in
/// the message. The hot path: one serde pass, no intermediate `Value`, no
/// allocation unless a string has JSON escapes, UTF-8 not checked again.
/// Same checks, same errors as [`decode_authorization`] of its bytes.
pub fn decode_authorization_in_place<'a>(
    text: &'a str,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<DecodedAuthorization<'a>, ValidationError> {
    authorization(preflight_text(text, limits)?, limits, now)
}

/// An authorization's fields, from a message that passed the preflight.
fn authorization<'a>(
    text: &'a str,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<DecodedAuthorization<'a>, ValidationError> {
    let w: AuthorizationWire<'a> = parse(text)?;
    let c = Checker { limits, now };
    Ok(DecodedAuthorization {
        event_id: c.id_in_place("event_id", w.event_id)?,
        occurred_at: c.occurred_at("occurred_at", &w.occurred_at)?,
        user_id: c.id_in_place("user_id", w.user_id)?,
        product: c.id_in_place("product", w.product)?,
        product_version: c.opt_id_in_place("product_version", w.product_version)?,
        access: c.one_of("access", &w.access, ACCESS)?,
        team_id: c.opt_id_in_place("team_id", w.team_id)?,
        machine_id: c.opt_id_in_place("machine_id", w.machine_id)?,
        online: w.online.unwrap_or(true),
    })
}

/// An authorization as [`decode_authorization_in_place`] read it: each string
/// a slice of the message when the JSON spells it without escapes (the
/// common case), owned when it had to be unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedAuthorization<'a> {
    /// See [`Authorization::event_id`].
    pub event_id: Cow<'a, str>,
    /// See [`Authorization::occurred_at`].
    pub occurred_at: DateTime<Utc>,
    /// See [`Authorization::user_id`].
    pub user_id: Cow<'a, str>,
    /// See [`Authorization::product`].
    pub product: Cow<'a, str>,
    /// See [`Authorization::product_version`].
    pub product_version: Option<Cow<'a, str>>,
    /// See [`Authorization::access`].
    pub access: Access,
    /// See [`Authorization::team_id`].
    pub team_id: Option<Cow<'a, str>>,
    /// See [`Authorization::machine_id`].
    pub machine_id: Option<Cow<'a, str>>,
    /// See [`Authorization::online`].
    pub online: bool,
}

impl DecodedAuthorization<'_> {
    /// The event, borrowed.
    pub fn view(&self) -> AuthorizationRef<'_> {
        AuthorizationRef {
            event_id: &self.event_id,
            occurred_at: self.occurred_at,
            user_id: &self.user_id,
            product: &self.product,
            product_version: self.product_version.as_deref(),
            access: self.access,
            team_id: self.team_id.as_deref(),
            machine_id: self.machine_id.as_deref(),
            online: self.online,
        }
    }

    /// The event, owned.
    pub fn into_owned(self) -> Authorization {
        let owned = |s: Option<Cow<'_, str>>| s.map(Cow::into_owned);
        Authorization {
            event_id: self.event_id.into_owned(),
            occurred_at: self.occurred_at,
            user_id: self.user_id.into_owned(),
            product: self.product.into_owned(),
            product_version: owned(self.product_version),
            access: self.access,
            team_id: owned(self.team_id),
            machine_id: owned(self.machine_id),
            online: self.online,
        }
    }
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

#[cfg(test)]
mod tests;
