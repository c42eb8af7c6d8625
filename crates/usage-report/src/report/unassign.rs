//! The assignment an unassign request is about: the one in force of the
//! user shown as a key, in a team the admin administers.

use usage_core::event::{Access, AssignmentVia};
use usage_store::schema::StoredEnum;

use super::{access_of, warehouse, Reporter};
use crate::admins::Admin;
use crate::error::ApiError;
use crate::model::TeamSelection;
use crate::queries;

/// The assignment an unassign request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAssignment {
    pub team_id: String,
    pub user_id: String,
    pub product: String,
    pub access: Access,
    pub via: AssignmentVia,
    pub group_id: Option<String>,
}

impl Reporter {
    /// The assignment in force of the user shown as `user_key` in `team`
    /// (a current team the admin administers), for `product`.
    pub async fn held_assignment(
        &self,
        admin: &Admin,
        team: &str,
        user_key: &str,
        product: &str,
        access: Option<Access>,
    ) -> Result<Option<HeldAssignment>, ApiError> {
        let dir = self.directory().await?;
        let scope = Self::scope(admin, &TeamSelection::Team(team.to_owned()), &dir)?;
        let teams = scope.stored_teams.unwrap_or_default();
        let rows = queries::assignments_of(teams, product)
            .query(&self.client)
            .fetch_all::<(String, String, String, u8, String, String)>()
            .await
            .map_err(warehouse)?;
        let mut found = None;
        for (stored_team, user_id, acc, assigned, via, group_id) in rows {
            let access_here = access_of(&acc)?;
            if assigned != 1 || access.is_some_and(|a| a != access_here) {
                continue;
            }
            if user_id != user_key && self.hasher.hash(&user_id) != user_key {
                continue;
            }
            let via = AssignmentVia::from_label(&via).map_err(|e| ApiError::internal(&e))?;
            // A direct assignment is the one an admin can remove; prefer it.
            let candidate = HeldAssignment {
                team_id: stored_team,
                user_id,
                product: product.to_owned(),
                access: access_here,
                via,
                group_id: (!group_id.is_empty()).then_some(group_id),
            };
            let better = match &found {
                None => true,
                Some(HeldAssignment { via, .. }) => {
                    *via != AssignmentVia::Direct && candidate.via == AssignmentVia::Direct
                }
            };
            if better {
                found = Some(candidate);
            }
        }
        Ok(found)
    }
}
