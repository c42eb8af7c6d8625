//! What the oracle expects, as public types serialisable as JSON: totals,
//! statuses, rows, team summaries, the whole expected rollups.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::DateRange;
use crate::scenario::ScenarioConfig;
use crate::{Access, Reason, Topic, Via};

/// Activity status of a (team, user, product, access) over a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Currently assigned and used in the range.
    Active,
    /// Seat, currently assigned since on or before the range start, not used.
    Inactive,
    /// Seat, currently assigned since after the range start, not used.
    NotYetActive,
    /// Flex, currently assigned, not used in the range (Flex is never
    /// inactive, docs/rules.md rule 6; the pipeline's `flex_unused`).
    FlexUnused,
    /// Used in the range, not currently assigned.
    Unassigned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
            Status::NotYetActive => "not_yet_active",
            Status::FlexUnused => "flex_unused",
            Status::Unassigned => "unassigned",
        }
    }
}

/// The assignment in force of a (team, user, product, access).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentAssignment {
    /// Start of the current continuous assignment: the first `assign` after
    /// the last `unassign`.
    pub since: DateTime<Utc>,
    /// From the latest `assign`.
    pub via: Via,
    /// From the latest `assign`.
    pub group_id: Option<String>,
}

/// A charged Flex window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedWindow {
    pub start: DateTime<Utc>,
    pub tokens_milli: u64,
    /// The team stamped on the opening event.
    pub team_id: String,
}

/// Counts over the whole scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Every message, poison and duplicates included.
    pub messages: u64,
    pub messages_by_topic: BTreeMap<Topic, u64>,
    /// Poison messages (refused by the decoder).
    pub poison: u64,
    /// Valid messages whose `event_id` was seen before.
    pub duplicates: u64,
    /// Distinct valid events, by topic.
    pub distinct_events: u64,
    pub distinct_by_topic: BTreeMap<Topic, u64>,
    /// Distinct authorizations.
    pub authorizations: u64,
    /// Authorizations counted in the rollups.
    pub events_counted: u64,
    pub events_counted_seat: u64,
    pub events_counted_flex: u64,
    /// Offline authorizations (not reported).
    pub events_offline: u64,
    /// Everything dead-lettered (poison, `unresolved_team`, `unknown_rate`).
    pub dead_lettered: u64,
    /// Authorizations whose team came from `team_id`.
    pub team_from_event: u64,
    /// Authorizations whose team was resolved from assignments.
    pub team_from_assignments: u64,
    /// Resolutions with several candidate teams (never in generated scenarios).
    pub ambiguous_resolutions: u64,
    /// Charged Flex windows and their tokens.
    pub flex_windows: u64,
    pub flex_tokens_milli: u64,
    /// Flex authorizations inside an open window.
    pub flex_free: u64,
    /// Windows opened by an authorization earlier than an existing window's
    /// start (out-of-order publication).
    pub late_flex_windows: u64,
}

/// The overview of one team (after merges) or of all teams, over a range,
/// as of `now`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamSummary {
    /// The current team; `None` for all teams.
    pub team_id: Option<String>,
    /// The teams whose history it includes (itself and those merged into it).
    pub includes: Vec<String>,
    /// (user, product) seat assignments in force now.
    pub seats_assigned: u64,
    pub seats_active: u64,
    /// `None` for all teams (rule 6).
    pub seats_inactive: Option<u64>,
    pub seats_not_yet_active: u64,
    /// Tokens of windows starting in the range, in thousandths.
    pub flex_tokens_milli: u64,
    /// Distinct users with Flex usage in the range.
    pub flex_users: u64,
    /// Sum over (user, product) of Flex days used in the range.
    pub flex_days_used: u64,
    /// Sum over users of distinct dates with Flex usage in the range.
    pub flex_user_days: u64,
    /// Rows (user, product, access) by status.
    pub statuses: BTreeMap<Status, u64>,
    /// Days used in the range, summed over (user, product) rows, seat and Flex.
    pub days_used: u64,
}

/// One report row: a (team as stamped, user, product, access).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedRow {
    pub team_id: String,
    pub current_team_id: String,
    pub user_id: String,
    pub product: String,
    pub access: Access,
    /// All time.
    pub days_used: u32,
    pub first_used: Option<NaiveDate>,
    pub last_accessed: Option<NaiveDate>,
    /// Charges of the windows opened in this team, all time.
    pub tokens_milli: u64,
    pub windows: u32,
    /// As of `now`.
    pub assignment: Option<CurrentAssignment>,
    /// Status per named range (as stamped, not merged).
    pub status: BTreeMap<String, Option<Status>>,
    /// Days used per named range.
    pub days_used_in: BTreeMap<String, u32>,
    /// The usage dates (only with detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dates: Option<Vec<NaiveDate>>,
}

/// A team as the directory says now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedTeam {
    pub team_id: String,
    pub name: Option<String>,
    pub pii_visible: bool,
    pub current_team_id: String,
}

/// Summaries of one named range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedRange {
    pub name: String,
    pub range: DateRange,
    pub all_teams: TeamSummary,
    pub teams: Vec<TeamSummary>,
}

/// Everything the oracle expects, serialisable as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpectedRollups {
    pub now: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioConfig>,
    pub totals: Totals,
    pub dead_letters: BTreeMap<Reason, u64>,
    pub teams: Vec<ExpectedTeam>,
    pub merges: Vec<(String, String)>,
    pub ranges: Vec<ExpectedRange>,
    pub rows: Vec<ExpectedRow>,
}
