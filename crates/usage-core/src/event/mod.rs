//! The inbound event contract: one type per event, serializing exactly to the
//! JSON Schemas in `schemas/events/`.
//!
//! Every event carries `event_id` (the idempotency key) and `occurred_at`
//! (RFC 3339 with any offset, normalised to UTC and truncated to microseconds,
//! the precision the warehouse keeps).

mod timestamp;
mod tokens;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use timestamp::{format_timestamp, parse_timestamp, TimestampError};
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
    Seat,
    Flex,
}

impl Access {
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
    pub event_id: String,
    #[serde(with = "timestamp::serde_rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub user_id: String,
    pub product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_version: Option<String>,
    pub access: Access,
    /// The team the licensing system already knows; when absent the team is
    /// resolved from the assignment history as of `occurred_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    /// Offline use is not reported (rule 1). Defaults to `true`.
    #[serde(default = "default_online")]
    pub online: bool,
}

fn default_online() -> bool {
    true
}

/// Whether an [`Assignment`] grants or withdraws a product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentAction {
    Assign,
    Unassign,
}

/// How a user came to hold a product in a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentVia {
    Direct,
    Group,
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
    pub event_id: String,
    #[serde(with = "timestamp::serde_rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub action: AssignmentAction,
    pub team_id: String,
    pub user_id: String,
    pub product: String,
    pub access: Access,
    pub via: AssignmentVia,
    /// The group that carries the assignment (`via: group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
}

/// An event of the `usage.directory` topic: the envelope plus one [`DirectoryChange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryEvent {
    pub event_id: String,
    #[serde(with = "timestamp::serde_rfc3339")]
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub change: DirectoryChange,
}

/// The directory facts, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DirectoryChange {
    UserProfile(UserProfile),
    Team(Team),
    GroupMembership(GroupMembership),
    TeamMerge(TeamMerge),
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
    pub user_id: String,
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// A team and its privacy setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub team_id: String,
    pub name: String,
    pub pii_visible: bool,
}

/// A user joining (`member: true`) or leaving a group of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMembership {
    pub team_id: String,
    pub group_id: String,
    pub group_name: String,
    pub user_id: String,
    pub member: bool,
}

/// Team `from_team_id` merged into `into_team_id`: reports for `into` include
/// the history of `from` (resolved at read time; stored rows keep their team).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamMerge {
    pub from_team_id: String,
    pub into_team_id: String,
}

/// A product's daily Flex token rate, in force from `effective_from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRate {
    pub product: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub flex_tokens_per_day: Tokens,
    #[serde(with = "timestamp::serde_rfc3339")]
    pub effective_from: DateTime<Utc>,
}
