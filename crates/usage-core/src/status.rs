//! Activity status and the Subscriptions summary (docs/rules.md rule 6).
//!
//! For a (team, user, product) over a report range, as of now — quoting the
//! vendor's help page:
//!
//! - [`Status::Active`]: *"Active users are currently assigned to the product
//!   and have used that product in the selected date range."*
//! - [`Status::Inactive`]: *"Inactive users have access rights to the product
//!   within the selected team, but for the selected date range haven't
//!   accessed the product."* — a **seat** assigned since on or before the
//!   range start (its assigned date, UTC, `<=` the range's first date) and not
//!   used in the range.
//! - [`Status::NotYetActive`]: *"If a user has been assigned for a duration
//!   less than the selected time range and hasn't yet used the product, that
//!   user isn't counted (by definition) as active or inactive. They are
//!   assigned, but not yet active."* — a **seat** assigned after the range
//!   start, not used in the range.
//! - *"Tagging Flex users with an inactive status therefore conflicts with
//!   the purpose of Flex."* — a Flex assignment not used in the range is
//!   [`Status::FlexUnused`]: assigned, no tag, never inactive.
//! - [`Status::Unassigned`] (our addition): used in the range but **not
//!   currently assigned** (unassigned since). The row is shown, with its days
//!   used and last accessed, so usage is never hidden; it counts in no
//!   Subscriptions figure (those are seats assigned now) — its usage still
//!   counts in the Flex tile.
//! - Neither assigned now nor used in the range: no row (`None`).
//!
//! "Currently assigned" and "assigned since" are as of `now`, whatever the
//! range: [`crate::team::AssignmentState::current_assignment`] at `now`.
//!
//! *"For this reason, the summary number for Inactive isn't present when All
//! Teams is selected."* — [`subscription_tile`] returns `inactive: None` for
//! [`TeamScope::All`].

use std::fmt;

use chrono::{DateTime, Utc};

use crate::event::Access;
use crate::range::DateRange;
use crate::team::TeamScope;

/// The activity status of a (team, user, product) over a range, as of now.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// `active`: currently assigned and used in the range.
    Active,
    /// `inactive`: a seat assigned since on or before the range start, not used in the range.
    Inactive,
    /// `not_yet_active`: a seat assigned after the range start, not used yet.
    NotYetActive,
    /// `flex_unused`: Flex, assigned, not used in the range (Flex users are never inactive).
    FlexUnused,
    /// `unassigned`: used in the range, not currently assigned.
    Unassigned,
}

impl Status {
    /// Every status, in display order.
    pub const ALL: [Status; 5] = [
        Status::Active,
        Status::Inactive,
        Status::NotYetActive,
        Status::FlexUnused,
        Status::Unassigned,
    ];

    /// Stable name: `active`, `inactive`, `not_yet_active`, `flex_unused`, `unassigned`.
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

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The assignment in force now of a (team, user, product): its access and
/// the start of the current continuous assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Seat or Flex.
    pub access: Access,
    /// Start of the current continuous assignment.
    pub since: DateTime<Utc>,
}

/// The status of a (team, user, product) (see the module docs).
///
/// `held`: the assignment in force now (`None`: not currently assigned);
/// `used_in_range`: at least one day used in `range`.
pub fn status(held: Option<Held>, used_in_range: bool, range: &DateRange) -> Option<Status> {
    match (held, used_in_range) {
        (Some(_), true) => Some(Status::Active),
        (None, true) => Some(Status::Unassigned),
        (None, false) => None,
        (
            Some(Held {
                access: Access::Flex,
                ..
            }),
            false,
        ) => Some(Status::FlexUnused),
        (
            Some(Held {
                access: Access::Seat,
                since,
            }),
            false,
        ) => {
            if since.date_naive() <= range.from() {
                Some(Status::Inactive)
            } else {
                Some(Status::NotYetActive)
            }
        }
    }
}

/// The Subscriptions overview tile: seats assigned now, and how many of them
/// are active, inactive, not yet active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionTile {
    /// Seat assignments in force now (one per (team, user, product) seat).
    pub assigned: u64,
    /// Seats that are active (assigned and used in the range).
    pub active: u64,
    /// `None` when All Teams is selected (rule 6).
    pub inactive: Option<u64>,
    /// Seats assigned after the range start and not used yet.
    pub not_yet_active: u64,
}

/// Counts the Subscriptions tile from the rows of the selection: `(access of
/// the assignment in force, status)` per (team, user, product). Only seat
/// rows that are assigned now count; `inactive` is `None` for All Teams.
pub fn subscription_tile<I>(rows: I, scope: TeamScope<'_>) -> SubscriptionTile
where
    I: IntoIterator<Item = (Access, Status)>,
{
    let (mut assigned, mut active, mut inactive, mut not_yet_active) = (0u64, 0u64, 0u64, 0u64);
    for (access, status) in rows {
        if access != Access::Seat {
            continue;
        }
        match status {
            Status::Active => active += 1,
            Status::Inactive => inactive += 1,
            Status::NotYetActive => not_yet_active += 1,
            Status::FlexUnused | Status::Unassigned => continue,
        }
        assigned += 1;
    }
    SubscriptionTile {
        assigned,
        active,
        inactive: match scope {
            TeamScope::All => None,
            TeamScope::Team(_) => Some(inactive),
        },
        not_yet_active,
    }
}
