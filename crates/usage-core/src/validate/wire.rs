//! The JSON shape of each event: one struct per event type, strings
//! borrowed from the message (serde reads them in one pass, no `Value`).

use std::borrow::Cow;

use serde::Deserialize;

/// A JSON string, borrowed from the message unless it has escapes.
///
/// A newtype so that `Option<Str>` borrows too (serde only borrows a bare
/// `Cow<str>` field marked `#[serde(borrow)]`).
#[derive(Deserialize)]
#[serde(transparent)]
pub(super) struct Str<'a>(#[serde(borrow)] pub(super) Cow<'a, str>);

#[derive(Deserialize)]
pub(super) struct AuthorizationWire<'a> {
    #[serde(borrow)]
    pub(super) event_id: Str<'a>,
    #[serde(borrow)]
    pub(super) occurred_at: Str<'a>,
    #[serde(borrow)]
    pub(super) user_id: Str<'a>,
    #[serde(borrow)]
    pub(super) product: Str<'a>,
    #[serde(borrow, default)]
    pub(super) product_version: Option<Str<'a>>,
    #[serde(borrow)]
    pub(super) access: Str<'a>,
    #[serde(borrow, default)]
    pub(super) team_id: Option<Str<'a>>,
    #[serde(borrow, default)]
    pub(super) machine_id: Option<Str<'a>>,
    #[serde(default)]
    pub(super) online: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct AssignmentWire<'a> {
    #[serde(borrow)]
    pub(super) event_id: Str<'a>,
    #[serde(borrow)]
    pub(super) occurred_at: Str<'a>,
    #[serde(borrow)]
    pub(super) action: Str<'a>,
    #[serde(borrow)]
    pub(super) team_id: Str<'a>,
    #[serde(borrow)]
    pub(super) user_id: Str<'a>,
    #[serde(borrow)]
    pub(super) product: Str<'a>,
    #[serde(borrow)]
    pub(super) access: Str<'a>,
    #[serde(borrow)]
    pub(super) via: Str<'a>,
    #[serde(borrow, default)]
    pub(super) group_id: Option<Str<'a>>,
}

/// First pass over a directory message: only its `type`.
#[derive(Deserialize)]
pub(super) struct DirectoryTagWire<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Str<'a>,
}

#[derive(Deserialize)]
pub(super) struct UserProfileWire<'a> {
    #[serde(borrow)]
    pub(super) event_id: Str<'a>,
    #[serde(borrow)]
    pub(super) occurred_at: Str<'a>,
    #[serde(borrow)]
    pub(super) user_id: Str<'a>,
    #[serde(borrow)]
    pub(super) name: Str<'a>,
    #[serde(borrow)]
    pub(super) email: Str<'a>,
    #[serde(borrow, default)]
    pub(super) avatar_url: Option<Str<'a>>,
}

#[derive(Deserialize)]
pub(super) struct TeamWire<'a> {
    #[serde(borrow)]
    pub(super) event_id: Str<'a>,
    #[serde(borrow)]
    pub(super) occurred_at: Str<'a>,
    #[serde(borrow)]
    pub(super) team_id: Str<'a>,
    #[serde(borrow)]
    pub(super) name: Str<'a>,
    pub(super) pii_visible: bool,
}

#[derive(Deserialize)]
pub(super) struct GroupMembershipWire<'a> {
    #[serde(borrow)]
    pub(super) event_id: Str<'a>,
    #[serde(borrow)]
    pub(super) occurred_at: Str<'a>,
    #[serde(borrow)]
    pub(super) team_id: Str<'a>,
    #[serde(borrow)]
    pub(super) group_id: Str<'a>,
    #[serde(borrow)]
    pub(super) group_name: Str<'a>,
    #[serde(borrow)]
    pub(super) user_id: Str<'a>,
    pub(super) member: bool,
}

#[derive(Deserialize)]
pub(super) struct TeamMergeWire<'a> {
    #[serde(borrow)]
    pub(super) event_id: Str<'a>,
    #[serde(borrow)]
    pub(super) occurred_at: Str<'a>,
    #[serde(borrow)]
    pub(super) from_team_id: Str<'a>,
    #[serde(borrow)]
    pub(super) into_team_id: Str<'a>,
}

#[derive(Deserialize)]
pub(super) struct ProductRateWire<'a> {
    #[serde(borrow)]
    pub(super) event_id: Str<'a>,
    #[serde(borrow)]
    pub(super) occurred_at: Str<'a>,
    #[serde(borrow)]
    pub(super) product: Str<'a>,
    #[serde(borrow, default)]
    pub(super) name: Option<Str<'a>>,
    pub(super) flex_tokens_per_day: serde_json::Number,
    #[serde(borrow)]
    pub(super) effective_from: Str<'a>,
}
