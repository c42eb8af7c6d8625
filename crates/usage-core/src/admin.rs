//! Report administration rules: export retention, schedules, unassign
//! (docs/rules.md rules 8, 9, 10).

use chrono::{DateTime, TimeDelta, Utc};

use crate::event::AssignmentVia;

/// *"We automatically delete past exports after 14 days to maintain security
/// and manage storage."* (rule 8).
pub const EXPORT_RETENTION: TimeDelta = TimeDelta::days(14);

/// Whether a stored export created at `created_at` must be deleted at `now`:
/// once 14 days (336 hours) have passed, to the second.
pub fn export_expired(created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    created_at
        .checked_add_signed(EXPORT_RETENTION)
        .is_some_and(|expiry| now >= expiry)
}

/// *"You can set up a maximum of 5 scheduled reports."* (rule 9), per admin.
pub const MAX_SCHEDULES_PER_ADMIN: usize = 5;

/// Whether an admin who already has `existing` schedules may add one.
pub fn can_add_schedule(existing: usize) -> bool {
    existing < MAX_SCHEDULES_PER_ADMIN
}

/// The roles of the account, as far as the report is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminRole {
    /// Primary admin.
    Primary,
    /// Secondary admin.
    Secondary,
    /// SSO admin.
    Sso,
    /// Any other role (e.g. a product or user admin).
    Other,
}

/// *"As a primary, secondary, or SSO admin, you can schedule the usage
/// report"* (rule 9).
pub fn can_schedule(role: AdminRole) -> bool {
    matches!(
        role,
        AdminRole::Primary | AdminRole::Secondary | AdminRole::Sso
    )
}

/// *"Only the admin who schedules a recurring report can view it in their
/// account."* — and download its files (rule 9).
pub fn can_view_schedule(owner_admin_id: &str, viewer_admin_id: &str) -> bool {
    owner_admin_id == viewer_admin_id
}

/// Why an unassign from the report was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("users assigned via {} cannot be unassigned from the usage report", .via.as_str())]
pub struct UnassignRefused {
    /// How the user holds the product.
    pub via: AssignmentVia,
}

/// *"Users assigned through a group or default assignments cannot be
/// unassigned from the Usage report."* (rule 10): only direct assignments.
pub fn can_unassign(via: AssignmentVia) -> bool {
    via == AssignmentVia::Direct
}

/// [`can_unassign`] as a `Result`, for the API's error.
pub fn check_unassign(via: AssignmentVia) -> Result<(), UnassignRefused> {
    if can_unassign(via) {
        Ok(())
    } else {
        Err(UnassignRefused { via })
    }
}
