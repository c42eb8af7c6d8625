//! The inbound event contract: one type per event, serializing exactly to the
//! JSON Schemas in `schemas/events/`.
//!
//! Every event carries `event_id` (the idempotency key) and `occurred_at`
//! (RFC 3339 with any offset, normalised to UTC and truncated to microseconds,
//! the precision the warehouse keeps).
//!
//! Inbound bytes go through [`crate::validate`] (`decode_authorization`,
//! `decode_assignment`, `decode_directory`), never straight through these
//! types' `Deserialize`: the decoders add the contract's limits, name the
//! offending field and give a stable dead-letter reason. The derives are for
//! round trips of data already validated (tests, internal topics).

mod timestamp;
mod tokens;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use timestamp::{format_timestamp, parse_timestamp, TimestampError, TIMESTAMP_PATTERN};
pub use tokens::{Tokens, TokensError};

/// Default topic of [`Authorization`] events (key: `user_id`).
pub const AUTHORIZATIONS_TOPIC: &str = "usage.authorizations";
/// Default topic of [`Assignment`] events (key: `user_id`).
pub const ASSIGNMENTS_TOPIC: &str = "usage.assignments";
/// Default topic of [`DirectoryEvent`]s (key: `team_id` or `user_id`).
pub const DIRECTORY_TOPIC: &str = "usage.directory";

/// How a user holds a product: an assigned subscription seat, or prepaid Flex tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// A subscription seat assigned to the user in a team; costs no tokens.
    Seat,
    /// Prepaid Flex tokens, charged per 24-hour usage window.
    Flex,
}

impl Access {
    /// Every access kind, in contract order.
    pub const ALL: [Access; 2] = [Access::Seat, Access::Flex];

    /// The contract's spelling (`seat`, `flex`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Seat => "seat",
            Access::Flex => "flex",
        }
    }
}

/// A license authorization call: a product started on an internet-connected machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// Unique id of this event: the idempotency key (duplicates are ignored).
    pub event_id: String,
    /// When the authorization call happened (UTC, microseconds).
    #[serde(with = "timestamp::serde_rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// The user who started the product (the Kafka key).
    pub user_id: String,
    /// The product code, e.g. `photoshop`.
    pub product: String,
    /// The product version, informative only: any version inside a Flex window is free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    /// Seat or Flex: Flex events are charged tokens (rule 4).
    pub access: Access,
    /// The team the licensing system already knows; when absent the team is
    /// resolved from the assignment history as of `occurred_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The machine the product started on, informative only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// Offline use is not reported (rule 1). Defaults to `true`.
    #[serde(default = "default_online")]
    pub online: bool,
}

fn default_online() -> bool {
    true
}

/// An [`Authorization`] whose strings are borrowed: from an owned one
/// (`From<&Authorization>`), or from the message it was read from (the
/// ingest keeps each message's text and where its fields lie in it, and
/// stamps and encodes through this view: no string copied per field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorizationRef<'a> {
    /// See [`Authorization::event_id`].
    pub event_id: &'a str,
    /// See [`Authorization::occurred_at`].
    pub occurred_at: DateTime<Utc>,
    /// See [`Authorization::user_id`].
    pub user_id: &'a str,
    /// See [`Authorization::product`].
    pub product: &'a str,
    /// See [`Authorization::product_version`].
    pub product_version: Option<&'a str>,
    /// See [`Authorization::access`].
    pub access: Access,
    /// See [`Authorization::team_id`].
    pub team_id: Option<&'a str>,
    /// See [`Authorization::machine_id`].
    pub machine_id: Option<&'a str>,
    /// See [`Authorization::online`].
    pub online: bool,
}

impl<'a> From<&'a Authorization> for AuthorizationRef<'a> {
    fn from(a: &'a Authorization) -> AuthorizationRef<'a> {
        AuthorizationRef {
            event_id: &a.event_id,
            occurred_at: a.occurred_at,
            user_id: &a.user_id,
            product: &a.product,
            product_version: a.product_version.as_deref(),
            access: a.access,
            team_id: a.team_id.as_deref(),
            machine_id: a.machine_id.as_deref(),
            online: a.online,
        }
    }
}

impl AuthorizationRef<'_> {
    /// The owned event.
    pub fn to_owned(&self) -> Authorization {
        Authorization {
            event_id: self.event_id.to_owned(),
            occurred_at: self.occurred_at,
            user_id: self.user_id.to_owned(),
            product: self.product.to_owned(),
            product_version: self.product_version.map(str::to_owned),
            access: self.access,
            team_id: self.team_id.map(str::to_owned),
            machine_id: self.machine_id.map(str::to_owned),
            online: self.online,
        }
    }
}

/// Whether an [`Assignment`] grants or withdraws a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentAction {
    /// The user now holds the product in the team.
    Assign,
    /// The user no longer holds the product in the team.
    Unassign,
}

/// How a user came to hold a product in a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentVia {
    /// Assigned to the user by an admin.
    Direct,
    /// Held through membership of a group (`group_id`).
    Group,
    /// Held through the team's default assignment.
    Default,
}

impl AssignmentVia {
    /// The contract's spelling (`direct`, `group`, `default`).
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentVia::Direct => "direct",
            AssignmentVia::Group => "group",
            AssignmentVia::Default => "default",
        }
    }
}

/// A product assigned to, or unassigned from, a user in a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Unique id of this event: the idempotency key.
    pub event_id: String,
    /// When the assignment changed (UTC); team resolution is as of this instant.
    #[serde(with = "timestamp::serde_rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// Assign or unassign.
    pub action: AssignmentAction,
    /// The team the product is assigned in.
    pub team_id: String,
    /// The user the product is assigned to (the Kafka key).
    pub user_id: String,
    /// The product code.
    pub product: String,
    /// Seat or Flex.
    pub access: Access,
    /// Direct, group or default assignment; only direct ones can be unassigned from the report.
    pub via: AssignmentVia,
    /// The group that carries the assignment (`via: group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}

/// An event of the `usage.directory` topic: the envelope plus one [`DirectoryChange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEvent {
    /// Unique id of this event: the idempotency key.
    pub event_id: String,
    /// When the directory fact changed (UTC); later facts win.
    #[serde(with = "timestamp::serde_rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// The fact itself, tagged by `type` on the wire.
    #[serde(flatten)]
    pub change: DirectoryChange,
}

/// The directory facts, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DirectoryChange {
    /// `type: user_profile`.
    UserProfile(UserProfile),
    /// `type: team`.
    Team(Team),
    /// `type: group_membership`.
    GroupMembership(GroupMembership),
    /// `type: team_merge`.
    TeamMerge(TeamMerge),
    /// `type: product_rate`.
    ProductRate(ProductRate),
}

impl DirectoryChange {
    /// The `type` tag as it appears on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            DirectoryChange::UserProfile(_) => "user_profile",
            DirectoryChange::Team(_) => "team",
            DirectoryChange::GroupMembership(_) => "group_membership",
            DirectoryChange::TeamMerge(_) => "team_merge",
            DirectoryChange::ProductRate(_) => "product_rate",
        }
    }
}

/// A user's identity, shown in the report when the team's PII is visible.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// The user.
    pub user_id: String,
    /// Display name (hashed in reports of teams without visible PII).
    pub name: String,
    /// Email address (hashed in reports of teams without visible PII).
    pub email: String,
    /// Avatar image URL (hidden in reports of teams without visible PII).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// A team and its privacy setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    /// The team.
    pub team_id: String,
    /// The team's display name.
    pub name: String,
    /// Whether reports of this team show names, emails and avatars (rule 7).
    pub pii_visible: bool,
}

/// A user joining (`member: true`) or leaving a group of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    /// The team the group belongs to.
    pub team_id: String,
    /// The group.
    pub group_id: String,
    /// The group's display name (current state is shown, rule 3).
    pub group_name: String,
    /// The user joining or leaving.
    pub user_id: String,
    /// `true`: the user is now a member; `false`: no longer.
    pub member: bool,
}

/// Team `from_team_id` merged into `into_team_id`: reports for `into` include
/// the history of `from` (resolved at read time; stored rows keep their team).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMerge {
    /// The team merged away.
    pub from_team_id: String,
    /// The team that now reports the history of `from_team_id`.
    pub into_team_id: String,
}

/// A product's daily Flex token rate, in force from `effective_from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRate {
    /// The product code.
    pub product: String,
    /// The product's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tokens charged when a Flex usage window of this product opens.
    pub flex_tokens_per_day: Tokens,
    /// From when this rate is in force (may be in the future).
    #[serde(with = "timestamp::serde_rfc3339")]
    pub effective_from: DateTime<Utc>,
}
