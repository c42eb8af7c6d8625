//! Who a request covers: the directory as the report needs it (team merges,
//! team privacy, names), the teams in scope, and whether identities are
//! hashed (rule 7).

use std::collections::{BTreeSet, HashMap};

use usage_core::merge::TeamMerges;
use usage_core::privacy::identities_hashed;
use usage_core::team::TeamScope;

use super::{warehouse, Reporter};
use crate::admins::{Admin, Teams};
use crate::error::ApiError;
use crate::model::TeamSelection;
use crate::queries;

/// The directory as the report needs it: merges and team privacy.
pub(super) struct Directory {
    pub(super) merges: TeamMerges,
    pub(super) pii_visible: HashMap<String, bool>,
    pub(super) names: HashMap<String, String>,
}

/// What one report covers.
pub(super) struct Scope {
    pub(super) selection: TeamSelection,
    /// Stored teams whose rows count (`None`: every team).
    pub(super) stored_teams: Option<Vec<String>>,
    /// The current teams in scope (for privacy with All Teams).
    pub(super) current_teams: Vec<String>,
}

/// A team an admin can pick.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Team)]
pub struct TeamInfo {
    pub team_id: String,
    /// `null` when the directory has no name for it.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Whether its users' names, emails and avatars are shown (off by
    /// default: replaced by a keyed hash).
    pub pii_visible: bool,
}

impl Reporter {
    pub(super) async fn directory(&self) -> Result<Directory, ApiError> {
        let merges = queries::merges()
            .query(&self.client)
            .fetch_all::<(String, String)>()
            .await
            .map_err(warehouse)?;
        let mut team_merges = TeamMerges::new();
        for (from, into) in merges {
            // A merge closing a cycle or re-merging a team is refused by the
            // core, as the ingest refuses it.
            let _ = team_merges.merge(&from, &into);
        }
        let teams = queries::teams()
            .query(&self.client)
            .fetch_all::<(String, String, u8)>()
            .await
            .map_err(warehouse)?;
        Ok(Directory {
            merges: team_merges,
            pii_visible: teams.iter().map(|(t, _, v)| (t.clone(), *v == 1)).collect(),
            names: teams.into_iter().map(|(t, n, _)| (t, n)).collect(),
        })
    }

    pub(super) fn scope(
        admin: &Admin,
        selection: &TeamSelection,
        dir: &Directory,
    ) -> Result<Scope, ApiError> {
        match selection {
            TeamSelection::Team(team) => {
                if !admin.teams.includes(team) {
                    return Err(ApiError::forbidden(format!(
                        "you do not administer team {team}"
                    )));
                }
                let current = dir.merges.current(team);
                if current != team {
                    return Err(ApiError::team_merged(team, current));
                }
                Ok(Scope {
                    selection: selection.clone(),
                    stored_teams: Some(
                        dir.merges
                            .history_of(team)
                            .into_iter()
                            .map(str::to_owned)
                            .collect(),
                    ),
                    current_teams: vec![team.clone()],
                })
            }
            TeamSelection::All => match &admin.teams {
                Teams::Every => Ok(Scope {
                    selection: TeamSelection::All,
                    stored_teams: None,
                    current_teams: dir
                        .pii_visible
                        .keys()
                        .map(|t| dir.merges.current(t).to_owned())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                }),
                Teams::Only(teams) => {
                    let current: BTreeSet<String> = teams
                        .iter()
                        .map(|t| dir.merges.current(t).to_owned())
                        .filter(|t| admin.teams.includes(t))
                        .collect();
                    let stored: BTreeSet<String> = current
                        .iter()
                        .flat_map(|t| dir.merges.history_of(t))
                        .map(str::to_owned)
                        .collect();
                    Ok(Scope {
                        selection: TeamSelection::All,
                        stored_teams: Some(stored.into_iter().collect()),
                        current_teams: current.into_iter().collect(),
                    })
                }
            },
        }
    }

    /// The current teams `admin` administers, by id.
    pub async fn teams(&self, admin: &Admin) -> Result<Vec<TeamInfo>, ApiError> {
        let dir = self.directory().await?;
        let known = queries::known_teams()
            .query(&self.client)
            .fetch_all::<String>()
            .await
            .map_err(warehouse)?;
        let current: BTreeSet<String> = known
            .iter()
            .map(|t| dir.merges.current(t).to_owned())
            .filter(|t| admin.teams.includes(t))
            .collect();
        Ok(current
            .into_iter()
            .map(|team_id| TeamInfo {
                name: dir.names.get(&team_id).cloned().filter(|n| !n.is_empty()),
                pii_visible: dir.pii_visible.get(&team_id).copied().unwrap_or(false),
                team_id,
            })
            .collect())
    }
}

/// Rule 7: hashed when the selected team's PII is off; with All Teams, when
/// any team in scope has it off — the admin's teams, and (for an admin of
/// every team) every team the rows show, a team without a directory entry
/// counting as off.
pub(super) fn hashed_for<'a>(
    scope: &Scope,
    dir: &Directory,
    row_teams: impl Iterator<Item = &'a str>,
) -> bool {
    let visible = |t: &str| dir.pii_visible.get(t).copied().unwrap_or(false);
    match &scope.selection {
        TeamSelection::Team(team) => identities_hashed(TeamScope::Team(team), [], visible),
        TeamSelection::All => {
            identities_hashed(
                TeamScope::All,
                scope.current_teams.iter().map(String::as_str),
                visible,
            ) || (scope.stored_teams.is_none()
                && identities_hashed(TeamScope::All, row_teams, visible))
        }
    }
}
